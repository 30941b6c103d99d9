//! What is measured: the backends at each durability level, a backend
//! wrapper that counts lost races, and document bodies of a given size.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use revstore::{
    Body, Change, Commit, CommitOutcome, Durability, Entry, Key, MemoryBackend, Record, Result,
    StorageBackend, Store, StoreOptions,
};
use revstore_sqlite::{SqliteBackend, SqliteOptions};
use revstore_yaml::{YamlBackend, YamlOptions};
use serde_json::{json, Value};

/// A backend kind under measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `MemoryBackend` (durability does not apply).
    Memory,
    /// `revstore-yaml`.
    Yaml,
    /// `revstore-sqlite`.
    Sqlite,
}

impl Kind {
    /// The name printed in the `backend` column and passed to workers.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Memory => "memory",
            Kind::Yaml => "yaml",
            Kind::Sqlite => "sqlite",
        }
    }

    /// Parses [`name`](Kind::name).
    pub fn parse(text: &str) -> Option<Kind> {
        [Kind::Memory, Kind::Yaml, Kind::Sqlite]
            .into_iter()
            .find(|k| k.name() == text)
    }
}

/// A backend kind with the durability it runs at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// The backend.
    pub kind: Kind,
    /// Its durability (ignored by memory).
    pub durability: Durability,
}

impl Config {
    /// Memory, and YAML and SQLite at both durability levels.
    pub fn all() -> Vec<Config> {
        let mut all = vec![Config {
            kind: Kind::Memory,
            durability: Durability::Relaxed,
        }];
        for kind in [Kind::Yaml, Kind::Sqlite] {
            for durability in [Durability::Full, Durability::Relaxed] {
                all.push(Config { kind, durability });
            }
        }
        all
    }

    /// YAML and SQLite at both durability levels.
    pub fn on_disk() -> Vec<Config> {
        Config::all()
            .into_iter()
            .filter(|c| c.kind != Kind::Memory)
            .collect()
    }

    /// The `durability` column: `full`, `relaxed`, or `-` for memory.
    pub fn durability_name(self) -> &'static str {
        match (self.kind, self.durability) {
            (Kind::Memory, _) => "-",
            (_, Durability::Full) => "full",
            (_, Durability::Relaxed) => "relaxed",
        }
    }

    /// Where this configuration's store lives under `dir`: a folder for
    /// YAML, a file for SQLite.
    pub fn location(self, dir: &Path) -> PathBuf {
        match self.kind {
            Kind::Sqlite => dir.join("store.sqlite"),
            _ => dir.join("yaml"),
        }
    }

    /// Opens a handle on the store at `location`.
    ///
    /// # Errors
    /// The backend's errors when opening.
    pub fn open(self, location: &Path) -> Result<Arc<dyn StorageBackend>> {
        Ok(match self.kind {
            Kind::Memory => Arc::new(MemoryBackend::new()),
            Kind::Yaml => Arc::new(YamlBackend::open_with(
                location,
                YamlOptions {
                    durability: self.durability,
                    ..YamlOptions::default()
                },
            )?),
            Kind::Sqlite => Arc::new(SqliteBackend::open_with(
                location,
                SqliteOptions {
                    durability: self.durability,
                    ..SqliteOptions::default()
                },
            )?),
        })
    }
}

/// A backend wrapper that counts the commits that lost a race (a conflict
/// or a changed guard). The engine re-reads and re-applies after each one
/// for a write without a revision precondition, so for patches the count
/// is the number of engine retries; the engine itself exposes no counter.
#[derive(Debug)]
pub struct Counting {
    inner: Arc<dyn StorageBackend>,
    lost: AtomicU64,
}

impl Counting {
    /// Wraps a backend.
    pub fn new(inner: Arc<dyn StorageBackend>) -> Arc<Counting> {
        Arc::new(Counting {
            inner,
            lost: AtomicU64::new(0),
        })
    }

    /// The commits that lost a race so far.
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }

    /// A store on this wrapper with default options.
    pub fn store(self: &Arc<Self>) -> Store {
        Store::with_options(self.clone(), StoreOptions::default())
    }
}

impl StorageBackend for Counting {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn read(&self, key: &Key) -> Result<Option<Record>> {
        self.inner.read(key)
    }

    fn read_cached(&self, key: &Key) -> Option<Record> {
        self.inner.read_cached(key)
    }

    fn commit(&self, commit: &Commit<'_>) -> Result<CommitOutcome> {
        let outcome = self.inner.commit(commit)?;
        if outcome != CommitOutcome::Committed {
            self.lost.fetch_add(1, Ordering::Relaxed);
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

/// The patch every group times: a merge patch setting `counter` to `i`.
///
/// # Errors
/// The store's errors.
pub fn patch_counter(
    store: &Store,
    collection: &str,
    name: &str,
    i: usize,
) -> std::result::Result<(), crate::error::CliError> {
    store
        .patch(
            collection,
            name,
            &revstore::Patch::Merge(json!({ "counter": i })),
            revstore::Precondition::Any,
        )
        .map(drop)
        .map_err(crate::error::CliError::from)
}

/// A model-like body (a description, joins and a list of column
/// definitions) of about `bytes` bytes as compact JSON.
pub fn body_of_size(bytes: usize) -> Value {
    let mut columns = Vec::new();
    let mut size = 120;
    let mut i = 0usize;
    while size < bytes {
        let column = json!({
            "name": format!("column_{i}"),
            "type": if i % 3 == 0 { "string" } else { "integer" },
            "description": format!("Column {i} of the orders model, kept for the benchmark"),
            "nullable": i % 2 == 0,
        });
        size += column.to_string().len() + 1;
        columns.push(column);
        i += 1;
    }
    json!({
        "description": "Orders placed by customers",
        "joins": ["customers", "products"],
        "counter": 0,
        "columns": columns,
    })
}

/// The body of [`body_of_size`] as a [`Body`].
pub fn body_map_of_size(bytes: usize) -> Body {
    match body_of_size(bytes) {
        Value::Object(map) => map,
        _ => Body::new(),
    }
}

/// A size in bytes as `1 KiB`, `256 KiB`, `1 MiB`.
pub fn size_name(bytes: usize) -> String {
    if bytes >= 1 << 20 && bytes % (1 << 20) == 0 {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{} KiB", bytes >> 10)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_have_about_the_size_asked() {
        for bytes in [1 << 10, 16 << 10, 256 << 10] {
            let len = body_of_size(bytes).to_string().len();
            assert!(len >= bytes && len < bytes + 200, "{bytes}: {len}");
        }
    }

    #[test]
    fn counting_counts_lost_races() {
        let counting = Counting::new(Arc::new(MemoryBackend::new()));
        let store = counting.store();
        store.create("c", "n", json!({"a": 1})).unwrap();
        assert!(store
            .replace("c", "n", json!({}), revstore::Precondition::Revision(7))
            .is_err());
        // A revision precondition that fails before the commit is not a
        // lost race; nothing raced here.
        assert_eq!(counting.lost(), 0);
    }

    #[test]
    fn kinds_round_trip() {
        for kind in [Kind::Memory, Kind::Yaml, Kind::Sqlite] {
            assert_eq!(Kind::parse(kind.name()), Some(kind));
        }
        assert_eq!(Config::all().len(), 5);
        assert_eq!(size_name(1 << 20), "1 MiB");
        assert_eq!(size_name(16 << 10), "16 KiB");
    }
}
