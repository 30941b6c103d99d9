//! The CLI's one YAML codec: reading bodies and patches given as YAML or
//! JSON text, and printing bodies as YAML. Every YAML conversion of the tool
//! goes through here, so the codec can be swapped in one place.

use serde_json::{Map, Number, Value};
use serde_yaml::Value as Yaml;

/// Why a text could not be read as a JSON-model value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} is not valid: {reason}")]
pub struct TextError {
    /// What the text was meant to be (`"body"`, `"patch"`).
    pub what: &'static str,
    /// What is wrong, with the JSON Pointer of the offending value where
    /// there is one.
    pub reason: String,
}

/// Parses YAML text (JSON is accepted too: YAML is its superset) into a
/// JSON-model value.
///
/// Refuses, rather than silently altering, anything the JSON model cannot
/// hold: NaN and infinite numbers, mapping keys that are not strings,
/// duplicate keys, YAML tags, and texts holding more than one document.
///
/// Text that is JSON is read by a strict JSON parser first, so that a JSON
/// number too large for a double (`1e400`) is refused rather than read the
/// way YAML reads it, as the string `"1e400"`.
///
/// # Errors
/// [`TextError`] naming `what` and, where it applies, the JSON Pointer of
/// the offending value or the line and column.
pub fn parse_value(text: &str, what: &'static str) -> Result<Value, TextError> {
    let fail = |reason: String| TextError { what, reason };
    match serde_json::from_str::<StrictJson>(text) {
        Ok(StrictJson(value)) => {
            check_json_integers(text).map_err(fail)?;
            return Ok(value);
        }
        // A duplicate key or an out-of-range number is an error in text
        // that is JSON up to that point; anything else may be YAML.
        Err(e) if e.is_data() || e.to_string().starts_with("number out of range") => {
            return Err(fail(e.to_string()))
        }
        Err(_) => {}
    }
    // Parsing straight into serde_json::Value would turn `.nan` into null
    // and stringify or reject keys inconsistently; going through the YAML
    // model lets every such value be refused with its location.
    let yaml: Yaml = serde_yaml::from_str(text).map_err(|e| fail(e.to_string()))?;
    convert(yaml, &mut String::new()).map_err(fail)
}

