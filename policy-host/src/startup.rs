//! Policy start-up, shared by `mark serve`, `mark lambda` and `mark simulate`: the embedded
//! default component, the `--policy KIND=FILE.wasm` flag, and building the engine and slots with
//! the start-up policies installed.

use std::path::PathBuf;
use std::sync::Arc;

use super::engine::{EngineError, PolicyEngine, PolicyLimits};
use super::slot::PolicySlots;
use super::validate::validate;
use super::PolicyKind;

/// Why the policies could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The wasmtime engine could not be built.
    #[error("{0}")]
    Engine(#[from] EngineError),
    /// The embedded default component was refused (a build defect).
    #[error("embedded default {0} policy: {1}")]
    Default(PolicyKind, String),
    /// A `--policy` file could not be read or was refused.
    #[error("--policy {kind}={}: {reason}", path.display())]
    Load {
        /// Its kind.
        kind: PolicyKind,
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// The default policy component (the `mark-policies` crate built for wasm by `build.rs`).
pub static DEFAULT_POLICIES_WASM: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/mark-default.wasm"));

/// Policy settings of `mark serve`.
#[derive(Debug, Clone, Default)]
pub struct PolicyOptions {
    /// Limits and deadlines.
    pub limits: PolicyLimits,
    /// Components to load at start, by kind (they replace the default component for that kind).
    pub load: Vec<(PolicyKind, PathBuf)>,
    /// Run the native defaults instead of loading `mark-default.wasm`.
    pub native_only: bool,
}

/// Parses a `--policy KIND=FILE.wasm` flag.
pub fn parse_policy(s: &str) -> Result<(PolicyKind, PathBuf), String> {
    let (k, f) = s.split_once('=').ok_or("expected KIND=FILE.wasm")?;
    let kind = PolicyKind::parse(k)
        .ok_or_else(|| format!("unknown policy kind '{k}' (batcher, predictor, provisioner)"))?;
    Ok((kind, PathBuf::from(f)))
}

/// Builds the engine and slots and loads the start-up policies. Errors name the file and reason.
pub fn policies(
    opts: &PolicyOptions,
) -> Result<(Arc<PolicyEngine>, Arc<PolicySlots>), StartupError> {
    let engine = PolicyEngine::new(opts.limits.clone())?;
    let slots = Arc::new(PolicySlots::new(opts.limits.rollback_after));
    if !opts.native_only {
        for kind in PolicyKind::ALL {
            let p = validate(
                &engine,
                DEFAULT_POLICIES_WASM,
                kind,
                "embedded mark-default.wasm",
            )
            .map_err(|e| StartupError::Default(kind, e.to_string()))?;
            slots.get(kind).install(p);
        }
    }
    for (kind, path) in &opts.load {
        let load = |reason: String| StartupError::Load {
            kind: *kind,
            path: path.clone(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| load(e.to_string()))?;
        let p = validate(&engine, &bytes, *kind, &path.display().to_string())
            .map_err(|e| load(e.to_string()))?;
        slots.get(*kind).install(p);
    }
    Ok((engine, slots))
}
