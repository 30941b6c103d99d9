//! The raw baselines: what the storage underneath can do without revstore.
//!
//! - [`RawSqlite`]: the same pragmas and table as revstore-sqlite, and a
//!   `BEGIN IMMEDIATE; UPDATE … WHERE revision=?; COMMIT` loop (no change
//!   feed, no engine).
//! - [`RawFile`]: write a temp file, fsync it, rename it over, fsync the
//!   folder (no fsyncs when relaxed), with the bytes revstore-yaml writes.
//! - [`FsyncProbe`]: the disk's rate of fsyncs of a 4 KiB overwrite.
//! - [`RawMap`]: a mutex-guarded map, the memory backend's floor.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Mutex};
use std::time::Duration;

use revstore::{Body, Durability, Error};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::error::CliError;

/// A SQLite error while measuring the raw baseline, naming the file.
fn sqlite_error(path: &Path, what: &str, e: rusqlite::Error) -> CliError {
    CliError::Store(Error::Backend {
        backend: "sqlite",
        context: format!("raw baseline: {what} in {}", path.display()),
        source: Box::new(e),
    })
}

/// A file-system error while measuring a baseline, naming the file.
fn io_error(op: &'static str, path: &Path, e: std::io::Error) -> CliError {
    CliError::Store(Error::io(op, path, e))
}

/// A raw SQLite connection configured as revstore-sqlite configures its own.
#[derive(Debug)]
pub struct RawSqlite {
    conn: Connection,
    path: PathBuf,
    /// The revision [`update_with_feed`](RawSqlite::update_with_feed) last
    /// wrote, which its next call starts from without reading.
    written_revision: Option<i64>,
}

/// The table revstore-sqlite keeps its documents in (format 3's table: a
/// rowid table, so a 1 KiB row stays in its leaf page).
const CREATE: &str = "CREATE TABLE IF NOT EXISTS documents (
    collection TEXT NOT NULL,
    name TEXT NOT NULL,
    revision INTEGER NOT NULL,
    body TEXT,
    PRIMARY KEY (collection, name)
)";

/// revstore-sqlite's change feed table (format 3).
const CREATE_FEED: &str = "CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY,
    collection TEXT NOT NULL,
    name TEXT NOT NULL,
    revision INTEGER NOT NULL,
    kind TEXT NOT NULL
)";

/// revstore-sqlite's page cache per connection, in KiB.
const PAGE_CACHE_KIB: i64 = 8 * 1024;

