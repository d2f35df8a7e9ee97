//! `mark simulate` (crate `mark-sim`): trace-driven, discrete-event simulation of serving a workload on a simulated
//! cloud, with the same controller, policies, catalog and batcher logic as `mark serve`.
//!
//! - `workload`: arrival streams (CSV rates, MAP/MMPP, generators);
//! - `fleet`: instance types and instances (service times, billing, spot, credits);
//! - `lambda`: the simulated function (warm/cold, concurrency, GB-s billing);
//! - `baselines`: the strategies compared and their assumptions;
//! - `params`: a run's knobs and policies; `engine`: the event loop;
//! - `faults`: cloud faults (`--cloud-faults`): list lag, boot failures, refused launches,
//!   stalls, throttling, spot reclaims with notice;
//! - `stats`, `report`, `plot`: latency histogram, summary and table, SVG figures;
//! - `replay`: a recorded trace's setting, and the calibration of its replay against live;
//! - `cli`, `args`: the command line;
//! - `trace`: the records of a live trace (`schema`) and reading a trace directory (`reader`),
//!   which the gateway's recorder writes.
//!
//! Built on `mark-core` and `mark-policy-host` only: no server, ONNX Runtime or AWS crate.

pub mod args;
pub mod baselines;
pub mod cli;
pub mod combine;
pub mod engine;
pub use mark_core::control::faults;
pub mod fleet;
pub mod lambda_model;
pub mod params;
pub mod plot;
pub mod replay;
pub mod report;
pub mod stats;
pub mod trace;
pub mod workload;

#[cfg(test)]
mod tests;

// the core and the policy host under the names the gateway gives them
pub(crate) use mark_core::{control, profile};
pub(crate) use mark_policy_host as policy;
pub(crate) mod batching {
    pub(crate) use mark_core::{admission, spill};
    pub(crate) use mark_policy_host::batch_policy as size_policy;
}

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};

use baselines::Strategy;
use fleet::TypeModel;
use params::{Ablation, Policies, SimParams};
use report::Summary;
use workload::Workload;

use crate::batching::size_policy::{BatchPolicy, MarkAdaptive, SloMaxBatch, SlotBatchPolicy};
use crate::control::catalog::Catalog;
use crate::policy::caller::PolicyCaller;
use crate::policy::engine::PolicyEngine;
use crate::policy::slot::PolicySlots;
use crate::profile::LatencyProfile;

/// The profile `mark simulate` uses without `--profile` (ResNet-18 on the development VM).
pub const DEFAULT_PROFILE: &str = include_str!("../../examples/sim/profile-resnet18.toml");

/// Each bundled model's CPU profile (the development VM), for `--workload MODEL=SPEC` without
/// `--profile MODEL=FILE`.
pub const BUNDLED_PROFILES: [(&str, &str); 3] = [
    ("resnet18", DEFAULT_PROFILE),
    ("mlp", include_str!("../../examples/sim/profile-mlp.toml")),
    (
        "magika",
        include_str!("../../examples/sim/profile-magika.toml"),
    ),
];

/// A further model sharing the fleet (`--workload MODEL=SPEC` repeated).
#[derive(Clone)]
pub struct SimModel {
    /// Model name (`capacity_rps.<model>` and `profile.<model>` in the catalog).
    pub name: String,
    /// Its latency profile.
    pub profile: LatencyProfile,
    /// Its arrivals.
    pub workload: Workload,
}

/// One model's own limits (none: the run's `--slo-ms` / `--max-batch`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ModelLimits {
    /// Its latency objective, ms.
    pub slo_ms: Option<f64>,
    /// Its largest batch.
    pub max_batch: Option<u32>,
}

impl SimOptions {
    /// Model `name`'s SLO (ms) and largest batch.
    pub fn limits(&self, name: &str) -> (f64, u32) {
        let own = self.model_limits.get(name).copied().unwrap_or_default();
        (
            own.slo_ms.unwrap_or(self.params.slo_ms),
            own.max_batch.unwrap_or(self.params.max_batch),
        )
    }
}

