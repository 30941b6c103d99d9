//! SIGKILL at random moments while a child process writes with full
//! durability: no acknowledged write is lost, every document file parses
//! and holds a state that was written, the change feed holds every
//! committed write, a fresh handle reads and writes at once (no stale
//! lock), and temp files of interrupted writes do not pile up.

use std::path::{Path, PathBuf};

use revstore::testkit::crash::{
    run_crash_campaign, run_crash_child, CrashCampaign, CrashChild, FeedRule, KEYS,
};
use revstore::{Durability, Store};
use revstore_yaml::{YamlBackend, YamlOptions};

// The struct update keeps options added later at their defaults.
#[allow(clippy::needless_update)]
fn open(root: &Path) -> revstore::Result<Store> {
    let options = YamlOptions {
        durability: Durability::Full,
        // Keep the whole feed: the campaign checks it from seq 0.
        retain_changes: 100_000_000,
        ..YamlOptions::default()
    };
    YamlBackend::open_with(root, options).map(Store::open)
}

/// Temp files (`*.tmp`) anywhere under the root: what a write cut short
/// leaves behind until it is cleaned up.
fn temp_files(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut folders: Vec<PathBuf> = vec![root.to_owned()];
    while let Some(folder) = folders.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries {
            let entry = entry.unwrap();
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|e| e == "tmp") {
                found.push(path.display().to_string());
            }
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
    // Not created yet: the first children are killed while creating it.
    let root = dir.path().join("store");
    let mut campaign =
        CrashCampaign::new("sigkill_while_writing_loses_no_acknowledged_write", &root);
    // A kill between the feed append and the rename leaves a line for a
    // write that never committed, as the crate documents.
    campaign.feed_rule = FeedRule::AtLeastOnce;
    // One interrupted write per document at most: the next commit of a
    // document clears what an earlier one left.
    campaign.max_debris = KEYS;
    let root_for_open = root.clone();
    let summary = run_crash_campaign(
        &campaign,
        move || open(&root_for_open),
        || temp_files(&root),
    )
    .unwrap_or_else(|failure| panic!("{failure}"));
    eprintln!("yaml crash campaign (seed {}): {summary}", campaign.seed);
    assert_eq!(summary.kills, campaign.kills);
    assert!(
        summary.acks >= campaign.kills,
        "too few acknowledged writes to matter: {summary}"
    );
}
