//! `scripts/gpu-check.sh` and `mark profile` on a machine without CUDA: a model configured for
//! CUDA that ONNX Runtime quietly runs on the CPU fails the check, never passes for a GPU.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;

/// The CPU build of libonnxruntime that `scripts/setup.sh` installed (or `ORT_DYLIB_PATH`).
fn cpu_ort_lib() -> PathBuf {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        return PathBuf::from(p);
    }
    let lib = root().join(".mark/venv/lib");
    for py in std::fs::read_dir(&lib).expect(".mark/venv: run bash scripts/setup.sh") {
        let capi = py.unwrap().path().join("site-packages/onnxruntime/capi");
        for e in std::fs::read_dir(&capi).into_iter().flatten().flatten() {
            if e.file_name()
                .to_string_lossy()
                .starts_with("libonnxruntime.so.")
            {
                return e.path();
            }
        }
    }
    panic!("no libonnxruntime.so under {}", lib.display());
}

/// Runs `cmd` to completion or kills it after `secs`.
fn run_within(mut cmd: Command, secs: u64) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let end = Instant::now() + Duration::from_secs(secs);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            panic!("{cmd:?} did not finish within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.wait_with_output().expect("output")
}

#[test]
fn profile_refuses_a_cuda_model_that_runs_on_the_cpu() {
    let repo = repo_with(&[("mlp", "max_batch_size = 4\nexecution_provider = \"cuda\"\n")]);
    // no profile to start from (repo_with copies one a local demo may have written into models/)
    let _ = std::fs::remove_file(repo.join("mlp/profile.toml"));
    let mut cmd = Command::new(mark_bin());
    cmd.args([
        "profile",
        "--model-repo",
        repo.to_str().unwrap(),
        "--reps",
        "3",
    ])
    .arg("--ort-lib")
    .arg(cpu_ort_lib());
    let out = run_within(cmd, 120);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "{err}");
    assert!(err.contains("CUDA is unavailable"), "{err}");
    assert!(
        !repo.join("mlp/profile.toml").exists(),
        "a CPU profile was saved for a CUDA model"
    );
}

#[test]
fn gpu_check_fails_when_cuda_falls_back_to_the_cpu() {
    let repo = repo_with(&[("mlp", "max_batch_size = 4\n")]);
    let out_dir = temp_dir("gpu-check");
    let mut cmd = Command::new("bash");
    cmd.arg(root().join("scripts/gpu-check.sh"))
        .arg(&out_dir)
        .current_dir(root())
        .env("MARK_GPU_ORT_LIB", cpu_ort_lib())
        .env("MARK_BIN", mark_bin())
        .env("MARK_MODELS", &repo);
    let out = run_within(cmd, 240);
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("mlp: configured for CUDA, running on cpu: CUDA fell back to CPU"),
        "{stdout}"
    );
    assert!(stdout.contains("FAILED"), "{stdout}");
    // the comparison itself ran: the CPU and the (CPU-backed) "CUDA" gateway agree
    assert!(
        stdout.contains("mlp: max |cuda - cpu| = 0.00e+00"),
        "{stdout}"
    );
}
