//! # revstore
//!
//! An embeddable storage engine for named, revisioned documents —
//! configuration-like records such as semantic-layer models or entity
//! definitions — with one promise: **concurrent writers (threads, handles
//! and OS processes) never lose an update.**
//!
//! - A document is a [`Body`] (a JSON-model mapping, key order kept) under a
//!   [`Key`] (collection + name), with a [`revision`](Document::revision)
//!   that is 1 on create and +1 on every committed write, never reused.
//! - Writes take a [`Precondition`]: `Any`, `Absent` (create) or
//!   `Revision(r)` (compare-and-swap). A failed one is [`Error::Conflict`]
//!   and changes nothing.
//! - [`Patch`]es (RFC 7396 merge, RFC 6902 JSON Patch) and
//!   [`Store::update`] closures apply to the *current* body: when a
//!   concurrent writer wins, the engine re-reads and re-applies, so patches
//!   to different fields all survive.
//! - A collection may have a **live schema** (`_schema/<collection>`, see
//!   [`schema`] and [`Store::set_schema`]): every write is validated against
//!   the schema revision its commit is conditional on, so a schema change
//!   applies to the very next write of every handle and process. An
//!   undeclared attribute is rejected, never dropped.
//! - A **change feed** ([`Store::changes_since`], [`Store::watch`]) reports
//!   every committed write in commit order with a store-wide `seq`;
//!   [`CachedStore`] is a read-through cache that follows it.
//! - One [`StorageBackend`] trait with a handful of primitives; backends:
//!   [`MemoryBackend`] (here), `revstore-yaml` (one human-editable file per
//!   document) and `revstore-sqlite`.
//!
//! ```
//! use revstore::{MemoryBackend, Patch, Precondition, Store};
//! use serde_json::json;
//!
//! # fn main() -> revstore::Result<()> {
//! let store = Store::open(MemoryBackend::new());
//! store.create("models", "orders", json!({"description": "Orders", "joins": []}))?;
//!
//! // Two writers patch different fields; both survive.
//! let other = store.clone();
//! std::thread::spawn(move || {
//!     other.patch("models", "orders", &Patch::Merge(json!({"cache": {"rows": 42}})), Precondition::Any)
//! })
//! .join()
//! .expect("thread")?;
//! store.patch("models", "orders", &Patch::Merge(json!({"description": "All orders"})), Precondition::Any)?;
//!
//! let doc = store.get("models", "orders")?.expect("exists");
//! assert_eq!(doc.revision, 3);
//! assert_eq!(doc.body["description"], "All orders");
//! assert_eq!(doc.body["cache"]["rows"], 42);
//!
//! // A compare-and-swap against a stale revision is refused.
//! let err = store
//!     .replace("models", "orders", json!({}), Precondition::Revision(1))
//!     .unwrap_err();
//! assert!(matches!(err, revstore::Error::Conflict { .. }));
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod backend;
mod body;
mod cache;
mod decode_cache;
mod durability;
mod error;
mod feed;
mod guesses;
mod key;
mod memory;
mod migrate;
mod patch;
mod precondition;
mod retry;
pub mod schema;
mod store;
#[cfg(feature = "testkit")]
pub mod testkit;
mod watch;

pub use backend::{Commit, CommitOutcome, Entry, Guard, Record, StorageBackend};
pub use body::{value_kind, Body, Document, Limits, Versioned};
pub use cache::CachedStore;
pub use decode_cache::{DecodeCache, DEFAULT_DECODE_CACHE_BYTES};
pub use durability::Durability;
pub use error::{Error, LimitKind, NameKind, Result};
pub use feed::{parse_retention, Change, ChangeKind, DEFAULT_RETAINED_CHANGES};
pub use key::{validate_collection, validate_name, Key, MAX_NAME_LEN};
pub use memory::MemoryBackend;
pub use migrate::{MigratedDocument, MigrationMode, MigrationReport};
pub use patch::{Patch, PreparedPatch};
pub use precondition::{Current, Precondition};
pub use retry::RetryPolicy;
pub use store::{Store, StoreOptions, SCHEMA_COLLECTION};
pub use watch::Watch;

/// The README's examples, compiled and run as documentation tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeExamples;
