//! Fuzz case bodies (feature `testkit`), shared by the cargo-fuzz targets in
//! `fuzz/` and by stable tests that replay the committed corpus.
//!
//! Each `*_case` function takes raw bytes, turns *any* bytes into one case
//! (no `arbitrary` needed, so the same corpus works under libFuzzer and
//! under `cargo test`) and panics only when a property is violated. The
//! checks compare revstore against small independent models written here,
//! never against revstore's own helpers.

use std::panic::{self, AssertUnwindSafe};
use std::path::Path;

use serde_json::Value;

use crate::error::{LimitKind, NameKind};
use crate::{validate_collection, validate_name, Body, Error, Key, Limits, Patch, Result};

/// Limits small enough that fuzz inputs hit both the depth and size errors.
pub const SMALL_LIMITS: Limits = Limits {
    max_depth: 4,
    max_body_bytes: 256,
};

/// Runs one patch case: a body and a patch document decoded from `data`,
/// applied as a merge patch, as a JSON Patch and (when it has that shape) as
/// a serialized [`Patch`], each under [`Limits::default`] and
/// [`SMALL_LIMITS`].
///
/// `data` is either two JSON values one after the other (`{body} patch`,
/// the form of the hand-made seeds), or, when it is not, arbitrary bytes
/// that drive a small value generator.
///
/// # Panics
/// When a property is violated: `prepare` or `apply` panics, refuses or
/// accepts against the limits as measured independently, names another
/// key, changes its input, gives different results on a retry, a merge
/// result differs from an independent RFC 7396 model (values or key
/// order), or keys of the old body lose their relative order.
pub fn patch_case(data: &[u8]) {
    let (body, patch) = decode_patch_input(data);
    let mut patches = vec![Patch::Merge(patch.clone()), Patch::Json(patch.clone())];
    if let Ok(tagged) = serde_json::from_value::<Patch>(patch) {
        patches.push(tagged);
    }
    for limits in [Limits::default(), SMALL_LIMITS] {
        for patch in &patches {
            check_patch(&body, patch, &limits);
        }
    }
}

/// Runs one name case: strings decoded from `data` (exactly when it is
/// UTF-8, lossily otherwise; a `0xFF` byte splits a collection from a name)
/// checked by [`validate_name`], [`validate_collection`], [`Key::new`] and
/// [`Key::new_reserved`].
///
/// # Panics
/// When revstore and an independent model of the rule
/// `[A-Za-z0-9][A-Za-z0-9_.-]{0,127}` (not `.`/`..`, not ending in `.`,
/// collections not starting with `_`) disagree, when an error names the
/// wrong part or value, or when an accepted part holds a character that is
/// unsafe in a file name.
pub fn names_case(data: &[u8]) {
    let whole = decode_text(data);
    let mut parts = data.splitn(2, |&b| b == 0xFF);
    let collection = decode_text(parts.next().unwrap_or_default());
    let name = parts.next().map_or_else(|| whole.clone(), decode_text);
    for s in [&whole, &collection, &name] {
        check_single_name(s);
    }
    check_key(&collection, &name);
    check_key(&name, &collection);
    check_reserved_key(&collection, &name);
    check_reserved_key(&format!("_{collection}"), &name);
}

/// Runs every file of a corpus directory (in name order) through `case` and
/// returns how many it ran. Subdirectories are skipped.
///
/// # Errors
/// [`Error::Io`] naming the directory or file that cannot be read.
///
/// # Panics
/// When `case` panics, with the corpus file named in the message.
pub fn replay_corpus(dir: &Path, case: impl Fn(&[u8])) -> Result<usize> {
    let read_dir = |e| Error::io("read corpus directory", dir, e);
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_dir)? {
        let path = entry.map_err(read_dir)?.path();
        if path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    for path in &files {
        let data = std::fs::read(path).map_err(|e| Error::io("read corpus file", path, e))?;
        if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| case(&data))) {
            panic!(
                "corpus file {} fails: {}",
                path.display(),
                panic_message(&*payload)
            );
        }
    }
    Ok(files.len())
}

