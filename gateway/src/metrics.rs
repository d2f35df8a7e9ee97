//! Prometheus metrics: counters and fixed-bucket histograms on atomics, rendered as text.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

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

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        // `_count` is the +Inf bucket of the same snapshot, so a scrape is self-consistent even
        // while observations land concurrently.
        let mut cum = 0;
        for (b, c) in self.buckets() {
            cum += c;
            let le = if b.is_infinite() {
                "+Inf".to_string()
            } else {
                format!("{b}")
            };
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cum}");
        }
        let _ = writeln!(
            out,
            "{name}_sum{{{labels}}} {}",
            self.sum_micro.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count{{{labels}}} {cum}");
    }
}

const LATENCY_BOUNDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
const BATCH_BOUNDS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// A per-model series: name, Prometheus type, help, and how to read it.
type Series = (
    &'static str,
    &'static str,
    &'static str,
    fn(&ModelMetrics) -> f64,
);

/// Metrics of one model.
#[derive(Debug)]
pub struct ModelMetrics {
    /// Request latency from admission to reply, seconds.
    pub latency: Histogram,
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
}

impl Default for ModelMetrics {
    fn default() -> Self {
        ModelMetrics {
            latency: Histogram::new(LATENCY_BOUNDS),
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
            lambda_batches: AtomicU64::new(0),
            lambda_retries: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            expired: AtomicU64::new(0),
            shed: AtomicU64::new(0),
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

    /// Requests answered for `model` with `status` so far.
    pub fn requests(&self, model: &str, status: u16) -> u64 {
        let g = self.requests.lock().expect("metrics lock");
        g.get(model)
            .and_then(|m| m.get(&status))
            .copied()
            .unwrap_or(0)
    }

    /// Prometheus text exposition (every series is listed in docs/operations.md, "Metrics").
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str(
            "# HELP mark_requests_total Inference requests answered, by model and HTTP status.\n",
        );
        out.push_str("# TYPE mark_requests_total counter\n");
        for (m, by_status) in self.requests.lock().expect("metrics lock").iter() {
            for (s, n) in by_status {
                let _ = writeln!(
                    out,
                    "mark_requests_total{{model=\"{m}\",status=\"{s}\"}} {n}"
                );
            }
        }
        for (name, v) in self.gauges.lock().expect("metrics lock").iter() {
            if let Some(help) = gauge_help(name) {
                let _ = writeln!(out, "# HELP {name} {help}");
            }
            let _ = writeln!(out, "# TYPE {name} gauge\n{name} {v}");
        }
        let models = self.models.lock().expect("metrics lock").clone();
        for (name, help, hist) in [
            (
                "mark_request_latency_seconds",
                "Admission-to-reply latency of inference requests.",
                (|m: &ModelMetrics| &m.latency) as fn(&ModelMetrics) -> &Histogram,
            ),
            ("mark_batch_size", "Items per executed batch.", |m| {
                &m.batch_size
            }),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
            for (m, mm) in &models {
                hist(mm).render(&mut out, name, &format!("model=\"{m}\""));
            }
        }
        let values: [Series; 13] = [
            ("mark_queue_depth", "gauge", "Requests waiting in the model queue.", |m| {
                m.queue_depth.load(Relaxed) as f64
            }),
            (
                "mark_executor_busy_seconds_total",
                "counter",
                "Time executors spent running batches.",
                |m| m.busy_us.load(Relaxed) as f64 / 1e6,
            ),
            (
                "mark_slo_missed_total",
                "counter",
                "Requests answered after their latency objective.",
                |m| m.slo_missed.load(Relaxed) as f64,
            ),
            ("mark_remote_batches_total", "counter", "Batches run on fleet workers.", |m| {
                m.remote_batches.load(Relaxed) as f64
            }),
            (
                "mark_remote_saturated_total",
                "counter",
                "Batches a saturated worker refused (503 with x-mark-load), sent elsewhere.",
                |m| m.remote_saturated.load(Relaxed) as f64,
            ),
            (
                "mark_remote_retries_total",
                "counter",
                "Batches a worker or Lambda failed, retried on the gateway's executors.",
                |m| m.remote_retries.load(Relaxed) as f64,
            ),
            (
                "mark_lambda_batches_total",
                "counter",
                "Batches run on Lambda (spill-over and retries).",
                |m| m.lambda_batches.load(Relaxed) as f64,
            ),
            (
                "mark_lambda_retries_total",
                "counter",
                "Batches a worker failed, retried on Lambda.",
                |m| m.lambda_retries.load(Relaxed) as f64,
            ),
            (
                "mark_batch_forced_total",
                "counter",
                "Batches sent against the policy's wait: the oldest request had waited a whole SLO.",
                |m| m.forced_sends.load(Relaxed) as f64,
            ),
            (
                "mark_requests_cancelled_total",
                "counter",
                "Queued requests whose client went away, removed without running.",
                |m| m.cancelled.load(Relaxed) as f64,
            ),
            (
                "mark_requests_expired_total",
                "counter",
                "Queued requests answered 504 without running: their deadline passed while queued.",
                |m| m.expired.load(Relaxed) as f64,
            ),
            (
                "mark_requests_shed_total",
                "counter",
                "Requests refused with 503 at admission: the expected wait would miss the deadline.",
                |m| m.shed.load(Relaxed) as f64,
            ),
            (
                "mark_requests_answered_total",
                "counter",
                "Requests answered by executors, workers or Lambda (any outcome).",
                |m| m.answered.load(Relaxed) as f64,
            ),
        ];
        for (name, kind, help, value) in values {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (m, mm) in &models {
                let _ = writeln!(out, "{name}{{model=\"{m}\"}} {}", value(mm));
            }
        }
        out
    }
}

/// What the control loop's gauges mean (they are set by name from `autoscale`).
fn gauge_help(name: &str) -> Option<&'static str> {
    Some(match name {
        "mark_fleet_instances" => "Fleet instances (pending and running).",
        "mark_fleet_dollars_per_hour" => "What the fleet costs per hour now.",
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
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_in_text() {
        let m = Metrics::default();
        let mm = m.model("mlp");
        mm.batch_size.observe(1.0);
        mm.batch_size.observe(3.0);
        m.request("mlp", 200);
        let t = m.render();
        assert!(
            t.contains("mark_requests_total{model=\"mlp\",status=\"200\"} 1"),
            "{t}"
        );
        assert!(
            t.contains("mark_batch_size_bucket{model=\"mlp\",le=\"4\"} 2"),
            "{t}"
        );
        assert!(t.contains("mark_batch_size_count{model=\"mlp\"} 2"), "{t}");
        assert_eq!(mm.batch_size.mean(), 2.0);
    }
}
