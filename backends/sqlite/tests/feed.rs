//! The change feed on SQLite: every commit exactly once, in seq order,
//! across threads, handles and OS processes; pruning and `Compacted`.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use revstore::testkit::races::{assert_feed_matches, follow_feed, write_feed_mix, Written};
use revstore::{ChangeKind, Durability, Error, Precondition, Store};
use revstore_sqlite::{SqliteBackend, SqliteOptions};
use serde_json::json;

fn open_with(path: &Path, retain_changes: u64) -> Store {
    let options = SqliteOptions {
        durability: Durability::Relaxed,
        retain_changes,
        ..SqliteOptions::default()
    };
    Store::open(SqliteBackend::open_with(path, options).unwrap())
}

fn open(path: &Path) -> Store {
    open_with(path, revstore::DEFAULT_RETAINED_CHANGES)
}

fn raw(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).unwrap()
}

fn count(path: &Path, sql: &str) -> u64 {
    let n: i64 = raw(path).query_row(sql, [], |r| r.get(0)).unwrap();
    u64::try_from(n).unwrap()
}

fn retained_after(path: &Path) -> u64 {
    count(path, "SELECT value FROM meta WHERE key = 'retained_after'")
}

fn change_rows(path: &Path) -> u64 {
    count(path, "SELECT count(*) FROM changes")
}

#[test]
fn a_reader_behind_pruning_gets_compacted_never_a_gap() {
    const RETAIN: u64 = 16;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let stop = AtomicBool::new(false);
    let compactions = std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let store = open(&path);
            let (mut cursor, mut compactions) = (0, 0);
            while !stop.load(Ordering::SeqCst) {
                match store.changes_since(cursor, 5) {
                    Ok(batch) => {
                        for change in batch {
                            assert_eq!(change.seq, cursor + 1, "a silent gap");
                            cursor = change.seq;
                        }
                    }
                    Err(Error::Compacted {
                        requested,
                        retained_after,
                    }) => {
                        assert_eq!(requested, cursor);
                        assert!(retained_after > cursor);
                        compactions += 1;
                        cursor = retained_after;
                    }
                    Err(e) => panic!("{e}"),
                }
                // Fall behind on purpose now and then.
                if compactions < 3 {
                    std::thread::sleep(Duration::from_millis(3));
                }
            }
            compactions
        });
        let writers: Vec<_> = (0..3)
            .map(|w| {
                let path = &path;
                scope.spawn(move || {
                    let store = open_with(path, RETAIN);
                    for i in 0..150 {
                        store
                            .replace(
                                "c",
                                &format!("k{w}-{}", i % 4),
                                json!({}),
                                Precondition::Any,
                            )
                            .unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        stop.store(true, Ordering::SeqCst);
        reader.join().unwrap()
    });
    assert!(compactions > 0, "the reader never fell behind");
    assert_eq!(open(&path).last_seq().unwrap(), 450);
}

#[test]
fn pruning_keeps_the_newest_changes_and_reports_the_horizon() {
    const RETAIN: u64 = 40;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = open_with(&path, RETAIN);
    for i in 0..1000u64 {
        store
            .replace(
                "c",
                &format!("k{}", i % 13),
                json!({ "i": i }),
                Precondition::Any,
            )
            .unwrap();
        let last = store.last_seq().unwrap();
        assert_eq!(last, i + 1, "last_seq right after every write and prune");
        let horizon = retained_after(&path);
        let rows = change_rows(&path);
        assert!(rows >= RETAIN.min(last), "kept {rows} of {last}");
        assert!(rows < 2 * RETAIN, "kept {rows}: pruning never ran");
        assert_eq!(horizon + rows, last, "rows after the horizon are all there");
    }
    let last = store.last_seq().unwrap();
    let horizon = retained_after(&path);
    assert!(horizon >= last - 2 * RETAIN);
    match store.changes_since(horizon - 1, 10) {
        Err(Error::Compacted {
            requested,
            retained_after,
        }) => assert_eq!((requested, retained_after), (horizon - 1, horizon)),
        other => panic!("expected Compacted, got {other:?}"),
    }
    let rest = store.changes_since(horizon, usize::MAX).unwrap();
    let seqs: Vec<u64> = rest.iter().map(|c| c.seq).collect();
    assert_eq!(seqs, (horizon + 1..=last).collect::<Vec<_>>());
    assert_eq!(rest.last().unwrap().key.to_string(), "c/k11");
    assert_eq!(rest.last().unwrap().kind, ChangeKind::Updated);
    assert!(store.changes_since(horizon, 0).unwrap().is_empty());

    // A reopened handle continues the sequence; a seq is never reused.
    drop(store);
    let again = open_with(&path, RETAIN);
    assert_eq!(again.last_seq().unwrap(), last);
    again.create("c", "new", json!({})).unwrap();
    let newest = again.changes_since(last, 10).unwrap();
    assert_eq!(newest.len(), 1);
    assert_eq!(
        (newest[0].seq, newest[0].kind),
        (last + 1, ChangeKind::Created)
    );
}

/// Retention 1 prunes down to the newest change, never below it, so the
/// next seq follows it and a cursor before the horizon learns it missed
/// changes.
#[test]
fn seqs_continue_after_pruning_down_to_one_change() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = open_with(&path, 1);
    for i in 0..5 {
        store
            .replace("c", "k", json!({ "i": i }), Precondition::Any)
            .unwrap();
    }
    assert_eq!(change_rows(&path), 1, "retention 1 keeps only the newest");
    assert_eq!(retained_after(&path), 4);
    assert_eq!(store.last_seq().unwrap(), 5);
    assert!(matches!(
        store.changes_since(3, 10),
        Err(Error::Compacted {
            requested: 3,
            retained_after: 4
        })
    ));
    store.delete("c", "k", Precondition::Any).unwrap();
    let changes = store.changes_since(5, 10).unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(
        (changes[0].seq, changes[0].revision, changes[0].kind),
        (6, 6, ChangeKind::Deleted)
    );
    assert_eq!(store.last_seq().unwrap(), 6);
}

#[test]
fn handles_with_different_retentions_never_move_the_horizon_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let (keeps_little, keeps_more) = (open_with(&path, 4), open_with(&path, 290));
    for i in 0..300 {
        keeps_little
            .replace("c", "k", json!({ "i": i }), Precondition::Any)
            .unwrap();
    }
    assert_eq!(retained_after(&path), 296);
    // Its prune at seq 512 would put the horizon at 222: it stays at 296.
    for i in 0..220 {
        keeps_more
            .replace("c", "k", json!({ "i": i }), Precondition::Any)
            .unwrap();
    }
    assert_eq!(retained_after(&path), 296);
    assert!(matches!(
        keeps_more.changes_since(295, 1),
        Err(Error::Compacted {
            requested: 295,
            retained_after: 296
        })
    ));
    assert_eq!(
        keeps_more.changes_since(296, usize::MAX).unwrap().len(),
        224
    );
    assert_eq!(keeps_little.last_seq().unwrap(), 520);
}

