//! Handlers of the v2 endpoints.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::Full;
use tokio::sync::oneshot;

use super::admit::admit;
use super::body::{drain, read_limited, ReqBody};
use super::error::{json_ok, ApiError};
use super::AppState;
use crate::batching::admission;
use crate::codec::request::{decode, InferRequest};
use crate::codec::response::{encode, Encoded};
use crate::config::OnDeadline;
use crate::model::{Loaded, Model, ModelState};
use crate::tensor::Tensor;
use crate::work::ExecError;
use crate::work::Pending;

/// Header of the binary tensor extension.
pub const HEADER_LEN: &str = "inference-header-content-length";

/// `GET /v2/health/ready`: 200 once every model is loaded, 503 again once the process drains
/// for a stop (a load balancer's health check takes it out of rotation first).
pub fn server_ready(state: &AppState) -> Result<Response<Full<Bytes>>, ApiError> {
    if state.draining.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(ApiError::unavailable(
            "draining: this server is stopping; send to another replica",
            1,
        ));
    }
    let not_ready: Vec<&str> = state
        .models
        .values()
        .filter(|m| m.state() != ModelState::Ready)
        .map(|m| m.name.as_str())
        .collect();
    if not_ready.is_empty() {
        Ok(json_ok(&serde_json::json!({ "ready": true })))
    } else {
        Err(ApiError::unavailable(
            format!("models not ready: {not_ready:?}"),
            1,
        ))
    }
}

/// `GET /v2`.
pub fn server_metadata() -> Response<Full<Bytes>> {
    json_ok(&serde_json::json!({
        "name": "mark-rs",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": ["binary_tensor_data"],
    }))
}

/// The model `name` (and `version`, if given), or 404.
pub fn find<'a>(
    state: &'a AppState,
    name: &str,
    version: Option<&str>,
) -> Result<&'a Arc<Model>, ApiError> {
    let m = state.models.get(name).ok_or_else(|| {
        let known: Vec<&String> = state.models.keys().collect();
        ApiError::not_found(format!("unknown model '{name}'; served models: {known:?}"))
    })?;
    if let Some(v) = version {
        if v != m.cfg.version {
            return Err(ApiError::not_found(format!(
                "model '{name}' has no version '{v}'; available: [\"{}\"]",
                m.cfg.version
            )));
        }
    }
    Ok(m)
}

/// The model's loaded parts when it is ready, else 503 with a retry hint.
pub fn ready(m: &Model) -> Result<&Arc<Loaded>, ApiError> {
    match m.state() {
        ModelState::Ready => Ok(m.loaded().expect("ready implies loaded")),
        ModelState::Loading => Err(ApiError::unavailable(
            format!("model '{}' is loading", m.name),
            2,
        )),
        ModelState::Failed(e) => Err(ApiError::unavailable(
            format!("model '{}' failed to load: {e}", m.name),
            30,
        )),
    }
}

/// `GET /v2/models/{m}[/versions/{v}]`.
pub fn model_metadata(
    state: &AppState,
    name: &str,
    version: Option<&str>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let m = find(state, name, version)?;
    let l = ready(m)?;
    Ok(json_ok(&serde_json::json!({
        "name": m.name,
        "versions": [m.cfg.version],
        "platform": "onnxruntime_onnx",
        "inputs": l.inputs,
        "outputs": l.outputs,
        // beyond the protocol's fields, as Triton's config has them: 0 = one request per run
        "max_batch_size": l.batching.max_batch_size,
        "batching": l.batching,
    })))
}

/// `GET /v2/models/{m}[/versions/{v}]/ready`: 200 when ready, 503 otherwise.
pub fn model_ready(
    state: &AppState,
    name: &str,
    version: Option<&str>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let m = find(state, name, version)?;
    ready(m)?;
    Ok(json_ok(
        &serde_json::json!({ "name": m.name, "ready": true }),
    ))
}

fn too_big(n: String, limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body of {n} bytes exceeds the limit of {limit} bytes (--max-body-bytes)"),
    )
}

fn check_content_type(headers: &http::HeaderMap) -> Result<(), ApiError> {
    match super::body::media_type(headers).as_str() {
        "" | "application/json" | "application/octet-stream" | "application/vnd.sagemaker-triton.binary+json" => Ok(()),
        other => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Type '{other}' is not supported; send application/json (with Inference-Header-Content-Length for binary tensors)"),
        )),
    }
}

