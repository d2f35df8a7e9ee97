//! A fleet worker's load signal. Several gateway replicas may send batches to the same worker;
//! each sees only its own. The worker says how full it is on every answer and on its readiness
//! probe (`x-mark-load`: the expected wait of a new request over its admission budget, 1.0 =
//! saturated), and refuses a batch it could not start within that budget (503): the replica
//! then sends it elsewhere and prefers less loaded workers, without counting it a failure.

use bytes::Bytes;
use http::Response;
use http_body_util::Full;

use super::error::ApiError;
use super::AppState;
use crate::batching::admission;
use crate::model::{Loaded, Model};

/// The header carrying the load.
pub const LOAD_HEADER: &str = "x-mark-load";
/// The header a draining worker (an interruption notice) sets on its refusals and readiness.
pub const DRAINING_HEADER: &str = "x-mark-draining";

/// Load of `model`: expected microseconds before a new one-row request is answered, over
/// `ADMIT_SHARE_OF_SLO` of its SLO; 0 with nothing queued.
pub fn load(model: &Model, loaded: &Loaded) -> f64 {
    let queued = loaded.queue.queued_items();
    if queued == 0 {
        return 0.0;
    }
    let max_batch = loaded.rows_per_run();
    let profile = loaded.metrics.live.profile();
    let capacity = admission::capacity_items_per_s(&profile, max_batch, model.cfg.executors as f64);
    let expected = admission::expected_latency_us(&profile, queued, 1, capacity, max_batch);
    expected / (admission::ADMIT_SHARE_OF_SLO * model.cfg.slo_ms * 1000.0)
}

/// The highest load among the loaded models.
pub fn max_load(state: &AppState) -> f64 {
    state
        .models
        .values()
        .filter_map(|m| m.loaded().map(|l| load(m, l)))
        .fold(0.0, f64::max)
}

/// 503 when `model` is saturated (a worker only).
pub fn refuse_if_saturated(model: &Model, loaded: &Loaded) -> Result<(), ApiError> {
    let l = load(model, loaded);
    if l < 1.0 {
        return Ok(());
    }
    Err(ApiError::unavailable(
        format!(
            "worker saturated: model '{}' has {} items queued (load {l:.2}); send elsewhere",
            model.name,
            loaded.queue.queued_items()
        ),
        1,
    ))
}

/// Adds the load header to `r` (a worker's answers and readiness).
pub fn stamp(load: f64, r: &mut Response<Full<Bytes>>) {
    if let Ok(v) = format!("{load:.3}").parse() {
        r.headers_mut().insert(LOAD_HEADER, v);
    }
}
