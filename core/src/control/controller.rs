//! One control step, as pure logic: peak-rate history → predictor → provisioner → the actions
//! that move the fleet toward the plan. Time, fleet and policies come in as arguments, so the
//! live gateway and the simulator drive the very same code.

use std::collections::BTreeMap;

use mark_policies::types::{FleetEntry, InstanceType, Market, ModelDemand, Plan, PolicyError, Slo};

use super::mix::{capacity_by_model, driver, mixed_catalog, total_forecast, Floor};

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
    /// Make before break: a serving instance is terminated only if the serving capacity left
    /// still covers the forecast peak times `1 + guard` (so a plan that swaps types keeps the
    /// old ones until the new ones serve, and a forecast wobbling around an instance boundary
    /// does not launch and terminate the same capacity every interval). `None`: terminate the
    /// plan's surplus at once (MArk as released).
    pub scale_in_guard: Option<f64>,
    /// The feedback on slack (`slack`): the forecast is planned at a headroom factor that the
    /// observed attainment and p99 move within these bounds. `None`: the forecast as it is.
    pub slack: Option<super::slack::SlackBounds>,
    /// Churn that pays for itself: with the guard on and the fleet covering the forecast, a plan
    /// that changes the mix launches only when its hourly saving repays, within
    /// [`PAYBACK_HORIZONS`] forecast horizons, what the launches cost before they serve (launch
    /// time and the 60 s billing minimum). false:
    /// the older rule, a saving of at least [`SWAP_SAVING`] of the fleet's cost per hour.
    pub pays_for_itself: bool,
}

/// Default [`ControlConfig::scale_in_guard`]: the forecast peak itself (it carries the
/// predictor's margin already; 10% more cost 11% on the Twitter-like day for no attainment).
pub const SCALE_IN_GUARD: f64 = 0.0;

/// With the guard on, a fleet that already covers the forecast (plus the guard) is changed into
/// another mix only when the plan costs at least this share less per hour: a greedy plan that
/// trades one instance for two slightly cheaper ones as the forecast wobbles would otherwise
/// launch and terminate every few intervals, paying launch time and billing minimums each time.
pub const SWAP_SAVING: f64 = 0.1;

/// Churn that pays for itself: a swap's hourly saving must repay its launches within this many
/// forecast horizons (5 intervals of 60 s: the 5 minutes the forecast covers; 2 and 6 cost
/// 1–5% more on the 10x Twitter-like and MMPP days, `bash scripts/bench-ablation.sh`).
pub const PAYBACK_HORIZONS: f64 = 1.0;

/// The cloud's billing minimum per launch, seconds (EC2 Linux: 60).
pub const BILLING_MIN_S: f64 = 60.0;

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
            scale_in_guard: Some(SCALE_IN_GUARD),
            slack: None,
            pays_for_itself: true,
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

impl Action {
    /// Tests' shorthand: launch `count` on-demand instances of `ty`.
    #[cfg(test)]
    pub(crate) fn on_demand(ty: &str, count: u32) -> Action {
        Action::Launch {
            instance_type: ty.into(),
            market: Market::OnDemand,
            count,
        }
    }

    /// The launches among `actions`: (type, market, count).
    pub fn launches(actions: &[Action]) -> Vec<(&str, Market, u32)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Launch {
                    instance_type,
                    market,
                    count,
                } => Some((instance_type.as_str(), *market, *count)),
                Action::Terminate { .. } => None,
            })
            .collect()
    }

    /// How many terminations `actions` holds.
    pub fn terminations(actions: &[Action]) -> usize {
        actions
            .iter()
            .filter(|a| matches!(a, Action::Terminate { .. }))
            .count()
    }
}

/// What one step decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Predicted peak rate per interval, all models summed.
    pub forecast: Vec<f64>,
    /// The provisioner's plan (after the fleet's floor).
    pub plan: Plan,
    /// Actions to take now.
    pub actions: Vec<Action>,
    /// Each model's forecast, SLO and capacities, as the provisioner received them.
    pub models: Vec<ModelDemand>,
    /// The plan's capacity per model (its mixed capacity split by the peak's demand), req/s.
    pub capacity_by_model: Vec<(String, f64)>,
    /// The model that took the most instance time at the forecast's peak.
    pub driver: Option<String>,
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

