//! The schema race: writers patch documents of one collection with random
//! declared and undeclared attributes and enum values while another
//! client keeps changing the collection's schema; every operation is
//! recorded, schema changes included, for
//! [`check_schema`](revstore::testkit::checker::check_schema).
//!
//! Also the deliberately broken setups that check must catch: a handle
//! that does not see schemas at all ([`Broken::Blind`]) and one whose
//! backend drops the schema guard and commits late ([`Broken::NoGuard`]).

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use revstore::testkit::clock::monotonic_nanos;
use revstore::testkit::history::{Client, Op, Outcome, Record, Sink};
use revstore::testkit::workload::execute;
use revstore::{
    Body, Change, Commit, CommitOutcome, Entry, Key, Patch, Precondition, StorageBackend, Store,
};
use serde_json::{json, Value};

use crate::serve::{answer, Command};

/// The collection the race writes.
pub const ASSETS: &str = "assets";

/// The reserved collection of schema documents.
pub const SCHEMAS: &str = "_schema";

/// The name of race document `index`.
pub fn asset_name(index: u8) -> String {
    format!("a{index}")
}

/// The enum values a schema may allow for `colour`.
const COLOURS: [&str; 4] = ["red", "green", "blue", "black"];

/// A small deterministic generator (SplitMix64): the race needs spread
/// and reproducibility, not quality.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// One of `items` (non-empty).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// A random schema for [`ASSETS`]: `op` is always a required string (the
/// op id every write sets); `colour` (an enum over a random non-empty
/// subset of four colours), `size` (integer, 0 to 10 or 100), `owner`
/// (string of bounded length) and `note` come and go; undeclared
/// attributes are usually rejected. No defaults, so that the history
/// checker's replay needs no schema.
pub fn random_schema(rng: &mut Rng) -> Value {
    let mut attributes = vec![json!({"name": "op", "type": "string", "required": true})];
    if rng.chance(70) {
        let mut values: Vec<&str> = COLOURS.iter().copied().filter(|_| rng.chance(50)).collect();
        if values.is_empty() {
            values.push(*rng.pick(&COLOURS));
        }
        attributes.push(json!({"name": "colour", "type": "enum", "values": values}));
    }
    if rng.chance(60) {
        let max = *rng.pick(&[10, 100]);
        attributes.push(json!({"name": "size", "type": "integer", "min": 0, "max": max}));
    }
    if rng.chance(60) {
        let max = 3 + rng.below(6);
        attributes.push(json!({"name": "owner", "type": "string", "max_length": max}));
    }
    if rng.chance(30) {
        attributes.push(json!({"name": "note", "type": "string"}));
    }
    let undeclared = if rng.chance(80) { "reject" } else { "allow" };
    json!({"undeclared": undeclared, "attributes": attributes})
}

/// A random attribute and value: declared or never declared, allowed or
/// not by the current schema; `null` removes it.
fn random_attribute(rng: &mut Rng) -> (&'static str, Value) {
    let name = *rng.pick(&["colour", "colour", "size", "owner", "note", "extra"]);
    if rng.chance(10) {
        return (name, Value::Null);
    }
    let value = match name {
        "colour" => json!(rng.pick(&["red", "green", "blue", "black", "purple"])),
        "size" => rng
            .pick(&[
                json!(-1),
                json!(0),
                json!(5),
                json!(50),
                json!(101),
                json!("big"),
            ])
            .clone(),
        "owner" => rng
            .pick(&[
                json!("ann"),
                json!("bob"),
                json!("carol"),
                json!("dorothea"),
                json!(7),
            ])
            .clone(),
        "note" => json!(rng.pick(&["x", "yy"])),
        _ => rng.pick(&[json!(1), json!(true)]).clone(),
    };
    (name, value)
}

fn random_body(rng: &mut Rng, id: &str, attributes: usize, nulls: bool) -> Body {
    let mut body = Body::new();
    body.insert("op".to_owned(), json!(id));
    for _ in 0..attributes {
        let (name, value) = random_attribute(rng);
        if nulls || !value.is_null() {
            body.insert(name.to_owned(), value);
        }
    }
    body
}

/// What a writer last saw of a document.
#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    revision: u64,
    live: bool,
}

impl Seen {
    fn update(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::Ok { revision, body } => {
                self.revision = *revision;
                self.live = body.is_some();
            }
            Outcome::Conflict { actual } => {
                self.revision = actual.last_revision();
                self.live = actual.is_live();
            }
            Outcome::NotFound {
                revision: Some(revision),
            } => {
                self.revision = *revision;
                self.live = false;
            }
            _ => {}
        }
    }
}

