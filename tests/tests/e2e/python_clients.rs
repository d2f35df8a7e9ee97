//! The stock Python `tritonclient[http]` works unchanged against the gateway, and the real
//! pretrained magika model answers exactly as onnxruntime in Python does.

use crate::util::*;

#[tokio::test]
async fn tritonclient_and_magika_reference() {
    let repo = repo_with(&[
        ("mlp", "max_batch_size = 16\n"),
        ("magika", "max_batch_size = 8\n"),
    ]);
    let g = Gateway::start(&["--model-repo", repo.to_str().unwrap()])
        .ready()
        .await;
    python_script(
        "stock_clients.py",
        &[g.addr.to_string().into(), root().join("models").into()],
    )
    .await;
}

/// Issue 25: KServe's own Python SDK (REST over HTTP/1.1 and HTTP/2, JSON and binary; gRPC)
/// infers on every bundled model with onnxruntime's answers, and gets clean errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kserve_sdk_rest_and_grpc_on_every_bundled_model() {
    within(300, async {
        let repo = repo_with(&[
            ("mlp", "max_batch_size = 16\n"),
            ("magika", "max_batch_size = 8\n"),
            ("resnet18", "max_batch_size = 4\nslo_ms = 5000\n"),
        ]);
        let g = Gateway::start(&["--model-repo", repo.to_str().unwrap()])
            .ready()
            .await;
        python_script(
            "kserve_clients.py",
            &[
                g.addr.to_string().into(),
                g.grpc.unwrap().to_string().into(),
                repo.clone().into(),
            ],
        )
        .await;
    })
    .await;
}
