//! Hand edits while the store is in use: an edited file reads as one
//! revision more than it states (an implicit write), so patches apply on
//! top of the edit and a conditional write based on a read made before the
//! edit fails with `Conflict` — in every handle, since the revision comes
//! from the file alone. Files made by hand state `revision: 0`.

use std::path::{Path, PathBuf};

use revstore::{Current, Error, Patch, Precondition, Store};
use revstore_yaml::YamlBackend;
use serde_json::{json, Value};
use tempfile::TempDir;

fn store(dir: &Path) -> Store {
    Store::open(YamlBackend::open(dir).unwrap())
}

fn file(dir: &Path, collection: &str, name: &str) -> PathBuf {
    dir.join(collection).join(format!("{name}.yaml"))
}

/// Edits a file as a person would: replaces text, keeps everything else
/// (the seal line included, now stale).
fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{from:?} not in {text:?}");
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

fn body(s: &Store, collection: &str, name: &str) -> (u64, Value) {
    let doc = s.get(collection, name).unwrap().unwrap();
    (
        doc.revision,
        Value::Object(std::sync::Arc::unwrap_or_clone(doc.body)),
    )
}

fn assert_conflict<T: std::fmt::Debug>(result: revstore::Result<T>, actual: Current) {
    match result {
        Err(Error::Conflict { actual: found, .. }) => assert_eq!(found, actual),
        other => panic!("expected a conflict with {actual:?}, got {other:?}"),
    }
}

/// The revisions the feed holds for one document, in order.
fn feed_revisions(s: &Store, name: &str) -> Vec<u64> {
    s.changes_since(0, usize::MAX)
        .unwrap()
        .into_iter()
        .filter(|c| c.key.name() == name)
        .map(|c| c.revision)
        .collect()
}

#[test]
fn a_patch_applies_on_top_of_a_hand_edit() {
    let dir = TempDir::new().unwrap();
    let s = store(dir.path());
    s.create("models", "m", json!({"description": "old", "joins": []}))
        .unwrap();
    s.patch(
        "models",
        "m",
        &Patch::Merge(json!({"owner": "ann"})),
        Precondition::Any,
    )
    .unwrap();
    let path = file(dir.path(), "models", "m");
    edit(&path, "description: old", "description: edited by hand");
    assert_eq!(
        body(&s, "models", "m"),
        (
            3,
            json!({"description": "edited by hand", "joins": [], "owner": "ann"})
        )
    );
    let doc = s
        .patch(
            "models",
            "m",
            &Patch::Merge(json!({"cache": 1})),
            Precondition::Any,
        )
        .unwrap();
    assert_eq!(doc.revision, 4);
    assert_eq!(
        Value::Object(std::sync::Arc::unwrap_or_clone(doc.body)),
        json!({"description": "edited by hand", "joins": [], "owner": "ann", "cache": 1})
    );
    // Sealed again: it reads as written, and the next write follows on.
    assert_eq!(body(&s, "models", "m").0, 4);
    assert_eq!(store(dir.path()).list("models").unwrap()[0].revision, 4);
    // The implicit revision 3 has no feed line; the next commit's does.
    assert_eq!(feed_revisions(&s, "m"), [1, 2, 4]);
}

#[test]
fn a_conditional_write_based_on_a_read_before_the_edit_conflicts() {
    let dir = TempDir::new().unwrap();
    let s = store(dir.path());
    s.create("models", "m", json!({"count": 1})).unwrap();
    let read = s.get("models", "m").unwrap().unwrap();
    let path = file(dir.path(), "models", "m");
    edit(&path, "count: 1", "count: 100");
    let bytes = std::fs::read(&path).unwrap();
    let edited = Current::Live { revision: 2 };
    assert_conflict(
        s.replace(
            "models",
            "m",
            json!({"count": 2}),
            Precondition::Revision(read.revision),
        ),
        edited,
    );
    assert_conflict(
        s.patch(
            "models",
            "m",
            &Patch::Merge(json!({"count": 2})),
            Precondition::Revision(read.revision),
        ),
        edited,
    );
    assert_conflict(
        s.delete("models", "m", Precondition::Revision(read.revision)),
        edited,
    );
    assert_conflict(s.create("models", "m", json!({})), edited);
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "a refused write changed the file"
    );
    // Based on a read of the edit, it goes through.
    let doc = s
        .replace(
            "models",
            "m",
            json!({"count": 101}),
            Precondition::Revision(2),
        )
        .unwrap();
    assert_eq!(doc.revision, 3);
}

