//! One control step, as pure logic: peak-rate history → predictor → provisioner → the actions
//! that move the fleet toward the plan. Time, fleet and policies come in as arguments, so the
//! live gateway and the simulator drive the very same code.

use std::collections::BTreeMap;

use mark_policies::types::{FleetEntry, InstanceType, Market, Plan, PolicyError, Slo};

/// One instance as the controller sees it (rebuilt from the cloud's tags, not kept in memory).
#[derive(Debug, Clone, PartialEq)]
pub struct FleetInstance {
    /// Cloud id.
    pub id: String,
    /// Type name.
    pub instance_type: String,
    /// Market.
    pub market: Market,
    /// Launch time, seconds on the controller's clock.
    pub launched_at: f64,
    /// Serving (false while launching).
    pub ready: bool,
    /// Batches in flight on it; an instance with work is never terminated.
    pub in_flight: u32,
}

/// Settings of the control loop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ControlConfig {
    /// Seconds per control interval.
    pub interval_s: f64,
    /// Intervals ahead the forecast and the plan cover.
    pub horizon: u32,
    /// An instance younger than this is not terminated (billing minimum, avoids flapping).
    pub min_age_s: f64,
    /// The latency objective.
    pub slo: Slo,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            interval_s: 60.0,
            horizon: 5,
            min_age_s: 60.0,
            slo: Slo {
                latency_ms: 100.0,
                attainment_target: 0.99,
            },
        }
    }
}

/// A change to the fleet.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Launch `count` instances.
    Launch {
        /// Type name.
        instance_type: String,
        /// Market.
        market: Market,
        /// How many.
        count: u32,
    },
    /// Terminate one instance.
    Terminate {
        /// Cloud id.
        id: String,
    },
}

/// What one step decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Predicted peak rate per interval.
    pub forecast: Vec<f64>,
    /// The provisioner's plan.
    pub plan: Plan,
    /// Actions to take now.
    pub actions: Vec<Action>,
}

/// Groups the fleet the way the provisioner sees it.
pub fn fleet_entries(now: f64, fleet: &[FleetInstance]) -> Vec<FleetEntry> {
    let mut by: BTreeMap<(String, Market), FleetEntry> = BTreeMap::new();
    for i in fleet {
        let e = by
            .entry((i.instance_type.clone(), i.market))
            .or_insert_with(|| FleetEntry {
                instance_type: i.instance_type.clone(),
                market: i.market,
                running: 0,
                pending: 0,
                ages_seconds: Vec::new(),
            });
        if i.ready {
            e.running += 1;
        } else {
            e.pending += 1;
        }
        e.ages_seconds.push((now - i.launched_at).max(0.0));
    }
    by.into_values().collect()
}

/// A predictor: (history, interval seconds, horizon) -> forecast.
pub type PredictFn<'a> = dyn FnMut(&[f64], f64, u32) -> Result<Vec<f64>, PolicyError> + 'a;
/// A provisioner: (forecast, interval seconds, fleet, catalog, SLO) -> plan.
pub type ProvisionFn<'a> =
    dyn FnMut(&[f64], f64, &[FleetEntry], &[InstanceType], Slo) -> Result<Plan, PolicyError> + 'a;

/// Runs one control step.
pub fn step(
    now: f64,
    history: &[f64],
    cfg: &ControlConfig,
    fleet: &[FleetInstance],
    catalog: &[InstanceType],
    predict: &mut PredictFn<'_>,
    provision: &mut ProvisionFn<'_>,
) -> Result<Step, PolicyError> {
    let forecast = predict(history, cfg.interval_s, cfg.horizon)?;
    let entries = fleet_entries(now, fleet);
    let plan = provision(&forecast, cfg.interval_s, &entries, catalog, cfg.slo)?;
    let actions = diff(now, cfg, fleet, &plan);
    Ok(Step {
        forecast,
        plan,
        actions,
    })
}

/// Actions that move `fleet` toward `plan`: launches for missing instances; terminations of idle
/// instances older than `min_age_s` (youngest first, pending ones never), for surplus ones.
pub fn diff(now: f64, cfg: &ControlConfig, fleet: &[FleetInstance], plan: &Plan) -> Vec<Action> {
    let mut want: BTreeMap<(String, Market), u32> = BTreeMap::new();
    for t in &plan.targets {
        *want.entry((t.instance_type.clone(), t.market)).or_default() += t.count;
    }
    let mut have: BTreeMap<(String, Market), Vec<&FleetInstance>> = BTreeMap::new();
    for i in fleet {
        have.entry((i.instance_type.clone(), i.market))
            .or_default()
            .push(i);
        want.entry((i.instance_type.clone(), i.market)).or_default();
    }
    let mut actions = Vec::new();
    for ((ty, market), target) in want {
        let mut mine = have.remove(&(ty.clone(), market)).unwrap_or_default();
        let n = mine.len() as u32;
        if target > n {
            actions.push(Action::Launch {
                instance_type: ty,
                market,
                count: target - n,
            });
        } else if target < n {
            mine.sort_by(|a, b| b.launched_at.total_cmp(&a.launched_at));
            let removable = mine
                .iter()
                .filter(|i| i.ready && i.in_flight == 0 && now - i.launched_at >= cfg.min_age_s);
            for i in removable.take((n - target) as usize) {
                actions.push(Action::Terminate { id: i.id.clone() });
            }
        }
    }
    actions
}

