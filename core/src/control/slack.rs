//! Spending the SLO (issue 32): a feedback on the planning headroom. The predictor forecasts the
//! peak with a safety margin and the provisioner covers it in full, so on most days the fleet
//! keeps the SLO with far more room than the attainment target asks for. [`Slack`] watches each
//! control interval's outcomes — the share of requests that missed the SLO, and the share that
//! took more than half of it (under 1% means the interval's p99 was below SLO/2) — and scales the
//! forecast the provisioner plans for by a headroom factor within [`SlackBounds`]: down a step
//! after a run of calm intervals (misses far below the budget, p99 far below the SLO), up at once
//! after an interval that spent half the miss budget, and then no step down for a while
//! (hysteresis: a lowered plan that causes misses is not tried again the next interval).
//!
//! Pure logic: the live loop and the simulator feed the same counts.

/// The headroom's bounds and steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlackBounds {
    /// Lowest headroom factor (the plan covers this share of the forecast at least).
    pub min: f64,
    /// Highest headroom factor.
    pub max: f64,
    /// Step down after a calm run.
    pub down: f64,
    /// Step up after a costly interval.
    pub up: f64,
    /// Calm intervals in a row before a step down.
    pub calm_needed: u32,
    /// Intervals without a step down after a step up.
    pub hold_after_up: u32,
    /// A calm interval missed at most this share of the miss budget (`1 - target`) ...
    pub calm_misses: f64,
    /// ... and an interval that missed more than this share of it steps up.
    pub costly_misses: f64,
    /// A calm interval sent at most this share of its requests to Lambda ...
    pub calm_lambda: f64,
    /// ... and one that sent more than this share steps up: overflow to Lambda costs about 10
    /// times what an instance charges per request, so a lowered plan that spills is no saving.
    pub costly_lambda: f64,
}

/// The default bounds: the plan may go down to 80% of the forecast peak in steps of 5% every
/// two calm intervals (it settles from 1.0 within 8 intervals), and goes back up by 10% at once
/// when an interval misses half the budget, holding for 10 intervals.
pub const SLACK: SlackBounds = SlackBounds {
    min: 0.8,
    max: 1.0,
    down: 0.05,
    up: 0.1,
    calm_needed: 2,
    hold_after_up: 10,
    calm_misses: 0.1,
    costly_misses: 0.5,
    calm_lambda: 0.005,
    costly_lambda: 0.02,
};

/// One interval's outcomes, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IntervalOutcomes {
    /// Requests with an outcome.
    pub done: u64,
    /// Of those, answered after the SLO, refused or expired.
    pub missed: u64,
    /// Of those, answered after half the SLO (misses included).
    pub slow: u64,
    /// Requests Lambda answered (spill-over).
    pub lambda: u64,
}

/// Which way the last interval moved the headroom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Move {
    /// Unchanged.
    Held,
    /// Lowered after a calm run.
    Down,
    /// Raised after misses.
    Up,
}

/// The feedback's state.
#[derive(Debug, Clone, PartialEq)]
pub struct Slack {
    /// Bounds and steps.
    pub bounds: SlackBounds,
    /// The factor the forecast is planned at now.
    pub headroom: f64,
    /// Steps down and up so far.
    pub downs: u64,
    /// Steps up so far.
    pub ups: u64,
    calm: u32,
    hold: u32,
    current: IntervalOutcomes,
}

impl Slack {
    /// Starts at the upper bound (the full forecast).
    pub fn new(bounds: SlackBounds) -> Self {
        Slack {
            headroom: 1.0f64.clamp(bounds.min, bounds.max),
            bounds,
            downs: 0,
            ups: 0,
            calm: 0,
            hold: 0,
            current: IntervalOutcomes::default(),
        }
    }

    /// Counts outcomes into the interval running now.
    pub fn record(&mut self, o: IntervalOutcomes) {
        self.current.done += o.done;
        self.current.missed += o.missed;
        self.current.slow += o.slow;
        self.current.lambda += o.lambda;
    }

    /// Drops what the running interval counted so far (a follower replica's counts).
    pub fn forget_interval(&mut self) {
        self.current = IntervalOutcomes::default();
    }

