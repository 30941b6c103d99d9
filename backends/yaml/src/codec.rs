//! The file format — and the only module that touches `serde_yaml`, so a
//! maintained fork can replace it here and nowhere else.
//!
//! Decoding never trusts `serde_yaml`'s own notion of a value: it drives the
//! parser with visitors that accept exactly the JSON model (string keys,
//! finite numbers, no tags, no duplicate keys) and that charge every node
//! and string byte to a budget proportional to the file's size, so an alias
//! bomb cannot expand into more memory than a few times the file itself.
//! Nesting is bounded by `serde_yaml`'s recursion limit (128 collections).
//!
//! Every file written ends with a seal (see [`digest`]);
//! decoding tells a sealed file (revstore wrote it) from an edited one (its
//! seal line is there but does not match) and from an unsealed one (no
//! seal line: made by hand, or cut short).

use std::cell::Cell;
use std::fmt;
use std::path::Path;

use revstore::{Body, Error, Record, Result};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Serialize;
use serde_json::{Number, Value};

use crate::digest;

/// Deepest body this backend writes, counting the body's own mapping as 1;
/// a deeper one is refused with [`Error::InvalidBody`].
///
/// `serde_yaml` refuses to read more than 128 nested collections and the
/// envelope takes one; staying well below keeps every file this crate writes
/// readable, even after a hand edit wraps a value in a few more levels.
pub const MAX_DEPTH: usize = 100;

/// The largest revision a file may hold: SQLite stores revisions as signed
/// 64-bit integers, and both backends accept the same range.
pub const MAX_REVISION: u64 = i64::MAX as u64;

/// The key of the seal line, the last line of every file written.
const DIGEST_KEY: &str = "digest";

/// Encodes a record of the document `label` (`collection/name`):
/// `revision: N` first, then `body:` (a live document) or `deleted: true`
/// (a tombstone), then the seal line `digest: fnv1a64-…`.
///
/// # Errors
/// A reason when the revision is above [`MAX_REVISION`], the body is
/// nested deeper than [`MAX_DEPTH`] (the file could not be read back) or
/// the YAML emitter fails.
#[cfg(any(test, feature = "testkit"))]
pub fn encode(label: &str, revision: u64, body: Option<&Body>) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    encode_with(&mut out, label, revision, body, true)?;
    Ok(out)
}

/// Encodes like `encode` (built for tests), into this thread's reusable
/// buffer, which the result gives back when dropped: a commit then
/// allocates no file-sized buffer.
///
/// # Errors
/// As `encode`: a reason when the revision is above [`MAX_REVISION`], the
/// body is nested deeper than [`MAX_DEPTH`] or the YAML emitter fails.
pub fn encode_reusing(label: &str, revision: u64, body: Option<&Body>) -> Result<Encoded, String> {
    // A fresh buffer when the thread's is gone (during thread exit).
    let mut encoded = Encoded(ENCODE_BUFFER.try_with(Cell::take).unwrap_or_default());
    encode_with(&mut encoded.0, label, revision, body, true)?;
    Ok(encoded)
}

thread_local! {
    static ENCODE_BUFFER: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// The largest buffer a thread keeps for the next [`encode_reusing`].
const MAX_KEPT_ENCODE_BUFFER: usize = 256 * 1024;

/// An encoded file in the thread's reusable buffer; see
/// [`encode_reusing`].
pub struct Encoded(Vec<u8>);

impl std::ops::Deref for Encoded {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Encoded {
    fn drop(&mut self) {
        if self.0.capacity() <= MAX_KEPT_ENCODE_BUFFER {
            let buffer = std::mem::take(&mut self.0);
            // Gone at thread exit: the buffer is simply freed.
            let _ = ENCODE_BUFFER.try_with(|kept| kept.set(buffer));
        }
    }
}

/// What [`encode`] writes, but with every live record laid out by
/// `serde_yaml`'s emitter (feature `testkit`): the fuzz cases check that
/// both agree byte for byte.
#[cfg(feature = "testkit")]
pub fn encode_with_serde_yaml(
    label: &str,
    revision: u64,
    body: Option<&Body>,
) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    encode_with(&mut out, label, revision, body, false)?;
    Ok(out)
}

/// Encodes into `out` (its content replaced), laying a live record out
/// itself when `fast` and it can.
fn encode_with(
    out: &mut Vec<u8>,
    label: &str,
    revision: u64,
    body: Option<&Body>,
    fast: bool,
) -> Result<(), String> {
    #[derive(Serialize)]
    struct Live<'a> {
        revision: u64,
        body: &'a Body,
    }
    if revision > MAX_REVISION {
        return Err(format!(
            "revision {revision} is above the largest revision, {MAX_REVISION}"
        ));
    }
    out.clear();
    // An empty buffer is valid UTF-8; the text is written into its room.
    let mut text = String::from_utf8(std::mem::take(out)).unwrap_or_default();
    match body {
        Some(body) => {
            if deeper_than(body, MAX_DEPTH) {
                return Err(format!(
                    "the body is nested deeper than {MAX_DEPTH} levels, \
                     more than a YAML file of this backend can hold"
                ));
            }
            if !fast || emit_live(&mut text, revision, body).is_none() {
                text.clear();
                let written = serde_yaml::to_string(&Live { revision, body })
                    .map_err(|e| format!("YAML encoding failed: {e}"))?;
                text.push_str(&written);
            }
        }
        None => {
            text.push_str("revision: ");
            push_integer(&mut text, revision);
            text.push_str("\ndeleted: true\n");
        }
    }
    *out = text.into_bytes();
    digest::push_seal_line(out, DIGEST_KEY, label);
    Ok(())
}

