//! Live schemas across processes.
//!
//! 1. **A long-lived handle follows schema changes.** One `serve` worker
//!    keeps a handle open (and its compiled validators cached); another
//!    changes the schema: set, add an attribute (with a default), narrow
//!    an enum, remove an attribute, delete. After each change the first
//!    worker's very next write is judged by the new schema. 18 commands
//!    per backend (memory runs the same script on two handles).
//! 2. **The schema race.** Three `schema-writes` processes × two threads
//!    make random writes to three documents (declared and undeclared
//!    attributes, allowed and refused enum values) while a `schema-churn`
//!    process keeps replacing or deleting the schema. Afterwards the whole
//!    feed orders every commit, and `check_schema` proves that every
//!    committed revision satisfies the schema current at its seq (and
//!    every refusal is explained); the history checker proves no update
//!    was lost. Writers sleep up to 1 ms between operations, so that the
//!    schema writer's commits interleave with theirs rather than queue
//!    behind bursts of them.
//!    Default size per backend: 6 × 300 = 1 800 writes and reads plus the
//!    schema changes made meanwhile (memory: 4 threads × 300 in one
//!    process); `REVSTORE_SOAK=N` multiplies the steps by N.
//! 3. **The check can fail.** Writers that never see the schema (3 × 2 ×
//!    40 blind writes on SQLite) are caught every time; a backend that
//!    drops the schema guard and commits late (4 threads × 60 writes on
//!    memory, up to 5 attempts) is caught.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use revstore::testkit::checker::{check_schema, SchemaSummary, ViolationKind};
use revstore::testkit::clock::monotonic_nanos;
use revstore::testkit::history::{read_history, Client, MemorySink, Op, Outcome, Record, Sink};
use revstore::testkit::soak_factor;
use revstore::testkit::workload::execute;
use revstore::testkit::TestLocation;
use revstore::{Patch, Precondition};
use revstore_tests::follow::feed_after;
use revstore_tests::schema_race::{
    asset_name, churn_schema, create_assets, write_assets_on_threads, Broken, Writes, ASSETS,
    SCHEMAS,
};
use revstore_tests::serve::{Command, Session};
use revstore_tests::worker::{Worker, WAIT};
use revstore_tests::{backend, check_saving_allowing, skip_postgres, worker_args};
use serde_json::{json, Value};

const WORKER: &str = env!("CARGO_BIN_EXE_revstore-worker");
/// Writer processes and threads of the race.
const PROCESSES: u32 = 3;
const THREADS: usize = 2;
const DOCS: u8 = 3;
/// Workers start this long after they are spawned, all at the same instant.
const START_DELAY_NS: u64 = 300_000_000;

fn me(thread: u32) -> Client {
    Client {
        process: std::process::id(),
        thread,
    }
}

// ---------------------------------------------------------------------
// 1. A long-lived handle follows live schema changes.
// ---------------------------------------------------------------------

fn doc_op(name: &str, op: Op) -> Command {
    Command::Op {
        collection: ASSETS.to_owned(),
        name: name.to_owned(),
        op,
    }
}

fn patch(name: &str, patch: Value) -> Command {
    doc_op(
        name,
        Op::Patch {
            patch: Patch::Merge(patch),
            precondition: Precondition::Any,
        },
    )
}

fn create(name: &str, body: Value) -> Command {
    let Value::Object(body) = body else {
        panic!("not a body")
    };
    doc_op(
        name,
        Op::Replace {
            body,
            precondition: Precondition::Absent,
        },
    )
}

fn set_schema(attributes: Value) -> Command {
    Command::SetSchema {
        collection: ASSETS.to_owned(),
        schema: json!({ "attributes": attributes }),
    }
}

/// Runs `command` and expects success; returns the body written.
fn accepted(session: &mut dyn Session, command: &Command, step: &str) -> Value {
    match session.call(command) {
        Outcome::Ok { body, .. } => body.map_or(Value::Null, Value::Object),
        other => panic!("{step}: expected success, got {other:?}"),
    }
}

