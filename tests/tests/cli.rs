//! Start-up failures of the binary: exit codes and messages.

mod util;

use std::process::Command;
use util::*;

#[test]
fn bad_model_config_exits_64_naming_the_file() {
    let repo = repo_with(&[("mlp", "max_batch_size = 0\n")]);
    let out = Command::new(mark_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--model-repo"])
        .arg(&repo)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("mlp/config.toml") && err.contains("max_batch_size"),
        "{err}"
    );
}

#[test]
fn missing_onnxruntime_library_says_how_to_install() {
    let repo = repo_with(&[("mlp", "")]);
    let out = Command::new(mark_bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--ort-lib",
            "/nonexistent/libonnxruntime.so",
            "--model-repo",
        ])
        .arg(&repo)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(69));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/libonnxruntime.so"));
}
