//! Builds the default policy component `mark-default.wasm` (the `mark-policies` crate with its
//! `export` feature, for `wasm32-unknown-unknown`, made a component by `wit-component`) and leaves
//! it in OUT_DIR for `include_bytes!`; and compiles `proto/grpc_predict_v2.proto` (the KServe v2
//! gRPC service) into Rust with `protox` (a pure-Rust protobuf compiler: no `protoc` needed) and
//! `tonic-prost-build`. Guest builds use their own target dir
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
    compile_proto(&root);
    let component =
        guest_build::build_guest(&root, &out, "mark-policies", "export", "mark_policies");
    std::fs::write(out.join("mark-default.wasm"), component).expect("write component");
}

/// The v2 gRPC messages, server trait and client. `bytes` fields are `Bytes`, so raw tensor
/// contents are slices of the received message instead of copies.
fn compile_proto(root: &std::path::Path) {
    let proto = root.join("proto");
    println!("cargo:rerun-if-changed={}", proto.display());
    let fds = protox::compile([proto.join("grpc_predict_v2.proto")], [&proto])
        .unwrap_or_else(|e| panic!("proto/grpc_predict_v2.proto: {e}"));
    tonic_prost_build::configure()
        .bytes(".")
        .compile_fds(fds)
        .expect("generate the v2 gRPC code");
}
