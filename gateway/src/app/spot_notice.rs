//! A fleet worker on a spot instance watches EC2's instance metadata (IMDSv2) for the two-minute
//! interruption notice (`/latest/meta-data/spot/instance-action`) and the rebalance
//! recommendation (`/latest/meta-data/events/recommendations/rebalance`). On either it drains:
//! readiness fails and new batches are refused with `x-mark-draining: 1` (the gateway stops
//! routing to it at once and its controller plans the replacement then), while the batches it
//! holds are finished. Off unless `mark worker --imds-endpoint URL` (on EC2:
//! `http://169.254.169.254`; tests point it at a loopback server).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::api::AppState;

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// Deadline of one metadata call.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// The metadata paths that mean "this instance is going away".
const NOTICES: [(&str, &str); 2] = [
    (
        "/latest/meta-data/spot/instance-action",
        "spot interruption notice",
    ),
    (
        "/latest/meta-data/events/recommendations/rebalance",
        "rebalance recommendation",
    ),
];

/// Polls `endpoint` every `every` until a notice comes, then drains `state`.
pub async fn watch(state: Arc<AppState>, endpoint: String, every: Duration) {
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let mut token: Option<String> = None;
    loop {
        tokio::time::sleep(every).await;
        if token.is_none() {
            token = fetch_token(&client, &endpoint).await;
        }
        let Some(t) = token.clone() else {
            continue;
        };
        for (path, what) in NOTICES {
            match get(&client, &format!("{endpoint}{path}"), &t).await {
                Some(200) => {
                    tracing::warn!(notice = what, "draining: this instance is going away");
                    state.draining.store(true, Relaxed);
                    state.metrics.set_gauge("mark_worker_draining", 1.0);
                    return;
                }
                // the token expired or was refused: a new one next time
                Some(401) => token = None,
                _ => {}
            }
        }
    }
}

/// IMDSv2's session token (`PUT /latest/api/token`), 6 hours.
async fn fetch_token(client: &HttpClient, endpoint: &str) -> Option<String> {
    let req = hyper::Request::put(format!("{endpoint}/latest/api/token"))
        .header("X-aws-ec2-metadata-token-ttl-seconds", "21600")
        .body(Full::new(Bytes::new()))
        .ok()?;
    let resp = tokio::time::timeout(CALL_TIMEOUT, client.request(req))
        .await
        .ok()?
        .ok()?;
    if !resp.status().is_success() {
        return None;
    }
    let body = tokio::time::timeout(
        CALL_TIMEOUT,
        http_body_util::Limited::new(resp.into_body(), 4096).collect(),
    )
    .await
    .ok()?
    .ok()?
    .to_bytes();
    let t = String::from_utf8(body.to_vec()).ok()?;
    (!t.is_empty()).then_some(t)
}

/// The status of `GET url` with the token, or `None` when the call failed.
async fn get(client: &HttpClient, url: &str, token: &str) -> Option<u16> {
    let req = hyper::Request::get(url)
        .header("X-aws-ec2-metadata-token", token)
        .body(Full::new(Bytes::new()))
        .ok()?;
    let resp = tokio::time::timeout(CALL_TIMEOUT, client.request(req))
        .await
        .ok()?
        .ok()?;
    let status = resp.status().as_u16();
    // read what little it says, so the connection is reused
    let _ = tokio::time::timeout(
        CALL_TIMEOUT,
        http_body_util::Limited::new(resp.into_body(), 4096).collect(),
    )
    .await;
    Some(status)
}
