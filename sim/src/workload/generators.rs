//! Synthetic workloads: a Twitter-like day, a day of hourly steps and MArk's stress test.

use mark_policies::traces::Rng;

use super::{Workload, MAX_SECONDS};

/// A day of one-minute rates shaped like public Twitter traces: a diurnal swing between ~70 and
/// ~330 req/s (mean ~200), 4% noise, and a dozen spikes (+40–120% for 2–8 minutes).
pub fn twitter_like(seed: u64) -> Workload {
    let mut r = Rng::new(seed);
    let mut rates: Vec<f64> = (0..1440)
        .map(|i| {
            let x = 2.0 * std::f64::consts::PI * f64::from(i) / 1440.0;
            let base = 200.0 - 110.0 * (x + 0.6).cos() - 20.0 * (2.0 * x).cos();
            (base * (1.0 + 0.04 * r.normal())).max(1.0)
        })
        .collect();
    for _ in 0..12 {
        let at = (r.uniform() * 1400.0) as usize;
        let len = 2 + (r.uniform() * 6.0) as usize;
        let height = 0.4 + 0.8 * r.uniform();
        for (k, v) in rates.iter_mut().skip(at).take(len).enumerate() {
            // sharp rise, linear decay
            *v *= 1.0 + height * (1.0 - k as f64 / len as f64);
        }
    }
    Workload::Rates {
        interval_s: 60.0,
        rates,
        uniform: false,
    }
}

/// A day of hourly steps: each hour a level drawn uniformly between 100 and 1,700 req/s, held for
/// the hour (one-minute rates, 3% noise). No forecast sees a step coming; the fleet must follow
/// it up and down, and the cheapest type changes with the level (CPU below the crossover, GPU
/// above it).
pub fn hourly_steps(seed: u64) -> Workload {
    let mut r = Rng::new(seed ^ 0x5739);
    let levels: Vec<f64> = (0..24).map(|_| 100.0 + 1600.0 * r.uniform()).collect();
    Workload::Rates {
        interval_s: 60.0,
        rates: (0..1440)
            .map(|i| (levels[i / 60] * (1.0 + 0.03 * r.normal())).max(1.0))
            .collect(),
        uniform: false,
    }
}

/// MArk's stress test: `rate` req/s for the first half, `1.5 × rate` for the second, in 10 s
/// intervals.
pub fn stress(rate: f64, seconds: f64) -> Workload {
    let n = (seconds.min(MAX_SECONDS) / 10.0).ceil().max(2.0) as usize;
    Workload::Rates {
        interval_s: 10.0,
        rates: (0..n)
            .map(|i| if i < n / 2 { rate } else { rate * 1.5 })
            .collect(),
        uniform: false,
    }
}
