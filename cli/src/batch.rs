//! `revstore batch`: one JSON request per line in, one JSON answer per line
//! out, over one open store handle.
//!
//! # Requests
//! A JSON object with an `"op"` and the operation's fields; an optional
//! `"id"` (any JSON value) is echoed back in the answer:
//! ```text
//! {"op":"get","collection":"c","name":"n"}
//! {"op":"put","collection":"c","name":"n","body":{…},"create":false,"expect_revision":3}
//! {"op":"patch","collection":"c","name":"n","patch":{…},"json_patch":false,"expect_revision":3}
//! {"op":"delete","collection":"c","name":"n","expect_revision":3}
//! {"op":"list","collection":"c"}
//! {"op":"schema_get","collection":"c"}
//! {"op":"schema_set","collection":"c","schema":{…},"create":false,"expect_revision":3}
//! {"op":"schema_delete","collection":"c","expect_revision":3}
//! {"op":"migrate","collection":"c","strip":false,"batch":100,"resume_after":"n"}
//! {"op":"changes","since":0,"limit":1000}
//! {"op":"last_seq"}
//! ```
//! `create`, `json_patch`, `expect_revision`, `strip`, `batch` (default:
//! the whole collection), `resume_after`, `since` (default 0) and `limit`
//! (default and most [`MAX_CHANGES_PER_ANSWER`]) are optional; `create`
//! and `expect_revision` exclude each other. Unknown fields are refused, so
//! a misspelt precondition never turns into an unconditional write.
//! `changes` never waits: it answers what is committed now.
//!
//! # Answers
//! Success: `{"id":…,"ok":true,…}` with the fields of
//! [`Outcome::to_json`](crate::ops::Outcome::to_json) (`get`, `put` and
//! `patch` answer the document with its `revision` and `body`; `delete` the
//! tombstone's `revision`; `list` the `documents`; `schema_get` and
//! `schema_set` the `revision` and `schema`; `migrate` the report and
//! `resume_after`; `changes` the `changes` and the `next_since` cursor;
//! `last_seq` the `last_seq`).
//! Failure: `{"id":…,"ok":false,"error":{"kind","message","exit_code",…}}`
//! as [`CliError::to_json`] builds it, with structured details for
//! `conflict`, `schema_violation` (`violations`), `invalid_schema`
//! (`problems`) and `compacted` (`requested`, `retained_after`); a line
//! that is not a valid request
//! answers kind `invalid_request` and the session goes on. Blank lines are
//! skipped without an answer. Every answer is flushed before the next line
//! is read.

use std::io::{BufRead, Read, Write};

use revstore::{MigrationMode, Patch, Precondition, Store};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::CliError;
use crate::ops::{execute, Op, MAX_CHANGES_PER_ANSWER};

/// The longest request line read, in bytes. Longer lines are answered with
/// `invalid_request` and skipped, so one bad line cannot exhaust memory.
pub const MAX_LINE_BYTES: usize = 64 << 20;

/// A decoded batch request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The caller's `"id"`, echoed in the answer.
    pub id: Option<Value>,
    /// The operation.
    pub op: Op,
}

/// A line that is not a valid request.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct RequestError {
    /// The `"id"` of the line, when it was a JSON object carrying one, so the
    /// error answer can still be matched to its request.
    pub id: Option<Value>,
    /// What is wrong with the line.
    pub message: String,
}

/// The wire form of an operation; converted to [`Op`] after the checks
/// serde cannot express.
#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
enum WireOp {
    Get {
        collection: String,
        name: String,
    },
    Put {
        collection: String,
        name: String,
        body: Value,
        #[serde(default)]
        create: bool,
        expect_revision: Option<u64>,
    },
    Patch {
        collection: String,
        name: String,
        patch: Value,
        #[serde(default)]
        json_patch: bool,
        expect_revision: Option<u64>,
    },
    Delete {
        collection: String,
        name: String,
        expect_revision: Option<u64>,
    },
    List {
        collection: String,
    },
    SchemaGet {
        collection: String,
    },
    SchemaSet {
        collection: String,
        schema: Value,
        #[serde(default)]
        create: bool,
        expect_revision: Option<u64>,
    },
    SchemaDelete {
        collection: String,
        expect_revision: Option<u64>,
    },
    Migrate {
        collection: String,
        #[serde(default)]
        strip: bool,
        batch: Option<usize>,
        resume_after: Option<String>,
    },
    Changes {
        #[serde(default)]
        since: u64,
        limit: Option<usize>,
    },
    LastSeq {},
}

