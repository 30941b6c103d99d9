//! The SQLite backend of revstore (scaffold: being written).
#![allow(missing_docs, unused_variables)]
use std::path::Path;

use revstore::{Durability, Result};

#[derive(Debug, Clone, Copy, Default)]
pub struct SqliteOptions {
    pub durability: Durability,
}

#[derive(Debug)]
pub struct SqliteBackend {}

impl SqliteBackend {
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteBackend> {
        SqliteBackend::open_with(path, SqliteOptions::default())
    }
    pub fn open_with(path: impl AsRef<Path>, options: SqliteOptions) -> Result<SqliteBackend> {
        todo!("scaffold")
    }
}

impl revstore::StorageBackend for SqliteBackend {
    fn kind(&self) -> &'static str {
        todo!("scaffold")
    }
    fn read(&self, key: &revstore::Key) -> Result<Option<revstore::Record>> {
        todo!("scaffold")
    }
    fn commit(&self, commit: &revstore::Commit<'_>) -> Result<revstore::CommitOutcome> {
        todo!("scaffold")
    }
    fn list(&self, collection: &str) -> Result<Vec<revstore::Entry>> {
        todo!("scaffold")
    }
}
