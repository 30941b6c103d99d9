//! The YAML backend's change feed on a real folder: layout, torn and
//! corrupt lines, compaction, lock order, and every commit exactly once
//! across threads, handles and OS processes while a reader follows.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use revstore::{
    Change, ChangeKind, Commit, CommitOutcome, Durability, Error, Guard, Key, Patch, Precondition,
    StorageBackend, Store,
};
use revstore_yaml::{YamlBackend, YamlOptions};
use serde_json::json;
use tempfile::TempDir;

fn open(dir: &Path, durability: Durability, retain_changes: u64) -> Store {
    Store::open(
        YamlBackend::open_with(
            dir,
            YamlOptions {
                durability,
                retain_changes,
            },
        )
        .unwrap(),
    )
}

fn store(dir: &Path) -> Store {
    Store::open(YamlBackend::open(dir).unwrap())
}

fn segments_dir(dir: &Path) -> PathBuf {
    dir.join(".revstore/changes")
}

/// The segment files, oldest first, as (first seq, path).
fn segments(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut out: Vec<(u64, PathBuf)> = std::fs::read_dir(segments_dir(dir))
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            let stem = name.strip_suffix(".log").unwrap();
            assert_eq!(stem.len(), 20, "{name}");
            (stem.parse().unwrap(), path)
        })
        .collect();
    out.sort();
    out
}

fn assert_corrupt_at<T: std::fmt::Debug>(result: revstore::Result<T>, location: &str) {
    match result {
        Err(Error::Corrupt { location: at, .. }) => assert_eq!(at, location),
        other => panic!("expected Corrupt at {location}, got {other:?}"),
    }
}

fn append_bytes(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    file.write_all(bytes).unwrap();
}

fn lock_file(path: &Path, exclusive: bool) -> std::fs::File {
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
    file
}

fn is_locked(path: &Path, exclusive: bool) -> bool {
    let file = std::fs::File::open(path).unwrap();
    let attempt = if exclusive {
        fs2::FileExt::try_lock_exclusive(&file)
    } else {
        fs2::FileExt::try_lock_shared(&file)
    };
    attempt.is_err()
}

#[test]
fn the_feed_is_json_lines_in_a_hidden_folder_no_collection_can_name() {
    let dir = TempDir::new().unwrap();
    let s = store(dir.path());
    s.create("models", "orders", json!({"a": 1})).unwrap();
    s.delete("models", "orders", Precondition::Any).unwrap();
    s.create("models", "orders", json!({})).unwrap();
    assert!(dir.path().join(".revstore/changes.lock").is_file());
    let segs = segments(dir.path());
    assert_eq!(segs.len(), 1);
    assert_eq!(segs[0].0, 1);
    assert_eq!(
        std::fs::read_to_string(&segs[0].1).unwrap(),
        "{\"seq\":1,\"collection\":\"models\",\"name\":\"orders\",\"revision\":1,\"kind\":\"created\"}\n\
         {\"seq\":2,\"collection\":\"models\",\"name\":\"orders\",\"revision\":2,\"kind\":\"deleted\"}\n\
         {\"seq\":3,\"collection\":\"models\",\"name\":\"orders\",\"revision\":3,\"kind\":\"created\"}\n"
    );
    assert!(Key::new(revstore_yaml::STATE_DIR, "changes").is_err());
    assert!(matches!(
        s.list(revstore_yaml::STATE_DIR),
        Err(Error::InvalidName { .. })
    ));
    assert_eq!(s.list("models").unwrap().len(), 1);
    // The backend itself finds no document there either.
    let backend = YamlBackend::open(dir.path()).unwrap();
    assert_eq!(backend.list(revstore_yaml::STATE_DIR).unwrap(), []);
    // A reopened handle continues the seqs.
    store(dir.path())
        .replace("models", "orders", json!({}), Precondition::Any)
        .unwrap();
    let last = s.changes_since(3, 10).unwrap();
    assert_eq!(
        (last[0].seq, last[0].revision, last[0].kind),
        (4, 4, ChangeKind::Updated)
    );
}

