//! Histories: one record per operation, as JSON lines.
//!
//! Every worker (a thread, or a thread of another OS process) appends one
//! [`Record`] per operation it ran: which key, which client, what it asked
//! for, when it asked and when it got the answer (on the system-wide
//! [monotonic clock](super::clock::monotonic_nanos)), and what the answer
//! was. The [checker](super::checker) reads them all back and decides
//! whether some order of the committed writes explains every answer.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{Body, Change, ChangeKind, Current, Error, Patch, Precondition};

/// Who ran an operation: an OS process and a thread index within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Client {
    /// The process id (or any number unique among the processes of a run).
    pub process: u32,
    /// The thread index within the process.
    pub thread: u32,
}

impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "p{}-t{}", self.process, self.thread)
    }
}

/// The operation a record describes, with its arguments as run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Op {
    /// A read of the key's record ([`Store::get_record`](crate::Store::get_record)),
    /// tombstones included.
    Read,
    /// A whole-body write: a create with [`Precondition::Absent`], an
    /// overwrite with [`Precondition::Any`], a compare-and-swap with
    /// [`Precondition::Revision`].
    Replace {
        /// The body written; it carries the op id in its `op` field.
        body: Body,
        /// The precondition given.
        precondition: Precondition,
    },
    /// A merge patch or JSON Patch.
    Patch {
        /// The patch given.
        patch: Patch,
        /// The precondition given.
        precondition: Precondition,
    },
    /// A delete, leaving a tombstone.
    Delete {
        /// The precondition given.
        precondition: Precondition,
    },
}

impl Op {
    /// Whether the operation may change the key.
    pub fn is_write(&self) -> bool {
        !matches!(self, Op::Read)
    }

    /// The precondition of a write (`Any` for a read).
    pub fn precondition(&self) -> Precondition {
        match self {
            Op::Read => Precondition::Any,
            Op::Replace { precondition, .. }
            | Op::Patch { precondition, .. }
            | Op::Delete { precondition } => *precondition,
        }
    }

    /// A short description for messages: `read`, `patch (merge, any state)`, …
    pub fn describe(&self) -> String {
        match self {
            Op::Read => "read".to_owned(),
            Op::Replace { precondition, .. } => format!("replace (expecting {precondition})"),
            Op::Patch {
                patch: Patch::Merge(_),
                precondition,
            } => format!("merge patch (expecting {precondition})"),
            Op::Patch {
                patch: Patch::Json(_),
                precondition,
            } => format!("JSON Patch (expecting {precondition})"),
            Op::Delete { precondition } => format!("delete (expecting {precondition})"),
        }
    }
}

/// What an operation returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    /// Success. For a write: the revision it committed and the new body
    /// (`None` for a delete's tombstone). For a read: a live document.
    Ok {
        /// The revision written or read.
        revision: u64,
        /// The body written or read; `None` for a tombstone.
        body: Option<Body>,
    },
    /// A precondition failed ([`Error::Conflict`]); nothing was written.
    Conflict {
        /// The state the store reported.
        actual: Current,
    },
    /// No live document. A read knows the revision it found: the
    /// tombstone's, or 0 when the key was never written. A write that
    /// failed with [`Error::NotFound`] does not (`None`).
    NotFound {
        /// The revision observed, when known.
        revision: Option<u64>,
    },
    /// A definite error: the operation changed nothing (an invalid patch, a
    /// failed JSON Patch `test`, retries exhausted, …).
    Failed {
        /// [`Error::kind`] of the error.
        kind: String,
        /// The error's message.
        message: String,
    },
    /// A write whose outcome is unknown: it may or may not have committed
    /// (the process was killed, or an I/O error struck while committing).
    Indeterminate {
        /// Why the outcome is unknown.
        message: String,
    },
}

impl Outcome {
    /// The outcome of a write that returned `error`: conflicts and
    /// not-found are observations, I/O and backend errors leave the write's
    /// fate unknown, every other error is definite (nothing was written).
    pub fn of_write_error(error: &Error) -> Outcome {
        match error {
            Error::Conflict { actual, .. } => Outcome::Conflict { actual: *actual },
            Error::NotFound { .. } => Outcome::NotFound { revision: None },
            Error::Io { .. } | Error::Backend { .. } => Outcome::Indeterminate {
                message: error.to_string(),
            },
            other => Outcome::Failed {
                kind: other.kind().to_owned(),
                message: other.to_string(),
            },
        }
    }

