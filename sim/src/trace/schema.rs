//! The trace format, schema 1: JSON Lines, one record per line, tagged by `"k"`. Segments are
//! files `trace-NNNNNN.jsonl` in the trace directory; each starts with a `header`. Times `t` are
//! seconds since the recording started (monotonic clock). docs/policies.md lists every field.

use serde::{Deserialize, Serialize};

/// Schema version written in every header.
pub const SCHEMA: u32 = 1;

/// What the control loop runs with: enough for `mark simulate --workload trace:DIR` to replay
/// the same setting without any other file.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Context {
    /// The model whose demand drives the fleet.
    pub model: String,
    /// Its SLO, ms.
    pub slo_ms: f64,
    /// Its largest batch.
    pub max_batch: u32,
    /// `reject` or `serve`.
    pub on_deadline: String,
    /// Seconds per control interval.
    pub interval_s: f64,
    /// Seconds per rate window.
    pub window_s: f64,
    /// SLO attainment target.
    pub attainment_target: f64,
    /// The model's latency profile (`profile.toml` of `mark profile`, as JSON).
    pub profile: Option<serde_json::Value>,
    /// The catalog file's text (TOML).
    pub catalog_toml: Option<String>,
    /// The policy in each slot: sha256, or "native-default".
    pub policies: Vec<(String, String)>,
    /// The gateway's own executors for the model (they serve batches first, before the fleet;
    /// the replay models them as a backend). 0 in traces of older builds.
    #[serde(default)]
    pub executors: u32,
}

/// One instance of the fleet: (id, type, market, state).
pub type InstanceRow = (String, String, String, String);

/// One record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "k", rename_all = "lowercase")]
pub enum Rec {
    /// First line of a segment.
    Header {
        /// Schema version.
        schema: u32,
        /// Segment number, from 1.
        segment: u64,
        /// When the segment started.
        t: f64,
        /// Wall-clock time of `t = 0`, seconds since the epoch.
        unix: f64,
        /// The control loop's setting (absent until the loop starts).
        context: Option<Context>,
        /// The fleet when the segment started.
        fleet: Vec<InstanceRow>,
    },
    /// The control loop's setting, written when the loop starts during a recording.
    Context {
        /// When.
        t: f64,
        /// The setting.
        context: Context,
    },
    /// One inference request admitted for decoding (refused later or not: demand).
    #[serde(rename = "a")]
    Arrival {
        /// When.
        t: f64,
        /// Model.
        m: String,
        /// Items (rows of the batch dimension).
        n: u32,
    },
    /// One rate window of the control loop: demand and SLO outcomes in it.
    #[serde(rename = "w")]
    Window {
        /// End of the window.
        t: f64,
        /// Items that arrived.
        arrived: u64,
        /// Requests with an outcome.
        done: u64,
        /// Of those, SLO misses (late, refused, expired).
        missed: u64,
    },
    /// One controller step: forecast and plan.
    Step {
        /// When.
        t: f64,
        /// Peak-rate history's last value (the interval just closed).
        last_peak: f64,
        /// Forecast.
        forecast: Vec<f64>,
        /// Plan: (type, market, count).
        plan: Vec<(String, String, u32)>,
        /// Planned Lambda share.
        lambda_share: f64,
        /// Launches decided: (type, market, count).
        launch: Vec<(String, String, u32)>,
        /// Terminations decided.
        terminate: u32,
    },
    /// The fleet and the running totals, every window.
    Fleet {
        /// When.
        t: f64,
        /// Instances.
        instances: Vec<InstanceRow>,
        /// What the fleet costs per hour now.
        dollars_per_hour: f64,
        /// Cost so far (instances and Lambda), since the gateway started.
        cost: f64,
        /// Requests answered so far.
        answered: u64,
        /// Latency histogram so far: (upper bound ms or null for +Inf, count in bucket).
        latency_buckets_ms: Vec<(Option<f64>, u64)>,
        /// The host's overhead so far, per request the gateway's executors answered, in the
        /// same form (absent in traces of older builds).
        #[serde(default)]
        host_buckets_ms: Vec<(Option<f64>, u64)>,
        /// The same per request the fleet's workers answered: their call time past their
        /// curve's (absent in traces of older builds).
        #[serde(default)]
        worker_buckets_ms: Vec<(Option<f64>, u64)>,
    },
    /// Records lost because the writer fell behind (written when there were any).
    Dropped {
        /// When.
        t: f64,
        /// How many since the last such record.
        n: u64,
    },
    /// The recording stopped cleanly.
    End {
        /// When.
        t: f64,
    },
}