/// The out-of-cycle answer to an SLO breach: one on-demand instance of the cheapest burstable
/// type (fastest to launch, credits absorb the burst), or of the fastest-launching type.
pub fn emergency_launch(catalog: &[InstanceType]) -> Option<Action> {
    let pick = catalog
        .iter()
        .filter(|t| t.burstable && t.capacity_rps > 0.0)
        .min_by(|a, b| a.price_on_demand.total_cmp(&b.price_on_demand))
        .or_else(|| {
            catalog
                .iter()
                .filter(|t| t.capacity_rps > 0.0)
                .min_by(|a, b| a.launch_seconds.total_cmp(&b.launch_seconds))
        })?;
    Some(Action::Launch {
        instance_type: pick.name.clone(),
        market: Market::OnDemand,
        count: 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mark_policies::types::FleetTarget;

    fn inst(id: &str, ty: &str, launched: f64, ready: bool, busy: u32) -> FleetInstance {
        FleetInstance {
            id: id.into(),
            instance_type: ty.into(),
            market: Market::OnDemand,
            launched_at: launched,
            ready,
            in_flight: busy,
        }
    }

    fn plan(ty: &str, n: u32) -> Plan {
        Plan {
            targets: vec![FleetTarget {
                instance_type: ty.into(),
                market: Market::OnDemand,
                count: n,
            }],
            lambda_share: 0.0,
        }
    }

    #[test]
    fn launches_the_missing_ones() {
        let cfg = ControlConfig::default();
        let fleet = [inst("a", "c", 0.0, true, 0)];
        assert_eq!(
            diff(100.0, &cfg, &fleet, &plan("c", 3)),
            vec![Action::Launch {
                instance_type: "c".into(),
                market: Market::OnDemand,
                count: 2
            }]
        );
    }

    #[test]
    fn terminates_idle_old_ones_youngest_first_never_busy_or_pending() {
        let cfg = ControlConfig::default();
        let fleet = [
            inst("old", "c", 0.0, true, 0),
            inst("mid", "c", 100.0, true, 0),
            inst("busy", "c", 150.0, true, 2),
            inst("young", "c", 290.0, true, 0),
            inst("pending", "c", 295.0, false, 0),
        ];
        // keep 1 of 5: "busy", "young" (< 60 s) and "pending" are protected -> mid, old
        let a = diff(300.0, &cfg, &fleet, &plan("c", 1));
        assert_eq!(
            a,
            vec![
                Action::Terminate { id: "mid".into() },
                Action::Terminate { id: "old".into() }
            ]
        );
        // types absent from the plan go to zero
        let a = diff(300.0, &cfg, &[inst("x", "t3", 0.0, true, 0)], &plan("c", 0));
        assert_eq!(a, vec![Action::Terminate { id: "x".into() }]);
    }

    #[test]
    fn a_step_runs_the_default_policies() {
        let cat = vec![InstanceType {
            name: "c".into(),
            vcpus: 2,
            gpus: 0,
            memory_gib: 4.0,
            price_on_demand: 0.1,
            price_spot: 0.0,
            launch_seconds: 60.0,
            capacity_rps: 100.0,
            burstable: false,
        }];
        let history = vec![250.0; 30];
        let s = step(
            0.0,
            &history,
            &ControlConfig::default(),
            &[],
            &cat,
            &mut |h, i, n| mark_policies::predictor::predict(h, i, n),
            &mut |f, i, fl, c, slo| mark_policies::provisioner::provision(f, i, fl, c, slo),
        )
        .unwrap();
        assert_eq!(
            s.actions,
            vec![Action::Launch {
                instance_type: "c".into(),
                market: Market::OnDemand,
                count: 3
            }]
        );
        assert_eq!(s.plan.lambda_share, 1.0);
    }

    #[test]
    fn emergency_prefers_cheap_burstable() {
        let mk = |n: &str, p: f64, b: bool| InstanceType {
            name: n.into(),
            vcpus: 2,
            gpus: 0,
            memory_gib: 4.0,
            price_on_demand: p,
            price_spot: 0.0,
            launch_seconds: 60.0,
            capacity_rps: 10.0,
            burstable: b,
        };
        let a = emergency_launch(&[
            mk("c", 0.08, false),
            mk("t3.large", 0.08, true),
            mk("t3.medium", 0.04, true),
        ]);
        assert_eq!(
            a,
            Some(Action::Launch {
                instance_type: "t3.medium".into(),
                market: Market::OnDemand,
                count: 1
            })
        );
    }
}
