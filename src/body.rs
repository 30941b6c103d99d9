//! Bodies, documents and the limits every stored value obeys.

use std::io;
use std::sync::Arc;

use serde_json::Value;

use crate::error::{Error, LimitKind, Result};
use crate::key::Key;

/// A document body: a mapping with string keys whose order is preserved.
pub type Body = serde_json::Map<String, Value>;

/// A live document as read or written: its body and revision.
///
/// The body is shared copy-on-write with the store: a read hands out the
/// body a backend's read cache holds (and a write the body it committed)
/// without copying it, so cloning a document is cheap too. Read it through
/// `Deref` (`doc.body["name"]`, `doc.body.get("name")`). A shared body is
/// immutable: [`Arc::make_mut`]`(&mut doc.body)` copies it before the
/// first change whenever the store or another reader still holds it, so
/// changing your document never alters what the store or other readers
/// see; [`Arc::unwrap_or_clone`] takes a body of your own.
///
/// ```
/// use std::sync::Arc;
/// use revstore::{MemoryBackend, Store};
/// use serde_json::json;
///
/// # fn main() -> revstore::Result<()> {
/// let store = Store::open(MemoryBackend::new());
/// store.create("c", "d", json!({"n": 1}))?;
/// let mut doc = store.get("c", "d")?.expect("just created");
/// assert_eq!(doc.body["n"], 1);
/// Arc::make_mut(&mut doc.body).insert("n".into(), json!(2));
/// assert_eq!(doc.body["n"], 2);
/// // The store's body is untouched.
/// assert_eq!(store.get("c", "d")?.expect("still there").body["n"], 1);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// Revision of the write that produced this body.
    pub revision: u64,
    /// The body, shared; see the type's documentation.
    pub body: Arc<Body>,
}

/// A typed document from [`Store::get_as`](crate::Store::get_as).
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    /// Revision of the write that produced this value.
    pub revision: u64,
    /// The body, deserialized.
    pub value: T,
}

/// Bounds on the values revstore accepts. Exceeding one is
/// [`Error::LimitExceeded`] and changes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Deepest nesting of mappings and sequences, counting the body's own
    /// mapping as 1 (default 64).
    pub max_depth: usize,
    /// Largest body, measured as compact JSON, in bytes (default 8 MiB).
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 64,
            max_body_bytes: 8 << 20,
        }
    }
}

impl Limits {
    /// Checks that `value` is a mapping within the limits and returns it as
    /// a body.
    ///
    /// # Errors
    /// [`Error::InvalidBody`] when it is not a mapping,
    /// [`Error::LimitExceeded`] when it is too deep or too large.
    pub fn check_value(&self, key: &Key, value: Value) -> Result<Body> {
        match value {
            Value::Object(body) => match self.check_body(key, &body) {
                Ok(()) => Ok(body),
                Err(e) => {
                    dispose(Value::Object(body));
                    Err(e)
                }
            },
            other => Err(Error::InvalidBody {
                key: key.clone(),
                reason: format!(
                    "the top level must be a mapping, not {}",
                    value_kind(&other)
                ),
            }),
        }
    }

    /// Checks that a body is within the limits.
    ///
    /// # Errors
    /// [`Error::LimitExceeded`] naming the key and the limit.
    pub fn check_body(&self, key: &Key, body: &Body) -> Result<()> {
        // Depth first, without recursion: a value built in memory may be
        // arbitrarily deep and must not overflow the stack here.
        let mut stack: Vec<(&Value, usize)> = body.values().map(|v| (v, 1)).collect();
        if self.max_depth == 0 {
            return Err(self.exceeded(key, "body", LimitKind::Depth));
        }
        let bound = object_overhead(body).saturating_add(
            check_depth(&mut stack, self.max_depth)
                .map_err(|()| self.exceeded(key, "body", LimitKind::Depth))?,
        );
        if bound > self.max_body_bytes
            && encoded_len(body, self.max_body_bytes) > self.max_body_bytes
        {
            return Err(self.exceeded(key, "body", LimitKind::Size));
        }
        Ok(())
    }

