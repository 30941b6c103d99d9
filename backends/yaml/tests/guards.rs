//! A commit's guard is checked under the feed lock, not by locking the
//! guard key.
//!
//! A write of the guard key (a schema change) that lands after a guarded
//! commit has checked its document and staged its file, but before that
//! commit takes the feed lock, must refuse the commit: the guard holds no
//! lock that would have kept the schema write out, so only the check made
//! under the feed lock can see it. The interleaving is made exact by a
//! file system that runs the schema write, through another handle, at the
//! moment the guarded commit asks for the feed lock.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use revstore::{ChangeKind, Commit, CommitOutcome, Current, Guard, Key, StorageBackend};
use revstore_yaml::testkit::hooks::BeforeLock;
use revstore_yaml::testkit::staging_debris as debris;
use revstore_yaml::{YamlBackend, YamlOptions};
use serde_json::json;
use tempfile::TempDir;

/// The real file system, running `hook` once, just before the first lock
/// of a file named `changes.lock` (the feed lock) is taken; `ran` tells
/// whether it did.
fn before_feed_lock(hook: impl FnOnce() + Send + 'static) -> (BeforeLock, Arc<AtomicBool>) {
    let hook = Mutex::new(Some(hook));
    let ran = Arc::new(AtomicBool::new(false));
    let ran_here = Arc::clone(&ran);
    let fs = BeforeLock::new(move |path| {
        if path.file_name().is_some_and(|name| name == "changes.lock") {
            let hook = hook.lock().unwrap_or_else(PoisonError::into_inner).take();
            if let Some(hook) = hook {
                hook();
                ran_here.store(true, Ordering::SeqCst);
            }
        }
        Ok(())
    });
    (fs, ran)
}

fn schema_key() -> Key {
    Key::new_reserved("_schema", "models").unwrap()
}

fn orders() -> Key {
    Key::new("models", "orders").unwrap()
}

/// Commits `body` at `key`, from `expected`, if `guard` (when given) is
/// still at its revision.
fn commit(
    backend: &YamlBackend,
    key: &Key,
    expected: u64,
    body: serde_json::Value,
    guard: Option<(&Key, u64)>,
) -> CommitOutcome {
    let serde_json::Value::Object(body) = body else {
        panic!("not a mapping: {body}");
    };
    let body = Arc::new(body);
    backend
        .commit(&Commit {
            based_on: None,
            key,
            expected,
            body: Some(&body),
            guard: guard.map(|(key, revision)| Guard { key, revision }),
            kind: if expected == 0 {
                ChangeKind::Created
            } else {
                ChangeKind::Updated
            },
        })
        .unwrap()
}

/// Whether someone holds a lock on `path` (a missing file is not held).
fn is_held(path: &Path) -> bool {
    let Ok(file) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
    else {
        return false;
    };
    fs2::FileExt::try_lock_exclusive(&file).is_err()
}

/// (key, revision) of every line of the feed.
fn feed(backend: &YamlBackend) -> Vec<(String, u64)> {
    backend
        .changes_since(0, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|change| (change.key.to_string(), change.revision))
        .collect()
}

#[test]
fn a_write_of_the_guard_key_between_a_commits_checks_and_its_feed_lock_refuses_it() {
    let dir = TempDir::new().unwrap();
    let root = dir.path().to_owned();
    // Another process, say: a handle of its own, with lock files of its own.
    let admin = Arc::new(YamlBackend::open(&root).unwrap());
    assert_eq!(
        commit(
            &admin,
            &orders(),
            0,
            json!({"v": 1}),
            Some((&schema_key(), 0))
        ),
        CommitOutcome::Committed
    );

    let hook = {
        let (admin, root) = (admin.clone(), root.clone());
        move || {
            // The guarded commit has checked its document and staged its
            // file, and holds no lock of the guard key: the schema write
            // gets through now.
            assert!(
                root.join("models/.orders.yaml.tmp").is_file(),
                "the feed lock was asked for before the staging file was written"
            );
            assert!(
                !is_held(&root.join("_schema/.models.lock")),
                "the guarded commit holds a lock of the guard key"
            );
            assert_eq!(
                commit(&admin, &schema_key(), 0, json!({"attributes": []}), None),
                CommitOutcome::Committed
            );
        }
    };
    let (fs, ran) = before_feed_lock(hook);
    let writer = YamlBackend::open_with_fs(&root, YamlOptions::default(), Arc::new(fs)).unwrap();
    // Validated against the schema key at revision 0, before its write.
    let outcome = commit(
        &writer,
        &orders(),
        1,
        json!({"v": 2}),
        Some((&schema_key(), 0)),
    );
    assert!(ran.load(Ordering::SeqCst), "the schema write never ran");
    assert_eq!(
        outcome,
        CommitOutcome::GuardChanged {
            actual: Current::Live { revision: 1 }
        },
        "a guarded commit went ahead after the guard key was written"
    );

    // Nothing of the refused commit is left: no staging file, no line, no
    // change to the document, no lock held.
    assert_eq!(debris(&root), Vec::<String>::new());
    assert_eq!(
        feed(&admin),
        [
            ("models/orders".to_owned(), 1),
            ("_schema/models".to_owned(), 1)
        ]
    );
    let stored = admin.read(&orders()).unwrap().unwrap();
    assert_eq!(stored.revision, 1);
    assert_eq!(stored.body.map(|b| b["v"].clone()), Some(json!(1)));
    assert!(!is_held(&root.join(".revstore/changes.lock")));
    assert!(!is_held(&root.join("models/.orders.lock")));

    // Retried against the new schema, the write commits on the next seq.
    assert_eq!(
        commit(
            &writer,
            &orders(),
            1,
            json!({"v": 2}),
            Some((&schema_key(), 1))
        ),
        CommitOutcome::Committed
    );
    let changes = admin.changes_since(0, usize::MAX).unwrap();
    assert_eq!(
        changes
            .iter()
            .map(|c| (c.seq, c.key.to_string(), c.revision))
            .collect::<Vec<_>>(),
        [
            (1, "models/orders".to_owned(), 1),
            (2, "_schema/models".to_owned(), 1),
            (3, "models/orders".to_owned(), 2),
        ]
    );
}
