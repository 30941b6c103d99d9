//! In-process races that every backend must win: the increment race (the
//! object_store `put_opts` test), disjoint patches, and the semantic-layer
//! regression from DESIGN.md. Processes run the same races in the
//! `revstore-tests` package.

use std::sync::{Arc, Barrier};
use std::thread;

use serde_json::{json, Value};

use super::{soak_factor, TestBackend, TestLocation};
use crate::{Error, Patch, Precondition, Store};

/// Workers and increments per worker for the races (scaled by the soak
/// factor).
fn sizes() -> (usize, usize) {
    (8, 25 * soak_factor() as usize)
}

/// How workers get their handle.
#[derive(Clone, Copy)]
enum Handles {
    Shared,
    Own,
}

/// Runs `work(store, worker)` on `workers` threads started together.
fn run_workers<F>(location: &dyn TestLocation, handles: Handles, workers: usize, work: F)
where
    F: Fn(&Store, usize) + Send + Sync,
{
    let shared = location.open();
    let barrier = Barrier::new(workers);
    let work = &work;
    thread::scope(|scope| {
        for worker in 0..workers {
            let store = match handles {
                Handles::Shared => shared.clone(),
                Handles::Own => location.open(),
            };
            let barrier = &barrier;
            scope.spawn(move || {
                barrier.wait();
                work(&store, worker);
            });
        }
    });
}

/// One increment by read → compare-and-swap → retry on conflict; returns the
/// conflicts it lost.
pub fn cas_increment(store: &Store, collection: &str, name: &str) -> crate::Result<u64> {
    let mut conflicts = 0;
    loop {
        // A backend that refused every compare-and-swap would spin here
        // forever; fail instead of hanging the suite.
        assert!(
            conflicts < 100_000,
            "{collection}/{name}: 100 000 compare-and-swaps in a row lost"
        );
        let doc = store
            .get(collection, name)?
            .ok_or_else(|| Error::NotFound {
                key: crate::Key::new(collection, name).unwrap_or_else(|e| panic!("{e}")),
            })?;
        let n = doc.body.get("n").and_then(Value::as_u64).unwrap_or(0);
        match store.replace(
            collection,
            name,
            json!({ "n": n + 1 }),
            Precondition::Revision(doc.revision),
        ) {
            Ok(_) => return Ok(conflicts),
            Err(Error::Conflict { .. }) => conflicts += 1,
            Err(e) => return Err(e),
        }
    }
}

fn increment_race(backend: &dyn TestBackend, handles: Handles) {
    let location = backend.fresh();
    let (workers, per_worker) = sizes();
    location
        .open()
        .create("race", "counter", json!({"n": 0}))
        .unwrap();
    run_workers(&*location, handles, workers, |store, _| {
        for _ in 0..per_worker {
            cas_increment(store, "race", "counter").unwrap();
        }
    });
    let doc = location.open().get("race", "counter").unwrap().unwrap();
    let total = (workers * per_worker) as u64;
    assert_eq!(
        doc.body["n"],
        total,
        "{}: {workers} workers × {per_worker} increments",
        backend.name()
    );
    assert_eq!(doc.revision, total + 1, "one revision per committed write");
}

/// W threads sharing one handle each do N get → compare-and-swap → retry
/// increments; the counter ends at exactly W×N.
pub fn increment_race_shared_handle(backend: &dyn TestBackend) {
    increment_race(backend, Handles::Shared);
}

/// The increment race with a handle per thread.
pub fn increment_race_own_handles(backend: &dyn TestBackend) {
    increment_race(backend, Handles::Own);
}

/// W threads × N increments through [`Store::update`], whose retries live
/// in the engine.
pub fn update_race(backend: &dyn TestBackend) {
    let location = backend.fresh();
    let (workers, per_worker) = sizes();
    location
        .open()
        .create("race", "counter", json!({"n": 0}))
        .unwrap();
    run_workers(&*location, Handles::Own, workers, |store, _| {
        for _ in 0..per_worker {
            store
                .update("race", "counter", |body| {
                    let n = body.get("n").and_then(Value::as_u64).ok_or("n missing")?;
                    body.insert("n".into(), json!(n + 1));
                    Ok(())
                })
                .unwrap();
        }
    });
    let doc = location.open().get("race", "counter").unwrap().unwrap();
    assert_eq!(
        doc.body["n"],
        (workers * per_worker) as u64,
        "{}",
        backend.name()
    );
}

/// Unconditional merge patches of distinct fields from many threads: every
/// field written is present at the end, and every patch made one revision.
pub fn disjoint_patches_all_survive(backend: &dyn TestBackend) {
    let location = backend.fresh();
    let (workers, per_worker) = sizes();
    location.open().create("race", "doc", json!({})).unwrap();
    run_workers(&*location, Handles::Own, workers, |store, worker| {
        for i in 0..per_worker {
            let field = format!("w{worker}_{i}");
            store
                .patch(
                    "race",
                    "doc",
                    &Patch::Merge(json!({ field: i })),
                    Precondition::Any,
                )
                .unwrap();
        }
    });
    let doc = location.open().get("race", "doc").unwrap().unwrap();
    let missing: Vec<String> = (0..workers)
        .flat_map(|w| (0..per_worker).map(move |i| format!("w{w}_{i}")))
        .filter(|f| !doc.body.contains_key(f))
        .collect();
    assert!(
        missing.is_empty(),
        "{}: lost fields {missing:?}",
        backend.name()
    );
    assert_eq!(doc.revision, (workers * per_worker) as u64 + 1);
}

