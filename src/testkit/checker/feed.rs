//! Step 4 of the checker: the change feed a consumer received, against the
//! committed writes of the history.
//!
//! A consumer that starts after a cursor must receive, per key, exactly
//! the committed revisions after the cursor, in order, each once: a
//! suffix of the key's chain. Which suffix is pinned by time: a write that
//! returned before the cursor was taken is before it, and a write invoked
//! after the cursor was taken is after it.

use std::collections::{BTreeMap, HashMap};

use crate::testkit::history::{FeedCursor, FeedRecord, Op, Outcome, Record};
use crate::ChangeKind;

use super::{Formatter, Violation, ViolationKind};

/// How often a backend may deliver one change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Every committed write once (every backend, as long as no writer
    /// crashed).
    ExactlyOnce,
    /// A revision may be reported more than once, each repeat right after
    /// the first in the key's order: the YAML backend's documented
    /// exception for a writer killed between its feed append and its
    /// rename, whose revision is later committed by another write.
    AtLeastOnce,
}

/// What a checked feed contained.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedSummary {
    /// Changes received.
    pub changes: usize,
    /// Each key (`collection/name`) with the first and last revision the
    /// feed reported for it.
    pub keys: BTreeMap<String, (u64, u64)>,
    /// Keys the history wrote only before the cursor.
    pub quiet_keys: usize,
    /// Reads made after receiving a change that were checked to see it.
    pub reads: usize,
}

/// Checks the changes a consumer received after `cursor` against the
/// history of the run (whose chains [`check`](super::check) has accepted):
/// seqs strictly increase and all lie after the cursor; per key the
/// revisions are exactly the committed ones from some point on, in order,
/// each once (repeats only as `delivery` allows); writes that returned
/// before the cursor was taken are not reported, writes invoked after it
/// are; each change's kind matches the write; and a read made right after
/// receiving a change sees that revision or a newer one.
///
/// The consumer must have followed the feed until after every write
/// returned, so that every key's last revision is due.
///
/// # Errors
/// The first [`Violation`] (kind [`ViolationKind::Feed`]), naming the key,
/// revisions, seqs and op ids.
pub fn check_feed(
    records: &[Record],
    feed: &[FeedRecord],
    cursor: FeedCursor,
    delivery: Delivery,
) -> Result<FeedSummary, Violation> {
    let origin = records
        .iter()
        .map(|r| r.invoke_ns)
        .chain([cursor.invoke_ns])
        .min()
        .unwrap_or(0);
    let fmt = Formatter { origin };
    let fail = |key: String, message: String| Violation {
        kind: ViolationKind::Feed,
        key,
        message,
    };
    let mut previous: Option<&FeedRecord> = None;
    for change in feed {
        if change.seq <= cursor.seq {
            return Err(fail(
                change.key_label(),
                format!(
                    "the consumer started after seq {}, but received seq {} (revision {}), \
                     a change from before its cursor",
                    cursor.seq, change.seq, change.revision
                ),
            ));
        }
        if let Some(p) = previous.filter(|p| p.seq >= change.seq) {
            return Err(fail(
                change.key_label(),
                format!(
                    "seq {} (revision {}) arrived after seq {} ({} revision {}): seqs must \
                     strictly increase",
                    change.seq,
                    change.revision,
                    p.seq,
                    p.key_label(),
                    p.revision
                ),
            ));
        }
        previous = Some(change);
    }

    let ids: HashMap<&str, &Record> = records.iter().map(|r| (r.op_id.as_str(), r)).collect();
    let mut keys: BTreeMap<String, KeyFeed<'_>> = BTreeMap::new();
    for r in records {
        let entry = keys.entry(r.key_label()).or_default();
        match (&r.op, &r.outcome) {
            (op, Outcome::Ok { revision, .. }) if op.is_write() => {
                entry.committed.insert(*revision, r);
            }
            (op, Outcome::Indeterminate { .. }) if op.is_write() => entry.indeterminate += 1,
            _ => {}
        }
    }
    for change in feed {
        keys.entry(change.key_label())
            .or_default()
            .changes
            .push(change);
    }

    let mut summary = FeedSummary {
        changes: feed.len(),
        ..FeedSummary::default()
    };
    for (label, key) in &keys {
        let fail = |message: String| fail(label.clone(), message);
        key.check_order(delivery).map_err(fail)?;
        key.check_suffix(cursor, &fmt).map_err(fail)?;
        key.check_kinds(&fmt).map_err(fail)?;
        summary.reads += key.check_reads(&ids, &fmt).map_err(fail)?;
        match (key.changes.first(), key.changes.last()) {
            (Some(first), Some(last)) => {
                summary
                    .keys
                    .insert(label.clone(), (first.revision, last.revision));
            }
            _ => summary.quiet_keys += 1,
        }
    }
    Ok(summary)
}

/// One key's committed writes and received changes.
#[derive(Default)]
struct KeyFeed<'a> {
    committed: BTreeMap<u64, &'a Record>,
    indeterminate: usize,
    changes: Vec<&'a FeedRecord>,
}

