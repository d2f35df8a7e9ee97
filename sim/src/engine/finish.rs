//! The end of a run: every instance is ended at the run's end, billed through the control
//! plane's ledger, and the run becomes a [`PolicyReport`].

use super::*;
use crate::control::ledger::{backend_key, Billed, CostLedger};

impl Sim<'_> {
    /// Ends the run and reports it.
    pub(super) fn finish(mut self, spot: bool) -> PolicyReport {
        let strategy = self.strategy;
        // what is still queued when nothing else can happen was never served
        let unserved_by: Vec<u64> = self.lanes.iter().map(|l| l.queue.len() as u64).collect();
        let unserved: u64 = unserved_by.iter().sum();
        let end = self.now.max(self.duration);
        self.now = end;
        for i in 0..self.instances.len() {
            self.end(i);
        }
        let ids: Vec<String> = self.instances.iter().map(|i| i.id.to_string()).collect();
        let mut ledger = CostLedger::default();
        ledger.observe(
            end,
            self.instances
                .iter()
                .zip(&ids)
                .filter(|(i, _)| !i.pinned)
                .map(|(i, id)| Billed {
                    id,
                    backend: backend_key(&self.types[i.ty].spec.name, i.market),
                    price_per_hour: i.price_per_hour,
                    launched_at: i.launched_at,
                    ended_at: i.ended_at,
                }),
        );
        let instance_cost = ledger.total();
        let (mut by_backend, mut hours) = (BTreeMap::new(), BTreeMap::new());
        for (k, (cost, h)) in ledger.by_backend() {
            by_backend.insert(k.clone(), cost);
            hours.insert(k, h);
        }
        let (lambda_cost, lambda_invocations, lambda_requests, cold) =
            self.lambda.as_ref().map_or((0.0, 0, 0, 0), |l| {
                (l.cost, l.invocations, l.requests, l.cold_starts)
            });
        if lambda_invocations > 0 {
            by_backend.insert("lambda".into(), lambda_cost);
        }
        let mut hist = LatencyHist::default();
        for l in &self.lanes {
            hist.merge(&l.hist);
        }
        let rejected: u64 = self.lanes.iter().map(|l| l.rejected).sum();
        let requests = hist.count + unserved + rejected;
        let models = self.model_reports(&unserved_by, instance_cost, lambda_cost);
        let unserving = || {
            self.instances
                .iter()
                .filter(|i| !i.boots)
                .map(|i| (i.ended_at.unwrap_or(end) - i.launched_at, i.ty))
        };
        let max_unserving_billed_s = unserving().map(|(s, _)| s).fold(0.0, f64::max);
        let max_unserving_launch_times = unserving()
            .map(|(s, ty)| s / self.types[ty].spec.launch_seconds.max(1.0))
            .fold(0.0, f64::max);
        PolicyReport {
            name: strategy.name().to_string(),
            spot: spot && strategy != Strategy::SageMaker,
            requests,
            unserved,
            rejected,
            total_cost: instance_cost + lambda_cost,
            instance_cost,
            lambda_cost,
            dollars_per_million: (instance_cost + lambda_cost) / requests.max(1) as f64 * 1e6,
            cost_ratio_vs_sagemaker: None,
            attainment: if requests == 0 {
                1.0
            } else {
                hist.met as f64 / requests as f64
            },
            p50_ms: hist.quantile(0.5) * 1000.0,
            p99_ms: hist.quantile(0.99) * 1000.0,
            mean_ms: hist.mean() * 1000.0,
            instance_hours: hours,
            cost_by_backend: by_backend,
            launches: self.launches,
            terminations: self.terminations,
            changes_skipped_by_rate: self.skipped_by_rate,
            emergencies: self.controller.emergencies(),
            headroom_steps: self
                .controller
                .slack
                .as_ref()
                .map_or([0, 0], |s| [s.downs, s.ups]),
            interruptions: self.interruptions,
            launch_errors: self.launch_errors,
            launch_failures: self.controller.launches.failures,
            notices: self.notices,
            max_unserving_billed_s,
            max_unserving_launch_times,
            requeued: self.requeued,
            forced_batches: self.forced,
            lambda_invocations,
            lambda_requests,
            lambda_cold_starts: cold,
            lambda_share: lambda_requests as f64 / requests.max(1) as f64,
            timeline: self.samples,
            replicas: self
                .replicas
                .as_ref()
                .map(super::replicas::Replicas::report),
            models,
            ccdf: hist
                .ccdf()
                .into_iter()
                .map(|(s, f)| (s * 1000.0, f))
                .collect(),
            hist,
        }
    }
}

impl Sim<'_> {
    /// Per model, when the run had several: attainment, p99, misses and its share of the cost
    /// (the instances' cost by the share of their busy time its batches took, Lambda's by the
    /// share of its requests).
    fn model_reports(
        &self,
        unserved: &[u64],
        instance_cost: f64,
        lambda_cost: f64,
    ) -> BTreeMap<String, crate::report::ModelReport> {
        if self.lanes.len() < 2 {
            return BTreeMap::new();
        }
        let busy: f64 = self.lanes.iter().map(|l| l.busy_s).sum();
        let lambda: u64 = self.lanes.iter().map(|l| l.lambda_items).sum();
        let total = (instance_cost + lambda_cost).max(1e-12);
        self.lanes
            .iter()
            .zip(unserved)
            .map(|(l, &u)| {
                let requests = l.hist.count + u + l.rejected;
                let cost = instance_cost * l.busy_s / busy.max(1e-12)
                    + lambda_cost * l.lambda_items as f64 / lambda.max(1) as f64;
                (
                    l.name.clone(),
                    crate::report::ModelReport {
                        requests,
                        slo_ms: l.slo_ms,
                        attainment: if requests == 0 {
                            1.0
                        } else {
                            l.hist.met as f64 / requests as f64
                        },
                        p99_ms: l.hist.quantile(0.99) * 1000.0,
                        misses: requests - l.hist.met,
                        cost_share: cost / total,
                    },
                )
            })
            .collect()
    }
}
