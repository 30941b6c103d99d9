//! The `contention` group: T writers on one key, and T writers on a key
//! each, as threads (sharing one handle, or each with its own) and as OS
//! processes, for T in the plan's writer counts. Every figure is the total
//! throughput of all writers, compared with the single writer's figure
//! measured in the same rounds.
//!
//! Lost races are counted by a backend wrapper: `retries` are commits that
//! lost and were re-applied by the engine (patches without a precondition),
//! `conflicts` are compare-and-swaps refused and retried by the CAS loop.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::time::Instant;

use revstore::Store;
use serde_json::Value;

use super::measure::Samples;
use super::report::{Row, Target, Unit};
use super::subject::{body_of_size, Config, Counting, Kind};
use super::worker::{cas_loop, patch_loop, Spawned, Task, WorkerArgs};
use super::Context;
use crate::error::CliError;

const GROUP: &str = "contention";
const C: &str = "bench";
const HOT: &str = "hot";

/// What the writers do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Work {
    /// Merge-patch their own field of one key.
    HotPatch,
    /// Increment one key's counter by compare-and-swap.
    HotCas,
    /// Merge-patch a key each.
    OwnPatch,
}

/// Who the writers are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writers {
    /// Threads sharing one handle (`Store` clones).
    SharedHandle,
    /// Threads with a handle each.
    OwnHandles,
    /// OS processes, a handle each.
    Processes,
}

/// What one round of T writers did.
#[derive(Debug, Clone, Copy, Default)]
struct Round {
    ops_per_sec: f64,
    ops: u64,
    conflicts: u64,
    retries: u64,
}

/// The key writer `w` writes.
fn key_of(work: Work, w: usize) -> String {
    match work {
        Work::OwnPatch => format!("k{w}"),
        _ => HOT.to_owned(),
    }
}

/// `thread`/`threads`, `process`/`processes`.
fn plural(n: usize, word: &str) -> String {
    match (n, word.ends_with('s')) {
        (1, _) => word.to_owned(),
        (_, true) => format!("{word}es"),
        _ => format!("{word}s"),
    }
}

fn label(work: Work, writers: Writers, t: usize) -> String {
    let what = match work {
        Work::HotPatch => "hot key patch",
        Work::HotCas => "hot key CAS",
        Work::OwnPatch => "own keys patch",
    };
    let who = match writers {
        Writers::SharedHandle => format!("{t} {}, shared handle", plural(t, "thread")),
        Writers::OwnHandles => format!("{t} {}, own handles", plural(t, "thread")),
        Writers::Processes => format!("{t} {}", plural(t, "process")),
    };
    format!("{what}, {who}")
}

/// Runs the group.
///
/// # Errors
/// The stores' errors; a worker process that failed.
pub fn run(ctx: &mut Context<'_>) -> Result<Vec<Row>, CliError> {
    let mut rows = Vec::new();
    for config in Config::all() {
        let dir = ctx.folder(&format!(
            "{}-{}",
            config.kind.name(),
            config.durability_name()
        ))?;
        let location = config.location(&dir);
        let shared = Counting::new(config.open(&location)?);
        let store = shared.store();
        let body = body_of_size(1 << 10);
        store.create(C, HOT, body.clone())?;
        for w in 0..ctx.plan.writers.iter().copied().max().unwrap_or(1) {
            store.create(C, &key_of(Work::OwnPatch, w), body.clone())?;
        }
        let mut combos = vec![
            (Work::HotPatch, Writers::SharedHandle),
            (Work::HotCas, Writers::SharedHandle),
            (Work::OwnPatch, Writers::SharedHandle),
        ];
        if config.kind != Kind::Memory {
            combos.extend([
                (Work::HotPatch, Writers::OwnHandles),
                (Work::HotPatch, Writers::Processes),
                (Work::HotCas, Writers::Processes),
                (Work::OwnPatch, Writers::Processes),
            ]);
        }
        let setup = Setup {
            config,
            location: &location,
            dir: &dir,
            shared: &shared,
        };
        for (work, writers) in combos {
            for row in measure(ctx, &setup, work, writers)? {
                ctx.done(&row);
                rows.push(row);
            }
        }
    }
    Ok(rows)
}

