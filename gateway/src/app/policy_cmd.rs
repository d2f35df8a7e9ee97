//! `mark policy check | bench | export-default`: the policy tools of the command line, on the
//! policy host (`mark_gateway::policy`).

use std::path::{Path, PathBuf};

use clap::Subcommand;

use crate::failure::Failure;

use crate::policy::engine::{PolicyEngine, PolicyLimits};
use crate::policy::startup::DEFAULT_POLICIES_WASM;
use crate::policy::validate::{validate, Rejected};
use crate::policy::PolicyKind;

/// `mark policy ...`.
#[derive(Subcommand)]
pub enum PolicyCmd {
    /// Validate a component offline exactly as the admin endpoint does before a swap.
    Check {
        /// The component.
        file: PathBuf,
        /// Kinds to check it as (default: every kind it exports).
        #[arg(long, value_parser = |s: &str| PolicyKind::parse(s).ok_or_else(|| format!("unknown kind '{s}'")))]
        kind: Vec<PolicyKind>,
    },
    /// Cost of policy calls, native vs WASM, and validate/instantiate/swap times.
    Bench {
        /// Component exporting all three kinds (default: the embedded mark-default.wasm).
        file: Option<PathBuf>,
        /// Batcher calls to time (predictor and provisioner: a tenth).
        #[arg(long, default_value_t = 100_000)]
        calls: usize,
    },
    /// Write the embedded default component (mark-default.wasm) to a file.
    ExportDefault {
        /// Output path.
        out: PathBuf,
    },
}

fn read(file: &Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(file).map_err(|e| Failure::failed(format!("reading {}: {e}", file.display())))
}

/// Runs one policy tool.
pub fn run(cmd: PolicyCmd) -> Result<(), Failure> {
    match cmd {
        PolicyCmd::Bench { file, calls } => {
            let bytes = match file {
                Some(f) => read(&f)?,
                None => DEFAULT_POLICIES_WASM.to_vec(),
            };
            let engine = PolicyEngine::new(PolicyLimits::default()).map_err(Failure::failed)?;
            crate::policy::call_cost::run(&engine, &bytes, calls).map_err(Failure::failed)
        }
        PolicyCmd::ExportDefault { out } => {
            std::fs::write(&out, DEFAULT_POLICIES_WASM)
                .map_err(|e| Failure::failed(format!("{}: {e}", out.display())))?;
            println!(
                "wrote {} ({} bytes)",
                out.display(),
                DEFAULT_POLICIES_WASM.len()
            );
            Ok(())
        }
        PolicyCmd::Check { file, kind } => check(&file, kind),
    }
}

/// `mark policy check`: validates `file` as each kind, exactly as the admin endpoint does;
/// refused (exit 65) unless at least one kind passes and none is refused.
fn check(file: &Path, kind: Vec<PolicyKind>) -> Result<(), Failure> {
    let bytes = read(file)?;
    let engine = PolicyEngine::new(PolicyLimits::default()).map_err(Failure::failed)?;
    let kinds = if kind.is_empty() {
        PolicyKind::ALL.to_vec()
    } else {
        kind
    };
    let (mut passed, mut failed) = (0, 0);
    for k in kinds {
        match validate(&engine, &bytes, k, &file.display().to_string()) {
            Ok(p) => {
                println!(
                    "ok      {:<12} mark:policy@{} sha256 {}",
                    k.as_str(),
                    p.wit_version,
                    p.sha256
                );
                passed += 1;
            }
            Err(e @ Rejected::NotExported { .. }) => println!("absent  {:<12} {e}", k.as_str()),
            Err(e) => {
                println!("refused {:<12} {e}", k.as_str());
                failed += 1;
            }
        }
    }
    if failed == 0 && passed > 0 {
        Ok(())
    } else {
        Err(Failure::Refused(format!(
            "{}: {passed} kind(s) passed, {failed} refused",
            file.display()
        )))
    }
}
