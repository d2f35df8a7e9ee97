//! Per-request latency statistics of a simulation: a log-bucketed histogram (2% resolution from
//! 10 µs to hours) that gives percentiles and the CCDF without keeping 17 M samples.

/// Latency histogram.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyHist {
    buckets: Vec<u64>,
    /// Requests recorded.
    pub count: u64,
    /// Requests within the SLO.
    pub met: u64,
    sum_s: f64,
}

const MIN_S: f64 = 1e-5;
const GROWTH: f64 = 1.02;

impl Default for LatencyHist {
    fn default() -> Self {
        LatencyHist {
            buckets: vec![0; 1200],
            count: 0,
            met: 0,
            sum_s: 0.0,
        }
    }
}

impl LatencyHist {
    fn index(s: f64) -> usize {
        if s <= MIN_S {
            0
        } else {
            ((s / MIN_S).ln() / GROWTH.ln()).ceil() as usize
        }
    }

    /// Upper bound of bucket `i`, seconds.
    fn bound(i: usize) -> f64 {
        MIN_S * GROWTH.powi(i as i32)
    }

    /// Records one latency (seconds) against the SLO (seconds).
    #[inline]
    pub fn record(&mut self, s: f64, slo_s: f64) {
        let i = Self::index(s).min(self.buckets.len() - 1);
        self.buckets[i] += 1;
        self.count += 1;
        self.sum_s += s;
        if s <= slo_s {
            self.met += 1;
        }
    }

    /// Adds `o`'s requests to this histogram.
    pub fn merge(&mut self, o: &LatencyHist) {
        if self.buckets.len() < o.buckets.len() {
            self.buckets.resize(o.buckets.len(), 0);
        }
        for (a, b) in self.buckets.iter_mut().zip(&o.buckets) {
            *a += b;
        }
        self.count += o.count;
        self.met += o.met;
        self.sum_s += o.sum_s;
    }

    /// Share of requests within the SLO (1 when there were none).
    pub fn attainment(&self) -> f64 {
        if self.count == 0 {
            1.0
        } else {
            self.met as f64 / self.count as f64
        }
    }

    /// Mean latency, seconds.
    pub fn mean(&self) -> f64 {
        self.sum_s / self.count.max(1) as f64
    }

    /// The `q` quantile, seconds (upper bound of its bucket: within 2%).
    pub fn quantile(&self, q: f64) -> f64 {
        let target = (q * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= target {
                return Self::bound(i);
            }
        }
        0.0
    }

    /// CCDF points (latency seconds, share of requests slower), one per non-empty bucket.
    pub fn ccdf(&self) -> Vec<(f64, f64)> {
        let mut out = Vec::new();
        let mut above = self.count;
        for (i, n) in self.buckets.iter().enumerate() {
            if *n == 0 {
                continue;
            }
            above -= n;
            out.push((Self::bound(i), above as f64 / self.count.max(1) as f64));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_within_two_percent() {
        let mut h = LatencyHist::default();
        for i in 1..=1000 {
            h.record(f64::from(i) / 1000.0, 0.5);
        }
        assert!((h.quantile(0.5) / 0.5 - 1.0).abs() < 0.02);
        assert!((h.quantile(0.99) / 0.99 - 1.0).abs() < 0.02);
        assert_eq!(h.met, 500);
        assert_eq!(h.ccdf().last().unwrap().1, 0.0);
    }
}
