//! The `mark simulate` command line: flags, validation (bad input is reported for exit 64), the
//! run, and the report.

use std::collections::BTreeMap;
use std::path::PathBuf;

pub use super::args::SimulateArgs;
use super::baselines::Strategy;
use super::params::SimParams;
use super::workload::Workload;
use crate::control::catalog::Catalog;
use crate::policy::startup::{self, PolicyOptions};

/// Why `mark simulate` stopped.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    /// Bad input: a flag, the workload, the catalog, the profile or a policy (exit 64).
    #[error("{0}")]
    Input(String),
    /// Writing the report or the exported workload failed (exit 1).
    #[error("writing the output: {0}")]
    Output(#[from] std::io::Error),
}

/// Runs `mark simulate`.
pub fn run(mut a: SimulateArgs) -> Result<(), SimulateError> {
    use SimulateError::Input;
    let models = split_models(&mut a).map_err(Input)?;
    // a recorded trace brings its own setting (model, SLO, catalog, profile, timing, fleet)
    let trace = match a.workload.strip_prefix("trace:") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            let t = crate::trace::reader::read(&dir, None).map_err(|e| Input(e.to_string()))?;
            let setting = super::replay::apply(&t, &mut a, &dir).map_err(Input)?;
            eprintln!(
                "replaying {}: model {}, {} requests over {:.0} s in {} segment(s), fleet at start {:?}{}",
                dir.display(),
                a.model,
                t.live().requests,
                t.duration_s,
                t.segments,
                setting.fleet,
                if t.dropped > 0 { format!(", {} records dropped while recording", t.dropped) } else { String::new() }
            );
            Some((t, setting))
        }
        None => None,
    };
    let replica_checks = [
        ((1..=64).contains(&a.replicas), "--replicas: 1 to 64"),
        (
            a.replica_loss.is_finite() && (0.0..=0.9).contains(&a.replica_loss),
            "--replica-loss: a share in [0, 0.9]",
        ),
        (
            a.replica_skew.is_finite() && a.replica_skew.abs() <= 3600.0,
            "--replica-skew: seconds within ±3600",
        ),
        (
            a.replica_lease.is_finite() && (2.0..=300.0).contains(&a.replica_lease),
            "--replica-lease: seconds in [2, 300]",
        ),
        (
            a.replica_kill_at.is_none_or(|t| t.is_finite() && t >= 0.0),
            "--replica-kill-at: a second of the run",
        ),
    ];
    if let Some((_, why)) = replica_checks.iter().find(|(ok, _)| !ok) {
        return Err(Input((*why).to_string()));
    }
    if !(a.load_scale.is_finite() && a.load_scale > 0.0 && a.load_scale <= 1000.0) {
        return Err(Input(format!(
            "--load-scale {}: must be in (0, 1000]",
            a.load_scale
        )));
    }
    let parsed = match &trace {
        Some((t, _)) => Ok(super::workload::from_trace(t, a.interval)),
        None => Workload::parse(&a.workload),
    };
    let workload = match parsed {
        Ok(w) if a.load_scale == 1.0 => w,
        Ok(w) => w.scaled(a.load_scale),
        Err(e) => return Err(Input(e.to_string())),
    };
    let (mut rec_catalog, mut rec_profile, rec_fleet) = match &trace {
        Some((_, s)) => (s.catalog.clone(), s.profile.clone(), Some(s.fleet.clone())),
        None => (None, None, None),
    };
    // the gateway's executors the trace recorded (1 in traces of older builds: the default)
    let rec_executors = trace.as_ref().map(|(t, _)| {
        t.context
            .as_ref()
            .map_or(1, |c| if c.executors == 0 { 1 } else { c.executors })
    });
    // and the host's overhead it measured on them
    let (rec_host, rec_worker) = trace
        .as_ref()
        .map(|(t, _)| (t.host_overhead_ms(), t.worker_overhead_ms()))
        .unwrap_or_default();
    if let Some(f) = &a.export_workload {
        super::workload::write_csv(f, &workload)?;
        println!("wrote {}", f.display());
        return Ok(());
    }
    let catalog = match rec_catalog
        .take()
        .filter(|_| a.catalog.is_none())
        .map_or_else(
            || {
                let default = PathBuf::from("examples/catalog-us-east-1.toml");
                Catalog::load(a.catalog.as_ref().unwrap_or(&default))
            },
            Ok,
        ) {
        Ok(c) => c,
        Err(e) => return Err(Input(e.to_string())),
    };
    let profile = match (rec_profile.take(), &a.profile) {
        (Some(p), _) => p,
        (None, None) if named(&a.workloads[0]).is_some() => {
            profile_of(&a, &a.model).map_err(Input)?
        }
        (None, None) => toml::from_str(super::DEFAULT_PROFILE)
            .map_err(|e| Input(format!("embedded profile: {e}")))?,
        (None, Some(p)) => match crate::profile::LatencyProfile::load(p) {
            Ok(Some(p)) if !p.points.is_empty() => p,
            Ok(_) => return Err(Input(format!("{}: no profile points", p.display()))),
            Err(e) => return Err(Input(e.to_string())),
        },
    };
    let extra_models = extra_models(&a, &models).map_err(Input)?;
    let names: Vec<&str> = std::iter::once(a.model.as_str())
        .chain(extra_models.iter().map(|m| m.name.as_str()))
        .collect();
    let model_limits = model_limits(&a, &names).map_err(Input)?;
    let mut strategies = Vec::new();
    for b in &a.baselines {
        match Strategy::parse(b) {
            Some(s) => strategies.push(s),
            None => {
                return Err(Input(format!(
                    "--baseline {b}: unknown (sagemaker, static-peak, lambda-only, mark-released, mark-rs, mark-rs-per-model, sagemaker-mme)"
                )))
            }
        }
    }
    if strategies.is_empty() {
        strategies = Strategy::ALL.to_vec();
        if !extra_models.is_empty() {
            strategies.push(Strategy::MarkRsPerModel);
            strategies.push(Strategy::SageMakerMme);
        }
    }
    let markets: &[bool] = match a.spot.as_str() {
        "on-demand" => &[false],
        "spot" => &[true],
        "both" => &[false, true],
        m => return Err(Input(format!("--spot {m}: on-demand, spot or both"))),
    };
    let mut runs = Vec::new();
    for s in strategies {
        for &spot in markets {
            // sagemaker never uses spot and lambda-only has no instances: one run each
            if spot
                && matches!(
                    s,
                    Strategy::SageMaker | Strategy::SageMakerMme | Strategy::LambdaOnly
                )
                && markets.len() > 1
            {
                continue;
            }
            runs.push((s, spot));
        }
    }
    if let Some(m) = a.min_instances.filter(|m| *m > a.max_instances) {
        return Err(Input(format!(
            "--min-instances {m}: more than --max-instances {}",
            a.max_instances
        )));
    }
    let faults = match &a.cloud_faults {
        None => crate::faults::CloudFaults::default(),
        Some(f) => {
            let text = std::fs::read_to_string(f)
                .map_err(|e| Input(format!("--cloud-faults {}: {e}", f.display())))?;
            let faults = crate::faults::CloudFaults::parse(&text, &f.display().to_string())
                .map_err(Input)?;
            faults
                .check_types(catalog.instances.iter().map(|t| t.name.as_str()))
                .map_err(|e| Input(format!("--cloud-faults {}: {e}", f.display())))?;
            faults
        }
    };
    let mass = match &a.mass_interruption {
        None => None,
        Some(m) => match m
            .split_once(':')
            .and_then(|(t, f)| Some((t.parse::<f64>().ok()?, f.parse::<f64>().ok()?)))
        {
            Some((t, f)) if t >= 0.0 && (0.0..=1.0).contains(&f) => Some((t, f)),
            _ => {
                return Err(Input(format!(
                    "--mass-interruption {m}: SECONDS:SHARE with SHARE in [0, 1]"
                )))
            }
        },
    };
    if !(a.slo_ms > 0.0
        && a.interval > 0.0
        && a.window > 0.0
        && a.window <= a.interval
        && a.max_batch >= 1)
    {
        return Err(Input(
            "--slo-ms, --interval, --window must be > 0, --window <= --interval, --max-batch >= 1"
                .into(),
        ));
    }
    let slowdown = match &a.host_slowdown {
        None => Vec::new(),
        Some(s) => super::params::parse_slowdown(s)
            .map_err(|e| Input(format!("--host-slowdown {s}: {e}")))?,
    };
    if a.live_latency != "on" && a.live_latency != "off" {
        return Err(Input(format!(
            "--live-latency {}: expected on or off",
            a.live_latency
        )));
    }
    if a.on_deadline != "reject" && a.on_deadline != "serve" {
        return Err(Input(format!(
            "--on-deadline {}: expected reject or serve",
            a.on_deadline
        )));
    }
    let ablate = crate::params::Ablation::parse(&a.ablate).map_err(Input)?;
    let source = |load: &[(crate::policy::PolicyKind, PathBuf)]| {
        if a.native_policies && load.is_empty() {
            return Ok(super::PolicySource::Native);
        }
        let popts = PolicyOptions {
            load: load.to_vec(),
            native_only: a.native_policies,
            limits: super::policy_limits(),
        };
        match startup::policies(&popts) {
            Ok((e, s)) => Ok(super::PolicySource::Slots(e, s)),
            Err(e) => Err(Input(format!("{e:#}"))),
        }
    };
    // with --policy: the candidate beside the defaults, on the same arrivals
    let policies = source(&[])?;
    let candidate = if a.policies.is_empty() {
        None
    } else {
        let label = a
            .policies
            .iter()
            .map(|(_, f)| {
                f.file_stem()
                    .map_or("candidate".into(), |s| s.to_string_lossy().into_owned())
            })
            .collect::<Vec<_>>()
            .join("+");
        runs = runs
            .into_iter()
            .flat_map(|(s, spot)| {
                let mut v = vec![(s, spot)];
                if s == Strategy::MarkRs {
                    v.push((Strategy::Candidate, spot));
                }
                v
            })
            .collect();
        Some((source(&a.policies)?, label))
    };
    let opts = super::SimOptions {
        params: SimParams {
            seed: a.seed,
            slo_ms: a.slo_ms,
            attainment_target: a.attainment_target,
            interval_s: a.interval,
            window_s: a.window,
            max_batch: a.max_batch,
            spot_interruptions_per_hour: a.spot_interruptions_per_hour,
            mass_interruption: mass,
            max_instances: a.max_instances,
            launches_per_hour: if ablate.change_budget {
                u32::MAX
            } else {
                a.max_launches_per_hour
            },
            terminations_per_hour: if ablate.change_budget {
                u32::MAX
            } else {
                a.max_terminations_per_hour
            },
            sagemaker_markup: catalog.sagemaker_markup,
            reject_late: a.on_deadline == "reject",
            initial_fleet: rec_fleet.filter(|f| !f.is_empty()),
            host_slowdown: slowdown,
            live_latency: a.live_latency == "on",
            faults,
            min_instances: a.min_instances,
            spot_max_share: match a.spot_max_share {
                Some(s) if !(s > 0.0 && s < 1.0) => {
                    return Err(SimulateError::Input(format!(
                        "--spot-max-share {s}: must be between 0 and 1"
                    )))
                }
                s => s,
            },
            ablate,
            slack_feedback: a.slack_feedback,
            gateway_executors: a.gateway_executors.or(rec_executors).unwrap_or(0).min(64),
            host_overhead_ms: rec_host,
            worker_overhead_ms: rec_worker,
            replicas: crate::engine::replicas::ReplicaParams {
                n: a.replicas,
                skew_s: a.replica_skew,
                loss: a.replica_loss,
                kill_at_s: a.replica_kill_at,
                lease_s: a.replica_lease,
            },
            ..SimParams::default()
        },
        catalog,
        model: a.model.clone(),
        profile,
        workload_spec: if a.load_scale == 1.0 {
            a.workloads.join(" + ")
        } else {
            format!("{} x{}", a.workloads.join(" + "), a.load_scale)
        },
        extra_models,
        model_limits,
        runs,
        policies,
        candidate,
        threads: a.threads,
        progress: !a.quiet,
        workload,
    };
    let started = std::time::Instant::now();
    let summary = super::simulate(&opts);
    let wall = started.elapsed().as_secs_f64();
    super::write_report(&summary, &a.out)?;
    print!("{}", summary.table());
    if let Some((t, _)) = &trace {
        let c = super::replay::calibrate(t, &summary);
        print!("{}", super::replay::table(&c));
        std::fs::write(
            a.out.join("calibration.json"),
            serde_json::to_string_pretty(&c).map_err(std::io::Error::other)?,
        )?;
    }
    let reqs: u64 = summary.policies.iter().map(|p| p.requests).sum();
    println!(
        "simulated {} runs, {reqs} requests in {wall:.1} s ({:.1} M requests/s); report in {}",
        summary.policies.len(),
        reqs as f64 / wall / 1e6,
        a.out.display()
    );
    Ok(())
}