    /// The outcome of a read that returned `error`: reads change nothing, so
    /// every error is definite.
    pub fn of_read_error(error: &Error) -> Outcome {
        Outcome::Failed {
            kind: error.kind().to_owned(),
            message: error.to_string(),
        }
    }
}

/// One operation of a history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The collection of the key operated on.
    pub collection: String,
    /// The name of the key operated on.
    pub name: String,
    /// Who ran it.
    pub client: Client,
    /// An id unique across the whole run (`p<pid>-t<thread>-<n>`); every
    /// write puts it in the body's `op` field, so that the write can be
    /// recognised wherever its body is later seen.
    pub op_id: String,
    /// What was asked.
    pub op: Op,
    /// When it was asked (monotonic nanoseconds).
    pub invoke_ns: u64,
    /// When the answer came (monotonic nanoseconds); `None` when it never
    /// came (the process was killed).
    pub return_ns: Option<u64>,
    /// The answer.
    pub outcome: Outcome,
}

impl Record {
    /// `collection/name`, as messages show keys.
    pub fn key_label(&self) -> String {
        format!("{}/{}", self.collection, self.name)
    }
}

/// Where a worker puts the records of the operations it runs.
pub trait Sink: Sync {
    /// Stores one record.
    ///
    /// # Errors
    /// The I/O error that kept the record from being stored.
    fn record(&self, record: Record) -> io::Result<()>;
}

/// A sink that keeps records in memory, for in-process runs.
#[derive(Debug, Default)]
pub struct MemorySink(Mutex<Vec<Record>>);

impl MemorySink {
    /// An empty sink.
    pub fn new() -> MemorySink {
        MemorySink::default()
    }

    /// The records stored so far, in the order they were stored.
    pub fn into_records(self) -> Vec<Record> {
        self.0.into_inner().unwrap_or_else(|p| p.into_inner())
    }
}

impl Sink for MemorySink {
    fn record(&self, record: Record) -> io::Result<()> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(record);
        Ok(())
    }
}

/// Appends records to a file as JSON lines.
///
/// # Guarantees
/// Each record is encoded first and then written with one `write` call of
/// the whole line, newline included, on a file opened for appending, so
/// records of concurrent threads never interleave, and a process killed
/// mid-record leaves at most one incomplete last line (which
/// [`read_history`] skips). Records reach the operating system before
/// [`Sink::record`] returns.
#[derive(Debug)]
pub struct HistoryWriter {
    path: PathBuf,
    file: Mutex<File>,
}

impl HistoryWriter {
    /// Creates (or appends to) a history file.
    ///
    /// # Errors
    /// The I/O error opening the file.
    pub fn create(path: impl Into<PathBuf>) -> io::Result<HistoryWriter> {
        let path = path.into();
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(HistoryWriter {
            path,
            file: Mutex::new(file),
        })
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends any serializable value as one JSON line, with the same
    /// guarantees as records (one `write` per line): for the other line
    /// files of a run, such as a consumer's [`FeedRecord`]s.
    ///
    /// # Errors
    /// The encoding or I/O error.
    pub fn append<T: Serialize>(&self, value: &T) -> io::Result<()> {
        let mut line = serde_json::to_vec(value).map_err(io::Error::other)?;
        line.push(b'\n');
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        file.write_all(&line)?;
        file.flush()
    }
}

impl Sink for HistoryWriter {
    fn record(&self, record: Record) -> io::Result<()> {
        self.append(&record)
    }
}

/// One change of the feed as a consumer received it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedRecord {
    /// The change's store-wide sequence number.
    pub seq: u64,
    /// The collection of the key changed.
    pub collection: String,
    /// The name of the key changed.
    pub name: String,
    /// The revision the change produced.
    pub revision: u64,
    /// What the change did.
    pub kind: ChangeKind,
    /// The op id of the read of the key the consumer made right after
    /// receiving the change (a [`Op::Read`] record of the history), if it
    /// made one: that read must see this revision or a newer one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read: Option<String>,
}

