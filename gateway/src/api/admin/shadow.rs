//! Admin routes of shadow policies:
//!
//! - `PUT /admin/v1/policies/{kind}?mode=shadow`: validate a candidate like a swap (422 with the
//!   reason, e.g. a component that does not export `kind`) and run it in shadow; a shadow already
//!   running is replaced;
//! - `GET /admin/v1/policies/{kind}/shadow`: its report (404 when none runs);
//! - `POST /admin/v1/policies/{kind}/shadow/promote`: make it live through the normal swap (the
//!   live policy goes to the rollback history);
//! - `DELETE /admin/v1/policies/{kind}/shadow`: drop it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::Full;

use super::common::{not_allowed, receive};
use crate::api::body::ReqBody;
use crate::api::error::{json_ok, ApiError};
use crate::api::AppState;
use crate::policy::shadow::Shadow;
use crate::policy::PolicyKind;

/// `?mode=swap` (or none) → false, `?mode=shadow` → true, anything else → 400.
pub fn mode(query: Option<&str>) -> Result<bool, ApiError> {
    let mut shadow = false;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("mode", "shadow")) => shadow = true,
            Some(("mode", "swap")) => shadow = false,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "unknown query '{pair}': the only parameter is mode=shadow (or mode=swap)"
                )))
            }
        }
    }
    Ok(shadow)
}

/// `PUT ...?mode=shadow`.
pub async fn start(
    state: &Arc<AppState>,
    kind: PolicyKind,
    req: Request<impl ReqBody>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let (policy, validate_ms) = receive(state, kind, req).await?;
    let sh = Shadow::start(state.engine.clone(), policy.clone());
    let old = state.policies.get(kind).shadow.swap(Some(sh));
    tracing::info!(%kind, sha = %policy.sha256, replaced = old.is_some(), "policy started in shadow");
    Ok(json_ok(&serde_json::json!({
        "kind": kind,
        "mode": "shadow",
        "sha256": policy.sha256,
        "wit_version": policy.wit_version,
        "generation": policy.generation,
        "validate_ms": validate_ms,
        "replaced": old.map(|o| o.policy.sha256.clone()),
    })))
}

/// Lets the shadow thread catch up with the offers made so far (at most 200 ms), so a report
/// read right after a load step counts every call.
async fn settle(sh: &Shadow) {
    for _ in 0..100 {
        if sh.pending() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn none_runs(kind: PolicyKind) -> ApiError {
    ApiError::not_found(format!(
        "no {kind} policy runs in shadow; start one with PUT /admin/v1/policies/{kind}?mode=shadow"
    ))
}

/// `GET`, `DELETE .../shadow` and `POST .../shadow/promote`.
pub async fn route(
    state: &AppState,
    kind: PolicyKind,
    rest: &[&str],
    m: &Method,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let slot = state.policies.get(kind);
    match (rest, m) {
        ([], &Method::GET | &Method::HEAD) => {
            let sh = slot.shadow.load_full().ok_or_else(|| none_runs(kind))?;
            settle(&sh).await;
            Ok(json_ok(&sh.report()))
        }
        ([], &Method::DELETE) => {
            let sh = slot.shadow.swap(None).ok_or_else(|| none_runs(kind))?;
            settle(&sh).await;
            tracing::info!(%kind, sha = %sh.policy.sha256, "shadow policy dropped");
            Ok(json_ok(
                &serde_json::json!({ "dropped": sh.policy.sha256, "report": sh.report() }),
            ))
        }
        (["promote"], &Method::POST) => {
            let sh = slot.shadow.swap(None).ok_or_else(|| none_runs(kind))?;
            settle(&sh).await;
            let report = sh.report();
            let live = Arc::new(sh.policy.renewed("promoted from shadow"));
            slot.install(live.clone());
            tracing::info!(%kind, sha = %live.sha256, generation = live.generation, "shadow policy promoted");
            Ok(json_ok(&serde_json::json!({
                "kind": kind,
                "promoted": live.sha256,
                "generation": live.generation,
                "shadow_report": report,
                "slot": slot.status(),
            })))
        }
        ([], _) => Err(not_allowed(m, "GET or DELETE")),
        (["promote"], _) => Err(not_allowed(m, "POST")),
        _ => Err(ApiError::not_found(format!(
            "no admin route /admin/v1/policies/{kind}/shadow/{}",
            rest.join("/")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::mode;

    #[test]
    fn the_mode_query_is_strict() {
        assert_eq!(mode(None).ok(), Some(false));
        assert_eq!(mode(Some("mode=shadow")).ok(), Some(true));
        assert_eq!(mode(Some("mode=swap")).ok(), Some(false));
        assert!(mode(Some("mode=shdow")).is_err());
        assert!(mode(Some("x=1")).is_err());
    }
}
