//! The shared suites every backend runs (feature `testkit`).
//!
//! A backend's tests implement [`TestBackend`] (how to make a fresh, empty
//! store and open more handles on it) and invoke
//! [`conformance_tests!`](crate::conformance_tests) to get one `#[test]` per
//! conformance check. The concurrency proof — histories, the checker and the
//! workload generator — lives in [`history`], [`checker`] and [`workload`].

use crate::Store;

pub mod checker;
pub mod clock;
pub mod conformance;
pub mod crash;
pub mod fuzzing;
pub mod history;
pub mod races;
pub mod workload;

/// One empty store location, able to open any number of handles on it.
///
/// Dropping it may delete the location (temporary folders).
pub trait TestLocation: Send + Sync {
    /// Opens a new, independent handle on this location, as a second part
    /// of the program (or a restarted program) would. For the memory
    /// backend this shares the map.
    fn open(&self) -> Store;

    /// A store URL (`yaml:DIR`, `sqlite:FILE`) that another OS process can
    /// open, or `None` when the backend lives in this process only.
    fn url(&self) -> Option<String>;
}

/// A backend under test: makes fresh, empty locations.
pub trait TestBackend: Send + Sync {
    /// A short name for messages (`"memory"`, `"yaml"`, `"sqlite"`).
    fn name(&self) -> &str;

    /// A new, empty location.
    fn fresh(&self) -> Box<dyn TestLocation>;

    /// A new, empty location whose change feed keeps only about the newest
    /// `retain` changes (a backend may keep somewhat more, never fewer).
    fn fresh_with_retention(&self, retain: u64) -> Box<dyn TestLocation>;
}

/// The memory backend as a [`TestBackend`]: handles share one map.
#[derive(Debug, Default, Clone, Copy)]
pub struct MemoryTestBackend;

struct MemoryLocation(crate::MemoryBackend);

impl TestLocation for MemoryLocation {
    fn open(&self) -> Store {
        Store::open(self.0.clone())
    }

    fn url(&self) -> Option<String> {
        None
    }
}

impl TestBackend for MemoryTestBackend {
    fn name(&self) -> &str {
        "memory"
    }

    fn fresh(&self) -> Box<dyn TestLocation> {
        Box::new(MemoryLocation(crate::MemoryBackend::new()))
    }

    fn fresh_with_retention(&self, retain: u64) -> Box<dyn TestLocation> {
        Box::new(MemoryLocation(crate::MemoryBackend::with_retention(retain)))
    }
}

/// How hard the suites push: `REVSTORE_SOAK=N` multiplies case counts and
/// durations by `N` (default 1) for long runs outside CI.
pub fn soak_factor() -> u32 {
    std::env::var("REVSTORE_SOAK")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n: &u32| n >= 1)
        .unwrap_or(1)
}
