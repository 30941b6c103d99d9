//! The engine: the one place where preconditions, patches, validation and
//! retries happen, on top of any [`StorageBackend`].

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::backend::{current_of, Commit, CommitOutcome, Entry, Guard, Record, StorageBackend};
use crate::body::{Body, Document, Limits, Versioned};
use crate::error::{Error, Result};
use crate::feed::{Change, ChangeKind};
use crate::guesses::StaleGuesses;
use crate::key::{validate_collection, Key};
use crate::patch::Patch;
use crate::precondition::{Current, Precondition};
use crate::retry::RetryPolicy;
use crate::schema::{CompiledSchema, SchemaCache};
use crate::watch::Watch;

/// Settings of a [`Store`] handle.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreOptions {
    /// Bounds on bodies and patches.
    pub limits: Limits,
    /// How unconditional writes retry after losing a race.
    pub retry: RetryPolicy,
}

/// A handle on a store of revisioned documents.
///
/// # Guarantees
/// - **No lost update.** Every write is a conditional commit on the revision
///   it was computed from. A write without a revision precondition that loses
///   a race re-reads the newest body and re-applies itself (patches and
///   [`update`](Store::update) closures run again on the new body), so
///   concurrent patches to different fields all survive. A write with
///   [`Precondition::Revision`] is a compare-and-swap and fails with
///   [`Error::Conflict`] instead.
/// - **One revision per write.** Each committed write of a key produces the
///   next revision (1 on create); revisions are never reused, even across a
///   delete and re-create, so a stale compare-and-swap cannot succeed by
///   coincidence.
/// - **Nothing on error.** A call that fails with anything but an I/O or
///   backend error during the commit itself has changed nothing.
/// - **Shareable.** `Store` is `Send + Sync` and cheap to clone (clones share
///   the backend); many threads, handles and processes may use the same
///   location at once, as the backend documents.
///
/// # Cost of a write
/// A write usually does not read the key first: it starts from the record
/// this handle last read or wrote, as the backend remembers it
/// ([`StorageBackend::read_cached`]), and commits conditionally on it. If
/// another writer got there first, the commit is refused, and the write
/// reads and starts again (a closure passed to [`update`](Store::update)
/// may therefore see the older body first). Anything but a commit —
/// a precondition failure, [`Error::NotFound`], a schema refusal — is only
/// reported after a fresh read confirms it. A key that keeps proving
/// stale (other handles or processes write it too) is read before each
/// write until writes by this handle alone resume.
///
/// # Example
/// ```
/// use revstore::{MemoryBackend, Patch, Precondition, Store};
/// use serde_json::json;
///
/// # fn main() -> revstore::Result<()> {
/// let store = Store::open(MemoryBackend::new());
/// let doc = store.create("models", "orders", json!({"description": "All orders"}))?;
/// assert_eq!(doc.revision, 1);
///
/// // A patch applies to the current body, whoever wrote it.
/// let doc = store.patch("models", "orders", &Patch::Merge(json!({"joins": ["customers"]})), Precondition::Any)?;
/// assert_eq!(doc.revision, 2);
/// assert_eq!(doc.body["description"], "All orders");
///
/// // A compare-and-swap on a stale revision changes nothing.
/// let stale = store.replace("models", "orders", json!({}), Precondition::Revision(1));
/// assert!(matches!(stale, Err(revstore::Error::Conflict { .. })));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Store {
    backend: Arc<dyn StorageBackend>,
    options: StoreOptions,
    /// Compiled validators by (collection, schema revision), shared by
    /// clones of this handle.
    schemas: Arc<SchemaCache>,
    /// The schema state last read for each collection, shared by clones:
    /// writes start from it instead of reading the schema document, and
    /// the commit's guard catches a schema that has moved on since.
    seen_schemas: Arc<RwLock<HashMap<String, LoadedSchema>>>,
    /// Keys whose writes read first rather than start from the record the
    /// backend remembers, shared by clones.
    guesses: Arc<StaleGuesses>,
}

