//! The `mark` command line: every subcommand and flag (clap), and the checks on flags that need
//! more than one of them. The binary (`main.rs`) parses with these and runs the subcommand.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub use crate::app::policy_cmd::PolicyCmd;
pub use crate::app::profile_cmd::ProfileArgs;
use crate::autoscale::AutoscaleOptions;
use crate::cloud::ec2::Ec2Options;
use crate::control::catalog::Catalog;
use crate::exec::lambda_client::LambdaOptions;
pub use crate::loadgen::BenchArgs;
use crate::policy::PolicyKind;

/// Flags of `mark serve` (and of `mark worker`, which serves with native policies, no admin
/// API and no control loop).
#[derive(clap::Args, Clone, Debug)]
pub struct ServeArgs {
    /// A TOML file of flags (every flag of `mark serve` is a key; `mark config print-default`
    /// writes one): flags on the command line and MARK_* variables override it.
    #[arg(long, env = "MARK_CONFIG")]
    pub config: Option<PathBuf>,
    /// Model repository: DIR/<name>/model.onnx [+ config.toml].
    #[arg(long, default_value = "models")]
    pub model_repo: PathBuf,
    /// Address of the inference listener.
    #[arg(long, default_value = "0.0.0.0:8000")]
    pub listen: SocketAddr,
    /// Largest request body in bytes (413 above).
    #[arg(long, default_value_t = 64 << 20)]
    pub max_body_bytes: usize,
    /// Connections serving requests at once (more wait in the kernel's accept queue). The
    /// open-file limit is raised to its hard limit at start; keep this below it.
    #[arg(long, default_value_t = 4096)]
    pub max_connections: usize,
    /// Seconds a connection may stay open with no request in flight before it is closed.
    #[arg(long, default_value_t = 60.0)]
    pub idle_timeout_secs: f64,
    /// Seconds a request body may take to arrive in full (408 after).
    #[arg(long, default_value_t = 30.0)]
    pub body_timeout_secs: f64,
    /// Path to libonnxruntime.so (else ORT_DYLIB_PATH, else .mark/venv).
    #[arg(long)]
    pub ort_lib: Option<PathBuf>,
    /// Do not profile models that have no profile.toml (batch by max size only).
    #[arg(long)]
    pub no_profile: bool,
    /// Log one line per inference request (model, protocol, status, latency). Off by default: at
    /// thousands of requests per second the metrics are the record.
    #[arg(long)]
    pub log_requests: bool,
    /// Record the live trace (arrivals, the control loop's windows, steps and fleet) into this
    /// directory from the start; `POST /admin/v1/trace/start|stop` record on demand.
    #[arg(long)]
    pub record_trace: Option<PathBuf>,
    /// Bound on a trace's disk use, bytes (the oldest segments are deleted past it).
    #[arg(long, default_value_t = 1 << 30, value_parser = clap::value_parser!(u64).range(65536..))]
    pub record_max_bytes: u64,
    /// Address of the KServe v2 gRPC listener (Triton's port; same limits as REST).
    #[arg(long, default_value = "0.0.0.0:8001")]
    pub grpc_listen: SocketAddr,
    /// Serve REST only: no gRPC listener.
    #[arg(long)]
    pub no_grpc: bool,
    /// Address of the admin listener (policy hot-reload, status). Port 8003: the one after
    /// Triton's HTTP, gRPC and metrics ports (8000-8002), since gRPC took 8001.
    #[arg(long, default_value = "127.0.0.1:8003")]
    pub admin_listen: SocketAddr,
    /// Admin bearer token (else env MARK_ADMIN_TOKEN; prefer --admin-token-file or the env:
    /// the command line shows in `ps`). Without one there is no admin listener.
    #[arg(long, env = "MARK_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// A file whose first line is the admin bearer token (e.g. a systemd credential or a
    /// mounted secret; at most 4 KiB). Not together with --admin-token / MARK_ADMIN_TOKEN.
    #[arg(long, env = "MARK_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Serve the admin API without a token (only allowed on a loopback address).
    #[arg(long)]
    pub admin_insecure: bool,
    /// Load a policy component at start: KIND=FILE.wasm (kind: batcher, predictor, provisioner).
    #[arg(long = "policy", value_parser = crate::policy::startup::parse_policy)]
    pub policies: Vec<(PolicyKind, PathBuf)>,
    /// Use the native default policies instead of the embedded mark-default.wasm.
    #[arg(long)]
    pub native_policies: bool,
    /// Directory for compiled policy code (.cwasm cache), to speed up restarts.
    #[arg(long)]
    pub policy_cache: Option<PathBuf>,
    /// On SIGTERM, seconds to keep serving with readiness failing (so a load balancer's health
    /// check takes this replica out of rotation) before the listeners stop accepting.
    #[arg(long, default_value_t = 0.0)]
    pub drain_seconds: f64,
    /// Set for `mark worker` (not a flag): see `ServerConfig::worker`.
    #[arg(skip)]
    pub worker: bool,
    #[command(flatten)]
    pub control: ControlArgs,
}

