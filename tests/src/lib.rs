//! Cross-backend concurrency suites of revstore: helpers shared by the
//! integration tests in `tests/` (threads, OS processes, proptest, the
//! broken backend) and the `revstore-worker` binary they start.
//!
//! Every suite follows `TESTING.md`: run generated operations on real
//! threads and processes against a real store, record a history, and
//! check it with [`revstore::testkit::checker::check`].
//!
//! Live schemas and the change feed add: a long-lived handle driven
//! command by command ([`serve`], over a [`worker::Worker`]'s stdin and
//! stdout), the schema race ([`schema_race`]), and feed consumers
//! ([`follow`]).

pub mod follow;
pub mod fuzzing;
pub mod schema_race;
pub mod serve;
pub mod worker;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use revstore::testkit::checker::{check, Summary, Violation};
use revstore::testkit::history::{HistoryWriter, Record, Sink};
use revstore::testkit::workload::{run_on, Handles, Step};
use revstore::testkit::{MemoryTestBackend, TestBackend};
use revstore::Durability;
use revstore_postgres::testkit::PostgresTestBackend;
use revstore_sqlite::testkit::SqliteTestBackend;
use revstore_yaml::testkit::YamlTestBackend;

/// Every real backend, each making fresh, empty locations; PostgreSQL only
/// when a test server is named by `REVSTORE_POSTGRES_URL`.
pub fn backends() -> Vec<Box<dyn TestBackend>> {
    let mut backends: Vec<Box<dyn TestBackend>> = vec![
        Box::new(MemoryTestBackend),
        Box::new(YamlTestBackend::default()),
        Box::new(SqliteTestBackend::default()),
    ];
    if let Ok(url) = std::env::var(revstore_postgres::testkit::URL_VARIABLE) {
        if !url.is_empty() {
            backends.push(Box::new(PostgresTestBackend {
                durability: Durability::Full,
                url,
            }));
        }
    }
    backends
}

/// Whether the calling PostgreSQL test must stop here because no test
/// server is named: it then says it is skipped and why (and under CI, where
/// skipping is not allowed, it panics instead). Call it first in every
/// test that uses `backend("postgres")`.
pub fn skip_postgres() -> bool {
    revstore_postgres::testkit::server_url("a revstore-tests suite on PostgreSQL").is_none()
}

/// The backend called `name` (`memory`, `yaml`, `sqlite`, `postgres`).
///
/// # Panics
/// When there is no such backend.
pub fn backend(name: &str) -> Box<dyn TestBackend> {
    backends()
        .into_iter()
        .find(|b| b.name() == name)
        .unwrap_or_else(|| panic!("no backend {name}"))
}

/// Error kinds a workload provokes on purpose; any other definite error,
/// and any write of unknown outcome, is a bug in a run without faults.
pub const EXPECTED_FAILURES: [&str; 2] = ["invalid_patch", "patch_test_failed"];

/// Whether a checked history contains only the errors the workload asks for.
///
/// # Errors
/// A message naming what else went wrong.
pub fn clean(summary: &Summary) -> Result<(), String> {
    clean_allowing(summary, &EXPECTED_FAILURES)
}

/// Whether a checked history has no write of unknown outcome and no
/// definite error but those of kinds `expected`.
///
/// # Errors
/// A message naming what else went wrong.
pub fn clean_allowing(summary: &Summary, expected: &[&str]) -> Result<(), String> {
    if summary.indeterminate > 0 {
        return Err(format!(
            "{} writes had an unknown outcome: {summary}",
            summary.indeterminate
        ));
    }
    if let Some(kind) = summary
        .failed
        .keys()
        .find(|k| !expected.contains(&k.as_str()))
    {
        return Err(format!("unexpected {kind} errors: {summary}"));
    }
    Ok(())
}

/// Saves a history that failed to a file under the temporary folder, so
/// that it can be read in full, and returns its path.
pub fn save_failed(records: &[Record], label: &str) -> Option<PathBuf> {
    static N: AtomicU32 = AtomicU32::new(0);
    let label: String = label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let path = std::env::temp_dir().join(format!(
        "revstore-failed-{label}-{}-{}.jsonl",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let writer = HistoryWriter::create(&path).ok()?;
    for r in records {
        writer.record(r.clone()).ok()?;
    }
    Some(path)
}

/// Checks a history; on a violation, saves it and explains where.
///
/// # Errors
/// The violation and the saved history's path, as one message.
pub fn check_saving(records: &[Record], label: &str) -> Result<Summary, String> {
    check_saving_allowing(records, label, &EXPECTED_FAILURES)
}

/// [`check_saving`], with the definite errors of kinds `expected` allowed.
///
/// # Errors
/// The violation and the saved history's path, as one message.
pub fn check_saving_allowing(
    records: &[Record],
    label: &str,
    expected: &[&str],
) -> Result<Summary, String> {
    let explain = |v: Violation| {
        let saved = save_failed(records, label)
            .map_or_else(|| "(not saved)".to_owned(), |p| p.display().to_string());
        format!("{label}: {v}\nhistory of {} ops: {saved}", records.len())
    };
    let summary = check(records).map_err(explain)?;
    clean_allowing(&summary, expected).map_err(|e| format!("{label}: {e}"))?;
    Ok(summary)
}

/// Runs a workload on threads against a fresh location of `backend` and
/// checks the history.
///
/// # Errors
/// The violation (or unexpected error), with `label` and where the
/// history was saved.
pub fn run_checked(
    backend: &dyn TestBackend,
    handles: Handles,
    workload: &[Vec<Step>],
    label: &str,
) -> Result<Summary, String> {
    let location = backend.fresh();
    let records = run_on(location.as_ref(), handles, workload);
    check_saving(&records, label)
}

/// The command line of a `revstore-worker` mode with the options every
/// multi-threaded mode shares, followed by `extra`.
pub fn worker_args(
    mode: &str,
    url: &str,
    process: u32,
    threads: usize,
    start_at: u64,
    extra: &[&str],
) -> Vec<String> {
    let mut args: Vec<String> = vec![
        mode.to_owned(),
        "--url".to_owned(),
        url.to_owned(),
        "--process".to_owned(),
        process.to_string(),
        "--threads".to_owned(),
        threads.to_string(),
        "--start-at".to_owned(),
        start_at.to_string(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args
}
