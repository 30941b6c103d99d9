//! The system-wide monotonic clock that histories are stamped with.
//!
//! Histories from several OS processes are merged and checked together, so
//! their timestamps must come from one clock. `CLOCK_MONOTONIC` is that
//! clock on Linux: it counts from boot, is shared by every process and
//! never jumps backwards (unlike the wall clock).

/// Nanoseconds on the system-wide monotonic clock.
///
/// # Guarantees
/// On Unix the value comes from `clock_gettime(CLOCK_MONOTONIC)`: it never
/// decreases, and on Linux readings taken in different processes are
/// comparable. Should that call ever fail (it cannot with a valid clock id
/// and pointer), and on other platforms, the value falls back to a
/// process-local monotonic count, still non-decreasing within the process.
pub fn monotonic_nanos() -> u64 {
    #[cfg(unix)]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec for the duration of the
        // call, and CLOCK_MONOTONIC is a clock id every Unix supports.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        if rc == 0 {
            let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
            let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
            return secs.saturating_mul(1_000_000_000).saturating_add(nanos);
        }
    }
    process_local_nanos()
}

fn process_local_nanos() -> u64 {
    use std::sync::OnceLock;
    use std::time::Instant;
    static ANCHOR: OnceLock<Instant> = OnceLock::new();
    let elapsed = ANCHOR.get_or_init(Instant::now).elapsed();
    u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_decreases_across_threads() {
        let before = monotonic_nanos();
        let inner = std::thread::spawn(monotonic_nanos).join().unwrap();
        let after = monotonic_nanos();
        assert!(
            before <= inner && inner <= after,
            "{before} {inner} {after}"
        );
        assert!(before > 0);
    }
}
