//! Group commit of feed lines: the durable commits of one handle's
//! threads share the feed segment's fsync.
//!
//! A durable commit appends its line to the feed and fsyncs the segment
//! under the feed lock, then renames its document before releasing it, so
//! that no feed reader sees a change before a document read can. Made one
//! commit at a time, that fsync is the whole time the lock is held, and
//! writers on keys of their own take turns at it. So a commit ready for
//! the feed joins its handle's queue instead; the first to find no
//! leader leads: it takes the feed lock, takes the queued commits the
//! segment has room for, checks each one's guard, appends all their lines
//! in one write and one fsync, then renames their staged files in feed
//! order (each once its own staging fsync is done) and releases the lock.
//! The others wait for the outcome; one of them leads the next group.
//! Processes still take turns: the feed lock is a file lock.
//!
//! A commit whose staging fsync or rename fails after the shared fsync
//! has its line cut off the segment with every line after it; the commits
//! of those lines have not been renamed yet and queue again (they still
//! hold their documents' locks and their fsynced staged files). When the
//! append itself fails, its first commit gets the error and the others
//! queue again.
//!
//! A write of a guard key (a schema) is led alone: a commit guarded by it
//! is then checked either before its rename or after it, never in
//! between, as when every commit had the lock to itself.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use revstore::{ChangeKind, CommitOutcome, Error, Key};

/// What one commit brings to the group: its change, its guard and its
/// staged file.
#[derive(Debug)]
pub struct Member {
    /// The key written.
    pub key: Key,
    /// The revision written.
    pub revision: u64,
    /// What the write does, for the feed line.
    pub kind: ChangeKind,
    /// A key that must still be at a revision, checked under the feed lock.
    pub guard: Option<(Key, u64)>,
    /// The staged file, renamed over `target` by the leader.
    pub staged: PathBuf,
    /// The document's file.
    pub target: PathBuf,
}

/// How a member's commit ended, as the leader settled it.
#[derive(Debug)]
pub enum Settled {
    /// Its line is in the feed and its file renamed into place.
    Committed,
    /// Refused under the feed lock (its guard moved on); nothing written.
    Refused(CommitOutcome),
    /// Not written because a commit before it in the group failed: it
    /// should queue again.
    Retry,
    /// Its own staging fsync failed (the member holds that error);
    /// nothing written.
    SyncFailed,
    /// Failed; nothing written.
    Failed(Error),
}

/// A member waiting in the queue, or taken into a group.
#[derive(Debug)]
pub struct Queued {
    /// Tells the member's outcome apart.
    pub ticket: u64,
    /// What it commits.
    pub member: Member,
}

#[derive(Debug, Default)]
struct State {
    /// A leader is at work.
    leading: bool,
    next_ticket: u64,
    queue: VecDeque<Queued>,
    /// Members whose staging fsync ended, with whether it succeeded.
    synced: HashMap<u64, bool>,
    /// Members taken into the group being led, not settled yet.
    taken: Vec<u64>,
    settled: HashMap<u64, Settled>,
}

/// One handle's queue of commits ready for the feed; see the module docs.
#[derive(Debug, Default)]
pub struct FeedGroup {
    state: Mutex<State>,
    changed: Condvar,
}

/// What a member that joined should do next.
#[derive(Debug)]
pub enum Turn {
    /// Lead a group (its own commit is queued in it or a later one).
    Lead,
    /// Its commit was settled by a leader.
    Settled(Settled),
}

impl FeedGroup {
    fn state(&self) -> MutexGuard<'_, State> {
        // Every change to the state is complete before its lock is
        // released, so a panic elsewhere cannot leave it half made.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wait<'a>(&self, state: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.changed
            .wait(state)
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a commit; returns its ticket and whether the caller leads
    /// (no one else was leading).
    pub fn join(&self, member: Member) -> (u64, bool) {
        let mut state = self.state();
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.queue.push_back(Queued { ticket, member });
        let lead = !state.leading;
        state.leading = true;
        (ticket, lead)
    }

    /// Records that a member's staging fsync ended (unless its commit was
    /// settled already, without it).
    pub fn synced(&self, ticket: u64, ok: bool) {
        let mut state = self.state();
        if !state.settled.contains_key(&ticket) {
            state.synced.insert(ticket, ok);
        }
        drop(state);
        self.changed.notify_all();
    }

    /// Waits until a member's staging fsync ended; whether it succeeded.
    pub fn wait_synced(&self, ticket: u64) -> bool {
        let mut state = self.state();
        loop {
            if let Some(ok) = state.synced.remove(&ticket) {
                return ok;
            }
            state = self.wait(state);
        }
    }

    /// Takes the queued members a group may hold, oldest first: at most
    /// `room`, and a write of a reserved (guard) key only alone.
    pub fn take(&self, room: usize) -> Vec<Queued> {
        let mut state = self.state();
        let mut group = Vec::new();
        while group.len() < room.max(1) {
            let Some(next) = state.queue.front() else {
                break;
            };
            let alone = next.member.key.is_reserved();
            if alone && !group.is_empty() {
                break;
            }
            if let Some(next) = state.queue.pop_front() {
                state.taken.push(next.ticket);
                group.push(next);
            }
            if alone {
                break;
            }
        }
        group
    }

    /// Hands the leader's outcomes to their members.
    pub fn settle(&self, outcomes: Vec<(u64, Settled)>) {
        let mut state = self.state();
        for (ticket, settled) in outcomes {
            state.synced.remove(&ticket);
            state.taken.retain(|&taken| taken != ticket);
            state.settled.insert(ticket, settled);
        }
        drop(state);
        self.changed.notify_all();
    }

