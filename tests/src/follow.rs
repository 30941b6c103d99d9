//! Consumers of the change feed: a follower that records every change it
//! receives (and reads the key right after each), and a reader through
//! [`CachedStore`] that records every answer.

use std::time::{Duration, Instant};

use revstore::testkit::clock::monotonic_nanos;
use revstore::testkit::history::{Client, FeedCursor, FeedRecord, Op, Outcome, Record, Sink};
use revstore::testkit::workload::{execute, key_name, COLLECTION};
use revstore::{CachedStore, Store};

/// Takes the cursor a follower starts from: [`Store::last_seq`], with
/// the window of the call.
///
/// # Errors
/// The store's error, as text.
pub fn take_cursor(store: &Store) -> Result<FeedCursor, String> {
    let invoke_ns = monotonic_nanos();
    let seq = store
        .last_seq()
        .map_err(|e| format!("reading the last seq: {e}"))?;
    let return_ns = monotonic_nanos();
    Ok(FeedCursor {
        seq,
        invoke_ns,
        return_ns,
    })
}

/// When a follower stops.
#[derive(Clone, Copy)]
pub struct Until<'a> {
    /// After this many changes, if set.
    pub changes: Option<usize>,
    /// Once its cursor reaches the seq this answers (`None`: not known
    /// yet).
    pub seq: &'a (dyn Fn() -> Option<u64> + Sync),
    /// Fail when still following after this long.
    pub timeout: Duration,
}

/// What a follower did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Followed {
    /// The seq of the last change received (or the starting cursor).
    pub cursor: u64,
    /// Changes received.
    pub changes: usize,
}

/// Follows `store`'s feed from `after` with [`Store::watch`]: records each
/// change with `changes`, then reads its key and records the read (op id
/// `<client>-<n>`) in `reads`, naming it in the change's record.
///
/// # Errors
/// A feed or sink error, or the timeout, as text.
pub fn follow(
    store: &Store,
    client: Client,
    after: u64,
    until: Until<'_>,
    reads: &dyn Sink,
    changes: &mut dyn FnMut(FeedRecord) -> std::io::Result<()>,
) -> Result<Followed, String> {
    let deadline = Instant::now() + until.timeout;
    let mut watch = store.watch(after, Duration::from_millis(1));
    let mut received = 0;
    loop {
        if until.changes.is_some_and(|n| received >= n) {
            break;
        }
        if (until.seq)().is_some_and(|seq| watch.cursor() >= seq) {
            break;
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "still following after {:?}: at seq {} after {received} changes, waiting for {:?}",
                until.timeout,
                watch.cursor(),
                (until.seq)()
            ));
        }
        let change = match watch.next_timeout(Duration::from_millis(20)) {
            Ok(Some(change)) => change,
            Ok(None) => continue,
            Err(e) => return Err(format!("following after seq {}: {e}", watch.cursor())),
        };
        let mut entry = FeedRecord::of(&change);
        let op_id = format!("{client}-{received}");
        let invoke_ns = monotonic_nanos();
        let outcome = execute(store, change.key.collection(), change.key.name(), &Op::Read);
        let return_ns = monotonic_nanos();
        reads
            .record(Record {
                collection: entry.collection.clone(),
                name: entry.name.clone(),
                client,
                op_id: op_id.clone(),
                op: Op::Read,
                invoke_ns,
                return_ns: Some(return_ns),
                outcome,
            })
            .map_err(|e| format!("recording a read: {e}"))?;
        entry.read = Some(op_id);
        changes(entry).map_err(|e| format!("recording a change: {e}"))?;
        received += 1;
    }
    Ok(Followed {
        cursor: watch.cursor(),
        changes: received,
    })
}

