//! The strategies `mark simulate` compares, and the assumptions each encodes.
//!
//! - `sagemaker`: an endpoint on one instance type (CPU or GPU: the lowest price per request at
//!   batch 1), priced at the EC2 price × the catalog's `sagemaker_markup`; no batching (batch 1,
//!   as MArk's SageMaker baseline), no spot, no Lambda. Target tracking on `InvocationsPerInstance` with AWS's
//!   recommended target (`max RPS × 0.5 safety factor × 60` per minute): scale out after 3
//!   minutes above target, scale in after 15 minutes below 90% of it (CloudWatch's alarm
//!   periods), 300 s cooldowns, at least one instance, new instances serving after the type's
//!   launch time + 180 s (endpoint provisioning).
//! - `static-peak`: the greedy provisioner's fleet for the trace's peak interval rate, warm from
//!   the start and never changed; no Lambda.
//! - `lambda-only`: every request is its own Lambda invocation (cold starts, concurrency limit);
//!   no instances.
//! - `mark-released`: MArk as released: flat `1.2 × max(last 5 interval peaks)` forecast, the
//!   greedy provisioner, MArk's SLO-ceiling batcher, no Lambda, no SLO-triggered launches.
//! - `mark-rs`: our defaults (or the `--policy` components): the Holt predictor with its adaptive
//!   margin, the greedy provisioner, the adaptive batcher, Lambda spill-over when instances are
//!   saturated, and an out-of-cycle burstable launch when attainment drops below target.
//!
//! Every strategy starts with a warm fleet for the first interval's rate (static-peak: for the
//! peak), so none pays a cold start that the others do not.

use mark_policies::types::{InstanceType, Market};

use super::fleet::TypeModel;
use super::params::{Policies, SimParams};
use super::workload::Workload;
use crate::control::controller::{Action, FleetInstance};

/// Seconds SageMaker adds to an instance's launch time (endpoint provisioning).
pub const SAGEMAKER_EXTRA_LAUNCH_S: f64 = 180.0;

/// A strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Strategy {
    /// SageMaker-style target tracking.
    SageMaker,
    /// A fleet for the peak, all the time.
    StaticPeak,
    /// Lambda for everything.
    LambdaOnly,
    /// MArk as released.
    MarkReleased,
    /// MArk-rs defaults.
    MarkRs,
    /// MArk-rs run once per model, each model on its own fleet (what running MArk per model
    /// costs; the same as `MarkRs` for one model).
    MarkRsPerModel,
    /// MArk-rs with the `--policy` components (a candidate), beside `MarkRs` on the defaults;
    /// its row is named after the component files.
    Candidate,
    /// SageMaker's multi-model endpoint: one endpoint (one type, target tracking, no batching)
    /// for every model, each instance serving them all (the same as `SageMaker` for one model).
    SageMakerMme,
}

impl Strategy {
    /// Every strategy, in report order.
    pub const ALL: [Strategy; 5] = [
        Strategy::SageMaker,
        Strategy::StaticPeak,
        Strategy::LambdaOnly,
        Strategy::MarkReleased,
        Strategy::MarkRs,
    ];

    /// Its `--baseline` name.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::SageMaker => "sagemaker",
            Strategy::StaticPeak => "static-peak",
            Strategy::LambdaOnly => "lambda-only",
            Strategy::MarkReleased => "mark-released",
            Strategy::MarkRs => "mark-rs",
            Strategy::MarkRsPerModel => "mark-rs-per-model",
            Strategy::Candidate => "candidate",
            Strategy::SageMakerMme => "sagemaker-mme",
        }
    }

    /// Parses a `--baseline` name.
    pub fn parse(s: &str) -> Option<Strategy> {
        Strategy::ALL
            .into_iter()
            .chain([Strategy::MarkRsPerModel, Strategy::SageMakerMme])
            .find(|x| x.name() == s)
    }
}

