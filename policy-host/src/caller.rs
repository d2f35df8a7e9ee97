//! Calling the policy in a slot from one thread or task.
//!
//! A caller keeps one Store and instance per policy generation; when the slot's generation
//! changes it re-instantiates from the slot's `InstancePre` (microseconds). Any trap or timeout
//! drops the instance (the next call gets a fresh one), answers with the native default, counts
//! the failure and may roll the slot back. Malformed answers are treated the same way.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use mark_policies::types as n;
use wasmtime::component::Instance;
use wasmtime::{Store, Trap};

use mark_core::control::controller::ProvisionInput;

use super::bindings::{v1, v2};
use super::convert;
use super::engine::{HostState, PolicyEngine};
use super::offer::{Offer, OwnedQueueState};
use super::slot::{LoadedPolicy, Slot};
use super::PolicyKind;

/// A loaded export of either contract version.
enum Versioned<A, B> {
    V1(A),
    V2(B),
}

type Batcher =
    Versioned<v1::exports::mark::policy::batcher::Guest, v2::exports::mark::policy::batcher::Guest>;
type Predictor = Versioned<
    v1::exports::mark::policy::predictor::Guest,
    v2::exports::mark::policy::predictor::Guest,
>;
type Provisioner = Versioned<
    v1::exports::mark::policy::provisioner::Guest,
    v2::exports::mark::policy::provisioner::Guest,
>;

struct Cached {
    policy: Arc<LoadedPolicy>,
    store: Store<HostState>,
    batcher: Option<Batcher>,
    predictor: Option<Predictor>,
    provisioner: Option<Provisioner>,
}

/// Loads the `kind` export of `instance` as 0.2.0, else as 0.1.0 (validation has checked the
/// version already).
macro_rules! load_versioned {
    ($kind:ident, $pre:expr, $store:expr, $instance:expr) => {{
        let err = |e: wasmtime::Error| format!("export check failed: {e:#}");
        match v2::exports::mark::policy::$kind::GuestIndices::new($pre) {
            Ok(ix) => Versioned::V2(ix.load($store, $instance).map_err(err)?),
            Err(_) => Versioned::V1(
                v1::exports::mark::policy::$kind::GuestIndices::new($pre)
                    .map_err(err)?
                    .load($store, $instance)
                    .map_err(err)?,
            ),
        }
    }};
}

/// Outcome of one policy call, for callers that want to know (validation, tests).
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The component answered and the answer was used.
    Wasm,
    /// No component loaded: the native default answered.
    Native,
    /// The component failed or answered badly; the native default answered. The reason.
    Fallback(String),
}

/// Calls the policy of one slot.
pub struct PolicyCaller {
    engine: Arc<PolicyEngine>,
    slot: Arc<Slot>,
    cache: Option<Cached>,
    /// What happened on the last call.
    pub last: Outcome,
}

/// Why a call to a component fell back to the native default. Every kind but `Malformed`
/// leaves the instance suspect: the next call starts a fresh one, and the failure counts toward
/// the slot's rollback.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyCallError {
    /// The instance could not be created.
    #[error("instantiation failed: {0}")]
    Instantiation(String),
    /// It ran past its deadline and was interrupted.
    #[error("exceeded its deadline of {ms:.0} ms and was interrupted")]
    Deadline {
        /// The deadline.
        ms: f64,
    },
    /// It trapped after growing its memory past the limit was refused.
    #[error("trapped after being refused memory (asked for {asked_mib} MiB; the limit is {limit_mib} MiB): {trap}")]
    Memory {
        /// What it asked for.
        asked_mib: usize,
        /// The limit.
        limit_mib: usize,
        /// The trap.
        trap: String,
    },
    /// Any other trap.
    #[error("trapped: {0}")]
    Trapped(String),
    /// It answered, but the answer cannot be used (the instance itself is fine).
    #[error("{0}")]
    Malformed(String),
}

