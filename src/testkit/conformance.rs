//! The conformance suite: every operation, precondition and error, value
//! round trips, tombstones, key order — identical on every backend.
//!
//! Each check is a public function taking a [`TestBackend`]; the
//! [`conformance_tests!`](crate::conformance_tests) macro turns them into one
//! `#[test]` each, so a backend's test file is one line.

use serde_json::{json, Value};

use super::{TestBackend, TestLocation};
use crate::{Change, ChangeKind, Current, Error, LimitKind, NameKind, Patch, Precondition, Store};

/// Generates one `#[test]` per conformance check and per in-process race
/// for a backend, e.g.
/// `revstore::conformance_tests!(revstore::testkit::MemoryTestBackend);`
#[macro_export]
macro_rules! conformance_tests {
    ($backend:expr) => {
        $crate::conformance_tests!(@each $backend;
            conformance::create_then_get,
            conformance::create_twice_conflicts,
            conformance::replace_preconditions,
            conformance::merge_patch,
            conformance::json_patch,
            conformance::patch_preconditions,
            conformance::delete_leaves_tombstone_and_recreate_continues,
            conformance::delete_preconditions,
            conformance::update_closure,
            conformance::list_sorted_with_revisions,
            conformance::values_round_trip,
            conformance::invalid_input_changes_nothing,
            conformance::handles_share_state,
            conformance::hostile_values_are_refused_without_overflow,
            conformance::backend_commit_is_conditional,
            conformance::typed_get,
            conformance::shared_bodies_are_copy_on_write,
            conformance::feed_reports_every_commit_in_order,
            conformance::feed_sees_other_handles_and_skips_failed_writes,
            conformance::feed_compaction_is_reported,
            conformance::schema_validates_every_write,
            conformance::schema_changes_apply_to_the_next_write_of_every_handle,
            conformance::schema_ratchets_old_documents,
            conformance::invalid_schemas_are_refused_with_every_problem,
            conformance::migration_reports_and_strips_resumably,
            conformance::cache_follows_the_feed,
            conformance::cache_never_goes_backwards_and_converges,
            races::increment_race_shared_handle,
            races::increment_race_own_handles,
            races::update_race,
            races::disjoint_patches_all_survive,
            races::feed_follower_sees_concurrent_commits_once_in_order,
            races::slow_cache_refresh_keeps_concurrent_edit,
            races::stale_cache_refresh_with_precondition_is_refused,
            conformance::handles_taking_turns_lose_nothing,
        );
    };
    (@each $backend:expr; $($module:ident :: $check:ident),* $(,)?) => {
        $(
            #[test]
            fn $check() {
                $crate::testkit::$module::$check(&$backend);
            }
        )*
    };
}

fn fresh(backend: &dyn TestBackend) -> (Box<dyn TestLocation>, Store) {
    let location = backend.fresh();
    let store = location.open();
    (location, store)
}

fn body(v: Value) -> std::sync::Arc<crate::Body> {
    match v {
        Value::Object(m) => std::sync::Arc::new(m),
        other => panic!("test body must be a mapping: {other}"),
    }
}

fn assert_conflict(
    result: crate::Result<impl std::fmt::Debug>,
    expected: Precondition,
    actual: Current,
) {
    match result {
        Err(Error::Conflict {
            expected: e,
            actual: a,
            ..
        }) => {
            assert_eq!((e, a), (expected, actual), "conflict details");
        }
        other => panic!("expected a conflict ({expected} / {actual}), got {other:?}"),
    }
}

fn assert_not_found(result: crate::Result<impl std::fmt::Debug>) {
    assert!(
        matches!(result, Err(Error::NotFound { .. })),
        "expected NotFound, got {result:?}"
    );
}

fn live(revision: u64) -> Current {
    Current::Live { revision }
}

/// Create returns revision 1 and the body; get returns the same; a missing
/// key reads as `None`.
pub fn create_then_get(backend: &dyn TestBackend) {
    let (_loc, s) = fresh(backend);
    assert_eq!(s.get("models", "orders").unwrap(), None);
    assert_eq!(s.get_record("models", "orders").unwrap(), None);
    let doc = s
        .create("models", "orders", json!({"description": "Orders", "n": 1}))
        .unwrap();
    assert_eq!(doc.revision, 1);
    assert_eq!(doc.body, body(json!({"description": "Orders", "n": 1})));
    let got = s.get("models", "orders").unwrap().expect("created");
    assert_eq!(got, doc);
    assert_eq!(s.get("models", "other").unwrap(), None);
    assert_eq!(s.get("other", "orders").unwrap(), None);
}

/// A second create fails with a conflict naming the live revision and
/// changes nothing.
pub fn create_twice_conflicts(backend: &dyn TestBackend) {
    let (_loc, s) = fresh(backend);
    s.create("c", "a", json!({"v": 1})).unwrap();
    assert_conflict(
        s.create("c", "a", json!({"v": 2})),
        Precondition::Absent,
        live(1),
    );
    assert_eq!(
        s.get("c", "a").unwrap().unwrap().body,
        body(json!({"v": 1}))
    );
}

/// `replace` with `Any` upserts, with `Revision` compare-and-swaps.
pub fn replace_preconditions(backend: &dyn TestBackend) {
    let (_loc, s) = fresh(backend);
    assert_eq!(
        s.replace("c", "a", json!({"v": 1}), Precondition::Any)
            .unwrap()
            .revision,
        1
    );
    assert_eq!(
        s.replace("c", "a", json!({"v": 2}), Precondition::Any)
            .unwrap()
            .revision,
        2
    );
    let doc = s
        .replace("c", "a", json!({"v": 3}), Precondition::Revision(2))
        .unwrap();
    assert_eq!((doc.revision, doc.body), (3, body(json!({"v": 3}))));
    assert_conflict(
        s.replace("c", "a", json!({"v": 4}), Precondition::Revision(2)),
        Precondition::Revision(2),
        live(3),
    );
    assert_conflict(
        s.replace("c", "missing", json!({"v": 1}), Precondition::Revision(1)),
        Precondition::Revision(1),
        Current::Missing,
    );
    assert_eq!(s.get("c", "missing").unwrap(), None);
    assert_eq!(
        s.get("c", "a").unwrap().unwrap().body,
        body(json!({"v": 3}))
    );
    assert_conflict(
        s.replace("c", "a", json!({"v": 5}), Precondition::Absent),
        Precondition::Absent,
        live(3),
    );
}

/// RFC 7396: keys set, `null` removes, mappings merge, sequences replaced;
/// untouched keys keep their order.
pub fn merge_patch(backend: &dyn TestBackend) {
    let (_loc, s) = fresh(backend);
    s.create(
        "c",
        "a",
        json!({"z": 1, "a": {"x": 1, "y": 2}, "list": [1, 2], "gone": true, "m": 0}),
    )
    .unwrap();
    let doc = s
        .patch(
            "c",
            "a",
            &Patch::Merge(json!({"a": {"x": null, "w": 3}, "list": [9], "gone": null, "new": "n"})),
            Precondition::Any,
        )
        .unwrap();
    let expected = json!({"z": 1, "a": {"y": 2, "w": 3}, "list": [9], "m": 0, "new": "n"});
    assert_eq!(doc.revision, 2);
    assert_eq!(doc.body, body(expected.clone()));
    let stored = s.get("c", "a").unwrap().unwrap();
    assert_eq!(stored, doc);
    let keys: Vec<&String> = stored.body.keys().collect();
    assert_eq!(keys, ["z", "a", "list", "m", "new"], "key order");
}