/// The reserved collection holding schema documents: a collection's schema
/// is the document `_schema/<collection>`.
pub const SCHEMA_COLLECTION: &str = "_schema";

/// The schema document guarding writes to `key`'s collection (`None` for
/// reserved collections, which have no schema).
fn schema_key_for(key: &Key) -> Result<Option<Key>> {
    if key.is_reserved() {
        return Ok(None);
    }
    Key::new_reserved(SCHEMA_COLLECTION, key.collection()).map(Some)
}

/// A collection's schema as read for one write.
#[derive(Debug, Clone)]
pub(crate) struct LoadedSchema {
    /// The schema document's last revision (0 when never written); the
    /// write's guard.
    pub(crate) revision: u64,
    /// The validator, or `None` when the collection has no live schema.
    pub(crate) compiled: Option<Arc<CompiledSchema>>,
}

impl Store {
    /// Opens a store on a backend with default options.
    pub fn open(backend: impl StorageBackend + 'static) -> Store {
        Store::with_options(Arc::new(backend), StoreOptions::default())
    }

    /// Opens a store on a shared backend with the given options.
    pub fn with_options(backend: Arc<dyn StorageBackend>, options: StoreOptions) -> Store {
        Store {
            backend,
            options,
            schemas: Arc::new(SchemaCache::new()),
            seen_schemas: Arc::default(),
            guesses: Arc::default(),
        }
    }

    /// The backend this handle writes to.
    pub fn backend(&self) -> &Arc<dyn StorageBackend> {
        &self.backend
    }

    /// This handle's options.
    pub fn options(&self) -> &StoreOptions {
        &self.options
    }

    /// Reads a live document; `None` when it does not exist or was deleted.
    ///
    /// # Errors
    /// [`Error::InvalidName`], and the backend's errors ([`Error::Corrupt`]
    /// for stored data that does not parse, [`Error::Io`], …).
    pub fn get(&self, collection: &str, name: &str) -> Result<Option<Document>> {
        self.get_key(&Key::new(collection, name)?)
    }

    fn get_key(&self, key: &Key) -> Result<Option<Document>> {
        Ok(self.backend.read(key)?.and_then(|r| {
            r.body.map(|body| Document {
                revision: r.revision,
                body,
            })
        }))
    }

    /// Reads a key's record including a tombstone: `None` when never
    /// written, `body: None` when deleted. For tools that need the revision
    /// of a delete.
    ///
    /// # Errors
    /// As [`get`](Store::get).
    pub fn get_record(&self, collection: &str, name: &str) -> Result<Option<Record>> {
        let key = Key::new(collection, name)?;
        self.backend.read(&key)
    }

    /// Reads a live document into a typed model.
    ///
    /// # Errors
    /// As [`get`](Store::get), and [`Error::Deserialize`] naming the key when
    /// the body does not fit `T`.
    pub fn get_as<T: DeserializeOwned>(
        &self,
        collection: &str,
        name: &str,
    ) -> Result<Option<Versioned<T>>> {
        let key = Key::new(collection, name)?;
        let Some(doc) = self.get_key(&key)? else {
            return Ok(None);
        };
        // Owned, so deserializing moves the strings rather than copying
        // them; a body still shared with the backend's cache is copied.
        let value = serde_json::from_value(Value::Object(Arc::unwrap_or_clone(doc.body)))
            .map_err(|source| Error::Deserialize { key, source })?;
        Ok(Some(Versioned {
            revision: doc.revision,
            value,
        }))
    }

    /// Lists the live documents of a collection (names and revisions),
    /// sorted by name.
    ///
    /// # Errors
    /// [`Error::InvalidName`] for a bad collection, and the backend's errors.
    pub fn list(&self, collection: &str) -> Result<Vec<Entry>> {
        validate_collection(collection)?;
        self.backend.list(collection)
    }

    /// Creates a document; fails with [`Error::Conflict`] if a live one
    /// exists. A re-create after a delete continues the revision sequence.
    ///
    /// # Errors
    /// [`Error::Conflict`], the validation errors of [`replace`](Store::replace).
    pub fn create(&self, collection: &str, name: &str, body: Value) -> Result<Document> {
        self.replace(collection, name, body, Precondition::Absent)
    }