fn revision_or_any(expect_revision: Option<u64>) -> Precondition {
    expect_revision.map_or(Precondition::Any, Precondition::Revision)
}

/// Decodes one request line. Never panics, whatever the input.
///
/// # Errors
/// [`RequestError`] describing what is wrong: not JSON, not an object, an
/// unknown `op`, a missing, mistyped or unknown field, `create` together
/// with `expect_revision`, a `batch` of 0, or a `limit` outside 1 to
/// [`MAX_CHANGES_PER_ANSWER`].
pub fn decode_request(line: &str) -> Result<Request, RequestError> {
    let fail = |id: Option<Value>, message: String| RequestError { id, message };
    let value: Value =
        serde_json::from_str(line).map_err(|e| fail(None, format!("not JSON: {e}")))?;
    crate::text::check_json_integers(line).map_err(|reason| fail(None, reason))?;
    let Value::Object(mut object) = value else {
        return Err(fail(None, "a request must be a JSON object".to_owned()));
    };
    let id = object.remove("id");
    let wire: WireOp = serde_json::from_value(Value::Object(object))
        .map_err(|e| fail(id.clone(), e.to_string()))?;
    let op = match wire {
        WireOp::Get { collection, name } => Op::Get { collection, name },
        WireOp::Put {
            create: true,
            expect_revision: Some(_),
            ..
        } => {
            return Err(fail(
                id,
                "`create` and `expect_revision` exclude each other".to_owned(),
            ))
        }
        WireOp::Put {
            collection,
            name,
            body,
            create,
            expect_revision,
        } => Op::Put {
            collection,
            name,
            body,
            precondition: if create {
                Precondition::Absent
            } else {
                revision_or_any(expect_revision)
            },
        },
        WireOp::Patch {
            collection,
            name,
            patch,
            json_patch,
            expect_revision,
        } => Op::Patch {
            collection,
            name,
            patch: if json_patch {
                Patch::Json(patch)
            } else {
                Patch::Merge(patch)
            },
            precondition: revision_or_any(expect_revision),
        },
        WireOp::Delete {
            collection,
            name,
            expect_revision,
        } => Op::Delete {
            collection,
            name,
            precondition: revision_or_any(expect_revision),
        },
        WireOp::List { collection } => Op::List { collection },
        WireOp::SchemaGet { collection } => Op::SchemaGet { collection },
        WireOp::SchemaSet {
            create: true,
            expect_revision: Some(_),
            ..
        } => {
            return Err(fail(
                id,
                "`create` and `expect_revision` exclude each other".to_owned(),
            ))
        }
        WireOp::SchemaSet {
            collection,
            schema,
            create,
            expect_revision,
        } => Op::SchemaSet {
            collection,
            schema,
            precondition: if create {
                Precondition::Absent
            } else {
                revision_or_any(expect_revision)
            },
        },
        WireOp::SchemaDelete {
            collection,
            expect_revision,
        } => Op::SchemaDelete {
            collection,
            precondition: revision_or_any(expect_revision),
        },
        WireOp::Migrate { batch: Some(0), .. } => {
            return Err(fail(id, "`batch` must be at least 1".to_owned()))
        }
        WireOp::Migrate {
            collection,
            strip,
            batch,
            resume_after,
        } => Op::Migrate {
            collection,
            mode: if strip {
                MigrationMode::Strip
            } else {
                MigrationMode::Report
            },
            resume_after,
            batch,
        },
        WireOp::Changes { since, limit } => {
            let limit = limit.unwrap_or(MAX_CHANGES_PER_ANSWER);
            if !(1..=MAX_CHANGES_PER_ANSWER).contains(&limit) {
                return Err(fail(
                    id,
                    format!("`limit` must be 1 to {MAX_CHANGES_PER_ANSWER}, not {limit}"),
                ));
            }
            Op::Changes { since, limit }
        }
        WireOp::LastSeq {} => Op::LastSeq,
    };
    Ok(Request { id, op })
}

/// Answers one request line (already stripped of its line ending) as a JSON
/// object. Never fails: every problem becomes an error answer.
pub fn answer_line(store: &Store, line: &str) -> Map<String, Value> {
    let (id, result) = match decode_request(line) {
        Ok(Request { id, op }) => (id, execute(store, op).map(|o| o.to_json())),
        Err(RequestError { id, message }) => (id, Err(CliError::InvalidRequest(message))),
    };
    let mut answer = Map::new();
    if let Some(id) = id {
        answer.insert("id".into(), id);
    }
    match result {
        Ok(fields) => {
            answer.insert("ok".into(), Value::Bool(true));
            answer.extend(fields);
        }
        Err(error) => {
            answer.insert("ok".into(), Value::Bool(false));
            answer.insert("error".into(), error.to_json());
        }
    }
    answer
}