struct Setup<'a> {
    config: Config,
    location: &'a Path,
    dir: &'a Path,
    shared: &'a Arc<Counting>,
}

fn measure(
    ctx: &mut Context<'_>,
    setup: &Setup<'_>,
    work: Work,
    writers: Writers,
) -> Result<Vec<Row>, CliError> {
    let plan = ctx.plan.clone();
    let ops = (plan.ops(setup.config) / 3).max(2);
    let counts = plan.writers.clone();
    let mut samples = vec![Samples::default(); counts.len()];
    let mut totals = vec![Round::default(); counts.len()];
    let mut round_no = 0usize;
    for _ in 0..plan.contention_samples {
        for (k, &t) in counts.iter().enumerate() {
            round_no += 1;
            let round = match writers {
                Writers::Processes => {
                    let start = setup.dir.join(format!("start-{round_no}"));
                    processes(ctx, setup, work, t, ops, start)?
                }
                _ => threads(setup, work, writers, t, ops)?,
            };
            samples[k].push_rate(round.ops_per_sec);
            totals[k].ops += round.ops;
            totals[k].conflicts += round.conflicts;
            totals[k].retries += round.retries;
        }
    }
    let single = samples[0].median_rate();
    let mut rows = Vec::new();
    for (k, &t) in counts.iter().enumerate() {
        let per_op = |n: u64| n as f64 / totals[k].ops.max(1) as f64;
        let mut row = Row::from_samples(
            GROUP,
            label(work, writers, t),
            setup.config.kind.name(),
            setup.config.durability_name(),
            Unit::OpsPerSec,
            &samples[k],
        )
        .against("1 writer", single)
        .note("retries/op", per_op(totals[k].retries))
        .note("conflicts/op", per_op(totals[k].conflicts));
        if t == 4 {
            row = row.target(match work {
                Work::OwnPatch => Target::RatioAtLeast(1.0),
                _ => Target::RatioAtLeast(0.5),
            });
        }
        rows.push(row);
    }
    Ok(rows)
}

/// One round of `t` threads, `ops` writes each.
fn threads(
    setup: &Setup<'_>,
    work: Work,
    writers: Writers,
    t: usize,
    ops: usize,
) -> Result<Round, CliError> {
    let handles: Vec<Arc<Counting>> = match writers {
        Writers::OwnHandles => (0..t)
            .map(|_| Ok(Counting::new(setup.config.open(setup.location)?)))
            .collect::<Result<_, CliError>>()?,
        _ => vec![setup.shared.clone(); t],
    };
    let lost_before: u64 = distinct_lost(&handles);
    let barrier = Barrier::new(t);
    let results: Vec<Result<(Instant, Instant, u64), CliError>> = std::thread::scope(|scope| {
        let joins: Vec<_> = handles
            .iter()
            .enumerate()
            .map(|(w, counting)| {
                let store: Store = counting.store();
                let barrier = &barrier;
                scope.spawn(move || {
                    let key = key_of(work, w);
                    barrier.wait();
                    let start = Instant::now();
                    let conflicts = match work {
                        Work::HotCas => cas_loop(&store, C, &key, ops)?,
                        _ => {
                            patch_loop(&store, C, &key, w, ops)?;
                            0
                        }
                    };
                    Ok((start, Instant::now(), conflicts))
                })
            })
            .collect();
        joins
            .into_iter()
            .map(|j| {
                j.join().unwrap_or_else(|_| {
                    Err(super::worker::worker_failed(
                        "a writer thread panicked".to_owned(),
                    ))
                })
            })
            .collect()
    });
    let mut first = None::<Instant>;
    let mut last = None::<Instant>;
    let mut conflicts = 0;
    for result in results {
        let (start, end, c) = result?;
        first = Some(first.map_or(start, |f| f.min(start)));
        last = Some(last.map_or(end, |l| l.max(end)));
        conflicts += c;
    }
    let elapsed = match (first, last) {
        (Some(f), Some(l)) => l.duration_since(f).as_secs_f64(),
        _ => 0.0,
    };
    let total = (t * ops) as u64;
    Ok(Round {
        ops_per_sec: total as f64 / elapsed.max(1e-9),
        ops: total,
        conflicts,
        retries: distinct_lost(&handles) - lost_before,
    })
}

