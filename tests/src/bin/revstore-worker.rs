//! One OS process of the multi-process suites: opens a store from a URL and
//! runs a workload on several threads.
//!
//! Modes:
//! - `history`: a seeded workload, every operation appended to a history
//!   file as a JSON line (clients are `p<pid>-t<thread>`);
//! - `increment`: read → compare-and-swap → retry increments of a counter;
//! - `disjoint`: merge patches without precondition, each setting its own
//!   field `p<process>_t<thread>_<i>`;
//! - `serve`: one long-lived handle answering JSON commands from stdin,
//!   one outcome line each on stdout (see `revstore_tests::serve`);
//! - `schema-writes`: the schema race's writers, recording a history;
//! - `schema-churn`: keeps changing the race collection's schema until a
//!   `stop` line (or the end of stdin), recording each change;
//! - `follow`: prints its starting cursor (a JSON line), then follows the
//!   feed, recording every change and a read after each, until a
//!   `stop <seq>` line and its cursor reaching that seq (or `--max`
//!   changes, or the end of stdin); prints its last cursor;
//! - `cache-read`: prints `ready`, then from `--start-at` on reads through
//!   a `CachedStore`, recording every answer, until a `stop` line; then
//!   catches up and prints its final answer for each key as a JSON line.
//!
//! Every thread opens its own handle (as separate programs would), and all
//! start together: at `--start-at` on the system-wide monotonic clock, so
//! that the processes of one test overlap as much as possible.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use revstore::testkit::clock::monotonic_nanos;
use revstore::testkit::history::{Client, HistoryWriter};
use revstore::testkit::workload::{
    disjoint_patches, generate, increment, key_name, run_threads, Handles, COLLECTION,
};
use revstore::{CachedStore, Store};
use revstore_tests::follow::{cached_read, follow, read_through_cache, take_cursor, Until};
use revstore_tests::schema_race::{churn_schema, write_assets_on_threads, Broken, Writes};
use serde_json::json;

#[derive(Parser)]
#[command(about = "A worker process of revstore's multi-process suites")]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Args)]
struct Common {
    /// The store: yaml:DIR, sqlite:FILE (memory: is private to the process).
    #[arg(long)]
    url: String,
    /// This worker's number among the processes of the run.
    #[arg(long)]
    process: u32,
    /// Threads to run.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Start at this instant of the monotonic clock (nanoseconds).
    #[arg(long, default_value_t = 0)]
    start_at: u64,
}

#[derive(Subcommand)]
enum Mode {
    /// Run a seeded workload and write its history.
    History {
        #[command(flatten)]
        common: Common,
        /// The run's seed; each process derives its own from it.
        #[arg(long)]
        seed: u64,
        /// Steps per thread.
        #[arg(long)]
        steps: usize,
        /// Keys (1–3).
        #[arg(long, default_value_t = 2)]
        keys: u8,
        /// The history file to append to.
        #[arg(long)]
        out: std::path::PathBuf,
        /// Share one handle between the threads instead of one each.
        #[arg(long)]
        shared: bool,
    },
    /// Increment counter NAME (collection `counters`) TIMES times per thread.
    Increment {
        #[command(flatten)]
        common: Common,
        /// The counter's name.
        #[arg(long)]
        name: String,
        /// Increments per thread.
        #[arg(long)]
        times: usize,
    },
    /// Patch document NAME (collection `counters`) TIMES times per thread,
    /// each patch setting its own field.
    Disjoint {
        #[command(flatten)]
        common: Common,
        /// The document's name.
        #[arg(long)]
        name: String,
        /// Patches per thread.
        #[arg(long)]
        times: usize,
    },
    /// Answer JSON commands from stdin with one long-lived handle.
    Serve {
        /// The store URL.
        #[arg(long)]
        url: String,
    },
    /// The schema race's writers: random writes to `assets/a<i>`.
    SchemaWrites {
        #[command(flatten)]
        common: Common,
        /// The run's seed; each process and thread derives its own.
        #[arg(long)]
        seed: u64,
        /// Operations per thread.
        #[arg(long)]
        steps: usize,
        /// Documents (`a0`…).
        #[arg(long, default_value_t = 3)]
        docs: u8,
        /// The history file to append to.
        #[arg(long)]
        out: PathBuf,
        /// Write through a deliberately broken handle: `blind` or `no-guard`.
        #[arg(long)]
        broken: Option<String>,
        /// Sleep a random time up to this many microseconds between writes.
        #[arg(long, default_value_t = 0)]
        pause_us: u64,
    },
    /// Change the schema of `assets` until told to stop.
    SchemaChurn {
        #[command(flatten)]
        common: Common,
        /// The seed of the schemas chosen.
        #[arg(long)]
        seed: u64,
        /// Pause between changes, in microseconds.
        #[arg(long, default_value_t = 2000)]
        pause_us: u64,
        /// At most this many changes.
        #[arg(long, default_value_t = 100_000)]
        limit: usize,
        /// The history file to append to.
        #[arg(long)]
        out: PathBuf,
    },
    /// Follow the change feed.
    Follow {
        #[command(flatten)]
        common: Common,
        /// Start after this seq instead of the store's last one.
        #[arg(long)]
        after: Option<u64>,
        /// Stop after this many changes.
        #[arg(long)]
        max: Option<usize>,
        /// Where to append the reads made after each change.
        #[arg(long)]
        reads: PathBuf,
        /// Where to append the changes received.
        #[arg(long)]
        changes: PathBuf,
        /// Fail when still following after this many seconds.
        #[arg(long, default_value_t = 120)]
        timeout_s: u64,
    },
    /// Read workload keys through a `CachedStore`.
    CacheRead {
        #[command(flatten)]
        common: Common,
        /// Workload keys to read (`k0`…).
        #[arg(long, default_value_t = 2)]
        keys: u8,
        /// The cache's bound on staleness, in milliseconds.
        #[arg(long, default_value_t = 0)]
        staleness_ms: u64,
        /// Pause between reads, in microseconds.
        #[arg(long, default_value_t = 200)]
        pause_us: u64,
        /// The history file to append to.
        #[arg(long)]
        out: PathBuf,
        /// Fail when still reading after this many seconds.
        #[arg(long, default_value_t = 120)]
        timeout_s: u64,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("revstore-worker: {message}");
            ExitCode::FAILURE
        }
    }
}

