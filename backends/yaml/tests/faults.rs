//! Fault injection: every single step of the YAML backend's file
//! operations can fail — creating the staging file, writing, fsync,
//! rename, folder fsync, locks, the feed's append — and each failure is an
//! `Error::Io` naming the path, leaves the previous committed state and the
//! feed intact (or, for the folder fsync after the rename, the new state),
//! leaves no debris, and leaves the store usable.
//!
//! Checked two ways: exhaustively, every step of a create, patch, delete
//! and re-create alone; and from a model, as redb's fuzzer does — random
//! operations with random single-step failures, against the memory
//! backend as the reference, comparing every document, every listing and
//! the whole feed after every step, then again after reopening.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use revstore::testkit::soak_factor;
use revstore::{Change, Document, Error, Key, MemoryBackend, Patch, Precondition, Store};
use revstore_yaml::testkit::faults::{FaultyFs, Fired, OpKind};
use revstore_yaml::testkit::staging_debris as debris;
use revstore_yaml::{RealFs, YamlBackend, YamlOptions};
use serde_json::{json, Value};
use tempfile::TempDir;

const COLLECTIONS: [&str; 2] = ["models", "views"];
const NAMES: [&str; 2] = ["a", "b"];

fn options(retain_changes: u64) -> YamlOptions {
    YamlOptions {
        retain_changes,
        ..YamlOptions::default()
    }
}

fn faulty(root: &Path, retain_changes: u64) -> (Store, Arc<FaultyFs>) {
    let fs = Arc::new(FaultyFs::new(Arc::new(RealFs)).without_real_syncs());
    let backend = YamlBackend::open_with_fs(root, options(retain_changes), fs.clone()).unwrap();
    (Store::open(backend), fs)
}

/// A handle that never fails (and does not fsync), to look at the truth.
fn clean(root: &Path, retain_changes: u64) -> Store {
    faulty(root, retain_changes).0
}

/// The whole feed, however much of it is retained.
fn feed(store: &Store) -> Vec<Change> {
    match store.changes_since(0, usize::MAX) {
        Ok(changes) => changes,
        Err(Error::Compacted { retained_after, .. }) => {
            store.changes_since(retained_after, usize::MAX).unwrap()
        }
        Err(e) => panic!("reading the feed failed: {e}"),
    }
}

/// Asserts the YAML store holds exactly what the model holds: every
/// record, every listing, and the feed (the model's tail as far as the
/// YAML feed retains it).
fn assert_same(yaml: &Store, model: &Store, context: &str) {
    for collection in COLLECTIONS {
        for name in NAMES {
            assert_eq!(
                yaml.get_record(collection, name).unwrap(),
                model.get_record(collection, name).unwrap(),
                "{context}: {collection}/{name} differs"
            );
        }
        assert_eq!(
            yaml.list(collection).unwrap(),
            model.list(collection).unwrap(),
            "{context}: listing {collection} differs"
        );
    }
    let ours = feed(yaml);
    let theirs = model.changes_since(0, usize::MAX).unwrap();
    assert!(
        theirs.ends_with(&ours) && ours.last() == theirs.last(),
        "{context}: feed differs\n  yaml:  {ours:?}\n  model: {theirs:?}"
    );
    assert_eq!(yaml.last_seq().unwrap(), model.last_seq().unwrap());
}

/// One operation of the model test.
#[derive(Debug, Clone)]
enum Op {
    Create(usize, Value),
    Replace(usize, Value, Option<u64>),
    Patch(usize, Value),
    Delete(usize),
    Get(usize),
    List(usize),
}

fn key_of(k: usize) -> (&'static str, &'static str) {
    (COLLECTIONS[k / 2 % 2], NAMES[k % 2])
}

