//! The small subcommands' bodies: `mark worker` (a `mark serve` for one fleet instance),
//! `mark lambda` (the function's runtime loop), `mark bench` (the load generator) and `mark repo
//! push`.

use std::path::PathBuf;

use crate::cli::{BenchArgs, ServeArgs};
use crate::config::ServerConfig;
use crate::failure::{runtime, Failure};
use crate::policy::startup::{policies, PolicyOptions};

use super::serve_cmd::{load_repo, Serve};

/// `mark worker`: waits `start_delay` seconds (the local cloud's stand-in for boot time), then
/// serves the repository as a fleet instance.
pub fn worker(
    model_repo: PathBuf,
    listen: std::net::SocketAddr,
    start_delay: f64,
    ort_lib: Option<PathBuf>,
    spot_notices: Option<(String, f64)>,
) -> Result<(), Failure> {
    if start_delay > 0.0 {
        std::thread::sleep(std::time::Duration::from_secs_f64(start_delay));
    }
    let mut s = Serve::from_args(ServeArgs::for_worker(model_repo, listen, ort_lib))?;
    if let Some((endpoint, every)) = spot_notices {
        if !(every.is_finite() && (0.1..=300.0).contains(&every)) {
            return Err(Failure::config(format!(
                "--notice-poll-secs {every}: must be in [0.1, 300]"
            )));
        }
        s = s.with_spot_notices(endpoint, every);
    }
    s.run()
}

/// `mark lambda`: the Lambda runtime loop over the repository, with the native policies.
pub fn lambda(model_repo: PathBuf, ort_lib: Option<PathBuf>) -> Result<(), Failure> {
    let cfg = ServerConfig {
        model_repo,
        ..ServerConfig::default()
    };
    let models = load_repo(&cfg.model_repo, ort_lib.as_deref())?;
    let popts = PolicyOptions {
        native_only: true,
        ..PolicyOptions::default()
    };
    let (engine, slots) = policies(&popts).map_err(Failure::failed)?;
    runtime()?
        .block_on(async {
            let state = super::state(cfg, models, engine, slots);
            crate::lambda_function::run(state).await
        })
        .map_err(|e| Failure::failed(format!("lambda runtime: {e}")))
}

/// `mark repo push DIR s3://bucket/prefix`.
pub fn repo_push(dir: &std::path::Path, url: &str, endpoint: Option<&str>) -> Result<(), Failure> {
    use crate::repo::remote::{self, Location};
    let (bucket, prefix) = match Location::parse(url).map_err(Failure::config)? {
        Location::S3 { bucket, prefix } => (bucket, prefix),
        Location::Local(_) => return Err(Failure::config(format!("{url}: an s3:// URL"))),
    };
    crate::repo::scan(dir).map_err(Failure::config)?;
    let (m, uploaded) = runtime()?
        .block_on(async {
            let s3 = remote::client(endpoint).await;
            remote::push(&s3, dir, &bucket, &prefix).await
        })
        .map_err(Failure::failed)?;
    println!(
        "pushed {} to {url}: version {}, {} files ({uploaded} uploaded, {} already stored)",
        dir.display(),
        m.version,
        m.files.len(),
        m.files.len() - uploaded
    );
    Ok(())
}

/// `mark bench`.
pub fn bench(args: BenchArgs) -> Result<(), Failure> {
    runtime()?
        .block_on(crate::loadgen::run(args))
        .map_err(Failure::failed)
}
