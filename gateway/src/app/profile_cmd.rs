//! `mark profile`: measures each model's latency per batch size on this machine (through
//! `exec::measure`) and writes `DIR/<model>/profile.toml`, optionally printing the catalog
//! entry for this instance type.

use std::path::PathBuf;

use crate::failure::Failure;

use crate::exec::{measure, session};

/// Flags of `mark profile`.
#[derive(clap::Args, Clone, Debug)]
pub struct ProfileArgs {
    /// Model repository.
    #[arg(long, default_value = "models")]
    pub model_repo: PathBuf,
    /// Only this model.
    #[arg(long)]
    pub model: Option<String>,
    /// Batch sizes (default: powers of two up to max_batch_size).
    #[arg(long, value_delimiter = ',')]
    pub batch_sizes: Vec<u32>,
    /// Timed runs per batch size.
    #[arg(long, default_value_t = 30)]
    pub reps: usize,
    /// Path to libonnxruntime.so.
    #[arg(long)]
    pub ort_lib: Option<PathBuf>,
    /// Also print each profile as the TOML to paste into the catalog entry of this instance
    /// type (run it on that type; see docs/operations.md).
    #[arg(long, value_name = "TYPE")]
    pub catalog_entry: Option<String>,
}

/// Runs `mark profile`.
pub fn run(a: ProfileArgs) -> Result<(), Failure> {
    let models = crate::repo::scan(&a.model_repo).map_err(Failure::config)?;
    crate::exec::ort_lib::init(a.ort_lib.as_deref())
        .map_err(|e| Failure::Unavailable(e.to_string()))?;
    let chosen = models
        .iter()
        .filter(|m| a.model.as_deref().is_none_or(|n| n == m.name));
    for m in chosen {
        let (mut s, provider) =
            session::build(&m.name, &m.dir.join("model.onnx"), &m.cfg).map_err(Failure::failed)?;
        // a profile measured on the CPU must never pass for a GPU's
        if m.cfg.execution_provider == crate::config::ExecutionProvider::Cuda
            && provider != session::ActiveProvider::Cuda
        {
            return Err(Failure::Unavailable(format!(
                "{}: execution_provider = \"cuda\" but CUDA is unavailable (ONNX Runtime fell \
                 back to {provider:?}): install onnxruntime-gpu and the CUDA/cuDNN libraries \
                 (scripts/gpu-check.sh does), or profile with \"cpu\"",
                m.name
            )));
        }
        println!("{}: execution provider {provider:?}", m.name);
        let (inputs, outputs) = session::metadata(&m.name, &s).map_err(Failure::failed)?;
        let outs: Vec<String> = outputs.iter().map(|o| o.name.clone()).collect();
        let sizes = if a.batch_sizes.is_empty() {
            measure::default_batch_sizes((m.cfg.max_batch_size as u32).max(1))
        } else {
            a.batch_sizes.clone()
        };
        let p =
            measure::measure(&mut s, &inputs, &outs, &sizes, 3, a.reps).map_err(Failure::failed)?;
        println!("{}: batch  p50_ms  p99_ms  items/s(p50)", m.name);
        for pt in &p.points {
            println!(
                "{:>8} {:>7.3} {:>7.3} {:>10.0}",
                pt.batch,
                pt.p50_us / 1e3,
                pt.p99_us / 1e3,
                f64::from(pt.batch) / pt.p50_us * 1e6
            );
        }
        let path = m.profile_path();
        p.save(&path)
            .map_err(|e| Failure::failed(format!("{}: {e}", path.display())))?;
        println!("wrote {}", path.display());
        if let Some(ty) = &a.catalog_entry {
            print!(
                "{}",
                crate::control::type_profile::catalog_entry(ty, &m.name, &p)
            );
        }
    }
    Ok(())
}