/// Reads workload keys `k0..k{keys}` round robin through `cache` until
/// `stop` answers true, pausing `pause` between reads, recording each
/// answer as a read (op ids `<client>-<n>`; an absent document as not
/// found without a revision, which is all a cache says). Returns how many
/// reads it made.
///
/// # Errors
/// The sink's error, or still reading after `timeout`, as text.
pub fn read_through_cache(
    cache: &CachedStore,
    client: Client,
    keys: u8,
    pause: Duration,
    stop: &dyn Fn() -> bool,
    timeout: Duration,
    sink: &dyn Sink,
) -> Result<usize, String> {
    let deadline = Instant::now() + timeout;
    let mut n = 0;
    while !stop() {
        if Instant::now() >= deadline {
            return Err(format!("still reading after {timeout:?}"));
        }
        let key = u8::try_from(n % usize::from(keys.max(1))).unwrap_or(0);
        sink.record(cached_read(
            cache,
            client,
            &key_name(key),
            format!("{client}-{n}"),
        ))
        .map_err(|e| format!("recording a read: {e}"))?;
        n += 1;
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
    }
    Ok(n)
}

/// One read of workload key `name` through `cache`, as a history record.
pub fn cached_read(cache: &CachedStore, client: Client, name: &str, op_id: String) -> Record {
    let invoke_ns = monotonic_nanos();
    let outcome = match cache.get(COLLECTION, name) {
        Ok(Some(doc)) => Outcome::Ok {
            revision: doc.revision,
            body: Some(std::sync::Arc::unwrap_or_clone(doc.body)),
        },
        Ok(None) => Outcome::NotFound { revision: None },
        Err(e) => Outcome::of_read_error(&e),
    };
    let return_ns = monotonic_nanos();
    Record {
        collection: COLLECTION.to_owned(),
        name: name.to_owned(),
        client,
        op_id,
        op: Op::Read,
        invoke_ns,
        return_ns: Some(return_ns),
        outcome,
    }
}

/// The first key whose observed revisions go backwards in `records` (one
/// client's reads, in the order made), with the two revisions.
pub fn goes_backwards(records: &[Record]) -> Option<(String, u64, u64)> {
    let mut last: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
    for r in records {
        let Outcome::Ok { revision, .. } = r.outcome else {
            continue;
        };
        let held = last.entry(&r.name).or_insert(0);
        if revision < *held {
            return Some((r.key_label(), *held, revision));
        }
        *held = revision;
    }
    None
}

/// Every change the store's feed holds after `after`, oldest first.
///
/// # Errors
/// The store's error, as text.
pub fn feed_after(store: &Store, after: u64) -> Result<Vec<FeedRecord>, String> {
    let mut feed = Vec::new();
    let mut cursor = after;
    loop {
        let batch = store
            .changes_since(cursor, 1000)
            .map_err(|e| format!("reading the feed after seq {cursor}: {e}"))?;
        let Some(last) = batch.last() else {
            return Ok(feed);
        };
        cursor = last.seq;
        feed.extend(batch.iter().map(FeedRecord::of));
    }
}

/// A handle on `store`'s backend whose feed silently loses every change
/// whose seq is a multiple of `every`: the broken feed the feed and
/// cache checks must catch. (A follower never reaches a lost seq as its
/// cursor.) Only for tests.
pub fn lossy(store: &Store, every: u64) -> Store {
    let backend = LossyFeed {
        inner: std::sync::Arc::clone(store.backend()),
        every: every.max(1),
    };
    Store::with_options(std::sync::Arc::new(backend), *store.options())
}

/// See [`lossy`].
#[derive(Debug)]
struct LossyFeed {
    inner: std::sync::Arc<dyn revstore::StorageBackend>,
    every: u64,
}

impl revstore::StorageBackend for LossyFeed {
    fn kind(&self) -> &'static str {
        "lossy-feed"
    }

    fn read(&self, key: &revstore::Key) -> revstore::Result<Option<revstore::Record>> {
        self.inner.read(key)
    }

    fn commit(&self, commit: &revstore::Commit<'_>) -> revstore::Result<revstore::CommitOutcome> {
        self.inner.commit(commit)
    }

    fn list(&self, collection: &str) -> revstore::Result<Vec<revstore::Entry>> {
        self.inner.list(collection)
    }

    fn changes_since(&self, after: u64, limit: usize) -> revstore::Result<Vec<revstore::Change>> {
        let mut changes = self.inner.changes_since(after, limit)?;
        changes.retain(|c| c.seq % self.every != 0);
        Ok(changes)
    }

    fn last_seq(&self) -> revstore::Result<u64> {
        self.inner.last_seq()
    }
}
