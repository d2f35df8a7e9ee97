//! The emergency's bridge: fast-booting instances launched when a step is far above the fleet
//! (`controller::emergency_launch`), to carry it from their own boot until the plan's own
//! instances (often slower-booting, cheaper per request) serve, instead of Lambda. Then they
//! go. The plan never sees them: it would keep them (an instance it has costs no launch, and
//! the provisioner's hysteresis drops one per type per interval — a bridge of 16 would linger
//! for 16 intervals), and no plan terminates them before their time.
//!
//! Members are pinned by id: instances of the bridge's type, on demand, that were not in the
//! fleet when the bridge was asked for, claimed as they appear in the listings until the bridge
//! is due (at most `count`; another bridge's members are never claimed). The other instances
//! that appear within the interval are the plan's launches of the same tick (its companions):
//! the bridge goes once they serve — observed, not assumed from the catalog's launch time —
//! and what serves apart from the bridge carries the demand (at most what that plan covers).
//! What the plan launched of the same type in the same interval can be claimed in place of a
//! member that never came: the count bounds it. Bridges live in the controller's memory: a new
//! leader or a restarted gateway adopts the members into its plans.

use mark_policies::types::{InstanceType, Market};

use super::controller::{Action, FleetInstance};

/// Intervals past its due time a bridge that cannot retire (its members busy, or a companion
/// that never boots not yet reaped) is kept apart from the plan; then the plan adopts what is
/// left. Waiting longer, up to a never-booting companion's pending deadline (3x its launch
/// time), cost more on the 10x steps day ($8.1 of bridges against $5.2).
const ADOPT_AFTER_INTERVALS: f64 = 3.0;

/// One bridge in flight.
#[derive(Debug, Clone, PartialEq)]
pub struct Bridge {
    instance_type: String,
    at: f64,
    count: usize,
    /// When the plan's slowest launch of the same tick should have booted (the catalog's
    /// launch time): no member is claimed after.
    due: Option<f64>,
    /// When the plan adopts what is left (see [`ADOPT_AFTER_INTERVALS`]).
    adopt_at: f64,
    /// From when it goes without waiting for the rest of the fleet to carry the demand (an
    /// interval past due: the next plan had its chance to launch what was missing).
    patience_at: f64,
    /// The earliest it may go: its own instances have booted.
    earliest: f64,
    /// Requests/s the plan of its tick covers (it waits for no more than that).
    target_rps: f64,
    /// The plan's launches of the same tick, as they appeared, and whether each served yet.
    companions: Vec<(String, bool)>,
    /// Ids in the fleet when it was asked for: never members.
    known: std::collections::HashSet<String>,
    /// Members claimed and not yet retired.
    members: Vec<String>,
    /// Members terminated.
    retired: Vec<String>,
}

impl Bridge {
    /// The bridge `launch` asks for at `now` on `fleet`, when it is one (several instances).
    pub fn of(now: f64, launch: &Action, fleet: &[FleetInstance]) -> Option<Self> {
        match launch {
            Action::Launch {
                instance_type,
                market: Market::OnDemand,
                count,
            } if *count > 1 => Some(Bridge {
                instance_type: instance_type.clone(),
                at: now,
                count: *count as usize,
                due: None,
                earliest: now,
                adopt_at: f64::INFINITY,
                patience_at: f64::INFINITY,
                target_rps: f64::INFINITY,
                companions: Vec::new(),
                known: fleet.iter().map(|i| i.id.clone()).collect(),
                members: Vec::new(),
                retired: Vec::new(),
            }),
            _ => None,
        }
    }