/// Set in a child process of [`feed_is_shared_by_os_processes`]: the file
/// to write to and the writer's number.
const CHILD_ENV: &str = "REVSTORE_SQLITE_FEED_CHILD";

/// Three OS processes write while this one follows the feed; the parent
/// re-runs this very test in each child, which then only writes.
#[test]
fn feed_is_shared_by_os_processes() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        let (writer, path) = spec.split_once(':').unwrap();
        let writer: usize = writer.parse().unwrap();
        let written = write_feed_mix(&open(Path::new(path)), writer, 60);
        for (key, revision) in written {
            println!("WROTE {key} {revision}");
        }
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let setup = open(&path);
    for k in ["shared0", "shared1"] {
        setup.create("c", k, json!({})).unwrap();
    }
    let stop = AtomicBool::new(false);
    let (outputs, seen) = std::thread::scope(|scope| {
        let reader = scope.spawn(|| follow_feed(&open(&path), 0, &stop));
        let began = Instant::now();
        let children: Vec<_> = (0..3)
            .map(|w| {
                std::process::Command::new(std::env::current_exe().unwrap())
                    .args(["feed_is_shared_by_os_processes", "--exact", "--nocapture"])
                    .env(CHILD_ENV, format!("{w}:{}", path.display()))
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let outputs: Vec<String> = children
            .into_iter()
            .map(|child| {
                let out = child.wait_with_output().unwrap();
                assert!(out.status.success(), "a writer process failed");
                String::from_utf8(out.stdout).unwrap()
            })
            .collect();
        assert!(began.elapsed() < Duration::from_secs(120));
        stop.store(true, Ordering::SeqCst);
        (outputs, reader.join().unwrap())
    });
    let written: Vec<Written> = outputs
        .iter()
        .flat_map(|out| out.lines())
        .filter_map(|line| line.strip_prefix("WROTE "))
        .map(|rest| {
            let (key, revision) = rest.split_once(' ').unwrap();
            (key.to_owned(), revision.parse().unwrap())
        })
        .collect();
    assert_eq!(written.len(), 3 * 66, "every child reported its writes");
    assert_feed_matches(&seen[2..], &written);
}