/// The `Inference-Header-Content-Length` of a request, if any.
fn header_len(headers: &http::HeaderMap) -> Result<Option<usize>, ApiError> {
    match headers.get(HEADER_LEN) {
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
            .map(Some)
            .ok_or_else(|| {
                ApiError::bad_request("Inference-Header-Content-Length must be a byte count")
            }),
        None => Ok(None),
    }
}

/// `POST /v2/models/{m}[/versions/{v}]/infer`.
pub async fn infer(
    state: &AppState,
    name: &str,
    version: Option<&str>,
    req: Request<impl ReqBody>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let label = if state.models.contains_key(name) {
        name
    } else {
        ""
    };
    let started = std::time::Instant::now();
    let r = infer_inner(state, name, version, req).await;
    let status = match &r {
        Ok(_) => 200,
        Err(e) => e.status.as_u16(),
    };
    state.metrics.request(label, status);
    log_request(state, name, "rest", status, started, r.as_ref().err());
    r
}

async fn infer_inner(
    state: &AppState,
    name: &str,
    version: Option<&str>,
    req: Request<impl ReqBody>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let limit = state.cfg.max_body_bytes;
    let within = state.cfg.body_timeout;
    let (parts, body) = req.into_parts();
    let early = || -> Result<(&Arc<Model>, Option<usize>), ApiError> {
        let model = find(state, name, version)?;
        let loaded = ready(model)?;
        if state.cfg.worker {
            super::worker_load::refuse_if_saturated(model, loaded)?;
        }
        check_content_type(&parts.headers)?;
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(len) = declared.filter(|&n| n > limit as u64) {
            return Err(too_big(len.to_string(), limit));
        }
        let hlen = header_len(&parts.headers)?;
        // overloaded: refuse before reading and decoding the body (its rows are not known yet:
        // one is assumed; the exact check runs again after decoding)
        if let (OnDeadline::Reject, Some(l)) = (model.cfg.on_deadline, model.loaded()) {
            if let Err(e) = shed_if_late(model, l, 1) {
                // demand, refused or not, is what the controller forecasts
                l.metrics
                    .arrived_items
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                state.trace.arrival(&model.name, 1);
                return Err(e);
            }
        }
        Ok((model, hlen))
    };
    let (model, hlen) = match early() {
        Ok(x) => x,
        Err(e) => {
            // answered before the body was read: read it (bounded) so the client sees the answer
            drain(body, limit, within).await;
            return Err(e);
        }
    };
    let body = read_limited(
        body,
        limit,
        within,
        || too_big("more than that".into(), limit),
        "request body",
    )
    .await?;
    // a worker checks again once the body is in: batches from several replicas arrive together,
    // and while they upload none is queued yet, so the check before the body saw them all as idle
    if state.cfg.worker {
        if let Some(l) = model.loaded() {
            super::worker_load::refuse_if_saturated(model, l)?;
        }
    }
    let enc = infer_body(state, model, body, hlen).await?;
    let mut b = Response::builder().status(StatusCode::OK);
    b = match enc.header_len {
        Some(n) => b
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(HEADER_LEN, n.to_string()),
        None => b.header(header::CONTENT_TYPE, "application/json"),
    };
    Ok(b.body(Full::new(Bytes::from(enc.body)))
        .expect("valid response"))
}

/// With `--log-requests`: one line per inference request.
pub fn log_request(
    state: &AppState,
    model: &str,
    protocol: &str,
    status: u16,
    started: std::time::Instant,
    error: Option<&ApiError>,
) {
    if state.cfg.log_requests {
        tracing::info!(
            target: "mark::request",
            model,
            protocol,
            status,
            ms = started.elapsed().as_secs_f64() * 1e3,
            error = error.map(|e| e.message.as_str()),
            "request"
        );
    }
}

/// Bodies at least this large are decoded on a blocking thread, so that a multi-megabyte JSON
/// tensor does not hold an async worker (and every connection it serves) for milliseconds.
const DECODE_OFF_THREAD_BYTES: usize = 256 << 10;