    /// Sets when the bridge may go, from the launches the plan of its tick made and the
    /// requests/s that plan covers: `due` when the slowest of them (or the bridge itself)
    /// should have booted, plus `window_s`; at the earliest when the bridge itself has.
    pub fn due_after(
        &mut self,
        launches: &[Action],
        catalog: &[InstanceType],
        window_s: f64,
        interval_s: f64,
        target_rps: f64,
    ) {
        if self.due.is_some() {
            return;
        }
        let boot = |ty: &str| {
            catalog
                .iter()
                .find(|t| t.name == ty)
                .map_or(0.0, |t| t.launch_seconds)
        };
        let own = boot(&self.instance_type);
        let slowest = launches
            .iter()
            .filter_map(|a| match a {
                Action::Launch { instance_type, .. } => Some(boot(instance_type)),
                Action::Terminate { .. } => None,
            })
            .fold(own, f64::max);
        self.due = Some(self.at + slowest + window_s);
        self.adopt_at = self.at + slowest + window_s + ADOPT_AFTER_INTERVALS * interval_s;
        self.patience_at = self.at + slowest + window_s + interval_s;
        self.earliest = self.at + own + window_s;
        self.target_rps = target_rps;
    }

    /// Claims what appeared in `fleet` since the bridge was asked for (not in `taken`: every
    /// bridge's ids): members of its type until due and at most `count`; the rest, within
    /// `interval_s` (before the next plan), as the companions it waits for. A companion seen
    /// serving is marked so; one gone from the listing without ever serving (it never booted)
    /// is waited for no more, and the bridge then waits for no capacity the plan counted on.
    pub fn claim(&mut self, now: f64, fleet: &[FleetInstance], taken: &[String], interval_s: f64) {
        for c in &mut self.companions {
            c.1 |= fleet.iter().any(|i| i.id == c.0 && i.ready);
        }
        let before = self.companions.len();
        self.companions
            .retain(|c| c.1 || fleet.iter().any(|i| i.id == c.0));
        if self.companions.len() < before {
            self.target_rps = 0.0;
        }
        let claiming = self.due.is_none_or(|d| now < d);
        if !claiming && now >= self.at + interval_s {
            return;
        }
        for i in fleet {
            let new = !self.known.contains(&i.id)
                && !self.members.contains(&i.id)
                && !self.retired.contains(&i.id)
                && !self.companions.iter().any(|c| c.0 == i.id)
                && !taken.contains(&i.id);
            if !new {
                continue;
            }
            if claiming
                && i.instance_type == self.instance_type
                && i.market == Market::OnDemand
                && self.members.len() + self.retired.len() < self.count
            {
                self.members.push(i.id.clone());
            } else if now < self.at + interval_s {
                self.companions.push((i.id.clone(), i.ready));
            }
        }
    }

    /// Every id of the bridge, retired ones included: what the plan must not see.
    pub fn ids(&self) -> impl Iterator<Item = &String> {
        self.members.iter().chain(&self.retired)
    }

    /// At `now`, once its own instances have booted, the plan's launches of its tick (those
    /// still listed) serve, and the rest of the fleet serving now (`rest_rps`, bridges apart)
    /// carries `demand_rps` (at most what that plan covers; an interval past due, whatever it
    /// carries): terminations of the members in `fleet` that are serving and idle. A member
    /// with work goes at a later tick.
    pub fn retire(
        &mut self,
        now: f64,
        fleet: &[FleetInstance],
        rest_rps: f64,
        demand_rps: f64,
    ) -> Vec<Action> {
        let booting = fleet
            .iter()
            .any(|i| !i.ready && self.companions.iter().any(|c| c.0 == i.id));
        if self.due.is_none() || now < self.earliest || now >= self.adopt_at || booting {
            return Vec::new();
        }
        if rest_rps < demand_rps.min(self.target_rps) && now < self.patience_at {
            return Vec::new();
        }
        let idle: Vec<String> = fleet
            .iter()
            .filter(|i| self.members.contains(&i.id) && i.ready && i.in_flight == 0)
            .map(|i| i.id.clone())
            .collect();
        self.members.retain(|m| !idle.contains(m));
        self.retired.extend(idle.iter().cloned());
        idle.into_iter()
            .map(|id| Action::Terminate { id })
            .collect()
    }

