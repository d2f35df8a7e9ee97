//! Admin API on its own listener: policy hot-reload, rollback, status, staged spot
//! interruptions of the local fleet, and the operations page (`/admin/`, `ops`; helpers in `common`, shadows in `shadow`,
//! trace recording in `trace_admin`). Every call
//! needs `Authorization: Bearer <token>` (compared in constant time), or for reads the page's
//! session cookie; 401 otherwise.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;

use crate::api::body::ReqBody;
use crate::api::error::{json_ok, ApiError};
use crate::api::AppState;
use crate::policy::PolicyKind;
use crate::secret::constant_time_eq;

mod common;
pub mod ops;
pub mod session;
mod shadow;
mod trace_admin;

use common::{not_allowed, receive, small_json, status_value, unknown_kind};

fn authorized<B>(req: &Request<B>, token: &str) -> bool {
    let Some(v) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some(given) = v
        .strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))
    else {
        return false;
    };
    constant_time_eq(given.trim().as_bytes(), token.as_bytes())
}

fn is_loopback_host(host: &str) -> bool {
    // strip a port; keep IPv6 brackets' content
    let h = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Cross-site protection. Any request a browser sends from another origin carries `Origin`: one
/// that is not a loopback origin is refused. Without a token (`--admin-insecure`) the `Host` must
/// be a loopback name or address too (DNS rebinding), and every mutating call must carry a
/// content type a page cannot send without a CORS preflight (JSON, wasm, octet-stream).
fn cross_site<B>(req: &Request<B>, insecure: bool) -> Option<ApiError> {
    let h = req.headers();
    let text = |name: header::HeaderName| h.get(name).map(|v| v.to_str().unwrap_or("\u{0}"));
    if let Some(origin) = text(header::ORIGIN) {
        let host = origin.split("://").nth(1).unwrap_or("");
        // same origin (the operations page on this listener) or a loopback one
        if !is_loopback_host(host) && text(header::HOST) != Some(host) {
            return Some(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("admin API: cross-origin request from '{origin}' refused"),
            ));
        }
    }
    if !insecure {
        return None;
    }
    if !text(header::HOST).is_some_and(is_loopback_host) {
        return Some(ApiError::new(
            StatusCode::FORBIDDEN,
            "admin API without a token answers only requests whose Host is a loopback address",
        ));
    }
    let mutating = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let ct = super::body::media_type(h);
    let allowed = [
        "application/json",
        "application/wasm",
        "application/octet-stream",
    ];
    if mutating && !allowed.contains(&ct.as_str()) {
        return Some(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("admin API: a {} needs Content-Type application/json (or application/wasm for a component upload)", req.method()),
        ));
    }
    None
}

/// Entry point of the admin listener. An HTTP/1 connection that sent no credential is closed
/// after its answer (`Connection: close`): unauthenticated peers polling the sign-in page cannot
/// hold the listener's connections between their requests.
pub async fn handle(
    state: Arc<AppState>,
    token: Arc<str>,
    req: Request<impl ReqBody>,
) -> Response<Full<Bytes>> {
    let credentialed = token.is_empty()
        || authorized(&req, &token)
        || ops::session_valid(req.headers(), &state.sessions);
    let http1 = req.version() <= http::Version::HTTP_11;
    let mut r = answer(state, token, req).await;
    if !credentialed && http1 {
        r.headers_mut()
            .insert(header::CONNECTION, "close".parse().expect("valid header"));
    }
    r
}

