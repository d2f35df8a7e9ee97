//! SLO-aware admission: refuse at once a request that cannot be answered within its deadline,
//! instead of queueing it to miss (Triton's queue policy, decided from the measured profile).
//!
//! Pure: the live gateway calls it per request, with the queue depth and the backends it has now.

use crate::profile::LatencyProfile;

/// A request is admitted when its expected answer time is within this share of its SLO: the rest
/// is headroom for what the profile does not see (reading the body, decoding, encoding, the
/// answer's transfer, other work on the cores). Without it, under overload the queue fills until
/// answers land right at the SLO, and half of them just miss it.
pub const ADMIT_SHARE_OF_SLO: f64 = 0.6;

/// Items per second `backends` executors (each `1.0` for the profiled machine; a faster worker
/// counts for its speed) serve at best: the batch size up to `max_batch` with the highest
/// throughput on the profile's median latencies. Infinite for an empty profile (nothing known:
/// nothing is refused).
pub fn capacity_items_per_s(profile: &LatencyProfile, max_batch: u32, backends: f64) -> f64 {
    let best = (1..=max_batch.max(1))
        .map(|b| f64::from(b) / (profile.median_us(b) / 1e6))
        .fold(0.0f64, f64::max);
    if profile.points.is_empty() || !best.is_finite() {
        return f64::INFINITY;
    }
    best * backends
}

/// Expected microseconds from admission to answer for a request of `items` rows that joins
/// `queued` items: the queue ahead drains at `capacity` items/s, then its own batch runs (median
/// latencies: measured on resnet18 at 5x overload, p99 here sheds more without raising goodput).
pub fn expected_latency_us(
    profile: &LatencyProfile,
    queued: u64,
    items: u32,
    capacity: f64,
    max_batch: u32,
) -> f64 {
    if !capacity.is_finite() || capacity <= 0.0 {
        return 0.0;
    }
    let wait = queued as f64 / capacity * 1e6;
    let own = (queued.min(u64::from(max_batch)) as u32).max(items);
    wait + profile.median_us(own.min(max_batch.max(items)))
}

/// Whether a request expected to be answered in `expected_us` is admitted when `queued` items
/// are ahead of it: always when nothing is queued (there is nothing to wait behind, so refusing it
/// makes no one faster: a request whose own rows take most of the SLO, such as 5 rows of a 13 ms
/// per row model under a 100 ms SLO, is served), else when the answer is expected within
/// `ADMIT_SHARE_OF_SLO` of the SLO. The simulator refuses only behind a full batch, likewise.
pub fn admits(expected_us: f64, queued: u64, slo_us: f64) -> bool {
    queued == 0 || expected_us <= ADMIT_SHARE_OF_SLO * slo_us
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_queue_admits_whatever_its_own_rows_cost() {
        assert!(admits(65_000.0, 0, 100_000.0), "nothing ahead");
        assert!(admits(59_000.0, 40, 100_000.0));
        assert!(!admits(65_000.0, 1, 100_000.0));
    }
    use crate::profile::MeasuredPoint as ProfilePoint;

    fn flat(us: f64) -> LatencyProfile {
        // p99 = p50 here, so the figures below read simply
        LatencyProfile {
            measured_on: String::new(),
            points: [1, 8]
                .iter()
                .map(|&b| ProfilePoint {
                    batch: b,
                    p50_us: us * f64::from(b),
                    p99_us: us * f64::from(b),
                })
                .collect(),
        }
    }

    #[test]
    fn capacity_follows_the_profile_and_backends() {
        // 25 ms per item, no batching gain: 40 items/s per backend
        let p = flat(25_000.0);
        assert!((capacity_items_per_s(&p, 8, 1.0) - 40.0).abs() < 1e-6);
        assert!((capacity_items_per_s(&p, 8, 2.5) - 100.0).abs() < 1e-6);
        assert!(capacity_items_per_s(&LatencyProfile::default(), 8, 1.0).is_infinite());
    }

    #[test]
    fn a_deep_queue_means_a_late_answer() {
        let p = flat(25_000.0);
        let cap = capacity_items_per_s(&p, 8, 1.0);
        // empty queue: just its own run
        assert!((expected_latency_us(&p, 0, 1, cap, 8) - 25_000.0).abs() < 1.0);
        // 20 items ahead at 40/s: half a second, then a batch of 8
        let l = expected_latency_us(&p, 20, 1, cap, 8);
        assert!((l - 700_000.0).abs() < 1.0, "{l}");
    }
}