/// A `MODEL=REST` flag value split, when MODEL is a model name (letters, digits, `_`, `-`, `.`).
fn named(v: &str) -> Option<(&str, &str)> {
    let (m, rest) = v.split_once('=')?;
    let ok = !m.is_empty()
        && m.len() <= 64
        && m.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    ok.then_some((m, rest))
}

/// Reads `--workload` and `--profile`: one unnamed workload (one model, `--model`), or
/// `MODEL=SPEC` each (several models on one fleet; the first becomes `--model`). Returns the
/// further models' (name, spec).
fn split_models(a: &mut SimulateArgs) -> Result<Vec<(String, String)>, String> {
    let named_all: Vec<Option<(&str, &str)>> = a.workloads.iter().map(|w| named(w)).collect();
    let mut models = Vec::new();
    if named_all.iter().all(Option::is_some) {
        for (m, spec) in named_all.into_iter().flatten() {
            if models.iter().any(|(n, _): &(String, String)| n == m) {
                return Err(format!("--workload {m}=...: the model is named twice"));
            }
            models.push((m.to_string(), spec.to_string()));
        }
    } else if a.workloads.len() == 1 {
        models.push((a.model.clone(), a.workloads[0].clone()));
    } else {
        return Err(
            "several --workload flags: name each model's, as MODEL=SPEC (e.g. --workload \
             resnet18=twitter-like --workload magika=steps:1)"
                .into(),
        );
    }
    if models.len() > 1 && models.iter().any(|(_, w)| w.starts_with("trace:")) {
        return Err("a recorded trace (trace:DIR) replays alone: one --workload".into());
    }
    a.model = models[0].0.clone();
    a.workload = models[0].1.clone();
    let mut own = Vec::new();
    for p in &a.profiles {
        match named(p) {
            Some((m, f)) => {
                if !models.iter().any(|(n, _)| n == m) {
                    return Err(format!("--profile {p}: no --workload {m}=..."));
                }
                if own.contains(&m) {
                    return Err(format!("--profile {m}=...: the model is named twice"));
                }
                if m == a.model {
                    a.profile = Some(PathBuf::from(f));
                }
                own.push(m);
            }
            None if a.profiles.len() == 1 => a.profile = Some(PathBuf::from(p)),
            None => return Err(format!("--profile {p}: name the model, as MODEL=FILE")),
        }
    }
    Ok(models.into_iter().skip(1).collect())
}

