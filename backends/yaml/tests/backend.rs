//! The YAML backend on a real folder: layout, format, corrupt files,
//! guards, and concurrent handles.

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Barrier};
use std::time::Duration;

use revstore::{
    ChangeKind, Commit, CommitOutcome, Current, Durability, Entry, Error, Guard, Key, Limits,
    Patch, Precondition, StorageBackend, Store, StoreOptions,
};
use revstore_yaml::{YamlBackend, YamlOptions};
use serde_json::{json, Value};
use tempfile::TempDir;

fn store(dir: &Path) -> Store {
    Store::open(YamlBackend::open(dir).unwrap())
}

fn body(value: Value) -> std::sync::Arc<revstore::Body> {
    match value {
        Value::Object(map) => std::sync::Arc::new(map),
        other => panic!("not a mapping: {other}"),
    }
}

/// Every path under `dir`, relative, sorted.
fn tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            out.push(path.strip_prefix(base).unwrap().display().to_string());
            if path.is_dir() {
                walk(base, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// A written file's content and its seal line (the last line).
fn split_seal(text: &str) -> (&str, &str) {
    let start = text.trim_end_matches('\n').rfind('\n').unwrap() + 1;
    text.split_at(start)
}

fn assert_corrupt_naming<T: std::fmt::Debug>(result: revstore::Result<T>, path: &Path) {
    match result {
        Err(Error::Corrupt { location, .. }) => assert_eq!(location, path.display().to_string()),
        other => panic!("expected Corrupt naming {}, got {other:?}", path.display()),
    }
}

#[test]
fn documents_are_readable_yaml_files_in_collection_folders() {
    let dir = TempDir::new().unwrap();
    let s = store(dir.path());
    s.create(
        "models",
        "orders",
        json!({"description": "All orders", "joins": ["customers"]}),
    )
    .unwrap();
    let text = std::fs::read_to_string(dir.path().join("models/orders.yaml")).unwrap();
    let (content, seal) = split_seal(&text);
    assert_eq!(
        content,
        "revision: 1\nbody:\n  description: All orders\n  joins:\n  - customers\n"
    );
    assert!(seal.starts_with("digest: fnv1a64-"), "{seal}");
    // The write is guarded by the collection's schema key, which it reads
    // but does not lock: nothing is made in `_schema`.
    assert_eq!(
        tree(dir.path()),
        [
            ".revstore",
            ".revstore/changes",
            ".revstore/changes.lock",
            ".revstore/changes/00000000000000000001.log",
            "models",
            "models/.orders.lock",
            "models/orders.yaml"
        ]
    );
}

#[test]
fn open_creates_the_root_and_missing_parents() {
    let dir = TempDir::new().unwrap();
    let root = dir.path().join("a/b/store");
    for durability in [Durability::Full, Durability::Relaxed] {
        let backend = YamlBackend::open_with(
            &root,
            YamlOptions {
                durability,
                ..YamlOptions::default()
            },
        )
        .unwrap();
        assert_eq!(backend.durability(), durability);
        assert!(root.is_dir());
    }
    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    assert!(matches!(
        YamlBackend::open(&file),
        Err(Error::InvalidConfig { .. })
    ));
    assert!(matches!(
        YamlBackend::open(""),
        Err(Error::InvalidConfig { .. })
    ));
}

#[test]
fn reads_never_create_anything() {
    let dir = TempDir::new().unwrap();
    let s = store(dir.path());
    assert_eq!(s.get("models", "orders").unwrap(), None);
    assert_eq!(s.get_record("models", "orders").unwrap(), None);
    assert_eq!(s.list("models").unwrap(), []);
    assert_eq!(s.last_seq().unwrap(), 0);
    assert_eq!(s.changes_since(0, 10).unwrap(), []);
    assert!(tree(dir.path()).is_empty());

    s.create("models", "orders", json!({})).unwrap();
    let before = tree(dir.path());
    assert_eq!(s.get("models", "missing").unwrap(), None);
    assert_eq!(s.get("other", "x").unwrap(), None);
    assert!(s.get("models", "orders").unwrap().is_some());
    assert_eq!(s.list("other").unwrap(), []);
    assert_eq!(s.list("models").unwrap().len(), 1);
    assert_eq!(s.last_seq().unwrap(), 1);
    assert_eq!(s.changes_since(0, 10).unwrap().len(), 1);
    assert_eq!(tree(dir.path()), before);
}

#[test]
fn delete_leaves_a_tombstone_and_a_re_create_continues() {
    let dir = TempDir::new().unwrap();
    let s = store(dir.path());
    s.create("models", "orders", json!({"a": 1})).unwrap();
    assert_eq!(s.delete("models", "orders", Precondition::Any).unwrap(), 2);
    let text = std::fs::read_to_string(dir.path().join("models/orders.yaml")).unwrap();
    assert_eq!(split_seal(&text).0, "revision: 2\ndeleted: true\n");
    assert_eq!(s.get("models", "orders").unwrap(), None);
    let record = s.get_record("models", "orders").unwrap().unwrap();
    assert_eq!((record.revision, record.body), (2, None));
    assert!(matches!(
        s.delete("models", "orders", Precondition::Any),
        Err(Error::NotFound { .. })
    ));
    assert_eq!(
        s.create("models", "orders", json!({"b": 2}))
            .unwrap()
            .revision,
        3
    );
    // A reopened handle sees the same state.
    let doc = store(dir.path()).get("models", "orders").unwrap().unwrap();
    assert_eq!(
        (
            doc.revision,
            Value::Object(std::sync::Arc::unwrap_or_clone(doc.body))
        ),
        (3, json!({"b": 2}))
    );
}

#[test]
fn list_is_sorted_and_skips_tombstones_hidden_and_foreign_files() {
    let dir = TempDir::new().unwrap();
    let s = store(dir.path());
    for name in ["c", "a", "b", "B"] {
        s.create("models", name, json!({"n": name})).unwrap();
    }
    s.patch(
        "models",
        "c",
        &Patch::Merge(json!({"x": 1})),
        Precondition::Any,
    )
    .unwrap();
    s.delete("models", "b", Precondition::Any).unwrap();
    let folder = dir.path().join("models");
    std::fs::write(folder.join(".junk.yaml"), "not: [yaml").unwrap();
    std::fs::write(folder.join(".a.yaml.x1y2.tmp"), "revision: 9\n").unwrap();
    std::fs::write(folder.join("notes.txt"), "[[[").unwrap();
    std::fs::write(folder.join("old.yaml.bak"), "{").unwrap();
    std::fs::create_dir(folder.join("sub.yaml")).unwrap();
    // A hand edit in another key order lists through a full decode, as
    // one revision more than it states.
    std::fs::write(
        folder.join("hand.yaml"),
        "# edited\nbody:\n  k: v\nrevision: 4\ndigest: edited\n",
    )
    .unwrap();
    std::fs::write(
        folder.join("gone.yaml"),
        "deleted: true\nrevision: 7\ndigest: x\n",
    )
    .unwrap();
    let entry = |name: &str, revision| Entry {
        name: name.to_owned(),
        revision,
    };
    assert_eq!(
        s.list("models").unwrap(),
        [
            entry("B", 1),
            entry("a", 1),
            entry("c", 2),
            entry("hand", 5)
        ]
    );
    assert_eq!(s.list("missing").unwrap(), []);
}

#[test]
fn list_reports_corrupt_files_by_name() {
    let dir = TempDir::new().unwrap();
    let s = store(dir.path());
    s.create("models", "good", json!({})).unwrap();
    let bad = dir.path().join("models/bad.yaml");
    std::fs::write(&bad, "revision: x\nbody: {}\n").unwrap();
    assert_corrupt_naming(s.list("models"), &bad);
    std::fs::remove_file(&bad).unwrap();
    // A long valid header followed by a broken tail is caught too when the
    // header is not in the written shape.
    let long = dir.path().join("models/long.yaml");
    let text = format!(
        "revision: 2\nbody: {{a: '{}'}}\nbody: {{}}\n",
        "x".repeat(200)
    );
    std::fs::write(&long, text).unwrap();
    assert_corrupt_naming(s.list("models"), &long);
    std::fs::remove_file(&long).unwrap();
    let misnamed = dir.path().join("models/My Model.yaml");
    std::fs::write(&misnamed, "revision: 1\nbody: {}\n").unwrap();
    assert_corrupt_naming(s.list("models"), &misnamed);
}

#[test]
fn a_commit_reports_conflicts_with_what_the_key_holds() {
    let dir = TempDir::new().unwrap();
    let backend = YamlBackend::open(dir.path()).unwrap();
    let key = Key::new("models", "orders").unwrap();
    let b = body(json!({"a": 1}));
    let commit = |expected, body| {
        backend
            .commit(&Commit {
                based_on: None,
                key: &key,
                expected,
                body,
                guard: None,
                kind: ChangeKind::Updated,
            })
            .unwrap()
    };
    assert_eq!(
        commit(1, Some(&b)),
        CommitOutcome::Conflict {
            actual: Current::Missing
        }
    );
    assert_eq!(commit(0, Some(&b)), CommitOutcome::Committed);
    assert_eq!(
        commit(0, Some(&b)),
        CommitOutcome::Conflict {
            actual: Current::Live { revision: 1 }
        }
    );
    assert_eq!(commit(1, None), CommitOutcome::Committed);
    assert_eq!(
        commit(1, Some(&b)),
        CommitOutcome::Conflict {
            actual: Current::Deleted { revision: 2 }
        }
    );
    assert_eq!(commit(2, Some(&b)), CommitOutcome::Committed);
    assert_eq!(backend.read(&key).unwrap().unwrap().revision, 3);
}

#[test]
fn bodies_too_deep_to_read_back_are_refused_before_writing() {
    let dir = TempDir::new().unwrap();
    let options = StoreOptions {
        limits: Limits {
            max_depth: 1_000,
            ..Limits::default()
        },
        ..StoreOptions::default()
    };
    let s = Store::with_options(Arc::new(YamlBackend::open(dir.path()).unwrap()), options);
    let mut v = json!(1);
    for _ in 0..revstore_yaml::MAX_DEPTH {
        v = json!([v]);
    }
    assert!(matches!(
        s.create("models", "deep", json!({ "a": v })),
        Err(Error::InvalidBody { .. })
    ));
    assert!(tree(dir.path()).iter().all(|p| !p.ends_with("deep.yaml")));
}

fn schema_key() -> Key {
    Key::new_reserved("_schema", "models").unwrap()
}

fn guarded_commit(backend: &YamlBackend, key: &Key, expected: u64, guard: u64) -> CommitOutcome {
    let b = body(json!({"v": expected}));
    let schema = schema_key();
    backend
        .commit(&Commit {
            based_on: None,
            key,
            expected,
            body: Some(&b),
            guard: Some(Guard {
                key: &schema,
                revision: guard,
            }),
            kind: ChangeKind::Updated,
        })
        .unwrap()
}

#[test]
fn a_guarded_commit_happens_only_while_the_guard_is_unchanged() {
    let dir = TempDir::new().unwrap();
    let backend = YamlBackend::open(dir.path()).unwrap();
    let key = Key::new("models", "orders").unwrap();
    let schema = schema_key();
    // An absent guard key is revision 0.
    assert_eq!(
        guarded_commit(&backend, &key, 0, 1),
        CommitOutcome::GuardChanged {
            actual: Current::Missing
        }
    );
    assert_eq!(
        guarded_commit(&backend, &key, 0, 0),
        CommitOutcome::Committed
    );

    let schema_body = body(json!({"attributes": []}));
    let write_schema = |expected, body| {
        backend
            .commit(&Commit {
                based_on: None,
                key: &schema,
                expected,
                body,
                guard: None,
                kind: ChangeKind::Updated,
            })
            .unwrap()
    };
    assert_eq!(
        write_schema(0, Some(&schema_body)),
        CommitOutcome::Committed
    );
    assert!(dir.path().join("_schema/models.yaml").is_file());
    assert_eq!(
        guarded_commit(&backend, &key, 1, 0),
        CommitOutcome::GuardChanged {
            actual: Current::Live { revision: 1 }
        }
    );
    assert_eq!(
        guarded_commit(&backend, &key, 1, 1),
        CommitOutcome::Committed
    );
    // The guard is checked last, under the feed lock, once the document's
    // revision has been: a stale expected revision is reported first.
    assert_eq!(
        guarded_commit(&backend, &key, 0, 0),
        CommitOutcome::Conflict {
            actual: Current::Live { revision: 2 }
        }
    );
    assert_eq!(
        guarded_commit(&backend, &key, 0, 1),
        CommitOutcome::Conflict {
            actual: Current::Live { revision: 2 }
        }
    );
    // A deleted guard key counts by its tombstone's revision.
    assert_eq!(write_schema(1, None), CommitOutcome::Committed);
    assert_eq!(
        guarded_commit(&backend, &key, 2, 1),
        CommitOutcome::GuardChanged {
            actual: Current::Deleted { revision: 2 }
        }
    );
    assert_eq!(
        guarded_commit(&backend, &key, 2, 2),
        CommitOutcome::Committed
    );

    // A corrupt guard file stops guarded writes and is left alone.
    let schema_file = dir.path().join("_schema/models.yaml");
    std::fs::write(&schema_file, "revision: [\n").unwrap();
    let b = body(json!({}));
    assert_corrupt_naming(
        backend.commit(&Commit {
            based_on: None,
            key: &key,
            expected: 3,
            body: Some(&b),
            guard: Some(Guard {
                key: &schema,
                revision: 2,
            }),
            kind: ChangeKind::Updated,
        }),
        &schema_file,
    );
    assert_eq!(std::fs::read(&schema_file).unwrap(), b"revision: [\n");
    assert_eq!(backend.read(&key).unwrap().unwrap().revision, 3);
}

/// Runs a guarded commit on another thread and reports whether it finished
/// within `wait`, then lets it finish and returns its outcome.
fn guarded_commit_while(
    dir: &Path,
    hold: impl FnOnce() -> Box<dyn std::any::Any>,
    wait: Duration,
) -> (bool, CommitOutcome) {
    let held = hold();
    let (done_tx, done_rx) = mpsc::channel();
    let root: PathBuf = dir.to_owned();
    let worker = std::thread::spawn(move || {
        let backend = YamlBackend::open(&root).unwrap();
        let key = Key::new("models", "orders").unwrap();
        let current = backend.read(&key).unwrap().map_or(0, |r| r.revision);
        let outcome = guarded_commit(&backend, &key, current, 0);
        done_tx.send(()).unwrap();
        outcome
    });
    let finished_while_held = done_rx.recv_timeout(wait).is_ok();
    drop(held);
    let outcome = worker.join().unwrap();
    (finished_while_held, outcome)
}

fn lock_file(path: &Path, exclusive: bool) -> Box<dyn std::any::Any> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .unwrap();
    if exclusive {
        fs2::FileExt::lock_exclusive(&file).unwrap();
    } else {
        fs2::FileExt::lock_shared(&file).unwrap();
    }
    Box::new(file)
}

/// A guarded commit takes no lock of the guard key (its guard is checked
/// under the feed lock; see `tests/guards.rs`): a write of the guard key
/// holding that lock, before it takes the feed lock, does not hold it up.
#[test]
fn a_guarded_commit_takes_no_lock_of_the_guard_key() {
    let dir = TempDir::new().unwrap();
    YamlBackend::open(dir.path()).unwrap();
    std::fs::create_dir(dir.path().join("_schema")).unwrap();
    let guard_lock = dir.path().join("_schema/.models.lock");
    let (finished, outcome) = guarded_commit_while(
        dir.path(),
        || lock_file(&guard_lock, true),
        Duration::from_secs(30),
    );
    assert!(finished, "a guarded commit waited for the guard key's lock");
    assert_eq!(outcome, CommitOutcome::Committed);
}

#[test]
fn a_commit_waits_for_the_documents_lock() {
    let dir = TempDir::new().unwrap();
    YamlBackend::open(dir.path()).unwrap();
    std::fs::create_dir(dir.path().join("models")).unwrap();
    let lock = dir.path().join("models/.orders.lock");
    let (finished, outcome) = guarded_commit_while(
        dir.path(),
        || lock_file(&lock, true),
        Duration::from_millis(300),
    );
    assert!(
        !finished,
        "a commit ran while another held the document's lock"
    );
    assert_eq!(outcome, CommitOutcome::Committed);
}

/// 8 threads, each with its own backend handle, increment one counter 50
/// times with get → compare-and-swap → retry; no increment may be lost.
fn counter_with_independent_handles(durability: Durability) {
    const THREADS: usize = 8;
    const INCREMENTS: u64 = 50;
    let dir = TempDir::new().unwrap();
    let open = || {
        Store::open(
            YamlBackend::open_with(
                dir.path(),
                YamlOptions {
                    durability,
                    ..YamlOptions::default()
                },
            )
            .unwrap(),
        )
    };
    open().create("counters", "c", json!({"n": 0})).unwrap();
    let barrier = Barrier::new(THREADS);
    std::thread::scope(|scope| {
        for _ in 0..THREADS {
            let s = open();
            let barrier = &barrier;
            scope.spawn(move || {
                barrier.wait();
                for _ in 0..INCREMENTS {
                    loop {
                        let doc = s.get("counters", "c").unwrap().unwrap();
                        let n = doc.body["n"].as_u64().unwrap();
                        match s.replace(
                            "counters",
                            "c",
                            json!({"n": n + 1}),
                            Precondition::Revision(doc.revision),
                        ) {
                            Ok(_) => break,
                            Err(Error::Conflict { .. }) => continue,
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
            });
        }
    });
    let total = THREADS as u64 * INCREMENTS;
    let doc = open().get("counters", "c").unwrap().unwrap();
    assert_eq!(doc.body["n"], json!(total), "increments were lost");
    assert_eq!(doc.revision, total + 1);
    // No temp-file debris is left behind by successful commits.
    assert_eq!(tree(&dir.path().join("counters")), [".c.lock", "c.yaml"]);
}

#[test]
fn concurrent_handles_lose_no_increment_full_durability() {
    counter_with_independent_handles(Durability::Full);
}

#[test]
fn concurrent_handles_lose_no_increment_relaxed_durability() {
    counter_with_independent_handles(Durability::Relaxed);
}

#[test]
fn concurrent_patches_to_different_fields_all_survive() {
    let dir = TempDir::new().unwrap();
    store(dir.path()).create("models", "m", json!({})).unwrap();
    std::thread::scope(|scope| {
        for t in 0..4 {
            let s = store(dir.path());
            scope.spawn(move || {
                for i in 0..10 {
                    s.patch(
                        "models",
                        "m",
                        &Patch::Merge(json!({ format!("t{t}_{i}"): i })),
                        Precondition::Any,
                    )
                    .unwrap();
                }
            });
        }
    });
    let doc = store(dir.path()).get("models", "m").unwrap().unwrap();
    assert_eq!(doc.body.len(), 40);
    assert_eq!(doc.revision, 41);
}

#[test]
fn a_guard_on_the_committed_key_itself_does_not_deadlock() {
    let dir = TempDir::new().unwrap();
    let root = dir.path().to_owned();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let backend = YamlBackend::open(&root).unwrap();
        let key = Key::new_reserved("_schema", "models").unwrap();
        let b = body(json!({}));
        let commit = |expected, guard| Commit {
            based_on: None,
            key: &key,
            expected,
            body: Some(&b),
            guard: Some(Guard {
                key: &key,
                revision: guard,
            }),
            kind: ChangeKind::Updated,
        };
        let outcomes = (
            backend.commit(&commit(0, 0)).unwrap(),
            backend.commit(&commit(1, 0)).unwrap(),
        );
        tx.send(outcomes).unwrap();
    });
    let outcomes = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("deadlocked");
    assert_eq!(
        outcomes,
        (
            CommitOutcome::Committed,
            CommitOutcome::GuardChanged {
                actual: Current::Live { revision: 1 }
            }
        )
    );
}

#[test]
fn the_backend_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<YamlBackend>();
}

/// A handle remembers which collection folders exist, so commits do not
/// try to create them again; one removed by hand since is made again.
#[test]
fn a_collection_folder_removed_by_hand_is_made_again() {
    let dir = TempDir::new().unwrap();
    let s = store(dir.path());
    s.create("c", "a", json!({"v": 1})).unwrap();
    s.set_schema(
        "c",
        json!({"attributes": [{"name": "v", "type": "integer"}]}),
        Precondition::Any,
    )
    .unwrap();
    s.create("c", "b", json!({"v": 2})).unwrap();
    std::fs::remove_dir_all(dir.path().join("c")).unwrap();
    std::fs::remove_dir_all(dir.path().join("_schema")).unwrap();
    assert_eq!(s.get("c", "a").unwrap(), None);
    // Both the document's folder and the schema's (the guard's lock file
    // lives there) are needed again.
    let doc = s.create("c", "a", json!({"v": 3})).unwrap();
    assert_eq!(doc.revision, 1);
    assert_eq!(s.list("c").unwrap().len(), 1);
    s.set_schema("c", json!({"attributes": []}), Precondition::Absent)
        .unwrap();
    let other = store(dir.path());
    assert_eq!(other.get("c", "a").unwrap().unwrap().revision, 1);
}