/// Feeds `n` pseudo-random byte strings (xorshift, reproducible from
/// `seed`) to `case`: a stable smoke run of a fuzz target. The strings are
/// up to 256 bytes, mostly drawn from JSON punctuation, letters and digits.
///
/// # Panics
/// When `case` panics, with the seed, the case number and the input bytes
/// in the message, ready to paste into a regression test.
pub fn random_cases(case: impl Fn(&[u8]), n: usize, seed: u64) {
    const ALPHABET: &[u8] = b"{}[]\":, 0123456789abcdeflnrstu-_./\\~\n\0";
    let mut rng = XorShift::new(seed);
    let mut data = Vec::with_capacity(256);
    for i in 0..n {
        data.clear();
        let len = match rng.next() % 4 {
            0 => rng.next() % 257,
            _ => rng.next() % 40,
        };
        for _ in 0..len {
            let r = rng.next();
            let byte = if r % 4 == 0 {
                (r >> 8) as u8
            } else {
                ALPHABET[(r >> 8) % ALPHABET.len()]
            };
            data.push(byte);
        }
        if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| case(&data))) {
            panic!(
                "random case {i} of seed {seed:#x} fails on bytes {:?}: {}",
                data,
                panic_message(&*payload)
            );
        }
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "(a panic without a message)".to_owned())
}

/// The xorshift64 generator: tiny, and enough to vary smoke inputs.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> XorShift {
        // xorshift never leaves zero, so a zero seed is mapped elsewhere.
        XorShift((seed ^ 0x9E37_79B9_7F4A_7C15).max(1))
    }

    fn next(&mut self) -> usize {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x as usize
    }
}

// ---------------------------------------------------------------- decoding

fn decode_text(data: &[u8]) -> String {
    match std::str::from_utf8(data) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(data).into_owned(),
    }
}

/// `{body} patch` as JSON text, or else a generated body and patch.
fn decode_patch_input(data: &[u8]) -> (Body, Value) {
    let mut values = serde_json::Deserializer::from_slice(data).into_iter::<Value>();
    if let (Some(Ok(Value::Object(body))), Some(Ok(patch))) = (values.next(), values.next()) {
        return (body, patch);
    }
    let mut src = ByteSource { data, pos: 0 };
    let selector = src.byte();
    let body = match gen_object(&mut src, 5) {
        Value::Object(body) => body,
        _ => Body::new(),
    };
    let patch = if selector & 1 == 0 {
        gen_object(&mut src, 5)
    } else {
        gen_json_patch(&mut src)
    };
    (body, patch)
}

/// Bytes read one at a time; zeros once exhausted, which the generators
/// read as "null" or "no more items", so generation always ends.
struct ByteSource<'a> {
    data: &'a [u8],
    pos: usize,
}

impl ByteSource<'_> {
    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    fn pick<'s>(&mut self, choices: &[&'s str]) -> &'s str {
        choices[usize::from(self.byte()) % choices.len()]
    }
}

/// Few, colliding keys, so bodies and patches touch the same fields; some
/// need JSON Pointer escaping or look like array indices.
const KEYS: &[&str] = &["a", "b", "c", "d", "", "0", "1", "-", "~", "/", "a~1b", "é"];

fn gen_value(src: &mut ByteSource<'_>, depth_left: usize) -> Value {
    let tag = src.byte();
    let tag = if depth_left == 0 { tag % 5 } else { tag % 8 };
    let arg = src.byte();
    match tag {
        0 => Value::Null,
        1 => Value::Bool(arg & 1 == 1),
        2 => Value::from(i64::from(arg) - 128),
        3 => Value::from(f64::from(arg) / 4.0),
        4 => Value::from(src.pick(KEYS)),
        5 | 6 => Value::Array(
            (0..arg % 4)
                .map(|_| gen_value(src, depth_left - 1))
                .collect(),
        ),
        _ => gen_object_with(src, arg, depth_left),
    }
}

fn gen_object(src: &mut ByteSource<'_>, depth_left: usize) -> Value {
    let arg = src.byte();
    gen_object_with(src, arg, depth_left)
}

fn gen_object_with(src: &mut ByteSource<'_>, arg: u8, depth_left: usize) -> Value {
    let mut map = Body::new();
    for _ in 0..arg % 5 {
        let key = src.pick(KEYS).to_owned();
        map.insert(key, gen_value(src, depth_left.saturating_sub(1)));
    }
    Value::Object(map)
}