impl RawSqlite {
    /// Opens (creating) a database at `path` with WAL, the durability's
    /// `synchronous` level and a 5 s busy timeout.
    ///
    /// # Errors
    /// SQLite's errors, naming the file.
    pub fn open(path: &Path, durability: Durability) -> Result<RawSqlite, CliError> {
        let err = |what: &str| {
            let what = what.to_owned();
            move |e| sqlite_error(path, &what, e)
        };
        let conn = Connection::open(path).map_err(err("open"))?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(err("set the busy timeout"))?;
        let _mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(err("enable WAL"))?;
        let synchronous = match durability {
            Durability::Full => "FULL",
            Durability::Relaxed => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", synchronous)
            .map_err(err("set synchronous"))?;
        conn.pragma_update(None, "cache_size", -PAGE_CACHE_KIB)
            .map_err(err("set the page cache size"))?;
        if durability == Durability::Full {
            conn.pragma_update(None, "fullfsync", true)
                .map_err(err("set fullfsync"))?;
        }
        conn.execute_batch(CREATE)
            .map_err(err("create the table"))?;
        conn.execute_batch(CREATE_FEED)
            .map_err(err("create the feed table"))?;
        Ok(RawSqlite {
            conn,
            path: path.to_path_buf(),
            written_revision: None,
        })
    }

    /// Makes the connection wait for another process's write lock as
    /// revstore-sqlite does, polling every 50 to 250 µs for up to 5 s, so
    /// that a multi-process baseline is not held back by a handicap of its
    /// own: `busy_timeout` sleeps 1, 2, 5, 10, … ms, long after a commit
    /// of well under a millisecond freed the lock, and its waiters form a
    /// convoy (4 raw processes made 0.23–0.41× one process's commits with
    /// it at full durability, and revstore's 1.9–4.3× theirs).
    ///
    /// # Errors
    /// SQLite's errors.
    pub fn poll_for_locks(&mut self) -> Result<(), CliError> {
        let deadline = Duration::from_secs(5);
        let mut since = std::time::Instant::now();
        self.conn
            .busy_handler(Some(move |tries: i32| {
                if tries == 0 {
                    since = std::time::Instant::now();
                } else if since.elapsed() >= deadline {
                    return false;
                }
                std::thread::sleep(Duration::from_micros(match tries {
                    0..=19 => 50,
                    20..=199 => 100,
                    _ => 250,
                }));
                true
            }))
            .map_err(|e| sqlite_error(&self.path, "set the busy handler", e))
    }

    /// Inserts or overwrites a row at revision 1.
    ///
    /// # Errors
    /// SQLite's errors.
    pub fn put(&self, collection: &str, name: &str, body: &str) -> Result<(), CliError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO documents (collection, name, revision, body) \
                 VALUES (?1, ?2, 1, ?3)",
                params![collection, name, body],
            )
            .map_err(|e| sqlite_error(&self.path, "insert", e))?;
        Ok(())
    }

    /// Inserts (or overwrites) rows `names` at revision 1, all with `body`,
    /// in one transaction: filling a large table quickly.
    ///
    /// # Errors
    /// SQLite's errors.
    pub fn fill(
        &mut self,
        collection: &str,
        names: impl Iterator<Item = String>,
        body: &str,
    ) -> Result<(), CliError> {
        let path = self.path.clone();
        let err = |what: &'static str| {
            let path = path.clone();
            move |e| sqlite_error(&path, what, e)
        };
        let tx = self.conn.transaction().map_err(err("begin"))?;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO documents (collection, name, revision, body) \
                     VALUES (?1, ?2, 1, ?3)",
                )
                .map_err(err("prepare the insert"))?;
            for name in names {
                insert
                    .execute(params![collection, name, body])
                    .map_err(err("insert"))?;
            }
        }
        tx.commit().map_err(err("commit"))
    }

    /// One conditional update in its own immediate transaction, on the
    /// revision read first (as the engine does), returning whether it
    /// changed a row.
    ///
    /// # Errors
    /// SQLite's errors.
    pub fn update(&mut self, collection: &str, name: &str, body: &str) -> Result<bool, CliError> {
        let path = self.path.clone();
        let err = |what: &'static str| {
            let path = path.clone();
            move |e| sqlite_error(&path, what, e)
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err("begin"))?;
        let revision: Option<i64> = tx
            .prepare_cached("SELECT revision FROM documents WHERE collection = ?1 AND name = ?2")
            .and_then(|mut s| {
                s.query_row(params![collection, name], |r| r.get(0))
                    .optional()
            })
            .map_err(err("select the revision"))?;
        let Some(revision) = revision else {
            return Ok(false);
        };
        let changed = tx
            .prepare_cached(
                "UPDATE documents SET body = ?1, revision = revision + 1 \
                 WHERE collection = ?2 AND name = ?3 AND revision = ?4",
            )
            .and_then(|mut s| s.execute(params![body, collection, name, revision]))
            .map_err(err("update"))?;
        tx.commit().map_err(err("commit"))?;
        Ok(changed == 1)
    }

    /// The statements a revstore write cannot do without, done raw: in one
    /// immediate transaction, check the schema guard's revision, update on
    /// the revision last written and add the change-feed row. Like the
    /// engine, it starts from the revision it wrote last and reads the row
    /// (revision and body text, unparsed) only when it has none or its
    /// update missed. No JSON, no engine: the floor of revstore's design.
    ///
    /// # Errors
    /// SQLite's errors.
    pub fn update_with_feed(
        &mut self,
        collection: &str,
        name: &str,
        body: &str,
    ) -> Result<bool, CliError> {
        if let Some(revision) = self.written_revision {
            if self.guarded_update_with_feed(collection, name, body, revision)? {
                return Ok(true);
            }
        }
        let path = self.path.clone();
        let read: Option<(i64, Option<String>)> = self
            .conn
            .prepare_cached(
                "SELECT revision, body FROM documents WHERE collection = ?1 AND name = ?2",
            )
            .and_then(|mut s| {
                s.query_row(params![collection, name], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            })
            .map_err(|e| sqlite_error(&path, "read the row", e))?;
        let Some((revision, _old_body)) = read else {
            return Ok(false);
        };
        self.guarded_update_with_feed(collection, name, body, revision)
    }

    fn guarded_update_with_feed(
        &mut self,
        collection: &str,
        name: &str,
        body: &str,
        revision: i64,
    ) -> Result<bool, CliError> {
        let path = self.path.clone();
        let err = |what: &'static str| {
            let path = path.clone();
            move |e| sqlite_error(&path, what, e)
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err("begin"))?;
        let _guard: Option<i64> = tx
            .prepare_cached(
                "SELECT revision FROM documents WHERE collection = '_schema' AND name = ?1",
            )
            .and_then(|mut s| s.query_row(params![collection], |r| r.get(0)).optional())
            .map_err(err("check the guard"))?;
        let changed = tx
            .prepare_cached(
                "UPDATE documents SET body = ?1, revision = ?4 + 1 \
                 WHERE collection = ?2 AND name = ?3 AND revision = ?4",
            )
            .and_then(|mut s| s.execute(params![body, collection, name, revision]))
            .map_err(err("update"))?;
        tx.prepare_cached(
            "INSERT INTO changes (collection, name, revision, kind) VALUES (?1, ?2, ?3, 'updated')",
        )
        .and_then(|mut s| s.execute(params![collection, name, revision + 1]))
        .map_err(err("add the feed row"))?;
        if changed != 1 {
            // Rolled back on drop, feed row and all.
            self.written_revision = None;
            return Ok(false);
        }
        tx.commit().map_err(err("commit"))?;
        self.written_revision = Some(revision + 1);
        Ok(true)
    }

    /// A raw `SELECT body`, returning the text.
    ///
    /// # Errors
    /// SQLite's errors.
    pub fn select(&self, collection: &str, name: &str) -> Result<Option<String>, CliError> {
        self.conn
            .prepare_cached("SELECT body FROM documents WHERE collection = ?1 AND name = ?2")
            .and_then(|mut s| {
                s.query_row(params![collection, name], |r| r.get(0))
                    .optional()
            })
            .map_err(|e| sqlite_error(&self.path, "select", e))
    }

    /// A raw listing: the names and revisions of a collection, in order.
    ///
    /// # Errors
    /// SQLite's errors.
    pub fn list(&self, collection: &str) -> Result<Vec<(String, i64)>, CliError> {
        let err = |e| sqlite_error(&self.path, "list", e);
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT name, revision FROM documents WHERE collection = ?1 \
                 AND body IS NOT NULL ORDER BY name",
            )
            .map_err(err)?;
        let rows = stmt
            .query_map(params![collection], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(err)
    }
}