#[test]
fn a_torn_last_line_is_ignored_by_readers_and_cut_off_by_the_next_commit() {
    let dir = TempDir::new().unwrap();
    let s = store(dir.path());
    s.create("c", "a", json!({})).unwrap();
    s.create("c", "b", json!({})).unwrap();
    let segment = segments(dir.path())[0].1.clone();
    let good = std::fs::read(&segment).unwrap();
    // A writer killed in the middle of its append, before its rename.
    append_bytes(&segment, b"{\"seq\":3,\"collection\":\"c\",\"na");
    assert_eq!(s.last_seq().unwrap(), 2);
    assert_eq!(s.changes_since(0, 10).unwrap().len(), 2);
    assert!(s.changes_since(2, 10).unwrap().is_empty());
    let torn = std::fs::read(&segment).unwrap();
    assert_eq!(torn.len(), good.len() + 29, "reads never write");
    s.replace("c", "a", json!({"x": 1}), Precondition::Any)
        .unwrap();
    let mut expected = good.clone();
    expected.extend_from_slice(
        b"{\"seq\":3,\"collection\":\"c\",\"name\":\"a\",\"revision\":2,\"kind\":\"updated\"}\n",
    );
    assert_eq!(std::fs::read(&segment).unwrap(), expected);
    let changes = s.changes_since(2, 10).unwrap();
    assert_eq!(
        (changes.len(), changes[0].seq, changes[0].revision),
        (1, 3, 2)
    );
}

/// The documented at-least-once exception: a writer killed after its
/// append but before its rename leaves an entry for a revision that never
/// committed; the next commit of that key reuses the revision under a new,
/// later entry.
#[test]
fn an_entry_left_by_a_crash_before_the_rename_is_followed_by_the_real_one() {
    let dir = TempDir::new().unwrap();
    let s = store(dir.path());
    s.create("c", "a", json!({"v": 1})).unwrap();
    let segment = segments(dir.path())[0].1.clone();
    append_bytes(
        &segment,
        b"{\"seq\":2,\"collection\":\"c\",\"name\":\"a\",\"revision\":2,\"kind\":\"updated\"}\n",
    );
    assert_eq!(s.get("c", "a").unwrap().unwrap().revision, 1);
    assert_eq!(s.last_seq().unwrap(), 2);
    s.delete("c", "a", Precondition::Any).unwrap();
    let shape: Vec<(u64, u64, ChangeKind)> = s
        .changes_since(0, 10)
        .unwrap()
        .iter()
        .map(|c| (c.seq, c.revision, c.kind))
        .collect();
    assert_eq!(
        shape,
        [
            (1, 1, ChangeKind::Created),
            (2, 2, ChangeKind::Updated),
            (3, 2, ChangeKind::Deleted)
        ]
    );
}

#[test]
fn corrupt_lines_are_reported_naming_the_segment_and_line() {
    let dir = TempDir::new().unwrap();
    let s = store(dir.path());
    for name in ["a", "b", "c"] {
        s.create("c", name, json!({})).unwrap();
    }
    let segment = segments(dir.path())[0].1.clone();
    let text = std::fs::read_to_string(&segment).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let at = |line: usize| format!("{} line {line}", segment.display());

    std::fs::write(&segment, format!("{}\nnot json\n{}\n", lines[0], lines[2])).unwrap();
    assert_corrupt_at(s.changes_since(0, 10), &at(2));
    assert_corrupt_at(s.changes_since(1, 10), &at(2));
    // Only lines handed out are decoded: the cursor is past the bad one.
    assert_eq!(s.changes_since(2, 10).unwrap()[0].seq, 3);
    assert_eq!(s.changes_since(0, 1).unwrap()[0].seq, 1);

    // A line holding the wrong seq is as corrupt as one that does not
    // parse; as the last line it stops commits, which never overwrite it.
    let wrong = lines[2].replace("\"seq\":3", "\"seq\":9");
    std::fs::write(&segment, format!("{}\n{}\n{wrong}\n", lines[0], lines[1])).unwrap();
    assert_corrupt_at(s.changes_since(2, 10), &at(3));
    assert_corrupt_at(s.last_seq(), &at(3));
    assert_corrupt_at(
        s.replace("c", "a", json!({"x": 1}), Precondition::Any),
        &at(3),
    );
    assert_eq!(s.get("c", "a").unwrap().unwrap().revision, 1);
    assert!(std::fs::read_to_string(&segment)
        .unwrap()
        .ends_with(&format!("{wrong}\n")));
}

