//! Check the checker: hand-made histories, good and bad.

use serde_json::{json, Value};

use super::*;
use crate::testkit::history::Client;
use crate::{Current, Patch, Precondition};

/// Builds histories on the key `hist/k0` with terse helpers. Times are
/// plain numbers; op ids are given by the test.
#[derive(Default)]
struct H(Vec<Record>);

fn body(v: Value) -> Body {
    match v {
        Value::Object(b) => b,
        other => panic!("not a body: {other}"),
    }
}

impl H {
    fn push(&mut self, id: &str, op: Op, at: (u64, u64), outcome: Outcome) -> &mut Self {
        let thread = self.0.len() as u32;
        self.0.push(Record {
            collection: "hist".into(),
            name: "k0".into(),
            client: Client { process: 1, thread },
            op_id: id.into(),
            op,
            invoke_ns: at.0,
            return_ns: Some(at.1),
            outcome,
        });
        self
    }

    fn replace(&mut self, id: &str, pre: Precondition, at: (u64, u64), rev: u64) -> &mut Self {
        let b = body(json!({"op": id}));
        let op = Op::Replace {
            body: b.clone(),
            precondition: pre,
        };
        self.push(
            id,
            op,
            at,
            Outcome::Ok {
                revision: rev,
                body: Some(b),
            },
        )
    }

    fn create(&mut self, id: &str, at: (u64, u64), rev: u64) -> &mut Self {
        self.replace(id, Precondition::Absent, at, rev)
    }

    /// A merge patch setting `op` and `field`; `result` is the body the
    /// store answered.
    fn merge(
        &mut self,
        id: &str,
        field: &str,
        at: (u64, u64),
        rev: u64,
        result: Value,
    ) -> &mut Self {
        let op = Op::Patch {
            patch: Patch::Merge(json!({"op": id, field: 1})),
            precondition: Precondition::Any,
        };
        self.push(
            id,
            op,
            at,
            Outcome::Ok {
                revision: rev,
                body: Some(body(result)),
            },
        )
    }

    fn delete(&mut self, id: &str, pre: Precondition, at: (u64, u64), rev: u64) -> &mut Self {
        self.push(
            id,
            Op::Delete { precondition: pre },
            at,
            Outcome::Ok {
                revision: rev,
                body: None,
            },
        )
    }

    fn read(&mut self, id: &str, at: (u64, u64), rev: u64, seen: Option<Value>) -> &mut Self {
        let outcome = match seen {
            Some(v) => Outcome::Ok {
                revision: rev,
                body: Some(body(v)),
            },
            None => Outcome::NotFound {
                revision: Some(rev),
            },
        };
        self.push(id, Op::Read, at, outcome)
    }

    fn check(&self) -> Result<Summary, Violation> {
        check(&self.0)
    }

    fn fails(&self, kind: ViolationKind) -> Violation {
        match self.check() {
            Err(v) => {
                // Shown with --nocapture, to review how readable messages are.
                eprintln!("{v}\n");
                assert_eq!(v.kind, kind, "{v}");
                assert!(v.key == "hist/k0", "{v}");
                v
            }
            Ok(s) => panic!("expected {kind:?}, the history passed: {s}"),
        }
    }
}

#[test]
fn a_sequential_history_with_delete_and_recreate_passes() {
    let s = H::default()
        .read("r0", (1, 2), 0, None)
        .create("c1", (3, 4), 1)
        .merge("m2", "a", (5, 6), 2, json!({"op": "m2", "a": 1}))
        .read("r1", (7, 8), 2, Some(json!({"op": "m2", "a": 1})))
        .replace("x3", Precondition::Revision(2), (9, 10), 3)
        .delete("d4", Precondition::Revision(3), (11, 12), 4)
        .read("r2", (13, 14), 4, None)
        .create("c5", (15, 16), 5)
        .read("r3", (17, 18), 5, Some(json!({"op": "c5"})))
        .check()
        .unwrap();
    assert_eq!(s.committed, 5);
    assert_eq!(s.reads, 4);
    assert_eq!(s.keys["hist/k0"], 5);
}

#[test]
fn overlapping_writes_may_commit_in_either_order() {
    // m2 was invoked first but committed second: fine, they overlap. The
    // read overlapping both may see either.
    H::default()
        .create("c1", (0, 1), 1)
        .merge("m2", "a", (10, 40), 3, json!({"op": "m2", "b": 1, "a": 1}))
        .merge("m3", "b", (20, 30), 2, json!({"op": "m3", "b": 1}))
        .read("r", (25, 35), 2, Some(json!({"op": "m3", "b": 1})))
        .check()
        .unwrap();
}

