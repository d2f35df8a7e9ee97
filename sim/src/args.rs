//! The flags of `mark simulate` (read by `cli`, which runs them, and by `replay`, which fills
//! them from a recorded trace's context).

use std::path::PathBuf;

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
    /// Several models on one fleet: `MODEL=SPEC`, repeated (e.g. `--workload
    /// resnet18=twitter-like --workload magika=steps:1`).
    #[arg(long = "workload", default_value = "twitter-like")]
    pub workloads: Vec<String>,
    /// The single workload's spec (the first `--workload`; set by `cli`).
    #[arg(skip)]
    pub workload: String,
    /// Multiply every arrival rate of the workload by this (e.g. 10 for the 10x day).
    #[arg(long, default_value_t = 1.0)]
    pub load_scale: f64,
    /// Policy component for mark-rs: KIND=FILE.wasm (batcher, predictor, provisioner).
    #[arg(long = "policy", value_parser = crate::policy::startup::parse_policy)]
    pub policies: Vec<(PolicyKind, PathBuf)>,
    /// Run mark-rs on the native defaults instead of the embedded mark-default.wasm.
    #[arg(long)]
    pub native_policies: bool,
    /// Strategies: sagemaker, static-peak, lambda-only, mark-released, mark-rs (default: all),
    /// and with several models mark-rs-per-model and sagemaker-mme (added to the default).
    #[arg(long = "baseline")]
    pub baselines: Vec<String>,
    /// Markets: on-demand, spot, or both (each strategy that can use spot runs twice).
    #[arg(long, default_value = "both")]
    pub spot: String,
    /// Output directory.
    #[arg(long, default_value = "sim-out")]
    pub out: PathBuf,
    /// Latency profile (profile.toml of `mark profile`): FILE for the model, or MODEL=FILE with
    /// several models (repeated); default: each bundled model's CPU profile on the dev VM
    /// (resnet18, mlp, magika).
    #[arg(long = "profile")]
    pub profiles: Vec<String>,
    /// The single model's profile (from `--profile FILE`; set by `cli`).
    #[arg(skip)]
    pub profile: Option<PathBuf>,
    /// Model name for `capacity_rps.<model>` in the catalog.
    #[arg(long, default_value = "resnet18")]
    pub model: String,
    /// Latency objective, ms.
    #[arg(long, default_value_t = 300.0)]
    pub slo_ms: f64,
    /// A model's own SLO, as MODEL=MS (repeated; what its config's `slo_ms` is to `mark serve`);
    /// a model not named takes --slo-ms.
    #[arg(long = "model-slo", value_name = "MODEL=MS")]
    pub model_slos: Vec<String>,
    /// A model's own largest batch, as MODEL=N (repeated; its config's `max_batch_size`); a model
    /// not named takes --max-batch.
    #[arg(long = "model-max-batch", value_name = "MODEL=N")]
    pub model_max_batches: Vec<String>,
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
    /// Cloud faults to run under (TOML: list_lag_s, boot_failure_rate, launch_error_rate,
    /// [[stall]], [[throttle]], [[reclaim]]; see docs/simulation.md).
    #[arg(long, value_name = "FILE.toml")]
    pub cloud_faults: Option<PathBuf>,
    /// Fewest instances mark-rs keeps; 0: none while Lambda carries the forecast for less than
    /// the cheapest instance (scale to zero). Default: the plan as it is.
    #[arg(long)]
    pub min_instances: Option<u32>,
    /// mark-rs spreads spot capacity: no spot type above this share of it (0 < share < 1),
    /// so that one correlated reclaim wave takes only part of it. Default: no bound.
    #[arg(long)]
    pub spot_max_share: Option<f64>,
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
    /// Sources of headroom mark-rs runs without, comma-separated: margin, slo-rule,
    /// make-before-break, emergency, burst-sizing, change-budget, churn (the ablation of
    /// docs/simulation.md; `scripts/bench-ablation.sh` runs each).
    #[arg(long, default_value = "")]
    pub ablate: String,
    /// mark-rs plans with the feedback on slack (as `mark serve --slack-feedback`).
    #[arg(long)]
    pub slack_feedback: bool,
    /// The gateway's own executors as a free backend, offered batches first (as the live batch
    /// loop does), for mark-rs and MArk as released. Default: the recorded count when replaying
    /// a trace, else 0 (the fleet alone).
    #[arg(long)]
    pub gateway_executors: Option<u32>,
    /// mark-rs behind N gateway replicas (as `mark serve --lease-table`): the controller sees
    /// the demand the replicas' rows carry and acts only while one holds the lease.
    #[arg(long, default_value_t = 1)]
    pub replicas: u32,
    /// With --replicas: the replicas' wall clocks spread over ±this many seconds.
    #[arg(long, default_value_t = 0.0)]
    pub replica_skew: f64,
    /// With --replicas: share of row publications, reads and lease calls lost (0 to 0.9).
    #[arg(long, default_value_t = 0.0)]
    pub replica_loss: f64,
    /// With --replicas: the replica leading at this second is killed (not restarted).
    #[arg(long)]
    pub replica_kill_at: Option<f64>,
    /// With --replicas: the lease length, seconds (as `mark serve --lease-seconds`).
    #[arg(long, default_value_t = 10.0)]
    pub replica_lease: f64,
    /// Write the workload's rates as CSV to this file and exit.
    #[arg(long)]
    pub export_workload: Option<PathBuf>,
}
