//! A fleet worker's readiness as a client reads it: its load header (`x-mark-load`), whether a
//! refusal means "saturated, not now" or "broken", and the liveness probe the gateway and the
//! cloud drivers use (an instance runs when our worker answers with its models ready, not when
//! a port accepts a connection).

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// The header that carries the gateway–worker secret (`MARK_WORKER_SECRET`): the gateway sends
/// it with every batch, a worker with a secret runs no inference request without it.
pub const WORKER_SECRET_HEADER: &str = "x-mark-worker-secret";

/// The header a worker with a secret puts on its batch answers (`x-mark-worker-auth: secret`):
/// a gateway with a secret counts the answers without it, from a worker that runs batches for
/// anyone who reaches it (started without the secret, or an older build).
pub const WORKER_AUTH_HEADER: &str = "x-mark-worker-auth";

/// Whether a successful batch answer came from a worker that checks no secret although the
/// gateway sends one.
pub fn answered_without_auth<B>(gateway_has_secret: bool, resp: &http::Response<B>) -> bool {
    gateway_has_secret
        && resp.status().is_success()
        && resp
            .headers()
            .get(WORKER_AUTH_HEADER)
            .is_none_or(|v| v.as_bytes() != b"secret")
}

/// The HTTP client the probes use.
pub type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// Deadline of one probe.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// The worker's load header on an answer, when it is a number.
pub fn load_of<B>(resp: &http::Response<B>) -> Option<f64> {
    resp.headers()
        .get("x-mark-load")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|l| l.is_finite() && *l >= 0.0)
}

/// A refusal is "not now" only when the worker says it is saturated: 503 with a load of at
/// least 1. A 503 without it (a model that failed to load, a worker stopping) is a failure: the
/// worker leaves the rotation and is replaced if it stays so.
pub fn refusal_is_saturation(status: http::StatusCode, load: Option<f64>) -> bool {
    status == http::StatusCode::SERVICE_UNAVAILABLE && load.is_some_and(|l| l >= 1.0)
}

/// `GET /v2/health/ready` on `addr` within the probe deadline: alive (see [`alive`]).
pub async fn probe_alive(client: &HttpClient, addr: &str) -> bool {
    let uri = format!("http://{addr}/v2/health/ready");
    match hyper::Request::get(uri).body(Full::new(Bytes::new())) {
        Ok(req) => tokio::time::timeout(PROBE_TIMEOUT, client.request(req))
            .await
            .is_ok_and(|resp| resp.is_ok_and(|resp| alive(&resp))),
        Err(_) => false,
    }
}

/// Whether a fleet instance at `addr` serves: its worker is alive (its models loaded), not
/// merely accepting TCP connections. The cloud drivers report an instance running only then.
pub async fn serves(addr: &str) -> bool {
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    probe_alive(&client, addr).await
}

/// Whether the worker at `addr` says it drains (its readiness carries `x-mark-draining`).
pub async fn probe_draining(client: &HttpClient, addr: &str) -> bool {
    let uri = format!("http://{addr}/v2/health/ready");
    match hyper::Request::get(uri).body(Full::new(Bytes::new())) {
        Ok(req) => tokio::time::timeout(PROBE_TIMEOUT, client.request(req))
            .await
            .is_ok_and(|resp| resp.is_ok_and(|resp| draining_of(&resp))),
        Err(_) => false,
    }
}

/// [`serves`] without a runtime, for the local cloud's listing (a blocking thread): one
/// HTTP/1.0 `GET /v2/health/ready`, 200 ms to connect, 1 s to answer.
pub fn serves_blocking(addr: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(sa) = addr.parse::<std::net::SocketAddr>() else {
        return false;
    };
    let Ok(mut s) =
        std::net::TcpStream::connect_timeout(&sa, std::time::Duration::from_millis(200))
    else {
        return false;
    };
    let _ = s.set_read_timeout(Some(PROBE_TIMEOUT));
    let _ = s.set_write_timeout(Some(PROBE_TIMEOUT));
    if s.write_all(format!("GET /v2/health/ready HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .is_err()
    {
        return false;
    }
    let mut buf = Vec::with_capacity(1024);
    let _ = s.take(4096).read_to_end(&mut buf);
    let head = String::from_utf8_lossy(&buf);
    let head = head.split("\r\n\r\n").next().unwrap_or_default();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse::<u16>().ok())
        .and_then(|c| http::StatusCode::from_u16(c).ok());
    let load = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("x-mark-load"))
        .and_then(|(_, v)| v.trim().parse::<f64>().ok())
        .filter(|l| l.is_finite() && *l >= 0.0);
    let draining = head
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("x-mark-draining:"));
    status.is_some_and(|st| {
        st.is_success()
            || refusal_is_saturation(st, load)
            || (st == http::StatusCode::SERVICE_UNAVAILABLE && draining)
    })
}

/// Whether the answer says the worker drains (an interruption notice: `x-mark-draining`).
pub fn draining_of<B>(resp: &http::Response<B>) -> bool {
    resp.headers().contains_key("x-mark-draining")
}

/// Liveness from a readiness answer: ready, or refusing only because it is saturated (a busy
/// worker at peak is alive and must not be terminated for it) or draining under an interruption
/// notice (it still finishes what it holds; the cloud takes it away).
pub fn alive<B>(resp: &http::Response<B>) -> bool {
    resp.status().is_success()
        || refusal_is_saturation(resp.status(), load_of(resp))
        || (resp.status() == http::StatusCode::SERVICE_UNAVAILABLE && draining_of(resp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_saturated_worker_refuses_for_now() {
        let busy = http::StatusCode::SERVICE_UNAVAILABLE;
        assert!(refusal_is_saturation(busy, Some(1.0)));
        assert!(refusal_is_saturation(busy, Some(3.5)));
        // a model that failed to load answers 503 with no load (or a load below 1)
        assert!(!refusal_is_saturation(busy, None));
        assert!(!refusal_is_saturation(busy, Some(0.0)));
        assert!(!refusal_is_saturation(
            http::StatusCode::BAD_GATEWAY,
            Some(2.0)
        ));
        let answer = |status: u16, load: Option<&str>| {
            let mut r = http::Response::builder().status(status);
            if let Some(l) = load {
                r = r.header("x-mark-load", l);
            }
            r.body(()).unwrap()
        };
        assert!(alive(&answer(200, Some("0.000"))));
        assert!(alive(&answer(503, Some("1.250"))), "saturated is alive");
        assert!(!alive(&answer(503, None)), "models not ready");
        assert!(!alive(&answer(503, Some("0.000"))));
        assert!(!alive(&answer(404, None)), "not our worker");
    }

    #[test]
    fn an_answer_without_the_auth_header_is_from_an_open_worker() {
        let answer = |status: u16, auth: Option<&str>| {
            let mut r = http::Response::builder().status(status);
            if let Some(a) = auth {
                r = r.header(WORKER_AUTH_HEADER, a);
            }
            r.body(()).unwrap()
        };
        assert!(answered_without_auth(true, &answer(200, None)));
        assert!(answered_without_auth(true, &answer(200, Some("none"))));
        assert!(!answered_without_auth(true, &answer(200, Some("secret"))));
        // a gateway without a secret expects none; a refusal says nothing of it
        assert!(!answered_without_auth(false, &answer(200, None)));
        assert!(!answered_without_auth(true, &answer(503, None)));
    }
}
