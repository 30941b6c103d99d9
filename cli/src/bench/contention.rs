//! The `contention` group: T writers on one key, and T writers on a key
//! each, as threads (sharing one handle, or each with its own) and as OS
//! processes, for T in the plan's writer counts. Every figure is the total
//! throughput of all writers, compared with the single writer's figure
//! measured in the same rounds.
//!
//! Writers on a key each (processes, and threads sharing a handle) are
//! also measured without revstore, in rounds interleaved with revstore's:
//! for SQLite, raw conditional `UPDATE`s of a row each in a database of
//! their own, with revstore's pragmas, polling for the write lock as
//! revstore does; for YAML, raw replacements of a file each in one folder
//! (temp file, fsync, rename, folder fsync), as revstore-yaml replaces a
//! document. SQLite lets one writer at a time commit to a file, and
//! processes cannot share a commit, so each commit waits for its own WAL
//! sync in turn; renames in one folder take the folder's lock in turn.
//! The raw rows measure how far the disk and the file system let writers
//! scale at this moment, beside what revstore gets.
//!
//! Lost races are counted by a backend wrapper: `retries` are commits that
//! lost and were re-applied by the engine (patches without a precondition),
//! `conflicts` are compare-and-swaps refused and retried by the CAS loop.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::time::Instant;

use revstore::Store;
use serde_json::Value;

use super::measure::{ops_lasting, Samples};
use super::raw::{RawFile, RawSqlite};
use super::report::{Row, Target, Unit};
use super::subject::{body_of_size, Config, Counting, Kind};
use super::worker::{
    cas_loop, patch_loop, raw_file_name, raw_update_loop, raw_write_loop, Spawned, Task, WorkerArgs,
};
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

impl Round {
    /// Adds a round's counts to these totals.
    fn add(&mut self, round: Round) {
        self.ops += round.ops;
        self.conflicts += round.conflicts;
        self.retries += round.retries;
    }

    /// `row` with these totals' retries and conflicts per operation.
    fn noted(&self, row: Row) -> Row {
        let per_op = |n: u64| n as f64 / self.ops.max(1) as f64;
        row.note("retries/op", per_op(self.retries))
            .note("conflicts/op", per_op(self.conflicts))
    }
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
    // Process rounds write three times as much: at full durability a
    // third is ~20 writes a process, a round of a few milliseconds, which
    // the noise of a shared machine swamps.
    let ops = match writers {
        Writers::Processes => plan.ops(setup.config).max(2),
        _ => (plan.ops(setup.config) / 3).max(2),
    };
    let base_ops = ops;
    let ops = sized_to_last(ctx, setup, work, writers, None, base_ops)?;
    let counts = plan.writers.clone();
    let raw = raw_baseline(setup, work, writers, &counts)?;
    // The raw writers are faster: their rounds are sized on their own rate.
    let raw_ops = match &raw {
        Some(raw) => sized_to_last(ctx, setup, work, writers, Some(&raw.path), base_ops)?,
        None => ops,
    };
    let raw_counts = raw.as_ref().map_or(&[][..], |r| &r.counts[..]);
    let mut samples = vec![Samples::default(); counts.len()];
    let mut totals = vec![Round::default(); counts.len()];
    let mut raw_samples = vec![Samples::default(); raw_counts.len()];
    let mut raw_totals = vec![Round::default(); raw_counts.len()];
    let mut round_no = 0usize;
    for _ in 0..plan.contention_samples {
        for (k, &t) in counts.iter().enumerate() {
            round_no += 1;
            let round = match writers {
                Writers::Processes => {
                    let start = setup.dir.join(format!("start-{round_no}"));
                    processes(ctx, setup, work, None, t, ops, start)?
                }
                _ => threads(setup, work, writers, t, ops)?,
            };
            samples[k].push_rate(round.ops_per_sec);
            totals[k].add(round);
            // The raw round of the same count follows at once, so both
            // see the same moment of a noisy machine.
            if let (Some(raw), Some(j)) = (&raw, raw_counts.iter().position(|&r| r == t)) {
                round_no += 1;
                let round = match writers {
                    Writers::Processes => {
                        let start = setup.dir.join(format!("start-{round_no}"));
                        processes(ctx, setup, work, Some(&raw.path), t, raw_ops, start)?
                    }
                    _ => raw_threads(&raw.path, setup.config, t, raw_ops)?,
                };
                raw_samples[j].push_rate(round.ops_per_sec);
                raw_totals[j].add(round);
            }
        }
    }
    let single = samples[0].median_rate();
    let raw_scaling = match (raw_samples.first(), raw_samples.last()) {
        (Some(one), Some(most)) if raw_counts.len() > 1 => {
            Some(most.median_rate() / one.median_rate().max(f64::MIN_POSITIVE))
        }
        _ => None,
    };
    let mut rows = Vec::new();
    for (k, &t) in counts.iter().enumerate() {
        let mut row = Row::from_samples(
            GROUP,
            label(work, writers, t),
            setup.config.kind.name(),
            setup.config.durability_name(),
            Unit::OpsPerSec,
            &samples[k],
        )
        .against("1 writer", single);
        row = totals[k].noted(row);
        if t == 4 {
            row = row.target(match work {
                Work::OwnPatch => Target::RatioAtLeast(1.0),
                _ => Target::RatioAtLeast(0.5),
            });
        }
        let most_raw = raw_counts.len() > 1 && raw_counts.last() == Some(&t);
        if let (true, Some(scaling)) = (most_raw, raw_scaling) {
            // The same ratio without revstore: the ceiling the disk (and
            // SQLite's one writer) set for this row.
            row = row.note("raw-scaling", scaling);
        }
        rows.push(row);
        if most_raw {
            rows.extend(raw_rows(
                setup,
                writers,
                raw_counts,
                &raw_samples,
                &raw_totals,
                (t, &samples[k]),
            ));
        }
    }
    Ok(rows)
}

