//! Seeded per-thread workloads on 4–16 real threads over 1–3 keys, shared
//! handle and one handle per thread, on every backend: the checker must
//! accept every history. Plus counter sums from read → CAS increments.
//!
//! Default size per backend and handle mode: 3 runs (4 threads × 100 steps
//! on 1 key, 8 × 60 on 2, 16 × 40 on 3) = 1 520 operations plus final reads,
//! so 9 120 checked operations over the six tests; the counter tests add 160
//! increments per backend. `REVSTORE_SOAK=N` runs N rounds with fresh seeds
//! and N times the increments. `REVSTORE_SEED` changes the base seed.

use revstore::testkit::soak_factor;
use revstore::testkit::workload::{generate, increment, Handles, COUNTERS};
use revstore_tests::{backend, run_checked, skip_postgres};
use serde_json::json;

/// (threads, steps per thread, keys) of one round.
const SHAPES: [(usize, usize, u8); 3] = [(4, 100, 1), (8, 60, 2), (16, 40, 3)];

fn seeded_runs(backend_name: &str, handles: Handles) {
    let backend = backend(backend_name);
    let base: u64 = std::env::var("REVSTORE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed);
    let mut ops = 0;
    for round in 0..u64::from(soak_factor()) {
        for (i, &(threads, steps, keys)) in SHAPES.iter().enumerate() {
            let seed = base + round * 100 + i as u64;
            let workload = generate(seed, threads, steps, keys).unwrap();
            let label = format!(
                "{backend_name} {handles:?} seed {seed} ({threads} threads × {steps} steps, {keys} keys)"
            );
            let summary = run_checked(backend.as_ref(), handles, &workload, &label)
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(
                summary.committed > 0,
                "{label}: nothing committed: {summary}"
            );
            eprintln!("{label}: {summary}");
            ops += summary.ops;
        }
    }
    eprintln!("{backend_name} {handles:?}: {ops} operations checked");
}

#[test]
fn memory_shared_handle() {
    seeded_runs("memory", Handles::Shared);
}

#[test]
fn memory_own_handles() {
    seeded_runs("memory", Handles::Own);
}

#[test]
fn yaml_shared_handle() {
    seeded_runs("yaml", Handles::Shared);
}

#[test]
fn yaml_own_handles() {
    seeded_runs("yaml", Handles::Own);
}

#[test]
fn sqlite_shared_handle() {
    seeded_runs("sqlite", Handles::Shared);
}

#[test]
fn postgres_shared_handle() {
    if skip_postgres() {
        return;
    }
    seeded_runs("postgres", Handles::Shared);
}

#[test]
fn sqlite_own_handles() {
    seeded_runs("sqlite", Handles::Own);
}

#[test]
fn postgres_own_handles() {
    if skip_postgres() {
        return;
    }
    seeded_runs("postgres", Handles::Own);
}

/// 8 threads, each with its own handle, each adding 1 twenty times by
/// read → compare-and-swap: the counter ends at exactly 160.
fn counter_sums(backend_name: &str) {
    let location = backend(backend_name).fresh();
    let times = 20 * soak_factor() as usize;
    let threads = 8;
    location
        .open()
        .create(COUNTERS, "c", json!({"count": 0}))
        .unwrap();
    std::thread::scope(|s| {
        for _ in 0..threads {
            let store = location.open();
            s.spawn(move || increment(&store, "c", times).unwrap());
        }
    });
    let doc = location.open().get(COUNTERS, "c").unwrap().unwrap();
    assert_eq!(doc.body["count"], json!(threads * times), "{backend_name}");
    assert_eq!(doc.revision, 1 + (threads * times) as u64, "{backend_name}");
}

#[test]
fn memory_counter_sums() {
    counter_sums("memory");
}

#[test]
fn yaml_counter_sums() {
    counter_sums("yaml");
}

#[test]
fn sqlite_counter_sums() {
    counter_sums("sqlite");
}

#[test]
fn postgres_counter_sums() {
    if skip_postgres() {
        return;
    }
    counter_sums("postgres");
}
