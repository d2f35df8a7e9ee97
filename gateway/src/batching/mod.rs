//! Dynamic batching: the bounded model queue, the batch-size policy, and the loop that forms
//! batches whenever an executor is free, the rule for spilling to Lambda, and SLO-aware admission.

pub mod admission;
pub mod batcher;
pub mod queue;
pub mod size_policy;
pub mod spill;
