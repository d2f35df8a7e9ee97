//! Validation of an uploaded component before it may enter a slot: size, WebAssembly component
//! format, compilation, imports (none but our own types), the exported interface and its WIT
//! version, and smoke calls with sample inputs within the deadline. Any failure is a clear
//! message and the running policy stays.

use std::sync::Arc;

use mark_policies::types as n;
use sha2::{Digest, Sha256};
use wasmtime::component::types::ComponentItem;

use super::caller::{Outcome, PolicyCaller};
use super::engine::PolicyEngine;
use super::slot::{next_generation, CallStats, LoadedPolicy, Slot};
use mark_core::control::controller::ProvisionInput;

use super::{PolicyKind, OLDER_WIT_VERSIONS, WIT_VERSION};
use crate::clock::wall_secs;

/// Why a component was refused. `NotExported` is the one a caller branches on: `mark policy
/// check` reports a kind the component does not offer as absent, not as a failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    /// It does not export the kind's interface.
    #[error("does not export {interface} (it exports {exports:?})")]
    NotExported {
        /// The interface asked for.
        interface: String,
        /// What it exports.
        exports: Vec<String>,
    },
    /// Anything else: too large, not a component, does not compile or link, wrong WIT version,
    /// forbidden imports, a failed smoke call.
    #[error("{0}")]
    Invalid(String),
}

fn reject<T>(m: impl Into<String>) -> Result<T, Rejected> {
    Err(Rejected::Invalid(m.into()))
}

/// Versions compatible with this host: those of the current contract or an older one it still
/// loads (same major, and for 0.x the same minor).
fn compatible(v: &str) -> bool {
    let theirs: Vec<&str> = v.split('.').collect();
    std::iter::once(WIT_VERSION)
        .chain(OLDER_WIT_VERSIONS)
        .any(|known| {
            let mine: Vec<&str> = known.split('.').collect();
            theirs.len() == 3 && theirs[0] == mine[0] && (mine[0] != "0" || theirs[1] == mine[1])
        })
}

fn implemented() -> String {
    format!(
        "this gateway implements mark:policy@{WIT_VERSION} (and loads {})",
        OLDER_WIT_VERSIONS.join(", ")
    )
}

/// Validates `bytes` as a `kind` policy and returns it ready to install.
pub fn validate(
    engine: &Arc<PolicyEngine>,
    bytes: &[u8],
    kind: PolicyKind,
    source: &str,
) -> Result<Arc<LoadedPolicy>, Rejected> {
    let limit = engine.limits.max_component_bytes;
    if bytes.len() > limit {
        return reject(format!(
            "component is {} bytes; the limit is {limit} bytes",
            bytes.len()
        ));
    }
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return reject("not WebAssembly: the bytes do not start with the \\0asm magic number");
    }
    if bytes[4..8] == [1, 0, 0, 0] {
        return reject(
            "a core WebAssembly module, not a component: wrap it with `wasm-tools component new`",
        );
    }
    let component = engine
        .compile(bytes)
        .map_err(|e| Rejected::Invalid(format!("does not compile as a component: {e:#}")))?;
    let ty = component.component_type();
    for (name, item) in ty.imports(&engine.engine) {
        let types_only = match &item.ty {
            ComponentItem::ComponentInstance(i) => i
                .exports(&engine.engine)
                .all(|(_, it)| matches!(it.ty, ComponentItem::Type(_))),
            ComponentItem::Type(_) => true,
            _ => false,
        };
        if let Some(v) = name.strip_prefix("mark:policy/types@") {
            if types_only && compatible(v) {
                continue;
            }
            if !compatible(v) {
                return reject(format!("built against mark:policy@{v}; {}", implemented()));
            }
        }
        return reject(format!(
            "imports `{name}`; policies must import nothing (no WASI, no host functions)"
        ));
    }
    let prefix = format!("mark:policy/{}@", kind.as_str());
    let exports: Vec<String> = ty
        .exports(&engine.engine)
        .map(|(n, _)| n.to_string())
        .collect();
    let Some(export) = exports.iter().find(|e| e.starts_with(&prefix)) else {
        return Err(Rejected::NotExported {
            interface: kind.interface(),
            exports,
        });
    };
    let version = export[prefix.len()..].to_string();
    if !compatible(&version) {
        return reject(format!(
            "built against mark:policy@{version}; {}",
            implemented()
        ));
    }
    let pre = engine
        .linker
        .instantiate_pre(&component)
        .map_err(|e| Rejected::Invalid(format!("cannot be linked: {e:#}")))?;
    let policy = Arc::new(LoadedPolicy {
        kind,
        generation: next_generation(),
        sha256: format!("{:x}", Sha256::digest(bytes)),
        wit_version: version,
        source: source.to_string(),
        loaded_at: wall_secs(),
        bytes: bytes.len(),
        component,
        pre,
        stats: CallStats::default(),
    });
    smoke_test(engine, &policy)?;
    // the smoke calls are not the policy's serving record
    let fresh = Arc::new(LoadedPolicy {
        kind,
        generation: next_generation(),
        sha256: policy.sha256.clone(),
        wit_version: policy.wit_version.clone(),
        source: policy.source.clone(),
        loaded_at: policy.loaded_at,
        bytes: policy.bytes,
        component: policy.component.clone(),
        pre: policy.pre.clone(),
        stats: CallStats::default(),
    });
    Ok(fresh)
}

