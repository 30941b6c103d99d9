//! The crash suite: a writer process is killed with `SIGKILL` at random
//! moments, again and again, and after every kill the store must hold only
//! states the writer committed, none older than what it acknowledged, and
//! must answer a fresh handle at once.
//!
//! # How a backend runs it
//! One `#[test]` function plays both parts. Re-run by the campaign with the
//! child environment set ([`CrashChild::from_env`] answers `Some`), it opens
//! the store at [`CrashChild::location`] and calls [`run_crash_child`],
//! which writes until it is killed. Otherwise it builds a
//! [`CrashCampaign`] naming itself and calls [`run_crash_campaign`]:
//!
//! ```no_run
//! use std::path::Path;
//! use revstore::testkit::crash::{run_crash_campaign, run_crash_child, CrashCampaign, CrashChild};
//! use revstore::{MemoryBackend, Store};
//!
//! # fn open(_: &Path) -> revstore::Result<Store> { Ok(Store::open(MemoryBackend::new())) }
//! // A `#[test]` in the backend's tests; a memory store cannot be shared
//! // with a child process, so a real backend opens its files here.
//! fn sigkill_loses_no_acknowledged_write() {
//!     if let Some(child) = CrashChild::from_env() {
//!         let store = open(&child.location).unwrap();
//!         run_crash_child(&store, &child);
//!     }
//!     let root = std::env::temp_dir().join("crash-store");
//!     let campaign = CrashCampaign::new("sigkill_loses_no_acknowledged_write", &root);
//!     let summary = run_crash_campaign(&campaign, move || open(&root), Vec::new)
//!         .unwrap_or_else(|failure| panic!("{failure}"));
//!     eprintln!("{summary}");
//! }
//! ```
//!
//! # The protocol
//! The child writes to the keys `crash/k0` … (merge patches on a counter,
//! a field naming the write, a padding field of varying size and a nested
//! mapping; now and then a delete, and a re-create after it; with and
//! without a revision precondition). Before each write it prints the state
//! the write must produce (`intent`), after it the state the store returned
//! (`ack`), each as one line on its stdout, flushed. The parent reads the
//! lines on a thread and kills the child after a random delay: sometimes
//! while it starts or opens the store, mostly a random moment within a
//! write cycle after some number of acknowledgements.
//!
//! # What is checked after every kill
//! With a fresh handle (open, reads and the feed must answer within
//! [`RESPONSIVE_DEADLINE`]): every key reads without error and holds
//! exactly the last acknowledged state, or the state of the one write in
//! flight; the listing agrees; the change feed holds, in order, exactly the
//! committed writes (plus, where the backend documents at-least-once
//! delivery, lines of in-flight writes that never committed); the debris
//! the backend test counts stays within its bound. Then the parent writes
//! once itself (a compare-and-swap, also within the deadline) and the next
//! child continues on the same store. At the end the whole feed is checked
//! again from the start.

mod child;
mod model;
#[cfg(test)]
mod tests;

pub use child::{run_crash_child, CrashChild};
pub use model::FeedRule;

use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;

use super::soak_factor;
use crate::{Body, Change, Entry, Key, Patch, Precondition, Record, Result, Store};
use child::Line;
use model::{describe, Model, Resolution};

/// The collection the child writes to.
pub const COLLECTION: &str = "crash";

/// How many keys the child writes to (`k0`, `k1`, …).
pub const KEYS: usize = 3;

/// The environment variable holding the store location for a child; its
/// presence makes the test function act as the child.
pub const LOCATION_ENV: &str = "REVSTORE_CRASH_LOCATION";

/// The environment variable holding the child's seed.
const CHILD_SEED_ENV: &str = "REVSTORE_CRASH_CHILD_SEED";

/// The environment variable that fixes a campaign's seed (to replay the
/// write sequences of a failed run; kill moments stay random).
pub const SEED_ENV: &str = "REVSTORE_CRASH_SEED";