/// Runs a batch session until `input` ends: answers every non-blank line
/// with one JSON line on `output`, flushed at once.
///
/// # Errors
/// [`CliError::Io`] when reading `input` or writing `output` fails; bad
/// requests and failed operations are answered, not returned.
pub fn run(store: &Store, mut input: impl BufRead, mut output: impl Write) -> Result<(), CliError> {
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = Read::take(&mut input, MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(|e| CliError::io("read a request from stdin", e))?;
        if read == 0 {
            return Ok(());
        }
        let answer = if line.len() > MAX_LINE_BYTES && line.last() != Some(&b'\n') {
            skip_rest_of_line(&mut input)?;
            error_answer(format!("the line is longer than {MAX_LINE_BYTES} bytes"))
        } else {
            match std::str::from_utf8(&line) {
                Ok(text) if text.trim().is_empty() => continue,
                Ok(text) => answer_line(store, text.trim_end_matches(['\n', '\r'])),
                Err(e) => error_answer(format!("the line is not UTF-8: {e}")),
            }
        };
        let mut text = Value::Object(answer).to_string();
        text.push('\n');
        output
            .write_all(text.as_bytes())
            .and_then(|()| output.flush())
            .map_err(|e| CliError::io("write an answer to stdout", e))?;
    }
}

fn error_answer(message: String) -> Map<String, Value> {
    let mut answer = Map::new();
    answer.insert("ok".into(), Value::Bool(false));
    answer.insert("error".into(), CliError::InvalidRequest(message).to_json());
    answer
}

