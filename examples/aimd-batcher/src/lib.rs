//! Clipper's AIMD batch sizing (Crankshaw et al., NSDI'17) as a MArk-rs batcher policy.
//!
//! The batch cap grows by one while the oldest request would still meet its SLO with a batch at
//! the cap (additive increase), and halves as soon as it would not (multiplicative decrease). The
//! cap lives in the instance's memory: the gateway keeps one instance per policy generation, so
//! the state survives across calls until the next swap or trap.
#![cfg(target_arch = "wasm32")]

use core::sync::atomic::{AtomicU32, Ordering::Relaxed};
use mark_policy_sdk::batcher::*;

static CAP: AtomicU32 = AtomicU32::new(1);

struct Aimd;

impl Batcher for Aimd {
    fn decide(s: QueueState) -> BatchDecision {
        let cap = CAP.load(Relaxed).clamp(1, s.max_batch.max(1));
        let latency = s
            .profile
            .iter()
            .find(|p| p.batch >= cap)
            .or(s.profile.last())
            .map_or(0.0, |p| p.latency_us);
        let next = if s.oldest_wait_us as f64 + latency <= s.slo_us as f64 {
            cap + 1
        } else {
            cap / 2
        };
        CAP.store(next.clamp(1, s.max_batch.max(1)), Relaxed);
        BatchDecision::Send(s.queued_items.clamp(1, cap))
    }
}

mark_policy_sdk::export_batcher!(Aimd);
