//! `revstore changes`: the change feed as JSON lines, once or following.

use std::io::Write;
use std::time::Duration;

use revstore::{Change, Store};

use crate::error::CliError;
use crate::ops::change_to_json;

/// How many changes one read of the feed fetches when printing history.
const PAGE: usize = 1000;

/// What `revstore changes` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedSettings {
    /// Print the changes with a larger seq (0: from the oldest retained).
    pub since: u64,
    /// Stop after this many changes; `None`: no limit.
    pub limit: Option<u64>,
    /// Keep waiting for new changes instead of stopping at the newest.
    pub follow: bool,
    /// How long to sleep between polls of the feed while following.
    pub poll: Duration,
}

/// Prints changes after `settings.since` to `out`, one JSON line each
/// (see [`change_to_json`]), in commit order, flushing every line so a
/// reader sees each change as soon as it is printed. Returns how many were
/// printed.
///
/// Without `follow` it stops at the newest change committed when it
/// started, so a busy store cannot keep it running. With `follow` it then
/// waits for new changes (polling every `settings.poll`) until `limit` is
/// reached or, without one, forever.
///
/// # Errors
/// [`revstore::Error::Compacted`] (as [`CliError::Store`]) when the cursor
/// is older than the retained history, at the start or while following;
/// [`CliError::Io`] when writing fails; the store's errors.
pub fn print_changes(
    store: &Store,
    settings: &FeedSettings,
    out: &mut dyn Write,
) -> Result<u64, CliError> {
    let mut printed = 0u64;
    let remaining = |printed: u64| settings.limit.map_or(u64::MAX, |l| l - printed);
    if settings.follow {
        let mut watch = store.watch(settings.since, settings.poll);
        while remaining(printed) > 0 {
            match watch.next() {
                Some(Ok(change)) => {
                    write_change(out, &change)?;
                    printed += 1;
                }
                Some(Err(e)) => return Err(e.into()),
                // A watch only ends after an error, which it has yielded.
                None => break,
            }
        }
        return Ok(printed);
    }
    let end = store.last_seq()?;
    let mut cursor = settings.since;
    while cursor < end && remaining(printed) > 0 {
        let want = usize::try_from(remaining(printed)).map_or(PAGE, |r| r.min(PAGE));
        let page = store.changes_since(cursor, want)?;
        if page.is_empty() {
            break;
        }
        for change in page.iter().take_while(|c| c.seq <= end) {
            write_change(out, change)?;
            printed += 1;
        }
        cursor = page.last().map_or(end, |c| c.seq);
    }
    Ok(printed)
}

fn write_change(out: &mut dyn Write, change: &Change) -> Result<(), CliError> {
    let mut line = change_to_json(change).to_string();
    line.push('\n');
    out.write_all(line.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| CliError::io("write a change to stdout", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use revstore::{MemoryBackend, Precondition};
    use serde_json::{json, Value};

    fn lines(out: &[u8]) -> Vec<Value> {
        std::str::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn settings(since: u64, limit: Option<u64>, follow: bool) -> FeedSettings {
        FeedSettings {
            since,
            limit,
            follow,
            poll: Duration::from_millis(5),
        }
    }

    #[test]
    fn prints_history_in_pages_from_a_cursor_up_to_a_limit() {
        let store = Store::open(MemoryBackend::new());
        for i in 0..(PAGE + 5) {
            store.create("c", &format!("n{i}"), json!({})).unwrap();
        }
        store.delete("c", "n0", Precondition::Any).unwrap();
        let mut out = Vec::new();
        let printed = print_changes(&store, &settings(0, None, false), &mut out).unwrap();
        assert_eq!(printed, PAGE as u64 + 6);
        let all = lines(&out);
        assert_eq!(
            all[0],
            json!({"seq": 1, "collection": "c", "name": "n0", "revision": 1, "kind": "created"})
        );
        assert_eq!(
            all[PAGE + 5],
            json!({"seq": PAGE + 6, "collection": "c", "name": "n0", "revision": 2, "kind": "deleted"})
        );
        let mut out = Vec::new();
        assert_eq!(
            print_changes(&store, &settings(3, Some(2), false), &mut out).unwrap(),
            2
        );
        let seqs: Vec<Value> = lines(&out).iter().map(|c| c["seq"].clone()).collect();
        assert_eq!(seqs, [json!(4), json!(5)]);
        let mut out = Vec::new();
        let newest = PAGE as u64 + 6;
        assert_eq!(
            print_changes(&store, &settings(newest, None, false), &mut out).unwrap(),
            0
        );
        assert!(out.is_empty());
    }

    #[test]
    fn following_prints_changes_made_later_and_stops_at_the_limit() {
        let store = Store::open(MemoryBackend::new());
        store.create("c", "before", json!({})).unwrap();
        let writer = store.clone();
        let handle = std::thread::spawn(move || {
            for i in 0..3 {
                std::thread::sleep(Duration::from_millis(20));
                writer.create("c", &format!("later{i}"), json!({})).unwrap();
            }
        });
        let mut out = Vec::new();
        let printed = print_changes(&store, &settings(1, Some(3), true), &mut out).unwrap();
        handle.join().unwrap();
        assert_eq!(printed, 3);
        let names: Vec<Value> = lines(&out).iter().map(|c| c["name"].clone()).collect();
        assert_eq!(names, [json!("later0"), json!("later1"), json!("later2")]);
    }

    #[test]
    fn a_cursor_behind_retention_is_compacted_at_once_or_while_following() {
        let store = Store::open(MemoryBackend::with_retention(2));
        for i in 0..5 {
            store.create("c", &format!("n{i}"), json!({})).unwrap();
        }
        for follow in [false, true] {
            let mut out = Vec::new();
            let err = print_changes(&store, &settings(0, None, follow), &mut out).unwrap_err();
            assert_eq!(err.kind(), "compacted", "{err}");
            assert_eq!(err.exit_code(), 5);
            assert!(out.is_empty());
        }
    }
}
