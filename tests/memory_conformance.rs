//! The shared conformance suite and in-process races on the memory backend.

revstore::conformance_tests!(revstore::testkit::MemoryTestBackend);

/// The races must be able to fail: on a backend that skips the revision
/// check (it commits on whatever revision is current), each one must catch
/// the lost updates. (The semantic-layer regression is not among them: it
/// guards the engine's patch-the-current-body rule, which holds even here.)
mod races_catch_a_broken_backend {
    use revstore::testkit::{races, TestBackend, TestLocation};
    use revstore::{
        Commit, CommitOutcome, Entry, Key, MemoryBackend, Record, Result, StorageBackend, Store,
    };

    #[derive(Debug, Clone, Default)]
    struct SkipsRevisionCheck(MemoryBackend, Flaw);

    /// What the broken backend gets wrong.
    #[derive(Debug, Clone, Copy, Default)]
    enum Flaw {
        /// Commits on whatever revision is current.
        #[default]
        RevisionCheck,
        /// Leaves every 13th change out of the feed.
        LossyFeed,
    }

    impl StorageBackend for SkipsRevisionCheck {
        fn kind(&self) -> &'static str {
            "broken"
        }
        fn read(&self, key: &Key) -> Result<Option<Record>> {
            // A slow read widens the window between what was read and the
            // commit built on it, as real I/O does.
            let record = self.0.read(key);
            std::thread::sleep(std::time::Duration::from_micros(200));
            record
        }
        fn commit(&self, commit: &Commit<'_>) -> Result<CommitOutcome> {
            if let Flaw::LossyFeed = self.1 {
                return self.0.commit(commit);
            }
            let current = self.0.read(commit.key)?.map_or(0, |r| r.revision);
            self.0.commit(&Commit {
                expected: current,
                ..*commit
            })
        }
        fn list(&self, collection: &str) -> Result<Vec<Entry>> {
            self.0.list(collection)
        }
        fn changes_since(&self, after: u64, limit: usize) -> Result<Vec<revstore::Change>> {
            let mut changes = self.0.changes_since(after, limit)?;
            if let Flaw::LossyFeed = self.1 {
                changes.retain(|c| c.seq % 13 != 0);
            }
            Ok(changes)
        }
        fn last_seq(&self) -> Result<u64> {
            self.0.last_seq()
        }
    }

    struct Broken(Flaw);
    struct BrokenLocation(SkipsRevisionCheck);

    impl TestLocation for BrokenLocation {
        fn open(&self) -> Store {
            Store::open(self.0.clone())
        }
        fn url(&self) -> Option<String> {
            None
        }
    }

    impl TestBackend for Broken {
        fn name(&self) -> &str {
            "broken"
        }
        fn fresh(&self) -> Box<dyn TestLocation> {
            Box::new(BrokenLocation(SkipsRevisionCheck(
                MemoryBackend::default(),
                self.0,
            )))
        }
        fn fresh_with_retention(&self, retain: u64) -> Box<dyn TestLocation> {
            Box::new(BrokenLocation(SkipsRevisionCheck(
                MemoryBackend::with_retention(retain),
                self.0,
            )))
        }
    }

    fn must_fail(race: fn(&dyn TestBackend)) {
        must_fail_with(Flaw::RevisionCheck, race);
    }

    fn must_fail_with(flaw: Flaw, race: fn(&dyn TestBackend)) {
        let caught = (0..5).any(|_| std::panic::catch_unwind(|| race(&Broken(flaw))).is_err());
        assert!(
            caught,
            "the race passed five times on a backend that loses updates"
        );
    }

    #[test]
    fn increment_race() {
        must_fail(races::increment_race_own_handles);
    }

    #[test]
    fn update_race() {
        must_fail(races::update_race);
    }

    #[test]
    fn disjoint_patches() {
        must_fail(races::disjoint_patches_all_survive);
    }

    #[test]
    fn feed_follower_with_lost_updates() {
        must_fail(races::feed_follower_sees_concurrent_commits_once_in_order);
    }

    #[test]
    fn feed_follower_with_a_lossy_feed() {
        must_fail_with(
            Flaw::LossyFeed,
            races::feed_follower_sees_concurrent_commits_once_in_order,
        );
    }
}

