//! The stock Python `tritonclient[http]` works unchanged against the gateway, and the real
//! pretrained magika model answers exactly as onnxruntime in Python does.

mod util;

use std::process::Command;
use util::*;

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
