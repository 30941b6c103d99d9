//! A long-lived handle answering commands one at a time: the `serve` mode
//! of `revstore-worker` (JSON lines on stdin, one [`Outcome`] line per
//! command on stdout), and the same commands answered in-process.

use std::io::{self, BufRead, Write};
use std::time::Duration;

use revstore::testkit::history::{Op, Outcome};
use revstore::testkit::workload::execute;
use revstore::{Precondition, Store};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::worker::Worker;

/// One command for a long-lived handle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    /// A read or write of a document.
    Op {
        /// The document's collection.
        collection: String,
        /// The document's name.
        name: String,
        /// What to do.
        op: Op,
    },
    /// [`Store::set_schema`] without precondition.
    SetSchema {
        /// The collection.
        collection: String,
        /// The schema document.
        schema: Value,
    },
    /// [`Store::delete_schema`] without precondition.
    DeleteSchema {
        /// The collection.
        collection: String,
    },
}

/// Runs one command on `store`; errors become outcomes, as in histories.
pub fn answer(store: &Store, command: &Command) -> Outcome {
    match command {
        Command::Op {
            collection,
            name,
            op,
        } => execute(store, collection, name, op),
        Command::SetSchema { collection, schema } => {
            match store.set_schema(collection, schema.clone(), Precondition::Any) {
                Ok(doc) => Outcome::Ok {
                    revision: doc.revision,
                    body: Some(std::sync::Arc::unwrap_or_clone(doc.body)),
                },
                Err(e) => Outcome::of_write_error(&e),
            }
        }
        Command::DeleteSchema { collection } => {
            match store.delete_schema(collection, Precondition::Any) {
                Ok(revision) => Outcome::Ok {
                    revision,
                    body: None,
                },
                Err(e) => Outcome::of_write_error(&e),
            }
        }
    }
}

/// Answers every command line of `input` on `output`, one JSON line each,
/// flushed at once, until `input` ends; a line that is not a command is
/// answered with a `bad_command` failure. Returns how many it answered.
///
/// # Errors
/// The I/O error reading or writing.
pub fn serve(store: &Store, input: impl BufRead, mut output: impl Write) -> io::Result<usize> {
    let mut answered = 0;
    for line in input.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let outcome = match serde_json::from_str::<Command>(&line) {
            Ok(command) => answer(store, &command),
            Err(e) => Outcome::Failed {
                kind: "bad_command".to_owned(),
                message: e.to_string(),
            },
        };
        let mut text = serde_json::to_vec(&outcome).map_err(io::Error::other)?;
        text.push(b'\n');
        output.write_all(&text)?;
        output.flush()?;
        answered += 1;
    }
    Ok(answered)
}

/// Something that answers commands: a handle in this process, or a
/// `serve` worker process holding its own.
pub trait Session {
    /// Runs one command and returns its outcome.
    fn call(&mut self, command: &Command) -> Outcome;
}

impl Session for Store {
    fn call(&mut self, command: &Command) -> Outcome {
        answer(self, command)
    }
}

impl Session for Worker {
    /// # Panics
    /// When the worker does not answer within [`WAIT`](crate::worker::WAIT),
    /// or answers something that is not an outcome.
    fn call(&mut self, command: &Command) -> Outcome {
        let line = serde_json::to_string(command).expect("commands serialize");
        self.send(&line);
        let answer = self.recv(Duration::from_secs(30));
        serde_json::from_str(&answer).unwrap_or_else(|e| panic!("bad answer {answer:?}: {e}"))
    }
}
