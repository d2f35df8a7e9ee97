//! The operations page at `/admin/` on the admin listener: one HTML file embedded in the binary
//! (`ops_page.html`: no third-party scripts, fonts or CDNs) that polls `GET /admin/v1/status` every
//! 2 s and draws load, fleet, attainment, latency, batch size and cost as SVG.
//!
//! Signing in: the page itself holds no data and is served to anyone who reaches the admin
//! listener. `POST /admin/login` with the admin token (form field `token`) answers 204 with a
//! signed, expiring session (`session`; never the token) in an HTTP-only, `SameSite=Strict`
//! cookie scoped to `/admin` (`Secure` behind a TLS proxy); `POST /admin/logout` ends it. The
//! session authenticates **read-only** calls (GET, HEAD) only. Changing anything (policy uploads, rollback,
//! staged interruptions) still needs `Authorization: Bearer`, so a cookie can never be ridden into
//! a mutation.

use bytes::Bytes;
use http::{header, HeaderMap, Response, StatusCode};
use http_body_util::Full;

use super::session::{Sessions, SESSION_S};
use crate::api::body::{read_limited, ReqBody};
use crate::api::error::ApiError;
use crate::secret::constant_time_eq;

/// The page.
pub const PAGE: &str = include_str!("ops_page.html");
/// Name of the session cookie.
pub const COOKIE: &str = "mark_admin";

/// The page's content security policy: its one inline script allowed by its sha256 (no
/// `'unsafe-inline'` for scripts, so markup that reached the page cannot run), styles inline.
pub fn content_security_policy() -> &'static str {
    static CSP: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    CSP.get_or_init(|| {
        use base64::Engine as _;
        use sha2::Digest as _;
        let start = PAGE.find("<script>").expect("the page has its script") + "<script>".len();
        let end = PAGE[start..].find("</script>").expect("the script ends") + start;
        let hash = sha2::Sha256::digest(&PAGE.as_bytes()[start..end]);
        format!(
            "default-src 'none'; script-src 'sha256-{}'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            base64::engine::general_purpose::STANDARD.encode(hash)
        )
    })
}

/// `GET /admin/`: the page, with a policy that lets it load nothing from elsewhere.
pub fn page() -> Response<Full<Bytes>> {
    Response::builder()
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(header::CONTENT_SECURITY_POLICY, content_security_policy())
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Full::new(Bytes::from_static(PAGE.as_bytes())))
        .expect("valid response")
}

/// The session cookie's value, if the request carries one.
pub fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

/// Whether the request's cookie is a live session of `sessions`.
pub fn session_valid(headers: &HeaderMap, sessions: &Sessions) -> bool {
    cookie(headers).is_some_and(|c| sessions.check(c, crate::clock::wall_s() as u64))
}

/// `POST /admin/logout`: the cookie's session is revoked and the cookie cleared (204).
pub fn logout(sessions: &Sessions, headers: &HeaderMap) -> Response<Full<Bytes>> {
    // only a session this process issued (and still valid) is revoked: junk cookies must not
    // push real revocations out of the bounded list
    if let Some(c) = cookie(headers).filter(|c| sessions.check(c, crate::clock::wall_s() as u64)) {
        sessions.revoke(c);
    }
    Response::builder()
        .status(StatusCode::NO_CONTENT)
        .header(
            header::SET_COOKIE,
            format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/admin; Max-Age=0"),
        )
        .header(header::CACHE_CONTROL, "no-store")
        .body(Full::new(Bytes::new()))
        .expect("valid response")
}

/// `POST /admin/login` with `token=<admin token>` (form-encoded, at most 4 KiB): 204 and the
/// session cookie when it is the token, 401 otherwise.
pub async fn login(
    token: &str,
    sessions: &Sessions,
    req: http::Request<impl ReqBody>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let now = crate::clock::wall_s() as u64;
    // the attempt counts as a failure from now (concurrent sign-ins cannot race past the
    // limit while their bodies arrive); a right token takes it back
    // the peer address the server put on the request (no address: all such count as one)
    let peer = req
        .extensions()
        .get::<crate::api::Peer>()
        .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |p| p.0);
    if let Err(wait) = sessions.begin_sign_in(peer, now) {
        let mut r = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "too many failed sign-ins from this address; try again in {wait} s (the bearer token still works)"
            ),
        )
        .into_response();
        r.headers_mut().insert(
            header::RETRY_AFTER,
            wait.to_string().parse().expect("valid header"),
        );
        return Ok(r);
    }
    // behind a TLS-terminating proxy the cookie is sent over HTTPS only
    let secure = req
        .headers()
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    let body = read_limited(
        req.into_body(),
        4096,
        std::time::Duration::from_secs(10),
        || {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "sign-in body over 4096 bytes",
            )
        },
        "sign-in form",
    )
    .await?;
    let given = form_urlencoded::parse(&body)
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    if token.is_empty() || !constant_time_eq(given.as_bytes(), token.as_bytes()) {
        tracing::warn!("operations page: sign-in with a wrong token");
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "wrong admin token"));
    }
    sessions.succeeded(peer, now);
    // a signed, expiring session: never the token itself
    let cookie = format!(
        "{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/admin; Max-Age={SESSION_S}{}",
        sessions.issue(now),
        if secure { "; Secure" } else { "" }
    );
    Ok(Response::builder()
        .status(StatusCode::NO_CONTENT)
        .header(header::SET_COOKIE, cookie)
        .header(header::CACHE_CONTROL, "no-store")
        .body(Full::new(Bytes::new()))
        .expect("valid response"))
}

