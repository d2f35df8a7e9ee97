//! Handlers of the v2 endpoints.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use tokio::sync::oneshot;

use super::admit::admit;
use super::codec::{decode, encode, Encoded};
use super::error::{json_ok, ApiError};
use super::AppState;
use crate::batching::queue::Pending;
use crate::model::{Loaded, Model, ModelState};

/// Header of the binary tensor extension.
pub const HEADER_LEN: &str = "inference-header-content-length";

/// `GET /v2/health/ready`: 200 once every model is loaded.
pub fn server_ready(state: &AppState) -> Result<Response<Full<Bytes>>, ApiError> {
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

fn ready(m: &Model) -> Result<&Arc<Loaded>, ApiError> {
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

fn check_content_type(req: &Request<Incoming>) -> Result<(), ApiError> {
    let Some(ct) = req.headers().get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let ct = ct
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match ct.as_str() {
        "" | "application/json" | "application/octet-stream" | "application/vnd.sagemaker-triton.binary+json" => Ok(()),
        other => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Type '{other}' is not supported; send application/json (with Inference-Header-Content-Length for binary tensors)"),
        )),
    }
}

/// Reads and discards up to `cap` bytes of a body we refuse, so that the client, still sending,
/// reads our error instead of a connection reset. Beyond `cap` the connection is dropped.
pub async fn drain(mut body: Incoming, cap: usize) {
    let mut seen = 0usize;
    while let Some(Ok(frame)) = body.frame().await {
        seen += frame.data_ref().map_or(0, |d| d.len());
        if seen > cap {
            break;
        }
    }
}

/// Reads a body of at most `limit` bytes: `too_big()` above it, 400 when the read fails.
pub async fn read_limited(
    body: Incoming,
    limit: usize,
    too_big: impl Fn() -> ApiError,
    what: &str,
) -> Result<Bytes, ApiError> {
    match Limited::new(body, limit).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(too_big())
        }
        Err(e) => Err(ApiError::bad_request(format!(
            "reading the {what} failed: {e}"
        ))),
    }
}

async fn read_body(
    state: &AppState,
    req: Request<Incoming>,
) -> Result<(Bytes, Option<usize>), ApiError> {
    let limit = state.cfg.max_body_bytes;
    let too_big = |n: String| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "request body of {n} bytes exceeds the limit of {limit} bytes (--max-body-bytes)"
            ),
        )
    };
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        if len > limit {
            drain(req.into_body(), 2 * limit).await;
            return Err(too_big(len.to_string()));
        }
    }
    let header_len = match req.headers().get(HEADER_LEN) {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok())
                .ok_or_else(|| {
                    ApiError::bad_request("Inference-Header-Content-Length must be a byte count")
                })?,
        ),
        None => None,
    };
    let body = read_limited(
        req.into_body(),
        limit,
        || too_big("more than that".into()),
        "request body",
    )
    .await?;
    Ok((body, header_len))
}

/// `POST /v2/models/{m}[/versions/{v}]/infer`.
pub async fn infer(
    state: &AppState,
    name: &str,
    version: Option<&str>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let label = if state.models.contains_key(name) {
        name
    } else {
        ""
    };
    let r = infer_inner(state, name, version, req).await;
    let status = match &r {
        Ok(_) => 200,
        Err(e) => e.status.as_u16(),
    };
    state.metrics.request(label, status);
    r
}

async fn infer_inner(
    state: &AppState,
    name: &str,
    version: Option<&str>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let model = find(state, name, version)?;
    ready(model)?;
    check_content_type(&req)?;
    let (body, header_len) = read_body(state, req).await?;
    let enc = infer_body(model, body, header_len).await?;
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

/// Decodes, admits, queues and answers one v2 request body for `model` (the in-process path the
/// HTTP handler and `mark lambda` share).
pub async fn infer_body(
    model: &Model,
    body: Bytes,
    header_len: Option<usize>,
) -> Result<Encoded, ApiError> {
    let name = model.name.as_str();
    let loaded = ready(model)?;
    let decoded = decode(&body, header_len)?;
    drop(body);
    let id = decoded.id.clone();
    let adm = admit(model, loaded, decoded)?;
    let (tx, rx) = oneshot::channel();
    let pending = Pending {
        inputs: adm.inputs,
        items: adm.items,
        signature: adm.signature,
        enqueued: Instant::now(),
        reply: tx,
    };
    // demand, refused or not, is what the controller forecasts
    loaded
        .metrics
        .arrived_items
        .fetch_add(u64::from(adm.items), std::sync::atomic::Ordering::Relaxed);
    if let Err((full, _)) = loaded.queue.push(pending) {
        return Err(ApiError::unavailable(
            format!(
                "model '{name}' is overloaded: its queue holds {} requests",
                full.capacity
            ),
            1,
        ));
    }
    let outs = match rx.await {
        Ok(Ok(outs)) => outs,
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
    let chosen: Vec<_> = adm
        .outputs
        .iter()
        .filter_map(|o| {
            outs.iter()
                .find(|t| t.name == o.name)
                .map(|t| (t, o.binary))
        })
        .collect();
    let enc = encode(&model.name, &model.cfg.version, id.as_ref(), &chosen);
    Ok(enc)
}
