//! KServe v2 over gRPC against the real binary: the stock `tritonclient.grpc` unchanged (every
//! bundled model, raw and typed contents, equal to REST bit for bit, error codes), a Rust client
//! built from the same proto (500 concurrent calls batched, every answer its own), and cancelled
//! calls leaving the queue unrun as disconnected REST clients do.

use std::time::Duration;

use crate::util::*;
use bytes::Bytes;
use mark_gateway::api::grpc::pb::grpc_inference_service_client::GrpcInferenceServiceClient;
use mark_gateway::api::grpc::pb::model_infer_request::InferInputTensor;
use mark_gateway::api::grpc::pb::{ModelInferRequest, ServerReadyRequest};
use tonic::transport::Channel;

const LIMIT: &str = "4194304";

async fn connect(g: &Gateway) -> GrpcInferenceServiceClient<Channel> {
    let addr = g.grpc.expect("gRPC listener");
    let ch = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .connect()
        .await
        .expect("connect");
    GrpcInferenceServiceClient::new(ch).max_decoding_message_size(64 << 20)
}

fn raw_request(
    model: &str,
    name: &str,
    shape: Vec<i64>,
    data: &[f32],
    id: String,
) -> ModelInferRequest {
    ModelInferRequest {
        model_name: model.into(),
        id,
        inputs: vec![InferInputTensor {
            name: name.into(),
            datatype: "FP32".into(),
            shape,
            ..Default::default()
        }],
        raw_input_contents: vec![Bytes::from(
            data.iter()
                .flat_map(|x| x.to_le_bytes())
                .collect::<Vec<_>>(),
        )],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_tritonclient_grpc_matches_rest() {
    within(240, async {
        let repo = repo_with(&[
            ("mlp", "max_batch_size = 16\n"),
            ("resnet18", "max_batch_size = 4\nslo_ms = 5000\n"),
            ("magika", "max_batch_size = 8\n"),
        ]);
        let g = Gateway::start(&[
            "--model-repo",
            repo.to_str().unwrap(),
            "--max-body-bytes",
            LIMIT,
        ])
        .ready()
        .await;
        python_script(
            "grpc_clients.py",
            &[
                g.grpc.unwrap().to_string().into(),
                g.addr.to_string().into(),
                LIMIT.into(),
            ],
        )
        .await;
    })
    .await;
}

/// 500 concurrent calls from a Rust client generated from the checked-in proto: batched
/// together, each answered with its own row's result (the same as that row alone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_are_batched_and_answered_correctly() {
    within(120, async {
        let repo = repo_with(&[("mlp", "max_batch_size = 32\nslo_ms = 1000\n")]);
        let g = Gateway::start(&["--model-repo", repo.to_str().unwrap()])
            .ready()
            .await;
        let mut c = connect(&g).await;
        assert!(
            c.server_ready(ServerReadyRequest {})
                .await
                .unwrap()
                .into_inner()
                .ready
        );
        // the answer for each of 50 distinct rows, one call at a time
        let mut alone = Vec::new();
        for seed in 0..50u32 {
            let r = c
                .model_infer(raw_request(
                    "mlp",
                    "input",
                    vec![1, 784],
                    &mlp_row(seed),
                    String::new(),
                ))
                .await
                .unwrap()
                .into_inner();
            alone.push(r.raw_output_contents);
        }
        let metrics = || async {
            String::from_utf8_lossy(&get(&format!("{}/metrics", g.base)).await.unwrap().body)
                .to_string()
        };
        let before = metric(&metrics().await, "mark_batch_size_count{model=\"mlp\"}");
        let calls: Vec<_> = (0..500u32)
            .map(|i| {
                let mut c = c.clone();
                let seed = i % 50;
                tokio::spawn(async move {
                    let r = c
                        .model_infer(raw_request(
                            "mlp",
                            "input",
                            vec![1, 784],
                            &mlp_row(seed),
                            format!("call-{i}"),
                        ))
                        .await
                        .expect("call answered")
                        .into_inner();
                    (i, r)
                })
            })
            .collect();
        for call in calls {
            let (i, r) = call.await.unwrap();
            assert_eq!(r.id, format!("call-{i}"));
            assert_eq!(
                r.raw_output_contents,
                alone[(i % 50) as usize],
                "call {i} got another row's answer"
            );
        }
        let text = metrics().await;
        let batches = metric(&text, "mark_batch_size_count{model=\"mlp\"}") - before;
        println!("500 concurrent gRPC calls ran in {batches} batches");
        assert!(
            batches < 500.0,
            "no call was batched with another: {batches} batches"
        );
        assert!(metric(&text, "mark_requests_total{model=\"mlp\",status=\"200\"}") >= 550.0);
    })
    .await;
}

/// Calls the client cancels while they are queued are never run, as with REST clients that hang
/// up; the gateway answers the next call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_calls_are_never_run() {
    within(120, async {
        let repo = repo_with(&[(
            "resnet18",
            "max_batch_size = 8\nslo_ms = 60000\nexecutors = 1\nintra_threads = 1\non_deadline = \"serve\"\n",
        )]);
        let g = Gateway::start(&["--model-repo", repo.to_str().unwrap()])
            .ready()
            .await;
        let c = connect(&g).await;
        let row = vec![0.25f32; 3 * 224 * 224];
        let batch = |rows: usize| raw_request("resnet18", "input", vec![rows as i64, 3, 224, 224], &row.repeat(rows), String::new());
        // keep the one executor busy with full batches
        let busy: Vec<_> = (0..10)
            .map(|_| {
                let (mut c, req) = (c.clone(), batch(8));
                tokio::spawn(async move { c.model_infer(req).await.map(|_| ()) })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(300)).await;
                // 10 calls given up by their clients while queued, all at once (one after the other,
        // the last ones outlived the busy batches on a faster machine)
        let gave_up: Vec<_> = (0..10)
            .map(|_| {
                let (mut c, req) = (c.clone(), batch(1));
                tokio::spawn(async move {
                    tokio::time::timeout(Duration::from_millis(100), c.model_infer(req)).await
                })
            })
            .collect();
        for r in gave_up {
            assert!(r.await.unwrap().is_err(), "answered before the busy batches");
        }
        for b in busy {
            b.await.unwrap().expect("busy batch answered");
        }
        let mut c2 = c.clone();
        c2.model_infer(batch(1)).await.expect("still serves");
        let text = String::from_utf8_lossy(&get(&format!("{}/metrics", g.base)).await.unwrap().body).to_string();
        let cancelled = metric(&text, "mark_requests_cancelled_total{model=\"resnet18\"}");
        let items = metric(&text, "mark_batch_size_sum{model=\"resnet18\"}");
        println!("10 gRPC calls cancelled while queued: cancelled {cancelled}, items run {items}");
        assert_eq!(cancelled, 10.0, "items run {items}");
        assert_eq!(items, 81.0, "only the answered calls' items ran");
    })
    .await;
}