/// The raw baseline of a round of writers on keys of their own: a SQLite
/// database or a folder of its own, and the writer counts it is measured
/// at.
struct RawBaseline {
    path: PathBuf,
    counts: Vec<usize>,
    /// For SQLite, a connection kept open between rounds, as the parent
    /// keeps the store's, so that the WAL file is reused rather than made
    /// anew by every round's first commit.
    _held: Option<RawSqlite>,
}

/// For writers on a key each (processes, or threads sharing a handle),
/// the raw baseline: the same writes without revstore — SQLite's
/// conditional `UPDATE` of a row, or YAML's replacement of a file —
/// measured with one writer and with the count nearest 4 (where the
/// target is set).
fn raw_baseline(
    setup: &Setup<'_>,
    work: Work,
    writers: Writers,
    counts: &[usize],
) -> Result<Option<RawBaseline>, CliError> {
    let file = match (work, writers, setup.config.kind) {
        (Work::OwnPatch, Writers::Processes, Kind::Sqlite) => "raw-procs.sqlite",
        (Work::OwnPatch, Writers::SharedHandle, Kind::Sqlite) => "raw-threads.sqlite",
        (Work::OwnPatch, Writers::Processes, Kind::Yaml) => "raw-procs",
        (Work::OwnPatch, Writers::SharedHandle, Kind::Yaml) => "raw-threads",
        _ => return Ok(None),
    };
    let path = setup.dir.join(file);
    let held = match setup.config.kind {
        // Created here, so that the first processes do not race to switch
        // a new file to WAL.
        Kind::Sqlite => Some(RawSqlite::open(&path, setup.config.durability)?),
        _ => {
            RawFile::new(&path, setup.config.durability)?;
            None
        }
    };
    let mut raw_counts = vec![1];
    if let Some(&most) = counts
        .iter()
        .filter(|&&t| t > 1)
        .min_by_key(|t| t.abs_diff(4))
    {
        raw_counts.push(most);
    }
    Ok(Some(RawBaseline {
        path,
        counts: raw_counts,
        _held: held,
    }))
}

