//! Launches that never become ready. On a real cloud a launch can succeed and the instance never
//! serve (a broken image, a security group that blocks the worker port, a model that fails to
//! load): it stays pending, billed, and — counted as capacity on its way — it would keep the plan
//! and the emergency guard from replacing it. Every pending instance gets a deadline of three times
//! its type's launch time (checked every rate window); one that misses it is terminated, counted as a launch
//! failure and no longer counted as capacity, and a type whose launches keep failing is left out
//! of the plans for a while (10 min after the second failure in a row, doubling up to 2 h).

use std::collections::BTreeMap;

use mark_policies::types::{InstanceType, Market};

use super::controller::{Action, FleetInstance};

/// The back-off key of a type's market (refusals are per market; launches that never boot
/// count against the type).
fn market_key(instance_type: &str, market: Market) -> String {
    format!("{instance_type}/{}", market.as_str())
}

/// Launch times a pending instance may take before it counts as failed.
pub const PENDING_LAUNCH_TIMES: f64 = 3.0;
/// Failures in a row of one type before it is left out of plans.
pub const BACKOFF_AFTER: u32 = 2;
/// First back-off, seconds (doubles with every further failure).
pub const BACKOFF_S: f64 = 600.0;
/// Longest back-off, seconds.
pub const MAX_BACKOFF_S: f64 = 7200.0;

/// How long an instance of a type that boots in `launch_seconds` may stay pending.
pub fn pending_deadline_s(launch_seconds: f64) -> f64 {
    PENDING_LAUNCH_TIMES * launch_seconds.max(1.0)
}

#[derive(Debug, Clone, Default)]
struct TypeRecord {
    in_a_row: u32,
    last_failure: f64,
    until: f64,
}

/// The launches' health as the controller tracks it.
#[derive(Debug, Clone, Default)]
pub struct LaunchHealth {
    /// Launches that never became ready, in all.
    pub failures: u64,
    /// Pending instances past their deadline in the last check.
    pub overdue: u32,
    /// Launch calls the cloud refused (capacity, throttling).
    pub refusals: u64,
    reaped: BTreeMap<String, f64>,
    types: BTreeMap<String, TypeRecord>,
}

impl LaunchHealth {
    /// Checks `fleet` at `now`: the instances that count as capacity (overdue pending ones do
    /// not), and the terminations of overdue ones (asked again every `retry_s` while the cloud
    /// still lists them). Checked every `window_s`, an instance is called overdue one window
    /// early rather than late, so none is billed past its deadline without serving.
    pub fn check(
        &mut self,
        now: f64,
        fleet: &[FleetInstance],
        catalog: &[InstanceType],
        retry_s: f64,
        window_s: f64,
    ) -> (Vec<FleetInstance>, Vec<Action>) {
        let launch_s = |ty: &str| {
            catalog
                .iter()
                .find(|t| t.name == ty)
                .map_or(300.0, |t| t.launch_seconds)
        };
        let (mut counted, mut reap) = (Vec::with_capacity(fleet.len()), Vec::new());
        self.overdue = 0;
        for i in fleet {
            if i.ready {
                for key in [
                    i.instance_type.clone(),
                    market_key(&i.instance_type, i.market),
                ] {
                    let r = self.types.entry(key).or_default();
                    if i.launched_at > r.last_failure {
                        // a launch after the last failure serves: the type boots again
                        r.in_a_row = 0;
                        r.until = 0.0;
                    }
                }
                counted.push(i.clone());
                continue;
            }
            let deadline = pending_deadline_s(launch_s(&i.instance_type)) - window_s.max(0.0);
            if now - i.launched_at <= deadline {
                counted.push(i.clone());
                continue;
            }
            self.overdue += 1;
            match self.reaped.get(&i.id) {
                None => {
                    self.failures += 1;
                    self.fail(&i.instance_type, now);
                }
                Some(&asked) if now - asked < retry_s => continue,
                Some(_) => {}
            }
            self.reaped.insert(i.id.clone(), now);
            reap.push(Action::Terminate { id: i.id.clone() });
        }
        self.reaped
            .retain(|id, _| fleet.iter().any(|i| &i.id == id));
        (counted, reap)
    }

    /// The cloud refused a launch of `instance_type` in `market` at `now` (capacity,
    /// throttling): it counts toward that market's back-off of the type (a spot shortage of a
    /// type leaves its on-demand market usable), as a launch that never booted counts toward
    /// the type's.
    pub fn refused(&mut self, instance_type: &str, market: Market, now: f64) {
        self.refusals += 1;
        self.fail(&market_key(instance_type, market), now);
    }

    fn fail(&mut self, instance_type: &str, now: f64) {
        let r = self.types.entry(instance_type.to_string()).or_default();
        r.in_a_row += 1;
        r.last_failure = now;
        if r.in_a_row >= BACKOFF_AFTER {
            let k = f64::from(r.in_a_row - BACKOFF_AFTER);
            r.until = now + (BACKOFF_S * 2f64.powf(k)).min(MAX_BACKOFF_S);
        }
    }

