//! The memory backend: the reference model for tests and for users' own
//! unit tests.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::backend::{current_of, Commit, CommitOutcome, Entry, Record, StorageBackend};
use crate::error::Result;
use crate::key::Key;

/// Documents in a map inside the process, behind one mutex.
///
/// # Guarantees
/// Every commit is atomic and conditional, exactly as the
/// [`StorageBackend`] contract demands; clones share the same map, so they
/// behave like several handles on one store. Nothing survives the process.
#[derive(Debug, Clone, Default)]
pub struct MemoryBackend {
    records: Arc<Mutex<BTreeMap<Key, Record>>>,
}

impl MemoryBackend {
    /// An empty store.
    pub fn new() -> MemoryBackend {
        MemoryBackend::default()
    }

    fn records(&self) -> MutexGuard<'_, BTreeMap<Key, Record>> {
        // A panic while holding the lock cannot leave a half-applied commit
        // (each commit is a single insert), so a poisoned map is still sound.
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl StorageBackend for MemoryBackend {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn read(&self, key: &Key) -> Result<Option<Record>> {
        Ok(self.records().get(key).cloned())
    }

    fn commit(&self, commit: &Commit<'_>) -> Result<CommitOutcome> {
        let mut records = self.records();
        if let Some(guard) = commit.guard {
            let actual = current_of(records.get(guard.key));
            if actual.last_revision() != guard.revision {
                return Ok(CommitOutcome::GuardChanged { actual });
            }
        }
        let actual = current_of(records.get(commit.key));
        if actual.last_revision() != commit.expected {
            return Ok(CommitOutcome::Conflict { actual });
        }
        records.insert(
            commit.key.clone(),
            Record {
                revision: commit.new_revision(),
                body: commit.body.cloned(),
            },
        );
        Ok(CommitOutcome::Committed)
    }

    fn list(&self, collection: &str) -> Result<Vec<Entry>> {
        Ok(self
            .records()
            .iter()
            .filter(|(k, r)| k.collection() == collection && r.body.is_some())
            .map(|(k, r)| Entry {
                name: k.name().to_owned(),
                revision: r.revision,
            })
            .collect())
    }
}
