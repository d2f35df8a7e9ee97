//! What a shadow policy would have done, against what the live policy did: the running
//! comparison (`Diff`, pure, fed by the shadow thread) and the report it gives.

use std::collections::BTreeMap;

use mark_policies::types as n;
use serde::Serialize;

use super::PolicyKind;

/// The shadow's identity and call counters, from `Shadow`.
#[derive(Debug, Clone, Serialize)]
pub struct Head {
    /// Slot kind.
    pub kind: PolicyKind,
    /// sha256 of the candidate.
    pub sha256: String,
    /// Its generation.
    pub generation: u64,
    /// Where it came from.
    pub source: String,
    /// When it started, seconds since the epoch.
    pub started_at: u64,
    /// Live calls offered to it.
    pub offered: u64,
    /// Offers skipped because its queue was full (it was slower than the live calls).
    pub skipped: u64,
    /// Mean cost of an offer on the live path, ns (copying the inputs and queueing them).
    pub offer_ns_mean: f64,
    /// Calls made to the candidate.
    pub calls: u64,
    /// Of those, traps and timeouts.
    pub failures: u64,
    /// Of those, answers not used for the comparison (failures, malformed or declined).
    pub fallbacks: u64,
    /// Median call time, µs.
    pub p50_us: f64,
    /// 99th percentile call time, µs.
    pub p99_us: f64,
}

/// `GET /admin/v1/policies/{kind}/shadow`.
#[derive(Debug, Clone, Serialize)]
pub struct ShadowReport {
    /// Identity and counters.
    #[serde(flatten)]
    pub head: Head,
    /// Calls where both answered and were compared.
    pub compared: u64,
    /// Of those, the same decision (see docs/policies.md for what "same" means per kind).
    pub agreements: u64,
    /// Of those, a different decision.
    pub disagreements: u64,
    /// agreements / compared.
    pub agreement_rate: Option<f64>,
    /// The last reason an answer of the candidate could not be compared.
    pub last_failure: Option<String>,
    /// Offers passed over because the shadow had spent its CPU budget (a sample is compared).
    pub over_budget: u64,
    /// Why the shadow stopped calling the candidate (it ran past its deadline too often in a
    /// row), if it did.
    pub stopped: Option<String>,
    /// Batch sizes chosen, live against shadow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batcher: Option<BatcherDiff>,
    /// Forecast error against what then arrived.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predictor: Option<PredictorDiff>,
    /// Fleet and $/h planned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provisioner: Option<ProvisionerDiff>,
}

/// How batch decisions differ.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BatcherDiff {
    /// Batch size → decisions, live.
    pub live_sizes: BTreeMap<u32, u64>,
    /// Batch size → decisions, shadow.
    pub shadow_sizes: BTreeMap<u32, u64>,
    /// "Wait" decisions, live.
    pub live_waits: u64,
    /// "Wait" decisions, shadow.
    pub shadow_waits: u64,
    /// Mean batch of the "send" decisions, live.
    pub live_mean_batch: f64,
    /// Mean batch of the "send" decisions, shadow.
    pub shadow_mean_batch: f64,
}

/// How forecasts differ, scored against the peak that then arrived.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PredictorDiff {
    /// Forecasts scored (the next interval's peak was seen).
    pub scored: u64,
    /// Mean absolute error of the next-interval forecast, req/s, live.
    pub live_mae: f64,
    /// The same, shadow.
    pub shadow_mae: f64,
    /// Mean absolute percentage error (intervals with arrivals), live.
    pub live_mape: f64,
    /// The same, shadow.
    pub shadow_mape: f64,
    /// Last forecasts.
    pub last_live: Vec<f64>,
    /// Last forecasts.
    pub last_shadow: Vec<f64>,
}

/// How plans differ.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProvisionerDiff {
    /// Mean $/h of the planned fleet, live.
    pub live_dollars_per_hour: f64,
    /// The same, shadow.
    pub shadow_dollars_per_hour: f64,
    /// Mean Lambda share planned, live.
    pub live_lambda_share: f64,
    /// The same, shadow.
    pub shadow_lambda_share: f64,
    /// The last plans: (type, market, count).
    pub last_live: Vec<(String, String, u32)>,
    /// The last plans.
    pub last_shadow: Vec<(String, String, u32)>,
}

/// The running comparison.
#[derive(Debug, Clone)]
pub struct Diff {
    kind: PolicyKind,
    /// Offers taken off the queue.
    pub handled: u64,
    /// Offers passed over for the CPU budget.
    pub over_budget: u64,
    /// Why the shadow stopped, if it did.
    pub stopped: Option<String>,
    compared: u64,
    agreements: u64,
    last_failure: Option<String>,
    batcher: BatcherDiff,
    live_sent: (u64, u64),
    shadow_sent: (u64, u64),
    predictor: PredictorDiff,
    pending: Option<(f64, f64)>,
    sums: [f64; 4],
    rel_n: u64,
    provisioner: ProvisionerDiff,
}