/// Writes whole files the way revstore-yaml replaces a document.
#[derive(Debug)]
pub struct RawFile {
    dir: PathBuf,
    durability: Durability,
    /// The change log of [`write_with_feed`](RawFile::write_with_feed),
    /// opened on its first call, and the lines appended to it.
    feed: Option<(File, u64)>,
    /// The second thread of [`write_with_feed`](RawFile::write_with_feed),
    /// started on its first durable call.
    syncer: Option<SyncThread>,
    /// The document's and the feed's lock files of
    /// [`write_with_feed`](RawFile::write_with_feed), opened on its first
    /// call and kept open, as revstore-yaml keeps its own.
    locks: Option<((File, PathBuf), (File, PathBuf))>,
}

/// An exclusive `flock` held until dropped.
struct Locked<'a>(&'a File);

impl<'a> Locked<'a> {
    fn exclusive((file, path): &'a (File, PathBuf)) -> Result<Locked<'a>, CliError> {
        fs2::FileExt::lock_exclusive(file).map_err(|e| io_error("lock", path, e))?;
        Ok(Locked(file))
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        // Closing the file would release it too; the bench keeps it open.
        let _ = fs2::FileExt::unlock(self.0);
    }
}

/// A thread that fsyncs (`fdatasync`) the files it is sent, one at a
/// time, and sends each result back: the floor's counterpart of
/// revstore-yaml's fsync helper.
#[derive(Debug)]
struct SyncThread {
    files: mpsc::Sender<File>,
    results: mpsc::Receiver<std::io::Result<()>>,
}

impl SyncThread {
    fn start() -> SyncThread {
        let (files, to_sync) = mpsc::channel::<File>();
        let (synced, results) = mpsc::channel();
        // Ends when `files` is dropped with the `RawFile`.
        std::thread::spawn(move || {
            for file in to_sync {
                if synced.send(file.sync_data()).is_err() {
                    return;
                }
            }
        });
        SyncThread { files, results }
    }