/// A key whose stored revision is `u64::MAX` (only a hand-edited file can
/// hold one) is refused as corrupt instead of wrapping to revision 0.
#[test]
fn a_revision_at_its_maximum_is_refused_not_wrapped() {
    use revstore::{
        Change, Commit, CommitOutcome, Entry, Error, Key, Patch, Precondition, Record, Result,
        StorageBackend, Store,
    };
    use serde_json::json;

    /// Holds one record at the largest revision; commits must not arrive.
    #[derive(Debug)]
    struct AtMaximum(std::sync::Arc<revstore::Body>);

    impl StorageBackend for AtMaximum {
        fn kind(&self) -> &'static str {
            "at-maximum"
        }
        fn read(&self, _key: &Key) -> Result<Option<Record>> {
            Ok(Some(Record {
                revision: u64::MAX,
                body: Some(self.0.clone()),
            }))
        }
        fn commit(&self, commit: &Commit<'_>) -> Result<CommitOutcome> {
            panic!("the engine committed on top of u64::MAX: {commit:?}")
        }
        fn list(&self, _collection: &str) -> Result<Vec<Entry>> {
            Ok(Vec::new())
        }
        fn changes_since(&self, _after: u64, _limit: usize) -> Result<Vec<Change>> {
            Ok(Vec::new())
        }
        fn last_seq(&self) -> Result<u64> {
            Ok(0)
        }
    }

    let body = json!({"v": 1}).as_object().cloned().unwrap().into();
    let store = Store::open(AtMaximum(body));
    let results = [
        store
            .patch("c", "k", &Patch::Merge(json!({"v": 2})), Precondition::Any)
            .map(|_| ()),
        store
            .replace("c", "k", json!({}), Precondition::Any)
            .map(|_| ()),
        store.delete("c", "k", Precondition::Any).map(|_| ()),
        store.update("c", "k", |_| Ok(())).map(|_| ()),
    ];
    for result in results {
        assert!(matches!(result, Err(Error::Corrupt { .. })), "{result:?}");
    }
}

/// A write validated against schema revision N cannot commit once the
/// schema moved to N+1 in between: the guard refuses it and the engine
/// re-validates under the new schema. The schema change is injected
/// between the engine's validation and its commit.
#[test]
fn a_schema_change_between_validation_and_commit_is_not_missed() {
    use revstore::{
        Change, ChangeKind, Commit, CommitOutcome, Entry, Error, Key, MemoryBackend, Patch,
        Precondition, Record, Result, StorageBackend, Store,
    };
    use serde_json::json;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[derive(Debug, Default)]
    struct TightenBeforeFirstCommit {
        inner: MemoryBackend,
        armed: AtomicBool,
    }

    impl StorageBackend for TightenBeforeFirstCommit {
        fn kind(&self) -> &'static str {
            "tighten"
        }
        fn read(&self, key: &Key) -> Result<Option<Record>> {
            self.inner.read(key)
        }
        fn commit(&self, commit: &Commit<'_>) -> Result<CommitOutcome> {
            if commit.guard.is_some() && self.armed.swap(false, Ordering::SeqCst) {
                // Another process narrows the enum right now.
                let schema_key = Key::new_reserved("_schema", "m").unwrap();
                let narrowed =
                    json!({"attributes": [{"name": "kind", "type": "enum", "values": ["a"]}]})
                        .as_object()
                        .cloned()
                        .map(std::sync::Arc::new);
                let outcome = self.inner.commit(&Commit {
                    key: &schema_key,
                    expected: 1,
                    body: narrowed.as_ref(),
                    guard: None,
                    kind: ChangeKind::Updated,
                    based_on: None,
                })?;
                assert_eq!(outcome, CommitOutcome::Committed);
            }
            self.inner.commit(commit)
        }
        fn list(&self, collection: &str) -> Result<Vec<Entry>> {
            self.inner.list(collection)
        }
        fn changes_since(&self, after: u64, limit: usize) -> Result<Vec<Change>> {
            self.inner.changes_since(after, limit)
        }
        fn last_seq(&self) -> Result<u64> {
            self.inner.last_seq()
        }
    }

    let backend = std::sync::Arc::new(TightenBeforeFirstCommit::default());
    let store = Store::with_options(backend.clone(), Default::default());
    store
        .set_schema(
            "m",
            json!({"attributes": [{"name": "kind", "type": "enum", "values": ["a", "b"]}]}),
            Precondition::Absent,
        )
        .unwrap();
    store.create("m", "doc", json!({"kind": "a"})).unwrap();
    backend.armed.store(true, Ordering::SeqCst);
    let result = store.patch(
        "m",
        "doc",
        &Patch::Merge(json!({"kind": "b"})),
        Precondition::Any,
    );
    match result {
        Err(Error::SchemaViolation {
            schema_revision, ..
        }) => assert_eq!(schema_revision, 2),
        other => panic!("the write slipped past the schema change: {other:?}"),
    }
    assert_eq!(store.get("m", "doc").unwrap().unwrap().body["kind"], "a");
}
