//! The `mark` binary: logging, exit codes, and running each subcommand of `mark_gateway::cli`.
//! Everything else lives in the library.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use mark_gateway::app::PolicyOptions;
use mark_gateway::cli::{Cli, Cmd, LogFormat, PolicyCmd, ServeArgs};
use mark_gateway::config::ServerConfig;
use mark_gateway::control::catalog::Catalog;
use mark_gateway::exec::measure;
use mark_gateway::policy::engine::{PolicyEngine, PolicyLimits};
use mark_gateway::policy::validate::{validate, Rejected};
use mark_gateway::policy::PolicyKind;
use mark_gateway::sim::cli::SimulateError;
use mark_gateway::{app, exec, loadgen, repo};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // processes this one starts (the local cloud's workers) log the same way
    if cli.log_format == LogFormat::Json {
        std::env::set_var("MARK_LOG_FORMAT", "json");
    }
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,ort=warn".into()),
        )
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    match run(cli) {
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
            serve(ServeArgs::for_worker(model_repo, listen, ort_lib))
        }
        Cmd::Serve(a) => serve(a),
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
                mark_gateway::lambda_function::run(state).await
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
            catalog_entry,
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
                let (mut s, provider) =
                    exec::session::build(&m.name, &m.dir.join("model.onnx"), &m.cfg)?;
                // a profile measured on the CPU must never pass for a GPU's
                if m.cfg.execution_provider == mark_gateway::config::ExecutionProvider::Cuda
                    && provider != exec::session::ActiveProvider::Cuda
                {
                    eprintln!(
                        "{}: execution_provider = \"cuda\" but CUDA is unavailable (ONNX Runtime \
                         fell back to {provider:?}): install onnxruntime-gpu and the CUDA/cuDNN \
                         libraries (scripts/gpu-check.sh does), or profile with \"cpu\"",
                        m.name
                    );
                    return Ok(ExitCode::from(69));
                }
                println!("{}: execution provider {provider:?}", m.name);
                let (inputs, outputs) = exec::session::metadata(&m.name, &s)?;
                let outs: Vec<String> = outputs.iter().map(|o| o.name.clone()).collect();
                let sizes = if batch_sizes.is_empty() {
                    measure::default_batch_sizes((m.cfg.max_batch_size as u32).max(1))
                } else {
                    batch_sizes.clone()
                };
                let p = measure::measure(&mut s, &inputs, &outs, &sizes, 3, reps)
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
                if let Some(ty) = &catalog_entry {
                    print!(
                        "{}",
                        mark_gateway::control::type_profile::catalog_entry(ty, &m.name, &p)
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Policy(PolicyCmd::Bench { file, calls }) => {
            let bytes = match file {
                Some(f) => std::fs::read(&f).with_context(|| format!("reading {}", f.display()))?,
                None => app::DEFAULT_POLICIES_WASM.to_vec(),
            };
            let engine = PolicyEngine::new(PolicyLimits::default())?;
            mark_gateway::policy::call_cost::run(&engine, &bytes, calls)?;
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
                    Err(e @ Rejected::NotExported { .. }) => {
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
        Cmd::Simulate(a) => Ok(match mark_gateway::sim::cli::run(a) {
            Ok(()) => ExitCode::SUCCESS,
            Err(SimulateError::Input(reason)) => config_exit(reason),
            Err(e @ SimulateError::Output(_)) => return Err(e.into()),
        }),
        Cmd::Bench(args) => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(loadgen::run(args))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `mark serve` (and `mark worker`).
fn serve(a: ServeArgs) -> anyhow::Result<ExitCode> {
    let ServeArgs {
        model_repo,
        listen,
        max_body_bytes,
        max_connections,
        idle_timeout_secs,
        body_timeout_secs,
        ort_lib,
        no_profile,
        log_requests,
        record_trace,
        record_max_bytes,
        grpc_listen,
        no_grpc,
        admin_listen,
        admin_token,
        admin_insecure,
        policies,
        native_policies,
        policy_cache,
        drain_seconds,
        worker,
        control,
    } = a;
    let cfg = ServerConfig {
        max_body_bytes,
        max_connections,
        idle_timeout: secs(idle_timeout_secs),
        body_timeout: secs(body_timeout_secs),
        profile_missing: !no_profile,
        log_requests,
        trace: mark_gateway::config::TraceConfig {
            dir: record_trace.clone(),
            default_parent: control.cloud_state.clone(),
            max_bytes: record_max_bytes,
        },
        model_repo,
        worker,
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
    if let Err(e) = control.validate() {
        return Ok(config_exit(e));
    }
    let replica_opts = match control.replica.options(&control.fleet) {
        Ok(o) => o,
        Err(e) => return Ok(config_exit(e)),
    };
    if !(0.0..=3600.0).contains(&drain_seconds) {
        return Ok(config_exit(format!(
            "--drain-seconds {drain_seconds}: must be in [0, 3600]"
        )));
    }
    let autoscale = match &control.catalog {
        Some(path) if control.cloud.is_some() => {
            let catalog = match Catalog::load(path) {
                Ok(c) => c,
                Err(e) => return Ok(config_exit(e)),
            };
            match control.options(catalog, std::env::current_exe()?, cfg.model_repo.clone()) {
                Ok(o) => Some(o),
                Err(e) => return Ok(config_exit(e)),
            }
        }
        _ => None,
    };
    let models = match load_repo(&cfg.model_repo, ort_lib.as_deref()) {
        Ok(m) => m,
        Err(code) => return Ok(code),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        let addr = listener.local_addr()?;
        // Ignore write errors: a closed stdout must not take the server down.
        let names = models
            .iter()
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let mut out = std::io::stdout();
        let _ = writeln!(
            out,
            "mark serve: listening on http://{addr} (models: {names})"
        );
        let grpc = if no_grpc {
            None
        } else {
            let l = tokio::net::TcpListener::bind(grpc_listen)
                .await
                .with_context(|| {
                    format!("binding {grpc_listen} (--grpc-listen; --no-grpc for REST only)")
                })?;
            Some(l)
        };
        let admin = match admin_token {
            Some(token) => {
                let l = tokio::net::TcpListener::bind(admin_listen)
                    .await
                    .with_context(|| format!("binding {admin_listen}"))?;
                let _ = writeln!(out, "mark serve: admin API on http://{}", l.local_addr()?);
                Some((l, token))
            }
            None => None,
        };
        if let Some(l) = &grpc {
            let _ = writeln!(out, "mark serve: gRPC (KServe v2) on {}", l.local_addr()?);
        }
        let _ = writeln!(
            out,
            "try: curl -s http://{addr}/v2/health/ready; curl -s http://{addr}/v2/models/mlp"
        );
        let _ = out.flush();
        let first = models.first().map(|m| m.name.clone()).unwrap_or_default();
        let state = app::state(cfg, models, engine, slots);
        let replica = match replica_opts {
            Some(o) => {
                let table = o.store.table.clone();
                let r = mark_gateway::replica::Replica::connect(o)
                    .await
                    .map_err(|e| anyhow::anyhow!("--lease-table {table}: {e}"))?;
                tokio::spawn(r.clone().run());
                Some(r)
            }
            None => None,
        };
        if let Some(mut a) = autoscale {
            if a.model.is_empty() {
                a.model = first;
            }
            a.replica = replica.clone();
            app::spawn_autoscaling(&state, a);
        }
        if let Some(dir) = &record_trace {
            if let Err(e) = mark_gateway::trace::start(dir, record_max_bytes) {
                anyhow::bail!("--record-trace {}: {e}", dir.display());
            }
        }
        // a stop: readiness fails first, then after --drain-seconds the listeners stop
        // accepting and what was accepted is answered; then the lease is given up
        let st = state.clone();
        let shutdown = async move {
            shutdown_signal().await;
            st.draining
                .store(true, std::sync::atomic::Ordering::Relaxed);
            tracing::info!(drain_seconds, "stopping: readiness now fails");
            tokio::time::sleep(std::time::Duration::from_secs_f64(drain_seconds)).await;
        };
        app::serve(state, listener, grpc, admin, shutdown).await;
        if let Some(r) = &replica {
            r.release().await;
        }
        // what is queued is written, with the end record
        mark_gateway::trace::stop();
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
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
