//! Patches: RFC 7396 merge patches and RFC 6902 JSON Patches.
//!
//! The algorithms are the `json-patch` crate's; this module adds what a
//! store needs around them: parsing with errors that name the key, limits
//! on the patch and on the result, and the rule that a body stays a mapping.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::body::{value_kind, Body, Limits};
use crate::error::{Error, Result};
use crate::key::Key;

/// A change to apply to the current body of a document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "patch", rename_all = "snake_case")]
pub enum Patch {
    /// An RFC 7396 merge patch: a mapping whose keys are set, `null` removes
    /// a key, nested mappings merge recursively, sequences are replaced.
    Merge(Value),
    /// An RFC 6902 JSON Patch: a sequence of `add`, `remove`, `replace`,
    /// `move`, `copy` and `test` operations, applied all or nothing.
    Json(Value),
}

impl Patch {
    /// The patch document as given.
    pub fn value(&self) -> &Value {
        match self {
            Patch::Merge(v) | Patch::Json(v) => v,
        }
    }

    /// Parses and checks the patch without applying it.
    ///
    /// # Errors
    /// [`Error::InvalidPatch`] or [`Error::LimitExceeded`] naming `key`.
    pub fn prepare(&self, key: &Key, limits: &Limits) -> Result<PreparedPatch> {
        limits.check_patch(key, self.value())?;
        match self {
            Patch::Merge(v) => match v {
                Value::Object(_) => Ok(PreparedPatch::Merge(v.clone())),
                other => Err(Error::InvalidPatch {
                    key: key.clone(),
                    reason: format!(
                        "a merge patch must be a mapping, not {} (it would replace the whole body)",
                        value_kind(other)
                    ),
                }),
            },
            Patch::Json(v) => {
                let ops: json_patch::Patch =
                    serde_json::from_value(v.clone()).map_err(|e| Error::InvalidPatch {
                        key: key.clone(),
                        reason: format!("not an RFC 6902 JSON Patch: {e}"),
                    })?;
                Ok(PreparedPatch::Json(ops))
            }
        }
    }
}

/// A parsed, limit-checked patch, ready to apply to bodies (again and again
/// when a write is retried).
#[derive(Debug, Clone)]
pub enum PreparedPatch {
    /// A merge patch (always a mapping).
    Merge(Value),
    /// A parsed JSON Patch.
    Json(json_patch::Patch),
}

impl PreparedPatch {
    /// Applies the patch to a copy of `body` and returns the new body,
    /// checked against `limits`.
    ///
    /// # Errors
    /// [`Error::PatchTestFailed`] when a `test` operation does not hold,
    /// [`Error::InvalidPatch`] when an operation cannot apply (a missing
    /// path, an out-of-range index) or the result is not a mapping,
    /// [`Error::LimitExceeded`] when the result is too deep or too large.
    pub fn apply(&self, key: &Key, body: &Body, limits: &Limits) -> Result<Body> {
        let mut doc = Value::Object(body.clone());
        match self {
            PreparedPatch::Merge(patch) => json_patch::merge(&mut doc, patch),
            PreparedPatch::Json(ops) => {
                // Apply one operation at a time: a `copy` can double the
                // document, so 30 of them in a tiny patch would exhaust
                // memory before the final check. The working copy is
                // discarded on error, so the crate's undo log (and its
                // `unreachable!`) is not needed.
                for (index, op) in ops.0.iter().enumerate() {
                    json_patch::patch_unsafe(&mut doc, std::slice::from_ref(op)).map_err(|e| {
                        match e.kind {
                            json_patch::PatchErrorKind::TestFailed => Error::PatchTestFailed {
                                key: key.clone(),
                                path: e.path.to_string(),
                                reason: format!("operation {index} found a different value"),
                            },
                            _ => Error::InvalidPatch {
                                key: key.clone(),
                                reason: format!("operation {index}: {}", e.kind),
                            },
                        }
                    })?;
                    if matches!(op, json_patch::PatchOperation::Copy(_)) {
                        limits.check_result(key, &doc)?;
                    }
                }
            }
        }
        match doc {
            Value::Object(mut out) => {
                let hint = match self {
                    PreparedPatch::Merge(Value::Object(p)) => Some(p),
                    _ => None,
                };
                restore_order(body, &mut out, hint);
                limits.check_body(key, &out)?;
                Ok(out)
            }
            other => Err(Error::InvalidPatch {
                key: key.clone(),
                reason: format!(
                    "the patched body would be {}, but a body must be a mapping",
                    value_kind(&other)
                ),
            }),
        }
    }
}