fn skip_rest_of_line(input: &mut impl BufRead) -> Result<(), CliError> {
    loop {
        let buf = input
            .fill_buf()
            .map_err(|e| CliError::io("read a request from stdin", e))?;
        if buf.is_empty() {
            return Ok(());
        }
        match buf.iter().position(|&b| b == b'\n') {
            Some(i) => {
                input.consume(i + 1);
                return Ok(());
            }
            None => {
                let n = buf.len();
                input.consume(n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use revstore::MemoryBackend;
    use serde_json::json;

    #[test]
    fn decodes_every_op_with_its_precondition() {
        let r = decode_request(
            r#"{"id":7,"op":"put","collection":"c","name":"n","body":{"a":1},"create":true}"#,
        )
        .unwrap();
        assert_eq!(r.id, Some(json!(7)));
        assert!(matches!(
            r.op,
            Op::Put {
                precondition: Precondition::Absent,
                ..
            }
        ));
        let r = decode_request(
            r#"{"op":"patch","collection":"c","name":"n","patch":[],"json_patch":true,"expect_revision":3}"#,
        )
        .unwrap();
        assert_eq!(r.id, None);
        assert!(matches!(
            r.op,
            Op::Patch {
                patch: Patch::Json(_),
                precondition: Precondition::Revision(3),
                ..
            }
        ));
        let r = decode_request(r#"{"op":"delete","collection":"c","name":"n"}"#).unwrap();
        assert!(matches!(
            r.op,
            Op::Delete {
                precondition: Precondition::Any,
                ..
            }
        ));
        assert!(matches!(
            decode_request(r#"{"op":"list","collection":"c"}"#)
                .unwrap()
                .op,
            Op::List { .. }
        ));
    }

    #[test]
    fn decodes_the_schema_and_feed_ops_with_their_defaults() {
        let op = |line: &str| decode_request(line).unwrap().op;
        assert_eq!(
            op(r#"{"op":"schema_get","collection":"c"}"#),
            Op::SchemaGet {
                collection: "c".into()
            }
        );
        assert_eq!(
            op(r#"{"op":"schema_set","collection":"c","schema":{"attributes":[]},"create":true}"#),
            Op::SchemaSet {
                collection: "c".into(),
                schema: json!({"attributes": []}),
                precondition: Precondition::Absent,
            }
        );
        assert_eq!(
            op(r#"{"op":"schema_delete","collection":"c","expect_revision":2}"#),
            Op::SchemaDelete {
                collection: "c".into(),
                precondition: Precondition::Revision(2),
            }
        );
        assert_eq!(
            op(r#"{"op":"migrate","collection":"c"}"#),
            Op::Migrate {
                collection: "c".into(),
                mode: MigrationMode::Report,
                resume_after: None,
                batch: None,
            }
        );
        assert_eq!(
            op(r#"{"op":"migrate","collection":"c","strip":true,"batch":5,"resume_after":"n"}"#),
            Op::Migrate {
                collection: "c".into(),
                mode: MigrationMode::Strip,
                resume_after: Some("n".into()),
                batch: Some(5),
            }
        );
        assert_eq!(
            op(r#"{"op":"changes"}"#),
            Op::Changes {
                since: 0,
                limit: MAX_CHANGES_PER_ANSWER,
            }
        );
        assert_eq!(
            op(r#"{"op":"changes","since":7,"limit":3}"#),
            Op::Changes { since: 7, limit: 3 }
        );
        assert_eq!(op(r#"{"op":"last_seq"}"#), Op::LastSeq);
    }

    #[test]
    fn malformed_requests_are_errors_that_keep_the_id() {
        for line in [
            "",
            "nope",
            "[1]",
            r#"{"op":"fly"}"#,
            r#"{"op":"get","collection":"c"}"#,
            r#"{"op":"get","collection":1,"name":"n"}"#,
            r#"{"op":"delete","collection":"c","name":"n","expect_revison":3}"#,
            r#"{"op":"put","collection":"c","name":"n","body":{},"create":true,"expect_revision":1}"#,
            r#"{"op":"put","collection":"c","name":"n","body":{},"expect_revision":-1}"#,
            r#"{"op":"schema_set","collection":"c","schema":{},"create":true,"expect_revision":1}"#,
            r#"{"op":"migrate","collection":"c","batch":0}"#,
            r#"{"op":"changes","limit":0}"#,
            r#"{"op":"changes","limit":10001}"#,
            r#"{"op":"last_seq","id2":1}"#,
        ] {
            assert!(decode_request(line).is_err(), "{line}");
        }
        let err = decode_request(r#"{"id":"x","op":"get"}"#).unwrap_err();
        assert_eq!(err.id, Some(json!("x")));
    }

    #[test]
    fn a_session_answers_every_line_and_survives_bad_ones() {
        let store = Store::open(MemoryBackend::new());
        let input = concat!(
            "{\"id\":1,\"op\":\"put\",\"collection\":\"c\",\"name\":\"n\",\"body\":{\"a\":1}}\n",
            "garbage\n",
            "\n",
            "\u{0}\u{1}\n",
            "{\"id\":2,\"op\":\"patch\",\"collection\":\"c\",\"name\":\"n\",\"patch\":{\"b\":2},\"expect_revision\":1}\n",
            "{\"id\":3,\"op\":\"patch\",\"collection\":\"c\",\"name\":\"n\",\"patch\":{\"b\":3},\"expect_revision\":1}",
        );
        let mut bytes = input.as_bytes().to_vec();
        bytes.extend_from_slice(b"\n\xff\xfe\n");
        let mut out = Vec::new();
        run(&store, &bytes[..], &mut out).unwrap();
        let answers: Vec<Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(answers.len(), 6);
        assert_eq!(answers[0]["ok"], true);
        assert_eq!(answers[0]["revision"], 1);
        assert_eq!(answers[1]["error"]["kind"], "invalid_request");
        assert_eq!(answers[1]["error"]["exit_code"], 2);
        assert_eq!(answers[2]["error"]["kind"], "invalid_request");
        assert_eq!(answers[3]["id"], 2);
        assert_eq!(answers[3]["body"], json!({"a": 1, "b": 2}));
        assert_eq!(answers[4]["id"], 3);
        assert_eq!(answers[4]["error"]["kind"], "conflict");
        assert_eq!(
            answers[4]["error"]["actual"],
            json!({"state": "live", "revision": 2})
        );
        assert_eq!(answers[5]["error"]["kind"], "invalid_request");
    }

    #[test]
    fn an_overlong_line_is_answered_and_skipped() {
        let store = Store::open(MemoryBackend::new());
        let mut input = vec![b'x'; MAX_LINE_BYTES + 10];
        input.extend_from_slice(b"\n{\"op\":\"list\",\"collection\":\"c\"}\n");
        let mut out = Vec::new();
        run(&store, &input[..], &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let answers: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(answers.len(), 2);
        assert_eq!(answers[0]["error"]["kind"], "invalid_request");
        assert_eq!(
            answers[1],
            json!({"ok": true, "collection": "c", "documents": []})
        );
    }
}