/// `--model-slo MODEL=MS` and `--model-max-batch MODEL=N`: each names a model of the run, once,
/// with a positive value.
fn model_limits(
    a: &SimulateArgs,
    names: &[&str],
) -> Result<BTreeMap<String, super::ModelLimits>, String> {
    let mut out: BTreeMap<String, super::ModelLimits> = BTreeMap::new();
    let mut parse = |flag: &str, given: &[String], slo: bool| -> Result<(), String> {
        for g in given {
            let Some((m, v)) = named(g) else {
                return Err(format!("--{flag} {g}: give MODEL=VALUE"));
            };
            if !names.contains(&m) {
                return Err(format!(
                    "--{flag} {g}: no model {m} in this run ({})",
                    names.join(", ")
                ));
            }
            let e = out.entry(m.to_string()).or_default();
            let twice = if slo {
                let ms: f64 = v
                    .parse()
                    .map_err(|_| format!("--{flag} {g}: not a number"))?;
                if !(ms > 0.0 && ms <= 3_600_000.0) {
                    return Err(format!("--{flag} {g}: between 0 and 3600000 ms"));
                }
                e.slo_ms.replace(ms).is_some()
            } else {
                let n: u32 = v
                    .parse()
                    .map_err(|_| format!("--{flag} {g}: not a count"))?;
                if !(1..=4096).contains(&n) {
                    return Err(format!("--{flag} {g}: between 1 and 4096"));
                }
                e.max_batch.replace(n).is_some()
            };
            if twice {
                return Err(format!("--{flag} {m}=...: the model is named twice"));
            }
        }
        Ok(())
    };
    parse("model-slo", &a.model_slos, true)?;
    parse("model-max-batch", &a.model_max_batches, false)?;
    Ok(out)
}

