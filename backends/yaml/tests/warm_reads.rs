//! Warm reads: a handle keeps the records it decoded (or wrote), each
//! valid only for the exact bytes it came from, so a repeated read of an
//! unchanged file skips parsing. Any change to the file's bytes is seen by
//! the very next read, whoever made it and however little time, size or
//! revision it changed; and the cache stays within its bound.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::SystemTime;

use revstore::{Error, Patch, Precondition, Store, StoreOptions};
use revstore_yaml::YamlBackend;
use serde_json::{json, Value};
use tempfile::TempDir;

fn store(dir: &Path) -> Store {
    Store::open(YamlBackend::open(dir).unwrap())
}

fn file(dir: &Path, collection: &str, name: &str) -> PathBuf {
    dir.join(collection).join(format!("{name}.yaml"))
}

fn read(s: &Store, name: &str) -> Option<(u64, Value)> {
    s.get("c", name).unwrap().map(|doc| {
        (
            doc.revision,
            Value::Object(std::sync::Arc::unwrap_or_clone(doc.body)),
        )
    })
}

/// Sets a file's modification time back to `mtime`, as a file system
/// with coarse timestamps would leave it after a quick rewrite.
fn set_mtime(path: &Path, mtime: SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
}

fn mtime(path: &Path) -> SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

#[test]
fn an_edit_in_place_of_the_same_size_and_time_is_seen_at_once() {
    let dir = TempDir::new().unwrap();
    let s = store(dir.path());
    s.create("c", "a", json!({"v": 1})).unwrap();
    // Warm: read after the handle's own write, and again.
    assert_eq!(read(&s, "a"), Some((1, json!({"v": 1}))));
    assert_eq!(read(&s, "a"), Some((1, json!({"v": 1}))));

    let path = file(dir.path(), "c", "a");
    let (before, when) = (std::fs::read(&path).unwrap(), mtime(&path));
    let text = String::from_utf8(before.clone()).unwrap();
    // Rewritten in place (same inode), same length, same timestamp.
    std::fs::write(&path, text.replacen("v: 1", "v: 2", 1)).unwrap();
    set_mtime(&path, when);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), before.len() as u64);
    // A hand edit: one revision more than the file states.
    assert_eq!(read(&s, "a"), Some((2, json!({"v": 2}))));

    // Bytes that no longer parse are reported, never hidden by the cache.
    std::fs::write(&path, vec![b'['; before.len()]).unwrap();
    set_mtime(&path, when);
    assert!(matches!(s.get("c", "a"), Err(Error::Corrupt { .. })));
    // Restored byte for byte: the first record again.
    std::fs::write(&path, &before).unwrap();
    assert_eq!(read(&s, "a"), Some((1, json!({"v": 1}))));
    // Removed by hand: gone.
    std::fs::remove_file(&path).unwrap();
    assert_eq!(read(&s, "a"), None);
}

#[test]
fn a_replacement_with_the_same_revision_size_and_time_is_seen() {
    let dir = TempDir::new().unwrap();
    let other = TempDir::new().unwrap();
    let s = store(dir.path());
    s.create("c", "a", json!({"v": 1})).unwrap();
    assert_eq!(read(&s, "a"), Some((1, json!({"v": 1}))));
    // A file revstore wrote for the same key elsewhere: revision 1 too,
    // properly sealed, as long, but another body.
    store(other.path())
        .create("c", "a", json!({"v": 2}))
        .unwrap();
    let path = file(dir.path(), "c", "a");
    let replacement = file(other.path(), "c", "a");
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        std::fs::metadata(&replacement).unwrap().len()
    );
    set_mtime(&replacement, mtime(&path));
    // Moved into place the way revstore itself replaces files.
    let staged = dir.path().join("c").join(".a.yaml.moved");
    std::fs::copy(&replacement, &staged).unwrap();
    set_mtime(&staged, mtime(&path));
    std::fs::rename(&staged, &path).unwrap();
    assert_eq!(read(&s, "a"), Some((1, json!({"v": 2}))));
    // A conditional write on that revision applies to the new body.
    let doc = s
        .patch(
            "c",
            "a",
            &Patch::Merge(json!({"w": 3})),
            Precondition::Revision(1),
        )
        .unwrap();
    assert_eq!(
        Value::Object(std::sync::Arc::unwrap_or_clone(doc.body)),
        json!({"v": 2, "w": 3})
    );
}

