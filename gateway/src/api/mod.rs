//! HTTP API: the KServe Open Inference Protocol v2 and `/metrics`.
//!
//! Stages of an infer request, in order: route (`router`) → read the body within its limit →
//! decode (`crate::codec::request`) → admit (`admit`) → queue (`batching`) → … → encode
//! (`crate::codec::response`).

pub mod admin;
pub mod admit;
pub mod body;
pub mod error;
pub mod grpc;
pub mod model_config;
mod policy_metrics;
pub mod router;
pub mod v2;
pub mod worker_load;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::batching::size_policy::PolicyFactory;
use crate::config::ServerConfig;
use crate::metrics::Metrics;
use crate::model::Model;
use crate::policy::engine::PolicyEngine;
use crate::policy::slot::PolicySlots;

/// The peer address of the connection a request came on, put on the request by the server
/// (the sign-in throttle counts failures per peer).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub std::net::IpAddr);

/// The key a peer counts under in per-peer limits: an IPv6 peer by its /64 (one host has many
/// addresses), an IPv4 peer by its address.
pub fn peer_key(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        // an IPv4 client of a dual-stack listener arrives as ::ffff:a.b.c.d: its own key
        std::net::IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => {
            std::net::IpAddr::V4(v6.to_ipv4_mapped().expect("checked"))
        }
        std::net::IpAddr::V6(v6) => {
            let s = v6.segments();
            std::net::IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// Shared state of the API.
pub struct AppState {
    /// Models by name.
    pub models: BTreeMap<String, Arc<Model>>,
    /// Process metrics.
    pub metrics: Arc<Metrics>,
    /// Server settings.
    pub cfg: ServerConfig,
    /// Makes the batch policy of each model's batch loop.
    pub batch_policy: PolicyFactory,
    /// The policy slots (hot-swappable WASM components).
    pub policies: Arc<PolicySlots>,
    /// The wasmtime engine of the policies.
    pub engine: Arc<PolicyEngine>,
    /// The control loop's status, when autoscaling runs.
    pub control: std::sync::OnceLock<crate::control::status::SharedStatus>,
    /// The cloud driver of the control loop, when autoscaling runs (for staged interruptions).
    pub cloud: std::sync::OnceLock<crate::cloud::driver::Driver>,
    /// Set on SIGTERM: readiness fails (the load balancer stops sending) before the listeners
    /// stop accepting.
    pub draining: std::sync::atomic::AtomicBool,
    /// The trace recording (`--record-trace`, `/admin/v1/trace/*`).
    pub trace: Arc<crate::trace::Tracing>,
    /// The operations page's status samples (`/admin/v1/status/history`).
    pub ops_history: crate::api::admin::ops::History,
    /// The operations page's signed sessions.
    pub sessions: crate::api::admin::session::Sessions,
}
