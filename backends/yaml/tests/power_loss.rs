//! Simulated power loss. A SIGKILL keeps the page cache, so it cannot test
//! fsync ordering; instead every file operation of a run of commits is
//! recorded, and for every point of the run the states a power loss could
//! leave are enumerated (un-synced data lost, kept, cut short or zeroed;
//! un-synced folder changes kept up to any point; see
//! `revstore_yaml::testkit::power`). Each state is written to a fresh
//! folder and opened with a new handle, which must find what the crate
//! docs promise for the durability level, and must then be able to write.
//!
//! Full durability: every document is a committed state no older than its
//! last acknowledged commit; the feed holds exactly the commits up to the
//! last acknowledged one, plus perhaps the one in flight, and every
//! revision a document holds. Relaxed: every document is a committed state
//! (any age), absent, a hand-edit reading of a file cut inside its seal, or
//! `Corrupt` naming it; the feed reads or is `Corrupt`; every readable
//! document can be written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use revstore::testkit::soak_factor;
use revstore::{Body, Change, ChangeKind, Durability, Error, Patch, Precondition, Record, Store};
use revstore_yaml::testkit::faults::FaultyFs;
use revstore_yaml::testkit::power::{PowerLoss, RecordingFs};
use revstore_yaml::{RealFs, YamlBackend, YamlOptions};
use serde_json::json;
use tempfile::TempDir;

/// The keys the runs write; `views/c` also creates a second collection.
const KEYS: [(&str, &str); 3] = [("models", "a"), ("models", "b"), ("views", "c")];

/// One write of a recorded run.
#[derive(Debug, Clone, Copy)]
enum Action {
    Create(usize),
    Patch(usize),
    Delete(usize),
}

/// A create, patch, delete and re-create sequence over three keys in two
/// collections.
const RUN: [Action; 9] = [
    Action::Create(0),
    Action::Patch(0),
    Action::Create(1),
    Action::Delete(0),
    Action::Create(0),
    Action::Create(2),
    Action::Patch(1),
    Action::Delete(2),
    Action::Patch(0),
];

/// A commit of the recorded run: what it wrote, and where its operations
/// start and end in the record (it was acknowledged at `end`).
#[derive(Debug, Clone)]
struct Written {
    key: usize,
    revision: u64,
    body: Option<std::sync::Arc<Body>>,
    kind: ChangeKind,
    start: usize,
    end: usize,
}

fn options(durability: Durability, retain_changes: u64) -> YamlOptions {
    YamlOptions {
        durability,
        retain_changes,
    }
}

/// Fast scratch space: states are many and small.
fn scratch() -> TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::Builder::new()
            .prefix("revstore-power-")
            .tempdir_in(shm)
        {
            return dir;
        }
    }
    TempDir::new().unwrap()
}

/// Runs [`RUN`] on a recording file system; returns the base folder (the
/// store is its `store` sub-folder), the record and the commits.
fn record(durability: Durability, retain: u64) -> (TempDir, PowerLoss, Vec<Written>) {
    let base = scratch();
    // Slow file fsyncs: a commit must wait for the staging file's, made
    // on a helper thread, before it renames; one that did not would show
    // its rename first in the record.
    let recorder = Arc::new(
        RecordingFs::new(Arc::new(RealFs))
            .without_real_syncs()
            .with_slow_file_syncs(std::time::Duration::from_micros(300)),
    );
    let root = base.path().join("store");
    let store = Store::open(
        YamlBackend::open_with_fs(&root, options(durability, retain), recorder.clone()).unwrap(),
    );
    let mut written = Vec::new();
    for (i, action) in RUN.iter().enumerate() {
        let start = recorder.len();
        let (key, revision, body, kind) = match *action {
            Action::Create(k) => {
                let (c, n) = KEYS[k];
                let doc = store.create(c, n, json!({ "step": i })).unwrap();
                (k, doc.revision, Some(doc.body), ChangeKind::Created)
            }
            Action::Patch(k) => {
                let (c, n) = KEYS[k];
                let doc = store
                    .patch(
                        c,
                        n,
                        &Patch::Merge(json!({ format!("p{i}"): i })),
                        Precondition::Any,
                    )
                    .unwrap();
                (k, doc.revision, Some(doc.body), ChangeKind::Updated)
            }
            Action::Delete(k) => {
                let (c, n) = KEYS[k];
                let revision = store.delete(c, n, Precondition::Any).unwrap();
                (k, revision, None, ChangeKind::Deleted)
            }
        };
        written.push(Written {
            key,
            revision,
            body,
            kind,
            start,
            end: recorder.len(),
        });
    }
    let loss = PowerLoss::new(base.path(), recorder.ops());
    (base, loss, written)
}

fn open(root: &Path, durability: Durability, retain: u64) -> Store {
    let fs = Arc::new(FaultyFs::new(Arc::new(RealFs)).without_real_syncs());
    Store::open(YamlBackend::open_with_fs(root, options(durability, retain), fs).unwrap())
}

