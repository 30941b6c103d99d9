//! Group commit: each commit of a group gets its own outcome and only the
//! committed ones reach the feed; a failed shared `COMMIT` reaches every
//! member and writes nothing; a group that skips its revision checks is
//! caught.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use revstore::{
    Body, ChangeKind, Commit, CommitOutcome, Current, Durability, Error, Guard, Key, StorageBackend,
};
use serde_json::json;

use crate::group::{Job, Outcome};
use crate::{SqliteBackend, SqliteOptions};

fn open(path: &Path) -> SqliteBackend {
    let options = SqliteOptions {
        durability: Durability::Relaxed,
        ..SqliteOptions::default()
    };
    SqliteBackend::open_with(path, options).unwrap()
}

fn key(collection: &str, name: &str) -> Key {
    if collection.starts_with('_') {
        Key::new_reserved(collection, name).unwrap()
    } else {
        Key::new(collection, name).unwrap()
    }
}

fn job(
    key: &Key,
    expected: i64,
    body: Option<serde_json::Value>,
    guard: Option<(&Key, u64)>,
    kind: ChangeKind,
) -> Job {
    Job {
        key: key.clone(),
        expected,
        new_revision: expected + 1,
        body: body.map(|b| b.to_string().into()),
        guard: guard.map(|(k, r)| (k.clone(), r)),
        kind,
    }
}

/// Runs one commit alone and insists that it commits.
fn setup(backend: &SqliteBackend, job: Job) {
    let outcomes = backend.run_group(&[job]);
    assert!(
        matches!(outcomes[..], [Ok(CommitOutcome::Committed)]),
        "{outcomes:?}"
    );
}

/// `(seq, key, revision, kind)` of every change after `after`.
fn feed_after(backend: &SqliteBackend, after: u64) -> Vec<(u64, String, u64, ChangeKind)> {
    backend
        .changes_since(after, 1000)
        .unwrap()
        .into_iter()
        .map(|c| (c.seq, c.key.to_string(), c.revision, c.kind))
        .collect()
}

fn state(backend: &SqliteBackend, key: &Key) -> (Current, Option<Arc<Body>>) {
    let record = backend.read(key).unwrap();
    (
        revstore::backend::current_of(record.as_ref()),
        record.and_then(|r| r.body),
    )
}

fn committed(outcome: &Outcome) -> bool {
    matches!(outcome, Ok(CommitOutcome::Committed))
}