/// The next operation of a race writer on a document it last saw as
/// `seen`: mostly merge patches without precondition, some whole-body
/// replaces, compare-and-swap patches, creates, deletes and reads.
fn random_op(rng: &mut Rng, id: &str, seen: Seen) -> Op {
    let roll = rng.below(100);
    let extra = usize::from(rng.chance(30));
    match roll {
        0..=9 => Op::Read,
        10..=64 => Op::Patch {
            patch: Patch::Merge(Value::Object(random_body(rng, id, 1 + extra, true))),
            precondition: Precondition::Any,
        },
        65..=74 => Op::Replace {
            body: random_body(rng, id, 1 + extra, false),
            precondition: Precondition::Any,
        },
        75..=84 => Op::Patch {
            patch: Patch::Merge(Value::Object(random_body(rng, id, 1, true))),
            precondition: if seen.live {
                Precondition::Revision(seen.revision)
            } else {
                Precondition::Absent
            },
        },
        85..=95 => Op::Replace {
            body: random_body(rng, id, 1 + extra, false),
            precondition: Precondition::Absent,
        },
        _ => Op::Delete {
            precondition: Precondition::Any,
        },
    }
}

fn record(
    client: Client,
    op_id: String,
    collection: &str,
    name: &str,
    op: Op,
    run: impl FnOnce(&Op) -> Outcome,
) -> Record {
    let invoke_ns = monotonic_nanos();
    let outcome = run(&op);
    let return_ns = monotonic_nanos();
    Record {
        collection: collection.to_owned(),
        name: name.to_owned(),
        client,
        op_id,
        op,
        invoke_ns,
        return_ns: Some(return_ns),
        outcome,
    }
}

/// The shape of a race writer's work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Writes {
    /// Operations per writer.
    pub steps: usize,
    /// Documents written (`a0`…).
    pub docs: u8,
    /// Each writer sleeps a random time up to this between operations,
    /// leaving gaps in which a schema change can take the schema's lock.
    pub pause: Duration,
}

/// Runs random operations of one writer on documents of [`ASSETS`],
/// recording each.
///
/// # Errors
/// The sink's I/O error.
pub fn write_assets(
    store: &Store,
    client: Client,
    seed: u64,
    writes: Writes,
    sink: &dyn Sink,
) -> io::Result<()> {
    let Writes { steps, docs, pause } = writes;
    let mut rng = Rng::new(seed);
    let mut seen = vec![Seen::default(); usize::from(docs)];
    let pause_ns = u64::try_from(pause.as_nanos()).unwrap_or(u64::MAX);
    for n in 0..steps {
        if pause_ns > 0 {
            std::thread::sleep(Duration::from_nanos(rng.below(pause_ns)));
        }
        let doc = rng.below(u64::from(docs)) as usize;
        let name = asset_name(doc as u8);
        let id = format!("{client}-{n}");
        let op = random_op(&mut rng, &id, seen[doc]);
        let r = record(client, id, ASSETS, &name, op, |op| {
            execute(store, ASSETS, &name, op)
        });
        seen[doc].update(&r.outcome);
        sink.record(r)?;
    }
    Ok(())
}

/// Changes the schema of [`ASSETS`] until `stop` is set (or `limit`
/// changes were made), pausing `pause` between changes: mostly a new
/// random schema, sometimes no schema at all. Each change is recorded as a
/// write of `_schema/assets`. Returns how many changes were made.
///
/// # Errors
/// The sink's I/O error.
pub fn churn_schema(
    store: &Store,
    client: Client,
    seed: u64,
    pause: Duration,
    limit: usize,
    stop: &AtomicBool,
    sink: &dyn Sink,
) -> io::Result<usize> {
    let mut rng = Rng::new(seed);
    let mut made = 0;
    while made < limit && !stop.load(Ordering::Relaxed) {
        let id = format!("{client}-schema-{made}");
        let (op, command) = if rng.chance(10) {
            (
                Op::Delete {
                    precondition: Precondition::Any,
                },
                Command::DeleteSchema {
                    collection: ASSETS.to_owned(),
                },
            )
        } else {
            let schema = random_schema(&mut rng);
            let Value::Object(body) = schema.clone() else {
                unreachable!("schemas are mappings")
            };
            (
                Op::Replace {
                    body,
                    precondition: Precondition::Any,
                },
                Command::SetSchema {
                    collection: ASSETS.to_owned(),
                    schema,
                },
            )
        };
        sink.record(record(client, id, SCHEMAS, ASSETS, op, |_| {
            answer(store, &command)
        }))?;
        made += 1;
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
    }
    Ok(made)
}