#[derive(Parser)]
#[command(
    name = "mark",
    version,
    about = "MArk-rs: cost-aware ML inference gateway"
)]
pub struct Cli {
    /// Log lines on stderr: `text` (for people) or `json` (one object per line, for log
    /// pipelines: timestamp, level, target, message and every field).
    #[arg(long, global = true, value_enum, env = "MARK_LOG_FORMAT", default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// The subcommand.
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Subcommand)]
// `Serve` carries every flag of the server; the enum is built once per process.
#[allow(clippy::large_enum_variant)]
pub enum Cmd {
    /// Serve the models of a repository over KServe v2.
    #[command(args_override_self = true)]
    Serve(ServeArgs),
    /// The config file of `mark serve --config`.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Run as a fleet worker: a v2 server for the batches a gateway routes to this instance
    /// (native policies, no admin API).
    Worker {
        /// Model repository.
        #[arg(long, default_value = "models")]
        model_repo: PathBuf,
        /// Address to listen on.
        #[arg(long, default_value = "0.0.0.0:8000")]
        listen: SocketAddr,
        /// Seconds to wait before listening (the local cloud's launch delay).
        #[arg(long, default_value_t = 0.0)]
        start_delay: f64,
        /// Path to libonnxruntime.so.
        #[arg(long)]
        ort_lib: Option<PathBuf>,
        /// Instance metadata (IMDSv2) to watch for spot interruption notices and rebalance
        /// recommendations; on one the worker drains (on EC2: http://169.254.169.254). Off
        /// when absent.
        #[arg(long, env = "MARK_IMDS_ENDPOINT")]
        imds_endpoint: Option<String>,
        /// Seconds between metadata polls.
        #[arg(long, default_value_t = 5.0, env = "MARK_NOTICE_POLL_SECS")]
        notice_poll_secs: f64,
    },
    /// Run as the Lambda function body of the spill-over backend (`lambda_runtime`; needs the
    /// Lambda environment: AWS_LAMBDA_RUNTIME_API and friends, as on AWS or `cargo lambda watch`).
    Lambda {
        /// Model repository.
        #[arg(long, default_value = "models")]
        model_repo: PathBuf,
        /// Path to libonnxruntime.so.
        #[arg(long)]
        ort_lib: Option<PathBuf>,
    },
    /// Policy tools.
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// Measure latency per batch size and write DIR/<model>/profile.toml.
    Profile(ProfileArgs),
    /// Model repositories in object storage.
    #[command(subcommand)]
    Repo(RepoCmd),
    /// Build what a deployment runs: the Lambda function's zip, the workers' user data.
    #[command(subcommand)]
    Package(PackageCmd),
    /// Create or update on AWS what a `mark serve` config file names: the runtime in the
    /// repository's bucket, the Lambda function, the workers' launch template, the lease table;
    /// prints the IAM policies. Idempotent: a second run changes nothing.
    Deploy {
        /// The config file `mark serve --config` runs from, with a [deploy] table (roles, AMI,
        /// security groups).
        #[arg(long)]
        config: PathBuf,
        /// Make the reads only and print what would be created or updated.
        #[arg(long)]
        dry_run: bool,
    },
    /// Load generator against a running gateway, or the raw-ort baseline in process.
    Bench(crate::loadgen::BenchArgs),
    /// Replay a workload on a simulated cloud with the serving policies and baselines; writes
    /// summary.json, table.txt and SVG plots to --out.
    Simulate(crate::sim::cli::SimulateArgs),
}

