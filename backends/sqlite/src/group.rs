//! Group commit: the threads of one process that commit to the same file
//! at the same moment queue up, and one of them (the leader) runs all the
//! queued commits in one SQLite transaction, so they share its lock
//! handoff and its fsync.
//!
//! The queue changes who runs a commit, never what it checks: each commit
//! in a group keeps its own guard and revision checks and its own feed
//! row, a commit that loses its race leaves the others alone, and every
//! caller learns its outcome only once the shared `COMMIT` has returned.
//! SQLite's write lock still orders the groups of different processes
//! (and of handles with different settings, which never share a queue).

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use revstore::{ChangeKind, CommitOutcome, Durability, Error, Key};

/// Most commits one transaction runs: bounds how long the callers of a
/// group wait for each other.
const MAX_GROUP: usize = 64;

/// Most body bytes one transaction writes (beyond its first commit).
const MAX_GROUP_BYTES: usize = 16 << 20;

/// One commit as the queue carries it: everything it needs, owned, so that
/// another thread (the group's leader) can run it.
#[derive(Debug)]
pub(crate) struct Job {
    /// The key written.
    pub(crate) key: Key,
    /// The revision the key must still have (0: never written).
    pub(crate) expected: i64,
    /// The revision written.
    pub(crate) new_revision: i64,
    /// The new body as the JSON text stored, or `None` for a tombstone
    /// (shared with the caller, which caches it once committed).
    pub(crate) body: Option<Arc<str>>,
    /// A key that must still be at a revision, and that revision.
    pub(crate) guard: Option<(Key, u64)>,
    /// What the write does, for the feed.
    pub(crate) kind: ChangeKind,
}

impl Job {
    fn bytes(&self) -> usize {
        self.body.as_ref().map_or(0, |body| body.len())
    }
}

/// What one commit of a group came to.
pub(crate) type Outcome = Result<CommitOutcome, Error>;

/// What identifies a queue: the file and every setting that changes how a
/// commit is run, so that a group never commits one handle's write with
/// another handle's durability or retention.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct QueueKey {
    file: PathBuf,
    durability: Durability,
    retain_changes: u64,
    lock_timeout: Duration,
}

/// The queues of this process, by file and settings. Entries die with the
/// last handle using them.
static QUEUES: LazyLock<Mutex<HashMap<QueueKey, Weak<WriterQueue>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The commits of one process waiting for one file, and who runs them.
#[derive(Debug, Default)]
pub(crate) struct WriterQueue {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Jobs not yet taken by a leader, oldest first, with their tickets.
    waiting: VecDeque<(u64, Job)>,
    /// Outcomes of jobs whose group has finished, by ticket, until their
    /// caller collects them.
    done: HashMap<u64, Outcome>,
    /// Whether a leader is running a group now.
    leading: bool,
    /// The callers asleep, by ticket, each on a condition variable of its
    /// own: a finished group wakes exactly its callers and the next
    /// leader (waking them all cost each a futex round trip per group),
    /// and nobody when nobody sleeps.
    asleep: HashMap<u64, Arc<Condvar>>,
    next_ticket: u64,
    /// The largest group run so far (for tests and diagnostics).
    largest_group: usize,
}

