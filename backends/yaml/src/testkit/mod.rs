//! This backend as seen by revstore's shared test suites, and the tools of
//! its own crash-safety suites (feature `testkit`): a file system that
//! fails any chosen step ([`faults`]), one that records every operation
//! so a power loss can be simulated afterwards ([`power`]), and one that
//! runs a test's hook before each lock ([`hooks`]).

pub mod faults;
pub mod hooks;
pub mod power;

use std::path::Path;

use revstore::testkit::{TestBackend, TestLocation};
use revstore::{Durability, Store};
use tempfile::TempDir;

use crate::{YamlBackend, YamlOptions};

/// Makes fresh YAML stores in temporary folders, with the given durability
/// (default [`Durability::Full`]).
#[derive(Debug, Default, Clone, Copy)]
pub struct YamlTestBackend {
    /// The durability every handle opened on a location uses.
    pub durability: Durability,
}

/// A temporary folder, deleted when the location is dropped.
struct YamlLocation {
    dir: TempDir,
    options: YamlOptions,
}

impl TestLocation for YamlLocation {
    /// Opens a new, independent [`YamlBackend`] on the folder.
    ///
    /// # Panics
    /// When the folder cannot be opened (test support only).
    fn open(&self) -> Store {
        let backend = YamlBackend::open_with(self.dir.path(), self.options)
            .unwrap_or_else(|e| panic!("opening the test store failed: {e}"));
        Store::open(backend)
    }

    fn url(&self) -> Option<String> {
        Some(format!("yaml:{}", self.dir.path().display()))
    }
}

impl TestBackend for YamlTestBackend {
    fn name(&self) -> &str {
        "yaml"
    }

    /// # Panics
    /// When no temporary folder can be created (test support only).
    fn fresh(&self) -> Box<dyn TestLocation> {
        self.fresh_with_retention(revstore::DEFAULT_RETAINED_CHANGES)
    }

    /// Every handle opened on the location keeps `retain` changes (at
    /// least 1).
    ///
    /// # Panics
    /// When no temporary folder can be created (test support only).
    fn fresh_with_retention(&self, retain: u64) -> Box<dyn TestLocation> {
        let dir = tempfile::Builder::new()
            .prefix("revstore-yaml-")
            .tempdir()
            .unwrap_or_else(|e| panic!("creating a temporary folder failed: {e}"));
        Box::new(YamlLocation {
            dir,
            options: YamlOptions {
                durability: self.durability,
                retain_changes: retain.max(1),
            },
        })
    }
}

/// Every staging file (`*.tmp`) under `root`, relative to it, sorted: what
/// a commit that failed or was refused must not leave behind.
///
/// # Panics
/// When a folder under `root` cannot be read (a test tool).
pub fn staging_debris(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut folders = vec![root.to_owned()];
    while let Some(folder) = folders.pop() {
        let entries = std::fs::read_dir(&folder)
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", folder.display()));
        for entry in entries {
            let path = entry
                .unwrap_or_else(|e| panic!("cannot list {}: {e}", folder.display()))
                .path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|e| e == "tmp") {
                let relative = path.strip_prefix(root).unwrap_or(&path);
                found.push(relative.display().to_string());
            }
        }
    }
    found.sort();
    found
}
