//! Worker processes of `revstore bench` (`revstore bench-worker`, hidden),
//! the write loops they share with worker threads, and the parent's side
//! of starting them together and collecting what they did.
//!
//! Protocol: a writer opens its store, prints `ready`, waits until the
//! start file exists (so that all writers start together, after every
//! process is up), runs its operations and prints one JSON line
//! `{"ops","conflicts","retries","start_ns","end_ns"}` (wall-clock
//! nanoseconds, comparable across processes). A raw writer does the same
//! with conditional `UPDATE`s of its own row in a raw SQLite database (no
//! revstore), the multi-process baseline. A lister prints
//! `{"count","ms","peak_before_kib","peak_after_kib"}` (`VmHWM` before
//! and after the listing).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use revstore::{Durability, Error, Patch, Precondition, Store};
use serde_json::{json, Value};

use super::raw::{list_folder, RawFile, RawSqlite};
use super::subject::{body_of_size, Config, Counting, Kind};
use crate::error::CliError;

/// How long a writer waits for the start file.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// What a worker process does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Task {
    /// Merge-patch its own field of the key, without a precondition.
    Patch,
    /// Increment the key's counter by get, then compare-and-swap.
    Cas,
    /// Write a record of its own without revstore: in a raw SQLite
    /// database (revstore's pragmas and table), put the key's row, then
    /// `UPDATE … WHERE revision=?` it; in a raw folder, replace the key's
    /// file as revstore-yaml replaces a document (temp file, fsync,
    /// rename, folder fsync; no fsyncs when relaxed).
    RawUpdate,
    /// List the collection through revstore once.
    List,
    /// List the collection raw (readdir or SELECT) once.
    RawList,
}

/// The options of `revstore bench-worker`.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    /// yaml or sqlite.
    #[arg(long)]
    pub backend: String,
    /// The store's folder (yaml) or file (sqlite).
    #[arg(long)]
    pub path: PathBuf,
    /// full or relaxed.
    #[arg(long, default_value = "full")]
    pub durability: String,
    /// What to do.
    #[arg(long, value_enum)]
    pub task: Task,
    /// The collection.
    #[arg(long, default_value = "bench")]
    pub collection: String,
    /// The document written.
    #[arg(long, default_value = "hot")]
    pub key: String,
    /// How many writes.
    #[arg(long, default_value_t = 0)]
    pub ops: usize,
    /// This writer's number (names its patch field).
    #[arg(long, default_value_t = 0)]
    pub writer: usize,
    /// The file whose appearance starts the writes.
    #[arg(long)]
    pub start_file: Option<PathBuf>,
}

impl WorkerArgs {
    /// The configuration named by `--backend` and `--durability`.
    ///
    /// # Errors
    /// [`CliError::Usage`] for memory or an unknown name.
    pub fn config(&self) -> Result<Config, CliError> {
        let kind = match Kind::parse(&self.backend) {
            Some(Kind::Memory) | None => {
                return Err(CliError::Usage(format!(
                    "bench-worker: --backend is yaml or sqlite, not {:?}",
                    self.backend
                )))
            }
            Some(kind) => kind,
        };
        let durability: Durability = self.durability.parse()?;
        Ok(Config { kind, durability })
    }

    /// The command-line arguments that give these options.
    pub fn to_args(&self) -> Vec<String> {
        let task = match self.task {
            Task::Patch => "patch",
            Task::Cas => "cas",
            Task::RawUpdate => "raw-update",
            Task::List => "list",
            Task::RawList => "raw-list",
        };
        let mut args = vec![
            "bench-worker".to_owned(),
            "--backend".to_owned(),
            self.backend.clone(),
            "--path".to_owned(),
            self.path.display().to_string(),
            "--durability".to_owned(),
            self.durability.clone(),
            "--task".to_owned(),
            task.to_owned(),
            "--collection".to_owned(),
            self.collection.clone(),
            "--key".to_owned(),
            self.key.clone(),
            "--ops".to_owned(),
            self.ops.to_string(),
            "--writer".to_owned(),
            self.writer.to_string(),
        ];
        if let Some(start) = &self.start_file {
            args.push("--start-file".to_owned());
            args.push(start.display().to_string());
        }
        args
    }
}

