//! One OS process of the multi-process suites: opens a store from a URL and
//! runs a workload on several threads.
//!
//! Modes:
//! - `history`: a seeded workload, every operation appended to a history
//!   file as a JSON line (clients are `p<pid>-t<thread>`);
//! - `increment`: read → compare-and-swap → retry increments of a counter;
//! - `disjoint`: merge patches without precondition, each setting its own
//!   field `p<process>_t<thread>_<i>`.
//!
//! Every thread opens its own handle (as separate programs would), and all
//! start together: at `--start-at` on the system-wide monotonic clock, so
//! that the processes of one test overlap as much as possible.

use std::process::ExitCode;
use std::sync::{Barrier, Mutex};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use revstore::testkit::clock::monotonic_nanos;
use revstore::testkit::history::HistoryWriter;
use revstore::testkit::workload::{disjoint_patches, generate, increment, run_threads, Handles};
use revstore::Store;

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
    }
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