impl WriterQueue {
    /// The queue shared by every handle of this process on `file` with
    /// these settings. `file` should be canonical, so that two spellings
    /// of one path share a queue; if they do not, commits are only not
    /// grouped (SQLite's lock still orders them).
    pub(crate) fn for_file(
        file: &Path,
        durability: Durability,
        retain_changes: u64,
        lock_timeout: Duration,
    ) -> Arc<WriterQueue> {
        let key = QueueKey {
            file: file.to_path_buf(),
            durability,
            retain_changes,
            lock_timeout,
        };
        let mut queues = QUEUES.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(queue) = queues.get(&key).and_then(Weak::upgrade) {
            return queue;
        }
        queues.retain(|_, queue| queue.strong_count() > 0);
        let queue = Arc::new(WriterQueue::default());
        queues.insert(key, Arc::downgrade(&queue));
        queue
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every update of the state is completed before the lock is
        // released, and a leader's panic is turned into outcomes by
        // `Leading`, so a poisoned state is still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Commits `job` through the queue: waits while another thread leads,
    /// and when no one does, leads a group of the waiting jobs, running
    /// them with `run` (which returns one outcome per job, in order).
    /// Returns `job`'s outcome once the group holding it has finished.
    pub(crate) fn submit(&self, job: Job, run: &dyn Fn(&[Job]) -> Vec<Outcome>) -> Outcome {
        let mut state = self.state();
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.waiting.push_back((ticket, job));
        loop {
            if let Some(outcome) = state.done.remove(&ticket) {
                return outcome;
            }
            if state.leading {
                let wake = Arc::clone(
                    state
                        .asleep
                        .entry(ticket)
                        .or_insert_with(|| Arc::new(Condvar::new())),
                );
                state = wake.wait(state).unwrap_or_else(PoisonError::into_inner);
                state.asleep.remove(&ticket);
                continue;
            }
            state.leading = true;
            let group = take_group(&mut state.waiting);
            state.largest_group = state.largest_group.max(group.len());
            drop(state);
            let (tickets, jobs) = group.into_iter().unzip();
            let leading = Leading {
                queue: self,
                own: ticket,
                tickets,
                jobs,
                handed_out: false,
            };
            let outcomes = run(&leading.jobs);
            leading.hand_out(outcomes);
            state = self.state();
        }
    }

    /// The largest group run so far.
    #[cfg(test)]
    pub(crate) fn largest_group(&self) -> usize {
        self.state().largest_group
    }

    /// How many jobs wait for a leader.
    #[cfg(test)]
    pub(crate) fn waiting(&self) -> usize {
        self.state().waiting.len()
    }
}

/// The oldest waiting jobs, as many as one group takes.
fn take_group(waiting: &mut VecDeque<(u64, Job)>) -> Vec<(u64, Job)> {
    let mut group = Vec::new();
    let mut bytes = 0;
    while let Some((_, next)) = waiting.front() {
        if group.len() == MAX_GROUP || (!group.is_empty() && bytes + next.bytes() > MAX_GROUP_BYTES)
        {
            break;
        }
        bytes += next.bytes();
        if let Some(entry) = waiting.pop_front() {
            group.push(entry);
        }
    }
    group
}

/// The group a leader is running. Whatever happens to the leader, its
/// group's callers get an outcome and the queue gets a new leader: if the
/// leader unwinds, [`Drop`] reports an error to each of them.
struct Leading<'a> {
    queue: &'a WriterQueue,
    /// The leader's own ticket, which its group may not hold.
    own: u64,
    tickets: Vec<u64>,
    jobs: Vec<Job>,
    handed_out: bool,
}

impl Leading<'_> {
    /// Hands each job its outcome (in order) and lets another leader run.
    fn hand_out(mut self, outcomes: Vec<Outcome>) {
        self.handed_out = true;
        let mut outcomes = outcomes.into_iter();
        self.publish(None, |job| {
            outcomes.next().unwrap_or_else(|| {
                Err(leader_failed(
                    job,
                    "its group returned fewer outcomes than commits",
                ))
            })
        });
    }

    /// `withdrawn`: a ticket whose caller is gone (a panicking leader's
    /// own), whose job must neither run later nor leave an outcome.
    fn publish(&mut self, withdrawn: Option<u64>, mut outcome_of: impl FnMut(&Job) -> Outcome) {
        let tickets = std::mem::take(&mut self.tickets);
        let jobs = std::mem::take(&mut self.jobs);
        let mut state = self.queue.state();
        for (ticket, job) in tickets.into_iter().zip(&jobs) {
            state.done.insert(ticket, outcome_of(job));
            if let Some(wake) = state.asleep.get(&ticket) {
                wake.notify_one();
            }
        }
        if let Some(ticket) = withdrawn {
            state.waiting.retain(|(waiting, _)| *waiting != ticket);
            state.done.remove(&ticket);
        }
        state.leading = false;
        // The oldest waiting caller leads the next group (a leader whose
        // own job is still waiting leads again itself, unless it panicked).
        let next = state.waiting.front().map(|(ticket, _)| *ticket);
        if let Some(wake) = next.and_then(|ticket| state.asleep.get(&ticket)) {
            wake.notify_one();
        }
    }
}

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        if !self.handed_out {
            let own = self.own;
            self.publish(Some(own), |job| {
                Err(leader_failed(job, "the thread running its group panicked"))
            });
        }
    }
}