#[test]
fn every_handle_sees_the_edit_as_the_same_revision() {
    let dir = TempDir::new().unwrap();
    let (a, b) = (store(dir.path()), store(dir.path()));
    a.create("models", "m", json!({"x": 1, "y": 1})).unwrap();
    let read_by_a = a.get("models", "m").unwrap().unwrap();
    edit(&file(dir.path(), "models", "m"), "x: 1", "x: 2");
    assert_eq!(body(&a, "models", "m"), (2, json!({"x": 2, "y": 1})));
    assert_eq!(body(&b, "models", "m"), (2, json!({"x": 2, "y": 1})));
    // B patches on top of the edit; A's compare-and-swap from before it
    // fails, and A's patch lands on top of both.
    b.patch(
        "models",
        "m",
        &Patch::Merge(json!({"y": 2})),
        Precondition::Any,
    )
    .unwrap();
    assert_conflict(
        a.replace(
            "models",
            "m",
            json!({"x": 9}),
            Precondition::Revision(read_by_a.revision),
        ),
        Current::Live { revision: 3 },
    );
    let doc = a
        .patch(
            "models",
            "m",
            &Patch::Merge(json!({"z": 3})),
            Precondition::Any,
        )
        .unwrap();
    assert_eq!(
        (
            doc.revision,
            Value::Object(std::sync::Arc::unwrap_or_clone(doc.body))
        ),
        (4, json!({"x": 2, "y": 2, "z": 3}))
    );
    // A process started later agrees.
    assert_eq!(body(&store(dir.path()), "models", "m").0, 4);
}

#[test]
fn any_byte_changed_counts_as_an_edit() {
    let dir = TempDir::new().unwrap();
    let s = store(dir.path());
    s.create("models", "m", json!({"a": 1})).unwrap();
    let path = file(dir.path(), "models", "m");
    // A comment only: the body is the same, the revision is not.
    edit(&path, "body:", "# reviewed\nbody:");
    assert_eq!(body(&s, "models", "m"), (2, json!({"a": 1})));
    // Whatever the seal line then says.
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text.find("digest:").unwrap();
    std::fs::write(&path, format!("{}digest: edited\n", &text[..start])).unwrap();
    assert_eq!(body(&s, "models", "m").0, 2);
    assert_eq!(s.list("models").unwrap()[0].revision, 2);
}

