//! The model repository: `DIR/<name>/model.onnx` with an optional `DIR/<name>/config.toml`,
//! local or fetched from object storage ([`remote`]).

pub mod manifest;
pub mod remote;

use std::path::Path;
use std::sync::Arc;

use crate::config::{ConfigError, ModelConfig};
use crate::model::Model;

/// Scans `dir` and validates every model's config. Directories without `model.onnx` are skipped.
pub fn scan(dir: &Path) -> Result<Vec<Arc<Model>>, ConfigError> {
    let origin = dir.display().to_string();
    let entries = std::fs::read_dir(dir).map_err(|e| ConfigError::new(&origin, e.to_string()))?;
    let mut models = Vec::new();
    for e in entries.flatten() {
        let path = e.path();
        if !path.join("model.onnx").is_file() {
            continue;
        }
        let name = e.file_name().to_string_lossy().to_string();
        let cfg_path = path.join("config.toml");
        let cfg = match std::fs::read_to_string(&cfg_path) {
            Ok(text) => ModelConfig::parse(&text, &cfg_path.display().to_string())?,
            Err(_) => ModelConfig::default(),
        };
        models.push(Arc::new(Model::new(name, path, cfg)));
    }
    models.sort_by(|a, b| a.name.cmp(&b.name));
    if models.is_empty() {
        return Err(ConfigError::new(origin, "no models (expected <name>/model.onnx); run scripts/setup.sh to generate the demo models"));
    }
    Ok(models)
}
