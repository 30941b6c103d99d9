//! Opening creates the namespace and its tables exactly once, however many
//! handles open a fresh database at the same moment, and reopening keeps
//! everything.

use std::sync::Barrier;

use revstore::testkit::TestLocation;
use revstore::{Durability, Precondition};
use revstore_postgres::testkit::{admin_client, server_url, PostgresLocation};
use serde_json::json;

#[test]
fn many_handles_opening_a_fresh_namespace_at_once_all_succeed_on_one_set_of_tables() {
    let Some(url) = server_url(module_path!()) else {
        return;
    };
    let location = PostgresLocation::new(&url, Durability::Full, 100);
    let openers = 12;
    let barrier = Barrier::new(openers);
    let stores: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..openers)
            .map(|_| {
                let (location, barrier) = (&location, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    location.open()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    stores[0].create("c", "shared", json!({})).unwrap();
    for (i, store) in stores.iter().enumerate() {
        store
            .patch(
                "c",
                "shared",
                &revstore::Patch::Merge(json!({ format!("by{i}"): true })),
                Precondition::Any,
            )
            .unwrap();
    }
    let doc = stores[0].get("c", "shared").unwrap().unwrap();
    assert_eq!(doc.revision, 1 + openers as u64);
    assert_eq!(doc.body.len(), openers);
    let mut admin = admin_client(&url).unwrap();
    let tables: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = $1",
            &[&location.namespace()],
        )
        .unwrap()
        .get(0);
    assert_eq!(tables, 4);
    let versions: i64 = admin
        .query_one(
            format!(
                "SELECT count(*) FROM \"{}\".meta WHERE key = 'format_version'",
                location.namespace()
            )
            .as_str(),
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(versions, 1);
}

#[test]
fn reopening_keeps_documents_and_the_feed() {
    let Some(url) = server_url(module_path!()) else {
        return;
    };
    let location = PostgresLocation::new(&url, Durability::Full, 100);
    {
        let store = location.open();
        store.create("c", "a", json!({"z": 1, "a": 2})).unwrap();
        store.delete("c", "a", Precondition::Any).unwrap();
        store
            .create("c", "a", json!({"b": 1, "a": [1, 2.5, "x"]}))
            .unwrap();
    }
    let again = location.open();
    let doc = again.get("c", "a").unwrap().unwrap();
    assert_eq!(doc.revision, 3);
    let keys: Vec<&String> = doc.body.keys().collect();
    assert_eq!(keys, ["b", "a"], "key order survives");
    assert_eq!(again.last_seq().unwrap(), 3);
    assert_eq!(again.changes_since(0, 10).unwrap().len(), 3);
}

#[test]
fn namespaces_of_one_database_are_independent() {
    let Some(url) = server_url(module_path!()) else {
        return;
    };
    let (one, two) = (
        PostgresLocation::new(&url, Durability::Full, 100),
        PostgresLocation::new(&url, Durability::Full, 100),
    );
    let (a, b) = (one.open(), two.open());
    a.create("c", "k", json!({"in": "one"})).unwrap();
    assert_eq!(b.get("c", "k").unwrap(), None);
    assert_eq!(b.last_seq().unwrap(), 0);
    b.create("c", "k", json!({"in": "two"})).unwrap();
    assert_eq!(a.get("c", "k").unwrap().unwrap().body["in"], "one");
}

#[test]
fn test_locations_are_fresh_and_their_namespace_is_dropped_with_them() {
    let Some(url) = server_url(module_path!()) else {
        return;
    };
    let (first, second) = (
        PostgresLocation::new(&url, Durability::Full, 100),
        PostgresLocation::new(&url, Durability::Full, 100),
    );
    assert_ne!(first.namespace(), second.namespace());
    let store_url = first.url().unwrap();
    assert!(store_url.starts_with(&url) && store_url.contains(first.namespace()));
    first.open().create("c", "a", json!({})).unwrap();
    assert_eq!(second.open().get("c", "a").unwrap(), None);
    let namespace = first.namespace().to_owned();
    drop(first);
    let left: i64 = admin_client(&url)
        .unwrap()
        .query_one(
            "SELECT count(*) FROM pg_namespace WHERE nspname = $1",
            &[&namespace],
        )
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "the namespace outlived its location");
}
