//! The `mark` binary: argument parsing, logging, exit codes. Everything else lives in the library.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use mark_gateway::app::PolicyOptions;
use mark_gateway::autoscale::AutoscaleOptions;
use mark_gateway::cloud::ec2::Ec2Options;
use mark_gateway::config::ServerConfig;
use mark_gateway::control::catalog::Catalog;
use mark_gateway::exec::lambda::LambdaOptions;
use mark_gateway::policy::engine::{PolicyEngine, PolicyLimits};
use mark_gateway::policy::validate::validate;
use mark_gateway::policy::PolicyKind;
use mark_gateway::{app, bench, exec, profiler, repo};

#[derive(Parser)]
#[command(
    name = "mark",
    version,
    about = "MArk-rs: cost-aware ML inference gateway"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
// `Serve` carries every flag of the server; the enum is built once per process.
#[allow(clippy::large_enum_variant)]
enum Cmd {
    /// Serve the models of a repository over KServe v2.
    Serve {
        /// Model repository: DIR/<name>/model.onnx [+ config.toml].
        #[arg(long, default_value = "models")]
        model_repo: PathBuf,
        /// Address of the inference listener.
        #[arg(long, default_value = "0.0.0.0:8000")]
        listen: SocketAddr,
        /// Largest request body in bytes (413 above).
        #[arg(long, default_value_t = 64 << 20)]
        max_body_bytes: usize,
        /// Connections serving requests at once (more wait in the kernel's accept queue). The
        /// open-file limit is raised to its hard limit at start; keep this below it.
        #[arg(long, default_value_t = 4096)]
        max_connections: usize,
        /// Seconds a connection may stay open with no request in flight before it is closed.
        #[arg(long, default_value_t = 60.0)]
        idle_timeout_secs: f64,
        /// Seconds a request body may take to arrive in full (408 after).
        #[arg(long, default_value_t = 30.0)]
        body_timeout_secs: f64,
        /// Path to libonnxruntime.so (else ORT_DYLIB_PATH, else .mark/venv).
        #[arg(long)]
        ort_lib: Option<PathBuf>,
        /// Do not profile models that have no profile.toml (batch by max size only).
        #[arg(long)]
        no_profile: bool,
        /// Address of the admin listener (policy hot-reload, status).
        #[arg(long, default_value = "127.0.0.1:8001")]
        admin_listen: SocketAddr,
        /// Admin bearer token (else env MARK_ADMIN_TOKEN). Without one there is no admin listener.
        #[arg(long, env = "MARK_ADMIN_TOKEN", hide_env_values = true)]
        admin_token: Option<String>,
        /// Serve the admin API without a token (only allowed on a loopback address).
        #[arg(long)]
        admin_insecure: bool,
        /// Load a policy component at start: KIND=FILE.wasm (kind: batcher, predictor, provisioner).
        #[arg(long = "policy", value_parser = app::parse_policy)]
        policies: Vec<(PolicyKind, PathBuf)>,
        /// Use the native default policies instead of the embedded mark-default.wasm.
        #[arg(long)]
        native_policies: bool,
        /// Directory for compiled policy code (.cwasm cache), to speed up restarts.
        #[arg(long)]
        policy_cache: Option<PathBuf>,
        #[command(flatten)]
        control: ControlArgs,
    },
    /// Run as a fleet worker: a v2 server for the batches a gateway routes to this instance
    /// (native policies, no admin API).
    Worker {
        /// Model repository.
        #[arg(long, default_value = "models")]
        model_repo: PathBuf,
        /// Address to listen on.
        #[arg(long, default_value = "0.0.0.0:8000")]
        listen: SocketAddr,
        /// Seconds to wait before listening (the local cloud's launch delay).
        #[arg(long, default_value_t = 0.0)]
        start_delay: f64,
        /// Path to libonnxruntime.so.
        #[arg(long)]
        ort_lib: Option<PathBuf>,
    },
    /// Run as the Lambda function body of the spill-over backend (`lambda_runtime`; needs the
    /// Lambda environment: AWS_LAMBDA_RUNTIME_API and friends, as on AWS or `cargo lambda watch`).
    Lambda {
        /// Model repository.
        #[arg(long, default_value = "models")]
        model_repo: PathBuf,
        /// Path to libonnxruntime.so.
        #[arg(long)]
        ort_lib: Option<PathBuf>,
    },
    /// Policy tools.
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// Measure latency per batch size and write DIR/<model>/profile.toml.
    Profile {
        /// Model repository.
        #[arg(long, default_value = "models")]
        model_repo: PathBuf,
        /// Only this model.
        #[arg(long)]
        model: Option<String>,
        /// Batch sizes (default: powers of two up to max_batch_size).
        #[arg(long, value_delimiter = ',')]
        batch_sizes: Vec<u32>,
        /// Timed runs per batch size.
        #[arg(long, default_value_t = 30)]
        reps: usize,
        /// Path to libonnxruntime.so.
        #[arg(long)]
        ort_lib: Option<PathBuf>,
    },
    /// Load generator against a running gateway, or the raw-ort baseline in process.
    Bench(bench::BenchArgs),
    /// Replay a workload on a simulated cloud with the serving policies and baselines; writes
    /// summary.json, table.txt and SVG plots to --out.
    Simulate(mark_gateway::sim::cli::SimulateArgs),
}

