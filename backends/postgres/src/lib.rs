//! The PostgreSQL backend of revstore: the same promise as the embedded
//! backends — concurrent writers never lose an update — on a server that
//! any number of machines share.
//!
//! # Guarantees
//! - **Atomic, conditional commits.** Under `READ COMMITTED`, a write is
//!   `INSERT … ON CONFLICT DO NOTHING` for a key that must never have been
//!   written, otherwise `UPDATE … WHERE collection=$ AND name=$ AND
//!   revision=$expected`, with the change-feed record chained to it by
//!   data-modifying CTEs in the same statement. PostgreSQL re-checks the
//!   `WHERE` on the newest row version after waiting for a concurrent
//!   writer's row lock, so zero rows changed means another writer won, and
//!   nothing is written. Deletes leave tombstones (a `NULL` body keeping
//!   the revision). A write without a guard is that one statement,
//!   autocommitted: one round trip.
//! - **Schema-guarded writes.** The engine ties every document write to
//!   the revision of its collection's schema (0 when there is none). Such
//!   a write runs in a transaction: the statement that opens it takes a
//!   shared transaction-level advisory lock on the schema key, and the
//!   write's statement — whose snapshot is taken after the lock was
//!   granted — writes only if the schema key is still at that revision; a
//!   write *to* a reserved key (`_schema/…`) takes the same lock
//!   exclusively. So no document write validated against schema revision
//!   N commits after revision N+1 did. Three round trips: `BEGIN` with the
//!   lock, the write, `COMMIT`.
//! - **Change feed in commit order.** The same statement, after the
//!   document row, takes the next seq from a one-row counter (`UPDATE
//!   feed_state SET last_seq = last_seq + 1`), records the change and
//!   queues its `NOTIFY`. The counter row stays locked until the commit is
//!   visible, so seqs are handed out in commit order, without gaps, and a
//!   cursor never misses a change (a plain `bigserial` would let a lower
//!   seq commit after a higher one was read). The cost is one short
//!   critical section per commit and namespace: the rest of the statement,
//!   the commit and, at [`Durability::Full`], its WAL flush. Writers of
//!   different keys therefore commit one at a time per namespace (about
//!   one commit per WAL flush; see the README's benchmark table), while
//!   their reads and row locks proceed in parallel. Retention works as in
//!   revstore-sqlite: a write prunes the feed to
//!   [`PostgresOptions::retain_changes`] once every 256 seqs (in a
//!   transaction of its own that moves the horizon with the rows), and a
//!   cursor older than the horizon gets [`Error::Compacted`], never a gap.
//! - **Watchers wake at once.** [`wait_for_change`](revstore::StorageBackend::wait_for_change)
//!   is served by a `LISTEN` connection on a background thread (started by
//!   the first watcher of a handle, reconnecting after a server restart,
//!   ending within a quarter second of the handle being dropped). The
//!   feed stays the source of truth: a lost notification delays a watcher
//!   until its next poll, never loses a change.
//! - **Outages are clear and retryable.** A refused or dropped connection,
//!   a server restarting or shutting down is [`Error::Unavailable`]
//!   ([`Error::is_retryable`]): the backend made sure nothing was written.
//!   A pooled connection found dead is replaced once, silently. Should the
//!   connection drop while the statement that commits (the write, or
//!   `COMMIT`) is in flight, the backend reconnects (up to the connect
//!   timeout), ends the server process that ran it if it still runs and
//!   waits for it to exit (so its transaction is over), and then reads the
//!   key's revision and the change row of the revision the write would
//!   have made, which carries a random token of the write's own: it is
//!   reported committed, or [`Error::Unavailable`]. Only when the server
//!   cannot be reached to settle it, or that change row was already
//!   pruned (retention smaller than the commits made meanwhile), is the
//!   answer [`Error::Backend`], saying that the outcome is unknown.
//!   Deadlocks and serialization failures (`40P01`, `40001`) are rolled
//!   back by the server and retried here; they never reach the caller.
//! - **Durability.** [`Durability::Full`] (the default) runs every session
//!   with `synchronous_commit = on`: an acknowledged write survives a crash
//!   of the server or the machine (as far as the server's own `fsync`
//!   setting allows). [`Durability::Relaxed`] sets `synchronous_commit =
//!   off`: an acknowledged write survives a crash of the client, but a
//!   crash of the server may lose the newest acknowledged writes (about the
//!   last 0.6 s at the default `wal_writer_delay`), whole transactions at a
//!   time, never half of one.
//! - **Bodies keep their key order**: they are stored as JSON text, not
//!   `jsonb`. Names compare and sort byte by byte (`COLLATE "C"`).
//! - **The tables are created on open**, idempotently, in one transaction
//!   under an advisory lock (safe when many processes open a fresh database
//!   at once), in the namespace's PostgreSQL schema (default `revstore`),
//!   with a format version: a newer format, or a schema holding some other
//!   application's tables, is refused with [`Error::InvalidConfig`].
//!
//! # URLs
//! `postgres://user:password@host:port/database?…` (or `postgresql://`):
//! libpq's URL, so its parameters (`connect_timeout`, `application_name`,
//! `sslmode=disable`, `host=/run/postgresql` for a unix socket, …) work
//! as usual, plus revstore's own: `durability=full|relaxed`, `retain=N`,
//! `namespace=NAME` (the PostgreSQL schema holding the tables, so that
//! several stores share one database) and `pool_size=N` (connections per
//! handle). TLS is not supported yet.
//!
//! ```no_run
//! use revstore::Store;
//! use revstore_postgres::PostgresBackend;
//! use serde_json::json;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let backend = PostgresBackend::open("postgres://app@db.internal/app?namespace=models")?;
//! let store = Store::open(backend);
//! let doc = store.create("models", "orders", json!({"description": "All orders"}))?;
//! assert_eq!(doc.revision, 1);
//! match store.get("models", "orders") {
//!     Err(e) if e.is_retryable() => { /* the server is restarting: try again later */ }
//!     other => println!("{:?}", other?),
//! }
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod failure;
mod feed;
mod listen;
mod pool;
mod row;
mod schema;
mod sql;
#[cfg(feature = "testkit")]
pub mod testkit;
mod url;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use postgres::Statement;
use revstore::{
    Change, Commit, CommitOutcome, Current, Durability, Entry, Error, Key, Record, Result,
    RetryPolicy, DEFAULT_RETAINED_CHANGES,
};

