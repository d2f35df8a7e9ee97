//! Builds the default policy component `mark-default.wasm` (the `mark-policies` crate with its
//! `export` feature, for `wasm32-unknown-unknown`, made a component by `wit-component`) and leaves
//! it in OUT_DIR for `include_bytes!`. Guest builds use their own target dir
//! (`<target>/wasm-guests`) so they never contend for the outer build's lock.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("manifest dir"));
    let root = manifest.parent().expect("workspace root").to_path_buf();
    for p in [
        "policies/src",
        "policies/Cargo.toml",
        "sdk/src",
        "sdk/Cargo.toml",
        "wit",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(p).display());
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let component = build_guest(&root, &out, "mark-policies", "export", "mark_policies");
    std::fs::write(out.join("mark-default.wasm"), component).expect("write component");
}

/// `<target>` of the outer build: OUT_DIR is `<target>/<profile>/build/<pkg>-<hash>/out`.
fn guest_target_dir(out: &Path) -> PathBuf {
    out.ancestors()
        .nth(4)
        .map(|t| t.join("wasm-guests"))
        .unwrap_or_else(|| out.join("wasm-guests"))
}

fn build_guest(root: &Path, out: &Path, package: &str, features: &str, artifact: &str) -> Vec<u8> {
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
