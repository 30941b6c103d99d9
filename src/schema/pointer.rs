//! JSON Pointers (RFC 6901) and short descriptions of values for messages.

use serde_json::Value;

/// Appends `/token` to a JSON Pointer, escaping `~` and `/`.
pub(crate) fn push_token(pointer: &mut String, token: &str) {
    pointer.push('/');
    for c in token.chars() {
        match c {
            '~' => pointer.push_str("~0"),
            '/' => pointer.push_str("~1"),
            c => pointer.push(c),
        }
    }
}

/// `base` with one more token.
pub(crate) fn child(base: &str, token: &str) -> String {
    let mut out = String::with_capacity(base.len() + token.len() + 1);
    out.push_str(base);
    push_token(&mut out, token);
    out
}

/// Longest string quoted in a message, in characters.
const QUOTE_CHARS: usize = 64;

/// A value as a message shows it: scalars in full (long strings cut),
/// containers only by kind, so a huge body never makes a huge message.
pub(crate) fn describe(value: &Value) -> String {
    match value {
        Value::String(s) => quote(s),
        Value::Array(_) | Value::Object(_) => crate::body::value_kind(value).to_owned(),
        scalar => scalar.to_string(),
    }
}

/// A string quoted for a message, cut after [`QUOTE_CHARS`] characters.
pub(crate) fn quote(s: &str) -> String {
    match s.char_indices().nth(QUOTE_CHARS) {
        Some((cut, _)) => format!("{:?}…", &s[..cut]),
        None => format!("{s:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tokens_are_escaped() {
        assert_eq!(child("", "a/b~c"), "/a~1b~0c");
        assert_eq!(child("/x", "0"), "/x/0");
    }

    #[test]
    fn descriptions_stay_short() {
        let long = "é".repeat(1000);
        assert_eq!(describe(&json!(long)).chars().count(), QUOTE_CHARS + 3);
        assert_eq!(describe(&json!({"a": [1, 2]})), "a mapping");
        assert_eq!(describe(&json!(1.5)), "1.5");
    }
}