/// How long a fresh handle may take to open and answer the checks, and to
/// commit the parent's write, after a kill. Generous for a debug build on
/// a loaded two-core machine; a stale lock would hang far longer.
pub const RESPONSIVE_DEADLINE: Duration = Duration::from_secs(10);

/// A child exits by itself after this long, in case its parent is gone.
const CHILD_LIFETIME: Duration = Duration::from_secs(60);

/// How long the parent waits for a child to report that it is ready.
const STARTUP_DEADLINE: Duration = Duration::from_secs(30);

/// Marks the protocol's lines in the child's stdout, which libtest shares.
const PREFIX: &str = "revstore-crash:";

/// Kills per campaign in CI, before the soak factor.
const DEFAULT_KILLS: usize = 400;

fn key_name(index: usize) -> String {
    format!("k{index}")
}

// ---------------------------------------------------------------- random

/// SplitMix64: tiny, seedable, good enough to vary writes and delays.
#[derive(Debug, Clone)]
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }

    /// True with probability `1/n`.
    fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }
}

fn clock_seed() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ u64::from(std::process::id())
}

// ---------------------------------------------------------------- parent

/// A crash campaign's settings. Build with [`CrashCampaign::new`] and
/// adjust the public fields.
#[derive(Debug, Clone)]
pub struct CrashCampaign {
    /// The test function's name as libtest knows it (for `--exact`): the
    /// child is this test binary re-run with only that test.
    pub test_name: String,
    /// The store location handed to each child (see
    /// [`CrashChild::location`]).
    pub location: PathBuf,
    /// How many children to kill (default 400 × the soak factor).
    pub kills: usize,
    /// Seeds the children's writes and the kill moments (default: from
    /// `REVSTORE_CRASH_SEED`, else from the clock). Failures name it.
    pub seed: u64,
    /// The most debris entries the backend's debris count may report
    /// after any kill (default 0).
    pub max_debris: usize,
    /// What the change feed may hold besides the committed writes.
    pub feed_rule: FeedRule,
}

impl CrashCampaign {
    /// A campaign of the default size, exactly-once feed, no debris
    /// allowed.
    pub fn new(test_name: &str, location: &Path) -> CrashCampaign {
        let seed = std::env::var(SEED_ENV)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(clock_seed);
        CrashCampaign {
            test_name: test_name.to_owned(),
            location: location.to_owned(),
            kills: DEFAULT_KILLS * soak_factor() as usize,
            seed,
            max_debris: 0,
            feed_rule: FeedRule::ExactlyOnce,
        }
    }
}

/// Why a campaign failed: the kill after which the check failed, and what
/// was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrashFailure {
    /// The campaign's seed (set `REVSTORE_CRASH_SEED` to replay the writes).
    pub seed: u64,
    /// The 1-based kill after which the check failed (0: the final check).
    pub kill: usize,
    /// What was wrong, naming the key, revision or file.
    pub reason: String,
}

impl fmt::Display for CrashFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kill == 0 {
            write!(
                f,
                "crash campaign (seed {}), final check: {}",
                self.seed, self.reason
            )
        } else {
            write!(
                f,
                "crash campaign (seed {}), after kill {}: {}",
                self.seed, self.kill, self.reason
            )
        }
    }
}

impl std::error::Error for CrashFailure {}

/// What a campaign did; `Display` gives a one-line summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrashSummary {
    /// Children killed.
    pub kills: usize,
    /// Kills that landed before the child reported the store open.
    pub kills_before_ready: usize,
    /// Kills that landed after the child was ready but before it
    /// announced a write.
    pub kills_before_first_write: usize,
    /// Writes the children acknowledged.
    pub acks: usize,
    /// Writes in flight at a kill that turned out committed.
    pub in_flight_committed: usize,
    /// Writes in flight at a kill that turned out not committed.
    pub in_flight_lost: usize,
    /// Feed lines of writes that never committed (at-least-once rule).
    pub abandoned_feed_lines: usize,
    /// The most debris reported after any kill.
    pub max_debris: usize,
    /// The longest a fresh handle took to open and answer the checks, or
    /// to commit the parent's write, after a kill.
    pub slowest_recovery: Duration,
    /// The campaign's wall-clock time.
    pub elapsed: Duration,
}