#[test]
fn compaction_removes_whole_old_segments_and_older_cursors_get_compacted() {
    let dir = TempDir::new().unwrap();
    // Segments of 2 changes for a retention of 8.
    let s = open(dir.path(), Durability::Full, 8);
    for i in 0..41 {
        s.replace(
            "c",
            &format!("k{}", i % 3),
            json!({ "i": i }),
            Precondition::Any,
        )
        .unwrap();
    }
    let segs = segments(dir.path());
    let first = segs[0].0;
    assert_eq!(segs.last().unwrap().0, 41, "a new segment every 2 changes");
    for pair in segs.windows(2) {
        assert_eq!(pair[1].0 - pair[0].0, 2);
    }
    let kept = 41 - (first - 1);
    assert!((8..=8 + 2 * 2).contains(&kept), "kept {kept}");
    for requested in [0, first - 2] {
        match s.changes_since(requested, 10) {
            Err(Error::Compacted {
                requested: r,
                retained_after,
            }) => assert_eq!((r, retained_after), (requested, first - 1)),
            other => panic!("expected Compacted, got {other:?}"),
        }
    }
    let rest = s.changes_since(first - 1, usize::MAX).unwrap();
    let seqs: Vec<u64> = rest.iter().map(|c| c.seq).collect();
    assert_eq!(seqs, (first..=41).collect::<Vec<_>>());
    // Reading with another retention compacts nothing: only a commit that
    // starts a segment does.
    let other = store(dir.path());
    assert!(matches!(
        other.changes_since(0, 1),
        Err(Error::Compacted { .. })
    ));
    assert_eq!(segments(dir.path()).len(), segs.len());

    // The smallest retention keeps the newest change.
    let dir = TempDir::new().unwrap();
    let s = open(dir.path(), Durability::Relaxed, 1);
    for i in 0..10 {
        s.replace("c", "k", json!({ "i": i }), Precondition::Any)
            .unwrap();
        let last = s.last_seq().unwrap();
        assert_eq!(s.changes_since(last - 1, 10).unwrap().len(), 1);
        assert!(segments(dir.path()).len() <= 3);
    }
    assert!(matches!(
        YamlBackend::open_with(
            dir.path(),
            YamlOptions {
                retain_changes: 0,
                ..YamlOptions::default()
            }
        ),
        Err(Error::InvalidConfig { .. })
    ));
}

