//! The memory backend: the reference model for tests and for users' own
//! unit tests.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::backend::{current_of, Commit, CommitOutcome, Entry, Record, StorageBackend};
use crate::error::{Error, Result};
use crate::feed::{Change, DEFAULT_RETAINED_CHANGES};
use crate::key::Key;

/// Documents in a map inside the process, behind one mutex.
///
/// # Guarantees
/// Every commit is atomic and conditional, exactly as the
/// [`StorageBackend`] contract demands, and appears in the change feed in
/// the same step; clones share the same map and feed, so they behave like
/// several handles on one store. Nothing survives the process.
#[derive(Debug, Clone)]
pub struct MemoryBackend {
    state: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct State {
    records: BTreeMap<Key, Record>,
    /// Retained changes, oldest first.
    changes: VecDeque<Change>,
    /// Seq of the last committed change.
    last_seq: u64,
    /// How many changes to keep.
    retain: u64,
}

impl Default for MemoryBackend {
    fn default() -> Self {
        MemoryBackend::with_retention(DEFAULT_RETAINED_CHANGES)
    }
}

impl MemoryBackend {
    /// An empty store keeping the default number of changes.
    pub fn new() -> MemoryBackend {
        MemoryBackend::default()
    }

    /// An empty store whose change feed keeps the newest `retain` changes
    /// (at least one).
    pub fn with_retention(retain: u64) -> MemoryBackend {
        MemoryBackend {
            state: Arc::new(Mutex::new(State {
                records: BTreeMap::new(),
                changes: VecDeque::new(),
                last_seq: 0,
                retain: retain.max(1),
            })),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-applied commit
        // (the record and its change are pushed after every check), so a
        // poisoned map is still sound.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl StorageBackend for MemoryBackend {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn read(&self, key: &Key) -> Result<Option<Record>> {
        // Bodies are shared: a read clones the record's `Arc`, not its body.
        Ok(self.state().records.get(key).cloned())
    }

    fn commit(&self, commit: &Commit<'_>) -> Result<CommitOutcome> {
        let mut state = self.state();
        if let Some(guard) = commit.guard {
            let actual = current_of(state.records.get(guard.key));
            if actual.last_revision() != guard.revision {
                return Ok(CommitOutcome::GuardChanged { actual });
            }
        }
        let actual = current_of(state.records.get(commit.key));
        if actual.last_revision() != commit.expected {
            return Ok(CommitOutcome::Conflict { actual });
        }
        let revision = commit.new_revision();
        state.records.insert(
            commit.key.clone(),
            Record {
                revision,
                body: commit.body.cloned(),
            },
        );
        state.last_seq += 1;
        let change = Change {
            seq: state.last_seq,
            key: commit.key.clone(),
            revision,
            kind: commit.kind,
        };
        state.changes.push_back(change);
        while state.changes.len() as u64 > state.retain {
            state.changes.pop_front();
        }
        Ok(CommitOutcome::Committed)
    }

    fn list(&self, collection: &str) -> Result<Vec<Entry>> {
        // Keys sort by collection first: one range, not the whole map.
        Ok(self
            .state()
            .records
            .range(Key::before_collection(collection)..)
            .take_while(|(k, _)| k.collection() == collection)
            .filter(|(_, r)| r.body.is_some())
            .map(|(k, r)| Entry {
                name: k.name().to_owned(),
                revision: r.revision,
            })
            .collect())
    }

    fn changes_since(&self, after: u64, limit: usize) -> Result<Vec<Change>> {
        let state = self.state();
        // Changes after `retained_after` are all still held.
        let retained_after = state.changes.front().map_or(state.last_seq, |c| c.seq - 1);
        if after < retained_after {
            return Err(Error::Compacted {
                requested: after,
                retained_after,
            });
        }
        let skip = usize::try_from(after - retained_after).unwrap_or(usize::MAX);
        Ok(state
            .changes
            .iter()
            .skip(skip)
            .take(limit)
            .cloned()
            .collect())
    }

    fn last_seq(&self) -> Result<u64> {
        Ok(self.state().last_seq)
    }
}
