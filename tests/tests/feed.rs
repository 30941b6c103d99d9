//! The change feed against a model, across processes (`TESTING.md` step
//! 4): writer processes run the seeded history workload while follower
//! processes record every change they receive, and a read of the key
//! right after each.
//!
//! The test first writes a little itself, so that the follower's cursor
//! has history before it. Follower A takes the cursor (before the writers
//! start) and exits after a fixed number of changes; follower B resumes
//! from A's last cursor, in a new process, and follows until the store's
//! last seq after the writers are done. Then: the history checker accepts
//! every operation (the followers' reads included), and `check_feed`
//! proves that, per key, A's and B's changes together are exactly the
//! committed revisions after the cursor, in order, each once, none from
//! before it, with the right kinds, each visible to the read after it.
//! The followers' feed also equals a fresh `changes_since(cursor)`.
//!
//! Default size per backend: 30 writes before the cursor, 3 processes × 2
//! threads × 300 steps (1 800 operations), follower A stops after 100
//! changes; memory runs 4 threads × 150 steps with the followers as
//! threads. `REVSTORE_SOAK=N` multiplies the steps by N.
//!
//! The check can fail: a follower over a feed that loses every seventh
//! change (memory, 4 threads × 100 steps) is caught every time.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use revstore::testkit::checker::ViolationKind;
use revstore::testkit::checker::{check_feed, Delivery, FeedSummary};
use revstore::testkit::clock::monotonic_nanos;
use revstore::testkit::history::{
    read_history, read_lines, Client, FeedCursor, FeedRecord, MemorySink, Record,
};
use revstore::testkit::soak_factor;
use revstore::testkit::workload::{final_reads, generate, run_client, run_threads, Handles};
use revstore::testkit::TestLocation;
use revstore_tests::follow::{feed_after, follow, lossy, take_cursor, Until};
use revstore_tests::worker::{Worker, WAIT};
use revstore_tests::{backend, check_saving, skip_postgres, worker_args};
use serde_json::Value;

const WORKER: &str = env!("CARGO_BIN_EXE_revstore-worker");
const PROCESSES: u32 = 3;
const THREADS: usize = 2;
const KEYS: u8 = 2;
/// Changes follower A receives before it exits.
const FIRST_FOLLOWER: usize = 100;
const START_DELAY_NS: u64 = 300_000_000;

fn me(thread: u32) -> Client {
    Client {
        process: std::process::id(),
        thread,
    }
}

/// Writes made by the test before the cursor is taken.
fn write_before_cursor(location: &dyn TestLocation) -> Vec<Record> {
    let sink = MemorySink::new();
    let steps = generate(0xfeed, 1, 30, KEYS).unwrap();
    run_client(&location.open(), me(900), &steps[0], &sink).unwrap();
    sink.into_records()
}

/// Checks the run and the feed the followers received.
fn check_run(
    location: &dyn TestLocation,
    mut records: Vec<Record>,
    feed: &[FeedRecord],
    cursor: FeedCursor,
    label: &str,
) -> FeedSummary {
    let finals = MemorySink::new();
    final_reads(&location.open(), me(999), KEYS, &finals).unwrap();
    records.extend(finals.into_records());
    let summary = check_saving(&records, label).unwrap_or_else(|e| panic!("{e}"));
    let checked = check_feed(&records, feed, cursor, Delivery::ExactlyOnce)
        .unwrap_or_else(|v| panic!("{label}: {v}"));
    let fresh = feed_after(&location.open(), cursor.seq).unwrap();
    let received: Vec<FeedRecord> = feed
        .iter()
        .map(|c| FeedRecord {
            read: None,
            ..c.clone()
        })
        .collect();
    assert_eq!(
        received, fresh,
        "{label}: the followers' feed differs from changes_since({})",
        cursor.seq
    );
    eprintln!("{label}: {summary}\n{label}: cursor {cursor:?}, {checked:?}");
    assert!(checked.changes > FIRST_FOLLOWER, "{label}: {checked:?}");
    assert!(cursor.seq > 0, "{label}: nothing before the cursor");
    checked
}

fn follower(url: &str, dir: &Path, name: &str, extra: &[&str]) -> (Worker, PathBuf, PathBuf) {
    let reads = dir.join(format!("{name}-reads.jsonl"));
    let changes = dir.join(format!("{name}-changes.jsonl"));
    let (r, c) = (reads.display().to_string(), changes.display().to_string());
    let mut args = worker_args("follow", url, 50, 1, 0, &["--reads", &r, "--changes", &c]);
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let worker = Worker::spawn(Path::new(WORKER), &args, &format!("follower {name}"));
    (worker, reads, changes)
}

fn json_line(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
}