/// A plan as sorted (type, market, count), zero counts left out.
fn targets(p: &n::Plan) -> Vec<(String, String, u32)> {
    let mut v: Vec<_> = p
        .targets
        .iter()
        .filter(|t| t.count > 0)
        .map(|t| (t.instance_type.clone(), t.market.to_string(), t.count))
        .collect();
    v.sort();
    v
}

/// What a plan's fleet costs per hour at catalog prices.
fn dollars_per_hour(p: &n::Plan, catalog: &[n::InstanceType]) -> f64 {
    p.targets
        .iter()
        .map(|t| {
            catalog
                .iter()
                .find(|c| c.name == t.instance_type)
                .map_or(0.0, |c| c.price(t.market) * f64::from(t.count))
        })
        .sum()
}

/// Forecasts agree when every step is within 1% (or 0.01 req/s).
fn forecasts_agree(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= (0.01 * x.abs().max(y.abs())).max(0.01))
}

impl Diff {
    /// The kind of policy compared.
    pub fn kind(&self) -> PolicyKind {
        self.kind
    }

    /// Empty, for a shadow of `kind`.
    pub fn new(kind: PolicyKind) -> Self {
        Diff {
            kind,
            handled: 0,
            over_budget: 0,
            stopped: None,
            compared: 0,
            agreements: 0,
            last_failure: None,
            batcher: BatcherDiff::default(),
            live_sent: (0, 0),
            shadow_sent: (0, 0),
            predictor: PredictorDiff::default(),
            pending: None,
            sums: [0.0; 4],
            rel_n: 0,
            provisioner: ProvisionerDiff::default(),
        }
    }

    fn outcome(&mut self, why: Option<String>, agree: impl FnOnce() -> bool) -> bool {
        self.handled += 1;
        if let Some(w) = why {
            self.last_failure = Some(w);
            return false;
        }
        self.compared += 1;
        if agree() {
            self.agreements += 1;
        }
        true
    }

    /// One batch decision of each (`why`: the shadow's answer could not be used).
    pub fn batch(&mut self, live: n::BatchDecision, shadow: n::BatchDecision, why: Option<String>) {
        if !self.outcome(why, || live == shadow) {
            return;
        }
        for (d, sizes, waits, sent) in [
            (
                live,
                &mut self.batcher.live_sizes,
                &mut self.batcher.live_waits,
                &mut self.live_sent,
            ),
            (
                shadow,
                &mut self.batcher.shadow_sizes,
                &mut self.batcher.shadow_waits,
                &mut self.shadow_sent,
            ),
        ] {
            match d {
                n::BatchDecision::Send(b) => {
                    *sizes.entry(b).or_default() += 1;
                    sent.0 += 1;
                    sent.1 += u64::from(b);
                }
                n::BatchDecision::Wait(_) => *waits += 1,
            }
        }
    }

    /// One forecast of each. The last value of `history` is the peak that arrived in the
    /// interval the previous forecasts were for: both are scored against it.
    pub fn predict(&mut self, history: &[f64], live: &[f64], shadow: &[f64], why: Option<String>) {
        if let (Some((l, s)), Some(&actual)) = (self.pending.take(), history.last()) {
            self.predictor.scored += 1;
            self.sums[0] += (l - actual).abs();
            self.sums[1] += (s - actual).abs();
            if actual > 0.0 {
                self.rel_n += 1;
                self.sums[2] += (l - actual).abs() / actual;
                self.sums[3] += (s - actual).abs() / actual;
            }
        }
        let ok = self.outcome(why, || forecasts_agree(live, shadow));
        if ok {
            if let (Some(&l), Some(&s)) = (live.first(), shadow.first()) {
                self.pending = Some((l, s));
            }
            self.predictor.last_live = live.to_vec();
            self.predictor.last_shadow = shadow.to_vec();
        }
    }

    /// One plan of each.
    pub fn provision(
        &mut self,
        live: Option<&n::Plan>,
        shadow: Option<&n::Plan>,
        catalog: &[n::InstanceType],
        why: Option<String>,
    ) {
        let (Some(live), Some(shadow)) = (live, shadow) else {
            self.outcome(Some(why.unwrap_or_else(|| "no plan".into())), || false);
            return;
        };
        let agree = || {
            targets(live) == targets(shadow)
                && (live.lambda_share - shadow.lambda_share).abs() <= 0.01
        };
        if !self.outcome(why, agree) {
            return;
        }
        let p = &mut self.provisioner;
        p.live_dollars_per_hour += dollars_per_hour(live, catalog);
        p.shadow_dollars_per_hour += dollars_per_hour(shadow, catalog);
        p.live_lambda_share += live.lambda_share;
        p.shadow_lambda_share += shadow.lambda_share;
        p.last_live = targets(live);
        p.last_shadow = targets(shadow);
    }

