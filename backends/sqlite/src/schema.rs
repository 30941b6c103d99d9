//! The database layout and its format version.

use std::path::Path;

use revstore::Error;
use rusqlite::{Connection, TransactionBehavior};

use crate::failure::Failure;

/// The format this crate writes, stored in `PRAGMA user_version`.
pub(crate) const FORMAT_VERSION: i64 = 1;

/// Version 1: one row per key ever written; a `NULL` body is a tombstone,
/// which keeps the revision so that a re-create continues the sequence.
/// `WITHOUT ROWID` clusters rows by key, so a listing reads one collection's
/// rows in name order straight off the primary key.
const CREATE_V1: &str = "CREATE TABLE IF NOT EXISTS documents (
    collection TEXT NOT NULL,
    name TEXT NOT NULL,
    revision INTEGER NOT NULL,
    body TEXT,
    PRIMARY KEY (collection, name)
) WITHOUT ROWID";

/// Switches the file to WAL (readers then never block the writer, nor it
/// them). The mode persists in the file, so this is a no-op after the first
/// open. A file system without WAL support keeps the rollback journal:
/// still correct, since every write is an immediate transaction, only with
/// less parallelism.
pub(crate) fn enable_wal(conn: &Connection) -> Result<(), Failure> {
    conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
    Ok(())
}

/// Creates the table and records the format version, or checks the
/// recorded one. Idempotent, and safe when several processes open a new file
/// at once: creation happens in one immediate transaction that re-checks.
pub(crate) fn prepare(conn: &mut Connection, path: &Path) -> Result<(), Failure> {
    match check_version(conn, path)? {
        Some(_) => Ok(()),
        None => {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if check_version(&tx, path)?.is_none() {
                tx.execute_batch(CREATE_V1)?;
                tx.pragma_update(None, "user_version", FORMAT_VERSION)?;
            }
            tx.commit()?;
            Ok(())
        }
    }
}

/// The file's format version, or `None` for a new, empty database.
///
/// # Errors
/// [`Error::InvalidConfig`] naming the file when it was written by a newer
/// revstore, or is some other application's database (it has tables but no
/// revstore version, which creation always sets in the same transaction).
fn check_version(conn: &Connection, path: &Path) -> Result<Option<i64>, Failure> {
    // One statement, so one snapshot: reading the version and the tables
    // separately could see another process's creation land in between
    // (version 0, then a table) and take a new revstore file for a foreign one.
    let (version, tables): (i64, i64) = conn.query_row(
        "SELECT (SELECT user_version FROM pragma_user_version), \
                (SELECT count(*) FROM sqlite_master WHERE type = 'table')",
        [],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    let refuse = |reason: String| {
        Failure::Final(Error::InvalidConfig {
            input: path.display().to_string(),
            reason,
        })
    };
    match version {
        FORMAT_VERSION => Ok(Some(version)),
        0 => {
            if tables == 0 {
                Ok(None)
            } else {
                Err(refuse(
                    "the SQLite database has tables but no revstore format version; \
                     it belongs to another application"
                        .to_owned(),
                ))
            }
        }
        newer if newer > FORMAT_VERSION => Err(refuse(format!(
            "the database has revstore format version {newer}, newer than the \
             version {FORMAT_VERSION} this revstore-sqlite understands; upgrade revstore"
        ))),
        unknown => Err(refuse(format!(
            "the database has an unknown revstore format version {unknown}"
        ))),
    }
}
