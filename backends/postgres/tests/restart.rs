//! Restarting the server and killing connections under load: every
//! acknowledged increment is there exactly once (no lost write, no
//! half-applied one, no write reported failed that happened), every error
//! in the outage is `Unavailable` (retryable), and the store — and a
//! watcher's `LISTEN` connection — work afterwards.
//!
//! The test restarts a server of its own (started with
//! `scripts/postgres.sh`), so that the other tests, which share the test
//! server, never see the outage. It runs where the other PostgreSQL tests
//! run: skipped without `REVSTORE_POSTGRES_URL`, except under CI.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use revstore::testkit::soak_factor;
use revstore::{Error, Precondition, Store};
use revstore_postgres::testkit::{admin_client, server_url, PostgresLocation};
use revstore_postgres::PostgresBackend;
use serde_json::json;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/postgres.sh");

/// A server of this test's own; stopped and deleted when dropped.
struct PrivateServer {
    url: String,
    ctl: String,
    dir: String,
}

impl PrivateServer {
    fn start() -> PrivateServer {
        let output = Command::new("bash")
            .args([SCRIPT, "start"])
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .expect("run scripts/postgres.sh");
        assert!(
            output.status.success(),
            "scripts/postgres.sh start failed: {}",
            output.status
        );
        let text = String::from_utf8(output.stdout).unwrap();
        let var = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("export {name}='")))
                .and_then(|v| v.strip_suffix('\''))
                .unwrap_or_else(|| panic!("no {name} in {text}"))
                .to_owned()
        };
        PrivateServer {
            url: var("REVSTORE_POSTGRES_URL"),
            ctl: var("REVSTORE_POSTGRES_CTL"),
            dir: var("REVSTORE_POSTGRES_DIR"),
        }
    }

    fn restart(&self) {
        let mut words = self.ctl.split_whitespace();
        let program = words.next().unwrap();
        let status = Command::new(program)
            .args(words)
            .args(["-m", "fast", "restart"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .status()
            .unwrap();
        assert!(status.success(), "pg_ctl restart: {status}");
    }

    /// Terminates every other connection to the test database.
    fn terminate_all(&self) -> i64 {
        admin_client(&self.url)
            .unwrap()
            .query_one(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid()) t",
                &[],
            )
            .unwrap()
            .get(0)
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .args([SCRIPT, "stop", &self.dir])
            .stdin(Stdio::null())
            .status();
    }
}

#[derive(Default)]
struct Tally {
    acks: AtomicU64,
    unavailable: AtomicU64,
    conflicts: AtomicU64,
    unexpected: Mutex<Vec<String>>,
}

