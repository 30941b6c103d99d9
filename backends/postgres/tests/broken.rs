//! Check the suites against a deliberately broken PostgreSQL backend,
//! whose `UPDATE` ignores the expected revision (`testkit::open_broken`):
//! the increment race and the history checker must catch it.
//!
//! Why it fails reliably: eight threads with their own handles increment
//! one counter by read → compare-and-swap; a writer that read a revision
//! another writer has since replaced still commits, on top of it, with a
//! count computed from the stale read — a lost increment. Each attempt
//! uses a fresh namespace; one caught attempt in five is enough.

use revstore::testkit::checker::check;
use revstore::testkit::workload::{generate, increments_lost, run_on, Handles};
use revstore::testkit::TestLocation;
use revstore::{Durability, Store};
use revstore_postgres::testkit::{open_broken, server_url, PostgresLocation};

const ATTEMPTS: usize = 5;

/// A namespace whose every handle is the broken backend.
struct BrokenLocation(PostgresLocation);

impl TestLocation for BrokenLocation {
    fn open(&self) -> Store {
        Store::open(open_broken(self.0.store_url()).unwrap())
    }

    fn url(&self) -> Option<String> {
        None
    }
}

#[test]
fn the_increment_race_catches_a_backend_that_ignores_the_expected_revision() {
    let Some(url) = server_url(module_path!()) else {
        return;
    };
    let (threads, times) = (8, 20);
    let lost: Vec<u64> = (0..ATTEMPTS)
        .map(|_| {
            let location = BrokenLocation(PostgresLocation::new(&url, Durability::Relaxed, 1000));
            increments_lost(&location, threads, times)
        })
        .collect();
    eprintln!("increments lost per attempt: {lost:?}");
    assert!(
        lost.iter().any(|&n| n > 0),
        "no increment was lost in {ATTEMPTS} runs on a broken backend: {lost:?}"
    );
}

#[test]
fn the_history_checker_catches_a_backend_that_ignores_the_expected_revision() {
    let Some(url) = server_url(module_path!()) else {
        return;
    };
    let caught = (0..ATTEMPTS as u64)
        .filter(|seed| {
            let location = BrokenLocation(PostgresLocation::new(&url, Durability::Relaxed, 1000));
            let workload = generate(0xb40c + seed, 8, 25, 1).unwrap();
            let records = run_on(&location, Handles::Own, &workload);
            match check(&records) {
                Err(v) => {
                    eprintln!("seed {seed} caught: {v}");
                    true
                }
                Ok(_) => false,
            }
        })
        .count();
    assert!(
        caught > 0,
        "{ATTEMPTS} histories on a broken backend all passed the checker"
    );
}
