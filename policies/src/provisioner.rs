//! MArk's greedy instance selection.
//!
//! Residual demand starts as the forecast. Repeatedly, among all candidates — every catalog type
//! in each market it is offered in, and every instance already in the fleet — pick the one with the
//! lowest cost per request it would serve over the intervals where residual demand is still
//! positive, charging the launch time to new instances and nothing to running ones; subtract its
//! capacity; stop when no interval has residual demand. Scale-in is damped: a plan never drops
//! more than one running instance of a type and market per call (hysteresis). Demand that the
//! fleet serving *now* cannot cover — before pending and new instances are up — goes to Lambda.

use std::collections::BTreeMap;

use crate::types::{
    FleetEntry, FleetTarget, InstanceType, Market, ModelDemand, Plan, PolicyError, Slo,
};

/// Upper bound on instances one plan may add (guards against a runaway forecast).
pub const MAX_NEW_PER_PLAN: u32 = 1000;

fn price(t: &InstanceType, m: Market) -> f64 {
    match m {
        Market::OnDemand => t.price_on_demand,
        Market::Spot => t.price_spot,
    }
}

/// Plans the fleet for `forecast` (req/s per interval of `interval_seconds`).
pub fn provision(
    forecast: &[f64],
    interval_seconds: f64,
    fleet: &[FleetEntry],
    catalog: &[InstanceType],
    slo: Slo,
) -> Result<Plan, PolicyError> {
    if forecast.is_empty() {
        return Err(PolicyError::InvalidInput("empty forecast".into()));
    }
    if let Some(x) = forecast.iter().find(|x| !x.is_finite() || **x < 0.0) {
        return Err(PolicyError::InvalidInput(format!("forecast holds {x}")));
    }
    if interval_seconds.is_nan()
        || interval_seconds <= 0.0
        || slo.latency_ms.is_nan()
        || slo.latency_ms <= 0.0
    {
        return Err(PolicyError::InvalidInput(
            "interval and SLO must be positive".into(),
        ));
    }
    let index: BTreeMap<&str, usize> = catalog
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.as_str(), i))
        .collect();
    for e in fleet {
        if !index.contains_key(e.instance_type.as_str()) {
            return Err(PolicyError::InvalidInput(format!(
                "fleet has type '{}' missing from the catalog",
                e.instance_type
            )));
        }
    }
    let usable: Vec<usize> = (0..catalog.len())
        .filter(|&i| catalog[i].capacity_rps > 0.0 && catalog[i].price_on_demand > 0.0)
        .collect();
    if usable.is_empty() {
        return Err(PolicyError::InvalidInput(
            "no catalog type has capacity and a price".into(),
        ));
    }
    let mut residual: Vec<f64> = forecast.to_vec();
    // Existing instances (type index, market, how many left to reuse): no launch overhead.
    let mut existing: Vec<(usize, Market, u32)> = fleet
        .iter()
        .map(|e| {
            (
                index[e.instance_type.as_str()],
                e.market,
                e.running + e.pending,
            )
        })
        .filter(|x| x.2 > 0)
        .collect();
    let mut counts: BTreeMap<(String, Market), u32> = BTreeMap::new();
    let mut added = 0;
    while residual.iter().any(|r| *r > 1e-9) {
        // (cost per request, index into `existing` or None for a new instance, type index, market)
        let mut best: Option<(f64, Option<usize>, usize, Market)> = None;
        let mut consider = |cpr: f64, idx: Option<usize>, ti: usize, m: Market| {
            if cpr.is_finite() && best.is_none_or(|b| cpr < b.0) {
                best = Some((cpr, idx, ti, m));
            }
        };
        for (i, &(ti, m, n)) in existing.iter().enumerate() {
            let t = &catalog[ti];
            let (served, span) = serve(&residual, t.capacity_rps, interval_seconds);
            if n > 0 && served > 0.0 {
                consider(price(t, m) * span / 3600.0 / served, Some(i), ti, m);
            }
        }
        if added < MAX_NEW_PER_PLAN {
            for &ti in &usable {
                let t = &catalog[ti];
                let (served, span) = serve(&residual, t.capacity_rps, interval_seconds);
                for m in [Market::OnDemand, Market::Spot] {
                    let p = price(t, m);
                    if p > 0.0 && served > 0.0 {
                        consider(p * (span + t.launch_seconds) / 3600.0 / served, None, ti, m);
                    }
                }
            }
        }
        let Some((_, idx, ti, m)) = best else { break };
        match idx {
            Some(i) => existing[i].2 -= 1,
            None => added += 1,
        }
        for r in residual.iter_mut() {
            *r -= catalog[ti].capacity_rps;
        }
        *counts.entry((catalog[ti].name.clone(), m)).or_default() += 1;
    }
    // Hysteresis: drop at most one running instance per type and market per plan.
    for e in fleet {
        let have = e.running + e.pending;
        let c = counts
            .entry((e.instance_type.clone(), e.market))
            .or_default();
        if *c + 1 < have {
            *c = have - 1;
        }
    }
    // Lambda covers what the instances serving now cannot, until new capacity is up.
    let running_capacity: f64 = fleet
        .iter()
        .map(|e| f64::from(e.running) * catalog[index[e.instance_type.as_str()]].capacity_rps)
        .sum();
    let now = forecast[0];
    let lambda_share = if now > 0.0 {
        ((now - running_capacity) / now).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let targets = counts
        .into_iter()
        .map(|((instance_type, market), count)| FleetTarget {
            instance_type,
            market,
            count,
        })
        .collect();
    Ok(Plan {
        targets,
        lambda_share,
    })
}

