//! A per-handle cache of decoded records, keyed by the exact stored bytes
//! they were decoded from, so that a warm read of an unchanged document
//! skips parsing.
//!
//! Backends read the stored bytes (a YAML file, an SQLite row) as before and
//! ask the cache whether it already decoded these very bytes for this key.
//! Validity is decided by comparing the bytes, never by timestamps, inode
//! numbers or revisions alone: a file replaced within one timestamp tick, an
//! inode number reused, or a hand edit that keeps the revision all show up
//! as different bytes. The saving is the parse (and for YAML the seal
//! check), which dominates a read of a small document.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::backend::Record;
use crate::key::Key;

/// The default bound on the bytes a [`DecodeCache`] keeps (stored bytes
/// plus an estimate of the decoded record, which is about as large again).
pub const DEFAULT_DECODE_CACHE_BYTES: usize = 32 * 1024 * 1024;

/// The largest share of the cache one entry may take (1/8: 2 MiB stored
/// at the default size), so that one large document cannot crowd out many
/// small ones. Large documents gain the most from the cache: comparing the
/// bytes of a 1 MiB YAML file takes about 0.03 ms, decoding them about 40.
const MAX_ENTRY_SHARE: usize = 8;

#[derive(Debug)]
struct Entry {
    raw: Box<[u8]>,
    /// Its body is shared with every record handed out for it.
    record: Record,
    /// Tick of the last hit or insert, for eviction of the coldest half.
    used: u64,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<Key, Entry>,
    bytes: usize,
    tick: u64,
}

/// Decoded records by key, each valid only for the exact bytes it was
/// decoded from.
///
/// # Guarantees
/// - [`lookup`](DecodeCache::lookup) returns a record only when the bytes
///   given are identical to those the record was decoded from, so a cached
///   read returns exactly what decoding those bytes would.
/// - Memory is bounded: the entries are charged at most `max_bytes`
///   (twice their stored size, plus a little per entry); when a new one
///   does not fit, the least recently used half is dropped, until it does.
/// - Thread-safe; a poisoned lock (a panic elsewhere) only disables the
///   cache, reads go on decoding.
#[derive(Debug)]
pub struct DecodeCache {
    inner: Mutex<Inner>,
    max_bytes: usize,
}

impl Default for DecodeCache {
    fn default() -> Self {
        DecodeCache::new(DEFAULT_DECODE_CACHE_BYTES)
    }
}

impl DecodeCache {
    /// A cache keeping about `max_bytes`; 0 disables it.
    pub fn new(max_bytes: usize) -> DecodeCache {
        DecodeCache {
            inner: Mutex::new(Inner::default()),
            max_bytes,
        }
    }

    /// The record decoded from `raw` for `key`, if these exact bytes were
    /// decoded before and are still cached. Its body is the cached one,
    /// shared, not a copy.
    pub fn lookup(&self, key: &Key, raw: &[u8]) -> Option<Record> {
        let mut inner = self.inner.lock().ok()?;
        inner.tick += 1;
        let tick = inner.tick;
        let entry = inner.entries.get_mut(key)?;
        if *entry.raw != *raw {
            return None;
        }
        entry.used = tick;
        Some(entry.record.clone())
    }

    /// Remembers that `raw` decodes to `record` for `key`, replacing what was
    /// cached for the key. The record's body is kept shared, not copied.
    pub fn insert(&self, key: &Key, raw: &[u8], record: Record) {
        let cost = entry_cost(raw);
        if self.max_bytes == 0 || cost > self.max_bytes / MAX_ENTRY_SHARE {
            self.forget(key);
            return;
        }
        let Ok(mut guard) = self.inner.lock() else {
            return;
        };
        let inner = &mut *guard;
        inner.tick += 1;
        let used = inner.tick;
        // Halving by count may not free enough when the coldest entries are
        // small: evict until the new entry fits (this may evict the entry
        // being replaced, which is then inserted afresh).
        loop {
            let replacing = inner
                .entries
                .get(key)
                .map_or(0, |entry| entry_cost(&entry.raw));
            if inner.bytes - replacing + cost <= self.max_bytes || inner.entries.is_empty() {
                break;
            }
            evict_coldest_half(inner);
        }
        // A key written again (the common case: every commit) is updated
        // in place, its buffer reused when the size is the same.
        let replaced = match inner.entries.get_mut(key) {
            Some(entry) => {
                inner.bytes -= entry_cost(&entry.raw);
                if entry.raw.len() == raw.len() {
                    entry.raw.copy_from_slice(raw);
                } else {
                    entry.raw = raw.into();
                }
                entry.used = used;
                Some(std::mem::replace(&mut entry.record, record))
            }
            None => {
                inner.entries.insert(
                    key.clone(),
                    Entry {
                        raw: raw.into(),
                        record,
                        used,
                    },
                );
                None
            }
        };
        inner.bytes += cost;
        drop(guard);
        // The replaced record's body is freed outside the lock.
        drop(replaced);
    }

