//! The live control loop of `mark serve --cloud local`: every window it samples demand and SLO
//! attainment, every interval it runs the controller step (the same pure code the simulator
//! uses) through the predictor and provisioner slots, and applies the actions through the cloud
//! driver. The fleet comes from the driver's `list` each time (the cloud is the source of truth),
//! and the running workers become the model's remote backends.

use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mark_policies::types::{Plan, Slo};
use serde::Serialize;

use crate::api::AppState;
use crate::cloud::driver::Driver;
use crate::cloud::local::LocalCloud;
use crate::cloud::{Instance, InstanceState};
use crate::control::catalog::Catalog;
use crate::control::controller::{emergency_launch, step, Action, ControlConfig, FleetInstance};
use crate::control::rates::PeakRates;
use crate::control::slo::SloMonitor;
use crate::policy::caller::PolicyCaller;

/// Settings of the control loop.
#[derive(Debug, Clone)]
pub struct AutoscaleOptions {
    /// The catalog.
    pub catalog: Catalog,
    /// The model whose demand drives the fleet.
    pub model: String,
    /// Seconds per control interval (MArk: 60).
    pub interval_s: f64,
    /// Seconds per rate window inside an interval (MArk: 5).
    pub window_s: f64,
    /// Intervals the forecast covers.
    pub horizon: u32,
    /// Instances younger than this are not terminated.
    pub min_age_s: f64,
    /// SLO attainment target (e.g. 0.99).
    pub attainment_target: f64,
    /// Where the local cloud keeps its tag files.
    pub state_dir: PathBuf,
    /// Fleet name (tag).
    pub fleet: String,
    /// The `mark` binary the workers run.
    pub mark_bin: PathBuf,
    /// Model repository the workers serve.
    pub worker_repo: PathBuf,
    /// Upper bound on instances.
    pub max_instances: u32,
    /// The EC2 driver's settings when the fleet runs on EC2 (else the local cloud).
    pub ec2: Option<crate::cloud::ec2::Ec2Options>,
    /// The Lambda function for spill-over (needs the catalog's `[lambda]`).
    pub lambda: Option<crate::exec::lambda::LambdaOptions>,
}

/// What `GET /admin/v1/status` shows of the control loop.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ControlStatus {
    /// Peak rate per closed interval, oldest first (last 20).
    pub history: Vec<f64>,
    /// Latest forecast.
    pub forecast: Vec<f64>,
    /// Latest plan: (type, market, count).
    pub plan: Vec<(String, String, u32)>,
    /// Share of load the latest plan leaves to Lambda.
    pub lambda_share: f64,
    /// Share of answered requests that Lambda served so far.
    pub lambda_share_actual: f64,
    /// Lambda invocations (batches) so far.
    pub lambda_invocations: u64,
    /// Requests answered so far (all backends).
    pub requests: u64,
    /// USD per million answered requests so far (instances and Lambda).
    pub dollars_per_million_requests: f64,
    /// USD so far per backend: `type/market` of instances (live and terminated), and `lambda`.
    pub cost_by_backend: std::collections::BTreeMap<String, f64>,
    /// Sliding-window SLO attainment.
    pub attainment: Option<f64>,
    /// The fleet now.
    pub fleet: Vec<Instance>,
    /// Instances launched so far.
    pub launches: u64,
    /// Instances terminated so far.
    pub terminations: u64,
    /// Out-of-cycle launches for SLO breaches.
    pub emergencies: u64,
    /// USD billed so far: instances (live and terminated) and Lambda.
    pub cost_so_far: f64,
    /// USD per hour of the live fleet.
    pub dollars_per_hour: f64,
}

fn market_name(m: mark_policies::types::Market) -> String {
    match m {
        mark_policies::types::Market::OnDemand => "on-demand".into(),
        mark_policies::types::Market::Spot => "spot".into(),
    }
}