/// Puts the keys of `new` back in the order a reader expects: keys that
/// were in `old` keep their old places, added keys follow in the order the
/// merge patch (`hint`) names them, or else in the order they now stand.
///
/// `serde_json`'s ordered map removes keys by swapping the last key into the
/// hole, so without this a patch that removes one key would shuffle the
/// others, and a hand-kept YAML file would come back reordered.
fn restore_order(old: &Body, new: &mut Body, hint: Option<&Body>) {
    if !in_order(old, new, hint) {
        reorder(old, new, hint);
    }
    for (k, v) in new.iter_mut() {
        let Value::Object(new_child) = v else {
            continue;
        };
        let Some(Value::Object(old_child)) = old.get(k) else {
            continue;
        };
        let child_hint = match hint {
            None => None,
            Some(h) => match h.get(k) {
                Some(Value::Object(child)) => Some(child),
                // A merge patch leaves the children it does not name
                // untouched (and replaces the ones it sets to a non-mapping
                // outright), so their order needs no repair.
                _ => continue,
            },
        };
        restore_order(old_child, new_child, child_hint);
    }
}

/// Whether `new`'s keys are already where they belong — old keys in their
/// old order, then new keys in the patch's order, then any other new key —
/// the usual case (a patch that removes nothing leaves every key in place),
/// checked in one pass without rebuilding anything.
fn in_order(old: &Body, new: &Body, hint: Option<&Body>) -> bool {
    // The usual case first, compared without hashing: every old key still
    // in its place at the front. The keys after them are then all new.
    if old.len() <= new.len() && old.keys().zip(new.keys()).all(|(o, n)| o == n) {
        let Some(hint) = hint else {
            return true;
        };
        let mut hint_keys = hint.keys();
        let mut past_hint = false;
        for k in new.keys().skip(old.len()) {
            if !hint.contains_key(k) {
                past_hint = true;
            } else if past_hint || !hint_keys.any(|h| h == k) {
                return false;
            }
        }
        return true;
    }
    let mut old_keys = old.keys();
    let mut hint_keys = hint.map(|h| h.keys());
    // 0: among the old keys, 1: among the patch's new keys, 2: the rest.
    let mut phase = 0;
    for k in new.keys() {
        if old.contains_key(k) {
            if phase > 0 {
                return false;
            }
            // Old keys passed over are gone from the new body, or come
            // later and exhaust the iterator: out of order.
            if !old_keys.any(|o| o == k) {
                return false;
            }
        } else if let (Some(h), Some(keys)) = (hint, hint_keys.as_mut()) {
            if !h.contains_key(k) {
                phase = 2;
                continue;
            }
            if phase > 1 {
                return false;
            }
            phase = 1;
            if !keys.any(|o| o == k) {
                return false;
            }
        } else {
            phase = 2;
        }
    }
    true
}

