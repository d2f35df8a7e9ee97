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

use super::controller::{step, Action, ControlConfig, FleetInstance, PredictFn, ProvisionFn, Step};
use super::demand::Outcomes;
use super::launch_health::LaunchHealth;
use super::monitors::{EmergencyGuard, FleetLoad, Monitors};

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
}

impl Decision {
    /// Every action to carry out, the emergency's first.
    pub fn actions(&self) -> Vec<Action> {
        let mut a: Vec<Action> = self.reaped.clone();
        a.extend(self.emergency.iter().cloned());
        if let Some(Ok(s)) = &self.step {
            a.extend(s.actions.iter().cloned());
        }
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
    emergency: Option<EmergencyGuard>,
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
            emergency: emergency
                .then(|| EmergencyGuard::new(cfg.interval_s, cfg.slo.attainment_target)),
            launches: LaunchHealth::default(),
            max_instances,
            window_s,
            next_control: cfg.interval_s,
            sampled_at: 0.0,
            cfg,
        }
    }

    /// What the act phase reported at `now`: launches the cloud refused count toward their
    /// type's back-off, so the next plan tries another type.
    pub fn on_applied(&mut self, now: f64, applied: &super::fleet::Applied) {
        for t in &applied.refused {
            self.launches.refused(t, now);
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

    /// What happened since the last call (`window`: counts, not totals) at time `now`. Arrivals
    /// are spread over the time that really passed, window by window: a late tick (a slow cloud
    /// call held the loop) reports several windows' arrivals at once, and counting them all in
    /// the newest window would multiply the peak rate the predictor sees.
    pub fn on_window(&mut self, now: f64, window: Outcomes) {
        let from = self.sampled_at.min(now);
        self.sampled_at = now;
        let span = now - from;
        let rates = &mut self.monitors.rates;
        if span <= 1.5 * self.window_s || window.arrived == 0 {
            rates.arrive((now - 1e-6).max(0.0), window.arrived);
        } else {
            let pieces = (span / self.window_s).ceil() as u64;
            let mut given = 0;
            for k in 1..=pieces {
                let end = if k == pieces {
                    now
                } else {
                    from + k as f64 * self.window_s
                };
                let upto = (window.arrived as f64 * (end - from) / span).round() as u64;
                let upto = if k == pieces { window.arrived } else { upto };
                rates.arrive((end - 1e-6).max(0.0), upto - given);
                given = upto;
            }
        }
        rates.advance(now);
        let met = window.done.saturating_sub(window.missed);
        self.monitors.slo.record(now, met, window.done);
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
        catalog: &[InstanceType],
        predict: &mut PredictFn<'_>,
        provision: &mut ProvisionFn<'_>,
    ) -> Decision {
        self.monitors.rates.advance(now);
        let (counted, reaped) =
            self.launches
                .check(now, fleet, catalog, self.cfg.interval_s, self.window_s);
        let usable = self.launches.usable(now, catalog);
        let load = FleetLoad::of(size, &counted, catalog, self.monitors.rates.recent_peak());
        let emergency = self.emergency.as_mut().and_then(|g| {
            g.check(
                now,
                &mut self.monitors.slo,
                load,
                self.max_instances,
                &usable,
            )
        });
        if emergency.is_some() {
            self.next_control = now;
        }
        let mut d = Decision {
            emergency,
            step: None,
            history: Vec::new(),
            load,
            reaped,
        };
        if now < self.next_control {
            return d;
        }
        self.next_control = now + self.cfg.interval_s;
        d.history = self.monitors.history();
        // the provisioner plans with the usable types; the fleet's own are priced from them all
        let mut plan_with =
            |f: &[f64], iv: f64, fl: &[_], _: &[InstanceType], s| provision(f, iv, fl, &usable, s);
        d.step = Some(step(
            now,
            &d.history,
            &self.cfg,
            &counted,
            catalog,
            predict,
            &mut plan_with,
        ));
        d
    }
}

#[cfg(test)]
mod tests;