async fn answer(
    state: Arc<AppState>,
    token: Arc<str>,
    req: Request<impl ReqBody>,
) -> Response<Full<Bytes>> {
    // An empty token means the operator chose --admin-insecure on loopback.
    if let Some(e) = cross_site(&req, token.is_empty()) {
        tracing::warn!(reason = %e.message, "admin API refused a cross-site request");
        return e.into_response();
    }
    let path = req.uri().path().trim_matches('/').to_string();
    let reading = matches!(*req.method(), Method::GET | Method::HEAD);
    // the operations page holds no data; signing in sets the cookie that lets it read
    match (path.as_str(), req.method()) {
        ("admin", &Method::GET | &Method::HEAD) => return ops::page(),
        ("admin/login", &Method::POST) => {
            return ops::login(&token, &state.sessions, req)
                .await
                .unwrap_or_else(ApiError::into_response)
        }
        ("admin/logout", &Method::POST) => return ops::logout(&state.sessions, req.headers()),
        _ => {}
    }
    let by_cookie = reading && ops::session_valid(req.headers(), &state.sessions);
    if !token.is_empty() && !authorized(&req, &token) && !by_cookie {
        let mut r = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "admin API: missing or wrong bearer token (Authorization: Bearer <token>)",
        )
        .into_response();
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            "Bearer".parse().expect("valid header"),
        );
        return r;
    }
    let segs: Vec<&str> = path.split('/').collect();
    let method = req.method().clone();
    let r = match (segs.as_slice(), &method) {
        (["admin", "v1", "policies"], &Method::GET) => Ok(json_ok(
            &PolicyKind::ALL.map(|k| state.policies.get(k).status()),
        )),
        (["admin", "v1", "policies", k], &Method::PUT) => match PolicyKind::parse(k) {
            Some(kind) => match shadow::mode(req.uri().query()) {
                Ok(false) => upload(&state, kind, req).await,
                Ok(true) => shadow::start(&state, kind, req).await,
                Err(e) => Err(e),
            },
            None => Err(unknown_kind(k)),
        },
        (["admin", "v1", "policies", k, "shadow", rest @ ..], m) => match PolicyKind::parse(k) {
            Some(kind) => shadow::route(&state, kind, rest, m).await,
            None => Err(unknown_kind(k)),
        },
        (["admin", "v1", "trace", action], m) => trace_admin::route(&state, action, m, req).await,
        (["admin", "v1", "policies", k, "rollback"], &Method::POST) => match PolicyKind::parse(k) {
            Some(kind) => rollback(&state, kind),
            None => Err(unknown_kind(k)),
        },
        (["admin", "v1", "status"], &Method::GET) => Ok(status(&state)),
        (["admin", "v1", "status", "history"], &Method::GET) => Ok(ops::history(&state)),
        (["admin", "v1", "fleet", "interrupt"], &Method::POST) => interrupt(&state, req).await,
        (["admin", "v1", "fleet", "interrupt"], _) => Err(not_allowed(&method, "POST")),
        (["admin", "v1", "policies"], _) => Err(not_allowed(&method, "GET")),
        (["admin", "v1", "policies", _], _) => Err(not_allowed(&method, "PUT")),
        (["admin", "v1", "policies", _, "rollback"], _) => Err(not_allowed(&method, "POST")),
        _ => Err(ApiError::not_found(format!("no admin route /{path}"))),
    };
    r.unwrap_or_else(ApiError::into_response)
}

async fn upload(
    state: &Arc<AppState>,
    kind: PolicyKind,
    req: Request<impl ReqBody>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let (policy, validate_ms) = receive(state, kind, req).await?;
    let swap = Instant::now();
    state.policies.get(kind).install(policy.clone());
    let swap_us = swap.elapsed().as_secs_f64() * 1e6;
    tracing::info!(%kind, sha = %policy.sha256, generation = policy.generation, validate_ms, "policy swapped in");
    Ok(json_ok(&serde_json::json!({
        "kind": kind,
        "sha256": policy.sha256,
        "wit_version": policy.wit_version,
        "generation": policy.generation,
        "validate_ms": validate_ms,
        "swap_us": swap_us,
    })))
}

/// `POST /admin/v1/fleet/interrupt` with `{"share": 0.8}`: stages a spot interruption of that
/// share of the running fleet (local cloud), to rehearse recovery.
async fn interrupt(
    state: &Arc<AppState>,
    req: Request<impl ReqBody>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let v = small_json(req, "interrupt request").await?;
    let share = v["share"]
        .as_f64()
        .filter(|s| (0.0..=1.0).contains(s))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "expected {{\"share\": x}} with x in [0, 1], got {v}"
            ))
        })?;
    let Some(cloud) = state.cloud.get() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "no cloud driver: start mark serve with --cloud and --catalog",
        ));
    };
    let ids = cloud.interrupt_share(share).await.map_err(|e| {
        ApiError::new(
            StatusCode::CONFLICT,
            format!("interruption not staged: {e}"),
        )
    })?;
    tracing::warn!(?ids, share, "operator staged a spot interruption");
    Ok(json_ok(&serde_json::json!({ "interrupted": ids })))
}

fn rollback(state: &AppState, kind: PolicyKind) -> Result<Response<Full<Bytes>>, ApiError> {
    let slot = state.policies.get(kind);
    match slot.rollback() {
        Some(_) => {
            tracing::info!(%kind, "policy rolled back by the operator");
            Ok(json_ok(&slot.status()))
        }
        None => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("{kind} slot runs the native default; nothing to roll back to"),
        )),
    }
}

fn status(state: &AppState) -> Response<Full<Bytes>> {
    json_ok(&status_value(state))
}

#[cfg(test)]
mod tests {
    use super::is_loopback_host;

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "localhost:8001",
            "127.0.0.1:8001",
            "127.0.0.2",
            "[::1]:8001",
            "[::1]",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "evil.example",
            "evil.example:8001",
            "10.0.0.1:8001",
            "localhost.evil.example",
            "",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }
}
