//! Shadow policies: a candidate component called beside the live policy of its slot, on the same
//! inputs, off the request path, whose answers are recorded and never acted on.
//!
//! The live caller hands each call's inputs and its own answer to the slot's shadow by pushing
//! them on a bounded queue (a copy and a push under an uncontended lock; nobody is woken: a
//! futex wake per batch decision cost ~26 µs under load on 2 cores, so the shadow's thread polls
//! every 2 ms instead). The offer's cost is measured and reported. The thread calls the candidate
//! through an ordinary `PolicyCaller` on a private slot (same deadline and memory limit, its own
//! Store) and compares. A full queue skips the offer (counted) rather than wait: a slow or
//! spinning candidate can never delay a batch. Dropping the shadow ends the thread.

use std::collections::VecDeque;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use super::caller::{Outcome, PolicyCaller};
use super::engine::PolicyEngine;
use super::offer::Offer;
use super::shadow_report::{Diff, ShadowReport};
use super::slot::{LoadedPolicy, Slot};

/// Offers queued for the shadow thread before new ones are skipped.
const QUEUE: usize = 1024;

/// Share of one core a shadow may spend calling its candidate (a token bucket refilled at this
/// rate, holding at most [`BURST`]): past it, offers are passed over (counted) and the
/// comparison runs on a sample. A live batch decision costs microseconds; a slow candidate at
/// its 10 ms deadline on every decision would otherwise take a core beside the live path.
pub const CPU_BUDGET: f64 = 0.1;
/// Seconds of calls the bucket holds.
const BURST: f64 = 0.05;
/// A candidate that runs past its deadline this many times in a row is stopped.
pub const STOP_AFTER_DEADLINES: u32 = 5;

/// A candidate running in shadow beside a slot's live policy.
pub struct Shadow {
    /// The candidate (validated like a swap).
    pub policy: Arc<LoadedPolicy>,
    queue: Arc<Queue>,
    diff: Arc<Mutex<Diff>>,
    offered: AtomicU64,
    skipped: AtomicU64,
    offer_ns: AtomicU64,
    started_at: u64,
}

impl Shadow {
    /// Starts the candidate's thread.
    pub fn start(engine: Arc<PolicyEngine>, policy: Arc<LoadedPolicy>) -> Arc<Shadow> {
        let queue = Arc::new(Queue::default());
        let diff = Arc::new(Mutex::new(Diff::new(policy.kind)));
        // a private slot that never rolls back: the shadow's failures are reported, not acted on
        let slot = Arc::new(Slot::new(policy.kind, u32::MAX));
        slot.install(policy.clone());
        let caller = PolicyCaller::new(engine, slot);
        let (d, q) = (diff.clone(), queue.clone());
        let name = format!("shadow-{}", policy.kind);
        let spawned = std::thread::Builder::new()
            .name(name)
            .spawn(move || serve(&q, caller, d));
        if let Err(e) = spawned {
            tracing::error!(cause = %e, "shadow thread did not start; offers will be skipped");
        }
        Arc::new(Shadow {
            policy,
            queue,
            diff,
            offered: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            offer_ns: AtomicU64::new(0),
            started_at: crate::clock::wall_s() as u64,
        })
    }

    /// Hands one live call to the shadow; never blocks.
    pub fn offer(&self, o: Offer) {
        self.offered.fetch_add(1, Relaxed);
        let mut q = self.queue.offers.lock().expect("shadow queue lock");
        if q.len() >= QUEUE {
            drop(q);
            self.skipped.fetch_add(1, Relaxed);
        } else {
            q.push_back(o);
        }
    }

    /// Adds the time an offer took on the live path (building it and sending it).
    pub fn add_offer_cost(&self, cost: Duration) {
        self.offer_ns
            .fetch_add(cost.as_nanos().min(u128::from(u64::MAX)) as u64, Relaxed);
    }

    /// Offers made, skipped (queue full).
    pub fn counts(&self) -> (u64, u64) {
        (self.offered.load(Relaxed), self.skipped.load(Relaxed))
    }

    /// What `GET /admin/v1/policies/{kind}/shadow` answers.
    pub fn report(&self) -> ShadowReport {
        let (offered, skipped) = self.counts();
        let (p50, p99) = self.policy.stats.percentiles_us();
        let d = self.diff.lock().expect("shadow lock");
        d.report(super::shadow_report::Head {
            kind: self.policy.kind,
            sha256: self.policy.sha256.clone(),
            generation: self.policy.generation,
            source: self.policy.source.clone(),
            started_at: self.started_at,
            offered,
            skipped,
            offer_ns_mean: self.offer_ns.load(Relaxed) as f64 / offered.max(1) as f64,
            calls: self.policy.stats.calls.load(Relaxed),
            failures: self.policy.stats.failures.load(Relaxed),
            fallbacks: self.policy.stats.fallbacks.load(Relaxed),
            p50_us: p50,
            p99_us: p99,
        })
    }