/// Sorts `new`'s entries into the order [`in_order`] describes.
fn reorder(old: &Body, new: &mut Body, hint: Option<&Body>) {
    let old_rank: std::collections::HashMap<&str, usize> = old
        .keys()
        .enumerate()
        .map(|(i, k)| (k.as_str(), i))
        .collect();
    let hint_rank: std::collections::HashMap<&str, usize> = hint
        .map(|h| h.keys().enumerate().map(|(i, k)| (k.as_str(), i)).collect())
        .unwrap_or_default();
    let mut entries: Vec<(usize, String, Value)> = std::mem::take(new)
        .into_iter()
        .enumerate()
        .map(|(pos, (k, v))| {
            let rank = match (old_rank.get(k.as_str()), hint_rank.get(k.as_str())) {
                (Some(&i), _) => i,
                (None, Some(&i)) => old.len() + i,
                (None, None) => old.len() + hint_rank.len() + pos,
            };
            (rank, k, v)
        })
        .collect();
    entries.sort_by_key(|(rank, _, _)| *rank);
    new.extend(entries.into_iter().map(|(_, k, v)| (k, v)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key() -> Key {
        Key::new("c", "n").unwrap()
    }

    fn apply(patch: Patch, body: Value) -> Result<Value> {
        let limits = Limits::default();
        let Value::Object(body) = body else { panic!() };
        patch
            .prepare(&key(), &limits)?
            .apply(&key(), &body, &limits)
            .map(Value::Object)
    }

    #[test]
    fn merge_rfc7396() {
        let out = apply(
            Patch::Merge(
                json!({"a": {"b": null, "c": 2}, "l": [1], "z": null, "n": {"x": null, "y": 1}}),
            ),
            json!({"z": 0, "a": {"b": 1, "d": 3}, "l": [0, 0]}),
        )
        .unwrap();
        assert_eq!(out, json!({"a": {"d": 3, "c": 2}, "l": [1], "n": {"y": 1}}));
        // key order: existing keys keep their place, new keys go last
        let keys: Vec<_> = out.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["a", "l", "n"]);
    }

    #[test]
    fn removing_keys_keeps_the_order_of_the_others() {
        let out = apply(
            Patch::Merge(json!({"c": 1, "d": 2, "a": null, "m": {"x": null, "q": 0}})),
            json!({"a": 0, "b": 0, "m": {"x": 0, "y": 0, "z": 0}, "e": 0}),
        )
        .unwrap();
        let keys: Vec<_> = out.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["b", "m", "e", "c", "d"]);
        let inner: Vec<_> = out["m"].as_object().unwrap().keys().cloned().collect();
        assert_eq!(inner, ["y", "z", "q"]);
        let out = apply(
            Patch::Json(json!([{"op": "remove", "path": "/a"}])),
            json!({"a": 0, "b": 0, "c": 0, "d": 0}),
        )
        .unwrap();
        let keys: Vec<_> = out.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["b", "c", "d"]);
    }

    #[test]
    fn repeated_copies_stop_at_the_size_limit() {
        let ops: Vec<Value> = (0..64)
            .map(|i| json!({"op": "copy", "from": "", "path": format!("/{i}")}))
            .collect();
        let result = apply(
            Patch::Json(Value::Array(ops)),
            json!({"s": "x".repeat(200)}),
        );
        assert!(
            matches!(result, Err(Error::LimitExceeded { .. })),
            "{:?}",
            result.map(|_| ())
        );
    }

    #[test]
    fn merge_must_be_a_mapping() {
        assert!(matches!(
            apply(Patch::Merge(json!([1])), json!({})),
            Err(Error::InvalidPatch { .. })
        ));
    }

    #[test]
    fn json_patch_ops_and_test() {
        let out = apply(
            Patch::Json(json!([
                {"op": "test", "path": "/a", "value": 1},
                {"op": "add", "path": "/l/-", "value": 9},
                {"op": "move", "from": "/a", "path": "/b"}
            ])),
            json!({"a": 1, "l": [1]}),
        )
        .unwrap();
        assert_eq!(out, json!({"l": [1, 9], "b": 1}));
        assert!(matches!(
            apply(
                Patch::Json(json!([{"op": "test", "path": "/a", "value": 2}])),
                json!({"a": 1})
            ),
            Err(Error::PatchTestFailed { path, .. }) if path == "/a"
        ));
        assert!(matches!(
            apply(
                Patch::Json(json!([{"op": "remove", "path": "/nope"}])),
                json!({"a": 1})
            ),
            Err(Error::InvalidPatch { .. })
        ));
        assert!(matches!(
            apply(Patch::Json(json!({"op": "add"})), json!({})),
            Err(Error::InvalidPatch { .. })
        ));
        assert!(matches!(
            apply(
                Patch::Json(json!([{"op": "replace", "path": "", "value": 3}])),
                json!({})
            ),
            Err(Error::InvalidPatch { .. })
        ));
    }

    /// The order repair as first written: always rebuild, at every level.
    fn reference_order(old: &Body, new: &mut Body, hint: Option<&Body>) {
        reorder(old, new, hint);
        for (k, v) in new.iter_mut() {
            if let (Some(Value::Object(old_child)), Value::Object(new_child)) = (old.get(k), v) {
                let child_hint = match hint.and_then(|h| h.get(k)) {
                    Some(Value::Object(h)) => Some(h),
                    _ => None,
                };
                reference_order(old_child, new_child, child_hint);
            }
        }
    }

    fn small_doc() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![Just(Value::Null), (0..3i64).prop_map(Value::from)];
        leaf.prop_recursive(3, 40, 5, |inner| {
            proptest::collection::vec(("[a-f]", inner), 0..5)
                .prop_map(|entries| Value::Object(entries.into_iter().collect()))
        })
    }

    proptest::proptest! {
        // Key shuffles that the hint check must catch need a removal behind
        // two added keys: rare, so more cases than the default.
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// The one-pass check must leave exactly the order the full rebuild
        /// gives, for merge patches (with their hint) and JSON Patches.
        #[test]
        fn the_fast_order_check_agrees_with_the_full_rebuild(
            old in small_doc(), patch in small_doc(), removals in proptest::collection::vec("[a-f]", 0..3)
        ) {
            let Value::Object(old) = old else { return Ok(()) };
            let limits = Limits::default();
            // Merge patch: the crate's merge, then both repairs.
            let mut merged = Value::Object(old.clone());
            json_patch::merge(&mut merged, &patch);
            if let (Value::Object(merged), Value::Object(hint)) = (merged, &patch) {
                let mut fast = merged.clone();
                restore_order(&old, &mut fast, Some(hint));
                let mut slow = merged;
                reference_order(&old, &mut slow, Some(hint));
                proptest::prop_assert_eq!(
                    serde_json::to_string(&fast).unwrap(),
                    serde_json::to_string(&slow).unwrap()
                );
            }
            // JSON Patch removing top-level keys (which shuffles the map).
            let ops: Vec<Value> = removals
                .iter()
                .filter(|k| old.contains_key(k.as_str()))
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .map(|k| serde_json::json!({"op": "remove", "path": format!("/{k}")}))
                .collect();
            let Ok(prepared) = Patch::Json(Value::Array(ops)).prepare(&key(), &limits) else {
                return Ok(());
            };
            if let Ok(out) = prepared.apply(&key(), &old, &limits) {
                let mut slow = out.clone();
                reference_order(&old, &mut slow, None);
                proptest::prop_assert_eq!(
                    serde_json::to_string(&out).unwrap(),
                    serde_json::to_string(&slow).unwrap()
                );
            }
        }
    }
}
