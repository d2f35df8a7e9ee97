//! Builds the default policy component `mark-default.wasm` (the `mark-policies` crate with its
//! `export` feature, for `wasm32-unknown-unknown`, made a component by `wit-component`) and leaves
//! it in OUT_DIR for `include_bytes!`. Guest builds use their own target dir
//! (`<target>/wasm-guests`) so they never contend for the outer build's lock.

use std::path::PathBuf;

#[path = "guest_build.rs"]
mod guest_build;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("manifest dir"));
    let root = manifest.parent().expect("workspace root").to_path_buf();
    println!("cargo:rerun-if-changed=guest_build.rs");
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
    let component =
        guest_build::build_guest(&root, &out, "mark-policies", "export", "mark_policies");
    std::fs::write(out.join("mark-default.wasm"), component).expect("write component");
}
