//! `revstore bench`: measures every backend against raw baselines taken in
//! the same run, with the same durability settings, and reports medians,
//! ratios and the performance targets met or missed.
//!
//! Groups (each can be chosen with `--only`):
//! - `baselines`: the disk's fsync rate, a raw "temp file, fsync, rename,
//!   fsync folder" write, a raw SQLite `UPDATE … WHERE revision=?` loop;
//! - `ops`: get, create, patch, replace, delete and list on memory, YAML
//!   and SQLite at both durability levels, each beside its raw baseline;
//! - `warm-get`: a repeated get of an unchanged document beside a cold
//!   read (YAML) and a raw `SELECT` (SQLite);
//! - `contention`: T threads or P processes on one key or on one key each;
//! - `growth`: patch latency against body size and store size, list time
//!   and peak memory of a large collection;
//! - `postgres`: revstore-postgres beside raw statements on the same
//!   server (only when `REVSTORE_POSTGRES_URL` names one).
//!
//! Figures are medians of several samples of N operations; a case and its
//! baseline are measured in alternation where practical, so that both see
//! the same moments of a shared, noisy machine. Nothing here asserts a
//! timing: the report says which targets are met.

mod baselines;
mod contention;
mod floor;
mod growth;
pub mod measure;
mod ops;
mod postgres;
pub mod raw;
pub mod report;
pub mod subject;
mod warm;
pub mod worker;

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::json;

pub use report::{Row, Target, Unit};
pub use worker::WorkerArgs;

use crate::error::CliError;
use subject::Config;

/// The groups of measurements, in the order they run.
pub const GROUPS: [&str; 6] = [
    "baselines",
    "ops",
    "warm-get",
    "contention",
    "growth",
    "postgres",
];

/// The options of `revstore bench`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct BenchArgs {
    /// Smoke mode: one short iteration of every group (for CI), no
    /// meaningful figures.
    #[arg(long)]
    pub quick: bool,
    /// Print the rows as one JSON document instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Run only these groups (comma-separated): baselines, ops, warm-get,
    /// contention, growth, postgres (needs REVSTORE_POSTGRES_URL).
    #[arg(long, value_delimiter = ',', value_name = "GROUP,...")]
    pub only: Vec<String>,
    /// Measure in this folder (on the disk to be measured) instead of a
    /// temporary folder; what is created there is removed afterwards.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// How much each group measures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Samples per case (odd, so the median is one sample).
    pub samples: usize,
    /// Operations per sample for the memory backend.
    pub ops_memory: usize,
    /// Operations per sample at relaxed durability.
    pub ops_relaxed: usize,
    /// Operations per sample at full durability.
    pub ops_full: usize,
    /// Writer counts for the contention cases.
    pub writers: Vec<usize>,
    /// Samples per contention case.
    pub contention_samples: usize,
    /// The least time a sample of one writer should last: a sample of the
    /// `ops` group (per configuration, timed on patches) and each writer
    /// of a contention round make at least as many operations as one
    /// writer alone makes in this time, measured in an untimed warm-up
    /// first (zero: no warm-up, `ops_*` alone decide).
    pub sample_time: std::time::Duration,
    /// Body sizes in bytes for patch latency.
    pub body_sizes: Vec<usize>,
    /// Collection sizes for patch latency and list time.
    pub store_sizes: Vec<usize>,
}

impl Plan {
    /// The full plan (a few minutes) or the smoke plan (seconds).
    pub fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                samples: 1,
                ops_memory: 20,
                ops_relaxed: 5,
                ops_full: 3,
                writers: vec![1, 2],
                contention_samples: 1,
                sample_time: std::time::Duration::ZERO,
                body_sizes: vec![1 << 10, 16 << 10],
                store_sizes: vec![100, 300],
            }
        } else {
            Plan {
                samples: 7,
                ops_memory: 2000,
                ops_relaxed: 200,
                ops_full: 60,
                writers: vec![1, 2, 4, 8],
                contention_samples: 5,
                sample_time: std::time::Duration::from_millis(25),
                body_sizes: vec![1 << 10, 16 << 10, 256 << 10, 1 << 20],
                store_sizes: vec![100, 10_000, 100_000],
            }
        }
    }

    /// Operations per sample for a configuration.
    pub fn ops(&self, config: Config) -> usize {
        match (config.kind, config.durability) {
            (subject::Kind::Memory, _) => self.ops_memory,
            (_, revstore::Durability::Relaxed) => self.ops_relaxed,
            (_, revstore::Durability::Full) => self.ops_full,
        }
    }
}

/// What every group needs: where to work, the plan, the `revstore`
/// executable (for worker processes) and where progress goes.
pub struct Context<'a> {
    /// The folder the group may fill (removed afterwards).
    pub dir: PathBuf,
    /// How much to measure.
    pub plan: Plan,
    /// The `revstore` executable, run as `bench-worker`.
    pub exe: PathBuf,
    /// Progress lines (stderr); a library never prints on its own.
    pub progress: &'a mut dyn Write,
}