impl FeedRecord {
    /// The record of `change`, without a read.
    pub fn of(change: &Change) -> FeedRecord {
        FeedRecord {
            seq: change.seq,
            collection: change.key.collection().to_owned(),
            name: change.key.name().to_owned(),
            revision: change.revision,
            kind: change.kind,
            read: None,
        }
    }

    /// `collection/name`, as messages show keys.
    pub fn key_label(&self) -> String {
        format!("{}/{}", self.collection, self.name)
    }
}

/// The cursor a feed consumer started from, and when it was taken: the
/// window of the [`last_seq`](crate::Store::last_seq) call that answered it,
/// on the [monotonic clock](super::clock::monotonic_nanos).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedCursor {
    /// The seq the consumer resumed after.
    pub seq: u64,
    /// When the call that answered it was made.
    pub invoke_ns: u64,
    /// When it returned.
    pub return_ns: u64,
}

/// A history file that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The file could not be opened or read.
    #[error("cannot read history {path}: {source}", path = .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// A complete line is not a record.
    #[error("history {path} line {line} is not a record: {source}", path = .path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// The decoder's error.
        source: serde_json::Error,
    },
}

/// Reads a history file written by [`HistoryWriter`].
///
/// A last line without its newline is the record a killed process was
/// writing; it is skipped. Every other line must be a record.
///
/// # Errors
/// [`HistoryError`] naming the file (and line) at fault.
pub fn read_history(path: &Path) -> Result<Vec<Record>, HistoryError> {
    read_lines(path)
}

/// Reads a file of JSON lines written by [`HistoryWriter`] (records or
/// [`HistoryWriter::append`]ed values), with the rules of [`read_history`].
///
/// # Errors
/// [`HistoryError`] naming the file (and line) at fault.
pub fn read_lines<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>, HistoryError> {
    let io_error = |source| HistoryError::Io {
        path: path.to_owned(),
        source,
    };
    let mut reader = BufReader::new(File::open(path).map_err(io_error)?);
    let mut records = Vec::new();
    let mut line = String::new();
    for number in 1.. {
        line.clear();
        if reader.read_line(&mut line).map_err(io_error)? == 0 {
            break;
        }
        if !line.ends_with('\n') {
            break;
        }
        if line.trim().is_empty() {
            continue;
        }
        let record = serde_json::from_str(&line).map_err(|source| HistoryError::Parse {
            path: path.to_owned(),
            line: number,
            source,
        })?;
        records.push(record);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample(n: u64) -> Record {
        Record {
            collection: "hist".into(),
            name: "k0".into(),
            client: Client {
                process: 7,
                thread: 1,
            },
            op_id: format!("p7-t1-{n}"),
            op: Op::Patch {
                patch: Patch::Merge(json!({"op": format!("p7-t1-{n}"), "f1": 3})),
                precondition: Precondition::Revision(n),
            },
            invoke_ns: 100 + n,
            return_ns: Some(200 + n),
            outcome: Outcome::Conflict {
                actual: Current::Deleted { revision: n + 1 },
            },
        }
    }

    /// A scratch file path (the root crate has no tempfile dev-dependency).
    fn scratch(tag: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!(
            "revstore-history-{}-{tag}.jsonl",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&path);
        path
    }

    #[test]
    fn records_round_trip_through_a_file_and_a_torn_tail_is_skipped() {
        let path = scratch("round-trip");
        let writer = HistoryWriter::create(&path).unwrap();
        writer.record(sample(1)).unwrap();
        writer.record(sample(2)).unwrap();
        // A killed writer leaves a partial line.
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(br#"{"collection":"hist","na"#).unwrap();
        let back = read_history(&path).unwrap();
        assert_eq!(back, vec![sample(1), sample(2)]);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_bad_complete_line_names_file_and_line() {
        let path = scratch("bad-line");
        let line = serde_json::to_string(&sample(1)).unwrap();
        std::fs::write(&path, format!("{line}\nnot json\n")).unwrap();
        match read_history(&path) {
            Err(HistoryError::Parse {
                line: 2, path: p, ..
            }) => assert_eq!(p, path),
            other => panic!("{other:?}"),
        }
        std::fs::remove_file(&path).unwrap();
    }
}