impl KeyFeed<'_> {
    fn check_order(&self, delivery: Delivery) -> Result<(), String> {
        for pair in self.changes.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            let repeat_allowed = delivery == Delivery::AtLeastOnce;
            if b.revision == a.revision && !repeat_allowed {
                return Err(format!(
                    "revision {} was delivered twice (seqs {} and {})",
                    a.revision, a.seq, b.seq
                ));
            }
            if b.revision < a.revision {
                return Err(format!(
                    "revision {} (seq {}) arrived after revision {} (seq {}): out of order",
                    b.revision, b.seq, a.revision, a.seq
                ));
            }
        }
        Ok(())
    }

    /// The received revisions are the committed ones from some revision
    /// on, and that point agrees with when the cursor was taken.
    fn check_suffix(&self, cursor: FeedCursor, fmt: &Formatter) -> Result<(), String> {
        let top = self.committed.keys().next_back().copied().unwrap_or(0);
        if self.indeterminate == 0 {
            if let Some(c) = self
                .changes
                .iter()
                .find(|c| !self.committed.contains_key(&c.revision))
            {
                return Err(format!(
                    "seq {} reports revision {}, which no write of the history committed \
                     (the last committed revision is {top})",
                    c.seq, c.revision
                ));
            }
        }
        let first = self.changes.first().map_or(top + 1, |c| c.revision);
        let mut received = self.changes.iter().map(|c| c.revision).peekable();
        for r in first..=top {
            if received.next_if_eq(&r).is_none() {
                let by = self
                    .committed
                    .get(&r)
                    .map_or_else(String::new, |w| format!(", written by {}", fmt.timed(w)));
                return Err(format!(
                    "revision {r}{by} is missing from the feed, which reports revisions \
                     {first}..={top} of this key"
                ));
            }
            while received.next_if_eq(&r).is_some() {}
        }
        for (&r, w) in &self.committed {
            let returned = w.return_ns.unwrap_or(u64::MAX);
            if r >= first && returned < cursor.invoke_ns {
                return Err(format!(
                    "revision {r} ({}) returned before the cursor (seq {}) was taken at {}, \
                     yet the feed after the cursor reports it",
                    fmt.timed(w),
                    cursor.seq,
                    fmt.at(cursor.invoke_ns)
                ));
            }
            if r < first && w.invoke_ns > cursor.return_ns {
                return Err(format!(
                    "revision {r} ({}) was written after the cursor (seq {}) was taken at {}, \
                     but the feed never reported it",
                    fmt.timed(w),
                    cursor.seq,
                    fmt.at(cursor.return_ns)
                ));
            }
        }
        Ok(())
    }

    fn check_kinds(&self, fmt: &Formatter) -> Result<(), String> {
        let live_after = |r: u64| -> Option<bool> {
            if r == 0 {
                return Some(false);
            }
            self.committed.get(&r).map(|w| match &w.outcome {
                Outcome::Ok { body, .. } => body.is_some(),
                _ => false,
            })
        };
        for c in &self.changes {
            let Some(now_live) = live_after(c.revision) else {
                continue;
            };
            let expected = match (now_live, live_after(c.revision - 1)) {
                (false, _) => ChangeKind::Deleted,
                (true, Some(true)) => ChangeKind::Updated,
                (true, Some(false)) => ChangeKind::Created,
                (true, None) => continue,
            };
            if c.kind != expected {
                let by = self
                    .committed
                    .get(&c.revision)
                    .map_or_else(String::new, |w| format!(" by {}", fmt.op(w)));
                return Err(format!(
                    "seq {} reports revision {} as {}, but the write{by} {} it",
                    c.seq,
                    c.revision,
                    c.kind,
                    match expected {
                        ChangeKind::Created => "created",
                        ChangeKind::Updated => "updated",
                        ChangeKind::Deleted => "deleted",
                    }
                ));
            }
        }
        Ok(())
    }

    /// A read made after receiving a change sees it (or something newer):
    /// the feed never runs ahead of what reads show.
    fn check_reads(&self, ids: &HashMap<&str, &Record>, fmt: &Formatter) -> Result<usize, String> {
        let mut checked = 0;
        for c in &self.changes {
            let Some(id) = &c.read else { continue };
            let Some(read) = ids.get(id.as_str()) else {
                return Err(format!(
                    "seq {} names read {id}, which is not in the history",
                    c.seq
                ));
            };
            if read.op != Op::Read {
                return Err(format!(
                    "seq {} names {}, which is not a read",
                    c.seq,
                    fmt.op(read)
                ));
            }
            let seen = match &read.outcome {
                Outcome::Ok { revision, .. } => *revision,
                Outcome::NotFound {
                    revision: Some(revision),
                } => *revision,
                _ => continue,
            };
            if seen < c.revision {
                return Err(format!(
                    "{} was made after seq {} reported revision {}, but saw revision {seen}: \
                     the feed showed a change reads did not",
                    fmt.timed(read),
                    c.seq,
                    c.revision
                ));
            }
            checked += 1;
        }
        Ok(checked)
    }
}