use crate::failure::{backend, classify, connect_is_transient, unavailable, Class, Failure};
use crate::listen::{Listener, Target};
use crate::pool::{Conn, GetError, Pool, Pooled};
use crate::sql::{Query, Sql};

/// Settings of a [`PostgresBackend`]. Parameters in the URL override them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresOptions {
    /// What an acknowledged write survives (default [`Durability::Full`]);
    /// see the [crate documentation](crate). URL: `durability=`.
    pub durability: Durability,
    /// How many of the newest changes the change feed keeps (default
    /// [`DEFAULT_RETAINED_CHANGES`]; 0 counts as 1). Writes through this
    /// handle prune older ones; the feed may hold up to 255 more between
    /// prunings, never fewer. URL: `retain=`.
    pub retain_changes: u64,
    /// How long to wait for the server when connecting (default 10 s), and
    /// for settling a commit whose connection dropped. A `connect_timeout`
    /// in the URL (libpq's, in seconds) overrides it.
    pub connect_timeout: Duration,
    /// Most connections a handle keeps open at once (default 8); threads
    /// sharing a handle beyond that wait for a free one. URL: `pool_size=`.
    pub pool_size: usize,
    /// The PostgreSQL schema holding the store's tables (default
    /// `revstore`): a lower-case identifier, `[a-z_][a-z0-9_]*`, at most 48
    /// bytes. Stores in different namespaces of one database are
    /// independent. URL: `namespace=`.
    pub namespace: String,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            durability: Durability::default(),
            retain_changes: DEFAULT_RETAINED_CHANGES,
            connect_timeout: Duration::from_secs(10),
            pool_size: 8,
            namespace: "revstore".to_owned(),
        }
    }
}

/// How long a thread waits for a connection when all of the handle's
/// [`pool_size`](PostgresOptions::pool_size) are busy.
const POOL_PATIENCE: Duration = Duration::from_secs(30);

/// How often a transaction the server rolled back to break a deadlock or
/// a serialization conflict is run again before giving up.
const RERUNS: RetryPolicy = RetryPolicy {
    max_attempts: 50,
    initial_backoff: Duration::from_millis(1),
    max_backoff: Duration::from_millis(100),
};

