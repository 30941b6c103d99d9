//! The tables of a store, their format version, and creating them on open.

use postgres::Client;
use revstore::Error;

use crate::failure::Failure;

/// The format this crate writes, stored in `meta` under `format_version`.
pub(crate) const FORMAT_VERSION: i64 = 1;

/// The tables of format 1, in the order they are created.
pub(crate) const TABLES: [&str; 4] = ["meta", "documents", "changes", "feed_state"];

/// Longest namespace: channel names (`revstore:<namespace>`) and other
/// identifiers derived from it must stay within PostgreSQL's 63 bytes.
const MAX_NAMESPACE_LEN: usize = 48;

/// The advisory-lock class (the first of the two-`int4` key form, which
/// never collides with the one-`bigint` form the guards use) that
/// serialises creating and migrating a namespace.
const DDL_LOCK_CLASS: i32 = 0x7265_7673; // "revs"

/// Checks a namespace name: a lower-case SQL identifier that needs no
/// quoting, so that it reads the same in `psql` as here.
pub(crate) fn validate_namespace(namespace: &str) -> Result<(), String> {
    let mut chars = namespace.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if first_ok && rest_ok && namespace.len() <= MAX_NAMESPACE_LEN && !namespace.starts_with("pg_")
    {
        Ok(())
    } else {
        Err(format!(
            "the namespace {namespace:?} must be a lower-case identifier \
             ([a-z_][a-z0-9_]*, at most {MAX_NAMESPACE_LEN} bytes, not starting with pg_)"
        ))
    }
}

/// Format 1, inside the namespace (a PostgreSQL schema):
/// - `documents`: one row per key ever written; a `NULL` body is a
///   tombstone, which keeps the revision so that a re-create continues the
///   sequence. Bodies are JSON *text*, not `jsonb`, which would reorder
///   their keys. Names compare and sort byte by byte (`COLLATE "C"`), as on
///   every other backend.
/// - `changes`: the change feed, one row per committed write, with the
///   random token of the commit that wrote it (to learn the outcome of a
///   commit whose connection dropped).
/// - `feed_state`: exactly one row: the last seq handed out (the counter
///   every commit increments last, which orders seqs by commit) and the
///   feed's retention horizon.
/// - `meta`: the format version.
fn create_tables(ns: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {ns}.meta (
            key text PRIMARY KEY,
            value bigint NOT NULL
        );
        CREATE TABLE IF NOT EXISTS {ns}.documents (
            collection text COLLATE \"C\" NOT NULL,
            name text COLLATE \"C\" NOT NULL,
            revision bigint NOT NULL CHECK (revision >= 1),
            body text,
            PRIMARY KEY (collection, name)
        );
        CREATE TABLE IF NOT EXISTS {ns}.changes (
            seq bigint PRIMARY KEY,
            collection text COLLATE \"C\" NOT NULL,
            name text COLLATE \"C\" NOT NULL,
            revision bigint NOT NULL,
            kind text NOT NULL,
            token bytea NOT NULL
        );
        CREATE TABLE IF NOT EXISTS {ns}.feed_state (
            one boolean PRIMARY KEY DEFAULT true CHECK (one),
            last_seq bigint NOT NULL,
            retained_after bigint NOT NULL
        );
        INSERT INTO {ns}.feed_state (one, last_seq, retained_after) VALUES (true, 0, 0)
            ON CONFLICT DO NOTHING;
        INSERT INTO {ns}.meta (key, value) VALUES ('format_version', {FORMAT_VERSION})
            ON CONFLICT DO NOTHING;"
    )
}

