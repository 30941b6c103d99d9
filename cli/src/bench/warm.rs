//! The `warm-get` group: reading a document that has not changed since
//! the handle last read it.
//!
//! - YAML: a warm get (the same unchanged document again and again) beside
//!   a cold read (a document this handle has never read; every op reads
//!   another one). Target: warm ≥ 10× the cold throughput.
//! - SQLite: a warm get beside a raw `SELECT body` of the same row over
//!   one connection to the same file. Target: within 1.2× of its latency.
//!
//! A warm `get` shares the cached body with the handle's read cache (copy
//! on write), so it neither parses nor copies it.
//!
//! Reads do not depend on the durability setting; both run at full.

use std::cell::RefCell;

use revstore::{Durability, Store, StoreOptions};

use super::floor::Floor;
use super::measure::{interleaved, Case};
use super::report::{Row, Target, Unit};
use super::subject::{body_of_size, Config, Kind};
use super::Context;
use crate::error::CliError;

const GROUP: &str = "warm-get";
const C: &str = "bench";

/// Runs the group.
///
/// # Errors
/// The stores' errors.
pub fn run(ctx: &mut Context<'_>) -> Result<Vec<Row>, CliError> {
    let mut rows = Vec::new();
    for kind in [Kind::Yaml, Kind::Sqlite] {
        let measured = measure(
            ctx,
            Config {
                kind,
                durability: Durability::Full,
            },
        )?;
        for row in measured {
            ctx.done(&row);
            rows.push(row);
        }
    }
    Ok(rows)
}

fn measure(ctx: &mut Context<'_>, config: Config) -> Result<Vec<Row>, CliError> {
    let plan = ctx.plan.clone();
    let dir = ctx.folder(config.kind.name())?;
    let location = config.location(&dir);
    let n = plan.ops_relaxed * 2;
    let body = body_of_size(1 << 10);
    {
        // Filled through a handle of its own, so the measured handle has
        // never read any of these documents.
        let filler = Store::with_options(config.open(&location)?, StoreOptions::default());
        for i in 0..plan.samples * n {
            filler.create(C, &format!("w{i}"), body.clone())?;
        }
    }
    let store = Store::with_options(config.open(&location)?, StoreOptions::default());
    // The warm document has been read once before measuring.
    store.get(C, "w0")?;
    let mut warm = |_| store.get(C, "w0").map(drop).map_err(CliError::from);
    // YAML is compared with a cold read by the same handle, SQLite with a
    // raw SELECT of the same row.
    let floor = match config.kind {
        Kind::Yaml => None,
        _ => Some(RefCell::new(Floor::new(
            config, &dir, &location, &store, C, "w0",
        )?)),
    };
    let mut baseline = |i: usize| match &floor {
        None => store
            .get(C, &format!("w{i}"))
            .map(drop)
            .map_err(CliError::from),
        Some(floor) => floor.borrow_mut().read(C, "w0"),
    };
    let (baseline_name, unit, target) = match &floor {
        None => (
            "cold get (first read)",
            Unit::OpsPerSec,
            Target::RatioAtLeast(10.0),
        ),
        Some(_) => (
            "raw SELECT body",
            Unit::MicrosPerOp,
            Target::RatioAtMost(1.2),
        ),
    };
    let mut cases: Vec<Case<'_>> = vec![(n, &mut baseline), (n, &mut warm)];
    let samples = interleaved(plan.samples, &mut cases)?;
    Ok(vec![Row::from_samples(
        GROUP,
        "warm get of an unchanged 1 KiB doc",
        config.kind.name(),
        config.durability_name(),
        unit,
        &samples[1],
    )
    .against_samples(baseline_name, &samples[0])
    .target(target)])
}