    /// The outcome of `ticket` if it is settled, taking it.
    pub fn outcome(&self, ticket: u64) -> Option<Settled> {
        self.state().settled.remove(&ticket)
    }

    /// Gives up `ticket` before it was taken into a group (its leader
    /// failed before taking any); `false` when it was taken already.
    pub fn withdraw(&self, ticket: u64) -> bool {
        let mut state = self.state();
        let before = state.queue.len();
        state.queue.retain(|queued| queued.ticket != ticket);
        state.synced.remove(&ticket);
        state.queue.len() != before
    }

    /// Fails every member taken into the group being led and not settled
    /// (its leader, `leader`, panicked) with an error made by `failure`,
    /// and ends the leader's turn: no member waits for ever.
    pub fn fail_taken(&self, leader: u64, failure: impl Fn() -> Error) {
        let mut state = self.state();
        for ticket in std::mem::take(&mut state.taken) {
            state.synced.remove(&ticket);
            if ticket != leader {
                state.settled.insert(ticket, Settled::Failed(failure()));
            }
        }
        state.leading = false;
        drop(state);
        self.changed.notify_all();
    }

    /// Ends a leader's turn; a waiting member whose commit is still queued
    /// leads next.
    pub fn resign(&self) {
        self.state().leading = false;
        self.changed.notify_all();
    }

    /// Waits, as a member that does not lead, until its commit is settled
    /// or it must lead (no one leads and its commit is still queued).
    pub fn wait_turn(&self, ticket: u64) -> Turn {
        let mut state = self.state();
        loop {
            if let Some(settled) = state.settled.remove(&ticket) {
                return Turn::Settled(settled);
            }
            if !state.leading && state.queue.iter().any(|queued| queued.ticket == ticket) {
                state.leading = true;
                return Turn::Lead;
            }
            state = self.wait(state);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(collection: &str, name: &str) -> Member {
        let key = if collection.starts_with('_') {
            Key::new_reserved(collection, name)
        } else {
            Key::new(collection, name)
        }
        .unwrap();
        Member {
            key,
            revision: 1,
            kind: ChangeKind::Created,
            guard: None,
            staged: PathBuf::from("s"),
            target: PathBuf::from("t"),
        }
    }

    #[test]
    fn the_first_leads_the_others_wait_and_take_over_when_it_resigns() {
        let group = FeedGroup::default();
        let (a, lead_a) = group.join(member("c", "a"));
        let (b, lead_b) = group.join(member("c", "b"));
        assert!(lead_a && !lead_b);
        let taken = group.take(1);
        assert_eq!(taken.iter().map(|q| q.ticket).collect::<Vec<_>>(), [a]);
        group.settle(vec![(a, Settled::Committed)]);
        assert!(matches!(group.outcome(a), Some(Settled::Committed)));
        group.resign();
        // `b` is still queued and no one leads: it leads.
        assert!(matches!(group.wait_turn(b), Turn::Lead));
        let (c, lead_c) = group.join(member("c", "c"));
        assert!(!lead_c);
        let taken = group.take(8);
        assert_eq!(taken.iter().map(|q| q.ticket).collect::<Vec<_>>(), [b, c]);
        group.settle(vec![(b, Settled::Retry), (c, Settled::Committed)]);
        assert!(matches!(group.wait_turn(b), Turn::Settled(Settled::Retry)));
        assert!(matches!(
            group.wait_turn(c),
            Turn::Settled(Settled::Committed)
        ));
    }

    #[test]
    fn a_write_of_a_guard_key_is_grouped_alone() {
        let group = FeedGroup::default();
        let tickets: Vec<u64> = [("c", "a"), ("_schema", "c"), ("c", "b"), ("c", "d")]
            .into_iter()
            .map(|(c, n)| group.join(member(c, n)).0)
            .collect();
        let groups: Vec<Vec<u64>> = (0..3)
            .map(|_| group.take(8).iter().map(|q| q.ticket).collect())
            .collect();
        assert_eq!(
            groups,
            [
                vec![tickets[0]],
                vec![tickets[1]],
                vec![tickets[2], tickets[3]]
            ]
        );
    }

    #[test]
    fn a_withdrawn_commit_is_never_taken() {
        let group = FeedGroup::default();
        let (a, _) = group.join(member("c", "a"));
        let (b, _) = group.join(member("c", "b"));
        assert!(group.withdraw(a));
        assert!(!group.withdraw(a));
        let taken = group.take(8);
        assert_eq!(taken.iter().map(|q| q.ticket).collect::<Vec<_>>(), [b]);
        assert!(!group.withdraw(b));
    }

    #[test]
    fn members_of_a_group_whose_leader_panicked_fail_and_another_leads() {
        let group = FeedGroup::default();
        let (a, _) = group.join(member("c", "a"));
        let (b, _) = group.join(member("c", "b"));
        let (c, _) = group.join(member("c", "c"));
        assert_eq!(group.take(2).len(), 2);
        group.fail_taken(99, || Error::Backend {
            backend: "yaml",
            context: "test".to_owned(),
            source: "the leader panicked".into(),
        });
        assert!(matches!(
            group.wait_turn(a),
            Turn::Settled(Settled::Failed(_))
        ));
        assert!(matches!(
            group.wait_turn(b),
            Turn::Settled(Settled::Failed(_))
        ));
        assert!(matches!(group.wait_turn(c), Turn::Lead));
    }

    #[test]
    fn a_leader_waits_for_a_members_staging_fsync() {
        let group = std::sync::Arc::new(FeedGroup::default());
        let (a, _) = group.join(member("c", "a"));
        let other = std::sync::Arc::clone(&group);
        let syncer = std::thread::spawn(move || other.synced(a, false));
        assert!(!group.wait_synced(a));
        syncer.join().unwrap();
    }
}
