//! `revstore demo`: several OS processes write one store at once, and the
//! demo checks afterwards that no update was lost.
//!
//! Each worker process, N times: (a) increments a shared counter by reading
//! it and compare-and-swapping the next value, retrying on conflict; (b)
//! merge-patches one field of its own into a shared document, without a
//! precondition (the engine re-applies the patch after a lost race). At the
//! end the counter must equal P×N and all P×N fields must be present.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use revstore::{Error, Patch, Precondition, Store};
use serde_json::{json, Value};

use crate::error::CliError;
use crate::open_store;

/// The collection the demo writes its two documents to.
pub const DEMO_COLLECTION: &str = "demo";

/// How many compare-and-swap attempts one increment may lose before the
/// worker gives up. Every lost attempt means another worker won, so this is
/// reached only if the store stops making progress.
const MAX_INCREMENT_ATTEMPTS: u64 = 100_000;

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoSettings {
    /// The store location; `None` makes a SQLite store in a temporary
    /// folder that is removed afterwards.
    pub store: Option<String>,
    /// How many worker processes.
    pub processes: u32,
    /// How many increments, and how many patches, each worker makes.
    pub writes: u32,
}

/// The two documents of one demo run; named per run so a demo can be
/// repeated on the same store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoDocuments {
    /// The counter document, `{"value": n}`.
    pub counter: String,
    /// The document every worker patches its own fields into.
    pub shared: String,
}

/// What one worker process did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerReport {
    /// Compare-and-swap attempts that lost to another worker and were retried.
    pub conflicts: u64,
}

/// The field worker `worker` sets on its `write`-th patch.
pub fn field_name(worker: u32, write: u32) -> String {
    format!("w{worker}-{write}")
}

/// Runs the demo: spawns `settings.processes` copies of `exe` as
/// `demo-worker`, waits for them, checks the result and writes a short
/// summary to `out`.
///
/// # Errors
/// [`CliError::Usage`] for a `memory:` store (it cannot be shared between
/// processes) or zero processes or writes; [`CliError::Demo`] when a worker
/// failed or an update was lost; the store's errors.
pub fn run_demo(exe: &Path, settings: &DemoSettings, out: &mut dyn Write) -> Result<(), CliError> {
    if settings.processes == 0 || settings.writes == 0 {
        return Err(CliError::Usage(
            "the demo needs at least one process and one write".to_owned(),
        ));
    }
    let temp;
    let (url, temporary) = match &settings.store {
        Some(url) if url.split_once(':').map(|(scheme, _)| scheme) == Some("memory") => {
            return Err(CliError::Usage(
                "the demo runs several processes, and a memory: store lives in one; \
                 use yaml:DIR or sqlite:FILE, or leave --store out"
                    .to_owned(),
            ))
        }
        Some(url) => (url.clone(), false),
        None => {
            temp = tempfile::Builder::new()
                .prefix("revstore-demo-")
                .tempdir()
                .map_err(|e| CliError::io("create a temporary folder", e))?;
            let file = temp.path().join("demo.sqlite");
            let file = file.to_str().ok_or_else(|| {
                CliError::Usage(format!(
                    "the temporary folder {} is not valid UTF-8; pass --store",
                    temp.path().display()
                ))
            })?;
            (format!("sqlite:{file}"), true)
        }
    };
    let store = open_store(&url)?;
    let docs = create_documents(&store)?;

    let started = Instant::now();
    let mut children = Vec::new();
    let mut failures = Vec::new();
    for worker in 0..settings.processes {
        match spawn_worker(exe, &url, &docs, worker, settings.writes) {
            Ok(child) => children.push((worker, child)),
            Err(e) => failures.push(format!("worker {worker} did not start: {e}")),
        }
    }
    let mut conflicts = 0u64;
    for (worker, child) in children {
        match collect_worker(child) {
            Ok(report) => conflicts += report.conflicts,
            Err(reason) => failures.push(format!("worker {worker} {reason}")),
        }
    }
    let elapsed = started.elapsed();
    if !failures.is_empty() {
        return Err(CliError::Demo(failures.join("; ")));
    }

    let expected = u64::from(settings.processes) * u64::from(settings.writes);
    let found = check(&store, &docs, settings)?;
    let write = |out: &mut dyn Write, text: String| {
        out.write_all(text.as_bytes())
            .map_err(|e| CliError::io("write the summary to stdout", e))
    };
    let place = if temporary { " (temporary)" } else { "" };
    write(
        out,
        format!(
            "revstore demo: {} processes x {} writes each on {url}{place}\n\
             \x20 counter: {} of {expected} increments (read, compare-and-swap, \
             {conflicts} conflicts retried)\n\
             \x20 shared document: {} of {expected} fields (merge patches, no precondition)\n\
             \x20 elapsed: {:.2} s\n",
            settings.processes,
            settings.writes,
            found.counter,
            expected - found.missing.len() as u64,
            elapsed.as_secs_f64(),
        ),
    )?;
    found.verdict(expected)?;
    write(out, "nothing lost\n".to_owned())
}