/// What an operation returned, errors by kind.
#[derive(Debug, PartialEq)]
enum Outcome {
    Doc(Option<Document>),
    Revision(u64),
    Names(Vec<revstore::Entry>),
    Failed(&'static str),
}

fn run(store: &Store, op: &Op) -> (Outcome, Option<Error>) {
    let result = match op {
        Op::Create(k, body) => {
            let (c, n) = key_of(*k);
            store
                .create(c, n, body.clone())
                .map(|d| Outcome::Doc(Some(d)))
        }
        Op::Replace(k, body, revision) => {
            let (c, n) = key_of(*k);
            let pre = revision.map_or(Precondition::Any, Precondition::Revision);
            store
                .replace(c, n, body.clone(), pre)
                .map(|d| Outcome::Doc(Some(d)))
        }
        Op::Patch(k, patch) => {
            let (c, n) = key_of(*k);
            store
                .patch(c, n, &Patch::Merge(patch.clone()), Precondition::Any)
                .map(|d| Outcome::Doc(Some(d)))
        }
        Op::Delete(k) => {
            let (c, n) = key_of(*k);
            store.delete(c, n, Precondition::Any).map(Outcome::Revision)
        }
        Op::Get(k) => {
            let (c, n) = key_of(*k);
            store.get(c, n).map(Outcome::Doc)
        }
        Op::List(k) => store.list(COLLECTIONS[k % 2]).map(Outcome::Names),
    };
    match result {
        Ok(outcome) => (outcome, None),
        Err(e) => (Outcome::Failed(e.kind()), Some(e)),
    }
}

/// Checks the error a fired fault caused: an `Error::Io` naming the very
/// path the fault hit.
fn assert_io_naming(error: Option<&Error>, fired: &Fired, context: &str) {
    match error {
        Some(Error::Io { path, op, .. }) => assert_eq!(
            path, &fired.path,
            "{context}: the error of step {op:?} names another path than the fault"
        ),
        other => panic!("{context}: a failed {fired:?} surfaced as {other:?}"),
    }
}

/// Whether a fault can only have happened after the commit's rename: the
/// fsync of the document's folder, which the crate documents as leaving
/// the new state visible.
fn after_rename(fired: &Fired, root: &Path) -> bool {
    fired.kind == OpKind::SyncDir
        && COLLECTIONS
            .iter()
            .chain(&["_schema"])
            .any(|c| fired.path == root.join(c))
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn random_op(rng: &mut Rng, model: &Store) -> Op {
    let k = rng.below(4) as usize;
    let (c, n) = key_of(k);
    let value = json!(rng.below(1000));
    match rng.below(9) {
        0 | 1 => Op::Create(k, json!({ "v": value })),
        2 => Op::Replace(k, json!({ "r": value }), None),
        3 => {
            let current = model.get(c, n).unwrap().map_or(1, |d| d.revision);
            let revision = current.saturating_sub(rng.below(2)).max(1);
            Op::Replace(k, json!({ "cas": value }), Some(revision))
        }
        4 | 5 => Op::Patch(k, json!({ format!("f{}", rng.below(3)): value })),
        6 => Op::Delete(k),
        7 => Op::Get(k),
        _ => Op::List(k),
    }
}

fn model_run(seed: u64, steps: usize, retain_changes: u64) {
    let dir = TempDir::new().unwrap();
    let root = dir.path().join("store");
    let (mut yaml, mut fs) = faulty(&root, retain_changes);
    let model = Store::open(MemoryBackend::new());
    let truth = clean(&root, retain_changes);
    let mut rng = Rng(seed | 1);
    let mut fired_count = 0;
    for step in 0..steps {
        let op = random_op(&mut rng, &model);
        let armed = rng.below(10) < 7;
        if armed {
            // Mostly the steps every commit takes, sometimes any step.
            const COMMIT_STEPS: [OpKind; 9] = [
                OpKind::Read,
                OpKind::Lock,
                OpKind::CreateTemp,
                OpKind::Write,
                OpKind::StartWriteback,
                OpKind::Sync,
                OpKind::Rename,
                OpKind::SyncDir,
                OpKind::OpenAppend,
            ];
            let kind = if rng.below(3) == 0 {
                OpKind::ALL[rng.below(OpKind::ALL.len() as u64) as usize]
            } else {
                COMMIT_STEPS[rng.below(COMMIT_STEPS.len() as u64) as usize]
            };
            match kind {
                // The two fsyncs of a commit run at once on two threads:
                // one is failed by its path, so a seed replays the same.
                OpKind::Sync => {
                    let file = if rng.below(2) == 0 {
                        ".yaml.tmp"
                    } else {
                        "changes/"
                    };
                    fs.fail_on(kind, 1, file);
                }
                _ => fs.fail(kind, 1 + rng.below(2) as usize),
            }
        }
        let (outcome, error) = run(&yaml, &op);
        let fired = fs.disarm();
        let context = format!("seed {seed:#x} step {step}: {op:?}, fault {fired:?}");
        match fired {
            // Failures of leftover clean-up are swallowed (the commit is
            // done), and so are those of the write-back hint (the fsync
            // after it makes the file durable).
            Some(fired)
                if matches!(fired.kind, OpKind::Remove | OpKind::StartWriteback)
                    && error.is_none() =>
            {
                fired_count += 1;
                assert_eq!(outcome, run(&model, &op).0, "{context}");
            }
            Some(fired) => {
                fired_count += 1;
                assert_io_naming(error.as_ref(), &fired, &context);
                if model_snapshot(&truth) != model_snapshot(&model) {
                    assert!(
                        after_rename(&fired, &root),
                        "{context}: the state changed although the commit failed before its rename"
                    );
                    // The commit happened; the model catches up.
                    let (expected, _) = run(&model, &op);
                    assert!(matches!(expected, Outcome::Doc(_) | Outcome::Revision(_)));
                }
            }
            None => assert_eq!(outcome, run(&model, &op).0, "{context}"),
        }
        assert_same(&truth, &model, &context);
        assert_eq!(debris(&root), Vec::<String>::new(), "{context}: debris");
        if rng.below(25) == 0 {
            // A new handle (new file system wrapper too) on the same folder.
            (yaml, fs) = faulty(&root, retain_changes);
        }
    }
    assert!(
        fired_count > steps / 6,
        "only {fired_count} faults fired in {steps} steps"
    );
    // A process restarting on the real file system sees the same.
    let reopened = Store::open(YamlBackend::open_with(&root, options(retain_changes)).unwrap());
    assert_same(
        &reopened,
        &model,
        &format!("seed {seed:#x} after reopening"),
    );
}

/// Every record, as the model's comparison sees them, and the schema of
/// the first collection.
fn model_snapshot(store: &Store) -> Vec<Option<revstore::Record>> {
    let mut out = Vec::new();
    for collection in COLLECTIONS {
        for name in NAMES {
            out.push(store.get_record(collection, name).unwrap());
        }
    }
    let schema = Key::new_reserved("_schema", COLLECTIONS[0]).unwrap();
    out.push(store.backend().read(&schema).unwrap());
    out
}

#[test]
fn random_operations_with_random_single_step_failures_match_the_model() {
    let steps = 600 * soak_factor() as usize;
    for seed in [0x5eed_0001, 0xfa17_0002] {
        model_run(seed, steps, revstore::DEFAULT_RETAINED_CHANGES);
    }
}

#[test]
fn random_failures_while_the_feed_rolls_and_compacts_match_the_model() {
    // Segments of one change: every commit starts a segment and removes
    // old ones, so the roll's folder fsync and the removals are exercised.
    model_run(0xc0_ffee, 400 * soak_factor() as usize, 4);
}

type Step = fn(&Store) -> revstore::Result<()>;

/// The state before one operation: a fresh folder with `setup` applied.
fn prepared(setup: &[Step]) -> (TempDir, PathBuf) {
    let dir = TempDir::new().unwrap();
    let root = dir.path().join("store");
    let store = clean(&root, 4);
    for step in setup {
        step(&store).unwrap();
    }
    (dir, root)
}

fn create(s: &Store) -> revstore::Result<()> {
    s.create("models", "a", json!({"v": 1})).map(drop)
}

fn patch(s: &Store) -> revstore::Result<()> {
    s.patch(
        "models",
        "a",
        &Patch::Merge(json!({"w": 2})),
        Precondition::Any,
    )
    .map(drop)
}

fn delete(s: &Store) -> revstore::Result<()> {
    s.delete("models", "a", Precondition::Any).map(drop)
}

fn recreate(s: &Store) -> revstore::Result<()> {
    s.create("models", "a", json!({"again": true})).map(drop)
}

/// A write of the guard key itself, which takes that key's lock.
fn set_schema(s: &Store) -> revstore::Result<()> {
    let schema = json!({"attributes": [{"name": "after", "type": "integer"}]});
    s.set_schema("models", schema, Precondition::Any).map(drop)
}

#[test]
fn every_step_of_every_commit_can_fail_alone() {
    let scenarios: [(&str, &[Step], Step); 5] = [
        ("create", &[], create),
        ("patch", &[create], patch),
        ("delete", &[create, patch], delete),
        ("re-create", &[create, patch, delete], recreate),
        ("set schema", &[create], set_schema),
    ];
    let mut failures = 0;
    // The faults each scenario hit on the schema key's files: its lock
    // file, and the reads of its document, each with its ordinal.
    let mut schema_lock_faults = BTreeSet::new();
    let mut schema_read_faults = BTreeSet::new();
    for (name, setup, op) in scenarios {
        for kind in OpKind::ALL {
            for nth in 1.. {
                let (_dir, root) = prepared(setup);
                let truth = clean(&root, 4);
                let before = model_snapshot(&truth);
                let feed_before = feed(&truth);
                let (store, fs) = faulty(&root, 4);
                fs.fail(kind, nth);
                let result = op(&store);
                let Some(fired) = fs.disarm() else {
                    result.unwrap_or_else(|e| panic!("{name}: failed without a fault: {e}"));
                    break;
                };
                let context = format!("{name}, {kind:?} #{nth} on {}", fired.path.display());
                let schema_dir = root.join("_schema");
                if fired.path == schema_dir.join(".models.lock") {
                    schema_lock_faults.insert((name, fired.kind));
                }
                if fired.path == schema_dir.join("models.yaml") && fired.kind == OpKind::Read {
                    schema_read_faults.insert((name, nth));
                }
                let after = model_snapshot(&truth);
                match result {
                    // Removing an old feed segment failed: the commit is
                    // done, the segment is left for the next compaction.
                    // Or the write-back hint failed, which the fsync after
                    // it makes up for.
                    Ok(()) => {
                        assert!(
                            matches!(fired.kind, OpKind::Remove | OpKind::StartWriteback),
                            "{context}: a false success"
                        );
                        assert_ne!(after, before, "{context}");
                    }
                    Err(error) => {
                        failures += 1;
                        assert_io_naming(Some(&error), &fired, &context);
                        if after == before {
                            assert_eq!(feed(&truth), feed_before, "{context}: the feed changed");
                        } else {
                            assert!(after_rename(&fired, &root), "{context}: changed state");
                            assert_eq!(feed(&truth).len(), feed_before.len() + 1, "{context}");
                        }
                    }
                }
                assert_eq!(debris(&root), Vec::<String>::new(), "{context}: debris");
                // The same handle is usable at once.
                let doc = store
                    .replace("models", "a", json!({"after": nth}), Precondition::Any)
                    .unwrap_or_else(|e| panic!("{context}: not usable afterwards: {e}"));
                let last = feed(&truth).last().cloned().unwrap();
                assert_eq!(
                    (last.key.name(), last.revision),
                    ("a", doc.revision),
                    "{context}"
                );
            }
        }
    }
    assert!(failures > 40, "only {failures} failures injected");
    // Guarded writers (every document write) never lock the guard key;
    // its writer does, and can fail opening or locking it.
    for kind in [OpKind::OpenLock, OpKind::Lock] {
        assert!(
            schema_lock_faults.contains(&("set schema", kind)),
            "set schema: no {kind:?} fault on the schema key's lock ({schema_lock_faults:?})"
        );
    }
    assert!(
        schema_lock_faults
            .iter()
            .all(|(name, _)| *name == "set schema"),
        "a guarded write locked the guard key: {schema_lock_faults:?}"
    );
    // Each guarded write reads the guard key twice, and either read can
    // fail: the engine's, and the backend's check under the feed lock,
    // which must leave no staging file and no line behind (checked above).
    for name in ["create", "patch", "delete", "re-create"] {
        let reads = schema_read_faults
            .iter()
            .filter(|(n, _)| *n == name)
            .count();
        assert!(
            reads >= 2,
            "{name}: {reads} failed reads of the guard key ({schema_read_faults:?})"
        );
    }
}

#[test]
fn each_failed_step_is_an_io_error_naming_its_file() {
    // Which call of its kind the fault hits: a commit locks, in order, the
    // document and the feed; it reads the schema key (the engine), the
    // document (the engine, then the backend under its lock), the feed's
    // newest segment, then the schema key again: the guard check, under the
    // feed lock. Its two fsyncs, the staging file's (on the handle's
    // helper thread) and the segment's, run at once: each is failed by
    // its path.
    let steps: [(OpKind, usize, Option<&str>, &str, &str); 13] = [
        (
            OpKind::CreateTemp,
            1,
            None,
            "create temp file",
            "models/.a.yaml.tmp",
        ),
        (OpKind::Write, 1, None, "write", "models/.a.yaml.tmp"),
        (
            OpKind::Sync,
            1,
            Some(".a.yaml.tmp"),
            "fsync",
            "models/.a.yaml.tmp",
        ),
        (
            OpKind::Sync,
            1,
            Some("changes/"),
            "fsync",
            ".revstore/changes/",
        ),
        (OpKind::Rename, 1, None, "rename", "models/a.yaml"),
        (
            OpKind::OpenLock,
            1,
            None,
            "open lock file",
            "models/.a.lock",
        ),
        (OpKind::Lock, 1, None, "lock", "models/.a.lock"),
        (OpKind::Lock, 2, None, "lock", ".revstore/changes.lock"),
        (
            OpKind::OpenLock,
            2,
            None,
            "open lock file",
            ".revstore/changes.lock",
        ),
        (
            OpKind::OpenAppend,
            1,
            None,
            "open for append",
            ".revstore/changes/",
        ),
        (OpKind::Read, 2, None, "read", "models/a.yaml"),
        (OpKind::Read, 5, None, "read", "_schema/models.yaml"),
        (OpKind::SyncDir, 1, None, "fsync folder", ""),
    ];
    for (kind, nth, path_part, op_name, file) in steps {
        let (_dir, root) = prepared(&[create]);
        let (store, fs) = faulty(&root, 4);
        // Looked at through a handle of its own, so the one under test
        // reads (and counts) exactly as before.
        let truth = clean(&root, 4);
        let feed_before = feed(&truth);
        let doc_before = truth.get("models", "a").unwrap();
        match path_part {
            Some(part) => fs.fail_on(kind, nth, part),
            None => fs.fail(kind, nth),
        }
        let error = store
            .patch(
                "models",
                "a",
                &Patch::Merge(json!({"x": 1})),
                Precondition::Any,
            )
            .expect_err(&format!("{kind:?} #{nth} {path_part:?}"));
        let fired = fs.disarm().unwrap();
        match &error {
            Error::Io { op, path, .. } => {
                assert_eq!(*op, op_name, "{kind:?}");
                assert_eq!(path, &fired.path, "{kind:?}");
                let relative = path.strip_prefix(&root).unwrap().display().to_string();
                assert!(relative.starts_with(file), "{kind:?}: {relative}");
            }
            other => panic!("{kind:?}: {other:?}"),
        }
        let message = error.to_string();
        assert!(
            message.contains(&fired.path.display().to_string()),
            "{message}"
        );
        assert!(message.contains("injected fault"), "{message}");
        // Every step but the folder's fsync (after the rename) fails the
        // commit whole: no new line, the document as it was, no debris.
        if kind != OpKind::SyncDir {
            assert_eq!(feed(&truth), feed_before, "{kind:?} {path_part:?}");
            assert_eq!(truth.get("models", "a").unwrap(), doc_before, "{kind:?}");
        }
        assert_eq!(
            debris(&root),
            Vec::<String>::new(),
            "{kind:?} {path_part:?}"
        );
    }
}

#[test]
fn a_failed_write_back_hint_is_ignored_and_the_commit_still_fsyncs() {
    let (_dir, root) = prepared(&[create]);
    let (store, fs) = faulty(&root, 4);
    let syncs_before = fs.calls(OpKind::Sync);
    fs.fail(OpKind::StartWriteback, 1);
    let doc = store
        .patch(
            "models",
            "a",
            &Patch::Merge(json!({"x": 1})),
            Precondition::Any,
        )
        .unwrap();
    assert_eq!(fs.disarm().map(|f| f.kind), Some(OpKind::StartWriteback));
    assert_eq!(doc.body["x"], 1);
    // The staging file's fsync and the segment's.
    assert_eq!(fs.calls(OpKind::Sync) - syncs_before, 2);
}

#[test]
fn a_failed_open_is_an_io_error_and_a_retry_succeeds() {
    for kind in [OpKind::IsDir, OpKind::CreateDir, OpKind::SyncDir] {
        let dir = TempDir::new().unwrap();
        let root = dir.path().join("a/b");
        let fs = Arc::new(FaultyFs::new(Arc::new(RealFs)).without_real_syncs());
        fs.fail(kind, 1);
        let error =
            YamlBackend::open_with_fs(&root, YamlOptions::default(), fs.clone()).unwrap_err();
        let fired = fs.disarm().unwrap();
        match error {
            Error::Io { path, .. } => assert_eq!(path, fired.path, "{kind:?}"),
            other => panic!("{kind:?}: {other:?}"),
        }
        let store =
            Store::open(YamlBackend::open_with_fs(&root, YamlOptions::default(), fs).unwrap());
        store.create("models", "a", json!({})).unwrap();
    }
}
