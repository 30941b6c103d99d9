//! The child's side: the protocol lines it prints, and the write loop.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use serde_json::{json, Value};

use super::{
    key_name, SplitMix, CHILD_LIFETIME, CHILD_SEED_ENV, COLLECTION, KEYS, LOCATION_ENV, PREFIX,
};
use crate::{Body, Key, Patch, Precondition, Record, Result, Store};

// ---------------------------------------------------------------- protocol

/// One line of the child's protocol.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Line {
    /// The store is open and the child has read the current state.
    Ready,
    /// The next write, and the state it must produce.
    Intent { name: String, record: Record },
    /// A write was acknowledged with this state.
    Ack { name: String, record: Record },
    /// The child hit an error and is exiting.
    Error(String),
}

impl Line {
    pub(super) fn render(&self) -> String {
        let state = |name: &str, record: &Record| {
            let body = serde_json::to_string(&record.body.as_deref())
                .unwrap_or_else(|_| "null".to_owned());
            format!("{name} {} {body}", record.revision)
        };
        match self {
            Line::Ready => format!("{PREFIX}ready\n"),
            Line::Intent { name, record } => format!("{PREFIX}intent {}\n", state(name, record)),
            Line::Ack { name, record } => format!("{PREFIX}ack {}\n", state(name, record)),
            // One line, whatever the message holds.
            Line::Error(message) => format!("{PREFIX}error {}\n", message.replace('\n', " | ")),
        }
    }

    /// The protocol line in `text` (libtest may have printed before it on
    /// the same line), `None` for other output, `Err` for a garbled line.
    pub(super) fn parse(text: &str) -> std::result::Result<Option<Line>, String> {
        let Some((_, rest)) = text.split_once(PREFIX) else {
            return Ok(None);
        };
        let rest = rest.trim_end_matches(['\n', '\r']);
        let (kind, args) = rest.split_once(' ').unwrap_or((rest, ""));
        let state = || -> std::result::Result<(String, Record), String> {
            let mut parts = args.splitn(3, ' ');
            let (Some(name), Some(revision), Some(body)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return Err(format!(
                    "a {kind} line without name, revision and body: {text:?}"
                ));
            };
            let revision = revision
                .parse()
                .map_err(|e| format!("bad revision in {text:?}: {e}"))?;
            let body: Option<Body> =
                serde_json::from_str(body).map_err(|e| format!("bad body in {text:?}: {e}"))?;
            Ok((
                name.to_owned(),
                Record {
                    revision,
                    body: body.map(std::sync::Arc::new),
                },
            ))
        };
        match kind {
            "ready" => Ok(Some(Line::Ready)),
            "intent" => state().map(|(name, record)| Some(Line::Intent { name, record })),
            "ack" => state().map(|(name, record)| Some(Line::Ack { name, record })),
            "error" => Ok(Some(Line::Error(args.to_owned()))),
            _ => Err(format!("unknown line {text:?}")),
        }
    }
}

/// What a re-executed test needs to act as the crash child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrashChild {
    /// The store location the campaign works on; open the store here.
    pub location: PathBuf,
    /// Varies the child's writes from one child to the next.
    pub seed: u64,
}

impl CrashChild {
    /// `Some` when this process was started by a campaign as its child
    /// (the location variable is set), `None` otherwise.
    pub fn from_env() -> Option<CrashChild> {
        let location = std::env::var_os(LOCATION_ENV)?;
        let seed = std::env::var(CHILD_SEED_ENV)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Some(CrashChild {
            location: PathBuf::from(location),
            seed,
        })
    }
}

/// One write of the child and the state it must leave.
#[derive(Debug, Clone)]
pub(super) enum ChildWrite {
    Patch {
        patch: Patch,
        precondition: Precondition,
    },
    Delete {
        precondition: Precondition,
    },
}

