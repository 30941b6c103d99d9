//! The backend primitive itself: conditional commits and guards.

use std::sync::Arc;

use revstore::{ChangeKind, Commit, CommitOutcome, Current, Guard, Key, StorageBackend};
use revstore_sqlite::SqliteBackend;
use serde_json::json;

fn body(v: serde_json::Value) -> Arc<revstore::Body> {
    Arc::new(v.as_object().unwrap().clone())
}

/// What the engine would report for this write, from the key's state now.
fn kind_of(backend: &SqliteBackend, key: &Key, b: Option<&Arc<revstore::Body>>) -> ChangeKind {
    let live = matches!(
        backend.read(key).unwrap(),
        Some(revstore::Record { body: Some(_), .. })
    );
    match (live, b) {
        (_, None) => ChangeKind::Deleted,
        (true, Some(_)) => ChangeKind::Updated,
        (false, Some(_)) => ChangeKind::Created,
    }
}

fn commit(
    backend: &SqliteBackend,
    key: &Key,
    expected: u64,
    b: Option<&Arc<revstore::Body>>,
    guard: Option<Guard<'_>>,
) -> CommitOutcome {
    backend
        .commit(&Commit {
            based_on: None,
            key,
            expected,
            body: b,
            guard,
            kind: kind_of(backend, key, b),
        })
        .unwrap()
}

#[test]
fn commits_are_conditional_on_the_last_revision() {
    let dir = tempfile::tempdir().unwrap();
    let backend = SqliteBackend::open(dir.path().join("store.db")).unwrap();
    assert_eq!(backend.kind(), "sqlite");
    let key = Key::new("models", "a").unwrap();
    let one = body(json!({"v": 1}));
    let two = body(json!({"v": 2}));

    assert_eq!(
        commit(&backend, &key, 0, Some(&one), None),
        CommitOutcome::Committed
    );
    assert_eq!(
        commit(&backend, &key, 0, Some(&two), None),
        CommitOutcome::Conflict {
            actual: Current::Live { revision: 1 }
        }
    );
    assert_eq!(
        commit(&backend, &key, 2, Some(&two), None),
        CommitOutcome::Conflict {
            actual: Current::Live { revision: 1 }
        }
    );
    assert_eq!(
        commit(&backend, &key, 1, None, None),
        CommitOutcome::Committed
    );
    assert_eq!(
        commit(&backend, &key, 1, Some(&two), None),
        CommitOutcome::Conflict {
            actual: Current::Deleted { revision: 2 }
        }
    );
    assert_eq!(
        commit(&backend, &key, 0, Some(&two), None),
        CommitOutcome::Conflict {
            actual: Current::Deleted { revision: 2 }
        }
    );
    assert_eq!(
        commit(&backend, &key, 2, Some(&two), None),
        CommitOutcome::Committed
    );
    let record = backend.read(&key).unwrap().unwrap();
    assert_eq!(record.revision, 3);
    assert_eq!(record.body, Some(two));
}

#[test]
fn a_guard_must_still_hold_its_revision() {
    let dir = tempfile::tempdir().unwrap();
    let backend = SqliteBackend::open(dir.path().join("store.db")).unwrap();
    let schema = Key::new_reserved("_schema", "models").unwrap();
    let key = Key::new("models", "a").unwrap();
    let doc = body(json!({"v": 1}));
    let guard = |revision| {
        Some(Guard {
            key: &schema,
            revision,
        })
    };

    // Never written: the guard holds at 0 only.
    assert_eq!(
        commit(&backend, &key, 0, Some(&doc), guard(1)),
        CommitOutcome::GuardChanged {
            actual: Current::Missing
        }
    );
    assert_eq!(backend.read(&key).unwrap(), None, "a failed guard wrote");
    assert_eq!(
        commit(&backend, &key, 0, Some(&doc), guard(0)),
        CommitOutcome::Committed
    );

    assert_eq!(
        commit(
            &backend,
            &schema,
            0,
            Some(&body(json!({"attributes": []}))),
            None
        ),
        CommitOutcome::Committed
    );
    assert_eq!(
        commit(&backend, &key, 1, Some(&doc), guard(0)),
        CommitOutcome::GuardChanged {
            actual: Current::Live { revision: 1 }
        }
    );
    assert_eq!(backend.read(&key).unwrap().unwrap().revision, 1);
    assert_eq!(
        commit(&backend, &key, 1, Some(&doc), guard(1)),
        CommitOutcome::Committed
    );

    // A deleted guard key keeps its revision.
    assert_eq!(
        commit(&backend, &schema, 1, None, None),
        CommitOutcome::Committed
    );
    assert_eq!(
        commit(&backend, &key, 2, Some(&doc), guard(1)),
        CommitOutcome::GuardChanged {
            actual: Current::Deleted { revision: 2 }
        }
    );
    assert_eq!(
        commit(&backend, &key, 2, Some(&doc), guard(2)),
        CommitOutcome::Committed
    );

    // The guard is checked before the key: a failing guard wins over a
    // conflicting revision, and neither writes.
    assert_eq!(
        commit(&backend, &key, 1, Some(&doc), guard(5)),
        CommitOutcome::GuardChanged {
            actual: Current::Deleted { revision: 2 }
        }
    );
    assert_eq!(
        commit(&backend, &key, 1, Some(&doc), guard(2)),
        CommitOutcome::Conflict {
            actual: Current::Live { revision: 3 }
        }
    );
    assert_eq!(backend.read(&key).unwrap().unwrap().revision, 3);
}
