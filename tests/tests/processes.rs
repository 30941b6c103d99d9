//! Several OS processes of `revstore-worker`, two threads each, on one YAML
//! store and one SQLite store: seeded histories merged and checked, the
//! increment race, and disjoint patches.
//!
//! Default size per backend: 3 processes × 2 threads; history 300 steps per
//! thread (1 800 operations, plus final reads), increments 60 per thread (360
//! increments), disjoint patches 40 per thread (240 patches).
//! `REVSTORE_SOAK=N` multiplies the per-thread counts by N.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command};

use revstore::testkit::clock::monotonic_nanos;
use revstore::testkit::history::{read_history, Client, MemorySink, Record};
use revstore::testkit::soak_factor;
use revstore::testkit::workload::{disjoint_field, final_reads, COUNTERS};
use revstore::testkit::TestLocation;
use revstore_tests::{backend, check_saving, skip_postgres};
use serde_json::json;

const PROCESSES: u32 = 3;
const THREADS: usize = 2;
/// Workers start this long after they are spawned, all at the same instant.
const START_DELAY_NS: u64 = 300_000_000;

fn worker(mode: &str, url: &str, process: u32, start_at: u64, extra: &[String]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_revstore-worker"))
        .arg(mode)
        .args(["--url", url])
        .args(["--process", &process.to_string()])
        .args(["--threads", &THREADS.to_string()])
        .args(["--start-at", &start_at.to_string()])
        .args(extra)
        .spawn()
        .expect("spawn revstore-worker")
}

/// Starts one worker per process number with the same arguments and waits
/// for all of them to succeed.
fn run_workers(mode: &str, location: &dyn TestLocation, extra: impl Fn(u32) -> Vec<String>) {
    let url = location.url().expect("the backend has a URL");
    let start_at = monotonic_nanos() + START_DELAY_NS;
    let children: Vec<Child> = (0..PROCESSES)
        .map(|p| worker(mode, &url, p, start_at, &extra(p)))
        .collect();
    for (p, child) in children.into_iter().enumerate() {
        let status = child.wait_with_output().expect("wait for worker").status;
        assert!(status.success(), "{mode} worker {p} on {url}: {status}");
    }
}

fn history(backend_name: &str) {
    let location = backend(backend_name).fresh();
    let dir = tempfile::tempdir().unwrap();
    let steps = 300 * soak_factor() as usize;
    let keys = 2u8;
    let out = |p: u32| dir.path().join(format!("history-{p}.jsonl"));
    run_workers("history", location.as_ref(), |p| {
        let mut args = vec![
            "--seed".to_owned(),
            "4242".to_owned(),
            "--steps".to_owned(),
            steps.to_string(),
            "--keys".to_owned(),
            keys.to_string(),
            "--out".to_owned(),
            out(p).display().to_string(),
        ];
        // One process shares a handle between its threads.
        if p == 0 {
            args.push("--shared".to_owned());
        }
        args
    });
    let mut records = Vec::new();
    for p in 0..PROCESSES {
        let mine = read_history(Path::new(&out(p))).unwrap();
        assert_eq!(mine.len(), THREADS * steps, "history of worker {p}");
        records.extend(mine);
    }
    assert!(
        processes_overlapped(&records),
        "{backend_name}: the workers ran one after another, not concurrently"
    );
    let finals = MemorySink::new();
    let me = Client {
        process: std::process::id(),
        thread: 0,
    };
    final_reads(&location.open(), me, keys, &finals).unwrap();
    records.extend(finals.into_records());
    let label = format!("{backend_name} processes");
    let summary = check_saving(&records, &label).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{label}: {summary}");
    assert!(summary.committed > 0, "{summary}");
}

/// Whether some operation of one process ran while one of another process
/// did: otherwise the run proved nothing about processes.
fn processes_overlapped(records: &[Record]) -> bool {
    let mut spans: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    for r in records {
        let end = r.return_ns.unwrap_or(u64::MAX);
        let span = spans.entry(r.client.process).or_insert((r.invoke_ns, end));
        *span = (span.0.min(r.invoke_ns), span.1.max(end));
    }
    let spans: Vec<(u64, u64)> = spans.into_values().collect();
    spans.len() == PROCESSES as usize
        && spans
            .iter()
            .enumerate()
            .all(|(i, a)| spans[..i].iter().any(|b| a.0 < b.1 && b.0 < a.1) || i == 0)
}

fn increments(backend_name: &str) {
    let location = backend(backend_name).fresh();
    let times = 60 * soak_factor() as usize;
    location
        .open()
        .create(COUNTERS, "c", json!({"count": 0}))
        .unwrap();
    run_workers("increment", location.as_ref(), |_| {
        vec![
            "--name".to_owned(),
            "c".to_owned(),
            "--times".to_owned(),
            times.to_string(),
        ]
    });
    let total = PROCESSES as usize * THREADS * times;
    let doc = location.open().get(COUNTERS, "c").unwrap().unwrap();
    assert_eq!(doc.body["count"], json!(total), "{backend_name}");
    assert_eq!(doc.revision, 1 + total as u64, "{backend_name}");
}

fn disjoint(backend_name: &str) {
    let location = backend(backend_name).fresh();
    let times = 40 * soak_factor() as usize;
    location.open().create(COUNTERS, "d", json!({})).unwrap();
    run_workers("disjoint", location.as_ref(), |_| {
        vec![
            "--name".to_owned(),
            "d".to_owned(),
            "--times".to_owned(),
            times.to_string(),
        ]
    });
    let doc = location.open().get(COUNTERS, "d").unwrap().unwrap();
    let mut missing = Vec::new();
    for p in 0..PROCESSES {
        for t in 0..THREADS as u32 {
            for i in 0..times {
                let field = disjoint_field(p, t, i);
                if doc.body.get(&field) != Some(&json!(true)) {
                    missing.push(field);
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{backend_name}: lost patches {missing:?}"
    );
    let total = PROCESSES as usize * THREADS * times;
    assert_eq!(doc.body.len(), total, "{backend_name}");
    assert_eq!(doc.revision, 1 + total as u64, "{backend_name}");
}

#[test]
fn yaml_history() {
    history("yaml");
}

#[test]
fn sqlite_history() {
    history("sqlite");
}

#[test]
fn postgres_history() {
    if skip_postgres() {
        return;
    }
    history("postgres");
}

#[test]
fn yaml_increments() {
    increments("yaml");
}

#[test]
fn sqlite_increments() {
    increments("sqlite");
}

#[test]
fn postgres_increments() {
    if skip_postgres() {
        return;
    }
    increments("postgres");
}

#[test]
fn yaml_disjoint_patches() {
    disjoint("yaml");
}

#[test]
fn sqlite_disjoint_patches() {
    disjoint("sqlite");
}

#[test]
fn postgres_disjoint_patches() {
    if skip_postgres() {
        return;
    }
    disjoint("postgres");
}