/// The raw rows, placed after revstore's row of `revstore.0` processes
/// (whose samples are `revstore.1`): each raw count, the largest against
/// the single raw process, and revstore against raw at that count.
fn raw_rows(
    setup: &Setup<'_>,
    writers: Writers,
    counts: &[usize],
    samples: &[Samples],
    totals: &[Round],
    revstore: (usize, &Samples),
) -> Vec<Row> {
    let backend = setup.config.kind.name();
    let durability = setup.config.durability_name();
    let unit = match writers {
        Writers::Processes => "process",
        _ => "thread",
    };
    let raw_label = |t: usize| format!("{t} {}", plural(t, unit));
    let write = match setup.config.kind {
        Kind::Sqlite => "UPDATE",
        _ => "file write",
    };
    let mut rows = Vec::new();
    for (j, &t) in counts.iter().enumerate() {
        let mut row = Row::from_samples(
            GROUP,
            format!("own keys raw {write}, {}", raw_label(t)),
            backend,
            durability,
            Unit::OpsPerSec,
            &samples[j],
        );
        if j > 0 {
            row = row.against_samples(format!("raw {}", raw_label(counts[0])), &samples[0]);
        }
        rows.push(totals[j].noted(row));
    }
    let (t, revstore_samples) = revstore;
    if let Some(j) = counts.iter().position(|&c| c == t) {
        rows.push(
            Row::from_samples(
                GROUP,
                format!(
                    "{} vs raw {}",
                    label(Work::OwnPatch, writers, t),
                    raw_label(t)
                ),
                backend,
                durability,
                Unit::OpsPerSec,
                revstore_samples,
            )
            .against_samples(format!("raw {}", raw_label(t)), &samples[j]),
        );
    }
    rows
}

/// One round of `t` raw writer threads, `ops` writes each, each on a
/// record of its own at `path` — a connection and a row of its own in
/// the raw SQLite database, or a file of its own in the raw folder: the
/// baseline of revstore threads on keys of their own.
fn raw_threads(path: &Path, config: Config, t: usize, ops: usize) -> Result<Round, CliError> {
    let body = body_of_size(1 << 10).to_string();
    let (elapsed, missed) = match config.kind {
        Kind::Yaml => timed_writers(
            t,
            |w| {
                let raw = RawFile::new(path, config.durability)?;
                let name = raw_file_name(&key_of(Work::OwnPatch, w));
                raw.write(&name, body.as_bytes())?;
                Ok((raw, name))
            },
            |_, (raw, name)| raw_write_loop(&raw, &name, body.as_bytes(), ops),
        )?,
        _ => timed_writers(
            t,
            |w| {
                let mut raw = RawSqlite::open(path, config.durability)?;
                raw.poll_for_locks()?;
                let key = key_of(Work::OwnPatch, w);
                raw.put(C, &key, &body)?;
                Ok((raw, key))
            },
            |_, (mut raw, key)| raw_update_loop(&mut raw, C, &key, &body, ops),
        )?,
    };
    let total = (t * ops) as u64;
    Ok(Round {
        ops_per_sec: total as f64 / elapsed.max(1e-9),
        ops: total,
        conflicts: missed,
        retries: 0,
    })
}

/// Writes per writer in a round: at least `ops`, and at least what one
/// writer alone (of revstore, or raw on the database at `raw`) writes in
/// the plan's `sample_time`, measured by an untimed round of one writer
/// (which also warms the store's caches). Rounds of a
/// few milliseconds (66 relaxed SQLite writes a thread took about 2 ms)
/// measured threads and processes starting and ending at different
/// moments more than writers contending: 4 threads on one key made
/// 0.30–0.51× one writer in such rounds and 0.84–0.87× in rounds of 600
/// writes a thread, on the same build.
fn sized_to_last(
    ctx: &Context<'_>,
    setup: &Setup<'_>,
    work: Work,
    writers: Writers,
    raw: Option<&Path>,
    ops: usize,
) -> Result<usize, CliError> {
    let time = ctx.plan.sample_time;
    if time.is_zero() {
        return Ok(ops);
    }
    let round = match (writers, raw) {
        (Writers::Processes, _) => {
            let start = setup.dir.join("start-sizing");
            processes(ctx, setup, work, raw, 1, ops, start)?
        }
        (_, Some(raw)) => raw_threads(raw, setup.config, 1, ops)?,
        (_, None) => threads(setup, work, writers, 1, ops)?,
    };
    Ok(ops_lasting(ops, round.ops_per_sec, time))
}

