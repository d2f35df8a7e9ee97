//! Spot diversification (`--spot-max-share`): real reclaims are correlated — one type in one
//! zone goes within minutes — so a plan that puts all its spot capacity on the cheapest type
//! loses all of it to one wave. With a share bound, no spot type holds more than that share of
//! the plan's spot capacity: the excess moves, one instance at a time, to the spot type with the
//! next lowest price per req/s that stays within the bound (enough of it to carry the capacity
//! moved). The plan's spot capacity never shrinks; it costs what the next types cost more.

use mark_policies::types::{FleetTarget, InstanceType, Market, Plan};

/// Most moves made on one plan (a bound on the loop; a plan is tens of instances).
const MAX_MOVES: usize = 256;

fn cap(catalog: &[InstanceType], name: &str) -> f64 {
    catalog
        .iter()
        .find(|t| t.name == name)
        .map_or(0.0, |t| t.capacity_rps)
}

/// `plan` with no spot type above `max_share` of the spot capacity, where other spot types can
/// take the excess; unchanged with fewer than two spot instances or no other spot type.
pub fn spread(mut plan: Plan, catalog: &[InstanceType], max_share: f64) -> Plan {
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
    for _ in 0..MAX_MOVES {
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
        // the cheapest other spot type (per req/s) that stays within the bound with the move
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
                (a.0.price_spot / a.0.capacity_rps).total_cmp(&(b.0.price_spot / b.0.capacity_rps))
            });
        let Some((to, n)) = to else {
            break;
        };
        if let Some(t) = plan
            .targets
            .iter_mut()
            .find(|t| t.market == Market::Spot && t.instance_type == over.0)
        {
            t.count -= 1;
        }
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
        let out = spread(plan, &cat, 0.5);
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
        let out = spread(plan, &cat, 0.4);
        assert!(out.targets.len() == 3, "{out:?}");
    }

    #[test]
    fn nothing_to_spread_leaves_the_plan_as_it_is() {
        let cat = [ty("a", 0.03, 100.0)];
        let plan = Plan {
            targets: vec![target("a", Market::Spot, 6)],
            lambda_share: 0.2,
        };
        assert_eq!(spread(plan.clone(), &cat, 0.5), plan, "no other spot type");
        let cat = [ty("a", 0.03, 100.0), ty("b", 0.05, 100.0)];
        let one = Plan {
            targets: vec![target("a", Market::Spot, 1)],
            lambda_share: 0.0,
        };
        assert_eq!(spread(one.clone(), &cat, 0.5), one, "one instance");
        assert_eq!(spread(plan.clone(), &cat, 1.0), plan, "no bound");
    }
}