/// Decodes, admits, queues and answers one v2 request body for `model` (the in-process path the
/// HTTP handler and `mark lambda` share).
pub async fn infer_body(
    state: &AppState,
    model: &Model,
    body: Bytes,
    header_len: Option<usize>,
) -> Result<Encoded, ApiError> {
    ready(model)?;
    let decoded = if body.len() >= DECODE_OFF_THREAD_BYTES {
        tokio::task::spawn_blocking(move || decode(&body, header_len))
            .await
            .map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("decoding the request failed: {e}"),
                )
            })??
    } else {
        decode(&body, header_len)?
    };
    let answer = infer_decoded(state, model, decoded).await?;
    let chosen: Vec<_> = answer.outputs.iter().map(|(t, b)| (t, *b)).collect();
    Ok(encode(
        &model.name,
        &model.cfg.version,
        answer.id.as_ref(),
        &chosen,
    ))
}

/// The answer to one request: its id and the outputs asked for, in the order asked, each with
/// its binary flag.
pub struct Answer {
    /// The request's id, echoed.
    pub id: Option<serde_json::Value>,
    /// Outputs and whether each goes in binary form.
    pub outputs: Vec<(Tensor, bool)>,
}

/// Admits, queues and answers one decoded request: the one request path after decoding, shared
/// by REST, gRPC and `mark lambda`.
pub async fn infer_decoded(
    state: &AppState,
    model: &Model,
    decoded: InferRequest,
) -> Result<Answer, ApiError> {
    let name = model.name.as_str();
    let loaded = ready(model)?;
    let id = decoded.id.clone();
    let adm = admit(model, loaded, decoded)?;
    let (tx, rx) = oneshot::channel();
    let pending = Pending {
        inputs: adm.inputs,
        items: adm.items,
        signature: adm.signature,
        enqueued: tokio::time::Instant::now(),
        host: Default::default(),
        reply: tx,
    };
    // demand, refused or not, is what the controller forecasts
    loaded
        .metrics
        .arrived_items
        .fetch_add(u64::from(adm.items), std::sync::atomic::Ordering::Relaxed);
    state.trace.arrival(name, adm.items);
    if model.cfg.on_deadline == OnDeadline::Reject {
        shed_if_late(model, loaded, adm.items)?;
    }
    if let Err((full, _)) = loaded.queue.push(pending) {
        return Err(ApiError::unavailable(
            format!(
                "model '{name}' is overloaded: its queue holds {} requests",
                full.capacity
            ),
            1,
        ));
    }
    let mut outs = match rx.await {
        Ok(Ok(outs)) => outs,
        Ok(Err(e @ ExecError::Expired { .. })) => {
            return Err(ApiError::new(StatusCode::GATEWAY_TIMEOUT, e.to_string()))
        }
        Ok(Err(e)) => {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                e.to_string(),
            ))
        }
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("executor for model '{name}' stopped before answering"),
            ))
        }
    };
    let outputs = adm
        .outputs
        .iter()
        .filter_map(|o| {
            let i = outs.iter().position(|t| t.name == o.name)?;
            Some((outs.swap_remove(i), o.binary))
        })
        .collect();
    Ok(Answer { id, outputs })
}

/// SLO-aware admission: 503 with `Retry-After` when a request of `items` rows, joining the queue
/// now, is expected to be answered after `ADMIT_SHARE_OF_SLO` of its SLO on the backends there are (the gateway's
/// executors and healthy fleet workers), and Lambda has no free slot to take it.
fn shed_if_late(model: &Model, loaded: &Loaded, items: u32) -> Result<(), ApiError> {
    let max_batch = loaded.rows_per_run();
    let backends = model.cfg.executors as f64 + loaded.remotes.capacity_units();
    // the worse of the start-up profile and what batches take now
    let profile = loaded.metrics.live.profile();
    let capacity = admission::capacity_items_per_s(&profile, max_batch, backends);
    let queued = loaded.queue.queued_items();
    let expected_us = admission::expected_latency_us(&profile, queued, items, capacity, max_batch);
    let slo_us = model.cfg.slo_ms * 1000.0;
    if admission::admits(expected_us, queued, slo_us) {
        return Ok(());
    }
    if loaded
        .remotes
        .lambda
        .load()
        .as_ref()
        .is_some_and(|l| l.has_free_slot())
    {
        return Ok(());
    }
    loaded
        .metrics
        .shed
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let retry_s = ((expected_us - slo_us) / 1e6).ceil().clamp(1.0, 60.0) as u32;
    Err(ApiError::unavailable(
        format!(
            "model '{}' is overloaded: {queued} items are queued ahead, an answer is expected in {:.0} ms, past its {} ms SLO",
            model.name,
            expected_us / 1000.0,
            model.cfg.slo_ms
        ),
        retry_s,
    ))
}