/// RFC 6902: operations apply all or nothing; a failing `test` is its own
/// error and changes nothing.
pub fn json_patch(backend: &dyn TestBackend) {
    let (_loc, s) = fresh(backend);
    s.create("c", "a", json!({"tags": ["a"], "n": 1})).unwrap();
    let doc = s
        .patch(
            "c",
            "a",
            &Patch::Json(json!([
                {"op": "test", "path": "/n", "value": 1},
                {"op": "add", "path": "/tags/-", "value": "b"},
                {"op": "replace", "path": "/n", "value": 2},
            ])),
            Precondition::Any,
        )
        .unwrap();
    assert_eq!(
        (doc.revision, &doc.body),
        (2, &body(json!({"tags": ["a", "b"], "n": 2})))
    );
    let failed = s.patch(
        "c",
        "a",
        &Patch::Json(json!([
            {"op": "add", "path": "/tags/-", "value": "c"},
            {"op": "test", "path": "/n", "value": 1},
        ])),
        Precondition::Any,
    );
    assert!(
        matches!(failed, Err(Error::PatchTestFailed { ref path, .. }) if path == "/n"),
        "{failed:?}"
    );
    let malformed = s.patch(
        "c",
        "a",
        &Patch::Json(json!([{"op": "frobnicate"}])),
        Precondition::Any,
    );
    assert!(
        matches!(malformed, Err(Error::InvalidPatch { .. })),
        "{malformed:?}"
    );
    let bad_path = s.patch(
        "c",
        "a",
        &Patch::Json(json!([{"op": "remove", "path": "/nope"}])),
        Precondition::Any,
    );
    assert!(
        matches!(bad_path, Err(Error::InvalidPatch { .. })),
        "{bad_path:?}"
    );
    let not_mapping = s.patch("c", "a", &Patch::Merge(json!([1])), Precondition::Any);
    assert!(
        matches!(not_mapping, Err(Error::InvalidPatch { .. })),
        "{not_mapping:?}"
    );
    assert_eq!(
        s.get("c", "a").unwrap().unwrap(),
        doc,
        "failed patches change nothing"
    );
}

/// Patch preconditions: `Any` needs a live document, `Absent` creates from
/// an empty body, `Revision` is a compare-and-swap.
pub fn patch_preconditions(backend: &dyn TestBackend) {
    let (_loc, s) = fresh(backend);
    let p = Patch::Merge(json!({"v": 1}));
    assert_not_found(s.patch("c", "a", &p, Precondition::Any));
    assert_eq!(s.get_record("c", "a").unwrap(), None);
    let doc = s.patch("c", "a", &p, Precondition::Absent).unwrap();
    assert_eq!((doc.revision, doc.body), (1, body(json!({"v": 1}))));
    assert_conflict(
        s.patch("c", "a", &p, Precondition::Absent),
        Precondition::Absent,
        live(1),
    );
    let doc = s
        .patch(
            "c",
            "a",
            &Patch::Merge(json!({"w": 2})),
            Precondition::Revision(1),
        )
        .unwrap();
    assert_eq!(doc.revision, 2);
    assert_conflict(
        s.patch(
            "c",
            "a",
            &Patch::Merge(json!({"x": 3})),
            Precondition::Revision(1),
        ),
        Precondition::Revision(1),
        live(2),
    );
    assert_eq!(
        s.get("c", "a").unwrap().unwrap().body,
        body(json!({"v": 1, "w": 2}))
    );
}

/// A delete leaves a tombstone that keeps the revision: the key reads as
/// absent, a re-create continues the sequence, and a compare-and-swap from
/// before the delete can never succeed (no ABA).
pub fn delete_leaves_tombstone_and_recreate_continues(backend: &dyn TestBackend) {
    let (_loc, s) = fresh(backend);
    s.create("c", "a", json!({"v": 1})).unwrap();
    s.patch("c", "a", &Patch::Merge(json!({"v": 2})), Precondition::Any)
        .unwrap();
    assert_eq!(s.delete("c", "a", Precondition::Any).unwrap(), 3);
    assert_eq!(s.get("c", "a").unwrap(), None);
    let record = s.get_record("c", "a").unwrap().expect("tombstone");
    assert_eq!((record.revision, record.body), (3, None));
    assert!(s.list("c").unwrap().is_empty(), "tombstones are not listed");
    assert_not_found(s.delete("c", "a", Precondition::Any));
    assert_not_found(s.patch("c", "a", &Patch::Merge(json!({"v": 9})), Precondition::Any));
    assert_not_found(s.update("c", "a", |_| Ok(())));
    let deleted = Current::Deleted { revision: 3 };
    assert_conflict(
        s.replace("c", "a", json!({"v": 9}), Precondition::Revision(3)),
        Precondition::Revision(3),
        deleted,
    );
    let again = s.create("c", "a", json!({"v": "again"})).unwrap();
    assert_eq!(
        again.revision, 4,
        "a re-create continues the revision sequence"
    );
    assert_conflict(
        s.replace("c", "a", json!({"v": "stale"}), Precondition::Revision(2)),
        Precondition::Revision(2),
        live(4),
    );
    assert_eq!(s.list("c").unwrap().len(), 1);
    // Delete then re-create through `replace(Any)` too.
    s.delete("c", "a", Precondition::Revision(4)).unwrap();
    assert_eq!(
        s.replace("c", "a", json!({}), Precondition::Any)
            .unwrap()
            .revision,
        6
    );
}

/// Delete preconditions.
pub fn delete_preconditions(backend: &dyn TestBackend) {
    let (_loc, s) = fresh(backend);
    assert_not_found(s.delete("c", "a", Precondition::Any));
    assert_not_found(s.delete("c", "a", Precondition::Absent));
    assert_conflict(
        s.delete("c", "a", Precondition::Revision(1)),
        Precondition::Revision(1),
        Current::Missing,
    );
    assert_eq!(s.get_record("c", "a").unwrap(), None, "nothing written");
    s.create("c", "a", json!({})).unwrap();
    s.patch("c", "a", &Patch::Merge(json!({"v": 1})), Precondition::Any)
        .unwrap();
    assert_conflict(
        s.delete("c", "a", Precondition::Revision(1)),
        Precondition::Revision(1),
        live(2),
    );
    assert_conflict(
        s.delete("c", "a", Precondition::Absent),
        Precondition::Absent,
        live(2),
    );
    assert!(s.get("c", "a").unwrap().is_some());
    assert_eq!(s.delete("c", "a", Precondition::Revision(2)).unwrap(), 3);
}

/// `update` applies a closure to the current body; an error from the
/// closure aborts with nothing written.
pub fn update_closure(backend: &dyn TestBackend) {
    let (_loc, s) = fresh(backend);
    assert_not_found(s.update("c", "a", |_| Ok(())));
    s.create("c", "a", json!({"n": 1})).unwrap();
    let doc = s
        .update("c", "a", |b| {
            let n = b
                .get("n")
                .and_then(Value::as_i64)
                .ok_or("n is not an integer")?;
            b.insert("n".into(), json!(n + 1));
            Ok(())
        })
        .unwrap();
    assert_eq!((doc.revision, &doc.body), (2, &body(json!({"n": 2}))));
    let aborted = s.update("c", "a", |_| Err("no thanks".into()));
    assert!(
        matches!(&aborted, Err(Error::Aborted { source, .. }) if source.to_string() == "no thanks"),
        "{aborted:?}"
    );
    assert_eq!(s.get("c", "a").unwrap().unwrap(), doc);
}

