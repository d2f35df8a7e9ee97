//! The live control loop of `mark serve --cloud local|ec2`. Every rate window it runs four
//! phases, each a method of [`ControlLoop`]:
//!
//! 1. **sample**: demand and SLO outcomes since the last window into the monitors;
//! 2. **observe**: the fleet from the driver's `list` (the cloud is the source of truth), the
//!    running workers become the model's remote backends, workers that stayed unhealthy go;
//! 3. **plan**: the emergency guard and, every interval, the controller step (the same pure code
//!    the simulator runs) through the predictor and provisioner slots;
//! 4. **act** and **publish**: the actions through `control::fleet::apply`, then the status page,
//!    the cost ledger and the gauges.
//!
//! With replicas (`--lease-table`), every replica samples the fleet-wide demand (its own
//! counters published, everyone's summed) and observes the fleet, but only the lease holder
//! plans and acts; launches are keyed by plan ([`keyed`]).

mod keyed;
mod log;
mod prices;
mod report;
mod sample;
mod served;

use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use mark_policies::types::InstanceType;

use crate::api::AppState;
use crate::clock::{wall_s, LoopClock};
use crate::cloud::driver::Driver;
use crate::cloud::local::LocalCloud;
use crate::control::catalog::Catalog;
use crate::control::controller::{Action, ControlConfig, SCALE_IN_GUARD};
use crate::control::cycle::Controller;
pub use crate::control::demand::Outcomes;
use crate::control::fleet::{self, Instance, InstanceState};
use crate::control::ledger::{backend_key, Billed, CostLedger};
use crate::control::status::SharedStatus;
use crate::exec::lambda_client::LambdaBackend;
use crate::policy::caller::PolicyCaller;
use crate::replica::Replica;

/// Settings of the control loop.
#[derive(Debug, Clone)]
pub struct AutoscaleOptions {
    /// The catalog.
    pub catalog: Catalog,
    /// The model the fleet's instances are tagged with (the first the fleet serves).
    pub model: String,
    /// The models whose demand the fleet plans for (one fleet for their mix); empty: every
    /// model of the repository.
    pub models: Vec<String>,
    /// `--min-instances`: None, the plan as it is; Some(0), zero instances while Lambda carries
    /// the forecast for less; Some(n), at least n.
    pub min_instances: Option<u32>,
    /// `--spot-max-share`: no spot type above this share of the plan's spot capacity.
    pub spot_max_share: Option<f64>,
    /// The feedback on slack (`--slack-feedback`).
    pub slack_feedback: bool,
    /// Seconds between reads of live spot prices (EC2; 0: the catalog's prices only).
    pub spot_price_interval_s: f64,
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
    /// Launches allowed per rolling hour.
    pub launches_per_hour: u32,
    /// Terminations allowed per rolling hour.
    pub terminations_per_hour: u32,
    /// The EC2 driver's settings when the fleet runs on EC2 (else the local cloud).
    pub ec2: Option<crate::cloud::ec2::Ec2Options>,
    /// The Lambda function for spill-over (needs the catalog's `[lambda]`).
    pub lambda: Option<crate::exec::lambda_client::LambdaOptions>,
    /// This replica's lease and counters, when replicas share the fleet (`--lease-table`).
    pub replica: Option<Arc<Replica>>,
    /// Faults the cloud calls go through (`--cloud-faults`).
    pub faults: Option<crate::control::faults::CloudFaults>,
}

/// Runs the loop forever (returns at once for an unknown model).
pub async fn run(state: Arc<AppState>, opts: AutoscaleOptions, status: SharedStatus) {
    let Some(mut cl) = ControlLoop::start(state, opts, status).await else {
        return;
    };
    let mut tick = tokio::time::interval(Duration::from_secs_f64(cl.opts.window_s));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = cl.clock.now();
        cl.sample(now).await;
        let Some(fleet) = cl.observe().await else {
            continue;
        };
        let actions = cl.plan(now, &fleet);
        cl.act(actions, fleet.len() as u32).await;
        cl.publish(&fleet);
    }
}

