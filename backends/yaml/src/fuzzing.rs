//! Fuzz case bodies for this backend's file format (feature `testkit`),
//! shared by the cargo-fuzz target and by stable tests that run them on
//! random and mutated inputs.

use std::path::Path;

use revstore::Error;

use crate::codec::{self, Header};

/// The document every case decodes as: its key is part of the seal.
pub const LABEL: &str = "models/orders";

/// The path errors must name.
pub const PATH: &str = "store/models/orders.yaml";

/// Decodes arbitrary bytes as a document file and checks the codec's
/// properties — once as given, and once with a matching seal line put at
/// the end ([`sealed`]), so that a fuzzer explores files revstore would
/// take as its own without having to forge a hash.
///
/// # Panics
/// When a property is violated: decoding panics or fails with anything but
/// [`Error::Corrupt`] naming [`PATH`]; a decoded revision is outside
/// `1..=`[`MAX_REVISION`](crate::MAX_REVISION); the fast header scan
/// disagrees with the full decode; or a decoded record, encoded again (when
/// it is not too deep to write), is not laid out byte for byte as
/// `serde_yaml` lays it out, does not decode to the same record, does not
/// scan to its header, or does not encode to the same bytes twice.
pub fn decode_case(data: &[u8]) {
    check_decode(data);
    check_decode(&sealed(data));
}

/// `data` with a seal for [`LABEL`] as its last line: an existing last
/// line starting with `digest:` is replaced, and a newline is added first
/// when the content does not end with one.
pub fn sealed(data: &[u8]) -> Vec<u8> {
    let without_newline = data.strip_suffix(b"\n").unwrap_or(data);
    let start = without_newline
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |newline| newline + 1);
    let mut content = if without_newline[start..].starts_with(b"digest:") {
        data[..start].to_vec()
    } else {
        data.to_vec()
    };
    if content.last().is_some_and(|&b| b != b'\n') {
        content.push(b'\n');
    }
    let seal = crate::digest::seal(LABEL, &content);
    content.extend_from_slice(format!("digest: {seal}\n").as_bytes());
    content
}

fn check_decode(data: &[u8]) {
    let path = Path::new(PATH);
    let decoded = codec::decode(data, LABEL, path);
    let scanned = codec::scan(data, LABEL);
    let record = match decoded {
        Ok(record) => record,
        Err(Error::Corrupt { location, reason }) => {
            assert_eq!(location, PATH, "the error names another file");
            assert!(!reason.is_empty(), "a corrupt file without a reason");
            return;
        }
        Err(other) => panic!("decoding failed with a non-Corrupt error: {other:?}"),
    };
    assert!(
        (1..=crate::MAX_REVISION).contains(&record.revision),
        "decoded revision {} is out of range",
        record.revision
    );
    let header = Header {
        revision: record.revision,
        live: record.body.is_some(),
    };
    if let Some(scanned) = scanned {
        assert_eq!(scanned, header, "the header scan disagrees with the decode");
    }
    let bytes = match codec::encode(LABEL, record.revision, record.body.as_deref()) {
        Ok(bytes) => bytes,
        Err(reason) => {
            // Hand-made files may nest deeper than this backend writes.
            assert!(reason.contains("deeper than"), "encoding failed: {reason}");
            return;
        }
    };
    assert_eq!(
        codec::encode_with_serde_yaml(LABEL, record.revision, record.body.as_deref()).as_deref(),
        Ok(bytes.as_slice()),
        "the fast layout differs from serde_yaml's"
    );
    let again = codec::decode(&bytes, LABEL, path)
        .unwrap_or_else(|e| panic!("a re-encoded record does not decode: {e}"));
    assert_eq!(again, record, "a re-encoded record decodes differently");
    assert_eq!(
        codec::scan(&bytes, LABEL),
        Some(header),
        "a written file does not scan to its header"
    );
    let twice = codec::encode(LABEL, again.revision, again.body.as_deref())
        .unwrap_or_else(|e| panic!("encoding a decoded record failed: {e}"));
    assert_eq!(twice, bytes, "encoding is not stable");
}