/// `list` returns live documents of one collection, sorted by name, with
/// their revisions.
pub fn list_sorted_with_revisions(backend: &dyn TestBackend) {
    let (_loc, s) = fresh(backend);
    assert!(s.list("c").unwrap().is_empty());
    for name in ["b", "a", "c.1", "A", "0"] {
        s.create("c", name, json!({})).unwrap();
    }
    s.patch("c", "b", &Patch::Merge(json!({"x": 1})), Precondition::Any)
        .unwrap();
    s.create("other", "z", json!({})).unwrap();
    s.delete("c", "c.1", Precondition::Any).unwrap();
    let listed: Vec<(String, u64)> = s
        .list("c")
        .unwrap()
        .into_iter()
        .map(|e| (e.name, e.revision))
        .collect();
    let expected: Vec<(String, u64)> = [("0", 1), ("A", 1), ("a", 1), ("b", 2)]
        .into_iter()
        .map(|(n, r)| (n.to_owned(), r))
        .collect();
    assert_eq!(listed, expected);
    assert!(matches!(
        s.list("bad/name"),
        Err(Error::InvalidName {
            kind: NameKind::Collection,
            ..
        })
    ));
}

/// Every value kind survives a write and a read through a new handle, key
/// order included.
pub fn values_round_trip(backend: &dyn TestBackend) {
    let location = backend.fresh();
    let s = location.open();
    let value = json!({
        "zeta": null,
        "alpha": true,
        "no": false,
        "i64_min": i64::MIN,
        "i64_max": i64::MAX,
        "u64_max": u64::MAX,
        "zero": 0,
        "neg": -17,
        "f": 0.1,
        "big_f": -1.5e300,
        "tiny_f": 1e-300,
        "whole_f": 2.0,
        "hard_f": [985.6906946328695, -1.81996730402717e-179, 0.30000000000000004, 5e-324, 1.7976931348623157e308, 123456789.12345679],
        "s": "plain",
        "empty_s": "",
        "unicode": "日本語 ✓ é",
        "multiline": "line one\nline two\n",
        "quotes": "it's \"quoted\"",
        "yaml_words": ["yes", "no", "null", "~", "true", "1.0", "0x10", "1e3", "- x", ": y", "# z", " lead", "trail ", "{a: 1}", "[1]", "*ref", "&anchor", "!tag", "%"],
        "empty_map": {},
        "empty_list": [],
        "nested": {"b": {"c": [1, {"d": [[], {}]}]}, "a": 1},
        "odd keys": {"": 1, " ": 2, "a:b": 3, "-": 4, "?": 5, "123": 6, "null": 7, "true": 8, "#": 9},
        "m": "last"
    });
    let written = s.create("types", "all", value.clone()).unwrap();
    assert_eq!(written.body, body(value.clone()));
    for reader in [s, location.open()] {
        let doc = reader.get("types", "all").unwrap().expect("written");
        assert_eq!(Value::Object((*doc.body).clone()), value);
        let keys: Vec<&String> = doc.body.keys().collect();
        let expected: Vec<&String> = value.as_object().unwrap().keys().collect();
        assert_eq!(keys, expected, "key order");
        let odd: Vec<&String> = doc.body["odd keys"].as_object().unwrap().keys().collect();
        assert_eq!(odd, ["", " ", "a:b", "-", "?", "123", "null", "true", "#"]);
        assert!(doc.body["u64_max"].is_u64() && doc.body["i64_min"].is_i64());
        assert!(doc.body["whole_f"].is_f64(), "a float stays a float");
    }
}

/// Bad names, bodies and limits are refused with typed errors and write
/// nothing.
pub fn invalid_input_changes_nothing(backend: &dyn TestBackend) {
    let (_loc, s) = fresh(backend);
    let bad_names = [
        "", ".", "..", "a/b", "a\\b", "a\0b", "a\nb", "-a", "a.", "é",
    ];
    for bad in bad_names {
        for result in [
            s.create("c", bad, json!({})).map(|_| ()),
            s.create(bad, "n", json!({})).map(|_| ()),
            s.get("c", bad).map(|_| ()),
            s.patch("c", bad, &Patch::Merge(json!({})), Precondition::Any)
                .map(|_| ()),
            s.delete("c", bad, Precondition::Any).map(|_| ()),
        ] {
            assert!(
                matches!(result, Err(Error::InvalidName { .. })),
                "{bad:?}: {result:?}"
            );
        }
    }
    assert!(matches!(
        s.create("_schema", "n", json!({})),
        Err(Error::InvalidName { .. })
    ));
    assert!(matches!(s.list("_schema"), Err(Error::InvalidName { .. })));
    for not_mapping in [json!(1), json!("s"), json!([1]), json!(null)] {
        assert!(matches!(
            s.create("c", "n", not_mapping),
            Err(Error::InvalidBody { .. })
        ));
    }
    let mut deep = json!(1);
    for _ in 0..100 {
        deep = json!({ "d": deep });
    }
    assert!(matches!(
        s.create("c", "n", deep.clone()),
        Err(Error::LimitExceeded {
            limit: LimitKind::Depth,
            ..
        })
    ));
    let huge = json!({ "s": "x".repeat(9 << 20) });
    assert!(matches!(
        s.create("c", "n", huge),
        Err(Error::LimitExceeded {
            limit: LimitKind::Size,
            ..
        })
    ));
    assert_eq!(s.get_record("c", "n").unwrap(), None, "nothing was written");
    s.create("c", "n", json!({"ok": 1})).unwrap();
    assert!(matches!(
        s.patch(
            "c",
            "n",
            &Patch::Merge(json!({"deep": deep})),
            Precondition::Any
        ),
        Err(Error::LimitExceeded { .. })
    ));
    assert_eq!(s.get("c", "n").unwrap().unwrap().revision, 1);
    assert!(s.list("c").unwrap().len() == 1);
}

/// Builds a value nested `levels` deep without recursion (the `json!`
/// macro recurses once per level).
fn deep_value(levels: usize) -> Value {
    let mut value = Value::Null;
    for i in 0..levels {
        value = if i % 2 == 0 {
            Value::Array(vec![value])
        } else {
            let mut map = crate::Body::new();
            map.insert("d".to_owned(), value);
            Value::Object(map)
        };
    }
    value
}

/// Drops a deep value without recursion (serde_json's drop recurses).
fn dismantle(value: Value) {
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Value::Array(items) => stack.extend(items),
            Value::Object(map) => stack.extend(map.into_iter().map(|(_, v)| v)),
            _ => {}
        }
    }
}

