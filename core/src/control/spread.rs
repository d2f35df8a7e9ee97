//! Spot diversification (`--spot-max-share`): real reclaims are correlated — one type in one
//! zone goes within minutes — so a plan that puts all its spot capacity on the cheapest type
//! loses all of it to one wave. With a share bound, no spot type holds more than that share of
//! the plan's spot capacity: an instance of the type most over the bound is dropped where the
//! plan's spot capacity stays at or above what it must carry (`need`: a plan can hold more than
//! that, as when the provisioner keeps instances it has rather than swap them), and otherwise
//! moved to the spot type that carries its capacity for the least (enough instances of it,
//! within the bound). The spot capacity never falls below `need`; it costs what the next types
//! cost more.

use mark_policies::types::{FleetTarget, InstanceType, Market, Plan};

fn cap(catalog: &[InstanceType], name: &str) -> f64 {
    catalog
        .iter()
        .find(|t| t.name == name)
        .map_or(0.0, |t| t.capacity_rps)
}

/// `plan` with no spot type above `max_share` of the spot capacity, where other spot types can
/// take the excess, and its spot capacity at least `need` req/s (or what it was, if less);
/// unchanged with fewer than two spot instances or no other spot type.
pub fn spread(mut plan: Plan, catalog: &[InstanceType], max_share: f64, need: f64) -> Plan {
    if !(max_share > 0.0 && max_share < 1.0) {
        return plan;
    }
    let spot_count: u32 = plan
        .targets
        .iter()
        .filter(|t| t.market == Market::Spot)
        .map(|t| t.count)
        .sum();
    if spot_count < 2 {
        return plan;
    }
    let capacity_of = |plan: &Plan, name: &str| -> f64 {
        plan.targets
            .iter()
            .filter(|t| t.market == Market::Spot && t.instance_type == name)
            .map(|t| f64::from(t.count) * cap(catalog, name))
            .sum()
    };
    // each round removes one instance of an over-bound type: bounded by the instances there are
    // (those added only ever land within the bound)
    for _ in 0..=spot_count {
        let total: f64 = plan
            .targets
            .iter()
            .filter(|t| t.market == Market::Spot)
            .map(|t| f64::from(t.count) * cap(catalog, &t.instance_type))
            .sum();
        // the spot type most over the bound
        let Some(over) = plan
            .targets
            .iter()
            .filter(|t| t.market == Market::Spot && t.count > 1)
            .map(|t| {
                (
                    t.instance_type.clone(),
                    capacity_of(&plan, &t.instance_type),
                )
            })
            .filter(|(_, c)| *c > max_share * total + 1e-9)
            .max_by(|a, b| a.1.total_cmp(&b.1))
        else {
            break;
        };
        let moved = cap(catalog, &over.0);
        let take_one = |plan: &mut Plan| {
            if let Some(t) = plan
                .targets
                .iter_mut()
                .find(|t| t.market == Market::Spot && t.instance_type == over.0)
            {
                t.count -= 1;
            }
        };
        // more than needed: the instance goes, nothing replaces it
        if total - moved >= need - 1e-9 {
            take_one(&mut plan);
            continue;
        }
        // the other spot type that carries the moved capacity for the least (whole instances of
        // it), within the bound with the move; then the lower price per req/s
        let to = catalog
            .iter()
            .filter(|t| t.name != over.0 && t.price_spot > 0.0 && t.capacity_rps > 0.0)
            .filter_map(|t| {
                let n = (moved / t.capacity_rps).ceil().max(1.0);
                let after = capacity_of(&plan, &t.name) + n * t.capacity_rps;
                let total_after = total - moved + n * t.capacity_rps;
                (after <= max_share * total_after + 1e-9).then_some((t, n as u32))
            })
            .min_by(|a, b| {
                (f64::from(a.1) * a.0.price_spot)
                    .total_cmp(&(f64::from(b.1) * b.0.price_spot))
                    .then(
                        (a.0.price_spot / a.0.capacity_rps)
                            .total_cmp(&(b.0.price_spot / b.0.capacity_rps)),
                    )
            });
        let Some((to, n)) = to else {
            break;
        };
        take_one(&mut plan);
        match plan
            .targets
            .iter_mut()
            .find(|t| t.market == Market::Spot && t.instance_type == to.name)
        {
            Some(t) => t.count += n,
            None => plan.targets.push(FleetTarget {
                instance_type: to.name.clone(),
                market: Market::Spot,
                count: n,
            }),
        }
    }
    plan.targets.retain(|t| t.count > 0);
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ty(name: &str, spot: f64, cap: f64) -> InstanceType {
        InstanceType {
            name: name.into(),
            vcpus: 2,
            gpus: 0,
            memory_gib: 4.0,
            price_on_demand: spot * 3.0,
            price_spot: spot,
            launch_seconds: 60.0,
            capacity_rps: cap,
            burstable: false,
        }
    }

    fn target(name: &str, market: Market, count: u32) -> FleetTarget {
        FleetTarget {
            instance_type: name.into(),
            market,
            count,
        }
    }

    #[test]
    fn no_spot_type_keeps_more_than_its_share_and_capacity_never_shrinks() {
        let cat = [
            ty("a", 0.03, 100.0),
            ty("b", 0.05, 100.0),
            ty("c", 0.12, 200.0),
        ];
        let plan = Plan {
            targets: vec![
                target("a", Market::Spot, 10),
                target("a", Market::OnDemand, 1),
            ],
            lambda_share: 0.0,
        };
        let out = spread(plan, &cat, 0.5, 1000.0);
        let count = |n: &str, m: Market| {
            out.targets
                .iter()
                .find(|t| t.instance_type == n && t.market == m)
                .map_or(0, |t| t.count)
        };
        // b is cheaper per req/s than c: the excess goes there first
        assert_eq!((count("a", Market::Spot), count("b", Market::Spot)), (5, 5));
        assert_eq!(count("a", Market::OnDemand), 1, "on-demand untouched");
        let spot_cap: f64 = out
            .targets
            .iter()
            .filter(|t| t.market == Market::Spot)
            .map(|t| f64::from(t.count) * cap(&cat, &t.instance_type))
            .sum();
        assert!(spot_cap >= 1000.0);
        // a third: spread over the three types
        let plan = Plan {
            targets: vec![target("a", Market::Spot, 9)],
            lambda_share: 0.0,
        };
        let out = spread(plan, &cat, 0.4, 900.0);
        assert!(out.targets.len() == 3, "{out:?}");
    }

    #[test]
    fn a_plan_holding_more_than_it_needs_drops_rather_than_moves() {
        // the provisioner keeps 7 b it has and adds 9 a (cheaper): 1,600 req/s for a need of
        // 1,000; moving would keep all 1,600 for ever (the fleet then equals the plan)
        let cat = [ty("a", 0.03, 100.0), ty("b", 0.05, 100.0)];
        let plan = Plan {
            targets: vec![target("a", Market::Spot, 9), target("b", Market::Spot, 7)],
            lambda_share: 0.0,
        };
        let out = spread(plan, &cat, 0.5, 1000.0);
        let n: u32 = out.targets.iter().map(|t| t.count).sum();
        assert_eq!(n, 14, "{out:?}: a dropped to the bound, b as it was");
        // a whole large instance is not bought to carry one small one's capacity
        let cat = [
            ty("a", 0.03, 100.0),
            ty("gpu", 0.5, 4000.0),
            ty("c", 0.12, 200.0),
        ];
        let plan = Plan {
            targets: vec![target("a", Market::Spot, 4)],
            lambda_share: 0.0,
        };
        let out = spread(plan, &cat, 0.5, 400.0);
        assert!(
            out.targets.iter().all(|t| t.instance_type != "gpu"),
            "{out:?}"
        );
    }

    #[test]
    fn nothing_to_spread_leaves_the_plan_as_it_is() {
        let cat = [ty("a", 0.03, 100.0)];
        let plan = Plan {
            targets: vec![target("a", Market::Spot, 6)],
            lambda_share: 0.2,
        };
        assert_eq!(
            spread(plan.clone(), &cat, 0.5, 600.0),
            plan,
            "no other spot type"
        );
        let cat = [ty("a", 0.03, 100.0), ty("b", 0.05, 100.0)];
        let one = Plan {
            targets: vec![target("a", Market::Spot, 1)],
            lambda_share: 0.0,
        };
        assert_eq!(spread(one.clone(), &cat, 0.5, 100.0), one, "one instance");
        assert_eq!(spread(plan.clone(), &cat, 1.0, 600.0), plan, "no bound");
    }
}