/// A predictor: (model, history, interval seconds, horizon) -> forecast.
pub type PredictFn<'a> = dyn FnMut(&str, &[f64], f64, u32) -> Result<Vec<f64>, PolicyError> + 'a;

/// What a provisioner is asked. A single-model provisioner (the native one, a component built
/// for WIT 0.1.0) plans `forecast` with `catalog`, whose capacities are each type's capacity for
/// the forecast's mix of models (`mark_policies::mix`); a 0.2.0 component gets `models` too.
#[derive(Debug, Clone, Copy)]
pub struct ProvisionInput<'a> {
    /// Predicted peak rate per interval, all models summed.
    pub forecast: &'a [f64],
    /// Seconds per interval.
    pub interval_s: f64,
    /// The fleet.
    pub fleet: &'a [FleetEntry],
    /// The usable types, with capacity for the mix.
    pub catalog: &'a [InstanceType],
    /// The strictest model's SLO.
    pub slo: Slo,
    /// Per model: forecast, SLO, `cap(T, m)`, footprint, measured attainment.
    pub models: &'a [ModelDemand],
}

impl ProvisionInput<'_> {
    /// The native default's plan.
    pub fn native(&self) -> Result<Plan, PolicyError> {
        mark_policies::provisioner::provision(
            self.forecast,
            self.interval_s,
            self.fleet,
            self.catalog,
            self.slo,
        )
    }
}

/// A provisioner.
pub type ProvisionFn<'a> = dyn FnMut(&ProvisionInput<'_>) -> Result<Plan, PolicyError> + 'a;

/// Runs one control step on predicted `models`: one plan for their mix by the provisioner, the
/// fleet's floor, and the actions that move `fleet` there. `all`: every catalog type (any
/// model's capacities: they are replaced by the mix's), `usable`: those the plan may launch.
#[allow(clippy::too_many_arguments)]
pub fn step(
    now: f64,
    cfg: &ControlConfig,
    fleet: &[FleetInstance],
    models: Vec<ModelDemand>,
    all: &[InstanceType],
    usable: &[InstanceType],
    floor: &Floor,
    provision: &mut ProvisionFn<'_>,
) -> Result<Step, PolicyError> {
    let forecast = total_forecast(&models);
    let mixed_all = mixed_catalog(&models, all);
    let mixed_usable = mixed_catalog(&models, usable);
    let entries = fleet_entries(now, fleet);
    let slo = models
        .iter()
        .map(|m| m.slo)
        .min_by(|a, b| a.latency_ms.total_cmp(&b.latency_ms))
        .unwrap_or(cfg.slo);
    let plan = provision(&ProvisionInput {
        forecast: &forecast,
        interval_s: cfg.interval_s,
        fleet: &entries,
        catalog: &mixed_usable,
        slo,
        models: &models,
    })?;
    let zero = floor.lambda_only(&forecast, cfg.interval_s, &mixed_usable);
    let plan = floor.apply(plan, &forecast, cfg.interval_s, &mixed_usable);
    // at the floor's zero Lambda carries the forecast: no serving capacity is kept for it
    let peak = if zero {
        0.0
    } else {
        forecast.iter().copied().fold(0.0, f64::max)
    };
    let plan = match floor.spot_max_share {
        Some(share) => {
            // the spot capacity the plan must keep: the forecast peak past its on-demand part
            let on_demand: f64 = plan
                .targets
                .iter()
                .filter(|t| t.market == Market::OnDemand)
                .map(|t| f64::from(t.count) * capacity_of(&mixed_usable, &t.instance_type))
                .sum();
            let need = (peak * (1.0 + cfg.scale_in_guard.unwrap_or(0.0)) - on_demand).max(0.0);
            super::spread::spread(plan, &mixed_usable, share, need)
        }
        None => plan,
    };
    let mut actions = diff(now, cfg, fleet, &plan, &mixed_all, peak);
    // the floor is no saving to weigh against a launch's cost (make-before-break would hold
    // it back whenever the fleet, empty, "covers" a forecast of zero): its shortfall launches
    let (launching, ending) = actions.iter().fold((0u32, 0usize), |(l, e), a| match a {
        Action::Launch { count, .. } => (l + count, e),
        Action::Terminate { .. } => (l, e + 1),
    });
    // what is left after this step's terminations, and what it launches, against the floor
    let short = floor
        .shortfall(fleet.len().saturating_sub(ending))
        .saturating_sub(launching);
    if let (true, Some(t)) = (short > 0 && !zero, Floor::cheapest(&mixed_usable)) {
        actions.push(Action::Launch {
            instance_type: t.name.clone(),
            market: Market::OnDemand,
            count: short,
        });
    }
    let planned: f64 = plan
        .targets
        .iter()
        .map(|t| f64::from(t.count) * capacity_of(&mixed_all, &t.instance_type))
        .sum();
    Ok(Step {
        capacity_by_model: capacity_by_model(&models, planned),
        driver: driver(&models),
        forecast,
        plan,
        actions,
        models,
    })
}

