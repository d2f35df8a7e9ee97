//! Policy slots: one per kind, holding the running policy in an `ArcSwapOption` (None = the native
//! default), the history for rollback, and call statistics.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use serde::Serialize;
use wasmtime::component::{Component, InstancePre};

use super::engine::HostState;
use super::offer::Offer;
use super::shadow::{Shadow, ShadowBrief};
use super::PolicyKind;

/// A validated policy component, ready to instantiate.
pub struct LoadedPolicy {
    /// Kind it serves in its slot.
    pub kind: PolicyKind,
    /// Generation number: unique per load, so callers know to re-instantiate.
    pub generation: u64,
    /// sha256 of the component bytes.
    pub sha256: String,
    /// WIT package version it was built against.
    pub wit_version: String,
    /// Where it came from (file path, "admin upload", "embedded default").
    pub source: String,
    /// Load time, seconds since the epoch.
    pub loaded_at: u64,
    /// Size of the component, bytes.
    pub bytes: usize,
    /// Compiled component.
    pub component: Component,
    /// Pre-linked instance factory.
    pub pre: InstancePre<HostState>,
    /// Call statistics of this generation.
    pub stats: CallStats,
}

impl LoadedPolicy {
    /// The same component as a new generation with fresh statistics (a shadow being promoted:
    /// its shadow calls are not the live slot's).
    pub fn renewed(&self, source: &str) -> LoadedPolicy {
        LoadedPolicy {
            kind: self.kind,
            generation: next_generation(),
            sha256: self.sha256.clone(),
            wit_version: self.wit_version.clone(),
            source: source.to_string(),
            loaded_at: crate::clock::wall_s() as u64,
            bytes: self.bytes,
            component: self.component.clone(),
            pre: self.pre.clone(),
            stats: CallStats::default(),
        }
    }
}

/// Call statistics.
#[derive(Default)]
pub struct CallStats {
    /// Calls made.
    pub calls: AtomicU64,
    /// Calls that trapped or timed out.
    pub failures: AtomicU64,
    /// Calls answered by the native default instead (failures and malformed answers).
    pub fallbacks: AtomicU64,
    recent_ns: Mutex<VecDeque<u32>>,
}

const RECENT: usize = 4096;

impl CallStats {
    /// Records one call's duration.
    pub fn record(&self, d: Duration) {
        self.calls.fetch_add(1, Relaxed);
        let mut r = self.recent_ns.lock().expect("stats lock");
        if r.len() == RECENT {
            r.pop_front();
        }
        r.push_back(d.as_nanos().min(u128::from(u32::MAX)) as u32);
    }

    /// (p50, p99) of recent call times, microseconds.
    pub fn percentiles_us(&self) -> (f64, f64) {
        let mut v: Vec<u32> = self
            .recent_ns
            .lock()
            .expect("stats lock")
            .iter()
            .copied()
            .collect();
        if v.is_empty() {
            return (0.0, 0.0);
        }
        v.sort_unstable();
        let at = |q: f64| f64::from(v[((v.len() - 1) as f64 * q).round() as usize]) / 1e3;
        (at(0.5), at(0.99))
    }
}

/// What `GET /admin/v1/policies` shows of a slot.
#[derive(Debug, Serialize)]
pub struct SlotStatus {
    /// Kind.
    pub kind: PolicyKind,
    /// "wasm" or "native-default".
    pub active: &'static str,
    /// sha256 of the active component.
    pub sha256: Option<String>,
    /// WIT version of the active component.
    pub wit_version: Option<String>,
    /// Where it came from.
    pub source: Option<String>,
    /// Load time, seconds since the epoch.
    pub loaded_at: Option<u64>,
    /// Generation.
    pub generation: Option<u64>,
    /// Calls of the active component.
    pub calls: u64,
    /// Failed calls (trap, timeout).
    pub failures: u64,
    /// Calls answered by the native default.
    pub fallbacks: u64,
    /// Median call time, µs.
    pub p50_us: f64,
    /// 99th-percentile call time, µs.
    pub p99_us: f64,
    /// Earlier generations available for rollback (newest first), by sha256.
    pub history: Vec<String>,
    /// Rollbacks done by the failure rule.
    pub auto_rollbacks: u64,
    /// Why the last automatic rollback happened.
    pub last_rollback_reason: Option<String>,
    /// The candidate running in shadow, if any.
    pub shadow: Option<ShadowBrief>,
}

/// One swappable slot.
pub struct Slot {
    /// Kind.
    pub kind: PolicyKind,
    current: ArcSwapOption<LoadedPolicy>,
    history: Mutex<Vec<Option<Arc<LoadedPolicy>>>>,
    consecutive_failures: AtomicU32,
    rollback_after: u32,
    auto_rollbacks: AtomicU64,
    last_rollback_reason: Mutex<Option<String>>,
    /// Native fallbacks while no component is loaded are still counted here.
    native_calls: AtomicU64,
    /// A candidate called beside the live policy, never acted on (`?mode=shadow`).
    pub shadow: ArcSwapOption<Shadow>,
}

static GENERATION: AtomicU64 = AtomicU64::new(1);

/// A new generation number.
pub fn next_generation() -> u64 {
    GENERATION.fetch_add(1, Relaxed)
}

impl Slot {
    /// An empty slot (native default).
    pub fn new(kind: PolicyKind, rollback_after: u32) -> Self {
        Slot {
            kind,
            current: ArcSwapOption::empty(),
            history: Mutex::new(Vec::new()),
            consecutive_failures: AtomicU32::new(0),
            rollback_after: rollback_after.max(1),
            auto_rollbacks: AtomicU64::new(0),
            last_rollback_reason: Mutex::new(None),
            native_calls: AtomicU64::new(0),
            shadow: ArcSwapOption::empty(),
        }
    }