impl Context<'_> {
    /// A sub-folder of the work folder, created.
    ///
    /// # Errors
    /// It cannot be created.
    pub fn folder(&self, name: &str) -> Result<PathBuf, CliError> {
        let dir = self.dir.join(name);
        std::fs::create_dir_all(&dir)
            .map_err(|e| CliError::Store(revstore::Error::io("create the folder", &dir, e)))?;
        Ok(dir)
    }

    /// Reports one finished row on the progress stream.
    pub fn done(&mut self, row: &Row) {
        let ratio = row
            .ratio()
            .map(|r| {
                format!(
                    " ({}× {})",
                    report::figure(r),
                    row.baseline.as_ref().map_or("", |b| b.name.as_str())
                )
            })
            .unwrap_or_default();
        let _ = writeln!(
            self.progress,
            "  {} {} {} {}: {} {}{ratio}",
            row.group,
            row.case,
            row.backend,
            row.durability,
            report::figure(row.median),
            row.unit.label()
        );
    }

    /// Reports what is being prepared.
    pub fn say(&mut self, text: &str) {
        let _ = writeln!(self.progress, "{text}");
    }
}

/// The groups `--only` selects (all when empty).
///
/// # Errors
/// [`CliError::Usage`] for an unknown group.
pub fn selected_groups(only: &[String]) -> Result<Vec<&'static str>, CliError> {
    if only.is_empty() {
        return Ok(GROUPS.to_vec());
    }
    let mut chosen = Vec::new();
    for name in only {
        match GROUPS.iter().find(|g| **g == name.trim()) {
            Some(group) if !chosen.contains(group) => chosen.push(*group),
            Some(_) => {}
            None => {
                return Err(CliError::Usage(format!(
                    "unknown bench group {name:?}; the groups are {}",
                    GROUPS.join(", ")
                )))
            }
        }
    }
    // Keep the documented order whatever order they were given in.
    Ok(GROUPS
        .iter()
        .copied()
        .filter(|g| chosen.contains(g))
        .collect())
}

/// Runs the selected groups and returns their rows.
///
/// # Errors
/// [`CliError::Usage`] for an unknown group; the stores' and file system's
/// errors; a worker process that failed.
pub fn run(args: &BenchArgs, exe: &Path, progress: &mut dyn Write) -> Result<Vec<Row>, CliError> {
    let groups = selected_groups(&args.only)?;
    let parent = match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| CliError::Store(revstore::Error::io("create the folder", dir, e)))?;
            dir.clone()
        }
        None => std::env::temp_dir(),
    };
    let work = tempfile::Builder::new()
        .prefix("revstore-bench-")
        .tempdir_in(&parent)
        .map_err(|e| CliError::Store(revstore::Error::io("create a folder in", &parent, e)))?;
    let mut ctx = Context {
        dir: work.path().to_path_buf(),
        plan: Plan::new(args.quick),
        exe: exe.to_path_buf(),
        progress,
    };
    let mut rows = Vec::new();
    for group in groups {
        ctx.say(&format!("{group}:"));
        let group_dir = ctx.folder(group)?;
        let mut group_ctx = Context {
            dir: group_dir.clone(),
            plan: ctx.plan.clone(),
            exe: ctx.exe.clone(),
            progress: &mut *ctx.progress,
        };
        let mut found = match group {
            "baselines" => baselines::run(&mut group_ctx)?,
            "ops" => ops::run(&mut group_ctx)?,
            "warm-get" => warm::run(&mut group_ctx)?,
            "contention" => contention::run(&mut group_ctx)?,
            "postgres" => postgres::run(&mut group_ctx)?,
            _ => growth::run(&mut group_ctx)?,
        };
        rows.append(&mut found);
        // Each group's files go as soon as it is done, so a 100 000-file
        // folder does not slow the next group's directory operations.
        let _ = std::fs::remove_dir_all(&group_dir);
    }
    Ok(rows)
}

/// `revstore bench`: runs, then prints the table (or JSON) to `out`.
///
/// # Errors
/// As [`run`], and writing to `out`.
pub fn main(
    args: &BenchArgs,
    exe: &Path,
    out: &mut dyn Write,
    progress: &mut dyn Write,
) -> Result<(), CliError> {
    let rows = run(args, exe, progress)?;
    let text = if args.json {
        let settings = json!({
            "quick": args.quick,
            "groups": selected_groups(&args.only)?,
            "plan": format!("{:?}", Plan::new(args.quick)),
        });
        format!("{}\n", report::to_json(&rows, settings))
    } else {
        report::table(&rows)
    };
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| CliError::io("write the bench report", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_chosen_in_order_and_checked() {
        assert_eq!(selected_groups(&[]).unwrap(), GROUPS.to_vec());
        let only = vec!["growth".to_owned(), "ops".to_owned(), "ops".to_owned()];
        assert_eq!(selected_groups(&only).unwrap(), vec!["ops", "growth"]);
        let bad = vec!["nope".to_owned()];
        assert!(matches!(selected_groups(&bad), Err(CliError::Usage(_))));
    }

    #[test]
    fn plans_use_odd_sample_counts() {
        for quick in [true, false] {
            let plan = Plan::new(quick);
            assert_eq!(plan.samples % 2, 1);
            assert_eq!(plan.contention_samples % 2, 1);
            assert_eq!(plan.writers[0], 1, "the single writer is the baseline");
        }
    }
}