fn feed_across_processes(backend_name: &str) {
    let location = backend(backend_name).fresh();
    let url = location.url().expect("a URL");
    let dir = tempfile::tempdir().unwrap();
    let mut records = write_before_cursor(location.as_ref());

    let max = FIRST_FOLLOWER.to_string();
    let (mut a, a_reads, a_changes) = follower(&url, dir.path(), "a", &["--max", &max]);
    let cursor: FeedCursor = serde_json::from_str(&a.recv(WAIT)).unwrap();

    let start_at = monotonic_nanos() + START_DELAY_NS;
    let steps = (300 * soak_factor()).to_string();
    let keys = KEYS.to_string();
    let writers: Vec<(Worker, PathBuf)> = (0..PROCESSES)
        .map(|p| {
            let out = dir.path().join(format!("history-{p}.jsonl"));
            let o = out.display().to_string();
            let extra = [
                "--seed", "99", "--steps", &steps, "--keys", &keys, "--out", &o,
            ];
            let args = worker_args("history", &url, p, THREADS, start_at, &extra);
            let label = format!("history writer {p}");
            (Worker::spawn(Path::new(WORKER), &args, &label), out)
        })
        .collect();

    // A exits by itself after its changes; B resumes where A stopped.
    let a_end = json_line(a.exited(WAIT).last().expect("A's last cursor"));
    assert_eq!(a_end["changes"], FIRST_FOLLOWER, "{backend_name}: {a_end}");
    let resume = a_end["cursor"].as_u64().unwrap().to_string();
    let (mut b, b_reads, b_changes) = follower(&url, dir.path(), "b", &["--after", &resume]);
    let b_start = json_line(&b.recv(WAIT));
    assert_eq!(b_start["seq"].as_u64().unwrap().to_string(), resume);

    for (writer, out) in writers {
        writer.finish(WAIT);
        records.extend(read_history(&out).unwrap());
    }
    let last = location.open().last_seq().unwrap();
    b.send(&format!("stop {last}"));
    let b_end = json_line(b.finish(WAIT).last().expect("B's last cursor"));
    assert_eq!(b_end["cursor"], last, "{backend_name}: {b_end}");

    for reads in [&a_reads, &b_reads] {
        records.extend(read_history(reads).unwrap());
    }
    let mut feed: Vec<FeedRecord> = read_lines(&a_changes).unwrap();
    feed.extend(read_lines::<FeedRecord>(&b_changes).unwrap());
    check_run(
        location.as_ref(),
        records,
        &feed,
        cursor,
        &format!("{backend_name} feed"),
    );
}

#[test]
fn yaml_followers_receive_exactly_the_committed_revisions_after_their_cursor() {
    feed_across_processes("yaml");
}

#[test]
fn sqlite_followers_receive_exactly_the_committed_revisions_after_their_cursor() {
    feed_across_processes("sqlite");
}

#[test]
fn postgres_followers_receive_exactly_the_committed_revisions_after_their_cursor() {
    if skip_postgres() {
        return;
    }
    feed_across_processes("postgres");
}

#[test]
fn memory_followers_receive_exactly_the_committed_revisions_after_their_cursor() {
    let location = backend("memory").fresh();
    let mut records = write_before_cursor(location.as_ref());
    let workload = generate(0xfee1, 4, 150 * soak_factor() as usize, KEYS).unwrap();
    let follower_store = location.open();
    let cursor = take_cursor(&follower_store).unwrap();
    let stop_at = AtomicU64::new(u64::MAX);
    let reads = MemorySink::new();
    let writes = MemorySink::new();
    let mut feed = Vec::new();
    std::thread::scope(|s| {
        let following = s.spawn(|| {
            let client = me(50);
            let mut received = |c| {
                feed.push(c);
                Ok(())
            };
            let never = || None;
            let first = Until {
                changes: Some(FIRST_FOLLOWER),
                seq: &never,
                timeout: WAIT,
            };
            let a = follow(
                &follower_store,
                client,
                cursor.seq,
                first,
                &reads,
                &mut received,
            )
            .unwrap();
            let stop = || Some(stop_at.load(Ordering::Relaxed)).filter(|&s| s != u64::MAX);
            let rest = Until {
                changes: None,
                seq: &stop,
                timeout: WAIT,
            };
            let client = me(51);
            follow(
                &follower_store,
                client,
                a.cursor,
                rest,
                &reads,
                &mut received,
            )
            .unwrap();
        });
        let open = || location.open();
        run_threads(&open, Handles::Own, std::process::id(), &workload, &writes).unwrap();
        stop_at.store(location.open().last_seq().unwrap(), Ordering::Relaxed);
        following.join().unwrap();
    });
    records.extend(writes.into_records());
    records.extend(reads.into_records());
    check_run(location.as_ref(), records, &feed, cursor, "memory feed");
}

#[test]
fn a_feed_that_loses_changes_is_caught() {
    let location = backend("memory").fresh();
    let mut records = write_before_cursor(location.as_ref());
    let workload = generate(0xbad, 4, 100, KEYS).unwrap();
    let writes = MemorySink::new();
    let open = || location.open();
    let cursor = take_cursor(&location.open()).unwrap();
    run_threads(&open, Handles::Own, std::process::id(), &workload, &writes).unwrap();
    records.extend(writes.into_records());
    let last = location.open().last_seq().unwrap();
    let reads = MemorySink::new();
    let mut feed = Vec::new();
    // The follower's cursor never lands on a lost seq.
    let stop = || Some(if last % 7 == 0 { last - 1 } else { last });
    let until = Until {
        changes: None,
        seq: &stop,
        timeout: WAIT,
    };
    let broken = lossy(&location.open(), 7);
    follow(&broken, me(50), cursor.seq, until, &reads, &mut |c| {
        feed.push(c);
        Ok(())
    })
    .unwrap();
    records.extend(reads.into_records());
    check_saving(&records, "lossy feed history").unwrap_or_else(|e| panic!("{e}"));
    let v = check_feed(&records, &feed, cursor, Delivery::ExactlyOnce)
        .expect_err("a feed that loses every 7th change passed the feed check");
    assert_eq!(v.kind, ViolationKind::Feed, "{v}");
    assert!(
        v.message.contains("missing") || v.message.contains("never reported"),
        "{v}"
    );
    eprintln!("caught: {v}");
}
