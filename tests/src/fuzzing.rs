//! The op-sequence fuzz case: arbitrary bytes decode to a sequence of
//! operations run on the memory, YAML and SQLite backends side by side,
//! which must agree after every step — results, error kinds and the whole
//! stored state. Shared by the cargo-fuzz target (`fuzz/fuzz_targets/ops.rs`)
//! and a stable test that replays the committed corpus.

use revstore::testkit::TestBackend;
use revstore::{Durability, Patch, Precondition, Store};
use revstore_sqlite::testkit::SqliteTestBackend;
use revstore_yaml::testkit::YamlTestBackend;
use serde_json::{json, Value};

/// Most operations one case runs (each touches three stores).
const MAX_OPS: usize = 48;
const COLLECTIONS: [&str; 2] = ["c", "d"];
const NAMES: [&str; 3] = ["a", "b", "c.1"];
const FIELDS: [&str; 4] = ["x", "y", "z", "status"];

/// A byte reader that yields zeros once the input is used up, so any input
/// decodes to some case.
struct Bytes<'a> {
    data: &'a [u8],
    at: usize,
}

impl Bytes<'_> {
    fn next(&mut self) -> u8 {
        let b = self.data.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        b
    }

    fn left(&self) -> bool {
        self.at < self.data.len()
    }

    fn pick<'t, T>(&mut self, items: &'t [T]) -> &'t T {
        &items[usize::from(self.next()) % items.len()]
    }

    fn value(&mut self) -> Value {
        match self.next() % 8 {
            0 => Value::Null,
            1 => json!(self.next() % 2 == 0),
            2 => json!(i64::from(self.next()) - 100),
            3 => json!(f64::from(self.next()) / 7.0),
            4 => json!(["s", self.next()]),
            5 => json!({"k": self.next()}),
            6 => json!(*self.pick(&["draft", "active", "retired", ""])),
            _ => json!(format!("v{}", self.next())),
        }
    }

    fn body(&mut self) -> Value {
        let mut body = serde_json::Map::new();
        for _ in 0..self.next() % 4 {
            let field = *self.pick(&FIELDS);
            let value = self.value();
            body.insert(field.to_owned(), value);
        }
        Value::Object(body)
    }

    fn precondition(&mut self) -> Precondition {
        match self.next() % 4 {
            0 | 1 => Precondition::Any,
            2 => Precondition::Absent,
            _ => Precondition::Revision(u64::from(self.next() % 6)),
        }
    }
}