/// Writes a live record exactly as `serde_yaml` (with its emitter's
/// settings: block style, indent 2, unlimited width) writes the envelope
/// `revision`, `body`, but without going through its emitter, which costs
/// about 15 µs per KiB. Plain-looking strings are written plain here;
/// every other string and every float is formatted by `serde_yaml` itself,
/// one scalar at a time. `None` when a scalar needs more than one line or
/// a key is too long for `key: value` form (`serde_yaml` then writes the
/// whole file): the layouts this does not reproduce.
///
/// The tests compare it with `serde_yaml` on generated bodies.
fn emit_live(out: &mut String, revision: u64, body: &Body) -> Option<()> {
    out.push_str("revision: ");
    push_integer(out, revision);
    out.push_str("\nbody:");
    if body.is_empty() {
        out.push_str(" {}\n");
    } else {
        out.push('\n');
        emit_mapping(out, body, 2, false)?;
    }
    Some(())
}

/// Writes a non-empty mapping's entries at `indent`; the first one right
/// where the output is (after a sequence's `- `) when `inline`.
fn emit_mapping(out: &mut String, map: &Body, indent: usize, inline: bool) -> Option<()> {
    for (i, (key, value)) in map.iter().enumerate() {
        if i > 0 || !inline {
            push_indent(out, indent);
        }
        // Longer keys take the `? key` form.
        if key.len() > MAX_SIMPLE_KEY {
            return None;
        }
        emit_string(out, key)?;
        out.push(':');
        match value {
            Value::Object(inner) if !inner.is_empty() => {
                out.push('\n');
                emit_mapping(out, inner, indent + 2, false)?;
            }
            // A sequence in a mapping is not indented further.
            Value::Array(items) if !items.is_empty() => {
                out.push('\n');
                emit_sequence(out, items, indent, false)?;
            }
            scalar => {
                out.push(' ');
                emit_scalar(out, scalar)?;
                out.push('\n');
            }
        }
    }
    Some(())
}

/// Writes a non-empty sequence's items at `indent`; the first one right
/// where the output is when `inline`.
fn emit_sequence(out: &mut String, items: &[Value], indent: usize, inline: bool) -> Option<()> {
    for (i, item) in items.iter().enumerate() {
        if i > 0 || !inline {
            push_indent(out, indent);
        }
        out.push_str("- ");
        match item {
            Value::Object(inner) if !inner.is_empty() => {
                emit_mapping(out, inner, indent + 2, true)?;
            }
            Value::Array(inner) if !inner.is_empty() => {
                emit_sequence(out, inner, indent + 2, true)?;
            }
            scalar => {
                emit_scalar(out, scalar)?;
                out.push('\n');
            }
        }
    }
    Some(())
}

fn push_integer(out: &mut String, n: impl std::fmt::Display) {
    use std::fmt::Write;
    // Writing to a `String` cannot fail.
    let _ = write!(out, "{n}");
}

fn push_indent(out: &mut String, indent: usize) {
    const SPACES: &str = "                                ";
    let mut left = indent;
    while left > 0 {
        let step = left.min(SPACES.len());
        out.push_str(&SPACES[..step]);
        left -= step;
    }
}

/// Longest key libyaml writes as `key: value` rather than `? key`.
const MAX_SIMPLE_KEY: usize = 128;

/// Writes a scalar, or an empty collection (`{}`, `[]`).
fn emit_scalar(out: &mut String, value: &Value) -> Option<()> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => push_integer(&mut *out, u),
            (None, Some(i)) => push_integer(&mut *out, i),
            // `serde_yaml`'s own float formatting (ryu's shortest form).
            _ => push_single_line(out, &serde_yaml::to_string(value).ok()?)?,
        },
        Value::String(text) => emit_string(out, text)?,
        Value::Object(_) => out.push_str("{}"),
        Value::Array(_) => out.push_str("[]"),
    }
    Some(())
}

