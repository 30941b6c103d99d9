//! A read-through cache over a store, kept current by the change feed.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::body::Document;
use crate::error::{Error, Result};
use crate::feed::Change;
use crate::key::Key;
use crate::patch::Patch;
use crate::precondition::Precondition;
use crate::store::Store;

/// How many changes one catch-up reads at a time.
const FEED_BATCH: usize = 1024;

/// What the cache knows about one key.
#[derive(Debug, Clone)]
enum Slot {
    /// A live document.
    Live(Document),
    /// No live document at this last revision (0: never written).
    Absent { revision: u64 },
    /// The feed reported a change: only a read at this revision or newer
    /// may be installed. Keeps a slow reader that fetched an older body
    /// before the change from installing it afterwards.
    Stale { at_least: u64 },
}

impl Slot {
    fn revision(&self) -> u64 {
        match self {
            Slot::Live(doc) => doc.revision,
            Slot::Absent { revision } => *revision,
            Slot::Stale { at_least } => at_least.saturating_sub(1),
        }
    }
}

/// A read-through cache over a [`Store`] that follows the change feed.
///
/// # Guarantees
/// - **Bounded staleness.** Before answering from memory, [`get`](Self::get)
///   catches up with the change feed if it has not done so for
///   `max_staleness`; a change committed by any handle or process is
///   therefore reflected within `max_staleness` (plus the catch-up
///   itself). [`get_fresh`](Self::get_fresh) always reads the store.
/// - **Only changed keys are invalidated**, never the whole cache — except
///   when the cursor fell behind the feed's retention
///   ([`Error::Compacted`]), where everything is dropped and re-read lazily.
/// - **Never backwards.** A body is installed only if its revision is
///   newer than what the cache holds and at least as new as the last
///   change the feed reported for its key, so racing readers and writers
///   cannot make a key go back in revision.
/// - Writes made through the cache go to the store and install their
///   result.
///
/// Memory: a body per key read, plus a few bytes for every key the feed
/// reports changed while the cache is alive (the marker that keeps slow
/// readers from installing an outdated body).
#[derive(Debug)]
pub struct CachedStore {
    store: Store,
    max_staleness: Duration,
    slots: RwLock<HashMap<Key, Slot>>,
    feed: Mutex<FeedPosition>,
}

#[derive(Debug)]
struct FeedPosition {
    cursor: u64,
    caught_up: Instant,
}

impl CachedStore {
    /// Wraps a store; a cached answer is at most `max_staleness` behind.
    ///
    /// # Errors
    /// The store's errors reading the feed position.
    pub fn new(store: Store, max_staleness: Duration) -> Result<CachedStore> {
        let cursor = store.last_seq()?;
        Ok(CachedStore {
            store,
            max_staleness,
            slots: RwLock::new(HashMap::new()),
            feed: Mutex::new(FeedPosition {
                cursor,
                caught_up: Instant::now(),
            }),
        })
    }

    /// The underlying store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Reads a live document, from memory when the cache holds it and has
    /// caught up with the feed within `max_staleness`.
    ///
    /// # Errors
    /// As [`Store::get`], and the feed's errors while catching up.
    pub fn get(&self, collection: &str, name: &str) -> Result<Option<Document>> {
        let key = Key::new(collection, name)?;
        self.catch_up_if_due()?;
        match self.read_slots().get(&key) {
            Some(Slot::Live(doc)) => return Ok(Some(doc.clone())),
            Some(Slot::Absent { .. }) => return Ok(None),
            Some(Slot::Stale { .. }) | None => {}
        }
        self.read_through(&key)
    }

    /// Reads from the store, bypassing (and refreshing) the cache.
    ///
    /// # Errors
    /// As [`Store::get`].
    pub fn get_fresh(&self, collection: &str, name: &str) -> Result<Option<Document>> {
        self.read_through(&Key::new(collection, name)?)
    }