    /// Checks a patch document (merge patch or JSON Patch array) against the
    /// limits, allowing the two extra levels a JSON Patch operation adds.
    ///
    /// # Errors
    /// [`Error::LimitExceeded`] naming the key.
    pub fn check_patch(&self, key: &Key, patch: &Value) -> Result<()> {
        let mut stack = vec![(patch, 0usize)];
        let bound = check_depth(&mut stack, self.max_depth.saturating_add(2))
            .map_err(|()| self.exceeded(key, "patch", LimitKind::Depth))?;
        if bound > self.max_body_bytes
            && encoded_len(patch, self.max_body_bytes) > self.max_body_bytes
        {
            return Err(self.exceeded(key, "patch", LimitKind::Size));
        }
        Ok(())
    }

    /// Checks an intermediate result of a patch (any value) against the
    /// body limits.
    ///
    /// # Errors
    /// [`Error::LimitExceeded`] naming the key.
    pub(crate) fn check_result(&self, key: &Key, value: &Value) -> Result<()> {
        let mut stack = vec![(value, 0usize)];
        let bound = check_depth(&mut stack, self.max_depth)
            .map_err(|()| self.exceeded(key, "body", LimitKind::Depth))?;
        if bound > self.max_body_bytes
            && encoded_len(value, self.max_body_bytes) > self.max_body_bytes
        {
            return Err(self.exceeded(key, "body", LimitKind::Size));
        }
        Ok(())
    }

    fn exceeded(&self, key: &Key, what: &'static str, limit: LimitKind) -> Error {
        Error::LimitExceeded {
            key: key.clone(),
            what,
            limit,
            max: match limit {
                LimitKind::Depth => self.max_depth,
                LimitKind::Size => self.max_body_bytes,
            },
        }
    }
}

/// Walks `stack` (values with the depth of their container), fails if a
/// container sits deeper than `max`, and returns an upper bound on the
/// compact JSON length of the values walked.
///
/// The bound lets the common case (a body far below the size limit) skip
/// encoding it just to measure it: only a body whose bound exceeds the limit
/// is measured exactly.
fn check_depth(stack: &mut Vec<(&Value, usize)>, max: usize) -> Result<usize, ()> {
    let mut bound = 0usize;
    while let Some((value, depth)) = stack.pop() {
        let inner = depth + 1;
        match value {
            Value::Object(map) => {
                if inner > max {
                    return Err(());
                }
                bound = bound.saturating_add(object_overhead(map));
                stack.extend(map.values().map(|child| (child, inner)));
            }
            Value::Array(items) => {
                if inner > max {
                    return Err(());
                }
                // Brackets and a comma per item.
                bound = bound.saturating_add(2 + items.len());
                stack.extend(items.iter().map(|child| (child, inner)));
            }
            Value::String(text) => bound = bound.saturating_add(string_bound(text)),
            // The longest number serde_json writes: a negative f64 with a
            // 17-digit mantissa and a three-digit exponent is 24 bytes.
            Value::Number(_) => bound = bound.saturating_add(24),
            Value::Bool(_) | Value::Null => bound = bound.saturating_add(5),
        }
    }
    Ok(bound)
}

/// Upper bound on the JSON length of a mapping without its values: braces,
/// and per entry the quoted key, a colon and a comma.
fn object_overhead(map: &Body) -> usize {
    map.keys().fold(2usize, |sum, k| {
        sum.saturating_add(string_bound(k)).saturating_add(2)
    })
}

/// Upper bound on a quoted JSON string: every byte may become a six-byte
/// `\u00XX` escape.
fn string_bound(text: &str) -> usize {
    text.len().saturating_mul(6).saturating_add(2)
}

