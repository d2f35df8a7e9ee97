//! Dynamic batching: the bounded model queue, the batch-size policy, and the loop that forms
//! batches whenever an executor is free, the rule for spilling to Lambda, and SLO-aware admission.

// the admission and spill rules are the simulator's too: they live in the I/O-free core
pub use mark_core::admission;
pub mod batcher;
pub mod queue;
pub use mark_core::spill;
pub use mark_policy_host::batch_policy as size_policy;
