//! A small pool of connections, each with its prepared statements, so that
//! threads sharing one backend run in parallel without a connection set-up
//! per operation.

use std::ops::{Deref, DerefMut};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use postgres::{Client, NoTls, Statement};
use revstore::Durability;

use crate::sql::{Query, Sql, QUERIES};

/// One connection and the statements prepared on it.
pub(crate) struct Conn {
    pub(crate) client: Client,
    /// The server process serving it, for settling a write whose
    /// connection dropped mid-flight: `(pid, backend start time as text)`,
    /// which names it even if the pid is later reused.
    pub(crate) server_process: (i32, String),
    prepared: [Option<Statement>; QUERIES],
}

impl Conn {
    /// A statement, prepared on this connection the first time it is used.
    pub(crate) fn statement(
        &mut self,
        sql: &Sql,
        query: Query,
    ) -> Result<Statement, postgres::Error> {
        if let Some(statement) = &self.prepared[query.index()] {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql.text(query))?;
        self.prepared[query.index()] = Some(statement.clone());
        Ok(statement)
    }
}

/// Why no connection could be had.
#[derive(Debug)]
pub(crate) enum GetError {
    /// Connecting failed.
    Connect(postgres::Error),
    /// Every connection of the pool stayed busy for the whole wait.
    Exhausted { size: usize, waited: Duration },
}

#[derive(Default)]
struct Slots {
    idle: Vec<Conn>,
    /// Connections open now, idle or lent out.
    open: usize,
}

/// Up to `size` connections to one database, all configured alike.
pub(crate) struct Pool {
    config: postgres::Config,
    /// Session settings every connection starts with.
    setup: String,
    size: usize,
    /// How long [`get`](Pool::get) waits for a busy pool.
    patience: Duration,
    slots: Mutex<Slots>,
    freed: Condvar,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("size", &self.size)
            .field("setup", &self.setup)
            .finish_non_exhaustive()
    }
}

impl Pool {
    /// A pool; opens nothing yet.
    pub(crate) fn new(
        config: postgres::Config,
        durability: Durability,
        size: usize,
        patience: Duration,
    ) -> Pool {
        // `synchronous_commit = off` acknowledges a commit before its WAL
        // record reaches the disk: a crash of the server (not of the
        // client) may lose the newest acknowledged commits, never half of
        // one. A transaction left idle by a stuck client would hold the
        // feed's counter row and stall every writer: the server ends it.
        let synchronous = match durability {
            Durability::Full => "on",
            Durability::Relaxed => "off",
        };
        Pool {
            config,
            setup: format!(
                "SET synchronous_commit = {synchronous}; \
                 SET idle_in_transaction_session_timeout = '60s'"
            ),
            size: size.max(1),
            patience,
            slots: Mutex::new(Slots::default()),
            freed: Condvar::new(),
        }
    }

    /// The client configuration (for connections outside the pool).
    pub(crate) fn config(&self) -> &postgres::Config {
        &self.config
    }

    fn slots(&self) -> MutexGuard<'_, Slots> {
        // The slots are only counted and pushed to and popped from, so a
        // panic while they were locked cannot have left them inconsistent.
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An idle connection, or a new one when none is idle and the pool has
    /// room; otherwise waits for one to be returned. It returns to the pool
    /// when dropped, unless it broke.
    pub(crate) fn get(&self) -> Result<Pooled<'_>, GetError> {
        let deadline = Instant::now() + self.patience;
        let mut slots = self.slots();
        loop {
            if let Some(conn) = slots.idle.pop() {
                return Ok(Pooled {
                    pool: self,
                    conn: Some(conn),
                    reused: true,
                    broken: false,
                });
            }
            if slots.open < self.size {
                slots.open += 1;
                drop(slots);
                return match self.connect() {
                    Ok(conn) => Ok(Pooled {
                        pool: self,
                        conn: Some(conn),
                        reused: false,
                        broken: false,
                    }),
                    Err(e) => {
                        self.release_slot();
                        Err(GetError::Connect(e))
                    }
                };
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(GetError::Exhausted {
                    size: self.size,
                    waited: self.patience,
                });
            }
            slots = self
                .freed
                .wait_timeout(slots, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Opens and configures one connection, outside the pool's count.
    pub(crate) fn connect(&self) -> Result<Conn, postgres::Error> {
        let mut client = self.config.connect(NoTls)?;
        client.batch_execute(&self.setup)?;
        let row = client.query_one(
            "SELECT pid, backend_start::text FROM pg_stat_activity WHERE pid = pg_backend_pid()",
            &[],
        )?;
        Ok(Conn {
            server_process: (row.try_get(0)?, row.try_get(1)?),
            client,
            prepared: std::array::from_fn(|_| None),
        })
    }

    /// Closes every idle connection: after one of them turned out dead
    /// (a server restart), the others most likely are too.
    pub(crate) fn drain_idle(&self) {
        let drained = {
            let mut slots = self.slots();
            let drained = std::mem::take(&mut slots.idle);
            slots.open -= drained.len();
            drained
        };
        self.freed.notify_all();
        drop(drained);
    }

    fn release_slot(&self) {
        self.slots().open -= 1;
        self.freed.notify_one();
    }
}

/// A connection borrowed from a [`Pool`].
pub(crate) struct Pooled<'a> {
    pool: &'a Pool,
    conn: Option<Conn>,
    /// Whether it sat idle in the pool before (and may have died there).
    pub(crate) reused: bool,
    broken: bool,
}

impl Pooled<'_> {
    /// Closes the connection instead of returning it to the pool.
    pub(crate) fn discard(&mut self) {
        self.broken = true;
    }
}

impl Deref for Pooled<'_> {
    type Target = Conn;

    fn deref(&self) -> &Conn {
        // Only `drop` takes the connection out.
        self.conn.as_ref().unwrap_or_else(|| unreachable!())
    }
}

impl DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Conn {
        self.conn.as_mut().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        if self.broken || conn.client.is_closed() {
            drop(conn);
            self.pool.release_slot();
            return;
        }
        self.pool.slots().idle.push(conn);
        self.pool.freed.notify_one();
    }
}