/// Runs `command` and expects a schema violation whose message names
/// `what`.
fn refused(session: &mut dyn Session, command: &Command, what: &str, step: &str) {
    match session.call(command) {
        Outcome::Failed { kind, message } if kind == "schema_violation" => {
            assert!(
                message.contains(what),
                "{step}: {message} does not name {what}"
            );
        }
        other => panic!("{step}: expected a schema violation naming {what}, got {other:?}"),
    }
}

/// The script: `writer` holds its handle throughout; `setter` changes the
/// schema between its writes.
fn live_schema_script(writer: &mut dyn Session, setter: &mut dyn Session, label: &str) {
    let step = |s: &str| format!("{label}: {s}");
    let owner = json!({"name": "owner", "type": "string"});
    let colour = |values: &[&str]| json!({"name": "colour", "type": "enum", "values": values});
    let size = json!({"name": "size", "type": "integer", "min": 0, "max": 10, "default": 1});

    accepted(
        writer,
        &create(
            "a1",
            json!({"owner": "ann", "colour": "purple", "extra": 1}),
        ),
        &step("no schema: anything goes"),
    );
    accepted(
        setter,
        &set_schema(json!([owner, colour(&["red", "green", "blue"])])),
        &step("set the schema"),
    );
    accepted(
        writer,
        &patch("a1", json!({"owner": "bob"})),
        &step("ratcheting: purple and extra stay"),
    );
    refused(
        writer,
        &patch("a1", json!({"size": 3})),
        "size",
        &step("size is not declared yet"),
    );
    accepted(
        writer,
        &patch("a1", json!({"colour": "green"})),
        &step("green"),
    );
    accepted(writer, &patch("a1", json!({"colour": "red"})), &step("red"));

    accepted(
        setter,
        &set_schema(json!([owner, colour(&["red", "green", "blue"]), size])),
        &step("add size"),
    );
    accepted(
        writer,
        &patch("a1", json!({"size": 3})),
        &step("the next write may set size"),
    );
    refused(
        writer,
        &patch("a1", json!({"size": 11})),
        "size",
        &step("size has a maximum"),
    );
    let a2 = accepted(
        writer,
        &create("a2", json!({"owner": "cat", "colour": "green"})),
        &step("create under the new schema"),
    );
    assert_eq!(a2["size"], json!(1), "{label}: the new schema's default");

    accepted(
        setter,
        &set_schema(json!([owner, colour(&["red", "blue"]), size])),
        &step("narrow the enum"),
    );
    refused(
        writer,
        &patch("a1", json!({"colour": "green"})),
        "colour",
        &step("the next write may not set green"),
    );
    accepted(
        writer,
        &patch("a2", json!({"owner": "dan"})),
        &step("ratcheting: a2 keeps its green"),
    );

    accepted(
        setter,
        &set_schema(json!([colour(&["red", "blue"]), size])),
        &step("remove owner"),
    );
    refused(
        writer,
        &patch("a1", json!({"owner": "eve"})),
        "owner",
        &step("the next write may not change owner"),
    );
    accepted(
        writer,
        &patch("a1", json!({"size": 4})),
        &step("ratcheting: owner bob stays"),
    );

    accepted(
        setter,
        &Command::DeleteSchema {
            collection: ASSETS.to_owned(),
        },
        &step("delete the schema"),
    );
    let a1 = accepted(
        writer,
        &patch(
            "a1",
            json!({"colour": "purple", "owner": "eve", "anything": true}),
        ),
        &step("no schema: anything goes again"),
    );
    assert_eq!(
        a1,
        json!({"owner": "eve", "colour": "purple", "extra": 1, "size": 4, "anything": true}),
        "{label}"
    );
}