/// Runs one group mixing commits that hold with commits that lost their
/// race (before the group, or to an earlier commit of the same group) or
/// whose guard moved, and lists every way the outcomes, the documents or
/// the feed differ from what each commit alone would have done.
fn mixed_group_problems(backend: &SqliteBackend) -> Vec<String> {
    let (a, b, n, tomb, schema) = (
        key("c", "a"),
        key("c", "b"),
        key("c", "n"),
        key("c", "tomb"),
        key("_schema", "c"),
    );
    setup(
        backend,
        job(&a, 0, Some(json!({"v": 0})), None, ChangeKind::Created),
    );
    setup(
        backend,
        job(&b, 0, Some(json!({"v": 0})), None, ChangeKind::Created),
    );
    setup(
        backend,
        job(&b, 1, Some(json!({"v": 1})), None, ChangeKind::Updated),
    );
    setup(
        backend,
        job(&schema, 0, Some(json!({})), None, ChangeKind::Created),
    );
    setup(
        backend,
        job(&tomb, 0, Some(json!({})), None, ChangeKind::Created),
    );
    setup(backend, job(&tomb, 1, None, None, ChangeKind::Deleted));
    let before = backend.last_seq().unwrap();

    let group = [
        job(&a, 1, Some(json!({"v": "a2"})), None, ChangeKind::Updated),
        // b is at 2: a stale write.
        job(
            &b,
            1,
            Some(json!({"v": "stale"})),
            None,
            ChangeKind::Updated,
        ),
        job(&n, 0, Some(json!({"v": "n1"})), None, ChangeKind::Created),
        // The first commit of this group moved a on.
        job(&a, 1, Some(json!({"v": "lost"})), None, ChangeKind::Updated),
        // The schema is at 1, not 0.
        job(
            &b,
            2,
            Some(json!({"v": "guarded"})),
            Some((&schema, 0)),
            ChangeKind::Updated,
        ),
        // n was created earlier in this group.
        job(
            &n,
            0,
            Some(json!({"v": "twice"})),
            None,
            ChangeKind::Created,
        ),
        job(&b, 2, None, Some((&schema, 1)), ChangeKind::Deleted),
        job(
            &tomb,
            2,
            Some(json!({"v": "again"})),
            None,
            ChangeKind::Created,
        ),
    ];
    let outcomes = backend.run_group(&group);
    let live = |revision| Current::Live { revision };
    let expected: [Result<CommitOutcome, ()>; 8] = [
        Ok(CommitOutcome::Committed),
        Ok(CommitOutcome::Conflict { actual: live(2) }),
        Ok(CommitOutcome::Committed),
        Ok(CommitOutcome::Conflict { actual: live(2) }),
        Ok(CommitOutcome::GuardChanged { actual: live(1) }),
        Ok(CommitOutcome::Conflict { actual: live(1) }),
        Ok(CommitOutcome::Committed),
        Ok(CommitOutcome::Committed),
    ];
    let mut problems = Vec::new();
    if outcomes.len() != expected.len() {
        problems.push(format!("{} outcomes for 8 commits", outcomes.len()));
    }
    for (i, (got, want)) in outcomes.iter().zip(&expected).enumerate() {
        if got.as_ref().ok() != want.as_ref().ok() {
            problems.push(format!("commit {i}: {got:?}, expected {want:?}"));
        }
    }
    let want_feed = vec![
        (before + 1, "c/a".to_owned(), 2, ChangeKind::Updated),
        (before + 2, "c/n".to_owned(), 1, ChangeKind::Created),
        (before + 3, "c/b".to_owned(), 3, ChangeKind::Deleted),
        (before + 4, "c/tomb".to_owned(), 3, ChangeKind::Created),
    ];
    let feed = feed_after(backend, before);
    if feed != want_feed {
        problems.push(format!("feed {feed:?}, expected {want_feed:?}"));
    }
    let documents = [
        (&a, live(2), Some(json!({"v": "a2"}))),
        (&b, Current::Deleted { revision: 3 }, None),
        (&n, live(1), Some(json!({"v": "n1"}))),
        (&tomb, live(3), Some(json!({"v": "again"}))),
    ];
    for (key, current, body) in documents {
        let body = body.map(|b| Arc::new(b.as_object().cloned().unwrap_or_default()));
        let got = state(backend, key);
        if got != (current, body.clone()) {
            problems.push(format!("{key}: {got:?}, expected {:?}", (current, body)));
        }
    }
    problems
}

#[test]
fn each_commit_of_a_group_gets_its_own_outcome_and_only_committed_ones_reach_the_feed() {
    let dir = tempfile::tempdir().unwrap();
    let backend = open(&dir.path().join("store.db"));
    let problems = mixed_group_problems(&backend);
    assert!(problems.is_empty(), "{problems:#?}");
}

/// The same group run by a backend whose grouped commits skip their
/// revision checks (and write whatever revision the key has): the checks
/// above must notice.
#[test]
fn a_group_that_skips_revision_checks_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let backend = open(&dir.path().join("store.db"));
    backend.unchecked_groups.store(true, Ordering::Relaxed);
    let problems = mixed_group_problems(&backend);
    assert!(
        problems.iter().any(|p| p.starts_with("commit 1:")),
        "{problems:#?}"
    );
    assert!(
        problems.iter().any(|p| p.starts_with("feed ")),
        "{problems:#?}"
    );
}

