//! Workloads: operations generated from a seed (or by proptest), run on
//! real threads against a real store, recorded as a history.
//!
//! A workload is one list of [`Step`]s per thread over 1–3 keys of the
//! collection [`COLLECTION`]. A step is a template: a compare-and-swap
//! takes the revision its thread saw last, a JSON Patch `test` the op id it
//! saw last, so the operations actually run depend on what happened. Every
//! write puts its op id in the body's `op` field, so the
//! [checker](super::checker) can tell which write made any body it sees.

use std::io;
use std::ops::{Range, RangeInclusive};
use std::sync::Barrier;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::{json, Value};

use crate::testkit::clock::monotonic_nanos;
use crate::testkit::history::{Client, MemorySink, Op, Outcome, Record, Sink};
use crate::testkit::TestLocation;
use crate::{Body, Error, Key, Patch, Precondition, Result, Store};

mod broken;

pub use broken::{BrokenBackend, BrokenTestBackend};

/// The collection every workload key lives in.
pub const COLLECTION: &str = "hist";

/// The collection of the counters of [`increment`] and the documents of
/// [`disjoint_patches`].
pub const COUNTERS: &str = "counters";

/// The name of workload key `index` (`k0`, `k1`, …).
pub fn key_name(index: u8) -> String {
    format!("k{index}")
}

/// One operation template of a workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Read the key's record.
    Read {
        /// Key index.
        key: u8,
    },
    /// A merge patch without precondition setting `op` and field
    /// `f<field>` (`None` removes the field).
    Merge {
        /// Key index.
        key: u8,
        /// Field number.
        field: u8,
        /// The new value, or `None` to remove the field.
        value: Option<i64>,
    },
    /// A whole-body compare-and-swap on the revision this thread saw last
    /// (a create when it last saw no live document).
    CasReplace {
        /// Key index.
        key: u8,
        /// Field number.
        field: u8,
        /// The field's value.
        value: i64,
    },
    /// A whole-body write without precondition.
    Overwrite {
        /// Key index.
        key: u8,
        /// Field number.
        field: u8,
        /// The field's value.
        value: i64,
    },
    /// A create ([`Precondition::Absent`]) of a body holding only `op`.
    Create {
        /// Key index.
        key: u8,
    },
    /// A create by merge patch ([`Precondition::Absent`]).
    CreateByPatch {
        /// Key index.
        key: u8,
        /// Field number.
        field: u8,
    },
    /// A delete, conditional on the revision this thread saw last or not.
    Delete {
        /// Key index.
        key: u8,
        /// Whether it is a compare-and-swap.
        conditional: bool,
    },
    /// A JSON Patch that `test`s that `op` is still the op id this thread
    /// saw last, then sets `op` and a field; optionally also a
    /// compare-and-swap on the revision seen last.
    TestAndSet {
        /// Key index.
        key: u8,
        /// Field number.
        field: u8,
        /// The field's value.
        value: i64,
        /// Whether it also has a revision precondition.
        cas: bool,
    },
    /// A patch that fails: not a mapping (refused before anything is read),
    /// or removing a field no body has (refused on the current body).
    Failing {
        /// Key index.
        key: u8,
        /// Whether it fails before reading.
        at_prepare: bool,
    },
}

impl Step {
    /// The key index the step operates on.
    pub fn key(&self) -> u8 {
        match *self {
            Step::Read { key }
            | Step::Merge { key, .. }
            | Step::CasReplace { key, .. }
            | Step::Overwrite { key, .. }
            | Step::Create { key }
            | Step::CreateByPatch { key, .. }
            | Step::Delete { key, .. }
            | Step::TestAndSet { key, .. }
            | Step::Failing { key, .. } => key,
        }
    }
}

