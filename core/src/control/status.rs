//! What the control loop publishes and `GET /admin/v1/status` shows: control-plane data that the
//! API reads, written only by the live loop's publish phase.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::fleet::Instance;

/// The status cell shared by the control loop (writer) and the admin API (reader).
pub type SharedStatus = Arc<Mutex<ControlStatus>>;

/// What `GET /admin/v1/status` shows of the control loop.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ControlStatus {
    /// Spot prices read live (EC2 `--spot-price-interval`): type → (USD per hour the plan uses,
    /// the zones it is the mean over); empty: the catalog's prices.
    pub spot_prices: std::collections::BTreeMap<String, (f64, String)>,
    /// The prices read: type → zone → USD per hour (each spot instance is billed its zone's).
    pub spot_prices_by_zone:
        std::collections::BTreeMap<String, std::collections::BTreeMap<String, f64>>,
    /// The zone of each of `--ec2-subnets` (empty: every zone); none until looked up.
    pub spot_price_zones: Option<Vec<String>>,
    /// Why the last read failed (empty after a success).
    pub spot_price_error: String,
    /// Wall-clock seconds of the last read (0: never).
    pub spot_prices_read_at: f64,
    /// Reads of spot prices that failed.
    pub spot_price_failures: u64,
    /// Peak rate per closed interval, oldest first (last 20).
    pub history: Vec<f64>,
    /// Latest forecast.
    pub forecast: Vec<f64>,
    /// Latest plan: (type, market, count).
    pub plan: Vec<(String, String, u32)>,
    /// Share of load the latest plan leaves to Lambda.
    pub lambda_share: f64,
    /// Why the latest control step changed the fleet or not, in the figures that decided it.
    pub last_step_why: String,
    /// Share of answered requests that Lambda served so far.
    pub lambda_share_actual: f64,
    /// Lambda invocations (batches) so far.
    pub lambda_invocations: u64,
    /// Requests answered so far (all backends).
    pub requests: u64,
    /// USD per million answered requests so far (instances and Lambda).
    pub dollars_per_million_requests: f64,
    /// USD so far per backend: `type/market` of instances (live and terminated), and `lambda`.
    pub cost_by_backend: BTreeMap<String, f64>,
    /// Sliding-window SLO attainment.
    pub attainment: Option<f64>,
    /// The fleet now.
    pub fleet: Vec<Instance>,
    /// Instances launched so far.
    pub launches: u64,
    /// Instances terminated so far.
    pub terminations: u64,
    /// Out-of-cycle launches for SLO breaches.
    pub emergencies: u64,
    /// Launches that never became ready within their pending deadline (terminated).
    pub launch_failures: u64,
    /// Interruption notices (spot reclaim or rebalance) workers reported; each replacement is
    /// planned at the notice.
    pub notices: u64,
    /// Launch calls the cloud refused (capacity, throttling); the type backs off as for
    /// launch failures.
    pub launch_refusals: u64,
    /// Pending instances past their deadline now (not counted as capacity).
    pub overdue_pending: u32,
    /// Types left out of plans after failed launches, with the wall-clock-free loop time (s)
    /// their back-off ends.
    pub backed_off_types: Vec<(String, f64)>,
    /// Launches in the last hour (bounded by `--max-launches-per-hour`).
    pub launches_last_hour: u32,
    /// Terminations in the last hour (bounded by `--max-terminations-per-hour`).
    pub terminations_last_hour: u32,
    /// Launches and terminations the per-hour bounds refused so far.
    pub changes_skipped_by_rate: u64,
    /// USD billed so far: instances (live and terminated) and Lambda.
    pub cost_so_far: f64,
    /// USD per hour of the live fleet.
    pub dollars_per_hour: f64,
    /// Requests/s the running fleet serves within the SLO (each type's capacity at the SLO).
    pub capacity_rps: f64,
    /// The SLO attainment the controller keeps (`--attainment-target`).
    pub target_attainment: f64,
    /// The share of the forecast the last plan covered (the feedback on slack; 1 without it).
    pub headroom: f64,
    /// The feedback's steps so far: down (after calm intervals) and up (after misses).
    pub headroom_steps: (u64, u64),
    /// This replica and the fleet-wide view, when replicas share a lease (`--lease-table`).
    pub replica: Option<ReplicaStatus>,
    /// Per model the fleet serves: demand, forecast, the plan's capacity, attainment.
    pub models: Vec<ModelStatus>,
}

/// One model of the fleet, as the status shows it.
#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct ModelStatus {
    /// Model name.
    pub model: String,
    /// Its latency objective, ms.
    pub slo_ms: f64,
    /// Peak arrival rate of the recent windows, req/s.
    pub demand_rps: f64,
    /// Its forecast at the last plan, req/s per interval.
    pub forecast: Vec<f64>,
    /// The last plan's capacity for it (the plan's capacity for the mix, split by its share of
    /// the forecast peak), req/s.
    pub planned_capacity_rps: f64,
    /// Its SLO attainment over the monitor's window.
    pub attainment: Option<f64>,
    /// The 99th percentile of its answers' latency over the interval before the last plan, ms
    /// (what the provisioner was given; None: nothing answered).
    pub p99_ms: Option<f64>,
    /// Whether it drove the last plan (took the most instance time at the forecast's peak).
    pub drove_last_plan: bool,
}

/// One replica among several: its lease and its own vs the fleet-wide demand.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ReplicaStatus {
    /// `--replica-id`.
    pub id: String,
    /// Whether this replica holds the lease (runs predict -> provision -> act).
    pub leader: bool,
    /// The lease generation it holds (0: none).
    pub generation: u64,
    /// The holder it last saw.
    pub holder: String,
    /// `--lease-seconds`.
    pub lease_seconds: f64,
    /// Times this replica took the lease.
    pub times_acquired: u64,
    /// Whether the lease table was reached (a replica serves as a follower until it is).
    pub table_reachable: bool,
    /// Replicas whose counters changed within the staleness limit at the last read.
    pub live_replicas: u32,
    /// The fleet's arrival rate at the last read (req/s): each live replica's Δcount over Δ
    /// its own timestamps, summed.
    pub fleet_rate: f64,
    /// Arrivals handed to the rate windows (the fleet rate over the time that passed).
    pub fleet_rate_arrived: u64,
    /// Each replica's row as this one reads it: its rate, how long it has been unchanged.
    pub rows: Vec<crate::control::demand::RowView>,
    /// Items this replica's clients sent so far.
    pub own_arrived: u64,
    /// Items all replicas' clients sent, as summed from the replicas' rows since this one started.
    pub fleet_arrived: u64,
    /// Requests with an outcome, fleet-wide (same span).
    pub fleet_done: u64,
    /// Of those, SLO misses, fleet-wide.
    pub fleet_missed: u64,
}
