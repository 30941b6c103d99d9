//! Driving a `revstore-worker` process line by line, with a timeout on
//! every wait so that a hung worker fails the test instead of hanging it.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// How long any single wait on a worker may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(60);

/// A running worker process whose stdin the test writes and whose stdout
/// lines it reads. Dropping it kills the process if it is still running.
#[derive(Debug)]
pub struct Worker {
    label: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl Worker {
    /// Starts `program` with `args`; `label` names it in failures. Its
    /// stderr goes to the test's.
    ///
    /// # Panics
    /// When the process cannot be started.
    pub fn spawn(program: &Path, args: &[String], label: &str) -> Worker {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{label}: cannot start {}: {e}", program.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (send, lines) = mpsc::channel();
        // A thread per worker turns blocking reads into a channel that can
        // be waited on with a timeout; it ends at the worker's EOF.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Worker {
            label: label.to_owned(),
            stdin: child.stdin.take(),
            child,
            lines,
        }
    }

    /// Writes one line to the worker's stdin.
    ///
    /// # Panics
    /// When the worker closed its stdin (it exited).
    pub fn send(&mut self, line: &str) {
        let label = &self.label;
        let stdin = self
            .stdin
            .as_mut()
            .unwrap_or_else(|| panic!("{label}: stdin already closed"));
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("{label}: cannot write to the worker: {e}"));
    }

    /// The next line the worker prints, waiting at most `timeout`.
    ///
    /// # Panics
    /// On timeout, or when the worker exited without printing one.
    pub fn recv(&mut self, timeout: Duration) -> String {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => {
                panic!("{}: no answer within {timeout:?}", self.label)
            }
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.try_wait().ok().flatten();
                panic!("{}: exited without answering ({status:?})", self.label)
            }
        }
    }

    /// Closes the worker's stdin (end of commands).
    pub fn close(&mut self) {
        self.stdin = None;
    }

    /// Closes stdin, waits for the worker to exit (at most `timeout`) and
    /// returns the lines it printed that were not read yet.
    ///
    /// # Panics
    /// When it does not exit in time (it is killed first) or exits with a
    /// failure.
    pub fn finish(mut self, timeout: Duration) -> Vec<String> {
        self.close();
        self.exited(timeout)
    }

    /// Waits for the worker to exit by itself, its stdin still open (at
    /// most `timeout`), and returns the lines it printed that were not
    /// read yet.
    ///
    /// # Panics
    /// As [`finish`](Self::finish).
    pub fn exited(mut self, timeout: Duration) -> Vec<String> {
        let status = self.wait(timeout);
        assert!(status.success(), "{}: {status}", self.label);
        let mut rest = Vec::new();
        // The reader thread may still be passing on the last lines.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            rest.push(line);
        }
        rest
    }

    fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Ok(None) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    panic!("{}: still running after {timeout:?}; killed", self.label);
                }
                Err(e) => panic!("{}: cannot wait: {e}", self.label),
            }
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
