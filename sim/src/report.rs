//! What a simulation reports: per strategy, cost, SLO attainment, latency, instance-hours by type
//! and market, Lambda use, and a timeline; written as `summary.json` and printed as a table.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

/// One timeline sample.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Sample {
    /// Virtual time, s.
    pub t: f64,
    /// Arrivals per second over the sample.
    pub load_rps: f64,
    /// Capacity (req/s at the SLO) of the serving instances.
    pub capacity_rps: f64,
    /// Instances alive (serving or launching).
    pub instances: u32,
    /// Requests per second sent to Lambda.
    pub lambda_rps: f64,
    /// Requests that missed the SLO during the sample (answered late, refused or dropped).
    pub missed: u64,
    /// USD so far.
    pub cost: f64,
    /// Share of the forecast the controller plans (the feedback on slack; 1 without it).
    pub headroom: f64,
}

/// The result of one strategy.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PolicyReport {
    /// Strategy name.
    pub name: String,
    /// Whether spot instances were allowed.
    pub spot: bool,
    /// Requests that arrived.
    pub requests: u64,
    /// Requests never served (the run ended with them queued: no capacity at all).
    pub unserved: u64,
    /// Requests refused at arrival or dropped before running because they would miss their SLO
    /// (`on_deadline = "reject"`); counted as misses.
    pub rejected: u64,
    /// USD, instances + Lambda.
    pub total_cost: f64,
    /// USD on instances.
    pub instance_cost: f64,
    /// USD on Lambda.
    pub lambda_cost: f64,
    /// USD per million requests.
    pub dollars_per_million: f64,
    /// Total cost / sagemaker's total cost (when sagemaker ran).
    pub cost_ratio_vs_sagemaker: Option<f64>,
    /// Share of requests answered within the SLO.
    pub attainment: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th-percentile latency, ms.
    pub p99_ms: f64,
    /// Mean latency, ms.
    pub mean_ms: f64,
    /// Instance-hours by `type/market`.
    pub instance_hours: BTreeMap<String, f64>,
    /// USD by backend: `type/market` and `lambda`.
    pub cost_by_backend: BTreeMap<String, f64>,
    /// Instances launched (including the warm start).
    pub launches: u64,
    /// Instances terminated by the controller (not interruptions).
    pub terminations: u64,
    /// Launches and terminations the per-hour budget refused.
    pub changes_skipped_by_rate: u64,
    /// Out-of-cycle launches for SLO breaches.
    pub emergencies: u64,
    /// The feedback on slack's steps: [down, up].
    pub headroom_steps: [u64; 2],
    /// Spot interruptions.
    pub interruptions: u64,
    /// Launch calls the cloud refused (`--cloud-faults`: capacity errors, throttling).
    pub launch_errors: u64,
    /// Launches that never became ready, terminated at their pending deadline.
    pub launch_failures: u64,
    /// Spot notices received (`[[reclaim]]` and `[[rebalance]]`).
    pub notices: u64,
    /// Longest time an instance that never served was billed, seconds.
    pub max_unserving_billed_s: f64,
    /// The same, in launch times of its type (the pending deadline is 3).
    pub max_unserving_launch_times: f64,
    /// Requests whose batch an interruption cut off (served again).
    pub requeued: u64,
    /// Batches sent against the batcher's wait because a request had waited a whole SLO.
    pub forced_batches: u64,
    /// Lambda invocations.
    pub lambda_invocations: u64,
    /// Requests served by Lambda.
    pub lambda_requests: u64,
    /// Lambda cold starts.
    pub lambda_cold_starts: u64,
    /// Share of requests served by Lambda.
    pub lambda_share: f64,
    /// The gateway replicas' lease and demand rows (`--replicas`, mark-rs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<crate::engine::replicas::ReplicaReport>,
    /// Per model, when several shared the fleet (`--workload MODEL=SPEC` repeated).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub models: BTreeMap<String, ModelReport>,
    /// Timeline (plots).
    pub timeline: Vec<Sample>,
    /// Latency CCDF: (ms, share slower).
    pub ccdf: Vec<(f64, f64)>,
    /// Every answered request's latency (to combine runs exactly; not written).
    #[serde(skip)]
    pub hist: crate::stats::LatencyHist,
}

/// One model's part of a run on a shared fleet.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ModelReport {
    /// Requests that arrived.
    pub requests: u64,
    /// Its latency objective, ms (the SLO its attainment is counted against).
    pub slo_ms: f64,
    /// Share answered within its SLO.
    pub attainment: f64,
    /// 99th-percentile latency, ms.
    pub p99_ms: f64,
    /// Requests that missed (late, refused, dropped or never served).
    pub misses: u64,
    /// Its share of the run's cost.
    pub cost_share: f64,
}

impl PolicyReport {
    /// Name with the market variant, e.g. `mark-rs+spot`.
    pub fn label(&self) -> String {
        if self.spot {
            format!("{}+spot", self.name)
        } else {
            self.name.clone()
        }
    }
}

