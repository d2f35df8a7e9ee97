//! What the fleet has cost so far, per backend (`type/market`), for the live status page and the
//! simulator's report alike. Instances are billed per second with a one-minute minimum
//! ([`super::fleet::billed_seconds`]); an instance that leaves the fleet keeps what it had cost.

use std::collections::BTreeMap;

use mark_policies::types::Market;

use super::fleet::billed_seconds;

/// The backend name of instances of one type and market, as reports and status show it.
pub fn backend_key(instance_type: &str, market: Market) -> String {
    format!("{instance_type}/{market}")
}

/// USD for an instance at `price_per_hour` alive from `launched_at` until `until` (seconds).
pub fn instance_cost(price_per_hour: f64, launched_at: f64, until: f64) -> f64 {
    price_per_hour * billed_seconds((until - launched_at).ceil()) / 3600.0
}

/// One instance's billing facts at the time of an [`CostLedger::observe`].
#[derive(Debug, Clone, PartialEq)]
pub struct Billed<'a> {
    /// Cloud id.
    pub id: &'a str,
    /// `type/market` ([`backend_key`]).
    pub backend: String,
    /// USD per hour.
    pub price_per_hour: f64,
    /// Launch time.
    pub launched_at: f64,
    /// When it ended, if it has (else it is billed until the observation).
    pub ended_at: Option<f64>,
}

#[derive(Debug, Clone, Default)]
struct Line {
    backend: String,
    cost: f64,
    hours: f64,
}

/// Cost and instance-hours per backend.
#[derive(Debug, Clone, Default)]
pub struct CostLedger {
    retired: BTreeMap<String, (f64, f64)>,
    live: BTreeMap<String, Line>,
}

impl CostLedger {
    /// Bills `fleet` at `now`. Instances seen before and absent now are closed with what they
    /// had cost at the previous observation.
    pub fn observe<'a>(&mut self, now: f64, fleet: impl IntoIterator<Item = Billed<'a>>) {
        let mut live = BTreeMap::new();
        for b in fleet {
            let until = b.ended_at.unwrap_or(now);
            let line = Line {
                cost: instance_cost(b.price_per_hour, b.launched_at, until),
                hours: (until - b.launched_at).max(0.0) / 3600.0,
                backend: b.backend,
            };
            live.insert(b.id.to_string(), line);
        }
        for (id, l) in std::mem::take(&mut self.live) {
            if !live.contains_key(&id) {
                let r = self.retired.entry(l.backend).or_default();
                r.0 += l.cost;
                r.1 += l.hours;
            }
        }
        self.live = live;
    }

    /// (USD, instance-hours) per backend, instances alive and gone.
    pub fn by_backend(&self) -> BTreeMap<String, (f64, f64)> {
        let mut out = self.retired.clone();
        for l in self.live.values() {
            let e = out.entry(l.backend.clone()).or_default();
            e.0 += l.cost;
            e.1 += l.hours;
        }
        out
    }

    /// USD per backend.
    pub fn cost_by_backend(&self) -> BTreeMap<String, f64> {
        self.by_backend()
            .into_iter()
            .map(|(k, (c, _))| (k, c))
            .collect()
    }

    /// USD of all instances, alive and gone.
    pub fn total(&self) -> f64 {
        self.retired.values().map(|r| r.0).sum::<f64>()
            + self.live.values().map(|l| l.cost).sum::<f64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn billed<'a>(id: &'a str, backend: &str, launched_at: f64) -> Billed<'a> {
        Billed {
            id,
            backend: backend.into(),
            price_per_hour: 3.6,
            launched_at,
            ended_at: None,
        }
    }

    #[test]
    fn instances_that_leave_keep_their_cost() {
        let mut l = CostLedger::default();
        l.observe(
            600.0,
            [
                billed("a", "c5/on-demand", 0.0),
                billed("b", "c5/spot", 570.0),
            ],
        );
        // a: 600 s at $3.6/h = $0.60; b: 30 s, billed as 60 s = $0.06
        assert!((l.total() - 0.66).abs() < 1e-9);
        l.observe(1200.0, [billed("b", "c5/spot", 570.0)]);
        let by = l.cost_by_backend();
        assert!((by["c5/on-demand"] - 0.60).abs() < 1e-9, "a left at 600 s");
        assert!((by["c5/spot"] - 0.63).abs() < 1e-9);
        assert!((l.by_backend()["c5/on-demand"].1 - 600.0 / 3600.0).abs() < 1e-9);
        assert_eq!(backend_key("g4dn.xlarge", Market::Spot), "g4dn.xlarge/spot");
    }
}