/// One handle per thread, opened before the start so that opening is not
/// part of the race.
fn open_handles(url: &str, count: usize) -> Result<Vec<Store>, String> {
    (0..count)
        .map(|_| revstore_cli::open_store(url).map_err(|e| format!("opening {url}: {e}")))
        .collect()
}

fn wait_until(instant: u64) {
    while monotonic_nanos() < instant {
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.mode {
        Mode::History {
            common,
            seed,
            steps,
            keys,
            out,
            shared,
        } => {
            // Different processes run different operations on the same keys.
            let seed = seed
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .wrapping_add(u64::from(common.process));
            let workload = generate(seed, common.threads, steps, keys)?;
            let handles = Mutex::new(open_handles(&common.url, common.threads)?);
            let open = || {
                let mut handles = handles.lock().unwrap_or_else(|p| p.into_inner());
                // One handle per thread was opened; a shared run takes one.
                handles
                    .pop()
                    .unwrap_or_else(|| unreachable!("a handle per thread"))
            };
            let sink = HistoryWriter::create(&out)
                .map_err(|e| format!("creating {}: {e}", out.display()))?;
            wait_until(common.start_at);
            let mode = if shared {
                Handles::Shared
            } else {
                Handles::Own
            };
            run_threads(&open, mode, std::process::id(), &workload, &sink)
                .map_err(|e| format!("writing {}: {e}", out.display()))
        }
        Mode::Increment {
            common,
            name,
            times,
        } => on_threads(&common, |_, store| {
            increment(store, &name, times).map(|_| ())
        }),
        Mode::Disjoint {
            common,
            name,
            times,
        } => on_threads(&common, |thread, store| {
            let thread = u32::try_from(thread).unwrap_or(u32::MAX);
            disjoint_patches(store, &name, common.process, thread, times)
        }),
        Mode::Serve { url } => {
            let store =
                revstore_cli::open_store(&url).map_err(|e| format!("opening {url}: {e}"))?;
            let stdin = std::io::stdin().lock();
            revstore_tests::serve::serve(&store, stdin, std::io::stdout().lock())
                .map(|_| ())
                .map_err(|e| format!("serving: {e}"))
        }
        Mode::SchemaWrites {
            common,
            seed,
            steps,
            docs,
            out,
            broken,
            pause_us,
        } => {
            let broken = match broken.as_deref() {
                None => None,
                Some(name) => Some(
                    Broken::from_name(name).ok_or_else(|| format!("no broken setup {name:?}"))?,
                ),
            };
            let stores = open_handles(&common.url, common.threads)?
                .into_iter()
                .map(|s| broken.map_or_else(|| s.clone(), |b| b.wrap(&s)))
                .collect();
            let sink = history_file(&out)?;
            let seed = seed
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .wrapping_add(u64::from(common.process));
            wait_until(common.start_at);
            let writes = Writes {
                steps,
                docs,
                pause: Duration::from_micros(pause_us),
            };
            write_assets_on_threads(stores, std::process::id(), seed, writes, &sink)
                .map_err(|e| format!("writing {}: {e}", out.display()))
        }
        Mode::SchemaChurn {
            common,
            seed,
            pause_us,
            limit,
            out,
        } => {
            let store = open_one(&common.url)?;
            let sink = history_file(&out)?;
            let stop = Arc::new(AtomicBool::new(false));
            let flag = Arc::clone(&stop);
            on_stdin_lines(move |line| {
                let done = line.is_none_or(|l| l.trim() == "stop");
                if done {
                    flag.store(true, Ordering::Relaxed);
                }
                !done
            });
            wait_until(common.start_at);
            let client = Client {
                process: std::process::id(),
                thread: 0,
            };
            let pause = Duration::from_micros(pause_us);
            let made = churn_schema(&store, client, seed, pause, limit, &stop, &sink)
                .map_err(|e| format!("writing {}: {e}", out.display()))?;
            println!("{}", json!({ "changes": made }));
            Ok(())
        }
        Mode::Follow {
            common,
            after,
            max,
            reads,
            changes,
            timeout_s,
        } => {
            let store = open_one(&common.url)?;
            let reads_sink = history_file(&reads)?;
            let changes_sink = history_file(&changes)?;
            let cursor = take_cursor(&store)?;
            let start = after.unwrap_or(cursor.seq);
            println!(
                "{}",
                json!({ "seq": start, "invoke_ns": cursor.invoke_ns, "return_ns": cursor.return_ns })
            );
            // u64::MAX: no stop seq yet; the end of stdin stops at once.
            let stop_at = Arc::new(AtomicU64::new(u64::MAX));
            let flag = Arc::clone(&stop_at);
            on_stdin_lines(move |line| match line {
                None => {
                    flag.store(0, Ordering::Relaxed);
                    false
                }
                Some(l) => {
                    if let Some(seq) = l.trim().strip_prefix("stop ").and_then(|s| s.parse().ok()) {
                        flag.store(seq, Ordering::Relaxed);
                    }
                    true
                }
            });
            let seq = move || Some(stop_at.load(Ordering::Relaxed)).filter(|&s| s != u64::MAX);
            let until = Until {
                changes: max,
                seq: &seq,
                timeout: Duration::from_secs(timeout_s),
            };
            let client = Client {
                process: std::process::id(),
                thread: 0,
            };
            let followed = follow(&store, client, start, until, &reads_sink, &mut |c| {
                changes_sink.append(&c)
            })?;
            println!(
                "{}",
                json!({ "cursor": followed.cursor, "changes": followed.changes })
            );
            Ok(())
        }
        Mode::CacheRead {
            common,
            keys,
            staleness_ms,
            pause_us,
            out,
            timeout_s,
        } => {
            let store = open_one(&common.url)?;
            let cache = CachedStore::new(store, Duration::from_millis(staleness_ms))
                .map_err(|e| format!("opening the cache: {e}"))?;
            let sink = history_file(&out)?;
            let stop = Arc::new(AtomicBool::new(false));
            let flag = Arc::clone(&stop);
            on_stdin_lines(move |line| {
                let done = line.is_none_or(|l| l.trim() == "stop");
                if done {
                    flag.store(true, Ordering::Relaxed);
                }
                !done
            });
            println!("ready");
            wait_until(common.start_at);
            let client = Client {
                process: std::process::id(),
                thread: 0,
            };
            let made = read_through_cache(
                &cache,
                client,
                keys,
                Duration::from_micros(pause_us),
                &|| stop.load(Ordering::Relaxed),
                Duration::from_secs(timeout_s),
                &sink,
            )?;
            cache.catch_up().map_err(|e| format!("catching up: {e}"))?;
            for key in 0..keys {
                let name = key_name(key);
                let read = cached_read(&cache, client, &name, format!("{client}-final-{name}"));
                println!(
                    "{}",
                    json!({"collection": COLLECTION, "name": name, "outcome": read.outcome})
                );
            }
            println!("{}", json!({ "reads": made }));
            Ok(())
        }
    }
}

fn open_one(url: &str) -> Result<Store, String> {
    revstore_cli::open_store(url).map_err(|e| format!("opening {url}: {e}"))
}

fn history_file(path: &std::path::Path) -> Result<HistoryWriter, String> {
    HistoryWriter::create(path).map_err(|e| format!("creating {}: {e}", path.display()))
}

/// Hands every stdin line (then `None` at its end or on an error) to
/// `on_line` on a thread of its own, until `on_line` answers false.
fn on_stdin_lines(mut on_line: impl FnMut(Option<&str>) -> bool + Send + 'static) {
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            let Ok(line) = line else { break };
            if !on_line(Some(&line)) {
                return;
            }
        }
        on_line(None);
    });
}

/// Runs `work` on one thread per handle, started together.
fn on_threads<F>(common: &Common, work: F) -> Result<(), String>
where
    F: Fn(usize, &Store) -> revstore::Result<()> + Sync,
{
    let handles = open_handles(&common.url, common.threads)?;
    let barrier = Barrier::new(handles.len());
    wait_until(common.start_at);
    std::thread::scope(|scope| {
        let threads: Vec<_> = handles
            .iter()
            .enumerate()
            .map(|(i, store)| {
                let (barrier, work) = (&barrier, &work);
                scope.spawn(move || {
                    barrier.wait();
                    work(i, store).map_err(|e| format!("thread {i}: {e}"))
                })
            })
            .collect();
        let results: Vec<Result<(), String>> = threads
            .into_iter()
            .map(|t| {
                t.join()
                    .unwrap_or_else(|_| Err("a thread panicked".to_owned()))
            })
            .collect();
        results.into_iter().collect()
    })
}
