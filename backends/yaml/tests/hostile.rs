//! Hostile files on disk, end to end through `revstore::Store`: every way a
//! document file can be broken gets a typed error naming the file from
//! get, list, patch, replace, create and delete (and from the backend's own
//! commit, whatever revision it is told to expect); the bytes on disk are
//! unchanged afterwards; other documents keep working.

use std::path::Path;
use std::time::{Duration, Instant};

use revstore::{ChangeKind, Commit, Error, Key, Patch, Precondition, StorageBackend, Store};
use revstore_yaml::YamlBackend;
use serde_json::json;
use tempfile::TempDir;

fn assert_corrupt_naming<T: std::fmt::Debug>(
    result: revstore::Result<T>,
    path: &Path,
    context: &str,
) -> String {
    match result {
        Err(Error::Corrupt { location, reason }) => {
            assert_eq!(location, path.display().to_string(), "{context}");
            reason
        }
        other => panic!(
            "{context}: expected Corrupt naming {}, got {other:?}",
            path.display()
        ),
    }
}

/// A nested alias bomb ("billion laughs"): `levels` levels of ten aliases
/// each to the level below.
fn billion_laughs(levels: usize) -> Vec<u8> {
    let mut text = String::from(
        "revision: 1\nbody:\n  l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n",
    );
    for i in 1..levels {
        let prev = format!("*l{}", i - 1);
        let items = [prev.as_str(); 10].join(", ");
        text.push_str(&format!("  l{i}: &l{i} [{items}]\n"));
    }
    text.push_str("digest: x\n");
    text.into_bytes()
}

/// A file the backend wrote, for the cases that damage one.
fn written() -> Vec<u8> {
    let dir = TempDir::new().unwrap();
    let s = Store::open(YamlBackend::open(dir.path()).unwrap());
    s.create(
        "models",
        "orders",
        json!({"description": "All orders", "joins": ["customers", "items"], "n": 12}),
    )
    .unwrap();
    std::fs::read(dir.path().join("models/orders.yaml")).unwrap()
}