/// Status samples kept for the page's first draw: 10 minutes at one per 2 s.
pub const HISTORY_LEN: usize = 300;
/// The page's status samples, oldest first (held by the application state).
pub type History = std::sync::Mutex<std::collections::VecDeque<serde_json::Value>>;

/// The part of a status the page's charts read: models' cumulative latency and batch figures,
/// and the control loop's rates, fleet (type and market), events, attainment and cost.
fn chart_fields(st: serde_json::Value) -> serde_json::Value {
    let c = &st["control"];
    let last = |v: &serde_json::Value, first: bool| {
        let a = v.as_array();
        let x = a.and_then(|a| if first { a.first() } else { a.last() });
        x.cloned()
            .map_or(serde_json::json!([]), |x| serde_json::json!([x]))
    };
    let fleet: Vec<serde_json::Value> = c["fleet"].as_array().map_or(vec![], |f| {
        f.iter()
            .map(
                |i| serde_json::json!({"instance_type": i["instance_type"], "market": i["market"]}),
            )
            .collect()
    });
    let control = if c.is_null() {
        serde_json::Value::Null
    } else {
        serde_json::json!({
            "history": last(&c["history"], false), "forecast": last(&c["forecast"], true),
            "capacity_rps": c["capacity_rps"], "fleet": fleet, "launches": c["launches"],
            "terminations": c["terminations"], "attainment": c["attainment"],
            "target_attainment": c["target_attainment"], "cost_so_far": c["cost_so_far"],
            "lambda_share_actual": c["lambda_share_actual"],
        })
    };
    let models: Vec<serde_json::Value> = st["models"].as_array().map_or(vec![], |m| {
        m.iter()
            .map(|m| {
                serde_json::json!({"name": m["name"], "slo_ms": m["slo_ms"],
                "latency_buckets_ms": m["latency_buckets_ms"], "batches": m["batches"],
                "batch_items": m["batch_items"]})
            })
            .collect()
    });
    serde_json::json!({ "models": models, "control": control })
}

/// Samples the status every 2 s into the history (runs beside the admin listener), so a page
/// opened now draws the last 10 minutes at once instead of starting empty.
pub async fn sample(state: std::sync::Arc<crate::api::AppState>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let v = chart_fields(super::common::status_value(&state));
        let mut h = state.ops_history.lock().expect("history lock");
        if h.len() == HISTORY_LEN {
            h.pop_front();
        }
        h.push_back(v);
    }
}

/// `GET /admin/v1/status/history`: the samples, oldest first.
pub fn history(state: &crate::api::AppState) -> Response<Full<Bytes>> {
    crate::api::error::json_ok(&*state.ops_history.lock().expect("history lock"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_and_encoding() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; mark_admin=s%20e%2Bc; b=2".parse().unwrap(),
        );
        assert_eq!(cookie(&h), Some("s%20e%2Bc"));
        // the token in the cookie is no session
        let sessions = Sessions::default();
        assert!(!session_valid(&h, &sessions));
        let mut ok = HeaderMap::new();
        let v = sessions.issue(crate::clock::wall_s() as u64);
        ok.insert(header::COOKIE, format!("mark_admin={v}").parse().unwrap());
        assert!(session_valid(&ok, &sessions));
        assert!(cookie(&HeaderMap::new()).is_none());
    }
}

#[cfg(test)]
mod logout_tests {
    use super::*;

    #[test]
    fn only_a_valid_session_is_revoked_by_logout() {
        let sessions = Sessions::default();
        let v = sessions.issue(crate::clock::wall_s() as u64);
        let nonce = v.split('.').nth(2).unwrap();
        let mut forged = HeaderMap::new();
        let junk = format!("mark_admin=v1.9999999999.{nonce}.00");
        forged.insert(header::COOKIE, junk.parse().unwrap());
        assert_eq!(logout(&sessions, &forged).status(), StatusCode::NO_CONTENT);
        let mut real = HeaderMap::new();
        real.insert(header::COOKIE, format!("mark_admin={v}").parse().unwrap());
        assert!(
            session_valid(&real, &sessions),
            "a forged logout revoked nothing"
        );
        logout(&sessions, &real);
        assert!(
            !session_valid(&real, &sessions),
            "the session's own logout ends it"
        );
    }
}

#[cfg(test)]
mod csp_tests {
    use super::*;

    #[test]
    fn only_the_pages_own_script_may_run() {
        let csp = content_security_policy();
        let script_src = csp
            .split(';')
            .map(str::trim)
            .find(|d| d.starts_with("script-src"))
            .expect("a script-src directive");
        assert!(!script_src.contains("unsafe-inline"), "{script_src}");
        assert!(
            script_src.starts_with("script-src 'sha256-"),
            "{script_src}"
        );
        // one script on the page, the one hashed
        assert_eq!(PAGE.matches("<script").count(), 1);
        // the chart legends escape series names as the tables do
        assert!(PAGE.contains("■ ${esc(n)}"));
    }
}
