//! `CachedStore` across processes: two `cache-read` processes read the
//! workload keys through a cache (staleness 0 and 20 ms) while writer
//! processes run the seeded history workload.
//!
//! - Per reader, the revisions it observes per key never go backwards.
//! - With staleness 0 every answer must be one the store could have given
//!   at some instant of the read: its reads join the writers' history and
//!   the history checker (real time included) must accept them all.
//! - After the writers stop, each reader catches up and its answers equal
//!   a fresh read of the store.
//!
//! Default size per backend: 3 processes × 2 threads × 300 steps (1 800
//! operations) and two readers reading every 200 µs for as long as the
//! writers run; `REVSTORE_SOAK=N` multiplies the steps by N.
//!
//! The checks can fail: the same reader over a feed that loses every
//! third change (memory, threads; 4 × 100 writes, up to 10 attempts) is
//! caught serving a stale revision.

use std::path::{Path, PathBuf};

use revstore::testkit::clock::monotonic_nanos;
use revstore::testkit::history::{read_history, Outcome, Record};
use revstore::testkit::soak_factor;
use revstore::testkit::workload::{key_name, COLLECTION};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use revstore::testkit::history::{Client, MemorySink};
use revstore::testkit::workload::{final_reads, generate, run_threads, Handles};
use revstore::CachedStore;
use revstore_tests::follow::{goes_backwards, lossy, read_through_cache};
use revstore_tests::worker::{Worker, WAIT};
use revstore_tests::{backend, check_saving, skip_postgres, worker_args};
use serde_json::{json, Value};

const WORKER: &str = env!("CARGO_BIN_EXE_revstore-worker");
const PROCESSES: u32 = 3;
const THREADS: usize = 2;
const KEYS: u8 = 2;
const START_DELAY_NS: u64 = 300_000_000;
/// Runs of the lossy-feed check; each catches the stale cache about half
/// the time on a quiet machine, and one catch is enough. On a loaded one
/// the reader thread may hardly run beside the writers, so runs are cheap
/// (a few milliseconds) and many: 10 once all passed under heavy load.
const ATTEMPTS: u64 = 40;

struct Reader {
    worker: Worker,
    out: PathBuf,
    staleness_ms: u64,
}

fn reader(url: &str, dir: &Path, staleness_ms: u64, start_at: u64) -> Reader {
    let out = dir.join(format!("cache-{staleness_ms}.jsonl"));
    let (o, s, k) = (
        out.display().to_string(),
        staleness_ms.to_string(),
        KEYS.to_string(),
    );
    let extra = ["--staleness-ms", &s, "--keys", &k, "--out", &o];
    let args = worker_args("cache-read", url, 60, 1, start_at, &extra);
    let label = format!("cache reader (staleness {staleness_ms} ms)");
    let mut worker = Worker::spawn(Path::new(WORKER), &args, &label);
    assert_eq!(worker.recv(WAIT), "ready", "{label}");
    Reader {
        worker,
        out,
        staleness_ms,
    }
}

/// What a fresh handle reads for workload key `name`, as a reader prints
/// its final answers.
fn fresh_answer(location: &dyn revstore::testkit::TestLocation, name: &str) -> Value {
    let outcome = match location.open().get(COLLECTION, name).unwrap() {
        Some(doc) => Outcome::Ok {
            revision: doc.revision,
            body: Some(std::sync::Arc::unwrap_or_clone(doc.body)),
        },
        None => Outcome::NotFound { revision: None },
    };
    json!({"collection": COLLECTION, "name": name, "outcome": outcome})
}

fn cache_across_processes(backend_name: &str) {
    let location = backend(backend_name).fresh();
    let url = location.url().expect("a URL");
    let dir = tempfile::tempdir().unwrap();
    let start_at = monotonic_nanos() + START_DELAY_NS;
    let readers = [
        reader(&url, dir.path(), 0, start_at),
        reader(&url, dir.path(), 20, start_at),
    ];
    let steps = (300 * soak_factor()).to_string();
    let keys = KEYS.to_string();
    let mut records: Vec<Record> = Vec::new();
    let writers: Vec<(Worker, PathBuf)> = (0..PROCESSES)
        .map(|p| {
            let out = dir.path().join(format!("history-{p}.jsonl"));
            let o = out.display().to_string();
            let extra = [
                "--seed", "31", "--steps", &steps, "--keys", &keys, "--out", &o,
            ];
            let args = worker_args("history", &url, p, THREADS, start_at, &extra);
            (
                Worker::spawn(Path::new(WORKER), &args, &format!("history writer {p}")),
                out,
            )
        })
        .collect();
    for (writer, out) in writers {
        writer.finish(WAIT);
        records.extend(read_history(&out).unwrap());
    }

    let label = |r: &Reader| format!("{backend_name} cache (staleness {} ms)", r.staleness_ms);
    for mut r in readers {
        let label = label(&r);
        r.worker.send("stop");
        let printed = r.worker.finish(WAIT);
        let reads = read_history(&r.out).unwrap();
        if let Some((key, held, got)) = goes_backwards(&reads) {
            panic!("{label}: {key} went back from revision {held} to {got}");
        }
        for key in 0..KEYS {
            let name = key_name(key);
            let cached: Value = serde_json::from_str(&printed[usize::from(key)]).unwrap();
            assert_eq!(
                cached,
                fresh_answer(location.as_ref(), &name),
                "{label}: after catching up, the cache differs from a fresh read"
            );
        }
        let made: Value = serde_json::from_str(printed.last().unwrap()).unwrap();
        let hits = reads
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Ok { .. }))
            .count();
        eprintln!(
            "{label}: {made}, {hits} of {} found a document",
            reads.len()
        );
        assert!(hits > 0, "{label}: never read a document");
        if r.staleness_ms == 0 {
            records.extend(reads);
        }
    }
    let label = format!("{backend_name} cache");
    let summary = check_saving(&records, &label).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{label}: {summary}");
}