/// Writes a string plain when it is one `serde_yaml` writes plain for
/// sure; else as `serde_yaml` writes it alone, unless it holds a line
/// break of any kind (libyaml then indents its continuation, or writes a
/// key in `? key` form, after the context).
fn emit_string(out: &mut String, text: &str) -> Option<()> {
    if is_plain(text) {
        out.push_str(text);
        Some(())
    } else if text.contains(['\n', '\r', '\u{85}', '\u{2028}', '\u{2029}']) {
        None
    } else {
        push_single_line(out, &serde_yaml::to_string(text).ok()?)
    }
}

/// Appends a scalar `serde_yaml` wrote alone, if it is one line (then it
/// reads the same anywhere in a block mapping or sequence).
fn push_single_line(out: &mut String, written: &str) -> Option<()> {
    let line = written.strip_suffix('\n')?;
    if line.contains('\n') || line.is_empty() {
        return None;
    }
    out.push_str(line);
    Some(())
}

/// The bytes [`is_plain`] allows after the first: letters, digits, space
/// and `_-.,/()+=`. A table, because every string of every commit is
/// checked byte by byte.
const PLAIN_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let byte = b as u8;
        table[b] = byte.is_ascii_alphanumeric()
            || matches!(
                byte,
                b' ' | b'_' | b'-' | b'.' | b',' | b'/' | b'(' | b')' | b'+' | b'='
            );
        b += 1;
    }
    table
};

/// Whether `serde_yaml` writes `text` as a plain scalar, and reads it back
/// as the same string: it starts with a letter, `_`, `/` or `(`, holds
/// only letters, digits, spaces and `_-.,/()+=`, does not end in
/// a space, and is not a word YAML reads as null or a boolean. (Strings
/// starting with a letter never read as numbers: the only such words Rust
/// parses as floats, `inf` and `nan`, are not finite, which YAML refuses.)
/// A conservative test: `false` only costs a call to `serde_yaml`.
fn is_plain(text: &str) -> bool {
    let bytes = text.as_bytes();
    let Some(&first) = bytes.first() else {
        return false;
    };
    (first.is_ascii_alphabetic() || matches!(first, b'_' | b'/' | b'('))
        && bytes.last() != Some(&b' ')
        && bytes.iter().all(|&b| PLAIN_BYTES[usize::from(b)])
        && !matches!(
            text,
            "null" | "Null" | "NULL" | "true" | "True" | "TRUE" | "false" | "False" | "FALSE"
        )
}

/// Decodes a whole file of the document `label` (`collection/name`).
///
/// The revision read is the one the file states when its seal matches; one
/// more when the seal line is there but does not match (an edit by hand:
/// an implicit write); and 1 for a file without a seal line that states
/// `revision: 0` (made by hand).
///
/// # Errors
/// [`Error::Corrupt`] naming `path` for anything that is not a record of
/// this format: not UTF-8, not YAML, empty, a missing or out-of-range
/// revision, a live record without a mapping body, non-string keys,
/// duplicate keys, non-finite or out-of-range numbers, YAML tags, unknown
/// envelope keys, aliases that expand past the size budget, or no seal line
/// on a file stating a revision other than 0 (cut short, or its seal line
/// removed by hand).
pub fn decode(bytes: &[u8], label: &str, path: &Path) -> Result<Record> {
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
    let raw = RecordSeed { budget: &budget }
        .deserialize(serde_yaml::Deserializer::from_str(text))
        .map_err(|e| corrupt(e.to_string()))?;
    let stated = raw.revision;
    if stated > MAX_REVISION {
        return Err(corrupt(format!(
            "`revision: {stated}` is above the largest revision, {MAX_REVISION}"
        )));
    }
    // `None`: no seal line; `Some(false)`: one that does not match.
    let sealed = raw.digest.as_ref().map(|value| {
        value
            .as_deref()
            .is_some_and(|value| sealed_prefix(bytes, label).is_some_and(|(_, line)| line == value))
    });
    let revision = match sealed {
        Some(true) if stated == 0 => {
            return Err(corrupt(
                "`revision: 0` in a sealed file; revisions start at 1".to_owned(),
            ))
        }
        Some(true) => stated,
        Some(false) if stated == MAX_REVISION => {
            return Err(corrupt(format!(
                "the file was edited by hand at the largest revision, {MAX_REVISION}, \
                 so the edit cannot be given a revision of its own"
            )))
        }
        Some(false) => stated + 1,
        None if stated == 0 => 1,
        None => {
            return Err(corrupt(format!(
                "the file has no `{DIGEST_KEY}:` line, which ends every file revstore writes: \
                 it was cut short, or the line was removed by hand (keep the line when \
                 editing by hand, whatever its value; a file made by hand states \
                 `revision: 0`)"
            )))
        }
    };
    Ok(Record {
        revision,
        body: raw.body.map(std::sync::Arc::new),
    })
}

