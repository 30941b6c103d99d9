//! A small pool of connections, so that threads sharing one backend run
//! their reads in parallel (WAL lets readers proceed beside one writer).

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use revstore::Durability;
use rusqlite::hooks::Wal;
use rusqlite::{Connection, OpenFlags};

/// How long one statement waits for another connection's lock before SQLite
/// reports it busy (and [`retry_busy`](crate::failure::retry_busy), which
/// keeps the operation's overall deadline, takes over).
const BUSY_SLICE: Duration = Duration::from_millis(100);

/// Prepared statements kept per connection: every statement this crate
/// runs, with room to spare (rusqlite's default of 16 is just short).
const STATEMENT_CACHE: usize = 32;

/// Most page cache per connection, in KiB (SQLite's default is 2000): at
/// 100 000 documents, 2 MB no longer held the key index, and a patch at a
/// random key read 3.1 pages from the file instead of 2.3.
const PAGE_CACHE_KIB: i64 = 8 * 1024;

/// WAL frames past which a connection checkpoints, and again every as many
/// frames after an attempt (SQLite's default threshold).
const CHECKPOINT_EVERY: i32 = 1000;

/// Most idle connections kept; more are opened under load and closed after.
const MAX_IDLE: usize = 8;

/// Connections to one database file, all configured alike.
#[derive(Debug)]
pub(crate) struct Pool {
    path: PathBuf,
    durability: Durability,
    /// How long one statement waits for a lock before reporting busy,
    /// within the operation's overall lock timeout.
    busy_slice: Duration,
    idle: Mutex<Vec<Connection>>,
}

impl Pool {
    /// A pool for `path`; opens nothing yet.
    pub(crate) fn new(path: PathBuf, durability: Durability, lock_timeout: Duration) -> Pool {
        Pool {
            path,
            durability,
            busy_slice: BUSY_SLICE.min(lock_timeout),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// The database file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn idle(&self) -> MutexGuard<'_, Vec<Connection>> {
        // The vector is only pushed to and popped from, so a panic while it
        // was locked cannot have left it inconsistent.
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An idle connection, or a new one when none is idle. It returns to the
    /// pool when dropped.
    pub(crate) fn get(&self) -> rusqlite::Result<Pooled<'_>> {
        let idle = self.idle().pop();
        let conn = match idle {
            Some(conn) => conn,
            None => self.connect()?,
        };
        Ok(Pooled {
            pool: self,
            conn: Some(conn),
        })
    }

    /// Opens and configures one connection. Every setting here is per
    /// connection; the WAL journal mode, which persists in the file, is set
    /// once by [`schema::prepare`](crate::schema::prepare).
    fn connect(&self) -> rusqlite::Result<Connection> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(&self.path, flags)?;
        conn.busy_handler(Some(wait_briefly(self.busy_slice)))?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        conn.wal_hook(Some(checkpoint_now_and_then()))?;
        // Room for the key index and the upper levels of the tables of a
        // 100 000-document store; pages are only allocated as they are read.
        conn.pragma_update(None, "cache_size", -PAGE_CACHE_KIB)?;
        // In WAL mode, NORMAL syncs only at checkpoints: a commit survives a
        // process crash but may be lost on power loss; FULL syncs the WAL on
        // every commit.
        let synchronous = match self.durability {
            Durability::Full => "FULL",
            Durability::Relaxed => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", synchronous)?;
        if self.durability == Durability::Full {
            // On macOS a plain fsync does not reach the platter; elsewhere
            // this is a no-op.
            conn.pragma_update(None, "fullfsync", true)?;
        }
        Ok(conn)
    }
}

/// A busy handler that polls for the lock every 50 to 250 µs, for up to
/// `slice` in a row.
///
/// SQLite's own (`busy_timeout`) sleeps 1, 2, 5, 10, … ms between tries:
/// a commit holds the write lock for well under a millisecond, so its
/// waiters slept on long after the lock was free, and writers of
/// different processes formed a convoy. (Threads of one process do not
/// poll at all: they queue for a group commit, see [`crate::group`].)
fn wait_briefly(slice: Duration) -> impl FnMut(i32) -> bool + Send + 'static {
    let mut since = Instant::now();
    move |tries| {
        if tries == 0 {
            since = Instant::now();
        } else if since.elapsed() >= slice {
            return false;
        }
        std::thread::sleep(busy_pause(tries));
        true
    }
}

/// The pause before try `tries + 1` of a busy statement: short at first,
/// when the holder is most likely a commit about to finish, longer when it
/// is a long transaction, to spend less time polling it.
fn busy_pause(tries: i32) -> Duration {
    match tries {
        0..=19 => Duration::from_micros(50),
        20..=199 => Duration::from_micros(100),
        _ => Duration::from_micros(250),
    }
}