/// The whole run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    /// The `--workload` spec.
    pub workload: String,
    /// Seed.
    pub seed: u64,
    /// Virtual seconds.
    pub duration_s: f64,
    /// SLO, ms.
    pub slo_ms: f64,
    /// Per strategy.
    pub policies: Vec<PolicyReport>,
    /// With `--policy`: the candidate against the defaults, per market.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub comparison: Vec<Comparison>,
}

/// A candidate policy against the defaults on the same arrivals (`--policy`): the candidate's
/// figure minus the defaults'.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Comparison {
    /// The candidate's row.
    pub candidate: String,
    /// The defaults' row.
    pub defaults: String,
    /// Spot allowed.
    pub spot: bool,
    /// Cost change, percent of the defaults' cost.
    pub cost_pct: f64,
    /// Cost change, USD.
    pub cost_usd: f64,
    /// Attainment change (0.001 = a tenth of a point).
    pub attainment: f64,
    /// p50 change, ms.
    pub p50_ms: f64,
    /// p99 change, ms.
    pub p99_ms: f64,
    /// Launches, candidate minus defaults.
    pub launches: i64,
}

impl Summary {
    /// Compares the candidate's rows (`label`) with the defaults' (`mark-rs`) per market.
    pub fn compare(&mut self, label: &str) {
        let find = |name: &str, spot: bool| {
            self.policies
                .iter()
                .find(|p| p.name == name && p.spot == spot)
        };
        let mut out = Vec::new();
        for spot in [false, true] {
            let (Some(c), Some(d)) = (find(label, spot), find("mark-rs", spot)) else {
                continue;
            };
            out.push(Comparison {
                candidate: c.label(),
                defaults: d.label(),
                spot,
                cost_pct: (c.total_cost / d.total_cost.max(1e-12) - 1.0) * 100.0,
                cost_usd: c.total_cost - d.total_cost,
                attainment: c.attainment - d.attainment,
                p50_ms: c.p50_ms - d.p50_ms,
                p99_ms: c.p99_ms - d.p99_ms,
                launches: c.launches as i64 - d.launches as i64,
            });
        }
        self.comparison = out;
    }

    /// Fills each report's cost ratio against `sagemaker`.
    pub fn fill_ratios(&mut self) {
        let base = self
            .policies
            .iter()
            .find(|p| p.name == "sagemaker")
            .map(|p| p.total_cost);
        for p in &mut self.policies {
            p.cost_ratio_vs_sagemaker = base
                .filter(|b| *b > 0.0 && p.total_cost > 0.0)
                .map(|b| b / p.total_cost);
        }
    }

    /// The terminal table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:<20} {:>10} {:>9} {:>8} {:>8} {:>9} {:>9} {:>8} {:>7}  instance-hours",
            "policy",
            "total $",
            "$/1M req",
            "x cheaper",
            "SLO att",
            "p50 ms",
            "p99 ms",
            "lambda",
            "l.share"
        );
        for p in &self.policies {
            let hours: Vec<String> = p
                .instance_hours
                .iter()
                .map(|(k, h)| format!("{k} {h:.1}"))
                .collect();
            let _ = writeln!(
                s,
                "{:<20} {:>10.2} {:>9.3} {:>8} {:>8.4} {:>9.1} {:>9.1} {:>8} {:>7.4}  {}",
                p.label(),
                p.total_cost,
                p.dollars_per_million,
                p.cost_ratio_vs_sagemaker
                    .map_or("-".to_string(), |r| format!("{r:.2}x")),
                p.attainment,
                p.p50_ms,
                p.p99_ms,
                p.lambda_invocations,
                p.lambda_share,
                if hours.is_empty() {
                    "-".to_string()
                } else {
                    hours.join(", ")
                }
            );
        }
        for (p, r) in self
            .policies
            .iter()
            .filter_map(|p| p.replicas.as_ref().map(|r| (p, r)))
        {
            let _ = writeln!(
                s,
                "{} behind {} replicas: {} lease acquisitions, {:.1} s without a leader{}, {} row publications and {} reads lost; demand seen {} of {} arrivals ({:+.2}%)",
                p.label(),
                r.replicas,
                r.acquisitions,
                r.leaderless_s,
                r.takeover_s
                    .map_or(String::new(), |t| format!(" (takeover {t:.1} s after the kill)")),
                r.lost_publications,
                r.failed_reads,
                r.demand_seen,
                r.arrivals,
                100.0 * (r.demand_seen as f64 / r.arrivals.max(1) as f64 - 1.0)
            );
        }
        for c in &self.comparison {
            let _ = writeln!(
                s,
                "{} against {}: cost {:+.1}% ({:+.2} $), attainment {:+.4}, p50 {:+.1} ms, p99 {:+.1} ms, launches {:+}",
                c.candidate, c.defaults, c.cost_pct, c.cost_usd, c.attainment, c.p50_ms, c.p99_ms, c.launches
            );
        }
        s
    }
}
