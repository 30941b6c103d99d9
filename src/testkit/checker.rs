//! The history checker: did some order of the committed writes explain
//! every answer, with no update lost?
//!
//! Each key is checked on its own, in three steps (see `TESTING.md`):
//! 1. **Chain.** The committed writes, plus writes of unknown outcome whose
//!    op id is seen later in a body, have unique revisions, contiguous from
//!    1 (a gap only where a write of unknown outcome that nobody saw could
//!    fill it). Every body seen at a revision carries the op id of that
//!    revision's write, and a read that began after every write returned
//!    saw the last revision.
//! 2. **Replay.** From "absent", each write is applied in revision order
//!    with the reference semantics (the engine's own patch code and
//!    [`Precondition::holds`](crate::Precondition::holds)): its precondition held on the
//!    revision before it, and every body any operation returned equals the
//!    replayed one. Conflicts must report a state on which the
//!    precondition fails; definite errors must be what some state answers.
//! 3. **Real time.** Each revision is given the earliest instant its
//!    write's window, its predecessor and the operations that saw the
//!    revision before allow; every operation that saw a revision must
//!    overlap the time that revision was current.
//!
//! Because revisions are never reused, there is nothing to search: the
//! check is linear in the history (plus one patch application per write).
//!
//! Two further checks take more than the history: [`check_feed`] compares
//! the changes a feed consumer received with the committed writes (step 4
//! of `TESTING.md`), and [`check_schema`] replays the whole feed to prove
//! that every committed document revision satisfies the schema current at
//! its commit.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde_json::Value;

use crate::testkit::history::{Op, Outcome, Record};
use crate::{Body, Key};

mod feed;
mod reference;
mod schema;
mod timing;

#[cfg(test)]
mod feed_tests;
#[cfg(test)]
mod schema_tests;
#[cfg(test)]
mod tests;

pub use feed::{check_feed, Delivery, FeedSummary};
use reference::State;
pub use schema::{check_schema, SchemaSummary};
use timing::{Ceiling, Floor, Sighting, Window};

/// Counts of what a checked history contained.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Each key (`collection/name`) with its last revision.
    pub keys: BTreeMap<String, u64>,
    /// Operations in total.
    pub ops: usize,
    /// Reads.
    pub reads: usize,
    /// Writes that committed.
    pub committed: usize,
    /// Writes refused by a failed precondition.
    pub conflicts: usize,
    /// Writes that found no live document.
    pub not_found: usize,
    /// Other definite errors of reads and writes, by
    /// [`Error::kind`](crate::Error::kind).
    pub failed: BTreeMap<String, usize>,
    /// Writes of unknown outcome.
    pub indeterminate: usize,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ops on {} keys: {} reads, {} committed writes, {} conflicts, {} not found, \
             {} indeterminate, failed {:?}; last revisions {:?}",
            self.ops,
            self.keys.len(),
            self.reads,
            self.committed,
            self.conflicts,
            self.not_found,
            self.indeterminate,
            self.failed,
            self.keys
        )
    }
}

/// Which rule a history broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViolationKind {
    /// The history itself is inconsistent (a repeated op id, a return before
    /// its invoke, a write committed at revision 0, a read that conflicted).
    Malformed,
    /// Two committed writes share a revision: one of them was lost.
    DuplicateRevision,
    /// A revision has no write that could have made it.
    MissingRevision,
    /// A body seen at some revision was written by another operation than
    /// the one that committed that revision.
    WrongWriter,
    /// A read after every write returned did not see the last revision.
    FinalState,
    /// Replaying the writes in revision order disagrees with an answer: a
    /// precondition that did not hold, a body that differs (a lost write),
    /// an error no state explains.
    Replay,
    /// No instant order of the writes explains what operations saw when.
    RealTime,
    /// A feed consumer received a change it should not have, missed one,
    /// or received them out of order ([`check_feed`]).
    Feed,
    /// A committed document revision breaks the schema current at its
    /// commit, or a refusal no current schema explains ([`check_schema`]).
    Schema,
}

/// A broken promise, with a message naming the key, revisions and op ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The rule broken.
    pub kind: ViolationKind,
    /// The key (`collection/name`), or empty for history-wide problems.
    pub key: String,
    /// What happened, naming revisions and op ids.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} on {}: {}", self.kind, self.key, self.message)
    }
}

impl std::error::Error for Violation {}

