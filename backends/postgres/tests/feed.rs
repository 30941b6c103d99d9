//! The change feed on PostgreSQL: every commit exactly once, with seqs
//! that are contiguous and in commit order across threads and handles
//! (the counter row makes a gap impossible, so a follower may demand
//! `cursor + 1` every time); pruning and `Compacted`.

use revstore::testkit::TestLocation;
use revstore::{Durability, Error, Precondition, Store};
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
