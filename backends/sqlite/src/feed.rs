//! The change feed: one `changes` row per committed write, inserted in the
//! write's own transaction, and pruned to the configured retention.

use std::path::Path;

use revstore::{Change, ChangeKind, Error, Key};
use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::failure::Failure;
use crate::row;

/// Records one change under the next seq: one past the newest change, or
/// past the horizon when pruning or a migration left no newer change.
/// Pruning keeps the newest change, so no seq is handed out twice.
const INSERT_CHANGE: &str = "INSERT INTO changes (seq, collection, name, revision, kind)
     VALUES (max(COALESCE((SELECT max(seq) FROM changes), 0),
                 (SELECT value FROM meta WHERE key = 'retained_after')) + 1,
             ?1, ?2, ?3, ?4)";
/// Drops the changes at or before the new horizon.
const DELETE_UP_TO: &str = "DELETE FROM changes WHERE seq <= ?1";
/// Moves the horizon forward, never back (handles may keep different
/// retentions).
const RAISE_RETAINED_AFTER: &str =
    "UPDATE meta SET value = max(value, ?1) WHERE key = 'retained_after'";
/// The feed's horizon.
const SELECT_RETAINED_AFTER: &str = "SELECT value FROM meta WHERE key = 'retained_after'";
/// The oldest changes after a cursor.
const SELECT_AFTER: &str = "SELECT seq, collection, name, revision, kind FROM changes \
     WHERE seq > ?1 ORDER BY seq LIMIT ?2";
/// The newest seq handed out: the newest row, or the horizon when pruning
/// or a migration left none. SQLite's many-argument `max` is `NULL` when
/// the horizon row is missing.
const SELECT_LAST_SEQ: &str = "SELECT max(
        COALESCE((SELECT max(seq) FROM changes), 0),
        (SELECT value FROM meta WHERE key = 'retained_after'))";

/// Most changes between two prunings: pruning then runs on one write in
/// this many (or in `retain` for small retentions), so its cost per write
/// stays small and the table holds at most `retain + PRUNE_EVERY - 1` rows.
const PRUNE_EVERY: u64 = 256;

/// Records a write inside its transaction `tx`, before the document row is
/// written, and returns its seq.
pub(crate) fn record(
    tx: &Connection,
    key: &Key,
    revision: i64,
    kind: ChangeKind,
) -> Result<u64, Failure> {
    tx.prepare_cached(INSERT_CHANGE)?.execute(params![
        key.collection(),
        key.name(),
        revision,
        kind.as_str()
    ])?;
    Ok(tx.last_insert_rowid().unsigned_abs())
}

/// Prunes the feed to the newest `retain` changes (at least 1) inside the
/// transaction `tx` that recorded the seqs `first..=last`, when that range
/// reaches a multiple of the pruning interval.
pub(crate) fn prune(tx: &Connection, first: u64, last: u64, retain: u64) -> Result<(), Failure> {
    let retain = retain.max(1);
    let every = retain.min(PRUNE_EVERY);
    if last / every != first.saturating_sub(1) / every && last > retain {
        let horizon = i64::try_from(last - retain).unwrap_or(i64::MAX);
        tx.prepare_cached(DELETE_UP_TO)?.execute(params![horizon])?;
        tx.prepare_cached(RAISE_RETAINED_AFTER)?
            .execute(params![horizon])?;
    }
    Ok(())
}

/// Up to `limit` changes after `after`, read with the horizon in one
/// snapshot, so a concurrent prune cannot make the answer skip a change.
pub(crate) fn changes_since(
    conn: &mut Connection,
    path: &Path,
    after: u64,
    limit: usize,
) -> Result<Vec<Change>, Failure> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
    let retained_after = retained_after(&tx, path)?;
    if after < retained_after {
        return Err(Failure::Final(Error::Compacted {
            requested: after,
            retained_after,
        }));
    }
    // No seq exceeds i64::MAX, so a cursor beyond it has nothing after it.
    let Ok(after) = i64::try_from(after) else {
        return Ok(Vec::new());
    };
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut changes = Vec::new();
    {
        let mut stmt = tx.prepare_cached(SELECT_AFTER)?;
        let mut rows = stmt.query(params![after, limit])?;
        while let Some(row) = rows.next()? {
            changes.push(change(row, path)?);
        }
    }
    tx.commit()?;
    Ok(changes)
}

/// The seq of the newest committed change, 0 when there was none.
pub(crate) fn last_seq(conn: &Connection, path: &Path) -> Result<u64, Failure> {
    let last: Option<i64> = conn.query_row(SELECT_LAST_SEQ, [], |row| row.get(0))?;
    match last {
        Some(seq) if seq >= 0 => Ok(seq.unsigned_abs()),
        Some(seq) => Err(corrupt(path, format!("the newest seq is negative ({seq})"))),
        None => Err(missing_horizon(path)),
    }
}

/// The feed's horizon: every change after it is retained.
fn retained_after(conn: &Connection, path: &Path) -> Result<u64, Failure> {
    let value: Option<i64> = conn
        .prepare_cached(SELECT_RETAINED_AFTER)?
        .query_row([], |row| row.get(0))
        .optional()?;
    match value {
        Some(v) if v >= 0 => Ok(v.unsigned_abs()),
        Some(v) => Err(corrupt(
            path,
            format!("the feed's retained_after is negative ({v})"),
        )),
        None => Err(missing_horizon(path)),
    }
}

/// One change from a `(seq, collection, name, revision, kind)` row, every
/// column checked.
fn change(row: &rusqlite::Row<'_>, path: &Path) -> Result<Change, Failure> {
    let seq = match row.get_ref(0)? {
        ValueRef::Integer(seq) if seq >= 1 => seq.unsigned_abs(),
        _ => return Err(corrupt(path, "a change has a seq below 1".to_owned())),
    };
    let at = || format!("{}: change {seq}", path.display());
    let bad = |reason: String| {
        Failure::Final(Error::Corrupt {
            location: at(),
            reason,
        })
    };
    let collection =
        text(row.get_ref(1)?).ok_or_else(|| bad("the collection is not text".into()))?;
    let name = text(row.get_ref(2)?).ok_or_else(|| bad("the name is not text".into()))?;
    let key = if collection.starts_with('_') {
        Key::new_reserved(collection, name)
    } else {
        Key::new(collection, name)
    }
    .map_err(|e| bad(format!("the key is invalid: {e}")))?;
    let revision = row::revision(row.get_ref(3)?, at)?;
    let kind = text(row.get_ref(4)?)
        .and_then(|k| k.parse::<ChangeKind>().ok())
        .ok_or_else(|| bad("the kind is not created, updated or deleted".into()))?;
    Ok(Change {
        seq,
        key,
        revision,
        kind,
    })
}

/// A text column as UTF-8.
fn text(value: ValueRef<'_>) -> Option<&str> {
    match value {
        ValueRef::Text(bytes) => std::str::from_utf8(bytes).ok(),
        _ => None,
    }
}

fn corrupt(path: &Path, reason: String) -> Failure {
    Failure::Final(Error::Corrupt {
        location: format!("{}: changes", path.display()),
        reason,
    })
}

fn missing_horizon(path: &Path) -> Failure {
    corrupt(
        path,
        "the meta table lacks the feed's retained_after row".to_owned(),
    )
}