/// Runs the loop forever.
pub async fn run(state: Arc<AppState>, opts: AutoscaleOptions, status: Arc<Mutex<ControlStatus>>) {
    let Some(model) = state.models.get(&opts.model).cloned() else {
        tracing::error!(model = %opts.model, "autoscaling: unknown model");
        return;
    };
    let loaded = loop {
        if let Some(l) = model.loaded() {
            break l.clone();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let cloud = match &opts.ec2 {
        Some(e) => Driver::Ec2(Arc::new(
            crate::cloud::ec2::Ec2Cloud::connect(e.clone(), opts.catalog.clone()).await,
        )),
        None => Driver::Local(Arc::new(LocalCloud::new(
            &opts.state_dir,
            &opts.fleet,
            &opts.model,
            &opts.mark_bin,
            &opts.worker_repo,
            opts.catalog.clone(),
        ))),
    };
    let _ = state.cloud.set(cloud.clone());
    let lambda = match (&opts.lambda, &opts.catalog.lambda) {
        (Some(o), Some(spec)) => {
            let l = Arc::new(
                crate::exec::lambda::LambdaBackend::connect(o.clone(), spec.clone()).await,
            );
            loaded.remotes.lambda.store(Some(l.clone()));
            tracing::info!(function = %o.function, "Lambda spill-over on");
            Some(l)
        }
        _ => None,
    };
    // billed cost of instances that left the fleet, by backend; and what each live one was
    let mut retired: std::collections::BTreeMap<String, f64> = Default::default();
    let mut seen: std::collections::HashMap<String, (String, f64)> = Default::default();
    let catalog = opts.catalog.for_model(
        &opts.model,
        &loaded.profile,
        model.cfg.slo_ms,
        model.cfg.max_batch_size as u32,
    );
    let cfg = ControlConfig {
        interval_s: opts.interval_s,
        horizon: opts.horizon,
        min_age_s: opts.min_age_s,
        slo: Slo {
            latency_ms: model.cfg.slo_ms,
            attainment_target: opts.attainment_target,
        },
    };
    let t0 = Instant::now();
    let mut rates = PeakRates::new(0.0, opts.window_s, opts.interval_s, 1440);
    let mut slo = SloMonitor::new((opts.interval_s * 2.0).max(10.0) as u64);
    let mut predictor = PolicyCaller::new(state.engine.clone(), state.policies.predictor.clone());
    let mut provisioner =
        PolicyCaller::new(state.engine.clone(), state.policies.provisioner.clone());
    let mm = loaded.metrics.clone();
    // requests refused or dropped for their SLO (on_deadline = "reject") are misses too: the SLO
    // monitor must see an overload that admission hides from the latency figures
    let outcomes = |mm: &crate::metrics::ModelMetrics| {
        let refused = mm.shed.load(Relaxed) + mm.expired.load(Relaxed);
        (
            mm.answered.load(Relaxed) + refused,
            mm.slo_missed.load(Relaxed) + refused,
        )
    };
    let (answered0, missed0) = outcomes(&mm);
    let (mut last_arrived, mut last_answered, mut last_missed) =
        (mm.arrived_items.load(Relaxed), answered0, missed0);
    let mut next_control = opts.interval_s;
    let mut last_emergency = f64::NEG_INFINITY;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(opts.window_s));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = t0.elapsed().as_secs_f64();
        let arrived = mm.arrived_items.load(Relaxed);
        rates.arrive((now - 1e-6).max(0.0), arrived - last_arrived);
        rates.advance(now);
        last_arrived = arrived;
        let (answered, missed) = outcomes(&mm);
        slo.record(
            now,
            (answered - last_answered).saturating_sub(missed - last_missed),
            answered - last_answered,
        );
        (last_answered, last_missed) = (answered, missed);

        let fleet = match cloud.list().await {
            Ok(f) => f,
            Err(e) => {
                // an unknown fleet is not an empty one: skip this tick rather than over-launch
                tracing::warn!(cause = %e, "listing the fleet failed; skipping this tick");
                continue;
            }
        };
        let running: Vec<(String, String, f64)> = fleet
            .iter()
            .filter(|i| i.state == InstanceState::Running)
            .map(|i| {
                let speed = opts.catalog.speed(
                    &i.instance_type,
                    &opts.model,
                    &loaded.profile,
                    model.cfg.slo_ms,
                    model.cfg.max_batch_size as u32,
                );
                (i.id.clone(), i.addr.clone(), speed)
            })
            .collect();
        loaded.remotes.sync(&running);
        // workers out of rotation: probed; replaced once they stay so for two intervals
        let grace = Duration::from_secs_f64((2.0 * opts.interval_s).max(10.0));
        for id in loaded.remotes.check_health(grace).await {
            tracing::warn!(instance = %id, "worker stayed unhealthy: terminating it for a replacement");
            if cloud.terminate(&id).await.is_ok() {
                status.lock().expect("status lock").terminations += 1;
            }
        }
        let unhealthy = loaded.remotes.unhealthy_ids();

        let mut actions = Vec::new();
        let attainment = slo.attainment(now);
        if slo.below(now, opts.attainment_target)
            && now - last_emergency >= opts.interval_s
            && (fleet.len() as u32) < opts.max_instances
        {
            if let Some(a) = emergency_launch(&catalog) {
                tracing::warn!(
                    attainment = attainment.unwrap_or(0.0),
                    "SLO attainment below target: out-of-cycle launch"
                );
                last_emergency = now;
                status.lock().expect("status lock").emergencies += 1;
                actions.push(a);
                next_control = now; // and an out-of-cycle plan
            }
        }
        if now >= next_control {
            next_control = now + opts.interval_s;
            let history = if rates.history.is_empty() {
                vec![rates.current_peak()]
            } else {
                rates.history.clone()
            };
            let in_flight = loaded.remotes.in_flight();
            // only healthy capacity counts: a worker out of rotation serves nothing
            let fi: Vec<FleetInstance> = fleet
                .iter()
                .filter(|i| !unhealthy.contains(&i.id))
                .map(|i| FleetInstance {
                    id: i.id.clone(),
                    instance_type: i.instance_type.clone(),
                    market: i.market,
                    launched_at: i.launched_at - (crate::policy::slot::now_s() as f64 - now),
                    ready: i.state == InstanceState::Running,
                    in_flight: in_flight
                        .iter()
                        .find(|(id, _)| *id == i.id)
                        .map_or(0, |x| x.1),
                })
                .collect();
            let r = step(
                now,
                &history,
                &cfg,
                &fi,
                &catalog,
                &mut |h, iv, n| predictor.predict(h, iv, n),
                &mut |f, iv, fl, c, s| provisioner.provision(f, iv, fl, c, s),
            );
            match r {
                Ok(s) => {
                    let mut st = status.lock().expect("status lock");
                    st.forecast = s.forecast.clone();
                    st.plan = s
                        .plan
                        .targets
                        .iter()
                        .map(|t| (t.instance_type.clone(), market_name(t.market), t.count))
                        .collect();
                    st.lambda_share = s.plan.lambda_share;
                    drop(st);
                    log_plan(&s.plan, &s.forecast, &history);
                    actions.extend(s.actions);
                }
                Err(e) => tracing::error!(cause = ?e, "control step failed"),
            }
        }
        let mut total = fleet.len() as u32;
        for a in actions {
            match a {
                Action::Launch {
                    instance_type,
                    market,
                    count,
                } => {
                    for _ in 0..count {
                        if total >= opts.max_instances {
                            tracing::warn!(
                                max = opts.max_instances,
                                "fleet at --max-instances; launch skipped"
                            );
                            break;
                        }
                        match cloud.launch(&instance_type, market).await {
                            Ok(i) => {
                                tracing::info!(id = %i.id, r#type = %i.instance_type, "launched");
                                total += 1;
                                status.lock().expect("status lock").launches += 1;
                            }
                            Err(e) => tracing::error!(cause = %e, "launch failed"),
                        }
                    }
                }
                Action::Terminate { id } => {
                    if cloud.terminate(&id).await.is_ok() {
                        status.lock().expect("status lock").terminations += 1;
                    }
                }
            }
        }
        let mut st = status.lock().expect("status lock");
        st.history = rates.history.iter().rev().take(20).rev().copied().collect();
        st.attainment = attainment;
        st.fleet = fleet.clone();
        let wall = crate::policy::slot::now_s() as f64;
        let mut by_backend = retired.clone();
        let mut live = std::collections::HashMap::new();
        for i in &fleet {
            let key = format!("{}/{}", i.instance_type, market_name(i.market));
            let c = i.price_per_hour * crate::cloud::billed_seconds(wall - i.launched_at) / 3600.0;
            *by_backend.entry(key.clone()).or_default() += c;
            live.insert(i.id.clone(), (key, c));
        }
        for (id, (key, c)) in seen.drain() {
            if !live.contains_key(&id) {
                *retired.entry(key.clone()).or_default() += c;
                *by_backend.entry(key).or_default() += c;
            }
        }
        seen = live;
        if let Some(l) = &lambda {
            by_backend.insert("lambda".into(), l.cost());
            st.lambda_invocations = l.invocations.load(Relaxed);
        }
        st.requests = mm.answered.load(Relaxed);
        let lambda_requests = lambda.as_ref().map_or(0, |l| l.requests.load(Relaxed));
        st.lambda_share_actual = lambda_requests as f64 / st.requests.max(1) as f64;
        st.cost_so_far = by_backend.values().sum();
        st.dollars_per_million_requests = st.cost_so_far / st.requests.max(1) as f64 * 1e6;
        st.cost_by_backend = by_backend;
        st.dollars_per_hour = fleet.iter().map(|i| i.price_per_hour).sum();
        state
            .metrics
            .set_gauge("mark_fleet_instances", fleet.len() as f64);
        state
            .metrics
            .set_gauge("mark_fleet_dollars_per_hour", st.dollars_per_hour);
        state
            .metrics
            .set_gauge("mark_fleet_cost_dollars", st.cost_so_far);
        state
            .metrics
            .set_gauge("mark_slo_attainment", attainment.unwrap_or(1.0));
        state.metrics.set_gauge(
            "mark_dollars_per_million_requests",
            st.dollars_per_million_requests,
        );
        state
            .metrics
            .set_gauge("mark_lambda_share", st.lambda_share_actual);
    }
}

fn log_plan(plan: &Plan, forecast: &[f64], history: &[f64]) {
    tracing::info!(
        last_peak = history.last().copied().unwrap_or(0.0),
        next = forecast.first().copied().unwrap_or(0.0),
        targets = ?plan.targets.iter().map(|t| (t.instance_type.as_str(), t.count)).collect::<Vec<_>>(),
        lambda_share = plan.lambda_share,
        "control step"
    );
}
