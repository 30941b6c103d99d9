//! The database layout, its format version and the migration between
//! versions.

use std::path::Path;

use revstore::Error;
use rusqlite::{Connection, TransactionBehavior};

use crate::failure::Failure;

/// The format this crate writes, stored in `PRAGMA user_version`.
pub(crate) const FORMAT_VERSION: i64 = 3;

/// The first format: documents only, no change feed.
const VERSION_1: i64 = 1;

/// The second format: the change feed, with `AUTOINCREMENT` seqs and
/// documents in a `WITHOUT ROWID` table.
const VERSION_2: i64 = 2;

/// One row per key ever written; a `NULL` body is a tombstone, which keeps
/// the revision so that a re-create continues the sequence.
///
/// An ordinary rowid table with a unique index on the key (format 3). Formats
/// 1 and 2 used `WITHOUT ROWID`, which keeps whole rows in an index b-tree,
/// where a row over about 1000 bytes (a 4 KiB page's limit there) spills into
/// an overflow page of its own: a 1 KiB body took a whole extra page, every
/// key comparison of a lookup read it, and the file was four times the data.
/// A rowid table keeps rows up to about 4 KiB in the leaf, and the index
/// (keys only) stays small enough to be cached.
const CREATE_DOCUMENTS: &str = "CREATE TABLE documents (
    collection TEXT NOT NULL,
    name TEXT NOT NULL,
    revision INTEGER NOT NULL,
    body TEXT,
    PRIMARY KEY (collection, name)
)";

/// The change feed and its horizon (format 3).
///
/// A change's seq is one more than the newest seq still in `changes` or,
/// when pruning or a migration left none newer, the horizon (see
/// [`crate::feed`]): pruning never deletes the newest change, so a seq is
/// never handed out twice. (Format 2 used `AUTOINCREMENT`, which remembers
/// the highest seq in `sqlite_sequence` at the price of rewriting that page,
/// a third page per commit.)
///
/// `meta.retained_after` is the feed's horizon: every change with a larger
/// seq is still in `changes`, none with a smaller or equal one is.
const CREATE_FEED: &str = "CREATE TABLE changes (
    seq INTEGER PRIMARY KEY,
    collection TEXT NOT NULL,
    name TEXT NOT NULL,
    revision INTEGER NOT NULL,
    kind TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO meta (key, value) VALUES ('retained_after', 0);";

/// The triggers make "every write is in the feed" hold even against a
/// writer that does not know about it, such as an older revstore-sqlite
/// that opened the file before it was migrated (its format check is
/// behind it): a document row may only be written right after its change
/// row, on the same connection (`last_insert_rowid()` is per connection,
/// and the `BEFORE` triggers run before the document row, which has a rowid
/// since format 3, moves it).
const CREATE_TRIGGERS: &str = "
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

/// Rebuilds a format-1 or -2 `documents` table as format 3's rowid table.
/// The triggers go first: renaming a table that a trigger names is refused.
const REBUILD_DOCUMENTS: &str = "
DROP TRIGGER IF EXISTS insert_needs_its_change;
DROP TRIGGER IF EXISTS update_needs_its_change;
ALTER TABLE documents RENAME TO documents_before_v3;
CREATE TABLE documents (
    collection TEXT NOT NULL,
    name TEXT NOT NULL,
    revision INTEGER NOT NULL,
    body TEXT,
    PRIMARY KEY (collection, name)
);
INSERT INTO documents (collection, name, revision, body)
    SELECT collection, name, revision, body FROM documents_before_v3
    ORDER BY collection, name;
DROP TABLE documents_before_v3;";

