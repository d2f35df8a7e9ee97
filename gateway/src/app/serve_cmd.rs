//! `mark serve` (and `mark worker`) from parsed flags: [`Serve::from_args`] checks every setting
//! and loads the policies and the model repository before anything binds a port;
//! [`Serve::run`] binds the listeners, starts the replica lease, the control loop and the trace
//! recorder, and serves until SIGINT/SIGTERM, draining first.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::autoscale::AutoscaleOptions;
use crate::cli::ServeArgs;
use crate::config::ServerConfig;
use crate::control::catalog::Catalog;
use crate::failure::Failure;
use crate::model::Model;
use crate::policy::engine::PolicyEngine;
use crate::policy::slot::PolicySlots;
use crate::policy::startup::{policies, PolicyOptions};
use crate::replica::ReplicaOptions;

/// A checked `mark serve`, ready to bind.
pub struct Serve {
    cfg: ServerConfig,
    models: Vec<Arc<Model>>,
    engine: Arc<PolicyEngine>,
    slots: Arc<PolicySlots>,
    listen: SocketAddr,
    grpc_listen: Option<SocketAddr>,
    admin: Option<(SocketAddr, String)>,
    autoscale: Option<AutoscaleOptions>,
    replica: Option<ReplicaOptions>,
    record_trace: Option<(PathBuf, u64)>,
    drain_seconds: f64,
    spot_notices: Option<(String, f64)>,
}

/// A duration from a seconds flag; a negative or non-finite value becomes zero (refused by
/// `ServerConfig::validate`).
fn secs(s: f64) -> std::time::Duration {
    std::time::Duration::try_from_secs_f64(s).unwrap_or_default()
}

/// Scans the model repository and loads ONNX Runtime: a bad repository is a configuration
/// error, a missing library "unavailable".
pub fn load_repo(
    dir: &std::path::Path,
    ort_lib: Option<&std::path::Path>,
) -> Result<Vec<Arc<Model>>, Failure> {
    // s3://: fetched and verified into the local cache (or the last verified version)
    let dir = crate::repo::remote::resolve(dir).map_err(Failure::Unavailable)?;
    let models = crate::repo::scan(&dir).map_err(Failure::config)?;
    crate::exec::ort_lib::init(ort_lib).map_err(|e| Failure::Unavailable(e.to_string()))?;
    Ok(models)
}

impl Serve {
    /// Checks the flags, loads the policies and the repository.
    pub fn from_args(a: ServeArgs) -> Result<Self, Failure> {
        let ServeArgs {
            config: _,
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
            admin_token_file,
            admin_insecure,
            policies: load,
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
            trace: crate::config::TraceConfig {
                dir: record_trace.clone(),
                default_parent: control.cloud_state.clone(),
                max_bytes: record_max_bytes,
            },
            model_repo,
            worker,
            worker_secret: crate::config::worker_secret_from_env().map_err(Failure::config)?,
        };
        cfg.validate().map_err(Failure::config)?;
        crate::server::check_fd_limit(max_connections);
        let admin_token = match (admin_token.filter(|t| !t.is_empty()), admin_token_file) {
            (Some(_), Some(_)) => {
                return Err(Failure::config(
                    "both an admin token (--admin-token or MARK_ADMIN_TOKEN) and a token file \
                     (--admin-token-file or MARK_ADMIN_TOKEN_FILE): give one",
                ))
            }
            (t, None) => t,
            (None, Some(f)) => Some(
                crate::config::secret_file("--admin-token-file", &f).map_err(Failure::config)?,
            ),
        };
        let admin_token = match (admin_token, admin_insecure) {
            // a short token is refused where others can reach the admin listener; on loopback
            // (development, tests) it is only warned about
            (Some(t), _) if t.len() < 16 && !admin_listen.ip().is_loopback() => {
                return Err(Failure::config(format!(
                    "the admin token is {} bytes; on a non-loopback --admin-listen it must be \
                     at least 16: use a long random one (e.g. `openssl rand -hex 32`) in \
                     MARK_ADMIN_TOKEN",
                    t.len()
                )))
            }
            (Some(t), _) if t.len() < 16 => {
                tracing::warn!(
                    bytes = t.len(),
                    "the admin token is shorter than 16 bytes: use a long random one \
                     (e.g. `openssl rand -hex 32`), from MARK_ADMIN_TOKEN rather than \
                     --admin-token (the command line shows in `ps`)"
                );
                Some(t)
            }
            (Some(t), _) => Some(t),
            (None, true) if admin_listen.ip().is_loopback() => Some(String::new()),
            (None, true) => {
                return Err(Failure::config(
                    "--admin-insecure is only allowed with a loopback --admin-listen",
                ))
            }
            (None, false) => {
                tracing::warn!(
                    "no admin token (--admin-token-file, MARK_ADMIN_TOKEN or --admin-token): the admin API is off"
                );
                None
            }
        };
        let mut popts = PolicyOptions {
            load,
            native_only: native_policies,
            ..PolicyOptions::default()
        };
        popts.limits.cache_dir = policy_cache;
        let (engine, slots) = policies(&popts).map_err(Failure::config)?;
        control.validate().map_err(Failure::config)?;
        let replica = control
            .replica
            .options(&control.fleet, control.control_window)
            .map_err(Failure::config)?;
        if !(0.0..=3600.0).contains(&drain_seconds) {
            return Err(Failure::config(format!(
                "--drain-seconds {drain_seconds}: must be in [0, 3600]"
            )));
        }
        let autoscale = match &control.catalog {
            Some(path) if control.cloud.is_some() => {
                let catalog = Catalog::load(path).map_err(Failure::config)?;
                let exe = std::env::current_exe().map_err(Failure::failed)?;
                let o = control.options(catalog, exe, cfg.model_repo.clone());
                Some(o.map_err(Failure::config)?)
            }
            _ => None,
        };
        let models = load_repo(&cfg.model_repo, ort_lib.as_deref())?;
        Ok(Serve {
            cfg,
            models,
            engine,
            slots,
            listen,
            grpc_listen: (!no_grpc).then_some(grpc_listen),
            admin: admin_token.map(|t| (admin_listen, t)),
            autoscale,
            replica,
            record_trace: record_trace.map(|d| (d, record_max_bytes)),
            drain_seconds,
            spot_notices: None,
        })
    }

