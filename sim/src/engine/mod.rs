//! The discrete-event loop: one virtual clock, no threads, no sleeping. Requests arrive from each
//! model's workload into its lane's queue (the gateway's model queue, `lane.rs`); a free
//! instance takes a batch of one lane, whose size
//! the batcher policy picks from that instance type's profile; completions record per-request
//! latency. Every control interval the controller step of `mark serve` (the same function, the
//! same policies) plans the fleet; the strategy decides what else runs (Lambda spill-over, the
//! SLO monitor's emergency launch, SageMaker's target tracking, a static fleet).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};

use mark_policies::types::{BatchDecision, InstanceType, Market, QueueState, Slo};

use super::baselines::{SageMakerScaler, Strategy};
use super::fleet::{SimInstance, TypeModel};
use super::lambda_model::SimLambda;
use super::report::{PolicyReport, Sample};
use super::stats::LatencyHist;
use super::workload::Workload;
use crate::control::catalog::LambdaSpec;
use crate::control::controller::{Action, ControlConfig, FleetInstance, SCALE_IN_GUARD};
use crate::control::cycle::Controller;
use crate::control::fleet::{self as fleet_ops, Fleet, Instance, InstanceState};
use crate::control::mix::ModelInput;
use crate::control::slack::SLACK;

use super::params::{Policies, SimParams};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    BatchDone(usize, u32),
    Ready(usize, u32),
    Interrupt(usize, u32),
    Reclaim(usize),
    LambdaDone(usize),
    Wake,
    Window,
    Control,
    Sample,
    Mass,
    /// The replicas' lease rounds (`--replicas`).
    Lease,
}

struct Sim<'a> {
    p: &'a SimParams,
    strategy: Strategy,
    types: Vec<TypeModel>,
    catalog: Vec<InstanceType>,
    now: f64,
    seq: u64,
    events: BinaryHeap<Reverse<(u64, u64, Ev)>>,
    /// The models, each with its queue and curves (`types` is the first lane's).
    lanes: Vec<Lane>,
    instances: Vec<SimInstance>,
    idle: BTreeSet<usize>,
    lambda: Option<SimLambda>,
    lambda_batches: Vec<Option<(usize, Vec<f64>)>>,
    lambda_free: Vec<usize>,
    /// The control cycle `mark serve` runs (mark-rs and MArk as released; its SLO monitor
    /// feeds nothing else for the other strategies).
    controller: Controller,
    sample_arrivals: u64,
    sample_lambda: u64,
    /// Requests that missed the SLO since the last sample (late, refused or dropped).
    sample_missed: u64,
    /// Reused by `dispatch`: the types offered the queue so far.
    offer_scratch: Vec<usize>,
    rng: mark_policies::traces::Rng,
    /// The host's overhead on the gateway's executors and on the fleet's workers (a
    /// replay's), if any.
    host: Option<host::HostOverhead>,
    worker: Option<host::HostOverhead>,
    policies: Policies,
    sagemaker: Option<SageMakerScaler>,
    samples: Vec<Sample>,
    launches: u64,
    terminations: u64,
    /// Launches and terminations the hour's budget did not allow.
    skipped_by_rate: u64,
    budget: fleet_ops::ChangeBudget,
    interruptions: u64,
    /// Launch calls refused by `--cloud-faults` (capacity, throttling).
    launch_errors: u64,
    /// Spot reclaim notices.
    notices: u64,
    /// Launches left to fail at boot (`boot_failures`).
    boot_failures_left: u32,
    forced: u64,
    requeued: u64,
    duration: f64,
    next_id: u64,
    /// EWMA of what batches took over what the profile promised (`profile::live`'s rule).
    live_slowdown: f64,
    /// The gateway replicas (`--replicas N`, N > 1, mark-rs): their lease and demand rows.
    replicas: Option<replicas::Replicas>,
}

