//! Tests of the schema document, validation, ratcheting, defaults and the
//! cache.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::thread;

use serde_json::{json, Value};

use super::*;
use crate::body::Body;

fn body(v: Value) -> Body {
    match v {
        Value::Object(map) => map,
        other => panic!("{other} is not a mapping"),
    }
}

fn compile(v: Value) -> CompiledSchema {
    match CompiledSchema::compile(&body(v)) {
        Ok(s) => s,
        Err(e) => panic!("schema refused: {e}"),
    }
}

fn problems(v: Value) -> Vec<(String, String)> {
    match Schema::parse(&body(v)) {
        Ok(_) => panic!("schema accepted"),
        Err(e) => e
            .problems
            .into_iter()
            .map(|p| (p.path, p.message))
            .collect(),
    }
}

fn paths_of(problems: &[(String, String)]) -> Vec<&str> {
    problems.iter().map(|(p, _)| p.as_str()).collect()
}

/// (path, rule) of every violation of a create.
fn create_violations(schema: &CompiledSchema, v: Value) -> Vec<(String, &'static str)> {
    violations(schema, v, None)
}

fn violations(
    schema: &CompiledSchema,
    new: Value,
    old: Option<Value>,
) -> Vec<(String, &'static str)> {
    let old = old.map(body);
    match schema.validate(&body(new), old.as_ref()) {
        Ok(()) => Vec::new(),
        Err(vs) => vs.into_iter().map(|v| (v.path, v.rule)).collect(),
    }
}

fn v(path: &str, rule: &'static str) -> (String, &'static str) {
    (path.to_owned(), rule)
}

/// The example of the module documentation.
fn example() -> Value {
    json!({
        "description": "Custom attributes of assets",
        "undeclared": "reject",
        "attributes": [
            {"name": "owner", "type": "string", "description": "Who owns it",
             "min_length": 1, "max_length": 64, "pattern": "^[a-z]+$", "required": true},
            {"name": "size", "type": "integer", "min": 0, "max": 100, "default": 1},
            {"name": "status", "type": "enum", "values": ["draft", "active", "retired"], "default": "draft"},
            {"name": "ratio", "type": "float"},
            {"name": "active", "type": "boolean"},
            {"name": "created", "type": "datetime"},
            {"name": "tags", "type": "list_of_strings", "min_items": 0, "max_items": 10},
            {"name": "ids", "type": "list_of_integers"},
            {"name": "extra", "type": "list_of_any"},
            {"name": "meta", "type": "dict"}
        ]
    })
}

// ---- the schema document -------------------------------------------------

#[test]
fn example_schema_parses_with_its_parts() {
    let schema = compile(example());
    let s = schema.schema();
    assert_eq!(s.description(), Some("Custom attributes of assets"));
    assert_eq!(s.undeclared(), UndeclaredPolicy::Reject);
    assert_eq!(s.attributes().len(), 10);
    let owner = schema.attribute("owner").unwrap();
    assert_eq!(owner.kind(), AttributeType::String);
    assert!(owner.required());
    assert_eq!(owner.pattern(), Some("^[a-z]+$"));
    assert_eq!(owner.description(), Some("Who owns it"));
    let status = schema.attribute("status").unwrap();
    assert_eq!(status.values(), ["draft", "active", "retired"]);
    assert_eq!(status.default(), Some(&json!("draft")));
    assert!(schema.attribute("nope").is_none());
}

#[test]
fn minimal_schema_and_policies() {
    let s = compile(json!({"attributes": []}));
    assert_eq!(s.schema().undeclared(), UndeclaredPolicy::Reject);
    assert_eq!(
        create_violations(&s, json!({"x": 1})),
        [v("/x", "undeclared")]
    );
    let s = compile(json!({"undeclared": "allow", "attributes": []}));
    assert_eq!(create_violations(&s, json!({"x": 1})), []);
}

