//! A schema change is not starved by guarded writers.
//!
//! Guarded document writes check their collection's schema under the feed
//! lock and take no lock of the schema key; a schema write takes that key's
//! lock exclusively and the feed lock like every commit. Should guarded
//! writers ever hold the schema key's lock shared again, Linux `flock`
//! would keep granting it to them while the schema write waits, and a
//! schema change under back-to-back writers would wait for a lucky gap
//! between them — without bound. Each handle below has its own lock files
//! open, so `flock` treats them like separate processes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use revstore::{Precondition, Store};
use revstore_yaml::YamlBackend;
use serde_json::json;
use tempfile::TempDir;

const WRITERS: usize = 6;
const SCHEMA_CHANGES: u64 = 10;
/// Generous: each change waits for the feed lock like any commit,
/// milliseconds; a starved change can wait for ever.
const DEADLINE: Duration = Duration::from_secs(30);

fn schema(revision: u64) -> serde_json::Value {
    // Alternates an optional attribute so every change is a real edit; the
    // writers' bodies satisfy both versions.
    let mut attributes = vec![json!({"name": "v", "type": "integer"})];
    if revision % 2 == 1 {
        attributes.push(json!({"name": "note", "type": "string"}));
    }
    json!({ "attributes": attributes })
}

/// Median and maximum of some durations.
fn median_and_max(mut waits: Vec<Duration>) -> (Duration, Duration) {
    waits.sort();
    (waits[waits.len() / 2], waits[waits.len() - 1])
}

#[test]
fn schema_changes_complete_while_writers_commit_back_to_back() {
    let dir = TempDir::new().unwrap();
    let root = dir.path().to_owned();
    let admin = Store::open(YamlBackend::open(&root).unwrap());
    admin
        .set_schema("models", schema(0), Precondition::Absent)
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let commits = Arc::new(AtomicU64::new(0));
    let started = Arc::new(Barrier::new(WRITERS + 1));
    let writers: Vec<_> = (0..WRITERS)
        .map(|i| {
            let (root, stop, commits, started) =
                (root.clone(), stop.clone(), commits.clone(), started.clone());
            thread::spawn(move || {
                let store = Store::open(YamlBackend::open(&root).unwrap());
                let name = format!("w{i}");
                store.create("models", &name, json!({"v": 0})).unwrap();
                started.wait();
                let mut n = 0_u64;
                // No pause between commits: the worst case for a schema
                // writer, were guarded writers to hold its lock shared.
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    store
                        .replace("models", &name, json!({ "v": n }), Precondition::Any)
                        .unwrap();
                    commits.fetch_add(1, Ordering::Relaxed);
                }
                n
            })
        })
        .collect();
    started.wait();

    let (done, finished) = mpsc::channel();
    let changer = thread::spawn({
        let (commits, stop) = (commits.clone(), stop.clone());
        move || {
            let mut waits = Vec::new();
            for revision in 1..=SCHEMA_CHANGES {
                // Each change meets the writers at full speed, not retrying
                // after the previous change (their retries back off).
                let seen = commits.load(Ordering::Relaxed);
                while commits.load(Ordering::Relaxed) < seen + 4 * WRITERS as u64
                    && !stop.load(Ordering::Relaxed)
                {
                    thread::sleep(Duration::from_millis(1));
                }
                let began = Instant::now();
                let doc = admin
                    .set_schema("models", schema(revision), Precondition::Any)
                    .unwrap();
                // A change that ended only once the writers were stopped
                // was starved; its wait says nothing about the lock.
                waits.push((began.elapsed(), !stop.load(Ordering::Relaxed)));
                assert_eq!(doc.revision, revision + 1);
            }
            done.send(()).unwrap();
            waits
        }
    });
    let before = commits.load(Ordering::Relaxed);
    let in_time = finished.recv_timeout(DEADLINE).is_ok();
    let during = commits.load(Ordering::Relaxed) - before;
    // Stopping the writers lets a starved changer finish, so the test ends
    // either way.
    stop.store(true, Ordering::Relaxed);
    let waits = changer.join().unwrap();
    let written: u64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
    let under_load: Vec<Duration> = waits
        .iter()
        .filter(|(_, loaded)| *loaded)
        .map(|(wait, _)| *wait)
        .collect();
    let (median, max) = median_and_max(waits.iter().map(|(wait, _)| *wait).collect());
    eprintln!(
        "{SCHEMA_CHANGES} schema changes under {WRITERS} back-to-back writers: \
         {} done while the writers ran; median wait {median:?}, max {max:?} \
         (each wait: {:?}); {during} guarded commits meanwhile, {written} in all",
        under_load.len(),
        waits.iter().map(|(wait, _)| *wait).collect::<Vec<_>>(),
    );
    assert!(
        in_time,
        "the schema changes did not complete within {DEADLINE:?}: only {} did while the \
         writers ran (waits {waits:?})",
        under_load.len()
    );
    // The writers really were committing while the schema changed.
    assert!(during > 0, "no guarded commit ran alongside the changes");
}