fn key(t: f64) -> u64 {
    // non-negative f64s order like their bit patterns
    t.max(0.0).to_bits()
}

impl<'a> Sim<'a> {
    fn at(&mut self, t: f64, e: Ev) {
        self.seq += 1;
        self.events.push(Reverse((key(t), self.seq, e)));
    }

    fn slo_s(&self, m: usize) -> f64 {
        self.lanes[m].slo_ms / 1000.0
    }

    /// Model `m`'s batch limit for this strategy (SageMaker's baseline does not batch).
    fn max_batch(&self, m: usize) -> u32 {
        match self.strategy {
            Strategy::SageMaker => 1,
            _ => self.lanes[m].max_batch.max(1),
        }
    }

    /// Largest batch of model `m` an instance of type `ty` runs: the model's limit bounded by
    /// that type's own curve.
    fn type_max_batch(&self, m: usize, ty: usize) -> u32 {
        self.max_batch(m)
            .min(self.lanes[m].types[ty].max_batch)
            .max(1)
    }

    fn price(&self, ty: usize, market: Market) -> f64 {
        let t = &self.types[ty].spec;
        match (self.strategy, market) {
            (Strategy::SageMaker, _) => t.price_on_demand * self.p.sagemaker_markup,
            (_, m) => t.price(m),
        }
    }

    fn launch(&mut self, ty: usize, market: Market, delay_s: f64, ready_now: bool) -> bool {
        if self.alive() >= self.p.max_instances {
            return false;
        }
        let idx = self.instances.len();
        self.next_id += 1;
        let t = &self.types[ty];
        self.instances.push(SimInstance {
            id: self.next_id,
            ty,
            market,
            price_per_hour: self.price(ty, market),
            launched_at: self.now,
            ready_at: self.now + delay_s,
            ready: false,
            ended_at: None,
            batch: Vec::new(),
            lane: 0,
            epoch: 0,
            draining: false,
            credits: t.credits_per_hour,
            credits_at: self.now,
            boots: true,
            noticed: false,
            pinned: false,
        });
        self.launches += 1;
        let fails = self.p.faults.boot_failure_rate;
        if ready_now {
            self.instances[idx].ready = true;
            self.idle.insert(idx);
        } else if self.boot_failures_left > 0 || (fails > 0.0 && self.rng.uniform() < fails) {
            self.boot_failures_left = self.boot_failures_left.saturating_sub(1);
            // billed, never serving, until the controller's pending deadline terminates it
            self.instances[idx].boots = false;
        } else {
            self.at(self.now + delay_s, Ev::Ready(idx, 0));
        }
        if market == Market::Spot && self.p.spot_interruptions_per_hour > 0.0 {
            let u = self.rng.uniform();
            let after = -(1.0 - u).ln() / self.p.spot_interruptions_per_hour * 3600.0;
            if self.now + after < self.duration {
                self.at(self.now + after, Ev::Interrupt(idx, 0));
            }
        }
        true
    }

    fn end(&mut self, idx: usize) {
        let i = &mut self.instances[idx];
        if i.ended_at.is_some() {
            return;
        }
        i.ended_at = Some(self.now);
        i.epoch += 1;
        i.ready = false;
        self.idle.remove(&idx);
        // a batch cut off by an interruption goes back to the head of its queue
        let batch = std::mem::take(&mut self.instances[idx].batch);
        self.requeued += batch.len() as u64;
        let lane = self.instances[idx].lane;
        for a in batch.into_iter().rev() {
            self.lanes[lane].queue.push_front(a);
        }
    }

