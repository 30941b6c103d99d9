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
/// properties.
///
/// # Panics
/// When a property is violated: decoding panics or fails with anything but
/// [`Error::Corrupt`] naming [`PATH`]; a decoded revision is outside
/// `1..=`[`MAX_REVISION`](crate::MAX_REVISION); the fast header scan
/// disagrees with the full decode; or a decoded record, encoded again (when
/// it is not too deep to write), does not decode to the same record, does
/// not scan to its header, or does not encode to the same bytes twice.
pub fn decode_case(data: &[u8]) {
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
    let bytes = match codec::encode(LABEL, record.revision, record.body.as_ref()) {
        Ok(bytes) => bytes,
        Err(reason) => {
            // Hand-made files may nest deeper than this backend writes.
            assert!(reason.contains("deeper than"), "encoding failed: {reason}");
            return;
        }
    };
    let again = codec::decode(&bytes, LABEL, path)
        .unwrap_or_else(|e| panic!("a re-encoded record does not decode: {e}"));
    assert_eq!(again, record, "a re-encoded record decodes differently");
    assert_eq!(
        codec::scan(&bytes, LABEL),
        Some(header),
        "a written file does not scan to its header"
    );
    let twice = codec::encode(LABEL, again.revision, again.body.as_ref())
        .unwrap_or_else(|e| panic!("encoding a decoded record failed: {e}"));
    assert_eq!(twice, bytes, "encoding is not stable");
}