    /// The types a plan may use at `now`: those not backed off; a type backed off in its spot
    /// market only is offered on demand alone (no spot price: plans take no spot of it).
    pub fn usable(&self, now: f64, catalog: &[InstanceType]) -> Vec<InstanceType> {
        let off = |key: &str| self.types.get(key).is_some_and(|r| now < r.until);
        catalog
            .iter()
            .filter(|t| !off(&t.name) && !off(&market_key(&t.name, Market::OnDemand)))
            .map(|t| {
                let mut t = t.clone();
                if off(&market_key(&t.name, Market::Spot)) {
                    t.price_spot = 0.0;
                }
                t
            })
            .collect()
    }

    /// Types (`type`, or `type/market` for refusals) backed off at `now`, with the time their
    /// back-off ends.
    pub fn backed_off(&self, now: f64) -> Vec<(String, f64)> {
        self.types
            .iter()
            .filter(|(_, r)| now < r.until)
            .map(|(t, r)| (t.clone(), r.until))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_launches_back_a_type_off_and_a_serving_launch_clears_it() {
        let mut h = LaunchHealth::default();
        h.refused("c5.large", Market::Spot, 100.0);
        assert!(h.backed_off(100.0).is_empty(), "one refusal is weather");
        h.refused("c5.large", Market::Spot, 160.0);
        assert_eq!(
            h.backed_off(160.0),
            vec![("c5.large/spot".to_string(), 760.0)]
        );
        // a spot shortage leaves the type's on-demand market in plans
        let cat = [InstanceType {
            name: "c5.large".into(),
            vcpus: 2,
            gpus: 0,
            memory_gib: 4.0,
            price_on_demand: 0.085,
            price_spot: 0.03,
            launch_seconds: 60.0,
            capacity_rps: 100.0,
            burstable: false,
        }];
        let usable = h.usable(160.0, &cat);
        assert_eq!((usable.len(), usable[0].price_spot), (1, 0.0));
        h.refused("c5.large", Market::Spot, 800.0);
        assert_eq!(h.backed_off(800.0)[0].1, 2000.0, "doubling");
        assert_eq!(h.refusals, 3);
        let ready = FleetInstance {
            id: "i".into(),
            instance_type: "c5.large".into(),
            market: mark_policies::types::Market::Spot,
            launched_at: 900.0,
            ready: true,
            in_flight: 0,
        };
        h.check(1000.0, &[ready], &[], 60.0, 5.0);
        assert!(h.backed_off(1000.0).is_empty());
    }
}

/// Seconds after an interruption notice at which an instance still listed is terminated: EC2
/// reclaims a noticed spot instance after 120 s; one that is still there (a rebalance
/// recommendation, which reclaims nothing) drains, serves nothing and would be billed forever.
pub const NOTICE_GRACE_S: f64 = 150.0;

/// Instances that reported an interruption notice (or rebalance recommendation).
#[derive(Debug, Clone, Default)]
pub struct Notices {
    /// Notices seen, in all.
    pub seen: u64,
    at: std::collections::BTreeMap<String, (f64, bool)>,
}

impl Notices {
    /// Takes the ids that drain now (`draining`) among the listed `fleet` at `now`: whether a
    /// new notice came (its replacement is to be planned now), and the terminations of noticed
    /// instances still listed [`NOTICE_GRACE_S`] after their notice (asked once).
    pub fn observe(
        &mut self,
        now: f64,
        draining: &[String],
        fleet: &[FleetInstance],
    ) -> (bool, Vec<Action>) {
        let mut new = false;
        for id in draining {
            if !self.at.contains_key(id) {
                self.at.insert(id.clone(), (now, false));
                self.seen += 1;
                new = true;
            }
        }
        self.at.retain(|id, _| fleet.iter().any(|i| &i.id == id));
        let mut reap = Vec::new();
        for (id, (at, asked)) in &mut self.at {
            if !*asked && now - *at >= NOTICE_GRACE_S {
                *asked = true;
                reap.push(Action::Terminate { id: id.clone() });
            }
        }
        (new, reap)
    }
}

#[cfg(test)]
mod notice_tests {
    use super::*;

    fn inst(id: &str) -> FleetInstance {
        FleetInstance {
            id: id.into(),
            instance_type: "c5.large".into(),
            market: mark_policies::types::Market::Spot,
            launched_at: 0.0,
            ready: true,
            in_flight: 0,
        }
    }

    #[test]
    fn a_notice_plans_at_once_and_an_instance_still_there_after_the_grace_is_terminated() {
        let mut n = Notices::default();
        let fleet = [inst("a"), inst("b")];
        let (new, reap) = n.observe(10.0, &["a".into()], &fleet);
        assert!(new && reap.is_empty());
        assert!(
            !n.observe(20.0, &["a".into()], &fleet).0,
            "the same notice once"
        );
        // reclaimed (a spot notice): gone from the listing, nothing to do
        let (_, reap) = n.observe(200.0, &[], &fleet[1..]);
        assert!(reap.is_empty());
        // a rebalance recommendation on b: b stays; terminated 150 s later, asked once
        n.observe(300.0, &["b".into()], &fleet[1..]);
        assert!(n.observe(449.0, &["b".into()], &fleet[1..]).1.is_empty());
        assert_eq!(
            n.observe(450.0, &["b".into()], &fleet[1..]).1,
            vec![Action::Terminate { id: "b".into() }]
        );
        assert!(n.observe(500.0, &["b".into()], &fleet[1..]).1.is_empty());
        assert_eq!(n.seen, 2);
    }
}
