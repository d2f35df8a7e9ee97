//! Helpers of the admin routes (policies, shadows, traces, the operations page): method and
//! kind errors, bounded uploads and JSON bodies, and the status document.

use std::sync::Arc;
use std::time::Instant;

use http::{header, Method, Request, StatusCode};

use crate::api::body::{drain, read_limited, ReqBody};
use crate::api::error::ApiError;
use crate::api::AppState;
use crate::policy::validate::validate;
use crate::policy::PolicyKind;

/// Longest time an admin request body may take to arrive.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
pub(crate) fn unknown_kind(k: &str) -> ApiError {
    ApiError::not_found(format!(
        "unknown policy kind '{k}'; kinds: batcher, predictor, provisioner"
    ))
}

pub(crate) fn not_allowed(m: &Method, allowed: &str) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{m} not allowed here; use {allowed}"),
    )
}

/// Reads an uploaded component (bounded) and validates it as a `kind` policy: the policy and
/// the validation time (ms), or 413 / 422 with the reason.
pub(crate) async fn receive(
    state: &Arc<AppState>,
    kind: PolicyKind,
    req: Request<impl ReqBody>,
) -> Result<(Arc<crate::policy::slot::LoadedPolicy>, f64), ApiError> {
    let limit = state.engine.limits.max_component_bytes;
    let too_big = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("component exceeds the upload limit of {limit} bytes"),
        )
    };
    if req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n > limit)
    {
        // Read and discard (bounded) so the client gets the answer instead of a reset.
        drain(req.into_body(), 4 * limit, BODY_TIMEOUT).await;
        return Err(too_big());
    }
    let bytes = read_limited(req.into_body(), limit, BODY_TIMEOUT, too_big, "upload").await?;
    let engine = state.engine.clone();
    let started = Instant::now();
    let validated =
        tokio::task::spawn_blocking(move || validate(&engine, &bytes, kind, "admin upload"))
            .await
            .map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("validation task failed: {e}"),
                )
            })?;
    let policy = validated.map_err(|r| {
        tracing::warn!(%kind, reason = %r, "refused a policy upload; the running policy stays");
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{kind} policy refused: {r}"),
        )
    })?;
    Ok((policy, started.elapsed().as_secs_f64() * 1e3))
}

/// An admin call's small JSON body (at most 4 KiB, within the body timeout); an empty body is
/// `{}`. 413 above the limit, 400 when it is not JSON.
pub(crate) async fn small_json(
    req: Request<impl ReqBody>,
    what: &str,
) -> Result<serde_json::Value, ApiError> {
    let body = read_limited(
        req.into_body(),
        4096,
        BODY_TIMEOUT,
        || ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body over 4096 bytes"),
        what,
    )
    .await?;
    if body.is_empty() {
        return Ok(serde_json::json!({}));
    }
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("body is not JSON: {e}")))
}

/// What `GET /admin/v1/status` answers.
pub(crate) fn status_value(state: &AppState) -> serde_json::Value {
    let models: Vec<serde_json::Value> = state
        .models
        .values()
        .map(|m| {
            // the provider the sessions got: "cuda" configured may have fallen back to "cpu"
            let provider = m.loaded().map(|l| format!("{:?}", l.provider).to_lowercase());
            // cumulative since start: the operations page takes differences between polls
            let (latency, batches, items) = m.loaded().map_or((vec![], 0, 0.0), |l| {
                let mm = &l.metrics;
                let b = mm.batch_size.count();
                let buckets: Vec<(Option<f64>, u64)> = mm
                    .latency
                    .buckets()
                    .into_iter()
                    .map(|(le, n)| (le.is_finite().then_some(le * 1e3), n))
                    .collect();
                (buckets, b, mm.batch_size.mean() * b as f64)
            });
            serde_json::json!({"name": m.name, "state": format!("{:?}", m.state()), "slo_ms": m.cfg.slo_ms, "max_batch_size": m.max_batch(), "batching": m.loaded().map(|l| &l.batching), "execution_provider": provider,
                "latency_live": m.loaded().map(|l| l.metrics.live.points()),
                "backend_slowdown": m.loaded().map(|l| l.metrics.remote_slowdown.snapshot().into_iter().map(|(b, f, n)| serde_json::json!({"backend": b, "slowdown": f, "calls": n})).collect::<Vec<_>>()),
                "latency_buckets_ms": latency, "batches": batches, "batch_items": items.round()})
        })
        .collect();
    serde_json::json!({
        "models": models,
        "policies": PolicyKind::ALL.map(|k| state.policies.get(k).status()),
        "control": state.control.get().map(|c| c.lock().expect("status lock").clone()),
    })
}