/// Read → compare-and-swap increments until `stop`, riding out the outage.
fn increment_until(store: &Store, stop: &AtomicBool, tally: &Tally) {
    while !stop.load(Ordering::SeqCst) {
        let doc = match store.get("counters", "c") {
            Ok(Some(doc)) => doc,
            Ok(None) => panic!("the counter vanished"),
            Err(e) if e.is_retryable() => {
                tally.unavailable.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            Err(e) => {
                tally.unexpected.lock().unwrap().push(format!("read: {e}"));
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
        };
        let count = doc.body["count"].as_u64().unwrap();
        match store.replace(
            "counters",
            "c",
            json!({ "count": count + 1 }),
            Precondition::Revision(doc.revision),
        ) {
            Ok(_) => {
                tally.acks.fetch_add(1, Ordering::SeqCst);
            }
            Err(Error::Conflict { .. }) => {
                tally.conflicts.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) if e.is_retryable() => {
                assert!(matches!(e, Error::Unavailable { .. }), "{e}");
                tally.unavailable.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                tally
                    .unexpected
                    .lock()
                    .unwrap()
                    .push(format!("commit: {e}"));
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

#[test]
fn restarts_and_killed_connections_under_load_lose_nothing_and_apply_nothing_twice() {
    if server_url(module_path!()).is_none() {
        return;
    }
    let server = PrivateServer::start();
    let location = PostgresLocation::new(&server.url, revstore::Durability::Full, 100_000);
    let url = format!("{}&pool_size=2", location.store_url());
    let open = || Store::open(PostgresBackend::open(&url).unwrap());
    open().create("counters", "c", json!({"count": 0})).unwrap();
    let watcher_backend = PostgresBackend::open(&url).unwrap();
    assert!(watcher_backend.start_listening(Duration::from_secs(10)));
    let watcher = Store::open(watcher_backend);

    let (writers, terminations, restarts) = (4, 3 * soak_factor(), 2 * soak_factor());
    let stop = AtomicBool::new(false);
    let tally = Tally::default();
    let mut killed = 0;
    let acks_after_outage = std::thread::scope(|s| {
        for _ in 0..writers {
            let store = open();
            let (stop, tally) = (&stop, &tally);
            s.spawn(move || increment_until(&store, stop, tally));
        }
        let pause = || std::thread::sleep(Duration::from_millis(400));
        pause();
        for _ in 0..terminations {
            killed += server.terminate_all();
            pause();
        }
        for _ in 0..restarts {
            server.restart();
            pause();
        }
        let at_end = tally.acks.load(Ordering::SeqCst);
        pause();
        pause();
        stop.store(true, Ordering::SeqCst);
        tally.acks.load(Ordering::SeqCst) - at_end
    });

    let acks = tally.acks.load(Ordering::SeqCst);
    let unavailable = tally.unavailable.load(Ordering::SeqCst);
    eprintln!(
        "{terminations} terminations ({killed} connections killed), {restarts} restarts: \
         {acks} acknowledged increments ({acks_after_outage} after the last restart), \
         {unavailable} Unavailable errors, {} conflicts",
        tally.conflicts.load(Ordering::SeqCst)
    );
    let unexpected = tally.unexpected.lock().unwrap();
    assert!(
        unexpected.is_empty(),
        "errors other than Unavailable: {unexpected:?}"
    );
    let store = open();
    let doc = store.get("counters", "c").unwrap().unwrap();
    assert_eq!(
        doc.body["count"],
        json!(acks),
        "the counter differs from the acknowledged increments"
    );
    assert_eq!(
        doc.revision,
        1 + acks,
        "a write was applied without its revision"
    );
    let feed = store.changes_since(0, usize::MAX).unwrap();
    let revisions: Vec<u64> = feed.iter().map(|c| c.revision).collect();
    assert_eq!(revisions, (1..=1 + acks).collect::<Vec<_>>(), "the feed");
    assert!(
        acks_after_outage > 0,
        "no increment succeeded after the outage"
    );

    // The watcher's LISTEN connection came back after the restarts.
    let mut watch = watcher.watch(store.last_seq().unwrap(), Duration::from_secs(60));
    let deadline = Instant::now() + Duration::from_secs(10);
    store.create("c", "after", json!({})).unwrap();
    let change = watch
        .next_timeout(deadline - Instant::now())
        .unwrap()
        .expect("the watcher's listener reconnected after the restarts");
    assert_eq!(change.key.to_string(), "c/after");
}

/// Sets `synchronous_standby_names` and waits until the server applies it.
/// `pg_reload_conf` only signals the reload: without the wait, a commit
/// sent at once (a write that needs no read first sends its `BEGIN` within
/// microseconds) can run under the old setting.
fn set_standby(admin: &mut postgres::Client, names: &str) {
    admin
        .batch_execute(&format!(
            "ALTER SYSTEM SET synchronous_standby_names = '{names}'"
        ))
        .unwrap();
    admin.batch_execute("SELECT pg_reload_conf()").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // A session sees the new value once the postmaster has reloaded
        // and signalled every backend, each of which applies it before
        // its next command.
        let applied: String = admin
            .query_one("SHOW synchronous_standby_names", &[])
            .unwrap()
            .get(0);
        if applied == names {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the server never applied {names:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Drops the synchronous standby setting when dropped, even in a panic.
struct ResetStandby<'a>(&'a str);

impl Drop for ResetStandby<'_> {
    fn drop(&mut self) {
        if let Ok(mut admin) = admin_client(self.0) {
            let _ = admin.batch_execute(
                "ALTER SYSTEM SET synchronous_standby_names = ''; SELECT pg_reload_conf()",
            );
        }
    }
}

/// A commit whose connection is killed while `COMMIT` waits (here for a
/// synchronous standby that does not exist: the transaction has committed
/// locally, and the client only sees its connection drop) is settled by
/// looking up its token: reported committed, and there exactly once.
#[test]
fn a_commit_whose_connection_drops_during_commit_is_settled_as_committed() {
    if server_url(module_path!()).is_none() {
        return;
    }
    let server = PrivateServer::start();
    let location = PostgresLocation::new(&server.url, revstore::Durability::Full, 100_000);
    let app = format!("settle_{}", location.namespace());
    let url = format!("{}&application_name={app}", location.store_url());
    let store = Store::open(PostgresBackend::open(&url).unwrap());
    store.create("c", "k", json!({"v": 0})).unwrap();
    let mut admin = admin_client(&server.url).unwrap();
    set_standby(&mut admin, "nobody");
    // Whatever happens below, the standby is dropped again: the location's
    // clean-up (DROP SCHEMA) would otherwise wait for it for ever.
    let _reset = ResetStandby(&server.url);
    let outcome = std::thread::scope(|s| {
        let writer =
            s.spawn(|| store.replace("c", "k", json!({"v": 1}), Precondition::Revision(1)));
        let deadline = Instant::now() + Duration::from_secs(20);
        let pid: i32 = loop {
            let waiting = admin
                .query_opt(
                    "SELECT pid FROM pg_stat_activity \
                     WHERE application_name = $1 AND wait_event = 'SyncRep'",
                    &[&app],
                )
                .unwrap();
            if let Some(row) = waiting {
                break row.get(0);
            }
            assert!(
                Instant::now() < deadline,
                "the commit never waited for the standby"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        // From here on nothing needs the standby: the lookup commits with
        // synchronous_commit = local.
        let terminated: bool = admin
            .query_one("SELECT pg_terminate_backend($1)", &[&pid])
            .unwrap()
            .get(0);
        assert!(terminated);
        writer.join().unwrap()
    });
    set_standby(&mut admin, "");
    let doc = outcome.expect("the dropped commit is settled as committed");
    assert_eq!(doc.revision, 2);
    let stored = store.get("c", "k").unwrap().unwrap();
    assert_eq!((stored.revision, stored.body["v"].clone()), (2, json!(1)));
    assert_eq!(store.changes_since(0, 10).unwrap().len(), 2);
}
