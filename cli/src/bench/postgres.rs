//! The `postgres` group: revstore-postgres on the server named by
//! `REVSTORE_POSTGRES_URL` (`scripts/postgres.sh start` prints one), at
//! both durability levels, beside raw statements on the same server with
//! the same `synchronous_commit`: the `ops` cases against a raw `SELECT`,
//! `INSERT`, conditional `UPDATE … WHERE revision=$n` and name listing,
//! and T writer threads (a handle each) on a key each and on one key,
//! against T raw connections updating a key each. Without the variable the
//! group reports that it was skipped and measures nothing.
//!
//! Every store lives in a fresh namespace, dropped afterwards.

use std::cell::RefCell;
use std::sync::Barrier;
use std::time::Instant;

use ::postgres::{Client, NoTls, Statement};
use revstore::{Durability, Patch, Precondition, Store};
use revstore_postgres::{PostgresBackend, PostgresOptions};
use serde_json::json;

use super::measure::{interleaved, Case, Samples};
use super::report::{Row, Unit};
use super::subject::{body_of_size, patch_counter};
use super::Context;
use crate::error::CliError;

const GROUP: &str = "postgres";
const C: &str = "bench";
const LISTED: &str = "listed";
const LISTED_DOCS: usize = 100;

/// The variable naming the server's database.
const URL_VARIABLE: &str = "REVSTORE_POSTGRES_URL";

fn pg_error(what: &str, e: ::postgres::Error) -> CliError {
    CliError::Store(revstore::Error::Backend {
        backend: "postgres",
        context: format!("raw baseline: {what}"),
        source: Box::new(e),
    })
}

/// The raw side: a plain connection with the durability's
/// `synchronous_commit`, on a table shaped like revstore's documents, its
/// statements prepared once (as revstore-postgres prepares its own).
struct Raw {
    client: Client,
    table: String,
    insert: Statement,
    select: Statement,
    update: Statement,
    names: Statement,
}

impl Raw {
    fn connect(url: &str, namespace: &str, durability: Durability) -> Result<Raw, CliError> {
        let mut client = Client::connect(url, NoTls).map_err(|e| pg_error("connecting", e))?;
        let synchronous = match durability {
            Durability::Full => "on",
            Durability::Relaxed => "off",
        };
        let table = format!("\"{namespace}\".raw_documents");
        client
            .batch_execute(&format!(
                "SET synchronous_commit = {synchronous};
                 CREATE TABLE IF NOT EXISTS {table} (
                     collection text COLLATE \"C\" NOT NULL,
                     name text COLLATE \"C\" NOT NULL,
                     revision bigint NOT NULL,
                     body text,
                     PRIMARY KEY (collection, name))"
            ))
            .map_err(|e| pg_error("creating the raw table", e))?;
        let mut prepare = |sql: String| client.prepare(&sql).map_err(|e| pg_error("preparing", e));
        let insert = prepare(format!(
            "INSERT INTO {table} (collection, name, revision, body) VALUES ($1, $2, 1, $3)"
        ))?;
        let select = prepare(format!(
            "SELECT revision, body FROM {table} WHERE collection = $1 AND name = $2"
        ))?;
        let update = prepare(format!(
            "UPDATE {table} SET body = $1, revision = revision + 1 \
             WHERE collection = $2 AND name = $3 AND revision = $4"
        ))?;
        let names = prepare(format!(
            "SELECT name, revision FROM {table} WHERE collection = $1 ORDER BY name"
        ))?;
        Ok(Raw {
            client,
            table,
            insert,
            select,
            update,
            names,
        })
    }

    fn insert(&mut self, name: &str, body: &str) -> Result<(), CliError> {
        self.client
            .execute(&self.insert, &[&C, &name, &body])
            .map_err(|e| pg_error("INSERT", e))?;
        Ok(())
    }

    fn select(&mut self, name: &str) -> Result<(), CliError> {
        self.client
            .query_opt(&self.select, &[&C, &name])
            .map_err(|e| pg_error("SELECT", e))?;
        Ok(())
    }

    /// One conditional update on the revision this single writer knows.
    fn update(&mut self, name: &str, revision: i64, body: &str) -> Result<(), CliError> {
        let changed = self
            .client
            .execute(&self.update, &[&body, &C, &name, &revision])
            .map_err(|e| pg_error("UPDATE", e))?;
        if changed == 1 {
            Ok(())
        } else {
            Err(CliError::Usage(format!(
                "raw baseline: the UPDATE of {name} at revision {revision} changed no row"
            )))
        }
    }

    fn names(&mut self) -> Result<(), CliError> {
        self.client
            .query(&self.names, &[&LISTED])
            .map_err(|e| pg_error("SELECT names", e))?;
        Ok(())
    }
}

