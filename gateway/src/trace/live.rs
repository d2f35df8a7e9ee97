//! The control loop's records, built from its own types (one call per phase in `autoscale`).

use mark_policies::types::Plan;

use super::schema::{InstanceRow, Rec};
use super::Tracing;
use crate::control::controller::Action;
use crate::control::fleet::Instance;

/// The fleet as trace rows.
pub fn fleet_rows(fleet: &[Instance]) -> Vec<InstanceRow> {
    fleet
        .iter()
        .map(|i| {
            (
                i.id.clone(),
                i.instance_type.clone(),
                i.market.to_string(),
                format!("{:?}", i.state).to_lowercase(),
            )
        })
        .collect()
}

/// Sample phase: one window's demand and outcomes.
pub fn window(tr: &Tracing, arrived: u64, done: u64, missed: u64) {
    tr.record(|t| Rec::Window {
        t,
        arrived,
        done,
        missed,
    });
}

/// Plan phase: one controller step.
pub fn step(tr: &Tracing, last_peak: f64, forecast: &[f64], plan: &Plan, actions: &[Action]) {
    tr.record(|t| Rec::Step {
        t,
        last_peak,
        forecast: forecast.to_vec(),
        plan: plan
            .targets
            .iter()
            .map(|x| (x.instance_type.clone(), x.market.to_string(), x.count))
            .collect(),
        lambda_share: plan.lambda_share,
        launch: Action::launches(actions)
            .into_iter()
            .map(|(t, m, n)| (t.to_string(), m.to_string(), n))
            .collect(),
        terminate: Action::terminations(actions) as u32,
    });
}

/// The histograms a fleet record carries, in ms: (upper bound or `None` for +Inf, count).
pub struct FleetHistograms {
    /// Request latency.
    pub latency: Vec<(Option<f64>, u64)>,
    /// The host's overhead on the gateway's executors.
    pub host: Vec<(Option<f64>, u64)>,
    /// The fleet workers' overhead.
    pub worker: Vec<(Option<f64>, u64)>,
}

/// Publish phase: the fleet and the running totals; the fleet also goes to later headers.
pub fn fleet(
    tr: &Tracing,
    fleet: &[Instance],
    dollars_per_hour: f64,
    cost: f64,
    answered: u64,
    hist: FleetHistograms,
) {
    let rows = fleet_rows(fleet);
    tr.set_fleet(rows.clone());
    tr.record(|t| Rec::Fleet {
        t,
        instances: rows,
        dollars_per_hour,
        cost,
        answered,
        latency_buckets_ms: hist.latency,
        host_buckets_ms: hist.host,
        worker_buckets_ms: hist.worker,
    });
}