/// Autoscaling flags of `mark serve`.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ControlArgs {
    /// Cloud driver that runs the fleet: `local` (mark worker processes). Off when absent.
    #[arg(long)]
    pub cloud: Option<String>,
    /// Instance catalog (TOML); see examples/catalog-us-east-1.toml.
    #[arg(long)]
    pub catalog: Option<PathBuf>,
    /// Plan the fleet for this model's demand alone (default: one fleet for every model of
    /// the repository, planned for their mix).
    #[arg(long)]
    pub control_model: Option<String>,
    /// Fewest instances the fleet keeps. 0: the fleet goes to zero while Lambda
    /// (`--lambda-function`) carries the forecast for less than the cheapest instance would
    /// cost, and comes back when the forecast pays for one. Default: the plan as it is.
    #[arg(long)]
    pub min_instances: Option<u32>,
    /// Spread spot capacity: no spot type above this share of the plan's spot capacity (0 <
    /// share < 1), so that one correlated reclaim wave takes only part of it. Default: no bound.
    #[arg(long)]
    pub spot_max_share: Option<f64>,
    /// The feedback on slack: plan between 80% and 100% of the forecast, moved by the observed
    /// attainment, p99 and Lambda spill-over (off by default: it saves on smooth on-demand days
    /// and costs on bursty or spot ones; docs/simulation.md "Spending the SLO").
    #[arg(long)]
    pub slack_feedback: bool,
    /// Seconds between reads of live spot prices (EC2 DescribeSpotPriceHistory in the zones
    /// of --ec2-subnets, or every zone without them; each type's mean over those zones
    /// replaces the catalog's price for the plan, each spot instance is billed its own zone's).
    /// 0: the catalog's prices only.
    #[arg(long, default_value_t = 300.0)]
    pub spot_price_interval: f64,
    /// Seconds per control interval.
    #[arg(long, default_value_t = 60.0)]
    pub control_interval: f64,
    /// Seconds per rate window inside an interval.
    #[arg(long, default_value_t = 5.0)]
    pub control_window: f64,
    /// SLO attainment target.
    #[arg(long, default_value_t = 0.99)]
    pub attainment_target: f64,
    /// Where the local cloud keeps its tag files.
    #[arg(long, default_value = ".mark/cloud")]
    pub cloud_state: PathBuf,
    /// Cloud faults to run the fleet under (the `mark simulate --cloud-faults` file: list lag,
    /// boot failures, refused launches, stalls, throttling), for tests and rehearsals.
    #[arg(long, value_name = "FILE.toml")]
    pub cloud_faults: Option<PathBuf>,
    /// Fleet name (instances are tagged with it): 1 to 32 of [A-Za-z0-9_-]; with `--cloud ec2`
    /// an explicit one (not the default).
    #[arg(long, default_value = "mark")]
    pub fleet: String,
    /// Upper bound on instances.
    #[arg(long, default_value_t = 8)]
    pub max_instances: u32,
    /// Launches allowed per rolling hour (a safety net under every policy; skipped ones are
    /// logged and counted in the status).
    #[arg(long, default_value_t = crate::control::fleet::CHANGES_PER_HOUR)]
    pub max_launches_per_hour: u32,
    /// Terminations allowed per rolling hour.
    #[arg(long, default_value_t = crate::control::fleet::CHANGES_PER_HOUR)]
    pub max_terminations_per_hour: u32,
    /// EC2: AMI of the workers (with --cloud ec2, this or a launch template naming one).
    #[arg(long)]
    pub ec2_image_id: Option<String>,
    /// EC2: launch template NAME[:VERSION] of the workers (AMI, security groups, instance
    /// profile, IMDSv2 required); the driver sets type, market, tags, user data and subnet.
    #[arg(long)]
    pub ec2_launch_template: Option<String>,
    /// EC2: subnets (comma-separated, one per AZ), tried in turn when one lacks capacity.
    #[arg(long, value_delimiter = ',')]
    pub ec2_subnets: Vec<String>,
    /// EC2: route to each instance's `mark:addr` tag, not its private IP (tests against an
    /// emulator such as moto, whose invented addresses must never be contacted).
    #[arg(long)]
    pub ec2_addr_from_tag: bool,
    /// EC2: the launch template's user data boots the workers (the one `mark deploy` writes:
    /// it fetches `mark` and libonnxruntime.so from the bucket); RunInstances sends none.
    #[arg(long)]
    pub ec2_template_user_data: bool,
    /// EC2: region.
    #[arg(long, default_value = "us-east-1")]
    pub ec2_region: String,
    /// EC2: endpoint override (e.g. a moto server); credentials come from the standard AWS chain.
    #[arg(long)]
    pub ec2_endpoint: Option<String>,
    /// Lambda function (running `mark lambda`) for spill-over; needs a [lambda] catalog section.
    #[arg(long)]
    pub lambda_function: Option<String>,
    /// Lambda: region.
    #[arg(long, default_value = "us-east-1")]
    pub lambda_region: String,
    /// Lambda: endpoint override (e.g. `cargo lambda watch`).
    #[arg(long)]
    pub lambda_endpoint: Option<String>,
    #[command(flatten)]
    pub replica: ReplicaArgs,
}

