//! Crash debris: what a writer killed mid-commit (or a commit whose
//! clean-up failed too) leaves behind never stops a fresh handle, which
//! reads and writes at once, and never piles up — each document has one
//! staging file at most, replaced by its next commit under its lock.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use revstore::{Error, Patch, Precondition, Store};
use revstore_yaml::testkit::faults::{FaultyFs, OpKind};
use revstore_yaml::testkit::staging_debris as debris;
use revstore_yaml::{RealFs, YamlBackend, YamlOptions};
use serde_json::json;
use tempfile::TempDir;

fn store(dir: &Path) -> Store {
    Store::open(YamlBackend::open(dir).unwrap())
}

fn staging(root: &Path, collection: &str, name: &str) -> PathBuf {
    root.join(collection).join(format!(".{name}.yaml.tmp"))
}

fn newest_segment(root: &Path) -> PathBuf {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(root.join(".revstore/changes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segments.sort();
    segments.pop().unwrap()
}

/// Leaves what a writer of `collection/name` killed at the worst moments
/// would: a half-written staging file and a torn feed line.
fn crash_mid_commit(root: &Path, collection: &str, name: &str, garbage: &[u8]) {
    std::fs::create_dir_all(root.join(collection)).unwrap();
    std::fs::write(staging(root, collection, name), garbage).unwrap();
    let mut segment = std::fs::OpenOptions::new()
        .append(true)
        .open(newest_segment(root))
        .unwrap();
    segment.write_all(b"{\"seq\":99,\"collec").unwrap();
}

#[test]
fn a_fresh_handle_reads_and_writes_at_once_after_a_crash() {
    let dir = TempDir::new().unwrap();
    let root = dir.path();
    let s = store(root);
    s.create("models", "a", json!({"v": 1})).unwrap();
    s.create("models", "b", json!({"v": 1})).unwrap();
    // Killed while writing a, and while creating c (never committed).
    crash_mid_commit(root, "models", "a", b"revision: 2\nbody:\n  v: ");
    crash_mid_commit(root, "models", "c", b"\0\0\0\0");
    assert_eq!(debris(root), ["models/.a.yaml.tmp", "models/.c.yaml.tmp"]);

    let fresh = store(root);
    // Reads: the committed states; debris is invisible.
    assert_eq!(fresh.get("models", "a").unwrap().unwrap().revision, 1);
    assert_eq!(fresh.get("models", "c").unwrap(), None);
    let names: Vec<String> = fresh
        .list("models")
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(fresh.last_seq().unwrap(), 2);
    assert_eq!(fresh.changes_since(0, 10).unwrap().len(), 2);
    // Writes: at once, no stale lock; each commit clears its document's
    // debris and the torn line.
    let a = fresh
        .patch(
            "models",
            "a",
            &Patch::Merge(json!({"w": 2})),
            Precondition::Any,
        )
        .unwrap();
    assert_eq!(a.revision, 2);
    assert_eq!(debris(root), ["models/.c.yaml.tmp"]);
    let c = fresh.create("models", "c", json!({"new": true})).unwrap();
    assert_eq!(c.revision, 1);
    assert_eq!(debris(root), Vec::<String>::new());
    let seqs: Vec<u64> = fresh
        .changes_since(0, 10)
        .unwrap()
        .iter()
        .map(|c| c.seq)
        .collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
}

#[test]
fn debris_never_piles_up_across_crashes() {
    let dir = TempDir::new().unwrap();
    let root = dir.path();
    store(root).create("models", "a", json!({})).unwrap();
    for crash in 0..20u8 {
        crash_mid_commit(root, "models", "a", &[b'x'; 10][..usize::from(crash % 10)]);
        // However many crashes, one staging file per document.
        assert_eq!(debris(root), ["models/.a.yaml.tmp"]);
        // Every other time a new process commits in between.
        if crash % 2 == 0 {
            store(root)
                .replace("models", "a", json!({ "crash": crash }), Precondition::Any)
                .unwrap();
            assert_eq!(debris(root), Vec::<String>::new());
        }
    }
}

#[test]
fn debris_of_a_commit_whose_clean_up_failed_is_replaced_by_the_next_one() {
    let dir = TempDir::new().unwrap();
    let root = dir.path();
    let fs = Arc::new(FaultyFs::new(Arc::new(RealFs)).without_real_syncs());
    let s =
        Store::open(YamlBackend::open_with_fs(root, YamlOptions::default(), fs.clone()).unwrap());
    s.create("models", "a", json!({"v": 1})).unwrap();
    // The rename fails, and so does removing the staging file after it.
    fs.fail(OpKind::Rename, 1);
    fs.also_fail(OpKind::Remove, 1);
    let error = s
        .replace("models", "a", json!({"v": 2}), Precondition::Any)
        .unwrap_err();
    assert!(matches!(error, Error::Io { op: "rename", .. }), "{error:?}");
    assert_eq!(fs.disarm().unwrap().kind, OpKind::Rename);
    assert_eq!(debris(root), ["models/.a.yaml.tmp"]);
    // Nothing changed, and the feed line was taken back.
    assert_eq!(s.get("models", "a").unwrap().unwrap().revision, 1);
    assert_eq!(s.last_seq().unwrap(), 1);
    // The next commit replaces the debris.
    let doc = s
        .replace("models", "a", json!({"v": 3}), Precondition::Any)
        .unwrap();
    assert_eq!(doc.revision, 2);
    assert_eq!(debris(root), Vec::<String>::new());
    assert_eq!(s.last_seq().unwrap(), 2);
}

#[test]
fn a_staging_file_that_cannot_be_replaced_is_an_io_error_naming_it() {
    let dir = TempDir::new().unwrap();
    let root = dir.path();
    let s = store(root);
    s.create("models", "a", json!({"v": 1})).unwrap();
    // Something that is not debris a file removal can clear: a folder.
    let blocker = staging(root, "models", "a");
    std::fs::create_dir(&blocker).unwrap();
    match s.replace("models", "a", json!({"v": 2}), Precondition::Any) {
        Err(Error::Io { path, .. }) => assert_eq!(path, blocker),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.get("models", "a").unwrap().unwrap().revision, 1);
    std::fs::remove_dir(&blocker).unwrap();
    s.replace("models", "a", json!({"v": 2}), Precondition::Any)
        .unwrap();
}
