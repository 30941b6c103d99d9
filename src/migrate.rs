//! Explicit, resumable migration of documents to a tightened schema.

use serde_json::Value;

use crate::error::{Error, Result};
use crate::key::{validate_collection, Key};
use crate::precondition::Precondition;
use crate::store::{Store, SCHEMA_COLLECTION};

/// What [`Store::migrate`] does with attributes the schema does not declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationMode {
    /// Only report them; write nothing.
    Report,
    /// Remove them, one compare-and-swap per document.
    Strip,
}

/// One document the migration found undeclared attributes in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigratedDocument {
    /// The document's name.
    pub name: String,
    /// Its revision after the migration (unchanged when only reporting).
    pub revision: u64,
    /// The undeclared attributes found (and removed, when stripping).
    pub undeclared: Vec<String>,
}

/// The outcome of one [`Store::migrate`] call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// The schema revision the documents were compared against (0: none).
    pub schema_revision: u64,
    /// Documents examined in this call.
    pub examined: usize,
    /// Those with undeclared attributes.
    pub documents: Vec<MigratedDocument>,
    /// Pass this as `resume_after` to continue where this call stopped;
    /// `None` when the whole collection was examined.
    pub resume_after: Option<String>,
}

impl Store {
    /// Finds, and with [`MigrationMode::Strip`] removes, attributes that
    /// the collection's schema no longer declares, in name order, at most
    /// `batch` documents per call. Each document is one compare-and-swap:
    /// a concurrent write makes the migration re-read that document and
    /// try again, so nothing written meanwhile is lost. Resumable: pass the
    /// report's `resume_after` to the next call.
    ///
    /// # Errors
    /// [`Error::InvalidName`], [`Error::Corrupt`] for a stored schema that
    /// does not parse, [`Error::SchemaViolation`] when removing an
    /// attribute would break the schema (a required attribute that is not
    /// declared cannot exist, so only on a concurrent schema change), and
    /// the backend's errors.
    pub fn migrate(
        &self,
        collection: &str,
        mode: MigrationMode,
        resume_after: Option<&str>,
        batch: usize,
    ) -> Result<MigrationReport> {
        validate_collection(collection)?;
        let schema_key = Key::new_reserved(SCHEMA_COLLECTION, collection)?;
        let batch = batch.max(1);
        let mut report = MigrationReport {
            schema_revision: self.load_schema(&schema_key)?.revision,
            examined: 0,
            documents: Vec::new(),
            resume_after: None,
        };
        let entries = self.list(collection)?;
        let mut pending = entries
            .iter()
            .filter(|e| resume_after.is_none_or(|after| e.name.as_str() > after))
            .peekable();
        while report.examined < batch {
            let Some(entry) = pending.next() else { break };
            report.examined += 1;
            if let Some(done) = self.migrate_one(&schema_key, collection, &entry.name, mode)? {
                report.documents.push(done);
            }
            if pending.peek().is_some() {
                report.resume_after = Some(entry.name.clone());
            }
        }
        if pending.peek().is_none() {
            report.resume_after = None;
        }
        Ok(report)
    }

    fn migrate_one(
        &self,
        schema_key: &Key,
        collection: &str,
        name: &str,
        mode: MigrationMode,
    ) -> Result<Option<MigratedDocument>> {
        loop {
            let Some(compiled) = self.load_schema(schema_key)?.compiled else {
                return Ok(None);
            };
            let Some(doc) = self.get(collection, name)? else {
                return Ok(None); // deleted meanwhile
            };
            let undeclared = compiled.undeclared_attributes(&doc.body);
            if undeclared.is_empty() {
                return Ok(None);
            }
            if mode == MigrationMode::Report {
                return Ok(Some(MigratedDocument {
                    name: name.to_owned(),
                    revision: doc.revision,
                    undeclared,
                }));
            }
            let mut body = std::sync::Arc::unwrap_or_clone(doc.body);
            for attribute in &undeclared {
                body.shift_remove(attribute);
            }
            match self.replace(
                collection,
                name,
                Value::Object(body),
                Precondition::Revision(doc.revision),
            ) {
                Ok(written) => {
                    return Ok(Some(MigratedDocument {
                        name: name.to_owned(),
                        revision: written.revision,
                        undeclared,
                    }))
                }
                // A concurrent write (or delete): look again.
                Err(Error::Conflict { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
    }
}