impl fmt::Display for CrashSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} kills ({} before the store was open, {} before the first write), {} acknowledged \
             writes; writes in flight at a kill: {} committed, {} not; {} feed lines of \
             uncommitted writes; debris at most {}; slowest fresh-handle step {} ms; {:.1} s",
            self.kills,
            self.kills_before_ready,
            self.kills_before_first_write,
            self.acks,
            self.in_flight_committed,
            self.in_flight_lost,
            self.abandoned_feed_lines,
            self.max_debris,
            self.slowest_recovery.as_millis(),
            self.elapsed.as_secs_f64()
        )
    }
}

/// Runs `f` on its own thread and waits at most `deadline` for it, so
/// that a store hung on a stale lock fails the campaign instead of hanging
/// it (the stuck thread is left behind).
fn within_deadline<T, F>(
    what: &str,
    deadline: Duration,
    f: F,
) -> std::result::Result<(T, Duration), String>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (sender, receiver) = mpsc::channel();
    let start = Instant::now();
    thread::Builder::new()
        .name(format!("crash-{what}"))
        .spawn(move || {
            // The receiver is gone only when the deadline already failed.
            let _ = sender.send(f());
        })
        .map_err(|e| format!("cannot start a thread to {what}: {e}"))?;
    match receiver.recv_timeout(deadline) {
        Ok(value) => Ok((value, start.elapsed())),
        Err(RecvTimeoutError::Timeout) => Err(format!(
            "a fresh handle could not {what} within {deadline:?} (a stale lock?)"
        )),
        Err(RecvTimeoutError::Disconnected) => {
            Err(format!("the thread that tried to {what} panicked"))
        }
    }
}

/// A running child, its protocol lines arriving on a channel.
struct RunningChild {
    process: Child,
    lines: Receiver<(Instant, String)>,
    stderr: thread::JoinHandle<String>,
}

fn spawn_child(campaign: &CrashCampaign, seed: u64) -> std::result::Result<RunningChild, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the test binary: {e}"))?;
    let mut process = Command::new(&exe)
        .args([
            "--exact",
            &campaign.test_name,
            "--nocapture",
            "--test-threads=1",
        ])
        .env(LOCATION_ENV, &campaign.location)
        .env(CHILD_SEED_ENV, seed.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
    let (stdout, stderr) = match (process.stdout.take(), process.stderr.take()) {
        (Some(out), Some(err)) => (out, err),
        _ => return Err("the child's pipes are missing".to_owned()),
    };
    let (sender, lines) = mpsc::channel();
    thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                // A line cut short by the kill is no statement.
                Ok(0) | Err(_) => break,
                Ok(_) if line.last() != Some(&b'\n') => break,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&line).into_owned();
                    if sender.send((Instant::now(), text)).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let stderr = thread::spawn(move || {
        let mut text = String::new();
        // Whatever could be read is the best diagnosis there is.
        let _ = BufReader::new(stderr).read_to_string(&mut text);
        text
    });
    Ok(RunningChild {
        process,
        lines,
        stderr,
    })
}

/// When to kill a child.
#[derive(Debug, Clone, Copy)]
enum KillPlan {
    /// This long after starting it: lands in start-up, open, first writes.
    AfterStart(Duration),
    /// After it is ready and has acknowledged `acks` writes, plus `delay`:
    /// lands anywhere in a write.
    AfterAcks { acks: usize, delay: Duration },
}

/// How fast children start and write, as last measured: kill moments are
/// drawn relative to these so that they land in every part of the path.
#[derive(Debug, Clone, Copy)]
struct Pace {
    /// From spawning a child to its `ready` line.
    startup: Duration,
    /// Between two acknowledgements.
    write_interval: Duration,
}

