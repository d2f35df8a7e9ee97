//! The [`Controller`]: one owner of the control cycle, driven the same way by the live loop
//! (`mark serve`) and the simulator (`mark simulate`). It owns the control settings, the demand
//! and SLO monitors, the emergency guard and the time of the next plan; the callers bring time,
//! outcomes, the fleet and the policies, and carry out the actions it returns.
//!
//! Every rate window the caller reports what happened ([`Controller::on_window`]; the simulator,
//! which knows each arrival's time, feeds [`Controller::monitors`] directly) and asks for a
//! decision ([`Controller::on_tick`]): an emergency launch when the SLO is breached for lack of
//! capacity (which also plans out of cycle), and the controller step every interval.

use mark_policies::types::{InstanceType, PolicyError};

use super::bridge::Bridge;
use super::controller::{
    capacity_of, step, Action, ControlConfig, FleetInstance, PredictFn, ProvisionFn, Step,
};
use super::demand::Outcomes;
use super::launch_health::LaunchHealth;
use super::mix::{demands, mixed_catalog, Floor, ModelInput};
use super::monitors::{EmergencyGuard, FleetLoad, Monitors};
use super::rates::PeakRates;
use super::slack::{IntervalOutcomes, Slack};

/// One model's own monitors (its arrivals and SLO outcomes), beside the fleet-wide ones.
#[derive(Debug, Clone)]
pub struct ModelTrack {
    /// Model name.
    pub name: String,
    /// Its peak rates and attainment.
    pub monitors: Monitors,
    /// Its answers' latencies since the last plan (the p99 its demand carries).
    pub latency: super::latency::IntervalLatency,
}

/// What one tick decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The out-of-cycle launch the SLO breach asked for.
    pub emergency: Option<Action>,
    /// The controller step, when one ran (every interval, and after an emergency).
    pub step: Option<Result<Step, PolicyError>>,
    /// The predictor's input of that step.
    pub history: Vec<f64>,
    /// The fleet as the emergency guard weighed it.
    pub load: FleetLoad,
    /// Terminations of launches past their pending deadline (see `launch_health`).
    pub reaped: Vec<Action>,
    /// Terminations of an emergency's bridge whose time is over (see `bridge`).
    pub retired: Vec<Action>,
    /// The headroom factor the step planned the forecast at (1 without the slack feedback).
    pub headroom: f64,
}

impl Decision {
    /// Every action to carry out: terminations first, then the plan's, then the emergency's (a
    /// bridge never takes the room or the launch budget the plan needs).
    pub fn actions(&self) -> Vec<Action> {
        let mut a: Vec<Action> = self.reaped.clone();
        a.extend(self.retired.iter().cloned());
        if let Some(Ok(s)) = &self.step {
            a.extend(s.actions.iter().cloned());
        }
        a.extend(self.emergency.iter().cloned());
        a
    }
}

/// The control cycle's state between ticks.
#[derive(Debug, Clone)]
pub struct Controller {
    /// Control settings.
    pub cfg: ControlConfig,
    /// Peak arrival rates and SLO attainment.
    pub monitors: Monitors,
    /// Launches that never became ready, and the types backed off for it.
    pub launches: LaunchHealth,
    /// Per model, in the order of the `models` given to [`Controller::on_tick`].
    pub tracks: Vec<ModelTrack>,
    /// `--min-instances` and the function that carries the load at zero.
    pub floor: Floor,
    /// The feedback on slack, when [`ControlConfig::slack`] is set.
    pub slack: Option<Slack>,
    /// The last plan left everything to Lambda (the floor's zero): a breach is then Lambda's
    /// (a cold start), not missing capacity, and launches no instance.
    pub at_zero: bool,
    emergency: Option<EmergencyGuard>,
    /// The emergencies' bridges in flight, kept apart from the plan.
    bridges: Vec<Bridge>,
    max_instances: u32,
    window_s: f64,
    next_control: f64,
    sampled_at: f64,
}

impl Controller {
    /// A cycle starting at time 0 with `window_s` rate windows; the first plan at the end of the
    /// first interval. `emergency`: answer SLO breaches with out-of-cycle launches (mark-rs;
    /// MArk as released had none).
    pub fn new(cfg: ControlConfig, window_s: f64, max_instances: u32, emergency: bool) -> Self {
        Controller {
            monitors: Monitors::new(window_s, cfg.interval_s),
            tracks: vec![ModelTrack {
                name: String::new(),
                monitors: Monitors::new(window_s, cfg.interval_s),
                latency: Default::default(),
            }],
            floor: Floor::default(),
            at_zero: false,
            slack: cfg.slack.map(Slack::new),
            emergency: emergency
                .then(|| EmergencyGuard::new(cfg.interval_s, cfg.slo.attainment_target)),
            launches: LaunchHealth::default(),
            bridges: Vec::new(),
            max_instances,
            window_s,
            next_control: cfg.interval_s,
            sampled_at: 0.0,
            cfg,
        }
    }

