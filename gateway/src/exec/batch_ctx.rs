//! What every backend needs to finish a batch of one model: where to retry it, what its answer
//! must look like, how long a remote call may take and how large its answer may be.

use std::sync::Arc;
use std::time::Duration;

use super::executor::ExecutorPool;
use super::session::IoMeta;
use crate::metrics::ModelMetrics;
use crate::profile::LatencyProfile;

/// Answers larger than this are refused when the model's outputs do not give a tighter bound
/// (a dynamic non-batch dimension, or BYTES).
pub const FALLBACK_MAX_RESPONSE_BYTES: usize = 256 << 20;
/// Room for the JSON header of a batch answer.
const HEADER_SLACK_BYTES: usize = 1 << 20;

/// One model's batch context, shared by the batch loop and the remote backends.
pub struct BatchCtx {
    /// Model name.
    pub model: String,
    /// The gateway's own executors (where a failed remote batch is retried).
    pub pool: Arc<ExecutorPool>,
    /// The model's metrics.
    pub metrics: Arc<ModelMetrics>,
    /// Latency objective of one request.
    pub slo: Duration,
    /// Declared outputs: every backend answer is checked against them.
    pub outputs: Vec<IoMeta>,
    /// Latency profile of the gateway's executors.
    pub profile: Arc<LatencyProfile>,
    /// Whether requests share runs (`exec::batchability`): when not, a backend's answer has
    /// whatever rows the one request's inputs make, not `items` of them.
    pub batched: bool,
}

impl BatchCtx {
    /// Deadline of one call running `items` on a backend `speed` times as fast as the profiled
    /// one: twice the SLO, or the SLO plus four times the profiled batch latency when that is
    /// longer. Past it the backend counts as failed and the batch is retried elsewhere.
    pub fn remote_deadline(&self, items: usize, speed: f64) -> Duration {
        let speed = if speed.is_finite() && speed > 0.0 {
            speed
        } else {
            1.0
        };
        let batch = u32::try_from(items).unwrap_or(u32::MAX);
        let expected = Duration::from_secs_f64(self.profile.latency_us(batch) / speed / 1e6);
        (self.slo * 2).max(self.slo + expected * 4)
    }

    /// Per declared output: whether it may be divided among a batch's requests by rows (a
    /// dynamic leading dimension).
    pub fn divisible(&self) -> Vec<bool> {
        divisible(&self.outputs)
    }

    /// The row count a backend's answer must carry for `items` rows: `None` when the model is
    /// not batched (then its dim 0 is the request's own business).
    pub fn answer_rows(&self, items: usize) -> Option<usize> {
        self.batched.then_some(items)
    }

    /// Bytes of the outputs of one item (0 when some output has no fixed row size).
    pub fn out_bytes_per_item(&self) -> usize {
        self.max_response_bytes(2)
            .saturating_sub(self.max_response_bytes(1))
            .min(FALLBACK_MAX_RESPONSE_BYTES / 2)
    }

    /// Largest answer a backend may send for `items` rows: the declared outputs' size plus room
    /// for the header, or `FALLBACK_MAX_RESPONSE_BYTES` when the outputs have no fixed row size.
    pub fn max_response_bytes(&self, items: usize) -> usize {
        if !self.batched {
            // one request of any number of rows: the declared outputs do not bound it
            return FALLBACK_MAX_RESPONSE_BYTES;
        }
        let mut total = HEADER_SLACK_BYTES;
        for o in &self.outputs {
            let Some(es) = o.dtype.size() else {
                return FALLBACK_MAX_RESPONSE_BYTES;
            };
            let mut per_row = es;
            for (i, &d) in o.shape.iter().enumerate() {
                match (i, usize::try_from(d)) {
                    (0, Err(_)) => {}
                    (_, Ok(d)) => per_row = per_row.saturating_mul(d),
                    (_, Err(_)) => return FALLBACK_MAX_RESPONSE_BYTES,
                }
            }
            let rows = if o.shape.first() == Some(&-1) {
                items
            } else {
                1
            };
            total = total.saturating_add(per_row.saturating_mul(rows));
        }
        total.min(FALLBACK_MAX_RESPONSE_BYTES)
    }
}

/// Per output: whether its declared leading dimension is dynamic (it can be divided by rows).
pub fn divisible(outputs: &[IoMeta]) -> Vec<bool> {
    outputs
        .iter()
        .map(|o| o.shape.first().is_some_and(|&d| d < 0))
        .collect()
}
