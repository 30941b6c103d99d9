//! Bad data in the tables, a namespace that is not revstore's, a newer
//! format, and servers that cannot be used are reported with typed errors
//! naming them, and nothing is overwritten.

use revstore::testkit::TestLocation;
use revstore::{Durability, Error, Patch, Precondition};
use revstore_postgres::testkit::{admin_client, fresh_namespace, server_url, PostgresLocation};
use revstore_postgres::{PostgresBackend, PostgresOptions};
use serde_json::json;

fn exec(url: &str, sql: &str) {
    admin_client(url).unwrap().batch_execute(sql).unwrap();
}

fn body_of(url: &str, namespace: &str, name: &str) -> Option<String> {
    admin_client(url)
        .unwrap()
        .query_one(
            format!("SELECT body FROM \"{namespace}\".documents WHERE name = $1").as_str(),
            &[&name],
        )
        .unwrap()
        .get(0)
}

#[test]
fn corrupt_rows_are_reported_naming_namespace_and_key_and_left_alone() {
    let Some(url) = server_url(module_path!()) else {
        return;
    };
    let location = PostgresLocation::new(&url, Durability::Full, 100);
    let store = location.open();
    let ns = location.namespace();
    exec(
        &url,
        &format!(
            "INSERT INTO \"{ns}\".documents (collection, name, revision, body) VALUES
             ('c', 'not_json', 1, '{{oops'),
             ('c', 'array', 2, '[1, 2]'),
             ('c', 'fine', 1, '{{\"ok\": true}}')"
        ),
    );
    for (name, reason) in [("not_json", "not valid JSON"), ("array", "JSON mapping")] {
        match store.get("c", name) {
            Err(Error::Corrupt {
                location,
                reason: r,
            }) => {
                assert!(
                    location.contains(ns) && location.contains(&format!("c/{name}")),
                    "{location}"
                );
                assert!(r.contains(reason), "{r}");
            }
            other => panic!("{name}: {other:?}"),
        }
        let patch = Patch::Merge(json!({"x": 1}));
        assert!(matches!(
            store.patch("c", name, &patch, Precondition::Any),
            Err(Error::Corrupt { .. })
        ));
    }
    assert_eq!(body_of(&url, ns, "not_json").as_deref(), Some("{oops"));
    assert_eq!(body_of(&url, ns, "array").as_deref(), Some("[1, 2]"));
    assert_eq!(store.get("c", "fine").unwrap().unwrap().body["ok"], true);
    // The listing does not read bodies.
    let names: Vec<String> = store
        .list("c")
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["array", "fine", "not_json"]);
}

#[test]
fn corrupt_change_rows_are_reported_naming_the_seq() {
    let Some(url) = server_url(module_path!()) else {
        return;
    };
    let location = PostgresLocation::new(&url, Durability::Full, 100);
    let store = location.open();
    store.create("c", "a", json!({})).unwrap();
    store.create("c", "b", json!({})).unwrap();
    exec(
        &url,
        &format!(
            "UPDATE \"{}\".changes SET kind = 'exploded' WHERE seq = 2",
            location.namespace()
        ),
    );
    assert_eq!(store.changes_since(0, 1).unwrap().len(), 1);
    match store.changes_since(0, 10) {
        Err(Error::Corrupt {
            location: at,
            reason,
        }) => {
            assert!(at.contains("change 2"), "{at}");
            assert!(reason.contains("kind"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_newer_format_version_is_refused_and_left_alone() {
    let Some(url) = server_url(module_path!()) else {
        return;
    };
    let location = PostgresLocation::new(&url, Durability::Full, 100);
    location.open().create("c", "a", json!({"v": 1})).unwrap();
    let ns = location.namespace();
    exec(
        &url,
        &format!("UPDATE \"{ns}\".meta SET value = 7 WHERE key = 'format_version'"),
    );
    match PostgresBackend::open(location.store_url()) {
        Err(Error::InvalidConfig { input, reason }) => {
            assert!(input.contains(ns), "{input}");
            assert!(reason.contains("newer") && reason.contains('7'), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(body_of(&url, ns, "a").as_deref(), Some("{\"v\":1}"));
}

#[test]
fn another_applications_schema_is_refused_and_left_alone() {
    let Some(url) = server_url(module_path!()) else {
        return;
    };
    let ns = fresh_namespace();
    exec(
        &url,
        &format!(
            "CREATE SCHEMA \"{ns}\"; CREATE TABLE \"{ns}\".documents (id int); \
             INSERT INTO \"{ns}\".documents VALUES (42)"
        ),
    );
    let result = PostgresBackend::open_with(
        &url,
        PostgresOptions {
            namespace: ns.clone(),
            ..PostgresOptions::default()
        },
    );
    let kept: i32 = admin_client(&url)
        .unwrap()
        .query_one(format!("SELECT id FROM \"{ns}\".documents").as_str(), &[])
        .unwrap()
        .get(0);
    revstore_postgres::testkit::drop_namespace(&url, &ns);
    match result {
        Err(Error::InvalidConfig { reason, .. }) => {
            assert!(reason.contains("another application"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(kept, 42);
}

#[test]
fn a_missing_table_is_reported_as_corrupt() {
    let Some(url) = server_url(module_path!()) else {
        return;
    };
    let location = PostgresLocation::new(&url, Durability::Full, 100);
    drop(location.open());
    exec(
        &url,
        &format!("DROP TABLE \"{}\".changes", location.namespace()),
    );
    match PostgresBackend::open(location.store_url()) {
        Err(Error::Corrupt { reason, .. }) => assert!(reason.contains("changes"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_unreachable_server_is_unavailable_and_retryable() {
    // No server listens on port 1; this needs no test server.
    let started = std::time::Instant::now();
    match PostgresBackend::open("postgres://revstore@127.0.0.1:1/none?connect_timeout=2") {
        Err(e @ Error::Unavailable { .. }) => {
            assert!(e.is_retryable());
            assert!(e.to_string().contains("127.0.0.1:1"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

#[test]
fn a_database_that_does_not_exist_is_a_backend_error_not_retryable() {
    let Some(url) = server_url(module_path!()) else {
        return;
    };
    let (base, _) = url.rsplit_once('/').unwrap();
    let missing = format!("{base}/no_such_database_here");
    match PostgresBackend::open(&missing) {
        Err(e @ Error::Backend { .. }) => {
            assert!(!e.is_retryable());
            assert!(e.to_string().contains("no_such_database_here"), "{e}");
        }
        other => panic!("{other:?}"),
    }
}
