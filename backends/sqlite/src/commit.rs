//! Running commits: one write transaction for a group of queued commits
//! (see [`crate::group`]), each commit checked and recorded on its own.

use std::path::Path;

use revstore::{CommitOutcome, Current, Error, Key};
use rusqlite::{params, Connection, OptionalExtension};

use crate::failure::{retry_contention, shared_error, sqlite_error, Failure};
use crate::feed;
use crate::group::{Job, Outcome};
use crate::row;
use crate::SqliteBackend;

/// The state of a key, without its body.
const SELECT_CURRENT: &str =
    "SELECT revision, body IS NULL FROM documents WHERE collection = ?1 AND name = ?2";
/// The first write of a key; does nothing when the key has a row.
const INSERT_FIRST: &str = "INSERT INTO documents (collection, name, revision, body) \
     VALUES (?1, ?2, 1, ?3) ON CONFLICT (collection, name) DO NOTHING";
/// A later write of a key; does nothing unless the key is at the expected
/// revision.
const UPDATE_IF_REVISION: &str = "UPDATE documents SET body = ?1, revision = ?2 \
     WHERE collection = ?3 AND name = ?4 AND revision = ?5";
/// A write of a key whatever its revision: the deliberately broken
/// variant the group-commit tests must catch.
#[cfg(test)]
const WRITE_ANY_REVISION: &str = "INSERT INTO documents (collection, name, revision, body) \
     VALUES (?3, ?4, ?2, ?1) \
     ON CONFLICT (collection, name) DO UPDATE SET body = ?1, revision = ?2";

/// A write transaction (`BEGIN IMMEDIATE`) run with cached statements
/// (rusqlite's `Transaction` prepares `BEGIN` and `COMMIT` anew each
/// time). Dropping it without [`commit`](WriteTx::commit) rolls back.
struct WriteTx<'c> {
    conn: &'c Connection,
    open: bool,
}

impl<'c> WriteTx<'c> {
    /// Takes the write lock at once, so that nothing read inside can be
    /// overtaken by another writer before the commit.
    fn begin(conn: &'c Connection) -> rusqlite::Result<WriteTx<'c>> {
        conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        Ok(WriteTx { conn, open: true })
    }

    fn commit(mut self) -> rusqlite::Result<()> {
        self.conn.prepare_cached("COMMIT")?.execute([])?;
        self.open = false;
        Ok(())
    }
}

impl Drop for WriteTx<'_> {
    fn drop(&mut self) {
        if self.open {
            // If even the rollback fails, the pool sees the connection
            // still in a transaction and closes it, which rolls back.
            let _ = self
                .conn
                .prepare_cached("ROLLBACK")
                .and_then(|mut stmt| stmt.execute([]));
        }
    }
}

/// How one commit of a group ended inside the transaction.
enum Applied {
    /// Written, with its change's seq.
    Written(u64),
    /// Refused (conflict or changed guard), or failed on data it read
    /// (a corrupt row): nothing of it was written.
    NotWritten(Outcome),
    /// A commit run alone lost its race after recording its change: the
    /// transaction must roll back.
    Lost(Outcome),
}

/// What one attempt at a group came to.
enum Attempt {
    /// The transaction committed (or, when nothing was written, rolled
    /// back): one outcome per commit.
    Done(Vec<Outcome>),
    /// A statement of one commit of a group of several failed, and the
    /// transaction was rolled back: run each commit alone instead, so
    /// that the failure stays with the commit that caused it.
    OneFailed,
}

/// The state of `key` as seen inside a transaction.
pub(crate) fn current_in(conn: &Connection, path: &Path, key: &Key) -> Result<Current, Failure> {
    let mut stmt = conn.prepare_cached(SELECT_CURRENT)?;
    let found = stmt
        .query_row(params![key.collection(), key.name()], |row| {
            row::current(row, path, key)
        })
        .optional()?;
    match found {
        None => Ok(Current::Missing),
        Some(current) => Ok(current?),
    }
}

impl SqliteBackend {
    /// Runs a group of commits in one transaction and returns one outcome
    /// per commit, in order. Lock contention is waited out (up to the lock
    /// timeout); a failure of the shared transaction (`BEGIN`, `COMMIT`) is
    /// reported to every commit, and then none of them was written.
    pub(crate) fn run_group(&self, jobs: &[Job]) -> Vec<Outcome> {
        let path = self.path();
        match retry_contention(self.lock_timeout, || self.try_group(jobs)) {
            Ok(Attempt::Done(outcomes)) => outcomes,
            Ok(Attempt::OneFailed) => jobs
                .iter()
                .flat_map(|job| self.run_group(std::slice::from_ref(job)))
                .collect(),
            Err(failure) => {
                let context = |job: &Job| match jobs.len() {
                    1 => format!("committing {} to {}", job.key, path.display()),
                    n => format!(
                        "committing {} to {} (in one transaction with {} other commits)",
                        job.key,
                        path.display(),
                        n - 1
                    ),
                };
                match (jobs, failure) {
                    ([job], Failure::Sqlite(e)) => vec![Err(sqlite_error(path, context(job), e))],
                    ([_], Failure::Final(e)) => vec![Err(e)],
                    (_, failure) => jobs
                        .iter()
                        .map(|job| Err(shared_error(path, context(job), &failure)))
                        .collect(),
                }
            }
        }
    }