/// A proptest strategy for one step on keys `0..keys`. Reads come first so
/// that shrinking simplifies writes into reads.
pub fn step(keys: u8) -> BoxedStrategy<Step> {
    let key = 0..keys.max(1);
    let field = 0u8..4;
    let value = -3i64..100;
    prop_oneof![
        4 => key.clone().prop_map(|key| Step::Read { key }),
        5 => (key.clone(), field.clone(), proptest::option::weighted(0.85, value.clone()))
            .prop_map(|(key, field, value)| Step::Merge { key, field, value }),
        3 => (key.clone(), field.clone(), value.clone())
            .prop_map(|(key, field, value)| Step::CasReplace { key, field, value }),
        1 => (key.clone(), field.clone(), value.clone())
            .prop_map(|(key, field, value)| Step::Overwrite { key, field, value }),
        2 => key.clone().prop_map(|key| Step::Create { key }),
        1 => (key.clone(), field.clone()).prop_map(|(key, field)| Step::CreateByPatch { key, field }),
        2 => (key.clone(), any::<bool>())
            .prop_map(|(key, conditional)| Step::Delete { key, conditional }),
        3 => (key.clone(), field, value, any::<bool>())
            .prop_map(|(key, field, value, cas)| Step::TestAndSet { key, field, value, cas }),
        1 => (key, any::<bool>()).prop_map(|(key, at_prepare)| Step::Failing { key, at_prepare }),
    ]
    .boxed()
}

/// A proptest strategy for one thread's steps.
pub fn thread_steps(keys: u8, len: Range<usize>) -> impl Strategy<Value = Vec<Step>> {
    proptest::collection::vec(step(keys), len)
}

/// A proptest strategy for a whole workload: `threads` lists of steps.
/// Shrinking removes threads and steps and simplifies steps.
pub fn workload(
    threads: RangeInclusive<usize>,
    keys: u8,
    len: Range<usize>,
) -> impl Strategy<Value = Vec<Vec<Step>>> {
    proptest::collection::vec(thread_steps(keys, len), threads)
}

/// The workload of `seed`: `threads` lists of exactly `steps` steps on keys
/// `0..keys`. The same arguments always give the same workload.
///
/// # Errors
/// A message if the strategy refuses to generate (it has no filters, so
/// this does not happen).
pub fn generate(
    seed: u64,
    threads: usize,
    steps: usize,
    keys: u8,
) -> Result<Vec<Vec<Step>>, String> {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &bytes);
    let mut runner = TestRunner::new_with_rng(Config::default(), rng);
    workload(threads..=threads, keys, steps..steps + 1)
        .new_tree(&mut runner)
        .map(|tree| tree.current())
        .map_err(|reason| format!("cannot generate workload {seed}: {reason}"))
}

/// What a thread last saw of a key.
#[derive(Debug, Clone, Default)]
struct LastSeen {
    revision: u64,
    live: bool,
    op: Option<String>,
}

impl LastSeen {
    fn update(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::Ok { revision, body } => {
                self.revision = *revision;
                self.live = body.is_some();
                self.op = body
                    .as_ref()
                    .and_then(|b| b.get("op"))
                    .and_then(Value::as_str)
                    .map(str::to_owned);
            }
            Outcome::NotFound { revision } => {
                if let Some(r) = revision {
                    self.revision = *r;
                }
                self.live = false;
                self.op = None;
            }
            Outcome::Conflict { actual } => {
                self.revision = actual.last_revision();
                self.live = actual.is_live();
                self.op = None;
            }
            Outcome::Failed { .. } | Outcome::Indeterminate { .. } => {}
        }
    }

    fn cas(&self) -> Precondition {
        if self.live {
            Precondition::Revision(self.revision)
        } else {
            Precondition::Absent
        }
    }
}

fn body_of(value: Value) -> Body {
    match value {
        Value::Object(body) => body,
        _ => Body::new(),
    }
}

fn field_name(field: u8) -> String {
    format!("f{field}")
}