/// Requests/s one instance of `t` serves at batch 1 within the SLO (SageMaker on CPU).
pub fn batch1_capacity(t: &TypeModel, slo_ms: f64) -> f64 {
    // the first profile point is batch 1 in profiles `mark profile` writes
    let p99 = t
        .profile
        .first()
        .map_or(0.0, |p| p.latency_us / f64::from(p.batch.max(1)));
    if p99 > 0.0 && p99 <= slo_ms * 1000.0 / 2.0 {
        1e6 / p99 * t.baseline_share()
    } else {
        0.0
    }
}

/// The type a SageMaker endpoint would use: its best single type, CPU or GPU, at batch 1 (no
/// batching, as MArk's SageMaker baseline): the lowest price per request it serves.
pub fn sagemaker_type(types: &[TypeModel], slo_ms: f64) -> Option<usize> {
    (0..types.len())
        .filter(|&i| batch1_capacity(&types[i], slo_ms) > 0.0)
        .min_by(|&a, &b| {
            let c = |i: usize| types[i].spec.price_on_demand / batch1_capacity(&types[i], slo_ms);
            c(a).total_cmp(&c(b))
        })
}

/// The warm fleet at t = 0: (type index, market, count).
pub fn initial_fleet(
    strategy: Strategy,
    workload: &Workload,
    types: &[TypeModel],
    catalog: &[InstanceType],
    p: &SimParams,
    policies: &mut Policies,
) -> Vec<(usize, Market, u32)> {
    let first = workload.mean_rate_at(0.0);
    match strategy {
        Strategy::LambdaOnly => Vec::new(),
        Strategy::SageMaker | Strategy::SageMakerMme => {
            let Some(ty) = sagemaker_type(types, p.slo_ms) else {
                return Vec::new();
            };
            let per = batch1_capacity(&types[ty], p.slo_ms) * 0.5;
            vec![(ty, Market::OnDemand, ((first / per).ceil() as u32).max(1))]
        }
        Strategy::StaticPeak
        | Strategy::MarkReleased
        | Strategy::MarkRs
        | Strategy::MarkRsPerModel
        | Strategy::Candidate => {
            let rate = if strategy == Strategy::StaticPeak {
                workload.peak_rate()
            } else {
                first
            };
            let slo = mark_policies::types::Slo {
                latency_ms: p.slo_ms,
                attainment_target: p.attainment_target,
            };
            // static-peak is a baseline: the native greedy, whatever policy is loaded
            let plan = if strategy == Strategy::StaticPeak {
                mark_policies::provisioner::provision(&[rate], p.interval_s, &[], catalog, slo)
            } else {
                let models = [mark_policies::mix::alone("", &[rate], slo, catalog)];
                (policies.provision)(&crate::control::controller::ProvisionInput {
                    forecast: &[rate],
                    interval_s: p.interval_s,
                    fleet: &[],
                    catalog,
                    slo,
                    models: &models,
                })
            };
            plan.map(|plan| {
                plan.targets
                    .iter()
                    .filter_map(|t| {
                        types
                            .iter()
                            .position(|x| x.spec.name == t.instance_type)
                            .map(|i| (i, t.market, t.count))
                    })
                    .collect()
            })
            .unwrap_or_default()
        }
    }
}

/// SageMaker's target-tracking autoscaler, ticked every minute.
#[derive(Debug, Clone)]
pub struct SageMakerScaler {
    ty: Option<usize>,
    type_name: String,
    instance_rps: f64,
    target_per_min: f64,
    /// Arrivals since the last tick (the engine counts them).
    pub arrivals: u64,
    above: u32,
    below: u32,
    last_out: f64,
    last_any: f64,
}

/// One model of a multi-model endpoint: its curves per type, its SLO (ms) and its share of
/// the endpoint's requests.
pub struct EndpointModel<'a> {
    pub types: &'a [TypeModel],
    pub slo_ms: f64,
    pub share: f64,
}

