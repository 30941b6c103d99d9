//! Decoding stored rows, trusting nothing the file holds.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use revstore::{Body, Current, DecodeCache, Error, Key, Record};
use rusqlite::types::ValueRef;
use serde_json::Value;

use crate::failure::Failure;

/// Where a key's row lives, for [`Error::Corrupt`]: `<file>: <collection>/<name>`.
pub(crate) fn location(path: &Path, key: &Key) -> String {
    format!("{}: {key}", path.display())
}

/// A stored revision, which must be an integer of at least 1.
pub(crate) fn revision(
    value: ValueRef<'_>,
    location: impl FnOnce() -> String,
) -> Result<u64, Error> {
    match value {
        ValueRef::Integer(r) if r >= 1 => Ok(r.unsigned_abs()),
        other => Err(Error::Corrupt {
            location: location(),
            reason: format!(
                "the revision must be an integer of at least 1, found {}",
                describe(other)
            ),
        }),
    }
}

/// A stored body: `NULL` (a tombstone) or compact JSON text of a mapping.
pub(crate) fn body(
    value: ValueRef<'_>,
    location: impl Fn() -> String,
) -> Result<Option<Body>, Error> {
    let corrupt = |reason: String| Error::Corrupt {
        location: location(),
        reason,
    };
    let text = match value {
        ValueRef::Null => return Ok(None),
        ValueRef::Text(text) => text,
        other => {
            return Err(corrupt(format!(
                "the body must be JSON text or NULL, found {}",
                describe(other)
            )))
        }
    };
    match serde_json::from_slice::<Value>(text) {
        Ok(Value::Object(body)) => Ok(Some(body)),
        Ok(other) => Err(corrupt(format!(
            "the body must be a JSON mapping, not {}",
            revstore::value_kind(&other)
        ))),
        Err(e) => Err(corrupt(format!("the body is not valid JSON: {e}"))),
    }
}

/// The bodies a handle decoded or wrote, so that reading an unchanged row
/// again neither parses nor copies its body (it is shared).
///
/// Caching costs a copy of the stored text and keeps the body alive, memory
/// that a body read once and never again does not repay, so only bodies
/// likely to be read again unchanged are cached:
/// - a body read a second time at the same revision (most first reads are
///   not repeated: the engine reads a key before each write, which then
///   changes it, and a store read at random keys rarely reads one twice);
/// - a body written to a key this handle wrote shortly before (a document
///   edited again and again is read before each of its writes; a store
///   written at random keys would only churn the cache).
#[derive(Debug, Default)]
pub(crate) struct Decoded {
    cache: DecodeCache,
    /// Keys read once and not cached yet, with the revision read.
    read_once: Mutex<HashMap<Key, u64>>,
    /// Keys this handle committed lately.
    written: Mutex<HashSet<Key>>,
}

/// Most keys [`Decoded`] remembers as read once; beyond, it starts over.
const MAX_READ_ONCE: usize = 4096;

/// Most keys [`Decoded`] remembers as written lately; beyond, it starts
/// over. Small: a key counts as written again only within this many other
/// keys' writes.
const MAX_WRITTEN: usize = 256;

impl Decoded {
    /// A full record from a `(revision, body)` row. A body whose exact
    /// text was decoded or written and cached before is shared from the
    /// cache instead of parsed again; the revision always comes from the
    /// row, so a cached body never carries a stale one.
    pub(crate) fn record(
        &self,
        row: &rusqlite::Row<'_>,
        path: &Path,
        key: &Key,
    ) -> Result<Record, Failure> {
        let at = || location(path, key);
        let revision = revision(row.get_ref(0)?, at)?;
        let stored = row.get_ref(1)?;
        let ValueRef::Text(text) = stored else {
            return Ok(Record {
                revision,
                body: body(stored, at)?.map(Arc::new),
            });
        };
        if let Some(cached) = self.cache.lookup(key, text) {
            if cached.revision == revision {
                return Ok(cached);
            }
            // The same text under another revision (written again
            // unchanged, or edited by hand): the body from the cache, the
            // revision from the row.
            let record = Record {
                revision,
                body: cached.body,
            };
            self.cache.insert(key, text, record.clone());
            return Ok(record);
        }
        let record = Record {
            revision,
            body: body(stored, at)?.map(Arc::new),
        };
        if self.read_before(key, revision) {
            self.cache.insert(key, text, record.clone());
        }
        Ok(record)
    }

    /// Notes that this handle committed `body`, stored as `text`, to `key`
    /// at `revision` (`None`s for a delete).
    pub(crate) fn committed(
        &self,
        key: &Key,
        revision: u64,
        body: Option<&Arc<Body>>,
        text: Option<&str>,
    ) {
        match (body, text) {
            (Some(body), Some(text)) if self.written_before(key) => self.cache.insert(
                key,
                text.as_bytes(),
                Record {
                    revision,
                    body: Some(Arc::clone(body)),
                },
            ),
            _ => self.cache.forget(key),
        }
    }

    /// The record last cached for `key`, possibly stale.
    pub(crate) fn remembered(&self, key: &Key) -> Option<Record> {
        self.cache.peek(key)
    }