#[test]
fn every_type_name_round_trips() {
    for t in AttributeType::ALL {
        assert_eq!(AttributeType::from_name(t.as_str()), Some(t));
        assert_eq!(t.to_string(), t.as_str());
        let mut attr = json!({"name": "a", "type": t.as_str()});
        if t == AttributeType::Enum {
            attr["values"] = json!(["x"]);
        }
        compile(json!({ "attributes": [attr] }));
    }
    assert_eq!(AttributeType::from_name("str"), None);
}

#[test]
fn malformed_schema_reports_every_problem_with_its_path() {
    let found = problems(json!({
        "descripton": "typo",
        "undeclared": "maybe",
        "attributes": [
            {"name": "a", "type": "strng"},
            {"name": "b", "type": "integer", "min": 10, "max": 5, "colour": "red"},
            {"name": "c", "type": "enum"},
            {"name": "d", "type": "enum", "values": ["x", "y", "x", 3]},
            {"name": "e", "type": "string", "pattern": "(unclosed", "min": 1},
            {"name": "a", "type": "boolean"},
            {"name": "f", "type": "integer", "max": 3, "default": 7},
            "not a mapping",
            {"type": "string"},
            {"name": "bad name!", "type": "dict"},
            {"name": "g", "type": "string", "min_length": -1, "max_items": 3},
            {"name": "h", "type": "list_of_strings", "min_items": 5, "max_items": 2},
            {"name": "i", "type": "integer", "min": 0.5, "required": "yes"},
            {"name": "j", "type": "enum", "values": []}
        ]
    }));
    let paths = paths_of(&found);
    assert_eq!(
        paths,
        [
            "/descripton",
            "/undeclared",
            "/attributes/0/type",
            "/attributes/1/colour",
            "/attributes/1/min",
            "/attributes/2",
            "/attributes/3/values/2",
            "/attributes/3/values/3",
            "/attributes/4/pattern",
            "/attributes/4/min",
            "/attributes/5/name",
            "/attributes/6/default",
            "/attributes/7",
            "/attributes/8",
            "/attributes/9/name",
            "/attributes/10/min_length",
            "/attributes/10/max_items",
            "/attributes/11/min_items",
            "/attributes/12/min",
            "/attributes/12/required",
            "/attributes/13/values",
        ],
        "{found:#?}"
    );
    let message = |path: &str| {
        found
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, m)| m.clone())
            .unwrap()
    };
    assert!(message("/attributes/0/type").contains("unknown type \"strng\""));
    assert!(message("/attributes/1/min").contains("greater than max"));
    assert!(message("/attributes/2").contains("needs `values`"));
    assert!(message("/attributes/3/values/2")
        .contains("duplicate value \"x\" (first at /attributes/3/values/0)"));
    assert!(message("/attributes/4/pattern").contains("does not compile"));
    assert!(message("/attributes/4/min").contains("does not apply to type string"));
    assert!(message("/attributes/5/name").contains("first at /attributes/0"));
    assert!(message("/attributes/6/default").contains("max"));
    assert!(message("/attributes/8").contains("`name` is missing"));
    assert!(message("/attributes/12/min").contains("must be an integer"));
    assert!(message("/attributes/13/values").contains("at least one"));
}

#[test]
fn schema_document_shape_errors() {
    assert_eq!(paths_of(&problems(json!({}))), [""]);
    assert_eq!(
        paths_of(&problems(json!({"attributes": {"a": 1}}))),
        ["/attributes"]
    );
    assert_eq!(
        paths_of(&problems(json!({"description": 5, "attributes": []}))),
        ["/description"]
    );
    assert_eq!(
        paths_of(&problems(
            json!({"attributes": [{"name": 1, "type": ["string"]}]})
        )),
        ["/attributes/0/name", "/attributes/0/type"]
    );
    // A pointer token is escaped.
    assert_eq!(
        paths_of(&problems(json!({"a/b~c": 1, "attributes": []}))),
        ["/a~1b~0c"]
    );
}

