//! MArk's batch sizing, from a backend's measured latency profile.

use crate::types::{BatchDecision, ProfilePoint, QueueState};

/// Expected latency of a batch of `batch` items: linear between measured points, proportional
/// above the last one. 0 for an empty profile.
pub fn latency_us(profile: &[ProfilePoint], batch: u32) -> f64 {
    let Some(first) = profile.first() else {
        return 0.0;
    };
    let batch = batch.max(1);
    if batch <= first.batch {
        return first.latency_us;
    }
    for w in profile.windows(2) {
        let (a, b) = (w[0], w[1]);
        if batch <= b.batch {
            let t = f64::from(batch - a.batch) / f64::from((b.batch - a.batch).max(1));
            return a.latency_us + t * (b.latency_us - a.latency_us);
        }
    }
    let last = profile[profile.len() - 1];
    last.latency_us * f64::from(batch) / f64::from(last.batch.max(1))
}

/// MArk's ceiling: the largest batch whose profiled latency plus the oldest request's wait fits
/// the SLO (at least 1).
pub fn slo_max_batch(s: &QueueState<'_>) -> u32 {
    let slack = s.slo_us.saturating_sub(s.oldest_wait_us) as f64;
    let mut best = 1;
    for b in 1..=s.max_batch.max(1) {
        if latency_us(s.profile, b) <= slack {
            best = b;
        } else {
            break;
        }
    }
    best
}

/// MArk's rule verbatim: wait for the ceiling until waiting longer would break the oldest
/// request's SLO. Highest throughput per instance, highest latency.
pub fn slo_max_batch_decide(s: &QueueState<'_>) -> BatchDecision {
    let target = slo_max_batch(s);
    if s.queued_items >= target {
        return BatchDecision::Send(target);
    }
    let must_send_in = s.slo_us as f64 - s.oldest_wait_us as f64 - latency_us(s.profile, target);
    if must_send_in <= 0.0 {
        BatchDecision::Send(s.queued_items.max(1))
    } else {
        BatchDecision::Wait(must_send_in as u64)
    }
}

/// The default: MArk's SLO ceiling, but work-conserving. It waits for more requests only while
/// the arrival rate needs a larger batch than is queued (the smallest batch whose profiled
/// throughput per executor covers the rate). At low load it sends at once; near saturation it
/// batches up to the ceiling. Waiting at low load buys no throughput on an instance that is paid
/// for anyway, only latency.
pub fn decide(s: &QueueState<'_>) -> BatchDecision {
    let ceiling = slo_max_batch(s);
    if s.queued_items >= ceiling {
        return BatchDecision::Send(ceiling);
    }
    let per_executor = s.arrival_rate / f64::from(s.executors.max(1));
    if per_executor.is_nan() || per_executor <= 0.0 {
        return BatchDecision::Send(s.queued_items.max(1));
    }
    let needed = (1..=ceiling)
        .find(|&b| f64::from(b) * 1e6 / latency_us(s.profile, b).max(1.0) >= per_executor)
        .unwrap_or(ceiling);
    if s.queued_items >= needed {
        return BatchDecision::Send(s.queued_items.max(1));
    }
    let fill_us = f64::from(needed - s.queued_items) / s.arrival_rate * 1e6;
    let must_send_in = s.slo_us as f64 - s.oldest_wait_us as f64 - latency_us(s.profile, needed);
    let wait = fill_us.min(must_send_in);
    if wait < 50.0 {
        BatchDecision::Send(s.queued_items.max(1))
    } else {
        BatchDecision::Wait(wait as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> Vec<ProfilePoint> {
        [1u32, 2, 4, 8, 16, 32]
            .iter()
            .map(|&b| ProfilePoint {
                batch: b,
                latency_us: 1000.0 + 100.0 * f64::from(b),
            })
            .collect()
    }

    fn state(p: &[ProfilePoint], queued: u32, wait_us: u64, rate: f64) -> QueueState<'_> {
        QueueState {
            queued_items: queued,
            queued_requests: queued,
            oldest_wait_us: wait_us,
            slo_us: 3000,
            arrival_rate: rate,
            max_batch: 32,
            executors: 1,
            profile: p,
        }
    }

    #[test]
    fn interpolation() {
        let p = [
            ProfilePoint {
                batch: 1,
                latency_us: 100.0,
            },
            ProfilePoint {
                batch: 4,
                latency_us: 400.0,
            },
        ];
        assert_eq!(latency_us(&p, 2), 200.0);
        assert_eq!(latency_us(&p, 8), 800.0);
        assert_eq!(latency_us(&[], 8), 0.0);
    }

    #[test]
    fn ceiling_fits_slo() {
        let p = profile();
        assert_eq!(slo_max_batch(&state(&p, 1, 0, 0.0)), 20);
        assert_eq!(slo_max_batch(&state(&p, 1, 1500, 0.0)), 5);
        assert_eq!(slo_max_batch(&state(&p, 1, 5000, 0.0)), 1);
    }

    #[test]
    fn strict_waits_then_sends() {
        let p = profile();
        assert_eq!(
            slo_max_batch_decide(&state(&p, 25, 0, 0.0)),
            BatchDecision::Send(20)
        );
        assert_eq!(
            slo_max_batch_decide(&state(&p, 3, 0, 0.0)),
            BatchDecision::Send(3)
        );
        let p2: Vec<ProfilePoint> = p
            .iter()
            .map(|x| ProfilePoint {
                batch: x.batch,
                latency_us: x.latency_us / 2.0,
            })
            .collect();
        assert!(matches!(
            slo_max_batch_decide(&state(&p2, 3, 0, 0.0)),
            BatchDecision::Wait(_)
        ));
    }

    #[test]
    fn adaptive_sends_at_once_at_low_load() {
        let p = profile();
        assert_eq!(decide(&state(&p, 1, 0, 100.0)), BatchDecision::Send(1));
        assert_eq!(decide(&state(&p, 1, 0, 0.0)), BatchDecision::Send(1));
    }

    #[test]
    fn adaptive_waits_when_rate_needs_batching() {
        let p = profile();
        match decide(&state(&p, 2, 0, 5000.0)) {
            BatchDecision::Wait(us) => assert!(us > 0 && us <= 1600, "{us}"),
            d => panic!("expected wait, got {d:?}"),
        }
        assert_eq!(decide(&state(&p, 12, 0, 5000.0)), BatchDecision::Send(12));
    }
}