fn type_of<'a>(catalog: &'a [InstanceType], name: &str) -> Option<&'a InstanceType> {
    catalog.iter().find(|t| t.name == name)
}

/// Serving capacity (requests/s at the SLO) of one instance of type `name`.
pub fn capacity_of(catalog: &[InstanceType], name: &str) -> f64 {
    type_of(catalog, name).map_or(0.0, |t| t.capacity_rps)
}

/// Actions that move `fleet` toward `plan`: launches for missing instances; terminations of idle
/// instances older than `min_age_s` (youngest first, pending ones never), for surplus ones, as
/// far as [`ControlConfig::scale_in_guard`] allows with `peak` the forecast peak. With the guard,
/// nothing is launched while the fleet (launching instances included) covers the forecast,
/// unless the plan's hourly saving repays the launches within [`PAYBACK_HORIZONS`] horizons
/// ([`ControlConfig::pays_for_itself`]; otherwise: unless it saves [`SWAP_SAVING`] of the
/// fleet's cost per hour).
pub fn diff(
    now: f64,
    cfg: &ControlConfig,
    fleet: &[FleetInstance],
    plan: &Plan,
    catalog: &[InstanceType],
    peak: f64,
) -> Vec<Action> {
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
    let mut serving: f64 = fleet
        .iter()
        .filter(|i| i.ready)
        .map(|i| capacity_of(catalog, &i.instance_type))
        .sum();
    let keep = cfg
        .scale_in_guard
        .map(|g| peak.max(0.0) * (1.0 + g.max(0.0)));
    let price = |name: &str, m: Market| type_of(catalog, name).map_or(0.0, |t| t.price(m));
    let fleet_capacity: f64 = fleet
        .iter()
        .map(|i| capacity_of(catalog, &i.instance_type))
        .sum();
    let fleet_cost: f64 = fleet
        .iter()
        .map(|i| price(&i.instance_type, i.market))
        .sum();
    let plan_cost: f64 = plan
        .targets
        .iter()
        .map(|t| f64::from(t.count) * price(&t.instance_type, t.market))
        .sum();
    let launch_ok = match keep {
        Some(k) if fleet_capacity >= k && cfg.pays_for_itself => {
            // what the new instances cost before they serve, against the saving over the horizon
            let launch_cost: f64 = want
                .iter()
                .map(|((ty, m), &target)| {
                    let n = have.get(&(ty.clone(), *m)).map_or(0, Vec::len) as u32;
                    let t = type_of(catalog, ty);
                    f64::from(target.saturating_sub(n))
                        * t.map_or(0.0, |t| {
                            t.price(*m) * (t.launch_seconds + BILLING_MIN_S) / 3600.0
                        })
                })
                .sum();
            let payback_s = PAYBACK_HORIZONS * f64::from(cfg.horizon) * cfg.interval_s;
            (fleet_cost - plan_cost) / 3600.0 * payback_s >= launch_cost
        }
        Some(k) if fleet_capacity >= k => plan_cost <= (1.0 - SWAP_SAVING) * fleet_cost,
        _ => true,
    };
    let mut actions = Vec::new();
    for ((ty, market), target) in want {
        let mut mine = have.remove(&(ty.clone(), market)).unwrap_or_default();
        let n = mine.len() as u32;
        if target > n {
            if !launch_ok {
                continue;
            }
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
            let cap = capacity_of(catalog, &ty);
            for i in removable.take((n - target) as usize) {
                if keep.is_some_and(|k| serving - cap < k) {
                    break;
                }
                serving -= cap;
                actions.push(Action::Terminate { id: i.id.clone() });
            }
        }
    }
    actions
}

