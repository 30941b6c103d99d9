//! The raw baseline ("floor") of one backend configuration: the same
//! bytes written, read and listed without revstore.
//!
//! Writes go to files of their own (a raw write into the store's files
//! would break their seals); reads and listings read the store's own
//! files and rows, so they see exactly the data revstore reads.

use std::path::{Path, PathBuf};

use revstore::{Body, Key, Store};

use super::raw::{list_folder, RawFile, RawMap, RawSqlite};
use super::subject::{Config, Kind};
use crate::error::CliError;

/// A raw baseline for one configuration.
#[derive(Debug)]
pub enum Floor {
    /// Memory: a mutex-guarded map holding copies of the body.
    Map {
        /// The map.
        map: RawMap,
        /// The body written.
        body: Body,
    },
    /// YAML: whole-file replacement of the bytes revstore-yaml wrote.
    File {
        /// The writer, in a folder of its own.
        file: RawFile,
        /// The bytes revstore-yaml wrote for the sample document.
        bytes: Vec<u8>,
        /// The store's root folder, for reads and listings.
        root: PathBuf,
    },
    /// SQLite: the same table, pragmas and conditional update.
    Sql {
        /// A database of its own for the writes.
        writes: Box<RawSqlite>,
        /// A connection to the store's database for reads and listings.
        store: RawSqlite,
        /// The JSON text revstore-sqlite stores for the sample document.
        json: String,
    },
}

impl Floor {
    /// The floor of `config`, whose store is at `location`, writing the
    /// representation of `collection/name` as the store holds it now.
    ///
    /// # Errors
    /// The sample document cannot be read; the file system's and SQLite's
    /// errors.
    pub fn new(
        config: Config,
        dir: &Path,
        location: &Path,
        store: &Store,
        collection: &str,
        name: &str,
    ) -> Result<Floor, CliError> {
        let key = Key::new(collection, name)?;
        let body = store
            .get(collection, name)?
            .ok_or(revstore::Error::NotFound { key })?
            .body;
        // The floor writes a body of its own, as a raw store would.
        let body = std::sync::Arc::unwrap_or_clone(body);
        Ok(match config.kind {
            Kind::Memory => Floor::Map {
                map: RawMap::default(),
                body,
            },
            Kind::Yaml => {
                let path = location.join(collection).join(format!("{name}.yaml"));
                let bytes = std::fs::read(&path)
                    .map_err(|e| CliError::Store(revstore::Error::io("read", &path, e)))?;
                let raw_dir = dir.join("raw-files");
                Floor::File {
                    file: RawFile::new(&raw_dir, config.durability)?,
                    bytes,
                    root: location.to_path_buf(),
                }
            }
            Kind::Sqlite => {
                let json = serde_json::Value::Object(body).to_string();
                let writes = Box::new(RawSqlite::open(&dir.join("raw.sqlite"), config.durability)?);
                let store = RawSqlite::open(location, config.durability)?;
                Floor::Sql {
                    writes,
                    store,
                    json,
                }
            }
        })
    }

    /// Creates a new entry under `name`.
    ///
    /// # Errors
    /// The file system's and SQLite's errors.
    pub fn create(&mut self, collection: &str, name: &str) -> Result<(), CliError> {
        match self {
            Floor::Map { map, body } => {
                map.put(&format!("{collection}/{name}"), body);
                Ok(())
            }
            Floor::File { file, bytes, .. } => file.write(&format!("{name}.yaml"), bytes),
            Floor::Sql { writes, json, .. } => writes.put(collection, name, json),
        }
    }

    /// Overwrites `name` (which [`create`](Floor::create) made) on its
    /// revision.
    ///
    /// # Errors
    /// The file system's and SQLite's errors.
    pub fn overwrite(&mut self, collection: &str, name: &str) -> Result<(), CliError> {
        match self {
            Floor::Sql { writes, json, .. } => writes.update(collection, name, json).map(drop),
            _ => self.create(collection, name),
        }
    }

    /// The floor of a revstore write's own design, raw: for SQLite
    /// [`RawSqlite::update_with_feed`], for YAML
    /// [`RawFile::write_with_feed`]. `None` for memory.
    ///
    /// # Errors
    /// SQLite's errors.
    pub fn overwrite_with_feed(
        &mut self,
        collection: &str,
        name: &str,
    ) -> Option<Result<(), CliError>> {
        match self {
            Floor::Sql { writes, json, .. } => {
                Some(writes.update_with_feed(collection, name, json).map(drop))
            }
            Floor::File { file, bytes, .. } => Some(file.write_with_feed(name, bytes)),
            Floor::Map { .. } => None,
        }
    }

    /// Reads a document of the store raw (bytes or text, not parsed).
    ///
    /// # Errors
    /// The file system's and SQLite's errors.
    pub fn read(&mut self, collection: &str, name: &str) -> Result<(), CliError> {
        match self {
            Floor::Map { map, .. } => {
                std::hint::black_box(map.get(&format!("{collection}/{name}")));
            }
            Floor::File { root, .. } => {
                let path = root.join(collection).join(format!("{name}.yaml"));
                let bytes = std::fs::read(&path)
                    .map_err(|e| CliError::Store(revstore::Error::io("read", &path, e)))?;
                std::hint::black_box(bytes);
            }
            Floor::Sql { store, .. } => {
                std::hint::black_box(store.select(collection, name)?);
            }
        }
        Ok(())
    }

    /// Lists a collection of the store raw, returning how many it found.
    ///
    /// # Errors
    /// The file system's and SQLite's errors.
    pub fn list(&mut self, collection: &str) -> Result<usize, CliError> {
        Ok(match self {
            Floor::Map { map, .. } => map.list(&format!("{collection}/")).len(),
            Floor::File { root, .. } => list_folder(&root.join(collection))?.len(),
            Floor::Sql { store, .. } => store.list(collection)?.len(),
        })
    }
}
