//! The file format — and the only module that touches `serde_yaml`, so a
//! maintained fork can replace it here and nowhere else.
//!
//! Decoding never trusts `serde_yaml`'s own notion of a value: it drives the
//! parser with visitors that accept exactly the JSON model (string keys,
//! finite numbers, no tags, no duplicate keys) and that charge every node
//! and string byte to a budget proportional to the file's size, so an alias
//! bomb cannot expand into more memory than a few times the file itself.
//! Nesting is bounded by `serde_yaml`'s recursion limit (128 collections).

use std::cell::Cell;
use std::fmt;
use std::path::Path;

use revstore::{Body, Error, Record, Result};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Serialize;
use serde_json::{Number, Value};

/// Deepest body this backend writes, counting the body's own mapping as 1;
/// a deeper one is refused with [`Error::InvalidBody`].
///
/// `serde_yaml` refuses to read more than 128 nested collections and the
/// envelope takes one; staying well below keeps every file this crate writes
/// readable, even after a hand edit wraps a value in a few more levels.
pub const MAX_DEPTH: usize = 100;

/// How many bytes of a file [`read_header`] needs: `revision: <u64>\n` and
/// the start of the next line.
pub const HEADER_BYTES: usize = 64;

/// Encodes a record: `revision: N` first, then `body:` (a live document) or
/// `deleted: true` (a tombstone).
///
/// # Errors
/// A reason when the body is nested deeper than [`MAX_DEPTH`] (the file
/// could not be read back) or the YAML emitter fails.
pub fn encode(revision: u64, body: Option<&Body>) -> Result<Vec<u8>, String> {
    #[derive(Serialize)]
    struct Live<'a> {
        revision: u64,
        body: &'a Body,
    }
    #[derive(Serialize)]
    struct Tombstone {
        revision: u64,
        deleted: bool,
    }
    let text = match body {
        Some(body) => {
            if deeper_than(body, MAX_DEPTH) {
                return Err(format!(
                    "the body is nested deeper than {MAX_DEPTH} levels, \
                     more than a YAML file of this backend can hold"
                ));
            }
            serde_yaml::to_string(&Live { revision, body })
        }
        None => serde_yaml::to_string(&Tombstone {
            revision,
            deleted: true,
        }),
    };
    text.map(String::into_bytes)
        .map_err(|e| format!("YAML encoding failed: {e}"))
}

/// Decodes a whole file.
///
/// # Errors
/// [`Error::Corrupt`] naming `path` for anything that is not a record of
/// this format: not UTF-8, not YAML, empty, a missing or non-positive
/// revision, a live record without a mapping body, non-string keys,
/// duplicate keys, non-finite or out-of-range numbers, YAML tags, unknown
/// envelope keys, or aliases that expand past the size budget.
pub fn decode(bytes: &[u8], path: &Path) -> Result<Record> {
    let corrupt = |reason: String| Error::Corrupt {
        location: path.display().to_string(),
        reason,
    };
    let text = std::str::from_utf8(bytes)
        .map_err(|e| corrupt(format!("the file is not valid UTF-8: {e}")))?;
    if text.trim().is_empty() {
        return Err(corrupt("the file is empty".to_owned()));
    }
    let budget = Budget::for_input(bytes.len());
    RecordSeed { budget: &budget }
        .deserialize(serde_yaml::Deserializer::from_str(text))
        .map_err(|e| corrupt(e.to_string()))
}

/// What the first line(s) of a file say, read without parsing the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The record's revision.
    pub revision: u64,
    /// Whether it is a live document (not a tombstone).
    pub live: bool,
}

/// Reads the header from the first bytes of a file (`whole`: they are the
/// entire file). `None` when they are not in exactly the shape [`encode`]
/// writes — for example after a hand edit — and the caller must decode the
/// whole file instead. A `Some` never contradicts what [`decode`] would say
/// about revision and liveness, though the body below a well-formed header
/// is not checked.
pub fn read_header(head: &[u8], whole: bool) -> Option<Header> {
    let rest = head.strip_prefix(b"revision: ")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let (number, rest) = rest.split_at(digits);
    if number.first() == Some(&b'0') {
        return None;
    }
    let revision: u64 = std::str::from_utf8(number).ok()?.parse().ok()?;
    let rest = rest.strip_prefix(b"\n")?;
    // A tombstone is tiny, so `whole` proves nothing follows the marker;
    // a live body must start on an indented next line or be `{}` and end.
    let live = if rest == b"deleted: true\n" && whole {
        false
    } else if rest.starts_with(b"body:\n  ") || (rest == b"body: {}\n" && whole) {
        true
    } else {
        return None;
    };
    Some(Header { revision, live })
}

