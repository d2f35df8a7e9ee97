//! Wiring of `mark serve`: shared state, background model loading, the listener.

use std::future::Future;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;

use crate::api::{router, AppState};
use crate::batching::batcher::SharedPolicy;
use crate::batching::policy::{BatchPolicy, MarkAdaptive};
use crate::config::ServerConfig;
use crate::metrics::Metrics;
use crate::model::Model;

/// Builds the state for `models` with the default batch policy.
pub fn state(cfg: ServerConfig, models: Vec<Arc<Model>>) -> Arc<AppState> {
    let policy: SharedPolicy = Arc::new(ArcSwap::from_pointee(
        Box::new(MarkAdaptive) as Box<dyn BatchPolicy>
    ));
    Arc::new(AppState {
        models: models.into_iter().map(|m| (m.name.clone(), m)).collect(),
        metrics: Arc::new(Metrics::default()),
        cfg,
        batch_policy: policy,
    })
}

/// Loads every model on blocking threads, one after the other (they share the cores).
pub fn spawn_loading(state: &Arc<AppState>) {
    let st = state.clone();
    let rt = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        for m in st.models.values() {
            if let Err(e) = m.load(
                &st.metrics,
                st.batch_policy.clone(),
                st.cfg.profile_missing,
                &rt,
            ) {
                tracing::error!(model = %m.name, cause = %e, "model failed to load");
            }
        }
    });
}

/// Serves the data plane on `listener` until `shutdown` resolves.
pub async fn serve(
    state: Arc<AppState>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) {
    spawn_loading(&state);
    let st = state.clone();
    let handler = move |req| router::handle(st.clone(), req);
    crate::server::run(listener, state.cfg.max_connections, handler, shutdown).await;
}