impl Default for Pace {
    /// Guesses for the first child.
    fn default() -> Pace {
        Pace {
            startup: Duration::from_millis(20),
            write_interval: Duration::from_millis(5),
        }
    }
}

impl Pace {
    fn update(&mut self, run: &ChildRun) {
        if let Some(startup) = run.ready_after {
            self.startup = startup;
        }
        if let (Some(first), Some(last)) = (run.ack_times.first(), run.ack_times.last()) {
            if let Some(gaps) = u32::try_from(run.ack_times.len() - 1)
                .ok()
                .filter(|&n| n > 0)
            {
                self.write_interval = (*last - *first) / gaps;
            }
        }
    }
}

fn plan_kill(rng: &mut SplitMix, pace: &Pace) -> KillPlan {
    if rng.one_in(7) {
        // Up to twice the start-up time: before, during and just after
        // opening the store.
        let span = (pace.startup.as_micros() as u64).saturating_mul(2).max(100);
        return KillPlan::AfterStart(Duration::from_micros(rng.below(span)));
    }
    let acks = match rng.below(10) {
        0..=4 => rng.below(3),
        5..=8 => 2 + rng.below(8),
        _ => 10 + rng.below(30),
    } as usize;
    // Up to two write cycles, so every point of a cycle is equally likely.
    let span = (pace.write_interval.as_micros() as u64)
        .saturating_mul(2)
        .max(100);
    KillPlan::AfterAcks {
        acks,
        delay: Duration::from_micros(rng.below(span)),
    }
}

/// The lines a child printed before its kill, and whether it had reached
/// `ready`.
struct ChildRun {
    spawned: Instant,
    lines: Vec<Line>,
    ready: bool,
    /// From its spawn to its `ready` line, when it got there.
    ready_after: Option<Duration>,
    /// Times of its acknowledgements, for the write-interval estimate.
    ack_times: Vec<Instant>,
}

/// Adds one line of the child's output to `run`.
fn take_line(run: &mut ChildRun, at: Instant, text: &str) -> std::result::Result<(), String> {
    if let Some(line) = Line::parse(text)? {
        match line {
            Line::Ready => {
                run.ready = true;
                run.ready_after = Some(at.saturating_duration_since(run.spawned));
            }
            Line::Ack { .. } => run.ack_times.push(at),
            _ => {}
        }
        run.lines.push(line);
    }
    Ok(())
}