/// Values built to hurt — 100 000 levels deep, a merge or JSON Patch that
/// deep, a patch that copies the document into itself until it is huge —
/// are refused with a typed error, without a stack overflow, and change
/// nothing.
pub fn hostile_values_are_refused_without_overflow(backend: &dyn TestBackend) {
    let (_loc, s) = fresh(backend);
    s.create("h", "doc", json!({"a": "x".repeat(1000)}))
        .unwrap();
    let mut top = crate::Body::new();
    top.insert("deep".to_owned(), deep_value(100_000));
    let result = s.create("h", "deep", Value::Object(top));
    assert!(
        matches!(
            result,
            Err(Error::LimitExceeded {
                limit: LimitKind::Depth,
                ..
            })
        ),
        "{:?}",
        result.as_ref().map(|_| ())
    );
    let mut patch_body = crate::Body::new();
    patch_body.insert("deep".to_owned(), deep_value(100_000));
    let merge = Patch::Merge(Value::Object(patch_body));
    let result = s.patch("h", "doc", &merge, Precondition::Any);
    assert!(
        matches!(result, Err(Error::LimitExceeded { .. })),
        "{:?}",
        result.map(|_| ())
    );
    let Patch::Merge(v) = merge else {
        unreachable!()
    };
    dismantle(v);
    let add = Patch::Json(Value::Array(vec![
        json!({"op": "add", "path": "/deep", "value": null}),
    ]));
    let mut ops = match add {
        Patch::Json(Value::Array(ops)) => ops,
        _ => unreachable!(),
    };
    ops[0]["value"] = deep_value(100_000);
    let deep_add = Patch::Json(Value::Array(ops));
    let result = s.patch("h", "doc", &deep_add, Precondition::Any);
    assert!(
        matches!(result, Err(Error::LimitExceeded { .. })),
        "{:?}",
        result.map(|_| ())
    );
    let Patch::Json(v) = deep_add else {
        unreachable!()
    };
    dismantle(v);
    // 40 copies of the root would need 2^40 KiB; refused at the size limit.
    let copies: Vec<Value> = (0..40)
        .map(|i| json!({"op": "copy", "from": "", "path": format!("/c{i}")}))
        .collect();
    let result = s.patch(
        "h",
        "doc",
        &Patch::Json(Value::Array(copies)),
        Precondition::Any,
    );
    assert!(
        matches!(
            result,
            Err(Error::LimitExceeded {
                limit: LimitKind::Size,
                ..
            })
        ),
        "{:?}",
        result.map(|_| ())
    );
    // Malformed patches of every shape.
    for bad in [
        Patch::Json(json!({"op": "add"})),
        Patch::Json(json!([{"op": "add", "path": "no-slash", "value": 1}])),
        Patch::Json(json!([{"op": "move", "from": "/a", "path": "/a/b"}])),
        Patch::Json(json!([{"op": "copy", "from": "/missing", "path": "/b"}])),
        Patch::Json(json!([{"op": "replace", "path": "/a/~2", "value": 1}])),
        Patch::Json(json!([{"op": "add", "path": "/a/0", "value": 1}])),
        Patch::Json(json!([1, 2, 3])),
        Patch::Json(json!("text")),
        Patch::Merge(json!("text")),
        Patch::Merge(json!(null)),
        Patch::Merge(json!([{"a": 1}])),
    ] {
        let result = s.patch("h", "doc", &bad, Precondition::Any);
        assert!(
            matches!(result, Err(Error::InvalidPatch { .. })),
            "{bad:?}: {:?}",
            result.map(|_| ())
        );
    }
    let doc = s.get("h", "doc").unwrap().unwrap();
    assert_eq!(doc.revision, 1, "nothing was written");
    assert_eq!(s.get_record("h", "deep").unwrap(), None);
}

/// Two handles on one location see each other's writes at once and
/// compare-and-swap against each other's revisions.
pub fn handles_share_state(backend: &dyn TestBackend) {
    let location = backend.fresh();
    let (a, b) = (location.open(), location.open());
    a.create("c", "k", json!({"by": "a"})).unwrap();
    let seen = b
        .get("c", "k")
        .unwrap()
        .expect("visible to the other handle");
    assert_eq!(seen.revision, 1);
    b.replace("c", "k", json!({"by": "b"}), Precondition::Revision(1))
        .unwrap();
    assert_conflict(
        a.replace("c", "k", json!({"by": "a2"}), Precondition::Revision(1)),
        Precondition::Revision(1),
        live(2),
    );
    assert_eq!(
        a.get("c", "k").unwrap().unwrap().body,
        body(json!({"by": "b"}))
    );
    assert_eq!(a.list("c").unwrap(), b.list("c").unwrap());
}

/// The backend's own conditional commit, called directly (the engine
/// re-reads before committing, so stale commits rarely reach a backend
/// through it): a stale `expected` on a live document, on a tombstone, or
/// `0` where a record exists is a conflict reporting the actual state, and
/// changes nothing; a guard that moved refuses the commit.
pub fn backend_commit_is_conditional(backend: &dyn TestBackend) {
    use crate::{Commit, CommitOutcome, Guard, Key};
    let (_loc, s) = fresh(backend);
    let b = s.backend();
    let key = Key::new("c", "k").unwrap();
    let v = |n: i64| body(json!({ "v": n }));
    let commit =
        |expected: u64, body: Option<&std::sync::Arc<crate::Body>>, guard: Option<Guard<'_>>| {
            let kind = match (body, expected) {
                (None, _) => ChangeKind::Deleted,
                (Some(_), 0) => ChangeKind::Created,
                (Some(_), _) => ChangeKind::Updated,
            };
            b.commit(&Commit {
                based_on: None,
                key: &key,
                expected,
                body,
                guard,
                kind,
            })
            .unwrap()
        };
    let conflict = |actual| CommitOutcome::Conflict { actual };
    assert_eq!(commit(1, Some(&v(0)), None), conflict(Current::Missing));
    assert_eq!(b.read(&key).unwrap(), None);
    assert_eq!(commit(0, Some(&v(1)), None), CommitOutcome::Committed);
    assert_eq!(commit(0, Some(&v(9)), None), conflict(live(1)));
    assert_eq!(commit(2, Some(&v(9)), None), conflict(live(1)));
    assert_eq!(commit(1, Some(&v(2)), None), CommitOutcome::Committed);
    assert_eq!(
        commit(1, Some(&v(9)), None),
        conflict(live(2)),
        "stale by one"
    );
    assert_eq!(commit(2, None, None), CommitOutcome::Committed);
    let tomb = Current::Deleted { revision: 3 };
    assert_eq!(commit(2, Some(&v(9)), None), conflict(tomb));
    assert_eq!(
        commit(0, Some(&v(9)), None),
        conflict(tomb),
        "a tombstone is not absent to a commit"
    );
    assert_eq!(
        b.read(&key).unwrap(),
        Some(crate::Record {
            revision: 3,
            body: None
        }),
        "refused commits changed nothing"
    );
    // Guards: the guard key's last revision must still match.
    let guard_key = Key::new_reserved("_schema", "c").unwrap();
    let guard = |revision| {
        Some(Guard {
            key: &guard_key,
            revision,
        })
    };
    assert_eq!(
        commit(3, Some(&v(4)), guard(1)),
        CommitOutcome::GuardChanged {
            actual: Current::Missing
        }
    );
    assert_eq!(b.read(&key).unwrap().map(|r| r.revision), Some(3));
    assert_eq!(commit(3, Some(&v(4)), guard(0)), CommitOutcome::Committed);
    let schema_write = Commit {
        based_on: None,
        key: &guard_key,
        expected: 0,
        body: Some(&v(0)),
        guard: None,
        kind: ChangeKind::Created,
    };
    assert_eq!(b.commit(&schema_write).unwrap(), CommitOutcome::Committed);
    assert_eq!(
        commit(4, Some(&v(5)), guard(0)),
        CommitOutcome::GuardChanged { actual: live(1) }
    );
    assert_eq!(commit(4, Some(&v(5)), guard(1)), CommitOutcome::Committed);
    assert_eq!(b.read(&key).unwrap().and_then(|r| r.body), Some(v(5)));
}