    /// Ends the interval with attainment target `target`: the headroom for the next plan.
    pub fn end_interval(&mut self, target: f64) -> Move {
        let o = std::mem::take(&mut self.current);
        let b = self.bounds;
        self.hold = self.hold.saturating_sub(1);
        if o.done == 0 {
            return Move::Held;
        }
        let budget = (1.0 - target).clamp(1e-4, 0.5);
        let (done, missed, slow) = (o.done as f64, o.missed as f64, o.slow as f64);
        let lambda = o.lambda as f64;
        if missed > b.costly_misses * budget * done || lambda > b.costly_lambda * done {
            self.calm = 0;
            self.hold = b.hold_after_up;
            if self.headroom < b.max {
                self.headroom = (self.headroom + b.up).min(b.max);
                self.ups += 1;
                return Move::Up;
            }
            return Move::Held;
        }
        // calm: few misses and p99 below half the SLO (fewer than 1% slower than SLO/2)
        if missed <= b.calm_misses * budget * done
            && slow <= 0.01 * done
            && lambda <= b.calm_lambda * done
        {
            self.calm += 1;
        } else {
            self.calm = 0;
        }
        if self.calm >= b.calm_needed && self.hold == 0 && self.headroom > b.min {
            self.calm = 0;
            self.headroom = (self.headroom - b.down).max(b.min);
            self.downs += 1;
            return Move::Down;
        }
        Move::Held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interval(done: u64, missed: u64, slow: u64) -> IntervalOutcomes {
        IntervalOutcomes {
            done,
            missed,
            slow,
            lambda: 0,
        }
    }

    #[test]
    fn calm_intervals_lower_the_headroom_to_its_bound_within_ten() {
        let mut s = Slack::new(SLACK);
        let mut moves = Vec::new();
        for _ in 0..10 {
            s.record(interval(10_000, 0, 10));
            moves.push(s.end_interval(0.99));
        }
        assert!((s.headroom - SLACK.min).abs() < 1e-9, "{}", s.headroom);
        assert_eq!(s.downs, 4);
        assert_eq!(moves.iter().filter(|m| **m == Move::Down).count(), 4);
    }

    #[test]
    fn misses_raise_it_at_once_and_hold_it_there() {
        let mut s = Slack::new(SLACK);
        for _ in 0..8 {
            s.record(interval(10_000, 0, 0));
            s.end_interval(0.99);
        }
        assert!((s.headroom - 0.8).abs() < 1e-9);
        // 0.6% missed: over half the 1% budget
        s.record(interval(10_000, 60, 200));
        assert_eq!(s.end_interval(0.99), Move::Up);
        assert!((s.headroom - 0.9).abs() < 1e-9);
        // calm again: no step down for the hold
        for _ in 0..(SLACK.hold_after_up - 1) {
            s.record(interval(10_000, 0, 0));
            assert_eq!(s.end_interval(0.99), Move::Held);
        }
        s.record(interval(10_000, 0, 0));
        assert_eq!(s.end_interval(0.99), Move::Down);
    }

    #[test]
    fn in_the_band_it_holds_and_never_oscillates() {
        // misses between the calm and the costly share, or a p99 above SLO/2: no move, neither
        // up from the lower bound nor down from the upper one
        let mut s = Slack::new(SLACK);
        for _ in 0..8 {
            s.record(interval(10_000, 0, 0));
            s.end_interval(0.99);
        }
        assert!((s.headroom - SLACK.min).abs() < 1e-9);
        let mut moves = Vec::new();
        for k in 0..50 {
            let o = if k % 2 == 0 {
                interval(10_000, 20, 50)
            } else {
                interval(10_000, 0, 300)
            };
            s.record(o);
            moves.push(s.end_interval(0.99));
        }
        assert!(moves.iter().all(|m| *m == Move::Held), "{moves:?}");
        assert!((s.headroom - SLACK.min).abs() < 1e-9, "{}", s.headroom);
    }

    #[test]
    fn idle_intervals_change_nothing() {
        let mut s = Slack::new(SLACK);
        for _ in 0..20 {
            assert_eq!(s.end_interval(0.99), Move::Held);
        }
        assert_eq!(s.headroom, 1.0);
    }
}
