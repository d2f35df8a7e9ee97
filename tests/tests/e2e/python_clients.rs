//! The stock Python `tritonclient[http]` works unchanged against the gateway, and the real
//! pretrained magika model answers exactly as onnxruntime in Python does.

use crate::util::*;
use std::process::Command;

#[tokio::test]
async fn tritonclient_and_magika_reference() {
    let repo = repo_with(&[
        ("mlp", "max_batch_size = 16\n"),
        ("magika", "max_batch_size = 8\n"),
    ]);
    let g = Gateway::start(&["--model-repo", repo.to_str().unwrap()])
        .ready()
        .await;
    let py = root().join(".mark/venv/bin/python");
    let out = Command::new(py)
        .arg(root().join("tests/py/stock_clients.py"))
        .arg(g.addr.to_string())
        .arg(root().join("models"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    println!("{text}");
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
        let out = tokio::process::Command::new(root().join(".mark/venv/bin/python"))
            .arg(root().join("tests/py/kserve_clients.py"))
            .arg(g.addr.to_string())
            .arg(g.grpc.unwrap().to_string())
            .arg(&repo)
            .output()
            .await
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{text}");
        println!("{text}");
    })
    .await;
}