    /// Starts fsyncing `file` on the thread; [`wait`](Self::wait) for it.
    fn sync(&self, file: File) -> std::io::Result<()> {
        self.files
            .send(file)
            .map_err(|_| std::io::Error::other("the fsync thread ended"))
    }

    /// The result of the fsync [`sync`](Self::sync) started.
    fn wait(&self) -> std::io::Result<()> {
        self.results
            .recv()
            .unwrap_or_else(|_| Err(std::io::Error::other("the fsync thread ended")))
    }
}

impl RawFile {
    /// Writes into `dir` (created when missing).
    ///
    /// # Errors
    /// The folder cannot be created.
    pub fn new(dir: &Path, durability: Durability) -> Result<RawFile, CliError> {
        std::fs::create_dir_all(dir).map_err(|e| io_error("create the folder", dir, e))?;
        Ok(RawFile {
            dir: dir.to_path_buf(),
            durability,
            feed: None,
            syncer: None,
            locks: None,
        })
    }

    /// Writes `bytes` to a temp file, fsyncs it, renames it over `name`
    /// and fsyncs the folder (no fsyncs when relaxed).
    ///
    /// # Errors
    /// The file system's errors, naming the file.
    pub fn write(&self, name: &str, bytes: &[u8]) -> Result<(), CliError> {
        let temp = self.stage(name, bytes)?;
        self.publish(&temp, name)
    }

