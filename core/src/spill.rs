//! When and how much to spill to Lambda, as pure functions shared by the live batch loop and the
//! simulator.
//!
//! A request goes to Lambda once it has waited so long that it would miss its SLO waiting any
//! longer for an instance: after `SLO − 2 × Lambda latency` (at least a quarter of the SLO), which
//! leaves it twice the function's warm latency to be answered. An invocation carries the largest
//! batch the function runs within that budget (batch latency scaled from the model's profile).

use mark_policies::batcher::latency_us;
use mark_policies::types::ProfilePoint;

/// Microseconds a request may wait for an instance before it goes to Lambda.
pub fn spill_after_us(slo_us: u64, lambda_latency_s: f64) -> u64 {
    slo_us
        .saturating_sub((2.0 * lambda_latency_s * 1e6) as u64)
        .max(slo_us / 4)
}

/// Warm latency on Lambda of a batch of `b`, seconds: the batch-1 latency scaled by the profile.
pub fn lambda_batch_latency_s(profile: &[ProfilePoint], lambda_latency_s: f64, b: u32) -> f64 {
    let one = latency_us(profile, 1);
    if one > 0.0 {
        lambda_latency_s * latency_us(profile, b) / one
    } else {
        lambda_latency_s
    }
}

/// Items per Lambda invocation: the largest batch (up to `max_batch`) that the function answers
/// within the budget the spill rule leaves; at least 1.
pub fn spill_batch(
    profile: &[ProfilePoint],
    slo_us: u64,
    lambda_latency_s: f64,
    max_batch: u32,
) -> u32 {
    let budget_s = slo_us.saturating_sub(spill_after_us(slo_us, lambda_latency_s)) as f64 / 1e6;
    (1..=max_batch.max(1))
        .rev()
        .find(|&b| lambda_batch_latency_s(profile, lambda_latency_s, b) <= budget_s)
        .unwrap_or(1)
}

/// Bytes of JSON around a batch in a Lambda payload (model name, header, field names).
const PAYLOAD_OVERHEAD_BYTES: usize = 64 << 10;

/// Items per invocation that fit Lambda's synchronous payload limit, request and answer alike:
/// both carry the v2 body base64 in JSON (4 bytes per 3). `in_per_item` and `out_per_item` are the
/// request and answer bytes of one item; at least 1 (a single item over the limit fails on
/// Lambda and is retried on the gateway).
pub fn payload_items(in_per_item: usize, out_per_item: usize, limit_bytes: usize) -> u32 {
    let usable = limit_bytes.saturating_sub(PAYLOAD_OVERHEAD_BYTES) / 4 * 3;
    let per = in_per_item.max(out_per_item).max(1);
    u32::try_from(usable / per).unwrap_or(u32::MAX).max(1)
}

#[cfg(test)]
mod tests {
    #[test]
    fn resnet_spill_batches_fit_the_6_mb_payload() {
        // resnet18: 3x224x224 FP32 in, 1000 FP32 out; a batch of 8 is ~6.4 MB base64
        let n = super::payload_items(3 * 224 * 224 * 4, 4000, 6 * 1024 * 1024);
        assert_eq!(n, 7);
        assert!((n as usize * 3 * 224 * 224 * 4).div_ceil(3) * 4 + (64 << 10) <= 6 * 1024 * 1024);
        assert_eq!(super::payload_items(10 << 20, 4, 6 << 20), 1);
        assert_eq!(super::payload_items(784 * 4, 40, 6 << 20), 1488);
    }

    use super::*;

    fn p(b: u32, us: f64) -> ProfilePoint {
        ProfilePoint {
            batch: b,
            latency_us: us,
        }
    }

    #[test]
    fn leaves_twice_the_lambda_latency() {
        assert_eq!(spill_after_us(300_000, 0.06), 180_000);
        assert_eq!(
            spill_after_us(100_000, 0.06),
            25_000,
            "a quarter of the SLO at least"
        );
        // conv net on CPU: batch 2 takes twice batch 1; the budget (120 ms) fits two 60 ms items
        let conv = [p(1, 10_000.0), p(2, 20_000.0), p(8, 80_000.0)];
        assert_eq!(spill_batch(&conv, 300_000, 0.06, 8), 2);
        // overhead-bound model: batch 8 costs little more than batch 1
        let mlp = [p(1, 30.0), p(8, 45.0)];
        assert_eq!(spill_batch(&mlp, 300_000, 0.06, 8), 8);
        assert_eq!(spill_batch(&[], 300_000, 0.06, 8), 8);
    }
}