/// One decoded operation.
#[derive(Debug, Clone)]
enum Op {
    Get(&'static str, &'static str),
    Record(&'static str, &'static str),
    Replace(&'static str, &'static str, Value, Precondition),
    Patch(&'static str, &'static str, Patch, Precondition),
    Delete(&'static str, &'static str, Precondition),
    List(&'static str),
    SetSchema(&'static str, Value),
    DeleteSchema(&'static str),
    Reopen,
}

fn decode(data: &[u8]) -> Vec<Op> {
    let mut bytes = Bytes { data, at: 0 };
    let mut ops = Vec::new();
    while bytes.left() && ops.len() < MAX_OPS {
        let c = *bytes.pick(&COLLECTIONS);
        let n = *bytes.pick(&NAMES);
        let op = match bytes.next() % 12 {
            0 => Op::Get(c, n),
            1 => Op::Record(c, n),
            2 | 3 => {
                let body = bytes.body();
                Op::Replace(c, n, body, bytes.precondition())
            }
            4 | 5 => {
                let patch = Patch::Merge(bytes.body());
                Op::Patch(c, n, patch, bytes.precondition())
            }
            6 => {
                let field = *bytes.pick(&FIELDS);
                let value = bytes.value();
                let op = *bytes.pick(&["add", "replace", "remove", "test"]);
                let patch =
                    Patch::Json(json!([{"op": op, "path": format!("/{field}"), "value": value}]));
                Op::Patch(c, n, patch, bytes.precondition())
            }
            7 => Op::Delete(c, n, bytes.precondition()),
            8 => Op::List(c),
            9 => {
                let values = *bytes.pick(&[&["draft", "active"][..], &["active"][..]]);
                let undeclared = *bytes.pick(&["reject", "allow"]);
                Op::SetSchema(
                    c,
                    json!({"undeclared": undeclared, "attributes": [
                        {"name": "status", "type": "enum", "values": values},
                        {"name": "x", "type": "integer", "min": -50}
                    ]}),
                )
            }
            10 => Op::DeleteSchema(c),
            _ => Op::Reopen,
        };
        ops.push(op);
    }
    ops
}

/// The comparable outcome of one operation: a value or an error kind.
fn run(store: &Store, op: &Op) -> Result<Value, &'static str> {
    let kind = |e: revstore::Error| e.kind();
    match op {
        Op::Get(c, n) => store
            .get(c, n)
            .map(|d| json!(d.as_ref().map(|d| (d.revision, &*d.body))))
            .map_err(kind),
        Op::Record(c, n) => store
            .get_record(c, n)
            .map(|r| json!(r.as_ref().map(|r| (r.revision, r.body.as_deref()))))
            .map_err(kind),
        Op::Replace(c, n, body, pre) => store
            .replace(c, n, body.clone(), *pre)
            .map(|d| json!((d.revision, &*d.body)))
            .map_err(kind),
        Op::Patch(c, n, patch, pre) => store
            .patch(c, n, patch, *pre)
            .map(|d| json!((d.revision, &*d.body)))
            .map_err(kind),
        Op::Delete(c, n, pre) => store.delete(c, n, *pre).map(|r| json!(r)).map_err(kind),
        Op::List(c) => store
            .list(c)
            .map(|l| {
                json!(l
                    .into_iter()
                    .map(|e| (e.name, e.revision))
                    .collect::<Vec<_>>())
            })
            .map_err(kind),
        Op::SetSchema(c, schema) => store
            .set_schema(c, schema.clone(), Precondition::Any)
            .map(|d| json!(d.revision))
            .map_err(kind),
        Op::DeleteSchema(c) => store
            .delete_schema(c, Precondition::Any)
            .map(|r| json!(r))
            .map_err(kind),
        Op::Reopen => Ok(Value::Null),
    }
}

/// Everything a store holds, in a comparable form (bodies with key order).
fn state(store: &Store) -> Value {
    let mut out = Vec::new();
    for c in COLLECTIONS {
        for n in NAMES {
            let record = store.get_record(c, n).map_err(|e| e.kind());
            let record = record.map(|r| {
                r.map(|r| {
                    (
                        r.revision,
                        r.body
                            .map(|b| serde_json::to_string(&*b).unwrap_or_default()),
                    )
                })
            });
            out.push(json!([c, n, record.map_err(|k| k.to_owned())]));
        }
        out.push(json!(store
            .get_schema(c)
            .map(|d| d.map(|d| d.revision))
            .map_err(|e| e.kind())));
        out.push(json!(store
            .list(c)
            .map(|l| l
                .into_iter()
                .map(|e| (e.name, e.revision))
                .collect::<Vec<_>>())
            .map_err(|e| e.kind())));
    }
    let feed: Vec<Value> = store
        .changes_since(0, usize::MAX)
        .map(|changes| {
            changes
                .into_iter()
                .map(|c| json!([c.key.to_string(), c.revision, c.kind.as_str()]))
                .collect()
        })
        .unwrap_or_default();
    json!({"documents": out, "feed": feed})
}

/// Runs one case; panics naming the step where the backends disagree.
pub fn ops_case(data: &[u8]) {
    let ops = decode(data);
    let backends: [Box<dyn TestBackend>; 3] = [
        Box::new(revstore::testkit::MemoryTestBackend),
        Box::new(YamlTestBackend {
            durability: Durability::Relaxed,
        }),
        Box::new(SqliteTestBackend {
            durability: Durability::Relaxed,
        }),
    ];
    let locations: Vec<_> = backends.iter().map(|b| b.fresh()).collect();
    let mut stores: Vec<Store> = locations.iter().map(|l| l.open()).collect();
    for (step, op) in ops.iter().enumerate() {
        if let Op::Reopen = op {
            stores = locations.iter().map(|l| l.open()).collect();
            continue;
        }
        let results: Vec<_> = stores.iter().map(|s| run(s, op)).collect();
        for (backend, result) in backends.iter().zip(&results).skip(1) {
            assert_eq!(
                result,
                &results[0],
                "step {step} {op:?}: {} disagrees with memory",
                backend.name()
            );
        }
        let states: Vec<Value> = stores.iter().map(state).collect();
        for (backend, s) in backends.iter().zip(&states).skip(1) {
            assert_eq!(
                s,
                &states[0],
                "after step {step} {op:?}: {}'s state differs from memory's",
                backend.name()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/ops")
    }

    #[test]
    fn the_committed_corpus_replays() {
        let mut ran = 0;
        for entry in std::fs::read_dir(corpus()).unwrap() {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            if std::panic::catch_unwind(|| ops_case(&data)).is_err() {
                panic!("corpus file {} fails", path.display());
            }
            ran += 1;
        }
        assert!(ran >= 10, "the corpus has {ran} files");
    }

    #[test]
    fn random_cases_agree() {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let cases = 60 * revstore::testkit::soak_factor() as usize;
        for case in 0..cases {
            let data: Vec<u8> = (0..(state % 200) as usize + 20)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            if std::panic::catch_unwind(|| ops_case(&data)).is_err() {
                panic!("random case {case} fails; input: {data:?}");
            }
        }
    }

    #[test]
    fn decoding_covers_every_operation() {
        let data: Vec<u8> = (0..=255u8).cycle().take(2000).collect();
        assert_eq!(decode(&data).len(), MAX_OPS);
        let kinds: std::collections::HashSet<String> = (0..12u8)
            .map(|k| {
                let op = &decode(&[0, 0, k, 1, 1, 1, 1, 1])[0];
                format!("{op:?}").split('(').next().unwrap_or("").to_owned()
            })
            .collect();
        assert_eq!(kinds.len(), 9, "{kinds:?}");
    }
}