/// A multi-model endpoint's type and what one instance of it serves of the mix at batch 1:
/// the type with the lowest price per request of the mix, an instance's time shared by the
/// models' shares (the time-share rule at batch 1). A model no type serves within its SLO is left
/// out of the choice (it misses on the endpoint, as on an endpoint of its own); with one model,
/// its own batch-1 capacity.
pub fn endpoint_type(models: &[EndpointModel<'_>]) -> Option<(usize, f64)> {
    let n = models.first()?.types.len();
    let cap = |m: &EndpointModel<'_>, i: usize| batch1_capacity(&m.types[i], m.slo_ms);
    let served: Vec<&EndpointModel<'_>> = models
        .iter()
        .filter(|m| (0..n).any(|i| cap(m, i) > 0.0))
        .collect();
    let mixed = |i: usize| -> f64 {
        if let [one] = served[..] {
            return cap(one, i);
        }
        let mut time = 0.0;
        for m in &served {
            let c = cap(m, i);
            if c <= 0.0 {
                return 0.0;
            }
            time += m.share / c;
        }
        if time > 0.0 {
            1.0 / time
        } else {
            0.0
        }
    };
    (0..n)
        .map(|i| (i, mixed(i)))
        .filter(|&(_, c)| c > 0.0)
        .min_by(|a, b| {
            let price = |(i, c): (usize, f64)| models[0].types[i].spec.price_on_demand / c;
            price(*a).total_cmp(&price(*b))
        })
}

impl SageMakerScaler {
    /// The scaler for the endpoint's type.
    pub fn new(types: &[TypeModel], p: &SimParams) -> Self {
        Self::for_endpoint(&[EndpointModel {
            types,
            slo_ms: p.slo_ms,
            share: 1.0,
        }])
    }

    /// The scaler of an endpoint serving `models` (several: a multi-model endpoint), its
    /// target half of what an instance serves of the mix at batch 1.
    pub fn for_endpoint(models: &[EndpointModel<'_>]) -> Self {
        let chosen = endpoint_type(models);
        let ty = chosen.map(|c| c.0);
        SageMakerScaler {
            ty,
            type_name: ty
                .map(|i| models[0].types[i].spec.name.clone())
                .unwrap_or_default(),
            instance_rps: chosen.map_or(2.0 / 60.0, |(_, c)| c),
            target_per_min: chosen.map_or(1.0, |(_, c)| c * 0.5 * 60.0),
            arrivals: 0,
            above: 0,
            below: 0,
            last_out: f64::NEG_INFINITY,
            last_any: f64::NEG_INFINITY,
        }
    }

    /// The endpoint's type (None: no type serves every model within its SLO).
    pub fn endpoint(&self) -> Option<usize> {
        self.ty
    }

    /// Requests/s one instance serves at batch 1 (twice the target).
    pub fn instance_rps(&self) -> f64 {
        self.instance_rps
    }

    /// One minute passed: the actions target tracking takes.
    pub fn tick(&mut self, now: f64, fleet: &[FleetInstance]) -> Vec<Action> {
        let Some(_) = self.ty else {
            return Vec::new();
        };
        let in_service = fleet.iter().filter(|i| i.ready).count().max(1) as f64;
        let total = fleet.len() as u32;
        let metric = self.arrivals as f64 / in_service;
        self.arrivals = 0;
        if metric > self.target_per_min {
            self.above += 1;
            self.below = 0;
        } else if metric < 0.9 * self.target_per_min {
            self.below += 1;
            self.above = 0;
        } else {
            self.above = 0;
            self.below = 0;
        }
        let desired = ((in_service * metric / self.target_per_min).ceil() as u32).max(1);
        if self.above >= 3 && now - self.last_out >= 300.0 && desired > total {
            self.last_out = now;
            self.last_any = now;
            self.above = 0;
            return vec![Action::Launch {
                instance_type: self.type_name.clone(),
                market: Market::OnDemand,
                count: desired - total,
            }];
        }
        if self.below >= 15 && now - self.last_any >= 300.0 && desired < total {
            self.last_any = now;
            self.below = 0;
            let mut idle: Vec<&FleetInstance> = fleet.iter().filter(|i| i.ready).collect();
            idle.sort_by(|a, b| b.launched_at.total_cmp(&a.launched_at));
            return idle
                .iter()
                .take((total - desired) as usize)
                .map(|i| Action::Terminate { id: i.id.clone() })
                .collect();
        }
        Vec::new()
    }
}