/// The operation `step` stands for, given what its thread saw last.
fn resolve(step: &Step, id: &str, seen: &LastSeen) -> Op {
    match *step {
        Step::Read { .. } => Op::Read,
        Step::Merge { field, value, .. } => Op::Patch {
            patch: Patch::Merge(json!({"op": id, field_name(field): value})),
            precondition: Precondition::Any,
        },
        Step::CasReplace { field, value, .. } => Op::Replace {
            body: body_of(json!({"op": id, field_name(field): value})),
            precondition: seen.cas(),
        },
        Step::Overwrite { field, value, .. } => Op::Replace {
            body: body_of(json!({"op": id, field_name(field): value})),
            precondition: Precondition::Any,
        },
        Step::Create { .. } => Op::Replace {
            body: body_of(json!({"op": id})),
            precondition: Precondition::Absent,
        },
        Step::CreateByPatch { field, .. } => Op::Patch {
            patch: Patch::Merge(json!({"op": id, field_name(field): 0})),
            precondition: Precondition::Absent,
        },
        Step::Delete { conditional, .. } => Op::Delete {
            precondition: if conditional {
                Precondition::Revision(seen.revision)
            } else {
                Precondition::Any
            },
        },
        Step::TestAndSet {
            field, value, cas, ..
        } => Op::Patch {
            patch: Patch::Json(json!([
                {"op": "test", "path": "/op", "value": seen.op.as_deref().unwrap_or("")},
                {"op": "add", "path": "/op", "value": id},
                {"op": "add", "path": format!("/{}", field_name(field)), "value": value},
            ])),
            precondition: if cas {
                Precondition::Revision(seen.revision)
            } else {
                Precondition::Any
            },
        },
        Step::Failing { at_prepare, .. } => Op::Patch {
            patch: if at_prepare {
                Patch::Merge(json!(["not", "a", "mapping"]))
            } else {
                Patch::Json(json!([{"op": "remove", "path": "/no_body_has_this"}]))
            },
            precondition: Precondition::Any,
        },
    }
}

/// Runs `op` on `store` and reports what it answered.
pub fn execute(store: &Store, collection: &str, name: &str, op: &Op) -> Outcome {
    let written = |result: Result<crate::Document>| match result {
        Ok(doc) => Outcome::Ok {
            revision: doc.revision,
            // A history keeps bodies of its own (it is serialized).
            body: Some(std::sync::Arc::unwrap_or_clone(doc.body)),
        },
        Err(e) => Outcome::of_write_error(&e),
    };
    match op {
        Op::Read => match store.get_record(collection, name) {
            Ok(Some(record)) if record.body.is_some() => Outcome::Ok {
                revision: record.revision,
                body: record.body.map(std::sync::Arc::unwrap_or_clone),
            },
            Ok(record) => Outcome::NotFound {
                revision: Some(record.map_or(0, |r| r.revision)),
            },
            Err(e) => Outcome::of_read_error(&e),
        },
        Op::Replace { body, precondition } => {
            written(store.replace(collection, name, Value::Object(body.clone()), *precondition))
        }
        Op::Patch {
            patch,
            precondition,
        } => written(store.patch(collection, name, patch, *precondition)),
        Op::Delete { precondition } => match store.delete(collection, name, *precondition) {
            Ok(revision) => Outcome::Ok {
                revision,
                body: None,
            },
            Err(e) => Outcome::of_write_error(&e),
        },
    }
}

/// Runs one client's steps in order, recording each operation with its
/// invoke and return instants.
///
/// # Errors
/// The sink's I/O error; the store's errors are recorded, not returned.
pub fn run_client(
    store: &Store,
    client: Client,
    steps: &[Step],
    sink: &dyn Sink,
) -> io::Result<()> {
    let keys = steps.iter().map(Step::key).max().map_or(0, |k| k + 1);
    let mut seen = vec![LastSeen::default(); usize::from(keys)];
    for (n, step) in steps.iter().enumerate() {
        let key = step.key();
        let name = key_name(key);
        let op_id = format!("{client}-{n}");
        let last = &mut seen[usize::from(key)];
        let op = resolve(step, &op_id, last);
        let invoke_ns = monotonic_nanos();
        let outcome = execute(store, COLLECTION, &name, &op);
        let return_ns = monotonic_nanos();
        last.update(&outcome);
        sink.record(Record {
            collection: COLLECTION.to_owned(),
            name,
            client,
            op_id,
            op,
            invoke_ns,
            return_ns: Some(return_ns),
            outcome,
        })?;
    }
    Ok(())
}

