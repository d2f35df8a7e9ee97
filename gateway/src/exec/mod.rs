//! Execution core: ONNX Runtime sessions on dedicated threads.
//!
//! - `ort_lib`: finding and loading the shared library.
//! - `session`: building a session (execution provider, threads) and reading model metadata.
//! - `values`: converting gateway tensors to ort values and back.
//! - `batchability`: whether a model's requests may share a run (signature and a check with
//!   real rows, at load).
//! - `executor`: the per-model pool of executor threads that run batches.
//! - `measure`: measuring a model's latency per batch size (`mark profile`; `mark serve` for a
//!   model without a profile).
//! - `batch_ctx`: what a backend needs to finish, check and retry a model's batch.
//! - `remote`: fleet workers; `lambda_client`: the backend that invokes the Lambda function (whose
//!   body is `crate::lambda_function`); `wire`: the batch format both use.

pub mod batch_ctx;
pub mod batchability;
pub mod executor;
pub mod lambda_client;
pub mod measure;
pub mod ort_lib;
pub mod remote;
pub mod session;
pub mod values;
pub mod wire;
