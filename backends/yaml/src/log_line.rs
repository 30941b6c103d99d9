//! The change log's line format, and the only place that encodes or
//! decodes it: one compact JSON object per line,
//! `{"seq":7,"collection":"models","name":"orders","revision":3,"kind":"updated"}`.
//!
//! JSON rather than YAML because a line must be one physical line (JSON
//! escapes every newline) and cheap to write on every commit.

use revstore::{Change, ChangeKind, Key};
use serde::{Deserialize, Serialize};

#[derive(Serialize)]
struct LineOut<'a> {
    seq: u64,
    collection: &'a str,
    name: &'a str,
    revision: u64,
    kind: ChangeKind,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LineIn {
    seq: u64,
    collection: String,
    name: String,
    revision: u64,
    kind: ChangeKind,
}

/// Encodes a change as one line, newline included.
///
/// # Errors
/// The encoder's error (not expected for these plain fields).
pub fn encode(change: &Change) -> Result<Vec<u8>, serde_json::Error> {
    let mut line = serde_json::to_vec(&LineOut {
        seq: change.seq,
        collection: change.key.collection(),
        name: change.key.name(),
        revision: change.revision,
        kind: change.kind,
    })?;
    line.push(b'\n');
    Ok(line)
}

/// Decodes one line (without its newline).
///
/// # Errors
/// Why the line is not a change: not the JSON shape above, an invalid key
/// or a revision of 0.
pub fn decode(line: &[u8]) -> Result<Change, String> {
    let raw: LineIn = serde_json::from_slice(line).map_err(|e| e.to_string())?;
    let key = if raw.collection.starts_with('_') {
        Key::new_reserved(&raw.collection, &raw.name)
    } else {
        Key::new(&raw.collection, &raw.name)
    }
    .map_err(|e| e.to_string())?;
    if raw.revision == 0 {
        return Err("the revision is 0; revisions start at 1".to_owned());
    }
    Ok(Change {
        seq: raw.seq,
        key,
        revision: raw.revision,
        kind: raw.kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_have_the_documented_shape() {
        for key in [
            Key::new("models", "orders").unwrap(),
            Key::new_reserved("_schema", "models").unwrap(),
        ] {
            let change = Change {
                seq: 7,
                key,
                revision: 3,
                kind: ChangeKind::Updated,
            };
            let line = encode(&change).unwrap();
            assert_eq!(line.last(), Some(&b'\n'));
            assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
            assert_eq!(decode(&line[..line.len() - 1]).unwrap(), change);
        }
        let line = encode(&Change {
            seq: 7,
            key: Key::new("models", "orders").unwrap(),
            revision: 3,
            kind: ChangeKind::Deleted,
        })
        .unwrap();
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "{\"seq\":7,\"collection\":\"models\",\"name\":\"orders\",\"revision\":3,\"kind\":\"deleted\"}\n"
        );
    }

    #[test]
    fn malformed_lines_are_refused_with_a_reason() {
        for bad in [
            "",
            "{",
            "[]",
            r#"{"seq":1,"collection":"c","name":"n","revision":1}"#,
            r#"{"seq":1,"collection":"c","name":"n","revision":1,"kind":"moved"}"#,
            r#"{"seq":1,"collection":"c","name":"n","revision":0,"kind":"created"}"#,
            r#"{"seq":1,"collection":"../c","name":"n","revision":1,"kind":"created"}"#,
            r#"{"seq":1,"collection":"_","name":"n","revision":1,"kind":"created"}"#,
            r#"{"seq":-1,"collection":"c","name":"n","revision":1,"kind":"created"}"#,
            r#"{"seq":1,"collection":"c","name":"n","revision":1,"kind":"created","x":1}"#,
        ] {
            let reason = decode(bad.as_bytes()).unwrap_err();
            assert!(!reason.is_empty(), "{bad}");
        }
    }
}
