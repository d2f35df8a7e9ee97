//! Admin routes of trace recording (`crate::trace`):
//!
//! - `POST /admin/v1/trace/start` with `{"dir": "...", "max_bytes": N}` (both optional: a new
//!   `run-…` directory under `--record-trace`, or `mark-trace-<unix time>` under the state
//!   directory; the `--record-max-bytes` bound): 200 and the status, 409 when a recording runs or
//!   the directory holds a trace already. A `dir` given is a relative path under the state
//!   directory (`--cloud-state`): absolute paths and `..` are refused (400), so the admin token
//!   cannot write wherever the process can;
//! - `POST /admin/v1/trace/stop`: 200 and the final status, 409 when nothing records;
//! - `GET /admin/v1/trace/status`.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;

use super::common::{not_allowed, small_json};
use crate::api::body::ReqBody;
use crate::api::error::{json_ok, ApiError};
use crate::api::AppState;

/// `/admin/v1/trace/{action}`.
pub async fn route(
    state: &Arc<AppState>,
    action: &str,
    m: &Method,
    req: Request<impl ReqBody>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    match (action, m) {
        ("start", &Method::POST) => start(state, req).await,
        ("stop", &Method::POST) => {
            let tr = state.trace.clone();
            let st = tokio::task::spawn_blocking(move || tr.stop())
                .await
                .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
            st.map(|s| json_ok(&s))
                .ok_or_else(|| ApiError::new(StatusCode::CONFLICT, "no trace is being recorded"))
        }
        ("status", &Method::GET | &Method::HEAD) => Ok(json_ok(
            &state
                .trace
                .status()
                .map_or(serde_json::json!({ "recording": false }), |s| {
                    serde_json::json!(s)
                }),
        )),
        ("start" | "stop", _) => Err(not_allowed(m, "POST")),
        ("status", _) => Err(not_allowed(m, "GET")),
        _ => Err(ApiError::not_found(format!(
            "no admin route /admin/v1/trace/{action}; use start, stop or status"
        ))),
    }
}

async fn start(
    state: &Arc<AppState>,
    req: Request<impl ReqBody>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let v = small_json(req, "trace start request").await?;
    let cfg = &state.cfg.trace;
    let dir = match v.get("dir") {
        None | Some(serde_json::Value::Null) => match &cfg.dir {
            Some(d) => crate::trace::run_dir(d),
            None => cfg.default_parent.join(format!(
                "mark-trace-{}",
                (crate::clock::wall_s() * 1000.0) as u64
            )),
        },
        Some(serde_json::Value::String(s)) => cfg.default_parent.join(confined(s)?),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "\"dir\" must be a non-empty string, got {other}"
            )))
        }
    };
    let max_bytes = match v.get("max_bytes") {
        None | Some(serde_json::Value::Null) => cfg.max_bytes,
        Some(x) => x
            .as_u64()
            .filter(|n| *n >= crate::trace::MIN_BYTES)
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "\"max_bytes\" must be an integer >= {}, got {x}",
                    crate::trace::MIN_BYTES
                ))
            })?,
    };
    let tr = state.trace.clone();
    let st = tokio::task::spawn_blocking(move || tr.start(&dir, max_bytes))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiError::new(StatusCode::CONFLICT, format!("trace not started: {e}")))?;
    Ok(json_ok(&st))
}

/// A trace directory the admin API may name: relative, plain components only (no `..`, no
/// root, no prefix), at most 255 bytes.
fn confined(s: &str) -> Result<PathBuf, ApiError> {
    use std::path::Component;
    let p = PathBuf::from(s);
    let plain = p.components().all(|c| matches!(c, Component::Normal(_)));
    if s.is_empty() || s.len() > 255 || !plain {
        return Err(ApiError::bad_request(format!(
            "\"dir\" must be a relative path under the state directory (no '..', not absolute), got {s:?}"
        )));
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::confined;

    #[test]
    fn the_trace_dir_stays_under_the_state_directory() {
        for ok in ["t1", "traces/monday", "a.b"] {
            assert!(confined(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/tmp/x", "../x", "a/../../x", "./x", "/", "a/.."] {
            assert!(confined(bad).is_err(), "{bad}");
        }
    }
}