/// The retained feed, or the error reading it.
fn feed(store: &Store) -> revstore::Result<Vec<Change>> {
    match store.changes_since(0, usize::MAX) {
        Err(Error::Compacted { retained_after, .. }) => {
            store.changes_since(retained_after, usize::MAX)
        }
        other => other,
    }
}

fn staging_file(root: &Path, key: usize) -> PathBuf {
    let (c, n) = KEYS[key];
    root.join(c).join(format!(".{n}.yaml.tmp"))
}

/// Checks one state a power loss after `point` operations left in `root`.
fn check_state(
    root: &Path,
    durability: Durability,
    retain: u64,
    written: &[Written],
    point: usize,
    context: &str,
) {
    let full = durability == Durability::Full;
    let store = open(root, durability, retain);
    let started = written.iter().filter(|w| w.start < point).count();
    let acked = written.iter().filter(|w| w.end <= point).count();
    let mut corrupt = vec![false; KEYS.len()];
    let mut held = vec![0u64; KEYS.len()];
    for (k, (c, n)) in KEYS.iter().enumerate() {
        let history: Vec<&Written> = written[..started].iter().filter(|w| w.key == k).collect();
        let floor = written[..acked]
            .iter()
            .filter(|w| w.key == k)
            .map(|w| w.revision)
            .max()
            .unwrap_or(0);
        let find = |revision: u64| history.iter().find(|w| w.revision == revision);
        match store.get_record(c, n) {
            Ok(None) => assert!(
                !full || floor == 0,
                "{context}: {c}/{n} is gone, but revision {floor} was acknowledged"
            ),
            Ok(Some(Record { revision, body })) => {
                if let Some(w) = find(revision) {
                    assert_eq!(
                        body, w.body,
                        "{context}: {c}/{n} r{revision} has another body"
                    );
                    assert!(
                        !full || revision >= floor,
                        "{context}: {c}/{n} is back at r{revision}, r{floor} was acknowledged"
                    );
                    held[k] = revision;
                } else {
                    // Relaxed only: a file cut inside its seal line keeps its
                    // whole content and reads as a hand edit of it.
                    let edited = find(revision - 1).filter(|w| w.body == body);
                    assert!(
                        !full && edited.is_some(),
                        "{context}: {c}/{n} holds r{revision} {body:?}, never written"
                    );
                }
            }
            Err(Error::Corrupt { location, .. }) if !full => {
                assert_eq!(
                    location,
                    root.join(c).join(format!("{n}.yaml")).display().to_string()
                );
                corrupt[k] = true;
            }
            Err(e) => panic!("{context}: reading {c}/{n} failed: {e}"),
        }
    }

    match feed(&store) {
        Ok(changes) => {
            for change in &changes {
                let w = usize::try_from(change.seq)
                    .ok()
                    .and_then(|seq| written.get(seq - 1))
                    .unwrap_or_else(|| panic!("{context}: unknown change {change:?}"));
                assert!(
                    change.seq as usize <= started,
                    "{context}: a change of a commit not yet begun: {change:?}"
                );
                let (c, n) = KEYS[w.key];
                assert_eq!(
                    (
                        change.key.collection(),
                        change.key.name(),
                        change.revision,
                        change.kind
                    ),
                    (c, n, w.revision, w.kind),
                    "{context}: change {} is not commit {}",
                    change.seq,
                    change.seq
                );
            }
            if full {
                let last = store.last_seq().unwrap() as usize;
                assert!(
                    (acked..=started).contains(&last),
                    "{context}: the feed ends at seq {last}, {acked} acknowledged, {started} begun"
                );
                // Every revision a document holds has its line.
                for (k, &revision) in held.iter().enumerate() {
                    if let Some(seq) = written
                        .iter()
                        .position(|w| w.key == k && w.revision == revision)
                    {
                        assert!(seq < last, "{context}: r{revision} of key {k} has no line");
                    }
                }
            }
        }
        Err(Error::Corrupt { .. }) if !full => {}
        Err(e) => panic!("{context}: reading the feed failed: {e}"),
    }

    // A new handle writes at once, and replaces any staging file left.
    for (k, (c, n)) in KEYS.iter().enumerate() {
        let path = root.join(c).join(format!("{n}.yaml"));
        if corrupt[k] {
            let before = std::fs::read(&path).unwrap();
            let result = store.replace(c, n, json!({}), Precondition::Any);
            assert!(
                matches!(result, Err(Error::Corrupt { .. })),
                "{context}: {result:?}"
            );
            assert_eq!(
                std::fs::read(&path).unwrap(),
                before,
                "{context}: bytes changed"
            );
            continue;
        }
        let current = store.get_record(c, n).unwrap().map_or(0, |r| r.revision);
        let doc = store
            .replace(c, n, json!({ "after": point }), Precondition::Any)
            .unwrap_or_else(|e| panic!("{context}: writing {c}/{n} after the power loss: {e}"));
        assert_eq!(doc.revision, current + 1, "{context}");
        assert!(
            !staging_file(root, k).exists(),
            "{context}: debris of {c}/{n} left"
        );
        if full {
            let last = feed(&store).unwrap().pop().unwrap();
            assert_eq!(
                (last.key.collection(), last.key.name(), last.revision),
                (*c, *n, doc.revision),
                "{context}"
            );
        }
    }
}

