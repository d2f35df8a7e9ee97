//! Batch-size decisions: the `BatchPolicy` trait the batch loop consults, and its two
//! implementations: the native defaults from `mark-policies`, and the WASM slot (with the
//! native default as fallback for every failed call).
//!
//! Decision logic itself lives in `mark-policies` (pure, no I/O), shared with the simulator.

pub use mark_policies::types::{BatchDecision, ProfilePoint, QueueState};

use crate::caller::PolicyCaller;

/// Chooses batch sizes. Asked once per batch decision, never per request, only when an executor
/// is free. `&mut self`: each batch loop owns its policy (and, for WASM, its own Store).
pub trait BatchPolicy: Send {
    /// Decides for the current queue state.
    fn decide(&mut self, s: &QueueState<'_>) -> BatchDecision;
}

/// The default, natively: MArk's SLO ceiling, work-conserving (`mark_policies::batcher::decide`).
#[derive(Debug, Default, Clone, Copy)]
pub struct MarkAdaptive;

impl BatchPolicy for MarkAdaptive {
    fn decide(&mut self, s: &QueueState<'_>) -> BatchDecision {
        mark_policies::batcher::decide(s)
    }
}

/// MArk's rule verbatim: wait for the SLO ceiling.
#[derive(Debug, Default, Clone, Copy)]
pub struct SloMaxBatch;

impl BatchPolicy for SloMaxBatch {
    fn decide(&mut self, s: &QueueState<'_>) -> BatchDecision {
        mark_policies::batcher::slo_max_batch_decide(s)
    }
}

/// Whatever the batcher slot holds (a WASM component, or the native default).
pub struct SlotBatchPolicy(pub PolicyCaller);

impl BatchPolicy for SlotBatchPolicy {
    fn decide(&mut self, s: &QueueState<'_>) -> BatchDecision {
        self.0.decide(s)
    }
}

/// Makes one policy per batch loop.
pub type PolicyFactory = std::sync::Arc<dyn Fn() -> Box<dyn BatchPolicy> + Send + Sync>;