/// Bodies are shared copy-on-write: a warm read (from the backend's read
/// cache) answers exactly as a cold one — missing, live, deleted,
/// re-created, and after another handle's write — and changing a body a
/// read or a write returned, with `Arc::make_mut`, never changes what the
/// store returns next, to this handle or any other.
pub fn shared_bodies_are_copy_on_write(backend: &dyn TestBackend) {
    use std::sync::Arc;
    let location = backend.fresh();
    let (reader, writer) = (location.open(), location.open());
    let vandalize = |doc: &mut crate::Document| {
        let body = Arc::make_mut(&mut doc.body);
        body.insert("vandalized".into(), json!(true));
        body.remove("a");
    };
    let same = |what: &str| {
        // A handle that never read the key: its read decodes.
        let cold = location.open().get("c", "d").unwrap();
        // Enough reads for every backend to answer from its cache.
        for attempt in 0..3 {
            let mut warm = reader.get("c", "d").unwrap();
            assert_eq!(warm, cold, "{what}, read {attempt}");
            if let Some(doc) = warm.as_mut() {
                vandalize(doc);
                assert_eq!(doc.body["vandalized"], true);
            }
            let mut record = reader.get_record("c", "d").unwrap();
            if let Some(body) = record.as_mut().and_then(|r| r.body.as_mut()) {
                Arc::make_mut(body).insert("vandalized".into(), json!(true));
            }
        }
        assert_eq!(reader.get("c", "d").unwrap(), cold, "{what}, after changes");
        assert_eq!(writer.get("c", "d").unwrap(), cold, "{what}, other handle");
    };
    same("never written");
    let mut created = writer
        .create("c", "d", json!({"a": 1, "z": [1, 2]}))
        .unwrap();
    // The body a write returns is the one it committed: changing it must
    // not change the writer's own (cached) copy.
    vandalize(&mut created);
    same("created by another handle");
    writer
        .patch("c", "d", &Patch::Merge(json!({"a": 2})), Precondition::Any)
        .unwrap();
    same("patched by another handle");
    let mut patched = reader
        .patch("c", "d", &Patch::Merge(json!({"b": 3})), Precondition::Any)
        .unwrap();
    vandalize(&mut patched);
    same("patched by this handle");
    for _ in 0..2 {
        let mut replaced = reader
            .replace("c", "d", json!({"a": 4, "b": 3}), Precondition::Any)
            .unwrap();
        vandalize(&mut replaced);
        same("replaced by this handle");
    }
    let kept = reader.get("c", "d").unwrap().unwrap();
    assert_eq!((kept.revision, kept.body["a"].clone()), (5, json!(4)));
    // Another handle's commit shows in this handle's next read, however
    // warm its cache.
    writer
        .patch("c", "d", &Patch::Merge(json!({"a": 5})), Precondition::Any)
        .unwrap();
    let moved = reader.get("c", "d").unwrap().unwrap();
    assert_eq!((moved.revision, moved.body["a"].clone()), (6, json!(5)));
    same("patched by another handle again");
    writer.delete("c", "d", Precondition::Any).unwrap();
    same("deleted");
    assert!(reader.get("c", "d").unwrap().is_none());
    writer.create("c", "d", json!({"again": true})).unwrap();
    same("re-created");
    // A document read before those writes keeps what it read.
    assert_eq!(kept.revision, 5);
    assert_eq!(*kept.body, *body(json!({"a": 4, "b": 3})));
}

/// `get_as` reads typed models and reports a mismatch naming the key.
pub fn typed_get(backend: &dyn TestBackend) {
    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Model {
        description: String,
        joins: Vec<String>,
    }
    let (_loc, s) = fresh(backend);
    s.create(
        "models",
        "orders",
        json!({"description": "Orders", "joins": ["customers"]}),
    )
    .unwrap();
    let typed = s
        .get_as::<Model>("models", "orders")
        .unwrap()
        .expect("exists");
    assert_eq!(typed.revision, 1);
    assert_eq!(
        typed.value,
        Model {
            description: "Orders".into(),
            joins: vec!["customers".into()]
        }
    );
    assert!(s.get_as::<Model>("models", "missing").unwrap().is_none());
    s.create("models", "bad", json!({"description": 5}))
        .unwrap();
    match s.get_as::<Model>("models", "bad") {
        Err(Error::Deserialize { key, .. }) => assert_eq!(key.to_string(), "models/bad"),
        other => panic!("expected Deserialize, got {other:?}"),
    }
}

fn feed(s: &Store, after: u64) -> Vec<(u64, String, u64, ChangeKind)> {
    s.changes_since(after, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|c: Change| (c.seq, c.key.to_string(), c.revision, c.kind))
        .collect()
}

/// Every committed write appears once in the feed, in commit order, with
/// its revision and kind; seqs strictly increase; cursors and limits work.
pub fn feed_reports_every_commit_in_order(backend: &dyn TestBackend) {
    let (_loc, s) = fresh(backend);
    assert_eq!(s.last_seq().unwrap(), 0);
    assert!(s.changes_since(0, 10).unwrap().is_empty());
    s.create("c", "a", json!({})).unwrap();
    s.create("c", "b", json!({})).unwrap();
    s.patch("c", "a", &Patch::Merge(json!({"x": 1})), Precondition::Any)
        .unwrap();
    s.delete("c", "b", Precondition::Any).unwrap();
    s.replace("c", "b", json!({}), Precondition::Any).unwrap();
    s.replace("d", "a", json!({}), Precondition::Any).unwrap();
    let all = feed(&s, 0);
    let shape: Vec<(String, u64, ChangeKind)> = all
        .iter()
        .map(|(_, k, r, kind)| (k.clone(), *r, *kind))
        .collect();
    let expected = [
        ("c/a", 1, ChangeKind::Created),
        ("c/b", 1, ChangeKind::Created),
        ("c/a", 2, ChangeKind::Updated),
        ("c/b", 2, ChangeKind::Deleted),
        ("c/b", 3, ChangeKind::Created),
        ("d/a", 1, ChangeKind::Created),
    ]
    .map(|(k, r, kind)| (k.to_owned(), r, kind));
    assert_eq!(shape, expected, "{}", backend.name());
    assert!(
        all.windows(2).all(|w| w[0].0 < w[1].0),
        "seqs increase: {all:?}"
    );
    let last = s.last_seq().unwrap();
    assert_eq!(last, all[all.len() - 1].0);
    // A cursor returns exactly the suffix after it; a limit the prefix.
    for (i, (seq, ..)) in all.iter().enumerate() {
        assert_eq!(feed(&s, *seq), all[i + 1..].to_vec());
    }
    let first_two: Vec<u64> = s
        .changes_since(0, 2)
        .unwrap()
        .iter()
        .map(|c| c.seq)
        .collect();
    assert_eq!(first_two, [all[0].0, all[1].0]);
    assert!(s.changes_since(last, 10).unwrap().is_empty());
    assert!(
        s.changes_since(last + 100, 10).unwrap().is_empty(),
        "a cursor from the future sees nothing yet"
    );
}

/// Changes made through another handle show up; refused writes leave no
/// trace in the feed.
pub fn feed_sees_other_handles_and_skips_failed_writes(backend: &dyn TestBackend) {
    let location = backend.fresh();
    let (a, b) = (location.open(), location.open());
    a.create("c", "k", json!({"v": 1})).unwrap();
    let start = b.last_seq().unwrap();
    assert!(start >= 1);
    assert!(a.create("c", "k", json!({})).is_err());
    assert!(a
        .replace("c", "k", json!({}), Precondition::Revision(9))
        .is_err());
    assert!(a
        .patch(
            "c",
            "k",
            &Patch::Json(json!([{"op": "test", "path": "/v", "value": 2}])),
            Precondition::Any
        )
        .is_err());
    assert!(a.delete("c", "missing", Precondition::Any).is_err());
    assert!(a.create("c", "bad/name", json!({})).is_err());
    assert_eq!(b.last_seq().unwrap(), start, "failed writes add no change");
    b.patch("c", "k", &Patch::Merge(json!({"v": 2})), Precondition::Any)
        .unwrap();
    let seen = feed(&a, start);
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (seen[0].1.as_str(), seen[0].2, seen[0].3),
        ("c/k", 2, ChangeKind::Updated)
    );
    let mut watch = a.watch(start, std::time::Duration::from_millis(5));
    let change = watch
        .next_timeout(std::time::Duration::from_secs(5))
        .unwrap()
        .expect("the watch sees the change");
    assert_eq!(change.revision, 2);
    assert!(watch
        .next_timeout(std::time::Duration::from_millis(20))
        .unwrap()
        .is_none());
    b.delete("c", "k", Precondition::Any).unwrap();
    let change = watch
        .next_timeout(std::time::Duration::from_secs(5))
        .unwrap()
        .expect("and the next one");
    assert_eq!((change.revision, change.kind), (3, ChangeKind::Deleted));
    assert_eq!(watch.cursor(), change.seq);
}

