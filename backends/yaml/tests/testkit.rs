//! `YamlTestBackend` gives independent handles on one fresh folder.

use revstore::testkit::TestBackend;
use revstore::Durability;
use revstore_yaml::testkit::YamlTestBackend;
use serde_json::json;

#[test]
fn fresh_locations_are_empty_and_shared_by_their_handles() {
    for backend in [
        YamlTestBackend::default(),
        YamlTestBackend {
            durability: Durability::Relaxed,
        },
    ] {
        assert_eq!(backend.name(), "yaml");
        let location = backend.fresh();
        let url = location.url().unwrap();
        let dir = url.strip_prefix("yaml:").unwrap().to_owned();
        assert!(std::path::Path::new(&dir).is_dir());
        let (a, b) = (location.open(), location.open());
        assert!(!std::sync::Arc::ptr_eq(a.backend(), b.backend()));
        assert_eq!(a.backend().kind(), "yaml");
        a.create("models", "m", json!({"x": 1})).unwrap();
        assert_eq!(b.get("models", "m").unwrap().unwrap().revision, 1);
        assert!(backend.fresh().open().get("models", "m").unwrap().is_none());
        drop((a, b, location));
        assert!(
            !std::path::Path::new(&dir).exists(),
            "the folder outlived its location"
        );
    }
}

#[test]
fn fresh_with_retention_keeps_only_about_that_many_changes() {
    let backend = YamlTestBackend::default();
    let location = backend.fresh_with_retention(4);
    let s = location.open();
    for i in 0..30 {
        s.replace("c", "k", json!({ "i": i }), revstore::Precondition::Any)
            .unwrap();
    }
    match s.changes_since(0, 10) {
        Err(revstore::Error::Compacted { retained_after, .. }) => {
            assert!(
                (30 - 6..=30 - 4).contains(&retained_after),
                "{retained_after}"
            )
        }
        other => panic!("expected Compacted, got {other:?}"),
    }
    // A retention of 0 is taken as 1 rather than refused.
    let location = backend.fresh_with_retention(0);
    let s = location.open();
    s.create("c", "k", json!({})).unwrap();
    assert_eq!(s.changes_since(0, 10).unwrap().len(), 1);
}