fn semantic_model() -> Value {
    json!({
        "description": "Orders",
        "joins": ["customers"],
        "cache": {"rows": 0, "refreshed": "never"}
    })
}

/// The semantic-layer story: a slow reader computes a cache and patches only
/// the cache fields while another writer edits description and joins. Both
/// edits survive.
pub fn slow_cache_refresh_keeps_concurrent_edit(backend: &dyn TestBackend) {
    let location = backend.fresh();
    let (refresher, editor) = (location.open(), location.open());
    refresher
        .create("models", "orders", semantic_model())
        .unwrap();
    let read_done = Arc::new(Barrier::new(2));
    let edit_done = Arc::new(Barrier::new(2));
    thread::scope(|scope| {
        let (r1, e1) = (read_done.clone(), edit_done.clone());
        scope.spawn(move || {
            let seen = refresher.get("models", "orders").unwrap().unwrap();
            r1.wait();
            e1.wait(); // the slow work, during which the edit lands
            let rows = seen.body["joins"].as_array().map_or(0, Vec::len) * 1000;
            refresher
                .patch(
                    "models",
                    "orders",
                    &Patch::Merge(json!({"cache": {"rows": rows, "refreshed": "now"}})),
                    Precondition::Any,
                )
                .unwrap();
        });
        scope.spawn(move || {
            read_done.wait();
            editor
                .patch(
                    "models",
                    "orders",
                    &Patch::Merge(
                        json!({"description": "All orders", "joins": ["customers", "items"]}),
                    ),
                    Precondition::Any,
                )
                .unwrap();
            edit_done.wait();
        });
    });
    let doc = location.open().get("models", "orders").unwrap().unwrap();
    assert_eq!(doc.revision, 3);
    assert_eq!(
        Value::Object(std::sync::Arc::unwrap_or_clone(doc.body)),
        json!({
            "description": "All orders",
            "joins": ["customers", "items"],
            "cache": {"rows": 1000, "refreshed": "now"}
        }),
        "{}: both the edit and the cache refresh survive",
        backend.name()
    );
}

/// The same race with the refresh conditioned on the revision it read: the
/// stale refresh is refused and nothing else is touched.
pub fn stale_cache_refresh_with_precondition_is_refused(backend: &dyn TestBackend) {
    let location = backend.fresh();
    let (refresher, editor) = (location.open(), location.open());
    refresher
        .create("models", "orders", semantic_model())
        .unwrap();
    let seen = refresher.get("models", "orders").unwrap().unwrap();
    let edit = thread::spawn(move || {
        editor
            .patch(
                "models",
                "orders",
                &Patch::Merge(json!({"description": "All orders", "joins": []})),
                Precondition::Any,
            )
            .unwrap()
    });
    let edited = edit.join().unwrap();
    let refused = refresher.patch(
        "models",
        "orders",
        &Patch::Merge(json!({"cache": {"rows": 5, "refreshed": "now"}})),
        Precondition::Revision(seen.revision),
    );
    match refused {
        Err(Error::Conflict { actual, .. }) => assert_eq!(actual.live_revision(), Some(2)),
        other => panic!("{}: expected a conflict, got {other:?}", backend.name()),
    }
    let doc = location.open().get("models", "orders").unwrap().unwrap();
    assert_eq!(doc, edited, "the refused refresh changed nothing");
    assert_eq!(doc.body["cache"], json!({"rows": 0, "refreshed": "never"}));
}

/// One committed write a writer saw acknowledged: the key and revision.
pub type Written = (String, u64);

/// Writes `writes` times to keys of its own and to two shared keys (with
/// a delete every tenth write), and returns every write it committed.
///
/// # Panics
/// When a write fails.
pub fn write_feed_mix(store: &Store, writer: usize, writes: usize) -> Vec<Written> {
    let mut done = Vec::new();
    for i in 0..writes {
        let own = format!("w{writer}-{}", i / 3);
        let (name, doc) = match i % 3 {
            0 => (own.clone(), store.create("c", &own, json!({ "i": i }))),
            1 => {
                let name = format!("shared{}", i % 2);
                let patch = Patch::Merge(json!({ format!("w{writer}"): i }));
                let doc = store.patch("c", &name, &patch, Precondition::Any);
                (name, doc)
            }
            _ => (
                own.clone(),
                store.replace("c", &own, json!({ "again": i }), Precondition::Any),
            ),
        };
        let doc = doc.unwrap_or_else(|e| panic!("writer {writer}, write {i} to {name}: {e}"));
        done.push((format!("c/{name}"), doc.revision));
        if i % 10 == 9 {
            let revision = store
                .delete("c", &own, Precondition::Any)
                .unwrap_or_else(|e| panic!("writer {writer}, delete {own}: {e}"));
            done.push((format!("c/{own}"), revision));
        }
    }
    done
}

