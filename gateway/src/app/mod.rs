//! Wiring of `mark serve`: the policy engine and slots, shared state, background model loading,
//! the data-plane and admin listeners.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::api::{admin, router, AppState};
use crate::batching::size_policy::{BatchPolicy, PolicyFactory, SlotBatchPolicy};
use crate::config::ServerConfig;
use crate::metrics::Metrics;
use crate::model::Model;
use crate::policy::caller::PolicyCaller;
use crate::policy::engine::PolicyEngine;
use crate::policy::slot::PolicySlots;

pub mod commands;
pub mod config_file;
pub mod policy_cmd;
pub mod profile_cmd;
pub mod serve_cmd;
pub mod spot_notice;

/// Builds the state for `models`.
pub fn state(
    cfg: ServerConfig,
    models: Vec<Arc<Model>>,
    engine: Arc<PolicyEngine>,
    slots: Arc<PolicySlots>,
) -> Arc<AppState> {
    let (e, s) = (engine.clone(), slots.batcher.clone());
    let factory: PolicyFactory = Arc::new(move || {
        Box::new(SlotBatchPolicy(PolicyCaller::new(e.clone(), s.clone()))) as Box<dyn BatchPolicy>
    });
    Arc::new(AppState {
        models: models.into_iter().map(|m| (m.name.clone(), m)).collect(),
        metrics: Arc::new(Metrics::default()),
        cfg,
        batch_policy: factory,
        policies: slots,
        engine,
        control: std::sync::OnceLock::new(),
        cloud: std::sync::OnceLock::new(),
        draining: std::sync::atomic::AtomicBool::new(false),
        trace: Default::default(),
        ops_history: Default::default(),
        sessions: Default::default(),
    })
}

/// Loads every model on blocking threads, one after the other (they share the cores).
pub fn spawn_loading(state: &Arc<AppState>) {
    let st = state.clone();
    let rt = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        for m in st.models.values() {
            if let Err(e) = m.load(&st.metrics, &st.batch_policy, st.cfg.profile_missing, &rt) {
                tracing::error!(model = %m.name, cause = %e, "model failed to load");
            }
        }
    });
}

/// Starts the control loop (autoscaling through a cloud driver) for `state`.
pub fn spawn_autoscaling(state: &Arc<AppState>, opts: crate::autoscale::AutoscaleOptions) {
    let status = Arc::new(std::sync::Mutex::new(
        crate::control::status::ControlStatus::default(),
    ));
    let _ = state.control.set(status.clone());
    tokio::spawn(crate::autoscale::run(state.clone(), opts, status));
}

/// Serves the data plane on `listener` (REST), `grpc` (the v2 gRPC service, with the same
/// connection limits) and the admin API on `admin` with its token, until `shutdown` resolves.
pub async fn serve(
    state: Arc<AppState>,
    listener: TcpListener,
    grpc: Option<TcpListener>,
    admin: Option<(TcpListener, String)>,
    shutdown: impl Future<Output = ()>,
) {
    spawn_loading(&state);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let limits =
        crate::server::ConnLimits::data_plane(state.cfg.max_connections, state.cfg.idle_timeout);
    let grpc_task = grpc.map(|grpc_listener| {
        let st = state.clone();
        let svc = crate::api::grpc::server(state.clone());
        let handler = move |req| crate::api::grpc::handle(st.clone(), svc.clone(), req);
        let mut rx = stop_rx.clone();
        tokio::spawn(crate::server::run(
            grpc_listener,
            limits.clone(),
            handler,
            async move {
                let _ = rx.wait_for(|s| *s).await;
            },
        ))
    });
    if let Some((admin_listener, token)) = admin {
        // the operations page's backlog: status samples every 2 s
        tokio::spawn(crate::api::admin::ops::sample(state.clone()));
        let st = state.clone();
        let token: Arc<str> = token.into();
        let handler = move |req| admin::handle(st.clone(), token.clone(), req);
        let mut rx = stop_rx.clone();
        tokio::spawn(crate::server::run(
            admin_listener,
            crate::server::ConnLimits::admin(),
            handler,
            async move {
                let _ = rx.wait_for(|s| *s).await;
            },
        ));
    }
    let st = state.clone();
    let handler = move |req| router::handle(st.clone(), req);
    // every listener starts draining when the signal comes; return once all have drained
    let stop_all = async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    };
    crate::server::run(listener, limits, handler, stop_all).await;
    if let Some(t) = grpc_task {
        let _ = t.await;
    }
}
