//! Typed configuration: the server's settings and each model's `config.toml`.
//!
//! Everything is parsed and validated before any port is bound; the binary exits with code 64 and
//! the reason when validation fails.

use serde::Deserialize;
use std::path::{Path, PathBuf};

pub use mark_core::error::ConfigError;

/// Which ONNX Runtime execution provider a model's sessions use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ExecutionProvider {
    /// ONNX Runtime's default CPU provider.
    #[default]
    Cpu,
    /// CUDA; falls back to CPU with a logged warning when the library or device lacks it.
    Cuda,
}

/// What happens to a request still queued when its deadline (the SLO) has passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnDeadline {
    /// Answer 504 without running it: its compute goes to requests that can still make it.
    #[default]
    Reject,
    /// Run it anyway and answer late.
    Serve,
}

/// Per-model settings from `DIR/<name>/config.toml`. Every field is optional.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// Largest batch (in items along dim 0) the batcher sends; a single request above it is refused.
    /// 0: never batch (one request per run, as Triton's `max_batch_size: 0`). A model is batched
    /// only when its signature and a check with real rows show batching is the identity on each
    /// row (`exec::batchability`), unless `force_batching` says otherwise.
    pub max_batch_size: usize,
    /// Batch this model without the signature and data checks, for the reason given (shown in
    /// the status and the log). For a model whose rows are independent but whose ONNX signature
    /// cannot show it (outputs with differently named leading dimensions, say).
    pub force_batching: Option<String>,
    /// Latency objective per request in milliseconds: the batcher never waits so long that the
    /// oldest request would miss it, given the profiled latency of the batch.
    pub slo_ms: f64,
    /// Execution provider for this model's sessions.
    pub execution_provider: ExecutionProvider,
    /// Concurrent executors (each a thread owning one ort session).
    pub executors: usize,
    /// Intra-op threads per session (0 = ONNX Runtime's default).
    pub intra_threads: usize,
    /// Warm-up runs per executor before the model reports ready.
    pub warmup_runs: usize,
    /// Bound of the model queue in requests; a full queue answers 503 with `Retry-After`.
    pub queue_capacity: usize,
    /// Version string reported by the metadata endpoint.
    pub version: String,
    /// A request still queued after `slo_ms`: `reject` (504, not run) or `serve` (run late).
    /// `reject` also enables SLO-aware admission: a request whose expected wait already misses
    /// the SLO is refused at once with 503 and `Retry-After`.
    pub on_deadline: OnDeadline,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            max_batch_size: 32,
            force_batching: None,
            slo_ms: 100.0,
            execution_provider: ExecutionProvider::Cpu,
            executors: 1,
            intra_threads: 0,
            warmup_runs: 2,
            queue_capacity: 1024,
            version: "1".into(),
            on_deadline: OnDeadline::Reject,
        }
    }
}

impl ModelConfig {
    /// Checks ranges; `origin` names the file in the error.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let err = |m: &str| Err(ConfigError::new(origin, m));
        if self.max_batch_size > 4096 {
            return err("max_batch_size must be in 0..=4096 (0: never batch)");
        }
        if let Some(why) = &self.force_batching {
            if why.trim().is_empty() {
                return err(
                    "force_batching must state the reason the model's rows are independent",
                );
            }
            if self.max_batch_size == 0 {
                return err("force_batching contradicts max_batch_size = 0");
            }
        }
        if !(self.slo_ms.is_finite() && self.slo_ms > 0.0) {
            return err("slo_ms must be a positive number of milliseconds");
        }
        if self.executors == 0 || self.executors > 64 {
            return err("executors must be in 1..=64");
        }
        if self.queue_capacity == 0 {
            return err("queue_capacity must be at least 1");
        }
        if self.version.is_empty() || self.version.contains('/') {
            return err("version must be a non-empty string without '/'");
        }
        Ok(())
    }

    /// Parses and validates a `config.toml` body.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let cfg: ModelConfig =
            toml::from_str(text).map_err(|e| ConfigError::new(origin, e.to_string()))?;
        cfg.validate(origin)?;
        Ok(cfg)
    }
}

/// Settings of `mark serve`.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Model repository directory.
    pub model_repo: PathBuf,
    /// Largest request body accepted, in bytes (413 above it).
    pub max_body_bytes: usize,
    /// Most concurrent connections; more wait in the kernel's accept queue.
    pub max_connections: usize,
    /// A connection with no request in flight this long is closed.
    pub idle_timeout: std::time::Duration,
    /// Longest time a request body may take to arrive (408 after).
    pub body_timeout: std::time::Duration,
    /// Profile models that have no `profile.toml` at start.
    pub profile_missing: bool,
    /// One log line per inference request (`--log-requests`; off by default).
    pub log_requests: bool,
    /// Trace recording (`--record-trace`, `--record-max-bytes`).
    pub trace: TraceConfig,
    /// A fleet worker (`mark worker`): its answers carry its load, and it refuses batches it
    /// is too loaded to start within their SLO (503) so that gateway replicas go elsewhere.
    pub worker: bool,
    /// The secret shared by the gateway and its workers (`MARK_WORKER_SECRET`, or the file
    /// `MARK_WORKER_SECRET_FILE` names): a worker runs batches only for requests that carry it
    /// (`x-mark-worker-secret`), and the gateway sends it with every batch.
    pub worker_secret: Option<std::sync::Arc<str>>,
}

