//! Routing: maps method and path to a handler; 404 for unknown paths, 405 for known paths with
//! the wrong method.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;

use super::body::ReqBody;
use super::error::{json_ok, ApiError};
use super::{v2, AppState};
use crate::codec::readiness::{WORKER_AUTH_HEADER, WORKER_SECRET_HEADER};

/// The one entry point of the data-plane listener.
pub async fn handle(state: Arc<AppState>, req: Request<impl ReqBody>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = req.method().clone();
    let get = |allowed: &str| {
        if method == Method::GET || method == Method::HEAD {
            None
        } else {
            Some(allowed.to_string())
        }
    };
    // a worker with a secret runs batches only for its gateways
    if let (true, Some(secret)) = (state.cfg.worker, &state.cfg.worker_secret) {
        let infer = segs.first() == Some(&"v2") && segs.last() == Some(&"infer");
        let given = req
            .headers()
            .get(WORKER_SECRET_HEADER)
            .map_or(&b""[..], |v| v.as_bytes());
        if infer && !crate::secret::constant_time_eq(given, secret.as_bytes()) {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "this worker runs batches for its gateways only (x-mark-worker-secret)",
            )
            .into_response();
        }
    }
    let (wrong_method, result) = match segs.as_slice() {
        ["v2", "health", "live"] => (
            get("GET"),
            Ok(json_ok(&serde_json::json!({ "live": true }))),
        ),
        ["v2", "health", "ready"] if state.cfg.worker => {
            // a worker also fails readiness while saturated, and says how loaded it is
            let load = super::worker_load::max_load(&state);
            let mut r = if load >= 1.0 {
                ApiError::unavailable(format!("worker saturated (load {load:.2})"), 1)
                    .into_response()
            } else {
                v2::server_ready(&state).unwrap_or_else(ApiError::into_response)
            };
            super::worker_load::stamp(load, &mut r);
            if state.draining.load(std::sync::atomic::Ordering::Relaxed) {
                r.headers_mut().insert(
                    super::worker_load::DRAINING_HEADER,
                    http::HeaderValue::from_static("1"),
                );
            }
            return r;
        }
        ["v2", "health", "ready"] => (get("GET"), v2::server_ready(&state)),
        ["v2"] => (get("GET"), Ok(v2::server_metadata())),
        ["metrics"] => (get("GET"), Ok(metrics(&state))),
        ["v2", "models", m] => (get("GET"), v2::model_metadata(&state, m, None)),
        ["v2", "models", m, "versions", v] => (get("GET"), v2::model_metadata(&state, m, Some(v))),
        ["v2", "models", m, "config"] => (
            get("GET"),
            super::model_config::model_config(&state, m, None),
        ),
        ["v2", "models", m, "versions", v, "config"] => (
            get("GET"),
            super::model_config::model_config(&state, m, Some(v)),
        ),
        ["v2", "models", m, "ready"] => (get("GET"), v2::model_ready(&state, m, None)),
        ["v2", "models", m, "versions", v, "ready"] => {
            (get("GET"), v2::model_ready(&state, m, Some(v)))
        }
        ["v2", "models", m, "infer"] | ["v2", "models", m, "versions", _, "infer"]
            if method != Method::POST =>
        {
            let _ = m;
            (Some("POST".into()), Ok(json_ok(&())))
        }
        ["v2", "models", _, "infer"]
            if state.cfg.worker && state.draining.load(std::sync::atomic::Ordering::Relaxed) =>
        {
            // a worker under an interruption notice finishes what it holds and takes nothing new
            let mut r = ApiError::unavailable(
                "draining: this instance is going away (spot interruption notice); send elsewhere",
                1,
            )
            .into_response();
            r.headers_mut().insert(
                super::worker_load::DRAINING_HEADER,
                http::HeaderValue::from_static("1"),
            );
            return r;
        }
        ["v2", "models", m, "infer"] => {
            let m = m.to_string();
            let mut r = v2::infer(&state, &m, None, req)
                .await
                .unwrap_or_else(ApiError::into_response);
            if state.cfg.worker {
                let load = state
                    .models
                    .get(&m)
                    .and_then(|md| md.loaded().map(|l| super::worker_load::load(md, l)));
                // no load without a loaded model: its 503 is a failure, not saturation
                if let Some(l) = load {
                    super::worker_load::stamp(l, &mut r);
                }
                // it checked the secret: the gateway notices a worker that does not
                if state.cfg.worker_secret.is_some() {
                    r.headers_mut()
                        .insert(WORKER_AUTH_HEADER, http::HeaderValue::from_static("secret"));
                }
            }
            return r;
        }
        ["v2", "models", m, "versions", v, "infer"] => {
            let (m, v) = (m.to_string(), v.to_string());
            return v2::infer(&state, &m, Some(&v), req)
                .await
                .unwrap_or_else(ApiError::into_response);
        }
        _ => (
            None,
            Err(ApiError::not_found(format!(
                "no route for {path}; see GET /v2 and /v2/models/{{name}}"
            ))),
        ),
    };
    if let Some(allowed) = wrong_method {
        let mut r = ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} is not allowed on {path}; use {allowed}"),
        )
        .into_response();
        r.headers_mut()
            .insert(header::ALLOW, allowed.parse().expect("valid header"));
        return r;
    }
    result.unwrap_or_else(ApiError::into_response)
}

fn metrics(state: &AppState) -> Response<Full<Bytes>> {
    use crate::metrics::exposition::{render, Collected, CONTENT_TYPE};
    let text = render(vec![
        Box::new(Collected(state.metrics.clone())),
        Box::new(Collected(state.policies.clone())),
        Box::new(Collected(std::sync::Arc::new(crate::trace::TraceMetrics(
            state.trace.clone(),
        )))),
    ]);
    Response::builder()
        .header(header::CONTENT_TYPE, CONTENT_TYPE)
        .body(Full::new(Bytes::from(text)))
        .expect("valid response")
}