/// Rebuilds format 2's `changes` table without `AUTOINCREMENT`, keeping
/// every row. Format 2's high-water mark (`sqlite_sequence`) becomes the
/// horizon when it is beyond the newest row (only a hand edit leaves it
/// so), so no seq is handed out twice; `?1` is that mark.
const REBUILD_CHANGES: &str = "
ALTER TABLE changes RENAME TO changes_before_v3;
CREATE TABLE changes (
    seq INTEGER PRIMARY KEY,
    collection TEXT NOT NULL,
    name TEXT NOT NULL,
    revision INTEGER NOT NULL,
    kind TEXT NOT NULL
);
INSERT INTO changes (seq, collection, name, revision, kind)
    SELECT seq, collection, name, revision, kind FROM changes_before_v3;
DROP TABLE changes_before_v3;";

/// See [`REBUILD_CHANGES`]: raises the horizon to format 2's high-water
/// mark `?1` when no row reaches it.
const KEEP_HIGH_WATER_MARK: &str = "UPDATE meta SET value = max(value, ?1)
    WHERE key = 'retained_after' AND ?1 > COALESCE((SELECT max(seq) FROM changes), 0)";

/// Drops the changes the horizon covers, so that every change is after it.
const DROP_BEHIND_HORIZON: &str =
    "DELETE FROM changes WHERE seq <= (SELECT value FROM meta WHERE key = 'retained_after')";

/// On migrating a version-1 file that holds documents: their writes were
/// never recorded, so the feed starts with a gap. Seq 1 stands for all of
/// them, and is reported as already discarded: a cursor of 0 gets
/// [`Error::Compacted`] (re-list, then resume from seq 1) instead of a feed
/// that silently lacks every existing document.
const MARK_HISTORY_LOST: &str =
    "UPDATE meta SET value = max(value, 1) WHERE key = 'retained_after'";

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

/// Creates the tables of a new file, migrates a version-1 or -2 file, or
/// checks the recorded version. Idempotent, and safe when several processes
/// open the same file at once: every change happens in one immediate
/// transaction that re-checks the version first.
pub(crate) fn prepare(conn: &mut Connection, path: &Path) -> Result<(), Failure> {
    if check_version(conn, path)? == Some(FORMAT_VERSION) {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    match check_version(&tx, path)? {
        None => {
            tx.execute_batch(CREATE_DOCUMENTS)?;
            tx.execute_batch(CREATE_FEED)?;
        }
        Some(VERSION_1) => {
            tx.execute_batch(REBUILD_DOCUMENTS)?;
            tx.execute_batch(CREATE_FEED)?;
            let has_documents: bool =
                tx.query_row("SELECT EXISTS (SELECT 1 FROM documents)", [], |row| {
                    row.get(0)
                })?;
            if has_documents {
                tx.execute_batch(MARK_HISTORY_LOST)?;
            }
        }
        Some(VERSION_2) => {
            tx.execute_batch(REBUILD_DOCUMENTS)?;
            let high_water_mark = autoincrement_mark(&tx)?;
            tx.execute_batch(REBUILD_CHANGES)?;
            tx.execute(KEEP_HIGH_WATER_MARK, [high_water_mark])?;
            tx.execute(DROP_BEHIND_HORIZON, [])?;
        }
        // Another opener finished while this one waited for the lock.
        Some(_) => return Ok(()),
    }
    tx.execute_batch(CREATE_TRIGGERS)?;
    tx.pragma_update(None, "user_version", FORMAT_VERSION)?;
    tx.commit()?;
    Ok(())
}

/// The highest seq format 2's `AUTOINCREMENT` handed out (0 when none).
fn autoincrement_mark(conn: &Connection) -> Result<i64, Failure> {
    let has_sequence: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence')",
        [],
        |row| row.get(0),
    )?;
    if !has_sequence {
        return Ok(0);
    }
    Ok(conn.query_row(
        "SELECT COALESCE((SELECT max(seq) FROM sqlite_sequence WHERE name = 'changes'), 0)",
        [],
        |row| row.get(0),
    )?)
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
        FORMAT_VERSION | VERSION_1 | VERSION_2 => Ok(Some(version)),
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
