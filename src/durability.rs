//! How hard a backend works to make an acknowledged write survive.

use std::str::FromStr;

use crate::error::Error;

/// What an acknowledged write survives. File-based backends take it as an
/// option; each documents exactly what it does at each level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Durability {
    /// A write is acknowledged only after it is on stable storage: it
    /// survives a process crash and a power loss (the default).
    #[default]
    Full,
    /// No fsync: a write survives a crash of the process (the operating
    /// system still holds it) but recent writes may be lost on power loss.
    /// On filesystems that can persist a rename before the renamed file's
    /// data, a document written just before the power loss may then read as
    /// [`Error::Corrupt`] (an empty or zero-filled file) rather than as an
    /// older revision; it is never silently half-written.
    Relaxed,
}

impl FromStr for Durability {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "full" => Ok(Durability::Full),
            "relaxed" => Ok(Durability::Relaxed),
            other => Err(Error::InvalidConfig {
                input: other.to_owned(),
                reason: "durability is `full` or `relaxed`".to_owned(),
            }),
        }
    }
}
