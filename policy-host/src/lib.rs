//! MArk-rs's WebAssembly policy host (crate `mark-policy-host`): load, validate, hot-swap and call
//! policy components. The gateway (`mark_gateway::policy`) and the simulator (`mark-sim`) both use
//! it; it links wasmtime but no server, ONNX Runtime or AWS crate.
//!
//! - `bindings`: host bindings generated from `wit/` (world `all-policies`).
//! - `engine`: the wasmtime engine (pooling allocator, epoch ticker, memory limits, code cache).
//! - `code_cache`: the authenticated `.cwasm` cache of compiled components.
//! - `validate`: turning uploaded bytes into a checked, smoke-tested policy.
//! - `slot`: one swappable slot per policy kind, with history, stats and rollback.
//! - `caller`: per-thread callers that keep one Store per policy generation and fall back to the
//!   native default on any trap, timeout or malformed answer.
//! - `convert`: every host-side conversion: native (`mark-policies`) to and from WIT, and the
//!   shadows' owned queue state.
//! - `shadow`, `shadow_report`: a candidate called beside the live policy on the same inputs, off
//!   the request path, and how its answers differ (`?mode=shadow`).
//! - `call_cost`: `mark policy bench`, the cost of policy calls native vs WASM.
//! - `startup`: the embedded default component, `--policy KIND=FILE`, engine and slots at start.
//! - `batch_policy`: the batch-size policy the batch loop asks (WASM slot or native), shared with
//!   the simulator.
//! - `offer`: what a live call offers its slot's shadow (inputs and the live answer).

pub mod batch_policy;
pub mod bindings;
pub mod call_cost;
pub mod caller;
pub mod code_cache;
pub mod convert;
pub mod engine;
pub mod offer;
pub mod shadow;
pub mod shadow_report;
pub mod slot;
pub mod startup;
pub mod validate;

#[cfg(test)]
mod tests;

pub(crate) use mark_core::{clock, secret};

use std::fmt;

/// WIT package version this host implements.
pub const WIT_VERSION: &str = "0.2.0";

/// Older contract versions this host still loads (their components run through `bindings::v1`).
pub const OLDER_WIT_VERSIONS: [&str; 1] = ["0.1.0"];

/// The kinds of policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyKind {
    /// Batch sizing.
    Batcher,
    /// Load prediction.
    Predictor,
    /// Instance selection.
    Provisioner,
}

impl PolicyKind {
    /// All kinds.
    pub const ALL: [PolicyKind; 3] = [
        PolicyKind::Batcher,
        PolicyKind::Predictor,
        PolicyKind::Provisioner,
    ];

    /// Lower-case name, as in URLs and the WIT interface.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyKind::Batcher => "batcher",
            PolicyKind::Predictor => "predictor",
            PolicyKind::Provisioner => "provisioner",
        }
    }

    /// Parses a name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Fully qualified WIT interface name the component must export.
    pub fn interface(self) -> String {
        format!("mark:policy/{}@{WIT_VERSION}", self.as_str())
    }
}

impl fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
