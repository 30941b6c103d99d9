//! The change feed: every committed write, in commit order, with a
//! store-wide sequence number as its cursor.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::key::Key;

/// What a committed write did to its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// A live document appeared where there was none (never written, or a
    /// tombstone).
    Created,
    /// A live document was replaced by a new body.
    Updated,
    /// A live document was deleted (a tombstone now holds its revision).
    Deleted,
}

impl ChangeKind {
    /// The stable lower-case name (`created`, `updated`, `deleted`).
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Created => "created",
            ChangeKind::Updated => "updated",
            ChangeKind::Deleted => "deleted",
        }
    }
}

impl fmt::Display for ChangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ChangeKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "created" => Ok(ChangeKind::Created),
            "updated" => Ok(ChangeKind::Updated),
            "deleted" => Ok(ChangeKind::Deleted),
            other => Err(format!("unknown change kind {other:?}")),
        }
    }
}

/// One committed write as the feed reports it.
///
/// The feed carries no bodies: a consumer reads the key and installs the
/// body only if its revision is newer than the one it holds, which makes
/// applying a change idempotent and order-insensitive per key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Change {
    /// Store-wide, strictly increasing commit number; the feed's cursor.
    pub seq: u64,
    /// The key written.
    pub key: Key,
    /// The revision the write produced.
    pub revision: u64,
    /// What it did.
    pub kind: ChangeKind,
}

/// How many changes a backend keeps by default before discarding the
/// oldest (a cursor older than that gets [`Error::Compacted`]).
pub const DEFAULT_RETAINED_CHANGES: u64 = 100_000;

/// Parses a retention setting (a positive number of changes).
///
/// # Errors
/// [`Error::InvalidConfig`] for anything but a positive integer.
pub fn parse_retention(text: &str) -> Result<u64, Error> {
    match text.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(Error::InvalidConfig {
            input: text.to_owned(),
            reason: "retention is a positive number of changes".to_owned(),
        }),
    }
}
