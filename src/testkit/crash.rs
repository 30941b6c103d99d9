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

use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::soak_factor;
use crate::{Body, Change, ChangeKind, Entry, Key, Patch, Precondition, Record, Result, Store};

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

// ---------------------------------------------------------------- protocol

/// One line of the child's protocol.
#[derive(Debug, Clone, PartialEq)]
enum Line {
    /// The store is open and the child has read the current state.
    Ready,
    /// The next write, and the state it must produce.
    Intent { name: String, record: Record },
    /// A write was acknowledged with this state.
    Ack { name: String, record: Record },
    /// The child hit an error and is exiting.
    Error(String),
}

impl Line {
    fn render(&self) -> String {
        let state = |name: &str, record: &Record| {
            let body = serde_json::to_string(&record.body).unwrap_or_else(|_| "null".to_owned());
            format!("{name} {} {body}", record.revision)
        };
        match self {
            Line::Ready => format!("{PREFIX}ready\n"),
            Line::Intent { name, record } => format!("{PREFIX}intent {}\n", state(name, record)),
            Line::Ack { name, record } => format!("{PREFIX}ack {}\n", state(name, record)),
            // One line, whatever the message holds.
            Line::Error(message) => format!("{PREFIX}error {}\n", message.replace('\n', " | ")),
        }
    }

    /// The protocol line in `text` (libtest may have printed before it on
    /// the same line), `None` for other output, `Err` for a garbled line.
    fn parse(text: &str) -> std::result::Result<Option<Line>, String> {
        let Some((_, rest)) = text.split_once(PREFIX) else {
            return Ok(None);
        };
        let rest = rest.trim_end_matches(['\n', '\r']);
        let (kind, args) = rest.split_once(' ').unwrap_or((rest, ""));
        let state = || -> std::result::Result<(String, Record), String> {
            let mut parts = args.splitn(3, ' ');
            let (Some(name), Some(revision), Some(body)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return Err(format!(
                    "a {kind} line without name, revision and body: {text:?}"
                ));
            };
            let revision = revision
                .parse()
                .map_err(|e| format!("bad revision in {text:?}: {e}"))?;
            let body: Option<Body> =
                serde_json::from_str(body).map_err(|e| format!("bad body in {text:?}: {e}"))?;
            Ok((name.to_owned(), Record { revision, body }))
        };
        match kind {
            "ready" => Ok(Some(Line::Ready)),
            "intent" => state().map(|(name, record)| Some(Line::Intent { name, record })),
            "ack" => state().map(|(name, record)| Some(Line::Ack { name, record })),
            "error" => Ok(Some(Line::Error(args.to_owned()))),
            _ => Err(format!("unknown line {text:?}")),
        }
    }
}

// ---------------------------------------------------------------- child

/// What a re-executed test needs to act as the crash child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrashChild {
    /// The store location the campaign works on; open the store here.
    pub location: PathBuf,
    /// Varies the child's writes from one child to the next.
    pub seed: u64,
}

impl CrashChild {
    /// `Some` when this process was started by a campaign as its child
    /// (the location variable is set), `None` otherwise.
    pub fn from_env() -> Option<CrashChild> {
        let location = std::env::var_os(LOCATION_ENV)?;
        let seed = std::env::var(CHILD_SEED_ENV)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Some(CrashChild {
            location: PathBuf::from(location),
            seed,
        })
    }
}

/// One write of the child and the state it must leave.
#[derive(Debug, Clone)]
enum ChildWrite {
    Patch {
        patch: Patch,
        precondition: Precondition,
    },
    Delete {
        precondition: Precondition,
    },
}

