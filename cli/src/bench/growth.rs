//! The `growth` group: how costs grow with the data.
//!
//! - Patch latency against body size, beside a raw write of the same bytes.
//! - Patch latency against store size (documents in the collection),
//!   beside the latency at the smallest size. The collection is filled
//!   through a relaxed-durability handle (filling 100 000 documents with
//!   an fsync each would take most of the run); the patches are then
//!   measured at both levels. For SQLite, a raw `UPDATE` of random rows
//!   of a table of the same size runs beside them, for how much of the
//!   growth is SQLite's own (random pages read, written and checkpointed).
//! - List time against store size, beside a raw listing; and at the
//!   largest size, the peak memory a listing adds (`VmHWM` of a child
//!   process before and after), beside a raw listing's.

use std::cell::RefCell;
use std::path::Path;
use std::time::Instant;

use revstore::{Durability, Patch, Precondition, Store, StoreOptions};
use serde_json::{json, Value};

use super::floor::Floor;
use super::measure::{interleaved, sized_ops, Case, Samples};
use super::raw::RawSqlite;
use super::report::{Row, Target, Unit};
use super::subject::{body_of_size, patch_counter, size_name, Config, Kind};
use super::worker::{Spawned, Task, WorkerArgs};
use super::Context;
use crate::error::CliError;

const GROUP: &str = "growth";
const C: &str = "grow";
/// The store size the targets are set for.
const TARGET_SIZE: usize = 100_000;

/// Runs the group.
///
/// # Errors
/// The stores' errors; a worker process that failed.
pub fn run(ctx: &mut Context<'_>) -> Result<Vec<Row>, CliError> {
    let mut rows = Vec::new();
    for config in Config::on_disk() {
        for row in body_sizes(ctx, config)? {
            ctx.done(&row);
            rows.push(row);
        }
    }
    for kind in [Kind::Yaml, Kind::Sqlite] {
        rows.extend(store_sizes(ctx, kind)?);
    }
    Ok(rows)
}

fn raw_write_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Sqlite => "raw UPDATE, same bytes",
        _ => "raw file write, same bytes",
    }
}

fn body_sizes(ctx: &mut Context<'_>, config: Config) -> Result<Vec<Row>, CliError> {
    let plan = ctx.plan.clone();
    let dir = ctx.folder(&format!(
        "bodies-{}-{}",
        config.kind.name(),
        config.durability_name()
    ))?;
    let location = config.location(&dir);
    let store = Store::with_options(config.open(&location)?, StoreOptions::default());
    let mut rows = Vec::new();
    for &size in &plan.body_sizes {
        let name = format!("body-{size}");
        store.create("bodies", &name, body_of_size(size))?;
        store.patch(
            "bodies",
            &name,
            &Patch::Merge(json!({"counter": 1})),
            Precondition::Any,
        )?;
        let floor = RefCell::new(Floor::new(
            config, &dir, &location, &store, "bodies", &name,
        )?);
        floor.borrow_mut().create("bodies", &name)?;
        let n = (plan.ops(config) * 1024 / size).max(3);
        let mut raw = |_| floor.borrow_mut().overwrite("bodies", &name);
        let mut patch = |i: usize| patch_counter(&store, "bodies", &name, i);
        let mut cases: Vec<Case<'_>> = vec![(n, &mut raw), (n, &mut patch)];
        let samples = interleaved(plan.samples, &mut cases)?;
        rows.push(
            Row::from_samples(
                GROUP,
                format!("patch, body {}", size_name(size)),
                config.kind.name(),
                config.durability_name(),
                Unit::MicrosPerOp,
                &samples[1],
            )
            .against_samples(raw_write_name(config.kind), &samples[0]),
        );
    }
    Ok(rows)
}

fn doc_name(i: usize) -> String {
    format!("doc{i:06}")
}

