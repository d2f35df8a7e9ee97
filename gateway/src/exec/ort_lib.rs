//! Finding and loading the ONNX Runtime shared library (`ort` with `load-dynamic`).
//!
//! Order: an explicit path (flag or config), `ORT_DYLIB_PATH`, then the project-local install that
//! `scripts/setup.sh` makes (`.mark/venv/.../onnxruntime/capi/libonnxruntime.so.*`), looked up from
//! the working directory and from the executable's directory upwards.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::work::ExecError;

static ENV: OnceLock<ort::environment::Environment> = OnceLock::new();

/// How to get the library when none is found.
pub const INSTALL_HINT: &str = "ONNX Runtime 1.31 shared library not found: run `bash scripts/setup.sh` \
(installs the PyPI onnxruntime==1.31.1 wheel into .mark/venv), or set ORT_DYLIB_PATH to libonnxruntime.so.1.31.1";

fn search_venv(root: &Path) -> Option<PathBuf> {
    let lib = root.join(".mark/venv/lib");
    for py in std::fs::read_dir(lib).ok()?.flatten() {
        let capi = py.path().join("site-packages/onnxruntime/capi");
        let Ok(entries) = std::fs::read_dir(&capi) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with("libonnxruntime.so.") {
                return Some(e.path());
            }
        }
    }
    None
}

/// Resolves the library path without loading it.
pub fn find(explicit: Option<&Path>) -> Result<PathBuf, ExecError> {
    if let Some(p) = explicit {
        return if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(ExecError::Library(format!(
                "{} does not exist",
                p.display()
            )))
        };
    }
    if let Ok(p) = std::env::var("ORT_DYLIB_PATH") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        return Err(ExecError::Library(format!(
            "ORT_DYLIB_PATH={} does not exist. {INSTALL_HINT}",
            p.display()
        )));
    }
    let mut roots: Vec<PathBuf> = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        roots.extend(cwd.ancestors().map(Path::to_path_buf));
    }
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().map(Path::to_path_buf));
    }
    roots
        .iter()
        .find_map(|r| search_venv(r))
        .ok_or_else(|| ExecError::Library(INSTALL_HINT.into()))
}

/// Loads the library once per process and returns the shared environment.
pub fn init(explicit: Option<&Path>) -> Result<&'static ort::environment::Environment, ExecError> {
    if let Some(env) = ENV.get() {
        return Ok(env);
    }
    let path = find(explicit)?;
    let builder = ort::init_from(&path)
        .map_err(|e| ExecError::Library(format!("{}: {e}. {INSTALL_HINT}", path.display())))?;
    let env = builder
        .with_name("mark")
        .build()
        .map_err(|e| ExecError::Library(e.to_string()))?;
    tracing::info!(path = %path.display(), "loaded ONNX Runtime");
    Ok(ENV.get_or_init(|| env))
}
