//! Every statement the backend runs, written once per namespace.

/// One of the backend's statements; prepared once per connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Query {
    /// `(revision, body)` of a key.
    SelectRecord,
    /// `(revision, body IS NULL)` of a key.
    SelectCurrent,
    /// The first write of a key, with its change: does nothing when the key
    /// has a row; otherwise takes the next seq, records the change and
    /// queues the notification, and returns the seq.
    WriteFirst,
    /// A later write, with its change: does nothing unless the key is at
    /// the expected revision; otherwise as [`Query::WriteFirst`].
    WriteIfRevision,
    /// Drops the changes at or before a new horizon.
    PruneChanges,
    /// Moves the horizon forward, never back.
    RaiseHorizon,
    /// The live documents of a collection.
    SelectLive,
    /// The horizon and the oldest changes after a cursor, in one snapshot.
    SelectChanges,
    /// The newest seq handed out.
    SelectLastSeq,
    /// A shared advisory lock on a guard key until the transaction ends.
    LockShared,
    /// An exclusive advisory lock on a reserved key until the transaction
    /// ends.
    LockExclusive,
}

/// How many [`Query`] variants there are.
pub(crate) const QUERIES: usize = 11;

impl Query {
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// The statements of one namespace.
#[derive(Debug)]
pub(crate) struct Sql {
    texts: Vec<String>,
    /// The `LISTEN`/`NOTIFY` channel of the namespace.
    pub(crate) channel: String,
}

impl Sql {
    /// The statements for the (already quoted) namespace `ns`. `broken`
    /// makes the conditional update unconditional, for the test that
    /// proves the suites catch a backend that loses updates.
    pub(crate) fn new(namespace: &str, broken: bool) -> Sql {
        let ns = crate::schema::quote(namespace);
        let channel = format!("revstore:{namespace}");
        let condition = if broken {
            // Ignores the expected revision ($5) and writes on whatever
            // revision the key holds: a lost update.
            "revision = GREATEST(revision + 1, $2) \
             WHERE collection = $3 AND name = $4 AND $5::bigint >= 0"
        } else {
            "revision = $2 WHERE collection = $3 AND name = $4 AND revision = $5"
        };
        // The document row and then the counter row are locked until the
        // transaction ends: seqs are handed out in commit order, and the
        // change, its seq and the notification commit with the write. One
        // statement, so one round trip, inside the transaction.
        let record = |written: &str, revision: &str, tail: &str| {
            format!(
                "WITH written AS ({written} RETURNING 1),
                 next AS (
                    UPDATE {ns}.feed_state SET last_seq = last_seq + 1
                    WHERE EXISTS (SELECT 1 FROM written) RETURNING last_seq
                 ),
                 change AS (
                    INSERT INTO {ns}.changes (seq, collection, name, revision, kind, token)
                    SELECT last_seq, {tail}, {revision}, {kind}, {token} FROM next RETURNING seq
                 )
                 SELECT seq, pg_notify({channel}, seq::text) IS NULL FROM change",
                kind = if revision == "1" { "$4" } else { "$6" },
                token = if revision == "1" { "$5" } else { "$7" },
                channel = if revision == "1" { "$6" } else { "$8" },
            )
        };
        let write_first = record(
            &format!(
                "INSERT INTO {ns}.documents (collection, name, revision, body) \
                 VALUES ($1, $2, 1, $3) ON CONFLICT (collection, name) DO NOTHING"
            ),
            "1",
            "$1, $2",
        );
        let write_if_revision = record(
            &format!("UPDATE {ns}.documents SET body = $1, {condition}"),
            "$2",
            "$3, $4",
        );
        let texts: [(Query, String); QUERIES] = [
            (
                Query::SelectRecord,
                format!(
                    "SELECT revision, body FROM {ns}.documents WHERE collection = $1 AND name = $2"
                ),
            ),
            (
                Query::SelectCurrent,
                format!(
                    "SELECT revision, body IS NULL FROM {ns}.documents \
                     WHERE collection = $1 AND name = $2"
                ),
            ),
            (Query::WriteFirst, write_first),
            (Query::WriteIfRevision, write_if_revision),
            (
                Query::PruneChanges,
                format!("DELETE FROM {ns}.changes WHERE seq <= $1"),
            ),
            (
                Query::RaiseHorizon,
                format!("UPDATE {ns}.feed_state SET retained_after = GREATEST(retained_after, $1)"),
            ),
            (
                Query::SelectLive,
                format!(
                    "SELECT name, revision FROM {ns}.documents \
                     WHERE collection = $1 AND body IS NOT NULL ORDER BY name"
                ),
            ),
            (
                Query::SelectChanges,
                format!(
                    "SELECT f.retained_after, c.seq, c.collection, c.name, c.revision, c.kind
                     FROM {ns}.feed_state f
                     LEFT JOIN LATERAL (
                        SELECT seq, collection, name, revision, kind FROM {ns}.changes
                        WHERE seq > $1 ORDER BY seq LIMIT $2
                     ) c ON true
                     ORDER BY c.seq"
                ),
            ),
            (
                Query::SelectLastSeq,
                format!("SELECT last_seq FROM {ns}.feed_state"),
            ),
            (
                Query::LockShared,
                "SELECT pg_advisory_xact_lock_shared($1)".to_owned(),
            ),
            (
                Query::LockExclusive,
                "SELECT pg_advisory_xact_lock($1)".to_owned(),
            ),
        ];
        let mut ordered = vec![String::new(); QUERIES];
        for (query, text) in texts {
            ordered[query.index()] = text;
        }
        Sql {
            texts: ordered,
            channel,
        }
    }

    /// The text of a statement.
    pub(crate) fn text(&self, query: Query) -> &str {
        &self.texts[query.index()]
    }
}
