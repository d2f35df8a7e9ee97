//! The data-plane router in process: every v2 error status, answered by the same handler the
//! server runs, without a socket or a built binary (as axum's `oneshot` tests call a router).
//! The model is real (ONNX Runtime from `.mark/venv`, the generated `mlp`).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::util::*;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use mark_gateway::api::router::handle;
use mark_gateway::api::AppState;
use mark_gateway::app;
use mark_gateway::config::ServerConfig;
use mark_gateway::policy::startup::{self, PolicyOptions};
use serde_json::{json, Value};

const MLP: &str = "max_batch_size = 16\nslo_ms = 50\nversion = \"3\"\n";

/// The gateway's state over a repository holding `mlp`; loaded (ready) when `load`.
async fn state(load: bool) -> Arc<AppState> {
    let repo = repo_with(&[("mlp", MLP)]);
    let cfg = ServerConfig {
        model_repo: repo.clone(),
        max_body_bytes: 100_000,
        body_timeout: Duration::from_millis(300),
        ..ServerConfig::default()
    };
    let models = mark_gateway::repo::scan(&repo).expect("repository");
    mark_gateway::exec::ort_lib::init(None).expect("onnxruntime (scripts/setup.sh)");
    let popts = PolicyOptions {
        native_only: true,
        ..PolicyOptions::default()
    };
    let (engine, slots) = startup::policies(&popts).expect("policies");
    let st = app::state(cfg, models, engine, slots);
    if load {
        app::spawn_loading(&st);
        let m = st.models["mlp"].clone();
        tokio::time::timeout(Duration::from_secs(120), async move {
            while m.loaded().is_none() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("mlp loads within 120 s");
    }
    st
}

struct Answer {
    status: u16,
    headers: http::HeaderMap,
    body: Value,
}

async fn read(r: Response<Full<Bytes>>) -> Answer {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let bytes = r.into_body().collect().await.expect("in memory").to_bytes();
    Answer {
        status,
        headers,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

async fn call(st: &Arc<AppState>, method: &str, path: &str, ct: &str, body: Vec<u8>) -> Answer {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", ct)
        .body(Full::new(Bytes::from(body)))
        .expect("request");
    read(handle(st.clone(), req).await).await
}

async fn infer(st: &Arc<AppState>, v: Value) -> Answer {
    call(
        st,
        "POST",
        "/v2/models/mlp/infer",
        "application/json",
        v.to_string().into_bytes(),
    )
    .await
}

fn error(a: &Answer) -> &str {
    a.body["error"].as_str().unwrap_or("")
}

/// A body whose bytes never come.
struct Stalled;

impl hyper::body::Body for Stalled {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        Poll::Pending
    }
}

#[tokio::test]
async fn routes_methods_and_models() {
    within(180, async {
        let st = state(true).await;
        let a = call(&st, "GET", "/v2/nothing", "", vec![]).await;
        assert_eq!(a.status, 404);
        assert!(
            error(&a).contains("no route for /v2/nothing"),
            "{}",
            error(&a)
        );
        let a = call(&st, "DELETE", "/v2/models/mlp", "", vec![]).await;
        assert_eq!(a.status, 405);
        assert_eq!(a.headers["allow"], "GET");
        let a = call(&st, "GET", "/v2/models/mlp/infer", "", vec![]).await;
        assert_eq!(
            (a.status, &a.headers["allow"]),
            (405, &"POST".parse().unwrap())
        );
        let a = call(&st, "GET", "/v2/models/ghost", "", vec![]).await;
        assert_eq!(a.status, 404);
        let a = call(&st, "GET", "/v2/models/mlp/versions/9", "", vec![]).await;
        assert_eq!(a.status, 404, "only version 3 is served");
        let a = call(&st, "GET", "/v2/models/mlp/versions/3/ready", "", vec![]).await;
        assert_eq!(a.status, 200);
        let a = call(&st, "GET", "/v2/models/mlp", "", vec![]).await;
        assert_eq!(a.body["inputs"][0]["shape"], json!([-1, 784]));
    })
    .await;
}

#[tokio::test]
async fn every_infer_error_and_an_answer() {
    within(180, async {
        let st = state(true).await;
        let ok = infer(&st, mlp_request(&[mlp_row(1), mlp_row(2)])).await;
        assert_eq!(ok.status, 200, "{:?}", ok.body);
        assert_eq!(ok.body["outputs"][0]["shape"][0], 2);

        let a = call(&st, "POST", "/v2/models/mlp/infer", "text/plain", b"{}".to_vec()).await;
        assert_eq!(a.status, 415);
        let a = call(&st, "POST", "/v2/models/ghost/infer", "application/json", b"{}".to_vec()).await;
        assert_eq!(a.status, 404);
        let cases = [
            (json!({"inputs": []}), "request has no inputs"),
            (
                json!({"inputs": [{"name": "input", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6]}]}),
                "input 'input' has shape [2,3]; model expects [-1,784]",
            ),
            (
                json!({"inputs": [{"name": "input", "shape": [1, 784], "datatype": "FP64", "data": vec![0.0; 784]}]}),
                "datatype FP64; model expects FP32",
            ),
            (
                json!({"inputs": [{"name": "input", "shape": [17, 784], "datatype": "FP32", "data": vec![0.0; 17 * 784]}]}),
                "batch of 17 rows",
            ),
            (
                json!({"inputs": [{"name": "input", "shape": [1125899906842624u64], "datatype": "FP32", "data": [0]}]}),
                "its shape holds 1125899906842624",
            ),
        ];
        for (body, want) in cases {
            let a = infer(&st, body).await;
            assert_eq!(a.status, 400, "{want}: {:?}", a.body);
            assert!(error(&a).contains(want), "{want}: {}", error(&a));
        }
        let a = call(&st, "POST", "/v2/models/mlp/infer", "application/json", b"{\"inputs\": [".to_vec()).await;
        assert_eq!(a.status, 400);
        assert!(error(&a).contains("not valid v2 JSON"), "{}", error(&a));

        // a declared Content-Length over the limit is refused before the body is read
        let req = Request::builder()
            .method("POST")
            .uri("/v2/models/mlp/infer")
            .header("content-type", "application/json")
            .header("content-length", "100001")
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap();
        let a = read(handle(st.clone(), req).await).await;
        assert_eq!(a.status, 413);
        // a header length past the body
        let req = Request::builder()
            .method("POST")
            .uri("/v2/models/mlp/infer")
            .header("content-type", "application/octet-stream")
            .header("inference-header-content-length", "50")
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap();
        let a = read(handle(st.clone(), req).await).await;
        assert_eq!(a.status, 400);
        assert!(error(&a).contains("Inference-Header-Content-Length is 50"), "{}", error(&a));

        // a body that never arrives: 408 after --body-timeout-secs (300 ms here)
        let req = Request::builder()
            .method("POST")
            .uri("/v2/models/mlp/infer")
            .header("content-type", "application/json")
            .body(Stalled)
            .unwrap();
        let t = std::time::Instant::now();
        let r = handle(st.clone(), req).await;
        assert_eq!(r.status(), 408);
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());

        // the same state still answers, and counted every outcome
        assert_eq!(infer(&st, mlp_request(&[mlp_row(3)])).await.status, 200);
        let text = st.metrics.render();
        assert_eq!(metric(&text, "mark_requests_total{model=\"mlp\",status=\"200\"}"), 2.0);
        assert!(metric(&text, "mark_requests_total{model=\"mlp\",status=\"400\"}") >= 6.0, "{text}");
    })
    .await;
}

#[tokio::test]
async fn a_model_still_loading_is_unavailable_with_retry_after() {
    within(60, async {
        let st = state(false).await;
        let a = infer(&st, mlp_request(&[mlp_row(0)])).await;
        assert_eq!(a.status, 503, "{:?}", a.body);
        assert!(a.headers.contains_key("retry-after"));
        let a = call(&st, "GET", "/v2/health/ready", "", vec![]).await;
        assert_eq!(a.status, 503);
        let a = call(&st, "GET", "/v2/health/live", "", vec![]).await;
        assert_eq!(a.status, 200);
    })
    .await;
}