/// Checks a history (the records of every client of a run, in any order).
///
/// # Errors
/// The first [`Violation`] found: keys are checked in order, and within a
/// key the chain, then the replay, then real time.
pub fn check(records: &[Record]) -> Result<Summary, Violation> {
    let mut summary = Summary::default();
    let mut ids: HashMap<&str, &Record> = HashMap::new();
    let mut by_key: BTreeMap<(&str, &str), Vec<&Record>> = BTreeMap::new();
    let origin = records.iter().map(|r| r.invoke_ns).min().unwrap_or(0);
    let fmt = Formatter { origin };
    for record in records {
        let malformed = |message| Violation {
            kind: ViolationKind::Malformed,
            key: record.key_label(),
            message,
        };
        if let Some(other) = ids.insert(&record.op_id, record) {
            return Err(malformed(format!(
                "op id {} is used twice (by {} and {})",
                record.op_id, other.client, record.client
            )));
        }
        if record.return_ns.is_some_and(|r| r < record.invoke_ns) {
            return Err(malformed(format!(
                "{} returned before it was invoked",
                fmt.op(record)
            )));
        }
        count(&mut summary, record);
        by_key
            .entry((&record.collection, &record.name))
            .or_default()
            .push(record);
    }
    for ((collection, name), ops) in by_key {
        let label = format!("{collection}/{name}");
        let key = Key::new(collection, name)
            .or_else(|_| Key::new_reserved(collection, name))
            .map_err(|e| Violation {
                kind: ViolationKind::Malformed,
                key: label.clone(),
                message: e.to_string(),
            })?;
        let top = KeyCheck::new(key, label.clone(), ops, fmt)?.run()?;
        summary.keys.insert(label, top);
    }
    Ok(summary)
}

fn count(summary: &mut Summary, record: &Record) {
    summary.ops += 1;
    if !record.op.is_write() {
        summary.reads += 1;
        // A read that failed observed nothing, but it is still an error a
        // clean run must not have.
        if let Outcome::Failed { kind, .. } = &record.outcome {
            *summary.failed.entry(kind.clone()).or_default() += 1;
        }
        return;
    }
    match &record.outcome {
        Outcome::Ok { .. } => summary.committed += 1,
        Outcome::Conflict { .. } => summary.conflicts += 1,
        Outcome::NotFound { .. } => summary.not_found += 1,
        Outcome::Failed { kind, .. } => *summary.failed.entry(kind.clone()).or_default() += 1,
        Outcome::Indeterminate { .. } => summary.indeterminate += 1,
    }
}

/// Renders operations and instants for messages, times relative to the
/// first invoke of the history.
#[derive(Debug, Clone, Copy)]
struct Formatter {
    origin: u64,
}

impl Formatter {
    fn at(&self, ns: u64) -> String {
        if ns == u64::MAX {
            return "never".to_owned();
        }
        let rel = ns.saturating_sub(self.origin);
        format!("+{}.{:06}ms", rel / 1_000_000, rel % 1_000_000)
    }

    fn op(&self, r: &Record) -> String {
        format!("op {} ({} by {})", r.op_id, r.op.describe(), r.client)
    }

    fn timed(&self, r: &Record) -> String {
        format!(
            "{} [invoked {}, returned {}]",
            self.op(r),
            self.at(r.invoke_ns),
            self.at(r.return_ns.unwrap_or(u64::MAX))
        )
    }
}

fn compact(body: &Body) -> String {
    serde_json::to_string(body).unwrap_or_else(|_| format!("{body:?}"))
}

fn describe_state(revision: u64, state: &State) -> String {
    match (revision, state) {
        (0, _) => "never written".to_owned(),
        (_, None) => format!("revision {revision}, deleted"),
        (_, Some(body)) => format!("revision {revision}, body {}", compact(body)),
    }
}

/// What an operation reported about one revision.
#[derive(Debug, Clone, Copy)]
enum Seen<'a> {
    /// A live document with this body.
    Body(&'a Body),
    /// A live document, body not reported (a conflict).
    Live,
    /// No live document (a tombstone, or never written at revision 0).
    NotLive,
}

#[derive(Debug, Clone, Copy)]
struct Observation<'a> {
    record: &'a Record,
    revision: u64,
    seen: Seen<'a>,
    /// Whether this is a committed write reporting its own result.
    own_write: bool,
}

/// The write that made a revision.
#[derive(Debug, Clone, Copy)]
struct Writer<'a> {
    /// `None` for a revision no one saw being written, filled by one of the
    /// writes of unknown outcome.
    record: Option<&'a Record>,
    committed: bool,
}

