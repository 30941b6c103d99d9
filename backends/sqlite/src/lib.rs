//! The SQLite backend of revstore: every document of a store in one SQLite
//! database file.
//!
//! # Guarantees
//! - **Atomic, conditional commits.** A write runs in a `BEGIN IMMEDIATE`
//!   transaction that checks the guard key and the key's revision, then
//!   inserts the key (first write) or runs `UPDATE … WHERE collection=? AND
//!   name=? AND revision=?`; a key or guard that moved on means another
//!   writer won, and nothing of the write is written. Immediate
//!   transactions take the write lock before reading, so nothing they read
//!   can change before they commit, and they never fail with
//!   `SQLITE_BUSY_SNAPSHOT` half-way.
//! - **Group commit.** The commits that threads of one process (through
//!   one handle or several with the same settings) make to one file at the
//!   same moment queue up, and one thread runs all those waiting in one
//!   transaction, so they share its fsync. Each keeps its own guard and
//!   revision checks and its own feed row; one that loses its race leaves
//!   the others alone; a statement of one that fails rolls the group back
//!   and each is run alone; every caller learns its outcome only after the
//!   shared `COMMIT` returned, and an error of that `COMMIT` is reported to
//!   each of them (none of their writes was committed).
//! - **Many handles, threads and processes.** Any number of
//!   [`SqliteBackend`]s, in any number of processes, may open the same file.
//!   Lock contention is waited out (polling for SQLite's write lock every
//!   50 to 250 µs, for up to [`SqliteOptions::lock_timeout`] in total) and
//!   never surfaces as an error under ordinary load. SQLite lets one
//!   transaction write at a time: the commits of different processes
//!   take turns, each with its own fsync.
//! - **Change feed.** Every committed write also inserts one row into a
//!   `changes` table in the same transaction, so it appears in
//!   [`changes_since`](revstore::StorageBackend::changes_since) exactly once,
//!   visible from the moment the write is, with a seq handed out in commit
//!   order, one past the newest (pruning always keeps the newest change,
//!   so a seq is never reused unless rows are deleted by hand). A write
//!   prunes the feed to [`SqliteOptions::retain_changes`] once every 256
//!   seqs (or every `retain_changes`, when smaller); a reader takes the
//!   retention horizon and the rows from one snapshot, so a cursor older
//!   than the horizon always gets [`Error::Compacted`], never a gap.
//! - **Warm reads skip parsing.** Each handle keeps a bounded cache
//!   ([`revstore::DEFAULT_DECODE_CACHE_BYTES`]) of bodies likely to be
//!   read again unchanged (read twice at one revision, or written to a key
//!   it wrote shortly before), keyed by their exact stored JSON text: a
//!   read still fetches the row, and reuses the decoded body only when the
//!   text is byte-for-byte the one cached (the revision always comes from
//!   the row). A cached body is shared with the reader (copy on write,
//!   see [`revstore::Document`]), never copied.
//! - **Readers never write** and, thanks to WAL, never wait for writers. A
//!   file that cannot be put in WAL mode is refused
//!   ([`Error::InvalidConfig`] naming it), and so are in-memory databases.
//! - **Format versions.** The file records its format in `PRAGMA
//!   user_version` (now 3). Older files are migrated on open, in one
//!   immediate transaction that concurrent openers wait for (it rewrites
//!   the tables, so it takes a while on a large file; freed pages are
//!   reused by later writes, and `VACUUM` returns them to the file system).
//!   Format 3 keeps documents in an ordinary rowid table (formats 1 and 2
//!   used `WITHOUT ROWID`, where a body over about 1000 bytes took an
//!   overflow page of its own) and hands out seqs without `AUTOINCREMENT`.
//!   A version-1 file, written before the change feed existed, has no
//!   history for its existing writes: when it holds documents the feed
//!   starts after seq 1, and a cursor of 0 gets [`Error::Compacted`]
//!   (re-list, then follow from seq 1) rather than a feed silently missing
//!   those documents. A migrated file can no longer be opened by an older
//!   revstore-sqlite; one that already had it open when it was migrated
//!   either records its writes in the feed as before (format 2) or has
//!   them refused by triggers (format 1: a document write must follow its
//!   change row on the same connection), never silently missing from the
//!   feed.
//! - **Durability.** [`Durability::Full`] (the default) runs with
//!   `synchronous=FULL`: a committed write survives power loss.
//!   [`Durability::Relaxed`] uses `synchronous=NORMAL`: a committed write
//!   survives a crash of the process, and power loss may lose recent writes
//!   but never corrupts the file.
//! - **Nothing trusted on disk.** A row whose body is not a JSON mapping or
//!   whose revision is below 1 is reported as [`Error::Corrupt`] naming the
//!   file and key, and left untouched; a file that is not a SQLite database
//!   is [`Error::Corrupt`] naming the file.
//!
//! # What limits it
//! - **One writer at a time per file.** SQLite's write lock serializes
//!   transactions. Threads of one process share transactions (group
//!   commit), so with full durability T threads writing at once cost about
//!   one fsync per group, not per write; OS processes cannot share a
//!   transaction, so their commits take turns, each paying its own fsync
//!   and the handoff of the lock (waiters poll for it), and P processes
//!   writing at once commit at most about as fast as one.
//! - **A write reads first.** The engine reads a key before writing it: a
//!   read transaction, then the write transaction, which also records the
//!   change in the feed (a second page per commit).
//! - **Large stores.** Documents up to about 4 KiB live in the table's
//!   leaves; at random keys of a large store, a read costs about one page
//!   read from the file, and a write one page written back at the next
//!   checkpoint. Each connection caches up to 8 MiB of pages.
//!
//! ```
//! use revstore::Store;
//! use revstore_sqlite::SqliteBackend;
//! use serde_json::json;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let store = Store::open(SqliteBackend::open(dir.path().join("store.db"))?);
//! let doc = store.create("models", "orders", json!({"description": "All orders"}))?;
//! assert_eq!(doc.revision, 1);
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod commit;
mod failure;
mod feed;
mod group;
#[cfg(test)]
mod group_tests;
mod pool;
mod row;
mod schema;
#[cfg(feature = "testkit")]
pub mod testkit;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use revstore::{
    Change, Commit, CommitOutcome, Durability, Entry, Error, Key, Record, Result,
    DEFAULT_RETAINED_CHANGES,
};
use rusqlite::params;
use rusqlite::types::ValueRef;

