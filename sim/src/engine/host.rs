//! The host's overhead on the gateway's own executors and on the fleet's workers, as a recorded
//! live run measured it (`SimParams::host_overhead_ms`, `worker_overhead_ms`): each batch they
//! run takes one draw on top of its curve's time, so that a replay's latency, and how long each
//! backend stays busy, are the host's and the network's, not only the profile's.

use mark_policies::traces::Rng;

/// Draws from a histogram of (floor ms, bound ms, requests).
pub(super) struct HostOverhead {
    rows: Vec<(f64, f64, u64)>,
    total: u64,
    rng: Rng,
}

impl HostOverhead {
    /// `None` for an empty histogram (nothing recorded: no overhead).
    pub(super) fn new(rows: &[(f64, f64, u64)], seed: u64) -> Option<Self> {
        let total = rows.iter().map(|r| r.2).sum();
        (total > 0).then(|| HostOverhead {
            rows: rows.to_vec(),
            total,
            rng: Rng::new(seed ^ 0x4057),
        })
    }

    /// One request's overhead, seconds: a bucket by its share of the requests, then uniform
    /// within it (the floor of the last, unbounded one).
    pub(super) fn draw(&mut self) -> f64 {
        let mut k = (self.rng.uniform() * self.total as f64) as u64;
        for &(floor, le, n) in &self.rows {
            if k < n {
                let ms = if le.is_finite() {
                    floor + self.rng.uniform() * (le - floor)
                } else {
                    floor
                };
                return ms / 1e3;
            }
            k -= n;
        }
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_follow_the_recorded_buckets() {
        assert!(HostOverhead::new(&[(0.0, 1.0, 0)], 1).is_none());
        let mut h = HostOverhead::new(
            &[(0.0, 1.0, 90), (1.0, 5.0, 10), (5.0, f64::INFINITY, 0)],
            7,
        )
        .unwrap();
        let draws: Vec<f64> = (0..20_000).map(|_| h.draw() * 1e3).collect();
        assert!(draws.iter().all(|&d| (0.0..5.0).contains(&d)));
        let above = draws.iter().filter(|&&d| d >= 1.0).count() as f64 / draws.len() as f64;
        assert!((above - 0.10).abs() < 0.01, "{above}");
    }
}
