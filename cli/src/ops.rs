//! The operations the tool performs, shared by the one-shot commands and
//! `batch`, and their results in JSON form.

use revstore::{Body, Entry, Error, Key, Patch, Precondition, Store};
use serde_json::{json, Map, Value};

use crate::error::CliError;

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
        /// Its body.
        body: Body,
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
    })
}

impl Outcome {
    /// The outcome as a JSON object:
    /// `{"collection","name","revision","body"}` for a document,
    /// `{"collection","name","revision"}` for a delete,
    /// `{"collection","documents":[{"name","revision"},…]}` for a listing.
    pub fn to_json(&self) -> Map<String, Value> {
        let value = match self {
            Outcome::Document {
                collection,
                name,
                revision,
                body,
            } => {
                json!({"collection": collection, "name": name, "revision": revision, "body": body})
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
}
