//! What a control tick decided, reported: the status, the metrics, the log lines (each
//! emergency, bridge and reaped launch; the plan's "why") and the live trace.

use super::{log, served, ControlLoop};
use crate::control::controller::Action;
use crate::control::cycle::Decision;
use mark_policies::types::InstanceType;

impl ControlLoop {
    /// Reports `d`, decided at `now` with the models' `catalog`.
    pub(super) fn report(&mut self, now: f64, d: &Decision, catalog: &[InstanceType]) {
        {
            let l = &self.controller.launches;
            let mut st = self.status.lock().expect("status lock");
            st.launch_failures = l.failures;
            st.launch_refusals = l.refusals;
            st.overdue_pending = l.overdue;
            st.backed_off_types = l.backed_off(now);
            let m = &self.state.metrics;
            m.set_gauge("mark_fleet_launch_failures", l.failures as f64);
            m.set_gauge("mark_fleet_overdue_pending", f64::from(l.overdue));
            m.set_gauge("mark_fleet_launch_refusals", l.refusals as f64);
            m.set_gauge("mark_fleet_notices", st.notices as f64);
        }
        for id in d.reaped.iter().filter_map(|a| match a {
            Action::Terminate { id } => Some(id),
            Action::Launch { .. } => None,
        }) {
            tracing::warn!(instance = %id, "launch never became ready: terminating it");
        }
        if !d.retired.is_empty() {
            tracing::info!(
                instances = d.retired.len(),
                "the emergency's bridge retires: the plan's own instances serve"
            );
        }
        if d.emergency.is_some() {
            tracing::warn!(
                attainment = self.controller.monitors.slo.attainment(now).unwrap_or(0.0),
                "SLO attainment below target: out-of-cycle launch"
            );
            self.status.lock().expect("status lock").emergencies = self.controller.emergencies();
        }
        match &d.step {
            Some(Ok(s)) => {
                let mut st = self.status.lock().expect("status lock");
                st.forecast = s.forecast.clone();
                st.headroom = d.headroom;
                if let Some(sl) = &self.controller.slack {
                    st.headroom_steps = (sl.downs, sl.ups);
                }
                self.state
                    .metrics
                    .set_gauge("mark_plan_headroom", d.headroom);
                st.plan = s
                    .plan
                    .targets
                    .iter()
                    .map(|t| (t.instance_type.clone(), t.market.to_string(), t.count))
                    .collect();
                st.lambda_share = s.plan.lambda_share;
                st.models = served::model_status(s, &st.models);
                drop(st);
                self.catalog = crate::control::mix::mixed_catalog(&s.models, catalog);
                let mut why = log::log_plan(&s.plan, &s.forecast, &d.history, &s.actions, &d.load);
                if let (Some(m), true) = (&s.driver, s.models.len() > 1) {
                    why = format!("{why}; driven by {m}");
                }
                self.status.lock().expect("status lock").last_step_why = why;
                let last_peak = d.history.last().copied().unwrap_or(0.0);
                crate::trace::live::step(
                    &self.state.trace,
                    last_peak,
                    &s.forecast,
                    &s.plan,
                    &s.actions,
                );
            }
            Some(Err(e)) => tracing::error!(cause = ?e, "control step failed"),
            None => {}
        }
    }
}