    /// The wave `k` of `--cloud-faults` (a reclaim or a rebalance recommendation): notices to a
    /// share of the running spot instances (oldest first); each takes no new batch from now and
    /// is gone `notice_s` later (reclaimed), or `NOTICE_GRACE_S` later (a rebalance: terminated
    /// by the controller, still billed until then). The controller no longer lists it, so its
    /// replacement is planned at the notice.
    fn reclaim(&mut self, k: usize) {
        let Some(r) = self.p.faults.waves().get(k).cloned() else {
            return;
        };
        let spot: Vec<usize> = (0..self.instances.len())
            .filter(|&i| {
                let x = &self.instances[i];
                x.alive()
                    && !x.noticed
                    && x.market == Market::Spot
                    && r.instance_type
                        .as_ref()
                        .is_none_or(|t| *t == self.types[x.ty].spec.name)
            })
            .collect();
        let n = (spot.len() as f64 * r.share).ceil() as usize;
        for &i in spot.iter().take(n) {
            self.notices += 1;
            self.instances[i].noticed = true;
            self.idle.remove(&i);
            let epoch = self.instances[i].epoch;
            self.at(self.now + r.end_after_s, Ev::Interrupt(i, epoch));
        }
    }

    fn type_index(&self, name: &str) -> Option<usize> {
        self.types.iter().position(|t| t.spec.name == name)
    }

    /// The controller of `mark serve` for the MArk strategies: mark-rs makes before it breaks
    /// and answers SLO breaches with emergency launches; MArk as released did neither.
    pub(super) fn controller(p: &SimParams, strategy: Strategy) -> Controller {
        let cfg = ControlConfig {
            interval_s: p.interval_s,
            horizon: p.horizon,
            min_age_s: p.interval_s,
            slo: Slo {
                latency_ms: p.slo_ms,
                attainment_target: p.attainment_target,
            },
            scale_in_guard: (strategy == Strategy::MarkRs && !p.ablate.make_before_break)
                .then_some(SCALE_IN_GUARD),
            slack: (strategy == Strategy::MarkRs && p.slack_feedback).then_some(SLACK),
            pays_for_itself: !p.ablate.churn,
        };
        let mark_rs = strategy == Strategy::MarkRs;
        Controller::new(
            cfg,
            p.window_s,
            p.max_instances,
            mark_rs && !p.ablate.emergency,
        )
    }

    /// Each model's inputs to the controller: its SLO and each type's capacity for it.
    fn model_inputs(&self) -> Vec<ModelInput> {
        self.lanes
            .iter()
            .map(|l| ModelInput {
                name: l.name.clone(),
                slo: Slo {
                    latency_ms: l.slo_ms,
                    attainment_target: self.p.attainment_target,
                },
                catalog: self
                    .catalog
                    .iter()
                    .zip(&l.types)
                    .map(|(c, t)| InstanceType {
                        capacity_rps: t.spec.capacity_rps,
                        ..c.clone()
                    })
                    .collect(),
                footprint_gib: 0.0,
            })
            .collect()
    }

    fn complete(&mut self, m: usize, batch: &[f64]) {
        let slo = self.slo_s(m);
        let (mut met, mut slow) = (0, 0);
        for &a in batch {
            let l = self.now - a;
            self.lanes[m].hist.record(l, slo);
            self.controller.answered(m, l, 1);
            met += u64::from(l <= slo);
            slow += u64::from(l > slo / 2.0);
        }
        self.sample_missed += batch.len() as u64 - met;
        self.controller
            .outcome(m, self.now, met, batch.len() as u64, slow);
    }