#[test]
fn yaml_a_cache_never_goes_backwards_and_catches_up_across_processes() {
    cache_across_processes("yaml");
}

#[test]
fn sqlite_a_cache_never_goes_backwards_and_catches_up_across_processes() {
    cache_across_processes("sqlite");
}

#[test]
fn postgres_a_cache_never_goes_backwards_and_catches_up_across_processes() {
    if skip_postgres() {
        return;
    }
    cache_across_processes("postgres");
}

/// Reads through a cache over `store` on one thread while four threads
/// write; returns the whole history, and whether the cache's final answers
/// (after catching up) equal fresh reads.
fn cache_in_process(
    location: &dyn revstore::testkit::TestLocation,
    cached: revstore::Store,
    seed: u64,
) -> (Vec<Record>, bool) {
    let workload = generate(seed, 4, 100, KEYS).unwrap();
    let cache = CachedStore::new(cached, Duration::ZERO).unwrap();
    let sink = MemorySink::new();
    let reads = MemorySink::new();
    let stop = AtomicBool::new(false);
    let reader = Client {
        process: std::process::id(),
        thread: 60,
    };
    std::thread::scope(|s| {
        let reading = s.spawn(|| {
            let done = || stop.load(Ordering::Relaxed);
            read_through_cache(
                &cache,
                reader,
                KEYS,
                Duration::from_micros(20),
                &done,
                WAIT,
                &reads,
            )
            .unwrap()
        });
        let open = || location.open();
        run_threads(&open, Handles::Own, std::process::id(), &workload, &sink).unwrap();
        stop.store(true, Ordering::Relaxed);
        reading.join().unwrap();
    });
    cache.catch_up().unwrap();
    let same = (0..KEYS).all(|k| {
        let name = key_name(k);
        cache.get(COLLECTION, &name).unwrap() == location.open().get(COLLECTION, &name).unwrap()
    });
    let mut records = sink.into_records();
    let finals = Client {
        process: std::process::id(),
        thread: 999,
    };
    final_reads(&location.open(), finals, KEYS, &sink_of(&mut records)).unwrap();
    records.extend(reads.into_records());
    (records, same)
}

/// A sink appending to `records` (for the final reads).
fn sink_of(records: &mut Vec<Record>) -> impl revstore::testkit::history::Sink + '_ {
    struct Append<'a>(std::sync::Mutex<&'a mut Vec<Record>>);
    impl revstore::testkit::history::Sink for Append<'_> {
        fn record(&self, record: Record) -> std::io::Result<()> {
            self.0.lock().unwrap().push(record);
            Ok(())
        }
    }
    Append(std::sync::Mutex::new(records))
}

#[test]
fn memory_a_cache_never_goes_backwards_and_catches_up_across_threads() {
    let location = backend("memory").fresh();
    let (records, same) = cache_in_process(location.as_ref(), location.open(), 0xcac4e);
    assert!(
        same,
        "after catching up, the cache differs from a fresh read"
    );
    let summary = check_saving(&records, "memory cache").unwrap_or_else(|e| panic!("{e}"));
    eprintln!("memory cache: {summary}");
}

#[test]
fn a_cache_over_a_feed_that_loses_changes_is_caught() {
    let mut caught = Vec::new();
    for attempt in 0..ATTEMPTS {
        let location = backend("memory").fresh();
        let broken = lossy(&location.open(), 3);
        let (records, same) = cache_in_process(location.as_ref(), broken, 0xbad + attempt);
        if !same {
            caught.push("its final answers differ from fresh reads".to_owned());
        }
        if let Err(v) = revstore::testkit::checker::check(&records) {
            caught.push(v.to_string());
        }
        if !caught.is_empty() {
            eprintln!("attempt {attempt} caught: {caught:?}");
            break;
        }
    }
    assert!(
        !caught.is_empty(),
        "{ATTEMPTS} runs of a cache over a feed that loses every third change passed"
    );
}