/// The worker secret from the environment: `MARK_WORKER_SECRET`, else the first line of the file
/// `MARK_WORKER_SECRET_FILE` names (as a launch template can provide it); None when neither is
/// set. A file that cannot be read, or a secret under 16 bytes, is an error.
pub fn worker_secret_from_env() -> Result<Option<std::sync::Arc<str>>, ConfigError> {
    let var = |k: &str| std::env::var(k).ok().filter(|s| !s.is_empty());
    let secret = match (var("MARK_WORKER_SECRET"), var("MARK_WORKER_SECRET_FILE")) {
        (Some(s), _) => s,
        (None, Some(f)) => secret_file("MARK_WORKER_SECRET_FILE", Path::new(&f))?,
        (None, None) => return Ok(None),
    };
    if http::HeaderValue::from_str(&secret).is_err() {
        return Err(ConfigError::new(
            "MARK_WORKER_SECRET",
            "the worker secret must be visible ASCII (it travels in a header)",
        ));
    }
    if secret.len() < 16 {
        return Err(ConfigError::new(
            "MARK_WORKER_SECRET",
            "the worker secret is shorter than 16 bytes: use a long random one (e.g. `openssl rand -hex 32`)",
        ));
    }
    Ok(Some(secret.into()))
}

/// A secret kept in a file (`--admin-token-file`, `MARK_WORKER_SECRET_FILE`): its first line,
/// trimmed; `key` names the setting in the error when the file cannot be read, is over 4 KiB
/// or its first line is empty.
pub fn secret_file(key: &str, path: &Path) -> Result<String, ConfigError> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(4097).read_to_string(&mut text))
        .map_err(|e| ConfigError::new(key, format!("{}: {e}", path.display())))?;
    if text.len() > 4096 {
        return Err(ConfigError::new(
            key,
            format!("{}: over 4096 bytes: not a secret file", path.display()),
        ));
    }
    let line = text.lines().next().unwrap_or_default().trim().to_string();
    if line.is_empty() {
        return Err(ConfigError::new(
            key,
            format!("{}: its first line is empty", path.display()),
        ));
    }
    Ok(line)
}

/// Where traces go.
#[derive(Debug, Clone)]
pub struct TraceConfig {
    /// `--record-trace DIR`: recorded from the start, and the default of the admin start call.
    pub dir: Option<PathBuf>,
    /// Where the admin start call puts a trace without a directory (the state directory).
    pub default_parent: PathBuf,
    /// Bound on disk use, bytes.
    pub max_bytes: u64,
}

impl Default for TraceConfig {
    fn default() -> Self {
        TraceConfig {
            dir: None,
            default_parent: PathBuf::from("."),
            max_bytes: 1 << 30,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            model_repo: PathBuf::from("models"),
            max_body_bytes: 64 << 20,
            max_connections: 4096,
            idle_timeout: std::time::Duration::from_secs(60),
            body_timeout: std::time::Duration::from_secs(30),
            profile_missing: true,
            log_requests: false,
            trace: TraceConfig::default(),
            worker: false,
            worker_secret: None,
        }
    }
}

impl ServerConfig {
    /// Checks ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_body_bytes < 1024 {
            return Err(ConfigError::new(
                "--max-body-bytes",
                "must be at least 1024",
            ));
        }
        if self.max_connections == 0 || self.max_connections > 1 << 20 {
            return Err(ConfigError::new(
                "--max-connections",
                "must be in 1..=1048576",
            ));
        }
        if self.idle_timeout < std::time::Duration::from_millis(100) {
            return Err(ConfigError::new(
                "--idle-timeout-secs",
                "must be at least 0.1 seconds",
            ));
        }
        if self.body_timeout < std::time::Duration::from_millis(100) {
            return Err(ConfigError::new(
                "--body-timeout-secs",
                "must be at least 0.1 seconds",
            ));
        }
        // object storage is fetched (and checked) at load; a file:// URL is its path
        let repo = self.model_repo.to_string_lossy();
        let local = repo
            .strip_prefix("file://")
            .map_or(self.model_repo.clone(), Into::into);
        if !repo.starts_with("s3://") && !local.is_dir() {
            return Err(ConfigError::new(
                "--model-repo",
                format!(
                    "{} is not a directory (run scripts/setup.sh to generate the demo models)",
                    self.model_repo.display()
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        ModelConfig::default().validate("x").unwrap();
    }

    #[test]
    fn parses_and_rejects() {
        let c = ModelConfig::parse(
            "max_batch_size = 8\nslo_ms = 20\nexecution_provider = \"cuda\"",
            "m",
        )
        .unwrap();
        assert_eq!(c.max_batch_size, 8);
        assert_eq!(c.execution_provider, ExecutionProvider::Cuda);
        assert_eq!(c.on_deadline, OnDeadline::Reject);
        let c = ModelConfig::parse("on_deadline = \"serve\"", "m").unwrap();
        assert_eq!(c.on_deadline, OnDeadline::Serve);
        assert!(ModelConfig::parse("on_deadline = \"later\"", "m").is_err());
        assert_eq!(
            ModelConfig::parse("max_batch_size = 0", "m")
                .unwrap()
                .max_batch_size,
            0
        );
        assert!(ModelConfig::parse("max_batch_size = 4097", "m").is_err());
        let c = ModelConfig::parse("force_batching = \"rows independent\"", "m").unwrap();
        assert_eq!(c.force_batching.as_deref(), Some("rows independent"));
        assert!(ModelConfig::parse("force_batching = \" \"", "m").is_err());
        assert!(ModelConfig::parse("max_batch_size = 0\nforce_batching = \"x\"", "m").is_err());
        assert!(ModelConfig::parse("slo_ms = -1", "m").is_err());
        let e = ModelConfig::parse("bogus = 1", "m/config.toml").unwrap_err();
        assert!(e.to_string().contains("m/config.toml"), "{e}");
    }
}