/// Plans one fleet for several models (WIT 0.2.0): the per-model forecasts become one total
/// and each type's capacity its capacity for the mix (`mix::mixed_catalog`, the time-share
/// rule), then [`provision`] plans that. `slo` is the strictest of the models' objectives.
pub fn provision_models(
    models: &[ModelDemand],
    interval_seconds: f64,
    fleet: &[FleetEntry],
    catalog: &[InstanceType],
) -> Result<Plan, PolicyError> {
    if models.is_empty() {
        return Err(PolicyError::InvalidInput("no model".into()));
    }
    let forecast = crate::mix::total_forecast(models);
    let mixed = crate::mix::mixed_catalog(models, catalog);
    let slo = models
        .iter()
        .map(|m| m.slo)
        .min_by(|a, b| a.latency_ms.total_cmp(&b.latency_ms))
        .expect("a model");
    provision(&forecast, interval_seconds, fleet, &mixed, slo)
}

/// Requests one instance of `capacity` would serve against `residual`, and the seconds it is
/// needed (intervals with positive residual).
fn serve(residual: &[f64], capacity: f64, interval: f64) -> (f64, f64) {
    let mut served = 0.0;
    let mut span = 0.0;
    for &r in residual {
        if r > 1e-9 {
            served += r.min(capacity) * interval;
            span += interval;
        }
    }
    (served, span)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str, od: f64, spot: f64, cap: f64) -> InstanceType {
        InstanceType {
            name: name.into(),
            vcpus: 2,
            gpus: 0,
            memory_gib: 4.0,
            price_on_demand: od,
            price_spot: spot,
            launch_seconds: 60.0,
            capacity_rps: cap,
            burstable: false,
        }
    }
    const SLO: Slo = Slo {
        latency_ms: 100.0,
        attainment_target: 0.99,
    };

    fn count(p: &Plan, name: &str, m: Market) -> u32 {
        p.targets
            .iter()
            .filter(|x| x.instance_type == name && x.market == m)
            .map(|x| x.count)
            .sum()
    }

    #[test]
    fn picks_lowest_cost_per_request() {
        // big: 0.4 $/h for 400 rps (0.001 $/h per rps) beats small: 0.1 $/h for 50 rps (0.002)
        let cat = [t("small", 0.1, 0.0, 50.0), t("big", 0.4, 0.0, 400.0)];
        let p = provision(&[350.0; 10], 60.0, &[], &cat, SLO).unwrap();
        assert_eq!(count(&p, "big", Market::OnDemand), 1);
        assert_eq!(count(&p, "small", Market::OnDemand), 0);
        // a residual of 30 rps is cheaper on a small one than on a second big one
        let p = provision(&[430.0; 10], 60.0, &[], &cat, SLO).unwrap();
        assert_eq!(
            (
                count(&p, "big", Market::OnDemand),
                count(&p, "small", Market::OnDemand)
            ),
            (1, 1)
        );
        assert_eq!(
            p.lambda_share, 1.0,
            "nothing runs yet: Lambda takes it all meanwhile"
        );
    }

    #[test]
    fn spot_when_offered_and_running_ones_kept() {
        let cat = [t("c", 0.2, 0.06, 100.0)];
        let p = provision(&[150.0; 5], 60.0, &[], &cat, SLO).unwrap();
        assert_eq!(count(&p, "c", Market::Spot), 2);
        // a running on-demand instance carries no launch charge: with a 1-interval horizon it is
        // kept rather than replaced by spot
        let fleet = [FleetEntry {
            instance_type: "c".into(),
            market: Market::OnDemand,
            running: 1,
            pending: 0,
            ages_seconds: vec![600.0],
        }];
        let cat = [t("c", 0.2, 0.15, 100.0)];
        let p = provision(&[90.0], 60.0, &fleet, &cat, SLO).unwrap();
        assert_eq!(count(&p, "c", Market::OnDemand), 1);
        assert_eq!(count(&p, "c", Market::Spot), 0);
        assert_eq!(p.lambda_share, 0.0);
    }

    #[test]
    fn scale_in_is_gradual() {
        let cat = [t("c", 0.2, 0.0, 100.0)];
        let fleet = [FleetEntry {
            instance_type: "c".into(),
            market: Market::OnDemand,
            running: 5,
            pending: 0,
            ages_seconds: vec![600.0; 5],
        }];
        let p = provision(&[50.0; 5], 60.0, &fleet, &cat, SLO).unwrap();
        assert_eq!(count(&p, "c", Market::OnDemand), 4);
    }

    #[test]
    fn rejects_unknown_types_and_bad_forecasts() {
        let cat = [t("c", 0.2, 0.0, 100.0)];
        let fleet = [FleetEntry {
            instance_type: "x".into(),
            market: Market::Spot,
            running: 1,
            pending: 0,
            ages_seconds: vec![],
        }];
        assert!(provision(&[1.0], 60.0, &fleet, &cat, SLO).is_err());
        assert!(provision(&[f64::NAN], 60.0, &[], &cat, SLO).is_err());
        assert!(provision(&[], 60.0, &[], &cat, SLO).is_err());
    }
}
