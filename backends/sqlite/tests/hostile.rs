//! Bad data on disk is reported with a typed error naming it, and never
//! overwritten.

use std::path::Path;

use revstore::{Error, Patch, Precondition, Store};
use revstore_sqlite::SqliteBackend;
use rusqlite::types::Value as SqlValue;
use serde_json::json;

fn raw(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).unwrap()
}

/// Writes a document row by hand as a format-2 writer must: its change row
/// first, on the same connection.
fn insert_raw(conn: &rusqlite::Connection, name: &str, revision: SqlValue, body: SqlValue) {
    conn.execute(
        "INSERT INTO changes (collection, name, revision, kind) VALUES ('models', ?1, ?2, 'created')",
        rusqlite::params![name, revision],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO documents (collection, name, revision, body) VALUES ('models', ?1, ?2, ?3)",
        rusqlite::params![name, revision, body],
    )
    .unwrap();
}

fn raw_row(path: &Path, name: &str) -> (SqlValue, SqlValue) {
    raw(path)
        .query_row(
            "SELECT revision, body FROM documents WHERE collection = 'models' AND name = ?1",
            [name],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
}

fn store_with_bad_rows(path: &Path) -> Store {
    let store = Store::open(SqliteBackend::open(path).unwrap());
    let conn = raw(path);
    let rows: [(&str, SqlValue, SqlValue); 6] = [
        ("not-json", 3.into(), SqlValue::Text("{not json".into())),
        ("list", 2.into(), SqlValue::Text("[1, 2]".into())),
        ("blob", 1.into(), SqlValue::Blob(b"{}".to_vec())),
        ("zero-revision", 0.into(), SqlValue::Text("{}".into())),
        ("negative-revision", (-5).into(), SqlValue::Null),
        (
            "text-revision",
            SqlValue::Text("one".into()),
            SqlValue::Text("{}".into()),
        ),
    ];
    for (name, revision, body) in rows {
        insert_raw(&conn, name, revision, body);
    }
    store
}

fn assert_corrupt(result: Result<impl std::fmt::Debug, Error>, path: &Path, name: &str) {
    match result {
        Err(Error::Corrupt { location, reason }) => {
            assert_eq!(location, format!("{}: models/{name}", path.display()));
            assert!(!reason.is_empty());
        }
        other => panic!("{name}: expected Corrupt, got {other:?}"),
    }
}

#[test]
fn corrupt_rows_are_reported_naming_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = store_with_bad_rows(&path);
    for name in [
        "not-json",
        "list",
        "blob",
        "zero-revision",
        "negative-revision",
        "text-revision",
    ] {
        assert_corrupt(store.get("models", name), &path, name);
        assert_corrupt(store.get_record("models", name), &path, name);
    }
    match store.get("models", "list") {
        Err(Error::Corrupt { reason, .. }) => assert!(reason.contains("mapping"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn writes_to_corrupt_rows_fail_and_leave_them_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = store_with_bad_rows(&path);
    for name in ["not-json", "list", "zero-revision"] {
        let before = raw_row(&path, name);
        let merge = Patch::Merge(json!({"x": 1}));
        assert_corrupt(
            store.patch("models", name, &merge, Precondition::Any),
            &path,
            name,
        );
        assert_corrupt(
            store.replace("models", name, json!({"x": 1}), Precondition::Any),
            &path,
            name,
        );
        assert_corrupt(store.delete("models", name, Precondition::Any), &path, name);
        assert_corrupt(store.update("models", name, |_| Ok(())), &path, name);
        assert_eq!(raw_row(&path, name), before, "{name} was changed");
    }
}

#[test]
fn list_reports_a_corrupt_revision_but_never_reads_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = Store::open(SqliteBackend::open(&path).unwrap());
    store.create("models", "fine", json!({})).unwrap();
    // Bad bodies do not disturb a listing: it reads names and revisions only.
    insert_raw(
        &raw(&path),
        "bad-body",
        4.into(),
        SqlValue::Text("{oops".into()),
    );
    let names: Vec<_> = store
        .list("models")
        .unwrap()
        .into_iter()
        .map(|e| (e.name, e.revision))
        .collect();
    assert_eq!(names, [("bad-body".to_owned(), 4), ("fine".to_owned(), 1)]);

    insert_raw(
        &raw(&path),
        "bad-rev",
        0.into(),
        SqlValue::Text("{}".into()),
    );
    assert_corrupt(store.list("models"), &path, "bad-rev");
}

#[test]
fn a_file_that_is_not_a_database_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let bytes = b"collection: models\nname: orders\nthis is YAML, not SQLite\n".repeat(100);
    std::fs::write(&path, &bytes).unwrap();
    match SqliteBackend::open(&path) {
        Err(err @ Error::Corrupt { .. }) => {
            let Error::Corrupt { location, reason } = &err else {
                unreachable!()
            };
            assert_eq!(location, &path.display().to_string());
            assert!(reason.contains("not a SQLite database"), "{reason}");
            assert!(err.to_string().contains(&path.display().to_string()));
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "the file was changed");
}

#[test]
fn a_newer_format_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    drop(SqliteBackend::open(&path).unwrap());
    raw(&path).pragma_update(None, "user_version", 4).unwrap();
    match SqliteBackend::open(&path) {
        Err(Error::InvalidConfig { input, reason }) => {
            assert_eq!(input, path.display().to_string());
            assert!(reason.contains("format version 4"), "{reason}");
        }
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
}

#[test]
fn another_applications_database_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    raw(&path)
        .execute_batch("CREATE TABLE users (id INTEGER PRIMARY KEY)")
        .unwrap();
    assert!(matches!(
        SqliteBackend::open(&path),
        Err(Error::InvalidConfig { .. })
    ));
    let tables: i64 = raw(&path)
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'documents'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tables, 0);
}