fn gen_pointer(src: &mut ByteSource<'_>) -> String {
    let shape = src.byte();
    let mut pointer = String::new();
    for _ in 0..shape % 4 {
        pointer.push('/');
        let segment = src.pick(&["a", "b", "c", "0", "1", "-", "", "~0", "~1", "01", "99"]);
        pointer.push_str(segment);
    }
    if shape & 0x80 != 0 {
        // Not a pointer at all (no leading `/`, or a bad escape).
        pointer.push_str(src.pick(&["a", "~", "~2"]));
    }
    pointer
}

fn gen_json_patch(src: &mut ByteSource<'_>) -> Value {
    let count = src.byte() % 8;
    let ops = (0..count)
        .map(|_| {
            let kind = src.byte();
            let op =
                ["add", "remove", "replace", "move", "copy", "test", "nope"][usize::from(kind) % 7];
            let mut map = Body::new();
            map.insert("op".into(), Value::from(op));
            map.insert("path".into(), Value::from(gen_pointer(src)));
            if matches!(op, "move" | "copy") || kind & 0x80 != 0 {
                map.insert("from".into(), Value::from(gen_pointer(src)));
            }
            if matches!(op, "add" | "replace" | "test") || kind & 0x40 != 0 {
                map.insert("value".into(), gen_value(src, 4));
            }
            Value::Object(map)
        })
        .collect();
    Value::Array(ops)
}

// --------------------------------------------------------- patch properties

fn check_patch(body: &Body, patch: &Patch, limits: &Limits) {
    let key = fuzz_key();
    let value = patch.value();
    let prepared = patch.prepare(&key, limits);
    let patch_depth = nesting(value);
    let patch_bytes = compact_len(value);
    if patch_depth > limits.max_depth + 2 || patch_bytes > limits.max_body_bytes {
        let limit = if patch_depth > limits.max_depth + 2 {
            LimitKind::Depth
        } else {
            LimitKind::Size
        };
        match prepared {
            Err(Error::LimitExceeded {
                key: k,
                what: "patch",
                limit: l,
                ..
            }) if k == key && l == limit => {}
            other => panic!(
                "a patch of depth {patch_depth} and {patch_bytes} bytes under {limits:?} \
                 must exceed the {limit} limit, got {other:?}"
            ),
        }
        return;
    }
    let prepared = match (patch, prepared) {
        (Patch::Merge(Value::Object(_)), Ok(prepared)) => prepared,
        (Patch::Merge(_), Err(Error::InvalidPatch { key: k, .. })) if k == key => return,
        (Patch::Json(_), Ok(prepared)) if value.is_array() => prepared,
        (Patch::Json(_), Err(Error::InvalidPatch { key: k, .. })) if k == key => return,
        (patch, other) => panic!("prepare({patch:?}) under {limits:?} gave {other:?}"),
    };

    let before = body.clone();
    let result = prepared.apply(&key, body, limits);
    assert_eq!(
        ordered_text(body),
        ordered_text(&before),
        "apply changed its input"
    );
    let retried = prepared.apply(&key, body, limits);
    match (&result, &retried) {
        (Ok(a), Ok(b)) => assert_eq!(ordered_text(a), ordered_text(b), "a retry differs"),
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "a retry differs"),
        _ => panic!("a retry differs: {result:?} then {retried:?}"),
    }

    match &result {
        Ok(out) => {
            let depth = nesting_of_body(out);
            let bytes = compact_len(out);
            assert!(
                depth <= limits.max_depth && bytes <= limits.max_body_bytes,
                "accepted a result of depth {depth} and {bytes} bytes under {limits:?}"
            );
            check_relative_order(body, out, "");
        }
        Err(Error::LimitExceeded {
            key: k,
            what: "body",
            ..
        }) if *k == key => {}
        Err(Error::InvalidPatch { key: k, .. } | Error::PatchTestFailed { key: k, .. })
            if *k == key && matches!(patch, Patch::Json(_)) => {}
        Err(other) => panic!("apply({patch:?}) gave an unexpected error: {other:?}"),
    }

    match patch {
        Patch::Merge(patch_value) => {
            check_merge_against_model(body, patch_value, limits, &result);
        }
        Patch::Json(ops) => {
            let only_tests = ops
                .as_array()
                .is_some_and(|ops| ops.iter().all(|op| op["op"] == "test"));
            if let (true, Ok(out)) = (only_tests, &result) {
                assert_eq!(
                    ordered_text(out),
                    ordered_text(body),
                    "tests changed the body"
                );
            }
        }
    }
}

