//! [`SqliteTestBackend`]: runs revstore's shared conformance and
//! concurrency suites on this backend (feature `testkit`).

use std::path::PathBuf;

use revstore::testkit::{TestBackend, TestLocation};
use revstore::{Durability, Store};

use crate::{SqliteBackend, SqliteOptions};

/// The SQLite backend under test: every [`fresh`](TestBackend::fresh)
/// location is a `store.db` in a new temporary folder, deleted when the
/// location is dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SqliteTestBackend {
    /// The durability every handle is opened with (default
    /// [`Durability::Full`]).
    pub durability: Durability,
}

/// One temporary database file; the folder lives as long as this does.
struct SqliteLocation {
    _dir: tempfile::TempDir,
    path: PathBuf,
    options: SqliteOptions,
}

impl TestLocation for SqliteLocation {
    /// Opens a new, independent [`SqliteBackend`] on the file.
    ///
    /// # Panics
    /// When the file cannot be opened: the trait has no error channel, and
    /// a test cannot go on without its store.
    fn open(&self) -> Store {
        match SqliteBackend::open_with(&self.path, self.options) {
            Ok(backend) => Store::open(backend),
            Err(e) => panic!("cannot open test store {}: {e}", self.path.display()),
        }
    }

    fn url(&self) -> Option<String> {
        Some(format!("sqlite:{}", self.path.display()))
    }
}

impl TestBackend for SqliteTestBackend {
    fn name(&self) -> &str {
        "sqlite"
    }

    /// A new temporary folder holding `store.db`.
    ///
    /// # Panics
    /// When no temporary folder can be created.
    fn fresh(&self) -> Box<dyn TestLocation> {
        self.location(SqliteOptions {
            durability: self.durability,
            ..SqliteOptions::default()
        })
    }

    /// As [`fresh`](TestBackend::fresh), every handle keeping `retain`
    /// changes.
    ///
    /// # Panics
    /// When no temporary folder can be created.
    fn fresh_with_retention(&self, retain: u64) -> Box<dyn TestLocation> {
        self.location(SqliteOptions {
            durability: self.durability,
            retain_changes: retain,
            ..SqliteOptions::default()
        })
    }
}

impl SqliteTestBackend {
    /// A new temporary folder holding `store.db`, opened with `options`.
    fn location(&self, options: SqliteOptions) -> Box<dyn TestLocation> {
        let dir = match tempfile::Builder::new()
            .prefix("revstore-sqlite-")
            .tempdir()
        {
            Ok(dir) => dir,
            Err(e) => panic!("cannot create a temporary folder for a test store: {e}"),
        };
        let path = dir.path().join("store.db");
        Box::new(SqliteLocation {
            _dir: dir,
            path,
            options,
        })
    }
}
