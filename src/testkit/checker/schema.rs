//! The live-schema check: no committed document revision breaks the
//! schema that was current when it committed, and every refusal was made
//! by a schema that could have been current.
//!
//! The feed gives the global commit order, `_schema/<collection>` changes
//! included; the history gives every body. Replaying the feed, the schema
//! current at a document change is the last schema change before it, and
//! the write is validated as the engine validates it: the new body
//! against the body at the previous revision (`None` on a create), so
//! that ratcheting checks only what changed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::schema::CompiledSchema;
use crate::testkit::history::{FeedRecord, Op, Outcome, Record};
use crate::{Body, ChangeKind, Key};

use super::reference::{self, State};
use super::{Formatter, Violation, ViolationKind};

/// The reserved collection of schema documents.
const SCHEMA_COLLECTION: &str = "_schema";

/// What a checked schema history contained.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchemaSummary {
    /// Document writes (creates and updates) validated against the schema
    /// current at their commit.
    pub validated: usize,
    /// Document writes committed while their collection had no schema.
    pub unchecked: usize,
    /// Deletes (never validated).
    pub deletes: usize,
    /// Schema changes (sets and deletes) in the feed.
    pub schema_changes: usize,
    /// Distinct (collection, schema revision) pairs some document write
    /// committed under.
    pub schema_revisions_used: usize,
    /// Writes refused with `schema_violation`, each explained by a schema
    /// revision current while it ran.
    pub refusals: usize,
}

/// Checks that every document change in `feed` (the whole feed of the
/// run, from seq 0, in order) satisfies the schema of its collection
/// current at that point, and that every write the history reports as
/// refused with `schema_violation` is refused by some schema revision on
/// some document revision that were current while it ran. Bodies come
/// from the committed writes of `records`, schema writes included (as
/// [`Op::Replace`]/[`Op::Delete`] records of `_schema/<collection>`).
///
/// # Errors
/// A [`Violation`] of kind [`ViolationKind::Schema`] naming the key,
/// revision, seq, op id and the schema revision broken; kind
/// [`ViolationKind::Feed`] when the feed names a revision whose body the
/// history does not know.
pub fn check_schema(records: &[Record], feed: &[FeedRecord]) -> Result<SchemaSummary, Violation> {
    let origin = records.iter().map(|r| r.invoke_ns).min().unwrap_or(0);
    let fmt = Formatter { origin };
    let mut chains: HashMap<(String, String), BTreeMap<u64, &Record>> = HashMap::new();
    for r in records {
        if let (true, Outcome::Ok { revision, .. }) = (r.op.is_write(), &r.outcome) {
            chains
                .entry((r.collection.clone(), r.name.clone()))
                .or_default()
                .insert(*revision, r);
        }
    }
    let history = Chains { chains, fmt };
    let mut summary = SchemaSummary::default();
    let mut compiled = Compiled::default();
    let mut current: HashMap<&str, u64> = HashMap::new();
    let mut used: std::collections::BTreeSet<(&str, u64)> = std::collections::BTreeSet::new();
    let mut last_seq = 0;
    for change in feed {
        let fail = |kind, message| Violation {
            kind,
            key: change.key_label(),
            message,
        };
        if change.seq <= last_seq {
            return Err(fail(
                ViolationKind::Feed,
                format!("seq {} follows seq {last_seq}", change.seq),
            ));
        }
        last_seq = change.seq;
        let new = history
            .state(&change.collection, &change.name, change.revision)
            .map_err(|m| fail(ViolationKind::Feed, format!("seq {}: {m}", change.seq)))?;
        if change.collection == SCHEMA_COLLECTION {
            summary.schema_changes += 1;
            current.insert(&change.name, change.revision);
            compiled
                .load(&change.name, change.revision, &new)
                .map_err(|m| fail(ViolationKind::Malformed, m))?;
            continue;
        }
        if change.kind == ChangeKind::Deleted {
            summary.deletes += 1;
            continue;
        }
        let schema_revision = current.get(change.collection.as_str()).copied();
        let schema = schema_revision.and_then(|s| compiled.get(&change.collection, s));
        let (Some(schema), Some(schema_revision)) = (schema, schema_revision) else {
            summary.unchecked += 1;
            continue;
        };
        let Some(new) = new else {
            return Err(fail(
                ViolationKind::Feed,
                format!(
                    "seq {} reports revision {} as {}, but its write deleted the document",
                    change.seq, change.revision, change.kind
                ),
            ));
        };
        let old = history
            .state(&change.collection, &change.name, change.revision - 1)
            .map_err(|m| fail(ViolationKind::Feed, format!("seq {}: {m}", change.seq)))?;
        if let Err(problems) = schema.validate(&new, old.as_ref()) {
            let writer = history.writer(&change.collection, &change.name, change.revision);
            let setter = history.writer(SCHEMA_COLLECTION, &change.collection, schema_revision);
            return Err(fail(
                ViolationKind::Schema,
                format!(
                    "{writer} committed revision {} at seq {}, but schema revision \
                     {schema_revision} of {} ({setter}), current at that seq, refuses it: {}",
                    change.revision,
                    change.seq,
                    change.collection,
                    crate::schema::describe_violations(&problems)
                ),
            ));
        }
        summary.validated += 1;
        used.insert((&change.collection, schema_revision));
    }
    summary.schema_revisions_used = used.len();
    for r in records {
        if matches!(&r.outcome, Outcome::Failed { kind, .. } if kind == "schema_violation") {
            history.explain_refusal(r, &mut compiled)?;
            summary.refusals += 1;
        }
    }
    Ok(summary)
}

