//! Check the checker end to end: a backend that commits without checking
//! the revision it was given (`BrokenBackend`) must be caught, by the
//! history checker and by the counter sums.
//!
//! Why it fails reliably: two writers that read the same revision both
//! commit — the broken commit ignores `expected` — so the engine reports
//! the same revision to both (a duplicate revision), or the later one
//! overwrites a body computed from a stale read (a lost write, which the
//! replay sees). Both need two writes of one key to overlap; the broken
//! backend pauses 200 µs in every commit, so with 8 threads released by a
//! barrier on a single key, overlaps happen in practically every run. Each
//! attempt uses a fresh seed and store, and one caught attempt in five is
//! enough — five clean runs in a row would mean the checker is blind.

use revstore::testkit::checker::ViolationKind;
use revstore::testkit::workload::{generate, increments_lost, run_on, BrokenTestBackend, Handles};
use revstore::testkit::TestBackend;

const ATTEMPTS: u64 = 5;

#[test]
fn the_checker_catches_a_backend_that_ignores_the_expected_revision() {
    let mut caught = Vec::new();
    for seed in 0..ATTEMPTS {
        let workload = generate(0xb40c + seed, 8, 25, 1).unwrap();
        let location = BrokenTestBackend.fresh();
        let records = run_on(location.as_ref(), Handles::Shared, &workload);
        if let Err(v) = revstore::testkit::checker::check(&records) {
            eprintln!("seed {seed} caught: {v}");
            assert!(
                matches!(
                    v.kind,
                    ViolationKind::DuplicateRevision
                        | ViolationKind::WrongWriter
                        | ViolationKind::Replay
                        | ViolationKind::MissingRevision
                        | ViolationKind::RealTime
                        | ViolationKind::FinalState
                ),
                "{v}"
            );
            assert!(v.message.contains("op "), "the message names ops: {v}");
            caught.push(v);
        }
    }
    assert!(
        !caught.is_empty(),
        "{ATTEMPTS} runs on a backend that loses updates all passed the checker"
    );
}

#[test]
fn counter_sums_catch_a_backend_that_ignores_the_expected_revision() {
    let threads = 8;
    let times = 20;
    let lost: Vec<u64> = (0..ATTEMPTS)
        .map(|_| increments_lost(BrokenTestBackend.fresh().as_ref(), threads, times))
        .collect();
    assert!(
        lost.iter().any(|&n| n > 0),
        "no increment was lost in {ATTEMPTS} runs: {lost:?}"
    );
}
