//! The rate window's end (the controller's tick, with replicas through their demand rows) and
//! the timeline's samples.

use super::{Sim, Strategy};
use crate::report::Sample;

impl Sim<'_> {
    /// A rate window ends: the controller's tick for the MArk strategies (the same call as the
    /// live loop's; arrivals and answers reached its monitors as they happened).
    pub(super) fn window(&mut self) {
        // with replicas, the controller sees the demand the rows carry, not the arrivals
        let mut leads = true;
        if let Some(r) = self.replicas.as_mut() {
            for (m, n) in r.window(self.now).into_iter().enumerate() {
                self.controller.arrive(m, (self.now - 1e-6).max(0.0), n);
            }
            leads = r.leader(self.now).is_some();
            if !leads {
                // no replica may act: nobody plans, launches or terminates
                self.controller.forget_interval();
            }
        }
        self.controller.advance(self.now);
        for l in &mut self.lanes {
            l.arrival_rate = l.window_arrivals as f64 / self.p.window_s;
            l.window_arrivals = 0;
        }
        // a stalled cloud API: the controller can neither list nor act (demand is still counted)
        let stalled = self.p.faults.stalled(self.now);
        if leads && !stalled && matches!(self.strategy, Strategy::MarkRs | Strategy::MarkReleased) {
            let fleet = self.fleet();
            let models = self.model_inputs();
            let size = self.alive();
            let pol = &mut self.policies;
            let d = self.controller.on_tick(
                self.now,
                &fleet,
                size,
                &models,
                &mut |m, h, iv, n| (pol.predict)(m, h, iv, n),
                &mut |i| (pol.provision)(i),
            );
            let actions = d.actions();
            if !actions.is_empty() {
                self.apply(actions);
            }
        }
    }

    pub(super) fn sample(&mut self) {
        let capacity: f64 = self
            .instances
            .iter()
            .filter(|i| i.ready && !i.pinned)
            .map(|i| {
                let t = &self.types[i.ty];
                if self.strategy == Strategy::SageMaker {
                    self.sagemaker.as_ref().map_or(0.0, |s| s.instance_rps())
                } else {
                    t.spec.capacity_rps
                }
            })
            .sum();
        let cost = self.instances.iter().map(|i| i.cost(self.now)).sum::<f64>()
            + self.lambda.as_ref().map_or(0.0, |l| l.cost);
        self.samples.push(Sample {
            t: self.now,
            load_rps: self.sample_arrivals as f64 / self.p.sample_s,
            capacity_rps: capacity,
            instances: self.alive(),
            lambda_rps: self.sample_lambda as f64 / self.p.sample_s,
            missed: self.sample_missed,
            cost,
            headroom: self.controller.slack.as_ref().map_or(1.0, |s| s.headroom),
        });
        self.sample_arrivals = 0;
        self.sample_lambda = 0;
        self.sample_missed = 0;
    }
}
