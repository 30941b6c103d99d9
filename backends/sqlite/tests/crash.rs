//! SIGKILL at random moments while a child process writes with full
//! durability: no acknowledged write is lost, every document reads back as a
//! state that was written, and a fresh handle reads and writes at once.
//!
//! Needs the `testkit` feature (the shared crash harness).
#![cfg(feature = "testkit")]

use std::path::{Path, PathBuf};

use revstore::testkit::crash::{
    run_crash_campaign, run_crash_child, CrashCampaign, CrashChild, FeedRule,
};
use revstore::{Durability, Store};
use revstore_sqlite::{SqliteBackend, SqliteOptions};

/// The WAL is checkpointed back into the file every ~1000 pages (4 MB)
/// and then reused from its start; a WAL far beyond that would mean
/// checkpoints stopped (say, a reader left behind by a killed process).
const MAX_WAL_BYTES: u64 = 64 * 1024 * 1024;

fn open(path: &Path) -> revstore::Result<Store> {
    let options = SqliteOptions {
        durability: Durability::Full,
        // Keep the whole feed: the campaign checks it from seq 0.
        retain_changes: 100_000_000,
        ..SqliteOptions::default()
    };
    SqliteBackend::open_with(path, options).map(Store::open)
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