    /// Offers queued and not yet handled by the shadow thread.
    pub fn pending(&self) -> u64 {
        if self.queue.closed.load(Relaxed) {
            // stopped (or ended): nothing more will be handled
            return 0;
        }
        let (offered, skipped) = self.counts();
        let done = self.diff.lock().expect("shadow lock").handled;
        offered.saturating_sub(done + skipped)
    }
}

/// Why the candidate's answer was not used for the comparison (`None`: it answered).
fn failed(c: &PolicyCaller) -> Option<String> {
    match &c.last {
        Outcome::Wasm => None,
        Outcome::Native => Some("no component loaded".into()),
        Outcome::Fallback(r) => Some(r.clone()),
    }
}

impl Drop for Shadow {
    fn drop(&mut self) {
        self.queue.closed.store(true, Relaxed);
    }
}

/// Offers waiting for the shadow thread.
#[derive(Default)]
struct Queue {
    offers: Mutex<VecDeque<Offer>>,
    closed: AtomicBool,
}

/// The shadow thread: every 2 ms, takes the queued offers, calls the candidate on each and
/// records how it differs; ends once the shadow is dropped.
fn serve(queue: &Queue, mut caller: PolicyCaller, diff: Arc<Mutex<Diff>>) {
    let mut tokens = BURST;
    let mut refilled = std::time::Instant::now();
    let mut deadlines = 0u32;
    while !queue.closed.load(Relaxed) {
        let batch = std::mem::take(&mut *queue.offers.lock().expect("shadow queue lock"));
        if batch.is_empty() {
            std::thread::sleep(Duration::from_millis(2));
            continue;
        }
        for o in batch {
            // a replaced or deleted shadow stops at once, not after its queue
            if queue.closed.load(Relaxed) {
                return;
            }
            let now = std::time::Instant::now();
            tokens = (tokens + now.duration_since(refilled).as_secs_f64() * CPU_BUDGET).min(BURST);
            refilled = now;
            if tokens <= 0.0 {
                let mut d = diff.lock().expect("shadow lock");
                d.handled += 1;
                d.over_budget += 1;
                continue;
            }
            offer(&mut caller, &diff, o);
            tokens -= now.elapsed().as_secs_f64();
            let deadline = matches!(&caller.last, Outcome::Fallback(r) if r.contains("deadline"));
            deadlines = if deadline { deadlines + 1 } else { 0 };
            if deadlines >= STOP_AFTER_DEADLINES {
                let why =
                    format!("stopped: ran past its deadline {STOP_AFTER_DEADLINES} times in a row");
                tracing::warn!(kind = %caller_kind(&diff), %why, "shadow policy stopped");
                diff.lock().expect("shadow lock").stopped = Some(why);
                queue.closed.store(true, Relaxed);
                return;
            }
        }
    }
}

fn caller_kind(diff: &Mutex<Diff>) -> String {
    format!("{:?}", diff.lock().expect("shadow lock").kind())
}

fn offer(caller: &mut PolicyCaller, diff: &Mutex<Diff>, o: Offer) {
    {
        match o {
            Offer::Batch { state, live } => {
                let shadow = caller.decide(&state.view());
                let why = failed(caller);
                diff.lock().expect("shadow lock").batch(live, shadow, why);
            }
            Offer::Predict {
                model,
                history,
                interval_s,
                horizon,
                live,
            } => {
                let shadow = caller.predict(&model, &history, interval_s, horizon);
                let why = failed(caller);
                let shadow = shadow.unwrap_or_default();
                diff.lock()
                    .expect("shadow lock")
                    .predict(&history, &live, &shadow, why);
            }
            Offer::Provision {
                forecast,
                interval_s,
                fleet,
                catalog,
                slo,
                models,
                live,
            } => {
                let shadow = caller.provision(&mark_core::control::controller::ProvisionInput {
                    forecast: &forecast,
                    interval_s,
                    fleet: &fleet,
                    catalog: &catalog,
                    slo,
                    models: &models,
                });
                let why = failed(caller);
                diff.lock().expect("shadow lock").provision(
                    live.as_ref(),
                    shadow.ok().as_ref(),
                    &catalog,
                    why,
                );
            }
        }
    }
}

/// A slot's shadow as the policies list shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ShadowBrief {
    /// sha256 of the candidate.
    pub sha256: String,
    /// Calls made to it.
    pub calls: u64,
    /// Share of compared calls where it agreed with the live policy.
    pub agreement: Option<f64>,
}
