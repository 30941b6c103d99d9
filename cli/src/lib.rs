//! The library half of the `revstore` command-line tool: opening a store
//! from a URL-like string, the operations and their JSON forms, the `batch`
//! protocol, printing the change feed, the multi-process demo, and the one
//! YAML text codec of the tool, and `revstore bench`'s measurements. Shared with tests, fuzz targets and scripts.
#![warn(missing_docs)]

pub mod batch;
pub mod bench;
pub mod demo;
pub mod error;
pub mod feed;
pub mod fuzzing;
pub mod ops;
pub mod text;

pub use error::{exit_code, CliError};

use std::path::Path;

use revstore::{
    parse_retention, Durability, Error, MemoryBackend, Result, Store, DEFAULT_RETAINED_CHANGES,
};
use revstore_postgres::PostgresBackend;
use revstore_sqlite::{SqliteBackend, SqliteOptions};
use revstore_yaml::{YamlBackend, YamlOptions};

/// Opens a store from `yaml:DIR`, `sqlite:FILE` or `memory:`, optionally
/// followed by options: `?durability=full|relaxed` and `retain=N` (how many
/// changes the change feed keeps), joined with `&`; or from a PostgreSQL
/// URL, `postgres://user@host:port/database?…` (also `postgresql://`),
/// whose query takes revstore's `durability`, `retain`, `namespace` and
/// `pool_size` beside libpq's parameters (see `revstore_postgres`).
///
/// # Errors
/// [`Error::InvalidConfig`] for an unknown scheme or option, and the
/// backend's errors when opening.
pub fn open_store(url: &str) -> Result<Store> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Store::open(PostgresBackend::open(url)?));
    }
    let invalid = |reason: &str| Error::InvalidConfig {
        input: url.to_owned(),
        reason: reason.to_owned(),
    };
    let (location, query) = match url.split_once('?') {
        Some((l, q)) => (l, Some(q)),
        None => (url, None),
    };
    let mut durability = Durability::default();
    let mut retain_changes = DEFAULT_RETAINED_CHANGES;
    for option in query.into_iter().flat_map(|q| q.split('&')) {
        match option.split_once('=') {
            Some(("durability", value)) => durability = value.parse()?,
            Some(("retain", value)) => retain_changes = parse_retention(value)?,
            _ => {
                return Err(invalid(&format!(
                "unknown option {option:?}; the options are durability=full|relaxed and retain=N"
            )))
            }
        }
    }
    let (scheme, path) = location
        .split_once(':')
        .ok_or_else(|| invalid("expected yaml:DIR, sqlite:FILE, memory: or postgres://…"))?;
    match scheme {
        "yaml" | "sqlite" if path.is_empty() => Err(invalid("the path is empty")),
        "yaml" => Ok(Store::open(YamlBackend::open_with(
            Path::new(path),
            YamlOptions {
                durability,
                retain_changes,
            },
        )?)),
        "sqlite" => Ok(Store::open(SqliteBackend::open_with(
            Path::new(path),
            SqliteOptions {
                durability,
                retain_changes,
                ..SqliteOptions::default()
            },
        )?)),
        "memory" if path.is_empty() => {
            Ok(Store::open(MemoryBackend::with_retention(retain_changes)))
        }
        "memory" => Err(invalid("memory: takes no path")),
        _ => Err(invalid(
            "unknown scheme; expected yaml:, sqlite:, memory: or postgres://",
        )),
    }
}
