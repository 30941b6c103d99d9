//! The validator cache: one compiled schema per collection, tagged with its
//! schema revision, swapped atomically and only ever forward.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use super::validate::CompiledSchema;

/// A compiled schema and the revision of the `_schema/<collection>`
/// document it was compiled from.
#[derive(Debug, Clone)]
pub struct CachedSchema {
    /// Revision of the schema document.
    pub revision: u64,
    /// The validator.
    pub schema: Arc<CompiledSchema>,
}

/// Compiled validators by collection, shared by every thread of a handle.
///
/// # Guarantees
/// - **Never backwards.** An entry is replaced only by a strictly newer
///   revision; a slow load of revision 5 that finishes after revision 6 was
///   installed does not install 5.
/// - **Never half-built.** Entries are immutable `Arc`s, built outside the
///   lock and swapped in under a short write lock; a reader gets either the
///   whole old entry or the whole new one.
/// - **Exact.** [`get`](SchemaCache::get) answers only for the exact
///   revision asked, so a caller that read schema revision N validates
///   against N, never against a neighbour.
///
/// `SchemaCache` is `Send + Sync`; share it by reference or in an `Arc`.
#[derive(Debug, Default)]
pub struct SchemaCache {
    entries: RwLock<HashMap<String, CachedSchema>>,
}

impl SchemaCache {
    /// An empty cache.
    pub fn new() -> SchemaCache {
        SchemaCache::default()
    }

    /// The cached validator of `collection` if it was compiled from exactly
    /// `revision`.
    pub fn get(&self, collection: &str, revision: u64) -> Option<Arc<CompiledSchema>> {
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        entries
            .get(collection)
            .filter(|e| e.revision == revision)
            .map(|e| Arc::clone(&e.schema))
    }

    /// The newest validator cached for `collection`, whatever its revision.
    pub fn latest(&self, collection: &str) -> Option<CachedSchema> {
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        entries.get(collection).cloned()
    }

    /// Installs `schema` as `collection`'s validator for `revision` if the
    /// cache holds nothing for it or an older revision. Returns whether it
    /// was installed (`false`: the cache already held this revision or a
    /// newer one, which it keeps).
    pub fn install(&self, collection: &str, revision: u64, schema: Arc<CompiledSchema>) -> bool {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        match entries.get_mut(collection) {
            Some(entry) if entry.revision >= revision => false,
            Some(entry) => {
                *entry = CachedSchema { revision, schema };
                true
            }
            None => {
                entries.insert(collection.to_owned(), CachedSchema { revision, schema });
                true
            }
        }
    }

    /// The validator of `collection` at exactly `revision`: the cached one,
    /// or one built by `loader` — outside any lock, so a slow load blocks no
    /// reader — then installed unless a newer revision got there first.
    ///
    /// The answer is always for `revision`, even when it is no longer the
    /// newest (the caller's write then commits guarded on `revision` and
    /// loses to the schema change, as it should). Two threads loading the
    /// same revision at once may both run their loader; the first to
    /// install wins and both get an equivalent validator.
    ///
    /// # Errors
    /// The loader's error; nothing is installed then.
    pub fn get_or_load<E>(
        &self,
        collection: &str,
        revision: u64,
        loader: impl FnOnce() -> Result<CompiledSchema, E>,
    ) -> Result<Arc<CompiledSchema>, E> {
        if let Some(schema) = self.get(collection, revision) {
            return Ok(schema);
        }
        let loaded = Arc::new(loader()?);
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        match entries.get_mut(collection) {
            Some(entry) if entry.revision == revision => Ok(Arc::clone(&entry.schema)),
            Some(entry) if entry.revision > revision => Ok(loaded),
            Some(entry) => {
                *entry = CachedSchema {
                    revision,
                    schema: Arc::clone(&loaded),
                };
                Ok(loaded)
            }
            None => {
                entries.insert(
                    collection.to_owned(),
                    CachedSchema {
                        revision,
                        schema: Arc::clone(&loaded),
                    },
                );
                Ok(loaded)
            }
        }
    }
}
