//! Which keys a handle should read before writing instead of starting from
//! the record it last saw.
//!
//! A write may start from the record the backend remembers
//! ([`StorageBackend::read_cached`](crate::StorageBackend::read_cached)):
//! its commit is conditional, so a stale starting point costs one refused
//! commit and a fresh read, never a lost update. For one writer, or threads
//! sharing a handle, the remembered record is nearly always current and the
//! write saves its read. For a key that other handles or processes write
//! too, it is nearly always stale, and each write would pay a refused
//! commit. So a key whose guess was wrong is read first from then on, until
//! several fresh reads in a row show that the guess would have been right.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::key::Key;

/// Fresh reads in a row that must find the remembered record still current
/// before a key is guessed again: one would let a key that two writers take
/// turns on flip back and forth.
const HITS_TO_TRUST: u8 = 4;

/// Most keys remembered as stale; beyond, it starts over (which at worst
/// costs each of them one more refused commit).
const MAX_STALE_KEYS: usize = 4096;

/// Keys whose remembered record proved stale, with how many fresh reads in
/// a row have since found it current. Shared by a handle's clones.
#[derive(Debug, Default)]
pub(crate) struct StaleGuesses {
    keys: Mutex<HashMap<Key, u8>>,
}

impl StaleGuesses {
    /// Whether a write of `key` may start from the remembered record.
    pub(crate) fn may_guess(&self, key: &Key) -> bool {
        // A poisoned map only means no more guessing.
        self.keys
            .lock()
            .map(|keys| !keys.contains_key(key))
            .unwrap_or(false)
    }

    /// A write that started from the remembered record of `key` found it
    /// stale.
    pub(crate) fn missed(&self, key: &Key) {
        if let Ok(mut keys) = self.keys.lock() {
            if keys.len() >= MAX_STALE_KEYS && !keys.contains_key(key) {
                keys.clear();
            }
            keys.insert(key.clone(), 0);
        }
    }

    /// A fresh read of a stale-marked `key` found the remembered record
    /// current (`true`) or not.
    pub(crate) fn checked(&self, key: &Key, would_have_hit: bool) {
        let Ok(mut keys) = self.keys.lock() else {
            return;
        };
        let Some(hits) = keys.get_mut(key) else {
            return;
        };
        if !would_have_hit {
            *hits = 0;
        } else if *hits + 1 >= HITS_TO_TRUST {
            keys.remove(key);
        } else {
            *hits += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missed_key_is_trusted_again_only_after_hits_in_a_row() {
        let guesses = StaleGuesses::default();
        let key = Key::new("c", "k").unwrap();
        assert!(guesses.may_guess(&key));
        guesses.missed(&key);
        assert!(!guesses.may_guess(&key));
        for _ in 0..HITS_TO_TRUST - 1 {
            guesses.checked(&key, true);
        }
        guesses.checked(&key, false);
        assert!(!guesses.may_guess(&key), "a miss did not reset the count");
        for _ in 0..HITS_TO_TRUST - 1 {
            guesses.checked(&key, true);
            assert!(!guesses.may_guess(&key));
        }
        guesses.checked(&key, true);
        assert!(guesses.may_guess(&key));
    }

    #[test]
    fn stale_keys_are_bounded() {
        let guesses = StaleGuesses::default();
        for i in 0..MAX_STALE_KEYS * 2 {
            guesses.missed(&Key::new("c", &format!("k{i}")).unwrap());
            assert!(guesses.keys.lock().unwrap().len() <= MAX_STALE_KEYS);
        }
    }
}