/// Whether a body nests containers deeper than `max` (the body being 1),
/// checked without recursion.
fn deeper_than(body: &Body, max: usize) -> bool {
    let mut stack: Vec<(&Value, usize)> = body.values().map(|v| (v, 1)).collect();
    while let Some((value, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Object(map) => Box::new(map.values()),
            Value::Array(items) => Box::new(items.iter()),
            _ => continue,
        };
        if depth + 1 > max {
            return true;
        }
        stack.extend(children.map(|child| (child, depth + 1)));
    }
    false
}

/// Units of work (one per value, one per string byte) a decode may spend.
///
/// Without aliases a YAML file yields at most about 1.5 units per input byte
/// (escapes such as `\L` grow from two bytes to three), so four per byte
/// plus some slack admits every honest file, including modest anchor reuse,
/// while an alias bomb is cut off at a small multiple of the file size.
struct Budget {
    left: Cell<usize>,
    total: usize,
}

impl Budget {
    fn for_input(len: usize) -> Budget {
        let total = len.saturating_mul(4).saturating_add(64 * 1024);
        Budget {
            left: Cell::new(total),
            total,
        }
    }

    fn charge<E: de::Error>(&self, units: usize) -> Result<(), E> {
        match self.left.get().checked_sub(units) {
            Some(left) => {
                self.left.set(left);
                Ok(())
            }
            None => Err(E::custom(format_args!(
                "the document expands to more than {} values and string bytes \
                 (YAML aliases repeating large parts?)",
                self.total
            ))),
        }
    }
}

struct RecordSeed<'b> {
    budget: &'b Budget,
}

impl<'de> DeserializeSeed<'de> for RecordSeed<'_> {
    type Value = Record;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Record, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RecordSeed<'_> {
    type Value = Record;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping with `revision` and `body` (or `deleted: true`)")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Record, E> {
        Err(E::custom(
            "the file holds no record (an empty or null document)",
        ))
    }

    fn visit_none<E: de::Error>(self) -> Result<Record, E> {
        self.visit_unit()
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, _: A) -> Result<Record, A::Error> {
        Err(tag_error())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Record, A::Error> {
        let mut revision: Option<u64> = None;
        let mut deleted: Option<bool> = None;
        let mut body: Option<Value> = None;
        while let Some(key) = map.next_key_seed(KeySeed {
            budget: self.budget,
        })? {
            let duplicate = match key.as_str() {
                "revision" => revision
                    .replace(map.next_value_seed(RevisionSeed)?)
                    .is_some(),
                "deleted" => deleted.replace(map.next_value_seed(BoolSeed)?).is_some(),
                "body" => body
                    .replace(map.next_value_seed(ValueSeed {
                        budget: self.budget,
                    })?)
                    .is_some(),
                other => {
                    return Err(de::Error::custom(format_args!(
                        "unknown key {other:?} (a record has `revision`, `body` and `deleted`)"
                    )))
                }
            };
            if duplicate {
                return Err(de::Error::custom(format_args!("duplicate key {key:?}")));
            }
        }
        let revision =
            revision.ok_or_else(|| de::Error::custom("the `revision` key is missing"))?;
        match (deleted.unwrap_or(false), body) {
            (true, None) => Ok(Record {
                revision,
                body: None,
            }),
            (true, Some(_)) => Err(de::Error::custom(
                "a record with `deleted: true` must not have a `body`",
            )),
            (false, None) => Err(de::Error::custom(
                "the `body` key is missing (and the record is not `deleted: true`)",
            )),
            (false, Some(Value::Object(body))) => Ok(Record {
                revision,
                body: Some(body),
            }),
            (false, Some(other)) => Err(de::Error::custom(format_args!(
                "`body` must be a mapping, not {}",
                revstore::value_kind(&other)
            ))),
        }
    }
}

/// A revision: a plain integer >= 1, nothing that merely converts to one.
struct RevisionSeed;