    fn start_batch(&mut self, m: usize, idx: usize, n: usize) {
        if self.reject_late() {
            // requests queued past their SLO are not run (the live queue's deadline)
            let slo = self.slo_s(m);
            let mut late = 0;
            let q = &mut self.lanes[m].queue;
            while q.front().is_some_and(|&a| self.now - a >= slo) {
                q.pop_front();
                late += 1;
            }
            if late > 0 {
                self.reject(m, late);
            }
        }
        let n = n.min(self.lanes[m].queue.len());
        if n == 0 {
            return;
        }
        let mut batch = std::mem::take(&mut self.instances[idx].batch);
        batch.clear();
        batch.extend(self.lanes[m].queue.drain(..n));
        let ty = self.instances[idx].ty;
        let full = self.lanes[m].types[ty].service(n as u32);
        let s = self.instances[idx].start_service(&self.lanes[m].types[ty], n as u32, self.now)
            * self.p.slowdown_at(self.now);
        self.instances[idx].lane = m;
        if full > 0.0 {
            let r = (s / full).clamp(0.25, 8.0);
            self.live_slowdown += crate::profile::live::ALPHA * (r - self.live_slowdown);
        }
        // what the live run's batches took past their curve (the host's, the network's)
        let s = s + match (self.instances[idx].pinned, &mut self.host, &mut self.worker) {
            (true, Some(h), _) | (false, _, Some(h)) => h.draw(),
            _ => 0.0,
        };
        self.lanes[m].busy_s += s;
        self.instances[idx].batch = batch;
        self.idle.remove(&idx);
        let epoch = self.instances[idx].epoch;
        self.at(self.now + s, Ev::BatchDone(idx, epoch));
    }

    fn spill_after(&self, m: usize, l: &LambdaSpec) -> f64 {
        if self.strategy == Strategy::LambdaOnly {
            0.0
        } else {
            crate::batching::spill::spill_after_us(
                (self.lanes[m].slo_ms * 1000.0) as u64,
                l.latency_s,
            ) as f64
                / 1e6
        }
    }

    /// Model `m`'s spill settings, computed once: (wait before spilling, items per invocation,
    /// latency of each batch size on the function).
    fn spill_plan(&mut self, m: usize) -> Option<(f64, usize)> {
        if self.lanes[m].spill.is_none() {
            let spec = self.lambda.as_ref()?.spec.clone();
            let lane = &self.lanes[m];
            let profile = lane
                .types
                .first()
                .map(|t| t.profile.clone())
                .unwrap_or_default();
            let per_call = if self.strategy == Strategy::LambdaOnly {
                1
            } else {
                // the function runs the model's CPU curve: never a batch it has not measured
                let limit = if lane.types.is_empty() {
                    self.max_batch(m)
                } else {
                    self.type_max_batch(m, 0)
                };
                crate::batching::spill::spill_batch(
                    &profile,
                    (lane.slo_ms * 1000.0) as u64,
                    spec.latency_s,
                    limit,
                )
            };
            let run = (1..=per_call)
                .map(|b| {
                    crate::batching::spill::lambda_batch_latency_s(&profile, spec.latency_s, b)
                })
                .collect();
            self.lanes[m].spill = Some((self.spill_after(m, &spec), per_call as usize, run));
        }
        self.lanes[m].spill.as_ref().map(|s| (s.0, s.1))
    }

    fn maybe_spill(&mut self, m: usize) {
        let Some((after, per_call)) = self.spill_plan(m) else {
            return;
        };
        // scaling to zero (`--min-instances 0`) and no instance serves (at zero, or booting
        // back): nothing is gained by waiting, the function takes the request at once
        let zeroing = self.controller.floor.min_instances == Some(0);
        let after = if zeroing && !self.instances.iter().any(|i| i.ready && i.alive()) {
            0.0
        } else {
            after
        };
        while let Some(&oldest) = self.lanes[m].queue.front() {
            if self.now - oldest < after {
                let t = oldest + after;
                if self.lanes[m].spill_wake != t {
                    self.lanes[m].spill_wake = t;
                    self.at(t, Ev::Wake);
                }
                return;
            }
            if !self.lambda.as_ref().is_some_and(SimLambda::available) {
                return;
            }
            let lane = &mut self.lanes[m];
            let n = lane.queue.len().min(per_call);
            // a batch of n takes as long on the function as the profile says, relative to batch 1
            let run = lane.spill.as_ref().map_or(0.0, |s| s.2[n - 1]);
            let batch: Vec<f64> = lane.queue.drain(..n).collect();
            lane.lambda_items += n as u64;
            let l = self.lambda.as_mut().expect("lambda");
            let d = l.start(self.now, n as u32, run);
            self.sample_lambda += n as u64;
            self.controller.served_by_lambda(n as u64);
            let slot = match self.lambda_free.pop() {
                Some(s) => {
                    self.lambda_batches[s] = Some((m, batch));
                    s
                }
                None => {
                    self.lambda_batches.push(Some((m, batch)));
                    self.lambda_batches.len() - 1
                }
            };
            self.at(self.now + d, Ev::LambdaDone(slot));
        }
    }

