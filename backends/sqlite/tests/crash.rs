//! SIGKILL at random moments while a child process writes with full
//! durability: no acknowledged write is lost, every document reads back as a
//! state that was written, and a fresh handle reads and writes at once.
//!
//! Needs the `testkit` feature (the shared crash harness).
#![cfg(feature = "testkit")]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use revstore::backend::current_of;
use revstore::testkit::crash::{
    run_crash_campaign, run_crash_child, CrashCampaign, CrashChild, FeedRule,
};
use revstore::{
    Change, Commit, CommitOutcome, Durability, Entry, Key, Record, StorageBackend, Store,
};
use revstore_sqlite::{SqliteBackend, SqliteOptions};

/// The WAL is checkpointed back into the file every ~1000 pages (4 MB)
/// and then reused from its start; a WAL far beyond that would mean
/// checkpoints stopped (say, a reader left behind by a killed process).
const MAX_WAL_BYTES: u64 = 64 * 1024 * 1024;

fn open_backend(path: &Path) -> revstore::Result<SqliteBackend> {
    let options = SqliteOptions {
        durability: Durability::Full,
        // Keep the whole feed: the campaign checks it from seq 0.
        retain_changes: 100_000_000,
        ..SqliteOptions::default()
    };
    SqliteBackend::open_with(path, options)
}

fn open(path: &Path) -> revstore::Result<Store> {
    open_backend(path).map(Store::open)
}

/// Files next to the database other than SQLite's own, and a WAL that
/// grew past any checkpoint.
fn debris(path: &Path) -> Vec<String> {
    let Some(folder) = path.parent() else {
        return vec![format!("{} has no folder", path.display())];
    };
    let file_name = path.file_name().unwrap().to_string_lossy().into_owned();
    let own: Vec<String> = ["", "-wal", "-shm"]
        .iter()
        .map(|suffix| format!("{file_name}{suffix}"))
        .collect();
    let mut found = Vec::new();
    for entry in std::fs::read_dir(folder).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if !own.contains(&name) {
            found.push(entry.path().display().to_string());
        }
    }
    let wal = PathBuf::from(format!("{}-wal", path.display()));
    if let Ok(meta) = std::fs::metadata(&wal) {
        if meta.len() > MAX_WAL_BYTES {
            found.push(format!("{} of {} bytes", wal.display(), meta.len()));
        }
    }
    found
}

#[test]
fn sigkill_while_writing_loses_no_acknowledged_write() {
    if let Some(child) = CrashChild::from_env() {
        let store = open(&child.location).unwrap();
        run_crash_child(&store, &child);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let mut campaign =
        CrashCampaign::new("sigkill_while_writing_loses_no_acknowledged_write", &path);
    campaign.feed_rule = FeedRule::ExactlyOnce;
    campaign.max_debris = 0;
    let path_for_open = path.clone();
    let summary = run_crash_campaign(&campaign, move || open(&path_for_open), || debris(&path))
        .unwrap_or_else(|failure| panic!("{failure}"));
    eprintln!("sqlite crash campaign (seed {}): {summary}", campaign.seed);
    assert_eq!(summary.kills, campaign.kills);
    assert!(
        summary.acks >= campaign.kills,
        "too few acknowledged writes to matter: {summary}"
    );
}

/// A deliberately broken backend, to prove the campaign catches a lost
/// acknowledged write: it checks a commit's revision, answers `Committed`
/// at once and makes the write a few milliseconds later on a thread (a
/// write-behind buffer). Every later call waits for the write first, so
/// the one process using it sees nothing wrong; a kill in between loses it.
#[derive(Debug)]
struct WriteBehind {
    inner: Arc<SqliteBackend>,
    pending: Mutex<Option<JoinHandle<()>>>,
}

impl WriteBehind {
    fn settle(&self) {
        if let Some(write) = self.pending.lock().unwrap().take() {
            write.join().unwrap();
        }
    }
}

impl StorageBackend for WriteBehind {
    fn kind(&self) -> &'static str {
        "sqlite-write-behind"
    }

    fn read(&self, key: &Key) -> revstore::Result<Option<Record>> {
        self.settle();
        self.inner.read(key)
    }

    fn commit(&self, commit: &Commit<'_>) -> revstore::Result<CommitOutcome> {
        self.settle();
        let current = self.inner.read(commit.key)?;
        if current.as_ref().map_or(0, |r| r.revision) != commit.expected {
            return Ok(CommitOutcome::Conflict {
                actual: current_of(current.as_ref()),
            });
        }
        let (inner, key, body) = (
            Arc::clone(&self.inner),
            commit.key.clone(),
            commit.body.cloned(),
        );
        let (expected, kind) = (commit.expected, commit.kind);
        let write = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(5));
            let later = Commit {
                based_on: None,
                key: &key,
                expected,
                body: body.as_ref(),
                guard: None,
                kind,
            };
            assert_eq!(inner.commit(&later).unwrap(), CommitOutcome::Committed);
        });
        *self.pending.lock().unwrap() = Some(write);
        Ok(CommitOutcome::Committed)
    }

    fn list(&self, collection: &str) -> revstore::Result<Vec<Entry>> {
        self.settle();
        self.inner.list(collection)
    }

    fn changes_since(&self, after: u64, limit: usize) -> revstore::Result<Vec<Change>> {
        self.settle();
        self.inner.changes_since(after, limit)
    }

    fn last_seq(&self) -> revstore::Result<u64> {
        self.settle();
        self.inner.last_seq()
    }
}

#[test]
fn a_backend_that_acknowledges_before_it_commits_is_caught() {
    if let Some(child) = CrashChild::from_env() {
        let backend = WriteBehind {
            inner: Arc::new(open_backend(&child.location).unwrap()),
            pending: Mutex::new(None),
        };
        run_crash_child(&Store::open(backend), &child);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let mut campaign = CrashCampaign::new(
        "a_backend_that_acknowledges_before_it_commits_is_caught",
        &path,
    );
    // Nearly every kill lands in the window; a hundred make missing it
    // practically impossible.
    campaign.kills = 100;
    let path_for_open = path.clone();
    let failure = run_crash_campaign(&campaign, move || open(&path_for_open), || debris(&path))
        .expect_err("a write-behind backend went unnoticed");
    eprintln!("caught as expected: {failure}");
    assert!(
        failure.reason.contains("lost an acknowledged write"),
        "{failure}"
    );
    assert!(failure.kill >= 1);
}
