//! The tool subcommands' flags: `mark repo` (model repositories in object storage), `mark
//! package` (what a deployment runs) and `mark config` (the config file of `mark serve`).

use std::path::PathBuf;

use clap::Subcommand;

/// `mark repo ...`.
#[derive(Subcommand, Debug, Clone)]
pub enum RepoCmd {
    /// Write DIR to s3://bucket/prefix: each file not stored yet (by its sha256), then the
    /// manifest (so readers see the old repository or the new one); prints the version.
    Push {
        /// The local repository (DIR/<name>/model.onnx [+ config.toml, profile.toml]).
        dir: PathBuf,
        /// Where: s3://bucket/prefix (the bucket is created when missing).
        url: String,
        /// S3 endpoint override (an emulator such as moto's server).
        #[arg(long, env = "MARK_S3_ENDPOINT")]
        endpoint: Option<String>,
    },
}

/// `mark package ...`.
#[derive(Subcommand, Debug, Clone)]
pub enum PackageCmd {
    /// The Lambda function's zip for runtime provided.al2023: `bootstrap`, `mark`,
    /// `libonnxruntime.so`, and the models (a directory) or their s3:// URL (fetched at cold
    /// start). Refused, naming the largest files, when over Lambda's 250 MB unzipped.
    Lambda {
        /// Where to write the zip.
        #[arg(long)]
        out: PathBuf,
        /// The models: a directory (bundled) or s3://bucket/prefix.
        #[arg(long, default_value = "models")]
        model_repo: String,
        /// The `mark` binary to ship (default: this one; strip a release build first).
        #[arg(long)]
        mark_binary: Option<PathBuf>,
        /// libonnxruntime.so to ship (else ORT_DYLIB_PATH, else .mark/venv).
        #[arg(long)]
        ort_lib: Option<PathBuf>,
    },
    /// Puts `mark` and `libonnxruntime.so` in the repository's bucket (by sha256) and writes
    /// the user data that boots a stock Amazon Linux 2023 or Debian instance as a worker.
    Worker {
        /// The repository the workers serve: s3://bucket/prefix.
        #[arg(long)]
        model_repo: String,
        /// Where to write the user data (default: standard output; progress goes to stderr).
        #[arg(long)]
        out: Option<PathBuf>,
        /// The `mark` binary to ship (default: this one).
        #[arg(long)]
        mark_binary: Option<PathBuf>,
        /// libonnxruntime.so to ship (else ORT_DYLIB_PATH, else .mark/venv).
        #[arg(long)]
        ort_lib: Option<PathBuf>,
    },
}

/// `mark config ...`.
#[derive(Subcommand, Debug, Clone, Copy)]
pub enum ConfigCmd {
    /// Write every key of `mark serve --config FILE` at its default, commented, with its help.
    PrintDefault,
}
