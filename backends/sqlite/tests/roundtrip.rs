//! Bodies, revisions, tombstones and listings survive the trip through
//! SQLite exactly.

use revstore::{Durability, Entry, Patch, Precondition, Store};
use revstore_sqlite::{SqliteBackend, SqliteOptions};
use serde_json::{json, Value};

fn open(path: &std::path::Path) -> Store {
    Store::open(SqliteBackend::open(path).unwrap())
}

#[test]
fn body_round_trips_with_key_order_and_every_number_kind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let body = json!({
        "zeta": 1,
        "alpha": {"y": [3, 2, 1], "b": null, "a": true},
        "i64_min": i64::MIN,
        "i64_max": i64::MAX,
        "u64_max": u64::MAX,
        "negative": -42,
        "zero": 0,
        "float": 0.1,
        "float_whole": 2.0,
        "float_tiny": 5e-324,
        "float_huge": 1.7976931348623157e308,
        "negative_zero": -0.0,
        "text": "héllo \"quoted\" \n\u{1F600}",
        "empty": {},
        "list": [],
    });
    let written = open(&path)
        .create("models", "orders", body.clone())
        .unwrap();
    assert_eq!(written.revision, 1);

    // A different handle, as a restarted program would open it.
    let read = open(&path).get("models", "orders").unwrap().unwrap();
    assert_eq!(read.revision, 1);
    assert_eq!(Value::Object((*read.body).clone()), body);
    let keys: Vec<&str> = read.body.keys().map(String::as_str).collect();
    let expected: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, expected);
    let inner: Vec<&str> = read.body["alpha"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(inner, ["y", "b", "a"]);
    // Number kinds are kept, not just values.
    assert!(read.body["u64_max"].is_u64());
    assert!(read.body["i64_min"].is_i64());
    assert!(read.body["float_whole"].is_f64());
    assert_eq!(read.body["float_tiny"].as_f64(), Some(5e-324));
    assert!(read.body["negative_zero"]
        .as_f64()
        .unwrap()
        .is_sign_negative());
}

#[test]
fn revisions_count_every_write_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = open(&path);
    store.create("models", "a", json!({"n": 0})).unwrap();
    for n in 1..=5 {
        let doc = store
            .patch(
                "models",
                "a",
                &Patch::Merge(json!({"n": n})),
                Precondition::Any,
            )
            .unwrap();
        assert_eq!(doc.revision, n + 1);
    }
    drop(store);
    let doc = open(&path).get("models", "a").unwrap().unwrap();
    assert_eq!(doc.revision, 6);
    assert_eq!(doc.body["n"], 5);
}

#[test]
fn delete_leaves_a_tombstone_and_recreate_continues_the_revision() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = open(&path);
    store.create("models", "a", json!({"v": 1})).unwrap();
    store
        .replace("models", "a", json!({"v": 2}), Precondition::Revision(1))
        .unwrap();
    assert_eq!(
        store
            .delete("models", "a", Precondition::Revision(2))
            .unwrap(),
        3
    );

    assert_eq!(store.get("models", "a").unwrap(), None);
    let tombstone = open(&path).get_record("models", "a").unwrap().unwrap();
    assert_eq!(tombstone.revision, 3);
    assert_eq!(tombstone.body, None);
    assert!(matches!(
        store.delete("models", "a", Precondition::Any),
        Err(revstore::Error::NotFound { .. })
    ));

    // A stale compare-and-swap from before the delete cannot succeed.
    assert!(matches!(
        store.replace("models", "a", json!({}), Precondition::Revision(2)),
        Err(revstore::Error::Conflict { .. })
    ));
    let again = store.create("models", "a", json!({"v": 3})).unwrap();
    assert_eq!(again.revision, 4);
    assert_eq!(
        open(&path).get("models", "a").unwrap().unwrap().body["v"],
        3
    );
    assert!(matches!(
        store.create("models", "a", json!({})),
        Err(revstore::Error::Conflict { .. })
    ));
}

#[test]
fn list_returns_live_documents_of_one_collection_sorted_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("store.db"));
    for name in ["b", "a", "C", "a.b", "a-b", "0"] {
        store.create("models", name, json!({})).unwrap();
    }
    store.create("other", "x", json!({})).unwrap();
    store
        .patch(
            "models",
            "b",
            &Patch::Merge(json!({"k": 1})),
            Precondition::Any,
        )
        .unwrap();
    store.delete("models", "C", Precondition::Any).unwrap();

    let listed = store.list("models").unwrap();
    let expected =
        [("0", 1), ("a", 1), ("a-b", 1), ("a.b", 1), ("b", 2)].map(|(name, revision)| Entry {
            name: name.to_owned(),
            revision,
        });
    assert_eq!(listed, expected);
    assert_eq!(store.list("empty").unwrap(), []);
}

#[test]
fn relaxed_durability_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let options = SqliteOptions {
        durability: Durability::Relaxed,
        ..SqliteOptions::default()
    };
    let store = Store::open(SqliteBackend::open_with(&path, options).unwrap());
    store.create("models", "a", json!({"x": 1})).unwrap();
    drop(store);
    // A Full handle and a Relaxed one on the same file see the same data.
    assert_eq!(
        open(&path).get("models", "a").unwrap().unwrap().body["x"],
        1
    );
}

#[test]
fn open_is_idempotent_and_uses_wal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let first = SqliteBackend::open(&path).unwrap();
    let second = SqliteBackend::open(&path).unwrap();
    assert_eq!(first.path(), path);
    Store::open(first).create("models", "a", json!({})).unwrap();
    assert!(Store::open(second).get("models", "a").unwrap().is_some());

    let raw = rusqlite::Connection::open(&path).unwrap();
    let mode: String = raw
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let version: i64 = raw
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 3);
}

/// A fixed-seed xorshift generator: reproducible bit patterns without a
/// dependency.
fn random_bits(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn floats_round_trip_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let mut floats = vec![
        985.6906946328695,
        -1.81996730402717e-179,
        f64::MIN_POSITIVE,
        -f64::MIN_POSITIVE / 3.0,
        f64::MAX,
        f64::MIN,
        f64::EPSILON,
        0.1 + 0.2,
        -0.0,
    ];
    let mut state = 0x9E37_79B9_7F4A_7C15;
    while floats.len() < 4096 {
        let f = f64::from_bits(random_bits(&mut state));
        if f.is_finite() {
            floats.push(f);
        }
    }
    let writer = open(&path);
    for (i, chunk) in floats.chunks(512).enumerate() {
        let values: serde_json::Map<String, Value> = chunk
            .iter()
            .enumerate()
            .map(|(j, f)| (format!("f{j}"), json!(f)))
            .collect();
        writer
            .create("floats", &format!("chunk{i}"), Value::Object(values))
            .unwrap();
    }
    let reader = open(&path);
    for (i, chunk) in floats.chunks(512).enumerate() {
        let doc = reader.get("floats", &format!("chunk{i}")).unwrap().unwrap();
        for (j, f) in chunk.iter().enumerate() {
            let read = &doc.body[&format!("f{j}")];
            assert!(read.is_f64(), "{f:e} came back as {read}");
            let back = read.as_f64().unwrap();
            assert_eq!(back.to_bits(), f.to_bits(), "{f:e} came back as {back:e}");
        }
    }
}