/// Reads every key once more after the run, so the history ends with the
/// final state of each. Op ids are `<client>-final-k<i>`.
///
/// # Errors
/// The sink's I/O error.
pub fn final_reads(store: &Store, client: Client, keys: u8, sink: &dyn Sink) -> io::Result<()> {
    for key in 0..keys {
        let name = key_name(key);
        let invoke_ns = monotonic_nanos();
        let outcome = execute(store, COLLECTION, &name, &Op::Read);
        let return_ns = monotonic_nanos();
        sink.record(Record {
            collection: COLLECTION.to_owned(),
            op_id: format!("{client}-final-{name}"),
            name,
            client,
            op: Op::Read,
            invoke_ns,
            return_ns: Some(return_ns),
            outcome,
        })?;
    }
    Ok(())
}

/// How the threads of a run reach the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handles {
    /// One handle, cloned into every thread.
    Shared,
    /// Each thread opens its own handle, as separate parts of a program do.
    Own,
}

/// Runs one thread per step list, all released together by a barrier once
/// every thread holds its handle. Thread `i` records as client
/// `(process, i)`.
///
/// # Errors
/// The first sink I/O error of any thread.
pub fn run_threads(
    open: &(dyn Fn() -> Store + Sync),
    handles: Handles,
    process: u32,
    workload: &[Vec<Step>],
    sink: &dyn Sink,
) -> io::Result<()> {
    // Handles are opened here, before any thread starts: an `open` that
    // panics must not leave the other threads waiting at the barrier.
    let stores: Vec<Store> = match handles {
        Handles::Shared => {
            let store = open();
            vec![store; workload.len()]
        }
        Handles::Own => workload.iter().map(|_| open()).collect(),
    };
    let barrier = Barrier::new(workload.len());
    std::thread::scope(|scope| {
        let workers: Vec<_> = workload
            .iter()
            .zip(stores)
            .enumerate()
            .map(|(i, (steps, store))| {
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    let client = Client {
                        process,
                        thread: u32::try_from(i).unwrap_or(u32::MAX),
                    };
                    run_client(&store, client, steps, sink)
                })
            })
            .collect();
        // Join every thread before reporting the first error.
        let results: Vec<io::Result<()>> = workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect();
        results.into_iter().collect()
    })
}

/// Runs a workload on threads against `location`, then reads every key
/// once more, and returns the whole history.
pub fn run_on(
    location: &dyn TestLocation,
    handles: Handles,
    workload: &[Vec<Step>],
) -> Vec<Record> {
    let keys = workload
        .iter()
        .flatten()
        .map(Step::key)
        .max()
        .map_or(1, |k| k + 1);
    let sink = MemorySink::new();
    let process = std::process::id();
    let open = || location.open();
    // A MemorySink never fails, so neither do these.
    let _ = run_threads(&open, handles, process, workload, &sink);
    let last = Client {
        process,
        thread: u32::try_from(workload.len()).unwrap_or(u32::MAX),
    };
    let _ = final_reads(&location.open(), last, keys, &sink);
    sink.into_records()
}

/// Runs `threads` threads on handles of their own from `location`, each
/// incrementing counter `c` (created here at 0) `times` times, and returns
/// how many increments the final count lacks: 0 on a correct backend.
///
/// # Panics
/// When a store call fails.
pub fn increments_lost(location: &dyn super::TestLocation, threads: usize, times: usize) -> u64 {
    let store = location.open();
    store
        .create(COUNTERS, "c", serde_json::json!({"count": 0}))
        .expect("create the counter");
    std::thread::scope(|s| {
        for _ in 0..threads {
            let store = location.open();
            s.spawn(move || increment(&store, "c", times).expect("increment"));
        }
    });
    let count = store
        .get(COUNTERS, "c")
        .expect("read the counter")
        .and_then(|doc| doc.body.get("count").and_then(Value::as_u64))
        .expect("a counter");
    (threads * times) as u64 - count
}

