//! Criterion benches of the engine's hot paths on each backend: patch and
//! get of a small (1 KiB) document. Relaxed durability keeps them quick
//! (no fsync); `revstore bench` measures both levels beside raw baselines.
//!
//! Run: `cargo bench -p revstore-cli --bench engine -- --quick`.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use revstore::{Durability, Patch, Precondition, Store, StoreOptions};
use revstore_cli::bench::subject::{body_of_size, Config, Kind};
use serde_json::json;

fn store_for(kind: Kind, dir: &std::path::Path) -> Store {
    let config = Config {
        kind,
        durability: Durability::Relaxed,
    };
    let backend = config.open(&config.location(dir)).expect("open the store");
    Store::with_options(Arc::clone(&backend), StoreOptions::default())
}

fn engine(c: &mut Criterion) {
    for kind in [Kind::Memory, Kind::Yaml, Kind::Sqlite] {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = store_for(kind, dir.path());
        store
            .create("bench", "doc", body_of_size(1 << 10))
            .expect("create");
        let mut group = c.benchmark_group(kind.name());
        let mut i = 0u64;
        group.bench_function("patch 1 KiB (relaxed)", |b| {
            b.iter(|| {
                i += 1;
                let patch = Patch::Merge(json!({ "counter": i }));
                black_box(
                    store
                        .patch("bench", "doc", &patch, Precondition::Any)
                        .expect("patch"),
                )
            })
        });
        group.bench_function("get 1 KiB", |b| {
            b.iter(|| black_box(store.get("bench", "doc").expect("get")))
        });
        group.finish();
    }
}

criterion_group!(benches, engine);
criterion_main!(benches);