fn check_merge_against_model(body: &Body, patch: &Value, limits: &Limits, result: &Result<Body>) {
    let Value::Object(expected) = merge_model(Some(&Value::Object(body.clone())), patch) else {
        panic!("the merge model returned a non-mapping for a mapping patch");
    };
    let depth = nesting_of_body(&expected);
    let bytes = compact_len(&expected);
    let within = depth <= limits.max_depth && bytes <= limits.max_body_bytes;
    match result {
        Ok(out) => {
            assert!(within, "accepted a merge the model puts over {limits:?}");
            assert_eq!(out, &expected, "merge result differs from RFC 7396");
            // Old keys keep their places; new keys follow in patch order.
            assert_eq!(
                ordered_text(out),
                ordered_text(&expected),
                "merge result has another key order"
            );
        }
        Err(Error::LimitExceeded { limit, .. }) => {
            let over = if depth > limits.max_depth {
                LimitKind::Depth
            } else {
                LimitKind::Size
            };
            assert!(
                !within && *limit == over,
                "refused a merge as over the {limit} limit, the model gives depth {depth} and \
                 {bytes} bytes under {limits:?}"
            );
        }
        Err(other) => panic!("a mapping merge patch failed: {other:?}"),
    }
}

/// RFC 7396 `MergePatch(Target, Patch)`, keeping key order: kept keys stay
/// in place, new keys are appended in the order the patch names them.
fn merge_model(target: Option<&Value>, patch: &Value) -> Value {
    let Value::Object(patch) = patch else {
        return patch.clone();
    };
    let mut out = match target {
        Some(Value::Object(target)) => target.clone(),
        _ => Body::new(),
    };
    for (key, value) in patch {
        if value.is_null() {
            // Rebuilt rather than `remove`d: that swaps the last key in.
            out = out.into_iter().filter(|(k, _)| k != key).collect();
        } else {
            let merged = merge_model(out.get(key), value);
            match out.get_mut(key) {
                Some(slot) => *slot = merged,
                None => {
                    out.insert(key.clone(), merged);
                }
            }
        }
    }
    Value::Object(out)
}

/// Keys found in both `old` and `new` appear in the same relative order,
/// at every level where both hold a mapping under the same path.
fn check_relative_order(old: &Body, new: &Body, path: &str) {
    let old_kept: Vec<&String> = old.keys().filter(|k| new.contains_key(*k)).collect();
    let new_kept: Vec<&String> = new.keys().filter(|k| old.contains_key(*k)).collect();
    assert_eq!(old_kept, new_kept, "keys at {path:?} changed order");
    for key in old_kept {
        if let (Some(Value::Object(o)), Some(Value::Object(n))) = (old.get(key), new.get(key)) {
            check_relative_order(o, n, &format!("{path}/{key}"));
        }
    }
}

/// Nesting of containers, counting `value` itself when it is one; computed
/// without recursion.
fn nesting(value: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 1usize)];
    while let Some((value, level)) = stack.pop() {
        let children: Vec<&Value> = match value {
            Value::Object(map) => map.values().collect(),
            Value::Array(items) => items.iter().collect(),
            _ => continue,
        };
        deepest = deepest.max(level);
        stack.extend(children.into_iter().map(|child| (child, level + 1)));
    }
    deepest
}

fn nesting_of_body(body: &Body) -> usize {
    1 + body.values().map(nesting).max().unwrap_or(0)
}

fn compact_len<T: serde::Serialize + ?Sized>(value: &T) -> usize {
    serde_json::to_vec(value).map_or(usize::MAX, |text| text.len())
}

/// Compact JSON text, which (unlike `==` on maps) sees key order.
fn ordered_text(body: &Body) -> String {
    serde_json::to_string(body).unwrap_or_default()
}

