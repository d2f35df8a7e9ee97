//! What a live policy call offers its slot's shadow: the call's inputs (owned, so the shadow's
//! thread can keep them) and the live answer. Its own module so that the caller, the slot and
//! the shadow all depend on it rather than on each other.

use mark_policies::types as n;

/// A queue state the shadow can keep (the live one borrows its profile).
#[derive(Debug, Clone)]
pub struct OwnedQueueState {
    /// The live state's fields.
    pub queued_items: u32,
    /// Requests queued.
    pub queued_requests: u32,
    /// Age of the oldest, µs.
    pub oldest_wait_us: u64,
    /// SLO, µs.
    pub slo_us: u64,
    /// Arrival rate, items/s.
    pub arrival_rate: f64,
    /// Largest batch.
    pub max_batch: u32,
    /// Executors.
    pub executors: u32,
    /// Latency profile.
    pub profile: Vec<n::ProfilePoint>,
}

/// One live call, offered to the shadow: its inputs and the live answer.
#[derive(Debug, Clone)]
pub enum Offer {
    /// A batch decision.
    Batch {
        /// Inputs.
        state: OwnedQueueState,
        /// What the live policy decided.
        live: n::BatchDecision,
    },
    /// A forecast.
    Predict {
        /// The model forecast.
        model: String,
        /// Peak-rate history, oldest first.
        history: Vec<f64>,
        /// Seconds per interval.
        interval_s: f64,
        /// Intervals asked for.
        horizon: u32,
        /// The live forecast (empty when the live call failed).
        live: Vec<f64>,
    },
    /// A fleet plan.
    Provision {
        /// Forecast.
        forecast: Vec<f64>,
        /// Seconds per interval.
        interval_s: f64,
        /// Fleet.
        fleet: Vec<n::FleetEntry>,
        /// Catalog.
        catalog: Vec<n::InstanceType>,
        /// SLO.
        slo: n::Slo,
        /// Per-model demands.
        models: Vec<n::ModelDemand>,
        /// The live plan (`None` when the live call failed).
        live: Option<n::Plan>,
    },
}