#[test]
fn conflicts_and_failures_that_some_state_explains_pass() {
    let mut h = H::default();
    h.create("c1", (0, 1), 1)
        .merge("m2", "a", (10, 20), 2, json!({"op": "m2", "a": 1}));
    h.push(
        "cas",
        Op::Replace {
            body: body(json!({"op": "cas"})),
            precondition: Precondition::Revision(1),
        },
        (15, 25),
        Outcome::Conflict {
            actual: Current::Live { revision: 2 },
        },
    );
    h.push(
        "t",
        Op::Patch {
            patch: Patch::Json(json!([{"op": "test", "path": "/op", "value": "c1"}])),
            precondition: Precondition::Any,
        },
        (30, 40),
        Outcome::Failed {
            kind: "patch_test_failed".into(),
            message: "test failed".into(),
        },
    );
    h.delete("d3", Precondition::Any, (50, 60), 3);
    h.push(
        "nf",
        Op::Delete {
            precondition: Precondition::Any,
        },
        (70, 80),
        Outcome::NotFound { revision: None },
    );
    let s = h.check().unwrap();
    assert_eq!((s.conflicts, s.not_found, s.committed), (1, 1, 3));
}

#[test]
fn an_indeterminate_write_seen_later_is_part_of_the_chain() {
    let mut h = H::default();
    h.create("c1", (0, 1), 1);
    h.push(
        "lost-reply",
        Op::Patch {
            patch: Patch::Merge(json!({"op": "lost-reply", "a": 1})),
            precondition: Precondition::Any,
        },
        (2, 3),
        Outcome::Indeterminate {
            message: "killed".into(),
        },
    );
    h.read("r", (4, 5), 2, Some(json!({"op": "lost-reply", "a": 1})));
    h.check().unwrap();
}

#[test]
fn an_unseen_indeterminate_write_may_fill_one_gap() {
    let mut h = H::default();
    h.create("c1", (0, 1), 1);
    h.push(
        "maybe",
        Op::Delete {
            precondition: Precondition::Any,
        },
        (2, 3),
        Outcome::Indeterminate {
            message: "I/O error".into(),
        },
    );
    h.read("r", (4, 5), 2, None);
    h.check().unwrap();
    // ... but not two.
    h.read("r2", (6, 7), 3, None);
    h.fails(ViolationKind::MissingRevision);
}

#[test]
fn a_duplicate_revision_is_a_lost_update() {
    let v = H::default()
        .create("c1", (0, 1), 1)
        .merge("m2", "a", (10, 20), 2, json!({"op": "m2", "a": 1}))
        .merge("m3", "b", (10, 20), 2, json!({"op": "m3", "b": 1}))
        .fails(ViolationKind::DuplicateRevision);
    assert!(v.message.contains("m2") && v.message.contains("m3"), "{v}");
    assert!(v.message.contains("revision 2"), "{v}");
}

#[test]
fn a_gap_in_the_revisions_is_flagged() {
    let v = H::default()
        .create("c1", (0, 1), 1)
        .replace("x3", Precondition::Any, (2, 3), 3)
        .fails(ViolationKind::MissingRevision);
    assert!(v.message.contains("(2)"), "{v}");
}

#[test]
fn a_stale_read_is_flagged() {
    // r began after m2 returned, yet saw revision 1.
    let v = H::default()
        .create("c1", (0, 1), 1)
        .merge("m2", "a", (10, 20), 2, json!({"op": "m2", "a": 1}))
        .read("r", (30, 31), 1, Some(json!({"op": "c1"})))
        .merge("m3", "b", (40, 50), 3, json!({"op": "m3", "a": 1, "b": 1}))
        .fails(ViolationKind::RealTime);
    assert!(
        v.message.contains("revision 2") && v.message.contains("op r "),
        "{v}"
    );
}

#[test]
fn a_stale_final_read_is_flagged() {
    H::default()
        .create("c1", (0, 1), 1)
        .merge("m2", "a", (10, 20), 2, json!({"op": "m2", "a": 1}))
        .read("r", (30, 31), 1, Some(json!({"op": "c1"})))
        .fails(ViolationKind::FinalState);
}

#[test]
fn a_read_from_the_future_is_flagged() {
    // r returned before m2 was even invoked, yet saw its revision.
    let v = H::default()
        .create("c1", (0, 1), 1)
        .read("r", (2, 3), 2, Some(json!({"op": "m2", "a": 1})))
        .merge("m2", "a", (10, 20), 2, json!({"op": "m2", "a": 1}))
        .fails(ViolationKind::RealTime);
    assert!(
        v.message.contains("op m2") && v.message.contains("op r "),
        "{v}"
    );
}

#[test]
fn a_lost_write_is_flagged_by_replay() {
    // m3 committed revision 3 on top of revision 1's body: m2's field is gone.
    let v = H::default()
        .create("c1", (0, 1), 1)
        .merge("m2", "a", (10, 20), 2, json!({"op": "m2", "a": 1}))
        .merge("m3", "b", (30, 40), 3, json!({"op": "m3", "b": 1}))
        .fails(ViolationKind::Replay);
    assert!(
        v.message.contains("op m3") && v.message.contains("revision 3"),
        "{v}"
    );
}

#[test]
fn a_read_of_a_body_differing_from_replay_is_flagged() {
    H::default()
        .create("c1", (0, 1), 1)
        .merge("m2", "a", (10, 20), 2, json!({"op": "m2", "a": 1}))
        .read("r", (30, 40), 2, Some(json!({"op": "m2", "a": 2})))
        .fails(ViolationKind::Replay);
}

