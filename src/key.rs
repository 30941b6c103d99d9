//! Document keys: a validated `(collection, name)` pair.

use std::fmt;

use crate::error::{Error, NameKind};

/// Longest collection or name, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// Prefix of collections reserved for revstore itself (for example `_schema`).
pub const RESERVED_PREFIX: char = '_';

/// The key of a document: a collection and a name, both validated.
///
/// Both parts match `[A-Za-z0-9][A-Za-z0-9_.-]{0,127}`, are never `.` or `..`
/// and never end in `.`, so a key is always safe to use as a file name on
/// every platform revstore supports. Keys are compared byte for byte.
///
/// Collections that start with `_` are reserved for revstore; [`Key::new`]
/// refuses them, while revstore itself builds such keys with
/// [`Key::new_reserved`].
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    collection: String,
    name: String,
}

impl Key {
    /// A bound that sorts before every key of `collection` and after every
    /// key of the collections before it: where an ordered map's range of
    /// the collection starts. Not a valid key (its name is empty), so it
    /// never leaves the crate.
    pub(crate) fn before_collection(collection: &str) -> Key {
        Key {
            collection: collection.to_owned(),
            name: String::new(),
        }
    }

    /// Validates and builds a key for a user collection.
    ///
    /// # Errors
    /// [`Error::InvalidName`] naming the part at fault and why, including for
    /// a collection that starts with the reserved `_`.
    pub fn new(collection: &str, name: &str) -> Result<Key, Error> {
        validate_collection(collection)?;
        validate_name(NameKind::Name, name)?;
        Ok(Key {
            collection: collection.to_owned(),
            name: name.to_owned(),
        })
    }

    /// Builds a key in a reserved collection such as `_schema`.
    ///
    /// The collection must start with `_` followed by a valid name; the name
    /// follows the ordinary rules.
    ///
    /// # Errors
    /// [`Error::InvalidName`] when either part is invalid.
    pub fn new_reserved(collection: &str, name: &str) -> Result<Key, Error> {
        if collection.len() > MAX_NAME_LEN {
            return Err(Error::InvalidName {
                kind: NameKind::Collection,
                name: collection.to_owned(),
                reason: "is longer than 128 bytes",
            });
        }
        match collection.strip_prefix(RESERVED_PREFIX) {
            Some(rest) => {
                validate_name(NameKind::Collection, rest).map_err(|_| Error::InvalidName {
                    kind: NameKind::Collection,
                    name: collection.to_owned(),
                    reason: "a reserved collection is `_` followed by a valid name",
                })?;
            }
            None => {
                return Err(Error::InvalidName {
                    kind: NameKind::Collection,
                    name: collection.to_owned(),
                    reason: "a reserved collection starts with `_`",
                })
            }
        }
        validate_name(NameKind::Name, name)?;
        Ok(Key {
            collection: collection.to_owned(),
            name: name.to_owned(),
        })
    }

    /// The collection part.
    pub fn collection(&self) -> &str {
        &self.collection
    }

    /// The name part.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the collection is reserved for revstore (starts with `_`).
    pub fn is_reserved(&self) -> bool {
        self.collection.starts_with(RESERVED_PREFIX)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.collection, self.name)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({}/{})", self.collection, self.name)
    }
}

/// Checks a user collection name (the reserved `_` prefix is refused).
///
/// # Errors
/// [`Error::InvalidName`] naming the collection and the rule it breaks.
pub fn validate_collection(collection: &str) -> Result<(), Error> {
    validate_name(NameKind::Collection, collection)
}

/// Checks a collection or document name against the key rules.
///
/// # Errors
/// [`Error::InvalidName`] naming the value and the rule it breaks.
pub fn validate_name(kind: NameKind, name: &str) -> Result<(), Error> {
    let fail = |reason: &'static str| {
        Err(Error::InvalidName {
            kind,
            name: name.to_owned(),
            reason,
        })
    };
    let bytes = name.as_bytes();
    let Some(&first) = bytes.first() else {
        return fail("is empty");
    };
    if bytes.len() > MAX_NAME_LEN {
        return fail("is longer than 128 bytes");
    }
    if first == b'_' && kind == NameKind::Collection {
        return fail("starts with `_`, which is reserved for revstore");
    }
    if !first.is_ascii_alphanumeric() {
        return fail("must start with an ASCII letter or digit");
    }
    if !bytes
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return fail("may contain only ASCII letters, digits, `_`, `.` and `-`");
    }
    if bytes.last() == Some(&b'.') {
        return fail("must not end in `.`");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for n in ["a", "A9", "orders", "v1.2-beta_3", "0", &"x".repeat(128)] {
            assert!(Key::new("models", n).is_ok(), "{n}");
        }
    }

    #[test]
    fn refuses_bad_names_naming_them() {
        let long = "x".repeat(129);
        for n in [
            "", ".", "..", "a/b", "a\\b", "a\0b", "a\nb", "-a", ".a", "a.", "é", " a", &long,
        ] {
            match Key::new("models", n) {
                Err(Error::InvalidName { kind, name, .. }) => {
                    assert_eq!(kind, NameKind::Name);
                    assert_eq!(name, n);
                }
                other => panic!("{n:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn reserved_collections() {
        assert!(matches!(
            Key::new("_schema", "x"),
            Err(Error::InvalidName {
                kind: NameKind::Collection,
                ..
            })
        ));
        let k = Key::new_reserved("_schema", "models").unwrap();
        assert!(k.is_reserved());
        assert_eq!(k.to_string(), "_schema/models");
        assert!(Key::new_reserved("schema", "x").is_err());
        assert!(Key::new_reserved("_", "x").is_err());
        assert!(Key::new_reserved("__x", "x").is_err());
        assert!(Key::new_reserved(&format!("_{}", "x".repeat(127)), "x").is_ok());
        assert!(Key::new_reserved(&format!("_{}", "x".repeat(128)), "x").is_err());
    }
}