/// Refuses integers outside i64/u64 in JSON text. serde_json reads
/// `99999999999999999999` as the double 1e20 without a word, and the value
/// it hands over cannot tell it from a written `1e20`, so the text itself is
/// scanned: every number token outside strings that has neither fraction
/// nor exponent must fit.
///
/// # Errors
/// A message naming the integer.
pub fn check_json_integers(text: &str) -> Result<(), String> {
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut in_string = false;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            match b {
                b'\\' => i += 1,
                b'"' => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        match b {
            b'"' => {
                in_string = true;
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                i += 1;
                while i < bytes.len()
                    && matches!(bytes[i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
                {
                    i += 1;
                }
                let token = &text[start..i];
                let integer = !token.contains(['.', 'e', 'E']);
                if integer && token.parse::<i64>().is_err() && token.parse::<u64>().is_err() {
                    return Err(format!(
                        "the integer {token} does not fit in 64 bits (i64 or u64); \
                         write it as a string or a float"
                    ));
                }
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// A JSON value whose mappings may not repeat a key (serde_json would keep
/// the last one silently).
struct StrictJson(Value);

impl<'de> serde::Deserialize<'de> for StrictJson {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictJson)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::from(n))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::from(n))
    }

    fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<Value, E> {
        Number::from_f64(n)
            .map(Value::Number)
            .ok_or_else(|| E::custom(format!("the number {n} is not finite")))
    }

    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(StrictJson(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let StrictJson(v) = map.next_value()?;
            if out.contains_key(&key) {
                return Err(serde::de::Error::custom(format!("duplicate key {key:?}")));
            }
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

/// Prints a value as a YAML document (ending in a newline).
///
/// # Errors
/// The codec's error, as text; a JSON-model value has no unprintable
/// content, so this is not expected to fail.
pub fn to_yaml(value: &Value) -> Result<String, String> {
    serde_yaml::to_string(value).map_err(|e| e.to_string())
}

fn convert(yaml: Yaml, pointer: &mut String) -> Result<Value, String> {
    Ok(match yaml {
        Yaml::Null => Value::Null,
        Yaml::Bool(b) => Value::Bool(b),
        Yaml::String(s) => Value::String(s),
        Yaml::Number(n) => Value::Number(number(&n).ok_or_else(|| {
            format!(
                "the number {n} at {} is not finite; bodies hold only finite numbers",
                at(pointer)
            )
        })?),
        Yaml::Sequence(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                let len = pointer.len();
                pointer.push_str(&format!("/{i}"));
                out.push(convert(item, pointer)?);
                pointer.truncate(len);
            }
            Value::Array(out)
        }
        Yaml::Mapping(entries) => {
            let mut out = Map::with_capacity(entries.len());
            for (k, v) in entries {
                let Yaml::String(k) = k else {
                    return Err(format!(
                        "the mapping at {} has a key that is not a string ({}); quote it",
                        at(pointer),
                        describe_key(&k)
                    ));
                };
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&k.replace('~', "~0").replace('/', "~1"));
                let v = convert(v, pointer)?;
                pointer.truncate(len);
                out.insert(k, v);
            }
            Value::Object(out)
        }
        Yaml::Tagged(tagged) => {
            return Err(format!(
                "the value at {} has the YAML tag {}; tags are not part of the document model",
                at(pointer),
                tagged.tag
            ))
        }
    })
}

fn number(n: &serde_yaml::Number) -> Option<Number> {
    if let Some(u) = n.as_u64() {
        Some(Number::from(u))
    } else if let Some(i) = n.as_i64() {
        Some(Number::from(i))
    } else {
        n.as_f64().and_then(Number::from_f64)
    }
}

fn describe_key(key: &Yaml) -> String {
    match key {
        Yaml::Null => "null".to_owned(),
        Yaml::Bool(b) => format!("the boolean {b}"),
        Yaml::Number(n) => format!("the number {n}"),
        Yaml::Sequence(_) => "a sequence".to_owned(),
        Yaml::Mapping(_) => "a mapping".to_owned(),
        Yaml::Tagged(t) => format!("a value tagged {}", t.tag),
        Yaml::String(s) => format!("{s:?}"),
    }
}

fn at(pointer: &str) -> String {
    if pointer.is_empty() {
        "the top level".to_owned()
    } else {
        format!("{pointer:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(text: &str) -> Result<Value, TextError> {
        parse_value(text, "body")
    }

    #[test]
    fn yaml_and_json_both_parse_with_order_kept() {
        let v = parse("b: 1\na: [x, 2.5, true, null]\n").unwrap();
        assert_eq!(v, json!({"b": 1, "a": ["x", 2.5, true, null]}));
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["b", "a"]);
        let v =
            parse(r#"{"z": {"q": "a\/b\u00e9"}, "n": -3, "big": 18446744073709551615}"#).unwrap();
        assert_eq!(
            v,
            json!({"z": {"q": "a/bé"}, "n": -3, "big": 18446744073709551615u64})
        );
    }

    #[test]
    fn integers_beyond_64_bits_are_refused_not_rounded() {
        for text in [
            r#"{"a": 99999999999999999999}"#,
            r#"{"a": [-9223372036854775809]}"#,
            r#"{"s": "99999999999999999999", "b": 18446744073709551616}"#,
        ] {
            let err = parse(text).unwrap_err();
            assert!(
                err.reason.contains("does not fit in 64 bits"),
                "{text}: {err}"
            );
        }
        for text in [
            r#"{"a": 18446744073709551615, "b": -9223372036854775808}"#,
            r#"{"a": 1e20, "b": 1.5, "s": "99999999999999999999 \" 123456789012345678901"}"#,
        ] {
            assert!(parse(text).is_ok(), "{text}");
        }
    }

    #[test]
    fn non_finite_numbers_are_refused_with_their_location() {
        for text in ["a: .nan", "a: .inf", "a: -.inf", "{a: -.inf}"] {
            let err = parse(text).unwrap_err();
            assert!(err.reason.contains("\"/a\""), "{text}: {err}");
            assert!(err.reason.contains("not finite"), "{text}: {err}");
        }
        let err = parse("{\"a\": [1e400]}").unwrap_err();
        assert!(err.reason.contains("out of range"), "{err}");
        let err = parse("l: [1, {x~/: .nan}]").unwrap_err();
        assert!(err.reason.contains("\"/l/1/x~0~1\""), "{err}");
    }

    #[test]
    fn non_string_keys_and_tags_are_refused() {
        for (text, needle) in [
            ("1: a", "the number 1"),
            ("a: {true: 1}", "the boolean true"),
            ("~: 1", "null"),
            ("? [1]\n: 2", "a sequence"),
            ("a: !thing 1", "!thing"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.reason.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn malformed_text_and_duplicate_keys_are_errors() {
        assert!(parse("a: [1").is_err());
        assert!(parse("a: 1\na: 2").is_err());
        let err = parse(r#"{"a": {"b": 1, "b": 2}}"#).unwrap_err();
        assert!(err.reason.contains("duplicate key \"b\""), "{err}");
        assert!(parse("a: 1\n---\nb: 2").is_err());
        assert_eq!(parse("").unwrap(), Value::Null);
    }

    #[test]
    fn yaml_output_round_trips() {
        let v = json!({"s": "multi\nline", "n": 1.5, "t": "true", "e": {}, "l": []});
        let text = to_yaml(&v).unwrap();
        assert_eq!(parse(&text).unwrap(), v);
    }
}
