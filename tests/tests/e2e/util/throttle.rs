//! Faults moto never makes, injected by an HTTP proxy in front of its server: a DynamoDB that
//! throttles (while switched on, every call answered as DynamoDB does when it throttles: HTTP
//! 400, `ThrottlingException`), or any rule over the request ([`fault_proxy`]: an EC2 zone out
//! of capacity). moto never throttles nor runs out; the gateway must survive an AWS that does.
//!
//! The proxy also gives moto an atomicity it lacks: its server handles calls on threads and
//! checks a conditional write's condition apart from applying it, so two concurrent
//! `UpdateItem`s conditional on one version can both succeed (measured: 2 of 300 concurrent
//! pairs; DynamoDB never does, and the controller lease rests on it). The proxy forwards one
//! call at a time.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

/// The proxy: its URL, the switch, and how many calls it refused.
pub struct Throttle {
    /// Where the replicas send their DynamoDB calls.
    pub url: String,
    on: Arc<AtomicBool>,
    refused: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Throttle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Throttle {
    /// Starts throttling (`true`) or forwarding (`false`).
    pub fn set(&self, on: bool) {
        self.on.store(on, Relaxed);
    }

    /// Calls answered with a throttling error so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Relaxed)
    }
}

const THROTTLED: &str = r#"{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException","message":"Rate of requests exceeds the allowed throughput."}"#;

/// What a [`fault_proxy`] answers instead of forwarding: status, content type, body.
pub type Refusal = (u16, &'static str, String);

/// A rule of a [`fault_proxy`]: the request's head and body in, a refusal or `None` (forward).
pub type Rule = Arc<dyn Fn(&http::request::Parts, &Bytes) -> Option<Refusal> + Send + Sync>;

/// A proxy to `upstream` (moto's URL), throttling from the start when `on`.
pub async fn throttle_proxy(upstream: &str, on: bool) -> Throttle {
    let on = Arc::new(AtomicBool::new(on));
    let switch = on.clone();
    let rule: Rule = Arc::new(move |_, _| {
        switch
            .load(Relaxed)
            .then(|| (400, "application/x-amz-json-1.0", THROTTLED.to_string()))
    });
    fault_proxy(upstream, on, rule).await
}

/// A proxy to `upstream` that answers with `rule`'s refusal where it gives one (counted) and
/// forwards the rest, one at a time (10 s deadline each).
pub async fn fault_proxy(upstream: &str, on: Arc<AtomicBool>, rule: Rule) -> Throttle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the throttling proxy");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let refused = Arc::new(AtomicU64::new(0));
    let (switch, count, upstream) = (rule, refused.clone(), upstream.to_string());
    let one_at_a_time = Arc::new(tokio::sync::Mutex::new(()));
    let task = tokio::spawn(async move {
        let client = super::http::client();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (switch, count, upstream, client, serial) = (
                switch.clone(),
                count.clone(),
                upstream.clone(),
                client.clone(),
                one_at_a_time.clone(),
            );
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let (switch, count, upstream, client, serial) = (
                            switch.clone(),
                            count.clone(),
                            upstream.clone(),
                            client.clone(),
                            serial.clone(),
                        );
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await?.to_bytes();
                            if let Some((status, ctype, text)) = switch(&parts, &body) {
                                count.fetch_add(1, Relaxed);
                                return Ok::<_, hyper::Error>(
                                    hyper::Response::builder()
                                        .status(status)
                                        .header("content-type", ctype)
                                        .body(Full::new(Bytes::from(text)))
                                        .expect("response"),
                                );
                            }
                            let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
                            let mut b = hyper::Request::builder()
                                .method(parts.method.clone())
                                .uri(format!("{upstream}{path}"));
                            for (k, v) in &parts.headers {
                                b = b.header(k, v);
                            }
                            let fwd = b.body(Full::new(body)).expect("request");
                            // (past the deadline below the lock goes while moto may still
                            // apply the call: a stall of 10 s, long after the caller gave up)
                            let _one = serial.lock().await;
                            let answer = tokio::time::timeout(Duration::from_secs(10), async {
                                let r = client.request(fwd).await.ok()?;
                                let status = r.status();
                                let headers = r.headers().clone();
                                let body = r.into_body().collect().await.ok()?.to_bytes();
                                Some((status, headers, body))
                            })
                            .await
                            .ok()
                            .flatten();
                            Ok(match answer {
                                Some((status, headers, body)) => {
                                    let mut resp = hyper::Response::builder().status(status);
                                    for (k, v) in &headers {
                                        if k != "content-length" && k != "transfer-encoding" {
                                            resp = resp.header(k, v);
                                        }
                                    }
                                    resp.body(Full::new(body)).expect("response")
                                }
                                None => hyper::Response::builder()
                                    .status(502)
                                    .body(Full::new(Bytes::new()))
                                    .expect("response"),
                            })
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Throttle {
        url,
        on,
        refused,
        task,
    }
}
