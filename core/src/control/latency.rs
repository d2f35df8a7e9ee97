//! A model's answer latencies since the last plan, for the 99th percentile a provisioner is
//! given (`model-demand.p99-ms` of `mark:policy@0.2.0`). Log-spaced buckets (10% apart, from
//! 10 µs to about 10 minutes); the quantile is the upper bound of its bucket, so it reads at
//! most 10% high and never low. The simulator records each answer; the live loop records its
//! latency histogram's counts per bucket at the bucket's upper bound.

/// Smallest bucket's upper bound, seconds.
const FIRST_S: f64 = 1e-5;
/// Ratio of one bucket's upper bound to the one before.
const GROWTH: f64 = 1.1;
/// Buckets (the last takes everything above ~10 minutes).
const BUCKETS: usize = 190;

/// Latencies counted since the last [`IntervalLatency::clear`].
#[derive(Debug, Clone, PartialEq)]
pub struct IntervalLatency {
    buckets: Vec<u64>,
    count: u64,
}

impl Default for IntervalLatency {
    fn default() -> Self {
        IntervalLatency {
            buckets: vec![0; BUCKETS],
            count: 0,
        }
    }
}

impl IntervalLatency {
    /// `n` answers that took `seconds` each (NaN or negative: nothing counted; infinite: the
    /// last bucket).
    pub fn record(&mut self, seconds: f64, n: u64) {
        if n == 0 || seconds.is_nan() || seconds < 0.0 {
            return;
        }
        let i = if seconds <= FIRST_S {
            0
        } else {
            let k = ((seconds / FIRST_S).ln() / GROWTH.ln()).ceil();
            if k.is_finite() {
                (k as usize).min(BUCKETS - 1)
            } else {
                BUCKETS - 1
            }
        };
        self.buckets[i] += n;
        self.count += n;
    }

    /// Answers counted.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The 99th percentile, ms (the upper bound of its bucket); None when nothing was counted.
    pub fn p99_ms(&self) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let target = (0.99 * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= target {
                return Some(FIRST_S * GROWTH.powi(i as i32) * 1000.0);
            }
        }
        None
    }

    /// Starts a new interval.
    pub fn clear(&mut self) {
        self.buckets.iter_mut().for_each(|b| *b = 0);
        self.count = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_p99_reads_within_ten_percent_above_and_never_below() {
        let mut l = IntervalLatency::default();
        assert_eq!(l.p99_ms(), None, "nothing answered: no figure");
        // 990 answers at 20 ms, 10 at 250 ms: the 99th is the 990th, 20 ms
        l.record(0.020, 990);
        l.record(0.250, 10);
        let p = l.p99_ms().unwrap();
        assert!((20.0..=22.0).contains(&p), "{p}");
        // one more slow answer moves it to the slow ones
        l.record(0.250, 1);
        let p = l.p99_ms().unwrap();
        assert!((250.0..=275.0).contains(&p), "{p}");
        // nonsense is not counted; an infinite latency is the last bucket; clear starts over
        l.record(f64::NAN, 5);
        l.record(-1.0, 5);
        assert_eq!(l.count(), 1001);
        l.clear();
        l.record(f64::INFINITY, 1);
        assert!(l.p99_ms().unwrap() > 500_000.0);
        l.clear();
        l.record(0.0, 3);
        assert!(l.p99_ms().unwrap() <= 0.011);
    }
}
