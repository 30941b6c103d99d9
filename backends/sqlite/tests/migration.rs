//! Files of older formats are migrated on open. Format 1 (before the change
//! feed): documents kept, and a feed that admits it has no older history.
//! Format 2 (`WITHOUT ROWID` documents, `AUTOINCREMENT` seqs): documents
//! and feed kept exactly, and seqs go on after the newest ever handed out.

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
    assert_eq!(user_version(&path), 3);

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
    assert_eq!(user_version(&path), 3);
    assert_eq!(store.last_seq().unwrap(), 0);
    store.create("c", "a", json!({})).unwrap();
    let changes = store.changes_since(0, 10).unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!((changes[0].seq, changes[0].revision), (1, 1));
}

/// Many handles opening one version-1 file at once: exactly one migrates,
/// the others wait for it and then find version 3.
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
        let (horizons, retained_after): (i64, i64) = rusqlite::Connection::open(&path)
            .unwrap()
            .query_row("SELECT count(*), max(value) FROM meta", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((horizons, retained_after), (1, 1), "round {round}");
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

/// A version-2 file as revstore-sqlite wrote it before format 3, built by
/// hand: documents, then changes with seqs `first..=last`, the horizon at
/// `first - 1` and `AUTOINCREMENT`'s mark at `mark`.
fn version_2_file(
    path: &Path,
    documents: &[(&str, &str, i64, Option<&str>)],
    first: i64,
    last: i64,
    mark: i64,
) {
    version_1_file(path, documents);
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(
        "CREATE TABLE changes (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            collection TEXT NOT NULL,
            name TEXT NOT NULL,
            revision INTEGER NOT NULL,
            kind TEXT NOT NULL
        );
        CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
        PRAGMA user_version = 2;",
    )
    .unwrap();
    for seq in first..=last {
        conn.execute(
            "INSERT INTO changes VALUES (?1, 'models', ?2, 1, 'created')",
            rusqlite::params![seq, format!("n{seq}")],
        )
        .unwrap();
    }
    conn.execute(
        "INSERT INTO meta VALUES ('retained_after', ?1)",
        [first - 1],
    )
    .unwrap();
    conn.execute(
        "INSERT OR REPLACE INTO sqlite_sequence (name, seq) VALUES ('changes', ?1)",
        [mark],
    )
    .unwrap();
}

fn documents_table_sql(path: &Path) -> String {
    rusqlite::Connection::open(path)
        .unwrap()
        .query_row(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'documents'",
            [],
            |r| r.get(0),
        )
        .unwrap()
}

#[test]
fn a_version_2_file_keeps_its_documents_and_feed_and_continues_its_seqs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let big = format!(r#"{{"text":"{}"}}"#, "x".repeat(3000));
    version_2_file(
        &path,
        &[
            (
                "models",
                "orders",
                3,
                Some(r#"{"description":"All orders"}"#),
            ),
            ("models", "gone", 2, None),
            ("models", "big", 1, Some(&big)),
            ("_schema", "audits", 1, Some(r#"{"attributes":[]}"#)),
        ],
        3,
        7,
        7,
    );
    assert!(documents_table_sql(&path).contains("WITHOUT ROWID"));
    let store = Store::open(SqliteBackend::open(&path).unwrap());
    assert_eq!(user_version(&path), 3);
    assert!(!documents_table_sql(&path).contains("WITHOUT ROWID"));

    let orders = store.get("models", "orders").unwrap().unwrap();
    assert_eq!(
        (orders.revision, &orders.body["description"]),
        (3, &json!("All orders"))
    );
    let gone = store.get_record("models", "gone").unwrap().unwrap();
    assert_eq!((gone.revision, gone.body), (2, None));
    assert_eq!(
        store.get("models", "big").unwrap().unwrap().body["text"]
            .as_str()
            .unwrap()
            .len(),
        3000
    );
    assert_eq!(store.list("models").unwrap().len(), 2);

    assert_eq!(store.last_seq().unwrap(), 7);
    let seqs: Vec<u64> = store
        .changes_since(2, 10)
        .unwrap()
        .iter()
        .map(|c| c.seq)
        .collect();
    assert_eq!(seqs, [3, 4, 5, 6, 7]);
    assert!(matches!(
        store.changes_since(1, 10),
        Err(Error::Compacted {
            requested: 1,
            retained_after: 2
        })
    ));
    store
        .replace(
            "models",
            "orders",
            json!({"v": 2}),
            Precondition::Revision(3),
        )
        .unwrap();
    let newest = store.changes_since(7, 10).unwrap();
    assert_eq!(newest.len(), 1);
    assert_eq!((newest[0].seq, newest[0].revision), (8, 4));

    // Opening again changes nothing.
    drop(store);
    let again = Store::open(SqliteBackend::open(&path).unwrap());
    assert_eq!(again.last_seq().unwrap(), 8);
    assert_eq!(again.get("models", "orders").unwrap().unwrap().revision, 4);
}

/// A format-2 mark beyond every remaining row (rows deleted by hand)
/// becomes the horizon: no seq it handed out is handed out again, and a
/// cursor before it learns that it missed changes.
#[test]
fn a_version_2_high_water_mark_beyond_the_rows_becomes_the_horizon() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    version_2_file(&path, &[("models", "a", 1, Some("{}"))], 5, 6, 9);
    let store = Store::open(SqliteBackend::open(&path).unwrap());
    assert_eq!(store.last_seq().unwrap(), 9);
    assert!(matches!(
        store.changes_since(6, 10),
        Err(Error::Compacted {
            requested: 6,
            retained_after: 9
        })
    ));
    assert!(store.changes_since(9, 10).unwrap().is_empty());
    store.create("models", "b", json!({})).unwrap();
    let seqs: Vec<u64> = store
        .changes_since(9, 10)
        .unwrap()
        .iter()
        .map(|c| c.seq)
        .collect();
    assert_eq!(seqs, [10]);
}

/// A format-2 writer that had the file open when it was migrated goes on
/// writing with its own statements: they still record the change first,
/// and the triggers accept them, so its writes are in the feed.
#[test]
fn a_format_2_writer_still_holding_the_file_writes_into_the_feed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    version_2_file(&path, &[("models", "a", 1, Some("{}"))], 1, 1, 1);
    let old = rusqlite::Connection::open(&path).unwrap();
    let store = Store::open(SqliteBackend::open(&path).unwrap());
    old.execute(
        "INSERT INTO changes (collection, name, revision, kind) VALUES ('models', 'a', 2, 'updated')",
        [],
    )
    .unwrap();
    let changed = old
        .execute(
            "UPDATE documents SET body = '{\"v\":2}', revision = 2 \
             WHERE collection = 'models' AND name = 'a' AND revision = 1",
            [],
        )
        .unwrap();
    assert_eq!(changed, 1);
    assert_eq!(store.get("models", "a").unwrap().unwrap().body["v"], 2);
    let feed: Vec<String> = store
        .changes_since(1, 10)
        .unwrap()
        .iter()
        .map(|c| format!("{}:{}@{}", c.seq, c.key, c.revision))
        .collect();
    assert_eq!(feed, ["2:models/a@2"]);
}
