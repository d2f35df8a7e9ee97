//! The unit of work shared by the layers that queue it (`batching`) and run it (`exec`): a request
//! admitted to a model queue with its reply channel, and the ways running it can fail. It sits
//! below both so that neither has to import the other to name it.

use thiserror::Error;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::tensor::Tensor;

/// Result of one request: all model outputs for its rows.
pub type Reply = Result<Vec<Tensor>, ExecError>;

/// A request admitted to a model queue.
#[derive(Debug)]
pub struct Pending {
    /// Inputs in the model's declared order.
    pub inputs: Vec<Tensor>,
    /// Rows along dim 0.
    pub items: u32,
    /// Non-batch dimensions of every input: only requests with equal signatures share a batch.
    pub signature: Vec<Vec<i64>>,
    /// When it was admitted (tokio's clock: the batching deadlines are tested in paused time).
    pub enqueued: Instant,
    /// Time it waited before its batch was dispatched that no model of the batcher accounts
    /// for (the batch loop waking up late), set at dispatch to the gateway's own executors or a
    /// worker; the executor or the call adds what the run took past its curve
    /// (`metrics.host_overhead`, `metrics.worker_overhead`).
    pub host: std::time::Duration,
    /// Where the answer goes; the request is answered exactly once through it.
    pub reply: oneshot::Sender<Reply>,
}

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
