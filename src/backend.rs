//! The storage primitives a backend implements.
//!
//! A backend is deliberately small: read one key, commit one conditional
//! write, list a collection. Patching, validation, preconditions and retry
//! loops live once, in [`Store`](crate::Store), so every backend gets them
//! identically.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::body::Body;
use crate::error::Result;
use crate::feed::{Change, ChangeKind};
use crate::key::Key;
pub use crate::precondition::Current;

/// A key's stored record: its last revision and its body, or `None` for a
/// tombstone left by a delete.
///
/// The body is shared, so cloning a record is cheap: a backend hands out
/// the body its read cache holds, and caches the body it was given to
/// commit, without copying either. A shared body is never changed in
/// place; a holder that wants to change it calls [`Arc::make_mut`], which
/// copies it first whenever anyone else (the store, a cache, another
/// reader) still holds it, so what they see never changes.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Revision of the last committed write (1 on create, +1 on every write).
    pub revision: u64,
    /// The body, or `None` when the last write was a delete.
    pub body: Option<Arc<Body>>,
}

impl Record {
    /// The state this record represents.
    pub fn current(&self) -> Current {
        match self.body {
            Some(_) => Current::Live {
                revision: self.revision,
            },
            None => Current::Deleted {
                revision: self.revision,
            },
        }
    }
}

/// The state of an optional record (`None` means the key was never written).
pub fn current_of(record: Option<&Record>) -> Current {
    record.map_or(Current::Missing, Record::current)
}

/// One live document in a listing.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Entry {
    /// The document's name within its collection.
    pub name: String,
    /// Its current revision.
    pub revision: u64,
}

/// A requirement on a second key checked atomically with a commit: the
/// commit happens only if `key` is still at `revision` (0: never written).
///
/// The engine uses it to tie a document write to the schema revision it was
/// validated against. Guard keys are always in a reserved (`_`) collection
/// and the committed key never is, so a backend that locks the guard key
/// before the document key has one global lock order.
#[derive(Debug, Clone, Copy)]
pub struct Guard<'a> {
    /// The guarding key.
    pub key: &'a Key,
    /// The last revision (live or tombstone) it must still have.
    pub revision: u64,
}

/// One conditional write.
#[derive(Debug, Clone, Copy)]
pub struct Commit<'a> {
    /// The key written.
    pub key: &'a Key,
    /// The last revision (live or tombstone) the key must still have for the
    /// write to happen; 0 when the key must never have been written.
    pub expected: u64,
    /// The new body, or `None` to leave a tombstone (a delete). Shared: a
    /// backend that keeps what it wrote (a read cache) keeps a clone of
    /// the `Arc`, never a copy of the body.
    pub body: Option<&'a Arc<Body>>,
    /// An optional second key that must be unchanged.
    pub guard: Option<Guard<'a>>,
    /// What the write does, for the change feed: the engine knows it from
    /// the state it read, which the commit is conditional on.
    pub kind: ChangeKind,
    /// The record the new body was computed from, at revision `expected`,
    /// when the writer has it (the engine does whenever the key was
    /// written before).
    ///
    /// A backend whose revisions alone do not identify a key's content must
    /// then also refuse the commit with [`CommitOutcome::Conflict`] when the
    /// key's current record differs from this one: the YAML backend, where
    /// a file edited by hand gets an implicit revision that a second hand
    /// edit shares. Backends that bump the revision on every change of
    /// content may ignore it.
    pub based_on: Option<&'a Record>,
}

impl Commit<'_> {
    /// The revision this commit writes. (The engine never commits on a
    /// key whose revision is `u64::MAX`, so this does not saturate in
    /// practice.)
    pub fn new_revision(&self) -> u64 {
        self.expected.saturating_add(1)
    }
}