/// A store in a PostgreSQL database.
///
/// `Send + Sync`: share one instance between threads (it keeps a small
/// pool of connections), or open several, in this process or on other
/// machines. See the [crate documentation](crate) for its guarantees.
pub struct PostgresBackend {
    pool: Pool,
    sql: Sql,
    namespace: String,
    /// `postgres://host:port/database (namespace …)`, for messages.
    server: String,
    retain_changes: u64,
    connect_timeout: Duration,
    /// Started by the first watcher; `None` if no thread could be started
    /// (waiting then just sleeps).
    listener: OnceLock<Option<Listener>>,
    /// Records this handle read or wrote, by the exact body text stored: a
    /// read of an unchanged row shares the body instead of parsing it, and
    /// a write starts from the record remembered instead of a round trip
    /// to read it (see `StorageBackend::read_cached`).
    decoded: revstore::DecodeCache,
}

impl std::fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresBackend")
            .field("server", &self.server)
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

/// Why one attempt at a commit stopped.
enum CommitFailure {
    /// Before the statement that commits was sent: nothing committed.
    Before(postgres::Error),
    /// The statement that commits (the autocommitted write, or `COMMIT`)
    /// failed: if the connection dropped, the outcome must be settled.
    InFlight(postgres::Error),
    /// A final answer (corrupt data).
    Final(Error),
}

/// Why one attempt at settling a write failed.
struct Trouble(String);

impl From<postgres::Error> for Trouble {
    fn from(e: postgres::Error) -> Self {
        Trouble(e.to_string())
    }
}

/// What settling a write whose connection dropped found.
enum Settled {
    /// It committed.
    Committed,
    /// It did not: nothing was written.
    NotCommitted,
    /// The feed no longer tells (its change would have been pruned).
    Unknown,
}

impl From<postgres::Error> for CommitFailure {
    fn from(e: postgres::Error) -> Self {
        CommitFailure::Before(e)
    }
}

impl From<Error> for CommitFailure {
    fn from(e: Error) -> Self {
        CommitFailure::Final(e)
    }
}

/// What an operation has spent on retries so far.
#[derive(Default)]
struct Spent {
    /// Transactions the server rolled back and that were run again.
    reruns: u32,
    /// Whether a dead pooled connection was already replaced.
    replaced_dead: bool,
}

/// What to do after an attempt failed with a client or server error.
enum Next {
    /// Run the operation again (on a fresh connection, or after the server
    /// rolled the transaction back).
    Retry,
    /// Give up with this error.
    Fail(Error),
}

impl PostgresBackend {
    /// Remembers what `commit` wrote, stored as `text` (`None`: a delete).
    fn remember_committed(&self, commit: &Commit<'_>, text: Option<&str>) {
        match (commit.body, text) {
            (Some(body), Some(text)) => self.decoded.insert(
                commit.key,
                text.as_bytes(),
                Record {
                    revision: commit.new_revision(),
                    body: Some(std::sync::Arc::clone(body)),
                },
            ),
            _ => self.decoded.forget(commit.key),
        }
    }

    /// Opens the store at `url` (see the [crate documentation](crate) for
    /// the URL's form), creating its tables when missing.
    ///
    /// # Errors
    /// As [`open_with`](PostgresBackend::open_with).
    pub fn open(url: &str) -> Result<PostgresBackend> {
        PostgresBackend::open_with(url, PostgresOptions::default())
    }

    /// Opens the store at `url` with `options` (parameters in the URL
    /// override them), creating the namespace and its tables when missing
    /// (idempotent, and safe when many processes do it at once).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a URL or option that is not understood
    /// (the password never appears in the message), or a namespace written
    /// by a newer revstore or holding another application's tables;
    /// [`Error::Unavailable`] when the server cannot be reached;
    /// [`Error::Backend`] when it refuses the connection (authentication,
    /// unknown database) or the tables cannot be created.
    pub fn open_with(url: &str, options: PostgresOptions) -> Result<PostgresBackend> {
        PostgresBackend::open_inner(url, options, false)
    }