#[test]
fn a_missing_folder_is_a_backend_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-folder").join("store.db");
    match SqliteBackend::open(&path) {
        Err(
            err @ Error::Backend {
                backend: "sqlite", ..
            },
        ) => {
            assert!(
                err.to_string().contains(&path.display().to_string()),
                "{err}"
            );
        }
        other => panic!("expected Backend, got {other:?}"),
    }
}

#[test]
fn in_memory_databases_are_refused() {
    for path in [":memory:", ""] {
        match SqliteBackend::open(path) {
            Err(Error::InvalidConfig { input, reason }) => {
                assert_eq!(input, path);
                assert!(reason.contains("in-memory"), "{reason}");
            }
            other => panic!("{path:?}: expected InvalidConfig, got {other:?}"),
        }
    }
}

#[test]
fn corrupt_change_rows_are_reported_naming_file_and_seq() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = Store::open(SqliteBackend::open(&path).unwrap());
    store.create("models", "a", json!({})).unwrap();
    let t = |text: &str| SqlValue::Text(text.to_owned());
    let bad_rows: [(&str, SqlValue, SqlValue, SqlValue, &str); 5] = [
        ("bad name", t("models"), t("a/b"), 1.into(), "created"),
        ("bad collection", t("_"), t("a"), 1.into(), "created"),
        ("bad kind", t("models"), t("a"), 1.into(), "renamed"),
        ("bad revision", t("models"), t("a"), 0.into(), "updated"),
        (
            "blob name",
            t("models"),
            SqlValue::Blob(b"a".to_vec()),
            1.into(),
            "created",
        ),
    ];
    let conn = raw(&path);
    for (what, collection, name, revision, kind) in bad_rows {
        conn.execute(
            "INSERT INTO changes (seq, collection, name, revision, kind) VALUES (2, ?1, ?2, ?3, ?4)",
            rusqlite::params![collection, name, revision, kind],
        )
        .unwrap();
        match store.changes_since(0, 10) {
            Err(Error::Corrupt { location, reason }) => {
                assert_eq!(location, format!("{}: change 2", path.display()), "{what}");
                assert!(!reason.is_empty());
            }
            other => panic!("{what}: expected Corrupt, got {other:?}"),
        }
        assert_eq!(store.changes_since(0, 1).unwrap().len(), 1, "{what}");
        conn.execute("DELETE FROM changes WHERE seq = 2", [])
            .unwrap();
    }

    conn.execute("DELETE FROM meta", []).unwrap();
    for result in [
        store.changes_since(0, 10).map(|_| ()),
        store.last_seq().map(|_| ()),
    ] {
        match result {
            Err(Error::Corrupt { location, reason }) => {
                assert_eq!(location, format!("{}: changes", path.display()));
                assert!(reason.contains("retained_after"), "{reason}");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }
}

/// What an older revstore-sqlite (format 1) that opened the file before it
/// was migrated would do: write documents with no change row. The triggers
/// refuse it, so the feed never silently misses a write.
#[test]
fn a_format_1_writer_still_holding_the_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = Store::open(SqliteBackend::open(&path).unwrap());
    store.create("models", "a", json!({"v": 1})).unwrap();
    let old = raw(&path);
    // Its own change row does not cover a different write either.
    insert_raw(&old, "b", 1.into(), SqlValue::Text("{}".into()));
    for sql in [
        "INSERT INTO documents VALUES ('models', 'c', 1, '{}')",
        "INSERT INTO documents VALUES ('models', 'b2', 1, '{}')",
        "UPDATE documents SET revision = 2, body = '{}' WHERE name = 'a' AND revision = 1",
        "UPDATE documents SET revision = 2, body = NULL WHERE name = 'b' AND revision = 1",
    ] {
        let err = old.execute(sql, []).unwrap_err();
        assert!(
            err.to_string().contains("without its change-feed row"),
            "{sql}: {err}"
        );
    }
    assert_eq!(store.get("models", "a").unwrap().unwrap().revision, 1);
    assert_eq!(store.get("models", "c").unwrap(), None);
    let feed: Vec<String> = store
        .changes_since(0, 10)
        .unwrap()
        .iter()
        .map(|c| format!("{}@{}", c.key, c.revision))
        .collect();
    assert_eq!(feed, ["models/a@1", "models/b@1"]);
    // The store's own writes go on.
    store
        .replace(
            "models",
            "a",
            json!({"v": 2}),
            revstore::Precondition::Revision(1),
        )
        .unwrap();
}