fn serve_worker(url: &str, label: &str) -> Worker {
    let args = vec!["serve".to_owned(), "--url".to_owned(), url.to_owned()];
    Worker::spawn(Path::new(WORKER), &args, label)
}

fn long_lived_handle(backend_name: &str) {
    let location = backend(backend_name).fresh();
    let url = location.url().expect("a URL");
    let mut writer = serve_worker(&url, &format!("{backend_name} writer"));
    let mut setter = serve_worker(&url, &format!("{backend_name} schema setter"));
    live_schema_script(&mut writer, &mut setter, backend_name);
    writer.finish(WAIT);
    setter.finish(WAIT);
}

#[test]
fn yaml_a_long_lived_process_follows_live_schema_changes() {
    long_lived_handle("yaml");
}

#[test]
fn sqlite_a_long_lived_process_follows_live_schema_changes() {
    long_lived_handle("sqlite");
}

#[test]
fn postgres_a_long_lived_process_follows_live_schema_changes() {
    if skip_postgres() {
        return;
    }
    long_lived_handle("postgres");
}

#[test]
fn memory_a_long_lived_handle_follows_live_schema_changes() {
    let location = backend("memory").fresh();
    let (mut writer, mut setter) = (location.open(), location.open());
    live_schema_script(&mut writer, &mut setter, "memory");
}

// ---------------------------------------------------------------------
// 2. The schema race.
// ---------------------------------------------------------------------

/// Failures the race provokes on purpose: refusals, patches of deleted
/// documents are `not_found` (counted apart), and nothing else.
const RACE_FAILURES: [&str; 1] = ["schema_violation"];

/// Reads every race document once more after the run.
fn final_reads(location: &dyn TestLocation, sink: &dyn Sink) {
    let store = location.open();
    for doc in 0..DOCS {
        let name = asset_name(doc);
        let invoke_ns = monotonic_nanos();
        let outcome = execute(&store, ASSETS, &name, &Op::Read);
        sink.record(Record {
            collection: ASSETS.to_owned(),
            op_id: format!("{}-final-{name}", me(999)),
            name,
            client: me(999),
            op: Op::Read,
            invoke_ns,
            return_ns: Some(monotonic_nanos()),
            outcome,
        })
        .unwrap();
    }
}

struct Race {
    records: Vec<Record>,
    schema_changes: usize,
}

/// Creates the race documents and sets a first schema, recording both.
fn set_up(location: &dyn TestLocation) -> MemorySink {
    let setup = MemorySink::new();
    let store = location.open();
    create_assets(&store, me(900), DOCS, &setup).unwrap();
    let go_on = AtomicBool::new(false);
    churn_schema(&store, me(901), 1, Duration::ZERO, 1, &go_on, &setup).unwrap();
    setup
}

/// The race across processes: writers, plus one process changing the
/// schema until the writers are done.
fn race_processes(location: &dyn TestLocation, writes: Writes, broken: Option<Broken>) -> Race {
    let url = location.url().expect("a URL");
    let dir = tempfile::tempdir().unwrap();
    let setup = set_up(location);
    let start_at = monotonic_nanos() + START_DELAY_NS;
    let out = |name: &str| -> PathBuf { dir.path().join(name) };
    let churn_out = out("churn.jsonl").display().to_string();
    let mut churn = Worker::spawn(
        Path::new(WORKER),
        &worker_args(
            "schema-churn",
            &url,
            90,
            1,
            start_at,
            &["--seed", "77", "--pause-us", "1500", "--out", &churn_out],
        ),
        "schema churn",
    );
    let steps = writes.steps.to_string();
    let docs = writes.docs.to_string();
    let pause = writes.pause.as_micros().to_string();
    let writers: Vec<(Worker, PathBuf)> = (0..PROCESSES)
        .map(|p| {
            let path = out(&format!("writes-{p}.jsonl"));
            let path_text = path.display().to_string();
            let mut extra = vec![
                "--seed",
                "4711",
                "--steps",
                &steps,
                "--docs",
                &docs,
                "--pause-us",
                &pause,
                "--out",
                &path_text,
            ];
            if let Some(b) = broken {
                extra.extend(["--broken", b.name()]);
            }
            let args = worker_args("schema-writes", &url, p, THREADS, start_at, &extra);
            (
                Worker::spawn(Path::new(WORKER), &args, &format!("schema writer {p}")),
                path,
            )
        })
        .collect();
    let mut records = setup.into_records();
    for (writer, path) in writers {
        writer.finish(WAIT);
        records.extend(read_history(&path).unwrap());
    }
    churn.send("stop");
    let printed = churn.finish(WAIT);
    let made: Value = serde_json::from_str(printed.last().expect("a count")).unwrap();
    records.extend(read_history(Path::new(&churn_out)).unwrap());
    let finals = MemorySink::new();
    final_reads(location, &finals);
    records.extend(finals.into_records());
    Race {
        records,
        schema_changes: made["changes"].as_u64().unwrap() as usize,
    }
}

