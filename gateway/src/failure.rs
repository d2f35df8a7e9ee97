//! Why a subcommand of `mark` stopped, and the exit code each reason gives (sysexits.h, as
//! the README documents): the library's commands return it, `main.rs` prints it and exits.

use std::process::ExitCode;

/// A subcommand's failure.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// A flag, file or value the user gave is wrong (exit 64).
    #[error("configuration error: {0}")]
    Config(String),
    /// Input data was refused (a policy component that `mark policy check` rejects; exit 65).
    #[error("{0}")]
    Refused(String),
    /// A library or device the command needs is missing (ONNX Runtime, CUDA; exit 69).
    #[error("error: {0}")]
    Unavailable(String),
    /// Anything else went wrong while running (exit 1).
    #[error("error: {0}")]
    Failed(String),
}

impl Failure {
    /// A configuration error from any message.
    pub fn config(e: impl std::fmt::Display) -> Self {
        Failure::Config(e.to_string())
    }

    /// A run-time failure from any message.
    pub fn failed(e: impl std::fmt::Display) -> Self {
        Failure::Failed(e.to_string())
    }

    /// The process's exit code for it.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            Failure::Config(_) => 64,
            Failure::Refused(_) => 65,
            Failure::Unavailable(_) => 69,
            Failure::Failed(_) => 1,
        })
    }
}

/// A multi-threaded tokio runtime for a command.
pub fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::failed(format!("tokio runtime: {e}")))
}
