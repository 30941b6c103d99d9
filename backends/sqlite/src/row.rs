//! Decoding stored rows, trusting nothing the file holds.

use std::path::Path;

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

/// A full record from a `(revision, body)` row. A body whose exact text
/// `cache` decoded before is cloned from it instead of parsed again; any
/// other body is parsed and remembered. The revision always comes from the
/// row, so a cached body never carries a stale revision.
pub(crate) fn record(
    row: &rusqlite::Row<'_>,
    path: &Path,
    key: &Key,
    cache: &DecodeCache,
) -> Result<Record, Failure> {
    let at = || location(path, key);
    let revision = revision(row.get_ref(0)?, at)?;
    let stored = row.get_ref(1)?;
    let ValueRef::Text(text) = stored else {
        return Ok(Record {
            revision,
            body: body(stored, at)?,
        });
    };
    if let Some(cached) = cache.lookup(key, text) {
        return Ok(Record {
            revision,
            body: cached.body,
        });
    }
    let record = Record {
        revision,
        body: body(stored, at)?,
    };
    cache.insert(key, text, &record);
    Ok(record)
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
