//! Prometheus metrics: counters and fixed-bucket histograms on atomics (the request path pays a
//! relaxed add per event), encoded at each scrape by the `prometheus-client` crate
//! ([`exposition`]: OpenMetrics text).

pub mod exposition;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::DescriptorEncoder;

use exposition::Labels;

/// A histogram with fixed upper bounds; the sum is kept in micro-units to stay integral.
#[derive(Debug)]
pub struct Histogram {
    bounds: Vec<f64>,
    counts: Vec<AtomicU64>,
    sum_micro: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// A histogram with these (sorted) upper bounds plus +Inf.
    pub fn new(bounds: &[f64]) -> Self {
        Histogram {
            bounds: bounds.to_vec(),
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micro: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, v: f64) {
        let i = self
            .bounds
            .iter()
            .position(|&b| v <= b)
            .unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Relaxed);
        self.sum_micro.fetch_add((v * 1e6) as u64, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    /// Mean of the observations (0 when none).
    pub fn mean(&self) -> f64 {
        let n = self.count();
        if n == 0 {
            0.0
        } else {
            self.sum_micro.load(Relaxed) as f64 / 1e6 / n as f64
        }
    }

    /// Count of observations in each bucket (not cumulative), the last one being +Inf.
    pub fn buckets(&self) -> Vec<(f64, u64)> {
        let mut out: Vec<(f64, u64)> = self
            .bounds
            .iter()
            .zip(&self.counts)
            .map(|(b, c)| (*b, c.load(Relaxed)))
            .collect();
        out.push((f64::INFINITY, self.counts[self.bounds.len()].load(Relaxed)));
        out
    }

    /// Sum, count and per-bucket counts of one snapshot (`count` is the sum of the buckets, so a
    /// scrape is self-consistent even while observations land concurrently).
    fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let buckets = self.buckets();
        let count = buckets.iter().map(|b| b.1).sum();
        (self.sum_micro.load(Relaxed) as f64 / 1e6, count, buckets)
    }
}

const LATENCY_BOUNDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
/// Finer than the latency's at the low end: the host's overhead is mostly under 10 ms.
const HOST_BOUNDS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015,
    0.025, 0.05, 0.1, 0.25, 1.0,
];
const BATCH_BOUNDS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// A per-model counter: name, help, and how to read it.
type Series = (&'static str, &'static str, fn(&ModelMetrics) -> u64);

/// Metrics of one model.
#[derive(Debug)]
pub struct ModelMetrics {
    /// Request latency from admission to reply, seconds.
    pub latency: Histogram,
    /// Per request answered by the gateway's own executors, seconds: the time between
    /// admission and reply that neither the batch policy's waits, the wait for a free executor
    /// nor the profile's run time account for (`exec::executor::Timing`). Recorded in traces:
    /// the replay adds it, so that its latency is the host's and not only the profile's.
    pub host_overhead: Histogram,
    /// The same per request a fleet worker answered: the batch loop's lateness in sending it,
    /// and the call time past what the worker's curve (or the profile at its speed) promised
    /// (the network, the codec, the worker's own host).
    pub worker_overhead: Histogram,
    /// When one of the gateway's executors last finished a batch and freed itself: a batch
    /// loop that waited for a free executor was free to send from then on.
    pub executor_freed: Mutex<Option<tokio::time::Instant>>,
    /// Items per executed batch.
    pub batch_size: Histogram,
    /// Requests waiting in the queue.
    pub queue_depth: AtomicI64,
    /// Time executors spent running batches, microseconds.
    pub busy_us: AtomicU64,
    /// Requests answered after their SLO.
    pub slo_missed: AtomicU64,
    /// Batches sent although the policy said wait, because the oldest request had waited a whole SLO.
    pub forced_sends: AtomicU64,
    /// Requests answered (any outcome) by executors or workers.
    pub answered: AtomicU64,
    /// Requests admitted to the queue (items).
    pub arrived_items: AtomicU64,
    /// Batches run on fleet workers.
    pub remote_batches: AtomicU64,
    /// Batches a worker or Lambda failed and the gateway retried locally.
    pub remote_retries: AtomicU64,
    /// Batches a saturated worker refused (another replica's batches filled it), sent elsewhere.
    pub remote_saturated: AtomicU64,
    /// Batches run on a worker that checks no gateway–worker secret although the gateway has one.
    pub remote_open_batches: AtomicU64,
    /// Batches spilled to Lambda (spill-over and retries).
    pub lambda_batches: AtomicU64,
    /// Batches a worker failed that were retried on Lambda.
    pub lambda_retries: AtomicU64,
    /// Queued requests whose client went away: taken out of the queue, never run.
    pub cancelled: AtomicU64,
    /// Queued requests answered 504 without running: their deadline passed in the queue.
    pub expired: AtomicU64,
    /// Requests refused at admission (503) because the expected wait would miss their deadline.
    pub shed: AtomicU64,
    /// Requests answered after half their latency objective (late ones included): under 1% of
    /// an interval's answers means its p99 was below SLO/2 (the slack feedback's signal).
    pub slo_half: AtomicU64,
    /// What the model's own executors' batches take now, beside the start-up profile: admission
    /// and the batcher plan with the worse of the two.
    pub live: crate::profile::live::LiveLatency,
    /// Observed over expected call time of each fleet worker and of Lambda.
    pub remote_slowdown: crate::profile::live::Slowdowns,
}