/// Chooses the next write on a key in state `current`, and computes the
/// record it must produce (the child is the only writer while it runs).
pub(super) fn plan_write(
    rng: &mut SplitMix,
    store: &Store,
    key: &Key,
    current: Option<&Record>,
    seed: u64,
    op: u64,
) -> Result<(ChildWrite, Record)> {
    let revision = current.map_or(0, |r| r.revision);
    let live = current.and_then(|r| r.body.as_deref());
    if live.is_some() && rng.one_in(12) {
        let precondition = if rng.one_in(2) {
            Precondition::Revision(revision)
        } else {
            Precondition::Any
        };
        let record = Record {
            revision: revision + 1,
            body: None,
        };
        return Ok((ChildWrite::Delete { precondition }, record));
    }
    let counter = live
        .and_then(|b| b.get("counter"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let mut patch = json!({"counter": counter + 1, "writer": format!("s{seed}-o{op}")});
    match rng.below(8) {
        // Sizes from nothing to a few pages make writes of varying length.
        0 | 1 => patch["pad"] = Value::String("x".repeat(rng.below(6000) as usize)),
        2 => patch["pad"] = Value::Null,
        3 => patch["nested"] = json!({"op": op, "list": [op, seed % 1000]}),
        4 => patch["nested"] = Value::Null,
        _ => {}
    }
    let patch = Patch::Merge(patch);
    let empty = Body::new();
    let (base, precondition) = match live {
        Some(body) if rng.one_in(2) => (body, Precondition::Revision(revision)),
        Some(body) => (body, Precondition::Any),
        None => (&empty, Precondition::Absent),
    };
    let limits = store.options().limits;
    let body = patch.prepare(key, &limits)?.apply(key, base, &limits)?;
    let record = Record {
        revision: revision + 1,
        body: Some(std::sync::Arc::new(body)),
    };
    Ok((
        ChildWrite::Patch {
            patch,
            precondition,
        },
        record,
    ))
}

pub(super) fn run_write(store: &Store, key: &Key, write: &ChildWrite) -> Result<Record> {
    match write {
        ChildWrite::Patch {
            patch,
            precondition,
        } => store
            .patch(key.collection(), key.name(), patch, *precondition)
            .map(|doc| Record {
                revision: doc.revision,
                body: Some(doc.body),
            }),
        ChildWrite::Delete { precondition } => store
            .delete(key.collection(), key.name(), *precondition)
            .map(|revision| Record {
                revision,
                body: None,
            }),
    }
}

/// Prints one protocol line and flushes it; a child whose parent has gone
/// (the pipe is closed) exits.
fn emit(line: &Line) {
    // Straight to the file descriptor: libtest's capture only sees print!.
    let mut out = std::io::stdout().lock();
    if out
        .write_all(line.render().as_bytes())
        .and_then(|()| out.flush())
        .is_err()
    {
        std::process::exit(4);
    }
}

fn fail_child(message: String) -> ! {
    emit(&Line::Error(message));
    std::process::exit(2);
}

/// The child's part: reads the keys' current state, then writes to them in
/// a loop, printing each write's intended state before it and the
/// acknowledged state after it, until killed.
///
/// Never returns: it exits by itself after a minute (a parent that died
/// without killing it), when its stdout is closed, or after printing an
/// `error` line when a read or write fails (the campaign reports it).
pub fn run_crash_child(store: &Store, child: &CrashChild) -> ! {
    let deadline = Instant::now() + CHILD_LIFETIME;
    let mut rng = SplitMix(child.seed);
    let mut keys = Vec::with_capacity(KEYS);
    let mut states = Vec::with_capacity(KEYS);
    for index in 0..KEYS {
        let key = Key::new(COLLECTION, &key_name(index))
            .unwrap_or_else(|e| fail_child(format!("key {index}: {e}")));
        let state = store
            .get_record(key.collection(), key.name())
            .unwrap_or_else(|e| fail_child(format!("reading {key} at start: {e}")));
        keys.push(key);
        states.push(state);
    }
    emit(&Line::Ready);
    for op in 0.. {
        if Instant::now() > deadline {
            std::process::exit(3);
        }
        let index = rng.below(KEYS as u64) as usize;
        let key = &keys[index];
        let (write, expected) =
            plan_write(&mut rng, store, key, states[index].as_ref(), child.seed, op)
                .unwrap_or_else(|e| fail_child(format!("planning a write of {key}: {e}")));
        emit(&Line::Intent {
            name: key.name().to_owned(),
            record: expected,
        });
        let record = run_write(store, key, &write)
            .unwrap_or_else(|e| fail_child(format!("writing {key}: {e}")));
        emit(&Line::Ack {
            name: key.name().to_owned(),
            record: record.clone(),
        });
        states[index] = Some(record);
    }
    std::process::exit(3)
}
