//! Files written before the change feed (format version 1) are migrated on
//! open: documents kept, and a feed that admits it has no older history.

use std::path::Path;

use revstore::{ChangeKind, Error, Precondition, Store};
use revstore_sqlite::SqliteBackend;
use serde_json::json;

/// A version-1 file as revstore-sqlite 0.1 wrote it, built by hand.
fn version_1_file(path: &Path, documents: &[(&str, &str, i64, Option<&str>)]) {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    conn.execute_batch(
        "CREATE TABLE documents (
            collection TEXT NOT NULL,
            name TEXT NOT NULL,
            revision INTEGER NOT NULL,
            body TEXT,
            PRIMARY KEY (collection, name)
        ) WITHOUT ROWID;
        PRAGMA user_version = 1;",
    )
    .unwrap();
    for (collection, name, revision, body) in documents {
        conn.execute(
            "INSERT INTO documents VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![collection, name, revision, body],
        )
        .unwrap();
    }
}

fn user_version(path: &Path) -> i64 {
    rusqlite::Connection::open(path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn a_version_1_file_with_documents_is_migrated_and_its_feed_starts_after_seq_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    version_1_file(
        &path,
        &[
            (
                "models",
                "orders",
                3,
                Some(r#"{"description":"All orders"}"#),
            ),
            ("models", "gone", 2, None),
            ("_schema", "audits", 1, Some(r#"{"attributes":[]}"#)),
        ],
    );
    let store = Store::open(SqliteBackend::open(&path).unwrap());
    assert_eq!(user_version(&path), 2);

    let orders = store.get("models", "orders").unwrap().unwrap();
    assert_eq!(orders.revision, 3);
    assert_eq!(orders.body["description"], "All orders");
    assert_eq!(
        store
            .get_record("models", "gone")
            .unwrap()
            .unwrap()
            .revision,
        2
    );
    // The old writes have no history: a cursor of 0 learns it was
    // compacted, and resuming from last_seq misses nothing after.
    assert_eq!(store.last_seq().unwrap(), 1);
    match store.changes_since(0, 10) {
        Err(Error::Compacted {
            requested: 0,
            retained_after: 1,
        }) => {}
        other => panic!("expected Compacted, got {other:?}"),
    }
    assert!(store.changes_since(1, 10).unwrap().is_empty());

    store
        .replace(
            "models",
            "orders",
            json!({"v": 2}),
            Precondition::Revision(3),
        )
        .unwrap();
    store.create("models", "gone", json!({})).unwrap();
    let changes = store.changes_since(1, 10).unwrap();
    let shape: Vec<(u64, String, u64, ChangeKind)> = changes
        .iter()
        .map(|c| (c.seq, c.key.to_string(), c.revision, c.kind))
        .collect();
    assert_eq!(
        shape,
        [
            (2, "models/orders".to_owned(), 4, ChangeKind::Updated),
            (3, "models/gone".to_owned(), 3, ChangeKind::Created),
        ]
    );

    // Opening again changes nothing.
    drop(store);
    let again = Store::open(SqliteBackend::open(&path).unwrap());
    assert_eq!(again.last_seq().unwrap(), 3);
    assert_eq!(again.changes_since(1, 10).unwrap(), changes);
}

#[test]
fn an_empty_version_1_file_gets_a_complete_feed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    version_1_file(&path, &[]);
    let store = Store::open(SqliteBackend::open(&path).unwrap());
    assert_eq!(user_version(&path), 2);
    assert_eq!(store.last_seq().unwrap(), 0);
    store.create("c", "a", json!({})).unwrap();
    let changes = store.changes_since(0, 10).unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!((changes[0].seq, changes[0].revision), (1, 1));
}

/// Many handles opening one version-1 file at once: exactly one migrates,
/// the others wait for it and then find version 2.
#[test]
fn concurrent_opens_migrate_once() {
    for round in 0..40 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        version_1_file(&path, &[("c", "old", 5, Some("{}"))]);
        let barrier = std::sync::Barrier::new(8);
        std::thread::scope(|scope| {
            for t in 0..8 {
                let (path, barrier) = (&path, &barrier);
                scope.spawn(move || {
                    barrier.wait();
                    let store = match SqliteBackend::open(path) {
                        Ok(backend) => Store::open(backend),
                        Err(e) => panic!("round {round}: open failed: {e}"),
                    };
                    store.create("c", &format!("t{t}"), json!({})).unwrap();
                });
            }
        });
        let store = Store::open(SqliteBackend::open(&path).unwrap());
        let (sequences, horizons): (i64, i64) = rusqlite::Connection::open(&path)
            .unwrap()
            .query_row(
                "SELECT (SELECT count(*) FROM sqlite_sequence WHERE name = 'changes'), \
                        (SELECT count(*) FROM meta)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((sequences, horizons), (1, 1), "round {round}");
        let seqs: Vec<u64> = store
            .changes_since(1, 100)
            .unwrap()
            .iter()
            .map(|c| c.seq)
            .collect();
        assert_eq!(seqs, (2..=9).collect::<Vec<_>>(), "round {round}");
        assert_eq!(store.get("c", "old").unwrap().unwrap().revision, 5);
    }
}

/// An older revstore-sqlite that opened the file (and prepared its write
/// statement) before another process migrated it: its next write is
/// refused, not silently left out of the feed.
#[test]
fn a_writer_that_opened_before_the_migration_is_refused_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    version_1_file(&path, &[("c", "a", 1, Some("{}"))]);
    let old = rusqlite::Connection::open(&path).unwrap();
    let mut update = old
        .prepare(
            "UPDATE documents SET body = ?1, revision = ?2 \
             WHERE collection = 'c' AND name = 'a' AND revision = ?3",
        )
        .unwrap();
    update.execute(rusqlite::params!["{}", 2, 1]).unwrap();

    let store = Store::open(SqliteBackend::open(&path).unwrap());
    let err = update.execute(rusqlite::params!["{}", 3, 2]).unwrap_err();
    assert!(err.to_string().contains("change-feed"), "{err}");
    assert_eq!(store.get("c", "a").unwrap().unwrap().revision, 2);
    store
        .replace("c", "a", json!({}), Precondition::Revision(2))
        .unwrap();
    assert_eq!(store.changes_since(1, 10).unwrap().len(), 1);
}
