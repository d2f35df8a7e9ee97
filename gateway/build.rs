//! Compiles `proto/grpc_predict_v2.proto` (the KServe v2 gRPC service) into Rust with `protox` (a
//! pure-Rust protobuf compiler: no `protoc` needed) and `tonic-prost-build`. (The default policy
//! component is built by `mark-policy-host`'s build script.)

use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("manifest dir"));
    let root = manifest.parent().expect("workspace root").to_path_buf();
    compile_proto(&root);
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