/// Most instances one emergency launches to bridge a deficit (about a quarter of the default
/// hourly change budget: the plans of the hour must still be able to launch).
pub const BRIDGE_MAX: u32 = 16;

/// Types that boot within this factor of the fastest type's launch time may bridge.
const BRIDGE_BOOT: f64 = 1.25;

/// A bridging type may cost this much more per unit of capacity than the cheapest fast one
/// (the largest such type bridges: fewer launches for the same capacity).
const BRIDGE_PRICE: f64 = 1.15;

/// The out-of-cycle answer to an SLO breach with the fleet `deficit` requests/s short of the
/// demand, with room for `room` more instances. When one type covers it: one on-demand
/// instance of the type that covers it soonest (shortest launch, then cheapest), where a
/// burstable counts at the capacity it sustains without credits (its catalog capacity).
/// When none does (a step far above the fleet), a **bridge**: enough on-demand instances of a
/// fast-booting type to cover it (at most [`BRIDGE_MAX`] and `room`): the type with the most
/// capacity among those booting within [`BRIDGE_BOOT`] of the fastest and priced within
/// [`BRIDGE_PRICE`] of the cheapest of them per unit of capacity. The plan made in the same
/// tick launches its own (often slower-booting, cheaper) types; the bridge carries the deficit
/// from its own boot until theirs instead of Lambda (~10x an instance's price per request),
/// and is terminated as surplus once idle. None without a deficit or room.
pub fn emergency_launch(catalog: &[InstanceType], deficit: f64, room: u32) -> Option<Action> {
    if deficit.is_nan() || deficit <= 0.0 || room == 0 {
        return None;
    }
    let usable = || catalog.iter().filter(|t| t.capacity_rps > 0.0);
    let launch = |instance_type: &str, count: u32| Action::Launch {
        instance_type: instance_type.to_string(),
        market: Market::OnDemand,
        count,
    };
    if let Some(one) = usable()
        .filter(|t| t.capacity_rps >= deficit)
        .min_by(|a, b| {
            a.launch_seconds
                .total_cmp(&b.launch_seconds)
                .then(a.price_on_demand.total_cmp(&b.price_on_demand))
        })
    {
        return Some(launch(&one.name, 1));
    }
    let fastest = usable()
        .map(|t| t.launch_seconds)
        .fold(f64::INFINITY, f64::min);
    let fast = || usable().filter(|t| t.launch_seconds <= fastest * BRIDGE_BOOT);
    let per = |t: &InstanceType| t.price_on_demand / t.capacity_rps;
    let best = fast().map(per).fold(f64::INFINITY, f64::min);
    let pick = fast()
        .filter(|t| per(t) <= best * BRIDGE_PRICE)
        .max_by(|a, b| {
            a.capacity_rps
                .total_cmp(&b.capacity_rps)
                .then(b.price_on_demand.total_cmp(&a.price_on_demand))
        })?;
    let n = (deficit / pick.capacity_rps)
        .ceil()
        .min(f64::from(room.min(BRIDGE_MAX)));
    Some(launch(&pick.name, (n as u32).max(1)))
}

#[cfg(test)]
mod tests;
