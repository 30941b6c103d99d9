//! [`PostgresTestBackend`]: runs revstore's shared suites on this backend
//! (feature `testkit`), against the server named by `REVSTORE_POSTGRES_URL`
//! (`scripts/postgres.sh start` starts a throwaway one and prints it).
//!
//! Every test that needs the server asks [`server_url`] first: without the
//! variable it reports that it was skipped and why, and passes — except
//! under CI (`CI` set), where skipping would hide the backend's tests, so
//! it fails.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use revstore::testkit::{TestBackend, TestLocation};
use revstore::{Durability, Store};

use crate::{PostgresBackend, PostgresOptions};

/// The environment variable naming the test server's database.
pub const URL_VARIABLE: &str = "REVSTORE_POSTGRES_URL";

/// The environment variable holding the command line of `pg_ctl` for the
/// test server (`scripts/postgres.sh` sets it), for tests that restart it.
pub const CTL_VARIABLE: &str = "REVSTORE_POSTGRES_CTL";

/// Whether this run is CI's, which must not skip the PostgreSQL tests.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// The test server's URL, or `None` after reporting on stderr that `test`
/// is skipped because `REVSTORE_POSTGRES_URL` is not set.
///
/// # Panics
/// When the variable is not set under CI (see [`under_ci`]): CI must run
/// these tests, so a missing server fails them.
pub fn server_url(test: &str) -> Option<String> {
    // Test harnesses name each test's thread after the test.
    let current = std::thread::current();
    let test = current.name().filter(|n| *n != "main").unwrap_or(test);
    match std::env::var(URL_VARIABLE) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if under_ci() => panic!(
            "{test}: {URL_VARIABLE} is not set, and CI must not skip the PostgreSQL tests: \
             run them through scripts/test.sh, which starts a throwaway server \
             (scripts/postgres.sh)"
        ),
        _ => {
            eprintln!(
                "skipped {test}: {URL_VARIABLE} not set (scripts/postgres.sh starts a throwaway server)"
            );
            None
        }
    }
}

/// A [`PostgresTestBackend`] with `durability` on the test server, or
/// `return` from the calling test after reporting it skipped (see
/// [`server_url`]). For `revstore::conformance_tests!`, whose argument is
/// evaluated inside each generated test:
///
/// ```text
/// revstore::conformance_tests!(revstore_postgres::test_backend_or_skip!(Durability::Full));
/// ```
#[macro_export]
macro_rules! test_backend_or_skip {
    ($durability:expr) => {
        match $crate::testkit::PostgresTestBackend::from_env($durability, module_path!()) {
            Some(backend) => backend,
            None => return,
        }
    };
}

/// The PostgreSQL backend under test: every [`fresh`](TestBackend::fresh)
/// location is a new namespace (PostgreSQL schema) in the test database,
/// dropped with its tables when the location is dropped. Tests running at
/// once, in any number of processes, never share a namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresTestBackend {
    /// The durability every handle is opened with.
    pub durability: Durability,
    /// The test database's URL, without revstore's parameters.
    pub url: String,
}

impl PostgresTestBackend {
    /// The backend on the server of `REVSTORE_POSTGRES_URL`, or `None`
    /// when it is not set (see [`server_url`], which reports `test` as
    /// skipped, or panics under CI).
    pub fn from_env(durability: Durability, test: &str) -> Option<PostgresTestBackend> {
        server_url(test).map(|url| PostgresTestBackend { durability, url })
    }

    /// A fresh location whose handles keep `retain` changes.
    fn location(&self, retain: u64) -> Box<dyn TestLocation> {
        Box::new(PostgresLocation::new(&self.url, self.durability, retain))
    }
}

impl TestBackend for PostgresTestBackend {
    fn name(&self) -> &str {
        "postgres"
    }

    /// A new, empty namespace.
    fn fresh(&self) -> Box<dyn TestLocation> {
        self.location(revstore::DEFAULT_RETAINED_CHANGES)
    }

    /// As [`fresh`](TestBackend::fresh), every handle keeping `retain`
    /// changes.
    fn fresh_with_retention(&self, retain: u64) -> Box<dyn TestLocation> {
        self.location(retain)
    }
}

/// A namespace name no other test uses: the process id, a counter and the
/// clock.
pub fn fresh_namespace() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "t_{}_{}_{nanos:x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// `url` with revstore's query parameters `extra` (`name=value`) added.
pub fn with_parameters(url: &str, extra: &[String]) -> String {
    if extra.is_empty() {
        return url.to_owned();
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{}", extra.join("&"))
}

/// Drops a namespace and its tables (best effort: a failure leaves it to
/// the throwaway server's end).
pub fn drop_namespace(url: &str, namespace: &str) {
    let Ok(mut client) = admin_client(url) else {
        return;
    };
    let _ = client.batch_execute(&format!(
        "DROP SCHEMA IF EXISTS {} CASCADE",
        crate::schema::quote(namespace)
    ));
}

/// A plain client on the test database (for tests that inspect or damage
/// tables, or terminate connections).
///
/// # Errors
/// When the URL does not parse or the server cannot be reached.
pub fn admin_client(url: &str) -> Result<postgres::Client, Box<dyn std::error::Error>> {
    let parsed = crate::url::parse(url, PostgresOptions::default())?;
    Ok(parsed.config.connect(postgres::NoTls)?)
}

/// One namespace of the test database; dropped with this.
pub struct PostgresLocation {
    base: String,
    namespace: String,
    url: String,
}

impl PostgresLocation {
    /// A fresh namespace on the database at `base` (nothing is created
    /// until the first handle opens it).
    pub fn new(base: &str, durability: Durability, retain: u64) -> PostgresLocation {
        let namespace = fresh_namespace();
        let durability = match durability {
            Durability::Full => "full",
            Durability::Relaxed => "relaxed",
        };
        let url = with_parameters(
            base,
            &[
                format!("namespace={namespace}"),
                format!("durability={durability}"),
                format!("retain={retain}"),
            ],
        );
        PostgresLocation {
            base: base.to_owned(),
            namespace,
            url,
        }
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The store URL (with its namespace, durability and retention).
    pub fn store_url(&self) -> &str {
        &self.url
    }
}

impl Drop for PostgresLocation {
    fn drop(&mut self) {
        drop_namespace(&self.base, &self.namespace);
    }
}

impl TestLocation for PostgresLocation {
    /// Opens a new, independent [`PostgresBackend`] on the namespace.
    ///
    /// # Panics
    /// When it cannot be opened: the trait has no error channel, and a
    /// test cannot go on without its store.
    fn open(&self) -> Store {
        match PostgresBackend::open(&self.url) {
            Ok(backend) => Store::open(backend),
            Err(e) => panic!("cannot open test store {}: {e}", self.url),
        }
    }

    fn url(&self) -> Option<String> {
        Some(self.url.clone())
    }
}

/// Opens a deliberately broken backend on `url`: its updates ignore the
/// expected revision and write on whatever revision the key holds — the
/// lost update revstore exists to prevent. Only for proving that the
/// suites catch such a backend; never store anything with it.
///
/// # Errors
/// As [`PostgresBackend::open`].
pub fn open_broken(url: &str) -> revstore::Result<PostgresBackend> {
    PostgresBackend::open_inner(url, PostgresOptions::default(), true)
}