use crate::failure::{retry_busy, Failure};
use crate::group::{Job, WriterQueue};
use crate::pool::Pool;
use crate::row::Decoded;

/// Settings of a [`SqliteBackend`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqliteOptions {
    /// What an acknowledged write survives (default [`Durability::Full`]);
    /// see the [crate documentation](crate).
    pub durability: Durability,
    /// How many of the newest changes the change feed keeps (default
    /// [`DEFAULT_RETAINED_CHANGES`]; 0 counts as 1). Writes through this
    /// handle prune older ones; the feed may hold up to 255 more between
    /// prunings, never fewer. Handles with different settings may share a
    /// file: each prunes to its own setting when it writes.
    pub retain_changes: u64,
    /// How long an operation waits for a database locked by another
    /// connection or program before giving up with [`Error::Backend`]
    /// naming the file (default 30 s). Ordinary contention between revstore
    /// writers resolves in milliseconds; this bounds the wait on a program
    /// that holds a lock for a long time.
    pub lock_timeout: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            durability: Durability::default(),
            retain_changes: DEFAULT_RETAINED_CHANGES,
            lock_timeout: Duration::from_secs(30),
        }
    }
}

/// A store in one SQLite database file (WAL mode).
///
/// `Send + Sync`: share one instance between threads (it keeps a small pool
/// of connections so reads run in parallel), or open several on the same
/// file, in this process or others. See the [crate documentation](crate)
/// for its guarantees.
#[derive(Debug)]
pub struct SqliteBackend {
    pool: Pool,
    /// [`SqliteOptions::retain_changes`].
    retain_changes: u64,
    /// [`SqliteOptions::lock_timeout`].
    lock_timeout: Duration,
    /// Bodies this handle decoded, by the exact JSON text stored, so that
    /// a read of an unchanged row skips parsing.
    decoded: Decoded,
    /// Where this handle's commits queue up with those of the other
    /// threads and handles of this process on the same file.
    writers: Arc<WriterQueue>,
    /// Test-only breakage: commits in groups skip their revision check.
    #[cfg(test)]
    unchecked_groups: std::sync::atomic::AtomicBool,
}

/// The row of a key: its last revision and body.
const SELECT_RECORD: &str =
    "SELECT revision, body FROM documents WHERE collection = ?1 AND name = ?2";
/// The live documents of a collection, without their bodies.
const SELECT_LIVE: &str = "SELECT name, revision FROM documents \
     WHERE collection = ?1 AND body IS NOT NULL ORDER BY name";

impl SqliteBackend {
    /// Opens the database at `path` with default options, creating the file
    /// and its table when missing.
    ///
    /// # Errors
    /// As [`open_with`](SqliteBackend::open_with).
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteBackend> {
        SqliteBackend::open_with(path, SqliteOptions::default())
    }

