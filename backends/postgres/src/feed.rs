//! The change feed: one `changes` row per committed write, recorded in the
//! write's own transaction with a seq from the `feed_state` counter, and
//! pruned to the configured retention.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use postgres::Row;
use revstore::{Change, Error};

use crate::row;

/// Most changes between two prunings: pruning then runs on one write in
/// this many (or in `retain` for small retentions), so its cost per write
/// stays small and the table holds at most `retain + PRUNE_EVERY - 1` rows.
const PRUNE_EVERY: u64 = 256;

/// The horizon to prune to after the commit that took `seq`, if this one
/// prunes: every change after it is kept.
pub(crate) fn prune_horizon(seq: u64, retain: u64) -> Option<u64> {
    let retain = retain.max(1);
    (seq % retain.min(PRUNE_EVERY) == 0 && seq > retain).then(|| seq - retain)
}

/// The changes of a `SelectChanges` answer: its first column is the
/// horizon, repeated on every row (one row with no change when there is
/// none after the cursor).
///
/// # Errors
/// [`Error::Compacted`] when `after` is older than the horizon;
/// [`Error::Corrupt`] when the feed's state row is missing or a change
/// does not decode.
pub(crate) fn changes(rows: &[Row], after: u64, namespace: &str) -> Result<Vec<Change>, Error> {
    let Some(first) = rows.first() else {
        return Err(missing_state(namespace));
    };
    let retained_after = match first.try_get::<_, i64>(0) {
        Ok(v) if v >= 0 => v.unsigned_abs(),
        _ => {
            return Err(Error::Corrupt {
                location: format!("{namespace}.feed_state"),
                reason: "the feed's retained_after is not a non-negative bigint".to_owned(),
            })
        }
    };
    if after < retained_after {
        return Err(Error::Compacted {
            requested: after,
            retained_after,
        });
    }
    let mut changes = Vec::with_capacity(rows.len());
    for r in rows {
        if r.try_get::<_, Option<i64>>(1).ok().flatten().is_none() {
            continue; // no change after the cursor
        }
        changes.push(row::change(r, 1, namespace)?);
    }
    Ok(changes)
}

/// The newest seq from a `SelectLastSeq` answer.
pub(crate) fn last_seq(rows: &[Row], namespace: &str) -> Result<u64, Error> {
    let Some(first) = rows.first() else {
        return Err(missing_state(namespace));
    };
    match first.try_get::<_, i64>(0) {
        Ok(seq) if seq >= 0 => Ok(seq.unsigned_abs()),
        _ => Err(Error::Corrupt {
            location: format!("{namespace}.feed_state"),
            reason: "the last seq is not a non-negative bigint".to_owned(),
        }),
    }
}

fn missing_state(namespace: &str) -> Error {
    Error::Corrupt {
        location: format!("{namespace}.feed_state"),
        reason: "the feed's state row is missing".to_owned(),
    }
}

/// A token no other commit anywhere uses: 64 random bits fixed per process
/// (from the standard library's randomly seeded hasher, mixed with the
/// process id and the start time) and a per-process counter. Written into
/// the change row, it tells afterwards whether a commit whose connection
/// dropped during `COMMIT` went through.
pub(crate) fn commit_token() -> [u8; 16] {
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        hasher.write_u128(nanos);
        hasher.finish()
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut token = [0u8; 16];
    token[..8].copy_from_slice(&prefix.to_be_bytes());
    token[8..].copy_from_slice(&n.to_be_bytes());
    token
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pruning_runs_every_interval_and_keeps_retain_changes() {
        assert_eq!(prune_horizon(256, 100_000), None);
        assert_eq!(prune_horizon(100_096, 100_000), Some(96));
        assert_eq!(prune_horizon(100_001, 100_000), None);
        assert_eq!(prune_horizon(20, 10), Some(10));
        assert_eq!(prune_horizon(10, 10), None);
        assert_eq!(prune_horizon(25, 10), None);
        assert_eq!(prune_horizon(3, 0), Some(2));
    }

    #[test]
    fn tokens_differ() {
        let a = commit_token();
        let b = commit_token();
        assert_ne!(a, b);
        assert_eq!(a[..8], b[..8]);
    }
}