/// Adds 1 to the `count` field of counter `name` (in [`COUNTERS`]) `times`
/// times, each by read → compare-and-swap, retrying the pair on a conflict.
/// Returns how many conflicts it met.
///
/// # Errors
/// [`Error::NotFound`] when the counter does not exist,
/// [`Error::InvalidBody`] when `count` is not an unsigned integer, and any
/// other error of the store.
pub fn increment(store: &Store, name: &str, times: usize) -> Result<u64> {
    let mut conflicts = 0;
    for _ in 0..times {
        loop {
            let key = || Key::new(COUNTERS, name);
            let doc = store.get(COUNTERS, name)?.ok_or_else(|| match key() {
                Ok(key) => Error::NotFound { key },
                Err(e) => e,
            })?;
            let count = doc
                .body
                .get("count")
                .and_then(Value::as_u64)
                .ok_or_else(|| match key() {
                    Ok(key) => Error::InvalidBody {
                        key,
                        reason: "`count` is not an unsigned integer".to_owned(),
                    },
                    Err(e) => e,
                })?;
            match store.replace(
                COUNTERS,
                name,
                json!({"count": count + 1}),
                Precondition::Revision(doc.revision),
            ) {
                Ok(_) => break,
                Err(Error::Conflict { .. }) => conflicts += 1,
                Err(e) => return Err(e),
            }
        }
    }
    Ok(conflicts)
}

/// The field [`disjoint_patches`] sets for patch `i` of thread `thread` of
/// process number `process`.
pub fn disjoint_field(process: u32, thread: u32, i: usize) -> String {
    format!("p{process}_t{thread}_{i}")
}

/// Applies `times` merge patches without precondition to document `name`
/// (in [`COUNTERS`]), each setting its own field [`disjoint_field`] to
/// `true`. Since patches re-apply to the newest body, every field must be
/// present at the end.
///
/// # Errors
/// The store's first error.
pub fn disjoint_patches(
    store: &Store,
    name: &str,
    process: u32,
    thread: u32,
    times: usize,
) -> Result<()> {
    for i in 0..times {
        let patch = Patch::Merge(json!({ disjoint_field(process, thread, i): true }));
        store.patch(COUNTERS, name, &patch, Precondition::Any)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::checker::check;
    use crate::testkit::MemoryTestBackend;
    use crate::testkit::TestBackend;

    #[test]
    fn generation_is_deterministic_per_seed() {
        let a = generate(7, 3, 20, 2).unwrap();
        assert_eq!(a, generate(7, 3, 20, 2).unwrap());
        assert_ne!(a, generate(8, 3, 20, 2).unwrap());
        assert_eq!(a.len(), 3);
        assert!(a.iter().all(|t| t.len() == 20));
        assert!(a.iter().flatten().all(|s| s.key() < 2));
    }

    #[test]
    fn a_memory_run_passes_the_checker() {
        let workload = generate(1, 4, 40, 2).unwrap();
        for handles in [Handles::Shared, Handles::Own] {
            // Each history starts from an empty store.
            let location = MemoryTestBackend.fresh();
            let records = run_on(location.as_ref(), handles, &workload);
            assert_eq!(records.len(), 4 * 40 + 2);
            let summary = check(&records).unwrap_or_else(|v| panic!("{v}"));
            assert!(summary.committed > 0, "{summary}");
        }
    }

    #[test]
    fn increments_and_disjoint_patches_add_up() {
        let store = Store::open(crate::MemoryBackend::new());
        store.create(COUNTERS, "c", json!({"count": 0})).unwrap();
        store.create(COUNTERS, "d", json!({})).unwrap();
        std::thread::scope(|s| {
            for t in 0..4 {
                let store = &store;
                s.spawn(move || {
                    increment(store, "c", 25).unwrap();
                    disjoint_patches(store, "d", 0, t, 10).unwrap();
                });
            }
        });
        assert_eq!(
            store.get(COUNTERS, "c").unwrap().unwrap().body["count"],
            100
        );
        let d = store.get(COUNTERS, "d").unwrap().unwrap();
        assert_eq!(d.body.len(), 40);
        assert_eq!(d.revision, 41);
    }
}