/// The first line of the envelope and its liveness, read without parsing
/// YAML.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The record's revision.
    pub revision: u64,
    /// Whether it is a live document (not a tombstone).
    pub live: bool,
}

/// Reads the header of a sealed file in exactly the shape [`encode_reusing`]
/// writes, without parsing its YAML. `None` for anything else — an edited
/// or unsealed file, or a hand-made layout — which the caller must
/// [`decode`] instead. A `Some` never contradicts what [`decode`] says
/// about revision and liveness, though the body below it is not checked.
pub fn scan(bytes: &[u8], label: &str) -> Option<Header> {
    let (content, _) = sealed_prefix(bytes, label)?;
    let rest = content.strip_prefix(b"revision: ")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let (number, rest) = rest.split_at(digits);
    if number.first() == Some(&b'0') {
        return None;
    }
    let revision: u64 = std::str::from_utf8(number).ok()?.parse().ok()?;
    if revision > MAX_REVISION {
        return None;
    }
    let rest = rest.strip_prefix(b"\n")?;
    let live = if rest == b"deleted: true\n" {
        false
    } else if rest.starts_with(b"body:\n  ") || rest == b"body: {}\n" {
        true
    } else {
        return None;
    };
    Some(Header { revision, live })
}

/// When the file's last line is a seal in the written form
/// (`digest: fnv1a64-` and 16 hex digits, a newline or the end of the file
/// after it) and matches the bytes before it: those bytes and the seal.
fn sealed_prefix<'a>(bytes: &'a [u8], label: &str) -> Option<(&'a [u8], &'a str)> {
    let without_newline = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let start = without_newline
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |newline| newline + 1);
    let (content, line) = without_newline.split_at(start);
    let value = line
        .strip_prefix(DIGEST_KEY.as_bytes())?
        .strip_prefix(b": ")?;
    let value = std::str::from_utf8(value).ok()?;
    let hex = value.strip_prefix(digest::PREFIX)?;
    if hex.len() != digest::HEX_DIGITS {
        return None;
    }
    (digest::seal(label, content) == value).then_some((content, value))
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

/// The envelope as the file states it, before the seal is checked.
struct RawRecord {
    /// The stated revision (0 allowed: a file made by hand).
    revision: u64,
    body: Option<Body>,
    /// `None`: no seal line; `Some(None)`: a seal that is not a string.
    digest: Option<Option<String>>,
}

struct RecordSeed<'b> {
    budget: &'b Budget,
}

impl<'de> DeserializeSeed<'de> for RecordSeed<'_> {
    type Value = RawRecord;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<RawRecord, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RecordSeed<'_> {
    type Value = RawRecord;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(
            "a mapping with `revision` and `body` (or `deleted: true`); \
             content made by hand goes under `body:`, after `revision: 0`",
        )
    }

    fn visit_unit<E: de::Error>(self) -> Result<RawRecord, E> {
        Err(E::custom(
            "the file holds no record (an empty or null document)",
        ))
    }

    fn visit_none<E: de::Error>(self) -> Result<RawRecord, E> {
        self.visit_unit()
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, _: A) -> Result<RawRecord, A::Error> {
        Err(tag_error())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawRecord, A::Error> {
        let mut revision: Option<u64> = None;
        let mut deleted: Option<bool> = None;
        let mut body: Option<Value> = None;
        let mut digest: Option<Option<String>> = None;
        let mut unknown: Vec<String> = Vec::new();
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
                DIGEST_KEY => digest.replace(map.next_value_seed(DigestSeed)?).is_some(),
                _ => {
                    // Read on, to tell a body without its envelope from an
                    // envelope with a stray key.
                    map.next_value_seed(ValueSeed {
                        budget: self.budget,
                    })?;
                    unknown.push(key.clone());
                    false
                }
            };
            if duplicate {
                return Err(de::Error::custom(format_args!("duplicate key {key:?}")));
            }
        }
        if revision.is_none() && body.is_none() && deleted.is_none() {
            return Err(de::Error::custom(
                "the file has no envelope (no `revision` or `body` key): a document \
                 file is `revision: N` then its content under `body:`; to add one by \
                 hand, write `revision: 0` and indent the content under `body:`",
            ));
        }
        if let Some(other) = unknown.first() {
            return Err(de::Error::custom(format_args!(
                "unknown key {other:?} (a record has `revision`, `body`, `deleted` \
                 and `{DIGEST_KEY}`)"
            )));
        }
        let revision =
            revision.ok_or_else(|| de::Error::custom("the `revision` key is missing"))?;
        let body = match (deleted.unwrap_or(false), body) {
            (true, None) => None,
            (true, Some(_)) => {
                return Err(de::Error::custom(
                    "a record with `deleted: true` must not have a `body`",
                ))
            }
            (false, None) => {
                return Err(de::Error::custom(
                    "the `body` key is missing (and the record is not `deleted: true`)",
                ))
            }
            (false, Some(Value::Object(body))) => Some(body),
            (false, Some(other)) => {
                return Err(de::Error::custom(format_args!(
                    "`body` must be a mapping, not {}",
                    revstore::value_kind(&other)
                )))
            }
        };
        Ok(RawRecord {
            revision,
            body,
            digest,
        })
    }
}

