//! How unconditional writes retry after losing a race.

use std::cell::Cell;
use std::time::Duration;

/// Bounded, jittered exponential backoff for writes that lost a race to a
/// concurrent writer and are re-applied to the newer body.
///
/// Only writes without a revision precondition retry (patches with
/// [`Precondition::Any`](crate::Precondition::Any), [`Store::update`](crate::Store::update),
/// unconditional replaces and deletes); a compare-and-swap that loses
/// reports [`Error::Conflict`](crate::Error::Conflict) at once. Running out of
/// attempts is [`Error::RetriesExhausted`](crate::Error::RetriesExhausted),
/// never a silent drop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included (default 1000).
    pub max_attempts: u32,
    /// Upper bound of the first backoff; it doubles on every further
    /// attempt (default 10 µs: a writer that lost learns of it once the
    /// winner's commit is visible, so the next slot is usually free at
    /// once — with 50 µs, SQLite's group commits sat idle while losers
    /// slept, and 4 threads on one key fell to 0.47× of one writer).
    pub initial_backoff: Duration,
    /// Largest backoff (default 20 ms).
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 1000,
            initial_backoff: Duration::from_micros(10),
            max_backoff: Duration::from_millis(20),
        }
    }
}

impl RetryPolicy {
    /// The pause before attempt `attempt` (2 for the first retry): a random
    /// duration up to the exponential bound ("full jitter"), so that writers
    /// that collided do not collide again in lock step. The first retry does
    /// not wait: the loser of one race usually wins the next.
    pub fn backoff(&self, attempt: u32) -> Duration {
        if attempt <= 2 {
            return Duration::ZERO;
        }
        let doublings = (attempt - 3).min(30);
        let bound = self
            .initial_backoff
            .saturating_mul(1u32 << doublings)
            .min(self.max_backoff);
        let nanos = u64::try_from(bound.as_nanos()).unwrap_or(u64::MAX);
        if nanos == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(random_u64() % nanos)
    }
}

/// A small per-thread xorshift generator; jitter needs spread, not quality.
fn random_u64() -> u64 {
    thread_local! {
        static STATE: Cell<u64> = Cell::new(seed());
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        x
    })
}

fn seed() -> u64 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded randomly per process; mixing in the thread id
    // gives each thread its own sequence. Never zero (xorshift's fixed point).
    let mut h = RandomState::new().build_hasher();
    h.write_u64(u64::from(std::process::id()));
    std::thread::current().id().hash(&mut h);
    h.finish() | 1
}

use std::hash::Hash;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded_and_grows() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff(1), Duration::ZERO);
        assert_eq!(p.backoff(2), Duration::ZERO);
        for attempt in 3..200 {
            assert!(p.backoff(attempt) <= p.max_backoff);
        }
        let spread: std::collections::HashSet<_> = (0..50).map(|_| p.backoff(20)).collect();
        assert!(spread.len() > 10, "jitter should spread pauses");
    }
}