/// Where mark-rs's policies come from.
#[derive(Clone)]
pub enum PolicySource {
    /// The native defaults of `mark-policies`.
    Native,
    /// Policy slots (WASM components, native fallback per call), as `mark serve` runs them.
    Slots(Arc<PolicyEngine>, Arc<PolicySlots>),
}

/// Policy limits for simulation: the same memory limit as `mark serve`, but 1 s deadlines (5 s
/// for predictor and provisioner). Deadlines are wall-clock; in a simulation they only guard
/// against a runaway policy, and a preempted call must not turn into a fallback that changes an
/// otherwise deterministic result.
pub fn policy_limits() -> crate::policy::engine::PolicyLimits {
    crate::policy::engine::PolicyLimits {
        batcher_deadline: std::time::Duration::from_secs(1),
        predictor_deadline: std::time::Duration::from_secs(5),
        provisioner_deadline: std::time::Duration::from_secs(5),
        tick: std::time::Duration::from_millis(10),
        ..Default::default()
    }
}

/// Everything one `mark simulate` needs.
#[derive(Clone)]
pub struct SimOptions {
    /// The catalog.
    pub catalog: Catalog,
    /// Model name (for `capacity_rps.<model>` in the catalog).
    pub model: String,
    /// The model's latency profile.
    pub profile: LatencyProfile,
    /// The workload.
    pub workload: Workload,
    /// Further models on the same fleet, each with its own workload (empty: one model).
    pub extra_models: Vec<SimModel>,
    /// A model's own SLO and largest batch where they differ from `params`' (`--model-slo`,
    /// `--model-max-batch`), as each model's config sets them in `mark serve`.
    pub model_limits: BTreeMap<String, ModelLimits>,
    /// How the workload was given (for the report).
    pub workload_spec: String,
    /// Strategies to run, each with spot allowed or not.
    pub runs: Vec<(Strategy, bool)>,
    /// Knobs.
    pub params: SimParams,
    /// mark-rs's policies.
    pub policies: PolicySource,
    /// With `--policy`: the candidate's policies and its row's name; `policies` are then the
    /// defaults, run beside it.
    pub candidate: Option<(PolicySource, String)>,
    /// Strategies simulated at once (threads).
    pub threads: usize,
    /// Draw a progress bar on stderr.
    pub progress: bool,
}

/// The policies one strategy runs with.
pub fn policies_for(strategy: Strategy, src: &PolicySource, ablate: Ablation) -> Policies {
    let native_predict = || -> params::Predict {
        Box::new(|_: &str, h: &[f64], iv: f64, n: u32| mark_policies::predictor::predict(h, iv, n))
    };
    if strategy == Strategy::MarkRs && ablate.margin {
        // the ablation's predictor: the default's smoothing without its margin (native)
        let mut p = policies_for(strategy, src, Ablation::default());
        p.predict = Box::new(|_: &str, h: &[f64], _iv: f64, n: u32| {
            mark_policies::predictor::predict_without_margin(h, n)
        });
        return p;
    }
    let native_provision = || -> params::Provision { Box::new(|i: &_| i.native()) };
    match (strategy, src) {
        (Strategy::MarkRs, PolicySource::Slots(engine, slots)) => {
            let mut pred = PolicyCaller::new(engine.clone(), slots.predictor.clone());
            let mut prov = PolicyCaller::new(engine.clone(), slots.provisioner.clone());
            Policies {
                batch: Box::new(SlotBatchPolicy(PolicyCaller::new(
                    engine.clone(),
                    slots.batcher.clone(),
                ))),
                predict: Box::new(move |m: &str, h: &[f64], iv: f64, n: u32| {
                    pred.predict(m, h, iv, n)
                }),
                provision: Box::new(move |i: &_| prov.provision(i)),
            }
        }
        (Strategy::MarkReleased, _) => Policies {
            batch: Box::new(SloMaxBatch) as Box<dyn BatchPolicy>,
            predict: Box::new(|_: &str, h: &[f64], _iv: f64, n: u32| {
                mark_policies::predictor::flat_baseline(h, n)
            }),
            provision: native_provision(),
        },
        _ => Policies {
            batch: Box::new(MarkAdaptive),
            predict: native_predict(),
            provision: native_provision(),
        },
    }
}

