//! HTTP for the end-to-end tests: the client and its deadline, requests and answers, the MLP's
//! request and output helpers, the admin API, `/metrics`, and open-loop load.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// An HTTP answer.
#[derive(Debug)]
pub struct Resp {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: http::HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl Resp {
    /// Body as JSON (the JSON header only, when a binary section follows).
    pub fn json(&self) -> serde_json::Value {
        let n = self
            .headers
            .get("inference-header-content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(self.body.len());
        serde_json::from_slice(&self.body[..n])
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
    /// The `error` message.
    pub fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// An HTTP client; reuse one per task in loops (one connection, not one per request).
pub type Http = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// A new client.
pub fn client() -> Http {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(4)
        .build_http::<Full<Bytes>>()
}

/// Sends one request on a fresh client.
pub async fn send(
    method: &str,
    url: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> anyhow::Result<Resp> {
    send_with(&client(), method, url, headers, body).await
}

/// Longest a test's HTTP call may take.
pub const CALL_DEADLINE: Duration = Duration::from_secs(60);

/// Sends one request on `client`.
pub async fn send_with(
    client: &Http,
    method: &str,
    url: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> anyhow::Result<Resp> {
    let mut b = hyper::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, v);
    }
    let req = b.body(Full::new(Bytes::from(body)))?;
    // every call has a deadline, above every server-side timeout (30 s for a body)
    let answer = async {
        let resp = client.request(req).await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await?.to_bytes();
        anyhow::Ok(Resp {
            status,
            headers,
            body,
        })
    };
    tokio::time::timeout(CALL_DEADLINE, answer)
        .await
        .map_err(|_| anyhow::anyhow!("{method} {url}: no answer within {CALL_DEADLINE:?}"))?
}

/// GET.
pub async fn get(url: &str) -> anyhow::Result<Resp> {
    send("GET", url, &[], Vec::new()).await
}

/// POST a JSON value.
pub async fn post_json(url: &str, v: &serde_json::Value) -> Resp {
    post_json_with(&client(), url, v).await
}

/// POST a JSON value on `client`.
pub async fn post_json_with(client: &Http, url: &str, v: &serde_json::Value) -> Resp {
    send_with(
        client,
        "POST",
        url,
        &[("content-type", "application/json".into())],
        v.to_string().into_bytes(),
    )
    .await
    .expect("request")
}

/// An MLP input row, distinct per `seed`.
pub fn mlp_row(seed: u32) -> Vec<f32> {
    (0..784)
        .map(|i| ((i as u32 * 31 + seed * 17) % 97) as f32 / 97.0)
        .collect()
}

/// An infer request for the MLP with these rows.
pub fn mlp_request(rows: &[Vec<f32>]) -> serde_json::Value {
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    serde_json::json!({"inputs": [{"name": "input", "shape": [rows.len(), 784], "datatype": "FP32", "data": flat}]})
}

/// FP32 values of output `name` of a JSON response.
pub fn output_f32(v: &serde_json::Value, name: &str) -> Vec<f32> {
    v["outputs"]
        .as_array()
        .expect("outputs")
        .iter()
        .find(|o| o["name"] == name)
        .unwrap_or_else(|| panic!("no output {name} in {v}"))["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

/// `METHOD {admin}/admin/v1/{path}` with bearer `token`.
pub async fn admin_call(admin: &str, token: &str, method: &str, path: &str, body: Vec<u8>) -> Resp {
    send(
        method,
        &format!("{admin}/admin/v1/{path}"),
        &[("authorization", format!("Bearer {token}"))],
        body,
    )
    .await
    .expect("admin call")
}

/// `GET /admin/v1/status` with bearer `token`, as JSON.
pub async fn admin_status(admin: &str, token: &str) -> serde_json::Value {
    admin_call(admin, token, "GET", "status", vec![])
        .await
        .json()
}

/// Reads one series value from Prometheus text.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Open-loop load at `rate` req/s for `secs`; returns (ok, wrong or failed).
pub async fn open_loop(url: &str, rate: f64, secs: f64, reference: &Arc<Vec<f32>>) -> (u64, u64) {
    let (ok, bad) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let http = client();
    let body = Arc::new(mlp_request(&[mlp_row(9)]));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    while Instant::now() < end {
        tick.tick().await;
        let (http, url, body, ok, bad, reference) = (
            http.clone(),
            url.to_string(),
            body.clone(),
            ok.clone(),
            bad.clone(),
            reference.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let r = send_with(
                &http,
                "POST",
                &url,
                &[("content-type", "application/json".into())],
                body.to_string().into_bytes(),
            )
            .await;
            match r {
                Ok(r) if r.status == 200 && output_f32(&r.json(), "probs") == *reference => {
                    ok.fetch_add(1, Relaxed)
                }
                other => {
                    eprintln!(
                        "bad: {:?}",
                        other.map(|r| (r.status, String::from_utf8_lossy(&r.body).to_string()))
                    );
                    bad.fetch_add(1, Relaxed)
                }
            };
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    (ok.load(Relaxed), bad.load(Relaxed))
}

/// The `/metrics` text of the gateway at `base`.
pub async fn metrics_text(base: &str) -> String {
    String::from_utf8_lossy(&get(&format!("{base}/metrics")).await.expect("metrics").body)
        .to_string()
}
