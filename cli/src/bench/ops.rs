//! The `ops` group: each operation on each backend and durability level,
//! beside its raw baseline, on small (1 KiB) documents, one writer.

use std::cell::RefCell;

use revstore::{Patch, Precondition, Store, StoreOptions};
use serde_json::json;

use super::floor::Floor;
use super::measure::{interleaved, sized_ops, Case};
use super::report::{Row, Target, Unit};
use super::subject::{body_of_size, patch_counter, Config, Kind};
use super::Context;
use crate::error::CliError;

const GROUP: &str = "ops";
const C: &str = "bench";
const LISTED: &str = "listed";
/// Documents in the listed collection.
const LISTED_DOCS: usize = 100;

/// The names of the raw baselines per backend: (read, create, write, list).
fn floor_names(kind: Kind) -> [&'static str; 4] {
    match kind {
        Kind::Memory => [
            "raw map get",
            "raw map insert",
            "raw map insert",
            "raw map scan",
        ],
        Kind::Yaml => [
            "raw file read",
            "raw file write",
            "raw file write",
            "raw readdir",
        ],
        Kind::Sqlite => ["raw SELECT", "raw INSERT", "raw UPDATE", "raw SELECT names"],
    }
}

/// Runs the group.
///
/// # Errors
/// The stores' errors.
pub fn run(ctx: &mut Context<'_>) -> Result<Vec<Row>, CliError> {
    let mut rows = Vec::new();
    for config in Config::all() {
        for row in measure(ctx, config)? {
            ctx.done(&row);
            rows.push(row);
        }
    }
    Ok(rows)
}

fn measure(ctx: &mut Context<'_>, config: Config) -> Result<Vec<Row>, CliError> {
    let plan = ctx.plan.clone();
    let dir = ctx.folder(&format!(
        "{}-{}",
        config.kind.name(),
        config.durability_name()
    ))?;
    let location = config.location(&dir);
    let store = Store::with_options(config.open(&location)?, StoreOptions::default());
    let body = body_of_size(1 << 10);
    store.create(C, "doc", body.clone())?;
    store.patch(
        C,
        "doc",
        &Patch::Merge(json!({"counter": 1})),
        Precondition::Any,
    )?;
    let floor = RefCell::new(Floor::new(config, &dir, &location, &store, C, "doc")?);
    floor.borrow_mut().create(C, "doc")?;
    for i in 0..LISTED_DOCS {
        let name = format!("l{i:03}");
        store.create(LISTED, &name, body.clone())?;
        if config.kind == Kind::Memory {
            floor.borrow_mut().create(LISTED, &name)?;
        }
    }
    let patch_doc = |i: usize| patch_counter(&store, C, "doc", i);
    // Samples of a fast configuration (200 relaxed SQLite patches took
    // 4 ms, and one in two or three held a WAL checkpoint) last at least
    // the plan's sample time: sized on untimed patches, which also warm
    // the handle.
    let n = sized_ops(plan.ops(config), plan.sample_time, patch_doc)?;
    let n_read = if config.kind == Kind::Memory {
        n
    } else {
        n * 4
    };
    let n_list = (n / 10).max(1);
    for i in 0..plan.samples * n {
        store.create(C, &format!("d{i}"), body.clone())?;
    }

    let mut floor_get = |_| floor.borrow_mut().read(C, "doc");
    let mut get = |_| store.get(C, "doc").map(drop).map_err(CliError::from);
    let mut floor_create = |i: usize| floor.borrow_mut().create(C, &format!("c{i}"));
    let mut create = |i: usize| {
        store
            .create(C, &format!("c{i}"), body.clone())
            .map(drop)
            .map_err(CliError::from)
    };
    let mut floor_write = |_| floor.borrow_mut().overwrite(C, "doc");
    let mut patch = patch_doc;
    let mut floor_write2 = |_| floor.borrow_mut().overwrite(C, "doc");
    let mut replace = |_| {
        store
            .replace(C, "doc", body.clone(), Precondition::Any)
            .map(drop)
            .map_err(CliError::from)
    };
    let mut floor_write3 = |_| floor.borrow_mut().overwrite(C, "doc");
    let mut delete = |i: usize| {
        store
            .delete(C, &format!("d{i}"), Precondition::Any)
            .map(drop)
            .map_err(CliError::from)
    };
    let mut floor_design = |_| {
        floor
            .borrow_mut()
            .overwrite_with_feed(C, "doc")
            .unwrap_or(Ok(()))
    };
    let mut patch_again = patch_doc;
    let mut floor_list = |_| floor.borrow_mut().list(LISTED).map(drop);
    let mut list = |_| store.list(LISTED).map(drop).map_err(CliError::from);
    let mut cases: Vec<Case<'_>> = vec![
        (n_read, &mut floor_get),
        (n_read, &mut get),
        (n, &mut floor_create),
        (n, &mut create),
        (n, &mut floor_write),
        (n, &mut patch),
        (n, &mut floor_write2),
        (n, &mut replace),
        (n, &mut floor_write3),
        (n, &mut delete),
        (n_list, &mut floor_list),
        (n_list, &mut list),
    ];
    if config.kind != Kind::Memory {
        cases.push((n, &mut floor_design));
        cases.push((n, &mut patch_again));
    }
    let samples = interleaved(plan.samples, &mut cases)?;

    let [read_name, create_name, write_name, list_name] = floor_names(config.kind);
    let cases = [
        ("get 1 KiB", read_name),
        ("create 1 KiB", create_name),
        ("patch 1 KiB", write_name),
        ("replace 1 KiB", write_name),
        ("delete", write_name),
        ("list 100 docs", list_name),
    ];
    let mut rows = Vec::new();
    for (k, (case, base_name)) in cases.into_iter().enumerate() {
        let mut row = Row::from_samples(
            GROUP,
            case,
            config.kind.name(),
            config.durability_name(),
            Unit::OpsPerSec,
            &samples[2 * k + 1],
        )
        .against_samples(base_name, &samples[2 * k]);
        if case.starts_with("patch") && config.kind != Kind::Memory {
            row = row.target(Target::RatioAtLeast(0.8));
        }
        rows.push(row);
    }
    if config.kind != Kind::Memory {
        // No target: this row says how close the engine gets to the floor
        // of its own design (SQLite: a guarded commit with a feed row,
        // starting from the revision written last; YAML: the system calls
        // of a commit — both locks with their checks, a read of the
        // document, the staged file, the segment's checks, the schema
        // guard's read, the feed line and the rename; when full, the staged
        // file's and the line's fsyncs at once on two threads, then the
        // folder's).
        let design = match config.kind {
            Kind::Sqlite => "raw guarded UPDATE + feed row",
            _ => "raw locked write + feed line",
        };
        rows.push(
            Row::from_samples(
                GROUP,
                "patch 1 KiB vs its design floor",
                config.kind.name(),
                config.durability_name(),
                Unit::OpsPerSec,
                &samples[13],
            )
            .against_samples(design, &samples[12]),
        );
    }
    Ok(rows)
}