/// Replica flags: several `mark serve` behind a load balancer, one controller at a time.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ReplicaArgs {
    /// This replica's name among the fleet's replicas (with --lease-table; default the host
    /// name and process id). Two running processes with one id are refused (the later exits).
    #[arg(long)]
    pub replica_id: Option<String>,
    /// DynamoDB table holding the controller lease and the replicas' counters (created when
    /// missing). Without it, this process is the one controller (no replicas).
    #[arg(long)]
    pub lease_table: Option<String>,
    /// Length of the controller lease: a dead leader is replaced within about this long.
    #[arg(long, default_value_t = 10.0)]
    pub lease_seconds: f64,
    /// DynamoDB: region.
    #[arg(long, default_value = "us-east-1")]
    pub lease_region: String,
    /// DynamoDB: endpoint override (e.g. moto's server).
    #[arg(long)]
    pub lease_endpoint: Option<String>,
}

impl ReplicaArgs {
    /// The replica settings for `fleet`, or `None` without `--lease-table`.
    pub fn options(
        &self,
        fleet: &str,
        window_s: f64,
    ) -> Result<Option<crate::replica::ReplicaOptions>, String> {
        let Some(table) = &self.lease_table else {
            if self.replica_id.is_some() {
                return Err("--replica-id needs --lease-table".into());
            }
            return Ok(None);
        };
        let id = match &self.replica_id {
            None => crate::replica::default_id(),
            Some(i) if !i.is_empty() && i.len() <= 128 && !i.chars().any(char::is_control) => {
                i.clone()
            }
            Some(_) => {
                return Err(
                    "--replica-id: 1 to 128 printable characters, unique per replica".into(),
                )
            }
        };
        if !(2.0..=300.0).contains(&self.lease_seconds) {
            return Err(format!(
                "--lease-seconds {}: must be in [2, 300]",
                self.lease_seconds
            ));
        }
        Ok(Some(crate::replica::ReplicaOptions {
            id,
            store: crate::replica::store::StoreOptions {
                table: table.clone(),
                region: self.lease_region.clone(),
                endpoint: self.lease_endpoint.clone(),
                fleet: fleet.to_string(),
                credentials: None,
            },
            lease: std::time::Duration::from_secs_f64(self.lease_seconds),
            stale: std::time::Duration::from_secs_f64((3.0 * window_s).max(10.0)),
        }))
    }
}