#[test]
fn a_cas_committed_on_the_wrong_base_is_flagged() {
    let v = H::default()
        .create("c1", (0, 1), 1)
        .merge("m2", "a", (10, 20), 2, json!({"op": "m2", "a": 1}))
        .replace("cas", Precondition::Revision(1), (30, 40), 3)
        .fails(ViolationKind::Replay);
    assert!(
        v.message.contains("op cas") && v.message.contains("conflict"),
        "{v}"
    );
}

#[test]
fn a_create_over_a_live_document_is_flagged() {
    H::default()
        .create("c1", (0, 1), 1)
        .create("c2", (2, 3), 2)
        .fails(ViolationKind::Replay);
}

#[test]
fn writes_committed_against_real_time_order_are_flagged() {
    // `early` returned before `late` was invoked, yet has the later revision.
    let v = H::default()
        .replace("late", Precondition::Any, (50, 60), 1)
        .replace("early", Precondition::Any, (10, 20), 2)
        .fails(ViolationKind::RealTime);
    assert!(
        v.message.contains("revision 2") && v.message.contains("op late"),
        "{v}"
    );
}

#[test]
fn a_read_labelled_with_the_wrong_revision_is_flagged() {
    let v = H::default()
        .create("c1", (0, 1), 1)
        .merge("m2", "a", (10, 20), 2, json!({"op": "m2", "a": 1}))
        .read("r", (30, 40), 2, Some(json!({"op": "c1"})))
        .fails(ViolationKind::WrongWriter);
    assert!(
        v.message.contains("op c1") && v.message.contains("op m2"),
        "{v}"
    );
}

#[test]
fn the_body_of_a_refused_write_seen_later_is_flagged() {
    let mut h = H::default();
    h.create("c1", (0, 1), 1);
    h.push(
        "refused",
        Op::Replace {
            body: body(json!({"op": "refused"})),
            precondition: Precondition::Revision(7),
        },
        (2, 3),
        Outcome::Conflict {
            actual: Current::Live { revision: 1 },
        },
    );
    h.read("r", (4, 5), 2, Some(json!({"op": "refused"})));
    let v = h.fails(ViolationKind::WrongWriter);
    assert!(v.message.contains("never committed"), "{v}");
}

#[test]
fn a_conflict_whose_precondition_held_is_flagged() {
    let mut h = H::default();
    h.create("c1", (0, 1), 1);
    h.push(
        "cas",
        Op::Delete {
            precondition: Precondition::Revision(1),
        },
        (2, 3),
        Outcome::Conflict {
            actual: Current::Live { revision: 1 },
        },
    );
    h.fails(ViolationKind::Replay);
}

#[test]
fn a_not_found_while_the_document_was_live_is_flagged() {
    let mut h = H::default();
    h.create("c1", (0, 1), 1);
    h.push(
        "p",
        Op::Patch {
            patch: Patch::Merge(json!({"op": "p"})),
            precondition: Precondition::Any,
        },
        (10, 20),
        Outcome::NotFound { revision: None },
    );
    h.fails(ViolationKind::RealTime);
}

#[test]
fn a_failed_test_that_no_state_explains_is_flagged() {
    let mut h = H::default();
    h.create("c1", (0, 1), 1);
    h.push(
        "t",
        Op::Patch {
            patch: Patch::Json(json!([{"op": "test", "path": "/op", "value": "c1"}])),
            precondition: Precondition::Any,
        },
        (10, 20),
        Outcome::Failed {
            kind: "patch_test_failed".into(),
            message: "test failed".into(),
        },
    );
    h.fails(ViolationKind::Replay);
}

#[test]
fn a_repeated_op_id_is_malformed() {
    let v = H::default()
        .create("c1", (0, 1), 1)
        .read("c1", (2, 3), 1, Some(json!({"op": "c1"})))
        .check()
        .unwrap_err();
    assert_eq!(v.kind, ViolationKind::Malformed);
}

#[test]
fn keys_are_checked_separately() {
    let mut h = H::default();
    h.create("a1", (0, 1), 1);
    h.create("b1", (0, 1), 1);
    h.0[1].name = "k1".into();
    let s = h.check().unwrap();
    assert_eq!(s.keys.len(), 2);
}

#[test]
fn a_read_that_found_nothing_without_a_revision_needs_a_state_without_a_document() {
    // A cache answers "absent" without saying at which revision.
    let absent = Outcome::NotFound { revision: None };
    let mut h = H::default();
    h.create("c1", (0, 1), 1);
    h.delete("d2", Precondition::Any, (2, 3), 2);
    h.push("r-ok", Op::Read, (10, 20), absent.clone());
    h.check().unwrap();
    h.push("r-early", Op::Read, (0, 1), absent.clone());
    h.check().unwrap();
    let mut h = H::default();
    h.create("c1", (0, 1), 1);
    h.push("r-bad", Op::Read, (10, 20), absent);
    h.fails(ViolationKind::RealTime);
}