#[test]
fn a_missing_segment_is_reported_rather_than_skipped() {
    let dir = TempDir::new().unwrap();
    let s = open(dir.path(), Durability::Relaxed, 100);
    for i in 0..80 {
        s.replace("c", "k", json!({ "i": i }), Precondition::Any)
            .unwrap();
    }
    // Segments of 25: 1, 26, 51, 76.
    let segs = segments(dir.path());
    assert_eq!(
        segs.iter().map(|s| s.0).collect::<Vec<_>>(),
        [1, 26, 51, 76]
    );
    std::fs::remove_file(&segs[1].1).unwrap();
    match s.changes_since(10, usize::MAX) {
        Err(Error::Corrupt { location, reason }) => {
            assert_eq!(location, segs[0].1.display().to_string());
            assert!(reason.contains("next segment starts at seq 51"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert_eq!(s.changes_since(60, usize::MAX).unwrap().len(), 20);
}

/// Handles remember the newest segment between their commits; handles
/// with other retentions start and remove segments under them. Every
/// handle must notice: lines appended by others, a segment started after
/// the one it knew, the one it knew removed — or the feed would get a seq
/// twice or lose a line.
#[test]
fn handles_with_other_retentions_keep_one_feed() {
    let dir = TempDir::new().unwrap();
    // Segments of 25, 2 and 1 changes.
    let handles = [
        open(dir.path(), Durability::Relaxed, 100),
        open(dir.path(), Durability::Relaxed, 8),
        open(dir.path(), Durability::Relaxed, 1),
    ];
    let mut pick = 0x9e37_79b9_7f4a_7c15u64;
    let mut expected = Vec::new();
    for commit in 1..=150u64 {
        pick ^= pick << 13;
        pick ^= pick >> 7;
        pick ^= pick << 17;
        // Runs of commits by one handle, so each sees others' lines pile up.
        let writer = &handles[(pick % 7 % 3) as usize];
        let name = format!("k{}", pick % 5);
        let doc = writer
            .replace("c", &name, json!({ "commit": commit }), Precondition::Any)
            .unwrap();
        expected.push((commit, name, doc.revision));
        for reader in &handles {
            assert_eq!(reader.last_seq().unwrap(), commit, "after commit {commit}");
        }
        // The newest change is retained by every handle's compaction.
        let last = handles[0].changes_since(commit - 1, 10).unwrap();
        assert_eq!(
            last.iter()
                .map(|c| (c.seq, c.key.name().to_owned(), c.revision))
                .collect::<Vec<_>>(),
            [expected[commit as usize - 1].clone()],
            "commit {commit}"
        );
    }
    // What is retained is whole and in order, across every segment.
    let retained_after = segments(dir.path())[0].0 - 1;
    let feed = handles[0]
        .changes_since(retained_after, usize::MAX)
        .unwrap();
    let shape: Vec<_> = feed
        .iter()
        .map(|c| (c.seq, c.key.name().to_owned(), c.revision))
        .collect();
    assert_eq!(shape, expected[retained_after as usize..]);
}

/// A handle keeps the newest segment open between its commits. One
/// replaced by hand with a copy of itself (as an editor saving through a
/// rename does) looks the same by length and content, but appending to the
/// kept file would write to one no path names: the change would be lost.
#[test]
fn a_segment_replaced_by_a_copy_is_appended_to_under_its_name() {
    let dir = TempDir::new().unwrap();
    let s = open(dir.path(), Durability::Relaxed, 100);
    s.create("c", "a", json!({})).unwrap();
    s.create("c", "b", json!({})).unwrap();
    let segment = segments(dir.path())[0].1.clone();
    let copy = segment.with_extension("copy");
    std::fs::copy(&segment, &copy).unwrap();
    std::fs::rename(&copy, &segment).unwrap();
    s.replace("c", "a", json!({"x": 1}), Precondition::Any)
        .unwrap();
    let changes = s.changes_since(0, 10).unwrap();
    assert_eq!(
        changes
            .iter()
            .map(|c| (c.seq, c.key.name().to_owned(), c.revision))
            .collect::<Vec<_>>(),
        [
            (1, "a".to_owned(), 1),
            (2, "b".to_owned(), 1),
            (3, "a".to_owned(), 2)
        ]
    );
}

/// Deleting the whole `.revstore` folder restarts the seqs at 1 (the crate
/// docs say not to); a handle that knew the old segment must not append
/// to it, and one that knew the folders made them again.
#[test]
fn a_removed_feed_folder_is_made_again_by_a_handle_that_knew_it() {
    let dir = TempDir::new().unwrap();
    let s = store(dir.path());
    for i in 0..3 {
        s.replace("c", "a", json!({ "i": i }), Precondition::Any)
            .unwrap();
    }
    std::fs::remove_dir_all(dir.path().join(".revstore")).unwrap();
    s.replace("c", "a", json!({"i": 3}), Precondition::Any)
        .unwrap();
    let feed = s.changes_since(0, 10).unwrap();
    assert_eq!(
        feed.iter().map(|c| (c.seq, c.revision)).collect::<Vec<_>>(),
        [(1, 4)]
    );
    // Only the segments folder removed: made again too.
    std::fs::remove_dir_all(segments_dir(dir.path())).unwrap();
    s.replace("c", "a", json!({"i": 4}), Precondition::Any)
        .unwrap();
    assert_eq!(s.last_seq().unwrap(), 1);
    assert_eq!(s.changes_since(0, 10).unwrap()[0].revision, 5);
}

/// Runs `work` on another thread: `Ok` with its result if it finished
/// within `wait`, else `Err` with where the result will arrive.
fn finishes_within<T: Send + 'static>(
    wait: Duration,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, mpsc::Receiver<T>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        // The receiver may be gone when the test failed already.
        let _ = tx.send(work());
    });
    match rx.recv_timeout(wait) {
        Ok(value) => Ok(value),
        Err(mpsc::RecvTimeoutError::Timeout) => Err(rx),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("the work panicked"),
    }
}

/// Handles keep lock files open between commits. One removed by hand
/// must not leave a handle locking the old file while others lock the new
/// one at the same path: it must wait for whoever holds the new one.
#[test]
fn a_lock_file_removed_by_hand_is_locked_afresh() {
    let dir = TempDir::new().unwrap();
    let root = dir.path().to_owned();
    let s = Arc::new(store(&root));
    // The handle now keeps the lock files of the document and the feed
    // open (a guarded write locks no schema key).
    s.create("models", "orders", json!({"n": 0})).unwrap();
    let paths = ["models/.orders.lock", ".revstore/changes.lock"];
    for path in paths {
        std::fs::remove_file(root.join(path)).unwrap();
        // Someone else holds the new file at that path.
        let held = lock_file(&root.join(path), true);
        let pending = finishes_within(Duration::from_millis(300), {
            let s = s.clone();
            move || {
                s.patch(
                    "models",
                    "orders",
                    &Patch::Merge(json!({ "path": path })),
                    Precondition::Any,
                )
                .map(|doc| doc.revision)
            }
        });
        let Err(pending) = pending else {
            panic!("a commit went ahead while {path} was held");
        };
        drop(held);
        let revision = pending
            .recv_timeout(Duration::from_secs(60))
            .unwrap()
            .unwrap();
        assert_eq!(
            s.get("models", "orders").unwrap().unwrap().revision,
            revision
        );
    }
}

fn schema_key() -> Key {
    Key::new_reserved("_schema", "models").unwrap()
}

/// Commits `key` at `expected + 1` if the schema key is still at `guard`.
fn guarded_commit(backend: &YamlBackend, key: &Key, expected: u64, guard: u64) -> CommitOutcome {
    let schema = schema_key();
    let body = std::sync::Arc::new(serde_json::Map::new());
    backend
        .commit(&Commit {
            based_on: None,
            key,
            expected,
            body: Some(&body),
            guard: Some(Guard {
                key: &schema,
                revision: guard,
            }),
            kind: if expected == 0 {
                ChangeKind::Created
            } else {
                ChangeKind::Updated
            },
        })
        .unwrap()
}

/// A commit holds its document's lock, and no lock of its guard key, when
/// it takes the feed lock, with its staging file written; it renames the
/// document only once it holds the feed lock: a reader in the middle of
/// reading the feed delays the commit rather than missing it.
#[test]
fn a_commit_takes_the_feed_lock_last_and_renames_under_it() {
    let dir = TempDir::new().unwrap();
    let root = dir.path().to_owned();
    store(&root).create("other", "x", json!({})).unwrap();
    let reading = lock_file(&root.join(".revstore/changes.lock"), false);
    let pending = finishes_within(Duration::from_millis(300), {
        let root = root.clone();
        move || {
            let backend = YamlBackend::open(&root).unwrap();
            guarded_commit(&backend, &Key::new("models", "orders").unwrap(), 0, 0)
        }
    });
    let Err(done) = pending else {
        panic!("the commit did not wait for the feed reader")
    };
    assert!(
        is_locked(&root.join("models/.orders.lock"), false),
        "the document lock is held while waiting"
    );
    assert!(
        !root.join("_schema").exists(),
        "the guard key was locked (its lock file was made)"
    );
    assert!(
        root.join("models/.orders.yaml.tmp").exists(),
        "staged before the feed lock is taken"
    );
    assert!(
        !root.join("models/orders.yaml").exists(),
        "not renamed before the feed lock is taken"
    );
    drop(reading);
    assert_eq!(
        done.recv_timeout(Duration::from_secs(30)).unwrap(),
        CommitOutcome::Committed
    );
    let s = store(&root);
    let changes = s.changes_since(1, 10).unwrap();
    assert_eq!(changes[0].key.to_string(), "models/orders");
    assert_eq!(s.get("models", "orders").unwrap().unwrap().revision, 1);
}

/// Feed readers take no document or guard lock, so a commit stuck on them
/// never holds up the feed, and commits elsewhere carry on.
#[test]
fn feed_readers_never_wait_for_document_or_guard_locks() {
    let dir = TempDir::new().unwrap();
    let root = dir.path().to_owned();
    store(&root).create("models", "orders", json!({})).unwrap();
    std::fs::create_dir_all(root.join("_schema")).unwrap();
    let _doc = lock_file(&root.join("models/.orders.lock"), true);
    let _guard = lock_file(&root.join("_schema/.models.lock"), true);
    let outcome = finishes_within(Duration::from_secs(30), {
        let root = root.clone();
        move || {
            let s = store(&root);
            s.create("notes", "n", json!({})).unwrap();
            (s.last_seq().unwrap(), s.changes_since(0, 10).unwrap().len())
        }
    });
    assert_eq!(
        outcome.ok(),
        Some((2, 2)),
        "a feed read or an unrelated commit waited"
    );
}

/// Guarded writers, writers of the guard key and feed readers on their own
/// handles all make progress: the locks are always taken document, then
/// feed (a guard key is read, not locked).
#[test]
fn guarded_writers_guard_writers_and_readers_never_deadlock() {
    let dir = TempDir::new().unwrap();
    let root = dir.path().to_owned();
    let rounds = 30 * u64::from(revstore::testkit::soak_factor());
    let outcome = finishes_within(Duration::from_secs(120), move || {
        let committed = std::thread::scope(|scope| {
            let root = &root;
            let mut writers = Vec::new();
            for w in 0..2 {
                writers.push(scope.spawn(move || {
                    let backend = YamlBackend::open(root).unwrap();
                    let key = Key::new("models", &format!("m{w}")).unwrap();
                    let mut done = 0;
                    for _ in 0..rounds {
                        let revision = |k: &Key| backend.read(k).unwrap().map_or(0, |r| r.revision);
                        let (expected, guard) = (revision(&key), revision(&schema_key()));
                        if guarded_commit(&backend, &key, expected, guard)
                            == CommitOutcome::Committed
                        {
                            done += 1;
                        }
                    }
                    done
                }));
            }
            writers.push(scope.spawn(move || {
                let backend = YamlBackend::open(root).unwrap();
                let schema = schema_key();
                let body = std::sync::Arc::new(serde_json::Map::new());
                for expected in 0..rounds / 3 {
                    let commit = Commit {
                        based_on: None,
                        key: &schema,
                        expected,
                        body: Some(&body),
                        guard: None,
                        kind: if expected == 0 {
                            ChangeKind::Created
                        } else {
                            ChangeKind::Updated
                        },
                    };
                    assert_eq!(backend.commit(&commit).unwrap(), CommitOutcome::Committed);
                }
                rounds / 3
            }));
            let reader = scope.spawn(move || {
                let s = store(root);
                for _ in 0..rounds {
                    s.changes_since(0, usize::MAX).unwrap();
                    s.last_seq().unwrap();
                }
            });
            reader.join().unwrap();
            writers.into_iter().map(|w| w.join().unwrap()).sum::<u64>()
        });
        (committed, store(&root).last_seq().unwrap())
    });
    let Ok((committed, last_seq)) = outcome else {
        panic!("deadlocked (or far too slow)")
    };
    assert!(committed > rounds, "too few commits to matter: {committed}");
    assert_eq!(last_seq, committed, "one change per commit");
}

/// One writer's operations on a few shared keys; returns every write it
/// committed as (key, revision).
fn write_ops(s: &Store, seed: u64, ops: usize) -> Vec<(String, u64)> {
    let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    let mut committed = Vec::new();
    for i in 0..ops {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let name = format!("k{}", (state >> 33) % 3);
        let revision = match (state >> 40) % 4 {
            0 => s.delete("c", &name, Precondition::Any).ok(),
            1 => s
                .patch(
                    "c",
                    &name,
                    &Patch::Merge(json!({ format!("w{seed}"): i })),
                    Precondition::Any,
                )
                .ok()
                .map(|d| d.revision),
            _ => Some(
                s.replace("c", &name, json!({ "by": seed, "i": i }), Precondition::Any)
                    .unwrap()
                    .revision,
            ),
        };
        if let Some(revision) = revision {
            committed.push((format!("c/{name}"), revision));
        }
    }
    committed
}

/// Follows the feed with small batches until `done` is set and the feed
/// is drained; after each change, the document must already hold at least
/// that revision.
fn follow(s: &Store, done: &AtomicBool) -> Vec<Change> {
    let mut cursor = 0;
    let mut seen = Vec::new();
    loop {
        let finished = done.load(Ordering::Acquire);
        let batch = s.changes_since(cursor, 3).unwrap();
        if batch.is_empty() {
            if finished {
                return seen;
            }
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        for change in batch {
            assert!(change.seq > cursor, "{change:?} after {cursor}");
            cursor = change.seq;
            let record = s
                .get_record(change.key.collection(), change.key.name())
                .unwrap()
                .unwrap_or_else(|| panic!("{change:?} but the document is missing"));
            assert!(
                record.revision >= change.revision,
                "{change:?} seen while the document is at {}",
                record.revision
            );
            seen.push(change);
        }
    }
}

/// The feed holds exactly the committed writes, once each, in seq order,
/// each key's revisions counting up from 1 with consistent kinds.
fn check_feed(feed: &[Change], mut committed: Vec<(String, u64)>) {
    let seqs: Vec<u64> = feed.iter().map(|c| c.seq).collect();
    assert_eq!(seqs, (1..=feed.len() as u64).collect::<Vec<_>>());
    let mut reported: Vec<(String, u64)> = feed
        .iter()
        .map(|c| (c.key.to_string(), c.revision))
        .collect();
    reported.sort();
    committed.sort();
    assert_eq!(reported, committed, "the feed and the acknowledged writes");
    let mut live: HashMap<String, (u64, bool)> = HashMap::new();
    for change in feed {
        let (revision, was_live) = live.entry(change.key.to_string()).or_insert((0, false));
        assert_eq!(change.revision, *revision + 1, "{change:?}");
        let expected_kind = match (change.kind, *was_live) {
            (ChangeKind::Deleted, true) => ChangeKind::Deleted,
            (_, true) => ChangeKind::Updated,
            (_, false) => ChangeKind::Created,
        };
        assert_eq!(change.kind, expected_kind, "{change:?}");
        *revision = change.revision;
        *was_live = change.kind != ChangeKind::Deleted;
    }
}

fn threads_with_own_handles_and_a_follower(durability: Durability) {
    let dir = TempDir::new().unwrap();
    let ops = 80 * revstore::testkit::soak_factor() as usize;
    let done = Arc::new(AtomicBool::new(false));
    let (feed, committed) = std::thread::scope(|scope| {
        let follower = {
            let s = open(dir.path(), durability, 100_000);
            let done = &done;
            scope.spawn(move || follow(&s, done))
        };
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let s = open(dir.path(), durability, 100_000);
                scope.spawn(move || write_ops(&s, w, ops))
            })
            .collect();
        let committed: Vec<(String, u64)> = writers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect();
        done.store(true, Ordering::Release);
        (follower.join().unwrap(), committed)
    });
    assert!(committed.len() > ops, "too few writes committed to matter");
    check_feed(&feed, committed);
}