/// Runs `t` writer threads: each prepares (untimed), all meet, then each
/// writes, returning its conflicts. Returns the span from the first start
/// to the last end, in seconds, and the conflicts summed.
fn timed_writers<P>(
    t: usize,
    prepare: impl Fn(usize) -> Result<P, CliError> + Sync,
    write: impl Fn(usize, P) -> Result<u64, CliError> + Sync,
) -> Result<(f64, u64), CliError> {
    let barrier = Barrier::new(t);
    let results: Vec<Result<(Instant, Instant, u64), CliError>> = std::thread::scope(|scope| {
        let joins: Vec<_> = (0..t)
            .map(|w| {
                let (barrier, prepare, write) = (&barrier, &prepare, &write);
                scope.spawn(move || {
                    let prepared = prepare(w);
                    // Met even by a writer that failed to prepare, so that
                    // no other waits for it for ever.
                    barrier.wait();
                    let prepared = prepared?;
                    let start = Instant::now();
                    let conflicts = write(w, prepared)?;
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
    let mut span: Option<(Instant, Instant)> = None;
    let mut conflicts = 0;
    for result in results {
        let (start, end, c) = result?;
        span = Some(span.map_or((start, end), |(f, l)| (f.min(start), l.max(end))));
        conflicts += c;
    }
    let elapsed = span.map_or(0.0, |(f, l)| l.duration_since(f).as_secs_f64());
    Ok((elapsed, conflicts))
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
    let (elapsed, conflicts) = timed_writers(
        t,
        |w| Ok(handles[w].store()),
        |w, store: Store| {
            let key = key_of(work, w);
            match work {
                Work::HotCas => cas_loop(&store, C, &key, ops),
                _ => patch_loop(&store, C, &key, w, ops).map(|()| 0),
            }
        },
    )?;
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
/// by `start` appearing: on the store, or raw on the SQLite database at
/// `raw`.
fn processes(
    ctx: &Context<'_>,
    setup: &Setup<'_>,
    work: Work,
    raw: Option<&Path>,
    t: usize,
    ops: usize,
    start: PathBuf,
) -> Result<Round, CliError> {
    let mut spawned = Vec::new();
    for w in 0..t {
        let args = WorkerArgs {
            backend: setup.config.kind.name().to_owned(),
            path: raw.unwrap_or(setup.location).to_path_buf(),
            durability: setup.config.durability_name().to_owned(),
            task: match (raw, work) {
                (Some(_), _) => Task::RawUpdate,
                (None, Work::HotCas) => Task::Cas,
                (None, _) => Task::Patch,
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

    /// A relaxed SQLite store in `dir`: its configuration, location and a
    /// shared counting handle, for a [`Setup`].
    fn relaxed_sqlite(dir: &Path) -> (Config, PathBuf, Arc<Counting>) {
        let config = Config {
            kind: Kind::Sqlite,
            durability: Durability::Relaxed,
        };
        let location = config.location(dir);
        let shared = Counting::new(config.open(&location).unwrap());
        (config, location, shared)
    }

    #[test]
    fn threads_on_a_hot_key_lose_no_update_and_count_retries() {
        let dir = tempfile::tempdir().unwrap();
        let (config, location, shared) = relaxed_sqlite(dir.path());
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
    fn sqlite_processes_on_own_keys_get_raw_rows_beside_revstore() {
        let dir = tempfile::tempdir().unwrap();
        let (config, location, shared) = relaxed_sqlite(dir.path());
        let setup = Setup {
            config,
            location: &location,
            dir: dir.path(),
            shared: &shared,
        };
        let all = [1, 2, 4, 8];
        for (work, writers) in [
            (Work::HotPatch, Writers::Processes),
            (Work::HotPatch, Writers::SharedHandle),
            (Work::OwnPatch, Writers::OwnHandles),
        ] {
            assert!(raw_baseline(&setup, work, writers, &all).unwrap().is_none());
        }
        let raw = raw_baseline(&setup, Work::OwnPatch, Writers::Processes, &all)
            .unwrap()
            .unwrap();
        assert_eq!(raw.counts, vec![1, 4]);
        assert!(raw.path.exists());
        assert_ne!(raw.path, location);
        let quick = raw_baseline(&setup, Work::OwnPatch, Writers::Processes, &[1, 2]).unwrap();
        assert_eq!(quick.unwrap().counts, vec![1, 2]);

        let rate = |r: f64| {
            let mut s = Samples::default();
            s.push_rate(r);
            s
        };
        let raw_samples = [rate(100.0), rate(80.0)];
        let revstore = rate(60.0);
        let threads = raw_baseline(&setup, Work::OwnPatch, Writers::SharedHandle, &all)
            .unwrap()
            .unwrap();
        assert_ne!(threads.path, raw.path);
        let round = raw_threads(&threads.path, config, 2, 3).unwrap();
        assert_eq!((round.ops, round.conflicts), (6, 0));
        assert!(round.ops_per_sec > 0.0);
        // Processes get a raw baseline of processes, threads sharing a
        // handle one of threads.
        for (writers, counts, expected) in [
            (
                Writers::Processes,
                &raw.counts,
                [
                    "own keys raw UPDATE, 1 process",
                    "own keys raw UPDATE, 4 processes",
                    "own keys patch, 4 processes vs raw 4 processes",
                ],
            ),
            (
                Writers::SharedHandle,
                &threads.counts,
                [
                    "own keys raw UPDATE, 1 thread",
                    "own keys raw UPDATE, 4 threads",
                    "own keys patch, 4 threads, shared handle vs raw 4 threads",
                ],
            ),
        ] {
            let rows = raw_rows(
                &setup,
                writers,
                counts,
                &raw_samples,
                &[Round::default(); 2],
                (4, &revstore),
            );
            let cases: Vec<&str> = rows.iter().map(|r| r.case.as_str()).collect();
            assert_eq!(cases, expected);
            assert_eq!(rows[0].ratio(), None);
            assert!((rows[1].ratio().unwrap() - 0.8).abs() < 1e-9);
            assert!((rows[2].ratio().unwrap() - 0.75).abs() < 1e-9);
            assert!(rows.iter().all(|r| r.target.is_none()));
        }
    }

    #[test]
    fn yaml_writers_on_own_keys_get_raw_file_rows_beside_revstore() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            kind: Kind::Yaml,
            durability: Durability::Relaxed,
        };
        let location = config.location(dir.path());
        let shared = Counting::new(config.open(&location).unwrap());
        let setup = Setup {
            config,
            location: &location,
            dir: dir.path(),
            shared: &shared,
        };
        assert!(
            raw_baseline(&setup, Work::HotPatch, Writers::Processes, &[1, 4])
                .unwrap()
                .is_none()
        );
        for writers in [Writers::Processes, Writers::SharedHandle] {
            let raw = raw_baseline(&setup, Work::OwnPatch, writers, &[1, 2, 4, 8])
                .unwrap()
                .unwrap();
            assert_eq!(raw.counts, vec![1, 4]);
            assert!(raw.path.is_dir());
            assert!(!raw.path.starts_with(&location));
        }
        let folder = dir.path().join("raw-threads");
        let round = raw_threads(&folder, config, 3, 4).unwrap();
        assert_eq!((round.ops, round.conflicts), (12, 0));
        let written: Vec<String> = (0..3).map(|w| key_of(Work::OwnPatch, w)).collect();
        assert_eq!(super::super::raw::list_folder(&folder).unwrap(), written);
        let rate = |r: f64| {
            let mut s = Samples::default();
            s.push_rate(r);
            s
        };
        let rows = raw_rows(
            &setup,
            Writers::Processes,
            &[1, 4],
            &[rate(100.0), rate(90.0)],
            &[Round::default(); 2],
            (4, &rate(45.0)),
        );
        let cases: Vec<&str> = rows.iter().map(|r| r.case.as_str()).collect();
        assert_eq!(
            cases,
            [
                "own keys raw file write, 1 process",
                "own keys raw file write, 4 processes",
                "own keys patch, 4 processes vs raw 4 processes",
            ]
        );
        assert!((rows[2].ratio().unwrap() - 0.5).abs() < 1e-9);
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
