//! The control loop's sample phase: each rate window's outcomes into the controller, from this
//! process alone or, with replicas, summed over every replica's published counters.

use std::sync::atomic::Ordering::Relaxed;

use super::{served, ControlLoop};
use crate::control::demand::Outcomes;

impl ControlLoop {
    /// Sample phase: this process's counts, or with replicas the fleet-wide ones (this
    /// replica's counters published, every replica's summed).
    pub(super) async fn sample(&mut self, now: f64) {
        let (windows, totals) = self.served.windows();
        let window = windows.iter().fold(Outcomes::default(), |a, w| a.plus(*w));
        crate::trace::live::window(
            &self.state.trace,
            window.arrived,
            window.done,
            window.missed,
        );
        // Lambda's share of this process's answers, for the slack feedback (with replicas, the
        // fleet's answers are taken to spill as this replica's do)
        let lambda_total = self.lambda.as_ref().map_or(0, |l| l.requests.load(Relaxed));
        let lambda_now = lambda_total.saturating_sub(self.lambda_seen);
        self.lambda_seen = lambda_total;
        match &self.replica {
            None => {
                self.controller.on_window(now, &windows);
                self.controller.served_by_lambda(lambda_now);
            }
            Some(r) => {
                let window_s = self.opts.window_s;
                // rows live a day (readers judge staleness on their own clock; a row that
                // expired under a live replica would be written again from its totals)
                r.publish(totals, window, 86_400).await;
                // a replica whose row has not changed for 3 windows (and 10 s) on this
                // process's clock is gone: its counts so far are in
                let stale_s = (3.0 * window_s).max(10.0);
                let got = match r.rows().await {
                    Some((rows, at)) => {
                        self.fleet_demand.absorb(Some(&rows), at, stale_s, window_s)
                    }
                    None => self.fleet_demand.absorb(None, r.clock(), stale_s, window_s),
                };
                // arrivals at the fleet's rate over the time that passed; outcomes as counted
                let fleet = Outcomes {
                    arrived: got.arrived,
                    ..got.added
                };
                // each model gets its share of this replica's own
                self.controller
                    .on_window(now, &served::split_like(fleet, &windows));
                let share = lambda_now as f64 / window.done.max(1) as f64;
                self.controller
                    .served_by_lambda((share.min(1.0) * got.added.done as f64) as u64);
            }
        }
        // this process's answers' latencies (with replicas, the leader's own stand for the
        // fleet's): the p99 each model's next plan is given
        for (m, grew) in self.served.latency_windows().into_iter().enumerate() {
            for (bound_s, n) in grew {
                self.controller.answered(m, bound_s, n);
            }
        }
        self.own_totals = totals;
    }
}