/// Autoscaling flags of `mark serve`.
#[derive(clap::Args, Clone, Default)]
struct ControlArgs {
    /// Cloud driver that runs the fleet: `local` (mark worker processes). Off when absent.
    #[arg(long)]
    cloud: Option<String>,
    /// Instance catalog (TOML); see examples/catalog-us-east-1.toml.
    #[arg(long)]
    catalog: Option<PathBuf>,
    /// Model whose demand drives the fleet (default: the first model).
    #[arg(long)]
    control_model: Option<String>,
    /// Seconds per control interval.
    #[arg(long, default_value_t = 60.0)]
    control_interval: f64,
    /// Seconds per rate window inside an interval.
    #[arg(long, default_value_t = 5.0)]
    control_window: f64,
    /// SLO attainment target.
    #[arg(long, default_value_t = 0.99)]
    attainment_target: f64,
    /// Where the local cloud keeps its tag files.
    #[arg(long, default_value = ".mark/cloud")]
    cloud_state: PathBuf,
    /// Fleet name (instances are tagged with it).
    #[arg(long, default_value = "mark")]
    fleet: String,
    /// Upper bound on instances.
    #[arg(long, default_value_t = 8)]
    max_instances: u32,
    /// EC2: AMI of the workers (required with --cloud ec2).
    #[arg(long)]
    ec2_image_id: Option<String>,
    /// EC2: region.
    #[arg(long, default_value = "us-east-1")]
    ec2_region: String,
    /// EC2: endpoint override (e.g. a moto server); credentials come from the standard AWS chain.
    #[arg(long)]
    ec2_endpoint: Option<String>,
    /// Lambda function (running `mark lambda`) for spill-over; needs a [lambda] catalog section.
    #[arg(long)]
    lambda_function: Option<String>,
    /// Lambda: region.
    #[arg(long, default_value = "us-east-1")]
    lambda_region: String,
    /// Lambda: endpoint override (e.g. `cargo lambda watch`).
    #[arg(long)]
    lambda_endpoint: Option<String>,
}