/// Creates every race document (before any schema), recording the
/// creates, so that patches without precondition find them.
///
/// # Errors
/// The sink's I/O error.
pub fn create_assets(store: &Store, client: Client, docs: u8, sink: &dyn Sink) -> io::Result<()> {
    for doc in 0..docs {
        let name = asset_name(doc);
        let id = format!("{client}-init-{name}");
        let op = Op::Replace {
            body: random_body(&mut Rng::new(u64::from(doc)), &id, 0, false),
            precondition: Precondition::Absent,
        };
        sink.record(record(client, id, ASSETS, &name, op, |op| {
            execute(store, ASSETS, &name, op)
        }))?;
    }
    Ok(())
}

/// Runs one writer per handle in `stores`, released together, writer `i`
/// recording as client `(process, i)` with its own seed.
///
/// # Errors
/// The first sink I/O error.
pub fn write_assets_on_threads(
    stores: Vec<Store>,
    process: u32,
    seed: u64,
    writes: Writes,
    sink: &dyn Sink,
) -> io::Result<()> {
    let barrier = Barrier::new(stores.len());
    std::thread::scope(|scope| {
        let threads: Vec<_> = stores
            .into_iter()
            .enumerate()
            .map(|(i, store)| {
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    let thread = u32::try_from(i).unwrap_or(u32::MAX);
                    let seed = seed.wrapping_mul(31).wrapping_add(u64::from(thread));
                    write_assets(&store, Client { process, thread }, seed, writes, sink)
                })
            })
            .collect();
        let results: Vec<io::Result<()>> = threads
            .into_iter()
            .map(|t| t.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect();
        results.into_iter().collect()
    })
}

/// A deliberately broken way of writing, which the schema check must
/// catch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broken {
    /// The handle never sees a schema (reads of `_schema` answer "never
    /// written") and commits without the guard: nothing is validated.
    Blind,
    /// The handle validates, but its backend drops the schema guard and
    /// pauses before committing, so a schema change in between goes
    /// unnoticed.
    NoGuard,
}

impl Broken {
    /// The name used on the worker's command line.
    pub fn name(self) -> &'static str {
        match self {
            Broken::Blind => "blind",
            Broken::NoGuard => "no-guard",
        }
    }

    /// The setup called `name`.
    pub fn from_name(name: &str) -> Option<Broken> {
        [Broken::Blind, Broken::NoGuard]
            .into_iter()
            .find(|b| b.name() == name)
    }

    /// A handle on `store`'s backend broken this way.
    pub fn wrap(self, store: &Store) -> Store {
        let backend = BrokenSchemaBackend {
            inner: Arc::clone(store.backend()),
            broken: self,
        };
        Store::with_options(Arc::new(backend), *store.options())
    }
}

/// See [`Broken`]. Only for proving that the check catches it.
#[derive(Debug)]
struct BrokenSchemaBackend {
    inner: Arc<dyn StorageBackend>,
    broken: Broken,
}

impl StorageBackend for BrokenSchemaBackend {
    fn kind(&self) -> &'static str {
        "broken-schema"
    }

    fn read(&self, key: &Key) -> revstore::Result<Option<revstore::Record>> {
        if self.broken == Broken::Blind && key.collection() == SCHEMAS {
            return Ok(None);
        }
        self.inner.read(key)
    }

    fn commit(&self, commit: &Commit<'_>) -> revstore::Result<CommitOutcome> {
        if self.broken == Broken::NoGuard && commit.guard.is_some() {
            std::thread::sleep(Duration::from_millis(2));
        }
        self.inner.commit(&Commit {
            guard: None,
            ..*commit
        })
    }

    fn list(&self, collection: &str) -> revstore::Result<Vec<Entry>> {
        self.inner.list(collection)
    }

    fn changes_since(&self, after: u64, limit: usize) -> revstore::Result<Vec<Change>> {
        self.inner.changes_since(after, limit)
    }

    fn last_seq(&self) -> revstore::Result<u64> {
        self.inner.last_seq()
    }
}