    /// Writes a whole body. With [`Precondition::Any`] it creates or
    /// overwrites; with [`Precondition::Absent`] it only creates; with
    /// [`Precondition::Revision`] it is a compare-and-swap.
    ///
    /// # Errors
    /// [`Error::InvalidName`], [`Error::InvalidBody`] (not a mapping),
    /// [`Error::LimitExceeded`], [`Error::Conflict`], and the backend's errors.
    pub fn replace(
        &self,
        collection: &str,
        name: &str,
        body: Value,
        precondition: Precondition,
    ) -> Result<Document> {
        let key = Key::new(collection, name)?;
        let body = Arc::new(self.options.limits.check_value(&key, body)?);
        self.write(&key, precondition, |_key, _current| {
            Ok(Some(Arc::clone(&body)))
        })
        .map(|(revision, body)| Document {
            revision,
            body: body.unwrap_or_default(),
        })
    }

    /// Applies a patch to the current body and returns the new document.
    ///
    /// With [`Precondition::Any`] the document must exist; a concurrent
    /// write makes the patch re-apply to the newer body. With
    /// [`Precondition::Revision`] it applies only to that revision. With
    /// [`Precondition::Absent`] it creates the document from the patch
    /// applied to an empty body.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::Conflict`], [`Error::InvalidPatch`],
    /// [`Error::PatchTestFailed`], [`Error::LimitExceeded`],
    /// [`Error::RetriesExhausted`], and the backend's errors.
    pub fn patch(
        &self,
        collection: &str,
        name: &str,
        patch: &Patch,
        precondition: Precondition,
    ) -> Result<Document> {
        let key = Key::new(collection, name)?;
        let limits = self.options.limits;
        let prepared = patch.prepare(&key, &limits)?;
        let empty = Body::new();
        self.write(&key, precondition, |key, current| {
            let base = match current.and_then(|r| r.body.as_deref()) {
                Some(body) => body,
                None if precondition == Precondition::Absent => &empty,
                None => return Err(Error::NotFound { key: key.clone() }),
            };
            prepared
                .apply(key, base, &limits)
                .map(|body| Some(Arc::new(body)))
        })
        .map(|(revision, body)| Document {
            revision,
            body: body.unwrap_or_default(),
        })
    }

    /// Runs `change` on the current body and commits the result; when a
    /// concurrent writer wins, re-reads and runs `change` again on the newer
    /// body. `change` may therefore run more than once and should have no
    /// other effects. An error from `change` aborts with nothing written.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::Aborted`] carrying the closure's error,
    /// [`Error::LimitExceeded`], [`Error::RetriesExhausted`], and the
    /// backend's errors.
    pub fn update<F>(&self, collection: &str, name: &str, mut change: F) -> Result<Document>
    where
        F: FnMut(&mut Body) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>>,
    {
        let key = Key::new(collection, name)?;
        let limits = self.options.limits;
        self.write(&key, Precondition::Any, |key, current| {
            let Some(mut body) = current.and_then(|r| r.body.clone()) else {
                return Err(Error::NotFound { key: key.clone() });
            };
            // The record read still holds the body, so this copies it, once
            // per attempt: the closure changes a body of its own.
            change(Arc::make_mut(&mut body)).map_err(|source| Error::Aborted {
                key: key.clone(),
                source,
            })?;
            limits.check_body(key, &body)?;
            Ok(Some(body))
        })
        .map(|(revision, body)| Document {
            revision,
            body: body.unwrap_or_default(),
        })
    }

    /// Deletes a document, leaving a tombstone that keeps its revision, and
    /// returns the tombstone's revision.
    ///
    /// # Errors
    /// [`Error::NotFound`] when there is no live document (with
    /// [`Precondition::Any`] or [`Precondition::Absent`]), [`Error::Conflict`]
    /// when a revision precondition fails, and the backend's errors.
    pub fn delete(&self, collection: &str, name: &str, precondition: Precondition) -> Result<u64> {
        let key = Key::new(collection, name)?;
        self.write(&key, precondition, |key, current| {
            match current.map(Record::current) {
                Some(Current::Live { .. }) => Ok(None),
                _ => Err(Error::NotFound { key: key.clone() }),
            }
        })
        .map(|(revision, _)| revision)
    }