/// The further models' workloads and profiles (`--profile MODEL=FILE`, else the bundled one).
fn extra_models(
    a: &SimulateArgs,
    models: &[(String, String)],
) -> Result<Vec<super::SimModel>, String> {
    models
        .iter()
        .map(|(name, spec)| {
            let w = Workload::parse(spec).map_err(|e| format!("--workload {name}={spec}: {e}"))?;
            let w = if a.load_scale == 1.0 {
                w
            } else {
                w.scaled(a.load_scale)
            };
            Ok(super::SimModel {
                name: name.clone(),
                profile: profile_of(a, name)?,
                workload: w,
            })
        })
        .collect()
}

/// Model `name`'s profile: `--profile NAME=FILE`, else its bundled profile.
fn profile_of(a: &SimulateArgs, name: &str) -> Result<crate::profile::LatencyProfile, String> {
    let given = a
        .profiles
        .iter()
        .filter_map(|p| named(p))
        .find(|(m, _)| *m == name);
    match given {
        Some((_, f)) => match crate::profile::LatencyProfile::load(std::path::Path::new(f)) {
            Ok(Some(p)) if !p.points.is_empty() => Ok(p),
            Ok(_) => Err(format!("{f}: no profile points")),
            Err(e) => Err(e.to_string()),
        },
        None => match super::BUNDLED_PROFILES.iter().find(|(m, _)| *m == name) {
            Some((_, text)) => toml::from_str(text).map_err(|e| format!("embedded profile: {e}")),
            None => Err(format!(
                "no profile for model {name}: give --profile {name}=FILE (bundled: resnet18, mlp, magika)"
            )),
        },
    }
}