fn fuzz_key() -> Key {
    // A literal that satisfies the rules; a failure here is a bug in them.
    Key::new("fuzz", "case").unwrap_or_else(|e| panic!("the fuzz key is refused: {e}"))
}

// ---------------------------------------------------------- name properties

/// The key rule, written without revstore's helpers or byte tricks.
fn name_model(s: &str, collection: bool) -> bool {
    let letter_or_digit = |c: char| matches!(c, 'A'..='Z' | 'a'..='z' | '0'..='9');
    let mut chars = s.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    // The first class has no `_`, which also keeps collections clear of the
    // reserved prefix; the model says so separately to mirror the contract.
    let first_ok = letter_or_digit(first) && !(collection && first == '_');
    first_ok
        && chars.all(|c| letter_or_digit(c) || matches!(c, '_' | '.' | '-'))
        && s.chars().count() <= 128
        && s != "."
        && s != ".."
        && !s.ends_with('.')
}

/// Safe as one path component on Linux, macOS and Windows: printable ASCII
/// without separators or wildcards, within the 255-byte limit common to
/// their file systems.
fn assert_file_name_safe(s: &str) {
    assert!(
        !s.is_empty()
            && s.len() <= 255
            && s != "."
            && s != ".."
            && !s.ends_with('.')
            && s.chars().all(|c| c.is_ascii_graphic()
                && !matches!(c, '/' | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|')),
        "accepted {s:?}, which is unsafe as a file name"
    );
}

fn check_single_name(s: &str) {
    for (kind, collection) in [(NameKind::Name, false), (NameKind::Collection, true)] {
        let got = validate_name(kind, s);
        match (&got, name_model(s, collection)) {
            (Ok(()), true) => assert_file_name_safe(s),
            (Err(Error::InvalidName { kind: k, name, .. }), false) if *k == kind && name == s => {}
            (got, expected) => {
                panic!("validate_name({kind:?}, {s:?}) gave {got:?}, the model says {expected}")
            }
        }
    }
    assert_eq!(
        validate_collection(s).is_ok(),
        validate_name(NameKind::Collection, s).is_ok(),
        "validate_collection({s:?}) disagrees with validate_name"
    );
}

fn check_key(collection: &str, name: &str) {
    let collection_ok = name_model(collection, true);
    let name_ok = name_model(name, false);
    match Key::new(collection, name) {
        Ok(key) => {
            assert!(
                collection_ok && name_ok,
                "Key::new({collection:?}, {name:?}) accepted"
            );
            assert_eq!(key.collection(), collection);
            assert_eq!(key.name(), name);
            assert_eq!(key.to_string(), format!("{collection}/{name}"));
            assert!(!key.is_reserved());
            assert_file_name_safe(key.collection());
            assert_file_name_safe(key.name());
        }
        Err(Error::InvalidName { kind, name: n, .. }) => {
            let expected = if !collection_ok {
                (NameKind::Collection, collection)
            } else if !name_ok {
                (NameKind::Name, name)
            } else {
                panic!("Key::new({collection:?}, {name:?}) refused a valid key");
            };
            assert_eq!((kind, n.as_str()), expected, "the error names another part");
        }
        Err(other) => panic!("Key::new({collection:?}, {name:?}) gave {other:?}"),
    }
}

fn check_reserved_key(collection: &str, name: &str) {
    // A reserved collection is `_` plus a valid name, 128 bytes in all.
    let collection_ok = collection.len() <= 128
        && collection
            .strip_prefix('_')
            .is_some_and(|rest| name_model(rest, true));
    let name_ok = name_model(name, false);
    match Key::new_reserved(collection, name) {
        Ok(key) => {
            assert!(
                collection_ok && name_ok,
                "Key::new_reserved({collection:?}, {name:?}) accepted"
            );
            assert!(key.is_reserved());
            assert_eq!(key.collection(), collection);
            assert_eq!(key.name(), name);
            assert_file_name_safe(key.collection());
            assert_file_name_safe(key.name());
        }
        Err(Error::InvalidName { kind, name: n, .. }) => {
            let expected = if !collection_ok {
                (NameKind::Collection, collection)
            } else if !name_ok {
                (NameKind::Name, name)
            } else {
                panic!("Key::new_reserved({collection:?}, {name:?}) refused a valid key");
            };
            assert_eq!((kind, n.as_str()), expected, "the error names another part");
        }
        Err(other) => panic!("Key::new_reserved({collection:?}, {name:?}) gave {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::soak_factor;
    use serde_json::json;
    use std::path::PathBuf;

    fn corpus(target: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus")
            .join(target)
    }

    fn random_count() -> usize {
        3000 * soak_factor() as usize
    }

    #[test]
    fn patch_corpus_replays() {
        let ran = replay_corpus(&corpus("patch"), patch_case).unwrap();
        assert!(ran > 0, "the patch corpus is empty");
    }

    #[test]
    fn names_corpus_replays() {
        let ran = replay_corpus(&corpus("names"), names_case).unwrap();
        assert!(ran > 0, "the names corpus is empty");
    }

    #[test]
    fn patch_random_cases() {
        random_cases(patch_case, random_count(), 0x5EED_0001);
    }

    #[test]
    fn names_random_cases() {
        random_cases(names_case, random_count(), 0x5EED_0002);
    }

    #[test]
    fn merge_model_follows_rfc7396_appendix_a() {
        let cases = [
            (json!({"a":"b"}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"b"}), json!({"b":"c"}), json!({"a":"b","b":"c"})),
            (json!({"a":"b"}), json!({"a":null}), json!({})),
            (
                json!({"a":"b","b":"c"}),
                json!({"a":null}),
                json!({"b":"c"}),
            ),
            (json!({"a":["b"]}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"c"}), json!({"a":["b"]}), json!({"a":["b"]})),
            (
                json!({"a":{"b":"c"}}),
                json!({"a":{"b":"d","c":null}}),
                json!({"a":{"b":"d"}}),
            ),
            (json!({"a":[{"b":"c"}]}), json!({"a":[1]}), json!({"a":[1]})),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a":"b"}), json!(["c"]), json!(["c"])),
            (json!({"a":"foo"}), json!(null), json!(null)),
            (json!({"a":"foo"}), json!("bar"), json!("bar")),
            (json!({"e":null}), json!({"a":1}), json!({"e":null,"a":1})),
            (json!([1, 2]), json!({"a":"b","c":null}), json!({"a":"b"})),
            (
                json!({}),
                json!({"a":{"bb":{"ccc":null}}}),
                json!({"a":{"bb":{}}}),
            ),
        ];
        for (target, patch, expected) in cases {
            assert_eq!(merge_model(Some(&target), &patch), expected, "{patch}");
        }
        let Value::Object(out) = merge_model(
            Some(&json!({"a":1,"b":2,"c":3})),
            &json!({"a":null,"d":4,"b":0}),
        ) else {
            panic!("not a mapping");
        };
        assert_eq!(out.keys().collect::<Vec<_>>(), ["b", "c", "d"]);
    }

    #[test]
    fn merge_check_catches_wrong_values_and_order() {
        let Value::Object(body) = json!({"a": 1, "b": 2}) else {
            panic!("not a mapping");
        };
        let patch = json!({"c": 3});
        let limits = Limits::default();
        let Value::Object(right) = json!({"a": 1, "b": 2, "c": 3}) else {
            panic!("not a mapping");
        };
        check_merge_against_model(&body, &patch, &limits, &Ok(right));
        for wrong in [json!({"a": 1, "b": 2}), json!({"b": 2, "a": 1, "c": 3})] {
            let Value::Object(wrong) = wrong else {
                panic!("not a mapping");
            };
            let caught = panic::catch_unwind(|| {
                check_merge_against_model(&body, &patch, &limits, &Ok(wrong));
            });
            assert!(caught.is_err());
        }
        let refused = Err(Error::LimitExceeded {
            key: fuzz_key(),
            what: "body",
            limit: LimitKind::Size,
            max: 1,
        });
        let caught = panic::catch_unwind(AssertUnwindSafe(|| {
            check_merge_against_model(&body, &patch, &limits, &refused);
        }));
        assert!(
            caught.is_err(),
            "a refusal within the limits must be caught"
        );
    }

    #[test]
    fn order_check_sees_nested_swaps() {
        let Value::Object(old) = json!({"m": {"x": 0, "y": 0}, "k": 0}) else {
            panic!("not a mapping");
        };
        let Value::Object(new) = json!({"m": {"y": 0, "x": 0}, "k": 0}) else {
            panic!("not a mapping");
        };
        check_relative_order(&old, &old, "");
        assert!(panic::catch_unwind(|| check_relative_order(&old, &new, "")).is_err());
    }

    #[test]
    fn name_model_follows_the_rule() {
        for ok in ["a", "Z9", "v1.2-beta_3", "0", &"x".repeat(128)] {
            assert!(name_model(ok, false) && name_model(ok, true), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a.",
            "-a",
            ".a",
            "_a",
            "a/b",
            "a\\b",
            "a\0b",
            "é",
            "a b",
            &"x".repeat(129),
        ] {
            assert!(!name_model(bad, false) && !name_model(bad, true), "{bad:?}");
        }
    }

    #[test]
    fn any_bytes_make_a_case() {
        for data in [
            &b""[..],
            b"\xff\xfe",
            b"{}",
            b"{} null",
            b"[1] {}",
            b"\x01\x04\x07",
        ] {
            patch_case(data);
            names_case(data);
        }
        let (body, patch) = decode_patch_input(b"{\"a\":1} {\"a\":null}");
        assert_eq!(Value::Object(body), json!({"a":1}));
        assert_eq!(patch, json!({"a":null}));
        let (_, patch) = decode_patch_input(b"\x01\x00\x03\x04\x01\x00\x05\x02\x01");
        assert!(patch.is_array(), "odd selectors make JSON Patches");
    }

    #[test]
    fn small_limits_are_reached() {
        let deep = json!({"a":{"b":{"c":{"d":{"e":1}}}}});
        let text = format!("{{}} {deep}");
        patch_case(text.as_bytes());
        let key = fuzz_key();
        let err = Patch::Merge(deep)
            .prepare(&key, &SMALL_LIMITS)
            .and_then(|p| p.apply(&key, &Body::new(), &SMALL_LIMITS));
        assert!(matches!(
            err,
            Err(Error::LimitExceeded {
                limit: LimitKind::Depth,
                ..
            })
        ));
    }

    /// Each `copy` of the root doubles the document; the engine checks the
    /// limits after every copy, so 40 of them (once enough to exhaust
    /// memory) are refused at the size limit.
    #[test]
    fn root_copies_stop_at_the_size_limit() {
        let ops: Vec<String> = (0..40)
            .map(|i| format!(r#"{{"op":"copy","from":"","path":"/{i}"}}"#))
            .collect();
        let input = format!(r#"{{"s":"{}"}} [{}]"#, "x".repeat(200), ops.join(","));
        let (body, patch) = decode_patch_input(input.as_bytes());
        let key = fuzz_key();
        let limits = Limits::default();
        let result = Patch::Json(patch)
            .prepare(&key, &limits)
            .and_then(|p| p.apply(&key, &body, &limits));
        assert!(
            matches!(result, Err(Error::LimitExceeded { .. })),
            "{result:?}"
        );
        patch_case(input.as_bytes());
    }

    #[test]
    fn replay_names_the_failing_file() {
        let dir = std::env::temp_dir().join(format!("revstore-replay-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("good"), b"ok").unwrap();
        std::fs::write(dir.join("bad"), b"boom").unwrap();
        let ran = replay_corpus(&dir, |data| assert!(data == b"ok" || data == b"boom")).unwrap();
        assert_eq!(ran, 2);
        let outcome = panic::catch_unwind(|| replay_corpus(&dir, |data| assert_ne!(data, b"boom")));
        std::fs::remove_dir_all(&dir).unwrap();
        let message = panic_message(&*outcome.unwrap_err());
        assert!(message.contains("bad"), "{message}");
        assert!(matches!(
            replay_corpus(&dir.join("missing"), |_| {}),
            Err(Error::Io { .. })
        ));
    }

    #[test]
    fn random_cases_report_the_input() {
        let outcome = panic::catch_unwind(|| random_cases(|data| assert!(data.len() < 30), 500, 7));
        let message = panic_message(&*outcome.unwrap_err());
        assert!(
            message.contains("seed 0x7") && message.contains("bytes ["),
            "{message}"
        );
    }
}