    /// The models the fleet serves, in the order `on_window` and `on_tick` give them (one
    /// unnamed model until called).
    pub fn with_models(mut self, names: &[String]) -> Self {
        self.tracks = names
            .iter()
            .map(|n| ModelTrack {
                name: n.clone(),
                monitors: Monitors::new(self.window_s, self.cfg.interval_s),
                latency: Default::default(),
            })
            .collect();
        self
    }

    /// The fleet's floor (`--min-instances`).
    pub fn with_floor(mut self, floor: Floor) -> Self {
        self.floor = floor;
        self
    }

    /// `n` items of model `m` arrived at `t` (the simulator, which sees every arrival).
    pub fn arrive(&mut self, m: usize, t: f64, n: u64) {
        self.monitors.rates.arrive(t, n);
        if let Some(tr) = self.tracks.get_mut(m) {
            tr.monitors.rates.arrive(t, n);
        }
    }

    /// `done` requests of model `m` had an outcome at `now`, `met` of them within the SLO,
    /// `slow` of them after half of it (or missed).
    pub fn outcome(&mut self, m: usize, now: f64, met: u64, done: u64, slow: u64) {
        self.monitors.slo.record(now, met, done);
        if let Some(s) = &mut self.slack {
            s.record(IntervalOutcomes {
                done,
                missed: done - met.min(done),
                slow,
                lambda: 0,
            });
        }
        if let Some(tr) = self.tracks.get_mut(m) {
            tr.monitors.slo.record(now, met, done);
        }
    }

    /// `n` answers of model `m` took `seconds` each (the p99 the next plan is given).
    pub fn answered(&mut self, m: usize, seconds: f64, n: u64) {
        if let Some(tr) = self.tracks.get_mut(m) {
            tr.latency.record(seconds, n);
        }
    }

    /// A replica that does not lead plans nothing: what it counted is not an interval of a
    /// plan, and must not be judged as one when it takes over.
    pub fn forget_interval(&mut self) {
        if let Some(s) = &mut self.slack {
            s.forget_interval();
        }
        for t in &mut self.tracks {
            t.latency.clear();
        }
    }

    /// `n` requests were answered by Lambda (spill-over): the slack feedback weighs them.
    pub fn served_by_lambda(&mut self, n: u64) {
        if let Some(s) = &mut self.slack {
            s.record(IntervalOutcomes {
                lambda: n,
                ..Default::default()
            });
        }
    }

    /// Every monitor's rate windows advanced to `now`.
    pub fn advance(&mut self, now: f64) {
        self.monitors.rates.advance(now);
        for t in &mut self.tracks {
            t.monitors.rates.advance(now);
        }
    }

    /// Each model's attainment over the SLO monitor's window.
    pub fn attainment_by_model(&mut self, now: f64) -> Vec<(String, Option<f64>)> {
        self.tracks
            .iter_mut()
            .map(|t| (t.name.clone(), t.monitors.slo.attainment(now)))
            .collect()
    }

    /// What the act phase reported at `now`: launches the cloud refused count toward their
    /// type's back-off, so the next plan tries another type.
    pub fn on_applied(&mut self, now: f64, applied: &super::fleet::Applied) {
        for (t, m) in &applied.refused {
            self.launches.refused(t, *m, now);
        }
    }

    /// Emergency launches asked for so far.
    pub fn emergencies(&self) -> u64 {
        self.emergency.as_ref().map_or(0, |g| g.fired)
    }

    /// A new leader plans at once, on the fleet it has just listed.
    pub fn plan_now(&mut self, now: f64) {
        self.next_control = self.next_control.min(now);
    }

    /// What happened since the last call, per model in the order of the tracks (counts, not
    /// totals) at time `now`. Arrivals are spread over the time that really passed, window by
    /// window: a late tick (a slow cloud call held the loop) reports several windows' arrivals
    /// at once, and counting them all in the newest window would multiply the peak rate the
    /// predictor sees.
    pub fn on_window(&mut self, now: f64, windows: &[Outcomes]) {
        let from = self.sampled_at.min(now);
        self.sampled_at = now;
        let total = windows.iter().fold(Outcomes::default(), |a, w| a.plus(*w));
        let window_s = self.window_s;
        spread(&mut self.monitors.rates, window_s, from, now, total.arrived);
        self.monitors
            .slo
            .record(now, total.done.saturating_sub(total.missed), total.done);
        if let Some(s) = &mut self.slack {
            s.record(IntervalOutcomes {
                done: total.done,
                missed: total.missed.min(total.done),
                slow: total.slow.max(total.missed).min(total.done),
                lambda: 0,
            });
        }
        for (t, w) in self.tracks.iter_mut().zip(windows) {
            spread(&mut t.monitors.rates, window_s, from, now, w.arrived);
            t.monitors
                .slo
                .record(now, w.done.saturating_sub(w.missed), w.done);
        }
    }