    /// [`open_with`](PostgresBackend::open_with); `broken` makes every
    /// update ignore the expected revision (for the test that proves the
    /// suites catch a backend that loses updates).
    pub(crate) fn open_inner(
        url: &str,
        options: PostgresOptions,
        broken: bool,
    ) -> Result<PostgresBackend> {
        let parsed = url::parse(url, options)?;
        let options = parsed.options;
        let connect_timeout = url::connect_timeout(&parsed.config);
        let server = format!(
            "{} (namespace {})",
            url::describe(&parsed.config),
            options.namespace
        );
        let backend = PostgresBackend {
            pool: Pool::new(
                parsed.config,
                options.durability,
                options.pool_size,
                POOL_PATIENCE,
            ),
            sql: Sql::new(&options.namespace, broken),
            namespace: options.namespace,
            server,
            retain_changes: options.retain_changes,
            connect_timeout,
            listener: OnceLock::new(),
            decoded: revstore::DecodeCache::default(),
        };
        let namespace = backend.namespace.clone();
        backend.run(
            || format!("opening {}", backend.server),
            |conn| schema::prepare(&mut conn.client, &namespace),
        )?;
        Ok(backend)
    }

    /// The PostgreSQL schema holding this store's tables.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Where the store is, for messages: `postgres://host:port/database
    /// (namespace NAME)`, without user or password.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// A connection from the pool, or the error that explains why none
    /// could be had.
    fn connection(&self, context: &dyn Fn() -> String) -> Result<Pooled<'_>> {
        match self.pool.get() {
            Ok(conn) => Ok(conn),
            Err(GetError::Connect(e)) if connect_is_transient(&e) => Err(unavailable(context(), e)),
            Err(GetError::Connect(e)) => Err(backend(context(), e)),
            Err(GetError::Exhausted { size, waited }) => Err(backend(
                context(),
                format!("all {size} connections of the handle's pool stayed busy for {waited:?}"),
            )),
        }
    }

    /// Decides what follows a client or server error on `conn`. A rerun
    /// budget spent on a commit of `key` is [`Error::RetriesExhausted`].
    fn after_error(
        &self,
        conn: &mut Pooled<'_>,
        e: postgres::Error,
        spent: &mut Spent,
        context: &dyn Fn() -> String,
        key: Option<&Key>,
    ) -> Next {
        match classify(&e, conn.client.is_closed()) {
            Class::Connection => {
                conn.discard();
                // An idle connection may have died with a server restart
                // since it was last used; so may its idle siblings. One
                // fresh connection settles whether the server is back.
                if conn.reused && !spent.replaced_dead {
                    spent.replaced_dead = true;
                    self.pool.drain_idle();
                    return Next::Retry;
                }
                Next::Fail(unavailable(context(), e))
            }
            Class::Rerun if spent.reruns + 1 < RERUNS.max_attempts => {
                spent.reruns += 1;
                std::thread::sleep(RERUNS.backoff(spent.reruns + 1));
                Next::Retry
            }
            Class::Rerun => Next::Fail(match key {
                Some(key) => Error::RetriesExhausted {
                    key: key.clone(),
                    attempts: spent.reruns + 1,
                },
                None => backend(context(), e),
            }),
            Class::Other => Next::Fail(backend(context(), e)),
        }
    }

    /// Runs `attempt` on a pooled connection: a dead pooled connection is
    /// replaced once, a transaction the server rolled back is run again,
    /// and any other failure becomes the matching error with `context`.
    fn run<T>(
        &self,
        context: impl Fn() -> String,
        mut attempt: impl FnMut(&mut Conn) -> Result<T, Failure>,
    ) -> Result<T> {
        let mut spent = Spent::default();
        loop {
            let mut conn = self.connection(&context)?;
            match attempt(&mut conn) {
                Ok(value) => return Ok(value),
                Err(Failure::Final(e)) => return Err(e),
                Err(Failure::Pg(e)) => {
                    match self.after_error(&mut conn, e, &mut spent, &context, None) {
                        Next::Retry => continue,
                        Next::Fail(e) => return Err(e),
                    }
                }
            }
        }
    }

    /// One attempt at a commit on `conn`: a plain write is one
    /// autocommitted statement (one round trip); a guarded write, or a
    /// write to a reserved key, takes its advisory locks and checks the
    /// guard in a transaction first. Returns the outcome and, when
    /// committed, the change's seq.
    fn try_commit(
        &self,
        conn: &mut Conn,
        commit: &Commit<'_>,
        body: Option<&str>,
        token: &[u8; 16],
    ) -> Result<(CommitOutcome, Option<u64>), CommitFailure> {
        let key = commit.key;
        let expected = sql_revision(Some(commit.expected), key)?;
        let new_revision = sql_revision(commit.expected.checked_add(1), key)?;
        // Prepared before a transaction borrows the connection.
        let statement = |conn: &mut Conn, query| conn.statement(&self.sql, query);
        let select_current = statement(conn, Query::SelectCurrent)?;
        let write = if commit.expected == 0 {
            statement(conn, Query::WriteFirst)?
        } else {
            statement(conn, Query::WriteIfRevision)?
        };
        let kind = commit.kind.as_str();
        let token = &token[..];
        let channel = &self.sql.channel;
        let (collection, name) = (key.collection(), key.name());
        let first: [&(dyn postgres::types::ToSql + Sync); 6] =
            [&collection, &name, &body, &kind, &token, channel];
        let later: [&(dyn postgres::types::ToSql + Sync); 8] = [
            &body,
            &new_revision,
            &collection,
            &name,
            &expected,
            &kind,
            &token,
            channel,
        ];
        let params: &[&(dyn postgres::types::ToSql + Sync)] =
            if commit.expected == 0 { &first } else { &later };

        let Some(locks) = self.locks_for(commit) else {
            // A client that knows its connection is closed sends nothing.
            let was_closed = conn.client.is_closed();
            let written = conn.client.query_opt(&write, params).map_err(|e| {
                if was_closed {
                    CommitFailure::Before(e)
                } else {
                    CommitFailure::InFlight(e)
                }
            })?;
            return match written {
                Some(row) => Ok((CommitOutcome::Committed, Some(seq_of(&row)))),
                None => {
                    let actual = self.current_in(&mut conn.client, &select_current, key)?;
                    Ok((CommitOutcome::Conflict { actual }, None))
                }
            };
        };

        // A guarded write, or a write to a reserved key: its advisory
        // locks are taken by the statement that opens the transaction (one
        // round trip), so that the write's own statement, whose snapshot
        // is taken after they were granted, sees the guard's current
        // revision; then the write; then COMMIT. Whatever fails in between
        // closes the connection, which rolls the transaction back.
        let write = match (commit.guard.is_some(), commit.expected == 0) {
            (false, _) => write,
            (true, true) => statement(conn, Query::WriteFirstGuarded)?,
            (true, false) => statement(conn, Query::WriteIfRevisionGuarded)?,
        };
        let guard_revision = commit
            .guard
            .map(|g| sql_revision(Some(g.revision), key))
            .transpose()?;
        let (guard_collection, guard_name) = commit
            .guard
            .map_or(("", ""), |g| (g.key.collection(), g.key.name()));
        let mut guarded: Vec<&(dyn postgres::types::ToSql + Sync)> = params.to_vec();
        if let Some(revision) = &guard_revision {
            guarded.extend([
                &guard_collection as &(dyn postgres::types::ToSql + Sync),
                &guard_name,
                revision,
            ]);
        }
        conn.client.batch_execute(&format!("BEGIN; {locks}"))?;
        let Some(row) = conn.client.query_opt(&write, &guarded)? else {
            let outcome = match commit.guard {
                Some(guard) => {
                    let actual = self.current_in(&mut conn.client, &select_current, guard.key)?;
                    if actual.last_revision() == guard.revision {
                        None
                    } else {
                        Some(CommitOutcome::GuardChanged { actual })
                    }
                }
                None => None,
            };
            let outcome = match outcome {
                Some(outcome) => outcome,
                None => CommitOutcome::Conflict {
                    actual: self.current_in(&mut conn.client, &select_current, key)?,
                },
            };
            conn.client.batch_execute("ROLLBACK")?;
            return Ok((outcome, None));
        };
        let seq = seq_of(&row);
        conn.client
            .batch_execute("COMMIT")
            .map_err(CommitFailure::InFlight)?;
        Ok((CommitOutcome::Committed, Some(seq)))
    }

    /// The advisory locks a commit takes before writing, as SQL (`None`
    /// for a plain write): exclusive on a reserved key it writes, shared on
    /// its guard key. The keys are numbers this backend computes, so they
    /// are written into the statement as literals.
    fn locks_for(&self, commit: &Commit<'_>) -> Option<String> {
        let mut locks = String::new();
        if commit.key.is_reserved() {
            locks.push_str(&format!(
                "SELECT pg_advisory_xact_lock({});",
                self.lock_key(commit.key)
            ));
        }
        if let Some(guard) = commit.guard {
            locks.push_str(&format!(
                "SELECT pg_advisory_xact_lock_shared({});",
                self.lock_key(guard.key)
            ));
        }
        (!locks.is_empty()).then_some(locks)
    }

    /// Prunes the feed when the commit that took `seq` is at a pruning
    /// point, in a transaction of its own: the horizon and the rows go
    /// together. A failure is left for the next pruning point, which
    /// prunes everything older anyway.
    fn prune(&self, conn: &mut Conn, seq: u64) {
        let Some(horizon) = feed::prune_horizon(seq, self.retain_changes) else {
            return;
        };
        let horizon = i64::try_from(horizon).unwrap_or(i64::MAX);
        let _ = (|| -> Result<(), postgres::Error> {
            let prune = conn.statement(&self.sql, Query::PruneChanges)?;
            let raise = conn.statement(&self.sql, Query::RaiseHorizon)?;
            let mut tx = conn.client.transaction()?;
            tx.execute(&raise, &[&horizon])?;
            tx.execute(&prune, &[&horizon])?;
            tx.commit()
        })();
    }

    /// The state of `key` as seen by a new statement in `tx`.
    fn current_in(
        &self,
        tx: &mut impl postgres::GenericClient,
        select_current: &Statement,
        key: &Key,
    ) -> Result<Current, CommitFailure> {
        let found = tx.query_opt(select_current, &[&key.collection(), &key.name()])?;
        match found {
            None => Ok(Current::Missing),
            Some(row) => Ok(row::current(&row, &self.namespace, key)?),
        }
    }

    /// The advisory-lock key of a key: a stable 64-bit hash of the
    /// namespace and the key (FNV-1a, the same in every process). Two keys
    /// sharing a hash only wait for each other, which is never wrong.
    fn lock_key(&self, key: &Key) -> i64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for part in [self.namespace.as_str(), key.collection(), key.name()] {
            for byte in part.bytes().chain(std::iter::once(0)) {
                hash ^= u64::from(byte);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
        }
        i64::from_ne_bytes(hash.to_ne_bytes())
    }

    /// Settles a write whose connection dropped while the statement that
    /// commits it was in flight: reconnects (until the connect timeout),
    /// makes sure the server process that ran it is gone (so its
    /// transaction has ended), and looks for the write's token.
    fn settle(
        &self,
        commit: &Commit<'_>,
        token: &[u8; 16],
        process: &(i32, String),
    ) -> Result<Settled, String> {
        let deadline = Instant::now() + self.connect_timeout.max(Duration::from_secs(1));
        loop {
            let last_error = match self.look_up(commit, token, process, deadline) {
                Ok(settled) => return Ok(settled),
                Err(Trouble(why)) => why,
            };
            if Instant::now() >= deadline {
                return Err(last_error);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// One attempt at [`settle`](Self::settle).
    fn look_up(
        &self,
        commit: &Commit<'_>,
        token: &[u8; 16],
        (pid, started): &(i32, String),
        deadline: Instant,
    ) -> Result<Settled, Trouble> {
        let mut conn = self.pool.connect()?;
        let client = &mut conn.client;
        let patience = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(100));
        // Locking the counter row below gives this lookup a transaction id,
        // so its end writes a commit record: `local` keeps it from waiting
        // for a synchronous standby that may be the very reason for the
        // outage.
        client.batch_execute(&format!(
            "SET lock_timeout = {}; SET synchronous_commit = local",
            patience.as_millis().max(1)
        ))?;
        // The server process may not have noticed that its client is gone
        // (it may still wait for a lock, then commit): end it, and wait
        // until it has exited, which it does only after its transaction
        // ended. The start time tells it from a later process with its pid.
        let alive =
            "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND backend_start::text = $2";
        client.query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE pid = $1 AND backend_start::text = $2",
            &[pid, started],
        )?;
        loop {
            let left: i64 = client.query_one(alive, &[pid, started])?.try_get(0)?;
            if left == 0 {
                break;
            }
            if Instant::now() >= deadline {
                return Err(Trouble(format!(
                    "the server process {pid} that ran the write did not exit"
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let ns = schema::quote(&self.namespace);
        let key = commit.key;
        let new_revision = commit.expected.saturating_add(1);
        let new_revision = i64::try_from(new_revision).unwrap_or(i64::MAX);
        // Revisions never go back and rows are never deleted: a key below
        // the revision the write would have made was not written by it.
        let revision: Option<i64> = client
            .query_opt(
                format!("SELECT revision FROM {ns}.documents WHERE collection = $1 AND name = $2")
                    .as_str(),
                &[&key.collection(), &key.name()],
            )?
            .map(|row| row.try_get(0))
            .transpose()?;
        if revision.is_none_or(|r| r < new_revision) {
            return Ok(Settled::NotCommitted);
        }
        // That revision was committed once, by this write or another, and
        // its change row says which — unless pruning took it.
        let change = client.query_opt(
            format!(
                "SELECT token FROM {ns}.changes \
                 WHERE collection = $1 AND name = $2 AND revision = $3"
            )
            .as_str(),
            &[&key.collection(), &key.name(), &new_revision],
        )?;
        Ok(match change {
            Some(row) => {
                let stored: Vec<u8> = row.try_get(0)?;
                if stored == token[..] {
                    Settled::Committed
                } else {
                    Settled::NotCommitted
                }
            }
            None => Settled::Unknown,
        })
    }

    fn listener(&self) -> Option<&Listener> {
        self.listener
            .get_or_init(|| {
                Listener::start(Target {
                    config: self.pool.config().clone(),
                    channel: self.sql.channel.clone(),
                    last_seq_sql: self.sql.text(Query::SelectLastSeq).to_owned(),
                })
                .ok()
            })
            .as_ref()
    }

    /// Starts this handle's `LISTEN` thread if it is not running yet and
    /// waits up to `timeout` for it to listen; whether it does. Watchers
    /// start it themselves; this is for tests and for programs that want
    /// their first watch to be woken without a delay.
    pub fn start_listening(&self, timeout: Duration) -> bool {
        self.listener()
            .is_some_and(|listener| listener.wait_listening(timeout))
    }
}

/// The seq a write statement returned (its first column).
fn seq_of(row: &postgres::Row) -> u64 {
    row.try_get::<_, i64>(0).map_or(0, i64::unsigned_abs)
}

/// A revision as PostgreSQL's `bigint`.
fn sql_revision(revision: Option<u64>, key: &Key) -> Result<i64> {
    revision.and_then(|r| i64::try_from(r).ok()).ok_or_else(|| {
        backend(
            format!("committing {key}"),
            "the revision does not fit PostgreSQL's bigint",
        )
    })
}

impl revstore::StorageBackend for PostgresBackend {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn read(&self, key: &Key) -> Result<Option<Record>> {
        self.run(
            || format!("reading {key} from {}", self.server),
            |conn| {
                let select = conn.statement(&self.sql, Query::SelectRecord)?;
                let found = conn
                    .client
                    .query_opt(&select, &[&key.collection(), &key.name()])?;
                match found {
                    None => Ok(None),
                    Some(row) => Ok(Some(row::record(
                        &row,
                        &self.namespace,
                        key,
                        &self.decoded,
                    )?)),
                }
            },
        )
    }

    fn read_cached(&self, key: &Key) -> Option<Record> {
        // Every write through revstore bumps the revision, which the commit
        // is conditional on, so a remembered record is a safe start.
        self.decoded.peek(key)
    }

    fn commit(&self, commit: &Commit<'_>) -> Result<CommitOutcome> {
        let key = commit.key;
        let body = commit
            .body
            .map(|body| serde_json::to_string(&**body))
            .transpose()
            .map_err(|e| Error::InvalidBody {
                key: key.clone(),
                reason: format!("cannot be encoded as JSON: {e}"),
            })?;
        let token = feed::commit_token();
        let context = || format!("committing {key} to {}", self.server);
        let mut spent = Spent::default();
        loop {
            let mut conn = self.connection(&context)?;
            let attempt = self.try_commit(&mut conn, commit, body.as_deref(), &token);
            if attempt.is_err() {
                // It may have left a transaction open: never reuse it.
                conn.discard();
            }
            let error = match attempt {
                Ok((outcome, seq)) => {
                    if let Some(seq) = seq {
                        self.prune(&mut conn, seq);
                    }
                    if outcome == CommitOutcome::Committed {
                        self.remember_committed(commit, body.as_deref());
                    }
                    return Ok(outcome);
                }
                Err(CommitFailure::Final(e)) => return Err(e),
                Err(CommitFailure::Before(error)) => error,
                Err(CommitFailure::InFlight(error)) => {
                    if classify(&error, conn.client.is_closed()) != Class::Connection {
                        // The server answered: it rolled the write back.
                        error
                    } else {
                        conn.discard();
                        let reused = conn.reused;
                        let process = conn.server_process.clone();
                        drop(conn);
                        match self.settle(commit, &token, &process) {
                            Ok(Settled::Committed) => {
                                self.remember_committed(commit, body.as_deref());
                                return Ok(CommitOutcome::Committed);
                            }
                            Ok(Settled::NotCommitted) if reused && !spent.replaced_dead => {
                                // Most likely a pooled connection that died
                                // idle (a server restart): try a fresh one.
                                spent.replaced_dead = true;
                                self.pool.drain_idle();
                                continue;
                            }
                            Ok(Settled::NotCommitted) => {
                                return Err(unavailable(
                                    format!(
                                        "committing {key} to {} (the connection dropped while \
                                         the write was in flight, and it did not commit)",
                                        self.server
                                    ),
                                    error,
                                ))
                            }
                            Ok(Settled::Unknown) => {
                                return Err(backend(
                                    format!(
                                        "committing {key} to {}: the connection dropped while \
                                         the write was in flight, and the change feed no longer \
                                         holds the change that would tell whether it committed \
                                         (retention is smaller than the commits made since); the \
                                         outcome is unknown — read the key to find out",
                                        self.server
                                    ),
                                    error,
                                ))
                            }
                            Err(why) => {
                                return Err(backend(
                                    format!(
                                        "committing {key} to {}: the connection dropped while \
                                         the write was in flight, and the server could not be \
                                         reached within {:?} to learn whether it committed \
                                         ({why}); the outcome is unknown — read the key to find \
                                         out",
                                        self.server, self.connect_timeout
                                    ),
                                    error,
                                ))
                            }
                        }
                    }
                }
            };
            match self.after_error(&mut conn, error, &mut spent, &context, Some(key)) {
                Next::Retry => continue,
                Next::Fail(e) => return Err(e),
            }
        }
    }

    fn list(&self, collection: &str) -> Result<Vec<Entry>> {
        self.run(
            || format!("listing {collection} in {}", self.server),
            |conn| {
                let select = conn.statement(&self.sql, Query::SelectLive)?;
                let rows = conn.client.query(&select, &[&collection])?;
                rows.iter()
                    .map(|row| row::entry(row, &self.namespace, collection).map_err(Failure::Final))
                    .collect()
            },
        )
    }

    fn changes_since(&self, after: u64, limit: usize) -> Result<Vec<Change>> {
        // No seq exceeds i64::MAX, so a cursor beyond it has nothing after
        // it (and cannot be older than the horizon).
        let Ok(after_sql) = i64::try_from(after) else {
            return Ok(Vec::new());
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.run(
            || format!("reading the changes after seq {after} from {}", self.server),
            |conn| {
                let select = conn.statement(&self.sql, Query::SelectChanges)?;
                let rows = conn.client.query(&select, &[&after_sql, &limit])?;
                Ok(feed::changes(&rows, after, &self.namespace)?)
            },
        )
    }

    fn last_seq(&self) -> Result<u64> {
        self.run(
            || format!("reading the last seq of {}", self.server),
            |conn| {
                let select = conn.statement(&self.sql, Query::SelectLastSeq)?;
                let rows = conn.client.query(&select, &[])?;
                Ok(feed::last_seq(&rows, &self.namespace)?)
            },
        )
    }

    fn wait_for_change(&self, after: u64, timeout: Duration) -> Result<()> {
        match self.listener() {
            Some(listener) => listener.wait(after, timeout),
            None => std::thread::sleep(timeout),
        }
        Ok(())
    }
}