    /// Whether the bridge is over at `now`: past due with none of its instances listed any
    /// more (retired and gone, or reclaimed), or at its adoption time (the plan then adopts
    /// what is left).
    pub fn over(&self, now: f64, fleet: &[FleetInstance]) -> bool {
        let Some(due) = self.due else {
            return false;
        };
        let listed = fleet.iter().any(|i| self.ids().any(|m| *m == i.id));
        now >= due && !listed || now >= self.adopt_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ty(name: &str, launch_seconds: f64, capacity_rps: f64) -> InstanceType {
        InstanceType {
            name: name.into(),
            price_on_demand: 0.1,
            price_spot: 0.05,
            capacity_rps,
            launch_seconds,
            vcpus: 2,
            gpus: 0,
            memory_gib: 4.0,
            burstable: false,
        }
    }

    fn inst(id: &str, ty: &str, at: f64, ready: bool, in_flight: u32) -> FleetInstance {
        FleetInstance {
            id: id.into(),
            instance_type: ty.into(),
            market: Market::OnDemand,
            launched_at: at,
            ready,
            in_flight,
        }
    }

    fn launch(ty: &str, count: u32) -> Action {
        Action::on_demand(ty, count)
    }

    #[test]
    fn members_are_pinned_by_id_and_retired_once_the_plans_instances_serve() {
        let cat = [ty("cpu", 75.0, 500.0), ty("gpu", 150.0, 2000.0)];
        let before = [inst("old-cpu", "cpu", 10.0, true, 0)];
        assert!(
            Bridge::of(100.0, &launch("cpu", 1), &before).is_none(),
            "one is no bridge"
        );
        let mut b = Bridge::of(100.0, &launch("cpu", 2), &before).unwrap();
        // the plan of the same tick launched two GPUs (150 s): adopted 3 intervals past 255
        b.due_after(&[launch("gpu", 2)], &cat, 5.0, 60.0, f64::INFINITY);
        let mut fleet = vec![
            before[0].clone(),
            inst("g1", "gpu", 100.0, false, 0),
            inst("g2", "gpu", 100.0, false, 0),
            // the cloud's clock says 99: ids, not launch times, make members
            inst("b1", "cpu", 99.0, true, 0),
        ];
        b.claim(110.0, &fleet, &[], 60.0);
        fleet.push(inst("b2", "cpu", 99.0, true, 3));
        b.claim(115.0, &fleet, &[], 60.0);
        let ids: Vec<&String> = b.ids().collect();
        assert_eq!(
            ids,
            ["b1", "b2"],
            "the instance there before is not a member"
        );
        // a third instance of the type (the plan's, later) is no member: the count is reached
        fleet.push(inst("p1", "cpu", 120.0, true, 0));
        b.claim(120.0, &fleet, &[], 60.0);
        assert_eq!(b.ids().count(), 2);
        assert!(
            b.retire(170.0, &fleet, 4500.0, 1000.0).is_empty(),
            "not before it booted"
        );
        assert!(
            b.retire(200.0, &fleet, 4500.0, 1000.0).is_empty(),
            "not while the plan's GPUs of its tick boot (observed, whatever the catalog says)"
        );
        fleet[1].ready = true;
        fleet[2].ready = true;
        assert!(
            b.retire(256.0, &fleet, 4000.0, 4500.0).is_empty(),
            "not while what serves apart from the bridge does not carry what is needed"
        );
        assert_eq!(
            b.retire(256.0, &fleet, 4500.0, 4000.0),
            [Action::Terminate { id: "b1".into() }],
            "the idle member goes, the busy one waits"
        );
        assert!(!b.over(256.0, &fleet), "b1 is still listed (shutting down)");
        fleet.retain(|i| i.id != "b1");
        assert!(
            b.retire(260.0, &fleet, 4500.0, 4000.0).is_empty(),
            "b2 still busy"
        );
        fleet.iter_mut().for_each(|i| i.in_flight = 0);
        assert_eq!(
            b.retire(265.0, &fleet, 4500.0, 4000.0),
            [Action::Terminate { id: "b2".into() }]
        );
        assert!(
            b.retire(270.0, &fleet, 4500.0, 4000.0).is_empty(),
            "never twice"
        );
        assert!(
            b.ids().any(|m| m == "b2"),
            "kept from the plan while listed"
        );
        fleet.retain(|i| i.id != "b2");
        assert!(b.over(275.0, &fleet));
    }

    #[test]
    fn a_bridge_that_cannot_retire_is_adopted_after_three_intervals() {
        let cat = [ty("cpu", 75.0, 500.0)];
        let mut b = Bridge::of(0.0, &launch("cpu", 3), &[]).unwrap();
        b.due_after(&[], &cat, 5.0, 60.0, f64::INFINITY);
        let fleet = vec![
            inst("b1", "cpu", 0.0, true, 0),
            inst("b2", "cpu", 0.0, true, 0),
        ];
        b.claim(10.0, &fleet, &[], 60.0);
        // what serves apart from the bridge does not carry what is needed: nothing retires
        assert!(b.retire(100.0, &fleet, 0.0, 1200.0).is_empty());
        assert!(!b.over(100.0, &fleet));
        assert!(b.over(260.0, &fleet), "adopted 3 intervals past due");
        // past due nothing more is claimed (the third member never came)
        let mut later = fleet.clone();
        later.push(inst("p1", "cpu", 90.0, true, 0));
        b.claim(90.0, &later, &[], 60.0);
        assert_eq!(b.ids().count(), 2);
    }

    #[test]
    fn two_bridges_never_share_a_member() {
        let mut a = Bridge::of(0.0, &launch("cpu", 2), &[]).unwrap();
        let mut b = Bridge::of(60.0, &launch("cpu", 2), &[]).unwrap();
        let fleet = vec![
            inst("x1", "cpu", 0.0, false, 0),
            inst("x2", "cpu", 0.0, false, 0),
            inst("x3", "cpu", 60.0, false, 0),
        ];
        a.claim(65.0, &fleet, &[], 60.0);
        let taken: Vec<String> = a.ids().cloned().collect();
        b.claim(65.0, &fleet, &taken, 60.0);
        assert_eq!(b.ids().collect::<Vec<_>>(), ["x3"]);
    }

    #[test]
    fn a_slow_boot_holds_the_bridge_and_a_plan_that_leaves_some_to_lambda_does_not() {
        let cat = [ty("cpu", 75.0, 500.0), ty("gpu", 150.0, 2000.0)];
        let mut b = Bridge::of(0.0, &launch("cpu", 2), &[]).unwrap();
        // the plan of its tick covers 3,000 req/s of a 5,000 req/s demand (Lambda the rest)
        b.due_after(&[launch("gpu", 1)], &cat, 5.0, 60.0, 3000.0);
        let mut fleet = vec![
            inst("b1", "cpu", 0.0, true, 0),
            inst("b2", "cpu", 0.0, true, 0),
            inst("g1", "gpu", 0.0, false, 0),
        ];
        b.claim(5.0, &fleet, &[], 60.0);
        // the GPU boots late (the catalog said 150 s): the bridge stays past its estimate
        assert!(b.retire(300.0, &fleet, 3500.0, 5000.0).is_empty());
        assert!(
            !b.over(300.0, &fleet),
            "kept apart until 3 intervals past due (335)"
        );
        fleet[2].ready = true;
        assert_eq!(
            b.retire(305.0, &fleet, 3500.0, 5000.0).len(),
            2,
            "what serves carries what the plan covers: the bridge goes"
        );
    }

    #[test]
    fn a_companion_that_never_boots_is_waited_for_no_more() {
        let cat = [ty("cpu", 75.0, 500.0), ty("gpu", 150.0, 2000.0)];
        let mut b = Bridge::of(0.0, &launch("cpu", 2), &[]).unwrap();
        b.due_after(&[launch("gpu", 1)], &cat, 5.0, 60.0, 2500.0);
        let mut fleet = vec![
            inst("b1", "cpu", 0.0, true, 0),
            inst("b2", "cpu", 0.0, true, 0),
            inst("g1", "gpu", 0.0, false, 0),
        ];
        b.claim(5.0, &fleet, &[], 60.0);
        assert!(
            b.retire(180.0, &fleet, 600.0, 5000.0).is_empty(),
            "the GPU still boots"
        );
        // it goes without ever serving (reaped, or its launch failed): the bridge waits for it
        // no more, nor for the capacity the plan counted on it for
        fleet.retain(|i| i.id != "g1");
        b.claim(200.0, &fleet, &[], 60.0);
        assert_eq!(b.retire(200.0, &fleet, 600.0, 5000.0).len(), 2);
    }
}
