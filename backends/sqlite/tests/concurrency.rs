//! Many handles writing one file at once: no lost update, and lock
//! contention is waited out instead of surfacing as SQLITE_BUSY.

use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use revstore::{Error, Precondition, Store};
use revstore_sqlite::SqliteBackend;
use serde_json::json;

/// One get → compare-and-swap increment, retried until it wins.
fn increment(store: &Store) -> u32 {
    let mut conflicts = 0;
    loop {
        let doc = store.get("counters", "c").unwrap().unwrap();
        let n = doc.body["n"].as_u64().unwrap();
        match store.replace(
            "counters",
            "c",
            json!({"n": n + 1}),
            Precondition::Revision(doc.revision),
        ) {
            Ok(_) => return conflicts,
            Err(Error::Conflict { .. }) => conflicts += 1,
            Err(e) => panic!("increment failed: {e}"),
        }
    }
}

#[test]
fn eight_handles_increment_one_counter_without_losing_an_update() {
    const THREADS: usize = 8;
    const INCREMENTS: usize = 50;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    Store::open(SqliteBackend::open(&path).unwrap())
        .create("counters", "c", json!({"n": 0}))
        .unwrap();

    let start = Arc::new(Barrier::new(THREADS));
    let workers: Vec<_> = (0..THREADS)
        .map(|_| {
            let path = path.clone();
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                // Each thread has its own backend: its own connections, as
                // separate parts of a program (or processes) would.
                let store = Store::open(SqliteBackend::open(&path).unwrap());
                start.wait();
                (0..INCREMENTS).map(|_| increment(&store)).sum::<u32>()
            })
        })
        .collect();
    let conflicts: u32 = workers.into_iter().map(|w| w.join().unwrap()).sum();

    let doc = Store::open(SqliteBackend::open(&path).unwrap())
        .get("counters", "c")
        .unwrap()
        .unwrap();
    assert_eq!(doc.body["n"], (THREADS * INCREMENTS) as u64);
    assert_eq!(doc.revision, (THREADS * INCREMENTS) as u64 + 1);
    // The test only proves something if the writers really raced.
    assert!(conflicts > 0, "no compare-and-swap ever lost a race");
}

#[test]
fn one_shared_handle_serves_many_threads() {
    const THREADS: usize = 8;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(SqliteBackend::open(dir.path().join("store.db")).unwrap());
    store.create("counters", "c", json!({"n": 0})).unwrap();
    let start = Arc::new(Barrier::new(THREADS));
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let store = store.clone();
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                start.wait();
                for i in 0..25 {
                    // Unconditional patches to different fields all survive.
                    store
                        .patch(
                            "counters",
                            "c",
                            &revstore::Patch::Merge(json!({ format!("t{t}"): i })),
                            Precondition::Any,
                        )
                        .unwrap();
                    store
                        .update("counters", "c", |body| {
                            let n = body["n"].as_u64().unwrap_or(0);
                            body.insert("n".to_owned(), json!(n + 1));
                            Ok(())
                        })
                        .unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let doc = store.get("counters", "c").unwrap().unwrap();
    assert_eq!(doc.body["n"], 25 * THREADS as u64);
    for t in 0..THREADS {
        assert_eq!(doc.body[&format!("t{t}")], 24);
    }
    assert_eq!(doc.revision, 1 + 2 * 25 * THREADS as u64);
}

/// Holds the database's write lock from another connection for `hold`.
fn hold_write_lock(path: &Path, hold: Duration, locked: &Barrier) {
    let mut conn = rusqlite::Connection::open(path).unwrap();
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .unwrap();
    // As a format-2 writer must: the change row first.
    tx.execute_batch(
        "INSERT INTO changes (collection, name, revision, kind) VALUES ('other', 'held', 1, 'created');
         INSERT INTO documents VALUES ('other', 'held', 1, '{}');",
    )
    .unwrap();
    locked.wait();
    std::thread::sleep(hold);
    tx.commit().unwrap();
}

#[test]
fn writers_wait_for_a_long_transaction_and_then_succeed() {
    const WRITERS: usize = 4;
    const HOLD: Duration = Duration::from_millis(1000);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = Store::open(SqliteBackend::open(&path).unwrap());
    store.create("counters", "c", json!({"n": 0})).unwrap();

    let locked = Arc::new(Barrier::new(WRITERS + 1));
    let holder = {
        let path = path.clone();
        let locked = Arc::clone(&locked);
        std::thread::spawn(move || hold_write_lock(&path, HOLD, &locked))
    };
    let writers: Vec<_> = (0..WRITERS)
        .map(|t| {
            let path = path.clone();
            let locked = Arc::clone(&locked);
            std::thread::spawn(move || {
                let store = Store::open(SqliteBackend::open(&path).unwrap());
                locked.wait();
                let began = Instant::now();
                // Reads are not blocked by the writer (WAL).
                assert!(store.get("counters", "c").unwrap().is_some());
                let read_took = began.elapsed();
                store
                    .create("waiting", &format!("w{t}"), json!({"t": t}))
                    .unwrap();
                store
                    .update("counters", "c", |body| {
                        let n = body["n"].as_u64().unwrap_or(0);
                        body.insert("n".to_owned(), json!(n + 1));
                        Ok(())
                    })
                    .unwrap();
                (read_took, began.elapsed())
            })
        })
        .collect();
    for w in writers {
        let (read_took, took) = w.join().unwrap();
        assert!(
            read_took < HOLD / 2,
            "a read waited {read_took:?} for the writer"
        );
        assert!(
            took >= HOLD * 8 / 10,
            "a write finished after {took:?}, inside the held lock"
        );
    }
    holder.join().unwrap();

    assert_eq!(store.list("waiting").unwrap().len(), WRITERS);
    assert_eq!(
        store.get("counters", "c").unwrap().unwrap().body["n"],
        WRITERS as u64
    );
    assert!(store.get("other", "held").unwrap().is_some());
}

/// Many handles opening a brand-new file at the same moment all succeed: the
/// format check must never see another opener's table without its version.
#[test]
fn concurrent_opens_of_a_new_file_all_succeed() {
    for round in 0..300 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let barrier = std::sync::Barrier::new(16);
        std::thread::scope(|scope| {
            for _ in 0..16 {
                scope.spawn(|| {
                    barrier.wait();
                    if let Err(e) = revstore_sqlite::SqliteBackend::open(&path) {
                        panic!("round {round}: open failed: {e}");
                    }
                });
            }
        });
    }
}