/// Starts a child, kills it as planned, and collects what it printed.
fn run_one_child(
    campaign: &CrashCampaign,
    seed: u64,
    plan: KillPlan,
) -> std::result::Result<ChildRun, String> {
    let spawned = Instant::now();
    let mut child = spawn_child(campaign, seed)?;
    let mut run = ChildRun {
        spawned,
        lines: Vec::new(),
        ready: false,
        ready_after: None,
        ack_times: Vec::new(),
    };
    let waited = match plan {
        KillPlan::AfterStart(delay) => {
            thread::sleep(delay);
            Ok(())
        }
        KillPlan::AfterAcks { acks, delay } => {
            let deadline = Instant::now() + STARTUP_DEADLINE;
            let mut outcome = Ok(());
            while !(run.ready && run.ack_times.len() >= acks) {
                let left = deadline.saturating_duration_since(Instant::now());
                match child.lines.recv_timeout(left) {
                    Ok((at, text)) => {
                        if let Err(e) = take_line(&mut run, at, &text) {
                            outcome = Err(e);
                            break;
                        }
                        if let Some(Line::Error(message)) = run.lines.last() {
                            outcome = Err(format!("the child failed: {message}"));
                            break;
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => {
                        outcome = Err(format!(
                            "the child did not reach {acks} acknowledged writes within \
                             {STARTUP_DEADLINE:?}"
                        ));
                        break;
                    }
                    Err(RecvTimeoutError::Disconnected) => {
                        outcome = Err("the child exited before it was killed".to_owned());
                        break;
                    }
                }
            }
            if outcome.is_ok() {
                thread::sleep(delay);
            }
            outcome
        }
    };
    // SIGKILL on Unix. It fails only if the child was already reaped,
    // which the exit status below reports.
    let _ = child.process.kill();
    let status = child
        .process
        .wait()
        .map_err(|e| format!("cannot wait for the child: {e}"))?;
    for (at, text) in child.lines.iter() {
        take_line(&mut run, at, &text)?;
    }
    let stderr = child.stderr.join().unwrap_or_default();
    let killed = killed_by_signal(&status);
    match waited {
        Err(reason) => Err(format!("{reason} (status {status}; stderr: {stderr})")),
        Ok(()) if !killed => Err(format!(
            "the child exited by itself (status {status}) before it was killed; stderr: {stderr}"
        )),
        Ok(()) => Ok(run),
    }
}

#[cfg(unix)]
fn killed_by_signal(status: &std::process::ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    status.signal() == Some(libc::SIGKILL)
}

#[cfg(not(unix))]
fn killed_by_signal(status: &std::process::ExitStatus) -> bool {
    !status.success()
}

/// What a fresh handle read after a kill.
struct Observation {
    store: Store,
    records: Vec<Option<Record>>,
    listing: Vec<Entry>,
    changes: Vec<Change>,
}

fn read_changes(store: &Store, after: u64) -> Result<Vec<Change>> {
    const PAGE: usize = 4096;
    let mut changes: Vec<Change> = Vec::new();
    let mut cursor = after;
    loop {
        let page = store.changes_since(cursor, PAGE)?;
        let full = page.len() == PAGE;
        if let Some(last) = page.last() {
            cursor = last.seq;
        }
        changes.extend(page);
        if !full {
            return Ok(changes);
        }
    }
}

fn observe(open: &OpenFn, after: u64) -> std::result::Result<Observation, String> {
    let store = open().map_err(|e| format!("opening a fresh handle: {e}"))?;
    let mut records = Vec::with_capacity(KEYS);
    for index in 0..KEYS {
        let name = key_name(index);
        let record = store
            .get_record(COLLECTION, &name)
            .map_err(|e| format!("reading {COLLECTION}/{name}: {e}"))?;
        records.push(record);
    }
    let listing = store
        .list(COLLECTION)
        .map_err(|e| format!("listing {COLLECTION}: {e}"))?;
    let changes =
        read_changes(&store, after).map_err(|e| format!("reading the feed after {after}: {e}"))?;
    Ok(Observation {
        store,
        records,
        listing,
        changes,
    })
}

/// The parent's own write after a kill: a compare-and-swap on the state it
/// just checked, on the keys in turn.
fn parent_write(
    store: &Store,
    index: usize,
    known: Option<&Record>,
    kill: usize,
) -> std::result::Result<Record, String> {
    let name = key_name(index);
    let key = Key::new(COLLECTION, &name).map_err(|e| e.to_string())?;
    let patch = Patch::Merge(json!({"parent": kill}));
    let (base, precondition) = match known {
        Some(Record {
            revision,
            body: Some(body),
        }) => (&**body, Precondition::Revision(*revision)),
        _ => (&Body::new(), Precondition::Absent),
    };
    let expected = Record {
        revision: known.map_or(0, |r| r.revision) + 1,
        body: Some(
            patch
                .prepare(&key, &store.options().limits)
                .and_then(|p| p.apply(&key, base, &store.options().limits))
                .map_err(|e| e.to_string())?
                .into(),
        ),
    };
    let doc = store
        .patch(COLLECTION, &name, &patch, precondition)
        .map_err(|e| format!("the parent's write of {key}: {e}"))?;
    let record = Record {
        revision: doc.revision,
        body: Some(doc.body),
    };
    if record == expected {
        Ok(record)
    } else {
        Err(format!(
            "the parent's write of {key} returned {}, expected {}",
            describe(Some(&record)),
            describe(Some(&expected))
        ))
    }
}

type OpenFn = dyn Fn() -> Result<Store> + Send + Sync;

/// Runs a crash campaign: `campaign.kills` times, starts a child on the
/// store, kills it at a random moment, and checks the store through a
/// fresh handle from `open` (see the [module docs](self) for every check).
/// `debris` lists leftovers of interrupted writes that the backend does
/// not clean up by itself (temp files, say); after every kill it may list
/// at most `campaign.max_debris`.
///
/// # Errors
/// The first check that fails, naming the kill, the key or file, and the
/// states involved.
pub fn run_crash_campaign<O, D>(
    campaign: &CrashCampaign,
    open: O,
    debris: D,
) -> std::result::Result<CrashSummary, CrashFailure>
where
    O: Fn() -> Result<Store> + Send + Sync + 'static,
    D: Fn() -> Vec<String>,
{
    let start = Instant::now();
    let open: Arc<OpenFn> = Arc::new(open);
    let mut rng = SplitMix(campaign.seed);
    let mut model = Model::new(campaign.feed_rule);
    let mut summary = CrashSummary::default();
    let mut pace = Pace::default();
    let failure = |kill: usize, reason: String| CrashFailure {
        seed: campaign.seed,
        kill,
        reason,
    };
    for kill in 1..=campaign.kills {
        let plan = plan_kill(&mut rng, &pace);
        let run = run_one_child(campaign, rng.next(), plan).map_err(|r| failure(kill, r))?;
        summary.kills += 1;
        if !run.ready {
            summary.kills_before_ready += 1;
        }
        if run.ready && !run.lines.iter().any(|l| matches!(l, Line::Intent { .. })) {
            summary.kills_before_first_write += 1;
        }
        summary.acks += run.ack_times.len();
        pace.update(&run);
        for line in run.lines {
            model.line(line).map_err(|r| failure(kill, r))?;
        }

        let after = model.feed_cursor;
        let open_for_check = Arc::clone(&open);
        let (observation, took) =
            within_deadline("open and read", RESPONSIVE_DEADLINE, move || {
                observe(&*open_for_check, after)
            })
            .map_err(|r| failure(kill, r))?;
        let observation = observation.map_err(|r| failure(kill, r))?;
        summary.slowest_recovery = summary.slowest_recovery.max(took);
        match model
            .resolve(&observation.records)
            .map_err(|r| failure(kill, r))?
        {
            Resolution::Idle => {}
            Resolution::Committed => summary.in_flight_committed += 1,
            Resolution::Lost => summary.in_flight_lost += 1,
        }
        model
            .check_listing(&observation.listing)
            .map_err(|r| failure(kill, r))?;
        summary.abandoned_feed_lines += model
            .check_new_changes(&observation.changes)
            .map_err(|r| failure(kill, r))?;

        let leftovers = debris();
        summary.max_debris = summary.max_debris.max(leftovers.len());
        if leftovers.len() > campaign.max_debris {
            return Err(failure(
                kill,
                format!(
                    "{} debris entries (at most {} allowed): {}",
                    leftovers.len(),
                    campaign.max_debris,
                    leftovers.join(", ")
                ),
            ));
        }

        let index = kill % KEYS;
        let known = model.known[index].clone();
        let store = observation.store;
        let (written, took) = within_deadline("write", RESPONSIVE_DEADLINE, move || {
            parent_write(&store, index, known.as_ref(), kill)
        })
        .map_err(|r| failure(kill, r))?;
        let written = written.map_err(|r| failure(kill, r))?;
        summary.slowest_recovery = summary.slowest_recovery.max(took);
        model.commit(index, written);
    }

    let store = open().map_err(|e| failure(0, format!("opening a fresh handle: {e}")))?;
    let changes =
        read_changes(&store, 0).map_err(|e| failure(0, format!("reading the feed: {e}")))?;
    model
        .check_whole_feed(&changes)
        .map_err(|r| failure(0, r))?;
    summary.elapsed = start.elapsed();
    Ok(summary)
}