impl ServeArgs {
    /// The settings `mark worker` serves with: the given repository, address and library, every
    /// other flag at its default, native policies, no admin API, no control loop.
    pub fn for_worker(model_repo: PathBuf, listen: SocketAddr, ort_lib: Option<PathBuf>) -> Self {
        let mut a = match Cli::parse_from(["mark", "serve", "--native-policies"]).cmd {
            Cmd::Serve(a) => a,
            _ => unreachable!("parsed as serve"),
        };
        a.model_repo = model_repo;
        a.listen = listen;
        a.ort_lib = ort_lib;
        // not from MARK_ADMIN_TOKEN: a worker has no admin API
        a.admin_token = None;
        a.admin_token_file = None;
        a.admin_listen = SocketAddr::from(([127, 0, 0, 1], 0));
        // many workers share a host in the local cloud; the gateway speaks REST to them
        a.no_grpc = true;
        a.worker = true;
        a
    }
}

impl ControlArgs {
    /// Checks the autoscaling flags on their own (the catalog is read later): a known driver,
    /// a catalog, a window inside the interval, an attainment target in (0, 1], an AMI for EC2.
    /// `--max-instances 0` is allowed: no instances, Lambda only.
    pub fn validate(&self) -> Result<(), String> {
        let Some(cloud) = &self.cloud else {
            if self.replica.lease_table.is_some() {
                return Err("--lease-table needs --cloud: replicas share a fleet".into());
            }
            return Ok(());
        };
        self.replica.options(&self.fleet, self.control_window)?;
        if cloud != "local" && cloud != "ec2" {
            return Err(format!("--cloud {cloud}: unknown driver (local, ec2)"));
        }
        match self.min_instances {
            Some(n) if n > self.max_instances => {
                return Err(format!(
                    "--min-instances {n} is above --max-instances {}",
                    self.max_instances
                ))
            }
            Some(0) if self.lambda_function.is_none() => {
                return Err(
                    "--min-instances 0 needs --lambda-function: Lambda carries the load \
                            while the fleet is at zero"
                        .into(),
                )
            }
            _ => {}
        }
        if self.catalog.is_none() {
            return Err("--cloud needs --catalog FILE".into());
        }
        if !(self.control_interval > 0.0
            && self.control_window > 0.0
            && self.control_window <= self.control_interval)
        {
            return Err("--control-window must be > 0 and <= --control-interval".into());
        }
        if !(self.spot_price_interval == 0.0
            || (self.spot_price_interval.is_finite()
                && (10.0..=86_400.0).contains(&self.spot_price_interval)))
        {
            return Err(format!(
                "--spot-price-interval {}: 0 (off) or seconds in [10, 86400]",
                self.spot_price_interval
            ));
        }
        if !(self.attainment_target > 0.0 && self.attainment_target <= 1.0) {
            return Err(format!(
                "--attainment-target {}: must be in (0, 1]",
                self.attainment_target
            ));
        }
        if self.max_launches_per_hour == 0 {
            return Err("--max-launches-per-hour 0: the fleet could never grow".into());
        }
        if let Some(s) = self.spot_max_share {
            if !(s > 0.0 && s < 1.0) {
                return Err(format!("--spot-max-share {s}: must be between 0 and 1"));
            }
        }
        if self.ec2_template_user_data && self.ec2_launch_template.is_none() {
            return Err(
                "--ec2-template-user-data needs --ec2-launch-template (whose user data \
                        boots the workers)"
                    .into(),
            );
        }
        if cloud == "ec2" && self.ec2_image_id.is_none() && self.ec2_launch_template.is_none() {
            return Err("--cloud ec2 needs --ec2-image-id or --ec2-launch-template".into());
        }
        crate::cloud::ec2::check_fleet_name(&self.fleet)?;
        if cloud == "ec2" && self.fleet == "mark" {
            // two deployments on the default name would list, route to and terminate each
            // other's instances
            return Err(
                "--cloud ec2 needs an explicit --fleet NAME (not the default 'mark'): \
                 instances are found by it, and two deployments must never share one"
                    .into(),
            );
        }
        Ok(())
    }