    /// One tick at time `now`: launches past their pending deadline terminated (and no longer
    /// counted), the emergency guard on `fleet` (the instances that count as capacity, serving
    /// or launching; `size` counts every instance for the bound), and the controller step when
    /// it is due. Types whose launches keep failing are left out of the plans for a while.
    pub fn on_tick(
        &mut self,
        now: f64,
        fleet: &[FleetInstance],
        size: u32,
        models: &[ModelInput],
        predict: &mut PredictFn<'_>,
        provision: &mut ProvisionFn<'_>,
    ) -> Decision {
        self.advance(now);
        let all: &[InstanceType] = models.first().map_or(&[], |m| &m.catalog);
        // the fleet's capacity for the mix arriving now (each model's recent peak)
        let recent: Vec<Vec<f64>> = (0..models.len())
            .map(|i| {
                vec![self
                    .tracks
                    .get(i)
                    .map_or(self.monitors.rates.recent_peak(), |t| {
                        t.monitors.rates.recent_peak()
                    })]
            })
            .collect();
        let now_mix = mixed_catalog(&demands(models, &recent, &[], &[], all), all);
        let (counted, reaped) =
            self.launches
                .check(now, fleet, &now_mix, self.cfg.interval_s, self.window_s);
        let usable_now = self.launches.usable(now, &now_mix);
        let load = FleetLoad::of(size, &counted, &now_mix, self.monitors.rates.recent_peak());
        let at_zero = self.at_zero;
        let emergency = self.emergency.as_mut().filter(|_| !at_zero).and_then(|g| {
            g.check(
                now,
                &mut self.monitors.slo,
                load,
                self.max_instances,
                &usable_now,
            )
        });
        if emergency.is_some() {
            self.next_control = now;
        }
        // the bridges in flight (none on almost every tick: the fleet is then planned as is)
        let (plan_fleet, retired) = self.bridges_on(now, fleet, counted, &now_mix, load.demand_rps);
        let mut d = Decision {
            emergency,
            step: None,
            history: Vec::new(),
            load,
            reaped,
            retired,
            headroom: self.slack.as_ref().map_or(1.0, |s| s.headroom),
        };
        if now < self.next_control || models.is_empty() {
            self.start_bridge(now, &mut d, fleet, size, &now_mix);
            return d;
        }
        self.next_control = now + self.cfg.interval_s;
        d.history = self.monitors.history();
        // the interval's outcomes move the headroom the forecasts are planned at
        let target = self.cfg.slo.attainment_target;
        if let Some(s) = &mut self.slack {
            s.end_interval(target);
            d.headroom = s.headroom;
        }
        let mut forecasts = Vec::with_capacity(models.len());
        let mut attainment = Vec::with_capacity(models.len());
        // each model's p99 since the last plan (counted afresh once a plan is made)
        let p99: Vec<Option<f64>> = self.tracks.iter().map(|t| t.latency.p99_ms()).collect();
        for (i, m) in models.iter().enumerate() {
            let t = self.tracks.get_mut(i);
            let history = t
                .as_ref()
                .map_or(d.history.clone(), |t| t.monitors.history());
            attainment.push(t.and_then(|t| t.monitors.slo.attainment(now)));
            match predict(&m.name, &history, self.cfg.interval_s, self.cfg.horizon) {
                Ok(f) => forecasts.push(f),
                Err(e) => {
                    d.step = Some(Err(e));
                    self.start_bridge(now, &mut d, fleet, size, &now_mix);
                    return d;
                }
            }
        }
        // the provisioner plans with the usable types; the fleet's own are priced from them all
        // every type's capacity (the fleet may hold backed-off ones); the plan launches usable ones
        let usable = self.launches.usable(now, all);
        // the slack feedback's headroom scales what is planned (one provisioner call: a policy
        // component's failures, rollbacks and shadows see one decision per interval)
        let h = d.headroom;
        if h != 1.0 {
            for f in &mut forecasts {
                f.iter_mut().for_each(|x| *x *= h);
            }
        }
        let planned = demands(models, &forecasts, &attainment, &p99, all);
        for t in &mut self.tracks {
            t.latency.clear();
        }
        d.step = Some(step(
            now,
            &self.cfg,
            &plan_fleet,
            planned,
            all,
            &usable,
            &self.floor,
            provision,
        ));
        self.start_bridge(now, &mut d, fleet, size, &now_mix);
        self.at_zero = matches!(&d.step, Some(Ok(s)) if s.plan.targets.is_empty()
            && s.plan.lambda_share >= 1.0
            && self.floor.min_instances == Some(0));
        d
    }

