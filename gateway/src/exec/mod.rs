//! Execution core: ONNX Runtime sessions on dedicated threads.
//!
//! - `ort_lib`: finding and loading the shared library.
//! - `session`: building a session (execution provider, threads) and reading model metadata.
//! - `values`: converting gateway tensors to ort values and back.
//! - `executor`: the per-model pool of executor threads that run batches.
//! - `batch_ctx`: what a backend needs to finish, check and retry a model's batch.
//! - `remote`: fleet workers; `lambda`: AWS Lambda invocations; `wire`: the batch format both use.

pub mod batch_ctx;
pub mod executor;
pub mod lambda;
pub mod ort_lib;
pub mod remote;
pub mod session;
pub mod values;
pub mod wire;

use thiserror::Error;

/// Failures of the execution core. None of them is retried on the same executor.
#[derive(Debug, Error, Clone)]
pub enum ExecError {
    /// The ONNX Runtime library could not be found or loaded.
    #[error("onnxruntime library: {0}")]
    Library(String),
    /// The model file could not be loaded into a session.
    #[error("loading model '{model}': {message}")]
    Load {
        /// Model name.
        model: String,
        /// ONNX Runtime's message.
        message: String,
    },
    /// ONNX Runtime failed while running a batch.
    #[error("running model '{model}': {message}")]
    Run {
        /// Model name.
        model: String,
        /// ONNX Runtime's message.
        message: String,
    },
    /// The request's deadline passed while it was queued; it was not run (HTTP 504).
    #[error(
        "model '{model}': request waited {waited_ms} ms in the queue, past its SLO; it was not run"
    )]
    Expired {
        /// Model name.
        model: String,
        /// Time spent queued.
        waited_ms: u64,
    },
    /// The executor went away before answering (thread panicked or shut down).
    #[error("executor for model '{0}' stopped before answering")]
    Gone(String),
}