/// Runs every requested strategy (several at once on `threads` threads) and returns the summary,
/// in the order of `opts.runs`, with cost ratios against sagemaker filled in.
pub fn simulate(opts: &SimOptions) -> Summary {
    let mut models = vec![SimModel {
        name: opts.model.clone(),
        profile: opts.profile.clone(),
        workload: opts.workload.clone(),
    }];
    models.extend(opts.extra_models.iter().cloned());
    let limits: Vec<(f64, u32)> = models.iter().map(|m| opts.limits(&m.name)).collect();
    let types: Vec<Vec<TypeModel>> = models
        .iter()
        .zip(&limits)
        .map(|(m, &(slo_ms, max_batch))| {
            let ab = opts.params.ablate;
            TypeModel::from_catalog(
                &opts.catalog,
                &m.name,
                &m.profile,
                slo_ms,
                max_batch,
                fleet::Planning {
                    // without the capacity-at-SLO rule's half: batches may take the whole SLO
                    slo_factor: if ab.slo_rule { 2.0 } else { 1.0 },
                    sustained: !ab.burst_sizing,
                },
            )
        })
        .collect();
    let n = opts.runs.len();
    let progress = Arc::new(Mutex::new(vec![0.0f64; n]));
    let results: Mutex<Vec<Option<report::PolicyReport>>> = Mutex::new(vec![None; n]);
    let next = Mutex::new(0usize);
    std::thread::scope(|scope| {
        for _ in 0..opts.threads.clamp(1, n.max(1)) {
            scope.spawn(|| loop {
                let k = {
                    let mut g = next.lock().expect("queue lock");
                    let k = *g;
                    *g += 1;
                    k
                };
                let Some(&(strategy, spot)) = opts.runs.get(k) else {
                    return;
                };
                let prog = progress.clone();
                let labels: Vec<String> = opts
                    .runs
                    .iter()
                    .map(|(s, sp)| format!("{}{}", s.name(), if *sp { "+spot" } else { "" }))
                    .collect();
                let show = opts.progress;
                let mut on_progress = move |f: f64| {
                    if !show {
                        return;
                    }
                    let mut g = prog.lock().expect("progress lock");
                    g[k] = f;
                    let mut line = String::from("\r");
                    for (l, v) in labels.iter().zip(g.iter()) {
                        let filled = (v * 10.0).round() as usize;
                        line.push_str(&format!(
                            "{l} [{}{}] ",
                            "#".repeat(filled),
                            ".".repeat(10 - filled.min(10))
                        ));
                    }
                    let mut e = std::io::stderr();
                    let _ = e.write_all(line.as_bytes());
                    let _ = e.flush();
                };
                let r = run_one(
                    opts,
                    &models,
                    &types,
                    &limits,
                    strategy,
                    spot,
                    &mut on_progress,
                );
                results.lock().expect("results lock")[k] = Some(r);
            });
        }
    });
    if opts.progress {
        eprintln!();
    }
    let mut s = Summary {
        workload: opts.workload_spec.clone(),
        seed: opts.params.seed,
        duration_s: models
            .iter()
            .map(|m| m.workload.duration_s())
            .fold(0.0, f64::max),
        slo_ms: opts.params.slo_ms,
        policies: results
            .into_inner()
            .expect("results")
            .into_iter()
            .flatten()
            .collect(),
        comparison: Vec::new(),
    };
    if let Some((_, label)) = &opts.candidate {
        for p in &mut s.policies {
            if p.name == Strategy::Candidate.name() {
                p.name = label.clone();
            }
        }
        s.compare(label);
    }
    s.fill_ratios();
    s
}