/// The live loop's state between phases.
pub struct ControlLoop {
    state: Arc<AppState>,
    opts: AutoscaleOptions,
    status: SharedStatus,
    cloud: Driver,
    lambda: Option<Arc<LambdaBackend>>,
    served: served::ServedModels,
    /// Each type's capacity for the mix of the last plan (the lead model's before one).
    catalog: Vec<InstanceType>,
    clock: LoopClock,
    controller: Controller,
    predictor: PolicyCaller,
    provisioner: PolicyCaller,
    ledger: CostLedger,
    budget: fleet::ChangeBudget,
    launch_keys: keyed::LaunchKeys,
    noticed: crate::control::launch_health::Notices,
    replica: Option<Arc<Replica>>,
    fleet_demand: crate::control::demand::FleetDemand,
    was_leader: bool,
    /// The lease generation this tick plans under: every act checks it still holds (0 alone).
    generation: u64,
    /// Live spot prices (`--spot-price-interval`, EC2).
    prices: prices::LivePrices,
    /// This process's counters, all models, at the last sample.
    own_totals: Outcomes,
    /// Requests Lambda answered, at the last sample.
    lambda_seen: u64,
}

impl ControlLoop {
    /// Waits for the model to load, connects the cloud driver (and Lambda), builds the monitors.
    async fn start(
        state: Arc<AppState>,
        opts: AutoscaleOptions,
        status: SharedStatus,
    ) -> Option<Self> {
        let Some(served) = served::ServedModels::wait(&state, &opts.models, &opts.model).await
        else {
            tracing::error!(model = %opts.model, "autoscaling: no model to serve");
            return None;
        };
        let lead = served.lead();
        let (model, loaded) = (lead.model.clone(), lead.loaded.clone());
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
        let cloud = crate::cloud::faults::wrap(cloud, opts.faults.clone());
        let _ = state.cloud.set(cloud.clone());
        let lambda = match (&opts.lambda, &opts.catalog.lambda) {
            (Some(o), Some(spec)) => {
                let l = Arc::new(LambdaBackend::connect(o.clone(), spec.clone()).await);
                // one function serves the repository: the model is named in each payload
                for s in &served.list {
                    s.loaded.remotes.lambda.store(Some(l.clone()));
                }
                tracing::info!(function = %o.function, "Lambda spill-over on");
                Some(l)
            }
            _ => None,
        };
        let catalog = opts.catalog.for_model(
            &lead.name,
            &loaded.profile,
            model.cfg.slo_ms,
            loaded.rows_per_run(),
        );
        let inputs = served.inputs(&opts.catalog, opts.attainment_target);
        let cfg = ControlConfig {
            interval_s: opts.interval_s,
            horizon: opts.horizon,
            min_age_s: opts.min_age_s,
            slo: crate::control::mix::strictest(&inputs),
            scale_in_guard: Some(SCALE_IN_GUARD),
            slack: opts.slack_feedback.then_some(crate::control::slack::SLACK),
            pays_for_itself: true,
        };
        let names: Vec<String> = served.list.iter().map(|s| s.name.clone()).collect();
        tracing::info!(models = ?names, "one fleet for these models");
        let floor = crate::control::mix::Floor {
            min_instances: opts.min_instances,
            spot_max_share: opts.spot_max_share,
            lambda: lambda.as_ref().and(opts.catalog.lambda.clone()),
        };
        state.trace.set_context(crate::trace::schema::Context {
            model: lead.name.clone(),
            slo_ms: model.cfg.slo_ms,
            max_batch: loaded.rows_per_run(),
            on_deadline: format!("{:?}", model.cfg.on_deadline).to_lowercase(),
            interval_s: opts.interval_s,
            window_s: opts.window_s,
            attainment_target: opts.attainment_target,
            profile: serde_json::to_value(&*loaded.profile).ok(),
            catalog_toml: opts.catalog.to_toml(),
            executors: model.cfg.executors as u32,
            policies: crate::policy::PolicyKind::ALL
                .map(|k| {
                    let s = state.policies.get(k).status();
                    (k.to_string(), s.sha256.unwrap_or_else(|| s.active.into()))
                })
                .to_vec(),
        });
        let engine = state.engine.clone();
        // the plan covers the whole forecast until the feedback on slack (if on) says otherwise
        status.lock().expect("status lock").headroom = 1.0;
        Some(ControlLoop {
            predictor: PolicyCaller::new(engine.clone(), state.policies.predictor.clone()),
            provisioner: PolicyCaller::new(engine, state.policies.provisioner.clone()),
            controller: Controller::new(cfg, opts.window_s, opts.max_instances, true)
                .with_models(&names)
                .with_floor(floor),
            budget: fleet::ChangeBudget::new(opts.launches_per_hour, opts.terminations_per_hour),
            clock: LoopClock::start(),
            ledger: CostLedger::default(),
            launch_keys: keyed::LaunchKeys::default(),
            noticed: Default::default(),
            replica: opts.replica.clone(),
            fleet_demand: Default::default(),
            generation: 0,
            prices: prices::LivePrices::start(&opts),
            was_leader: false,
            own_totals: Outcomes::default(),
            lambda_seen: 0,
            state,
            status,
            cloud,
            lambda,
            served,
            catalog,
            opts,
        })
    }

