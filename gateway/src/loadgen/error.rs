//! Why `mark bench` could not run, with the context of what it was doing.

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BenchError(pub String);

macro_rules! bench_error_from {
    ($($t:ty),*) => {
        $(impl From<$t> for BenchError {
            fn from(e: $t) -> Self {
                BenchError(e.to_string())
            }
        })*
    };
}
bench_error_from!(
    tokio::task::JoinError,
    hyper::http::uri::InvalidUri,
    hyper::Error,
    serde_json::Error,
    crate::work::ExecError,
    crate::config::ConfigError
);

/// Context for a failure: what was being done.
pub(super) trait Ctx<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T, BenchError>;
}

impl<T, E: std::fmt::Display> Ctx<T> for Result<T, E> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T, BenchError> {
        self.map_err(|e| BenchError(format!("{}: {e}", what())))
    }
}

impl<T> Ctx<T> for Option<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T, BenchError> {
        self.ok_or_else(|| BenchError(what()))
    }
}
