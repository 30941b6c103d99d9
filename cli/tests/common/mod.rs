//! Helpers shared by the end-to-end test files: running the binary and
//! checking its exit code and output.
// Each test file uses its own subset of the helpers.
#![allow(dead_code)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

/// What one run of the binary produced.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts the exit code, showing the output when it differs.
    pub fn expect(self, code: i32) -> Run {
        assert_eq!(
            self.code, code,
            "exit code; stdout: {:?}; stderr: {:?}",
            self.stdout, self.stderr
        );
        self
    }

    /// Asserts a failure reported as one `revstore: …` line on stderr.
    pub fn expect_error(self, code: i32, needle: &str) -> Run {
        let run = self.expect(code);
        assert_eq!(run.stdout, "", "nothing on stdout after an error");
        assert!(
            run.stderr.starts_with("revstore: ") && run.stderr.lines().count() == 1,
            "one error line: {:?}",
            run.stderr
        );
        assert!(
            run.stderr.contains(needle),
            "{needle:?} in {:?}",
            run.stderr
        );
        run
    }

    pub fn json(&self) -> Value {
        assert_eq!(
            self.stdout.lines().count(),
            1,
            "one line: {:?}",
            self.stdout
        );
        serde_json::from_str(&self.stdout).unwrap()
    }
}

pub fn command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_revstore"));
    cmd.env_remove("REVSTORE_STORE");
    cmd
}

pub fn run_with(mut cmd: Command, args: &[&str], stdin: &str) -> Run {
    let mut child = cmd
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().expect("exited normally"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

pub fn run(args: &[&str]) -> Run {
    run_with(command(), args, "")
}

/// Runs a command against `store`.
pub fn on(store: &str, args: &[&str]) -> Run {
    on_with(store, args, "")
}

pub fn on_with(store: &str, args: &[&str], stdin: &str) -> Run {
    let mut all = vec!["--store", store];
    all.extend_from_slice(args);
    run_with(command(), &all, stdin)
}

/// A YAML and a SQLite store in `dir`.
pub fn file_stores(dir: &Path) -> [String; 2] {
    [
        format!("yaml:{}", dir.join("yaml").display()),
        format!("sqlite:{}", dir.join("store.sqlite").display()),
    ]
}

/// Runs a batch session on a fresh memory store and parses every answer.
pub fn batch(lines: &str) -> Vec<Value> {
    batch_on("memory:", lines)
}

/// Runs a batch session on `store` and parses every answer.
pub fn batch_on(store: &str, lines: &str) -> Vec<Value> {
    let run = on_with(store, &["batch"], lines).expect(0);
    assert_eq!(run.stderr, "");
    run.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