#[test]
fn writes_by_another_handle_are_seen_by_a_warm_one() {
    let dir = TempDir::new().unwrap();
    let (a, b) = (store(dir.path()), store(dir.path()));
    a.create("c", "k", json!({"n": 0})).unwrap();
    for i in 1..=20 {
        // Both handles warm on the current bytes; the writer alternates.
        let (writer, reader) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        assert_eq!(read(reader, "k"), Some((i, json!({"n": i - 1}))));
        writer
            .patch("c", "k", &Patch::Merge(json!({"n": i})), Precondition::Any)
            .unwrap();
        assert_eq!(read(reader, "k"), Some((i + 1, json!({"n": i}))));
        assert_eq!(read(writer, "k"), Some((i + 1, json!({"n": i}))));
    }
    // A delete and a re-create by one handle; the other sees both.
    a.delete("c", "k", Precondition::Any).unwrap();
    assert_eq!(read(&b, "k"), None);
    a.create("c", "k", json!({"again": true})).unwrap();
    assert_eq!(read(&b, "k"), Some((23, json!({"again": true}))));
}

/// Set in the child process of the test below: the store to write to.
const CHILD_ENV: &str = "REVSTORE_YAML_WARM_READS_CHILD";

#[test]
fn writes_by_another_process_are_seen_by_a_warm_handle() {
    if let Some(root) = std::env::var_os(CHILD_ENV) {
        store(Path::new(&root))
            .patch(
                "c",
                "k",
                &Patch::Merge(json!({"by": "child"})),
                Precondition::Any,
            )
            .unwrap();
        return;
    }
    let dir = TempDir::new().unwrap();
    let s = store(dir.path());
    s.create("c", "k", json!({"by": "parent"})).unwrap();
    for round in 0..3u64 {
        assert_eq!(read(&s, "k").unwrap().1, json!({"by": "parent"}));
        let status = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "writes_by_another_process_are_seen_by_a_warm_handle",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "the child failed: {status}");
        assert_eq!(read(&s, "k"), Some((2 * round + 2, json!({"by": "child"}))));
        s.patch(
            "c",
            "k",
            &Patch::Merge(json!({"by": "parent"})),
            Precondition::Any,
        )
        .unwrap();
    }
}

#[test]
fn the_cache_stays_within_its_bound() {
    const BOUND: usize = 64 * 1024;
    const DOCS: usize = 300;
    let dir = TempDir::new().unwrap();
    let filler = store(dir.path());
    let padding = "x".repeat(900);
    for i in 0..DOCS {
        filler
            .create("c", &format!("d{i}"), json!({"i": i, "pad": padding}))
            .unwrap();
    }
    let file_len = std::fs::metadata(file(dir.path(), "c", "d0"))
        .unwrap()
        .len() as usize;
    let backend = Arc::new(
        YamlBackend::open(dir.path())
            .unwrap()
            .with_decode_cache(BOUND),
    );
    let s = Store::with_options(backend.clone(), StoreOptions::default());
    for round in 0..2 {
        for i in 0..DOCS {
            let doc = s.get("c", &format!("d{i}")).unwrap().unwrap();
            assert_eq!(doc.body["i"], json!(i), "round {round}");
            let cached = backend.decode_cache().len();
            assert!(cached >= 1, "nothing cached after reading d{i}");
            // Each entry is charged at least twice its file's size.
            assert!(
                cached * 2 * file_len <= BOUND,
                "{cached} records of {file_len} bytes cached, over {BOUND} bytes"
            );
        }
    }
    // A cache of 0 bytes keeps nothing; reads still work.
    let s = Store::open(YamlBackend::open(dir.path()).unwrap().with_decode_cache(0));
    assert_eq!(s.get("c", "d7").unwrap().unwrap().body["i"], json!(7));
}
