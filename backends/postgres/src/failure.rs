//! Telling PostgreSQL's errors apart: a lost connection (retryable, nothing
//! written), a transaction the server rolled back to break a deadlock or a
//! serialization conflict (retried here), and everything else.

use std::error::Error as _;

use postgres::error::SqlState;
use revstore::Error;

/// Why one attempt at an operation stopped.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The client or the server reported an error.
    Pg(postgres::Error),
    /// A final answer no retry can change (corrupt data, a refused format).
    Final(Error),
}

impl From<postgres::Error> for Failure {
    fn from(e: postgres::Error) -> Self {
        Failure::Pg(e)
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Final(e)
    }
}

/// What an error means for the operation that got it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// The connection is gone or the server is not accepting work
    /// (restarting, shutting down, out of connection slots): the
    /// transaction did not commit, and a later attempt may succeed.
    Connection,
    /// The server rolled the transaction back to resolve a deadlock or a
    /// serialization conflict: running it again is safe and expected.
    Rerun,
    /// Anything else (a missing table, a bad statement, …).
    Other,
}

/// Classifies an error; `closed` tells whether the client's connection is
/// closed now, which settles errors whose kind the client does not expose.
pub(crate) fn classify(e: &postgres::Error, closed: bool) -> Class {
    if let Some(code) = e.code() {
        return classify_code(code);
    }
    if closed || e.is_closed() {
        return Class::Connection;
    }
    if e.source().is_some_and(|s| s.is::<std::io::Error>()) {
        return Class::Connection;
    }
    // Connect and timeout errors carry no cause the client exposes by type.
    let text = e.to_string();
    if text.starts_with("error connecting")
        || text.starts_with("timeout")
        || text.starts_with("error communicating")
        || text.starts_with("unexpected message")
        || text.starts_with("error parsing response")
    {
        return Class::Connection;
    }
    Class::Other
}

/// Classifies a SQLSTATE.
pub(crate) fn classify_code(code: &SqlState) -> Class {
    let text = code.code();
    if *code == SqlState::T_R_SERIALIZATION_FAILURE || *code == SqlState::T_R_DEADLOCK_DETECTED {
        return Class::Rerun;
    }
    // Class 08: connection exceptions. 57P01–57P03: the server is shutting
    // down, crashed, or not yet accepting connections. 53300: no
    // connection slot free. 57P05: an idle session timed out.
    if text.starts_with("08") || matches!(text, "57P01" | "57P02" | "57P03" | "57P05" | "53300") {
        return Class::Connection;
    }
    Class::Other
}

/// Whether a connection attempt failed for a reason that waiting can fix
/// (the server down or starting), as opposed to a refusal that will not
/// change (bad password, unknown database or user).
pub(crate) fn connect_is_transient(e: &postgres::Error) -> bool {
    match e.code() {
        Some(code) => classify_code(code) == Class::Connection,
        None => {
            let text = e.to_string();
            !(text.starts_with("invalid") || text.starts_with("authentication"))
        }
    }
}

/// [`Error::Unavailable`] for the PostgreSQL backend.
pub(crate) fn unavailable(context: String, source: postgres::Error) -> Error {
    Error::Unavailable {
        backend: "postgres",
        context,
        source: Box::new(source),
    }
}

/// [`Error::Backend`] for the PostgreSQL backend.
pub(crate) fn backend(
    context: String,
    source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> Error {
    Error::Backend {
        backend: "postgres",
        context,
        source: source.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_are_classified() {
        assert_eq!(
            classify_code(&SqlState::T_R_SERIALIZATION_FAILURE),
            Class::Rerun
        );
        assert_eq!(
            classify_code(&SqlState::T_R_DEADLOCK_DETECTED),
            Class::Rerun
        );
        for code in [
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
            SqlState::TOO_MANY_CONNECTIONS,
            SqlState::CONNECTION_FAILURE,
            SqlState::CONNECTION_EXCEPTION,
        ] {
            assert_eq!(classify_code(&code), Class::Connection, "{code:?}");
        }
        for code in [
            SqlState::UNDEFINED_TABLE,
            SqlState::UNIQUE_VIOLATION,
            SqlState::INVALID_PASSWORD,
            SqlState::QUERY_CANCELED,
        ] {
            assert_eq!(classify_code(&code), Class::Other, "{code:?}");
        }
    }
}