    /// The record last cached for `key`, whatever bytes the key holds now:
    /// possibly stale, so only for
    /// [`StorageBackend::read_cached`](crate::StorageBackend::read_cached).
    pub fn peek(&self, key: &Key) -> Option<Record> {
        let inner = self.inner.lock().ok()?;
        inner.entries.get(key).map(|entry| entry.record.clone())
    }

    /// Drops what is cached for `key`.
    pub fn forget(&self, key: &Key) {
        if let Ok(mut inner) = self.inner.lock() {
            if let Some(old) = inner.entries.remove(key) {
                inner.bytes -= entry_cost(&old.raw);
            }
        }
    }

    /// How many records are cached.
    pub fn len(&self) -> usize {
        self.inner.lock().map_or(0, |inner| inner.entries.len())
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What an entry is charged: its bytes twice (stored and decoded) plus the
/// map's overhead.
fn entry_cost(raw: &[u8]) -> usize {
    raw.len() * 2 + 128
}

fn evict_coldest_half(inner: &mut Inner) {
    let mut ticks: Vec<u64> = inner.entries.values().map(|e| e.used).collect();
    ticks.sort_unstable();
    let Some(&median) = ticks.get(ticks.len() / 2) else {
        return;
    };
    inner.entries.retain(|_, e| e.used > median);
    inner.bytes = inner.entries.values().map(|e| entry_cost(&e.raw)).sum();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::Body;

    fn record(revision: u64, n: i64) -> Record {
        let mut body = Body::new();
        body.insert("n".into(), n.into());
        Record {
            revision,
            body: Some(std::sync::Arc::new(body)),
        }
    }

    fn key(name: &str) -> Key {
        Key::new("c", name).unwrap()
    }

    #[test]
    fn a_hit_needs_the_identical_bytes() {
        let cache = DecodeCache::default();
        cache.insert(&key("a"), b"revision: 1\nn: 1\n", record(1, 1));
        assert_eq!(
            cache.lookup(&key("a"), b"revision: 1\nn: 1\n"),
            Some(record(1, 1))
        );
        // Same length, one byte changed: a miss.
        assert_eq!(cache.lookup(&key("a"), b"revision: 1\nn: 2\n"), None);
        // A prefix or an extension: a miss.
        assert_eq!(cache.lookup(&key("a"), b"revision: 1\nn: 1"), None);
        assert_eq!(cache.lookup(&key("a"), b"revision: 1\nn: 1\n\n"), None);
        // Other keys never share entries.
        assert_eq!(cache.lookup(&key("b"), b"revision: 1\nn: 1\n"), None);
    }

    #[test]
    fn lookups_share_the_cached_body() {
        let cache = DecodeCache::default();
        let inserted = record(1, 1);
        cache.insert(&key("a"), b"one", inserted.clone());
        let first = cache.lookup(&key("a"), b"one").unwrap();
        let second = cache.lookup(&key("a"), b"one").unwrap();
        let body = |r: &Record| r.body.clone().unwrap();
        assert!(std::sync::Arc::ptr_eq(&body(&first), &body(&second)));
        assert!(std::sync::Arc::ptr_eq(&body(&first), &body(&inserted)));
        assert!(cache.lookup(&key("a"), b"two").is_none());
    }

    #[test]
    fn insert_replaces_and_forget_drops() {
        let cache = DecodeCache::default();
        cache.insert(&key("a"), b"one", record(1, 1));
        cache.insert(&key("a"), b"two", record(2, 2));
        assert_eq!(cache.lookup(&key("a"), b"one"), None);
        assert_eq!(cache.lookup(&key("a"), b"two"), Some(record(2, 2)));
        cache.forget(&key("a"));
        assert_eq!(cache.lookup(&key("a"), b"two"), None);
        assert!(cache.is_empty());
    }

    #[test]
    fn rewriting_one_key_keeps_its_accounting_and_the_bound() {
        let cache = DecodeCache::new(64 * 1024);
        let charged = |cache: &DecodeCache| cache.inner.lock().unwrap().bytes;
        for (i, len) in [100usize, 100, 3000, 50, 50, 4000, 10]
            .into_iter()
            .enumerate()
        {
            let raw = vec![b'a' + i as u8; len];
            cache.insert(&key("k"), &raw, record(i as u64 + 1, 0));
            assert_eq!(cache.lookup(&key("k"), &raw), Some(record(i as u64 + 1, 0)));
            assert_eq!(charged(&cache), entry_cost(&raw), "after {len} bytes");
        }
        // A key rewritten larger while the cache is full evicts others,
        // never itself, and the bound holds.
        let raw = vec![b'x'; 1000];
        for i in 0..40 {
            cache.insert(&key(&format!("k{i}")), &raw, record(1, i));
        }
        let big = vec![b'y'; 4000];
        cache.insert(&key("k39"), &big, record(2, 0));
        assert!(cache.lookup(&key("k39"), &big).is_some());
        assert!(charged(&cache) <= 64 * 1024, "{} bytes", charged(&cache));
    }

    #[test]
    fn the_bound_holds_when_the_coldest_half_is_small() {
        // Halving by count frees little when the cold entries are tiny and
        // the hot ones large: eviction goes on until the new one fits.
        let max = 64 * 1024;
        let cache = DecodeCache::new(max);
        for i in 0..9 {
            cache.insert(&key(&format!("tiny{i}")), b"", record(1, i));
        }
        let big = vec![b'b'; 3960];
        for round in 0..4 {
            for i in 0..8 {
                cache.insert(&key(&format!("big{i}")), &big, record(round + 1, i));
            }
        }
        cache.insert(&key("new"), &big, record(1, 0));
        assert!(cache.lookup(&key("new"), &big).is_some());
        let inner = cache.inner.lock().unwrap();
        assert!(inner.bytes <= max, "{} bytes over {max}", inner.bytes);
        let sum: usize = inner.entries.values().map(|e| entry_cost(&e.raw)).sum();
        assert_eq!(inner.bytes, sum);
    }

    #[test]
    fn memory_stays_bounded_and_keeps_the_recently_used() {
        let cache = DecodeCache::new(64 * 1024);
        let raw = vec![b'x'; 1000];
        cache.insert(&key("hot"), &raw, record(1, 0));
        for i in 0..1000 {
            cache.insert(&key(&format!("k{i}")), &raw, record(1, i));
            assert!(cache.lookup(&key("hot"), &raw).is_some(), "evicted at {i}");
        }
        let inner = cache.inner.lock().unwrap();
        assert!(inner.bytes <= 64 * 1024, "{} bytes", inner.bytes);
        assert!(inner.entries.len() < 64, "{} entries", inner.entries.len());
    }

    #[test]
    fn oversized_or_disabled_entries_are_not_kept() {
        let cache = DecodeCache::new(0);
        cache.insert(&key("a"), b"x", record(1, 1));
        assert_eq!(cache.lookup(&key("a"), b"x"), None);
        let cache = DecodeCache::new(1024);
        cache.insert(&key("a"), &[0u8; 600], record(1, 1));
        assert_eq!(cache.lookup(&key("a"), &[0u8; 600]), None);
        // One entry takes at most an eighth of the cache, whatever its
        // size: a 1 MiB document fits the default cache, 3 MiB does not.
        let cache = DecodeCache::default();
        let mib = 1024 * 1024;
        cache.insert(&key("a"), &vec![0u8; mib], record(1, 1));
        assert!(cache.lookup(&key("a"), &vec![0u8; mib]).is_some());
        cache.insert(&key("b"), &vec![0u8; 3 * mib], record(1, 1));
        assert_eq!(cache.lookup(&key("b"), &vec![0u8; 3 * mib]), None);
    }
}
