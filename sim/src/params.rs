//! What one simulation run is given: its knobs and its policies.

use mark_policies::types::PolicyError;

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
    /// Every host's speed over time: (from second, slowdown factor) steps, sorted; empty = the
    /// profiled speed throughout (a noisy neighbour, a host whose cores the gateway shares).
    pub host_slowdown: Vec<(f64, f64)>,
    /// The mark-rs admission plans with the worse of the profile and an EWMA of what batches
    /// really took (the live gateway's rule, issue 25); off: with the profile alone.
    pub live_latency: bool,
    /// Cloud faults (`--cloud-faults`): none by default.
    pub faults: crate::faults::CloudFaults,
    /// `--min-instances` for mark-rs (0: zero instances while Lambda carries the forecast for
    /// less); None: the plan as it is.
    pub min_instances: Option<u32>,
    /// `--spot-max-share` for mark-rs: no spot type above this share of the spot capacity.
    pub spot_max_share: Option<f64>,
    /// Sources of headroom turned off for the ablation (`--ablate`).
    pub ablate: Ablation,
    /// mark-rs plans with the feedback on slack (`--slack-feedback`).
    pub slack_feedback: bool,
    /// The gateway's own executors, a free backend offered batches first (mark-rs and MArk as
    /// released: both run behind the gateway); a replay takes the recorded count.
    pub gateway_executors: u32,
    /// The host's overhead per request the gateway's executors answer, as a recorded live run
    /// measured it (`metrics.host_overhead`): (bucket floor ms, bound ms, requests). Each
    /// request they answer here takes a draw from it on top of the modelled wait and run (a
    /// replay takes the trace's; empty: none).
    pub host_overhead_ms: Vec<(f64, f64, u64)>,
    /// The same for the requests the fleet's workers answer (their call time past their curve).
    pub worker_overhead_ms: Vec<(f64, f64, u64)>,
    /// Gateway replicas behind a load balancer, their lease and demand rows (`--replicas`).
    pub replicas: crate::engine::replicas::ReplicaParams,
}

/// Sources of planning headroom mark-rs can run without (`--ablate a,b,...`; issue 32's
/// ablation): each turned off alone shows what it costs and what it buys.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ablation {
    /// `margin`: the predictor forecasts Holt's smoothed peak without its safety margin.
    pub margin: bool,
    /// `slo-rule`: capacity at the SLO from batches that take up to the whole SLO, not half.
    pub slo_rule: bool,
    /// `make-before-break`: the plan's surplus goes at once (no scale-in guard, no swap rule).
    pub make_before_break: bool,
    /// `emergency`: no out-of-cycle launch when the SLO is breached.
    pub emergency: bool,
    /// `burst-sizing`: burstable types planned (capacity and batches) at full speed, not at
    /// the speed they sustain without CPU credits.
    pub burst_sizing: bool,
    /// `change-budget`: no bound on launches and terminations per hour.
    pub change_budget: bool,
    /// `churn`: launches made without weighing their saving against their launch cost.
    pub churn: bool,
}

/// The names `--ablate` takes.
pub const ABLATIONS: &[&str] = &[
    "margin",
    "slo-rule",
    "make-before-break",
    "emergency",
    "burst-sizing",
    "change-budget",
    "churn",
];

impl Ablation {
    /// Parses `--ablate`: names from [`ABLATIONS`], comma-separated (`none` or empty: nothing).
    pub fn parse(s: &str) -> Result<Ablation, String> {
        let mut a = Ablation::default();
        for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name {
                "none" => {}
                "margin" => a.margin = true,
                "slo-rule" => a.slo_rule = true,
                "make-before-break" => a.make_before_break = true,
                "emergency" => a.emergency = true,
                "burst-sizing" => a.burst_sizing = true,
                "change-budget" => a.change_budget = true,
                "churn" => a.churn = true,
                other => {
                    return Err(format!(
                        "--ablate {other}: expected some of {}",
                        ABLATIONS.join(", ")
                    ))
                }
            }
        }
        Ok(a)
    }
}

impl SimParams {
    /// The hosts' slowdown factor at time `t`.
    pub fn slowdown_at(&self, t: f64) -> f64 {
        self.host_slowdown
            .iter()
            .take_while(|(from, _)| *from <= t)
            .last()
            .map_or(1.0, |&(_, f)| f)
    }
}

/// Parses `--host-slowdown`: `SECONDS:FACTOR,...` (e.g. `3600:1.5,7200:1`), factors in
/// (0, 100], times ascending.
pub fn parse_slowdown(s: &str) -> Result<Vec<(f64, f64)>, String> {
    let mut out: Vec<(f64, f64)> = Vec::new();
    for part in s.split(',').filter(|p| !p.trim().is_empty()) {
        let (t, f) = part
            .split_once(':')
            .ok_or_else(|| format!("'{part}': expected SECONDS:FACTOR"))?;
        let t: f64 = t.trim().parse().map_err(|e| format!("'{part}': {e}"))?;
        let f: f64 = f.trim().parse().map_err(|e| format!("'{part}': {e}"))?;
        if !(t.is_finite() && t >= 0.0 && f > 0.0 && f <= 100.0) {
            return Err(format!(
                "'{part}': time must be >= 0 and factor in (0, 100]"
            ));
        }
        if out.last().is_some_and(|&(prev, _)| t <= prev) {
            return Err(format!("'{part}': times must ascend"));
        }
        out.push((t, f));
    }
    Ok(out)
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
            host_slowdown: Vec::new(),
            live_latency: true,
            faults: Default::default(),
            min_instances: None,
            spot_max_share: None,
            ablate: Ablation::default(),
            slack_feedback: false,
            gateway_executors: 0,
            host_overhead_ms: Vec::new(),
            worker_overhead_ms: Vec::new(),
            replicas: crate::engine::replicas::ReplicaParams {
                lease_s: 10.0,
                ..Default::default()
            },
        }
    }
}

/// A predictor as the controller calls it: (model, history, interval seconds, horizon).
pub type Predict = Box<dyn FnMut(&str, &[f64], f64, u32) -> Result<Vec<f64>, PolicyError>>;
/// A provisioner as the controller calls it.
pub type Provision = Box<
    dyn FnMut(
        &crate::control::controller::ProvisionInput<'_>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slowdown_steps_parse_and_apply() {
        let s = parse_slowdown("0:1, 3600:1.5,7200:1").unwrap();
        let p = SimParams {
            host_slowdown: s,
            ..SimParams::default()
        };
        assert_eq!(p.slowdown_at(10.0), 1.0);
        assert_eq!(p.slowdown_at(3600.0), 1.5);
        assert_eq!(p.slowdown_at(7199.0), 1.5);
        assert_eq!(p.slowdown_at(9000.0), 1.0);
        assert_eq!(SimParams::default().slowdown_at(5.0), 1.0);
        for bad in ["10", "5:0", "5:-1", "10:1,5:2", "x:1", "-1:2"] {
            assert!(parse_slowdown(bad).is_err(), "{bad}");
        }
    }
}