/// The lost races counted by the distinct wrappers among `handles`.
fn distinct_lost(handles: &[Arc<Counting>]) -> u64 {
    let mut seen: Vec<*const Counting> = Vec::new();
    let mut sum = 0;
    for h in handles {
        let ptr = Arc::as_ptr(h);
        if !seen.contains(&ptr) {
            seen.push(ptr);
            sum += h.lost();
        }
    }
    sum
}

/// One round of `t` worker processes, `ops` writes each, started together
/// by `start` appearing.
fn processes(
    ctx: &Context<'_>,
    setup: &Setup<'_>,
    work: Work,
    t: usize,
    ops: usize,
    start: PathBuf,
) -> Result<Round, CliError> {
    let mut spawned = Vec::new();
    for w in 0..t {
        let args = WorkerArgs {
            backend: setup.config.kind.name().to_owned(),
            path: setup.location.to_path_buf(),
            durability: setup.config.durability_name().to_owned(),
            task: if work == Work::HotCas {
                Task::Cas
            } else {
                Task::Patch
            },
            collection: C.to_owned(),
            key: key_of(work, w),
            ops,
            writer: w,
            start_file: Some(start.clone()),
        };
        spawned.push(Spawned::start(&ctx.exe, &args)?);
    }
    for s in &mut spawned {
        s.ready()?;
    }
    std::fs::write(&start, b"go")
        .map_err(|e| CliError::Store(revstore::Error::io("create the start file", &start, e)))?;
    let mut round = Round::default();
    let (mut first, mut last) = (u64::MAX, 0u64);
    for s in spawned {
        let report = s.finish()?;
        let field = |name: &str| report.get(name).and_then(Value::as_u64).unwrap_or(0);
        first = first.min(field("start_ns"));
        last = last.max(field("end_ns"));
        round.ops += field("ops");
        round.conflicts += field("conflicts");
        round.retries += field("retries");
    }
    let _ = std::fs::remove_file(&start);
    let elapsed = last.saturating_sub(first) as f64 / 1e9;
    round.ops_per_sec = round.ops as f64 / elapsed.max(1e-9);
    Ok(round)
}

/// A store on `config` at `location` with default options (for tests).
#[cfg(test)]
fn open(config: Config, location: &Path) -> Store {
    Store::with_options(config.open(location).unwrap(), Default::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use revstore::Durability;

    #[test]
    fn threads_on_a_hot_key_lose_no_update_and_count_retries() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            kind: Kind::Sqlite,
            durability: Durability::Relaxed,
        };
        let location = config.location(dir.path());
        let shared = Counting::new(config.open(&location).unwrap());
        shared
            .store()
            .create(C, HOT, serde_json::json!({"counter": 0}))
            .unwrap();
        let setup = Setup {
            config,
            location: &location,
            dir: dir.path(),
            shared: &shared,
        };
        let round = threads(&setup, Work::HotCas, Writers::OwnHandles, 3, 5).unwrap();
        assert_eq!(round.ops, 15);
        assert!(round.ops_per_sec > 0.0);
        let doc = open(config, &location).get(C, HOT).unwrap().unwrap();
        assert_eq!(doc.body["counter"], 15);
    }

    #[test]
    fn labels_name_the_writers() {
        assert_eq!(
            label(Work::OwnPatch, Writers::Processes, 4),
            "own keys patch, 4 processes"
        );
        assert_eq!(key_of(Work::HotCas, 3), HOT);
    }
}
