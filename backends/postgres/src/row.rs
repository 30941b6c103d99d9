//! Decoding stored rows, trusting nothing the tables hold.

use postgres::Row;
use std::sync::Arc;

use revstore::{Body, Change, ChangeKind, Current, DecodeCache, Entry, Error, Key, Record};
use serde_json::Value;

/// Where a key's row lives, for [`Error::Corrupt`].
pub(crate) fn location(namespace: &str, key: &Key) -> String {
    format!("{namespace}.documents: {key}")
}

fn corrupt(location: String, reason: String) -> Error {
    Error::Corrupt { location, reason }
}

/// A stored revision (column `index`), which must be an integer of at
/// least 1.
pub(crate) fn revision(row: &Row, index: usize, at: impl Fn() -> String) -> Result<u64, Error> {
    match row.try_get::<_, Option<i64>>(index) {
        Ok(Some(r)) if r >= 1 => Ok(r.unsigned_abs()),
        Ok(Some(r)) => Err(corrupt(
            at(),
            format!("the revision must be at least 1, found {r}"),
        )),
        Ok(None) => Err(corrupt(at(), "the revision is NULL".to_owned())),
        Err(e) => Err(corrupt(at(), format!("the revision is not a bigint: {e}"))),
    }
}

/// A stored body (column `index`): `NULL` (a tombstone) or the JSON text
/// of a mapping.
pub(crate) fn body(
    row: &Row,
    index: usize,
    at: impl Fn() -> String,
) -> Result<Option<Body>, Error> {
    let text = match row.try_get::<_, Option<&str>>(index) {
        Ok(None) => return Ok(None),
        Ok(Some(text)) => text,
        Err(e) => {
            return Err(corrupt(
                at(),
                format!("the body must be JSON text or NULL: {e}"),
            ))
        }
    };
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(body)) => Ok(Some(body)),
        Ok(other) => Err(corrupt(
            at(),
            format!(
                "the body must be a JSON mapping, not {}",
                revstore::value_kind(&other)
            ),
        )),
        Err(e) => Err(corrupt(at(), format!("the body is not valid JSON: {e}"))),
    }
}

/// A record from a `(revision, body)` row.
///
/// A body whose exact text `decoded` holds is shared from it instead of
/// parsed again; the revision always comes from the row.
pub(crate) fn record(
    row: &Row,
    namespace: &str,
    key: &Key,
    decoded: &DecodeCache,
) -> Result<Record, Error> {
    let at = || location(namespace, key);
    let revision = revision(row, 0, at)?;
    let text = match row.try_get::<_, Option<&str>>(1) {
        Ok(Some(text)) => text,
        // A tombstone, or a column to report through `body`.
        _ => {
            decoded.forget(key);
            return Ok(Record {
                revision,
                body: body(row, 1, at)?.map(Arc::new),
            });
        }
    };
    if let Some(cached) = decoded.lookup(key, text.as_bytes()) {
        if cached.revision == revision {
            return Ok(cached);
        }
    }
    let record = Record {
        revision,
        body: body(row, 1, at)?.map(Arc::new),
    };
    decoded.insert(key, text.as_bytes(), record.clone());
    Ok(record)
}

/// The state of a key from a `(revision, body IS NULL)` row.
pub(crate) fn current(row: &Row, namespace: &str, key: &Key) -> Result<Current, Error> {
    let at = || location(namespace, key);
    let revision = revision(row, 0, at)?;
    match row.try_get::<_, bool>(1) {
        Ok(true) => Ok(Current::Deleted { revision }),
        Ok(false) => Ok(Current::Live { revision }),
        Err(e) => Err(corrupt(at(), format!("cannot tell a tombstone: {e}"))),
    }
}

/// A listing entry from a `(name, revision)` row.
pub(crate) fn entry(row: &Row, namespace: &str, collection: &str) -> Result<Entry, Error> {
    let name: String = row.try_get(0).map_err(|e| {
        corrupt(
            format!("{namespace}.documents: {collection}"),
            format!("a document name is not text: {e}"),
        )
    })?;
    let revision = revision(row, 1, || {
        format!("{namespace}.documents: {collection}/{name}")
    })?;
    Ok(Entry { name, revision })
}

/// A change from the `(seq, collection, name, revision, kind)` columns
/// starting at `first`, every one checked.
pub(crate) fn change(row: &Row, first: usize, namespace: &str) -> Result<Change, Error> {
    let seq = match row.try_get::<_, i64>(first) {
        Ok(seq) if seq >= 1 => seq.unsigned_abs(),
        _ => {
            return Err(corrupt(
                format!("{namespace}.changes"),
                "a change has a seq below 1".to_owned(),
            ))
        }
    };
    let at = || format!("{namespace}.changes: change {seq}");
    let text = |index: usize, what: &str| {
        row.try_get::<_, String>(index)
            .map_err(|e| corrupt(at(), format!("the {what} is not text: {e}")))
    };
    let collection = text(first + 1, "collection")?;
    let name = text(first + 2, "name")?;
    let key = if collection.starts_with('_') {
        Key::new_reserved(&collection, &name)
    } else {
        Key::new(&collection, &name)
    }
    .map_err(|e| corrupt(at(), format!("the key is invalid: {e}")))?;
    let revision = revision(row, first + 3, at)?;
    let kind = text(first + 4, "kind")?
        .parse::<ChangeKind>()
        .map_err(|e| {
            corrupt(
                at(),
                format!("the kind is not created, updated or deleted: {e}"),
            )
        })?;
    Ok(Change {
        seq,
        key,
        revision,
        kind,
    })
}
