//! The one error type of revstore.

use std::fmt;
use std::path::PathBuf;

use crate::backend::Current;
use crate::key::Key;
use crate::precondition::Precondition;
use crate::schema::{describe_violations, SchemaProblem, Violation};

/// Shorthand for `Result<T, revstore::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which part of a key a name error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// The collection part of a key.
    Collection,
    /// The document name part of a key.
    Name,
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameKind::Collection => "collection",
            NameKind::Name => "name",
        })
    }
}

/// Which configured limit a value exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    /// Nesting depth of mappings and sequences.
    Depth,
    /// Size of the body encoded as compact JSON, in bytes.
    Size,
}

impl fmt::Display for LimitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LimitKind::Depth => "nesting depth",
            LimitKind::Size => "size in bytes",
        })
    }
}

/// Everything that can go wrong in revstore.
///
/// Every variant names the key, file or field at fault. An operation that
/// returns an error other than [`Error::Io`] or [`Error::Backend`] has changed
/// nothing; for those two the outcome of a write is unknown only when the
/// failure happened while committing (the variant says which path or
/// statement failed).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A collection or document name breaks the key rules.
    #[error("invalid {kind} {name:?}: {reason}")]
    InvalidName {
        /// Whether the collection or the name is at fault.
        kind: NameKind,
        /// The value given.
        name: String,
        /// The rule it breaks.
        reason: &'static str,
    },

    /// A body is not a valid document (not a mapping, a non-finite number, …).
    #[error("invalid body for {key}: {reason}")]
    InvalidBody {
        /// The document being written.
        key: Key,
        /// What is wrong, with the JSON Pointer of the offending value where
        /// there is one.
        reason: String,
    },

    /// A body or patch exceeds a configured [`Limits`](crate::Limits) bound.
    #[error("{what} for {key} exceeds the {limit} limit of {max}")]
    LimitExceeded {
        /// The document being written.
        key: Key,
        /// `"body"` or `"patch"`.
        what: &'static str,
        /// Which limit.
        limit: LimitKind,
        /// The configured maximum.
        max: usize,
    },

    /// A patch is malformed or cannot be applied to the current body.
    #[error("invalid patch for {key}: {reason}")]
    InvalidPatch {
        /// The document being patched.
        key: Key,
        /// What is wrong with the patch.
        reason: String,
    },

    /// A JSON Patch `test` operation did not hold on the current body.
    #[error("patch test failed for {key} at {path:?}: {reason}")]
    PatchTestFailed {
        /// The document being patched.
        key: Key,
        /// JSON Pointer of the tested value.
        path: String,
        /// What the test found.
        reason: String,
    },

    /// A precondition did not hold; nothing was changed.
    #[error("conflict on {key}: expected {expected}, found {actual}")]
    Conflict {
        /// The document.
        key: Key,
        /// The precondition that failed.
        expected: Precondition,
        /// What the key held when the precondition was checked.
        actual: Current,
    },

    /// A write breaks its collection's schema; nothing was changed. Every
    /// violation is listed with its JSON Pointer path and the rule broken.
    #[error("{key} breaks schema revision {schema_revision}: {}", describe_violations(.violations))]
    SchemaViolation {
        /// The document written.
        key: Key,
        /// The schema revision it was checked against.
        schema_revision: u64,
        /// Every violation found.
        violations: Vec<Violation>,
    },

    /// A schema document is not valid; nothing was changed. Every problem is
    /// listed with its JSON Pointer path into the schema document.
    #[error("invalid schema {key}: {}", join_problems(.problems))]
    InvalidSchema {
        /// The schema document (`_schema/<collection>`).
        key: Key,
        /// Every problem found.
        problems: Vec<SchemaProblem>,
    },

    /// The document does not exist (never created, or deleted).
    #[error("document {key} not found")]
    NotFound {
        /// The document.
        key: Key,
    },

    /// An unconditional write kept losing races and gave up; nothing was
    /// changed by this call.
    #[error("gave up on {key} after {attempts} attempts lost to concurrent writers")]
    RetriesExhausted {
        /// The document.
        key: Key,
        /// How many times the write was tried.
        attempts: u32,
    },

    /// An [`update`](crate::Store::update) closure returned an error;
    /// nothing was changed.
    #[error("update of {key} aborted: {source}")]
    Aborted {
        /// The document.
        key: Key,
        /// The closure's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A stored body did not deserialize into the requested type.
    #[error("document {key} does not match the requested type: {source}")]
    Deserialize {
        /// The document.
        key: Key,
        /// The decoder's error.
        source: serde_json::Error,
    },

    /// Stored data does not parse; it is left untouched.
    #[error("corrupt data in {location}: {reason}")]
    Corrupt {
        /// The file, or the key and table, that does not parse.
        location: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A change-feed cursor is older than the retained history: changes
    /// after it were discarded. Re-list, then resume from the current
    /// `last_seq`.
    #[error("changes after seq {requested} are no longer retained (the feed keeps changes after seq {retained_after}); re-list and resume from the current seq")]
    Compacted {
        /// The cursor asked for.
        requested: u64,
        /// The oldest cursor still answered.
        retained_after: u64,
    },

    /// An operating-system I/O call failed.
    #[error("I/O error during {op} on {path}: {source}", path = .path.display())]
    Io {
        /// The step that failed (`"read"`, `"fsync"`, `"rename"`, `"lock"`, …).
        op: &'static str,
        /// The file or folder it failed on.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },

    /// A backend's storage engine reported an error (for example SQLite).
    #[error("{backend} backend error while {context}: {source}")]
    Backend {
        /// The backend's name.
        backend: &'static str,
        /// What was being done, naming the key or file.
        context: String,
        /// The engine's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// The store could not be reached (a server restarting, a dropped or
    /// refused connection) and the backend made sure that nothing was
    /// written by this call: retrying later is safe. See
    /// [`Error::is_retryable`].
    #[error(
        "{backend} store unavailable while {context}: {source}; nothing was written, retry later"
    )]
    Unavailable {
        /// The backend's name.
        backend: &'static str,
        /// What was being done, naming the key.
        context: String,
        /// The connection's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A store location (`yaml:DIR`, `sqlite:FILE`, `memory:`) or option is
    /// not understood.
    #[error("invalid store configuration {input:?}: {reason}")]
    InvalidConfig {
        /// The text given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl Error {
    /// Builds an [`Error::Io`].
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// A short, stable name of the variant (`"conflict"`, `"not_found"`, …),
    /// for scripts, logs and histories.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::InvalidName { .. } => "invalid_name",
            Error::InvalidBody { .. } => "invalid_body",
            Error::LimitExceeded { .. } => "limit_exceeded",
            Error::InvalidPatch { .. } => "invalid_patch",
            Error::PatchTestFailed { .. } => "patch_test_failed",
            Error::Conflict { .. } => "conflict",
            Error::NotFound { .. } => "not_found",
            Error::SchemaViolation { .. } => "schema_violation",
            Error::InvalidSchema { .. } => "invalid_schema",
            Error::RetriesExhausted { .. } => "retries_exhausted",
            Error::Aborted { .. } => "aborted",
            Error::Deserialize { .. } => "deserialize",
            Error::Corrupt { .. } => "corrupt",
            Error::Compacted { .. } => "compacted",
            Error::Io { .. } => "io",
            Error::Backend { .. } => "backend",
            Error::Unavailable { .. } => "unavailable",
            Error::InvalidConfig { .. } => "invalid_config",
        }
    }

    /// Whether the same call may succeed if simply tried again later with
    /// nothing changed: the store was unreachable and nothing was written
    /// ([`Error::Unavailable`]), or an unconditional write lost too many
    /// races ([`Error::RetriesExhausted`]).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Unavailable { .. } | Error::RetriesExhausted { .. }
        )
    }

    /// Whether the caller's input was at fault (names, bodies, patches,
    /// configuration), as opposed to state or the environment.
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            Error::InvalidName { .. }
                | Error::InvalidBody { .. }
                | Error::LimitExceeded { .. }
                | Error::InvalidPatch { .. }
                | Error::InvalidConfig { .. }
                | Error::SchemaViolation { .. }
                | Error::InvalidSchema { .. }
        )
    }
}

fn join_problems(problems: &[SchemaProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
