//! Check the schema checker: writes that satisfy the schema current at
//! their commit pass (ratcheting included); a write committed under a
//! schema that refuses it, and a refusal no schema explains, are caught.

use serde_json::{json, Value};

use super::*;
use crate::testkit::history::{Client, FeedRecord};
use crate::{ChangeKind, Patch, Precondition};

fn body(v: Value) -> Body {
    v.as_object().cloned().unwrap()
}

fn record(collection: &str, id: &str, op: Op, at: (u64, u64), outcome: Outcome) -> Record {
    Record {
        collection: collection.into(),
        name: if collection == "_schema" {
            "assets"
        } else {
            "a"
        }
        .into(),
        client: Client {
            process: 1,
            thread: 0,
        },
        op_id: id.into(),
        op,
        invoke_ns: at.0,
        return_ns: Some(at.1),
        outcome,
    }
}

/// A schema allowing `colour` to be one of `colours`, set at `rev`.
fn set_schema(id: &str, colours: &[&str], rev: u64, at: (u64, u64)) -> Record {
    let schema = body(json!({"attributes": [
        {"name": "op", "type": "string"},
        {"name": "colour", "type": "enum", "values": colours},
    ]}));
    record(
        "_schema",
        id,
        Op::Replace {
            body: schema.clone(),
            precondition: Precondition::Any,
        },
        at,
        Outcome::Ok {
            revision: rev,
            body: Some(schema),
        },
    )
}

/// A merge patch of `assets/a` setting `op` and `colour`; `result` is the
/// body after it, committed at `rev` (or refused when `rev` is 0).
fn patch(id: &str, colour: &str, rev: u64, at: (u64, u64), result: Value) -> Record {
    let op = Op::Patch {
        patch: Patch::Merge(json!({"op": id, "colour": colour})),
        precondition: Precondition::Any,
    };
    let outcome = if rev == 0 {
        Outcome::Failed {
            kind: "schema_violation".into(),
            message: "refused".into(),
        }
    } else {
        Outcome::Ok {
            revision: rev,
            body: Some(body(result)),
        }
    };
    record("assets", id, op, at, outcome)
}

fn change(seq: u64, collection: &str, revision: u64, kind: ChangeKind) -> FeedRecord {
    FeedRecord {
        seq,
        collection: collection.into(),
        name: if collection == "_schema" {
            "assets"
        } else {
            "a"
        }
        .into(),
        revision,
        kind,
        read: None,
    }
}

/// A document created before any schema; schema 1 allows red; an update
/// to red; schema 2 allows only blue; a patch that leaves red unchanged
/// (ratcheting: accepted).
fn history() -> (Vec<Record>, Vec<FeedRecord>) {
    let records = vec![
        patch(
            "w1",
            "green",
            1,
            (0, 10),
            json!({"op": "w1", "colour": "green"}),
        ),
        set_schema("s1", &["red"], 1, (20, 30)),
        patch(
            "w2",
            "red",
            2,
            (40, 50),
            json!({"op": "w2", "colour": "red"}),
        ),
        set_schema("s2", &["blue"], 2, (60, 70)),
        patch(
            "w3",
            "red",
            3,
            (80, 90),
            json!({"op": "w3", "colour": "red"}),
        ),
    ];
    let feed = vec![
        change(1, "assets", 1, ChangeKind::Created),
        change(2, "_schema", 1, ChangeKind::Created),
        change(3, "assets", 2, ChangeKind::Updated),
        change(4, "_schema", 2, ChangeKind::Updated),
        change(5, "assets", 3, ChangeKind::Updated),
    ];
    (records, feed)
}

#[test]
fn writes_that_satisfy_the_schema_current_at_their_commit_pass() {
    let (records, feed) = history();
    let summary = check_schema(&records, &feed).unwrap();
    assert_eq!(summary.validated, 2, "{summary:?}");
    assert_eq!(summary.unchecked, 1, "{summary:?}");
    assert_eq!(summary.schema_changes, 2, "{summary:?}");
    assert_eq!(summary.schema_revisions_used, 2, "{summary:?}");
}

#[test]
fn a_write_committed_under_a_schema_that_refuses_it_is_caught() {
    let (mut records, mut feed) = history();
    records.push(patch(
        "w4",
        "green",
        4,
        (100, 110),
        json!({"op": "w4", "colour": "green"}),
    ));
    feed.push(change(6, "assets", 4, ChangeKind::Updated));
    let v = check_schema(&records, &feed).unwrap_err();
    assert_eq!(v.kind, ViolationKind::Schema, "{v}");
    assert!(v.message.contains("op w4"), "{v}");
    assert!(v.message.contains("schema revision 2"), "{v}");
}

#[test]
fn the_feed_order_decides_which_schema_was_current() {
    // w2 sets red: fine under schema 1, refused by schema 2. Had it
    // committed after schema 2 (seqs swapped), it would break it.
    let (records, mut feed) = history();
    feed[2].seq = 4;
    feed[3].seq = 3;
    feed.swap(2, 3);
    let v = check_schema(&records, &feed).unwrap_err();
    assert_eq!(v.kind, ViolationKind::Schema, "{v}");
    assert!(v.message.contains("op w2"), "{v}");
}

#[test]
fn a_refusal_must_be_explained_by_a_schema_current_while_it_ran() {
    let (mut records, feed) = history();
    // Green is refused by both schemas: explained.
    records.push(patch("x1", "green", 0, (95, 99), json!({})));
    // Blue is allowed by schema 2, the only one current after 70: a
    // refusal then is a false one.
    let summary = check_schema(&records, &feed).unwrap();
    assert_eq!(summary.refusals, 1);
    records.push(patch("x2", "blue", 0, (95, 99), json!({})));
    let v = check_schema(&records, &feed).unwrap_err();
    assert_eq!(v.kind, ViolationKind::Schema, "{v}");
    assert!(v.message.contains("op x2"), "{v}");
    // While schema 1 may still have been current, blue is refused by it.
    records.pop();
    records.push(patch("x3", "blue", 0, (55, 65), json!({})));
    check_schema(&records, &feed).unwrap();
}

#[test]
fn a_feed_revision_the_history_does_not_know_is_reported() {
    let (records, mut feed) = history();
    feed.push(change(6, "assets", 7, ChangeKind::Updated));
    let v = check_schema(&records, &feed).unwrap_err();
    assert_eq!(v.kind, ViolationKind::Feed, "{v}");
}