#[test]
fn a_removed_seal_line_is_refused_until_put_back() {
    let dir = TempDir::new().unwrap();
    let s = store(dir.path());
    s.create("models", "m", json!({"a": 1})).unwrap();
    let path = file(dir.path(), "models", "m");
    let text = std::fs::read_to_string(&path).unwrap();
    let content = &text[..text.find("digest:").unwrap()];
    std::fs::write(&path, content.replace("a: 1", "a: 2")).unwrap();
    match s.get("models", "m") {
        Err(Error::Corrupt { location, reason }) => {
            assert_eq!(location, path.display().to_string());
            assert!(reason.contains("no `digest:` line"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let before = std::fs::read(&path).unwrap();
    assert!(s
        .patch("models", "m", &Patch::Merge(json!({})), Precondition::Any)
        .is_err());
    assert_eq!(std::fs::read(&path).unwrap(), before);
    std::fs::write(
        &path,
        format!("{}digest: edited\n", content.replace("a: 1", "a: 2")),
    )
    .unwrap();
    assert_eq!(body(&s, "models", "m"), (2, json!({"a": 2})));
}

#[test]
fn a_hand_edit_can_bring_a_deleted_document_back() {
    let dir = TempDir::new().unwrap();
    let s = store(dir.path());
    s.create("models", "m", json!({"a": 1})).unwrap();
    s.delete("models", "m", Precondition::Any).unwrap();
    let path = file(dir.path(), "models", "m");
    edit(&path, "deleted: true", "body:\n  a: restored");
    assert_eq!(body(&s, "models", "m"), (3, json!({"a": "restored"})));
    assert_eq!(s.list("models").unwrap()[0].revision, 3);
    assert_conflict(
        s.create("models", "m", json!({})),
        Current::Live { revision: 3 },
    );
    s.delete("models", "m", Precondition::Revision(3)).unwrap();
    assert_eq!(s.get_record("models", "m").unwrap().unwrap().revision, 4);
}

#[test]
fn files_made_by_hand_state_revision_0_and_read_as_revision_1() {
    let dir = TempDir::new().unwrap();
    let s = store(dir.path());
    s.create("models", "seed", json!({})).unwrap();
    let path = file(dir.path(), "models", "new");
    std::fs::write(&path, "revision: 0\nbody:\n  description: made by hand\n").unwrap();
    assert_eq!(
        body(&s, "models", "new"),
        (1, json!({"description": "made by hand"}))
    );
    assert_eq!(
        s.list("models")
            .unwrap()
            .into_iter()
            .map(|e| (e.name, e.revision))
            .collect::<Vec<_>>(),
        [("new".to_owned(), 1), ("seed".to_owned(), 1)]
    );
    assert_conflict(
        s.create("models", "new", json!({})),
        Current::Live { revision: 1 },
    );
    let doc = s
        .patch(
            "models",
            "new",
            &Patch::Merge(json!({"owner": "ann"})),
            Precondition::Revision(1),
        )
        .unwrap();
    assert_eq!(doc.revision, 2);
    // The feed first hears of it as an update at revision 2.
    let changes = s.changes_since(0, usize::MAX).unwrap();
    let last = changes.last().unwrap();
    assert_eq!((last.key.name(), last.revision), ("new", 2));
    assert_eq!(last.kind, revstore::ChangeKind::Updated);

    // A bare body, without the envelope, is refused with directions.
    let bare = file(dir.path(), "models", "bare");
    std::fs::write(&bare, "description: made by hand\n").unwrap();
    match s.get("models", "bare") {
        Err(Error::Corrupt { location, reason }) => {
            assert_eq!(location, bare.display().to_string());
            assert!(reason.contains("revision: 0"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        std::fs::read_to_string(&bare).unwrap(),
        "description: made by hand\n"
    );
}

#[test]
fn a_file_copied_from_another_document_is_an_edit() {
    let dir = TempDir::new().unwrap();
    let s = store(dir.path());
    s.create("models", "a", json!({"from": "a"})).unwrap();
    s.create("models", "b", json!({"from": "b"})).unwrap();
    for _ in 0..3 {
        s.patch(
            "models",
            "b",
            &Patch::Merge(json!({"n": 1})),
            Precondition::Any,
        )
        .unwrap();
    }
    // The seal covers the key: a's file under b's name is not b's own.
    std::fs::copy(
        file(dir.path(), "models", "a"),
        file(dir.path(), "models", "b"),
    )
    .unwrap();
    assert_eq!(body(&s, "models", "b"), (2, json!({"from": "a"})));
}

#[test]
fn two_hand_edits_without_a_commit_between_are_one_implicit_revision() {
    // The documented limit: the revision comes from the file alone, so a
    // second edit before any commit reads as the same revision as the
    // first, and a compare-and-swap based on the first is not refused.
    let dir = TempDir::new().unwrap();
    let s = store(dir.path());
    s.create("models", "m", json!({"v": "original"})).unwrap();
    let path = file(dir.path(), "models", "m");
    edit(&path, "v: original", "v: first edit");
    let first = s.get("models", "m").unwrap().unwrap();
    edit(&path, "v: first edit", "v: second edit");
    let second = s.get("models", "m").unwrap().unwrap();
    assert_eq!(first.revision, second.revision);
    assert_ne!(first.body, second.body);
}

#[test]
fn a_write_never_overwrites_a_second_hand_edit_under_the_same_revision() {
    // The handle remembers the first edit (it read it) and starts its next
    // write from it; the commit must notice that the file changed under
    // the same implicit revision and apply the patch to the second edit.
    let dir = TempDir::new().unwrap();
    let s = store(dir.path());
    s.create("models", "m", json!({"v": "original"})).unwrap();
    let path = file(dir.path(), "models", "m");
    edit(&path, "v: original", "v: first edit");
    assert_eq!(body(&s, "models", "m"), (2, json!({"v": "first edit"})));
    edit(&path, "v: first edit", "v: second edit");
    let doc = s
        .patch(
            "models",
            "m",
            &Patch::Merge(json!({"owner": "ann"})),
            Precondition::Any,
        )
        .unwrap();
    assert_eq!(doc.revision, 3);
    let expected = json!({"v": "second edit", "owner": "ann"});
    assert_eq!(
        Value::Object(std::sync::Arc::unwrap_or_clone(doc.body)),
        expected
    );
    assert_eq!(body(&s, "models", "m"), (3, expected));
}
