//! The `mark simulate` command line: flags, validation (bad input is reported for exit 64), the
//! run, and the report.

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
        (None, None) => toml::from_str(super::DEFAULT_PROFILE)
            .map_err(|e| Input(format!("embedded profile: {e}")))?,
        (None, Some(p)) => match crate::profile::LatencyProfile::load(p) {
            Ok(Some(p)) if !p.points.is_empty() => p,
            Ok(_) => return Err(Input(format!("{}: no profile points", p.display()))),
            Err(e) => return Err(Input(e.to_string())),
        },
    };
    let mut strategies = Vec::new();
    for b in &a.baselines {
        match Strategy::parse(b) {
            Some(s) => strategies.push(s),
            None => {
                return Err(Input(format!(
                    "--baseline {b}: unknown (sagemaker, static-peak, lambda-only, mark-released, mark-rs)"
                )))
            }
        }
    }
    if strategies.is_empty() {
        strategies = Strategy::ALL.to_vec();
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
            if spot && matches!(s, Strategy::SageMaker | Strategy::LambdaOnly) && markets.len() > 1
            {
                continue;
            }
            runs.push((s, spot));
        }
    }
    let faults = match &a.cloud_faults {
        None => crate::faults::CloudFaults::default(),
        Some(f) => {
            let text = std::fs::read_to_string(f)
                .map_err(|e| Input(format!("--cloud-faults {}: {e}", f.display())))?;
            crate::faults::CloudFaults::parse(&text, &f.display().to_string()).map_err(Input)?
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
    let policies = if a.native_policies && a.policies.is_empty() {
        super::PolicySource::Native
    } else {
        let popts = PolicyOptions {
            load: a.policies.clone(),
            native_only: a.native_policies,
            limits: super::policy_limits(),
        };
        match startup::policies(&popts) {
            Ok((e, s)) => super::PolicySource::Slots(e, s),
            Err(e) => return Err(Input(format!("{e:#}"))),
        }
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
            launches_per_hour: a.max_launches_per_hour,
            terminations_per_hour: a.max_terminations_per_hour,
            sagemaker_markup: catalog.sagemaker_markup,
            reject_late: a.on_deadline == "reject",
            initial_fleet: rec_fleet.filter(|f| !f.is_empty()),
            host_slowdown: slowdown,
            live_latency: a.live_latency == "on",
            faults,
            ..SimParams::default()
        },
        catalog,
        model: a.model.clone(),
        profile,
        workload_spec: if a.load_scale == 1.0 {
            a.workload.clone()
        } else {
            format!("{} x{}", a.workload, a.load_scale)
        },
        runs,
        policies,
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