#[test]
fn threads_with_own_handles_commit_each_change_once_full_durability() {
    threads_with_own_handles_and_a_follower(Durability::Full);
}

#[test]
fn threads_with_own_handles_commit_each_change_once_relaxed_durability() {
    threads_with_own_handles_and_a_follower(Durability::Relaxed);
}

const WORKER_ENV: &str = "REVSTORE_YAML_FEED_WORKER";
const COMMITTED_PREFIX: &str = "committed ";

/// Three OS processes write while this one follows the feed. The child
/// processes are this very test, re-run with an environment variable that
/// makes it a writer printing what it committed.
#[test]
fn processes_write_while_another_follows_the_feed() {
    if let Ok(spec) = std::env::var(WORKER_ENV) {
        let (root, seed) = spec.split_once('\n').unwrap();
        let s = open(Path::new(root), Durability::Full, 100_000);
        for (key, revision) in write_ops(&s, seed.parse().unwrap(), 30) {
            println!("{COMMITTED_PREFIX}{key} {revision}");
        }
        return;
    }
    let dir = TempDir::new().unwrap();
    let done = AtomicBool::new(false);
    let (feed, committed) = std::thread::scope(|scope| {
        let follower = {
            let s = store(dir.path());
            let done = &done;
            scope.spawn(move || follow(&s, done))
        };
        let children: Vec<_> = (0..3)
            .map(|seed| {
                Command::new(std::env::current_exe().unwrap())
                    .args([
                        "--exact",
                        "processes_write_while_another_follows_the_feed",
                        "--nocapture",
                        "--test-threads=1",
                    ])
                    .env(WORKER_ENV, format!("{}\n{seed}", dir.path().display()))
                    .stdout(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let mut committed = Vec::new();
        for mut child in children {
            let stdout = child.stdout.take().unwrap();
            for line in BufReader::new(stdout).lines() {
                let line = line.unwrap();
                // libtest's own "test … " may share the first line.
                if let Some((_, rest)) = line.split_once(COMMITTED_PREFIX) {
                    let (key, revision) = rest.split_once(' ').unwrap();
                    committed.push((key.to_owned(), revision.parse::<u64>().unwrap()));
                }
            }
            assert!(child.wait().unwrap().success(), "a worker failed");
        }
        done.store(true, Ordering::Release);
        (follower.join().unwrap(), committed)
    });
    assert!(committed.len() > 30, "too few writes committed to matter");
    check_feed(&feed, committed);
}