impl ModelMetrics {
    /// The demand and SLO outcomes so far, as the control loop samples them.
    pub fn outcomes(&self) -> crate::control::demand::Outcomes {
        crate::control::demand::Outcomes::from_counts(
            self.arrived_items.load(Relaxed),
            self.answered.load(Relaxed),
            self.slo_missed.load(Relaxed),
            self.shed.load(Relaxed),
            self.expired.load(Relaxed),
            self.slo_half.load(Relaxed),
        )
    }
}

impl Default for ModelMetrics {
    fn default() -> Self {
        ModelMetrics {
            latency: Histogram::new(LATENCY_BOUNDS),
            host_overhead: Histogram::new(HOST_BOUNDS),
            worker_overhead: Histogram::new(HOST_BOUNDS),
            executor_freed: Mutex::new(None),
            batch_size: Histogram::new(BATCH_BOUNDS),
            queue_depth: AtomicI64::new(0),
            busy_us: AtomicU64::new(0),
            slo_missed: AtomicU64::new(0),
            forced_sends: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            arrived_items: AtomicU64::new(0),
            remote_batches: AtomicU64::new(0),
            remote_retries: AtomicU64::new(0),
            remote_saturated: AtomicU64::new(0),
            remote_open_batches: AtomicU64::new(0),
            lambda_batches: AtomicU64::new(0),
            lambda_retries: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            expired: AtomicU64::new(0),
            shed: AtomicU64::new(0),
            slo_half: AtomicU64::new(0),
            live: Default::default(),
            remote_slowdown: Default::default(),
        }
    }
}

/// All metrics of the process.
#[derive(Debug, Default)]
pub struct Metrics {
    models: Mutex<BTreeMap<String, Arc<ModelMetrics>>>,
    /// model -> status -> count (nested so a known model is counted without allocating).
    requests: Mutex<BTreeMap<String, BTreeMap<u16, u64>>>,
    gauges: Mutex<BTreeMap<String, f64>>,
    /// name -> model -> value: the control loop's per-model gauges.
    model_gauges: Mutex<BTreeMap<String, BTreeMap<String, f64>>>,
}

impl Metrics {
    /// The metrics of `model`, created on first use.
    pub fn model(&self, model: &str) -> Arc<ModelMetrics> {
        self.models
            .lock()
            .expect("metrics lock")
            .entry(model.to_string())
            .or_default()
            .clone()
    }

    /// Counts one answered inference request.
    pub fn request(&self, model: &str, status: u16) {
        let mut g = self.requests.lock().expect("metrics lock");
        match g.get_mut(model) {
            Some(by_status) => *by_status.entry(status).or_default() += 1,
            None => {
                g.entry(model.to_string()).or_default().insert(status, 1);
            }
        }
    }

    /// Sets a process-wide gauge (fleet size, cost, attainment), rendered as `name value`.
    pub fn set_gauge(&self, name: &str, v: f64) {
        self.gauges
            .lock()
            .expect("metrics lock")
            .insert(name.to_string(), v);
    }

    /// Sets a control-loop gauge of one model, rendered as `name{model="..."} value`.
    pub fn set_model_gauge(&self, name: &str, model: &str, v: f64) {
        self.model_gauges
            .lock()
            .expect("metrics lock")
            .entry(name.to_string())
            .or_default()
            .insert(model.to_string(), v);
    }

    /// Requests answered for `model` with `status` so far.
    pub fn requests(&self, model: &str, status: u16) -> u64 {
        let g = self.requests.lock().expect("metrics lock");
        g.get(model)
            .and_then(|m| m.get(&status))
            .copied()
            .unwrap_or(0)
    }