    /// The control loop's settings with `catalog`, after [`ControlArgs::validate`]; `mark_bin`
    /// and `worker_repo` are what local workers run.
    pub fn options(
        &self,
        catalog: Catalog,
        mark_bin: PathBuf,
        worker_repo: PathBuf,
    ) -> Result<AutoscaleOptions, String> {
        self.validate()?;
        if self.lambda_function.is_some() && catalog.lambda.is_none() {
            return Err("--lambda-function needs a [lambda] section in the catalog".into());
        }
        let model = self.control_model.clone().unwrap_or_default();
        // EC2 workers fetch the gateway's repository themselves when it is in S3
        let s3_repo =
            Some(worker_repo.to_string_lossy().to_string()).filter(|r| r.starts_with("s3://"));
        let faults = match &self.cloud_faults {
            None => None,
            Some(f) => {
                let text = std::fs::read_to_string(f)
                    .map_err(|e| format!("--cloud-faults {}: {e}", f.display()))?;
                let faults = crate::control::faults::CloudFaults::parse(
                    &text,
                    &format!("--cloud-faults {}", f.display()),
                )?;
                faults
                    .check_types(catalog.instances.iter().map(|t| t.name.as_str()))
                    .map_err(|e| format!("--cloud-faults {}: {e}", f.display()))?;
                Some(faults)
            }
        };
        Ok(AutoscaleOptions {
            lambda: self.lambda_function.clone().map(|function| LambdaOptions {
                function,
                region: self.lambda_region.clone(),
                endpoint: self.lambda_endpoint.clone(),
                credentials: None,
                max_attempts: 1,
            }),
            catalog,
            model: model.clone(),
            models: self.control_model.iter().cloned().collect(),
            min_instances: self.min_instances,
            spot_max_share: self.spot_max_share,
            slack_feedback: self.slack_feedback,
            spot_price_interval_s: self.spot_price_interval,
            interval_s: self.control_interval,
            window_s: self.control_window,
            horizon: 5,
            min_age_s: self.control_interval,
            attainment_target: self.attainment_target,
            state_dir: self.cloud_state.clone(),
            fleet: self.fleet.clone(),
            mark_bin,
            worker_repo,
            max_instances: self.max_instances,
            launches_per_hour: self.max_launches_per_hour,
            terminations_per_hour: self.max_terminations_per_hour,
            ec2: match self.cloud.as_deref() {
                Some("ec2") => Some(Ec2Options {
                    region: self.ec2_region.clone(),
                    endpoint: self.ec2_endpoint.clone(),
                    credentials: None,
                    image_id: self.ec2_image_id.clone().unwrap_or_default(),
                    launch_template: self.ec2_launch_template.clone(),
                    subnets: self.ec2_subnets.clone(),
                    fleet: self.fleet.clone(),
                    model,
                    worker_port: crate::cloud::ec2::WORKER_PORT,
                    max_attempts: 3,
                    page_size: 1000,
                    addr_from_tag: self.ec2_addr_from_tag,
                    worker_repo: s3_repo,
                    template_user_data: self.ec2_template_user_data,
                }),
                _ => None,
            },
            replica: None,
            faults,
        })
    }
}

mod tools;
pub use tools::{ConfigCmd, PackageCmd, RepoCmd};

#[cfg(test)]
mod tests;
