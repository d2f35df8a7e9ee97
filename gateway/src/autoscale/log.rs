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
) {
    let next = forecast.first().copied().unwrap_or(0.0);
    let launch: Vec<String> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Launch {
                instance_type,
                market,
                count,
            } => Some(format!("{count}x {instance_type} {market}")),
            _ => None,
        })
        .collect();
    let terminate = actions
        .iter()
        .filter(|a| matches!(a, Action::Terminate { .. }))
        .count();
    let why = if !launch.is_empty() {
        "the plan needs more than the fleet has (forecast above capacity, or a cheaper mix)"
    } else if terminate > 0 {
        "the fleet holds more than the plan needs"
    } else {
        "the fleet matches the plan"
    };
    tracing::info!(
        last_peak = history.last().copied().unwrap_or(0.0),
        next,
        capacity = load.capacity_rps,
        targets = ?plan.targets.iter().map(|t| (t.instance_type.as_str(), t.count)).collect::<Vec<_>>(),
        lambda_share = plan.lambda_share,
        ?launch,
        terminate,
        why,
        "control step"
    );
}
