//! A deliberately broken backend: the suites must catch it.

use std::time::Duration;

use crate::backend::{Commit, CommitOutcome, Entry, Record, StorageBackend};
use crate::testkit::{TestBackend, TestLocation};
use crate::{Key, MemoryBackend, Result, Store};

/// A [`MemoryBackend`] whose `commit` ignores `expected`: it commits on
/// whatever revision the key holds by then. A write computed from a stale
/// read therefore overwrites a concurrent one — the lost update revstore
/// exists to prevent — and the engine reports a revision the write did not
/// get.
///
/// Only for proving that the checker catches a broken backend; never use
/// it to store anything.
#[derive(Debug, Clone)]
pub struct BrokenBackend {
    inner: MemoryBackend,
    pause: Duration,
}

impl Default for BrokenBackend {
    fn default() -> Self {
        BrokenBackend::new()
    }
}

impl BrokenBackend {
    /// An empty broken store.
    ///
    /// Each commit first pauses 200 µs: the memory map is so fast that the
    /// window between the engine's read and its commit would otherwise
    /// rarely be hit by another thread, whereas a real disk makes it wide.
    /// The pause makes concurrent writers race the way they do on disk.
    pub fn new() -> BrokenBackend {
        BrokenBackend {
            inner: MemoryBackend::new(),
            pause: Duration::from_micros(200),
        }
    }
}

impl StorageBackend for BrokenBackend {
    fn kind(&self) -> &'static str {
        "broken"
    }

    fn read(&self, key: &Key) -> Result<Option<Record>> {
        self.inner.read(key)
    }

    fn commit(&self, commit: &Commit<'_>) -> Result<CommitOutcome> {
        std::thread::sleep(self.pause);
        let current = self.inner.read(commit.key)?.map_or(0, |r| r.revision);
        self.inner.commit(&Commit {
            expected: current,
            ..*commit
        })
    }

    fn list(&self, collection: &str) -> Result<Vec<Entry>> {
        self.inner.list(collection)
    }
    fn changes_since(&self, after: u64, limit: usize) -> Result<Vec<crate::Change>> {
        self.inner.changes_since(after, limit)
    }
    fn last_seq(&self) -> Result<u64> {
        self.inner.last_seq()
    }
}

/// [`BrokenBackend`] as a [`TestBackend`]: handles on one location share
/// the map.
#[derive(Debug, Default, Clone, Copy)]
pub struct BrokenTestBackend;

struct BrokenLocation(BrokenBackend);

impl TestLocation for BrokenLocation {
    fn open(&self) -> Store {
        Store::open(self.0.clone())
    }

    fn url(&self) -> Option<String> {
        None
    }
}

impl TestBackend for BrokenTestBackend {
    fn name(&self) -> &str {
        "broken"
    }

    fn fresh(&self) -> Box<dyn TestLocation> {
        Box::new(BrokenLocation(BrokenBackend::new()))
    }

    fn fresh_with_retention(&self, retain: u64) -> Box<dyn TestLocation> {
        Box::new(BrokenLocation(BrokenBackend {
            inner: MemoryBackend::with_retention(retain),
            ..BrokenBackend::new()
        }))
    }
}