/// A fresh namespace, dropped with this.
struct Namespace {
    url: String,
    name: String,
}

impl Namespace {
    fn new(url: &str, durability: Durability) -> Namespace {
        let name = format!(
            "bench_{}_{}",
            std::process::id(),
            match durability {
                Durability::Full => "full",
                Durability::Relaxed => "relaxed",
            }
        );
        Namespace {
            url: url.to_owned(),
            name,
        }
    }

    fn open(&self, durability: Durability) -> Result<PostgresBackend, CliError> {
        Ok(PostgresBackend::open_with(
            &self.url,
            PostgresOptions {
                durability,
                namespace: self.name.clone(),
                ..PostgresOptions::default()
            },
        )?)
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        if let Ok(mut client) = Client::connect(&self.url, NoTls) {
            let _ =
                client.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.name));
        }
    }
}

/// Runs the group.
///
/// # Errors
/// The server's errors.
pub fn run(ctx: &mut Context<'_>) -> Result<Vec<Row>, CliError> {
    let Some(url) = std::env::var(URL_VARIABLE).ok().filter(|u| !u.is_empty()) else {
        ctx.say(&format!(
            "  skipped: {URL_VARIABLE} not set (scripts/postgres.sh starts a throwaway server)"
        ));
        return Ok(Vec::new());
    };
    let mut rows = Vec::new();
    for durability in [Durability::Full, Durability::Relaxed] {
        let namespace = Namespace::new(&url, durability);
        let found = ops(ctx, &namespace, durability)?
            .into_iter()
            .chain(contention(ctx, &namespace, durability)?);
        for row in found {
            ctx.done(&row);
            rows.push(row);
        }
    }
    Ok(rows)
}

fn durability_name(durability: Durability) -> &'static str {
    match durability {
        Durability::Full => "full",
        Durability::Relaxed => "relaxed",
    }
}

/// Operations per sample: the server's round trips cost about what a
/// relaxed local write does, and a full one waits for a WAL flush.
fn ops_per_sample(ctx: &Context<'_>, durability: Durability) -> usize {
    match durability {
        Durability::Full => ctx.plan.ops_full * 2,
        Durability::Relaxed => ctx.plan.ops_relaxed,
    }
}

fn ops(
    ctx: &mut Context<'_>,
    namespace: &Namespace,
    durability: Durability,
) -> Result<Vec<Row>, CliError> {
    let plan = ctx.plan.clone();
    let store = Store::open(namespace.open(durability)?);
    let raw = RefCell::new(Raw::connect(&namespace.url, &namespace.name, durability)?);
    let body = body_of_size(1 << 10);
    let text = body.to_string();
    store.create(C, "doc", body.clone())?;
    raw.borrow_mut().insert("doc", &text)?;
    for i in 0..LISTED_DOCS {
        let name = format!("l{i:03}");
        store.create(LISTED, &name, body.clone())?;
        let sql = format!(
            "INSERT INTO {} (collection, name, revision, body) VALUES ($1, $2, 1, $3)",
            raw.borrow().table
        );
        raw.borrow_mut()
            .client
            .execute(sql.as_str(), &[&LISTED, &name, &text])
            .map_err(|e| pg_error("INSERT", e))?;
    }
    let n = ops_per_sample(ctx, durability);
    let n_read = n * 4;
    let n_list = (n / 10).max(1);
    for i in 0..plan.samples * n {
        store.create(C, &format!("d{i}"), body.clone())?;
    }
    let raw_revision = RefCell::new(1i64);

    let mut raw_get = |_| raw.borrow_mut().select("doc");
    let mut get = |_| store.get(C, "doc").map(drop).map_err(CliError::from);
    let mut raw_insert = |i: usize| raw.borrow_mut().insert(&format!("c{i}"), &text);
    let mut create = |i: usize| {
        store
            .create(C, &format!("c{i}"), body.clone())
            .map(drop)
            .map_err(CliError::from)
    };
    let raw_update = |_| {
        let mut revision = raw_revision.borrow_mut();
        raw.borrow_mut().update("doc", *revision, &text)?;
        *revision += 1;
        Ok(())
    };
    let (mut raw_update1, mut raw_update2, mut raw_update3) = (raw_update, raw_update, raw_update);
    let mut patch = |i: usize| patch_counter(&store, C, "doc", i);
    let mut replace = |_| {
        store
            .replace(C, "doc", body.clone(), Precondition::Any)
            .map(drop)
            .map_err(CliError::from)
    };
    let mut delete = |i: usize| {
        store
            .delete(C, &format!("d{i}"), Precondition::Any)
            .map(drop)
            .map_err(CliError::from)
    };
    let mut raw_list = |_| raw.borrow_mut().names();
    let mut list = |_| store.list(LISTED).map(drop).map_err(CliError::from);
    let mut cases: Vec<Case<'_>> = vec![
        (n_read, &mut raw_get),
        (n_read, &mut get),
        (n, &mut raw_insert),
        (n, &mut create),
        (n, &mut raw_update1),
        (n, &mut patch),
        (n, &mut raw_update2),
        (n, &mut replace),
        (n, &mut raw_update3),
        (n, &mut delete),
        (n_list, &mut raw_list),
        (n_list, &mut list),
    ];
    let samples = interleaved(plan.samples, &mut cases)?;
    let cases = [
        ("get 1 KiB", "raw SELECT"),
        ("create 1 KiB", "raw INSERT"),
        ("patch 1 KiB", "raw UPDATE"),
        ("replace 1 KiB", "raw UPDATE"),
        ("delete", "raw UPDATE"),
        ("list 100 docs", "raw SELECT names"),
    ];
    Ok(cases
        .into_iter()
        .enumerate()
        .map(|(k, (case, base))| {
            Row::from_samples(
                GROUP,
                case,
                "postgres",
                durability_name(durability),
                Unit::OpsPerSec,
                &samples[2 * k + 1],
            )
            .against_samples(base, &samples[2 * k])
        })
        .collect())
}

