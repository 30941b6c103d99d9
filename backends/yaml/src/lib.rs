//! The YAML backend of revstore (scaffold: being written).
#![allow(missing_docs, unused_variables)]
use std::path::Path;

use revstore::{Durability, Result};

#[derive(Debug, Clone, Copy, Default)]
pub struct YamlOptions {
    pub durability: Durability,
}

#[derive(Debug)]
pub struct YamlBackend {}

impl YamlBackend {
    pub fn open(root: impl AsRef<Path>) -> Result<YamlBackend> {
        YamlBackend::open_with(root, YamlOptions::default())
    }
    pub fn open_with(root: impl AsRef<Path>, options: YamlOptions) -> Result<YamlBackend> {
        todo!("scaffold")
    }
}

impl revstore::StorageBackend for YamlBackend {
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