fn leader_failed(job: &Job, why: &str) -> Error {
    Error::Backend {
        backend: "sqlite",
        context: format!("committing {}", job.key),
        source: format!("the commit's outcome is unknown: {why}").into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(name: &str) -> Job {
        Job {
            key: Key::new("c", name).unwrap(),
            expected: 0,
            new_revision: 1,
            body: Some("{}".into()),
            guard: None,
            kind: ChangeKind::Created,
        }
    }

    /// A leader that panics while running its group leaves the queue
    /// usable: the next commit leads a group of its own.
    #[test]
    fn a_panicking_leader_does_not_stall_the_queue() {
        let queue = WriterQueue::default();
        std::thread::scope(|scope| {
            let panicking = scope.spawn(|| {
                queue.submit(job("a"), &|_| {
                    while queue.waiting() == 0 {
                        std::thread::yield_now();
                    }
                    panic!("the leader fails");
                })
            });
            while queue.waiting() == 0 && !queue.state().leading {
                std::thread::yield_now();
            }
            let outcome = queue.submit(job("b"), &|jobs| {
                assert_eq!(jobs.len(), 1);
                assert_eq!(jobs[0].key.name(), "b");
                jobs.iter().map(|_| Ok(CommitOutcome::Committed)).collect()
            });
            assert!(matches!(outcome, Ok(CommitOutcome::Committed)));
            assert!(panicking.join().is_err());
        });
        assert!(!queue.state().leading);
    }

    /// A caller that finds no leader while a full group's worth of older
    /// jobs waits (their callers not yet awake) leads a group without its
    /// own job. If it panics, its job must not be committed later for a
    /// caller that is gone, and the callers queued behind it must still be
    /// woken.
    #[test]
    fn a_leader_panicking_with_its_own_job_still_queued_withdraws_it_and_wakes_the_next() {
        let queue = WriterQueue::default();
        {
            let mut state = queue.state();
            for _ in 0..MAX_GROUP {
                let ticket = state.next_ticket;
                state.next_ticket += 1;
                state.waiting.push_back((ticket, job("older")));
            }
        }
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::scope(|scope| {
            let panicking = scope.spawn(|| {
                queue.submit(job("gone"), &|jobs| {
                    assert!(jobs.iter().all(|j| j.key.name() == "older"));
                    // "gone" and then "next" wait behind this group.
                    while queue.waiting() < 2 {
                        std::thread::yield_now();
                    }
                    panic!("the leader fails");
                })
            });
            while queue.waiting() != 1 {
                std::thread::yield_now();
            }
            let done_tx = done_tx.clone();
            let queue = &queue;
            scope.spawn(move || {
                let outcome = queue.submit(job("next"), &|jobs| {
                    jobs.iter()
                        .map(|j| {
                            assert_eq!(j.key.name(), "next", "a withdrawn job ran");
                            Ok(CommitOutcome::Committed)
                        })
                        .collect()
                });
                let _ = done_tx.send(outcome);
            });
            assert!(panicking.join().is_err());
            let outcome = done_rx.recv_timeout(Duration::from_secs(60));
            if outcome.is_err() {
                // Wake it by hand so that the scope can end and report.
                let state = queue.state();
                state.asleep.values().for_each(|wake| wake.notify_all());
            }
            assert!(
                matches!(outcome, Ok(Ok(CommitOutcome::Committed))),
                "the caller behind a panicked leader: {outcome:?}"
            );
        });
        let state = queue.state();
        assert!(state.waiting.is_empty() && !state.leading);
        assert!(
            state.done.keys().all(|&ticket| ticket < MAX_GROUP as u64),
            "an outcome nobody collects: {:?}",
            state.done.keys().collect::<Vec<_>>()
        );
    }

    #[test]
    fn groups_take_the_oldest_jobs_within_their_bounds() {
        let mut waiting: VecDeque<(u64, Job)> = (0..100).map(|i| (i, job("n"))).collect();
        let group = take_group(&mut waiting);
        assert_eq!(group.len(), MAX_GROUP);
        assert_eq!(group[0].0, 0);
        assert_eq!(waiting.front().map(|(t, _)| *t), Some(MAX_GROUP as u64));

        let mut big = job("big");
        big.body = Some("x".repeat(MAX_GROUP_BYTES).into());
        let mut waiting: VecDeque<(u64, Job)> =
            [(0, job("small")), (1, big), (2, job("later"))].into();
        assert_eq!(take_group(&mut waiting).len(), 1);
        // A body over the bound still commits, in a group of its own.
        assert_eq!(take_group(&mut waiting).len(), 1);
        assert_eq!(take_group(&mut waiting).len(), 1);
    }
}
