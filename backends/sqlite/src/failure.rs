//! Turning SQLite's errors into revstore's, and waiting out lock contention.

use std::path::Path;
use std::time::{Duration, Instant};

use revstore::{Error, RetryPolicy};
use rusqlite::ErrorCode;

/// Backoff between busy retries. Most busy errors come after the busy
/// handler (see [`crate::pool`]) waited for a while already, so a short
/// jittered pause is enough; the few SQLite reports without calling it
/// resolve within microseconds.
const BUSY_BACKOFF: RetryPolicy = RetryPolicy {
    max_attempts: u32::MAX,
    initial_backoff: Duration::from_micros(100),
    max_backoff: Duration::from_millis(10),
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
/// contention, or `patience` has passed; `context` describes the
/// operation (naming the key or file) for the error.
///
/// Retrying is sound because every attempt is one SQLite transaction: an
/// attempt that failed busy, even at `COMMIT`, was rolled back and changed
/// nothing, and the next attempt checks its conditions afresh.
pub(crate) fn retry_busy<T>(
    patience: Duration,
    path: &Path,
    context: impl Fn() -> String,
    attempt: impl FnMut() -> Result<T, Failure>,
) -> Result<T, Error> {
    retry_contention(patience, attempt).map_err(|failure| match failure {
        Failure::Final(e) => e,
        Failure::Sqlite(e) => sqlite_error(path, context(), e),
    })
}

/// As [`retry_busy`], returning the last failure as it is (for a group
/// commit, which reports it to each of its callers in their own words).
pub(crate) fn retry_contention<T>(
    patience: Duration,
    mut attempt: impl FnMut() -> Result<T, Failure>,
) -> Result<T, Failure> {
    let deadline = Instant::now() + patience;
    let mut tries = 1u32;
    loop {
        match attempt() {
            Err(Failure::Sqlite(e)) if is_contention(&e) && Instant::now() < deadline => {
                tries = tries.saturating_add(1);
                std::thread::sleep(BUSY_BACKOFF.backoff(tries));
            }
            other => return other,
        }
    }
}

/// The error one of several callers gets for a `failure` they share (a
/// group commit's), described by `context`: the same kind of error each
/// would have got alone.
pub(crate) fn shared_error(path: &Path, context: String, failure: &Failure) -> Error {
    match failure {
        Failure::Sqlite(rusqlite::Error::SqliteFailure(code, message)) => sqlite_error(
            path,
            context,
            rusqlite::Error::SqliteFailure(*code, message.clone()),
        ),
        Failure::Sqlite(other) => Error::Backend {
            backend: "sqlite",
            context,
            source: other.to_string().into(),
        },
        Failure::Final(e) => Error::Backend {
            backend: "sqlite",
            context,
            source: e.to_string().into(),
        },
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite_code(code: std::ffi::c_int) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None)
    }

    #[test]
    fn busy_and_locked_are_retried_until_success() {
        let mut calls = 0;
        let result = retry_busy(
            Duration::from_secs(30),
            Path::new("x.db"),
            String::new,
            || {
                calls += 1;
                match calls {
                    1 => Err(sqlite_code(rusqlite::ffi::SQLITE_BUSY).into()),
                    2 => Err(sqlite_code(rusqlite::ffi::SQLITE_LOCKED).into()),
                    3 => Err(sqlite_code(rusqlite::ffi::SQLITE_BUSY_SNAPSHOT).into()),
                    _ => Ok(calls),
                }
            },
        );
        assert_eq!(result.unwrap(), 4);
    }

    #[test]
    fn contention_past_the_deadline_is_a_backend_error_with_context() {
        let began = Instant::now();
        let result: Result<(), Error> = retry_busy(
            Duration::from_millis(50),
            Path::new("x.db"),
            || "committing models/a to x.db".to_owned(),
            || Err(sqlite_code(rusqlite::ffi::SQLITE_BUSY).into()),
        );
        assert!(began.elapsed() >= Duration::from_millis(50));
        match result {
            Err(Error::Backend {
                backend: "sqlite",
                context,
                ..
            }) => assert_eq!(context, "committing models/a to x.db"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn other_errors_are_not_retried() {
        let mut calls = 0;
        let result: Result<(), Error> = retry_busy(
            Duration::from_secs(30),
            Path::new("x.db"),
            || "reading".to_owned(),
            || {
                calls += 1;
                Err(sqlite_code(rusqlite::ffi::SQLITE_IOERR).into())
            },
        );
        assert_eq!(calls, 1);
        assert!(matches!(result, Err(Error::Backend { .. })));

        let mut calls = 0;
        let result: Result<(), Error> = retry_busy(
            Duration::from_secs(30),
            Path::new("x.db"),
            String::new,
            || {
                calls += 1;
                Err(sqlite_code(rusqlite::ffi::SQLITE_NOTADB).into())
            },
        );
        assert_eq!(calls, 1);
        match result {
            Err(Error::Corrupt { location, .. }) => assert_eq!(location, "x.db"),
            other => panic!("{other:?}"),
        }
    }
}