    /// What [`write`](RawFile::write) does, plus what every revstore-yaml
    /// commit does beside it, without its engine: the floor of
    /// revstore-yaml's design. It locks the document's lock file (and
    /// checks the path still names it) and reads the document (a commit
    /// checks the revision it holds), stages the new file, locks the feed's
    /// lock file (checked too), checks the segment (its length, its last
    /// line, that no newer one exists) and reads the schema guard, appends
    /// the change line, renames, unlocks both and (when full) fsyncs the
    /// folder: the system calls of a revstore-yaml commit. When full,
    /// the temp file's fsync starts on a second thread once it is written
    /// and runs beside the line's, as revstore-yaml makes them, and both
    /// end before the rename.
    ///
    /// # Errors
    /// The file system's errors, naming the file.
    pub fn write_with_feed(&mut self, name: &str, bytes: &[u8]) -> Result<(), CliError> {
        let RawFile {
            dir,
            durability,
            feed,
            syncer,
            locks,
        } = self;
        let open_lock = |file: &str| {
            let path = dir.join(file);
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| io_error("open", &path, e))
                .map(|file| (file, path))
        };
        let (doc_lock, feed_lock) = match locks {
            Some(open) => &*open,
            none => &*none.insert((open_lock(".doc.lock")?, open_lock("changes.lock")?)),
        };
        let _doc = Locked::exclusive(doc_lock)?;
        let target = dir.join(name);
        let stat = |path: &Path| match std::fs::metadata(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_error("stat", path, e)),
            _ => Ok(()),
        };
        // A held lock file must be the one its path names (not one moved
        // away by hand).
        stat(&doc_lock.1)?;
        match std::fs::read(&target) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io_error("read", &target, e));
            }
            _ => {}
        }
        let temp = dir.join(format!(".{name}.tmp"));
        let mut file = File::create(&temp).map_err(|e| io_error("create", &temp, e))?;
        file.write_all(bytes)
            .map_err(|e| io_error("write", &temp, e))?;
        let full = *durability == Durability::Full;
        let syncer = if full {
            let syncer = syncer.get_or_insert_with(SyncThread::start);
            syncer.sync(file).map_err(|e| io_error("fsync", &temp, e))?;
            Some(&*syncer)
        } else {
            None
        };
        let feed_held = Locked::exclusive(feed_lock)?;
        stat(&feed_lock.1)?;
        let log = dir.join("changes.log");
        let (feed, seq) = match feed {
            Some(open) => open,
            none => {
                let opened = std::fs::OpenOptions::new()
                    .create(true)
                    .read(true)
                    .append(true)
                    .open(&log)
                    .map_err(|e| io_error("open", &log, e))?;
                none.insert((opened, 0))
            }
        };
        // The segment is still the one written last, no shorter, with the
        // last line in place, and no newer segment was started (by a
        // handle with another retention): the next seq is known.
        const LAST_LINE: u64 = 80;
        let end = std::fs::metadata(&log)
            .map_err(|e| io_error("stat", &log, e))?
            .len();
        if end >= LAST_LINE {
            let mut last_line = [0u8; LAST_LINE as usize];
            feed.read_exact_at(&mut last_line, end - LAST_LINE)
                .map_err(|e| io_error("read", &log, e))?;
        }
        stat(&dir.join("changes.next.log"))?;
        // The schema guard's revision, read under the feed lock.
        let schema = dir.join("_schema.yaml");
        match File::open(&schema) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io_error("read", &schema, e));
            }
            _ => {}
        }
        *seq += 1;
        let line = format!(
            "{{\"seq\":{seq},\"collection\":\"c\",\"name\":\"{name}\",\"revision\":{seq},\"kind\":\"updated\"}}\n"
        );
        let mut appended = feed
            .write_all(line.as_bytes())
            .map_err(|e| io_error("append to", &log, e));
        if full && appended.is_ok() {
            appended = feed.sync_data().map_err(|e| io_error("fsync", &log, e));
        }
        // Waited for even after a failed append, so that the next call
        // does not collect this one's result.
        if let Some(syncer) = syncer {
            syncer.wait().map_err(|e| io_error("fsync", &temp, e))?;
        }
        appended?;
        std::fs::rename(&temp, &target).map_err(|e| io_error("rename", &target, e))?;
        drop(feed_held);
        if full {
            File::open(&*dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io_error("fsync the folder", dir, e))?;
        }
        Ok(())
    }

    /// Writes `bytes` to the temp file of `name` and fsyncs it when full.
    fn stage(&self, name: &str, bytes: &[u8]) -> Result<PathBuf, CliError> {
        let temp = self.dir.join(format!(".{name}.tmp"));
        let mut file = File::create(&temp).map_err(|e| io_error("create", &temp, e))?;
        file.write_all(bytes)
            .map_err(|e| io_error("write", &temp, e))?;
        if self.durability == Durability::Full {
            // fdatasync, as revstore-yaml makes it: the baseline does no
            // more than the engine.
            file.sync_data().map_err(|e| io_error("fsync", &temp, e))?;
        }
        Ok(temp)
    }

    /// Renames `temp` over `name` and fsyncs the folder when full.
    fn publish(&self, temp: &Path, name: &str) -> Result<(), CliError> {
        let target = self.dir.join(name);
        std::fs::rename(temp, &target).map_err(|e| io_error("rename", &target, e))?;
        if self.durability == Durability::Full {
            File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io_error("fsync the folder", &self.dir, e))?;
        }
        Ok(())
    }

    /// Reads a file back (the raw cost of a cold read).
    ///
    /// # Errors
    /// The file system's errors, naming the file.
    pub fn read(&self, name: &str) -> Result<Vec<u8>, CliError> {
        let path = self.dir.join(name);
        std::fs::read(&path).map_err(|e| io_error("read", &path, e))
    }
}

/// A raw listing of a folder: the names of the `.yaml` files, sorted.
///
/// # Errors
/// The file system's errors, naming the folder.
pub fn list_folder(dir: &Path) -> Result<Vec<String>, CliError> {
    let mut names = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| io_error("list", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io_error("list", dir, e))?;
        if let Some(name) = entry.file_name().to_str() {
            if let Some(stem) = name.strip_suffix(".yaml") {
                if !stem.starts_with('.') {
                    names.push(stem.to_owned());
                }
            }
        }
    }
    names.sort_unstable();
    Ok(names)
}

/// Overwrites 4 KiB of one file and fsyncs it: the disk's fsync rate.
#[derive(Debug)]
pub struct FsyncProbe {
    file: File,
    path: PathBuf,
    block: Vec<u8>,
}

impl FsyncProbe {
    /// Creates the probe file in `dir`.
    ///
    /// # Errors
    /// The file cannot be created.
    pub fn new(dir: &Path) -> Result<FsyncProbe, CliError> {
        let path = dir.join("fsync-probe");
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| io_error("create", &path, e))?;
        Ok(FsyncProbe {
            file,
            path,
            block: vec![0x5a; 4096],
        })
    }

    /// One overwrite and fsync.
    ///
    /// # Errors
    /// The write or the fsync failed.
    pub fn once(&mut self, i: usize) -> Result<(), CliError> {
        self.block[0] = i as u8;
        self.file
            .write_all_at(&self.block, 0)
            .map_err(|e| io_error("write", &self.path, e))?;
        self.file
            .sync_all()
            .map_err(|e| io_error("fsync", &self.path, e))
    }
}