fn store_sizes(ctx: &mut Context<'_>, kind: Kind) -> Result<Vec<Row>, CliError> {
    let plan = ctx.plan.clone();
    let dir = ctx.folder(&format!("sizes-{}", kind.name()))?;
    let at = |durability| Config { kind, durability };
    let location = at(Durability::Full).location(&dir);
    let open = |durability| -> Result<Store, CliError> {
        Ok(Store::with_options(
            at(durability).open(&location)?,
            StoreOptions::default(),
        ))
    };
    let filler = open(Durability::Relaxed)?;
    let measured = [
        (Durability::Full, open(Durability::Full)?),
        (Durability::Relaxed, open(Durability::Relaxed)?),
    ];
    let body = body_of_size(1 << 10);
    let mut filled = 0usize;
    let mut first_patch: Vec<f64> = Vec::new();
    let mut sample_ops: Vec<usize> = Vec::new();
    // SQLite's raw baseline: a table of its own, one connection per
    // durability level, filled alongside the store.
    let mut raw: Vec<RawSqlite> = Vec::new();
    let mut first_raw: Vec<f64> = Vec::new();
    // A `Value` always encodes (its map keys are strings).
    let raw_json = body.to_string();
    if kind == Kind::Sqlite {
        let path = dir.join("raw-sizes.sqlite");
        for durability in [Durability::Full, Durability::Relaxed] {
            raw.push(RawSqlite::open(&path, durability)?);
        }
    }
    let mut rows = Vec::new();
    let largest = plan.store_sizes.iter().copied().max().unwrap_or(0);
    for &size in &plan.store_sizes {
        ctx.say(&format!(
            "  filling {} to {size} documents (relaxed)…",
            kind.name()
        ));
        if let Some(raw) = raw.first_mut() {
            raw.fill(C, (filled..size).map(doc_name), &raw_json)?;
        }
        let started = Instant::now();
        while filled < size {
            filler.create(C, &doc_name(filled), body.clone())?;
            filled += 1;
        }
        let fill_secs = started.elapsed().as_secs_f64();
        for (k, (durability, store)) in measured.iter().enumerate() {
            let config = at(*durability);
            let mut patch =
                |i: usize| patch_counter(store, C, &doc_name(i.wrapping_mul(7919) % size), i);
            // Sized once, at the smallest store, on untimed patches (as
            // the ops group's samples), and kept for the larger stores.
            if sample_ops.len() <= k {
                sample_ops.push(sized_ops(plan.ops(config), plan.sample_time, &mut patch)?);
            }
            let n = sample_ops[k];
            let mut raw_update = raw.get_mut(k).map(|raw| {
                let raw_json = &raw_json;
                move |i: usize| {
                    raw.update(C, &doc_name(i.wrapping_mul(7919) % size), raw_json)
                        .map(drop)
                }
            });
            let mut cases: Vec<Case<'_>> = vec![(n, &mut patch)];
            if let Some(raw_update) = raw_update.as_mut() {
                cases.push((n, raw_update));
            }
            let samples = interleaved(plan.samples, &mut cases)?;
            drop(cases);
            let median = samples[0].median_micros();
            if first_patch.len() <= k {
                first_patch.push(median);
            }
            let raw_growth = samples.get(1).map(|raw_samples| {
                let raw_median = raw_samples.median_micros();
                if first_raw.len() <= k {
                    first_raw.push(raw_median);
                }
                let row = Row::from_samples(
                    GROUP,
                    format!("raw UPDATE 1 KiB, {size} docs"),
                    kind.name(),
                    config.durability_name(),
                    Unit::MicrosPerOp,
                    raw_samples,
                )
                .against(format!("at {} docs", plan.store_sizes[0]), first_raw[k]);
                (raw_median / first_raw[k], row)
            });
            let mut row = Row::from_samples(
                GROUP,
                format!("patch 1 KiB, {size} docs"),
                kind.name(),
                config.durability_name(),
                Unit::MicrosPerOp,
                &samples[0],
            )
            .against(format!("at {} docs", plan.store_sizes[0]), first_patch[k])
            .note("fill_s", fill_secs);
            if size == TARGET_SIZE {
                row = row.target(Target::RatioAtMost(1.5));
            }
            if let Some((growth, _)) = &raw_growth {
                row = row.note("raw_growth", *growth);
            }
            ctx.done(&row);
            rows.push(row);
            if let Some((_, raw_row)) = raw_growth {
                ctx.done(&raw_row);
                rows.push(raw_row);
            }
        }
        let row = list_time(ctx, kind, &dir, &location, &measured[0].1, size)?;
        ctx.done(&row);
        rows.push(row);
        if size == largest {
            let row = list_memory(ctx, kind, &location, size)?;
            ctx.done(&row);
            rows.push(row);
        }
    }
    Ok(rows)
}

fn list_time(
    ctx: &Context<'_>,
    kind: Kind,
    dir: &Path,
    location: &Path,
    store: &Store,
    size: usize,
) -> Result<Row, CliError> {
    let config = Config {
        kind,
        durability: Durability::Full,
    };
    let samples = if size >= TARGET_SIZE {
        3
    } else {
        ctx.plan.samples
    };
    let floor = RefCell::new(Floor::new(config, dir, location, store, C, &doc_name(0))?);
    let mut raw = |_| floor.borrow_mut().list(C).map(drop);
    let mut list = |_| store.list(C).map(drop).map_err(CliError::from);
    let mut cases: Vec<Case<'_>> = vec![(1, &mut raw), (1, &mut list)];
    let samples = interleaved(samples, &mut cases)?;
    let raw_name = match kind {
        Kind::Sqlite => "raw SELECT names",
        _ => "raw readdir",
    };
    let mut row = Row::from_samples(
        GROUP,
        format!("list {size} docs"),
        kind.name(),
        "-",
        Unit::Millis,
        &samples[1],
    )
    .against_samples(raw_name, &samples[0]);
    if size == TARGET_SIZE {
        row = row.target(Target::MedianAtMost(1000.0));
    }
    Ok(row)
}

/// Peak memory a listing adds, in a child process each time (so the fill
/// does not count), beside a raw listing's.
fn list_memory(
    ctx: &Context<'_>,
    kind: Kind,
    location: &Path,
    size: usize,
) -> Result<Row, CliError> {
    let runs = ctx.plan.samples.min(3);
    let mut engine = Samples::default();
    let mut raw = Samples::default();
    let mut count = 0;
    for _ in 0..runs {
        for (task, samples) in [(Task::RawList, &mut raw), (Task::List, &mut engine)] {
            let args = WorkerArgs {
                backend: kind.name().to_owned(),
                path: location.to_path_buf(),
                durability: "full".to_owned(),
                task,
                collection: C.to_owned(),
                key: String::new(),
                ops: 0,
                writer: 0,
                start_file: None,
            };
            let report = Spawned::start(&ctx.exe, &args)?.finish()?;
            let field = |name: &str| report.get(name).and_then(Value::as_u64).unwrap_or(0);
            let grown_kib = field("peak_after_kib").saturating_sub(field("peak_before_kib"));
            samples.push(grown_kib as f64 / 1024.0);
            count = field("count");
        }
    }
    let mut row = Row::from_samples(
        GROUP,
        format!("list {size} docs, peak memory added"),
        kind.name(),
        "-",
        Unit::MiB,
        &engine,
    )
    .against_samples("raw listing", &raw)
    .note("listed", count);
    if size == TARGET_SIZE {
        row = row.target(Target::MedianAtMost(64.0));
    }
    Ok(row)
}