impl PolicyCallError {
    /// The instance may be broken: drop it and count a failure.
    pub fn is_trap(&self) -> bool {
        !matches!(self, PolicyCallError::Malformed(_))
    }
}

fn describe(
    e: &wasmtime::Error,
    store: &Store<HostState>,
    engine: &PolicyEngine,
    kind: PolicyKind,
) -> PolicyCallError {
    if let Some(Trap::Interrupt) = e.downcast_ref::<Trap>() {
        let ms = engine.limits.ticks(kind) as f64 * engine.limits.tick.as_secs_f64() * 1e3;
        return PolicyCallError::Deadline { ms };
    }
    if let Some(bytes) = store.data().refused_memory {
        return PolicyCallError::Memory {
            asked_mib: bytes >> 20,
            limit_mib: engine.limits.memory_bytes >> 20,
            trap: format!("{e:#}"),
        };
    }
    PolicyCallError::Trapped(format!("{e:#}"))
}

impl PolicyCaller {
    /// A caller for `slot`.
    pub fn new(engine: Arc<PolicyEngine>, slot: Arc<Slot>) -> Self {
        PolicyCaller {
            engine,
            slot,
            cache: None,
            last: Outcome::Native,
        }
    }

    fn instantiate(&self, policy: Arc<LoadedPolicy>) -> Result<Cached, String> {
        let mut store = self.engine.store();
        store.set_epoch_deadline(self.engine.limits.ticks(policy.kind));
        let instance: Instance = policy
            .pre
            .instantiate(&mut store)
            .map_err(|e| describe(&e, &store, &self.engine, policy.kind).to_string())?;
        let mut c = Cached {
            policy: policy.clone(),
            store,
            batcher: None,
            predictor: None,
            provisioner: None,
        };
        match policy.kind {
            PolicyKind::Batcher => {
                c.batcher = Some(load_versioned!(
                    batcher,
                    &policy.pre,
                    &mut c.store,
                    &instance
                ))
            }
            PolicyKind::Predictor => {
                c.predictor = Some(load_versioned!(
                    predictor,
                    &policy.pre,
                    &mut c.store,
                    &instance
                ))
            }
            PolicyKind::Provisioner => {
                c.provisioner = Some(load_versioned!(
                    provisioner,
                    &policy.pre,
                    &mut c.store,
                    &instance
                ))
            }
        }
        Ok(c)
    }

    /// Makes sure the cache holds the slot's current generation. `Ok(false)`: no component loaded.
    fn ensure(&mut self) -> Result<bool, (Arc<LoadedPolicy>, String)> {
        let Some(cur) = self.slot.current() else {
            self.cache = None;
            return Ok(false);
        };
        if self.cache.as_ref().map(|c| c.policy.generation) != Some(cur.generation) {
            self.cache = None;
            match self.instantiate(cur.clone()) {
                Ok(c) => self.cache = Some(c),
                Err(e) => return Err((cur, e)),
            }
        }
        Ok(true)
    }

    fn fail(&mut self, policy: &Arc<LoadedPolicy>, err: PolicyCallError) {
        policy.stats.fallbacks.fetch_add(1, Relaxed);
        let reason = err.to_string();
        if err.is_trap() {
            policy.stats.failures.fetch_add(1, Relaxed);
            // the instance may be in a broken state after a trap: start fresh next time
            self.cache = None;
        }
        tracing::warn!(kind = %policy.kind, sha = %&policy.sha256[..12], %reason, "policy call fell back to the native default");
        self.slot.record_failure(policy.generation, &reason);
        self.last = Outcome::Fallback(reason);
    }

    fn begin(&mut self) -> Option<Arc<LoadedPolicy>> {
        match self.ensure() {
            Ok(true) => {
                let c = self.cache.as_mut().expect("ensured");
                c.store.data_mut().refused_memory = None;
                c.store
                    .set_epoch_deadline(self.engine.limits.ticks(c.policy.kind));
                Some(c.policy.clone())
            }
            Ok(false) => {
                self.slot.record_native();
                self.last = Outcome::Native;
                None
            }
            Err((p, e)) => {
                p.stats.calls.fetch_add(1, Relaxed);
                self.fail(&p, PolicyCallError::Instantiation(e));
                None
            }
        }
    }