/// A mutex-guarded map of bodies: what the memory backend cannot beat.
#[derive(Debug, Default)]
pub struct RawMap {
    map: Mutex<BTreeMap<String, (u64, Body)>>,
}

impl RawMap {
    /// Stores a copy of `body` under `name`, one revision on.
    pub fn put(&self, name: &str, body: &Body) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let revision = map.get(name).map_or(0, |(r, _)| *r) + 1;
        map.insert(name.to_owned(), (revision, body.clone()));
    }

    /// A copy of the body under `name`.
    pub fn get(&self, name: &str) -> Option<Body> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(name).map(|(_, b)| b.clone())
    }

    /// The names starting with `prefix` and their revisions, sorted.
    pub fn list(&self, prefix: &str) -> Vec<(String, u64)> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, (r, _))| (k.clone(), *r))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_sqlite_updates_on_the_revision_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut raw = RawSqlite::open(&dir.path().join("raw.db"), Durability::Relaxed).unwrap();
        assert!(!raw.update("c", "n", "{}").unwrap());
        raw.put("c", "n", "{\"a\":1}").unwrap();
        assert!(raw.update("c", "n", "{\"a\":2}").unwrap());
        assert_eq!(raw.select("c", "n").unwrap().as_deref(), Some("{\"a\":2}"));
        assert_eq!(raw.list("c").unwrap(), vec![("n".to_owned(), 2)]);
    }

    #[test]
    fn raw_sqlite_polling_for_locks_waits_out_another_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raw.db");
        let mut raw = RawSqlite::open(&path, Durability::Relaxed).unwrap();
        raw.poll_for_locks().unwrap();
        raw.put("c", "n", "{}").unwrap();
        let holder = Connection::open(&path).unwrap();
        holder.execute_batch("BEGIN IMMEDIATE").unwrap();
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            holder.execute_batch("COMMIT").unwrap();
        });
        assert!(raw.update("c", "n", "{\"a\":1}").unwrap());
        release.join().unwrap();
        assert_eq!(raw.list("c").unwrap(), vec![("n".to_owned(), 2)]);
    }

    #[test]
    fn raw_file_replaces_and_lists() {
        let dir = tempfile::tempdir().unwrap();
        let raw = RawFile::new(&dir.path().join("c"), Durability::Full).unwrap();
        raw.write("a.yaml", b"one").unwrap();
        raw.write("a.yaml", b"two").unwrap();
        assert_eq!(raw.read("a.yaml").unwrap(), b"two");
        assert_eq!(list_folder(&dir.path().join("c")).unwrap(), vec!["a"]);
        let mut probe = FsyncProbe::new(dir.path()).unwrap();
        probe.once(1).unwrap();
    }

    #[test]
    fn the_raw_yaml_floor_replaces_the_file_and_appends_a_line_each_time() {
        for durability in [Durability::Full, Durability::Relaxed] {
            let dir = tempfile::tempdir().unwrap();
            let folder = dir.path().join("c");
            let mut raw = RawFile::new(&folder, durability).unwrap();
            raw.write_with_feed("a.yaml", b"one").unwrap();
            raw.write_with_feed("a.yaml", b"two").unwrap();
            assert_eq!(raw.read("a.yaml").unwrap(), b"two");
            let log = std::fs::read_to_string(folder.join("changes.log")).unwrap();
            assert_eq!(log.lines().count(), 2, "{log}");
            assert!(log.lines().last().unwrap().contains("\"seq\":2"), "{log}");
            // Both locks were released: another opener takes them at once.
            for lock in [".doc.lock", "changes.lock"] {
                let other = File::open(folder.join(lock)).unwrap();
                fs2::FileExt::try_lock_exclusive(&other).unwrap();
            }
        }
    }

    #[test]
    fn raw_map_counts_revisions() {
        let map = RawMap::default();
        map.put("a", &Body::new());
        map.put("a", &Body::new());
        map.put("b", &Body::new());
        assert_eq!(map.list("a"), vec![("a".to_owned(), 2)]);
        assert!(map.get("a").is_some());
    }
}