struct KeyCheck<'a> {
    key: Key,
    label: String,
    fmt: Formatter,
    ops: Vec<&'a Record>,
    by_id: HashMap<&'a str, &'a Record>,
    writers: BTreeMap<u64, Writer<'a>>,
    observations: Vec<Observation<'a>>,
    /// Definite failures that observed "some state that answers this".
    vague: Vec<&'a Record>,
    indeterminate: Vec<&'a Record>,
    unseen_indeterminate: Vec<&'a Record>,
    top: u64,
    states: Vec<Option<State>>,
}

impl<'a> KeyCheck<'a> {
    fn new(
        key: Key,
        label: String,
        ops: Vec<&'a Record>,
        fmt: Formatter,
    ) -> Result<KeyCheck<'a>, Violation> {
        let by_id = ops.iter().map(|r| (r.op_id.as_str(), *r)).collect();
        let mut check = KeyCheck {
            key,
            label,
            fmt,
            ops,
            by_id,
            writers: BTreeMap::new(),
            observations: Vec::new(),
            vague: Vec::new(),
            indeterminate: Vec::new(),
            unseen_indeterminate: Vec::new(),
            top: 0,
            states: Vec::new(),
        };
        check.classify()?;
        Ok(check)
    }

    fn violation(&self, kind: ViolationKind, message: String) -> Violation {
        Violation {
            kind,
            key: self.label.clone(),
            message,
        }
    }

    fn run(mut self) -> Result<u64, Violation> {
        self.resolve_op_ids()?;
        self.check_chain()?;
        self.replay()?;
        self.check_real_time()?;
        Ok(self.top)
    }

    /// Sorts every record into writers, observations and the rest.
    fn classify(&mut self) -> Result<(), Violation> {
        let ops = self.ops.clone();
        for record in ops {
            let observe = |revision, seen| Observation {
                record,
                revision,
                seen,
                own_write: false,
            };
            match (&record.op, &record.outcome) {
                (Op::Read, Outcome::Ok { revision, body }) => {
                    let seen = body.as_ref().map_or(Seen::NotLive, Seen::Body);
                    self.observations.push(observe(*revision, seen));
                }
                (Op::Read, Outcome::NotFound { revision: Some(r) }) => {
                    self.observations.push(observe(*r, Seen::NotLive));
                }
                (Op::Read, Outcome::NotFound { revision: None }) => self.vague.push(record),
                (Op::Read, Outcome::Conflict { .. } | Outcome::Indeterminate { .. }) => {
                    return Err(self.violation(
                        ViolationKind::Malformed,
                        format!("{} reports a write's outcome", self.fmt.op(record)),
                    ));
                }
                (Op::Read, Outcome::Failed { .. }) => {}
                (_, Outcome::Ok { revision, body }) => {
                    self.add_committed(record, *revision)?;
                    let seen = body.as_ref().map_or(Seen::NotLive, Seen::Body);
                    self.observations.push(Observation {
                        own_write: true,
                        ..observe(*revision, seen)
                    });
                }
                (op, Outcome::Conflict { actual }) => {
                    if op.precondition().holds(*actual) {
                        return Err(self.violation(
                            ViolationKind::Replay,
                            format!(
                                "{} reported a conflict, but its precondition holds on the \
                                 state it reported ({actual})",
                                self.fmt.op(record)
                            ),
                        ));
                    }
                    let seen = if actual.is_live() {
                        Seen::Live
                    } else {
                        Seen::NotLive
                    };
                    self.observations
                        .push(observe(actual.last_revision(), seen));
                }
                (_, Outcome::NotFound { revision }) => {
                    if let Some(r) = revision {
                        self.observations.push(observe(*r, Seen::NotLive));
                    }
                    self.vague.push(record);
                }
                (op, Outcome::Failed { kind, .. }) => {
                    let regardless = reference::fails_regardless(&self.key, op);
                    let state_dependent = matches!(
                        kind.as_str(),
                        "invalid_patch" | "patch_test_failed" | "limit_exceeded"
                    );
                    if regardless.is_none() && state_dependent {
                        self.vague.push(record);
                    }
                }
                (_, Outcome::Indeterminate { .. }) => self.indeterminate.push(record),
            }
        }
        Ok(())
    }

    fn add_committed(&mut self, record: &'a Record, revision: u64) -> Result<(), Violation> {
        if revision == 0 {
            return Err(self.violation(
                ViolationKind::Malformed,
                format!("{} committed revision 0", self.fmt.op(record)),
            ));
        }
        let writer = Writer {
            record: Some(record),
            committed: true,
        };
        if let Some(Writer {
            record: Some(other),
            ..
        }) = self.writers.insert(revision, writer)
        {
            return Err(self.violation(
                ViolationKind::DuplicateRevision,
                format!(
                    "revision {revision} was committed twice: by {} and by {} — one of the \
                     two writes was lost",
                    self.fmt.timed(other),
                    self.fmt.timed(record)
                ),
            ));
        }
        Ok(())
    }

    /// Every body seen at a revision names, in its `op` field, the write
    /// that made it: check it against the committed writer, or identify a
    /// write of unknown outcome that did commit.
    fn resolve_op_ids(&mut self) -> Result<(), Violation> {
        let mut placed: HashMap<&'a str, u64> = HashMap::new();
        let mut order: Vec<usize> = (0..self.observations.len()).collect();
        order.sort_by_key(|&i| {
            (
                self.observations[i].revision,
                !self.observations[i].own_write,
            )
        });
        for i in order {
            let obs = self.observations[i];
            let Seen::Body(body) = obs.seen else {
                continue;
            };
            let Some(Value::String(id)) = body.get("op") else {
                continue;
            };
            let v = obs.revision;
            let wrong = |this: &Self, detail: String| {
                this.violation(
                    ViolationKind::WrongWriter,
                    format!(
                        "{} returned revision {v} with a body written by op {id}, {detail}",
                        this.fmt.timed(obs.record)
                    ),
                )
            };
            if let Some(writer) = self.writers.get(&v) {
                match writer.record {
                    Some(w) if w.op_id == *id => continue,
                    Some(w) => {
                        let how = if writer.committed {
                            "committed"
                        } else {
                            "was seen to have made"
                        };
                        let detail = format!("but {} {how} revision {v}", self.fmt.op(w));
                        return Err(wrong(self, detail));
                    }
                    None => continue,
                }
            }
            let Some(&author) = self.by_id.get(id.as_str()) else {
                return Err(wrong(
                    self,
                    "an op id that is not in this key's history".into(),
                ));
            };
            match &author.outcome {
                Outcome::Indeterminate { .. } if author.op.is_write() => {
                    if let Some(&u) = placed.get(author.op_id.as_str()) {
                        if u != v {
                            let detail = format!("which was already seen at revision {u}");
                            return Err(wrong(self, detail));
                        }
                    }
                    placed.insert(&author.op_id, v);
                    self.writers.insert(
                        v,
                        Writer {
                            record: Some(author),
                            committed: false,
                        },
                    );
                }
                Outcome::Ok { revision, .. } if author.op.is_write() => {
                    let detail = format!(
                        "which committed revision {revision}, not {v} ({})",
                        self.fmt.op(author)
                    );
                    return Err(wrong(self, detail));
                }
                other => {
                    let detail = format!(
                        "which never committed ({} answered {other:?})",
                        self.fmt.op(author)
                    );
                    return Err(wrong(self, detail));
                }
            }
        }
        self.unseen_indeterminate = self
            .indeterminate
            .iter()
            .copied()
            .filter(|r| !placed.contains_key(r.op_id.as_str()))
            .collect();
        Ok(())
    }

    /// Revisions are contiguous, and the last read saw the last one.
    fn check_chain(&mut self) -> Result<(), Violation> {
        let last_written = self.writers.keys().next_back().copied().unwrap_or(0);
        let last_seen = self
            .observations
            .iter()
            .map(|o| o.revision)
            .max()
            .unwrap_or(0);
        self.top = last_written.max(last_seen);
        let gaps: Vec<u64> = (1..=self.top)
            .filter(|r| !self.writers.contains_key(r))
            .collect();
        if gaps.len() > self.unseen_indeterminate.len() {
            let first = gaps[0];
            let seen_by = self
                .observations
                .iter()
                .filter(|o| o.revision >= first)
                .min_by_key(|o| o.revision)
                .map(|o| format!(" ({} saw revision {})", self.fmt.op(o.record), o.revision))
                .unwrap_or_default();
            return Err(self.violation(
                ViolationKind::MissingRevision,
                format!(
                    "revisions run up to {}, but {} of them ({}) have no write: no operation \
                     committed them and only {} write(s) of unknown outcome could fill them{seen_by}",
                    self.top,
                    gaps.len(),
                    gaps.iter()
                        .map(u64::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                    self.unseen_indeterminate.len()
                ),
            ));
        }
        for gap in gaps {
            self.writers.insert(
                gap,
                Writer {
                    record: None,
                    committed: false,
                },
            );
        }
        self.check_final_read()
    }

    fn check_final_read(&self) -> Result<(), Violation> {
        if !self.indeterminate.is_empty() {
            return Ok(());
        }
        let writes_done = self
            .ops
            .iter()
            .filter(|r| r.op.is_write())
            .map(|r| r.return_ns.unwrap_or(u64::MAX))
            .max()
            .unwrap_or(0);
        let last = self
            .observations
            .iter()
            .filter(|o| !o.own_write && o.record.invoke_ns > writes_done)
            .find(|o| o.revision != self.top);
        if let Some(o) = last {
            let by = match self.writers.get(&self.top).and_then(|w| w.record) {
                Some(w) => format!(" ({})", self.fmt.op(w)),
                None => String::new(),
            };
            return Err(self.violation(
                ViolationKind::FinalState,
                format!(
                    "{}, which began after every write had returned, saw revision {}, but the \
                     last committed revision is {}{by}",
                    self.fmt.timed(o.record),
                    o.revision,
                    self.top
                ),
            ));
        }
        Ok(())
    }

    fn observations_at(&self) -> BTreeMap<u64, Vec<Observation<'a>>> {
        let mut at: BTreeMap<u64, Vec<Observation<'a>>> = BTreeMap::new();
        for o in &self.observations {
            at.entry(o.revision).or_default().push(*o);
        }
        for list in at.values_mut() {
            list.sort_by_key(|o| (!o.own_write, o.record.invoke_ns));
        }
        at
    }

    /// Applies the writes in revision order and compares every answer.
    fn replay(&mut self) -> Result<(), Violation> {
        let at = self.observations_at();
        let mut states: Vec<Option<State>> = vec![Some(None)];
        for r in 0..=self.top {
            let mut state: Option<State> = if r == 0 {
                Some(None)
            } else {
                self.apply_writer(r, &states[(r - 1) as usize])?
            };
            // Where the state is unknown, the first full report of it stands
            // in, and every other report must agree with that one.
            let mut established_by: Option<&Record> = None;
            for o in at.get(&r).into_iter().flatten() {
                let reported: Option<State> = match o.seen {
                    Seen::Body(b) => Some(Some(b.clone())),
                    Seen::NotLive => Some(None),
                    Seen::Live => None,
                };
                match (&state, reported) {
                    (Some(expected), Some(got)) if !same_state(expected, &got) => {
                        return Err(self.body_mismatch(r, o, expected, established_by));
                    }
                    (Some(None), None) => {
                        return Err(self.body_mismatch(r, o, &None, established_by));
                    }
                    (None, Some(got)) => {
                        state = Some(got);
                        established_by = Some(o.record);
                    }
                    _ => {}
                }
            }
            if r > 0 {
                states.push(state);
            }
        }
        self.states = states;
        Ok(())
    }

    fn apply_writer(&self, r: u64, base: &Option<State>) -> Result<Option<State>, Violation> {
        let Some(Writer {
            record: Some(w), ..
        }) = self.writers.get(&r)
        else {
            return Ok(None);
        };
        let Some(base) = base else {
            return Ok(reference::apply_blind(&w.op));
        };
        reference::apply(&self.key, &w.op, r - 1, base)
            .map(Some)
            .map_err(|e| {
                self.violation(
                    ViolationKind::Replay,
                    format!(
                        "{} made revision {r}, but on the state before it ({}) the reference \
                         semantics answer: {e}",
                        self.fmt.timed(w),
                        describe_state(r - 1, base)
                    ),
                )
            })
    }

    fn body_mismatch(
        &self,
        r: u64,
        o: &Observation<'_>,
        expected: &State,
        established_by: Option<&Record>,
    ) -> Violation {
        let got = match o.seen {
            Seen::Body(b) => describe_state(r, &Some(b.clone())),
            Seen::Live => format!("revision {r}, live"),
            Seen::NotLive => describe_state(r, &None),
        };
        let (source, note) = match established_by {
            Some(first) => (format!("{} reported", self.fmt.op(first)), String::new()),
            None => {
                let note = match self.writers.get(&r).and_then(|w| w.record) {
                    Some(w) => format!(" (revision {r} was written by {})", self.fmt.op(w)),
                    None => String::new(),
                };
                (
                    "replaying the writes in revision order gives".to_owned(),
                    note,
                )
            }
        };
        self.violation(
            ViolationKind::Replay,
            format!(
                "{} reported {got}, but {source} {}{note}",
                self.fmt.timed(o.record),
                describe_state(r, expected)
            ),
        )
    }

    fn check_real_time(&self) -> Result<(), Violation> {
        let first_unseen = self
            .unseen_indeterminate
            .iter()
            .map(|r| r.invoke_ns)
            .min()
            .unwrap_or(0);
        let windows: Vec<Window> = (1..=self.top)
            .map(|r| match self.writers.get(&r).and_then(|w| w.record) {
                Some(w) => Window {
                    start: w.invoke_ns,
                    end: w.return_ns.unwrap_or(u64::MAX),
                },
                None => Window {
                    start: first_unseen,
                    end: u64::MAX,
                },
            })
            .collect();
        let sightings: Vec<Sighting> = self
            .observations
            .iter()
            .enumerate()
            .map(|(index, o)| Sighting {
                revision: o.revision,
                window: window_of(o.record),
                index,
            })
            .collect();
        let schedule = timing::schedule(&windows, &sightings).map_err(|e| {
            let writer = |r: u64| match self.writers.get(&r).and_then(|w| w.record) {
                Some(w) => self.fmt.timed(w),
                None => "a write of unknown outcome".to_owned(),
            };
            let floor = match e.floor {
                Floor::None => "the start".to_owned(),
                Floor::Invoked { revision } if revision == e.revision => {
                    "its write was invoked then".to_owned()
                }
                Floor::Invoked { revision } => format!(
                    "it follows revision {revision}, which cannot take effect earlier: {}",
                    writer(revision)
                ),
                Floor::SawPrevious { index } => {
                    let o = &self.observations[index];
                    format!(
                        "{} began then and still saw revision {}",
                        self.fmt.timed(o.record),
                        o.revision
                    )
                }
            };
            let ceiling = match e.ceiling {
                Ceiling::Returned => "its write had returned by".to_owned(),
                Ceiling::Saw { index } => format!(
                    "{} had already seen it when it returned at",
                    self.fmt.timed(self.observations[index].record)
                ),
            };
            self.violation(
                ViolationKind::RealTime,
                format!(
                    "revision {} ({}) cannot take effect before {} ({floor}), but {ceiling} {}",
                    e.revision,
                    writer(e.revision),
                    self.fmt.at(e.floor_at),
                    self.fmt.at(e.ceiling_at)
                ),
            )
        })?;
        self.check_vague(&schedule)
    }

    /// A definite error (not found, a failed `test`, an invalid patch) must
    /// be what some state answers, and that state must have been current
    /// at some instant of the operation.
    fn check_vague(&self, schedule: &timing::Schedule) -> Result<(), Violation> {
        for record in &self.vague {
            let kind = match &record.outcome {
                Outcome::Failed { kind, .. } => kind.as_str(),
                _ => "not_found",
            };
            let answers_so = |v: u64| match &self.states[v as usize] {
                None => true,
                // A read that found nothing without saying at which
                // revision (a cache answering from memory) is explained
                // by any state without a live document.
                Some(state) if record.op == Op::Read => state.is_none() && kind == "not_found",
                Some(state) => reference::apply(&self.key, &record.op, v, state)
                    .err()
                    .is_some_and(|e| e.kind() == kind),
            };
            // Only the few revisions current during the operation are
            // replayed; the whole chain only to explain a failure.
            let window = window_of(record);
            if (0..=self.top)
                .filter(|&v| schedule.could_be_current(v, window))
                .any(answers_so)
            {
                continue;
            }
            let explains: Vec<u64> = (0..=self.top).filter(|&v| answers_so(v)).collect();
            if explains.is_empty() {
                return Err(self.violation(
                    ViolationKind::Replay,
                    format!(
                        "{} failed with {kind}, but no state of the key in the history \
                         answers it so",
                        self.fmt.timed(record)
                    ),
                ));
            }
            return Err(self.violation(
                ViolationKind::RealTime,
                format!(
                    "{} failed with {kind}, but none of the states that answer so \
                     (revisions {explains:?}) was current while it ran",
                    self.fmt.timed(record)
                ),
            ));
        }
        Ok(())
    }
}

fn window_of(record: &Record) -> Window {
    Window {
        start: record.invoke_ns,
        end: record.return_ns.unwrap_or(u64::MAX),
    }
}

/// Bodies compare as JSON values: the checker proves that no update is
/// lost, and leaves key order to the conformance suite.
fn same_state(a: &State, b: &State) -> bool {
    a == b
}