impl<'de> DeserializeSeed<'de> for RevisionSeed {
    type Value = u64;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<u64, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RevisionSeed {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("`revision` to be an integer >= 1")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        if v == 0 {
            return Err(E::custom("`revision` must be >= 1, found 0"));
        }
        Ok(v)
    }
}

/// `deleted`: a plain boolean.
struct BoolSeed;

impl<'de> DeserializeSeed<'de> for BoolSeed {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for BoolSeed {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("`deleted` to be `true` or `false`")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
        Ok(v)
    }
}

/// A mapping key: only a string scalar (`1:` or `null:` are refused rather
/// than silently turned into the strings "1" and "null").
struct KeySeed<'b> {
    budget: &'b Budget,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string mapping key (quote keys such as \"1\" or \"true\")")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        self.budget.charge(1 + v.len())?;
        Ok(v.to_owned())
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, _: A) -> Result<String, A::Error> {
        Err(tag_error())
    }
}

/// Any JSON-model value.
struct ValueSeed<'b> {
    budget: &'b Budget,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON-model value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        self.budget.charge(1)?;
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        self.budget.charge(1)?;
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        self.budget.charge(1)?;
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        self.budget.charge(1)?;
        Ok(Value::Number(v.into()))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        match i64::try_from(v) {
            Ok(v) => self.visit_i64(v),
            Err(_) => Err(E::custom(format_args!(
                "the integer {v} is out of range (i64/u64)"
            ))),
        }
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => Err(E::custom(format_args!(
                "the integer {v} is out of range (i64/u64)"
            ))),
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        self.budget.charge(1)?;
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom(format_args!("the number {v} is not finite")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.budget.charge(1 + v.len())?;
        Ok(Value::String(v.to_owned()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.budget.charge(1)?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(ValueSeed {
            budget: self.budget,
        })? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.budget.charge(1)?;
        let mut body = Body::new();
        while let Some(key) = map.next_key_seed(KeySeed {
            budget: self.budget,
        })? {
            let value = map.next_value_seed(ValueSeed {
                budget: self.budget,
            })?;
            if body.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate key {key:?}")));
            }
            body.insert(key, value);
        }
        Ok(Value::Object(body))
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, _: A) -> Result<Value, A::Error> {
        Err(tag_error())
    }
}