#[test]
fn defaults_must_satisfy_their_own_rules() {
    let found = problems(json!({"attributes": [
        {"name": "s", "type": "string", "pattern": "^a", "default": "b"},
        {"name": "e", "type": "enum", "values": ["x"], "default": "y"},
        {"name": "d", "type": "datetime", "default": "2023-02-29T00:00:00Z"},
        {"name": "l", "type": "list_of_integers", "max": 3, "default": [1, 9]},
        {"name": "t", "type": "boolean", "default": "true"},
        {"name": "ok", "type": "list_of_strings", "max_items": 1, "default": ["a"]}
    ]}));
    assert_eq!(
        paths_of(&found),
        [
            "/attributes/0/default",
            "/attributes/1/default",
            "/attributes/2/default",
            "/attributes/3/default/1",
            "/attributes/4/default"
        ]
    );
    assert!(found[0].1.contains("pattern"), "{found:?}");
    assert!(found[1].1.contains("enum"), "{found:?}");
}

#[test]
fn hostile_patterns_are_refused() {
    let long = "a".repeat(MAX_PATTERN_LEN + 1);
    let found = problems(json!({"attributes": [
        {"name": "a", "type": "string", "pattern": long},
        // Compiles to far more than the size limit.
        {"name": "b", "type": "string", "pattern": "\\w{1000}\\w{1000}\\w{1000}"},
        {"name": "c", "type": "string", "pattern": format!("{}a{}", "(".repeat(200), ")".repeat(200))},
        {"name": "d", "type": "string", "pattern": 5}
    ]}));
    assert_eq!(
        paths_of(&found),
        [
            "/attributes/0/pattern",
            "/attributes/1/pattern",
            "/attributes/2/pattern",
            "/attributes/3/pattern"
        ]
    );
    assert!(found[0].1.contains("at most 1024"));
    // Messages are one line.
    assert!(found.iter().all(|(_, m)| !m.contains('\n')), "{found:?}");
}

#[test]
fn schema_error_display_lists_all_problems() {
    let err = Schema::parse(&body(json!({"x": 1, "attributes": [{"name": "a"}]}))).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("/x: unknown field"), "{text}");
    assert!(text.contains("/attributes/0: `type` is missing"), "{text}");
}

// ---- validation, type by type ---------------------------------------------

fn one(attr: Value) -> CompiledSchema {
    compile(json!({ "attributes": [attr] }))
}

fn check(schema: &CompiledSchema, value: Value) -> Vec<(String, &'static str)> {
    create_violations(schema, json!({ "a": value }))
}

#[test]
fn strings() {
    let s = one(
        json!({"name": "a", "type": "string", "min_length": 2, "max_length": 3, "pattern": "^[a-zé]+$"}),
    );
    assert_eq!(check(&s, json!("ab")), []);
    // Lengths count characters, not bytes.
    assert_eq!(check(&s, json!("ééé")), []);
    assert_eq!(check(&s, json!("a")), [v("/a", "min_length")]);
    assert_eq!(check(&s, json!("abcd")), [v("/a", "max_length")]);
    assert_eq!(check(&s, json!("AB")), [v("/a", "pattern")]);
    assert_eq!(
        check(&s, json!("ABCDE")),
        [v("/a", "max_length"), v("/a", "pattern")]
    );
    for wrong in [json!(1), json!(true), json!(null), json!([]), json!({})] {
        assert_eq!(check(&s, wrong), [v("/a", "type")]);
    }
    // Unanchored patterns search, as in JSON Schema.
    let s = one(json!({"name": "a", "type": "string", "pattern": "b"}));
    assert_eq!(check(&s, json!("abc")), []);
}

#[test]
fn integers() {
    let s = one(json!({"name": "a", "type": "integer", "min": -5, "max": 100}));
    for ok in [json!(-5), json!(0), json!(100)] {
        assert_eq!(check(&s, ok), []);
    }
    assert_eq!(check(&s, json!(-6)), [v("/a", "min")]);
    assert_eq!(check(&s, json!(101)), [v("/a", "max")]);
    assert_eq!(check(&s, json!(u64::MAX)), [v("/a", "max")]);
    for wrong in [json!(1.0), json!(1.5), json!("1"), json!(null)] {
        assert_eq!(check(&s, wrong), [v("/a", "type")]);
    }
    let unbounded = one(json!({"name": "a", "type": "integer"}));
    assert_eq!(check(&unbounded, json!(i64::MIN)), []);
    assert_eq!(check(&unbounded, json!(u64::MAX)), []);
}

