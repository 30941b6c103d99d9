//! The change feed on PostgreSQL: every commit exactly once, with seqs
//! that are contiguous and in commit order across threads and handles
//! (the counter row makes a gap impossible, so a follower may demand
//! `cursor + 1` every time); pruning and `Compacted`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};

use revstore::testkit::TestLocation;
use revstore::{Change, Durability, Error, Patch, Precondition, Store};
use revstore_postgres::testkit::{admin_client, server_url, PostgresLocation};
use serde_json::json;

fn location(retain: u64) -> Option<PostgresLocation> {
    let url = server_url(module_path!())?;
    Some(PostgresLocation::new(&url, Durability::Relaxed, retain))
}

fn count(location: &PostgresLocation, sql: &str) -> u64 {
    let url = server_url(module_path!()).unwrap();
    let sql = sql.replace("NS", location.namespace());
    let n: i64 = admin_client(&url)
        .unwrap()
        .query_one(sql.as_str(), &[])
        .unwrap()
        .get(0);
    u64::try_from(n).unwrap()
}

/// One committed write a writer saw acknowledged.
type Written = (String, u64);

/// Writes `writes` times to keys of its own and to two shared keys, and
/// returns every (key, revision) it committed.
fn write_many(store: &Store, writer: usize, writes: usize) -> Vec<Written> {
    let mut done = Vec::new();
    for i in 0..writes {
        let (name, doc) = match i % 3 {
            0 => {
                let name = format!("w{writer}-{}", i / 3);
                (
                    name.clone(),
                    store.create("c", &name, json!({ "i": i })).unwrap(),
                )
            }
            1 => {
                let name = format!("shared{}", i % 2);
                let patch = Patch::Merge(json!({ format!("w{writer}"): i }));
                let doc = store.patch("c", &name, &patch, Precondition::Any).unwrap();
                (name, doc)
            }
            _ => {
                let name = format!("w{writer}-{}", i / 3);
                let doc = store
                    .replace("c", &name, json!({ "again": i }), Precondition::Any)
                    .unwrap();
                (name, doc)
            }
        };
        done.push((format!("c/{name}"), doc.revision));
        if i % 10 == 9 {
            let name = format!("w{writer}-{}", i / 3);
            let revision = store.delete("c", &name, Precondition::Any).unwrap();
            done.push((format!("c/{name}"), revision));
        }
    }
    done
}

/// Follows the feed from `cursor` until `stop` is set and the feed is
/// drained, checking that seqs are contiguous and that a change is in the
/// feed as soon as its write is visible to a read.
fn follow(store: &Store, mut cursor: u64, stop: &AtomicBool) -> Vec<Change> {
    let mut seen: Vec<Change> = Vec::new();
    let mut committed: BTreeSet<Written> = BTreeSet::new();
    loop {
        let stopping = stop.load(Ordering::SeqCst);
        let probe = store.get_record("c", "shared1").unwrap();
        loop {
            let batch = store.changes_since(cursor, 7).unwrap();
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
        // Revision 1 was written before the follower's cursor.
        if let Some(record) = probe.filter(|r| r.revision > 1) {
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

#[test]
fn threads_with_own_handles_see_every_commit_once_in_seq_order() {
    let Some(location) = location(revstore::DEFAULT_RETAINED_CHANGES) else {
        return;
    };
    let (writers, writes) = (4, 60);
    let setup = location.open();
    setup.create("c", "shared0", json!({})).unwrap();
    setup.create("c", "shared1", json!({})).unwrap();
    let start = setup.last_seq().unwrap();
    let stop = AtomicBool::new(false);
    let (seen, written) = std::thread::scope(|s| {
        let follower = {
            let store = location.open();
            let stop = &stop;
            s.spawn(move || follow(&store, start, stop))
        };
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let store = location.open();
                s.spawn(move || write_many(&store, w, writes))
            })
            .collect();
        let written: Vec<std::thread::Result<Vec<Written>>> =
            handles.into_iter().map(|h| h.join()).collect();
        // Stop the follower even when a writer failed, so the test ends.
        stop.store(true, Ordering::SeqCst);
        let written: Vec<Written> = written
            .into_iter()
            .flat_map(|w| w.expect("a writer failed"))
            .collect();
        (follower.join().unwrap(), written)
    });
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
    let mut last: BTreeMap<&str, u64> = BTreeMap::new();
    for (key, revision) in &from_feed {
        let before = last.insert(key.as_str(), *revision).unwrap_or(0);
        assert!(
            *revision > before,
            "{key}: revision {revision} after {before}"
        );
    }
    assert_eq!(seen.last().map(|c| c.seq), Some(start + seen.len() as u64));
}

#[test]
fn a_reader_behind_pruning_gets_compacted_never_a_gap() {
    let Some(location) = location(10) else {
        return;
    };
    let store = location.open();
    for i in 0..600 {
        store
            .replace(
                "c",
                &format!("k{}", i % 5),
                json!({ "i": i }),
                Precondition::Any,
            )
            .unwrap();
    }
    let last = store.last_seq().unwrap();
    assert_eq!(last, 600);
    let horizon = count(&location, "SELECT retained_after FROM \"NS\".feed_state");
    let rows = count(&location, "SELECT count(*) FROM \"NS\".changes");
    // Pruned every 10 seqs to the newest 10.
    assert_eq!(horizon, 590, "{rows} rows");
    assert!((10..10 + 10).contains(&rows), "{rows} rows kept");
    for cursor in [0, 1, 100, horizon - 1] {
        match store.changes_since(cursor, 100) {
            Err(Error::Compacted {
                requested,
                retained_after,
            }) => assert_eq!((requested, retained_after), (cursor, horizon)),
            other => panic!("cursor {cursor}: {other:?}"),
        }
    }
    let rest = store.changes_since(horizon, 100).unwrap();
    let seqs: Vec<u64> = rest.iter().map(|c| c.seq).collect();
    assert_eq!(seqs, (horizon + 1..=last).collect::<Vec<_>>());
}

#[test]
fn handles_with_different_retentions_never_move_the_horizon_back() {
    let Some(small) = location(5) else {
        return;
    };
    let url = server_url(module_path!()).unwrap();
    let large_url = format!("{url}?namespace={}&retain=100000", small.namespace());
    let (narrow, wide) = (
        small.open(),
        Store::open(revstore_postgres::PostgresBackend::open(&large_url).unwrap()),
    );
    for i in 0..40 {
        narrow
            .replace("c", "a", json!({ "i": i }), Precondition::Any)
            .unwrap();
    }
    let horizon = count(&small, "SELECT retained_after FROM \"NS\".feed_state");
    assert_eq!(horizon, 35);
    // 256 writes through the wide handle reach one of its pruning points
    // (seq 256), which would move the horizon back to 0 if it could.
    for i in 0..(256 - 40) {
        wide.replace("c", "b", json!({ "i": i }), Precondition::Any)
            .unwrap();
    }
    assert_eq!(wide.last_seq().unwrap(), 256);
    let after = count(&small, "SELECT retained_after FROM \"NS\".feed_state");
    assert_eq!(after, horizon);
    assert!(matches!(
        wide.changes_since(0, 10),
        Err(Error::Compacted {
            retained_after: 35,
            ..
        })
    ));
}