/// One strategy over every model: mark-rs plans one fleet for the mix; every other strategy, and
/// `mark-rs-per-model`, runs each model on its own fleet (model `m`'s arrivals seeded `seed + m`
/// either way, so both see the same requests).
fn run_one(
    opts: &SimOptions,
    models: &[SimModel],
    types: &[Vec<TypeModel>],
    limits: &[(f64, u32)],
    strategy: Strategy,
    spot: bool,
    progress: &mut dyn FnMut(f64),
) -> report::PolicyReport {
    let engine_strategy = match strategy {
        Strategy::MarkRsPerModel | Strategy::Candidate => Strategy::MarkRs,
        Strategy::SageMakerMme => Strategy::SageMaker,
        s => s,
    };
    // behind the gateway (mark-rs, MArk as released), its own executors are a backend too
    let with_gateway: Vec<Vec<TypeModel>>;
    let types = if opts.params.gateway_executors > 0
        && matches!(engine_strategy, Strategy::MarkRs | Strategy::MarkReleased)
    {
        with_gateway = types
            .iter()
            .zip(models.iter().zip(limits))
            .map(|(t, (m, &(slo_ms, max_batch)))| {
                let mut t = t.clone();
                t.push(TypeModel::gateway(&m.profile, slo_ms, max_batch));
                t
            })
            .collect();
        &with_gateway
    } else {
        types
    };
    let lambda = opts.catalog.lambda.clone();
    let source = match (strategy, &opts.candidate) {
        (Strategy::Candidate, Some((c, _))) => c,
        _ => &opts.policies,
    };
    let policies = || policies_for(engine_strategy, source, opts.params.ablate);
    // one shared fleet for the mix: mark-rs, a candidate policy set run like it, and
    // SageMaker's multi-model endpoint
    if models.len() > 1
        && matches!(
            strategy,
            Strategy::MarkRs | Strategy::Candidate | Strategy::SageMakerMme
        )
    {
        let lanes: Vec<engine::LaneSpec<'_>> = models
            .iter()
            .zip(types.iter().zip(limits))
            .map(|(m, (t, &(slo_ms, max_batch)))| engine::LaneSpec {
                name: m.name.clone(),
                workload: &m.workload,
                types: t.clone(),
                slo_ms,
                max_batch,
            })
            .collect();
        let mut r = engine::run_lanes(
            &lanes,
            lambda,
            engine_strategy,
            spot,
            &opts.params,
            policies(),
            progress,
        );
        r.name = strategy.name().to_string();
        return r;
    }
    let mut runs: Vec<report::PolicyReport> = models
        .iter()
        .zip(types)
        .enumerate()
        .map(|(k, (m, t))| {
            let params = SimParams {
                seed: opts.params.seed.wrapping_add(k as u64),
                slo_ms: limits[k].0,
                max_batch: limits[k].1,
                ..opts.params.clone()
            };
            engine::run(
                &m.workload,
                t.clone(),
                lambda.clone(),
                engine_strategy,
                spot,
                &params,
                policies(),
                progress,
            )
        })
        .collect();
    if runs.len() == 1 {
        let mut r = runs.pop().expect("one run");
        r.name = strategy.name().to_string();
        return r;
    }
    let names: Vec<(String, f64)> = models
        .iter()
        .zip(limits)
        .map(|(m, l)| (m.name.clone(), l.0))
        .collect();
    combine::combine(strategy.name(), &names, runs)
}

/// Writes `summary.json`, `table.txt` and the SVG figures into `dir`.
pub fn write_report(s: &Summary, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("summary.json"),
        serde_json::to_string_pretty(s).map_err(std::io::Error::other)?,
    )?;
    std::fs::write(dir.join("table.txt"), s.table())?;
    std::fs::write(dir.join("capacity.svg"), plot::capacity(s))?;
    std::fs::write(dir.join("cost.svg"), plot::cost(s))?;
    std::fs::write(dir.join("latency_ccdf.svg"), plot::ccdf(s))?;
    Ok(())
}