    /// The process's series into `enc` (every series is listed in docs/operations.md, "Metrics").
    pub fn encode(&self, enc: &mut DescriptorEncoder<'_>) -> std::fmt::Result {
        let requests: Vec<(Labels, u64)> = self
            .requests
            .lock()
            .expect("metrics lock")
            .iter()
            .flat_map(|(m, by_status)| {
                by_status
                    .iter()
                    .map(move |(s, n)| (vec![("model", m.clone()), ("status", s.to_string())], *n))
            })
            .collect();
        exposition::counter(
            enc,
            "mark_requests_total",
            "Inference requests answered, by model and HTTP status.",
            requests,
        )?;
        let gauges = self.gauges.lock().expect("metrics lock").clone();
        for (name, v) in gauges {
            exposition::gauge(enc, &name, gauge_help(&name), [(Vec::new(), v)])?;
        }
        let per_model = self.model_gauges.lock().expect("metrics lock").clone();
        for (name, by_model) in per_model {
            let samples = by_model.into_iter().map(|(m, v)| (vec![("model", m)], v));
            exposition::gauge(enc, &name, gauge_help(&name), samples)?;
        }
        let models = self.models.lock().expect("metrics lock").clone();
        let label = |m: &str| -> Labels { vec![("model", m.to_string())] };
        for (name, help, hist) in [
            (
                "mark_request_latency_seconds",
                "Admission-to-reply latency of inference requests.",
                (|m: &ModelMetrics| &m.latency) as fn(&ModelMetrics) -> &Histogram,
            ),
            ("mark_batch_size", "Items per executed batch.", |m| {
                &m.batch_size
            }),
            (
                "mark_host_overhead_seconds",
                "Per request the gateway's executors answered: admission to reply past the batch policy's waits, the wait for a free executor and the profile's run time.",
                |m| &m.host_overhead,
            ),
            (
                "mark_worker_overhead_seconds",
                "Per request a fleet worker answered: its call time past its curve's.",
                |m| &m.worker_overhead,
            ),
        ] {
            let samples = models.iter().map(|(m, mm)| (label(m), hist(mm).snapshot()));
            exposition::histogram(enc, name, help, samples)?;
        }
        exposition::gauge(
            enc,
            "mark_queue_depth",
            "Requests waiting in the model queue.",
            models
                .iter()
                .map(|(m, mm)| (label(m), mm.queue_depth.load(Relaxed) as f64)),
        )?;
        exposition::counter(
            enc,
            "mark_executor_busy_seconds_total",
            "Time executors spent running batches.",
            models
                .iter()
                .map(|(m, mm)| (label(m), mm.busy_us.load(Relaxed) as f64 / 1e6)),
        )?;
        let live: Vec<(Labels, f64)> = models
            .iter()
            .flat_map(|(m, mm)| {
                mm.live.points().into_iter().flat_map(move |p| {
                    let l = |src: &str| {
                        vec![
                            ("model", m.clone()),
                            ("batch", p.batch.to_string()),
                            ("source", src.to_string()),
                        ]
                    };
                    [
                        (l("profile"), p.profile_p50_us / 1e6),
                        (l("live"), p.live_p50_us / 1e6),
                    ]
                })
            })
            .collect();
        exposition::gauge(
            enc,
            "mark_batch_latency_estimate_seconds",
            "Median run time of a batch on the gateway's executors: the start-up profile and the live EWMA (admission and the batcher use the worse).",
            live,
        )?;
        let slow: Vec<(Labels, f64)> = models
            .iter()
            .flat_map(|(m, mm)| {
                mm.remote_slowdown
                    .snapshot()
                    .into_iter()
                    .map(move |(b, f, _)| (vec![("model", m.clone()), ("backend", b)], f))
            })
            .collect();
        exposition::gauge(
            enc,
            "mark_backend_slowdown",
            "Observed over expected call time of each fleet worker and of Lambda (EWMA).",
            slow,
        )?;
        let counters: [Series; 12] = [
            (
                "mark_remote_batches_total",
                "Batches run on fleet workers.",
                |m| m.remote_batches.load(Relaxed),
            ),
            (
                "mark_slo_missed_total",
                "Requests answered after their latency objective.",
                |m| m.slo_missed.load(Relaxed),
            ),
            (
                "mark_remote_saturated_total",
                "Batches a saturated worker refused (503 with x-mark-load), sent elsewhere.",
                |m| m.remote_saturated.load(Relaxed),
            ),
            (
                "mark_remote_open_batches_total",
                "Batches run on a worker that checks no worker secret (its answer lacks x-mark-worker-auth) although the gateway has one.",
                |m| m.remote_open_batches.load(Relaxed),
            ),
            (
                "mark_remote_retries_total",
                "Batches a worker or Lambda failed, retried on the gateway's executors.",
                |m| m.remote_retries.load(Relaxed),
            ),
            (
                "mark_lambda_batches_total",
                "Batches run on Lambda (spill-over and retries).",
                |m| m.lambda_batches.load(Relaxed),
            ),
            (
                "mark_lambda_retries_total",
                "Batches a worker failed, retried on Lambda.",
                |m| m.lambda_retries.load(Relaxed),
            ),
            (
                "mark_batch_forced_total",
                "Batches sent against the policy's wait: the oldest request had waited a whole SLO.",
                |m| m.forced_sends.load(Relaxed),
            ),
            (
                "mark_requests_cancelled_total",
                "Queued requests whose client went away, removed without running.",
                |m| m.cancelled.load(Relaxed),
            ),
            (
                "mark_requests_expired_total",
                "Queued requests answered 504 without running: their deadline passed while queued.",
                |m| m.expired.load(Relaxed),
            ),
            (
                "mark_requests_shed_total",
                "Requests refused with 503 at admission: the expected wait would miss the deadline.",
                |m| m.shed.load(Relaxed),
            ),
            (
                "mark_requests_answered_total",
                "Requests answered by executors, workers or Lambda (any outcome).",
                |m| m.answered.load(Relaxed),
            ),
        ];
        for (name, help, value) in counters {
            let samples = models.iter().map(|(m, mm)| (label(m), value(mm)));
            exposition::counter(enc, name, help, samples)?;
        }
        Ok(())
    }