/// A WAL hook that checkpoints (passively, as SQLite's own does) once the
/// WAL holds [`CHECKPOINT_EVERY`] frames, and then only every as many
/// frames more until the WAL starts over.
///
/// SQLite's own hook checkpoints after every commit while the WAL is past
/// its threshold. A checkpoint can only backfill frames no reader still
/// needs, and the WAL starts over only once a checkpoint completed with no
/// reader in it; with readers in other processes or threads, it stayed past
/// the threshold, and every commit checkpointed the few frames it could,
/// with an fsync of the WAL and one of the database file each: at relaxed
/// durability, 0.56 fsyncs per commit with 4 writing processes (0.007
/// with one).
fn checkpoint_now_and_then() -> impl FnMut(&mut Wal, i32) -> rusqlite::Result<()> + Send + 'static {
    let mut pacer = CheckpointPacer::default();
    move |wal, frames| {
        if pacer.due(frames) {
            // As with SQLite's own hook, a checkpoint that cannot run now
            // (busy) is only tried again later; the commit stands either way.
            let _ = wal.checkpoint();
        }
        Ok(())
    }
}

/// When [`checkpoint_now_and_then`] checkpoints.
#[derive(Debug)]
struct CheckpointPacer {
    /// The WAL size (frames) of the next checkpoint.
    next: i32,
    /// The WAL size seen last.
    last: i32,
}

impl Default for CheckpointPacer {
    fn default() -> Self {
        CheckpointPacer {
            next: CHECKPOINT_EVERY,
            last: 0,
        }
    }
}

impl CheckpointPacer {
    /// Whether to checkpoint now that the WAL holds `frames` frames.
    fn due(&mut self, frames: i32) -> bool {
        if frames < self.last {
            // The WAL started over.
            self.next = CHECKPOINT_EVERY;
        }
        self.last = frames;
        if frames < self.next {
            return false;
        }
        self.next = frames.saturating_add(CHECKPOINT_EVERY);
        true
    }
}

/// A connection borrowed from a [`Pool`].
pub(crate) struct Pooled<'a> {
    pool: &'a Pool,
    conn: Option<Connection>,
}

impl Deref for Pooled<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        // Only `drop` takes the connection out.
        self.conn.as_ref().unwrap_or_else(|| unreachable!())
    }
}

impl DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        self.conn.as_mut().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        // A connection still inside a transaction (its rollback failed) would
        // hold locks and leak state into the next operation: close it.
        if !conn.is_autocommit() {
            return;
        }
        let mut idle = self.pool.idle();
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synchronous(pool: &Pool) -> i64 {
        let conn = pool.get().unwrap();
        conn.query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn durability_sets_synchronous_on_every_connection() {
        let dir = tempfile::tempdir().unwrap();
        let full = Pool::new(
            dir.path().join("a.db"),
            Durability::Full,
            Duration::from_secs(30),
        );
        let relaxed = Pool::new(
            dir.path().join("a.db"),
            Durability::Relaxed,
            Duration::from_secs(30),
        );
        // 2 = FULL, 1 = NORMAL; two connections at once, so the second is new.
        let (first, second) = (full.get().unwrap(), full.get().unwrap());
        for conn in [&first, &second] {
            let level: i64 = conn
                .query_row("PRAGMA synchronous", [], |r| r.get(0))
                .unwrap();
            assert_eq!(level, 2);
            let cache: i64 = conn
                .query_row("PRAGMA cache_size", [], |r| r.get(0))
                .unwrap();
            assert_eq!(cache, -PAGE_CACHE_KIB);
        }
        drop((first, second));
        assert_eq!(full.idle().len(), 2);
        assert_eq!(synchronous(&full), 2);
        assert_eq!(synchronous(&relaxed), 1);
    }

    #[test]
    fn checkpoints_come_once_per_threshold_of_frames_until_the_wal_starts_over() {
        let mut pacer = CheckpointPacer::default();
        let due: Vec<i32> = (1..=3500).filter(|&frames| pacer.due(frames)).collect();
        assert_eq!(due, [1000, 2000, 3000]);
        // Commits of many frames at once.
        let mut pacer = CheckpointPacer::default();
        assert!(!pacer.due(999));
        assert!(pacer.due(1500));
        assert!(!pacer.due(2499));
        assert!(pacer.due(2500));
        // The WAL started over: the threshold is back at its first value.
        assert!(!pacer.due(10));
        assert!(!pacer.due(999));
        assert!(pacer.due(1000));
    }

    #[test]
    fn the_idle_pool_is_capped_and_skips_connections_left_in_a_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let pool = Pool::new(
            dir.path().join("a.db"),
            Durability::Relaxed,
            Duration::from_secs(30),
        );
        let many: Vec<_> = (0..MAX_IDLE + 3).map(|_| pool.get().unwrap()).collect();
        drop(many);
        assert_eq!(pool.idle().len(), MAX_IDLE);

        let conn = pool.get().unwrap();
        conn.execute_batch("BEGIN").unwrap();
        drop(conn);
        assert_eq!(pool.idle().len(), MAX_IDLE - 1);
    }
}
