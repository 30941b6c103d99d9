//! CI smoke run of `revstore bench`: every group runs one short iteration
//! and reports figures beside baselines. No timing is asserted: the
//! figures of a smoke run on a shared machine mean nothing.

use std::process::Command;

use serde_json::Value;

const GROUPS: [&str; 5] = ["baselines", "ops", "warm-get", "contention", "growth"];

fn bench(args: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_revstore"))
        .arg("bench")
        .args(args)
        .arg("--dir")
        .arg(dir.path())
        .env_remove("REVSTORE_STORE")
        .output()
        .unwrap()
}

#[test]
fn quick_json_reports_every_group_with_numbers_and_baselines() {
    let out = bench(&["--quick", "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stderr: {stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = report["rows"].as_array().unwrap();
    for group in GROUPS {
        let in_group: Vec<&Value> = rows.iter().filter(|r| r["group"] == group).collect();
        assert!(!in_group.is_empty(), "no rows for {group}");
        for row in &in_group {
            let median = row["median"].as_f64().unwrap();
            assert!(median.is_finite() && median >= 0.0, "{row}");
            assert!(row["p90"].as_f64().is_some(), "{row}");
            for field in ["case", "backend", "durability", "unit"] {
                assert!(row[field].as_str().is_some_and(|s| !s.is_empty()), "{row}");
            }
        }
        let with_baseline: Vec<&&Value> = in_group
            .iter()
            .filter(|r| r["baseline"]["median"].as_f64().is_some() && r["ratio"].is_number())
            .collect();
        assert!(!with_baseline.is_empty(), "no baselines in {group}");
    }
    // Every backend is measured, and the targets are judged
    // (met or not: a smoke run does not say which).
    for backend in ["memory", "yaml", "sqlite"] {
        assert!(rows.iter().any(|r| r["backend"] == backend), "{backend}");
    }
    // SQLite's processes on a key each are measured raw beside revstore,
    // at both durabilities, and compared with the single raw process.
    for durability in ["full", "relaxed"] {
        let raw_scaled = rows.iter().any(|r| {
            r["backend"] == "sqlite"
                && r["durability"] == durability
                && r["case"].as_str().is_some_and(|c| {
                    c.starts_with("own keys raw UPDATE, ") && c != "own keys raw UPDATE, 1 process"
                })
                && r["ratio"].is_number()
        });
        assert!(raw_scaled, "no raw SQLite process rows at {durability}");
    }
    let judged = rows.iter().filter(|r| r["met"].is_boolean()).count();
    assert!(judged >= 6, "targets judged: {judged}");
    assert_eq!(report["targets"]["judged"], judged);
    // Every row with a target states it.
    for row in rows.iter().filter(|r| r["met"].is_boolean()) {
        assert!(row["target"].as_str().is_some(), "{row}");
    }
}

#[test]
fn quick_table_of_one_group() {
    let out = bench(&["--quick", "--only", "baselines"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("group"), "{text}");
    assert!(text.contains("fsync 4 KiB overwrite"), "{text}");
    assert!(text.lines().all(|l| !l.starts_with("ops ")), "{text}");
}

#[test]
fn unknown_group_is_a_usage_error() {
    let out = bench(&["--quick", "--only", "ops,nope"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("unknown bench group \"nope\""), "{stderr}");
}