/// A cursor older than the retained history gets `Compacted`, never a
/// silent gap; re-listing and resuming from `last_seq` works.
pub fn feed_compaction_is_reported(backend: &dyn TestBackend) {
    let location = backend.fresh_with_retention(10);
    let s = location.open();
    for i in 0..200 {
        s.replace(
            "c",
            &format!("k{}", i % 7),
            json!({ "i": i }),
            Precondition::Any,
        )
        .unwrap();
    }
    let last = s.last_seq().unwrap();
    match s.changes_since(0, 10) {
        Err(Error::Compacted {
            requested,
            retained_after,
        }) => {
            assert_eq!(requested, 0);
            assert!(
                retained_after > 0 && retained_after <= last - 10,
                "{retained_after} of {last}"
            );
            // Everything after the reported point is still there, in order.
            let rest = feed(&s, retained_after);
            assert_eq!(rest.len() as u64, last - retained_after);
            assert_eq!(rest[rest.len() - 1].0, last);
        }
        other => panic!("{}: expected Compacted, got {other:?}", backend.name()),
    }
    let mut watch = s.watch(0, std::time::Duration::from_millis(1));
    assert!(matches!(watch.next(), Some(Err(Error::Compacted { .. }))));
    assert!(watch.next().is_none(), "the watch ends after an error");
    // Re-list, then resume from last_seq: nothing is missed.
    let resume = s.last_seq().unwrap();
    assert_eq!(s.list("c").unwrap().len(), 7);
    s.replace("c", "k0", json!({}), Precondition::Any).unwrap();
    let after = feed(&s, resume);
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].1, "c/k0");
}

/// The read-through cache: bounded staleness, only changed keys
/// invalidated, fresh reads on demand, writes through it installed, and a
/// compacted cursor handled by starting over.
pub fn cache_follows_the_feed(backend: &dyn TestBackend) {
    use crate::CachedStore;
    use std::time::Duration;
    let location = backend.fresh_with_retention(10);
    let (writer, reader) = (location.open(), location.open());
    writer.create("c", "a", json!({"v": 1})).unwrap();
    writer.create("c", "b", json!({"v": 1})).unwrap();
    let lazy = CachedStore::new(reader.clone(), Duration::from_secs(3600)).unwrap();
    let eager = CachedStore::new(reader, Duration::ZERO).unwrap();
    for cache in [&lazy, &eager] {
        assert_eq!(cache.get("c", "a").unwrap().unwrap().revision, 1);
        assert_eq!(cache.get("c", "b").unwrap().unwrap().revision, 1);
        assert_eq!(cache.get("c", "none").unwrap(), None);
        assert_eq!(cache.len(), 3);
    }
    writer
        .patch("c", "a", &Patch::Merge(json!({"v": 2})), Precondition::Any)
        .unwrap();
    assert_eq!(
        eager.get("c", "a").unwrap().unwrap().revision,
        2,
        "staleness 0 reads the change"
    );
    assert_eq!(
        lazy.get("c", "a").unwrap().unwrap().revision,
        1,
        "within its staleness bound"
    );
    assert_eq!(lazy.get_fresh("c", "a").unwrap().unwrap().revision, 2);
    writer
        .patch("c", "a", &Patch::Merge(json!({"v": 3})), Precondition::Any)
        .unwrap();
    lazy.catch_up().unwrap();
    assert_eq!(lazy.len(), 2, "only the changed key was invalidated");
    assert_eq!(
        lazy.get("c", "a").unwrap().unwrap().body,
        body(json!({"v": 3}))
    );
    assert_eq!(lazy.get("c", "b").unwrap().unwrap().revision, 1);
    // Writes through the cache install their result.
    let doc = lazy
        .patch("c", "b", &Patch::Merge(json!({"w": 1})), Precondition::Any)
        .unwrap();
    assert_eq!(lazy.get("c", "b").unwrap().unwrap(), doc);
    lazy.delete("c", "b", Precondition::Any).unwrap();
    assert_eq!(lazy.get("c", "b").unwrap(), None);
    // Fall far behind a feed that keeps 10 changes: the cache starts over.
    for i in 0..60 {
        writer
            .replace(
                "c",
                &format!("k{}", i % 5),
                json!({ "i": i }),
                Precondition::Any,
            )
            .unwrap();
    }
    writer
        .replace("c", "a", json!({"v": "last"}), Precondition::Any)
        .unwrap();
    lazy.catch_up().unwrap();
    assert_eq!(
        lazy.get("c", "a").unwrap().unwrap().body,
        body(json!({"v": "last"}))
    );
    assert_eq!(
        lazy.get("c", "k4").unwrap().unwrap().body,
        body(json!({"i": 59}))
    );
}

/// Readers through a cache never see a key go back in revision while
/// writers race them, and after the writers stop the cache converges on
/// the store.
pub fn cache_never_goes_backwards_and_converges(backend: &dyn TestBackend) {
    use crate::CachedStore;
    use std::time::Duration;
    let location = backend.fresh();
    let setup = location.open();
    for k in ["k0", "k1"] {
        setup.create("c", k, json!({"n": 0})).unwrap();
    }
    let cache = CachedStore::new(location.open(), Duration::ZERO).unwrap();
    let writes = 60 * super::soak_factor() as usize;
    std::thread::scope(|scope| {
        for w in 0..3 {
            let store = location.open();
            scope.spawn(move || {
                for i in 0..writes {
                    let k = format!("k{}", (i + w) % 2);
                    store
                        .patch(
                            "c",
                            &k,
                            &Patch::Merge(json!({ "n": i, "w": w })),
                            Precondition::Any,
                        )
                        .unwrap();
                }
            });
        }
        for _ in 0..2 {
            let cache = &cache;
            scope.spawn(move || {
                let mut seen = [0u64; 2];
                for i in 0..(writes * 2) {
                    let k = i % 2;
                    let doc = cache.get("c", &format!("k{k}")).unwrap().expect("live");
                    assert!(
                        doc.revision >= seen[k],
                        "k{k} went back from revision {} to {}",
                        seen[k],
                        doc.revision
                    );
                    seen[k] = doc.revision;
                }
            });
        }
    });
    cache.catch_up().unwrap();
    for k in ["k0", "k1"] {
        assert_eq!(
            cache.get("c", k).unwrap(),
            setup.get("c", k).unwrap(),
            "{k} converged"
        );
    }
}

fn violations(result: crate::Result<impl std::fmt::Debug>) -> Vec<(String, &'static str)> {
    match result {
        Err(Error::SchemaViolation { violations, .. }) => {
            violations.into_iter().map(|v| (v.path, v.rule)).collect()
        }
        other => panic!("expected a schema violation, got {other:?}"),
    }
}

fn assets_schema() -> Value {
    json!({
        "description": "Assets",
        "attributes": [
            {"name": "owner", "type": "string", "required": true, "min_length": 1},
            {"name": "size", "type": "integer", "min": 0, "max": 100, "default": 1},
            {"name": "status", "type": "enum", "values": ["draft", "active", "retired"], "default": "draft"},
            {"name": "tags", "type": "list_of_strings", "max_items": 3},
            {"name": "created", "type": "datetime"}
        ]
    })
}

