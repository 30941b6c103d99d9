//! Timing loops and the statistics of their samples.

use std::time::{Duration, Instant};

use crate::error::CliError;

/// Per-sample costs of one measured case, in microseconds per operation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Samples {
    micros_per_op: Vec<f64>,
}

impl Samples {
    /// Adds one sample's mean cost.
    pub fn push(&mut self, micros_per_op: f64) {
        self.micros_per_op.push(micros_per_op);
    }

    /// Adds one throughput sample (operations per second).
    pub fn push_rate(&mut self, ops_per_sec: f64) {
        self.micros_per_op
            .push(1e6 / ops_per_sec.max(f64::MIN_POSITIVE));
    }

    /// The median cost in µs/op (0 when there are no samples).
    pub fn median_micros(&self) -> f64 {
        percentile(&self.micros_per_op, 0.5)
    }

    /// The cost of the 90th-percentile (slower) sample, in µs/op.
    pub fn p90_micros(&self) -> f64 {
        percentile(&self.micros_per_op, 0.9)
    }

    /// The median as a throughput, operations per second.
    pub fn median_rate(&self) -> f64 {
        rate(self.median_micros())
    }

    /// The slower 90th-percentile sample as a throughput.
    pub fn p90_rate(&self) -> f64 {
        rate(self.p90_micros())
    }
}

fn rate(micros_per_op: f64) -> f64 {
    if micros_per_op > 0.0 {
        1e6 / micros_per_op
    } else {
        0.0
    }
}

/// The `q`-quantile (nearest rank) of `values`; 0 for none.
pub fn percentile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Runs `op` for indexes `first..first + n` and returns the mean cost in
/// µs/op. The first error stops the loop.
pub fn time_ops(
    first: usize,
    n: usize,
    mut op: impl FnMut(usize) -> Result<(), CliError>,
) -> Result<f64, CliError> {
    let start = Instant::now();
    for i in first..first + n {
        op(i)?;
    }
    Ok(start.elapsed().as_secs_f64() * 1e6 / n.max(1) as f64)
}

/// Operations per sample: at least `n`, and at least as many as `rate`
/// (operations per second, measured beforehand) makes in `time`, so that
/// a sample of a fast configuration lasts long enough to be measured
/// (bounded, so a bogus rate cannot make a sample run for hours).
pub fn ops_lasting(n: usize, rate: f64, time: Duration) -> usize {
    let in_time = (rate * time.as_secs_f64()).ceil();
    if in_time.is_finite() && in_time > 0.0 {
        n.max(in_time.min(1e6) as usize)
    } else {
        n
    }
}

/// Operations per sample for a case whose operation is `op`: `n` when
/// `time` is zero, else [`ops_lasting`] on the rate of `n` untimed calls of
/// `op` (which also warm the store's caches).
///
/// # Errors
/// The first error of `op`.
pub fn sized_ops(
    n: usize,
    time: Duration,
    op: impl FnMut(usize) -> Result<(), CliError>,
) -> Result<usize, CliError> {
    if time.is_zero() {
        return Ok(n);
    }
    let micros = time_ops(0, n, op)?;
    Ok(ops_lasting(n, 1e6 / micros.max(1e-3), time))
}

/// One case of [`interleaved`]: how many operations a sample runs, and
/// the operation.
pub type Case<'a> = (usize, &'a mut dyn FnMut(usize) -> Result<(), CliError>);

/// Measures several cases in alternation, `samples` rounds of one sample
/// of each, so that all see the same moments of a noisy machine.
pub fn interleaved(samples: usize, cases: &mut [Case<'_>]) -> Result<Vec<Samples>, CliError> {
    let mut out = vec![Samples::default(); cases.len()];
    for s in 0..samples {
        for ((n, op), samples) in cases.iter_mut().zip(out.iter_mut()) {
            samples.push(time_ops(s * *n, *n, &mut **op)?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let v = [5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(percentile(&v, 0.5), 3.0);
        assert_eq!(percentile(&v, 0.9), 5.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
        assert_eq!(percentile(&[7.0], 0.9), 7.0);
    }

    #[test]
    fn samples_last_at_least_the_time_asked_and_never_shrink() {
        assert_eq!(ops_lasting(200, 40_000.0, Duration::from_millis(25)), 1000);
        assert_eq!(ops_lasting(200, 4_000.0, Duration::from_millis(25)), 200);
        assert_eq!(
            ops_lasting(200, f64::INFINITY, Duration::from_millis(25)),
            200
        );
        assert_eq!(ops_lasting(200, 40_000.0, Duration::ZERO), 200);
        assert_eq!(ops_lasting(3, 1e12, Duration::from_secs(1)), 1_000_000);
    }

    #[test]
    fn rates_invert_costs() {
        let mut s = Samples::default();
        s.push(10.0);
        s.push(20.0);
        s.push(40.0);
        assert_eq!(s.median_rate(), 50_000.0);
        assert_eq!(s.p90_rate(), 25_000.0);
    }

    #[test]
    fn interleaved_alternates_and_indexes_uniquely() {
        let mut order = Vec::new();
        let order_cell = std::cell::RefCell::new(&mut order);
        let mut base = |i| {
            order_cell.borrow_mut().push(('b', i));
            Ok(())
        };
        let mut measured = |i| {
            order_cell.borrow_mut().push(('m', i));
            Ok(())
        };
        let mut cases: Vec<Case<'_>> = vec![(3, &mut base), (3, &mut measured)];
        let samples = interleaved(2, &mut cases).unwrap();
        drop(cases);
        assert_eq!(samples[0].micros_per_op.len(), 2);
        assert_eq!(samples[1].micros_per_op.len(), 2);
        let firsts: Vec<_> = order.iter().step_by(3).copied().collect();
        assert_eq!(firsts, vec![('b', 0), ('m', 0), ('b', 3), ('m', 3)]);
    }
}