/// Total throughput of `t` threads each running `per_thread` operations
/// of `op(thread, i)`, released together.
fn threads_rate(
    t: usize,
    per_thread: usize,
    op: &(dyn Fn(usize, usize) -> Result<(), CliError> + Sync),
) -> Result<f64, CliError> {
    let barrier = Barrier::new(t + 1);
    let started = std::thread::scope(|s| {
        let handles: Vec<_> = (0..t)
            .map(|w| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    (0..per_thread).try_for_each(|i| op(w, i))
                })
            })
            .collect();
        barrier.wait();
        let started = Instant::now();
        for handle in handles {
            handle
                .join()
                .map_err(|_| CliError::Usage("a bench thread panicked".to_owned()))??;
        }
        Ok::<_, CliError>(started)
    })?;
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    Ok((t * per_thread) as f64 / secs)
}

fn contention(
    ctx: &mut Context<'_>,
    namespace: &Namespace,
    durability: Durability,
) -> Result<Vec<Row>, CliError> {
    let plan = ctx.plan.clone();
    let per_thread = ops_per_sample(ctx, durability);
    let body = body_of_size(1 << 10);
    let text = body.to_string();
    let most = plan.writers.iter().copied().max().unwrap_or(1);
    let setup = Store::open(namespace.open(durability)?);
    setup.create(C, "hot", body.clone())?;
    let mut raws = Vec::new();
    for w in 0..most {
        setup.create(C, &format!("k{w}"), body.clone())?;
        let mut raw = Raw::connect(&namespace.url, &namespace.name, durability)?;
        raw.insert(&format!("r{w}"), &text)?;
        raws.push(std::sync::Mutex::new((raw, 1i64)));
    }
    let stores: Vec<Store> = (0..most)
        .map(|_| namespace.open(durability).map(Store::open))
        .collect::<Result<_, _>>()?;
    let mut rows = Vec::new();
    for &t in &plan.writers {
        let (mut own, mut hot, mut raw) =
            (Samples::default(), Samples::default(), Samples::default());
        for _ in 0..plan.contention_samples {
            raw.push_rate(threads_rate(t, per_thread, &|w, _| {
                let mut guard = raws[w]
                    .lock()
                    .map_err(|_| CliError::Usage("a bench thread panicked".to_owned()))?;
                let (raw, revision) = &mut *guard;
                raw.update(&format!("r{w}"), *revision, &text)?;
                *revision += 1;
                Ok(())
            })?);
            own.push_rate(threads_rate(t, per_thread, &|w, i| {
                stores[w]
                    .patch(
                        C,
                        &format!("k{w}"),
                        &Patch::Merge(json!({ "i": i })),
                        Precondition::Any,
                    )
                    .map(drop)
                    .map_err(CliError::from)
            })?);
            hot.push_rate(threads_rate(t, per_thread, &|w, i| {
                stores[w]
                    .patch(
                        C,
                        "hot",
                        &Patch::Merge(json!({ format!("w{w}"): i })),
                        Precondition::Any,
                    )
                    .map(drop)
                    .map_err(CliError::from)
            })?);
        }
        let threads = if t == 1 { "thread" } else { "threads" };
        let base = format!("raw UPDATE, {t} connections, own keys");
        for (case, samples) in [("own keys patch", &own), ("hot key patch", &hot)] {
            rows.push(
                Row::from_samples(
                    GROUP,
                    format!("{case}, {t} {threads}, own handles"),
                    "postgres",
                    durability_name(durability),
                    Unit::OpsPerSec,
                    samples,
                )
                .against_samples(base.clone(), &raw),
            );
        }
    }
    Ok(rows)
}