    /// Offers one live call to the shadow, if one runs; `make` builds the offer only then. The
    /// cost on the live path (building and queueing) is measured for the shadow's report.
    #[inline]
    pub fn offer_shadow(&self, make: impl FnOnce() -> Offer) {
        let guard = self.shadow.load();
        if let Some(sh) = guard.as_ref() {
            let t = std::time::Instant::now();
            sh.offer(make());
            sh.add_offer_cost(t.elapsed());
        }
    }

    /// The running component, if any.
    pub fn current(&self) -> Option<Arc<LoadedPolicy>> {
        self.current.load_full()
    }

    /// Swaps `p` in; the previous one goes to the history.
    pub fn install(&self, p: Arc<LoadedPolicy>) {
        let mut h = self.history.lock().expect("slot lock");
        let old = self.current.swap(Some(p));
        h.push(old);
        if h.len() > 16 {
            h.remove(0);
        }
        self.consecutive_failures.store(0, Relaxed);
    }

    /// Goes back to the previous policy (or the native default). Returns what is active now,
    /// or `None` when there was nothing to roll back to.
    pub fn rollback(&self) -> Option<Option<Arc<LoadedPolicy>>> {
        let mut h = self.history.lock().expect("slot lock");
        if self.current.load().is_none() && h.is_empty() {
            return None;
        }
        let prev = h.pop().unwrap_or(None);
        self.current.store(prev.clone());
        self.consecutive_failures.store(0, Relaxed);
        Some(prev)
    }

    /// Counts a failed call of `generation`; rolls back after too many in a row.
    pub fn record_failure(&self, generation: u64, reason: &str) {
        let Some(cur) = self.current() else { return };
        if cur.generation != generation {
            return;
        }
        let n = self.consecutive_failures.fetch_add(1, Relaxed) + 1;
        if n >= self.rollback_after {
            let why = format!(
                "{n} consecutive failed calls of {} (last: {reason})",
                &cur.sha256[..12]
            );
            tracing::error!(kind = %self.kind, reason = %why, "rolling the policy slot back");
            // only roll back if nobody swapped meanwhile
            if self.current().map(|c| c.generation) == Some(generation) {
                self.rollback();
                self.auto_rollbacks.fetch_add(1, Relaxed);
                *self.last_rollback_reason.lock().expect("slot lock") = Some(why);
            }
        }
    }

    /// Counts a good call of `generation`.
    pub fn record_success(&self) {
        if self.consecutive_failures.load(Relaxed) != 0 {
            self.consecutive_failures.store(0, Relaxed);
        }
    }

    /// Counts a call served natively because no component is loaded.
    pub fn record_native(&self) {
        self.native_calls.fetch_add(1, Relaxed);
    }

    /// Status for the admin API.
    pub fn status(&self) -> SlotStatus {
        let cur = self.current();
        let history = self
            .history
            .lock()
            .expect("slot lock")
            .iter()
            .rev()
            .map(|p| {
                p.as_ref()
                    .map_or("native-default".to_string(), |p| p.sha256.clone())
            })
            .collect();
        let (p50, p99) = cur
            .as_ref()
            .map(|c| c.stats.percentiles_us())
            .unwrap_or((0.0, 0.0));
        SlotStatus {
            kind: self.kind,
            active: if cur.is_some() {
                "wasm"
            } else {
                "native-default"
            },
            sha256: cur.as_ref().map(|c| c.sha256.clone()),
            wit_version: cur.as_ref().map(|c| c.wit_version.clone()),
            source: cur.as_ref().map(|c| c.source.clone()),
            loaded_at: cur.as_ref().map(|c| c.loaded_at),
            generation: cur.as_ref().map(|c| c.generation),
            calls: cur.as_ref().map_or(self.native_calls.load(Relaxed), |c| {
                c.stats.calls.load(Relaxed)
            }),
            failures: cur.as_ref().map_or(0, |c| c.stats.failures.load(Relaxed)),
            fallbacks: cur.as_ref().map_or(0, |c| c.stats.fallbacks.load(Relaxed)),
            p50_us: p50,
            p99_us: p99,
            history,
            auto_rollbacks: self.auto_rollbacks.load(Relaxed),
            last_rollback_reason: self.last_rollback_reason.lock().expect("slot lock").clone(),
            shadow: self.shadow.load_full().map(|sh| {
                let r = sh.report();
                ShadowBrief {
                    sha256: r.head.sha256,
                    calls: r.head.calls,
                    agreement: r.agreement_rate,
                }
            }),
        }
    }
}

/// The three slots.
pub struct PolicySlots {
    /// Batch sizing.
    pub batcher: Arc<Slot>,
    /// Load prediction.
    pub predictor: Arc<Slot>,
    /// Instance selection.
    pub provisioner: Arc<Slot>,
}

impl PolicySlots {
    /// Empty slots.
    pub fn new(rollback_after: u32) -> Self {
        PolicySlots {
            batcher: Arc::new(Slot::new(PolicyKind::Batcher, rollback_after)),
            predictor: Arc::new(Slot::new(PolicyKind::Predictor, rollback_after)),
            provisioner: Arc::new(Slot::new(PolicyKind::Provisioner, rollback_after)),
        }
    }

    /// The slot of `kind`.
    pub fn get(&self, kind: PolicyKind) -> &Arc<Slot> {
        match kind {
            PolicyKind::Batcher => &self.batcher,
            PolicyKind::Predictor => &self.predictor,
            PolicyKind::Provisioner => &self.provisioner,
        }
    }
}