    fn handle(&mut self, e: Ev) {
        match e {
            Ev::BatchDone(idx, epoch) => {
                if self.instances[idx].epoch != epoch {
                    return;
                }
                let batch = std::mem::take(&mut self.instances[idx].batch);
                self.complete(self.instances[idx].lane, &batch);
                self.instances[idx].batch = batch;
                self.instances[idx].batch.clear();
                if self.instances[idx].draining {
                    self.end(idx);
                } else if !self.instances[idx].noticed {
                    self.idle.insert(idx);
                }
            }
            Ev::Ready(idx, epoch) => {
                let i = &mut self.instances[idx];
                if i.epoch == epoch && i.alive() {
                    i.ready = true;
                    if !i.noticed {
                        self.idle.insert(idx);
                    }
                }
            }
            Ev::Interrupt(idx, epoch) => {
                if self.instances[idx].epoch == epoch && self.instances[idx].alive() {
                    self.interruptions += 1;
                    self.end(idx);
                }
            }
            Ev::LambdaDone(slot) => {
                let (m, batch) = self.lambda_batches[slot].take().expect("lambda batch");
                self.complete(m, &batch);
                self.lambda_free.push(slot);
                if let Some(l) = self.lambda.as_mut() {
                    l.finish(self.now);
                }
            }
            Ev::Wake => {}
            Ev::Window => {
                self.window();
                if self.now + self.p.window_s <= self.duration {
                    self.at(self.now + self.p.window_s, Ev::Window);
                }
            }
            Ev::Reclaim(k) => self.reclaim(k),
            Ev::Lease => {
                if let Some(r) = self.replicas.as_mut() {
                    let next = r.lease_rounds(self.now);
                    if next <= self.duration {
                        self.at(next, Ev::Lease);
                    }
                }
            }
            Ev::Control if self.p.faults.stalled(self.now) => {
                if self.now + 60.0 <= self.duration {
                    self.at(self.now + 60.0, Ev::Control);
                }
            }
            Ev::Control => {
                // SageMaker's target tracking, every minute (the MArk strategies plan in
                // `window`, through the controller)
                let fleet = self.fleet();
                let actions = self
                    .sagemaker
                    .as_mut()
                    .expect("sagemaker scaler")
                    .tick(self.now, &fleet);
                self.apply(actions);
                if self.now + 60.0 <= self.duration {
                    self.at(self.now + 60.0, Ev::Control);
                }
            }
            Ev::Sample => {
                self.sample();
                if self.now + self.p.sample_s <= self.duration + self.p.sample_s {
                    self.at(self.now + self.p.sample_s, Ev::Sample);
                }
            }
            Ev::Mass => {
                if let Some((_, share)) = self.p.mass_interruption {
                    let spot: Vec<usize> = (0..self.instances.len())
                        .filter(|&i| {
                            self.instances[i].alive() && self.instances[i].market == Market::Spot
                        })
                        .collect();
                    let n = (spot.len() as f64 * share).ceil() as usize;
                    for &i in spot.iter().take(n) {
                        self.interruptions += 1;
                        self.end(i);
                    }
                }
            }
        }
    }
}

mod admission;
mod cloud;
mod dispatch;
mod finish;
mod host;
mod lane;
pub mod replicas;
mod run;
mod window;
use lane::Lane;
pub use lane::LaneSpec;
pub use run::{run, run_lanes};
