//! The PostgreSQL backend of revstore: the same promise as the embedded
//! backends — concurrent writers never lose an update — on a server that
//! any number of machines share.
//!
//! # Guarantees
//! - **Atomic, conditional commits.** A write is one `READ COMMITTED`
//!   transaction: `INSERT … ON CONFLICT DO NOTHING` for a key that must
//!   never have been written, otherwise `UPDATE … WHERE collection=$ AND
//!   name=$ AND revision=$expected`. PostgreSQL re-checks the `WHERE` on the
//!   newest row version after waiting for a concurrent writer's row lock,
//!   so zero rows changed means another writer won, and nothing is written.
//!   Deletes leave tombstones (a `NULL` body keeping the revision).
//! - **Schema-guarded writes.** A write tied to a schema revision takes a
//!   shared transaction-level advisory lock on the schema key, then checks
//!   its revision in the same transaction; a write *to* a reserved key
//!   (`_schema/…`) takes the same lock exclusively. So no document write
//!   validated against schema revision N commits after revision N+1 did.
//! - **Change feed in commit order.** Each commit's last statement takes
//!   the next seq from a one-row counter (`UPDATE feed_state SET last_seq =
//!   last_seq + 1`), records the change and its `NOTIFY` in the same
//!   transaction. The counter row stays locked until the commit is
//!   visible, so seqs are handed out in commit order, without gaps, and a
//!   cursor never misses a change (a plain `bigserial` would let a lower
//!   seq commit after a higher one was read). The cost is one short
//!   critical section per commit and store: the statement, the `COMMIT`
//!   and, at [`Durability::Full`], its WAL flush. Writers of different keys
//!   therefore commit one at a time per namespace (about one commit per
//!   WAL flush; see the README's benchmark table), while their other
//!   statements run in parallel. Retention works as in revstore-sqlite: a
//!   write prunes the feed to [`PostgresOptions::retain_changes`] once every
//!   256 seqs, and a cursor older than the horizon gets
//!   [`Error::Compacted`], never a gap.
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
//!   connection drop while `COMMIT` is in flight, the backend reconnects
//!   (up to the connect timeout, after waiting for the old transaction to
//!   end) and looks up the random token the commit wrote into its change
//!   row: found, the commit is reported committed; not found, it is
//!   [`Error::Unavailable`]. Only when the server cannot be reached to
//!   settle it (or the change was already pruned, with a retention smaller
//!   than the commits made meanwhile) is the answer [`Error::Backend`],
//!   saying that the outcome is unknown. Deadlocks and serialization
//!   failures (`40P01`, `40001`) are rolled back by the server and retried
//!   here; they never reach the caller.
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
    /// Before `COMMIT` was sent: the transaction did not commit.
    Before(postgres::Error),
    /// `COMMIT` itself failed; the change would have had `seq`.
    AtCommit { seq: i64, error: postgres::Error },
    /// A final answer (corrupt data).
    Final(Error),
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

    /// One attempt at a commit, in one transaction on `conn`.
    fn try_commit(
        &self,
        conn: &mut Conn,
        commit: &Commit<'_>,
        body: Option<&str>,
        token: &[u8; 16],
    ) -> Result<CommitOutcome, CommitFailure> {
        let key = commit.key;
        let expected = sql_revision(Some(commit.expected), key)?;
        let new_revision = sql_revision(commit.expected.checked_add(1), key)?;
        // Prepared before the transaction borrows the connection.
        let statement = |conn: &mut Conn, query| conn.statement(&self.sql, query);
        let lock_shared = statement(conn, Query::LockShared)?;
        let lock_exclusive = statement(conn, Query::LockExclusive)?;
        let select_current = statement(conn, Query::SelectCurrent)?;
        let write = if commit.expected == 0 {
            statement(conn, Query::WriteFirst)?
        } else {
            statement(conn, Query::WriteIfRevision)?
        };
        let prune = statement(conn, Query::PruneChanges)?;
        let raise_horizon = statement(conn, Query::RaiseHorizon)?;

        // Dropping `tx` without committing rolls it back.
        let mut tx = conn.client.transaction()?;
        if key.is_reserved() {
            tx.execute(&lock_exclusive, &[&self.lock_key(key)])?;
        }
        if let Some(guard) = commit.guard {
            tx.execute(&lock_shared, &[&self.lock_key(guard.key)])?;
            let actual = self.current_in(&mut tx, &select_current, guard.key)?;
            if actual.last_revision() != guard.revision {
                return Ok(CommitOutcome::GuardChanged { actual });
            }
        }
        let kind = commit.kind.as_str();
        let token = &token[..];
        let channel = &self.sql.channel;
        let written = if commit.expected == 0 {
            tx.query_opt(
                &write,
                &[
                    &key.collection(),
                    &key.name(),
                    &body,
                    &kind,
                    &token,
                    channel,
                ],
            )?
        } else {
            tx.query_opt(
                &write,
                &[
                    &body,
                    &new_revision,
                    &key.collection(),
                    &key.name(),
                    &expected,
                    &kind,
                    &token,
                    channel,
                ],
            )?
        };
        let Some(row) = written else {
            let actual = self.current_in(&mut tx, &select_current, key)?;
            return Ok(CommitOutcome::Conflict { actual });
        };
        let seq: i64 = row.try_get(0)?;
        if let Some(horizon) = feed::prune_horizon(seq.unsigned_abs(), self.retain_changes) {
            let horizon = i64::try_from(horizon).unwrap_or(i64::MAX);
            tx.execute(&prune, &[&horizon])?;
            tx.execute(&raise_horizon, &[&horizon])?;
        }
        tx.commit()
            .map_err(|error| CommitFailure::AtCommit { seq, error })?;
        Ok(CommitOutcome::Committed)
    }

    /// The state of `key` as seen by a new statement in `tx`.
    fn current_in(
        &self,
        tx: &mut postgres::Transaction<'_>,
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

    /// Settles a commit whose connection dropped while `COMMIT` was in
    /// flight: reconnects (until the connect timeout), waits for the old
    /// transaction to end, and looks for its token at `seq`.
    fn settle(
        &self,
        key: &Key,
        seq: i64,
        token: &[u8; 16],
        lost: postgres::Error,
    ) -> Result<CommitOutcome> {
        let deadline = Instant::now() + self.connect_timeout.max(Duration::from_secs(1));
        loop {
            let last_error = match self.look_up(seq, token, deadline) {
                Ok(Some(true)) => return Ok(CommitOutcome::Committed),
                Ok(Some(false)) => {
                    return Err(unavailable(
                        format!(
                            "committing {key} to {} (the connection dropped during COMMIT, \
                             and the server rolled the transaction back)",
                            self.server
                        ),
                        lost,
                    ))
                }
                Ok(None) => {
                    return Err(backend(
                        format!(
                            "committing {key} to {}: the connection dropped during COMMIT, \
                             and the change feed no longer holds seq {seq} to tell whether \
                             it committed (retention is smaller than the commits made since); \
                             the outcome is unknown — read the key to find out",
                            self.server
                        ),
                        lost,
                    ))
                }
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                let why = format!(" ({last_error})");
                return Err(backend(
                    format!(
                        "committing {key} to {}: the connection dropped during COMMIT, and \
                         the server could not be reached within {:?} to learn whether it \
                         committed{why}; the outcome is unknown — read the key to find out",
                        self.server, self.connect_timeout
                    ),
                    lost,
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Whether the commit that would have taken `seq` with `token`
    /// committed (`None`: its change was pruned, so the feed cannot tell).
    fn look_up(
        &self,
        seq: i64,
        token: &[u8; 16],
        deadline: Instant,
    ) -> Result<Option<bool>, postgres::Error> {
        let mut conn = self.pool.connect()?;
        let patience = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(100));
        // Locking the counter row gives this lookup a transaction id, so
        // its end writes a commit record: `local` keeps it from waiting for
        // a synchronous standby that may be the very reason for the outage.
        conn.client.batch_execute(&format!(
            "SET lock_timeout = {}; SET synchronous_commit = local",
            patience.as_millis().max(1)
        ))?;
        let ns = schema::quote(&self.namespace);
        // The old transaction held the counter row from taking its seq to
        // its end: once this lock is granted, it has committed or rolled
        // back, and the next statement's snapshot shows which.
        conn.client.query(
            format!("SELECT 1 FROM {ns}.feed_state FOR SHARE").as_str(),
            &[],
        )?;
        let row = conn.client.query_one(
            format!(
                "SELECT (SELECT token FROM {ns}.changes WHERE seq = $1), retained_after \
                 FROM {ns}.feed_state"
            )
            .as_str(),
            &[&seq],
        )?;
        let found: Option<Vec<u8>> = row.try_get(0)?;
        let horizon: i64 = row.try_get(1)?;
        Ok(match found {
            Some(stored) => Some(stored == token[..]),
            None if horizon >= seq => None,
            None => Some(false),
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
                    Some(row) => Ok(Some(row::record(&row, &self.namespace, key)?)),
                }
            },
        )
    }

    fn commit(&self, commit: &Commit<'_>) -> Result<CommitOutcome> {
        let key = commit.key;
        let body = commit
            .body
            .map(serde_json::to_string)
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
            let error = match self.try_commit(&mut conn, commit, body.as_deref(), &token) {
                Ok(outcome) => return Ok(outcome),
                Err(CommitFailure::Final(e)) => return Err(e),
                Err(CommitFailure::Before(error)) => error,
                Err(CommitFailure::AtCommit { seq, error }) => {
                    if classify(&error, conn.client.is_closed()) == Class::Connection {
                        conn.discard();
                        drop(conn);
                        return self.settle(key, seq, &token, error);
                    }
                    // The server answered: it rolled the transaction back.
                    error
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
