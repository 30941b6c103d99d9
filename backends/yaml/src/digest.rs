//! The seal at the end of every file this backend writes: a digest of the
//! document's key and of every byte before it, so that any change made by
//! anyone else (a person with an editor, a script, a write cut short) is
//! recognised.
//!
//! The hash is 64-bit FNV-1a: simple, stable across versions and platforms,
//! and specified here rather than by a crate. It is not cryptographic; it
//! detects edits, it does not resist forgery.

/// How a seal starts: the name of the hash, so another could follow.
pub const PREFIX: &str = "fnv1a64-";

/// How many hexadecimal digits follow [`PREFIX`].
pub const HEX_DIGITS: usize = 16;

const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0000_0100_0000_01b3;

/// 64-bit FNV-1a of the concatenation of `parts`.
pub fn fnv1a64(parts: &[&[u8]]) -> u64 {
    let mut hash = OFFSET_BASIS;
    for part in parts {
        for &byte in *part {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(PRIME);
        }
    }
    hash
}

/// The seal of a file of the document `label` (`collection/name`) whose
/// bytes before the seal line are `content`: `fnv1a64-` and 16 lowercase
/// hex digits of FNV-1a 64 over `label`, a newline, and `content`.
pub fn seal(label: &str, content: &[u8]) -> String {
    let hex = hex_digits(fnv1a64(&[label.as_bytes(), b"\n", content]));
    let mut out = String::with_capacity(PREFIX.len() + HEX_DIGITS);
    out.push_str(PREFIX);
    out.extend(hex.iter().map(|&digit| char::from(digit)));
    out
}

/// Appends to `out` the seal line `<key>: <seal>` and its newline, where
/// the seal is [`seal`] of `label` and of `out`'s bytes so far.
pub fn push_seal_line(out: &mut Vec<u8>, key: &str, label: &str) {
    let hex = hex_digits(fnv1a64(&[label.as_bytes(), b"\n", out]));
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(PREFIX.as_bytes());
    out.extend_from_slice(&hex);
    out.push(b'\n');
}

/// `hash` as [`HEX_DIGITS`] lowercase hexadecimal digits.
fn hex_digits(hash: u64) -> [u8; HEX_DIGITS] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hex = [0; HEX_DIGITS];
    for (i, digit) in hex.iter_mut().enumerate() {
        let shift = 4 * (HEX_DIGITS - 1 - i);
        *digit = DIGITS[((hash >> shift) & 0xf) as usize];
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_matches_the_published_test_vectors() {
        assert_eq!(fnv1a64(&[b""]), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(&[b"a"]), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(&[b"foobar"]), 0x8594_4171_f739_67e8);
        assert_eq!(fnv1a64(&[b"foo", b"", b"bar"]), fnv1a64(&[b"foobar"]));
    }

    #[test]
    fn a_seal_names_its_hash_and_depends_on_key_and_content() {
        let s = seal("models/orders", b"revision: 1\n");
        assert!(s.starts_with(PREFIX));
        assert_eq!(s.len(), PREFIX.len() + HEX_DIGITS);
        assert!(s[PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert_ne!(s, seal("models/other", b"revision: 1\n"));
        assert_ne!(s, seal("models/orders", b"revision: 2\n"));
        assert_eq!(s, seal("models/orders", b"revision: 1\n"));
        assert_eq!(
            seal("a/b", b""),
            format!("{PREFIX}{:016x}", fnv1a64(&[b"a/b\n"]))
        );
        let mut line = b"revision: 1\n".to_vec();
        push_seal_line(&mut line, "digest", "models/orders");
        assert_eq!(line, format!("revision: 1\ndigest: {s}\n").into_bytes());
    }
}