/// Every kind of write is checked against the schema; an undeclared
/// attribute is rejected naming it, never dropped; defaults fill a create;
/// a refused write changes nothing.
pub fn schema_validates_every_write(backend: &dyn TestBackend) {
    let (_loc, s) = fresh(backend);
    let set = s
        .set_schema("assets", assets_schema(), Precondition::Absent)
        .unwrap();
    assert_eq!(set.revision, 1);
    assert_eq!(s.get_schema("assets").unwrap().unwrap(), set);
    let doc = s.create("assets", "a", json!({"owner": "ann"})).unwrap();
    assert_eq!(
        Value::Object((*doc.body).clone()),
        json!({"owner": "ann", "size": 1, "status": "draft"}),
        "defaults filled"
    );
    assert_eq!(s.get("assets", "a").unwrap().unwrap(), doc);
    let refused = s.create(
        "assets",
        "b",
        json!({"owner": "", "size": 101, "status": "gone", "colour": "red", "tags": ["a", 1], "created": "2024-02-30T00:00:00Z"}),
    );
    let mut found = violations(refused);
    found.sort();
    assert_eq!(
        found,
        [
            ("/colour".to_owned(), "undeclared"),
            ("/created".to_owned(), "format"),
            ("/owner".to_owned(), "min_length"),
            ("/size".to_owned(), "max"),
            ("/status".to_owned(), "enum"),
            ("/tags/1".to_owned(), "type"),
        ]
    );
    assert_eq!(s.get_record("assets", "b").unwrap(), None);
    assert_eq!(
        violations(s.create("assets", "b", json!({"size": 2}))),
        [("/owner".to_owned(), "required")]
    );
    assert_eq!(
        violations(s.patch(
            "assets",
            "a",
            &Patch::Merge(json!({"colour": "red"})),
            Precondition::Any
        )),
        [("/colour".to_owned(), "undeclared")]
    );
    assert_eq!(
        violations(s.patch(
            "assets",
            "a",
            &Patch::Json(json!([{"op": "replace", "path": "/size", "value": "big"}])),
            Precondition::Any
        )),
        [("/size".to_owned(), "type")]
    );
    assert_eq!(
        violations(s.replace(
            "assets",
            "a",
            json!({"owner": "ann", "extra": 1}),
            Precondition::Revision(1)
        )),
        [("/extra".to_owned(), "undeclared")]
    );
    let update = s.update("assets", "a", |b| {
        b.insert("size".into(), json!(-1));
        Ok(())
    });
    assert_eq!(violations(update), [("/size".to_owned(), "min")]);
    assert_eq!(
        violations(s.patch(
            "assets",
            "a",
            &Patch::Merge(json!({"owner": null})),
            Precondition::Any
        )),
        [("/owner".to_owned(), "required")]
    );
    assert_eq!(
        s.get("assets", "a").unwrap().unwrap(),
        doc,
        "refused writes changed nothing"
    );
    let ok = s
        .patch(
            "assets",
            "a",
            &Patch::Merge(
                json!({"status": "active", "tags": ["x"], "created": "2024-02-29T12:00:00+01:00"}),
            ),
            Precondition::Any,
        )
        .unwrap();
    assert_eq!(ok.revision, 2);
    // Other collections are not affected; deletes are never refused.
    s.create("other", "x", json!({"anything": true})).unwrap();
    s.delete("assets", "a", Precondition::Any).unwrap();
    // The schema change is on the feed like any write.
    assert!(s
        .changes_since(0, 100)
        .unwrap()
        .iter()
        .any(|c| c.key.to_string() == "_schema/assets"));
}

/// A schema change takes effect for the very next write of a handle that
/// was opened (and wrote) before it: adding an attribute, narrowing an
/// enum, removing an attribute.
pub fn schema_changes_apply_to_the_next_write_of_every_handle(backend: &dyn TestBackend) {
    let location = backend.fresh();
    let (admin, app) = (location.open(), location.open());
    admin
        .set_schema(
            "m",
            json!({"attributes": [{"name": "kind", "type": "enum", "values": ["a", "b"]}]}),
            Precondition::Any,
        )
        .unwrap();
    app.create("m", "doc", json!({"kind": "a"})).unwrap();
    assert_eq!(
        violations(app.patch(
            "m",
            "doc",
            &Patch::Merge(json!({"note": "x"})),
            Precondition::Any
        )),
        [("/note".to_owned(), "undeclared")]
    );
    // Add an attribute: the app's next write may use it.
    admin
        .set_schema(
            "m",
            json!({"attributes": [{"name": "kind", "type": "enum", "values": ["a", "b"]}, {"name": "note", "type": "string"}]}),
            Precondition::Revision(1),
        )
        .unwrap();
    app.patch(
        "m",
        "doc",
        &Patch::Merge(json!({"note": "x"})),
        Precondition::Any,
    )
    .unwrap();
    // Narrow the enum: the app's next write of "b" is refused.
    admin
        .set_schema(
            "m",
            json!({"attributes": [{"name": "kind", "type": "enum", "values": ["a"]}, {"name": "note", "type": "string"}]}),
            Precondition::Revision(2),
        )
        .unwrap();
    assert_eq!(
        violations(app.patch(
            "m",
            "doc",
            &Patch::Merge(json!({"kind": "b"})),
            Precondition::Any
        )),
        [("/kind".to_owned(), "enum")]
    );
    // Remove an attribute: writing it is refused, as undeclared.
    admin
        .set_schema(
            "m",
            json!({"attributes": [{"name": "kind", "type": "enum", "values": ["a"]}]}),
            Precondition::Revision(3),
        )
        .unwrap();
    assert_eq!(
        violations(app.patch(
            "m",
            "doc",
            &Patch::Merge(json!({"note": "y"})),
            Precondition::Any
        )),
        [("/note".to_owned(), "undeclared")]
    );
    // Removing the schema lifts validation.
    admin.delete_schema("m", Precondition::Revision(4)).unwrap();
    app.patch(
        "m",
        "doc",
        &Patch::Merge(json!({"free": 1})),
        Precondition::Any,
    )
    .unwrap();
    assert!(admin.get_schema("m").unwrap().is_none());
}

/// After a schema tightens, documents that no longer conform stay readable
/// and patchable; only what a write changes is checked.
pub fn schema_ratchets_old_documents(backend: &dyn TestBackend) {
    let (_loc, s) = fresh(backend);
    s.create(
        "r",
        "old",
        json!({"status": "retired", "legacy": 1, "n": 5}),
    )
    .unwrap();
    s.set_schema(
        "r",
        json!({"attributes": [
            {"name": "status", "type": "enum", "values": ["draft", "active"]},
            {"name": "n", "type": "integer", "max": 3}
        ]}),
        Precondition::Any,
    )
    .unwrap();
    let doc = s.get("r", "old").unwrap().expect("still readable");
    assert_eq!(doc.body["status"], "retired");
    // A patch that leaves the stale values alone is accepted.
    let doc = s
        .patch(
            "r",
            "old",
            &Patch::Merge(json!({"status": "active"})),
            Precondition::Any,
        )
        .unwrap();
    assert_eq!(
        Value::Object(std::sync::Arc::unwrap_or_clone(doc.body)),
        json!({"status": "active", "legacy": 1, "n": 5})
    );
    // Writing a now-invalid value anew is refused.
    assert_eq!(
        violations(s.patch(
            "r",
            "old",
            &Patch::Merge(json!({"status": "retired"})),
            Precondition::Any
        )),
        [("/status".to_owned(), "enum")]
    );
    assert_eq!(
        violations(s.patch(
            "r",
            "old",
            &Patch::Merge(json!({"n": 6})),
            Precondition::Any
        )),
        [("/n".to_owned(), "max")]
    );
    assert_eq!(
        violations(s.patch(
            "r",
            "old",
            &Patch::Merge(json!({"legacy": 2})),
            Precondition::Any
        )),
        [("/legacy".to_owned(), "undeclared")]
    );
    // Removing the undeclared attribute is allowed.
    s.patch(
        "r",
        "old",
        &Patch::Merge(json!({"legacy": null})),
        Precondition::Any,
    )
    .unwrap();
}