#[derive(Subcommand)]
enum PolicyCmd {
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

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,ort=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// A duration from a seconds flag; a negative or non-finite value becomes zero (refused by
/// `ServerConfig::validate`).
fn secs(s: f64) -> std::time::Duration {
    std::time::Duration::try_from_secs_f64(s).unwrap_or_default()
}

fn config_exit(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("configuration error: {e}");
    ExitCode::from(64)
}

/// Scans the model repository and loads ONNX Runtime: exit 64 on a bad repository, 69 without
/// the library.
fn load_repo(
    dir: &std::path::Path,
    ort_lib: Option<&std::path::Path>,
) -> Result<Vec<std::sync::Arc<mark_gateway::model::Model>>, ExitCode> {
    let models = repo::scan(dir).map_err(config_exit)?;
    if let Err(e) = exec::ort_lib::init(ort_lib) {
        eprintln!("error: {e}");
        return Err(ExitCode::from(69));
    }
    Ok(models)
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.cmd {
        Cmd::Worker {
            model_repo,
            listen,
            start_delay,
            ort_lib,
        } => {
            if start_delay > 0.0 {
                std::thread::sleep(std::time::Duration::from_secs_f64(start_delay));
            }
            run(Cli {
                cmd: Cmd::Serve {
                    model_repo,
                    listen,
                    max_body_bytes: 64 << 20,
                    max_connections: 4096,
                    idle_timeout_secs: 60.0,
                    body_timeout_secs: 30.0,
                    ort_lib,
                    no_profile: false,
                    admin_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                    admin_token: None,
                    admin_insecure: false,
                    policies: Vec::new(),
                    native_policies: true,
                    policy_cache: None,
                    control: ControlArgs::default(),
                },
            })
        }
        Cmd::Serve {
            model_repo,
            listen,
            max_body_bytes,
            max_connections,
            idle_timeout_secs,
            body_timeout_secs,
            ort_lib,
            no_profile,
            admin_listen,
            admin_token,
            admin_insecure,
            policies,
            native_policies,
            policy_cache,
            control,
        } => {
            let cfg = ServerConfig {
                max_body_bytes,
                max_connections,
                idle_timeout: secs(idle_timeout_secs),
                body_timeout: secs(body_timeout_secs),
                profile_missing: !no_profile,
                model_repo,
            };
            if let Err(e) = cfg.validate() {
                return Ok(config_exit(e));
            }
            mark_gateway::server::check_fd_limit(max_connections);
            let admin_token = match (admin_token.filter(|t| !t.is_empty()), admin_insecure) {
                (Some(t), _) => Some(t),
                (None, true) if admin_listen.ip().is_loopback() => Some(String::new()),
                (None, true) => {
                    return Ok(config_exit(
                        "--admin-insecure is only allowed with a loopback --admin-listen",
                    ))
                }
                (None, false) => {
                    tracing::warn!(
                        "no admin token (--admin-token or MARK_ADMIN_TOKEN): the admin API is off"
                    );
                    None
                }
            };
            let mut popts = PolicyOptions {
                load: policies,
                native_only: native_policies,
                ..PolicyOptions::default()
            };
            popts.limits.cache_dir = policy_cache;
            let (engine, slots) = match app::policies(&popts) {
                Ok(x) => x,
                Err(e) => return Ok(config_exit(format!("{e:#}"))),
            };
            let autoscale = match &control.cloud {
                None => None,
                Some(c) if c != "local" && c != "ec2" => {
                    return Ok(config_exit(format!(
                        "--cloud {c}: unknown driver (local, ec2)"
                    )))
                }
                Some(_) => {
                    let Some(path) = &control.catalog else {
                        return Ok(config_exit("--cloud needs --catalog FILE"));
                    };
                    let catalog = match Catalog::load(path) {
                        Ok(c) => c,
                        Err(e) => return Ok(config_exit(e)),
                    };
                    if !(control.control_interval > 0.0
                        && control.control_window > 0.0
                        && control.control_window <= control.control_interval)
                    {
                        return Ok(config_exit(
                            "--control-window must be > 0 and <= --control-interval",
                        ));
                    }
                    if control.lambda_function.is_some() && catalog.lambda.is_none() {
                        return Ok(config_exit(
                            "--lambda-function needs a [lambda] section in the catalog",
                        ));
                    }
                    Some(AutoscaleOptions {
                        lambda: control
                            .lambda_function
                            .clone()
                            .map(|function| LambdaOptions {
                                function,
                                region: control.lambda_region.clone(),
                                endpoint: control.lambda_endpoint.clone(),
                                credentials: None,
                                max_attempts: 1,
                            }),
                        catalog,
                        model: control.control_model.clone().unwrap_or_default(),
                        interval_s: control.control_interval,
                        window_s: control.control_window,
                        horizon: 5,
                        min_age_s: control.control_interval,
                        attainment_target: control.attainment_target,
                        state_dir: control.cloud_state.clone(),
                        fleet: control.fleet.clone(),
                        mark_bin: std::env::current_exe()?,
                        worker_repo: cfg.model_repo.clone(),
                        max_instances: control.max_instances,
                        ec2: match control.cloud.as_deref() {
                            Some("ec2") => {
                                let Some(image_id) = control.ec2_image_id.clone() else {
                                    return Ok(config_exit("--cloud ec2 needs --ec2-image-id"));
                                };
                                Some(Ec2Options {
                                    region: control.ec2_region.clone(),
                                    endpoint: control.ec2_endpoint.clone(),
                                    credentials: None,
                                    image_id,
                                    fleet: control.fleet.clone(),
                                    model: control.control_model.clone().unwrap_or_default(),
                                    worker_port: 8000,
                                    max_attempts: 3,
                                })
                            }
                            _ => None,
                        },
                    })
                }
            };
            let models = match load_repo(&cfg.model_repo, ort_lib.as_deref()) {
                Ok(m) => m,
                Err(code) => return Ok(code),
            };
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
                let addr = listener.local_addr()?;
                // Ignore write errors: a closed stdout must not take the server down.
                let names = models.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", ");
                let mut out = std::io::stdout();
                let _ = writeln!(out, "mark serve: listening on http://{addr} (models: {names})");
                let admin = match admin_token {
                    Some(token) => {
                        let l = tokio::net::TcpListener::bind(admin_listen).await.with_context(|| format!("binding {admin_listen}"))?;
                        let _ = writeln!(out, "mark serve: admin API on http://{}", l.local_addr()?);
                        Some((l, token))
                    }
                    None => None,
                };
                let _ = writeln!(out, "try: curl -s http://{addr}/v2/health/ready; curl -s http://{addr}/v2/models/mlp");
                let _ = out.flush();
                let first = models.first().map(|m| m.name.clone()).unwrap_or_default();
                let state = app::state(cfg, models, engine, slots);
                if let Some(mut a) = autoscale {
                    if a.model.is_empty() {
                        a.model = first;
                    }
                    app::spawn_autoscaling(&state, a);
                }
                app::serve(state, listener, admin, shutdown_signal()).await;
                anyhow::Ok(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Lambda {
            model_repo,
            ort_lib,
        } => {
            let cfg = ServerConfig {
                model_repo,
                ..ServerConfig::default()
            };
            let models = match load_repo(&cfg.model_repo, ort_lib.as_deref()) {
                Ok(m) => m,
                Err(code) => return Ok(code),
            };
            let popts = PolicyOptions {
                native_only: true,
                ..PolicyOptions::default()
            };
            let (engine, slots) = app::policies(&popts)?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let state = app::state(cfg, models, engine, slots);
                mark_gateway::lambda_fn::run(state).await
            })
            .map_err(|e| anyhow::anyhow!("lambda runtime: {e}"))?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Profile {
            model_repo,
            model,
            batch_sizes,
            reps,
            ort_lib,
        } => {
            let models = match repo::scan(&model_repo) {
                Ok(m) => m,
                Err(e) => return Ok(config_exit(e)),
            };
            exec::ort_lib::init(ort_lib.as_deref())?;
            for m in models
                .iter()
                .filter(|m| model.as_deref().is_none_or(|n| n == m.name))
            {
                let (mut s, _) = exec::session::build(&m.name, &m.dir.join("model.onnx"), &m.cfg)?;
                let (inputs, outputs) = exec::session::metadata(&m.name, &s)?;
                let outs: Vec<String> = outputs.iter().map(|o| o.name.clone()).collect();
                let sizes = if batch_sizes.is_empty() {
                    profiler::default_batch_sizes(m.cfg.max_batch_size as u32)
                } else {
                    batch_sizes.clone()
                };
                let p = profiler::measure(&mut s, &inputs, &outs, &sizes, 3, reps)
                    .map_err(anyhow::Error::msg)?;
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
                p.save(&m.profile_path())?;
                println!("wrote {}", m.profile_path().display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Policy(PolicyCmd::Bench { file, calls }) => {
            let bytes = match file {
                Some(f) => std::fs::read(&f).with_context(|| format!("reading {}", f.display()))?,
                None => app::DEFAULT_POLICIES_WASM.to_vec(),
            };
            let engine = PolicyEngine::new(PolicyLimits::default())?;
            mark_gateway::policy::bench::run(&engine, &bytes, calls)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Policy(PolicyCmd::ExportDefault { out }) => {
            std::fs::write(&out, app::DEFAULT_POLICIES_WASM)?;
            println!(
                "wrote {} ({} bytes)",
                out.display(),
                app::DEFAULT_POLICIES_WASM.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Policy(PolicyCmd::Check { file, kind }) => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let engine = PolicyEngine::new(PolicyLimits::default())?;
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
                    Err(e) if e.0.starts_with("does not export") => {
                        println!("absent  {:<12} {e}", k.as_str())
                    }
                    Err(e) => {
                        println!("refused {:<12} {e}", k.as_str());
                        failed += 1;
                    }
                }
            }
            Ok(if failed == 0 && passed > 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(65)
            })
        }
        Cmd::Simulate(a) => Ok(match mark_gateway::sim::cli::run(a)? {
            Ok(()) => ExitCode::SUCCESS,
            Err(reason) => config_exit(reason),
        }),
        Cmd::Bench(args) => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(bench::run(args))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("signal handler");
    tokio::select! {
        _ = ctrl_c => {},
        _ = term.recv() => {},
    }
}
