//! The reference semantics a history is replayed with: what one operation
//! does to one known state, exactly as [`Store`](crate::Store) decides it
//! (same order of checks, same patch engine, default limits), without
//! retries — a committed write is, by definition, the attempt that won.

use crate::testkit::history::Op;
use crate::{Body, Current, Error, Key, Limits, Result};

/// A key's state at some revision: the live body, or `None` when the key
/// is not live (never written at revision 0, a tombstone after).
pub(crate) type State = Option<Body>;

/// The [`Current`] a state at `revision` reports.
pub(crate) fn current_at(revision: u64, state: &State) -> Current {
    match (revision, state) {
        (0, _) => Current::Missing,
        (revision, Some(_)) => Current::Live { revision },
        (revision, None) => Current::Deleted { revision },
    }
}

/// What `op` does on `state` (the key at `revision`): the new state, or the
/// error the engine answers.
pub(crate) fn apply(key: &Key, op: &Op, revision: u64, state: &State) -> Result<State> {
    let limits = Limits::default();
    let current = current_at(revision, state);
    let conflict = |expected| Error::Conflict {
        key: key.clone(),
        expected,
        actual: current,
    };
    match op {
        Op::Read => Ok(state.clone()),
        Op::Replace { body, precondition } => {
            limits.check_body(key, body)?;
            if !precondition.holds(current) {
                return Err(conflict(*precondition));
            }
            Ok(Some(body.clone()))
        }
        Op::Patch {
            patch,
            precondition,
        } => {
            let prepared = patch.prepare(key, &limits)?;
            if !precondition.holds(current) {
                return Err(conflict(*precondition));
            }
            let empty = Body::new();
            let base = match state {
                Some(body) => body,
                None if *precondition == crate::Precondition::Absent => &empty,
                None => return Err(Error::NotFound { key: key.clone() }),
            };
            prepared.apply(key, base, &limits).map(Some)
        }
        Op::Delete { precondition } => {
            if !precondition.holds(current) {
                return Err(conflict(*precondition));
            }
            match state {
                Some(_) => Ok(None),
                None => Err(Error::NotFound { key: key.clone() }),
            }
        }
    }
}

/// What a committed `op` left behind when the state it applied to is not
/// known: whole-body writes and deletes do not depend on it; a patch does.
pub(crate) fn apply_blind(op: &Op) -> Option<State> {
    match op {
        Op::Replace { body, .. } => Some(Some(body.clone())),
        Op::Delete { .. } => Some(None),
        Op::Read | Op::Patch { .. } => None,
    }
}

/// Whether `op` fails on every state alike (a malformed patch, a body over
/// the limits), with that error's kind.
pub(crate) fn fails_regardless(key: &Key, op: &Op) -> Option<&'static str> {
    let limits = Limits::default();
    match op {
        Op::Replace { body, .. } => limits.check_body(key, body).err().map(|e| e.kind()),
        Op::Patch { patch, .. } => patch.prepare(key, &limits).err().map(|e| e.kind()),
        Op::Read | Op::Delete { .. } => None,
    }
}