/// A malformed schema document is refused listing every problem with its
/// path, and nothing is written.
pub fn invalid_schemas_are_refused_with_every_problem(backend: &dyn TestBackend) {
    let (_loc, s) = fresh(backend);
    let bad = json!({
        "attributes": [
            {"name": "a", "type": "strang"},
            {"name": "b", "type": "integer", "min": 5, "max": 1},
            {"name": "c", "type": "enum", "values": []},
            {"name": "b", "type": "string"},
            {"name": "d", "type": "string", "pattern": "("},
            {"name": "e", "type": "integer", "default": "x"}
        ],
        "surprise": 1
    });
    match s.set_schema("m", bad, Precondition::Any) {
        Err(Error::InvalidSchema { key, problems }) => {
            assert_eq!(key.to_string(), "_schema/m");
            let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
            for expected in [
                "/attributes/0/type",
                "/attributes/2/values",
                "/attributes/4/pattern",
                "/attributes/5/default",
                "/surprise",
            ] {
                assert!(
                    paths.contains(&expected),
                    "{expected} missing from {paths:?}"
                );
            }
            assert!(problems.len() >= 7, "{problems:?}");
        }
        other => panic!("expected InvalidSchema, got {other:?}"),
    }
    assert!(s.get_schema("m").unwrap().is_none());
    assert!(matches!(
        s.set_schema("m", json!([1]), Precondition::Any),
        Err(Error::InvalidBody { .. })
    ));
    assert!(matches!(
        s.set_schema("bad/name", json!({"attributes": []}), Precondition::Any),
        Err(Error::InvalidName { .. })
    ));
    assert_eq!(s.last_seq().unwrap(), 0, "nothing was written");
}

/// Migration reports, then strips, attributes the schema no longer
/// declares, one compare-and-swap per document, resumably.
pub fn migration_reports_and_strips_resumably(backend: &dyn TestBackend) {
    use crate::MigrationMode;
    let (_loc, s) = fresh(backend);
    for (name, body) in [
        ("a", json!({"keep": 1, "drop": 1})),
        ("b", json!({"keep": 2})),
        ("c", json!({"drop": 3, "also": true, "keep": 3})),
    ] {
        s.create("m", name, body).unwrap();
    }
    s.set_schema(
        "m",
        json!({"attributes": [{"name": "keep", "type": "integer"}]}),
        Precondition::Any,
    )
    .unwrap();
    let report = s.migrate("m", MigrationMode::Report, None, 100).unwrap();
    assert_eq!(report.schema_revision, 1);
    assert_eq!(report.examined, 3);
    assert_eq!(report.resume_after, None);
    let found: Vec<(&str, Vec<String>)> = report
        .documents
        .iter()
        .map(|d| (d.name.as_str(), d.undeclared.clone()))
        .collect();
    assert_eq!(
        found,
        [
            ("a", vec!["drop".to_owned()]),
            ("c", vec!["drop".to_owned(), "also".to_owned()])
        ]
    );
    assert_eq!(
        s.get("m", "a").unwrap().unwrap().revision,
        1,
        "reporting writes nothing"
    );
    // Strip, one document per call, resuming each time.
    let mut resume: Option<String> = None;
    let mut calls = 0;
    loop {
        let step = s
            .migrate("m", MigrationMode::Strip, resume.as_deref(), 1)
            .unwrap();
        calls += 1;
        assert!(step.examined <= 1);
        resume = step.resume_after;
        if resume.is_none() {
            break;
        }
        assert!(calls < 10, "migration does not terminate");
    }
    assert_eq!(calls, 3);
    assert_eq!(
        Value::Object(std::sync::Arc::unwrap_or_clone(
            s.get("m", "a").unwrap().unwrap().body
        )),
        json!({"keep": 1})
    );
    assert_eq!(
        s.get("m", "b").unwrap().unwrap().revision,
        1,
        "conforming documents untouched"
    );
    let c = s.get("m", "c").unwrap().unwrap();
    assert_eq!(
        (
            c.revision,
            Value::Object(std::sync::Arc::unwrap_or_clone(c.body))
        ),
        (2, json!({"keep": 3}))
    );
    assert!(s
        .migrate("m", MigrationMode::Report, None, 100)
        .unwrap()
        .documents
        .is_empty());
}

/// Two handles take turns writing one key, each after warming its own read
/// cache with writes of its own: a handle that starts a write from what it
/// remembers must notice the other's writes, whatever the operation.
pub fn handles_taking_turns_lose_nothing(backend: &dyn TestBackend) {
    let location = backend.fresh();
    let (a, b) = (location.open(), location.open());
    a.create("c", "d", json!({"n": 0})).unwrap();
    let mut revision = 1;
    let mut expected = json!({"n": 0});
    for round in 0..6 {
        for (name, s) in [("a", &a), ("b", &b)] {
            // Three writes in a row, so a backend that caches only keys it
            // wrote before has this one cached.
            for i in 0..3 {
                let field = format!("{name}{round}_{i}");
                let doc = s
                    .patch(
                        "c",
                        "d",
                        &Patch::Merge(json!({ field.clone(): i })),
                        Precondition::Any,
                    )
                    .unwrap();
                revision += 1;
                expected[field] = json!(i);
                assert_eq!(doc.revision, revision, "{name} round {round}");
                assert_eq!(
                    Value::Object(std::sync::Arc::unwrap_or_clone(doc.body)),
                    expected,
                    "{name} round {round}"
                );
            }
            let doc = s
                .update("c", "d", |body| {
                    let n = body.get("n").and_then(Value::as_i64).unwrap_or(-100);
                    body.insert("n".into(), json!(n + 1));
                    Ok(())
                })
                .unwrap();
            revision += 1;
            expected["n"] = json!(expected["n"].as_i64().unwrap() + 1);
            assert_eq!(
                (
                    doc.revision,
                    Value::Object(std::sync::Arc::unwrap_or_clone(doc.body))
                ),
                (revision, expected.clone())
            );
        }
    }
    // A compare-and-swap on the revision this handle wrote last is refused
    // once the other handle has written since.
    let own = a
        .patch("c", "d", &Patch::Merge(json!({"x": 1})), Precondition::Any)
        .unwrap();
    b.patch("c", "d", &Patch::Merge(json!({"y": 1})), Precondition::Any)
        .unwrap();
    let stale = a.replace("c", "d", json!({}), Precondition::Revision(own.revision));
    assert!(
        matches!(&stale, Err(Error::Conflict { actual: Current::Live { revision }, .. }) if *revision == own.revision + 1),
        "{stale:?}"
    );
    // Deleted and re-created by the other handle: a create here conflicts,
    // a patch applies to the new document.
    b.delete("c", "d", Precondition::Any).unwrap();
    b.create("c", "d", json!({"new": true})).unwrap();
    let created = a.create("c", "d", json!({}));
    assert!(
        matches!(&created, Err(Error::Conflict { actual: Current::Live { revision }, .. }) if *revision == own.revision + 3),
        "{created:?}"
    );
    let doc = a
        .patch("c", "d", &Patch::Merge(json!({"z": 1})), Precondition::Any)
        .unwrap();
    assert_eq!(
        (
            doc.revision,
            Value::Object(std::sync::Arc::unwrap_or_clone(doc.body))
        ),
        (own.revision + 4, json!({"new": true, "z": 1}))
    );
    // Deleted by the other handle: this handle's patch finds nothing.
    b.delete("c", "d", Precondition::Any).unwrap();
    let gone = a.patch("c", "d", &Patch::Merge(json!({"w": 1})), Precondition::Any);
    assert!(matches!(gone, Err(Error::NotFound { .. })), "{gone:?}");
}