    /// Reads a collection's schema document (`_schema/<collection>`).
    ///
    /// # Errors
    /// [`Error::InvalidName`] for a bad collection, and the backend's errors.
    pub fn get_schema(&self, collection: &str) -> Result<Option<Document>> {
        validate_collection(collection)?;
        self.get_key(&Key::new_reserved(SCHEMA_COLLECTION, collection)?)
    }

    /// Sets a collection's schema. The document is checked first (every
    /// problem is reported, with its JSON Pointer path); the change is an
    /// ordinary revisioned write and takes effect for the very next write to
    /// the collection in every handle and process: a write validated
    /// against an older schema revision cannot commit.
    ///
    /// Documents already stored are not re-checked (ratcheting): they stay
    /// readable and patchable, and a later write is checked on the
    /// attributes it changes. See [`Store::migrate`] to clean them up.
    ///
    /// # Errors
    /// [`Error::InvalidSchema`], [`Error::Conflict`] for a failed
    /// precondition, and the errors of [`replace`](Store::replace).
    pub fn set_schema(
        &self,
        collection: &str,
        schema: Value,
        precondition: Precondition,
    ) -> Result<Document> {
        validate_collection(collection)?;
        let key = Key::new_reserved(SCHEMA_COLLECTION, collection)?;
        let body = Arc::new(self.options.limits.check_value(&key, schema)?);
        crate::schema::Schema::parse(&body).map_err(|e| Error::InvalidSchema {
            key: key.clone(),
            problems: e.problems,
        })?;
        self.write(&key, precondition, |_key, _current| {
            Ok(Some(Arc::clone(&body)))
        })
        .map(|(revision, body)| Document {
            revision,
            body: body.unwrap_or_default(),
        })
    }

    /// Removes a collection's schema; writes are no longer validated.
    ///
    /// # Errors
    /// As [`delete`](Store::delete).
    pub fn delete_schema(&self, collection: &str, precondition: Precondition) -> Result<u64> {
        validate_collection(collection)?;
        let key = Key::new_reserved(SCHEMA_COLLECTION, collection)?;
        self.write(&key, precondition, |key, current| {
            match current.map(Record::current) {
                Some(Current::Live { .. }) => Ok(None),
                _ => Err(Error::NotFound { key: key.clone() }),
            }
        })
        .map(|(revision, _)| revision)
    }

    /// Up to `limit` committed changes with `seq > after`, in commit order,
    /// from every handle and process writing to this store.
    ///
    /// # Errors
    /// [`Error::Compacted`] when changes after `after` are no longer
    /// retained: re-list, then resume from [`last_seq`](Store::last_seq)
    /// (taken before listing). And the backend's errors.
    pub fn changes_since(&self, after: u64, limit: usize) -> Result<Vec<Change>> {
        self.backend.changes_since(after, limit)
    }

    /// The `seq` of the newest committed change (0 when none): the cursor
    /// that "resumes from now".
    ///
    /// # Errors
    /// The backend's errors.
    pub fn last_seq(&self) -> Result<u64> {
        self.backend.last_seq()
    }

    /// A blocking iterator over the changes after `after`, polling the
    /// feed every `poll` while there is nothing new. See [`Watch`].
    pub fn watch(&self, after: u64, poll: std::time::Duration) -> Watch {
        Watch::new(self.clone(), after, poll)
    }