/// Follows the feed from `cursor` until `stop` is set and the feed is
/// drained, checking on the way that seqs are contiguous and that a change
/// is in the feed as soon as its write is visible to a read.
///
/// # Panics
/// When the feed has a gap or a repeat, or lags behind a read.
pub fn follow_feed(
    store: &Store,
    mut cursor: u64,
    stop: &std::sync::atomic::AtomicBool,
) -> Vec<crate::Change> {
    use std::sync::atomic::Ordering;
    let mut seen = Vec::new();
    let mut committed = std::collections::BTreeSet::new();
    loop {
        let stopping = stop.load(Ordering::SeqCst);
        // A write visible to this read must be in the feed read after it.
        let probe = store.get_record("c", "shared1").expect("read c/shared1");
        loop {
            let batch = store.changes_since(cursor, 7).expect("read the feed");
            if batch.is_empty() {
                break;
            }
            for change in batch {
                assert_eq!(change.seq, cursor + 1, "a gap or a repeat in the feed");
                cursor = change.seq;
                committed.insert((change.key.to_string(), change.revision));
                seen.push(change);
            }
        }
        if let Some(record) = probe {
            assert!(
                committed.contains(&("c/shared1".to_owned(), record.revision)),
                "revision {} of c/shared1 was readable before it was in the feed",
                record.revision
            );
        }
        if stopping {
            return seen;
        }
    }
}

/// Writers on their own handles commit creates, patches of two shared
/// keys, replaces and deletes while a follower on another handle reads the
/// feed: it sees every acknowledged write exactly once, in seq order with
/// no gap, never after the write was already visible to a read, and per
/// key in revision order.
pub fn feed_follower_sees_concurrent_commits_once_in_order(backend: &dyn TestBackend) {
    use std::sync::atomic::{AtomicBool, Ordering};

    let location = backend.fresh();
    let location = &*location;
    let (writers, writes) = (4, 30 * soak_factor() as usize);
    let setup = location.open();
    for k in ["shared0", "shared1"] {
        setup
            .create("c", k, json!({}))
            .expect("create a shared key");
    }
    let start = setup.last_seq().expect("last seq");
    let stop = AtomicBool::new(false);
    let (written, seen) = thread::scope(|scope| {
        let follower = {
            let store = location.open();
            let stop = &stop;
            scope.spawn(move || follow_feed(&store, 0, stop))
        };
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let store = location.open();
                scope.spawn(move || write_feed_mix(&store, w, writes))
            })
            .collect();
        let written: Vec<thread::Result<Vec<Written>>> =
            handles.into_iter().map(|h| h.join()).collect();
        // Stop the follower even when a writer failed, so the test ends.
        stop.store(true, Ordering::SeqCst);
        let seen = follower.join();
        let written: Vec<Written> = written
            .into_iter()
            .flat_map(|w| w.unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect();
        (
            written,
            seen.unwrap_or_else(|p| std::panic::resume_unwind(p)),
        )
    });
    // The follower starts at 0, so that a read of the shared keys' first
    // revisions finds them in the feed too; the setup's changes are left
    // out of the comparison.
    let setup_changes = usize::try_from(start).expect("a small seq");
    assert!(
        seen.len() >= setup_changes,
        "the setup's changes are missing"
    );
    assert_feed_matches(&seen[setup_changes..], &written);
    assert_eq!(
        setup.last_seq().expect("last seq"),
        seen.len() as u64,
        "last_seq disagrees with the changes read"
    );
}

/// Checks the changes a follower saw against the writes acknowledged
/// meanwhile: each exactly once, and per key in revision order (a writer's
/// own keys, named `w…`, one revision at a time).
///
/// # Panics
/// When they differ.
pub fn assert_feed_matches(seen: &[crate::Change], written: &[Written]) {
    use std::collections::{BTreeMap, BTreeSet};
    let from_feed: Vec<Written> = seen
        .iter()
        .map(|c| (c.key.to_string(), c.revision))
        .collect();
    let unique: BTreeSet<&Written> = from_feed.iter().collect();
    assert_eq!(unique.len(), from_feed.len(), "a change appeared twice");
    let expected: BTreeSet<&Written> = written.iter().collect();
    assert_eq!(
        unique, expected,
        "the feed differs from the committed writes"
    );
    // Per key, revisions come in order; a writer's own keys see only its
    // writes, so each is one more than the last.
    let mut last: BTreeMap<&str, u64> = BTreeMap::new();
    for (key, revision) in &from_feed {
        let before = last.insert(key.as_str(), *revision).unwrap_or(0);
        if key.starts_with("c/w") {
            assert_eq!(*revision, before + 1, "{key}");
        } else {
            assert!(
                *revision > before,
                "{key}: revision {revision} after {before}"
            );
        }
    }
}