fn create_documents(store: &Store) -> Result<DemoDocuments, CliError> {
    let run = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let docs = DemoDocuments {
        counter: format!("counter-{}-{run}", std::process::id()),
        shared: format!("shared-{}-{run}", std::process::id()),
    };
    store.create(DEMO_COLLECTION, &docs.counter, json!({"value": 0}))?;
    store.create(DEMO_COLLECTION, &docs.shared, json!({}))?;
    Ok(docs)
}

fn spawn_worker(
    exe: &Path,
    url: &str,
    docs: &DemoDocuments,
    worker: u32,
    writes: u32,
) -> std::io::Result<Child> {
    Command::new(exe)
        .args(["--store", url, "demo-worker", "--counter", &docs.counter])
        .args(["--shared", &docs.shared])
        .args([
            "--worker",
            &worker.to_string(),
            "--writes",
            &writes.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
}

/// Waits for a worker and reads its one-line JSON report.
fn collect_worker(child: Child) -> Result<WorkerReport, String> {
    let output = child
        .wait_with_output()
        .map_err(|e| format!("could not be waited for: {e}"))?;
    if !output.status.success() {
        return Err(format!("failed ({})", output.status));
    }
    let report: Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("printed an unreadable report: {e}"))?;
    let conflicts = report["conflicts"]
        .as_u64()
        .ok_or_else(|| format!("printed a report without conflicts: {report}"))?;
    Ok(WorkerReport { conflicts })
}

/// The worker side of the demo (`revstore demo-worker`).
///
/// # Errors
/// The store's errors; [`CliError::Demo`] when the counter is not a
/// non-negative integer or an increment kept losing for
/// `MAX_INCREMENT_ATTEMPTS` attempts.
pub fn run_worker(
    store: &Store,
    docs: &DemoDocuments,
    worker: u32,
    writes: u32,
) -> Result<WorkerReport, CliError> {
    let mut conflicts = 0;
    for write in 0..writes {
        conflicts += increment(store, &docs.counter)?;
        let patch = Patch::Merge(json!({ field_name(worker, write): write }));
        store.patch(DEMO_COLLECTION, &docs.shared, &patch, Precondition::Any)?;
    }
    Ok(WorkerReport { conflicts })
}

/// Adds one to the counter by compare-and-swap; returns how many attempts
/// lost to another writer.
fn increment(store: &Store, counter: &str) -> Result<u64, CliError> {
    for lost in 0..MAX_INCREMENT_ATTEMPTS {
        let doc = store.get(DEMO_COLLECTION, counter)?.ok_or_else(|| {
            CliError::Demo(format!("the counter {DEMO_COLLECTION}/{counter} is gone"))
        })?;
        let value = doc
            .body
            .get("value")
            .and_then(Value::as_u64)
            .ok_or_else(|| {
                CliError::Demo(format!(
                    "the counter {DEMO_COLLECTION}/{counter} holds no non-negative integer `value`"
                ))
            })?;
        let mut body = Arc::unwrap_or_clone(doc.body);
        body.insert("value".into(), json!(value + 1));
        match store.replace(
            DEMO_COLLECTION,
            counter,
            Value::Object(body),
            Precondition::Revision(doc.revision),
        ) {
            Ok(_) => return Ok(lost),
            Err(Error::Conflict { .. }) => std::thread::yield_now(),
            Err(e) => return Err(e.into()),
        }
    }
    Err(CliError::Demo(format!(
        "an increment of {DEMO_COLLECTION}/{counter} lost {MAX_INCREMENT_ATTEMPTS} times in a row"
    )))
}

/// What the demo found in the store after the workers finished.
#[derive(Debug)]
struct Found {
    counter: u64,
    counter_revision: u64,
    shared_revision: u64,
    missing: Vec<String>,
}

impl Found {
    /// Whether nothing was lost out of `expected` increments and as many
    /// patches: every write must show, each as its own revision.
    fn verdict(&self, expected: u64) -> Result<(), CliError> {
        let mut lost = Vec::new();
        if self.counter != expected || self.counter_revision != expected + 1 {
            lost.push(format!(
                "the counter is {} at revision {}, expected {expected} at revision {}",
                self.counter,
                self.counter_revision,
                expected + 1
            ));
        }
        if !self.missing.is_empty() {
            let shown: Vec<&str> = self.missing.iter().take(10).map(String::as_str).collect();
            let more = if self.missing.len() > shown.len() {
                ", …"
            } else {
                ""
            };
            lost.push(format!(
                "{} of {expected} fields are missing ({}{more})",
                self.missing.len(),
                shown.join(", "),
            ));
        }
        if self.shared_revision != expected + 1 {
            lost.push(format!(
                "the shared document is at revision {}, expected {}",
                self.shared_revision,
                expected + 1
            ));
        }
        if lost.is_empty() {
            Ok(())
        } else {
            Err(CliError::Demo(format!(
                "updates were lost: {}",
                lost.join("; ")
            )))
        }
    }
}

fn check(store: &Store, docs: &DemoDocuments, settings: &DemoSettings) -> Result<Found, CliError> {
    let counter = store.get(DEMO_COLLECTION, &docs.counter)?;
    let (counter, counter_revision) = counter.map_or((0, 0), |doc| {
        (
            doc.body.get("value").and_then(Value::as_u64).unwrap_or(0),
            doc.revision,
        )
    });
    let (shared, shared_revision) = store
        .get(DEMO_COLLECTION, &docs.shared)?
        .map_or((Arc::default(), 0), |doc| (doc.body, doc.revision));
    let mut missing = Vec::new();
    for worker in 0..settings.processes {
        for write in 0..settings.writes {
            let field = field_name(worker, write);
            if shared.get(&field) != Some(&json!(write)) {
                missing.push(field);
            }
        }
    }
    Ok(Found {
        counter,
        counter_revision,
        shared_revision,
        missing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use revstore::MemoryBackend;

    #[test]
    fn workers_in_threads_lose_nothing_on_memory() {
        let store = Store::open(MemoryBackend::new());
        let docs = create_documents(&store).unwrap();
        let settings = DemoSettings {
            store: None,
            processes: 4,
            writes: 50,
        };
        let handles: Vec<_> = (0..settings.processes)
            .map(|worker| {
                let (store, docs) = (store.clone(), docs.clone());
                std::thread::spawn(move || run_worker(&store, &docs, worker, 50).unwrap())
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let found = check(&store, &docs, &settings).unwrap();
        assert_eq!(found.counter, 200);
        assert_eq!(found.counter_revision, 201);
        assert!(found.missing.is_empty());
        assert_eq!(found.shared_revision, 201);
        found.verdict(200).unwrap();
    }

    #[test]
    fn a_lost_update_is_named() {
        let found = Found {
            counter: 7,
            counter_revision: 8,
            shared_revision: 8,
            missing: (0..12).map(|i| field_name(1, i)).collect(),
        };
        let message = found.verdict(8).unwrap_err().to_string();
        assert!(message.contains("the counter is 7 at revision 8, expected 8 at revision 9"));
        assert!(message.contains("12 of 8 fields are missing (w1-0, "));
        assert!(message.contains("w1-9, …"));
        assert!(message.contains("shared document is at revision 8, expected 9"));
        let whole = Found {
            counter: 8,
            counter_revision: 9,
            shared_revision: 9,
            missing: Vec::new(),
        };
        whole.verdict(8).unwrap();
    }

    #[test]
    fn memory_and_empty_runs_are_refused() {
        let exe = Path::new("/nonexistent");
        let mut out = Vec::new();
        let memory = DemoSettings {
            store: Some("memory:".into()),
            processes: 2,
            writes: 2,
        };
        assert!(matches!(
            run_demo(exe, &memory, &mut out),
            Err(CliError::Usage(_))
        ));
        let empty = DemoSettings {
            store: None,
            processes: 0,
            writes: 2,
        };
        assert!(matches!(
            run_demo(exe, &empty, &mut out),
            Err(CliError::Usage(_))
        ));
        assert!(out.is_empty());
    }
}
