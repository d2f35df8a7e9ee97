//! The monitors a control loop keeps, built the same way live and in the simulator: peak arrival
//! rates per interval (the predictor's input), sliding-window SLO attainment, and the guard that
//! turns an SLO breach that missing capacity explains into at most one out-of-cycle launch per
//! interval.

use mark_policies::types::InstanceType;

use super::controller::{capacity_of, emergency_launch, Action, FleetInstance};
use super::rates::PeakRates;
use super::slo::SloMonitor;

/// Intervals of peak-rate history kept (a day of one-minute intervals).
pub const HISTORY_INTERVALS: usize = 1440;

/// Demand and SLO monitors of one control loop.
#[derive(Debug, Clone)]
pub struct Monitors {
    /// Peak arrival rate per interval.
    pub rates: PeakRates,
    /// SLO attainment over the last two intervals (at least 10 s).
    pub slo: SloMonitor,
}

impl Monitors {
    /// Monitors starting at time 0, with `window_s` rate windows in `interval_s` intervals.
    pub fn new(window_s: f64, interval_s: f64) -> Self {
        Monitors {
            rates: PeakRates::new(0.0, window_s, interval_s, HISTORY_INTERVALS),
            slo: SloMonitor::new((interval_s * 2.0).max(10.0) as u64),
        }
    }

    /// The predictor's input: closed intervals' peaks, or the current window's peak before the
    /// first interval closed.
    pub fn history(&self) -> Vec<f64> {
        if self.rates.history.is_empty() {
            vec![self.rates.current_peak()]
        } else {
            self.rates.history.clone()
        }
    }
}

/// The fleet as the emergency guard weighs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FleetLoad {
    /// Instances (serving and launching).
    pub size: u32,
    /// Requests/s they sustain at the SLO, launching ones included (burstables at their
    /// no-credit baseline: spent credits are not capacity).
    pub capacity_rps: f64,
    /// Requests/s arriving now (the open interval's peak window).
    pub demand_rps: f64,
}

impl FleetLoad {
    /// `size` instances of which `counted` (healthy ones, serving or launching) sustain their
    /// type's catalog capacity, against `demand_rps`.
    pub fn of(
        size: u32,
        counted: &[FleetInstance],
        catalog: &[InstanceType],
        demand_rps: f64,
    ) -> Self {
        FleetLoad {
            size,
            capacity_rps: counted
                .iter()
                .map(|i| capacity_of(catalog, &i.instance_type))
                .sum(),
            demand_rps,
        }
    }
}

/// At most one out-of-cycle launch per interval while attainment is below target and the
/// fleet's capacity is below the demand.
#[derive(Debug, Clone)]
pub struct EmergencyGuard {
    interval_s: f64,
    target: f64,
    last: f64,
    /// Launches it asked for so far.
    pub fired: u64,
}

impl EmergencyGuard {
    /// A guard for `interval_s` intervals and an attainment `target`.
    pub fn new(interval_s: f64, target: f64) -> Self {
        EmergencyGuard {
            interval_s,
            target,
            last: f64::NEG_INFINITY,
            fired: 0,
        }
    }

    /// The launch to make now, if attainment is below target, none was made in the last
    /// interval, the fleet is below `max_instances`, and its capacity is below the demand: a
    /// breach capacity does not explain (a spike Lambda takes, a slow batch) is not answered
    /// with an instance.
    pub fn check(
        &mut self,
        now: f64,
        slo: &mut SloMonitor,
        fleet: FleetLoad,
        max_instances: u32,
        catalog: &[InstanceType],
    ) -> Option<Action> {
        if now - self.last < self.interval_s
            || fleet.size >= max_instances
            || !slo.below(now, self.target)
        {
            return None;
        }
        let a = emergency_launch(
            catalog,
            fleet.demand_rps - fleet.capacity_rps,
            max_instances - fleet.size,
        )?;
        self.last = now;
        self.fired += 1;
        Some(a)
    }

    /// Takes back the last launch it asked for (nothing was left to launch it in).
    pub fn withdraw(&mut self) {
        self.fired = self.fired.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Vec<InstanceType> {
        vec![InstanceType {
            name: "t3.medium".into(),
            vcpus: 2,
            gpus: 0,
            memory_gib: 4.0,
            price_on_demand: 0.04,
            price_spot: 0.0,
            launch_seconds: 40.0,
            capacity_rps: 10.0,
            burstable: true,
        }]
    }

    fn load(size: u32, capacity_rps: f64, demand_rps: f64) -> FleetLoad {
        FleetLoad {
            size,
            capacity_rps,
            demand_rps,
        }
    }

    #[test]
    fn one_emergency_per_interval_below_target_and_below_the_bound() {
        let mut m = Monitors::new(5.0, 60.0);
        let mut g = EmergencyGuard::new(60.0, 0.99);
        let c = catalog();
        let short = load(1, 10.0, 15.0);
        assert!(
            g.check(1.0, &mut m.slo, short, 10, &c).is_none(),
            "no data yet"
        );
        m.slo.record(2.0, 50, 100);
        assert!(
            g.check(3.0, &mut m.slo, load(10, 10.0, 15.0), 10, &c)
                .is_none(),
            "at the bound"
        );
        assert!(g.check(3.0, &mut m.slo, short, 10, &c).is_some());
        assert!(
            g.check(30.0, &mut m.slo, short, 10, &c).is_none(),
            "same interval"
        );
        m.slo.record(64.0, 50, 100);
        assert!(g.check(64.0, &mut m.slo, short, 10, &c).is_some());
        assert_eq!(g.fired, 2);
        m.slo.record(200.0, 100, 100);
        assert!(
            g.check(200.0, &mut m.slo, short, 10, &c).is_none(),
            "recovered"
        );
    }

    #[test]
    fn a_breach_capacity_does_not_explain_launches_nothing() {
        let mut m = Monitors::new(5.0, 60.0);
        let mut g = EmergencyGuard::new(60.0, 0.99);
        m.slo.record(2.0, 50, 100);
        // the fleet (launching instances included) sustains more than arrives: no launch
        assert!(g
            .check(3.0, &mut m.slo, load(3, 120.0, 100.0), 10, &catalog())
            .is_none());
        assert_eq!(g.fired, 0);
        // short of capacity: one launch
        assert!(g
            .check(3.0, &mut m.slo, load(3, 80.0, 100.0), 10, &catalog())
            .is_some());
    }

    #[test]
    fn history_starts_with_the_current_peak() {
        let mut m = Monitors::new(5.0, 60.0);
        m.rates.arrive(1.0, 50);
        m.rates.advance(5.0);
        assert_eq!(m.history().len(), 1);
        m.rates.advance(61.0);
        assert_eq!(m.history(), m.rates.history);
    }
}
