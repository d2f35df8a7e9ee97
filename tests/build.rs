//! Builds the policy components the end-to-end tests load: the fixtures in `tests/fixtures`
//! (one per feature) and the examples, into OUT_DIR/<name>.wasm.

use std::path::PathBuf;

#[path = "../policy-host/guest_build.rs"]
mod guest_build;

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("manifest dir"))
        .parent()
        .expect("root")
        .to_path_buf();
    for p in [
        "tests/fixtures",
        "examples/aimd-batcher",
        "sdk",
        "wit",
        "policy-host/guest_build.rs",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(p).display());
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    for f in [
        "fixed-one",
        "fill-four",
        "spin",
        "hog",
        "panic",
        "wasi",
        "v2",
        "bad-answer",
        "bomb",
        "contrary",
        "v01-provisioner",
    ] {
        let c =
            guest_build::build_guest(&root, &out, "mark-test-policies", f, "mark_test_policies");
        std::fs::write(out.join(format!("{f}.wasm")), c).expect("write fixture");
    }
    let c = guest_build::build_guest(&root, &out, "aimd-batcher", "", "aimd_batcher");
    std::fs::write(out.join("aimd-batcher.wasm"), c).expect("write example");
    // the C example, built by its own script (clang + wasm-ld + wasm-tools, from scripts/setup.sh)
    let status = std::process::Command::new("bash")
        .arg(root.join("examples/c-batcher/build.sh"))
        .arg(out.join("c-batcher.wasm"))
        .status()
        .expect("run examples/c-batcher/build.sh");
    assert!(status.success(), "examples/c-batcher/build.sh failed: run `bash scripts/setup.sh` (clang-19, lld-19, wasm-tools)");
    // the core module (not a component), for the "not a component" test
    let core = guest_build::guest_target_dir(&out)
        .join("wasm32-unknown-unknown/release/aimd_batcher.wasm");
    std::fs::copy(core, out.join("core-module.wasm")).expect("copy core module");
}