/// Makes `COMMIT` fail whenever the transaction recorded a change named
/// `poison`: a trigger leaves a dangling row behind a deferred foreign
/// key, which SQLite checks only at `COMMIT` (and then refuses it, keeping
/// the transaction open).
fn poison_commits(backend: &SqliteBackend) {
    let conn = rusqlite::Connection::open(backend.path()).unwrap();
    conn.execute_batch(
        "CREATE TABLE fk_parent (id INTEGER PRIMARY KEY);
         CREATE TABLE fk_child (parent INTEGER REFERENCES fk_parent (id)
             DEFERRABLE INITIALLY DEFERRED);
         CREATE TRIGGER poison AFTER INSERT ON changes WHEN NEW.name = 'poison'
         BEGIN INSERT INTO fk_child VALUES (42); END;",
    )
    .unwrap();
    // Foreign keys are checked only where enabled, per connection: on the
    // one idle connection of the pool, which this thread's commits use.
    let pooled = backend.pool.get().unwrap();
    pooled.execute_batch("PRAGMA foreign_keys = ON").unwrap();
}

#[test]
fn a_failed_shared_commit_reaches_every_member_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let backend = open(&dir.path().join("store.db"));
    let (a, x, poison) = (key("c", "a"), key("c", "x"), key("c", "poison"));
    setup(
        &backend,
        job(&a, 0, Some(json!({"v": 0})), None, ChangeKind::Created),
    );
    poison_commits(&backend);
    let before = backend.last_seq().unwrap();

    let group = [
        job(&x, 0, Some(json!({})), None, ChangeKind::Created),
        job(&poison, 0, Some(json!({})), None, ChangeKind::Created),
        job(&a, 1, Some(json!({"v": 1})), None, ChangeKind::Updated),
    ];
    let outcomes = backend.run_group(&group);
    assert_eq!(outcomes.len(), 3);
    for (outcome, job) in outcomes.iter().zip(&group) {
        match outcome {
            Err(Error::Backend {
                backend: "sqlite",
                context,
                source,
            }) => {
                assert!(context.contains(&job.key.to_string()), "{context}");
                assert!(context.contains("2 other commits"), "{context}");
                assert!(source.to_string().contains("FOREIGN KEY"), "{source}");
            }
            other => panic!("{}: expected the shared error, got {other:?}", job.key),
        }
    }
    assert_eq!(backend.last_seq().unwrap(), before, "a change was recorded");
    assert!(feed_after(&backend, before).is_empty());
    assert_eq!(state(&backend, &x).0, Current::Missing);
    assert_eq!(state(&backend, &a).0, Current::Live { revision: 1 });

    // Alone, the poisoned commit fails the same way; the others, regrouped,
    // commit with the very next seqs.
    let alone = backend.run_group(&group[1..2]);
    assert!(
        matches!(alone[..], [Err(Error::Backend { .. })]),
        "{alone:?}"
    );
    let retried = backend.run_group(&[
        job(&x, 0, Some(json!({})), None, ChangeKind::Created),
        job(&a, 1, Some(json!({"v": 1})), None, ChangeKind::Updated),
    ]);
    assert!(retried.iter().all(committed), "{retried:?}");
    assert_eq!(
        feed_after(&backend, before),
        [
            (before + 1, "c/x".to_owned(), 1, ChangeKind::Created),
            (before + 2, "c/a".to_owned(), 2, ChangeKind::Updated),
        ]
    );
}

