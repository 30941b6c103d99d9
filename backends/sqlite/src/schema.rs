//! The database layout, its format version and the migration between
//! versions.

use std::path::Path;

use revstore::Error;
use rusqlite::{Connection, TransactionBehavior};

use crate::failure::Failure;

/// The format this crate writes, stored in `PRAGMA user_version`.
pub(crate) const FORMAT_VERSION: i64 = 2;

/// The first format: documents only, no change feed.
const VERSION_1: i64 = 1;

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

/// Version 2 adds the change feed. `AUTOINCREMENT` makes SQLite remember
/// the highest seq ever handed out (in `sqlite_sequence`), so a seq is
/// never reused, even after pruning deleted every row up to the newest.
/// `meta.retained_after` is the feed's horizon: every change with a larger
/// seq is still in `changes`, none with a smaller or equal one is.
///
/// The triggers make "every write is in the feed" hold even against a
/// writer that does not know about it, such as an older revstore-sqlite
/// that opened the file before it was migrated (its format check is
/// behind it): a document row may only be written right after its change
/// row, on the same connection (`last_insert_rowid()` is per connection;
/// `documents` has no rowid, so writing it leaves the value alone).
const CREATE_V2: &str = "CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    collection TEXT NOT NULL,
    name TEXT NOT NULL,
    revision INTEGER NOT NULL,
    kind TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO meta (key, value) VALUES ('retained_after', 0);
CREATE TRIGGER IF NOT EXISTS insert_needs_its_change BEFORE INSERT ON documents
WHEN NOT EXISTS (SELECT 1 FROM changes WHERE seq = last_insert_rowid()
    AND collection = NEW.collection AND name = NEW.name AND revision = NEW.revision)
BEGIN
    SELECT RAISE(ABORT, 'revstore: a document write without its change-feed row; is an older revstore-sqlite (format 1) still using this file?');
END;
CREATE TRIGGER IF NOT EXISTS update_needs_its_change BEFORE UPDATE ON documents
WHEN NOT EXISTS (SELECT 1 FROM changes WHERE seq = last_insert_rowid()
    AND collection = NEW.collection AND name = NEW.name AND revision = NEW.revision)
BEGIN
    SELECT RAISE(ABORT, 'revstore: a document write without its change-feed row; is an older revstore-sqlite (format 1) still using this file?');
END;";

/// On migrating a version-1 file that holds documents: their writes were
/// never recorded, so the feed starts with a gap. Seq 1 stands for all of
/// them, and is reported as already discarded: a cursor of 0 gets
/// [`Error::Compacted`] (re-list, then resume from seq 1) instead of a feed
/// that silently lacks every existing document.
const MARK_HISTORY_LOST: &str = "
UPDATE meta SET value = max(value, 1) WHERE key = 'retained_after';
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'changes', 1
    WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'changes');";

/// Whether `path` names a database SQLite keeps in memory (or in a private
/// temporary file) per connection: every connection of the pool, let alone
/// every handle or process, would see a different, empty store.
pub(crate) fn is_private(path: &Path) -> bool {
    let text = path.as_os_str();
    text.is_empty() || text == ":memory:"
}

/// Switches the file to WAL and checks that it took: readers then never
/// block the writer nor it them, and a read transaction is a snapshot. The
/// mode persists in the file, so this is a no-op after the first open.
///
/// # Errors
/// [`Error::InvalidConfig`] naming the file when SQLite keeps another
/// journal mode (a file system without the shared memory WAL needs, for
/// instance): the backend's guarantees are only argued for WAL.
pub(crate) fn enable_wal(conn: &Connection, path: &Path) -> Result<(), Failure> {
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    require_wal(&mode, path)
}

/// Accepts the journal mode SQLite reports only when it is WAL.
fn require_wal(mode: &str, path: &Path) -> Result<(), Failure> {
    if mode.eq_ignore_ascii_case("wal") {
        return Ok(());
    }
    Err(Failure::Final(Error::InvalidConfig {
        input: path.display().to_string(),
        reason: format!(
            "SQLite cannot put this database in WAL journal mode (it stays in \
             {mode:?} mode; the file system may not support WAL's shared memory), \
             and revstore-sqlite relies on WAL"
        ),
    }))
}

/// Creates the tables of a new file, migrates a version-1 file, or checks
/// the recorded version. Idempotent, and safe when several processes open
/// the same file at once: every change happens in one immediate transaction
/// that re-checks the version first.
pub(crate) fn prepare(conn: &mut Connection, path: &Path) -> Result<(), Failure> {
    if check_version(conn, path)? == Some(FORMAT_VERSION) {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    match check_version(&tx, path)? {
        None => {
            tx.execute_batch(CREATE_V1)?;
            tx.execute_batch(CREATE_V2)?;
        }
        Some(VERSION_1) => {
            tx.execute_batch(CREATE_V2)?;
            let has_documents: bool =
                tx.query_row("SELECT EXISTS (SELECT 1 FROM documents)", [], |row| {
                    row.get(0)
                })?;
            if has_documents {
                tx.execute_batch(MARK_HISTORY_LOST)?;
            }
        }
        // Another opener finished while this one waited for the lock.
        Some(_) => return Ok(()),
    }
    tx.pragma_update(None, "user_version", FORMAT_VERSION)?;
    tx.commit()?;
    Ok(())
}

/// The file's format version (one this crate can open or migrate), or
/// `None` for a new, empty database.
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
        FORMAT_VERSION | VERSION_1 => Ok(Some(version)),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_journal_mode_other_than_wal_is_refused_naming_the_file() {
        let path = Path::new("/data/store.db");
        assert!(require_wal("wal", path).is_ok());
        for mode in ["delete", "memory", "truncate", "off"] {
            match require_wal(mode, path) {
                Err(Failure::Final(Error::InvalidConfig { input, reason })) => {
                    assert_eq!(input, "/data/store.db");
                    assert!(reason.contains(mode) && reason.contains("WAL"), "{reason}");
                }
                other => panic!("{mode}: expected InvalidConfig, got {other:?}"),
            }
        }
    }

    #[test]
    fn in_memory_paths_are_private() {
        assert!(is_private(Path::new(":memory:")));
        assert!(is_private(Path::new("")));
        assert!(!is_private(Path::new("memory.db")));
        assert!(!is_private(Path::new("./:memory:")));
    }
}