    /// The component trapped, timed out or answered badly.
    fn failed(&mut self, policy: &Arc<LoadedPolicy>, t: Instant, err: PolicyCallError) {
        policy.stats.record(t.elapsed());
        self.fail(policy, err);
    }

    /// The component declined with a policy error: the native default answers, nothing is wrong.
    fn declined(&mut self, policy: &LoadedPolicy, t: Instant, e: String) {
        policy.stats.record(t.elapsed());
        policy.stats.fallbacks.fetch_add(1, Relaxed);
        self.last = Outcome::Fallback(format!("policy declined: {e}"));
    }

    fn ok(&mut self, policy: &LoadedPolicy, t: Instant) {
        policy.stats.record(t.elapsed());
        self.slot.record_success();
        self.last = Outcome::Wasm;
    }

    /// Batch decision; the native default answers when the component cannot. A shadow of the
    /// slot, if any, is offered the same state and this answer.
    pub fn decide(&mut self, s: &n::QueueState<'_>) -> n::BatchDecision {
        let d = self.decide_live(s);
        self.slot.offer_shadow(|| Offer::Batch {
            state: OwnedQueueState::of(s),
            live: d,
        });
        d
    }

    /// Forecast of the next `horizon` intervals (and the same offered to a shadow).
    pub fn predict(
        &mut self,
        model: &str,
        history: &[f64],
        interval_seconds: f64,
        horizon: u32,
    ) -> Result<Vec<f64>, n::PolicyError> {
        let f = self.predict_live(model, history, interval_seconds, horizon);
        self.slot.offer_shadow(|| Offer::Predict {
            model: model.to_string(),
            history: history.to_vec(),
            interval_s: interval_seconds,
            horizon,
            live: f.clone().unwrap_or_default(),
        });
        f
    }

    /// Fleet plan (and the same offered to a shadow).
    pub fn provision(&mut self, i: &ProvisionInput<'_>) -> Result<n::Plan, n::PolicyError> {
        let p = self.provision_live(i);
        self.slot.offer_shadow(|| Offer::Provision {
            forecast: i.forecast.to_vec(),
            interval_s: i.interval_s,
            fleet: i.fleet.to_vec(),
            catalog: i.catalog.to_vec(),
            slo: i.slo,
            models: i.models.to_vec(),
            live: p.clone().ok(),
        });
        p
    }

    fn decide_live(&mut self, s: &n::QueueState<'_>) -> n::BatchDecision {
        let native = || mark_policies::batcher::decide(s);
        let Some(policy) = self.begin() else {
            return native();
        };
        let t = Instant::now();
        let c = self.cache.as_mut().expect("instantiated");
        let r = match c.batcher.as_ref().expect("batcher loaded") {
            Versioned::V1(g) => g
                .call_decide(&mut c.store, &convert::v1::queue_state(s))
                .map(convert::v1::decision),
            Versioned::V2(g) => g
                .call_decide(&mut c.store, &convert::v2::queue_state(s))
                .map(convert::v2::decision),
        };
        match r {
            Ok(d) => {
                let valid = match d {
                    n::BatchDecision::Send(b) => b >= 1 && b <= s.max_batch.max(1),
                    n::BatchDecision::Wait(us) => us <= 60_000_000,
                };
                if valid {
                    self.ok(&policy, t);
                    d
                } else {
                    self.failed(
                        &policy,
                        t,
                        PolicyCallError::Malformed(format!(
                            "malformed answer {d:?} (max batch {})",
                            s.max_batch
                        )),
                    );
                    native()
                }
            }
            Err(e) => {
                let why = describe(&e, &c.store, &self.engine, PolicyKind::Batcher);
                self.failed(&policy, t, why);
                native()
            }
        }
    }

