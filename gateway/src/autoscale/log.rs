//! The control loop's log line per step.

use mark_policies::types::Plan;

use crate::control::controller::Action;
use crate::control::monitors::FleetLoad;

/// One line per control step: what arrived, the forecast, the fleet's capacity, the plan, the
/// actions decided and why (the fleet changes are applied, or skipped with their own line, next).
pub(super) fn log_plan(
    plan: &Plan,
    forecast: &[f64],
    history: &[f64],
    actions: &[Action],
    load: &FleetLoad,
) -> String {
    let next = forecast.first().copied().unwrap_or(0.0);
    let launch: Vec<String> = Action::launches(actions)
        .into_iter()
        .map(|(t, m, n)| format!("{n}x {t} {m}"))
        .collect();
    let terminate = Action::terminations(actions);
    let why = why(next, load.capacity_rps, &launch, terminate, plan);
    tracing::info!(
        last_peak = history.last().copied().unwrap_or(0.0),
        next,
        capacity = load.capacity_rps,
        targets = ?plan.targets.iter().map(|t| (t.instance_type.as_str(), t.count)).collect::<Vec<_>>(),
        lambda_share = plan.lambda_share,
        ?launch,
        terminate,
        why = %why,
        "control step"
    );
    why
}

/// Why a control step changes the fleet (or not), in the figures that decided it: the forecast
/// against the fleet's capacity at the SLO, a change of mix (types or markets) at the same
/// capacity, and what the plan leaves to Lambda while launches boot.
pub(super) fn why(
    next: f64,
    capacity: f64,
    launch: &[String],
    terminate: usize,
    plan: &Plan,
) -> String {
    let spot: u32 = plan
        .targets
        .iter()
        .filter(|t| t.market == mark_policies::types::Market::Spot)
        .map(|t| t.count)
        .sum();
    let total: u32 = plan.targets.iter().map(|t| t.count).sum();
    let mut why = match (launch.is_empty(), terminate) {
        (true, 0) => format!(
            "the fleet matches the plan (forecast {next:.0} req/s, capacity {capacity:.0} req/s)"
        ),
        (false, 0) if next > capacity => format!(
            "forecast {next:.0} req/s above the fleet's {capacity:.0} req/s at the SLO: launch {}",
            launch.join(", ")
        ),
        (false, 0) => format!(
            "the plan's mix has types or markets the fleet lacks at a forecast of {next:.0} req/s (capacity {capacity:.0}): launch {}",
            launch.join(", ")
        ),
        (true, n) => format!(
            "the fleet's {capacity:.0} req/s exceed the forecast {next:.0} req/s: terminate {n}"
        ),
        (false, n) => format!(
            "a cheaper or better-fitting mix for {next:.0} req/s: launch {}, terminate {n} once the new ones serve",
            launch.join(", ")
        ),
    };
    if total > 0 {
        why.push_str(&format!("; plan {total} instances, {spot} on spot"));
    }
    if plan.lambda_share > 0.0 {
        why.push_str(&format!(
            "; Lambda takes {:.0}% meanwhile",
            plan.lambda_share * 100.0
        ));
    }
    why
}

#[cfg(test)]
mod tests {
    use mark_policies::types::{FleetTarget, Market, Plan};

    fn plan(spot: u32, od: u32, lambda: f64) -> Plan {
        Plan {
            targets: vec![
                FleetTarget {
                    instance_type: "c5.large".into(),
                    market: Market::Spot,
                    count: spot,
                },
                FleetTarget {
                    instance_type: "c5.large".into(),
                    market: Market::OnDemand,
                    count: od,
                },
            ],
            lambda_share: lambda,
        }
    }

    #[test]
    fn the_why_names_the_figures_that_decided() {
        let up = super::why(
            180.0,
            120.0,
            &["1x c5.large spot".into()],
            0,
            &plan(2, 1, 0.25),
        );
        assert_eq!(
            up,
            "forecast 180 req/s above the fleet's 120 req/s at the SLO: launch 1x c5.large spot; plan 3 instances, 2 on spot; Lambda takes 25% meanwhile"
        );
        let down = super::why(40.0, 180.0, &[], 2, &plan(0, 1, 0.0));
        assert!(
            down.starts_with("the fleet's 180 req/s exceed the forecast 40 req/s: terminate 2"),
            "{down}"
        );
        let mix = super::why(
            100.0,
            120.0,
            &["2x c5.large spot".into()],
            1,
            &plan(2, 0, 0.0),
        );
        assert!(mix.starts_with("a cheaper or better-fitting mix"), "{mix}");
    }
}
