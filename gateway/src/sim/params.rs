//! What one simulation run is given: its knobs and its policies.

use mark_policies::types::{InstanceType, PolicyError, Slo};

use crate::batching::size_policy::BatchPolicy;

/// Knobs of one simulation run.
#[derive(Debug, Clone)]
pub struct SimParams {
    /// Seed of the arrival stream and of spot interruptions.
    pub seed: u64,
    /// Per-request latency objective, ms.
    pub slo_ms: f64,
    /// SLO attainment target.
    pub attainment_target: f64,
    /// Seconds per control interval (MArk: 60).
    pub interval_s: f64,
    /// Seconds per rate window (MArk: 5).
    pub window_s: f64,
    /// Intervals the forecast covers.
    pub horizon: u32,
    /// Largest batch an instance runs.
    pub max_batch: u32,
    /// Spot interruptions per spot instance-hour.
    pub spot_interruptions_per_hour: f64,
    /// A scheduled mass interruption: (time s, share of running spot instances).
    pub mass_interruption: Option<(f64, f64)>,
    /// Seconds a Lambda container stays warm when idle.
    pub lambda_keepalive_s: f64,
    /// Seconds between timeline samples (plots).
    pub sample_s: f64,
    /// Upper bound on instances.
    pub max_instances: u32,
    /// Launches allowed per rolling hour (all strategies that use the controller).
    pub launches_per_hour: u32,
    /// Terminations allowed per rolling hour.
    pub terminations_per_hour: u32,
    /// Price multiplier of SageMaker instances.
    pub sagemaker_markup: f64,
    /// The gateway's `on_deadline = "reject"` (mark-rs strategy only): a request expected to be
    /// answered past its SLO is refused at arrival, and one still queued at its SLO is dropped
    /// at batch formation. Both count as SLO misses.
    pub reject_late: bool,
    /// The fleet at t = 0 (type, market, count) instead of the strategy's own sizing: a replayed
    /// trace starts from the recorded fleet (mark-rs and mark-released).
    pub initial_fleet: Option<Vec<(String, mark_policies::types::Market, u32)>>,
}

impl Default for SimParams {
    fn default() -> Self {
        SimParams {
            seed: 1,
            slo_ms: 100.0,
            attainment_target: 0.99,
            interval_s: 60.0,
            window_s: 5.0,
            horizon: 5,
            max_batch: 32,
            spot_interruptions_per_hour: 0.01,
            mass_interruption: None,
            lambda_keepalive_s: 600.0,
            sample_s: 60.0,
            max_instances: 1000,
            launches_per_hour: crate::control::fleet::CHANGES_PER_HOUR,
            terminations_per_hour: crate::control::fleet::CHANGES_PER_HOUR,
            sagemaker_markup: 1.4,
            reject_late: true,
            initial_fleet: None,
        }
    }
}

/// A predictor as the controller calls it.
pub type Predict = Box<dyn FnMut(&[f64], f64, u32) -> Result<Vec<f64>, PolicyError>>;
/// A provisioner as the controller calls it.
pub type Provision = Box<
    dyn FnMut(
        &[f64],
        f64,
        &[mark_policies::types::FleetEntry],
        &[InstanceType],
        Slo,
    ) -> Result<mark_policies::types::Plan, PolicyError>,
>;

/// The policies one run uses.
pub struct Policies {
    /// Batch sizes.
    pub batch: Box<dyn BatchPolicy>,
    /// Load prediction.
    pub predict: Predict,
    /// Instance selection.
    pub provision: Provision,
}