/// A state, readable in a failure message.
fn describe(state: &revstore_yaml::testkit::power::CrashState) -> String {
    let files: Vec<String> = state
        .files
        .iter()
        .map(|(path, bytes)| format!("{}: {:?}", path.display(), String::from_utf8_lossy(bytes)))
        .collect();
    format!("files {files:#?}, folders {:?}", state.dirs)
}

fn power_loss_run(durability: Durability, retain: u64, states_per_point: usize) {
    let (_base, loss, written) = record(durability, retain);
    let scratch = scratch();
    let mut checked = 0;
    let mut by_point = BTreeMap::new();
    for point in 0..=loss.len() {
        let states = loss.states(point, states_per_point, 0x9e37_79b9 ^ point as u64);
        by_point.insert(point, states.len());
        for (i, state) in states.iter().enumerate() {
            let dest = scratch.path().join(format!("{point}-{i}"));
            std::fs::create_dir(&dest).unwrap();
            state.materialize(&dest).unwrap();
            let context = format!(
                "{durability:?}, retain {retain}, power loss after op {point}, state {i}: {}",
                describe(state)
            );
            check_state(
                &dest.join("store"),
                durability,
                retain,
                &written,
                point,
                &context,
            );
            std::fs::remove_dir_all(&dest).unwrap();
            checked += 1;
        }
    }
    // Something was left to choose at most points.
    let branching = by_point.values().filter(|&&n| n > 1).count();
    assert!(
        branching * 2 > by_point.len(),
        "only {branching} of {} crash points had more than one state",
        by_point.len()
    );
    assert!(checked > loss.len() * 2, "{checked} states checked");
}

#[test]
fn full_durability_keeps_every_acknowledged_commit() {
    power_loss_run(Durability::Full, 1_000_000, 24 * soak_factor() as usize);
}

#[test]
fn full_durability_keeps_every_acknowledged_commit_while_the_feed_rolls() {
    // Segments of one change: every commit starts a segment (fsyncing its
    // folder) and removes old ones.
    power_loss_run(Durability::Full, 4, 24 * soak_factor() as usize);
}

#[test]
fn relaxed_durability_keeps_what_its_docs_promise() {
    power_loss_run(Durability::Relaxed, 1_000_000, 24 * soak_factor() as usize);
}

#[test]
fn relaxed_durability_keeps_what_its_docs_promise_while_the_feed_rolls() {
    power_loss_run(Durability::Relaxed, 4, 24 * soak_factor() as usize);
}

#[test]
fn a_power_loss_without_fsync_would_be_caught() {
    // Check the checker: the same run written without any fsync, judged
    // by the promises of full durability, must fail somewhere.
    let (_base, loss, written) = record(Durability::Relaxed, 1_000_000);
    let scratch = scratch();
    let caught = (0..=loss.len()).any(|point| {
        loss.states(point, 8, point as u64).iter().any(|state| {
            let dest = scratch.path().join(format!("{point}"));
            let _ = std::fs::remove_dir_all(&dest);
            std::fs::create_dir(&dest).unwrap();
            state.materialize(&dest).unwrap();
            let root = dest.join("store");
            std::panic::catch_unwind(|| {
                check_state(&root, Durability::Full, 1_000_000, &written, point, "")
            })
            .is_err()
        })
    });
    assert!(caught, "losing un-synced writes went unnoticed");
}

/// Lock files (`.lock`) are created without an fsync: losing one is
/// harmless, the next lock makes it again.
#[test]
fn after_the_last_acknowledgement_only_lock_files_may_vary() {
    let (_base, loss, _) = record(Durability::Full, 1_000_000);
    let states = loss.states(loss.len(), 16, 1);
    let data = |state: &revstore_yaml::testkit::power::CrashState| {
        state
            .files
            .iter()
            .filter(|(path, _)| path.extension().is_none_or(|e| e != "lock"))
            .map(|(path, bytes)| (path.clone(), bytes.clone()))
            .collect::<BTreeMap<_, _>>()
    };
    let first = data(&states[0]);
    for (c, n) in KEYS {
        let path = PathBuf::from(format!("store/{c}/{n}.yaml"));
        assert!(first.contains_key(&path), "{}", path.display());
    }
    for state in &states {
        assert_eq!(data(state), first);
    }
}
