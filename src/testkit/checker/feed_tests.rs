//! Check the feed checker: a good feed passes; a missing change, a
//! duplicate, a change out of order, one from before the cursor, a wrong
//! kind and a read that did not see its change are each caught.

use serde_json::json;

use super::*;
use crate::testkit::history::{Client, FeedCursor, FeedRecord};
use crate::{ChangeKind, Patch, Precondition};

fn write(name: &str, id: &str, rev: u64, at: (u64, u64), live: bool) -> Record {
    let op = if live {
        Op::Patch {
            patch: Patch::Merge(json!({"op": id})),
            precondition: Precondition::Any,
        }
    } else {
        Op::Delete {
            precondition: Precondition::Any,
        }
    };
    Record {
        collection: "hist".into(),
        name: name.into(),
        client: Client {
            process: 1,
            thread: 0,
        },
        op_id: id.into(),
        op,
        invoke_ns: at.0,
        return_ns: Some(at.1),
        outcome: Outcome::Ok {
            revision: rev,
            body: live.then(|| json!({"op": id}).as_object().cloned().unwrap()),
        },
    }
}

fn read(id: &str, name: &str, rev: u64, at: (u64, u64)) -> Record {
    Record {
        op: Op::Read,
        op_id: id.into(),
        outcome: Outcome::Ok {
            revision: rev,
            body: None,
        },
        ..write(name, id, rev, at, false)
    }
}

/// k0: r1 [0,10], r2 [20,30], r3 [50,60], r4 deleted [70,80];
/// k1: r1 [5,15], r2 [55,65]. Seqs 1–3 (k0 r1, k1 r1, k0 r2) come before
/// the cursor, taken at [40,45]; seqs 4–6 after it.
fn history() -> Vec<Record> {
    vec![
        write("k0", "a1", 1, (0, 10), true),
        write("k0", "a2", 2, (20, 30), true),
        write("k0", "a3", 3, (50, 60), true),
        write("k0", "a4", 4, (70, 80), false),
        write("k1", "b1", 1, (5, 15), true),
        write("k1", "b2", 2, (55, 65), true),
    ]
}

const CURSOR: FeedCursor = FeedCursor {
    seq: 3,
    invoke_ns: 40,
    return_ns: 45,
};

fn change(seq: u64, name: &str, revision: u64, kind: ChangeKind) -> FeedRecord {
    FeedRecord {
        seq,
        collection: "hist".into(),
        name: name.into(),
        revision,
        kind,
        read: None,
    }
}

fn good_feed() -> Vec<FeedRecord> {
    vec![
        change(4, "k0", 3, ChangeKind::Updated),
        change(5, "k1", 2, ChangeKind::Updated),
        change(6, "k0", 4, ChangeKind::Deleted),
    ]
}

fn expect_violation(feed: &[FeedRecord], records: &[Record], delivery: Delivery, needle: &str) {
    match check_feed(records, feed, CURSOR, delivery) {
        Ok(summary) => panic!("accepted a bad feed: {summary:?}"),
        Err(v) => {
            assert_eq!(v.kind, ViolationKind::Feed, "{v}");
            assert!(v.message.contains(needle), "{v} does not say {needle:?}");
        }
    }
}

#[test]
fn a_feed_of_exactly_the_changes_after_the_cursor_passes() {
    let summary = check_feed(&history(), &good_feed(), CURSOR, Delivery::ExactlyOnce).unwrap();
    assert_eq!(summary.changes, 3);
    assert_eq!(summary.keys["hist/k0"], (3, 4));
    assert_eq!(summary.keys["hist/k1"], (2, 2));
}

#[test]
fn a_missing_change_is_caught() {
    let mut feed = good_feed();
    feed.remove(1); // k1 r2, written after the cursor
    expect_violation(&feed, &history(), Delivery::ExactlyOnce, "never reported");
    let mut feed = good_feed();
    feed.remove(0); // k0 r3, between the cursor and r4
    expect_violation(&feed, &history(), Delivery::ExactlyOnce, "after the cursor");
    let mut feed = good_feed();
    feed.pop(); // k0 r4, the last revision
    expect_violation(&feed, &history(), Delivery::ExactlyOnce, "revision 4");
}

#[test]
fn a_duplicate_is_caught_unless_delivery_is_at_least_once() {
    let mut feed = good_feed();
    feed.push(change(7, "k0", 4, ChangeKind::Deleted));
    expect_violation(&feed, &history(), Delivery::ExactlyOnce, "delivered twice");
    check_feed(&history(), &feed, CURSOR, Delivery::AtLeastOnce).unwrap();
}

#[test]
fn a_change_out_of_order_is_caught() {
    let feed = vec![
        change(4, "k0", 4, ChangeKind::Deleted),
        change(5, "k1", 2, ChangeKind::Updated),
        change(6, "k0", 3, ChangeKind::Updated),
    ];
    expect_violation(&feed, &history(), Delivery::AtLeastOnce, "out of order");
    let mut feed = good_feed();
    feed.swap(0, 1); // seqs 5, 4
    expect_violation(
        &feed,
        &history(),
        Delivery::ExactlyOnce,
        "strictly increase",
    );
}

#[test]
fn a_change_from_before_the_cursor_is_caught() {
    let mut feed = good_feed();
    feed.insert(0, change(3, "k0", 2, ChangeKind::Updated));
    expect_violation(
        &feed,
        &history(),
        Delivery::ExactlyOnce,
        "before its cursor",
    );
    // The same revision under a seq after the cursor: its write returned
    // before the cursor was taken, so it cannot be after it.
    let mut feed: Vec<FeedRecord> = good_feed()
        .into_iter()
        .map(|c| FeedRecord {
            seq: c.seq + 1,
            ..c
        })
        .collect();
    feed.insert(0, change(4, "k0", 2, ChangeKind::Updated));
    expect_violation(&feed, &history(), Delivery::ExactlyOnce, "returned before");
}

#[test]
fn a_revision_nobody_committed_and_a_wrong_kind_are_caught() {
    let mut feed = good_feed();
    feed.push(change(7, "k1", 3, ChangeKind::Updated));
    expect_violation(&feed, &history(), Delivery::ExactlyOnce, "no write");
    let mut feed = good_feed();
    feed[2].kind = ChangeKind::Updated;
    expect_violation(&feed, &history(), Delivery::ExactlyOnce, "deleted it");
}

#[test]
fn a_read_after_a_change_must_see_it() {
    let mut records = history();
    records.push(read("r-old", "k1", 1, (66, 67)));
    records.push(read("r-new", "k0", 4, (81, 82)));
    let mut feed = good_feed();
    feed[2].read = Some("r-new".into());
    let summary = check_feed(&records, &feed, CURSOR, Delivery::ExactlyOnce).unwrap();
    assert_eq!(summary.reads, 1);
    feed[1].read = Some("r-old".into());
    expect_violation(&feed, &records, Delivery::ExactlyOnce, "reads did not");
    feed[1].read = Some("nobody".into());
    expect_violation(&feed, &records, Delivery::ExactlyOnce, "not in the history");
}