/// Chooses the next write on a key in state `current`, and computes the
/// record it must produce (the child is the only writer while it runs).
fn plan_write(
    rng: &mut SplitMix,
    store: &Store,
    key: &Key,
    current: Option<&Record>,
    seed: u64,
    op: u64,
) -> Result<(ChildWrite, Record)> {
    let revision = current.map_or(0, |r| r.revision);
    let live = current.and_then(|r| r.body.as_ref());
    if live.is_some() && rng.one_in(12) {
        let precondition = if rng.one_in(2) {
            Precondition::Revision(revision)
        } else {
            Precondition::Any
        };
        let record = Record {
            revision: revision + 1,
            body: None,
        };
        return Ok((ChildWrite::Delete { precondition }, record));
    }
    let counter = live
        .and_then(|b| b.get("counter"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let mut patch = json!({"counter": counter + 1, "writer": format!("s{seed}-o{op}")});
    match rng.below(8) {
        // Sizes from nothing to a few pages make writes of varying length.
        0 | 1 => patch["pad"] = Value::String("x".repeat(rng.below(6000) as usize)),
        2 => patch["pad"] = Value::Null,
        3 => patch["nested"] = json!({"op": op, "list": [op, seed % 1000]}),
        4 => patch["nested"] = Value::Null,
        _ => {}
    }
    let patch = Patch::Merge(patch);
    let empty = Body::new();
    let (base, precondition) = match live {
        Some(body) if rng.one_in(2) => (body, Precondition::Revision(revision)),
        Some(body) => (body, Precondition::Any),
        None => (&empty, Precondition::Absent),
    };
    let limits = store.options().limits;
    let body = patch.prepare(key, &limits)?.apply(key, base, &limits)?;
    let record = Record {
        revision: revision + 1,
        body: Some(body),
    };
    Ok((
        ChildWrite::Patch {
            patch,
            precondition,
        },
        record,
    ))
}

fn run_write(store: &Store, key: &Key, write: &ChildWrite) -> Result<Record> {
    match write {
        ChildWrite::Patch {
            patch,
            precondition,
        } => store
            .patch(key.collection(), key.name(), patch, *precondition)
            .map(|doc| Record {
                revision: doc.revision,
                body: Some(doc.body),
            }),
        ChildWrite::Delete { precondition } => store
            .delete(key.collection(), key.name(), *precondition)
            .map(|revision| Record {
                revision,
                body: None,
            }),
    }
}

/// Prints one protocol line and flushes it; a child whose parent has gone
/// (the pipe is closed) exits.
fn emit(line: &Line) {
    // Straight to the file descriptor: libtest's capture only sees print!.
    let mut out = std::io::stdout().lock();
    if out
        .write_all(line.render().as_bytes())
        .and_then(|()| out.flush())
        .is_err()
    {
        std::process::exit(4);
    }
}

fn fail_child(message: String) -> ! {
    emit(&Line::Error(message));
    std::process::exit(2);
}

/// The child's part: reads the keys' current state, then writes to them in
/// a loop, printing each write's intended state before it and the
/// acknowledged state after it, until killed.
///
/// Never returns: it exits by itself after a minute (a parent that died
/// without killing it), when its stdout is closed, or after printing an
/// `error` line when a read or write fails (the campaign reports it).
pub fn run_crash_child(store: &Store, child: &CrashChild) -> ! {
    let deadline = Instant::now() + CHILD_LIFETIME;
    let mut rng = SplitMix(child.seed);
    let mut keys = Vec::with_capacity(KEYS);
    let mut states = Vec::with_capacity(KEYS);
    for index in 0..KEYS {
        let key = Key::new(COLLECTION, &key_name(index))
            .unwrap_or_else(|e| fail_child(format!("key {index}: {e}")));
        let state = store
            .get_record(key.collection(), key.name())
            .unwrap_or_else(|e| fail_child(format!("reading {key} at start: {e}")));
        keys.push(key);
        states.push(state);
    }
    emit(&Line::Ready);
    for op in 0.. {
        if Instant::now() > deadline {
            std::process::exit(3);
        }
        let index = rng.below(KEYS as u64) as usize;
        let key = &keys[index];
        let (write, expected) =
            plan_write(&mut rng, store, key, states[index].as_ref(), child.seed, op)
                .unwrap_or_else(|e| fail_child(format!("planning a write of {key}: {e}")));
        emit(&Line::Intent {
            name: key.name().to_owned(),
            record: expected,
        });
        let record = run_write(store, key, &write)
            .unwrap_or_else(|e| fail_child(format!("writing {key}: {e}")));
        emit(&Line::Ack {
            name: key.name().to_owned(),
            record: record.clone(),
        });
        states[index] = Some(record);
    }
    std::process::exit(3)
}

// ---------------------------------------------------------------- model

/// Whether the change feed may hold a line for a write that never
/// committed (a crash between the feed append and the document's commit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedRule {
    /// Every committed write exactly once, nothing else (SQLite).
    ExactlyOnce,
    /// As exactly-once, plus at most one line per write that was in flight
    /// at a kill and did not commit (the YAML backend's documented
    /// at-least-once exception).
    AtLeastOnce,
}

/// One line the feed must (or, for abandoned writes, may) hold.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct FeedEntry {
    name: String,
    revision: u64,
    kind: ChangeKind,
}

impl fmt::Display for FeedEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{COLLECTION}/{} revision {} ({})",
            self.name, self.revision, self.kind
        )
    }
}

fn describe(record: Option<&Record>) -> String {
    match record {
        None => "never written".to_owned(),
        Some(Record {
            revision,
            body: None,
        }) => format!("revision {revision} (deleted)"),
        Some(Record {
            revision,
            body: Some(body),
        }) => format!(
            "revision {revision} {}",
            abbreviate(&Value::Object(body.clone()))
        ),
    }
}

