//! Building WebAssembly guest crates into components from a build script; shared by
//! `gateway/build.rs` (the default policies) and `tests/build.rs` (test fixtures, examples).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// `<target>` of the outer build: OUT_DIR is `<target>/<profile>/build/<pkg>-<hash>/out`.
pub fn guest_target_dir(out: &Path) -> PathBuf {
    out.ancestors()
        .nth(4)
        .map(|t| t.join("wasm-guests"))
        .unwrap_or_else(|| out.join("wasm-guests"))
}

pub fn build_guest(
    root: &Path,
    out: &Path,
    package: &str,
    features: &str,
    artifact: &str,
) -> Vec<u8> {
    let target_dir = guest_target_dir(out);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--release",
        "--target",
        "wasm32-unknown-unknown",
        "-p",
        package,
    ])
    .arg("--manifest-path")
    .arg(root.join("Cargo.toml"))
    .env("CARGO_TARGET_DIR", &target_dir)
    .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
    .env("CARGO_PROFILE_RELEASE_STRIP", "true")
    .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "s")
    .env("CARGO_PROFILE_RELEASE_LTO", "true")
    .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1")
    .env("CARGO_PROFILE_RELEASE_PANIC", "abort");
    if !features.is_empty() {
        cmd.args(["--features", features]);
    }
    for v in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "CARGO_BUILD_TARGET",
    ] {
        cmd.env_remove(v);
    }
    let status = cmd.status().expect("run cargo for the wasm guest");
    assert!(
        status.success(),
        "building the {package} wasm guest failed; is the target installed? `rustup target add wasm32-unknown-unknown` (scripts/setup.sh does it)"
    );
    let module = std::fs::read(
        target_dir
            .join("wasm32-unknown-unknown/release")
            .join(format!("{artifact}.wasm")),
    )
    .expect("guest module");
    wit_component::ComponentEncoder::default()
        .module(&module)
        .expect("module with component-type metadata")
        .validate(true)
        .encode()
        .expect("encode component")
}