/// Sample catalog used by smoke calls.
pub fn sample_catalog() -> Vec<n::InstanceType> {
    let t = |name: &str, od: f64, spot: f64, cap: f64, burst: bool| n::InstanceType {
        name: name.into(),
        vcpus: 2,
        gpus: 0,
        memory_gib: 4.0,
        price_on_demand: od,
        price_spot: spot,
        launch_seconds: 90.0,
        capacity_rps: cap,
        burstable: burst,
    };
    vec![
        t("c7i.large", 0.0893, 0.035, 120.0, false),
        t("t3.medium", 0.0416, 0.0125, 40.0, true),
    ]
}

fn smoke_test(engine: &Arc<PolicyEngine>, policy: &Arc<LoadedPolicy>) -> Result<(), Rejected> {
    let slot = Arc::new(Slot::new(policy.kind, u32::MAX));
    slot.install(policy.clone());
    let mut caller = PolicyCaller::new(engine.clone(), slot);
    let check = |c: &PolicyCaller, what: &str| match &c.last {
        Outcome::Fallback(why) if !why.starts_with("policy declined") => {
            reject(format!("smoke call {what}: {why}"))
        }
        _ => Ok(()),
    };
    match policy.kind {
        PolicyKind::Batcher => {
            let profile: Vec<n::ProfilePoint> = [1u32, 2, 4, 8, 16, 32]
                .iter()
                .map(|&b| n::ProfilePoint {
                    batch: b,
                    latency_us: 500.0 + 120.0 * f64::from(b),
                })
                .collect();
            for (queued, wait, rate) in [
                (1, 0, 10.0),
                (40, 2_000, 5_000.0),
                (3, 9_000, 800.0),
                (1, 50_000, 0.0),
            ] {
                let s = n::QueueState {
                    queued_items: queued,
                    queued_requests: queued,
                    oldest_wait_us: wait,
                    slo_us: 10_000,
                    arrival_rate: rate,
                    max_batch: 32,
                    executors: 1,
                    profile: &profile,
                };
                caller.decide(&s);
                check(&caller, &format!("decide(queued={queued}, wait={wait}us)"))?;
            }
        }
        PolicyKind::Predictor => {
            let history: Vec<f64> = (0..120)
                .map(|i| 100.0 + 50.0 * (f64::from(i) / 10.0).sin())
                .collect();
            for (h, horizon) in [(&history[..], 5u32), (&history[..1], 1), (&[][..], 3)] {
                let _ = caller.predict("m", h, 60.0, horizon);
                check(
                    &caller,
                    &format!("predict(history of {}, horizon {horizon})", h.len()),
                )?;
            }
        }
        PolicyKind::Provisioner => {
            let cat = sample_catalog();
            let fleet = [n::FleetEntry {
                instance_type: "c7i.large".into(),
                market: n::Market::OnDemand,
                running: 2,
                pending: 0,
                ages_seconds: vec![600.0, 60.0],
            }];
            let slo = n::Slo {
                latency_ms: 100.0,
                attainment_target: 0.99,
            };
            let demand = |model: &str, forecast: &[f64], share: f64| n::ModelDemand {
                model: model.into(),
                forecast: forecast.to_vec(),
                slo,
                capacity: cat
                    .iter()
                    .map(|t| n::TypeCapacity {
                        instance_type: t.name.clone(),
                        capacity_rps: t.capacity_rps * share,
                    })
                    .collect(),
                footprint_gib: 0.2,
                attainment: Some(0.995),
                p99_ms: Some(60.0),
            };
            for (what, models, fleet) in [
                (
                    "provision(3 intervals, 2 running)",
                    vec![demand("m", &[300.0, 320.0, 280.0], 1.0)],
                    &fleet[..],
                ),
                (
                    "provision(no load, empty fleet)",
                    vec![demand("m", &[0.0], 1.0)],
                    &[][..],
                ),
                (
                    "provision(two models, 2 running)",
                    vec![
                        demand("a", &[200.0, 210.0], 1.0),
                        demand("b", &[20.0, 40.0], 0.1),
                    ],
                    &fleet[..],
                ),
            ] {
                let forecast = mark_core::control::mix::total_forecast(&models);
                let catalog = mark_core::control::mix::mixed_catalog(&models, &cat);
                let _ = caller.provision(&ProvisionInput {
                    forecast: &forecast,
                    interval_s: 60.0,
                    fleet,
                    catalog: &catalog,
                    slo,
                    models: &models,
                });
                check(&caller, what)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_compatibility() {
        assert!(compatible("0.2.0"));
        assert!(compatible("0.2.3"));
        assert!(compatible("0.1.0"), "0.1.0 components still load");
        assert!(compatible("0.1.7"));
        assert!(!compatible("0.3.0"));
        assert!(!compatible("0.0.1"));
        assert!(!compatible("1.0.0"));
        assert!(!compatible("garbage"));
    }
}