/// What a backend did with a [`Commit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitOutcome {
    /// The write is committed at `expected + 1`.
    Committed,
    /// The key was no longer at `expected`; nothing was written.
    Conflict {
        /// What the key holds now.
        actual: Current,
    },
    /// The guard key was no longer at its revision; nothing was written.
    GuardChanged {
        /// What the guard key holds now.
        actual: Current,
    },
}

/// A place where documents are stored.
///
/// # Contract
/// - [`read`](Self::read) returns only committed records, never a torn or
///   partly written one, and never one older than a commit that returned
///   before the read began.
/// - [`commit`](Self::commit) is atomic and conditional: it writes
///   `expected + 1` if and only if the key's last revision (live or
///   tombstone, 0 when never written) is still `expected` and the guard, if
///   any, still holds — checked and written as one step with respect to every
///   other commit on the same store, from any thread, handle or process.
///   Once it returns [`CommitOutcome::Committed`] the write is visible to
///   every later read, and durable to the degree the backend's durability
///   setting promises.
/// - [`list`](Self::list) returns the live documents of a collection, sorted
///   by name. It need not be a snapshot: each entry is some committed state.
/// - Every committed write appears in the change feed
///   ([`changes_since`](Self::changes_since)) exactly once, with a
///   store-wide `seq` that increases in commit order, recorded atomically
///   with the write (a backend may document an at-least-once exception for
///   a crash between recording and committing; such an entry names a
///   revision that was never committed and is later reused). A cursor never
///   misses a change: once a commit is visible to a read, its change is
///   visible to `changes_since` too.
/// - Reads never write.
///
/// Keys handed to a backend are already validated, and bodies already
/// checked against the store's limits.
pub trait StorageBackend: Send + Sync + fmt::Debug {
    /// A short name for messages: `"memory"`, `"yaml"`, `"sqlite"`.
    fn kind(&self) -> &'static str;

    /// Reads a key's record; `None` when it was never written. The body may
    /// be shared with a cache of the backend's, so that a warm read copies
    /// nothing.
    fn read(&self, key: &Key) -> Result<Option<Record>>;

    /// The record this handle last read or committed for `key`, if it still
    /// holds it in memory — no I/O, and possibly stale. The engine only
    /// starts a write from it: the commit is conditional on its revision
    /// (and on [`Commit::based_on`]), so a stale one costs a refused commit
    /// and a fresh read, never a lost update. It never answers a read.
    ///
    /// The default remembers nothing, so every write reads first.
    fn read_cached(&self, key: &Key) -> Option<Record> {
        let _ = key;
        None
    }

    /// Commits one conditional write; see the trait's contract.
    fn commit(&self, commit: &Commit<'_>) -> Result<CommitOutcome>;

    /// Lists the live documents of a collection, sorted by name.
    fn list(&self, collection: &str) -> Result<Vec<Entry>>;

    /// Up to `limit` changes with `seq > after`, oldest first.
    ///
    /// # Errors
    /// [`Error::Compacted`](crate::Error::Compacted) when changes after
    /// `after` have been discarded by retention, so the caller would miss
    /// some: it should re-list and resume from [`last_seq`](Self::last_seq).
    fn changes_since(&self, after: u64, limit: usize) -> Result<Vec<Change>>;

    /// The `seq` of the newest committed change, 0 when there is none.
    fn last_seq(&self) -> Result<u64>;

    /// Blocks until a change with `seq > after` may have been committed, or
    /// `timeout` has passed, whichever comes first. Watchers call it between
    /// polls of [`changes_since`](Self::changes_since), which stays the
    /// source of truth: returning early without a change, or late, only
    /// costs a poll — it never loses a change.
    ///
    /// The default sleeps for `timeout`. A backend with a notification
    /// channel (PostgreSQL's `LISTEN`) returns as soon as it hears of a newer
    /// change.
    ///
    /// # Errors
    /// The backend's errors; the default never fails.
    fn wait_for_change(&self, after: u64, timeout: Duration) -> Result<()> {
        let _ = after;
        std::thread::sleep(timeout);
        Ok(())
    }
}
