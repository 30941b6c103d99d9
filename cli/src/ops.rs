//! The operations the tool performs, shared by the one-shot commands and
//! `batch`, and their results in JSON form.

use std::sync::Arc;

use revstore::{
    Body, Change, Entry, Error, Key, MigrationMode, MigrationReport, Patch, Precondition, Store,
};
use serde_json::{json, Map, Value};

use crate::error::CliError;

/// The most changes one [`Op::Changes`] answers; a reader pages on with
/// the answer's `next_since`.
pub const MAX_CHANGES_PER_ANSWER: usize = 10_000;

/// One operation on a store.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Read a live document.
    Get {
        /// The collection.
        collection: String,
        /// The document name.
        name: String,
    },
    /// Write a whole body.
    Put {
        /// The collection.
        collection: String,
        /// The document name.
        name: String,
        /// The new body (must be a mapping; the store checks it).
        body: Value,
        /// `Any` (create or overwrite), `Absent` (create only) or
        /// `Revision(r)` (compare-and-swap).
        precondition: Precondition,
    },
    /// Patch the current body.
    Patch {
        /// The collection.
        collection: String,
        /// The document name.
        name: String,
        /// A merge patch or a JSON Patch.
        patch: Patch,
        /// `Any` (re-applied after lost races) or `Revision(r)`.
        precondition: Precondition,
    },
    /// Delete a live document, leaving a tombstone.
    Delete {
        /// The collection.
        collection: String,
        /// The document name.
        name: String,
        /// `Any` or `Revision(r)`.
        precondition: Precondition,
    },
    /// List the live documents of a collection.
    List {
        /// The collection.
        collection: String,
    },
    /// Read a collection's schema document.
    SchemaGet {
        /// The collection the schema is for.
        collection: String,
    },
    /// Set a collection's schema (checked before it is written).
    SchemaSet {
        /// The collection the schema is for.
        collection: String,
        /// The schema document.
        schema: Value,
        /// `Any`, `Absent` (only if there is none) or `Revision(r)`.
        precondition: Precondition,
    },
    /// Remove a collection's schema.
    SchemaDelete {
        /// The collection the schema is for.
        collection: String,
        /// `Any` or `Revision(r)`.
        precondition: Precondition,
    },
    /// Report, or strip, attributes the collection's schema does not declare.
    Migrate {
        /// The collection.
        collection: String,
        /// Report only, or strip.
        mode: MigrationMode,
        /// Start after this document name (a previous run's resume point).
        resume_after: Option<String>,
        /// Examine at most this many documents (at least 1); `None`: all.
        batch: Option<usize>,
    },
    /// Read committed changes after a cursor, without waiting for more.
    Changes {
        /// Only changes with a larger seq.
        since: u64,
        /// At most this many (1 to [`MAX_CHANGES_PER_ANSWER`]).
        limit: usize,
    },
    /// Read the seq of the newest committed change.
    LastSeq,
}

/// What a successful [`Op`] produced.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A document that was read or written.
    Document {
        /// The collection.
        collection: String,
        /// The document name.
        name: String,
        /// Its revision.
        revision: u64,
        /// Its body (shared with the store).
        body: Arc<Body>,
    },
    /// A delete and the revision of its tombstone.
    Deleted {
        /// The collection.
        collection: String,
        /// The document name.
        name: String,
        /// The tombstone's revision.
        revision: u64,
    },
    /// The live documents of a collection, sorted by name.
    Listed {
        /// The collection.
        collection: String,
        /// Names and revisions.
        entries: Vec<Entry>,
    },
    /// A schema document that was read or written.
    Schema {
        /// The collection the schema is for.
        collection: String,
        /// The schema document's revision.
        revision: u64,
        /// The schema document.
        schema: Arc<Body>,
    },
    /// A removed schema and the revision of its tombstone.
    SchemaDeleted {
        /// The collection the schema was for.
        collection: String,
        /// The tombstone's revision.
        revision: u64,
    },
    /// What a migration found or removed.
    Migrated {
        /// The collection.
        collection: String,
        /// Whether attributes were only reported or stripped.
        mode: MigrationMode,
        /// The engine's report.
        report: MigrationReport,
    },
    /// Changes after a cursor, in commit order.
    Changes {
        /// The cursor asked for.
        since: u64,
        /// The changes.
        changes: Vec<Change>,
    },
    /// The seq of the newest committed change (0 when none).
    LastSeq(u64),
}