    /// Whether `key` was read once before at `revision` without being
    /// cached; if not, remembers this read.
    fn read_before(&self, key: &Key, revision: u64) -> bool {
        // A poisoned map only means reads stop caching.
        let Ok(mut read_once) = self.read_once.lock() else {
            return false;
        };
        if read_once.get(key) == Some(&revision) {
            read_once.remove(key);
            return true;
        }
        if read_once.len() >= MAX_READ_ONCE {
            read_once.clear();
        }
        read_once.insert(key.clone(), revision);
        false
    }

    /// Whether this handle wrote `key` lately; remembers this write.
    fn written_before(&self, key: &Key) -> bool {
        let Ok(mut written) = self.written.lock() else {
            return false;
        };
        if written.contains(key) {
            return true;
        }
        if written.len() >= MAX_WRITTEN {
            written.clear();
        }
        written.insert(key.clone());
        false
    }
}

/// The state of a key from a `(revision, body IS NULL)` row, without
/// decoding the body.
pub(crate) fn current(
    row: &rusqlite::Row<'_>,
    path: &Path,
    key: &Key,
) -> rusqlite::Result<Result<Current, Error>> {
    let revision = match revision(row.get_ref(0)?, || location(path, key)) {
        Ok(r) => r,
        Err(e) => return Ok(Err(e)),
    };
    let deleted: bool = row.get(1)?;
    Ok(Ok(if deleted {
        Current::Deleted { revision }
    } else {
        Current::Live { revision }
    }))
}

/// A stored value in an error message (never a whole body).
fn describe(value: ValueRef<'_>) -> String {
    match value {
        ValueRef::Null => "NULL".to_owned(),
        ValueRef::Integer(i) => format!("the integer {i}"),
        ValueRef::Real(f) => format!("the real number {f}"),
        ValueRef::Text(_) => "text".to_owned(),
        ValueRef::Blob(_) => "a blob".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `(revision, body)` as a stored row would hold them.
    fn read(decoded: &Decoded, revision: i64, body: &str) -> Record {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let key = Key::new("c", "k").unwrap();
        conn.query_row("SELECT ?1, ?2", rusqlite::params![revision, body], |row| {
            Ok(decoded.record(row, Path::new("x.db"), &key))
        })
        .unwrap()
        .unwrap()
    }

    #[test]
    fn a_body_is_cached_on_its_second_read_at_one_revision() {
        let decoded = Decoded::default();
        read(&decoded, 1, r#"{"a":1}"#);
        assert!(decoded.cache.is_empty(), "cached on the first read");
        // Another revision in between: still not read twice unchanged.
        read(&decoded, 2, r#"{"a":2}"#);
        assert!(decoded.cache.is_empty());
        let second = read(&decoded, 2, r#"{"a":2}"#);
        assert_eq!(decoded.cache.len(), 1);
        let third = read(&decoded, 2, r#"{"a":2}"#);
        let shared = |r: &Record| r.body.clone().unwrap();
        assert!(
            Arc::ptr_eq(&shared(&second), &shared(&third)),
            "a warm read copied the body"
        );
        // Same text, another revision: the body from the cache, the
        // revision from the row.
        let moved = read(&decoded, 3, r#"{"a":2}"#);
        assert_eq!((moved.revision, &moved.body), (3, &second.body));
        assert_eq!(read(&decoded, 3, r#"{"a":2}"#).revision, 3);
        // Other text at the same revision (a hand edit): decoded anew.
        assert_eq!(
            read(&decoded, 3, r#"{"a":3}"#).body,
            Some(Arc::new(serde_json::from_str(r#"{"a":3}"#).unwrap()))
        );
    }

    #[test]
    fn a_key_written_again_is_cached_with_what_was_written() {
        let decoded = Decoded::default();
        let key = Key::new("c", "k").unwrap();
        let body: Arc<Body> = Arc::new(serde_json::from_str(r#"{"a":1}"#).unwrap());
        decoded.committed(&key, 1, Some(&body), Some(r#"{"a":1}"#));
        assert!(decoded.cache.is_empty(), "cached on the first write");
        decoded.committed(&key, 2, Some(&body), Some(r#"{"a":1}"#));
        assert_eq!(decoded.cache.len(), 1);
        let read_back = read(&decoded, 2, r#"{"a":1}"#);
        assert_eq!(
            (read_back.revision, &read_back.body),
            (2, &Some(body.clone()))
        );
        assert!(
            Arc::ptr_eq(read_back.body.as_ref().unwrap(), &body),
            "the committed body was copied into the cache"
        );
        // A delete drops it.
        decoded.committed(&key, 3, None, None);
        assert!(decoded.cache.is_empty());
        // Writes at many other keys in between (each their first): no
        // longer "written lately".
        let body: Arc<Body> = Arc::new(serde_json::from_str("{}").unwrap());
        for i in 0..MAX_WRITTEN {
            let other = Key::new("c", &format!("o{i}")).unwrap();
            decoded.committed(&other, 1, Some(&body), Some("{}"));
        }
        assert!(decoded.cache.is_empty());
        decoded.committed(&key, 4, Some(&body), Some("{}"));
        assert!(decoded.cache.is_empty());
    }

    #[test]
    fn keys_read_once_are_bounded() {
        let decoded = Decoded::default();
        for i in 0..MAX_READ_ONCE * 2 {
            let key = Key::new("c", &format!("k{i}")).unwrap();
            assert!(!decoded.read_before(&key, 1));
            assert!(decoded.read_once.lock().unwrap().len() <= MAX_READ_ONCE);
        }
    }
}
