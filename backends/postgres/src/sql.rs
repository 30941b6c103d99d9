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
    /// [`Query::WriteFirst`], only if the guard key is still at the given
    /// revision (the guard's advisory lock is already held).
    WriteFirstGuarded,
    /// [`Query::WriteIfRevision`], only if the guard key is still at the
    /// given revision.
    WriteIfRevisionGuarded,
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
        // statement, so one round trip.
        //
        // Parameters: the first write takes $1 collection, $2 name, $3 body;
        // a later one $1 body, $2 new revision, $3 collection, $4 name, $5
        // expected revision; then come kind, token and channel, and for a
        // guarded write the guard's collection, name and revision.
        let record = |written: &str, first: bool| {
            let (collection, name, revision, next) = if first {
                ("$1", "$2", "1", 4)
            } else {
                ("$3", "$4", "$2", 6)
            };
            let (kind, token, channel) = (next, next + 1, next + 2);
            format!(
                "WITH written AS ({written} RETURNING 1),
                 next AS (
                    UPDATE {ns}.feed_state SET last_seq = last_seq + 1
                    WHERE EXISTS (SELECT 1 FROM written) RETURNING last_seq
                 ),
                 change AS (
                    INSERT INTO {ns}.changes (seq, collection, name, revision, kind, token)
                    SELECT last_seq, {collection}, {name}, {revision}, ${kind}, ${token}
                    FROM next RETURNING seq
                 )
                 SELECT seq, pg_notify(${channel}, seq::text) IS NULL FROM change"
            )
        };
        // The guard's revision, read by the write's own statement: its
        // snapshot is taken after the guard's lock was granted.
        let guard_holds = |first: u32| {
            format!(
                "COALESCE((SELECT revision FROM {ns}.documents \
                 WHERE collection = ${first} AND name = ${}), 0) = ${}",
                first + 1,
                first + 2
            )
        };
        let write_first = |guard: &str| {
            record(
                &format!(
                    "INSERT INTO {ns}.documents (collection, name, revision, body) \
                     SELECT $1, $2, 1, $3 WHERE {guard} \
                     ON CONFLICT (collection, name) DO NOTHING"
                ),
                true,
            )
        };
        let write_later = |guard: &str| {
            record(
                &format!("UPDATE {ns}.documents SET body = $1, {condition} AND {guard}"),
                false,
            )
        };
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
            (Query::WriteFirst, write_first("true")),
            (Query::WriteIfRevision, write_later("true")),
            (Query::WriteFirstGuarded, write_first(&guard_holds(7))),
            (Query::WriteIfRevisionGuarded, write_later(&guard_holds(9))),
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