#[test]
fn floats() {
    let s = one(json!({"name": "a", "type": "float", "min": 0, "max": 1.5}));
    for ok in [json!(0), json!(0.0), json!(1), json!(1.5)] {
        assert_eq!(check(&s, ok), []);
    }
    assert_eq!(check(&s, json!(-0.001)), [v("/a", "min")]);
    assert_eq!(check(&s, json!(2)), [v("/a", "max")]);
    assert_eq!(check(&s, json!("0.5")), [v("/a", "type")]);
}

#[test]
fn booleans_dicts_and_lists_of_any() {
    let s = one(json!({"name": "a", "type": "boolean"}));
    assert_eq!(check(&s, json!(false)), []);
    assert_eq!(check(&s, json!(0)), [v("/a", "type")]);
    assert_eq!(check(&s, json!("true")), [v("/a", "type")]);

    let s = one(json!({"name": "a", "type": "dict"}));
    assert_eq!(check(&s, json!({"x": [1, {"y": null}]})), []);
    assert_eq!(check(&s, json!([])), [v("/a", "type")]);

    let s = one(json!({"name": "a", "type": "list_of_any", "min_items": 1, "max_items": 2}));
    assert_eq!(check(&s, json!([1, "x"])), []);
    assert_eq!(check(&s, json!([])), [v("/a", "min_items")]);
    assert_eq!(check(&s, json!([1, 2, 3])), [v("/a", "max_items")]);
    assert_eq!(check(&s, json!({})), [v("/a", "type")]);
}

