//! The `mark simulate` command line: flags, validation (bad input is reported for exit 64), the
//! run, and the report.

use std::path::PathBuf;

use super::baselines::Strategy;
use super::params::SimParams;
use super::workload::Workload;
use crate::app::{self, PolicyOptions};
use crate::control::catalog::Catalog;
use crate::policy::PolicyKind;

/// Flags of `mark simulate`.
#[derive(clap::Args, Debug)]
pub struct SimulateArgs {
    /// Instance catalog (TOML); default examples/catalog-us-east-1.toml, or with a
    /// `trace:DIR` workload the catalog recorded in the trace (given, this one replaces it: to
    /// replay the same traffic on corrected capacities or prices).
    #[arg(long)]
    pub catalog: Option<PathBuf>,
    /// Workload: twitter-like[:SEED], steps[:SEED], stress[:RATE[:SECONDS]], csv:FILE[:INTERVAL_S],
    /// uniform:FILE[:INTERVAL_S], map:DIR[:WINDOW_S], trace:DIR (a recorded trace: its model,
    /// SLO, catalog, profile, timing and starting fleet replace the flags'), or a path.
    #[arg(long, default_value = "twitter-like")]
    pub workload: String,
    /// Multiply every arrival rate of the workload by this (e.g. 10 for the 10x day).
    #[arg(long, default_value_t = 1.0)]
    pub load_scale: f64,
    /// Policy component for mark-rs: KIND=FILE.wasm (batcher, predictor, provisioner).
    #[arg(long = "policy", value_parser = crate::app::parse_policy)]
    pub policies: Vec<(PolicyKind, PathBuf)>,
    /// Run mark-rs on the native defaults instead of the embedded mark-default.wasm.
    #[arg(long)]
    pub native_policies: bool,
    /// Strategies: sagemaker, static-peak, lambda-only, mark-released, mark-rs (default: all).
    #[arg(long = "baseline")]
    pub baselines: Vec<String>,
    /// Markets: on-demand, spot, or both (each strategy that can use spot runs twice).
    #[arg(long, default_value = "both")]
    pub spot: String,
    /// Output directory.
    #[arg(long, default_value = "sim-out")]
    pub out: PathBuf,
    /// Latency profile (profile.toml of `mark profile`); default: ResNet-18 on the dev VM.
    #[arg(long)]
    pub profile: Option<PathBuf>,
    /// Model name for `capacity_rps.<model>` in the catalog.
    #[arg(long, default_value = "resnet18")]
    pub model: String,
    /// Latency objective, ms.
    #[arg(long, default_value_t = 300.0)]
    pub slo_ms: f64,
    /// SLO attainment target.
    #[arg(long, default_value_t = 0.99)]
    pub attainment_target: f64,
    /// What the mark-rs gateway does with a request that would miss its SLO: `reject` (refuse it
    /// at arrival or drop it before running; a miss either way) or `serve` (run it late), as
    /// the model's `on_deadline`.
    #[arg(long, default_value = "reject")]
    pub on_deadline: String,
    /// Largest batch the model takes; each type batches up to the largest batch its curve
    /// measured (the CPU profile: 8), so a GPU curve to 32 batches to 32.
    #[arg(long, default_value_t = 32)]
    pub max_batch: u32,
    /// Seed (arrivals, interruptions).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Seconds per control interval.
    #[arg(long, default_value_t = 60.0)]
    pub interval: f64,
    /// Seconds per rate window.
    #[arg(long, default_value_t = 5.0)]
    pub window: f64,
    /// Spot interruptions per spot instance-hour.
    #[arg(long, default_value_t = 0.01)]
    pub spot_interruptions_per_hour: f64,
    /// A scheduled mass spot interruption: SECONDS:SHARE (e.g. 3600:0.8).
    #[arg(long)]
    pub mass_interruption: Option<String>,
    /// Upper bound on instances.
    #[arg(long, default_value_t = 1000)]
    pub max_instances: u32,
    /// Launches allowed per rolling hour (a safety net under every policy).
    #[arg(long, default_value_t = crate::control::fleet::CHANGES_PER_HOUR)]
    pub max_launches_per_hour: u32,
    /// Terminations allowed per rolling hour.
    #[arg(long, default_value_t = crate::control::fleet::CHANGES_PER_HOUR)]
    pub max_terminations_per_hour: u32,
    /// Strategies simulated at once.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Every host's speed over time, as slowdown steps `SECONDS:FACTOR,...` (e.g.
    /// `3600:1.5,7200:1`: 1.5x slower from the first hour to the second), for every strategy.
    #[arg(long)]
    pub host_slowdown: Option<String>,
    /// `on`: mark-rs admission plans with the worse of the profile and what batches really took
    /// (as `mark serve` does); `off`: with the profile alone (to price the rule).
    #[arg(long, default_value = "on")]
    pub live_latency: String,
    /// Write the workload's rates as CSV to this file and exit.
    #[arg(long)]
    pub export_workload: Option<PathBuf>,
}

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
        match app::policies(&popts) {
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