/// Every hostile case: a name, the file's bytes, and a word the error's
/// reason must contain ("" when libyaml's own wording is all there is).
fn cases() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let good = written();
    let text = String::from_utf8(good.clone()).unwrap();
    let seal_at = text.find("digest:").unwrap();
    let mut binary: Vec<u8> = (0..=255u8).cycle().take(700).collect();
    binary.extend_from_slice(b"\0\0\x7f\xff");
    let deep = format!("revision: 1\nbody: {{a: {}\ndigest: x\n", "[".repeat(5_000));
    vec![
        ("empty", Vec::new(), "empty"),
        ("only whitespace", b"  \n\t\n".to_vec(), ""),
        ("only a comment", b"# nothing here\n".to_vec(), "no record"),
        ("truncated in the body", good[..good.len() / 3].to_vec(), ""),
        (
            "truncated before the seal",
            good[..seal_at].to_vec(),
            "no `digest:` line",
        ),
        ("zero-filled", vec![0; good.len()], ""),
        ("binary", binary, ""),
        (
            "not UTF-8",
            b"revision: 1\nbody:\n  a: \xff\xfe\ndigest: x\n".to_vec(),
            "UTF-8",
        ),
        (
            "UTF-16",
            b"\xff\xfer\x00e\x00v\x00:\x00 \x001\x00\n\x00".to_vec(),
            "UTF-8",
        ),
        (
            "invalid YAML",
            b"revision: 1\nbody: {a: [1, 2\ndigest: x\n".to_vec(),
            "",
        ),
        (
            "tab indentation",
            b"revision: 1\nbody:\n\ta: 1\ndigest: x\n".to_vec(),
            "",
        ),
        (
            "tab before a key",
            b"revision: 1\n\tbody: {}\ndigest: x\n".to_vec(),
            "",
        ),
        (
            "duplicate envelope key",
            b"revision: 1\nrevision: 2\nbody: {}\ndigest: x\n".to_vec(),
            "duplicate key",
        ),
        (
            "duplicate body key",
            b"revision: 1\nbody:\n  a: 1\n  a: 2\ndigest: x\n".to_vec(),
            "duplicate key",
        ),
        (
            "duplicate seal",
            b"revision: 1\nbody: {}\ndigest: x\ndigest: y\n".to_vec(),
            "duplicate key",
        ),
        ("billion laughs", billion_laughs(9), ""),
        (
            "alias fan-out",
            {
                let big = "x".repeat(50_000);
                let copies = vec!["*b"; 1_000].join(", ");
                format!("revision: 1\nbody:\n  big: &b {big}\n  copies: [{copies}]\ndigest: x\n")
                    .into_bytes()
            },
            "expands",
        ),
        (
            "undefined alias",
            b"revision: 1\nbody: {a: *nowhere}\ndigest: x\n".to_vec(),
            "",
        ),
        (
            "custom tag",
            b"revision: 1\nbody:\n  a: !secret x\ndigest: x\n".to_vec(),
            "tags",
        ),
        (
            "custom tag on the body",
            b"revision: 1\nbody: !model {a: 1}\ndigest: x\n".to_vec(),
            "tags",
        ),
        (
            "custom tag on the file",
            b"!record\nrevision: 1\nbody: {}\ndigest: x\n".to_vec(),
            "tags",
        ),
        (
            "integer key",
            b"revision: 1\nbody:\n  1: a\ndigest: x\n".to_vec(),
            "string mapping key",
        ),
        (
            "null key",
            b"revision: 1\nbody:\n  null: a\ndigest: x\n".to_vec(),
            "string mapping key",
        ),
        (
            "boolean key",
            b"revision: 1\nbody: {true: a}\ndigest: x\n".to_vec(),
            "string mapping key",
        ),
        (
            "sequence key",
            b"revision: 1\nbody:\n  ? [a, b]\n  : c\ndigest: x\n".to_vec(),
            "string mapping key",
        ),
        (
            "body without its envelope",
            b"description: All orders\njoins: [customers]\n".to_vec(),
            "no envelope",
        ),
        (
            "envelope without revision",
            b"body:\n  a: 1\ndigest: x\n".to_vec(),
            "`revision` key is missing",
        ),
        (
            "garbled revision",
            b"revision: 1x\nbody:\n  a: 1\ndigest: x\n".to_vec(),
            "integer >= 0",
        ),
        (
            "negative revision",
            b"revision: -3\nbody: {}\ndigest: x\n".to_vec(),
            "integer >= 0",
        ),
        (
            "fractional revision",
            b"revision: 1.5\nbody: {}\ndigest: x\n".to_vec(),
            "integer >= 0",
        ),
        (
            "quoted revision",
            b"revision: '2'\nbody: {}\ndigest: x\n".to_vec(),
            "integer >= 0",
        ),
        (
            "revision past u64",
            b"revision: 99999999999999999999\nbody: {}\ndigest: x\n".to_vec(),
            "integer >= 0",
        ),
        (
            "revision past i64",
            b"revision: 9223372036854775808\nbody: {}\ndigest: x\n".to_vec(),
            "largest revision",
        ),
        (
            "edit at the largest revision",
            b"revision: 9223372036854775807\nbody: {}\ndigest: x\n".to_vec(),
            "largest revision",
        ),
        (
            "no seal line",
            b"revision: 4\nbody:\n  a: 1\n".to_vec(),
            "no `digest:` line",
        ),
        (
            "seal not a scalar",
            b"revision: 1\nbody: {}\ndigest: [x]\n".to_vec(),
            "single value",
        ),
        (
            "unknown envelope key",
            b"revision: 1\nbody: {}\nowner: me\ndigest: x\n".to_vec(),
            "unknown key",
        ),
        (
            "body not a mapping",
            b"revision: 1\nbody: [1, 2]\ndigest: x\n".to_vec(),
            "must be a mapping",
        ),
        (
            "deleted with a body",
            b"revision: 1\ndeleted: true\nbody: {}\ndigest: x\n".to_vec(),
            "must not have a `body`",
        ),
        (
            "deleted not a boolean",
            b"revision: 1\ndeleted: yes\ndigest: x\n".to_vec(),
            "`true` or `false`",
        ),
        (
            "NaN",
            b"revision: 1\nbody: {a: .nan}\ndigest: x\n".to_vec(),
            "not finite",
        ),
        (
            "infinity",
            b"revision: 1\nbody: {a: -.inf}\ndigest: x\n".to_vec(),
            "not finite",
        ),
        (
            "integer out of range",
            b"revision: 1\nbody: {a: 18446744073709551616}\ndigest: x\n".to_vec(),
            "out of range",
        ),
        (
            "two documents",
            b"revision: 1\nbody: {}\ndigest: x\n---\nrevision: 2\nbody: {}\ndigest: x\n".to_vec(),
            "more than one document",
        ),
        ("a list at the top", b"- revision: 1\n".to_vec(), "mapping"),
        ("deep flow nesting", deep.into_bytes(), ""),
        (
            "hand edit that breaks the YAML",
            text.replace("joins:", "joins: [").into_bytes(),
            "",
        ),
    ]
}

