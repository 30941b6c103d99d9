//! `SqliteTestBackend` hands out independent handles on fresh files.

use revstore::testkit::TestBackend;
use revstore::Durability;
use revstore_sqlite::testkit::SqliteTestBackend;
use serde_json::json;

#[test]
fn fresh_locations_are_empty_and_handles_share_the_file() {
    let backend = SqliteTestBackend::default();
    assert_eq!(backend.durability, Durability::Full);
    assert_eq!(backend.name(), "sqlite");
    let first = backend.fresh();
    let second = backend.fresh();
    let url = first.url().unwrap();
    assert!(
        url.starts_with("sqlite:") && url.ends_with("store.db"),
        "{url}"
    );
    assert_ne!(first.url(), second.url());

    first.open().create("models", "a", json!({"x": 1})).unwrap();
    let other_handle = first.open();
    assert_eq!(other_handle.backend().kind(), "sqlite");
    assert_eq!(
        other_handle.get("models", "a").unwrap().unwrap().body["x"],
        1
    );
    assert_eq!(second.open().get("models", "a").unwrap(), None);

    let folder = std::path::PathBuf::from(url.trim_start_matches("sqlite:"));
    let folder = folder.parent().unwrap().to_path_buf();
    drop(other_handle);
    drop(first);
    assert!(
        !folder.exists(),
        "the temporary folder outlived its location"
    );
}