    /// The report, with `head` from the shadow.
    pub fn report(&self, head: Head) -> ShadowReport {
        let c = self.compared.max(1) as f64;
        let mean = |(k, sum): (u64, u64)| {
            if k == 0 {
                0.0
            } else {
                sum as f64 / k as f64
            }
        };
        let (mut batcher, mut predictor, mut provisioner) = (None, None, None);
        match self.kind {
            PolicyKind::Batcher => {
                let mut b = self.batcher.clone();
                b.live_mean_batch = mean(self.live_sent);
                b.shadow_mean_batch = mean(self.shadow_sent);
                batcher = Some(b);
            }
            PolicyKind::Predictor => {
                let mut p = self.predictor.clone();
                let k = p.scored.max(1) as f64;
                let r = self.rel_n.max(1) as f64;
                p.live_mae = self.sums[0] / k;
                p.shadow_mae = self.sums[1] / k;
                p.live_mape = self.sums[2] / r;
                p.shadow_mape = self.sums[3] / r;
                predictor = Some(p);
            }
            PolicyKind::Provisioner => {
                let mut p = self.provisioner.clone();
                p.live_dollars_per_hour /= c;
                p.shadow_dollars_per_hour /= c;
                p.live_lambda_share /= c;
                p.shadow_lambda_share /= c;
                provisioner = Some(p);
            }
        }
        ShadowReport {
            head,
            compared: self.compared,
            agreements: self.agreements,
            disagreements: self.compared - self.agreements,
            agreement_rate: (self.compared > 0)
                .then(|| self.agreements as f64 / self.compared as f64),
            last_failure: self.last_failure.clone(),
            over_budget: self.over_budget,
            stopped: self.stopped.clone(),
            batcher,
            predictor,
            provisioner,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use n::BatchDecision::{Send, Wait};

    #[test]
    fn batch_decisions_are_compared_and_counted_by_size() {
        let mut d = Diff::new(PolicyKind::Batcher);
        d.batch(Send(4), Send(4), None);
        d.batch(Send(4), Wait(100), None);
        d.batch(Send(2), Send(8), None);
        d.batch(Send(2), Send(1), Some("trapped".into()));
        assert_eq!((d.handled, d.compared, d.agreements), (4, 3, 1));
        let b = d.report(head()).batcher.unwrap();
        assert_eq!(b.live_sizes, BTreeMap::from([(2, 1), (4, 2)]));
        assert_eq!(b.shadow_sizes, BTreeMap::from([(4, 1), (8, 1)]));
        assert_eq!((b.live_waits, b.shadow_waits), (0, 1));
        assert!((b.live_mean_batch - 10.0 / 3.0).abs() < 1e-9);
        assert!((b.shadow_mean_batch - 6.0).abs() < 1e-9);
    }

    #[test]
    fn forecasts_are_scored_against_the_next_peak() {
        let mut d = Diff::new(PolicyKind::Predictor);
        d.predict(&[10.0], &[20.0, 20.0], &[30.0, 30.0], None);
        // then 25 arrived: live off by 5, shadow by 5
        d.predict(&[10.0, 25.0], &[25.0, 25.0], &[25.1, 25.0], None);
        // then 50: live off by 25, shadow by 24.9
        d.predict(&[10.0, 25.0, 50.0], &[50.0], &[50.0], None);
        let r = d.report(head());
        assert_eq!((r.compared, r.agreements), (3, 2));
        let p = r.predictor.unwrap();
        assert_eq!(p.scored, 2);
        assert!((p.live_mae - 15.0).abs() < 1e-9, "{p:?}");
        assert!((p.shadow_mae - 14.95).abs() < 1e-9, "{p:?}");
        assert!((p.live_mape - (0.2 + 0.5) / 2.0).abs() < 1e-9, "{p:?}");
    }

    #[test]
    fn plans_are_priced_from_the_catalog() {
        let cat = vec![n::InstanceType {
            name: "c5.large".into(),
            vcpus: 2,
            gpus: 0,
            memory_gib: 4.0,
            price_on_demand: 0.1,
            price_spot: 0.04,
            launch_seconds: 60.0,
            capacity_rps: 10.0,
            burstable: false,
        }];
        let plan = |count, market, share| n::Plan {
            targets: vec![n::FleetTarget {
                instance_type: "c5.large".into(),
                market,
                count,
            }],
            lambda_share: share,
        };
        let mut d = Diff::new(PolicyKind::Provisioner);
        let (a, b) = (
            plan(3, n::Market::OnDemand, 0.0),
            plan(5, n::Market::Spot, 0.1),
        );
        d.provision(Some(&a), Some(&b), &cat, None);
        d.provision(Some(&a), Some(&a), &cat, None);
        let r = d.report(head());
        assert_eq!((r.compared, r.agreements, r.disagreements), (2, 1, 1));
        let p = r.provisioner.unwrap();
        assert!((p.live_dollars_per_hour - 0.3).abs() < 1e-9);
        assert!((p.shadow_dollars_per_hour - (0.2 + 0.3) / 2.0).abs() < 1e-9);
        assert_eq!(
            p.last_shadow,
            vec![("c5.large".into(), "on-demand".into(), 3)]
        );
    }

    fn head() -> Head {
        Head {
            kind: PolicyKind::Batcher,
            sha256: "x".into(),
            generation: 1,
            source: "test".into(),
            started_at: 0,
            offered: 0,
            skipped: 0,
            offer_ns_mean: 0.0,
            calls: 0,
            failures: 0,
            fallbacks: 0,
            p50_us: 0.0,
            p99_us: 0.0,
        }
    }
}