#[test]
fn every_hostile_file_is_refused_end_to_end_and_left_unchanged() {
    let dir = TempDir::new().unwrap();
    let s = Store::open(YamlBackend::open(dir.path()).unwrap());
    let backend = YamlBackend::open(dir.path()).unwrap();
    s.create("models", "good", json!({"v": 0})).unwrap();
    s.create("views", "other", json!({})).unwrap();
    let path = dir.path().join("models/orders.yaml");
    let key = Key::new("models", "orders").unwrap();
    let new_body = std::sync::Arc::new(serde_json::Map::from_iter([("a".to_owned(), json!(2))]));
    for (round, (case, bytes, expected)) in cases().into_iter().enumerate() {
        std::fs::write(&path, &bytes).unwrap();
        let started = Instant::now();
        let reason = assert_corrupt_naming(s.get("models", "orders"), &path, case);
        assert!(
            reason.contains(expected),
            "{case}: reason {reason:?} does not mention {expected:?}"
        );
        assert!(!reason.is_empty(), "{case}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{case}: too slow"
        );
        assert_corrupt_naming(s.get_record("models", "orders"), &path, case);
        assert_corrupt_naming(s.list("models"), &path, case);
        let merge = Patch::Merge(json!({"a": 2}));
        for pre in [
            Precondition::Any,
            Precondition::Revision(1),
            Precondition::Absent,
        ] {
            assert_corrupt_naming(s.patch("models", "orders", &merge, pre), &path, case);
            assert_corrupt_naming(
                s.replace("models", "orders", json!({"a": 2}), pre),
                &path,
                case,
            );
        }
        assert_corrupt_naming(s.create("models", "orders", json!({"a": 2})), &path, case);
        assert_corrupt_naming(s.delete("models", "orders", Precondition::Any), &path, case);
        // The backend re-reads under the lock and refuses too, whatever
        // revision its caller believes in.
        for expected in [0, 1, 2] {
            for body in [Some(&new_body), None] {
                let commit = Commit {
                    based_on: None,
                    key: &key,
                    expected,
                    body,
                    guard: None,
                    kind: ChangeKind::Updated,
                };
                assert_corrupt_naming(backend.commit(&commit), &path, case);
            }
        }
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "{case}: bytes changed"
        );
        // Nothing was staged and left behind.
        assert!(
            !dir.path().join("models/.orders.yaml.tmp").exists(),
            "{case}"
        );
        // Other documents keep working, in the same collection and others.
        let doc = s
            .patch(
                "models",
                "good",
                &Patch::Merge(json!({"v": round + 1})),
                Precondition::Any,
            )
            .unwrap();
        assert_eq!(s.get("models", "good").unwrap().unwrap(), doc, "{case}");
        assert_eq!(s.list("views").unwrap().len(), 1, "{case}");
        let last = s.changes_since(s.last_seq().unwrap() - 1, 10).unwrap();
        assert_eq!(last[0].key.name(), "good", "{case}");
    }
}