    /// Reads a collection's schema document and returns its compiled
    /// validator from the cache (compiling it on first use), and remembers
    /// it as the collection's last seen schema.
    pub(crate) fn load_schema(&self, schema_key: &Key) -> Result<LoadedSchema> {
        let loaded = self.read_schema(schema_key)?;
        let mut seen = self
            .seen_schemas
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        match seen.get_mut(schema_key.name()) {
            // Only ever forward: a slow reader must not undo a newer one.
            Some(known) if known.revision >= loaded.revision => {}
            Some(known) => *known = loaded.clone(),
            None => {
                seen.insert(schema_key.name().to_owned(), loaded.clone());
            }
        }
        Ok(loaded)
    }

    /// The schema a write starts from: the last one seen by this handle, or
    /// a fresh read when there is none. `true` with it when it was read
    /// just now.
    fn starting_schema(&self, schema_key: &Key) -> Result<(LoadedSchema, bool)> {
        let seen = self
            .seen_schemas
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(schema_key.name())
            .cloned();
        match seen {
            Some(loaded) => Ok((loaded, false)),
            None => Ok((self.load_schema(schema_key)?, true)),
        }
    }

    fn read_schema(&self, schema_key: &Key) -> Result<LoadedSchema> {
        let Some(record) = self.backend.read(schema_key)? else {
            return Ok(LoadedSchema {
                revision: 0,
                compiled: None,
            });
        };
        let Some(body) = record.body else {
            return Ok(LoadedSchema {
                revision: record.revision,
                compiled: None,
            });
        };
        let compiled = self
            .schemas
            .get_or_load(schema_key.name(), record.revision, || {
                CompiledSchema::compile(&body)
            })
            // Only a schema written around the engine (a hand edit) can be
            // invalid here: refuse writes to the collection until it is
            // fixed, and say where.
            .map_err(|e| Error::Corrupt {
                location: schema_key.to_string(),
                reason: e.to_string(),
            })?;
        Ok(LoadedSchema {
            revision: record.revision,
            compiled: Some(compiled),
        })
    }

    fn forget_seen_schema(&self, collection: &str) {
        self.seen_schemas
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(collection);
    }

    /// Fills defaults on a create and validates a new body against a
    /// schema, checking on an update only what the write changes.
    fn check_schema(
        &self,
        key: &Key,
        schema: &LoadedSchema,
        new: &mut Arc<Body>,
        old: Option<&Body>,
    ) -> Result<()> {
        let Some(compiled) = &schema.compiled else {
            return Ok(());
        };
        if old.is_none() && compiled.lacks_defaults(new) {
            // Copies a body the caller still holds (a replace keeps its
            // value for the next attempt), so a retry starts from it again.
            compiled.apply_defaults(Arc::make_mut(new));
            self.options.limits.check_body(key, new)?;
        }
        compiled
            .validate(new, old)
            .map_err(|violations| Error::SchemaViolation {
                key: key.clone(),
                schema_revision: schema.revision,
                violations,
            })
    }

    /// The record a write attempt starts from, and whether it is a guess:
    /// the one the backend remembers when `guessing` (and it remembers
    /// one), else a fresh read. A fresh read of a key whose guess went
    /// wrong before also tells [`StaleGuesses`] whether guessing would
    /// have been right this time.
    fn starting_record(&self, key: &Key, guessing: bool) -> Result<(Option<Record>, bool)> {
        if guessing {
            if let Some(remembered) = self.backend.read_cached(key) {
                return Ok((Some(remembered), true));
            }
            return Ok((self.backend.read(key)?, false));
        }
        let remembered = self.backend.read_cached(key);
        let fresh = self.backend.read(key)?;
        // The very record remembered: same revision, same shared body (a
        // body decoded again, even if equal, means the guess was not hit).
        let would_have_hit = match (&remembered, &fresh) {
            (Some(remembered), Some(fresh)) => {
                remembered.revision == fresh.revision
                    && match (&remembered.body, &fresh.body) {
                        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                        (None, None) => true,
                        _ => false,
                    }
            }
            _ => false,
        };
        self.guesses.checked(key, would_have_hit);
        Ok((fresh, false))
    }