/// `value` with long strings (the padding) cut short, for messages.
fn abbreviate(value: &Value) -> Value {
    const KEEP: usize = 40;
    match value {
        Value::String(s) if s.chars().count() > KEEP => {
            let head: String = s.chars().take(KEEP).collect();
            Value::String(format!("{head}… ({} bytes)", s.len()))
        }
        Value::Array(items) => Value::Array(items.iter().map(abbreviate).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), abbreviate(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// How the write in flight at a kill turned out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resolution {
    /// No write was in flight.
    Idle,
    /// It committed (its acknowledgement was lost with the child).
    Committed,
    /// It did not commit.
    Lost,
}

/// What the store must hold: the parent's model of every key, built from
/// the child's lines and the states checked after each kill.
#[derive(Debug)]
struct Model {
    names: Vec<String>,
    /// Per key, the newest state known committed (`None`: never written).
    known: Vec<Option<Record>>,
    /// The write announced and not yet acknowledged: key index and state.
    pending: Option<(usize, Record)>,
    /// Every committed write, in commit order.
    committed: Vec<FeedEntry>,
    /// Writes in flight at a kill that did not commit.
    abandoned: Vec<Abandoned>,
    /// How many of `committed` the feed was checked for, and the seq after
    /// which to read the feed next.
    feed_checked: usize,
    feed_cursor: u64,
    rule: FeedRule,
}

fn kind_of(previous: Option<&Record>, next: &Record) -> ChangeKind {
    match (previous.and_then(|r| r.body.as_ref()), &next.body) {
        (_, None) => ChangeKind::Deleted,
        (None, Some(_)) => ChangeKind::Created,
        (Some(_), Some(_)) => ChangeKind::Updated,
    }
}

impl Model {
    fn new(rule: FeedRule) -> Model {
        Model {
            names: (0..KEYS).map(key_name).collect(),
            known: vec![None; KEYS],
            pending: None,
            committed: Vec::new(),
            abandoned: Vec::new(),
            feed_checked: 0,
            feed_cursor: 0,
            rule,
        }
    }

    fn index(&self, name: &str) -> std::result::Result<usize, String> {
        self.names
            .iter()
            .position(|n| n == name)
            .ok_or_else(|| format!("the child wrote to an unknown key {name:?}"))
    }

    fn entry(&self, index: usize, record: &Record) -> FeedEntry {
        FeedEntry {
            name: self.names[index].clone(),
            revision: record.revision,
            kind: kind_of(self.known[index].as_ref(), record),
        }
    }

    /// Records `record` as committed on key `index`.
    fn commit(&mut self, index: usize, record: Record) {
        let entry = self.entry(index, &record);
        self.committed.push(entry);
        self.known[index] = Some(record);
    }

    fn intent(&mut self, name: &str, record: Record) -> std::result::Result<(), String> {
        let index = self.index(name)?;
        if let Some((other, pending)) = &self.pending {
            return Err(format!(
                "the child announced a write of {name} while its write of {} ({}) was unanswered",
                self.names[*other],
                describe(Some(pending))
            ));
        }
        let known = self.known[index].as_ref();
        let expected = known.map_or(0, |r| r.revision) + 1;
        if record.revision != expected {
            return Err(format!(
                "the child expects its write of {name} to make revision {}, but the last \
                 committed state is {}: the child read a different state at start",
                record.revision,
                describe(known)
            ));
        }
        self.pending = Some((index, record));
        Ok(())
    }

    fn ack(&mut self, name: &str, record: Record) -> std::result::Result<(), String> {
        let index = self.index(name)?;
        match self.pending.take() {
            Some((pending_index, pending)) if pending_index == index && pending == record => {
                self.commit(index, record);
                Ok(())
            }
            Some((pending_index, pending)) => Err(format!(
                "the store acknowledged {name} at {}, but the write announced was {} at {}",
                describe(Some(&record)),
                self.names[pending_index],
                describe(Some(&pending))
            )),
            None => Err(format!(
                "the child acknowledged {name} at {} without announcing it",
                describe(Some(&record))
            )),
        }
    }

    fn line(&mut self, line: Line) -> std::result::Result<(), String> {
        match line {
            Line::Ready => Ok(()),
            Line::Intent { name, record } => self.intent(&name, record),
            Line::Ack { name, record } => self.ack(&name, record),
            Line::Error(message) => Err(format!("the child failed: {message}")),
        }
    }

    /// Compares the states read after a kill (one per key, in key order)
    /// with the model, and settles the write in flight.
    fn resolve(&mut self, observed: &[Option<Record>]) -> std::result::Result<Resolution, String> {
        let pending = self.pending.take();
        let mut resolution = Resolution::Idle;
        for (index, seen) in observed.iter().enumerate() {
            let known = self.known[index].as_ref();
            let in_flight = pending
                .as_ref()
                .filter(|(i, _)| *i == index)
                .map(|(_, r)| r);
            if seen.as_ref() == known {
                if let Some(record) = in_flight {
                    let entry = self.entry(index, record);
                    self.abandoned.push(Abandoned {
                        position: self.committed.len(),
                        entry,
                        seen: false,
                    });
                    resolution = Resolution::Lost;
                }
            } else if in_flight.is_some() && seen.as_ref() == in_flight {
                if let Some((_, record)) = pending.clone() {
                    self.commit(index, record);
                }
                resolution = Resolution::Committed;
            } else {
                let name = &self.names[index];
                let seen_revision = seen.as_ref().map_or(0, |r| r.revision);
                let known_revision = known.map_or(0, |r| r.revision);
                let what = if seen_revision < known_revision {
                    "lost an acknowledged write"
                } else {
                    "holds a state nobody wrote"
                };
                return Err(format!(
                    "{COLLECTION}/{name} {what}: it reads {}, the last acknowledged state is {}{}",
                    describe(seen.as_ref()),
                    describe(known),
                    in_flight.map_or_else(String::new, |r| format!(
                        " and the write in flight was {}",
                        describe(Some(r))
                    ))
                ));
            }
        }
        Ok(resolution)
    }

    /// The listing must show exactly the live keys at their revisions.
    fn check_listing(&self, listing: &[Entry]) -> std::result::Result<(), String> {
        let expected: Vec<Entry> = self
            .names
            .iter()
            .zip(&self.known)
            .filter_map(|(name, known)| {
                known.as_ref().filter(|r| r.body.is_some()).map(|r| Entry {
                    name: name.clone(),
                    revision: r.revision,
                })
            })
            .collect();
        if listing == expected.as_slice() {
            Ok(())
        } else {
            Err(format!(
                "listing {COLLECTION} shows {listing:?}, the documents are {expected:?}"
            ))
        }
    }

    /// Checks the changes read after `feed_cursor` against the writes
    /// committed since the last check, and advances; returns how many lines
    /// of uncommitted writes it saw.
    fn check_new_changes(&mut self, changes: &[Change]) -> std::result::Result<usize, String> {
        let extra = walk_feed(
            changes,
            self.feed_cursor,
            &self.committed,
            self.feed_checked,
            &mut self.abandoned,
            self.rule,
        )?;
        self.feed_checked = self.committed.len();
        if let Some(last) = changes.last() {
            self.feed_cursor = last.seq;
        }
        Ok(extra)
    }

    /// Checks the whole feed, from seq 0, against every write.
    fn check_whole_feed(&self, changes: &[Change]) -> std::result::Result<usize, String> {
        let mut abandoned = self.abandoned.clone();
        for a in &mut abandoned {
            a.seen = false;
        }
        walk_feed(changes, 0, &self.committed, 0, &mut abandoned, self.rule)
    }
}

/// A write in flight at a kill that did not commit, and where its feed
/// line may stand.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Abandoned {
    /// How many committed writes preceded it: its line, if any, stands
    /// between theirs and the next committed write's.
    position: usize,
    entry: FeedEntry,
    /// Whether its line was seen already (it may appear once).
    seen: bool,
}

/// `changes` (read after seq `after`) must be `committed[start..]` in
/// order, in increasing seqs; under the at-least-once rule each abandoned
/// write may also have one line, in its place. Returns how many such lines
/// it saw (marking them seen).
fn walk_feed(
    changes: &[Change],
    after: u64,
    committed: &[FeedEntry],
    start: usize,
    abandoned: &mut [Abandoned],
    rule: FeedRule,
) -> std::result::Result<usize, String> {
    let mut previous_seq = after;
    let mut next = start;
    let mut extras = 0;
    for (i, change) in changes.iter().enumerate() {
        if change.seq <= previous_seq {
            return Err(format!(
                "the feed's seq {} follows seq {previous_seq}",
                change.seq
            ));
        }
        previous_seq = change.seq;
        let entry_of = |c: &Change| {
            (c.key.collection() == COLLECTION).then(|| FeedEntry {
                name: c.key.name().to_owned(),
                revision: c.revision,
                kind: c.kind,
            })
        };
        let seen = entry_of(change);
        let expected = committed.get(next);
        let is_expected = seen.is_some() && seen.as_ref() == expected;
        let extra = abandoned
            .iter()
            .position(|a| !a.seen && a.position == next && Some(&a.entry) == seen.as_ref())
            .filter(|_| rule == FeedRule::AtLeastOnce);
        // The same write may stand twice in a row, its uncommitted line
        // first; otherwise a line matching the next write is that write.
        let repeated = changes.get(i + 1).and_then(entry_of) == seen;
        match extra {
            Some(found) if !is_expected || repeated => {
                abandoned[found].seen = true;
                extras += 1;
            }
            _ if is_expected => next += 1,
            _ => {
                return Err(format!(
                    "the feed's seq {} is {} {} revision {} ({}), but the next committed \
                     write is {}",
                    change.seq,
                    change.key.collection(),
                    change.key.name(),
                    change.revision,
                    change.kind,
                    expected.map_or("none".to_owned(), |e| e.to_string())
                ))
            }
        }
    }
    match committed.get(next) {
        None => Ok(extras),
        Some(missing) => Err(format!(
            "the feed lacks the committed write {missing} (read after seq {after}, up to seq \
             {previous_seq})"
        )),
    }
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
        }) => (body.clone(), Precondition::Revision(*revision)),
        _ => (Body::new(), Precondition::Absent),
    };
    let expected = Record {
        revision: known.map_or(0, |r| r.revision) + 1,
        body: Some(
            patch
                .prepare(&key, &store.options().limits)
                .and_then(|p| p.apply(&key, &base, &store.options().limits))
                .map_err(|e| e.to_string())?,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn record(revision: u64, body: Option<Value>) -> Record {
        Record {
            revision,
            body: body.map(|v| match v {
                Value::Object(map) => map,
                _ => Body::new(),
            }),
        }
    }

    fn change(seq: u64, name: &str, revision: u64, kind: ChangeKind) -> Change {
        Change {
            seq,
            key: Key::new(COLLECTION, name).unwrap(),
            revision,
            kind,
        }
    }

    fn intent(name: &str, r: &Record) -> Line {
        Line::Intent {
            name: name.to_owned(),
            record: r.clone(),
        }
    }

    fn ack(name: &str, r: &Record) -> Line {
        Line::Ack {
            name: name.to_owned(),
            record: r.clone(),
        }
    }

    /// A model in which k0 was acknowledged at revisions 1 and 2 and a
    /// third write is in flight.
    fn two_acks_and_one_in_flight(rule: FeedRule) -> (Model, [Record; 3]) {
        let mut model = Model::new(rule);
        let r1 = record(1, Some(json!({"counter": 1})));
        let r2 = record(2, Some(json!({"counter": 2})));
        let r3 = record(3, Some(json!({"counter": 3})));
        for line in [
            Line::Ready,
            intent("k0", &r1),
            ack("k0", &r1),
            intent("k0", &r2),
            ack("k0", &r2),
            intent("k0", &r3),
        ] {
            model.line(line).unwrap();
        }
        (model, [r1, r2, r3])
    }

    #[test]
    fn lines_round_trip_even_after_libtest_output() {
        let lines = [
            Line::Ready,
            intent("k0", &record(4, Some(json!({"a": "x y\nz", "n": [1, 2]})))),
            ack("k2", &record(5, None)),
            Line::Error("two\nlines".to_owned()),
        ];
        for line in lines {
            let text = format!("test crash ... {}", line.render());
            let parsed = Line::parse(&text).unwrap().unwrap();
            match (&line, parsed) {
                (Line::Error(_), Line::Error(message)) => assert_eq!(message, "two | lines"),
                (_, parsed) => assert_eq!(parsed, line),
            }
        }
        assert_eq!(Line::parse("running 1 test\n").unwrap(), None);
        assert!(Line::parse(&format!("{PREFIX}ack k0 x {{}}")).is_err());
        assert!(Line::parse(&format!("{PREFIX}ack k0 1")).is_err());
        assert!(Line::parse(&format!("{PREFIX}bogus")).is_err());
    }

    #[test]
    fn a_lost_acknowledged_write_is_flagged() {
        let (mut model, [r1, _, _]) = two_acks_and_one_in_flight(FeedRule::ExactlyOnce);
        let error = model.resolve(&[Some(r1), None, None]).unwrap_err();
        assert!(
            error.contains("crash/k0 lost an acknowledged write"),
            "{error}"
        );
        assert!(error.contains("revision 2"), "{error}");
    }

    #[test]
    fn messages_cut_long_strings_short() {
        let long = record(
            1,
            Some(json!({"pad": "x".repeat(5000), "n": ["y".repeat(20)]})),
        );
        let text = describe(Some(&long));
        assert!(text.len() < 160, "{text}");
        assert!(text.contains("(5000 bytes)"), "{text}");
        assert_eq!(describe(Some(&record(2, None))), "revision 2 (deleted)");
        assert_eq!(describe(None), "never written");
    }

    #[test]
    fn a_key_rolled_back_to_never_written_is_flagged() {
        let (mut model, _) = two_acks_and_one_in_flight(FeedRule::ExactlyOnce);
        let error = model.resolve(&[None, None, None]).unwrap_err();
        assert!(error.contains("lost an acknowledged write"), "{error}");
    }

    #[test]
    fn a_state_nobody_wrote_is_flagged() {
        let (mut model, [_, r2, _]) = two_acks_and_one_in_flight(FeedRule::ExactlyOnce);
        let forged = record(3, Some(json!({"counter": 99})));
        let error = model.resolve(&[Some(forged), None, None]).unwrap_err();
        assert!(error.contains("holds a state nobody wrote"), "{error}");
        let mut model = Model::new(FeedRule::ExactlyOnce);
        model.commit(0, r2.clone());
        let error = model
            .resolve(&[Some(r2), Some(record(1, Some(json!({})))), None])
            .unwrap_err();
        assert!(
            error.contains("crash/k1 holds a state nobody wrote"),
            "{error}"
        );
    }

    #[test]
    fn a_torn_body_at_the_right_revision_is_flagged() {
        let (mut model, _) = two_acks_and_one_in_flight(FeedRule::ExactlyOnce);
        let torn = record(3, Some(json!({})));
        assert!(model.resolve(&[Some(torn), None, None]).is_err());
    }

    #[test]
    fn the_write_in_flight_may_have_committed_or_not() {
        let (mut model, [_, r2, r3]) = two_acks_and_one_in_flight(FeedRule::ExactlyOnce);
        assert_eq!(
            model.resolve(&[Some(r3.clone()), None, None]),
            Ok(Resolution::Committed)
        );
        assert_eq!(model.known[0], Some(r3));
        let (mut model, _) = two_acks_and_one_in_flight(FeedRule::ExactlyOnce);
        assert_eq!(
            model.resolve(&[Some(r2.clone()), None, None]),
            Ok(Resolution::Lost)
        );
        assert_eq!(model.known[0], Some(r2));
        assert_eq!(model.abandoned.len(), 1);
        assert_eq!(
            model.resolve(&[Some(model.known[0].clone().unwrap()), None, None]),
            Ok(Resolution::Idle)
        );
    }

    #[test]
    fn protocol_violations_are_flagged() {
        let mut model = Model::new(FeedRule::ExactlyOnce);
        let r1 = record(1, Some(json!({"counter": 1})));
        assert!(model
            .line(ack("k0", &r1))
            .unwrap_err()
            .contains("without announcing"));
        model.line(intent("k0", &r1)).unwrap();
        let other = record(1, Some(json!({"counter": 7})));
        assert!(model
            .line(ack("k0", &other))
            .unwrap_err()
            .contains("announced"));
        let mut model = Model::new(FeedRule::ExactlyOnce);
        let stale = record(2, Some(json!({})));
        assert!(model
            .line(intent("k1", &stale))
            .unwrap_err()
            .contains("different state"));
        assert!(model.line(intent("k9", &r1)).is_err());
        assert!(model
            .line(Line::Error("disk full".to_owned()))
            .unwrap_err()
            .contains("disk full"));
    }

    #[test]
    fn the_listing_must_show_exactly_the_live_keys() {
        let mut model = Model::new(FeedRule::ExactlyOnce);
        model.commit(0, record(1, Some(json!({}))));
        model.commit(1, record(1, Some(json!({}))));
        model.commit(1, record(2, None));
        let listed = |names: &[(&str, u64)]| -> Vec<Entry> {
            names
                .iter()
                .map(|(name, revision)| Entry {
                    name: (*name).to_owned(),
                    revision: *revision,
                })
                .collect()
        };
        assert_eq!(model.check_listing(&listed(&[("k0", 1)])), Ok(()));
        assert!(model.check_listing(&listed(&[])).is_err());
        assert!(model
            .check_listing(&listed(&[("k0", 1), ("k1", 2)]))
            .is_err());
        assert!(model.check_listing(&listed(&[("k0", 2)])).is_err());
    }

    #[test]
    fn the_feed_must_hold_every_committed_write_in_order() {
        let (mut model, [_, _, r3]) = two_acks_and_one_in_flight(FeedRule::ExactlyOnce);
        model.resolve(&[Some(r3), None, None]).unwrap();
        let full = [
            change(1, "k0", 1, ChangeKind::Created),
            change(2, "k0", 2, ChangeKind::Updated),
            change(3, "k0", 3, ChangeKind::Updated),
        ];
        assert_eq!(model.check_whole_feed(&full), Ok(0));
        // A lost line, a reordering, a wrong kind, a seq going back.
        let missing = model.check_whole_feed(&full[..2]).unwrap_err();
        assert!(
            missing.contains("lacks the committed write crash/k0 revision 3"),
            "{missing}"
        );
        let reordered = [full[1].clone(), full[0].clone(), full[2].clone()];
        assert!(model.check_whole_feed(&reordered).is_err());
        let mut wrong_kind = full.clone();
        wrong_kind[0].kind = ChangeKind::Updated;
        assert!(model.check_whole_feed(&wrong_kind).is_err());
        let mut backwards = full.clone();
        backwards[2].seq = 2;
        let error = model.check_whole_feed(&backwards).unwrap_err();
        assert!(error.contains("follows"), "{error}");
        // Checked in two steps, the second starts after the first's cursor.
        assert_eq!(model.check_new_changes(&full), Ok(0));
        assert_eq!(model.feed_cursor, 3);
        model.commit(1, record(1, Some(json!({}))));
        assert!(model.check_new_changes(&[]).is_err());
        let created = change(4, "k1", 1, ChangeKind::Created);
        assert_eq!(model.check_new_changes(&[created]), Ok(0));
    }

    /// k0 acknowledged at 1 and 2, its third write lost at a kill, then
    /// written at revision 3 by the parent; k1 created after that.
    fn a_write_lost_then_redone(rule: FeedRule) -> Model {
        let (mut model, [_, r2, _]) = two_acks_and_one_in_flight(rule);
        assert_eq!(model.resolve(&[Some(r2), None, None]), Ok(Resolution::Lost));
        model.commit(0, record(3, Some(json!({"parent": 1}))));
        model.commit(1, record(1, Some(json!({}))));
        model
    }

    #[test]
    fn only_at_least_once_allows_a_line_of_an_uncommitted_write() {
        let feed = [
            change(1, "k0", 1, ChangeKind::Created),
            change(2, "k0", 2, ChangeKind::Updated),
            change(3, "k0", 3, ChangeKind::Updated),
            change(4, "k0", 3, ChangeKind::Updated),
            change(5, "k1", 1, ChangeKind::Created),
        ];
        let exactly = a_write_lost_then_redone(FeedRule::ExactlyOnce);
        assert!(exactly.check_whole_feed(&feed).is_err());
        let at_least = a_write_lost_then_redone(FeedRule::AtLeastOnce);
        assert_eq!(at_least.check_whole_feed(&feed), Ok(1));
        // Without the extra line both rules are satisfied.
        let without = [&feed[..3], &feed[4..]].concat();
        assert_eq!(exactly.check_whole_feed(&without), Ok(0));
        assert_eq!(at_least.check_whole_feed(&without), Ok(0));
        // Never twice, never out of its place, never for another write.
        let mut twice = feed.to_vec();
        twice.insert(4, change(9, "k0", 3, ChangeKind::Updated));
        for (i, c) in twice.iter_mut().enumerate() {
            c.seq = i as u64 + 1;
        }
        assert!(at_least.check_whole_feed(&twice).is_err());
        let late = [
            feed[0].clone(),
            feed[1].clone(),
            feed[2].clone(),
            change(4, "k1", 1, ChangeKind::Created),
            change(5, "k0", 3, ChangeKind::Updated),
        ];
        assert!(at_least.check_whole_feed(&late).is_err());
        let mut phantom = feed.to_vec();
        phantom[2] = change(3, "k0", 3, ChangeKind::Deleted);
        assert!(at_least.check_whole_feed(&phantom).is_err());
    }

    #[test]
    fn an_uncommitted_line_is_accepted_when_read_before_its_redo() {
        let (mut model, [_, r2, _]) = two_acks_and_one_in_flight(FeedRule::AtLeastOnce);
        let first = [
            change(1, "k0", 1, ChangeKind::Created),
            change(2, "k0", 2, ChangeKind::Updated),
        ];
        model.check_new_changes(&first).unwrap();
        model.resolve(&[Some(r2), None, None]).unwrap();
        let extra = change(3, "k0", 3, ChangeKind::Updated);
        assert_eq!(model.check_new_changes(std::slice::from_ref(&extra)), Ok(1));
        model.commit(0, record(3, Some(json!({"parent": 1}))));
        let redo = change(4, "k0", 3, ChangeKind::Updated);
        assert_eq!(model.check_new_changes(std::slice::from_ref(&redo)), Ok(0));
        // A second copy of the uncommitted line is not accepted.
        assert!(model
            .check_new_changes(&[change(5, "k0", 3, ChangeKind::Updated)])
            .is_err());
        assert_eq!(
            model.check_whole_feed(&[first[0].clone(), first[1].clone(), extra, redo]),
            Ok(1)
        );
    }

    #[test]
    fn planned_writes_chain_revisions_and_recreate_after_a_delete() {
        let store = Store::open(crate::MemoryBackend::new());
        let key = Key::new(COLLECTION, "k0").unwrap();
        let mut rng = SplitMix(7);
        let mut state: Option<Record> = None;
        let mut deletes = 0;
        for op in 0..300 {
            let (write, expected) =
                plan_write(&mut rng, &store, &key, state.as_ref(), 7, op).unwrap();
            let record = run_write(&store, &key, &write).unwrap();
            assert_eq!(record, expected);
            assert_eq!(record.revision, op + 1);
            deletes += usize::from(record.body.is_none());
            state = Some(record);
        }
        assert!(deletes > 5, "only {deletes} deletes");
    }

    #[test]
    fn kill_plans_mix_early_and_in_write_moments() {
        let mut rng = SplitMix(1);
        let plans: Vec<KillPlan> = (0..1000)
            .map(|_| {
                plan_kill(
                    &mut rng,
                    &Pace {
                        startup: Duration::from_millis(20),
                        write_interval: Duration::from_millis(4),
                    },
                )
            })
            .collect();
        let early = plans
            .iter()
            .filter(|p| matches!(p, KillPlan::AfterStart(_)))
            .count();
        assert!((80..250).contains(&early), "{early} early kills");
        assert!(plans
            .iter()
            .any(|p| matches!(p, KillPlan::AfterAcks { acks: 0, .. })));
        assert!(plans
            .iter()
            .any(|p| matches!(p, KillPlan::AfterAcks { acks, .. } if *acks >= 10)));
        assert!(plans.iter().all(|p| match p {
            KillPlan::AfterAcks { delay, .. } => *delay < Duration::from_millis(8),
            KillPlan::AfterStart(delay) => *delay < Duration::from_millis(40),
        }));
    }

    #[test]
    fn the_pace_follows_the_last_child() {
        let spawned = Instant::now();
        let mut pace = Pace::default();
        let mut run = ChildRun {
            spawned,
            lines: Vec::new(),
            ready: false,
            ready_after: None,
            ack_times: vec![spawned],
        };
        pace.update(&run);
        assert_eq!(pace.startup, Pace::default().startup);
        assert_eq!(pace.write_interval, Pace::default().write_interval);
        take_line(
            &mut run,
            spawned + Duration::from_millis(3),
            &Line::Ready.render(),
        )
        .unwrap();
        run.ack_times = (0..5)
            .map(|i| spawned + Duration::from_millis(10 + 2 * i))
            .collect();
        pace.update(&run);
        assert!(run.ready);
        assert_eq!(pace.startup, Duration::from_millis(3));
        assert_eq!(pace.write_interval, Duration::from_millis(2));
    }

    #[test]
    fn within_deadline_returns_the_value_and_its_time() {
        let (value, took) = within_deadline("add", RESPONSIVE_DEADLINE, || 2 + 2).unwrap();
        assert_eq!(value, 4);
        assert!(took < RESPONSIVE_DEADLINE);
    }

    #[test]
    fn a_hung_step_fails_at_its_deadline() {
        let error = within_deadline("write", Duration::from_millis(20), || {
            thread::sleep(Duration::from_millis(500));
        })
        .unwrap_err();
        assert!(error.contains("could not write within 20ms"), "{error}");
        let error = within_deadline("read", RESPONSIVE_DEADLINE, || panic!("boom")).unwrap_err();
        assert!(error.contains("panicked"), "{error}");
    }

    #[test]
    fn failures_name_the_seed_and_the_kill() {
        let failure = CrashFailure {
            seed: 42,
            kill: 7,
            reason: "crash/k0 lost an acknowledged write".to_owned(),
        };
        assert_eq!(
            failure.to_string(),
            "crash campaign (seed 42), after kill 7: crash/k0 lost an acknowledged write"
        );
        assert!(CrashFailure { kill: 0, ..failure }
            .to_string()
            .contains("final check"));
    }

    #[test]
    fn a_child_environment_is_recognised() {
        // The variable is not set in unit tests; the campaign sets it.
        if std::env::var_os(LOCATION_ENV).is_none() {
            assert_eq!(CrashChild::from_env(), None);
        }
        let campaign = CrashCampaign::new("t", Path::new("/x"));
        assert_eq!(campaign.kills, DEFAULT_KILLS * soak_factor() as usize);
        assert_eq!(campaign.feed_rule, FeedRule::ExactlyOnce);
    }
}