/// Compiled schemas by (collection, schema revision); `None` where the
/// revision deleted the schema.
#[derive(Default)]
struct Compiled(HashMap<(String, u64), Option<Arc<CompiledSchema>>>);

impl Compiled {
    fn load(&mut self, collection: &str, revision: u64, body: &State) -> Result<(), String> {
        let schema = match body {
            Some(body) => Some(Arc::new(CompiledSchema::compile(body).map_err(|e| {
                format!("schema revision {revision} does not compile: {e}")
            })?)),
            None => None,
        };
        self.0.insert((collection.to_owned(), revision), schema);
        Ok(())
    }

    fn get(&self, collection: &str, revision: u64) -> Option<Arc<CompiledSchema>> {
        self.0
            .get(&(collection.to_owned(), revision))
            .cloned()
            .flatten()
    }
}

/// The committed writes of every key, by revision.
struct Chains<'a> {
    chains: HashMap<(String, String), BTreeMap<u64, &'a Record>>,
    fmt: Formatter,
}

impl<'a> Chains<'a> {
    fn chain(&self, collection: &str, name: &str) -> Option<&BTreeMap<u64, &'a Record>> {
        self.chains.get(&(collection.to_owned(), name.to_owned()))
    }

    /// The key's state at `revision` (0: never written).
    fn state(&self, collection: &str, name: &str, revision: u64) -> Result<State, String> {
        if revision == 0 {
            return Ok(None);
        }
        match self.chain(collection, name).and_then(|c| c.get(&revision)) {
            Some(w) => match &w.outcome {
                Outcome::Ok { body, .. } => Ok(body.clone()),
                _ => Ok(None),
            },
            None => Err(format!(
                "no write of the history committed revision {revision} of {collection}/{name}"
            )),
        }
    }

    fn writer(&self, collection: &str, name: &str, revision: u64) -> String {
        match self.chain(collection, name).and_then(|c| c.get(&revision)) {
            Some(w) => self.fmt.timed(w),
            None => "a write outside the history".to_owned(),
        }
    }

    /// The revisions of a key that may have been current at some instant
    /// of `[start, end]`: revision `v` from its write's invoke to the
    /// return of the write of `v + 1`.
    fn current_during(&self, collection: &str, name: &str, start: u64, end: u64) -> Vec<u64> {
        let empty = BTreeMap::new();
        let chain = self.chain(collection, name).unwrap_or(&empty);
        let top = chain.keys().next_back().copied().unwrap_or(0);
        (0..=top)
            .filter(|v| {
                let from = if *v == 0 {
                    0
                } else {
                    chain.get(v).map_or(0, |w| w.invoke_ns)
                };
                let until = chain
                    .get(&(v + 1))
                    .map_or(u64::MAX, |w| w.return_ns.unwrap_or(u64::MAX));
                from <= end && until >= start
            })
            .collect()
    }

    /// Finds a schema revision and a document revision, both possibly
    /// current while `refused` ran, on which the engine refuses it.
    fn explain_refusal(&self, refused: &Record, compiled: &mut Compiled) -> Result<(), Violation> {
        let (start, end) = (refused.invoke_ns, refused.return_ns.unwrap_or(u64::MAX));
        let schema_revisions =
            self.current_during(SCHEMA_COLLECTION, &refused.collection, start, end);
        let doc_revisions = self.current_during(&refused.collection, &refused.name, start, end);
        let key = Key::new(&refused.collection, &refused.name).map_err(|e| Violation {
            kind: ViolationKind::Malformed,
            key: refused.key_label(),
            message: e.to_string(),
        })?;
        for &s in &schema_revisions {
            if s == 0 {
                continue;
            }
            let body = self
                .state(SCHEMA_COLLECTION, &refused.collection, s)
                .unwrap_or(None);
            if compiled.get(&refused.collection, s).is_none() {
                // A schema revision the feed did not cover (or a delete):
                // compile it here; a delete refuses nothing.
                let _ = compiled.load(&refused.collection, s, &body);
            }
            let Some(schema) = compiled.get(&refused.collection, s) else {
                continue;
            };
            for &v in &doc_revisions {
                let Ok(state) = self.state(&refused.collection, &refused.name, v) else {
                    continue;
                };
                if refuses(&schema, &key, &refused.op, v, &state) {
                    return Ok(());
                }
            }
        }
        Err(Violation {
            kind: ViolationKind::Schema,
            key: refused.key_label(),
            message: format!(
                "{} was refused as a schema violation, but no schema revision current while \
                 it ran (of {:?}) refuses it on any revision of the document current then \
                 (of {doc_revisions:?})",
                self.fmt.timed(refused),
                schema_revisions
            ),
        })
    }
}

/// Whether the engine, under `schema`, refuses `op` on the key at
/// revision `v` with state `state`: the op itself succeeds there, and its
/// result (defaults filled on a create) breaks the schema.
fn refuses(schema: &CompiledSchema, key: &Key, op: &Op, v: u64, state: &State) -> bool {
    let Ok(Some(mut new)) = reference::apply(key, op, v, state) else {
        return false;
    };
    let old: Option<&Body> = state.as_ref();
    if old.is_none() {
        schema.apply_defaults(&mut new);
    }
    schema.validate(&new, old).is_err()
}