    /// True when this process may change the fleet: no replicas, or it holds the lease. A
    /// replica that just took over plans at once, on the fleet it has just listed.
    fn leads(&mut self) -> bool {
        self.generation = self.replica.as_ref().map_or(0, |r| r.generation());
        let leads = self.replica.is_none() || self.generation != 0;
        if !leads {
            // a follower plans nothing: its counts are no interval of a plan
            self.controller.forget_interval();
        }
        if leads && !self.was_leader && self.replica.is_some() {
            tracing::info!("controller lease held: planning on the fleet listed from its tags");
            self.controller.plan_now(self.clock.now());
        }
        self.was_leader = leads;
        leads
    }

    /// Observe phase: the fleet, or `None` when the cloud could not say (an unknown fleet is not
    /// an empty one: the tick is skipped rather than over-launch).
    async fn observe(&mut self) -> Option<Vec<Instance>> {
        let mut fleet = match self.cloud.list().await {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(cause = %e, "listing the fleet failed; skipping this tick");
                return None;
            }
        };
        self.live_prices(&mut fleet);
        self.served.sync(
            &fleet,
            &self.opts.catalog,
            self.state.cfg.worker_secret.as_ref(),
        );
        // workers out of rotation: probed; replaced once they stay so for two intervals (by the
        // controller only: a follower just keeps them out of its rotation)
        let grace = Duration::from_secs_f64((2.0 * self.opts.interval_s).max(10.0));
        // every model's set: a worker failing one model's batches is out of that rotation too
        let mut dead: Vec<String> = Vec::new();
        for s in &self.served.list {
            for id in s.loaded.remotes.check_health(grace).await {
                if !dead.contains(&id) {
                    dead.push(id);
                }
            }
            s.loaded.remotes.check_draining().await;
        }
        if !self.leads() {
            return Some(fleet);
        }
        for id in dead {
            // fenced like every act: only under the generation this tick leads with
            let _acting = match &self.replica {
                Some(r) => match r.acting(self.generation).await {
                    Some(g) => Some(g),
                    None => break,
                },
                None => None,
            };
            tracing::warn!(instance = %id, "worker stayed unhealthy: terminating it for a replacement");
            if self.cloud.terminate(&id).await.is_ok() {
                self.status.lock().expect("status lock").terminations += 1;
            }
        }
        Some(fleet)
    }

    /// Plan phase: the controller's tick (an emergency launch when the SLO is breached, which
    /// also plans out of cycle, and the controller step every interval).
    fn plan(&mut self, now: f64, fleet: &[Instance]) -> Vec<Action> {
        if !self.was_leader {
            return Vec::new();
        }
        let (unhealthy, draining) = self.served.out_of_rotation();
        let in_flight = self.served.in_flight();
        // only healthy capacity counts: a worker out of rotation or going away serves nothing
        let view = fleet::view(
            fleet,
            |id| !unhealthy.iter().any(|u| u == id) && !draining.iter().any(|u| u == id),
            |t| self.clock.of_wall(t),
            |id| in_flight.iter().find(|(i, _)| i == id).map_or(0, |x| x.1),
        );
        // interruption notices: the replacement is planned now, not at the next interval; one
        // still listed after the grace (a rebalance recommendation reclaims nothing) is ended
        let listed = fleet::view(fleet, |_| true, |t| self.clock.of_wall(t), |_| 0);
        let (new_notice, stale) = self.noticed.observe(now, &draining, &listed);
        if new_notice {
            tracing::warn!(
                ?draining,
                "interruption notice: planning the replacement now"
            );
            self.status.lock().expect("status lock").notices = self.noticed.seen;
            self.controller.plan_now(now);
        }
        // the hour's launches as the cloud knows them (a restart or a new leader keeps the budget)
        self.budget
            .adopt_launches(view.iter().map(|i| i.launched_at), now);
        let (predictor, provisioner) = (&mut self.predictor, &mut self.provisioner);
        let inputs = self
            .served
            .inputs(&self.opts.catalog, self.opts.attainment_target);
        let d = self.controller.on_tick(
            now,
            &view,
            fleet.len() as u32,
            &inputs,
            &mut |m, h, iv, n| predictor.predict(m, h, iv, n),
            &mut |i| provisioner.provision(i),
        );
        self.report(now, &d, &inputs[0].catalog);
        let mut actions = d.actions();
        actions.extend(stale);
        actions
    }

    /// Act phase.
    async fn act(&mut self, actions: Vec<Action>, size: u32) {
        if actions.is_empty() {
            return;
        }
        let now = self.clock.now();
        self.launch_keys
            .at(keyed::plan_key(wall_s(), self.opts.interval_s));
        let mut cloud = keyed::Keyed {
            cloud: &self.cloud,
            keys: &mut self.launch_keys,
            replica: self.replica.as_deref().map(|r| (r, self.generation)),
        };
        let done = fleet::apply(
            &mut cloud,
            actions,
            size,
            self.opts.max_instances,
            &mut self.budget,
            now,
        )
        .await;
        if done.skipped_at_max > 0 {
            tracing::warn!(
                max = self.opts.max_instances,
                skipped = done.skipped_at_max,
                "fleet at --max-instances; launches skipped"
            );
        }
        if done.skipped_by_rate > 0 {
            tracing::warn!(
                launches_per_hour = self.budget.launches_per_hour,
                terminations_per_hour = self.budget.terminations_per_hour,
                skipped = done.skipped_by_rate,
                "the hour's budget of fleet changes is spent; changes skipped"
            );
        }
        for f in &done.failures {
            tracing::error!(cause = %f, "fleet action failed");
        }
        self.controller.on_applied(now, &done);
        let launched_hour = self.budget.launches_in_hour(now);
        let terminated_hour = self.budget.terminations_in_hour(now);
        let mut st = self.status.lock().expect("status lock");
        st.launches += u64::from(done.launched);
        st.terminations += u64::from(done.terminated);
        st.changes_skipped_by_rate += u64::from(done.skipped_by_rate);
        st.launches_last_hour = launched_hour;
        st.terminations_last_hour = terminated_hour;
    }

    /// Publish phase: the status page, the ledger and the gauges.
    fn publish(&mut self, fleet: &[Instance]) {
        let now = self.clock.now();
        let wall = wall_s();
        self.ledger.observe(wall, fleet.iter().map(billed));
        let attainment = self.controller.monitors.slo.attainment(now);
        let mut st = self.status.lock().expect("status lock");
        st.history = self
            .controller
            .monitors
            .rates
            .history
            .iter()
            .rev()
            .take(20)
            .rev()
            .copied()
            .collect();
        st.attainment = attainment;
        st.fleet = fleet.to_vec();
        let mut by_backend = self.ledger.cost_by_backend();
        if let Some(l) = &self.lambda {
            by_backend.insert("lambda".into(), l.cost());
            st.lambda_invocations = l.invocations.load(Relaxed);
        }
        st.requests = self.served.answered();
        served::observed(&mut st.models, &mut self.controller, now);
        let lambda_requests = self.lambda.as_ref().map_or(0, |l| l.requests.load(Relaxed));
        st.lambda_share_actual = lambda_requests as f64 / st.requests.max(1) as f64;
        st.cost_so_far = by_backend.values().sum();
        st.dollars_per_million_requests = st.cost_so_far / st.requests.max(1) as f64 * 1e6;
        st.cost_by_backend = by_backend;
        st.dollars_per_hour = fleet.iter().map(|i| i.price_per_hour).sum();
        st.capacity_rps = fleet
            .iter()
            .filter(|i| i.state == InstanceState::Running)
            .map(|i| crate::control::controller::capacity_of(&self.catalog, &i.instance_type))
            .sum();
        st.target_attainment = self.opts.attainment_target;
        let lead = &self.served.lead().loaded.metrics;
        let ms = |h: &crate::metrics::Histogram| {
            h.buckets()
                .into_iter()
                .map(|(le, n)| (le.is_finite().then_some(le * 1e3), n))
                .collect()
        };
        let (dph, cost, answered) = (st.dollars_per_hour, st.cost_so_far, st.requests);
        crate::trace::live::fleet(
            &self.state.trace,
            fleet,
            dph,
            cost,
            answered,
            crate::trace::live::FleetHistograms {
                latency: ms(&lead.latency),
                host: ms(&lead.host_overhead),
                worker: ms(&lead.worker_overhead),
            },
        );
        let m = &self.state.metrics;
        m.set_gauge("mark_fleet_instances", fleet.len() as f64);
        m.set_gauge("mark_fleet_dollars_per_hour", st.dollars_per_hour);
        m.set_gauge("mark_fleet_cost_dollars", st.cost_so_far);
        m.set_gauge("mark_slo_attainment", attainment.unwrap_or(1.0));
        m.set_gauge(
            "mark_dollars_per_million_requests",
            st.dollars_per_million_requests,
        );
        m.set_gauge("mark_lambda_share", st.lambda_share_actual);
        m.set_gauge(
            "mark_arrival_rate",
            st.history.last().copied().unwrap_or(0.0),
        );
        m.set_gauge(
            "mark_forecast_rate",
            st.forecast.first().copied().unwrap_or(0.0),
        );
        served::gauges(m, &st.models);
        if let Some(r) = &self.replica {
            let mut rs = r.status();
            let fd = &self.fleet_demand;
            rs.live_replicas = fd.live_replicas;
            rs.fleet_rate = fd.rate;
            rs.fleet_rate_arrived = fd.rate_arrived;
            rs.rows.clone_from(&fd.rows);
            rs.own_arrived = self.own_totals.arrived;
            (rs.fleet_arrived, rs.fleet_done, rs.fleet_missed) =
                (fd.totals.arrived, fd.totals.done, fd.totals.missed);
            m.set_gauge("mark_replica_leader", f64::from(u8::from(rs.leader)));
            m.set_gauge("mark_replicas_live", f64::from(rs.live_replicas));
            m.set_gauge("mark_fleet_arrived_items", rs.fleet_arrived as f64);
            st.replica = Some(rs);
        }
    }
}

/// An instance's billing facts for the ledger.
fn billed(i: &Instance) -> Billed<'_> {
    Billed {
        id: &i.id,
        backend: backend_key(&i.instance_type, i.market),
        price_per_hour: i.price_per_hour,
        launched_at: i.launched_at,
        ended_at: None,
    }
}

#[cfg(test)]
mod tests;