/// Runs one operation.
///
/// # Errors
/// The store's error; reading a missing document is
/// [`revstore::Error::NotFound`] naming the key.
pub fn execute(store: &Store, op: Op) -> Result<Outcome, CliError> {
    let document = |collection: String, name: String, doc: revstore::Document| Outcome::Document {
        collection,
        name,
        revision: doc.revision,
        body: doc.body,
    };
    Ok(match op {
        Op::Get { collection, name } => match store.get(&collection, &name)? {
            Some(doc) => document(collection, name, doc),
            None => {
                let key = Key::new(&collection, &name)?;
                return Err(Error::NotFound { key }.into());
            }
        },
        Op::Put {
            collection,
            name,
            body,
            precondition,
        } => {
            let doc = store.replace(&collection, &name, body, precondition)?;
            document(collection, name, doc)
        }
        Op::Patch {
            collection,
            name,
            patch,
            precondition,
        } => {
            let doc = store.patch(&collection, &name, &patch, precondition)?;
            document(collection, name, doc)
        }
        Op::Delete {
            collection,
            name,
            precondition,
        } => {
            let revision = store.delete(&collection, &name, precondition)?;
            Outcome::Deleted {
                collection,
                name,
                revision,
            }
        }
        Op::List { collection } => {
            let entries = store.list(&collection)?;
            Outcome::Listed {
                collection,
                entries,
            }
        }
        Op::SchemaGet { collection } => match store.get_schema(&collection)? {
            Some(doc) => Outcome::Schema {
                collection,
                revision: doc.revision,
                schema: doc.body,
            },
            None => {
                let key = Key::new_reserved(revstore::SCHEMA_COLLECTION, &collection)?;
                return Err(Error::NotFound { key }.into());
            }
        },
        Op::SchemaSet {
            collection,
            schema,
            precondition,
        } => {
            let doc = store.set_schema(&collection, schema, precondition)?;
            Outcome::Schema {
                collection,
                revision: doc.revision,
                schema: doc.body,
            }
        }
        Op::SchemaDelete {
            collection,
            precondition,
        } => {
            let revision = store.delete_schema(&collection, precondition)?;
            Outcome::SchemaDeleted {
                collection,
                revision,
            }
        }
        Op::Migrate {
            collection,
            mode,
            resume_after,
            batch,
        } => {
            let report = store.migrate(
                &collection,
                mode,
                resume_after.as_deref(),
                batch.unwrap_or(usize::MAX),
            )?;
            Outcome::Migrated {
                collection,
                mode,
                report,
            }
        }
        Op::Changes { since, limit } => {
            if !(1..=MAX_CHANGES_PER_ANSWER).contains(&limit) {
                return Err(CliError::Usage(format!(
                    "the limit of changes is 1 to {MAX_CHANGES_PER_ANSWER}, not {limit}"
                )));
            }
            let changes = store.changes_since(since, limit)?;
            Outcome::Changes { since, changes }
        }
        Op::LastSeq => Outcome::LastSeq(store.last_seq()?),
    })
}

/// A change as the tool prints it:
/// `{"seq","collection","name","revision","kind"}`.
pub fn change_to_json(change: &Change) -> Value {
    json!({
        "seq": change.seq,
        "collection": change.key.collection(),
        "name": change.key.name(),
        "revision": change.revision,
        "kind": change.kind.as_str(),
    })
}

/// The stable name of a migration mode (`report`, `strip`).
pub fn mode_name(mode: MigrationMode) -> &'static str {
    match mode {
        MigrationMode::Report => "report",
        MigrationMode::Strip => "strip",
    }
}

