//! The parent's model of what the store must hold, built from the
//! child's lines, and the checks of what a fresh handle reads against it.

use std::fmt;

use serde_json::Value;

use super::child::Line;
use super::{key_name, COLLECTION, KEYS};
use crate::{Change, ChangeKind, Entry, Record};

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
pub(super) struct FeedEntry {
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

pub(super) fn describe(record: Option<&Record>) -> String {
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
            abbreviate(&Value::Object(crate::Body::clone(body)))
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
pub(super) enum Resolution {
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
pub(super) struct Model {
    pub(super) names: Vec<String>,
    /// Per key, the newest state known committed (`None`: never written).
    pub(super) known: Vec<Option<Record>>,
    /// The write announced and not yet acknowledged: key index and state.
    pub(super) pending: Option<(usize, Record)>,
    /// Every committed write, in commit order.
    pub(super) committed: Vec<FeedEntry>,
    /// Writes in flight at a kill that did not commit.
    pub(super) abandoned: Vec<Abandoned>,
    /// How many of `committed` the feed was checked for, and the seq after
    /// which to read the feed next.
    pub(super) feed_checked: usize,
    pub(super) feed_cursor: u64,
    pub(super) rule: FeedRule,
}

fn kind_of(previous: Option<&Record>, next: &Record) -> ChangeKind {
    match (previous.and_then(|r| r.body.as_ref()), &next.body) {
        (_, None) => ChangeKind::Deleted,
        (None, Some(_)) => ChangeKind::Created,
        (Some(_), Some(_)) => ChangeKind::Updated,
    }
}

impl Model {
    pub(super) fn new(rule: FeedRule) -> Model {
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
    pub(super) fn commit(&mut self, index: usize, record: Record) {
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

    pub(super) fn line(&mut self, line: Line) -> std::result::Result<(), String> {
        match line {
            Line::Ready => Ok(()),
            Line::Intent { name, record } => self.intent(&name, record),
            Line::Ack { name, record } => self.ack(&name, record),
            Line::Error(message) => Err(format!("the child failed: {message}")),
        }
    }

    /// Compares the states read after a kill (one per key, in key order)
    /// with the model, and settles the write in flight.
    pub(super) fn resolve(
        &mut self,
        observed: &[Option<Record>],
    ) -> std::result::Result<Resolution, String> {
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
    pub(super) fn check_listing(&self, listing: &[Entry]) -> std::result::Result<(), String> {
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
    pub(super) fn check_new_changes(
        &mut self,
        changes: &[Change],
    ) -> std::result::Result<usize, String> {
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
    pub(super) fn check_whole_feed(
        &self,
        changes: &[Change],
    ) -> std::result::Result<usize, String> {
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
pub(super) struct Abandoned {
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