/// The race in one process: writer threads with their own handles (or,
/// when `one_handle`, all sharing the schema writer's), and a thread
/// changing the schema with `pause` between changes.
fn race_threads(
    location: &dyn TestLocation,
    threads: usize,
    writes: Writes,
    pause: Duration,
    broken: Option<Broken>,
    seed: u64,
    one_handle: bool,
) -> Race {
    let sink = set_up(location);
    let stop = AtomicBool::new(false);
    let churn_store = location.open();
    let stores: Vec<_> = (0..threads)
        .map(|_| {
            let store = if one_handle {
                churn_store.clone()
            } else {
                location.open()
            };
            broken.map_or_else(|| store.clone(), |b| b.wrap(&store))
        })
        .collect();
    let schema_changes = std::thread::scope(|s| {
        let churn = s.spawn(|| {
            churn_schema(&churn_store, me(90), seed, pause, usize::MAX, &stop, &sink).unwrap()
        });
        write_assets_on_threads(stores, std::process::id(), seed, writes, &sink).unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        churn.join().unwrap()
    });
    final_reads(location, &sink);
    Race {
        records: sink.into_records(),
        schema_changes,
    }
}

/// Checks a correct race: no lost update, every revision valid under the
/// schema current at its commit, and the race really raced.
fn check_race(location: &dyn TestLocation, race: &Race, label: &str) -> SchemaSummary {
    let summary = check_saving_allowing(&race.records, label, &RACE_FAILURES)
        .unwrap_or_else(|e| panic!("{e}"));
    let feed = feed_after(&location.open(), 0).unwrap();
    let schema = check_schema(&race.records, &feed).unwrap_or_else(|v| panic!("{label}: {v}"));
    let mut latencies: Vec<u64> = race
        .records
        .iter()
        .filter(|r| r.collection == SCHEMAS)
        .map(|r| r.return_ns.unwrap_or(r.invoke_ns) - r.invoke_ns)
        .collect();
    latencies.sort_unstable();
    eprintln!(
        "{label}: {summary}\n{label}: {schema:?}, {} schema changes made (median {:?}, \
         slowest {:?}), {} changes in the feed",
        race.schema_changes,
        Duration::from_nanos(latencies[latencies.len() / 2]),
        Duration::from_nanos(latencies[latencies.len() - 1]),
        feed.len()
    );
    assert!(
        schema.schema_changes >= 5,
        "{label}: too few schema changes: {schema:?}"
    );
    assert!(
        schema.schema_revisions_used >= 3,
        "{label}: writes committed under too few schema revisions: {schema:?}"
    );
    assert!(
        schema.validated > 0 && schema.refusals > 0,
        "{label}: {schema:?}"
    );
    schema
}

