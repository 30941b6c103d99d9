//! The tool's error type and the one mapping from errors to exit codes.

use serde_json::{json, Map, Value};

use crate::text::TextError;

/// Exit code of a successful command.
pub const EXIT_OK: u8 = 0;
/// Exit code for anything not covered by a more specific code (I/O, corrupt
/// data, backend failures, a demo that lost an update).
pub const EXIT_FAILURE: u8 = 1;
/// Exit code for invalid input: names, bodies, patches, arguments, store
/// configuration, batch requests.
pub const EXIT_INVALID_INPUT: u8 = 2;
/// Exit code for a failed precondition: a conflict or a failed JSON Patch
/// `test`. Nothing was changed.
pub const EXIT_PRECONDITION_FAILED: u8 = 3;
/// Exit code for a document that does not exist.
pub const EXIT_NOT_FOUND: u8 = 4;
/// Exit code for a change-feed cursor older than the retained history
/// ([`revstore::Error::Compacted`]). It has its own code because, unlike
/// the failures behind exit code 1, it has one prescribed recovery that a
/// script can automate without reading the message: re-list what it
/// mirrors, then resume from `revstore last-seq` taken before listing.
pub const EXIT_COMPACTED: u8 = 5;

/// Everything a `revstore` command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The store refused or failed the operation.
    #[error(transparent)]
    Store(#[from] revstore::Error),
    /// A body or patch given as text does not parse.
    #[error(transparent)]
    Text(#[from] TextError),
    /// A batch line is not a valid request.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The command line is incomplete or contradictory (for example no
    /// store given).
    #[error("{0}")]
    Usage(String),
    /// Reading input or writing output failed.
    #[error("cannot {what}: {source}")]
    Io {
        /// What was being done (`"read the body from stdin"`, …).
        what: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The demo found a lost update or a worker failed.
    #[error("{0}")]
    Demo(String),
}

impl CliError {
    /// Builds a [`CliError::Io`].
    pub fn io(what: impl Into<String>, source: std::io::Error) -> CliError {
        CliError::Io {
            what: what.into(),
            source,
        }
    }

    /// A short, stable name of the error for scripts: the store's
    /// [`revstore::Error::kind`], or `invalid_body`/`invalid_patch`/
    /// `invalid_schema` for text that does not parse, `invalid_request`,
    /// `usage`, `io`, `demo`.
    pub fn kind(&self) -> &'static str {
        match self {
            CliError::Store(e) => e.kind(),
            CliError::Text(e) if e.what == "patch" => "invalid_patch",
            CliError::Text(e) if e.what == "schema" => "invalid_schema",
            CliError::Text(_) => "invalid_body",
            CliError::InvalidRequest(_) => "invalid_request",
            CliError::Usage(_) => "usage",
            CliError::Io { .. } => "io",
            CliError::Demo(_) => "demo",
        }
    }

    /// The process exit code for this error; see [`exit_code`].
    pub fn exit_code(&self) -> u8 {
        exit_code(self)
    }

    /// The error as the JSON object a batch answer carries:
    /// `{"kind", "message", "exit_code"}`, plus the details a program acts
    /// on:
    /// - `conflict`: `"expected"` and `"actual"` (the key's state, e.g.
    ///   `{"state":"live","revision":4}`);
    /// - `schema_violation`: `"schema_revision"` and `"violations"`, every
    ///   one as `{"path","rule","message"}` (`path` a JSON Pointer into the
    ///   body);
    /// - `invalid_schema`: `"problems"`, every one as `{"path","message"}`
    ///   (`path` a JSON Pointer into the schema document, `""` for all of
    ///   it);
    /// - `compacted`: `"requested"` (the cursor given) and
    ///   `"retained_after"` (the oldest cursor still answered).
    pub fn to_json(&self) -> Value {
        use revstore::Error as E;
        let mut out = Map::new();
        out.insert("kind".into(), json!(self.kind()));
        out.insert("message".into(), json!(self.to_string()));
        out.insert("exit_code".into(), json!(self.exit_code()));
        let CliError::Store(error) = self else {
            return Value::Object(out);
        };
        match error {
            E::Conflict {
                expected, actual, ..
            } => {
                out.insert("expected".into(), json!(expected));
                out.insert("actual".into(), json!(actual));
            }
            E::SchemaViolation {
                schema_revision,
                violations,
                ..
            } => {
                out.insert("schema_revision".into(), json!(schema_revision));
                let violations: Vec<Value> = violations
                    .iter()
                    .map(|v| json!({"path": v.path, "rule": v.rule, "message": v.message}))
                    .collect();
                out.insert("violations".into(), Value::Array(violations));
            }
            E::InvalidSchema { problems, .. } => {
                let problems: Vec<Value> = problems
                    .iter()
                    .map(|p| json!({"path": p.path, "message": p.message}))
                    .collect();
                out.insert("problems".into(), Value::Array(problems));
            }
            E::Compacted {
                requested,
                retained_after,
            } => {
                out.insert("requested".into(), json!(requested));
                out.insert("retained_after".into(), json!(retained_after));
            }
            _ => {}
        }
        Value::Object(out)
    }
}

/// The one mapping from errors to exit codes: 2 for invalid input (a schema
/// violation and an invalid schema among it), 3 for a failed precondition,
/// 4 for not found, 5 for a change-feed cursor that fell behind retention,
/// 1 for everything else (including store errors this version does not
/// know).
pub fn exit_code(error: &CliError) -> u8 {
    use revstore::Error as E;
    match error {
        CliError::Store(e) if e.is_invalid_input() => EXIT_INVALID_INPUT,
        CliError::Store(E::Conflict { .. } | E::PatchTestFailed { .. }) => EXIT_PRECONDITION_FAILED,
        CliError::Store(E::NotFound { .. }) => EXIT_NOT_FOUND,
        CliError::Store(E::Compacted { .. }) => EXIT_COMPACTED,
        CliError::Store(_) => EXIT_FAILURE,
        CliError::Text(_) | CliError::InvalidRequest(_) | CliError::Usage(_) => EXIT_INVALID_INPUT,
        CliError::Io { .. } | CliError::Demo(_) => EXIT_FAILURE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use revstore::{Current, Key, Precondition};

    fn key() -> Key {
        Key::new("c", "n").unwrap()
    }

    #[test]
    fn exit_codes_follow_the_error_class() {
        let cases: Vec<(CliError, u8)> = vec![
            (
                revstore::Error::InvalidPatch {
                    key: key(),
                    reason: "x".into(),
                }
                .into(),
                2,
            ),
            (
                revstore::Error::PatchTestFailed {
                    key: key(),
                    path: "/a".into(),
                    reason: "x".into(),
                }
                .into(),
                3,
            ),
            (revstore::Error::NotFound { key: key() }.into(), 4),
            (
                revstore::Error::Corrupt {
                    location: "f".into(),
                    reason: "x".into(),
                }
                .into(),
                1,
            ),
            (CliError::InvalidRequest("x".into()), 2),
            (CliError::Demo("lost".into()), 1),
        ];
        for (error, code) in cases {
            assert_eq!(exit_code(&error), code, "{error}");
        }
    }

    #[test]
    fn conflict_json_carries_both_states() {
        let error: CliError = revstore::Error::Conflict {
            key: key(),
            expected: Precondition::Revision(2),
            actual: Current::Live { revision: 5 },
        }
        .into();
        let v = error.to_json();
        assert_eq!(v["kind"], "conflict");
        assert_eq!(v["exit_code"], 3);
        assert_eq!(v["expected"], json!({"revision": 2}));
        assert_eq!(v["actual"], json!({"state": "live", "revision": 5}));
        assert!(v["message"].as_str().unwrap().contains("c/n"));
    }

    #[test]
    fn schema_and_feed_errors_carry_their_details() {
        use revstore::schema::{SchemaProblem, Violation};
        let violation: CliError = revstore::Error::SchemaViolation {
            key: key(),
            schema_revision: 3,
            violations: vec![
                Violation {
                    path: "/size".into(),
                    rule: "max",
                    message: "11 is above the maximum 10".into(),
                },
                Violation {
                    path: "/colour".into(),
                    rule: "undeclared",
                    message: "not declared".into(),
                },
            ],
        }
        .into();
        let v = violation.to_json();
        assert_eq!(v["kind"], "schema_violation");
        assert_eq!(v["exit_code"], 2);
        assert_eq!(v["schema_revision"], 3);
        assert_eq!(
            v["violations"],
            json!([
                {"path": "/size", "rule": "max", "message": "11 is above the maximum 10"},
                {"path": "/colour", "rule": "undeclared", "message": "not declared"},
            ])
        );
        let message = violation.to_string();
        assert!(
            message.contains("/size") && message.contains("/colour") && !message.contains('\n'),
            "every violation on one line: {message}"
        );

        let invalid: CliError = revstore::Error::InvalidSchema {
            key: Key::new_reserved("_schema", "c").unwrap(),
            problems: vec![SchemaProblem {
                path: String::new(),
                message: "`attributes` is missing".into(),
            }],
        }
        .into();
        let v = invalid.to_json();
        assert_eq!(v["kind"], "invalid_schema");
        assert_eq!(v["exit_code"], 2);
        assert_eq!(
            v["problems"],
            json!([{"path": "", "message": "`attributes` is missing"}])
        );

        let compacted: CliError = revstore::Error::Compacted {
            requested: 2,
            retained_after: 40,
        }
        .into();
        let v = compacted.to_json();
        assert_eq!(v["kind"], "compacted");
        assert_eq!(v["exit_code"], 5);
        assert_eq!(v["requested"], 2);
        assert_eq!(v["retained_after"], 40);

        let text: CliError = TextError {
            what: "schema",
            reason: "x".into(),
        }
        .into();
        assert_eq!(text.kind(), "invalid_schema");
        assert_eq!(text.exit_code(), 2);
        assert_eq!(
            text.to_json().as_object().unwrap().len(),
            3,
            "no details for text that does not parse"
        );
    }
}