    /// A worker that watches instance metadata at `endpoint` every `every_s` seconds for spot
    /// interruption notices and drains on one (`app::spot_notice`).
    pub fn with_spot_notices(mut self, endpoint: String, every_s: f64) -> Self {
        self.spot_notices = Some((endpoint.trim_end_matches('/').to_string(), every_s));
        self
    }

    /// Serves until SIGINT/SIGTERM on its own runtime.
    pub fn run(self) -> Result<(), Failure> {
        crate::failure::runtime()?.block_on(self.serve())
    }

    async fn serve(self) -> Result<(), Failure> {
        let bind = |addr: SocketAddr, hint: &'static str| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|e| Failure::failed(format!("binding {addr}{hint}: {e}")))
        };
        let listener = bind(self.listen, "").await?;
        let addr = listener.local_addr().map_err(Failure::failed)?;
        let names: Vec<&str> = self.models.iter().map(|m| m.name.as_str()).collect();
        // Ignore write errors: a closed stdout must not take the server down.
        let mut out = std::io::stdout();
        let _ = writeln!(
            out,
            "mark serve: listening on http://{addr} (models: {})",
            names.join(", ")
        );
        let grpc = match self.grpc_listen {
            Some(g) => Some(bind(g, " (--grpc-listen; --no-grpc for REST only)").await?),
            None => None,
        };
        let admin = match self.admin {
            Some((a, token)) => {
                let l = bind(a, "").await?;
                if let Ok(at) = l.local_addr() {
                    let _ = writeln!(out, "mark serve: admin API on http://{at}");
                }
                Some((l, token))
            }
            None => None,
        };
        if let Some(Ok(at)) = grpc.as_ref().map(TcpListener::local_addr) {
            let _ = writeln!(out, "mark serve: gRPC (KServe v2) on {at}");
        }
        let _ = writeln!(
            out,
            "try: curl -s http://{addr}/v2/health/ready; curl -s http://{addr}/v2/models/mlp"
        );
        let _ = out.flush();
        let first = self.models.first().map(|m| m.name.clone());
        let state = super::state(self.cfg, self.models, self.engine, self.slots);
        // serving never waits for the lease table: the replica reaches it in the background
        let replica = match self.replica {
            Some(o) => {
                let r = crate::replica::Replica::new(o).await;
                tokio::spawn(r.clone().run());
                Some(r)
            }
            None => None,
        };
        if let Some(mut a) = self.autoscale {
            if a.model.is_empty() {
                a.model = first.unwrap_or_default();
                if let Some(e) = a.ec2.as_mut() {
                    e.model = a.model.clone();
                }
            }
            a.replica = replica.clone();
            super::spawn_autoscaling(&state, a);
        }
        if let Some((endpoint, every)) = self.spot_notices.clone() {
            tokio::spawn(super::spot_notice::watch(
                state.clone(),
                endpoint,
                std::time::Duration::from_secs_f64(every),
            ));
        }
        if let Some((dir, max_bytes)) = &self.record_trace {
            // each run records into its own directory: a restart never finds its own trace
            let run = crate::trace::run_dir(dir);
            state
                .trace
                .start(&run, *max_bytes)
                .map_err(|e| Failure::failed(format!("--record-trace {}: {e}", run.display())))?;
            tracing::info!(dir = %run.display(), "recording the trace");
        }
        // a stop: readiness fails first, then after --drain-seconds the listeners stop
        // accepting and what was accepted is answered; then the lease is given up
        let (st, drain_seconds) = (state.clone(), self.drain_seconds);
        let fatal = Arc::new(std::sync::Mutex::new(None::<String>));
        let (rep, fatal_w) = (replica.clone(), fatal.clone());
        let shutdown = async move {
            match rep {
                Some(r) => tokio::select! {
                    () = shutdown_signal() => {},
                    why = r.fatal() => *fatal_w.lock().expect("fatal") = Some(why),
                },
                None => shutdown_signal().await,
            }
            st.draining
                .store(true, std::sync::atomic::Ordering::Relaxed);
            tracing::info!(drain_seconds, "stopping: readiness now fails");
            tokio::time::sleep(std::time::Duration::from_secs_f64(drain_seconds)).await;
        };
        super::serve(state.clone(), listener, grpc, admin, shutdown).await;
        if let Some(r) = &replica {
            r.release().await;
        }
        // what is queued is written, with the end record
        state.trace.stop();
        let why = fatal.lock().expect("fatal").take();
        match why {
            Some(why) => Err(Failure::config(why)),
            None => Ok(()),
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