/// A program that holds the database locked for longer than the lock
/// timeout gets a clear, typed error naming the file — after waiting that
/// long, not at once — and the locked data is left unchanged.
#[test]
fn a_database_locked_for_a_long_time_is_a_backend_error_naming_the_file() {
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let options = revstore_sqlite::SqliteOptions {
        lock_timeout: Duration::from_millis(400),
        ..Default::default()
    };
    let store =
        revstore::Store::open(revstore_sqlite::SqliteBackend::open_with(&path, options).unwrap());
    store.create("c", "k", serde_json::json!({"v": 1})).unwrap();
    let mut other = rusqlite::Connection::open(&path).unwrap();
    let lock = other
        .transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)
        .unwrap();
    let began = Instant::now();
    let result = store.patch(
        "c",
        "k",
        &revstore::Patch::Merge(serde_json::json!({"v": 2})),
        revstore::Precondition::Any,
    );
    let waited = began.elapsed();
    match &result {
        Err(revstore::Error::Backend { context, .. }) => {
            assert!(context.contains("store.db"), "{context}")
        }
        other => panic!("expected a backend error naming the file, got {other:?}"),
    }
    assert!(result.unwrap_err().to_string().contains("store.db"));
    assert!(
        waited >= Duration::from_millis(400),
        "gave up after {waited:?}"
    );
    assert!(waited < Duration::from_secs(20), "waited {waited:?}");
    drop(lock);
    let doc = store.get("c", "k").unwrap().unwrap();
    assert_eq!((doc.revision, &doc.body["v"]), (1, &serde_json::json!(1)));
    // Once the other program lets go, the store works at once.
    store
        .patch(
            "c",
            "k",
            &revstore::Patch::Merge(serde_json::json!({"v": 3})),
            revstore::Precondition::Any,
        )
        .unwrap();
}

/// Rewrites a row by hand as a format-2 writer must (its change row
/// first, on the same connection).
fn edit_raw(path: &Path, name: &str, revision: i64, body: &str) {
    let conn = raw(path);
    conn.execute(
        "INSERT INTO changes (collection, name, revision, kind) VALUES ('models', ?1, ?2, 'updated')",
        rusqlite::params![name, revision],
    )
    .unwrap();
    let changed = conn
        .execute(
            "UPDATE documents SET revision = ?2, body = ?3 WHERE collection = 'models' AND name = ?1",
            rusqlite::params![name, revision, body],
        )
        .unwrap();
    assert_eq!(changed, 1);
}

/// A handle caches the bodies it decoded and wrote by their exact text: a
/// hand edit that changes the text (even keeping its length and revision)
/// or only the revision is read as it now is, never from the cache.
#[test]
fn reads_see_hand_edits_of_rows_the_handle_has_cached() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = Store::open(SqliteBackend::open(&path).unwrap());
    store.create("models", "m", json!({"a": 1})).unwrap();
    // A body read twice unchanged is cached.
    let read_twice = || {
        let first = store.get("models", "m").unwrap().unwrap();
        assert_eq!(store.get("models", "m").unwrap().unwrap(), first);
        first
    };
    assert_eq!(read_twice().body["a"], 1);

    edit_raw(&path, "m", 1, r#"{"a":2}"#);
    let doc = store.get("models", "m").unwrap().unwrap();
    assert_eq!((doc.revision, &doc.body["a"]), (1, &json!(2)));
    assert_eq!(read_twice(), doc);

    edit_raw(&path, "m", 9, r#"{"a":2}"#);
    let doc = store.get("models", "m").unwrap().unwrap();
    assert_eq!((doc.revision, &doc.body["a"]), (9, &json!(2)));
    assert_eq!(read_twice(), doc);

    edit_raw(&path, "m", 9, r#"{"a":"#);
    assert_corrupt(store.get("models", "m"), &path, "m");

    edit_raw(&path, "m", 10, r#"{"a":3}"#);
    let doc = store
        .patch(
            "models",
            "m",
            &Patch::Merge(json!({"b": 1})),
            Precondition::Any,
        )
        .unwrap();
    assert_eq!(doc.revision, 11);
    assert_eq!(*doc.body, *json!({"a": 3, "b": 1}).as_object().unwrap());
    assert_eq!(read_twice().body, doc.body);
    edit_raw(&path, "m", 11, r#"{"a":4,"b":1}"#);
    assert_eq!(store.get("models", "m").unwrap().unwrap().body["a"], 4);
}
