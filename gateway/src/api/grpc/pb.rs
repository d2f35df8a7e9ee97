//! The v2 gRPC messages, `GRPCInferenceService` server trait and client, generated at build
//! time from `proto/grpc_predict_v2.proto` (see `build.rs`).
#![allow(missing_docs, clippy::all, clippy::pedantic)]

tonic::include_proto!("inference");
