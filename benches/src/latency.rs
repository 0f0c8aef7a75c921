//! Latency samples: per-operation durations recorded by each thread, merged,
//! and summarized as percentiles in microseconds.

use std::time::Duration;

/// Durations of individual operations, in nanoseconds.
#[derive(Clone, Debug, Default)]
pub struct Samples {
    nanos: Vec<u64>,
}

impl Samples {
    /// An empty set with room for `n` samples.
    pub fn with_capacity(n: usize) -> Self {
        Samples { nanos: Vec::with_capacity(n) }
    }

    /// Records one operation's duration.
    pub fn record(&mut self, d: Duration) {
        self.nanos.push(d.as_nanos().min(u128::from(u64::MAX)) as u64);
    }

    /// Adds all of `other`'s samples.
    pub fn merge(&mut self, other: Samples) {
        self.nanos.extend(other.nanos);
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.nanos.len()
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.nanos.is_empty()
    }

    /// Sorts the samples and returns the summary (zeros when empty).
    pub fn summarize(mut self) -> Summary {
        if self.nanos.is_empty() {
            return Summary::default();
        }
        self.nanos.sort_unstable();
        let at = |q: f64| {
            let idx = ((self.nanos.len() as f64 - 1.0) * q).round() as usize;
            self.nanos[idx.min(self.nanos.len() - 1)] as f64 / 1_000.0
        };
        let sum: u128 = self.nanos.iter().map(|&n| u128::from(n)).sum();
        Summary {
            count: self.nanos.len() as u64,
            mean_us: sum as f64 / self.nanos.len() as f64 / 1_000.0,
            p50_us: at(0.50),
            p99_us: at(0.99),
            max_us: at(1.0),
        }
    }
}

/// Percentiles of a set of samples, in microseconds (in JSON: `ops`,
/// `mean_us`, `p50_us`, `p99_us`, `max_us`).
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Summary {
    /// Number of operations.
    #[serde(rename = "ops")]
    pub count: u64,
    /// Mean.
    pub mean_us: f64,
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// Slowest operation.
    pub max_us: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_1_to_100() {
        let mut s = Samples::default();
        for i in 1..=100u64 {
            s.record(Duration::from_micros(i));
        }
        let sum = s.summarize();
        assert_eq!(sum.count, 100);
        assert!((sum.p50_us - 50.0).abs() <= 1.0);
        assert!((sum.p99_us - 99.0).abs() <= 1.0);
        assert_eq!(sum.max_us, 100.0);
    }

    #[test]
    fn empty_is_zero() {
        assert_eq!(Samples::default().summarize(), Summary::default());
    }
}