    /// The process's series alone as an exposition (the data plane's `/metrics` adds the policy
    /// slots' and the trace recorder's).
    pub fn render(self: &Arc<Self>) -> String {
        exposition::render(vec![Box::new(exposition::Collected(self.clone()))])
    }
}

/// What the control loop's gauges mean (they are set by name from `autoscale`).
fn gauge_help(name: &str) -> &'static str {
    match name {
        "mark_fleet_instances" => "Fleet instances (pending and running).",
        "mark_fleet_dollars_per_hour" => "What the fleet costs per hour now.",
        "mark_fleet_launch_failures" => {
            "Launches that never became ready within their pending deadline (terminated)."
        }
        "mark_fleet_launch_refusals" => {
            "Launch calls the cloud refused (capacity, throttling); the type backs off."
        }
        "mark_fleet_notices" => {
            "Spot interruption notices and rebalance recommendations the workers reported."
        }
        "mark_fleet_overdue_pending" => {
            "Pending instances past their deadline now (not counted as capacity)."
        }
        "mark_fleet_cost_dollars" => {
            "Cost so far: instances (billed as the cloud bills) and Lambda."
        }
        "mark_slo_attainment" => {
            "Share of recent requests answered within the SLO (sliding window)."
        }
        "mark_dollars_per_million_requests" => "Cost so far per million requests answered.",
        "mark_lambda_share" => "Share of requests answered by Lambda.",
        "mark_arrival_rate" => "Peak arrival rate (req/s) of the last closed control interval.",
        "mark_forecast_rate" => "Forecast peak arrival rate (req/s) for the next interval.",
        "mark_plan_headroom" => {
            "Share of the forecast the plan covers (the feedback on slack moves it; 1 without it)."
        }
        "mark_replica_leader" => "This replica holds the controller lease (1) or not (0).",
        "mark_replicas_live" => "Replicas whose counters were fresh at the last read.",
        "mark_fleet_arrived_items" => {
            "Items all replicas' clients sent, summed from their counters since this replica started."
        }
        "mark_model_demand_rate" => "Peak arrival rate (req/s) of the model's recent windows.",
        "mark_model_forecast_rate" => "The model's forecast peak rate (req/s) for the next interval.",
        "mark_model_planned_capacity_rps" => {
            "The last plan's capacity for the model (the mix's capacity split by its forecast share)."
        }
        "mark_model_slo_attainment" => {
            "Share of the model's recent requests answered within its SLO (sliding window)."
        }
        _ => "A control-loop gauge.",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_is_openmetrics_with_cumulative_buckets_and_escaped_labels() {
        let m = Arc::new(Metrics::default());
        let mm = m.model("mlp");
        mm.batch_size.observe(1.0);
        mm.batch_size.observe(3.0);
        m.request("mlp", 200);
        // a model name with a quote and a backslash is escaped, not a broken line
        m.request("a\"b\\c", 404);
        m.set_gauge("mark_fleet_instances", 2.0);
        let t = m.render();
        assert!(t.contains("# TYPE mark_requests counter\n"), "{t}");
        assert!(
            t.contains("mark_requests_total{model=\"mlp\",status=\"200\"} 1\n"),
            "{t}"
        );
        assert!(
            t.contains("mark_requests_total{model=\"a\\\"b\\\\c\",status=\"404\"} 1\n"),
            "{t}"
        );
        assert!(
            t.contains("mark_batch_size_bucket{le=\"4.0\",model=\"mlp\"} 2\n"),
            "{t}"
        );
        assert!(
            t.contains("mark_batch_size_bucket{le=\"+Inf\",model=\"mlp\"} 2\n"),
            "{t}"
        );
        assert!(
            t.contains("mark_batch_size_count{model=\"mlp\"} 2\n"),
            "{t}"
        );
        assert!(t.contains("mark_fleet_instances 2.0\n"), "{t}");
        assert!(t.ends_with("# EOF\n"), "{t}");
        assert_eq!(mm.batch_size.mean(), 2.0);
    }
}