/// Creates the namespace and its tables when missing, or checks their
/// format. Idempotent, and safe when many processes open a fresh database
/// at once: creation runs in one transaction under an advisory lock, and
/// re-checks the format once it holds it.
pub(crate) fn prepare(client: &mut Client, namespace: &str) -> Result<(), Failure> {
    if check_version(client, namespace)? == Some(FORMAT_VERSION) {
        return Ok(());
    }
    let mut tx = client.transaction()?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext($2))",
        &[&DDL_LOCK_CLASS, &namespace],
    )?;
    match check_version(&mut tx, namespace)? {
        None => {
            let ns = quote(namespace);
            tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {ns}"))?;
            tx.batch_execute(&create_tables(&ns))?;
        }
        // Another opener created it while this one waited for the lock.
        Some(_) => return Ok(()),
    }
    tx.commit()?;
    Ok(())
}

/// The namespace's format version, or `None` when it has no tables yet.
///
/// # Errors
/// [`Error::InvalidConfig`] naming the namespace when its tables were
/// written by a newer revstore or belong to some other application;
/// [`Error::Corrupt`] when a table of the format is missing.
fn check_version(
    client: &mut impl postgres::GenericClient,
    namespace: &str,
) -> Result<Option<i64>, Failure> {
    let tables: Vec<String> = client
        .query(
            "SELECT tablename::text FROM pg_catalog.pg_tables WHERE schemaname = $1",
            &[&namespace],
        )?
        .iter()
        .map(|row| row.try_get::<_, String>(0))
        .collect::<Result<_, _>>()?;
    let refuse = |reason: String| {
        Failure::Final(Error::InvalidConfig {
            input: format!("namespace {namespace}"),
            reason,
        })
    };
    if tables.is_empty() {
        return Ok(None);
    }
    if !tables.iter().any(|t| t == "meta") {
        return Err(refuse(format!(
            "the PostgreSQL schema {namespace:?} has tables ({}) but no revstore \
             format version; it belongs to another application (choose another \
             namespace)",
            tables.join(", ")
        )));
    }
    let version = client
        .query_opt(
            &format!(
                "SELECT value FROM {}.meta WHERE key = 'format_version'",
                quote(namespace)
            ),
            &[],
        )
        .map_err(|e| match e.code() {
            // A `meta` table without revstore's columns.
            Some(code) if code.code().starts_with("42") => refuse(format!(
                "the PostgreSQL schema {namespace:?} has a meta table that is not \
                 revstore's ({e}); it belongs to another application"
            )),
            _ => Failure::Pg(e),
        })?;
    let version = match version {
        None => {
            return Err(refuse(format!(
                "the PostgreSQL schema {namespace:?} has a meta table without a \
                 revstore format version; it belongs to another application"
            )))
        }
        Some(row) => row.try_get::<_, i64>(0).map_err(|e| {
            refuse(format!(
                "the format version in {namespace}.meta is not an integer: {e}"
            ))
        })?,
    };
    match version {
        FORMAT_VERSION => {
            let missing: Vec<&str> = TABLES
                .iter()
                .copied()
                .filter(|table| !tables.iter().any(|t| t == table))
                .collect();
            if missing.is_empty() {
                Ok(Some(version))
            } else {
                Err(Failure::Final(Error::Corrupt {
                    location: format!("namespace {namespace}"),
                    reason: format!(
                        "revstore format {version}, but the table(s) {} are missing",
                        missing.join(", ")
                    ),
                }))
            }
        }
        newer if newer > FORMAT_VERSION => Err(refuse(format!(
            "the store has revstore format version {newer}, newer than the version \
             {FORMAT_VERSION} this revstore-postgres understands; upgrade revstore"
        ))),
        unknown => Err(refuse(format!(
            "the store has an unknown revstore format version {unknown}"
        ))),
    }
}

/// A namespace as a quoted identifier (validated names need no escaping;
/// quoting keeps them exactly as written).
pub(crate) fn quote(namespace: &str) -> String {
    format!("\"{}\"", namespace.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_plain_lower_case_identifiers() {
        for good in ["revstore", "_x", "tenant_42", &"a".repeat(48)] {
            assert!(validate_namespace(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Revstore",
            "9lives",
            "a-b",
            "a b",
            "a\"b",
            "pg_catalog",
            &"a".repeat(49),
        ] {
            assert!(validate_namespace(bad).is_err(), "{bad:?}");
        }
    }
}