/// Waits (briefly polling) until `ready` holds; the test fails if it never
/// does within a minute.
fn wait_until(what: &str, ready: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Threads committing through the queue while another connection holds
/// the write lock: the first leads a group of its own and waits for the
/// lock; the others queue behind it and then commit as one group, each
/// caller getting its own outcome, and a write reported committed is
/// already visible to a read.
#[test]
fn threads_queued_behind_a_held_lock_commit_as_one_group_with_their_own_outcomes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let backend = Arc::new(open(&path));
    let (hot, schema) = (key("c", "hot"), key("_schema", "c"));
    setup(
        &backend,
        job(&hot, 0, Some(json!({})), None, ChangeKind::Created),
    );
    setup(
        &backend,
        job(&schema, 0, Some(json!({})), None, ChangeKind::Created),
    );
    let before = backend.last_seq().unwrap();

    let mut holder = rusqlite::Connection::open(&path).unwrap();
    let held = holder
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .unwrap();

    // (key, expected, guard revision of the schema) per thread, in the
    // order they queue.
    let plan: [(&str, u64, Option<u64>); 5] = [
        ("first", 0, None),
        ("hot", 1, None),
        ("hot", 1, None),
        ("own", 0, Some(0)),
        ("own2", 0, Some(1)),
    ];
    let outcomes = std::thread::scope(|scope| {
        let mut threads = Vec::new();
        for (i, (name, expected, guard)) in plan.into_iter().enumerate() {
            let (committer, schema) = (Arc::clone(&backend), schema.clone());
            threads.push(scope.spawn(move || {
                let backend = committer;
                let key = key("c", name);
                let body = Arc::new(json!({ "by": i }).as_object().cloned().unwrap_or_default());
                let kind = if expected == 0 {
                    ChangeKind::Created
                } else {
                    ChangeKind::Updated
                };
                let outcome = backend
                    .commit(&Commit {
                        based_on: None,
                        key: &key,
                        expected,
                        body: Some(&body),
                        guard: guard.map(|revision| Guard {
                            key: &schema,
                            revision,
                        }),
                        kind,
                    })
                    .unwrap();
                if outcome == CommitOutcome::Committed {
                    // Acknowledged means committed: a fresh handle sees it.
                    let fresh = open(backend.path());
                    let record = fresh.read(&key).unwrap().unwrap();
                    assert_eq!(record.revision, expected + 1);
                    assert_eq!(record.body, Some(body));
                }
                outcome
            }));
            if i == 0 {
                // The first thread leads a group of its own, waiting for
                // the held lock.
                wait_until("the first commit leads", || {
                    backend.writers.waiting() == 0 && backend.writers.largest_group() == 1
                });
            } else {
                wait_until("the commit queues", || backend.writers.waiting() == i);
            }
        }
        held.rollback().unwrap();
        threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect::<Vec<_>>()
    });
    assert_eq!(backend.writers.largest_group(), 4);
    let live = |revision| Current::Live { revision };
    assert_eq!(
        outcomes,
        [
            CommitOutcome::Committed,
            CommitOutcome::Committed,
            CommitOutcome::Conflict { actual: live(2) },
            CommitOutcome::GuardChanged { actual: live(1) },
            CommitOutcome::Committed,
        ]
    );
    assert_eq!(
        feed_after(&backend, before),
        [
            (before + 1, "c/first".to_owned(), 1, ChangeKind::Created),
            (before + 2, "c/hot".to_owned(), 2, ChangeKind::Updated),
            (before + 3, "c/own2".to_owned(), 1, ChangeKind::Created),
        ]
    );
    drop(holder);
}

/// A statement of one commit failing inside a group (here a trigger
/// refusing its change row) rolls the group back, and each commit is run
/// alone: the failure stays with the commit that caused it, the others
/// commit.
#[test]
fn a_commit_failing_inside_a_group_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let backend = open(&dir.path().join("store.db"));
    rusqlite::Connection::open(backend.path())
        .unwrap()
        .execute_batch(
            "CREATE TRIGGER refuse BEFORE INSERT ON changes WHEN NEW.name = 'refused'
             BEGIN SELECT RAISE(ABORT, 'refused by a test trigger'); END;",
        )
        .unwrap();
    let (x, refused, y) = (key("c", "x"), key("c", "refused"), key("c", "y"));
    let before = backend.last_seq().unwrap();
    let outcomes = backend.run_group(&[
        job(&x, 0, Some(json!({})), None, ChangeKind::Created),
        job(&refused, 0, Some(json!({})), None, ChangeKind::Created),
        job(&y, 0, Some(json!({})), None, ChangeKind::Created),
    ]);
    assert!(committed(&outcomes[0]), "{outcomes:?}");
    match &outcomes[1] {
        Err(Error::Backend {
            context, source, ..
        }) => {
            assert!(context.contains("c/refused"), "{context}");
            assert!(!context.contains("other commits"), "{context}");
            assert!(source.to_string().contains("refused by a test trigger"));
        }
        other => panic!("expected the trigger's error, got {other:?}"),
    }
    assert!(committed(&outcomes[2]), "{outcomes:?}");
    assert_eq!(
        feed_after(&backend, before),
        [
            (before + 1, "c/x".to_owned(), 1, ChangeKind::Created),
            (before + 2, "c/y".to_owned(), 1, ChangeKind::Created),
        ]
    );
    assert_eq!(state(&backend, &refused).0, Current::Missing);
}