impl Outcome {
    /// The outcome as a JSON object:
    /// `{"collection","name","revision","body"}` for a document,
    /// `{"collection","name","revision"}` for a delete,
    /// `{"collection","documents":[{"name","revision"},…]}` for a listing,
    /// `{"collection","revision","schema"}` for a schema,
    /// `{"collection","revision"}` for a removed schema,
    /// `{"collection","mode","schema_revision","examined","documents":
    /// [{"name","revision","undeclared"},…],"resume_after"}` for a
    /// migration (`resume_after` is `null` when it reached the end),
    /// `{"changes":[…],"next_since"}` for changes (each as
    /// [`change_to_json`]; `next_since` is the cursor to ask with next),
    /// `{"last_seq"}` for the newest seq.
    pub fn to_json(&self) -> Map<String, Value> {
        let value = match self {
            Outcome::Document {
                collection,
                name,
                revision,
                body,
            } => {
                json!({"collection": collection, "name": name, "revision": revision, "body": &**body})
            }
            Outcome::Deleted {
                collection,
                name,
                revision,
            } => json!({"collection": collection, "name": name, "revision": revision}),
            Outcome::Listed {
                collection,
                entries,
            } => json!({
                "collection": collection,
                "documents": entries
                    .iter()
                    .map(|e| json!({"name": e.name, "revision": e.revision}))
                    .collect::<Vec<_>>(),
            }),
            Outcome::Schema {
                collection,
                revision,
                schema,
            } => json!({"collection": collection, "revision": revision, "schema": &**schema}),
            Outcome::SchemaDeleted {
                collection,
                revision,
            } => json!({"collection": collection, "revision": revision}),
            Outcome::Migrated {
                collection,
                mode,
                report,
            } => json!({
                "collection": collection,
                "mode": mode_name(*mode),
                "schema_revision": report.schema_revision,
                "examined": report.examined,
                "documents": report
                    .documents
                    .iter()
                    .map(|d| json!({"name": d.name, "revision": d.revision, "undeclared": d.undeclared}))
                    .collect::<Vec<_>>(),
                "resume_after": report.resume_after,
            }),
            Outcome::Changes { since, changes } => json!({
                "changes": changes.iter().map(change_to_json).collect::<Vec<_>>(),
                "next_since": changes.last().map_or(*since, |c| c.seq),
            }),
            Outcome::LastSeq(seq) => json!({ "last_seq": seq }),
        };
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use revstore::MemoryBackend;

    #[test]
    fn operations_round_trip_on_memory() {
        let store = Store::open(MemoryBackend::new());
        let put = Op::Put {
            collection: "c".into(),
            name: "n".into(),
            body: json!({"a": 1}),
            precondition: Precondition::Absent,
        };
        let out = execute(&store, put.clone()).unwrap();
        assert_eq!(
            Value::Object(out.to_json()),
            json!({"collection": "c", "name": "n", "revision": 1, "body": {"a": 1}})
        );
        let err = execute(&store, put).unwrap_err();
        assert_eq!(err.exit_code(), 3);
        let listed = execute(
            &store,
            Op::List {
                collection: "c".into(),
            },
        )
        .unwrap();
        assert_eq!(
            Value::Object(listed.to_json()),
            json!({"collection": "c", "documents": [{"name": "n", "revision": 1}]})
        );
        let missing = execute(
            &store,
            Op::Get {
                collection: "c".into(),
                name: "other".into(),
            },
        )
        .unwrap_err();
        assert_eq!(missing.kind(), "not_found");
        assert_eq!(missing.exit_code(), 4);
    }

    #[test]
    fn schema_and_feed_operations_on_memory() {
        let store = Store::open(MemoryBackend::new());
        let get = Op::SchemaGet {
            collection: "c".into(),
        };
        let missing = execute(&store, get.clone()).unwrap_err();
        assert_eq!(missing.exit_code(), 4);
        assert!(missing.to_string().contains("_schema/c"), "{missing}");
        let schema = json!({"attributes": [{"name": "a", "type": "integer"}]});
        let set = Op::SchemaSet {
            collection: "c".into(),
            schema: schema.clone(),
            precondition: Precondition::Absent,
        };
        assert_eq!(
            Value::Object(execute(&store, set).unwrap().to_json()),
            json!({"collection": "c", "revision": 1, "schema": schema})
        );
        assert_eq!(
            Value::Object(execute(&store, get).unwrap().to_json())["revision"],
            1
        );
        let changes = |since, limit| execute(&store, Op::Changes { since, limit });
        assert_eq!(
            Value::Object(changes(0, 5).unwrap().to_json()),
            json!({"changes": [{"seq": 1, "collection": "_schema", "name": "c",
                                "revision": 1, "kind": "created"}],
                   "next_since": 1})
        );
        for limit in [0, MAX_CHANGES_PER_ANSWER + 1] {
            assert_eq!(changes(0, limit).unwrap_err().exit_code(), 2);
        }
        let deleted = execute(
            &store,
            Op::SchemaDelete {
                collection: "c".into(),
                precondition: Precondition::Revision(1),
            },
        )
        .unwrap();
        assert_eq!(
            Value::Object(deleted.to_json()),
            json!({"collection": "c", "revision": 2})
        );
        assert_eq!(
            Value::Object(execute(&store, Op::LastSeq).unwrap().to_json()),
            json!({"last_seq": 2})
        );
    }
}
