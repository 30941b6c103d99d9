//! `LISTEN`/`NOTIFY` wakes watchers in other handles at once; a lost
//! notification only delays them until their next poll; the listening
//! connection comes back after it is killed, and goes away with its handle.
//!
//! "At once" is checked with a generous deadline only: the watch polls
//! every 60 s, so seeing a change within 10 s can only come from a
//! notification.

use std::time::{Duration, Instant};

use revstore::testkit::TestLocation;
use revstore::{ChangeKind, Durability, Store};
use revstore_postgres::testkit::{admin_client, server_url, PostgresLocation};
use revstore_postgres::PostgresBackend;
use serde_json::json;

const SLOW_POLL: Duration = Duration::from_secs(60);
const DEADLINE: Duration = Duration::from_secs(10);

/// A fresh location and a URL on it whose connections carry a name of
/// their own (to find them in `pg_stat_activity`).
fn named_location() -> Option<(String, PostgresLocation, String)> {
    let url = server_url(module_path!())?;
    let location = PostgresLocation::new(&url, Durability::Full, 1000);
    let app = format!("listen_{}", location.namespace());
    let named = format!("{}&application_name={app}", location.store_url());
    Some((url, location, named))
}

fn connections(url: &str, app: &str) -> i64 {
    admin_client(url)
        .unwrap()
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
            &[&app],
        )
        .unwrap()
        .get(0)
}

#[test]
fn a_commit_in_another_handle_wakes_a_watcher_at_once() {
    let Some((_, location, _)) = named_location() else {
        return;
    };
    let (watcher, writer) = (location.open(), location.open());
    let mut watch = watcher.watch(0, SLOW_POLL);
    for round in 1..=3u64 {
        let started = Instant::now();
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(100));
                writer
                    .replace(
                        "c",
                        "k",
                        json!({ "round": round }),
                        revstore::Precondition::Any,
                    )
                    .unwrap();
            });
            let change = watch
                .next_timeout(DEADLINE)
                .unwrap()
                .unwrap_or_else(|| panic!("round {round}: no change within {DEADLINE:?}"));
            assert_eq!((change.seq, change.revision), (round, round));
        });
        eprintln!("round {round}: woken after {:?}", started.elapsed());
    }
}

#[test]
fn a_lost_notification_only_delays_a_watcher() {
    let Some((url, location, _)) = named_location() else {
        return;
    };
    let backend = PostgresBackend::open(location.store_url()).unwrap();
    assert!(backend.start_listening(DEADLINE));
    let watcher = Store::open(backend);
    let started = watcher.last_seq().unwrap();
    let ns = location.namespace();
    std::thread::scope(|s| {
        s.spawn(|| {
            // The watcher is waiting by now. A commit that sends no
            // notification, as one whose NOTIFY was lost.
            std::thread::sleep(Duration::from_millis(100));
            admin_client(&url)
                .unwrap()
                .batch_execute(&format!(
                    "BEGIN;
                     INSERT INTO \"{ns}\".documents (collection, name, revision, body)
                         VALUES ('c', 'quiet', 1, '{{}}');
                     WITH next AS (
                         UPDATE \"{ns}\".feed_state SET last_seq = last_seq + 1 RETURNING last_seq
                     )
                     INSERT INTO \"{ns}\".changes (seq, collection, name, revision, kind, token)
                         SELECT last_seq, 'c', 'quiet', 1, 'created', '\\x00' FROM next;
                     COMMIT;"
                ))
                .unwrap();
        });
        let mut watch = watcher.watch(started, Duration::from_millis(300));
        let change = watch
            .next_timeout(DEADLINE)
            .unwrap()
            .expect("the next poll finds the change");
        assert_eq!(
            (change.key.to_string(), change.kind),
            ("c/quiet".to_owned(), ChangeKind::Created)
        );
    });
}

#[test]
fn the_listener_comes_back_after_its_connection_is_killed_and_ends_with_its_handle() {
    let Some((url, _location, named)) = named_location() else {
        return;
    };
    let app = named.rsplit_once("application_name=").unwrap().1.to_owned();
    let backend = PostgresBackend::open(&named).unwrap();
    assert!(backend.start_listening(DEADLINE));
    let watcher = Store::open(backend);
    let writer = Store::open(PostgresBackend::open(&named).unwrap());
    // Kill every connection of both handles: the listener's and the pools'.
    let killed: i64 = admin_client(&url)
        .unwrap()
        .query_one(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = $1) t",
            &[&app],
        )
        .unwrap()
        .get(0);
    assert!(killed >= 3, "{killed} connections killed");
    let mut watch = watcher.watch(watcher.last_seq().unwrap(), SLOW_POLL);
    writer
        .create("c", "after_kill", json!({}))
        .expect("a dead pooled connection is replaced silently");
    let change = watch
        .next_timeout(DEADLINE)
        .unwrap()
        .expect("the listener reconnected and woke the watcher");
    assert_eq!(change.key.to_string(), "c/after_kill");

    drop((watch, watcher, writer));
    let deadline = Instant::now() + DEADLINE;
    while connections(&url, &app) > 0 {
        assert!(
            Instant::now() < deadline,
            "the handles' connections outlived them: {}",
            connections(&url, &app)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