fn tag_error<E: de::Error>() -> E {
    E::custom("YAML tags (`!name`) are not part of the format")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn path() -> &'static Path {
        Path::new("/store/models/orders.yaml")
    }

    fn body(value: Value) -> Body {
        match value {
            Value::Object(map) => map,
            other => panic!("not a mapping: {other}"),
        }
    }

    fn round_trip(b: &Body) -> Record {
        let bytes = encode(7, Some(b)).unwrap();
        decode(&bytes, path()).unwrap_or_else(|e| {
            panic!("{e}\n---\n{}", String::from_utf8_lossy(&bytes));
        })
    }

    fn corrupt_reason(text: &[u8]) -> String {
        match decode(text, path()) {
            Err(Error::Corrupt { location, reason }) => {
                assert_eq!(location, path().display().to_string());
                reason
            }
            other => panic!(
                "expected Corrupt for {:?}, got {other:?}",
                String::from_utf8_lossy(text)
            ),
        }
    }

    #[test]
    fn live_record_format_is_the_documented_one() {
        let b = body(json!({"description": "All orders", "joins": ["customers"]}));
        let text = String::from_utf8(encode(3, Some(&b)).unwrap()).unwrap();
        assert_eq!(
            text,
            "revision: 3\nbody:\n  description: All orders\n  joins:\n  - customers\n"
        );
        assert_eq!(
            String::from_utf8(encode(4, None).unwrap()).unwrap(),
            "revision: 4\ndeleted: true\n"
        );
        assert_eq!(
            String::from_utf8(encode(1, Some(&Body::new())).unwrap()).unwrap(),
            "revision: 1\nbody: {}\n"
        );
    }

    #[test]
    fn every_value_kind_round_trips_with_key_order() {
        let b = body(json!({
            "zebra": 1,
            "apple": {"z": null, "a": true, "m": false},
            "u64_max": u64::MAX,
            "i64_min": i64::MIN,
            "negative": -42,
            "zero": 0,
            "half": 0.5,
            "negative_float": -1.25,
            "integral_float": 3.0,
            "huge": 1e300,
            "tiny": 5e-324,
            "negative_zero": -0.0,
            "list": [1, "two", 3.5, null, [], {}, [[["deep"]]]],
            "empty_map": {},
            "empty_list": [],
            "empty_string": "",
        }));
        let record = round_trip(&b);
        assert_eq!(record.revision, 7);
        let decoded = record.body.unwrap();
        assert_eq!(decoded, b);
        let keys: Vec<_> = decoded.keys().cloned().collect();
        let original: Vec<_> = b.keys().cloned().collect();
        assert_eq!(keys, original);
        assert!(decoded["u64_max"].is_u64());
        assert!(decoded["i64_min"].is_i64());
        assert!(decoded["integral_float"].is_f64());
    }

    #[test]
    fn strings_that_look_like_other_things_round_trip() {
        let tricky = [
            "1",
            "-1",
            "1.5",
            "1e3",
            "0x10",
            "0o7",
            "010",
            "+1",
            ".inf",
            "-.inf",
            ".nan",
            "true",
            "false",
            "True",
            "yes",
            "no",
            "on",
            "off",
            "y",
            "n",
            "null",
            "Null",
            "~",
            "",
            " ",
            "-",
            "- a",
            "a: b",
            "a:b",
            "#x",
            "x #y",
            " lead",
            "trail ",
            "multi\nline",
            "trailing newline\n",
            "\n",
            "\r\n",
            "cr\r",
            "\t",
            "tab\tin",
            "\u{0}",
            "\u{7f}",
            "\u{85}",
            "\u{a0}",
            "\u{2028}",
            "\u{feff}",
            "é",
            "😀",
            "'",
            "\"",
            "\\",
            "!tag",
            "!!str",
            "&anchor",
            "*alias",
            "<<",
            "?",
            ":",
            "[",
            "]",
            "{",
            "}",
            ",",
            "|",
            ">",
            "%",
            "@",
            "`",
            "---",
            "...",
            "--- x",
            "2001-12-14",
            "12:30:00",
            "=",
        ];
        let mut b = Body::new();
        for (i, s) in tricky.iter().enumerate() {
            b.insert((*s).to_owned(), Value::String(format!("{i}")));
            b.insert(format!("value {i}"), Value::String((*s).to_owned()));
            b.insert(format!("list {i}"), json!([s, {*s: s}]));
        }
        assert_eq!(round_trip(&b).body.unwrap(), b);
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<u64>().prop_map(|n| json!(n)),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| json!(f)),
            any::<String>().prop_map(Value::String),
            "[ -~\\n\\t]{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((any::<String>(), inner), 0..6)
                    .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn arbitrary_bodies_round_trip(pairs in prop::collection::vec((any::<String>(), arb_value()), 0..8)) {
            let b: Body = pairs.into_iter().collect();
            let bytes = encode(1, Some(&b)).unwrap();
            let decoded = decode(&bytes, path());
            prop_assert!(decoded.is_ok(), "{decoded:?}\n{}", String::from_utf8_lossy(&bytes));
            prop_assert_eq!(decoded.unwrap().body, Some(b));
        }
    }

    #[test]
    fn tombstones_round_trip() {
        let bytes = encode(9, None).unwrap();
        assert_eq!(
            decode(&bytes, path()).unwrap(),
            Record {
                revision: 9,
                body: None
            }
        );
    }

    #[test]
    fn hand_edited_files_decode() {
        let text = "# edited by hand\nbody: {b: 1, a: [x, 'y']}\nrevision: 2\n";
        let record = decode(text.as_bytes(), path()).unwrap();
        assert_eq!(record.revision, 2);
        assert_eq!(
            Value::Object(record.body.unwrap()),
            json!({"b": 1, "a": ["x", "y"]})
        );
        let text = "revision: 5\ndeleted: false\nbody:\n  defaults: &d {x: 1}\n  copy: *d\n";
        let record = decode(text.as_bytes(), path()).unwrap();
        assert_eq!(
            Value::Object(record.body.unwrap()),
            json!({"defaults": {"x": 1}, "copy": {"x": 1}})
        );
        // Core-schema tags resolve as YAML defines them.
        let record = decode(b"revision: 1\nbody:\n  a: !!str 123\n", path()).unwrap();
        assert_eq!(record.body.unwrap()["a"], json!("123"));
    }

    #[test]
    fn corrupt_files_are_refused_naming_the_file() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "empty"),
            (b"  \n\n", "empty"),
            (b"# only a comment\n", "no record"),
            (b"null\n", "no record"),
            (b"revision: 1\nbody:\n  a: \xff\n", "UTF-8"),
            (b"revision: 1\nbody: {a: [1, 2\n", ""),
            (b"revision: 1\n\tbody: x\n", ""),
            (b"just a string\n", "mapping"),
            (b"- revision: 1\n", "mapping"),
            (b"body:\n  a: 1\n", "`revision` key is missing"),
            (b"revision: 0\nbody: {}\n", ">= 1"),
            (b"revision: -1\nbody: {}\n", "integer >= 1"),
            (b"revision: 1.0\nbody: {}\n", "integer >= 1"),
            (b"revision: '3'\nbody: {}\n", "integer >= 1"),
            (b"revision: three\nbody: {}\n", "integer >= 1"),
            (
                b"revision: 18446744073709551616\nbody: {}\n",
                "integer >= 1",
            ),
            (b"revision:\nbody: {}\n", "integer >= 1"),
            (b"revision: 1\n", "`body` key is missing"),
            (b"revision: 1\ndeleted: false\n", "`body` key is missing"),
            (b"revision: 1\ndeleted: yes\n", "`true` or `false`"),
            (
                b"revision: 1\ndeleted: true\nbody: {}\n",
                "must not have a `body`",
            ),
            (
                b"revision: 1\nbody: [1]\n",
                "must be a mapping, not a sequence",
            ),
            (
                b"revision: 1\nbody: text\n",
                "must be a mapping, not a string",
            ),
            (b"revision: 1\nbody:\n", "must be a mapping, not null"),
            (
                b"revision: 1\nbody: {}\nextra: 1\n",
                "unknown key \"extra\"",
            ),
            (b"revision: 1\nrevision: 2\nbody: {}\n", "duplicate key"),
            (b"revision: 1\nbody: {a: 1, a: 2}\n", "duplicate key \"a\""),
            (b"revision: 1\nbody: {1: a}\n", "string mapping key"),
            (b"revision: 1\nbody: {null: a}\n", "string mapping key"),
            (b"revision: 1\nbody: {true: a}\n", "string mapping key"),
            (b"revision: 1\nbody: {[a]: a}\n", "string mapping key"),
            (
                b"revision: 1\nbody:\n  x: {a: {1.5: a}}\n",
                "string mapping key",
            ),
            (b"revision: 1\nbody: {a: .nan}\n", "not finite"),
            (b"revision: 1\nbody: {a: .inf}\n", "not finite"),
            (b"revision: 1\nbody: {a: [-.inf]}\n", "not finite"),
            (
                b"revision: 1\nbody: {a: 18446744073709551616}\n",
                "out of range",
            ),
            (
                b"revision: 1\nbody: {a: -9223372036854775809}\n",
                "out of range",
            ),
            (b"revision: 1\nbody: {a: !custom x}\n", "tags"),
            (b"revision: 1\nbody: !custom {a: 1}\n", "tags"),
            (b"!record\nrevision: 1\nbody: {}\n", "tags"),
            (b"revision: 1\nbody: {!k a: 1}\n", ""),
            (b"revision: 1\nbody: {a: *nowhere}\n", ""),
            (
                b"revision: 1\nbody: {}\n---\nrevision: 2\nbody: {}\n",
                "more than one document",
            ),
        ];
        for (text, expected) in cases {
            let reason = corrupt_reason(text);
            assert!(
                reason.contains(expected),
                "{:?}: reason {reason:?} does not mention {expected:?}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn an_overflowing_float_is_a_string_not_infinity() {
        // YAML 1.2 core schema: `1e999` is not a representable float, so it
        // is a plain string, never a non-finite number.
        let record = decode(b"revision: 1\nbody: {a: 1e999}\n", path()).unwrap();
        assert_eq!(record.body.unwrap()["a"], json!("1e999"));
    }

    #[test]
    fn alias_bombs_are_cut_off() {
        let mut text =
            String::from("revision: 1\nbody:\n  l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..=12 {
            let prev = i - 1;
            text.push_str(&format!(
                "  l{i}: &l{i} [*l{prev}, *l{prev}, *l{prev}, *l{prev}, *l{prev}, *l{prev}, *l{prev}, *l{prev}, *l{prev}, *l{prev}]\n"
            ));
        }
        let started = std::time::Instant::now();
        let reason = corrupt_reason(text.as_bytes());
        assert!(
            reason.contains("expands") || reason.contains("repetition limit"),
            "{reason}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn a_wide_alias_fan_out_stays_within_the_budget() {
        // Stays under serde_yaml's own repetition limit (100 jumps per
        // event) yet would expand to ~50 MB: the budget must catch it.
        let big = "x".repeat(50_000);
        let mut text = format!("revision: 1\nbody:\n  big: &b {big}\n  copies: [");
        for _ in 0..1_000 {
            text.push_str("*b, ");
        }
        text.push_str("]\n");
        let reason = corrupt_reason(text.as_bytes());
        assert!(reason.contains("expands"), "{reason}");
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing() {
        // libyaml's scanner is quadratic in flow nesting depth, so this
        // stays at a size the test can afford in a debug build.
        for open in ["[", "{a: "] {
            let mut text = String::from("revision: 1\nbody: {a: ");
            text.push_str(&open.repeat(10_000));
            corrupt_reason(text.as_bytes());
        }
        let mut text = String::from("revision: 1\nbody:\n");
        for depth in 1..300 {
            text.push_str(&" ".repeat(depth * 2));
            text.push_str("a:\n");
        }
        corrupt_reason(text.as_bytes());
    }

    #[test]
    fn encode_refuses_bodies_too_deep_to_read_back() {
        let mut v = json!(1);
        for _ in 0..MAX_DEPTH - 1 {
            v = json!([v]);
        }
        let ok = body(json!({ "a": v.clone() }));
        assert_eq!(round_trip(&ok).body.unwrap(), ok);
        let too_deep = body(json!({ "a": [v] }));
        let reason = encode(1, Some(&too_deep)).unwrap_err();
        assert!(reason.contains("deeper than"), "{reason}");
    }

    #[test]
    fn header_reads_what_encode_writes() {
        let b = body(json!({"a": 1}));
        for (bytes, expected) in [
            (
                encode(3, Some(&b)).unwrap(),
                Header {
                    revision: 3,
                    live: true,
                },
            ),
            (
                encode(u64::MAX, Some(&b)).unwrap(),
                Header {
                    revision: u64::MAX,
                    live: true,
                },
            ),
            (
                encode(1, Some(&Body::new())).unwrap(),
                Header {
                    revision: 1,
                    live: true,
                },
            ),
            (
                encode(4, None).unwrap(),
                Header {
                    revision: 4,
                    live: false,
                },
            ),
        ] {
            let whole = bytes.len() <= HEADER_BYTES;
            let head = &bytes[..bytes.len().min(HEADER_BYTES)];
            assert_eq!(read_header(head, whole), Some(expected));
        }
    }

    #[test]
    fn header_defers_anything_unusual_to_a_full_decode() {
        for (head, whole) in [
            (&b"revision: 03\nbody:\n  a: 1\n"[..], true),
            (b"revision: 0\nbody:\n  a: 1\n", true),
            (b"revision: 99999999999999999999\nbody:\n  a: 1\n", true),
            (b"revision: 3\r\nbody:\n  a: 1\n", true),
            (b"revision:  3\nbody:\n  a: 1\n", true),
            (b"revision: 3 # note\nbody:\n  a: 1\n", true),
            (b"body:\n  a: 1\nrevision: 3\n", true),
            (b"revision: 3\ndeleted: true\nbody: {}\n", true),
            (b"revision: 3\ndeleted: true\n", false),
            (b"revision: 3\nbody: {}\nextra: 1\n", true),
            (b"revision: 3\nbody:\n", true),
            (b"revision: 3\nbody: [1]\n", true),
            (b"revision: 3\n", true),
            (b"", true),
        ] {
            assert_eq!(
                read_header(head, whole),
                None,
                "{:?}",
                String::from_utf8_lossy(head)
            );
        }
    }
}