/// The compact JSON length of a depth-checked value, counting at most a
/// little past `cap` so a huge value is not encoded in full.
fn encoded_len<T: serde::Serialize + ?Sized>(value: &T, cap: usize) -> usize {
    struct Counter {
        len: usize,
        cap: usize,
    }
    impl io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.len += buf.len();
            if self.len > self.cap {
                // Stop early: the value is too large either way.
                return Err(io::Error::other("over the size limit"));
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter { len: 0, cap };
    // The only error the writer produces is "over the cap"; serializing a
    // serde_json value cannot fail otherwise.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.len
}

/// Drops a value without recursion. serde_json's own drop recurses once per
/// level, so a refused 100 000-level value would overflow the stack.
pub(crate) fn dispose(value: Value) {
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(map) => stack.extend(map.into_iter().map(|(_, v)| v)),
            Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
}

/// A short word for a JSON value's type, for messages.
pub fn value_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a sequence",
        Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key() -> Key {
        Key::new("c", "n").unwrap()
    }

    fn nested(depth: usize) -> Value {
        let mut v = json!(1);
        for _ in 0..depth {
            v = json!({ "a": v });
        }
        v
    }

    #[test]
    fn depth_counts_the_body_as_one() {
        let limits = Limits::default();
        // nested(64) is 64 mappings deep, including the body itself.
        assert!(limits.check_value(&key(), nested(64)).is_ok());
        assert!(matches!(
            limits.check_value(&key(), nested(65)),
            Err(Error::LimitExceeded {
                limit: LimitKind::Depth,
                ..
            })
        ));
    }

    #[test]
    fn very_deep_values_do_not_overflow() {
        let limits = Limits::default();
        let mut v = json!(null);
        for _ in 0..100_000 {
            v = Value::Array(vec![v]);
        }
        let mut top = Body::new();
        top.insert("a".into(), v);
        let deep = Value::Object(top);
        assert!(limits.check_patch(&key(), &deep).is_err());
        assert!(limits.check_value(&key(), deep).is_err());
    }

    #[test]
    fn size_limit() {
        let limits = Limits {
            max_depth: 64,
            max_body_bytes: 20,
        };
        assert!(limits.check_value(&key(), json!({"a": "0123456"})).is_ok());
        assert!(matches!(
            limits.check_value(&key(), json!({"a": "0123456789012345"})),
            Err(Error::LimitExceeded {
                limit: LimitKind::Size,
                max: 20,
                ..
            })
        ));
    }

    #[test]
    fn non_mappings_are_refused() {
        for v in [json!(1), json!("x"), json!([1]), json!(null), json!(true)] {
            assert!(matches!(
                Limits::default().check_value(&key(), v),
                Err(Error::InvalidBody { .. })
            ));
        }
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            any::<String>().prop_map(Value::String),
            // Control characters and quotes: the worst escaping cases.
            "[\\x00-\\x1f\"\\\\]{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::vec((any::<String>(), inner), 0..6)
                    .prop_map(|entries| Value::Object(entries.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        /// The cheap size bound must never be below the real size, or a body
        /// over the limit would be accepted unmeasured.
        #[test]
        fn the_size_bound_is_never_below_the_encoded_length(values in proptest::collection::vec(json_value(), 0..6)) {
            let body: Body = values.into_iter().enumerate().map(|(i, v)| (format!("k{i}"), v)).collect();
            let mut stack: Vec<(&Value, usize)> = body.values().map(|v| (v, 1)).collect();
            let bound = object_overhead(&body) + check_depth(&mut stack, usize::MAX).unwrap();
            let exact = serde_json::to_vec(&body).unwrap().len();
            proptest::prop_assert!(bound >= exact, "bound {} < exact {}", bound, exact);
            // And the limit check agrees with the exact length at the edge.
            let at = Limits { max_depth: 64, max_body_bytes: exact };
            proptest::prop_assert!(at.check_body(&key(), &body).is_ok());
            if exact > 0 {
                let below = Limits { max_depth: 64, max_body_bytes: exact - 1 };
                proptest::prop_assert!(below.check_body(&key(), &body).is_err());
            }
        }
    }
}