/// A stated revision: a plain non-negative integer, nothing that merely
/// converts to one. (Its range is checked once the seal is known.)
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
        f.write_str("`revision` to be an integer >= 0")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }
}

/// The seal's value: any scalar (a string when written by revstore; a
/// hand edit may leave anything there, which simply does not match).
struct DigestSeed;

impl<'de> DeserializeSeed<'de> for DigestSeed {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<String>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for DigestSeed {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("`digest` to be a single value")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<String>, E> {
        Ok(Some(v.to_owned()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Option<String>, E> {
        Ok(None)
    }

    fn visit_none<E: de::Error>(self) -> Result<Option<String>, E> {
        Ok(None)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Option<String>, E> {
        Ok(None)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Option<String>, E> {
        Ok(None)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Option<String>, E> {
        Ok(None)
    }

    fn visit_i128<E: de::Error>(self, _: i128) -> Result<Option<String>, E> {
        Ok(None)
    }

    fn visit_u128<E: de::Error>(self, _: u128) -> Result<Option<String>, E> {
        Ok(None)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Option<String>, E> {
        Ok(None)
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, _: A) -> Result<Option<String>, A::Error> {
        Err(tag_error())
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
    /// [`emit_live`] into a new string.
    fn emit_live_text(revision: u64, body: &Body) -> Option<String> {
        let mut out = String::new();
        emit_live(&mut out, revision, body).map(|()| out)
    }
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const LABEL: &str = "models/orders";

    fn path() -> &'static Path {
        Path::new("/store/models/orders.yaml")
    }

    /// `text` with the seal revstore would write after it.
    fn sealed(text: &str) -> Vec<u8> {
        format!("{text}digest: {}\n", digest::seal(LABEL, text.as_bytes())).into_bytes()
    }

    fn body(value: Value) -> Body {
        match value {
            Value::Object(map) => map,
            other => panic!("not a mapping: {other}"),
        }
    }

    fn round_trip(b: &Body) -> Record {
        let bytes = encode(LABEL, 7, Some(b)).unwrap();
        decode(&bytes, LABEL, path()).unwrap_or_else(|e| {
            panic!("{e}\n---\n{}", String::from_utf8_lossy(&bytes));
        })
    }

    fn corrupt_reason(text: &[u8]) -> String {
        match decode(text, LABEL, path()) {
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
        let text = String::from_utf8(encode(LABEL, 3, Some(&b)).unwrap()).unwrap();
        let content = "revision: 3\nbody:\n  description: All orders\n  joins:\n  - customers\n";
        // The seal is FNV-1a 64 of the key, a newline and the content.
        let hash = digest::fnv1a64(&[b"models/orders\n", content.as_bytes()]);
        assert_eq!(text, format!("{content}digest: fnv1a64-{hash:016x}\n"));
        assert_eq!(
            String::from_utf8(encode(LABEL, 4, None).unwrap()).unwrap(),
            String::from_utf8(sealed("revision: 4\ndeleted: true\n")).unwrap()
        );
        assert_eq!(
            String::from_utf8(encode(LABEL, 1, Some(&Body::new())).unwrap()).unwrap(),
            String::from_utf8(sealed("revision: 1\nbody: {}\n")).unwrap()
        );
    }

    #[test]
    fn the_crate_docs_examples_are_what_encode_writes() {
        let b = body(json!({"description": "All orders", "joins": ["customers"]}));
        assert_eq!(
            String::from_utf8(encode(LABEL, 3, Some(&b)).unwrap()).unwrap(),
            "revision: 3\nbody:\n  description: All orders\n  joins:\n  - customers\n\
             digest: fnv1a64-1c7e67eb0e65a6ae\n"
        );
        assert_eq!(
            String::from_utf8(encode(LABEL, 4, None).unwrap()).unwrap(),
            "revision: 4\ndeleted: true\ndigest: fnv1a64-4dadf5d6aa37a29b\n"
        );
    }

    #[test]
    fn revisions_above_i64_max_are_refused_on_both_sides() {
        assert!(encode(LABEL, MAX_REVISION, None).is_ok());
        let reason = encode(LABEL, MAX_REVISION + 1, None).unwrap_err();
        assert!(reason.contains("largest revision"), "{reason}");
        let max = sealed(&format!("revision: {MAX_REVISION}\ndeleted: true\n"));
        assert_eq!(decode(&max, LABEL, path()).unwrap().revision, MAX_REVISION);
        for text in [
            sealed(&format!("revision: {}\ndeleted: true\n", MAX_REVISION + 1)),
            sealed(&format!("revision: {}\nbody: {{}}\n", u64::MAX)),
            format!(
                "revision: {}\nbody: {{}}\ndigest: edited\n",
                MAX_REVISION + 1
            )
            .into_bytes(),
        ] {
            assert!(corrupt_reason(&text).contains("largest revision"));
        }
        // A hand edit at the largest revision has no next one to take.
        let edited = format!("revision: {MAX_REVISION}\nbody: {{}}\ndigest: edited\n");
        assert!(corrupt_reason(edited.as_bytes()).contains("largest revision"));
    }

    #[test]
    fn seals_tell_written_edited_and_hand_made_files_apart() {
        let b = body(json!({"a": 1}));
        let written = encode(LABEL, 3, Some(&b)).unwrap();
        assert_eq!(decode(&written, LABEL, path()).unwrap().revision, 3);
        // The same file under another key is a copy made by hand.
        assert_eq!(
            decode(&written, "models/other", path()).unwrap().revision,
            4
        );
        // Any change to the bytes, even a comment, is an edit: one revision more.
        let text = String::from_utf8(written.clone()).unwrap();
        for edited in [
            text.replace("a: 1", "a: 2"),
            text.replace("body:", "# a note\nbody:"),
            text.replace("revision: 3", "revision: 5"),
            text.replace("\n", "\r\n"),
            format!("{text}# trailing comment\n"),
        ] {
            let record = decode(edited.as_bytes(), LABEL, path()).unwrap();
            let stated = if edited.contains("revision: 5") { 5 } else { 3 };
            assert_eq!(record.revision, stated + 1, "{edited:?}");
        }
        // A seal line whose value is anything at all marks a hand edit.
        for seal in [
            "edited",
            "",
            "~",
            "12",
            "true",
            "fnv1a64-0000000000000000",
            "fnv1a64-12ab",
        ] {
            let text = format!("revision: 3\nbody:\n  a: 1\ndigest: {seal}\n");
            assert_eq!(
                decode(text.as_bytes(), LABEL, path()).unwrap().revision,
                4,
                "{seal:?}"
            );
        }
        // The seal need not end in a newline (an editor may drop it).
        let trimmed = &written[..written.len() - 1];
        assert_eq!(decode(trimmed, LABEL, path()).unwrap().revision, 3);
        // A file made by hand states revision 0 and reads as revision 1.
        let hand = decode(b"revision: 0\nbody:\n  a: 1\n", LABEL, path()).unwrap();
        assert_eq!((hand.revision, hand.body.as_deref()), (1, Some(&b)));
        let hand = decode(b"revision: 0\ndeleted: true\n", LABEL, path()).unwrap();
        assert_eq!((hand.revision, hand.body), (1, None));
        // Without a seal line, any other revision is a file cut short (or
        // whose seal line was removed): refused, never taken as a body.
        let cut = &written[..text.find("digest").unwrap()];
        assert!(corrupt_reason(cut).contains("no `digest:` line"));
        assert!(corrupt_reason(b"revision: 2\nbody: {}\n").contains("revision: 0"));
        // Revision 0 with a valid seal is not something revstore writes.
        assert!(corrupt_reason(&sealed("revision: 0\nbody: {}\n")).contains("start at 1"));
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
        assert_eq!(*decoded, b);
        let keys: Vec<_> = decoded.keys().cloned().collect();
        let original: Vec<_> = b.keys().cloned().collect();
        assert_eq!(keys, original);
        assert!(decoded["u64_max"].is_u64());
        assert!(decoded["i64_min"].is_i64());
        assert!(decoded["integral_float"].is_f64());
    }

    /// Strings YAML could take for something else, or that need quoting.
    const TRICKY: [&str; 74] = [
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

    #[test]
    fn strings_that_look_like_other_things_round_trip() {
        let tricky = TRICKY;
        let mut b = Body::new();
        for (i, s) in tricky.iter().enumerate() {
            b.insert((*s).to_owned(), Value::String(format!("{i}")));
            b.insert(format!("value {i}"), Value::String((*s).to_owned()));
            b.insert(format!("list {i}"), json!([s, {*s: s}]));
        }
        assert_eq!(*round_trip(&b).body.unwrap(), b);
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
            let bytes = encode(LABEL, 1, Some(&b)).unwrap();
            let decoded = decode(&bytes, LABEL, path());
            prop_assert!(decoded.is_ok(), "{decoded:?}\n{}", String::from_utf8_lossy(&bytes));
            prop_assert_eq!(decoded.unwrap().body.map(std::sync::Arc::unwrap_or_clone), Some(b));
        }
    }

    /// What `serde_yaml` itself writes for a live record.
    fn serde_yaml_live(revision: u64, body: &Body) -> String {
        #[derive(Serialize)]
        struct Live<'a> {
            revision: u64,
            body: &'a Body,
        }
        serde_yaml::to_string(&Live { revision, body }).unwrap()
    }

    /// Strings that exercise every branch of the fast emitter's choices.
    fn arb_emitted_string() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => "[a-zA-Z_/(][a-zA-Z0-9 _.,/()+=-]{0,16}",
            1 => "[ -~]{0,6}",
            1 => any::<String>(),
            1 => prop::sample::select(TRICKY.to_vec()).prop_map(str::to_owned),
            1 => (120usize..140).prop_map(|n| "k".repeat(n)),
        ]
    }

    fn arb_emitted_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            1 => Just(Value::Null),
            1 => any::<bool>().prop_map(Value::Bool),
            1 => any::<i64>().prop_map(|n| json!(n)),
            1 => any::<u64>().prop_map(|n| json!(n)),
            1 => any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| json!(f)),
            4 => arb_emitted_string().prop_map(Value::String),
            1 => Just(json!({})),
            1 => Just(json!([])),
        ];
        leaf.prop_recursive(4, 48, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::vec((arb_emitted_string(), inner), 0..5)
                    .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn the_fast_emitter_writes_exactly_what_serde_yaml_writes(
            pairs in prop::collection::vec((arb_emitted_string(), arb_emitted_value()), 0..6)
        ) {
            let b: Body = pairs.into_iter().collect();
            if let Some(text) = emit_live_text(12, &b) {
                prop_assert_eq!(text, serde_yaml_live(12, &b));
            }
        }
    }

    #[test]
    fn the_fast_emitter_agrees_on_long_scalars_with_spaces() {
        let words = "word ".repeat(40);
        let plain = format!("start {}end", words);
        let single = format!("a: {}b", words);
        let double = format!("tab\t{}end", words);
        let long = body(json!({
            "plain": plain,
            "single": single,
            "double": double,
            "deep": {"list": [plain, single, double, {"k": plain}]},
        }));
        assert_eq!(emit_live_text(3, &long), Some(serde_yaml_live(3, &long)));
    }

    #[test]
    fn the_fast_emitter_covers_usual_bodies_and_tricky_scalars() {
        let usual = body(json!({
            "description": "Orders placed by customers",
            "joins": ["customers", "products"],
            "counter": 0,
            "ratio": 0.25,
            "columns": [
                {"name": "column_0", "nullable": true, "tags": [], "meta": {}},
                {"name": "column_1", "nested": [[1, 2], {"a": null}]},
            ],
            "empty": {},
        }));
        assert_eq!(emit_live_text(3, &usual), Some(serde_yaml_live(3, &usual)));
        // One-line scalars of every kind take the fast path too, each as
        // `serde_yaml` writes it.
        let breaks = ['\n', '\r', '\u{85}', '\u{2028}', '\u{2029}'];
        for tricky in TRICKY.iter().filter(|s| !s.contains(breaks)) {
            let b = body(json!({ *tricky: [tricky, {"k": tricky}] }));
            assert_eq!(
                emit_live_text(3, &b),
                Some(serde_yaml_live(3, &b)),
                "{tricky:?}"
            );
        }
        // Layouts it leaves to `serde_yaml`: multi-line scalars, long keys.
        for text in ["two\nlines", "cr\r", "\u{2028}"] {
            assert_eq!(emit_live_text(3, &body(json!({ "a": text }))), None);
            assert_eq!(emit_live_text(3, &body(json!({ text: 1 }))), None);
        }
        assert_eq!(
            emit_live_text(3, &body(json!({ "k".repeat(129): 1 }))),
            None
        );
        let at_limit = body(json!({ "k".repeat(128): 1 }));
        assert_eq!(
            emit_live_text(3, &at_limit),
            Some(serde_yaml_live(3, &at_limit))
        );
    }

    #[test]
    fn tombstones_round_trip() {
        let bytes = encode(LABEL, 9, None).unwrap();
        assert_eq!(
            decode(&bytes, LABEL, path()).unwrap(),
            Record {
                revision: 9,
                body: None
            }
        );
    }

    #[test]
    fn hand_edited_files_decode() {
        let text = "# edited by hand\nbody: {b: 1, a: [x, 'y']}\nrevision: 2\ndigest: x\n";
        let record = decode(text.as_bytes(), LABEL, path()).unwrap();
        assert_eq!(record.revision, 3);
        assert_eq!(
            Value::Object(std::sync::Arc::unwrap_or_clone(record.body.unwrap())),
            json!({"b": 1, "a": ["x", "y"]})
        );
        let text = "revision: 0\ndeleted: false\nbody:\n  defaults: &d {x: 1}\n  copy: *d\n";
        let record = decode(text.as_bytes(), LABEL, path()).unwrap();
        assert_eq!(
            Value::Object(std::sync::Arc::unwrap_or_clone(record.body.unwrap())),
            json!({"defaults": {"x": 1}, "copy": {"x": 1}})
        );
        // Core-schema tags resolve as YAML defines them.
        let record = decode(b"revision: 0\nbody:\n  a: !!str 123\n", LABEL, path()).unwrap();
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
            (b"revision: -1\nbody: {}\n", "integer >= 0"),
            (b"revision: 1.0\nbody: {}\n", "integer >= 0"),
            (b"revision: '3'\nbody: {}\n", "integer >= 0"),
            (b"revision: three\nbody: {}\n", "integer >= 0"),
            (
                b"revision: 18446744073709551616\nbody: {}\n",
                "integer >= 0",
            ),
            (b"revision:\nbody: {}\n", "integer >= 0"),
            (b"a: 1\nb: [2]\n", "no envelope"),
            (b"revision: 1\nbody: {}\ndigest: [x]\n", "single value"),
            (
                b"revision: 1\nbody: {}\ndigest: a\ndigest: b\n",
                "duplicate key",
            ),
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
        let record = decode(b"revision: 0\nbody: {a: 1e999}\n", LABEL, path()).unwrap();
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
        assert_eq!(*round_trip(&ok).body.unwrap(), ok);
        let too_deep = body(json!({ "a": [v] }));
        let reason = encode(LABEL, 1, Some(&too_deep)).unwrap_err();
        assert!(reason.contains("deeper than"), "{reason}");
    }

    #[test]
    fn scan_reads_what_encode_writes() {
        let b = body(json!({"a": 1}));
        for (bytes, revision, live) in [
            (encode(LABEL, 3, Some(&b)).unwrap(), 3, true),
            (
                encode(LABEL, MAX_REVISION, Some(&b)).unwrap(),
                MAX_REVISION,
                true,
            ),
            (encode(LABEL, 1, Some(&Body::new())).unwrap(), 1, true),
            (encode(LABEL, 4, None).unwrap(), 4, false),
        ] {
            assert_eq!(scan(&bytes, LABEL), Some(Header { revision, live }));
            // Under another key the seal does not match.
            assert_eq!(scan(&bytes, "models/other"), None);
        }
    }

    #[test]
    fn scan_defers_anything_unusual_to_a_full_decode() {
        for text in [
            "revision: 03\nbody:\n  a: 1\n",
            "revision: 0\nbody:\n  a: 1\n",
            "revision: 99999999999999999999\nbody:\n  a: 1\n",
            "revision: 9223372036854775808\nbody:\n  a: 1\n",
            "revision: 3\r\nbody:\n  a: 1\n",
            "revision:  3\nbody:\n  a: 1\n",
            "revision: 3 # note\nbody:\n  a: 1\n",
            "body:\n  a: 1\nrevision: 3\n",
            "revision: 3\ndeleted: true\nbody: {}\n",
            "revision: 3\ndeleted: true\n# note\n",
            "revision: 3\nbody:\n",
            "revision: 3\nbody: [1]\n",
            "revision: 3\n",
            "",
        ] {
            assert_eq!(scan(&sealed(text), LABEL), None, "{text:?}");
        }
        // Unsealed or edited files are never scanned.
        let written = encode(LABEL, 3, Some(&body(json!({"a": 1})))).unwrap();
        let text = String::from_utf8(written).unwrap();
        for other in [
            text.replace("a: 1", "a: 2"),
            text[..text.find("digest").unwrap()].to_owned(),
            text.replace("digest: fnv1a64-", "digest:  fnv1a64-"),
            format!("{text}\n"),
        ] {
            assert_eq!(scan(other.as_bytes(), LABEL), None, "{other:?}");
        }
    }
}
