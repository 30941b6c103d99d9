//! The `baselines` group: the disk's fsync rate, and the raw write loops
//! the backends are compared with, each against the fsync rate.

use revstore::Durability;

use super::measure::{interleaved, Case};
use super::raw::{FsyncProbe, RawFile, RawSqlite};
use super::report::{Row, Unit};
use super::subject::body_of_size;
use super::Context;
use crate::error::CliError;

const GROUP: &str = "baselines";

/// Runs the group.
///
/// # Errors
/// The file system's and SQLite's errors.
pub fn run(ctx: &mut Context<'_>) -> Result<Vec<Row>, CliError> {
    let plan = ctx.plan.clone();
    let body = body_of_size(1 << 10).to_string();
    let mut probe = FsyncProbe::new(&ctx.dir)?;
    let full_file = RawFile::new(&ctx.folder("file-full")?, Durability::Full)?;
    let relaxed_file = RawFile::new(&ctx.folder("file-relaxed")?, Durability::Relaxed)?;
    let mut full_sql = RawSqlite::open(&ctx.dir.join("full.sqlite"), Durability::Full)?;
    let mut relaxed_sql = RawSqlite::open(&ctx.dir.join("relaxed.sqlite"), Durability::Relaxed)?;
    full_sql.put("bench", "doc", &body)?;
    relaxed_sql.put("bench", "doc", &body)?;

    let (full_n, relaxed_n) = (plan.ops_full * 2, plan.ops_relaxed * 2);
    let bytes = body.as_bytes();
    let mut fsync = |i: usize| probe.once(i);
    let mut file_full = |_| full_file.write("doc.yaml", bytes);
    let mut file_relaxed = |_| relaxed_file.write("doc.yaml", bytes);
    let mut sql_full = |_| full_sql.update("bench", "doc", &body).map(drop);
    let mut sql_relaxed = |_| relaxed_sql.update("bench", "doc", &body).map(drop);
    let mut cases: Vec<Case<'_>> = vec![
        (full_n, &mut fsync),
        (full_n, &mut file_full),
        (relaxed_n, &mut file_relaxed),
        (full_n, &mut sql_full),
        (relaxed_n, &mut sql_relaxed),
    ];
    let samples = interleaved(plan.samples, &mut cases)?;
    let fsync_name = "fsync 4 KiB";
    let fsync_rate = samples[0].median_rate();
    let rows = vec![
        Row::from_samples(
            GROUP,
            "fsync 4 KiB overwrite",
            "raw",
            "full",
            Unit::OpsPerSec,
            &samples[0],
        ),
        Row::from_samples(
            GROUP,
            "file write 1 KiB (temp, fsync, rename, fsync dir)",
            "raw",
            "full",
            Unit::OpsPerSec,
            &samples[1],
        )
        .against(fsync_name, fsync_rate),
        Row::from_samples(
            GROUP,
            "file write 1 KiB (temp, rename)",
            "raw",
            "relaxed",
            Unit::OpsPerSec,
            &samples[2],
        )
        .against(fsync_name, fsync_rate),
        Row::from_samples(
            GROUP,
            "sqlite UPDATE … WHERE revision=? 1 KiB",
            "raw",
            "full",
            Unit::OpsPerSec,
            &samples[3],
        )
        .against(fsync_name, fsync_rate),
        Row::from_samples(
            GROUP,
            "sqlite UPDATE … WHERE revision=? 1 KiB",
            "raw",
            "relaxed",
            Unit::OpsPerSec,
            &samples[4],
        )
        .against(fsync_name, fsync_rate),
    ];
    for row in &rows {
        ctx.done(row);
    }
    Ok(rows)
}
