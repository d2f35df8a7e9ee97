//! The gateway's `on_deadline = "reject"` rule on the simulated fleet: refuse at arrival what is
//! expected to miss the SLO, and count every refusal as a miss.

use super::*;

impl Sim<'_> {
    pub(super) fn reject_late(&self) -> bool {
        self.p.reject_late && self.strategy == Strategy::MarkRs
    }

    /// A refused or dropped request of model `m`: an SLO miss.
    pub(super) fn reject(&mut self, m: usize, k: u64) {
        self.lanes[m].rejected += k;
        self.sample_missed += k;
        self.controller.outcome(m, self.now, 0, k, k);
    }

    /// The live gateway's admission rule (`batching::admission`) on the simulated fleet: true
    /// when a request arriving now is expected to be answered past its share of the SLO, no
    /// Lambda slot can take it, and some instance is ready (while none is, it waits for one).
    pub(super) fn late_at_arrival(&mut self, m: usize) -> bool {
        let len = self.lanes[m].queue.len();
        if !self.reject_late() || len < self.lanes[m].full_batch {
            return false;
        }
        if self.lambda.as_ref().is_some_and(SimLambda::available) {
            return false;
        }
        let lane = &self.lanes[m];
        if self.now - lane.capacity_at.0 >= 1.0 || lane.capacity_at.0 < 0.0 {
            let cap = self
                .instances
                .iter()
                .filter(|i| i.ready && i.alive())
                .map(|i| lane.best_rate[i.ty])
                .sum();
            self.lanes[m].capacity_at = (self.now, cap);
        }
        // the live rule: batches slower than profiled mean less capacity and a longer own batch
        let slow = if self.p.live_latency {
            self.live_slowdown.max(1.0)
        } else {
            1.0
        };
        let cap = self.lanes[m].capacity_at.1 / slow;
        if cap <= 0.0 {
            return false;
        }
        len as f64 / cap + self.lanes[m].full_batch_s * slow
            > crate::batching::admission::ADMIT_SHARE_OF_SLO * self.slo_s(m)
    }
}