    /// The bridges at `now`: a bridge at its adoption time is dropped first (a leader back
    /// after a while never retires what another leader adopted meanwhile), members are claimed
    /// as they appear, and retired once the plan's own instances serve what it wants served.
    /// Returns `counted` without any bridge's instances (what the plan sees), and the
    /// retirements.
    fn bridges_on(
        &mut self,
        now: f64,
        fleet: &[FleetInstance],
        counted: Vec<FleetInstance>,
        catalog: &[InstanceType],
        demand_rps: f64,
    ) -> (Vec<FleetInstance>, Vec<Action>) {
        self.bridges.retain(|b| !b.over(now, fleet));
        if self.bridges.is_empty() {
            return (counted, Vec::new());
        }
        let mut taken: Vec<String> = self.bridges.iter().flat_map(|b| b.ids().cloned()).collect();
        for b in &mut self.bridges {
            b.claim(now, fleet, &taken, self.cfg.interval_s);
            taken.extend(b.ids().cloned());
        }
        let (apart, plan_fleet): (Vec<FleetInstance>, Vec<FleetInstance>) =
            counted.into_iter().partition(|i| taken.contains(&i.id));
        let rest_rps: f64 = plan_fleet
            .iter()
            .filter(|i| i.ready)
            .map(|i| capacity_of(catalog, &i.instance_type))
            .sum();
        let mut retired = Vec::new();
        for b in &mut self.bridges {
            retired.extend(b.retire(now, &apart, rest_rps, demand_rps));
        }
        self.bridges.retain(|b| !b.over(now, fleet));
        (plan_fleet, retired)
    }

    /// An emergency that asked for several instances: a bridge, sized to the room the plan of
    /// the same tick left under `max_instances` (its launches come first), due once the slowest
    /// of them serves; one instance is an ordinary emergency launch.
    fn start_bridge(
        &mut self,
        now: f64,
        d: &mut Decision,
        fleet: &[FleetInstance],
        size: u32,
        catalog: &[InstanceType],
    ) {
        let launched: &[Action] = match &d.step {
            Some(Ok(s)) => &s.actions,
            _ => &[],
        };
        let planned: u32 = Action::launches(launched).iter().map(|l| l.2).sum();
        let room = self
            .max_instances
            .saturating_sub(size.saturating_add(planned));
        if let Some(Action::Launch { count, .. }) = &mut d.emergency {
            if *count > 1 {
                *count = (*count).min(room);
            }
            if *count == 0 {
                d.emergency = None;
                if let Some(g) = &mut self.emergency {
                    g.withdraw();
                }
            }
        }
        if let Some(mut b) = d.emergency.as_ref().and_then(|a| Bridge::of(now, a, fleet)) {
            // what the plan of this tick covers (none ran: the demand decides)
            let covers = match &d.step {
                Some(Ok(s)) => s
                    .plan
                    .targets
                    .iter()
                    .map(|t| f64::from(t.count) * capacity_of(catalog, &t.instance_type))
                    .sum(),
                _ => f64::INFINITY,
            };
            b.due_after(
                launched,
                catalog,
                self.window_s,
                self.cfg.interval_s,
                covers,
            );
            self.bridges.push(b);
        }
    }
}

/// `arrived` items counted from `from` to `now` into `rates`, window by window.
fn spread(rates: &mut PeakRates, window_s: f64, from: f64, now: f64, arrived: u64) {
    let span = now - from;
    if span <= 1.5 * window_s || arrived == 0 {
        rates.arrive((now - 1e-6).max(0.0), arrived);
    } else {
        let pieces = (span / window_s).ceil() as u64;
        let mut given = 0;
        for k in 1..=pieces {
            let end = if k == pieces {
                now
            } else {
                from + k as f64 * window_s
            };
            let upto = (arrived as f64 * (end - from) / span).round() as u64;
            let upto = if k == pieces { arrived } else { upto };
            rates.arrive((end - 1e-6).max(0.0), upto - given);
            given = upto;
        }
    }
    rates.advance(now);
}

#[cfg(test)]
mod tests;