    /// Opens the database at `path`, creating the file and its tables when
    /// missing or migrating a version-1 file (idempotent, and safe when
    /// several processes do it at once), and switches it to WAL mode.
    ///
    /// # Errors
    /// [`Error::Corrupt`] naming the file when it is not a SQLite database,
    /// [`Error::InvalidConfig`] naming it when it was written by a newer
    /// revstore, belongs to another application, cannot be put in WAL mode
    /// or is an in-memory database (`:memory:` or an empty path),
    /// [`Error::Backend`] when it cannot be opened or created.
    pub fn open_with(path: impl AsRef<Path>, options: SqliteOptions) -> Result<SqliteBackend> {
        let path = path.as_ref();
        if schema::is_private(path) {
            return Err(Error::InvalidConfig {
                input: path.display().to_string(),
                reason: "in-memory SQLite databases are not supported: every connection \
                         would see its own, separate database; give a file path \
                         (or use revstore's MemoryBackend)"
                    .to_owned(),
            });
        }
        let pool = Pool::new(path.to_path_buf(), options.durability, options.lock_timeout);
        let path = pool.path();
        retry_busy(
            options.lock_timeout,
            path,
            || format!("opening {}", path.display()),
            || {
                let mut conn = pool.get()?;
                schema::enable_wal(&conn, path)?;
                schema::prepare(&mut conn, path)
            },
        )?;
        // Canonical, so that every spelling of the path shares one queue.
        let file = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let writers = WriterQueue::for_file(
            &file,
            options.durability,
            options.retain_changes,
            options.lock_timeout,
        );
        Ok(SqliteBackend {
            pool,
            retain_changes: options.retain_changes,
            lock_timeout: options.lock_timeout,
            decoded: Decoded::default(),
            writers,
            #[cfg(test)]
            unchecked_groups: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        self.pool.path()
    }
}

/// A revision as SQLite's signed 64-bit integer.
fn sql_revision(revision: Option<u64>, key: &Key) -> Result<i64> {
    revision
        .and_then(|r| i64::try_from(r).ok())
        .ok_or_else(|| Error::Backend {
            backend: "sqlite",
            context: format!("committing {key}"),
            source: "the revision does not fit SQLite's 64-bit signed integer".into(),
        })
}

impl revstore::StorageBackend for SqliteBackend {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    fn read(&self, key: &Key) -> Result<Option<Record>> {
        let path = self.path();
        retry_busy(
            self.lock_timeout,
            path,
            || format!("reading {key} from {}", path.display()),
            || {
                let conn = self.pool.get()?;
                let mut stmt = conn.prepare_cached(SELECT_RECORD)?;
                let mut rows = stmt.query(params![key.collection(), key.name()])?;
                match rows.next()? {
                    None => Ok(None),
                    Some(row) => self.decoded.record(row, path, key).map(Some),
                }
            },
        )
    }

    fn read_cached(&self, key: &Key) -> Option<Record> {
        // Every write of a row bumps its revision, so the revision the
        // commit is conditional on identifies the content too.
        self.decoded.remembered(key)
    }

    fn commit(&self, commit: &Commit<'_>) -> Result<CommitOutcome> {
        let key = commit.key;
        let body: Option<Arc<str>> = commit
            .body
            .map(|body| serde_json::to_string(&**body))
            .transpose()
            .map_err(|e| Error::InvalidBody {
                key: key.clone(),
                reason: format!("cannot be encoded as JSON: {e}"),
            })?
            .map(Arc::from);
        let job = Job {
            key: key.clone(),
            expected: sql_revision(Some(commit.expected), key)?,
            new_revision: sql_revision(commit.expected.checked_add(1), key)?,
            body: body.clone(),
            guard: commit.guard.map(|g| (g.key.clone(), g.revision)),
            kind: commit.kind,
        };
        let outcome = self.writers.submit(job, &|jobs| self.run_group(jobs))?;
        if outcome == CommitOutcome::Committed {
            self.decoded
                .committed(key, commit.new_revision(), commit.body, body.as_deref());
        }
        Ok(outcome)
    }

    fn list(&self, collection: &str) -> Result<Vec<Entry>> {
        let path = self.path();
        retry_busy(
            self.lock_timeout,
            path,
            || format!("listing {collection} in {}", path.display()),
            || {
                let conn = self.pool.get()?;
                let mut stmt = conn.prepare_cached(SELECT_LIVE)?;
                let mut rows = stmt.query(params![collection])?;
                let mut entries = Vec::new();
                while let Some(row) = rows.next()? {
                    entries.push(entry(row, path, collection)?);
                }
                Ok(entries)
            },
        )
    }

    fn changes_since(&self, after: u64, limit: usize) -> Result<Vec<Change>> {
        let path = self.path();
        retry_busy(
            self.lock_timeout,
            path,
            || {
                format!(
                    "reading the changes after seq {after} from {}",
                    path.display()
                )
            },
            || {
                let mut conn = self.pool.get()?;
                feed::changes_since(&mut conn, path, after, limit)
            },
        )
    }

    fn last_seq(&self) -> Result<u64> {
        let path = self.path();
        retry_busy(
            self.lock_timeout,
            path,
            || format!("reading the last seq of {}", path.display()),
            || {
                let conn = self.pool.get()?;
                feed::last_seq(&conn, path)
            },
        )
    }
}

/// One listing entry from a `(name, revision)` row.
fn entry(row: &rusqlite::Row<'_>, path: &Path, collection: &str) -> Result<Entry, Failure> {
    let name = match row.get_ref(0)? {
        ValueRef::Text(bytes) => std::str::from_utf8(bytes).ok().map(str::to_owned),
        _ => None,
    };
    let Some(name) = name else {
        return Err(Failure::Final(Error::Corrupt {
            location: format!("{}: {collection}", path.display()),
            reason: "a document name is not UTF-8 text".to_owned(),
        }));
    };
    let revision = row::revision(row.get_ref(1)?, || {
        format!("{}: {collection}/{name}", path.display())
    })?;
    Ok(Entry { name, revision })
}
