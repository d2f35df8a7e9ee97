//! Batch-size decisions: the `BatchPolicy` trait and the native policies.
//!
//! Pure logic: no clock, no I/O. The batcher hands in the queue's state (ages already computed)
//! and gets back "send n items now" or "wait this long for more". It is asked once per batch
//! decision, never per request, and only when an executor is free to take the batch.

use crate::profile::LatencyProfile;

/// What a policy sees of a model queue when an executor is free.
#[derive(Debug, Clone, Copy)]
pub struct QueueState<'a> {
    /// Items (sum of dim 0) waiting that could join the next batch.
    pub queued_items: u32,
    /// Requests waiting.
    pub queued_requests: u32,
    /// Age of the oldest waiting request, microseconds.
    pub oldest_wait_us: u64,
    /// Latency objective per request, microseconds.
    pub slo_us: u64,
    /// Recent arrival rate, items per second (exponentially weighted).
    pub arrival_rate: f64,
    /// Largest batch the backend accepts.
    pub max_batch: u32,
    /// Executors serving this queue (the arrival rate is shared among them).
    pub executors: u32,
    /// The backend's measured latency per batch size.
    pub profile: &'a LatencyProfile,
}

/// A policy's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchDecision {
    /// Send a batch of up to this many items now (clamped to 1..=queued by the batcher).
    Send(u32),
    /// Wait up to this many microseconds for more arrivals, then ask again.
    Wait(u64),
}

/// Chooses batch sizes. One required method; `name` is for logs and metrics.
pub trait BatchPolicy: Send + Sync {
    /// Decides for the current queue state.
    fn decide(&self, s: &QueueState<'_>) -> BatchDecision;
    /// Short name for status pages.
    fn name(&self) -> &str {
        "custom"
    }
}

/// Largest batch whose profiled latency plus the oldest request's wait fits the SLO (at least 1).
pub fn slo_max_batch(s: &QueueState<'_>) -> u32 {
    let slack = s.slo_us.saturating_sub(s.oldest_wait_us) as f64;
    let mut best = 1;
    for b in 1..=s.max_batch.max(1) {
        if s.profile.latency_us(b) <= slack {
            best = b;
        } else {
            break;
        }
    }
    best
}

/// MArk's rule, strictly: the target is [`slo_max_batch`]; wait for it until waiting longer would
/// break the SLO of the oldest request. Highest throughput per instance, highest latency.
#[derive(Debug, Default, Clone, Copy)]
pub struct SloMaxBatch;

impl BatchPolicy for SloMaxBatch {
    fn decide(&self, s: &QueueState<'_>) -> BatchDecision {
        let target = slo_max_batch(s);
        if s.queued_items >= target {
            return BatchDecision::Send(target);
        }
        let must_send_in = s.slo_us as f64 - s.oldest_wait_us as f64 - s.profile.latency_us(target);
        if must_send_in <= 0.0 {
            BatchDecision::Send(s.queued_items)
        } else {
            BatchDecision::Wait(must_send_in as u64)
        }
    }
    fn name(&self) -> &str {
        "slo-max-batch"
    }
}

/// The default: MArk's SLO ceiling ([`slo_max_batch`]), but work-conserving.
///
/// It waits for more requests only while the arrival rate needs a larger batch than is queued:
/// the smallest batch whose profiled throughput (per executor) covers the arrival rate. At low load
/// it sends at once (no added latency); near saturation it batches up to the SLO ceiling. Waiting at
/// low load buys no throughput on an instance that is paid for anyway, only latency.
#[derive(Debug, Default, Clone, Copy)]
pub struct MarkAdaptive;

impl BatchPolicy for MarkAdaptive {
    fn decide(&self, s: &QueueState<'_>) -> BatchDecision {
        let ceiling = slo_max_batch(s);
        if s.queued_items >= ceiling {
            return BatchDecision::Send(ceiling);
        }
        let per_executor = s.arrival_rate / f64::from(s.executors.max(1));
        let needed = (1..=ceiling)
            .find(|&b| f64::from(b) * 1e6 / s.profile.latency_us(b).max(1.0) >= per_executor)
            .unwrap_or(ceiling);
        if s.queued_items >= needed || per_executor <= 0.0 {
            return BatchDecision::Send(s.queued_items);
        }
        let fill_us = f64::from(needed - s.queued_items) / s.arrival_rate * 1e6;
        let must_send_in = s.slo_us as f64 - s.oldest_wait_us as f64 - s.profile.latency_us(needed);
        let wait = fill_us.min(must_send_in);
        if wait < 50.0 {
            BatchDecision::Send(s.queued_items)
        } else {
            BatchDecision::Wait(wait as u64)
        }
    }
    fn name(&self) -> &str {
        "mark-adaptive"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::ProfilePoint;

    fn profile() -> LatencyProfile {
        // 1 ms fixed + 0.1 ms per item
        LatencyProfile::new(
            "t",
            [1u32, 2, 4, 8, 16, 32]
                .iter()
                .map(|&b| ProfilePoint {
                    batch: b,
                    p50_us: 1000.0 + 100.0 * f64::from(b),
                    p99_us: 1000.0 + 100.0 * f64::from(b),
                })
                .collect(),
        )
    }

    fn state(p: &LatencyProfile, queued: u32, wait_us: u64, rate: f64) -> QueueState<'_> {
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
    fn ceiling_fits_slo() {
        let p = profile();
        // slack 3000 us: 1000 + 100 b <= 3000 -> b = 20
        assert_eq!(slo_max_batch(&state(&p, 1, 0, 0.0)), 20);
        // slack 1500: b = 5
        assert_eq!(slo_max_batch(&state(&p, 1, 1500, 0.0)), 5);
        // no slack: still 1
        assert_eq!(slo_max_batch(&state(&p, 1, 5000, 0.0)), 1);
    }

    #[test]
    fn strict_waits_then_sends() {
        let p = profile();
        assert_eq!(
            SloMaxBatch.decide(&state(&p, 25, 0, 0.0)),
            BatchDecision::Send(20)
        );
        // 3 queued, target 20 (latency 3000) -> must send now (no time left)
        assert_eq!(
            SloMaxBatch.decide(&state(&p, 3, 0, 0.0)),
            BatchDecision::Send(3)
        );
        // with 1000 us waited, target 10 (latency 2000): 3000-1000-2000 = 0 -> send
        assert_eq!(
            SloMaxBatch.decide(&state(&p, 3, 1000, 0.0)),
            BatchDecision::Send(3)
        );
    }

    #[test]
    fn adaptive_sends_at_once_at_low_load() {
        let p = profile();
        // 100 items/s is far below batch-1 throughput (~909/s)
        assert_eq!(
            MarkAdaptive.decide(&state(&p, 1, 0, 100.0)),
            BatchDecision::Send(1)
        );
    }

    #[test]
    fn adaptive_waits_when_rate_needs_batching() {
        let p = profile();
        // 5000 items/s needs b with b/(1000+100b) us >= 0.005 -> b >= 10
        match MarkAdaptive.decide(&state(&p, 2, 0, 5000.0)) {
            BatchDecision::Wait(us) => assert!(us > 0 && us <= 1600, "{us}"),
            d => panic!("expected wait, got {d:?}"),
        }
        assert_eq!(
            MarkAdaptive.decide(&state(&p, 12, 0, 5000.0)),
            BatchDecision::Send(12)
        );
    }
}
