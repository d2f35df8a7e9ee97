//! The monitors a control loop keeps, built the same way live and in the simulator: peak arrival
//! rates per interval (the predictor's input), sliding-window SLO attainment, and the guard that
//! turns an SLO breach into at most one out-of-cycle launch per interval.

use mark_policies::types::InstanceType;

use super::controller::{emergency_launch, Action};
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

/// At most one out-of-cycle launch per interval while attainment is below target.
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
    /// interval, and the fleet (`size` instances) is below `max_instances`.
    pub fn check(
        &mut self,
        now: f64,
        slo: &mut SloMonitor,
        size: u32,
        max_instances: u32,
        catalog: &[InstanceType],
    ) -> Option<Action> {
        if now - self.last < self.interval_s
            || size >= max_instances
            || !slo.below(now, self.target)
        {
            return None;
        }
        let a = emergency_launch(catalog)?;
        self.last = now;
        self.fired += 1;
        Some(a)
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

    #[test]
    fn one_emergency_per_interval_below_target_and_below_the_bound() {
        let mut m = Monitors::new(5.0, 60.0);
        let mut g = EmergencyGuard::new(60.0, 0.99);
        let c = catalog();
        assert!(g.check(1.0, &mut m.slo, 1, 10, &c).is_none(), "no data yet");
        m.slo.record(2.0, 50, 100);
        assert!(
            g.check(3.0, &mut m.slo, 10, 10, &c).is_none(),
            "at the bound"
        );
        assert!(g.check(3.0, &mut m.slo, 1, 10, &c).is_some());
        assert!(
            g.check(30.0, &mut m.slo, 1, 10, &c).is_none(),
            "same interval"
        );
        m.slo.record(64.0, 50, 100);
        assert!(g.check(64.0, &mut m.slo, 1, 10, &c).is_some());
        assert_eq!(g.fired, 2);
        m.slo.record(200.0, 100, 100);
        assert!(g.check(200.0, &mut m.slo, 1, 10, &c).is_none(), "recovered");
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