    /// The write loop shared by every operation: read, check the
    /// precondition, compute the new body, commit on the revision read;
    /// after a lost race, back off and start again from a fresh read.
    fn write<F>(
        &self,
        key: &Key,
        precondition: Precondition,
        mut step: F,
    ) -> Result<(u64, Option<Arc<Body>>)>
    where
        F: FnMut(&Key, Option<&Record>) -> Result<Option<Arc<Body>>>,
    {
        let retry = self.options.retry;
        let schema_key = schema_key_for(key)?;
        let mut attempt = 1u32;
        // Whether the next attempt must read the schema document rather
        // than start from the one last seen.
        let mut reread_schema = false;
        // Whether the next attempt may start from the record the backend
        // remembers instead of reading the key.
        let mut guessing = self.guesses.may_guess(key);
        // The schema an attempt that only found its guess stale used, for
        // the next attempt to use again: nothing about the schema changed.
        let mut carried_schema = None;
        loop {
            // The write is validated against a schema revision and its
            // commit is guarded on that revision: if the schema is not (or
            // no longer) the current one at commit time, the commit is
            // refused and the write starts over from a fresh read of the
            // schema. So the schema last seen by this handle is a safe
            // starting point, and the common write reads no schema at all.
            let (schema, schema_is_fresh) = match (carried_schema.take(), &schema_key) {
                (Some(carried), _) => carried,
                (None, Some(schema_key)) if reread_schema => {
                    (Some(self.load_schema(schema_key)?), true)
                }
                (None, Some(schema_key)) => {
                    let (loaded, fresh) = self.starting_schema(schema_key)?;
                    (Some(loaded), fresh)
                }
                (None, None) => (None, true),
            };
            // Bodies are shared: a replace or a delete never copies the old
            // body, a patch or an update copies it once, to change it.
            let (record, guessed) = self.starting_record(key, guessing)?;
            let record = record.as_ref();
            let current = current_of(record);
            // Anything decided on a guess but a commit is decided again on
            // a fresh read: the guess may be stale. Neither an attempt nor
            // a pause is spent on it.
            macro_rules! unless_guessed {
                ($refusal:expr) => {{
                    if guessed {
                        self.guesses.missed(key);
                        guessing = false;
                        carried_schema = Some((schema.clone(), schema_is_fresh));
                        continue;
                    }
                    return Err($refusal);
                }};
            }
            if !precondition.holds(current) {
                unless_guessed!(Error::Conflict {
                    key: key.clone(),
                    expected: precondition,
                    actual: current,
                });
            }
            if current.last_revision() == u64::MAX {
                // Only a hand-edited file can get here; wrapping to 0 would
                // reuse revisions, so refuse and leave the data alone.
                unless_guessed!(Error::Corrupt {
                    location: key.to_string(),
                    reason: "the stored revision is at its maximum and cannot be incremented"
                        .to_owned(),
                });
            }
            let mut body = match step(key, record) {
                Ok(body) => body,
                Err(refusal) => unless_guessed!(refusal),
            };
            if let (Some(new), Some(loaded)) = (body.as_mut(), schema.as_ref()) {
                let old = record.and_then(|r| r.body.as_deref());
                if let Err(refused) = self.check_schema(key, loaded, new, old) {
                    if schema_is_fresh {
                        unless_guessed!(refused);
                    }
                    // Refuse only on the current schema: the one remembered
                    // may have been relaxed since. Not a lost race, so no
                    // attempt is spent and no pause taken.
                    reread_schema = true;
                    continue;
                }
            }
            let kind = match (&body, current.is_live()) {
                (None, _) => ChangeKind::Deleted,
                (Some(_), true) => ChangeKind::Updated,
                (Some(_), false) => ChangeKind::Created,
            };
            let commit = Commit {
                key,
                expected: current.last_revision(),
                body: body.as_ref(),
                guard: schema_key
                    .as_ref()
                    .zip(schema.as_ref())
                    .map(|(key, loaded)| Guard {
                        key,
                        revision: loaded.revision,
                    }),
                kind,
                based_on: record,
            };
            match self.backend.commit(&commit)? {
                CommitOutcome::Committed => {
                    if key.collection() == SCHEMA_COLLECTION {
                        // This handle's next write to the collection should
                        // not need a lost race to learn of the change.
                        self.forget_seen_schema(key.name());
                    }
                    return Ok((commit.new_revision(), body));
                }
                CommitOutcome::Conflict { .. } if guessed => {
                    self.guesses.missed(key);
                    guessing = false;
                    carried_schema = Some((schema.clone(), schema_is_fresh));
                    continue;
                }
                CommitOutcome::Conflict { actual } => {
                    // A compare-and-swap reports the loss at once; the next
                    // read would only confirm that the revision moved on.
                    // (Unless it did not move: a backend without revisions
                    // for every change of content — a file edited by hand —
                    // refused because the content changed under the same
                    // revision, which the precondition does not see.)
                    let moved = actual.last_revision() != commit.expected;
                    if let (Precondition::Revision(_), true) = (precondition, moved) {
                        return Err(Error::Conflict {
                            key: key.clone(),
                            expected: precondition,
                            actual,
                        });
                    }
                }
                CommitOutcome::GuardChanged { .. } => reread_schema = true,
            }
            if attempt >= retry.max_attempts {
                return Err(Error::RetriesExhausted {
                    key: key.clone(),
                    attempts: attempt,
                });
            }
            attempt += 1;
            let pause = retry.backoff(attempt);
            if !pause.is_zero() {
                std::thread::sleep(pause);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use serde_json::json;

    use super::*;
    use crate::memory::MemoryBackend;

    /// The memory backend plus a per-handle memory of the records read and
    /// committed, like the YAML and SQLite backends' caches (a read of an
    /// unchanged record hands out the remembered one), counting the reads
    /// of schema documents and of other documents.
    #[derive(Debug)]
    struct CountingBackend {
        inner: MemoryBackend,
        remembered: std::sync::Mutex<HashMap<Key, Record>>,
        schema_reads: AtomicUsize,
        document_reads: AtomicUsize,
    }

    impl CountingBackend {
        fn on(inner: &MemoryBackend) -> Arc<CountingBackend> {
            Arc::new(CountingBackend {
                inner: inner.clone(),
                remembered: Default::default(),
                schema_reads: AtomicUsize::new(0),
                document_reads: AtomicUsize::new(0),
            })
        }
        fn schema_reads(&self) -> usize {
            self.schema_reads.load(Ordering::SeqCst)
        }
        fn document_reads(&self) -> usize {
            self.document_reads.load(Ordering::SeqCst)
        }
    }

    impl StorageBackend for CountingBackend {
        fn kind(&self) -> &'static str {
            "counting"
        }
        fn read(&self, key: &Key) -> Result<Option<Record>> {
            let counter = match key.collection() {
                SCHEMA_COLLECTION => &self.schema_reads,
                _ => &self.document_reads,
            };
            counter.fetch_add(1, Ordering::SeqCst);
            let Some(fresh) = self.inner.read(key)? else {
                return Ok(None);
            };
            let mut remembered = self.remembered.lock().unwrap();
            match remembered.get(key) {
                Some(known) if *known == fresh => Ok(Some(known.clone())),
                _ => {
                    remembered.insert(key.clone(), fresh.clone());
                    Ok(Some(fresh))
                }
            }
        }
        fn read_cached(&self, key: &Key) -> Option<Record> {
            self.remembered.lock().unwrap().get(key).cloned()
        }
        fn commit(&self, commit: &Commit<'_>) -> Result<CommitOutcome> {
            let outcome = self.inner.commit(commit)?;
            if outcome == CommitOutcome::Committed {
                let record = Record {
                    revision: commit.new_revision(),
                    body: commit.body.cloned(),
                };
                self.remembered
                    .lock()
                    .unwrap()
                    .insert(commit.key.clone(), record);
            }
            Ok(outcome)
        }
        fn list(&self, collection: &str) -> Result<Vec<Entry>> {
            self.inner.list(collection)
        }
        fn changes_since(&self, after: u64, limit: usize) -> Result<Vec<Change>> {
            self.inner.changes_since(after, limit)
        }
        fn last_seq(&self) -> Result<u64> {
            self.inner.last_seq()
        }
    }

    #[test]
    fn writes_start_from_the_schema_last_seen_and_reread_only_when_it_moved() {
        let backend = CountingBackend::on(&MemoryBackend::new());
        let reads = |b: &CountingBackend| b.schema_reads();
        let store = Store::with_options(backend.clone(), StoreOptions::default());
        let admin = Store::with_options(backend.clone(), StoreOptions::default());
        admin
            .set_schema(
                "c",
                json!({"attributes": [{"name": "n", "type": "integer"}]}),
                Precondition::Any,
            )
            .unwrap();
        let before = reads(&backend);
        store.create("c", "d", json!({"n": 0})).unwrap();
        for i in 1..20 {
            store
                .patch("c", "d", &Patch::Merge(json!({"n": i})), Precondition::Any)
                .unwrap();
        }
        assert_eq!(reads(&backend) - before, 1, "one read for 20 writes");

        // Another handle changes the schema: the next write loses on the
        // guard, reads the schema once and is checked against it.
        admin
            .set_schema(
                "c",
                json!({"attributes": [{"name": "n", "type": "integer", "max": 5}]}),
                Precondition::Revision(1),
            )
            .unwrap();
        let before = reads(&backend);
        let refused = store.patch("c", "d", &Patch::Merge(json!({"n": 50})), Precondition::Any);
        assert!(
            matches!(
                refused,
                Err(Error::SchemaViolation {
                    schema_revision: 2,
                    ..
                })
            ),
            "{refused:?}"
        );
        assert_eq!(reads(&backend) - before, 1);
        store
            .patch("c", "d", &Patch::Merge(json!({"n": 3})), Precondition::Any)
            .unwrap();
        assert_eq!(reads(&backend) - before, 1);
    }

    #[test]
    fn writes_start_from_the_remembered_record_until_it_proves_stale() {
        let shared = MemoryBackend::new();
        let (a, b) = (CountingBackend::on(&shared), CountingBackend::on(&shared));
        let store_a = Store::with_options(a.clone(), StoreOptions::default());
        let store_b = Store::with_options(b.clone(), StoreOptions::default());
        let merge = |store: &Store, field: &str, n: i64| {
            store
                .patch(
                    "c",
                    "d",
                    &Patch::Merge(json!({ field: n })),
                    Precondition::Any,
                )
                .unwrap()
        };

        // One writer: only the create reads.
        store_a.create("c", "d", json!({})).unwrap();
        for n in 0..20 {
            merge(&store_a, "a", n);
        }
        assert_eq!(a.document_reads(), 1);

        // Another handle writes: A's guess is refused, A reads and keeps
        // both changes.
        merge(&store_b, "b", 1);
        let doc = merge(&store_a, "c", 1);
        assert_eq!(doc.revision, 23);
        assert_eq!(
            *doc.body,
            json!({"a": 19, "b": 1, "c": 1})
                .as_object()
                .cloned()
                .unwrap()
        );
        assert_eq!(a.document_reads(), 2);

        // A reads before each write until several in a row show the guess
        // would have been right, then guesses again.
        for n in 0..4 {
            merge(&store_a, "a", n);
        }
        assert_eq!(a.document_reads(), 6);
        for n in 0..10 {
            merge(&store_a, "a", n);
        }
        assert_eq!(a.document_reads(), 6);

        // A refusal decided on a guess is decided again on a fresh read:
        // the document was deleted and re-created elsewhere.
        store_b.delete("c", "d", Precondition::Any).unwrap();
        store_b.create("c", "d", json!({"fresh": true})).unwrap();
        let created = store_a.replace("c", "d", json!({"x": 1}), Precondition::Revision(39));
        assert!(created.is_ok(), "{created:?}");
        let absent = store_a.create("c", "d", json!({}));
        assert!(
            matches!(
                absent,
                Err(Error::Conflict {
                    actual: Current::Live { revision: 40 },
                    ..
                })
            ),
            "{absent:?}"
        );
    }
}