    fn predict_live(
        &mut self,
        model: &str,
        history: &[f64],
        interval_seconds: f64,
        horizon: u32,
    ) -> Result<Vec<f64>, n::PolicyError> {
        let native = || mark_policies::predictor::predict(history, interval_seconds, horizon);
        let Some(policy) = self.begin() else {
            return native();
        };
        let t = Instant::now();
        let c = self.cache.as_mut().expect("instantiated");
        let r = match c.predictor.as_ref().expect("predictor loaded") {
            Versioned::V1(g) => g
                .call_predict(&mut c.store, history, interval_seconds, horizon)
                .map(|r| r.map_err(convert::v1::error)),
            Versioned::V2(g) => g
                .call_predict(&mut c.store, model, history, interval_seconds, horizon)
                .map(|r| r.map_err(convert::v2::error)),
        };
        match r {
            Ok(Ok(f))
                if f.len() == horizon as usize && f.iter().all(|x| x.is_finite() && *x >= 0.0) =>
            {
                self.ok(&policy, t);
                Ok(f)
            }
            Ok(Ok(f)) => {
                let bad = f
                    .iter()
                    .find(|x| !x.is_finite() || **x < 0.0)
                    .map_or(String::new(), |x| format!(", holds {x}"));
                self.failed(
                    &policy,
                    t,
                    PolicyCallError::Malformed(format!(
                        "malformed forecast: {} values for horizon {horizon}{bad}",
                        f.len()
                    )),
                );
                native()
            }
            Ok(Err(e)) => {
                self.declined(&policy, t, e);
                native()
            }
            Err(e) => {
                let why = describe(&e, &c.store, &self.engine, PolicyKind::Predictor);
                self.failed(&policy, t, why);
                native()
            }
        }
    }

    fn provision_live(&mut self, i: &ProvisionInput<'_>) -> Result<n::Plan, n::PolicyError> {
        let catalog = i.catalog;
        let native = || i.native();
        let Some(policy) = self.begin() else {
            return native();
        };
        let t = Instant::now();
        let c = self.cache.as_mut().expect("instantiated");
        let r = match c.provisioner.as_ref().expect("provisioner loaded") {
            // 0.1.0: the sum of the forecasts, each type's capacity for their mix
            Versioned::V1(g) => g
                .call_provision(
                    &mut c.store,
                    i.forecast,
                    i.interval_s,
                    &convert::v1::fleet(i.fleet),
                    &convert::v1::catalog(catalog),
                    convert::v1::slo(i.slo),
                )
                .map(|r| r.map(convert::v1::plan).map_err(convert::v1::error)),
            Versioned::V2(g) => g
                .call_provision(
                    &mut c.store,
                    &convert::v2::models(i.models),
                    i.interval_s,
                    &convert::v2::fleet(i.fleet),
                    &convert::v2::catalog(catalog),
                )
                .map(|r| r.map(convert::v2::plan).map_err(convert::v2::error)),
        };
        match r {
            Ok(Ok(p)) => {
                let unknown = p
                    .targets
                    .iter()
                    .find(|t| !catalog.iter().any(|c| c.name == t.instance_type));
                let share_ok = p.lambda_share.is_finite() && (0.0..=1.0).contains(&p.lambda_share);
                if unknown.is_none() && share_ok && p.targets.iter().all(|t| t.count <= 100_000) {
                    self.ok(&policy, t);
                    Ok(p)
                } else {
                    let why = match unknown {
                        Some(u) => format!(
                            "malformed plan: names type '{}' that is not in the catalog",
                            u.instance_type
                        ),
                        None => format!(
                            "malformed plan: lambda share {} or a count out of range",
                            p.lambda_share
                        ),
                    };
                    self.failed(&policy, t, PolicyCallError::Malformed(why));
                    native()
                }
            }
            Ok(Err(e)) => {
                self.declined(&policy, t, e);
                native()
            }
            Err(e) => {
                let why = describe(&e, &c.store, &self.engine, PolicyKind::Provisioner);
                self.failed(&policy, t, why);
                native()
            }
        }
    }
}