fn race_across_processes(backend_name: &str) {
    let location = backend(backend_name).fresh();
    let writes = Writes {
        steps: 300 * soak_factor() as usize,
        docs: DOCS,
        pause: Duration::from_micros(1000),
    };
    let race = race_processes(location.as_ref(), writes, None);
    check_race(
        location.as_ref(),
        &race,
        &format!("{backend_name} schema race"),
    );
}

#[test]
fn yaml_no_committed_revision_breaks_the_schema_current_at_its_commit() {
    race_across_processes("yaml");
}

#[test]
fn sqlite_no_committed_revision_breaks_the_schema_current_at_its_commit() {
    race_across_processes("sqlite");
}

#[test]
fn postgres_no_committed_revision_breaks_the_schema_current_at_its_commit() {
    if skip_postgres() {
        return;
    }
    race_across_processes("postgres");
}

#[test]
fn memory_no_committed_revision_breaks_the_schema_current_at_its_commit() {
    let location = backend("memory").fresh();
    let writes = Writes {
        steps: 300 * soak_factor() as usize,
        docs: DOCS,
        pause: Duration::from_micros(200),
    };
    let pause = Duration::from_micros(100);
    let race = race_threads(location.as_ref(), 4, writes, pause, None, 4242, false);
    check_race(location.as_ref(), &race, "memory schema race");
}

/// The race on one YAML handle: its durable commits are grouped (see
/// revstore-yaml's group commit), and a schema write grouped with the
/// writes it guards could commit one validated against the old schema.
#[test]
fn yaml_one_handle_no_committed_revision_breaks_the_schema_current_at_its_commit() {
    for seed in 0..2 {
        let location = backend("yaml").fresh();
        let writes = Writes {
            steps: 150 * soak_factor() as usize,
            docs: DOCS,
            pause: Duration::ZERO,
        };
        let race = race_threads(
            location.as_ref(),
            4,
            writes,
            Duration::ZERO,
            None,
            seed,
            true,
        );
        check_race(
            location.as_ref(),
            &race,
            &format!("yaml one-handle schema race, seed {seed}"),
        );
    }
}

// ---------------------------------------------------------------------
// 3. The schema check can fail.
// ---------------------------------------------------------------------

fn schema_violation(location: &dyn TestLocation, race: &Race) -> Option<String> {
    let feed = feed_after(&location.open(), 0).unwrap();
    match check_schema(&race.records, &feed) {
        Ok(_) => None,
        Err(v) => {
            assert_eq!(v.kind, ViolationKind::Schema, "{v}");
            assert!(v.message.contains("op "), "the message names the op: {v}");
            Some(v.to_string())
        }
    }
}

#[test]
fn the_schema_check_catches_processes_that_write_without_validation() {
    let location = backend("sqlite").fresh();
    let writes = Writes {
        steps: 40,
        docs: DOCS,
        pause: Duration::ZERO,
    };
    let race = race_processes(location.as_ref(), writes, Some(Broken::Blind));
    let caught = schema_violation(location.as_ref(), &race);
    eprintln!("blind writers caught: {caught:?}");
    assert!(
        caught.is_some(),
        "{} blind writes under {} schema changes passed the schema check",
        race.records.len(),
        race.schema_changes
    );
}

#[test]
fn the_schema_check_catches_a_backend_that_drops_the_schema_guard() {
    let mut caught = None;
    for attempt in 0..5u64 {
        let location = backend("memory").fresh();
        let pause = Duration::from_micros(100);
        let writes = Writes {
            steps: 60,
            docs: DOCS,
            pause: Duration::ZERO,
        };
        let race = race_threads(
            location.as_ref(),
            4,
            writes,
            pause,
            Some(Broken::NoGuard),
            attempt,
            false,
        );
        caught = schema_violation(location.as_ref(), &race);
        if caught.is_some() {
            eprintln!("attempt {attempt} caught: {caught:?}");
            break;
        }
    }
    assert!(
        caught.is_some(),
        "5 runs whose commits ignore schema changes passed the schema check"
    );
}
