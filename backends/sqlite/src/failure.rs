//! Turning SQLite's errors into revstore's, and waiting out lock contention.

use std::path::Path;
use std::time::{Duration, Instant};

use revstore::{Error, RetryPolicy};
use rusqlite::ErrorCode;

/// Longest total time one operation keeps retrying after SQLite reports the
/// database busy or locked, on top of the per-statement busy timeout.
pub(crate) const BUSY_DEADLINE: Duration = Duration::from_secs(30);

/// Backoff between busy retries: SQLite's busy handler already slept, so a
/// short jittered pause is enough to let the lock holder finish.
const BUSY_BACKOFF: RetryPolicy = RetryPolicy {
    max_attempts: u32::MAX,
    initial_backoff: Duration::from_millis(1),
    max_backoff: Duration::from_millis(50),
};

/// Why one attempt at an operation stopped.
#[derive(Debug)]
pub(crate) enum Failure {
    /// SQLite reported an error; busy and locked errors are retried.
    Sqlite(rusqlite::Error),
    /// A final answer that no retry can change (corrupt data, a refused
    /// format version).
    Final(Error),
}

impl From<rusqlite::Error> for Failure {
    fn from(e: rusqlite::Error) -> Self {
        Failure::Sqlite(e)
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Final(e)
    }
}

/// Whether another connection holding a lock caused the error, so that
/// trying again later can succeed.
fn is_contention(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

/// Runs `attempt` until it succeeds, fails for a reason other than lock
/// contention, or [`BUSY_DEADLINE`] has passed; `context` describes the
/// operation (naming the key or file) for the error.
///
/// Retrying is sound because every attempt is one SQLite transaction: an
/// attempt that failed busy, even at `COMMIT`, was rolled back and changed
/// nothing, and the next attempt checks its conditions afresh.
pub(crate) fn retry_busy<T>(
    path: &Path,
    context: impl Fn() -> String,
    mut attempt: impl FnMut() -> Result<T, Failure>,
) -> Result<T, Error> {
    let deadline = Instant::now() + BUSY_DEADLINE;
    let mut tries = 1u32;
    loop {
        match attempt() {
            Ok(value) => return Ok(value),
            Err(Failure::Final(e)) => return Err(e),
            Err(Failure::Sqlite(e)) if is_contention(&e) && Instant::now() < deadline => {
                tries = tries.saturating_add(1);
                std::thread::sleep(BUSY_BACKOFF.backoff(tries));
            }
            Err(Failure::Sqlite(e)) => return Err(sqlite_error(path, context(), e)),
        }
    }
}

/// Maps a SQLite error to a revstore error: a file that is not a database
/// or is damaged is [`Error::Corrupt`] naming it, anything else
/// [`Error::Backend`] with `context`.
pub(crate) fn sqlite_error(path: &Path, context: String, e: rusqlite::Error) -> Error {
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => Error::Corrupt {
            location: path.display().to_string(),
            reason: format!("the file is not a SQLite database ({e})"),
        },
        Some(ErrorCode::DatabaseCorrupt) => Error::Corrupt {
            location: path.display().to_string(),
            reason: format!("the database is damaged ({e}) while {context}"),
        },
        _ => Error::Backend {
            backend: "sqlite",
            context,
            source: Box::new(e),
        },
    }
}