#[test]
fn a_folder_in_place_of_a_document_is_an_io_error_naming_it() {
    let dir = TempDir::new().unwrap();
    let s = Store::open(YamlBackend::open(dir.path()).unwrap());
    s.create("models", "good", json!({})).unwrap();
    let path = dir.path().join("models/orders.yaml");
    std::fs::create_dir(&path).unwrap();
    let io_naming = |result: revstore::Result<revstore::Document>| match result {
        Err(Error::Io { path: at, .. }) => assert_eq!(at, path),
        other => panic!("expected Io naming {}, got {other:?}", path.display()),
    };
    io_naming(s.get("models", "orders").map(|d| d.unwrap()));
    io_naming(s.replace("models", "orders", json!({}), Precondition::Any));
    io_naming(s.patch(
        "models",
        "orders",
        &Patch::Merge(json!({})),
        Precondition::Any,
    ));
    // Folders are not documents to list.
    assert_eq!(s.list("models").unwrap().len(), 1);
    assert!(path.is_dir());
    assert!(s.get("models", "good").unwrap().is_some());
}

#[test]
fn a_hostile_guard_file_stops_guarded_writes_only() {
    // A broken schema document refuses the writes it guards, naming the
    // schema file, and nothing else.
    let dir = TempDir::new().unwrap();
    let s = Store::open(YamlBackend::open(dir.path()).unwrap());
    s.create("models", "a", json!({})).unwrap();
    let schema = dir.path().join("_schema/models.yaml");
    std::fs::create_dir_all(schema.parent().unwrap()).unwrap();
    for (case, bytes, _) in cases().into_iter().take(12) {
        std::fs::write(&schema, &bytes).unwrap();
        assert_corrupt_naming(
            s.patch(
                "models",
                "a",
                &Patch::Merge(json!({"x": 1})),
                Precondition::Any,
            ),
            &schema,
            case,
        );
        assert_eq!(std::fs::read(&schema).unwrap(), bytes, "{case}");
        assert!(s.get("models", "a").unwrap().is_some(), "{case}");
        s.create("views", case.replace(' ', "-").as_str(), json!({}))
            .unwrap();
    }
}

#[test]
fn the_largest_revision_is_never_written_past() {
    // A file revstore would take as its own (sealed) at the largest
    // revision SQLite can hold too: readable, never incremented.
    use revstore_yaml::fuzzing::{sealed, LABEL};
    let dir = TempDir::new().unwrap();
    let s = Store::open(YamlBackend::open(dir.path()).unwrap());
    let (collection, name) = LABEL.split_once('/').unwrap();
    std::fs::create_dir(dir.path().join(collection)).unwrap();
    let path = dir.path().join(collection).join(format!("{name}.yaml"));
    let bytes =
        sealed(format!("revision: {}\nbody: {{}}\n", revstore_yaml::MAX_REVISION).as_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let doc = s.get(collection, name).unwrap().unwrap();
    assert_eq!(doc.revision, revstore_yaml::MAX_REVISION);
    assert_eq!(
        s.list(collection).unwrap()[0].revision,
        revstore_yaml::MAX_REVISION
    );
    let reason = assert_corrupt_naming(
        s.patch(
            collection,
            name,
            &Patch::Merge(json!({"a": 1})),
            Precondition::Any,
        ),
        &path,
        "patch",
    );
    assert!(reason.contains("largest revision"), "{reason}");
    assert_corrupt_naming(
        s.delete(collection, name, Precondition::Any),
        &path,
        "delete",
    );
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    assert_eq!(s.last_seq().unwrap(), 0, "a refused write reached the feed");
}