    fn try_group(&self, jobs: &[Job]) -> Result<Attempt, Failure> {
        let conn = self.pool.get()?;
        let tx = WriteTx::begin(&conn)?;
        let mut outcomes = Vec::with_capacity(jobs.len());
        let mut seqs: Option<(u64, u64)> = None;
        for job in jobs {
            match self.apply(&conn, job, jobs.len() > 1) {
                Ok(Applied::Written(seq)) => {
                    seqs = Some(seqs.map_or((seq, seq), |(first, _)| (first, seq)));
                    outcomes.push(Ok(CommitOutcome::Committed));
                }
                Ok(Applied::NotWritten(outcome)) => outcomes.push(outcome),
                Ok(Applied::Lost(outcome)) => {
                    // Only a commit run alone gets here; `tx` rolls back.
                    outcomes.push(outcome);
                    return Ok(Attempt::Done(outcomes));
                }
                // The transaction is rolled back when `tx` drops.
                Err(_) if jobs.len() > 1 => return Ok(Attempt::OneFailed),
                Err(failure) => return Err(failure),
            }
        }
        if let Some((first, last)) = seqs {
            feed::prune(&conn, first, last, self.retain_changes)?;
            tx.commit()?;
        }
        Ok(Attempt::Done(outcomes))
    }

    /// Checks one commit inside the transaction and writes it if it holds.
    /// An error is a failed statement after which the transaction must not
    /// commit; what the commit read being wrong is an outcome instead.
    fn apply(&self, conn: &Connection, job: &Job, grouped: bool) -> Result<Applied, Failure> {
        let path = self.path();
        let refused = |failure: Failure| match failure {
            Failure::Final(e) => Ok(Applied::NotWritten(Err(e))),
            Failure::Sqlite(e) => Err(Failure::Sqlite(e)),
        };
        if let Some((guard, revision)) = &job.guard {
            let actual = match current_in(conn, path, guard) {
                Ok(actual) => actual,
                Err(failure) => return refused(failure),
            };
            if actual.last_revision() != *revision {
                return Ok(Applied::NotWritten(Ok(CommitOutcome::GuardChanged {
                    actual,
                })));
            }
        }
        // In a group, a commit that lost must leave nothing behind for the
        // others' sake, so its revision is checked before it writes. A
        // commit run alone skips that lookup: the conditional write below
        // tells, and losing rolls its whole transaction back.
        let check_revision = !(grouped && self.broken_groups());
        if grouped && check_revision {
            let actual = match current_in(conn, path, &job.key) {
                Ok(actual) => actual,
                Err(failure) => return refused(failure),
            };
            if actual.last_revision() != job.expected.unsigned_abs() {
                return Ok(Applied::NotWritten(Ok(CommitOutcome::Conflict { actual })));
            }
        }
        // The change goes first: the format's triggers refuse a document
        // write whose change row this connection did not just insert.
        let seq = feed::record(conn, &job.key, job.new_revision, job.kind)?;
        let (collection, name) = (job.key.collection(), job.key.name());
        let changed = if !check_revision {
            self.write_any_revision(conn, job)?
        } else if job.expected == 0 {
            conn.prepare_cached(INSERT_FIRST)?.execute(params![
                collection,
                name,
                job.body.as_deref()
            ])?
        } else {
            conn.prepare_cached(UPDATE_IF_REVISION)?.execute(params![
                job.body.as_deref(),
                job.new_revision,
                collection,
                name,
                job.expected
            ])?
        };
        if changed == 1 {
            return Ok(Applied::Written(seq));
        }
        if grouped {
            // Checked above under the same write lock, so only a bug can
            // get here; the change row must not commit without its write.
            return Err(Failure::Final(Error::Backend {
                backend: "sqlite",
                context: format!("committing {} to {}", job.key, path.display()),
                source: "the row no longer matched the revision just checked".into(),
            }));
        }
        let outcome = match current_in(conn, path, &job.key) {
            Ok(actual) => Ok(CommitOutcome::Conflict { actual }),
            Err(Failure::Final(e)) => Err(e),
            Err(failure) => return Err(failure),
        };
        Ok(Applied::Lost(outcome))
    }

    #[cfg(not(test))]
    fn broken_groups(&self) -> bool {
        false
    }

    #[cfg(test)]
    fn broken_groups(&self) -> bool {
        self.unchecked_groups
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    #[cfg(not(test))]
    fn write_any_revision(&self, _conn: &Connection, _job: &Job) -> Result<usize, Failure> {
        Ok(0)
    }

    #[cfg(test)]
    fn write_any_revision(&self, conn: &Connection, job: &Job) -> Result<usize, Failure> {
        Ok(conn.prepare_cached(WRITE_ANY_REVISION)?.execute(params![
            job.body.as_deref(),
            job.new_revision,
            job.key.collection(),
            job.key.name()
        ])?)
    }
}