    /// Applies every change the feed has reported since the last catch-up.
    ///
    /// # Errors
    /// The feed's errors (a compacted cursor is handled by dropping the
    /// cache, not reported).
    pub fn catch_up(&self) -> Result<()> {
        let mut feed = self.feed.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            let changes = match self.store.changes_since(feed.cursor, FEED_BATCH) {
                Ok(changes) => changes,
                Err(Error::Compacted { .. }) => {
                    // Take the new position before dropping the slots, so a
                    // change landing in between is seen by the next pass.
                    feed.cursor = self.store.last_seq()?;
                    self.write_slots().clear();
                    continue;
                }
                Err(e) => return Err(e),
            };
            let Some(last) = changes.last() else { break };
            feed.cursor = last.seq;
            self.invalidate(&changes);
        }
        feed.caught_up = Instant::now();
        Ok(())
    }

    /// Patches through the store and caches the result.
    ///
    /// # Errors
    /// As [`Store::patch`].
    pub fn patch(
        &self,
        collection: &str,
        name: &str,
        patch: &Patch,
        precondition: Precondition,
    ) -> Result<Document> {
        let doc = self.store.patch(collection, name, patch, precondition)?;
        self.install(Key::new(collection, name)?, Slot::Live(doc.clone()));
        Ok(doc)
    }

    /// Replaces through the store and caches the result.
    ///
    /// # Errors
    /// As [`Store::replace`].
    pub fn replace(
        &self,
        collection: &str,
        name: &str,
        body: Value,
        precondition: Precondition,
    ) -> Result<Document> {
        let doc = self.store.replace(collection, name, body, precondition)?;
        self.install(Key::new(collection, name)?, Slot::Live(doc.clone()));
        Ok(doc)
    }

    /// Deletes through the store and caches the absence.
    ///
    /// # Errors
    /// As [`Store::delete`].
    pub fn delete(&self, collection: &str, name: &str, precondition: Precondition) -> Result<u64> {
        let revision = self.store.delete(collection, name, precondition)?;
        self.install(Key::new(collection, name)?, Slot::Absent { revision });
        Ok(revision)
    }

    /// How many keys the cache holds a body or an absence for.
    pub fn len(&self) -> usize {
        self.read_slots()
            .values()
            .filter(|s| !matches!(s, Slot::Stale { .. }))
            .count()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn catch_up_if_due(&self) -> Result<()> {
        let due = {
            let feed = self.feed.lock().unwrap_or_else(PoisonError::into_inner);
            feed.caught_up.elapsed() >= self.max_staleness
        };
        if due {
            self.catch_up()?;
        }
        Ok(())
    }

    fn read_through(&self, key: &Key) -> Result<Option<Document>> {
        let record = self.store.get_record(key.collection(), key.name())?;
        let (slot, doc) = match record {
            None => (Slot::Absent { revision: 0 }, None),
            Some(r) => match r.body {
                Some(body) => {
                    let doc = Document {
                        revision: r.revision,
                        body,
                    };
                    (Slot::Live(doc.clone()), Some(doc))
                }
                None => (
                    Slot::Absent {
                        revision: r.revision,
                    },
                    None,
                ),
            },
        };
        self.install(key.clone(), slot);
        Ok(doc)
    }

    /// Installs a slot unless the cache already knows something at least
    /// as new.
    fn install(&self, key: Key, slot: Slot) {
        let mut slots = self.write_slots();
        let newer = match slots.get(&key) {
            None => true,
            Some(Slot::Stale { at_least }) => slot.revision() >= *at_least,
            Some(held) => slot.revision() > held.revision(),
        };
        if newer {
            slots.insert(key, slot);
        }
    }

    fn invalidate(&self, changes: &[Change]) {
        let mut slots = self.write_slots();
        for change in changes {
            let known = slots.get(&change.key).map(Slot::revision);
            if known.is_none_or(|held| held < change.revision) {
                slots.insert(
                    change.key.clone(),
                    Slot::Stale {
                        at_least: change.revision,
                    },
                );
            }
        }
    }

    fn read_slots(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Key, Slot>> {
        // Slots are replaced whole, so a panic elsewhere cannot leave a
        // half-written one behind.
        self.slots.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_slots(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Key, Slot>> {
        self.slots.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryBackend;
    use serde_json::json;

    /// The slow-reader race, replayed step by step: a body read before a
    /// change must not be installed after the feed reported the change,
    /// and nothing older than what is held is ever installed.
    #[test]
    fn a_body_read_before_a_change_is_not_installed_after_it() {
        let store = Store::open(MemoryBackend::new());
        store.create("c", "k", json!({"v": 1})).unwrap();
        let cache = CachedStore::new(store.clone(), Duration::from_secs(3600)).unwrap();
        let key = Key::new("c", "k").unwrap();
        let old = store.get("c", "k").unwrap().unwrap(); // the slow read
        store
            .patch("c", "k", &Patch::Merge(json!({"v": 2})), Precondition::Any)
            .unwrap();
        cache.catch_up().unwrap();
        cache.install(key.clone(), Slot::Live(old.clone()));
        assert_eq!(cache.get("c", "k").unwrap().unwrap().revision, 2);
        cache.install(key, Slot::Live(old));
        assert_eq!(cache.get("c", "k").unwrap().unwrap().revision, 2);
        assert_eq!(cache.len(), 1);
    }
}
