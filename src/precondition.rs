//! Preconditions and the observed state of a key.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What a write requires of the key's current state. A precondition that
/// does not hold makes the write fail with [`Error::Conflict`](crate::Error::Conflict)
/// and change nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precondition {
    /// No requirement. Unconditional patches and updates are re-applied to
    /// the newest body when a concurrent writer wins, so nothing is lost.
    Any,
    /// There must be no live document: never created, or deleted (a
    /// tombstone). A create.
    Absent,
    /// The live document must be at exactly this revision: a compare-and-swap.
    Revision(u64),
}

impl Precondition {
    /// Whether `current` satisfies this precondition.
    pub fn holds(self, current: Current) -> bool {
        match self {
            Precondition::Any => true,
            Precondition::Absent => !current.is_live(),
            Precondition::Revision(r) => current == Current::Live { revision: r },
        }
    }
}

impl fmt::Display for Precondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Precondition::Any => f.write_str("any state"),
            Precondition::Absent => f.write_str("no document"),
            Precondition::Revision(r) => write!(f, "revision {r}"),
        }
    }
}

/// The committed state of a key at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum Current {
    /// The key was never written.
    Missing,
    /// The key was deleted; the tombstone keeps its revision so that a
    /// re-create continues the sequence.
    Deleted {
        /// Revision of the delete.
        revision: u64,
    },
    /// A live document at this revision.
    Live {
        /// The document's revision.
        revision: u64,
    },
}

impl Current {
    /// The key's last revision, live or tombstone; 0 when never written.
    pub fn last_revision(self) -> u64 {
        match self {
            Current::Missing => 0,
            Current::Deleted { revision } | Current::Live { revision } => revision,
        }
    }

    /// The revision of the live document, if there is one.
    pub fn live_revision(self) -> Option<u64> {
        match self {
            Current::Live { revision } => Some(revision),
            _ => None,
        }
    }

    /// Whether there is a live document.
    pub fn is_live(self) -> bool {
        matches!(self, Current::Live { .. })
    }
}

impl fmt::Display for Current {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Current::Missing => f.write_str("no document"),
            Current::Deleted { revision } => {
                write!(f, "no document (deleted at revision {revision})")
            }
            Current::Live { revision } => write!(f, "revision {revision}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds() {
        let live = Current::Live { revision: 3 };
        let dead = Current::Deleted { revision: 3 };
        assert!(Precondition::Any.holds(Current::Missing));
        assert!(Precondition::Absent.holds(Current::Missing));
        assert!(Precondition::Absent.holds(dead));
        assert!(!Precondition::Absent.holds(live));
        assert!(Precondition::Revision(3).holds(live));
        assert!(!Precondition::Revision(3).holds(dead));
        assert!(!Precondition::Revision(2).holds(live));
        assert!(!Precondition::Revision(0).holds(Current::Missing));
    }
}