#[test]
fn enums() {
    let s = one(json!({"name": "a", "type": "enum", "values": ["draft", "active"]}));
    assert_eq!(check(&s, json!("draft")), []);
    assert_eq!(check(&s, json!("Draft")), [v("/a", "enum")]);
    assert_eq!(check(&s, json!(1)), [v("/a", "type")]);
    let err = s.validate(&body(json!({"a": "x"})), None).unwrap_err();
    assert_eq!(err[0].message, r#""x" is not one of "draft", "active""#);
}

#[test]
fn datetimes() {
    let s = one(json!({"name": "a", "type": "datetime"}));
    for ok in [
        "2024-02-29T12:00:00Z",
        "2024-02-29t12:00:00.123456z",
        "2016-12-31T23:59:60Z",
        "2017-01-01T00:59:60+01:00",
        "2024-06-01T08:30:00-05:30",
    ] {
        assert_eq!(check(&s, json!(ok)), [], "{ok}");
    }
    for bad in [
        "2023-02-29T12:00:00Z",
        "2024-01-01T24:00:00Z",
        "2024-01-01T12:00:60Z",
        "2024-01-01 12:00:00Z",
        "2024-01-01",
        "2024-01-01T12:00:00+25:00",
    ] {
        assert_eq!(check(&s, json!(bad)), [v("/a", "format")], "{bad}");
    }
    assert_eq!(check(&s, json!(1_700_000_000)), [v("/a", "type")]);
}

#[test]
fn lists_of_strings_check_each_item() {
    let s = one(
        json!({"name": "a", "type": "list_of_strings", "max_items": 3, "max_length": 2, "pattern": "^[a-z]*$"}),
    );
    assert_eq!(check(&s, json!(["a", "bc"])), []);
    assert_eq!(
        check(&s, json!(["a", 1, "ABC", "d"])),
        [
            v("/a", "max_items"),
            v("/a/1", "type"),
            v("/a/2", "max_length"),
            v("/a/2", "pattern")
        ]
    );
    assert_eq!(check(&s, json!("a")), [v("/a", "type")]);
}

#[test]
fn lists_of_integers_check_each_item() {
    let s = one(json!({"name": "a", "type": "list_of_integers", "min": 0, "max": 9}));
    assert_eq!(check(&s, json!([0, 9])), []);
    assert_eq!(
        check(&s, json!([1, -1, 10, 2.5, "3"])),
        [
            v("/a/1", "min"),
            v("/a/2", "max"),
            v("/a/3", "type"),
            v("/a/4", "type")
        ]
    );
}

#[test]
fn all_violations_are_listed_and_undeclared_named() {
    let s = compile(example());
    let found = s
        .validate(
            &body(json!({"size": 500, "status": "gone", "colour": "red", "tags": [1]})),
            None,
        )
        .unwrap_err();
    let pairs: Vec<(&str, &str)> = found.iter().map(|v| (v.path.as_str(), v.rule)).collect();
    assert_eq!(
        pairs,
        [
            ("/owner", "required"),
            ("/size", "max"),
            ("/status", "enum"),
            ("/tags/0", "type"),
            ("/colour", "undeclared")
        ]
    );
    let undeclared = &found[4];
    assert!(undeclared.message.contains("\"colour\""), "{undeclared}");
    assert!(describe_violations(&found).contains("/colour: attribute \"colour\""));
}

#[test]
fn a_full_valid_body_passes() {
    let s = compile(example());
    let full = json!({
        "owner": "ann", "size": 3, "status": "active", "ratio": 0.25, "active": true,
        "created": "2024-02-29T12:00:00Z", "tags": ["x"], "ids": [1, 2],
        "extra": [null, {"a": 1}], "meta": {"k": "v"}
    });
    assert_eq!(create_violations(&s, full), []);
}

// ---- ratcheting -------------------------------------------------------------

fn tightened() -> CompiledSchema {
    // `status` used to allow "legacy"; `note` used to be declared.
    compile(json!({"attributes": [
        {"name": "status", "type": "enum", "values": ["draft", "active"]},
        {"name": "size", "type": "integer", "max": 10},
        {"name": "owner", "type": "string", "required": true},
        {"name": "tags", "type": "list_of_strings", "max_length": 3}
    ]}))
}

#[test]
fn unchanged_stale_values_survive_an_update_of_another_field() {
    let s = tightened();
    let old =
        json!({"owner": "o", "status": "legacy", "size": 50, "note": "kept", "tags": ["toolong"]});
    let new =
        json!({"owner": "o", "status": "legacy", "size": 5, "note": "kept", "tags": ["toolong"]});
    assert_eq!(violations(&s, new, Some(old.clone())), []);
    // The same body as a create breaks every tightened rule.
    assert_eq!(
        create_violations(&s, old),
        [
            v("/status", "enum"),
            v("/size", "max"),
            v("/tags/0", "max_length"),
            v("/note", "undeclared")
        ]
    );
}

#[test]
fn writing_a_stale_value_anew_fails() {
    let s = tightened();
    let old = json!({"owner": "o", "status": "draft", "note": "a"});
    let new = json!({"owner": "o", "status": "legacy", "note": "b", "fresh": 1});
    assert_eq!(
        violations(&s, new, Some(old)),
        [
            v("/status", "enum"),
            v("/note", "undeclared"),
            v("/fresh", "undeclared")
        ]
    );
}

#[test]
fn removal_is_checked_only_against_required() {
    let s = tightened();
    // Removing an optional stale attribute is fine; removing a required one is not.
    let old = json!({"owner": "o", "status": "legacy"});
    assert_eq!(violations(&s, json!({"owner": "o"}), Some(old.clone())), []);
    assert_eq!(
        violations(&s, json!({"status": "legacy"}), Some(old)),
        [v("/owner", "required")]
    );
    // A required attribute missing before may stay missing.
    assert_eq!(
        violations(&s, json!({"size": 1}), Some(json!({"size": 2}))),
        []
    );
    // A create must hold it.
    assert_eq!(
        create_violations(&s, json!({"size": 1})),
        [v("/owner", "required")]
    );
}

#[test]
fn changed_lists_recheck_only_changed_items() {
    let s = tightened();
    let old = json!({"owner": "o", "tags": ["long1", "ok"]});
    // Appending keeps the stale first item; the new one is checked.
    assert_eq!(
        violations(
            &s,
            json!({"owner": "o", "tags": ["long1", "ok", "new"]}),
            Some(old.clone())
        ),
        []
    );
    assert_eq!(
        violations(
            &s,
            json!({"owner": "o", "tags": ["long1", "ok", "long2"]}),
            Some(old.clone())
        ),
        [v("/tags/2", "max_length")]
    );
    // Moving a stale item to another position counts as writing it anew.
    assert_eq!(
        violations(
            &s,
            json!({"owner": "o", "tags": ["ok", "long1"]}),
            Some(old)
        ),
        [v("/tags/1", "max_length")]
    );
}

#[test]
fn a_type_change_is_a_change() {
    let s = tightened();
    let old = json!({"owner": "o", "size": 3});
    assert_eq!(
        violations(&s, json!({"owner": "o", "size": 3.0}), Some(old)),
        [v("/size", "type")]
    );
}

#[test]
fn key_order_of_a_dict_is_not_a_change() {
    let s = compile(json!({"attributes": [{"name": "m", "type": "integer"}]}));
    // `m` is stale (a mapping where an integer is declared) but unchanged
    // apart from key order.
    let old = json!({"m": {"a": 1, "b": 2}});
    let new = json!({"m": {"b": 2, "a": 1}});
    assert_eq!(violations(&s, new, Some(old)), []);
}

// ---- defaults and helpers ---------------------------------------------------

#[test]
fn defaults_fill_only_missing_attributes() {
    let s = compile(example());
    let mut b = body(json!({"owner": "ann", "status": "active", "meta": null}));
    s.apply_defaults(&mut b);
    assert_eq!(
        Value::Object(b.clone()),
        json!({"owner": "ann", "status": "active", "meta": null, "size": 1})
    );
    let keys: Vec<&str> = b.keys().map(String::as_str).collect();
    assert_eq!(keys, ["owner", "status", "meta", "size"]);
    let mut empty = Body::new();
    s.apply_defaults(&mut empty);
    assert_eq!(Value::Object(empty), json!({"size": 1, "status": "draft"}));
}

#[test]
fn undeclared_attributes_are_listed_whatever_the_policy() {
    let s = compile(json!({"undeclared": "allow", "attributes": [{"name": "a", "type": "dict"}]}));
    assert_eq!(
        s.undeclared_attributes(&body(json!({"z": 1, "a": {}, "b": 2}))),
        ["z", "b"]
    );
    assert_eq!(s.validate(&body(json!({"z": 1})), None), Ok(()));
}

// ---- the cache ----------------------------------------------------------------

/// A schema whose description is its revision, so a reader can tell which
/// one it got.
fn revision_schema(revision: u64) -> CompiledSchema {
    compile(json!({"description": revision.to_string(), "attributes": []}))
}

fn revision_of(schema: &CompiledSchema) -> u64 {
    schema.schema().description().unwrap().parse().unwrap()
}

#[test]
fn cache_answers_exact_revisions_and_only_moves_forward() {
    let cache = SchemaCache::new();
    assert!(cache.get("c", 1).is_none());
    assert!(cache.install("c", 2, Arc::new(revision_schema(2))));
    assert_eq!(revision_of(&cache.get("c", 2).unwrap()), 2);
    assert!(cache.get("c", 1).is_none());
    assert!(cache.get("c", 3).is_none());
    assert!(cache.get("other", 2).is_none());
    // Older or equal revisions are not installed.
    assert!(!cache.install("c", 1, Arc::new(revision_schema(1))));
    assert!(!cache.install("c", 2, Arc::new(revision_schema(2))));
    assert_eq!(cache.latest("c").unwrap().revision, 2);
    assert!(cache.install("c", 7, Arc::new(revision_schema(7))));
    assert_eq!(cache.latest("c").unwrap().revision, 7);
    assert!(cache.get("c", 2).is_none());
}

#[test]
fn get_or_load_loads_once_and_reports_loader_errors() {
    let cache = SchemaCache::new();
    let calls = AtomicU64::new(0);
    for _ in 0..3 {
        let s = cache
            .get_or_load("c", 4, || {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok::<_, SchemaError>(revision_schema(4))
            })
            .unwrap();
        assert_eq!(revision_of(&s), 4);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let err = cache
        .get_or_load("c", 5, || CompiledSchema::compile(&body(json!({"bad": 1}))))
        .unwrap_err();
    assert_eq!(err.problems.len(), 2);
    assert_eq!(cache.latest("c").unwrap().revision, 4);
}

#[test]
fn a_slow_older_load_never_replaces_a_newer_one() {
    let cache = Arc::new(SchemaCache::new());
    let (release_5, wait_5) = mpsc::channel::<()>();
    let (loading_5, started_5) = mpsc::channel::<()>();

    let slow = {
        let cache = Arc::clone(&cache);
        thread::spawn(move || {
            let s = cache
                .get_or_load("c", 5, || {
                    loading_5.send(()).unwrap();
                    wait_5.recv().unwrap();
                    Ok::<_, SchemaError>(revision_schema(5))
                })
                .unwrap();
            // The caller asked for 5 and validates against 5.
            assert_eq!(revision_of(&s), 5);
        })
    };
    started_5.recv().unwrap();
    let six = cache
        .get_or_load("c", 6, || Ok::<_, SchemaError>(revision_schema(6)))
        .unwrap();
    assert_eq!(revision_of(&six), 6);
    release_5.send(()).unwrap();
    slow.join().unwrap();

    let latest = cache.latest("c").unwrap();
    assert_eq!(latest.revision, 6);
    assert_eq!(revision_of(&latest.schema), 6);
    assert!(Arc::ptr_eq(&cache.get("c", 6).unwrap(), &six));
    assert!(cache.get("c", 5).is_none());
}

#[test]
fn readers_never_see_a_wrong_or_older_schema_while_installs_race() {
    const REVISIONS: u64 = 200;
    let cache = Arc::new(SchemaCache::new());
    let done = Arc::new(AtomicBool::new(false));
    let writers = 3;
    let readers = 4;
    let start = Arc::new(Barrier::new(writers + readers));

    let mut handles = Vec::new();
    for w in 0..writers {
        let (cache, start) = (Arc::clone(&cache), Arc::clone(&start));
        handles.push(thread::spawn(move || {
            start.wait();
            // Each writer installs every third revision, so installs
            // interleave and many arrive older than what is cached.
            for r in (1..=REVISIONS).filter(|r| r % 3 == w as u64) {
                let loaded = cache
                    .get_or_load("c", r, || Ok::<_, SchemaError>(revision_schema(r)))
                    .unwrap();
                assert_eq!(revision_of(&loaded), r);
            }
        }));
    }
    let mut reader_handles = Vec::new();
    for i in 0..readers {
        let (cache, start, done) = (Arc::clone(&cache), Arc::clone(&start), Arc::clone(&done));
        reader_handles.push(thread::spawn(move || {
            start.wait();
            let mut newest_seen = 0;
            let mut hits = 0u64;
            let mut probe = i as u64;
            while !done.load(Ordering::SeqCst) {
                if let Some(latest) = cache.latest("c") {
                    assert!(latest.revision >= newest_seen, "the cache went backwards");
                    assert_eq!(revision_of(&latest.schema), latest.revision);
                    newest_seen = latest.revision;
                }
                probe = (probe * 7 + 3) % (REVISIONS + 1);
                if let Some(s) = cache.get("c", probe) {
                    assert_eq!(revision_of(&s), probe, "asked for {probe}");
                    hits += 1;
                }
            }
            (newest_seen, hits)
        }));
    }
    for h in handles {
        h.join().unwrap();
    }
    done.store(true, Ordering::SeqCst);
    for h in reader_handles {
        let (newest_seen, _hits) = h.join().unwrap();
        assert!(newest_seen <= REVISIONS);
    }
    assert_eq!(cache.latest("c").unwrap().revision, REVISIONS);
    assert_eq!(revision_of(&cache.get("c", REVISIONS).unwrap()), REVISIONS);
}

#[test]
fn compiled_schemas_and_the_cache_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<CompiledSchema>();
    assert_send_sync::<SchemaCache>();
    assert_send_sync::<Arc<CompiledSchema>>();
    assert_send_sync::<SchemaError>();
}