/// Wall-clock time in nanoseconds since the epoch.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The process's peak resident memory (`VmHWM`) in KiB; 0 where
/// `/proc/self/status` does not say.
pub fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// `ops` merge patches of writer `writer`'s own field of one document,
/// without a precondition (the engine re-applies after a lost race).
///
/// # Errors
/// The store's errors.
pub fn patch_loop(
    store: &Store,
    collection: &str,
    key: &str,
    writer: usize,
    ops: usize,
) -> Result<(), CliError> {
    for i in 0..ops {
        let patch = Patch::Merge(json!({ format!("w{writer}"): i }));
        store.patch(collection, key, &patch, Precondition::Any)?;
    }
    Ok(())
}

/// `ops` increments of the document's `counter`: read, then
/// compare-and-swap on the revision read, again after every conflict,
/// pausing first as the engine's own retries do
/// ([`RetryPolicy::backoff`](revstore::RetryPolicy::backoff)), as a
/// caller's retry loop should. Returns the conflicts.
///
/// # Errors
/// The store's errors other than conflicts; a missing document.
pub fn cas_loop(store: &Store, collection: &str, key: &str, ops: usize) -> Result<u64, CliError> {
    let retry = revstore::RetryPolicy::default();
    let mut conflicts = 0;
    for _ in 0..ops {
        for attempt in 1u32.. {
            if attempt > 1 {
                std::thread::sleep(retry.backoff(attempt));
            }
            let Some(mut doc) = store.get(collection, key)? else {
                return Err(Error::NotFound {
                    key: revstore::Key::new(collection, key)?,
                }
                .into());
            };
            let next = doc.body.get("counter").and_then(Value::as_u64).unwrap_or(0) + 1;
            Arc::make_mut(&mut doc.body).insert("counter".to_owned(), json!(next));
            match store.replace(
                collection,
                key,
                Value::Object(Arc::unwrap_or_clone(doc.body)),
                Precondition::Revision(doc.revision),
            ) {
                Ok(_) => break,
                Err(Error::Conflict { .. }) => conflicts += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(conflicts)
}

/// The file a raw writer of `key` replaces in its folder.
pub fn raw_file_name(key: &str) -> String {
    format!("{key}.yaml")
}

/// `ops` raw conditional updates of one row (`RawSqlite::update`), the
/// baseline of a revstore writer on a key of its own. Returns the misses
/// (an update whose revision check failed), which a writer alone on its
/// row never has: one would mean another writer shares it.
///
/// # Errors
/// SQLite's errors.
pub fn raw_update_loop(
    raw: &mut RawSqlite,
    collection: &str,
    key: &str,
    body: &str,
    ops: usize,
) -> Result<u64, CliError> {
    let mut missed = 0;
    for _ in 0..ops {
        if !raw.update(collection, key, body)? {
            missed += 1;
        }
    }
    Ok(missed)
}

/// `ops` raw replacements of the file `name` (`RawFile::write`), the
/// baseline of a revstore-yaml writer on a key of its own. Returns 0: a
/// file replaced whole has no revision to miss.
///
/// # Errors
/// The file system's errors, naming the file.
pub fn raw_write_loop(
    raw: &RawFile,
    name: &str,
    bytes: &[u8],
    ops: usize,
) -> Result<u64, CliError> {
    for _ in 0..ops {
        raw.write(name, bytes)?;
    }
    Ok(0)
}

/// Runs `revstore bench-worker`, printing its protocol lines to `out`.
///
/// # Errors
/// Bad options, the store's errors, a start file that never appears.
pub fn run(args: &WorkerArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let config = args.config()?;
    let say = |out: &mut dyn Write, text: String| {
        out.write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|e| CliError::io("write to stdout", e))
    };
    match args.task {
        Task::Patch | Task::Cas => {
            let counting = Counting::new(config.open(&args.path)?);
            let store = counting.store();
            say(out, "ready\n".to_owned())?;
            wait_for(args.start_file.as_deref())?;
            let start_ns = now_ns();
            let conflicts = match args.task {
                Task::Cas => cas_loop(&store, &args.collection, &args.key, args.ops)?,
                _ => {
                    patch_loop(&store, &args.collection, &args.key, args.writer, args.ops)?;
                    0
                }
            };
            let end_ns = now_ns();
            let report = json!({
                "ops": args.ops,
                "conflicts": conflicts,
                "retries": counting.lost(),
                "start_ns": start_ns,
                "end_ns": end_ns,
            });
            say(out, format!("{report}\n"))
        }
        Task::RawUpdate => {
            let body = body_of_size(1 << 10).to_string();
            let missed = match config.kind {
                Kind::Sqlite => {
                    let mut raw = RawSqlite::open(&args.path, config.durability)?;
                    raw.poll_for_locks()?;
                    raw.put(&args.collection, &args.key, &body)?;
                    say(out, "ready\n".to_owned())?;
                    wait_for(args.start_file.as_deref())?;
                    let start_ns = now_ns();
                    let missed =
                        raw_update_loop(&mut raw, &args.collection, &args.key, &body, args.ops)?;
                    (start_ns, now_ns(), missed)
                }
                Kind::Yaml => {
                    let raw = RawFile::new(&args.path, config.durability)?;
                    let name = raw_file_name(&args.key);
                    raw.write(&name, body.as_bytes())?;
                    say(out, "ready\n".to_owned())?;
                    wait_for(args.start_file.as_deref())?;
                    let start_ns = now_ns();
                    let missed = raw_write_loop(&raw, &name, body.as_bytes(), args.ops)?;
                    (start_ns, now_ns(), missed)
                }
                Kind::Memory => {
                    return Err(CliError::Usage(
                        "bench-worker: --task raw-update needs --backend sqlite or yaml".to_owned(),
                    ))
                }
            };
            let (start_ns, end_ns, missed) = missed;
            // A writer alone on its row never misses; a miss would mean
            // another writer shares it, and is reported, not hidden.
            let report = json!({
                "ops": args.ops,
                "conflicts": missed,
                "retries": 0,
                "start_ns": start_ns,
                "end_ns": end_ns,
            });
            say(out, format!("{report}\n"))
        }
        Task::List | Task::RawList => {
            let peak_before_kib = peak_rss_kib();
            let started = Instant::now();
            let count = if args.task == Task::List {
                let store = Store::with_options(config.open(&args.path)?, Default::default());
                store.list(&args.collection)?.len()
            } else if config.kind == Kind::Yaml {
                list_folder(&args.path.join(&args.collection))?.len()
            } else {
                RawSqlite::open(&args.path, config.durability)?
                    .list(&args.collection)?
                    .len()
            };
            let ms = started.elapsed().as_secs_f64() * 1e3;
            let report = json!({
                "count": count,
                "ms": ms,
                "peak_before_kib": peak_before_kib,
                "peak_after_kib": peak_rss_kib(),
            });
            say(out, format!("{report}\n"))
        }
    }
}

/// Waits until `start` exists (at once when there is none).
fn wait_for(start: Option<&Path>) -> Result<(), CliError> {
    let Some(start) = start else {
        return Ok(());
    };
    let deadline = Instant::now() + START_TIMEOUT;
    while !start.exists() {
        if Instant::now() > deadline {
            return Err(worker_failed(format!(
                "the start file {} did not appear within {} s",
                start.display(),
                START_TIMEOUT.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    Ok(())
}

/// A worker process that could not be run or failed.
pub fn worker_failed(reason: String) -> CliError {
    CliError::io("run a bench worker", std::io::Error::other(reason))
}

/// A running worker process, seen from the parent.
#[derive(Debug)]
pub struct Spawned {
    child: Child,
    stdout: BufReader<ChildStdout>,
}

impl Spawned {
    /// Starts `exe bench-worker …`.
    ///
    /// # Errors
    /// The process cannot be started.
    pub fn start(exe: &Path, args: &WorkerArgs) -> Result<Spawned, CliError> {
        let mut child = Command::new(exe)
            .args(args.to_args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| worker_failed(format!("{} did not start: {e}", exe.display())))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| worker_failed("no stdout pipe".to_owned()))?;
        Ok(Spawned {
            child,
            stdout: BufReader::new(stdout),
        })
    }

    fn line(&mut self) -> Result<String, CliError> {
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .map_err(|e| worker_failed(format!("reading its output: {e}")))?;
        Ok(line)
    }

    /// Waits for the `ready` line.
    ///
    /// # Errors
    /// The worker exited or printed something else.
    pub fn ready(&mut self) -> Result<(), CliError> {
        let line = self.line()?;
        if line.trim() == "ready" {
            return Ok(());
        }
        let reason = self.failure(line);
        Err(worker_failed(reason))
    }

    /// Waits for the worker's report and its exit.
    ///
    /// # Errors
    /// The worker failed or printed no JSON report.
    pub fn finish(mut self) -> Result<Value, CliError> {
        let line = self.line()?;
        match serde_json::from_str::<Value>(&line) {
            Ok(report) if report.is_object() => {
                let status = self
                    .child
                    .wait()
                    .map_err(|e| worker_failed(format!("waiting for it: {e}")))?;
                if status.success() {
                    Ok(report)
                } else {
                    Err(worker_failed(format!("it exited with {status}")))
                }
            }
            _ => {
                let reason = self.failure(line);
                Err(worker_failed(reason))
            }
        }
    }

    /// What went wrong with a worker that printed `line` unexpectedly.
    fn failure(&mut self, line: String) -> String {
        let _ = self.child.kill();
        let stderr = self
            .child
            .stderr
            .take()
            .and_then(|mut e| {
                let mut text = String::new();
                std::io::Read::read_to_string(&mut e, &mut text).ok()?;
                Some(text)
            })
            .unwrap_or_default();
        let _ = self.child.wait();
        format!(
            "it printed {:?} instead; stderr: {}",
            line.trim(),
            stderr.trim()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_rss_is_read() {
        assert!(peak_rss_kib() > 0);
    }

    #[test]
    fn worker_args_round_trip() {
        #[derive(Debug, clap::Parser)]
        struct Cli {
            #[command(subcommand)]
            command: Sub,
        }
        #[derive(Debug, clap::Subcommand)]
        enum Sub {
            BenchWorker(WorkerArgs),
        }
        for task in [
            Task::Patch,
            Task::Cas,
            Task::RawUpdate,
            Task::List,
            Task::RawList,
        ] {
            let args = WorkerArgs {
                backend: "sqlite".to_owned(),
                path: PathBuf::from("/tmp/x.sqlite"),
                durability: "relaxed".to_owned(),
                task,
                collection: "c".to_owned(),
                key: "k".to_owned(),
                ops: 3,
                writer: 2,
                start_file: Some(PathBuf::from("/tmp/start")),
            };
            let argv = std::iter::once("revstore".to_owned()).chain(args.to_args());
            let parsed = <Cli as clap::Parser>::parse_from(argv);
            let Sub::BenchWorker(back) = parsed.command;
            assert_eq!(back.task, task);
            assert_eq!(back.to_args(), args.to_args());
            assert_eq!(
                back.config().unwrap(),
                Config {
                    kind: Kind::Sqlite,
                    durability: Durability::Relaxed
                }
            );
        }
    }

    #[test]
    fn a_raw_writer_updates_its_own_row_or_file_and_reports() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raw-procs.sqlite");
        let args = WorkerArgs {
            backend: "sqlite".to_owned(),
            path: path.clone(),
            durability: "relaxed".to_owned(),
            task: Task::RawUpdate,
            collection: "c".to_owned(),
            key: "k3".to_owned(),
            ops: 4,
            writer: 3,
            start_file: None,
        };
        let mut out = Vec::new();
        run(&args, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("ready"));
        let report: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
        assert_eq!(report["ops"], 4);
        assert_eq!(report["conflicts"], 0);
        assert!(report["end_ns"].as_u64() >= report["start_ns"].as_u64());
        let raw = RawSqlite::open(&path, Durability::Relaxed).unwrap();
        assert_eq!(raw.list("c").unwrap(), vec![("k3".to_owned(), 5)]);
        // A raw YAML writer replaces a file of its own in the folder.
        let folder = dir.path().join("raw-procs");
        let yaml = WorkerArgs {
            backend: "yaml".to_owned(),
            path: folder.clone(),
            ..args.clone()
        };
        let mut out = Vec::new();
        run(&yaml, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let report: Value = serde_json::from_str(text.lines().nth(1).unwrap()).unwrap();
        assert_eq!(
            (report["ops"].as_u64(), report["conflicts"].as_u64()),
            (Some(4), Some(0))
        );
        assert_eq!(list_folder(&folder).unwrap(), vec!["k3".to_owned()]);
        let written = std::fs::read(folder.join("k3.yaml")).unwrap();
        assert_eq!(written, body_of_size(1 << 10).to_string().into_bytes());
        let memory = WorkerArgs {
            backend: "memory".to_owned(),
            ..args
        };
        assert!(matches!(
            run(&memory, &mut Vec::new()),
            Err(CliError::Usage(_))
        ));
    }

    #[test]
    fn loops_write_and_count() {
        let store = Store::open(revstore::MemoryBackend::new());
        store.create("c", "k", json!({"counter": 0})).unwrap();
        patch_loop(&store, "c", "k", 1, 3).unwrap();
        assert_eq!(cas_loop(&store, "c", "k", 4).unwrap(), 0);
        let doc = store.get("c", "k").unwrap().unwrap();
        assert_eq!(doc.body["counter"], 4);
        assert_eq!(doc.body["w1"], 2);
        assert_eq!(doc.revision, 8);
    }
}
