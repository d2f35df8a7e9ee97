//! SLO attainment over a sliding time window: requests answered within their SLO / all answered.
//! Pure: the caller passes the time.

use std::collections::VecDeque;

/// Sliding-window attainment in one-second buckets.
#[derive(Debug, Clone)]
pub struct SloMonitor {
    window_s: u64,
    /// (second, met, total)
    buckets: VecDeque<(u64, u64, u64)>,
}

impl SloMonitor {
    /// A monitor over the last `window_s` seconds.
    pub fn new(window_s: u64) -> Self {
        SloMonitor {
            window_s: window_s.max(1),
            buckets: VecDeque::new(),
        }
    }

    /// Records `n` answers at time `now_s` (seconds), `met` of them within the SLO.
    pub fn record(&mut self, now_s: f64, met: u64, n: u64) {
        let sec = now_s.max(0.0) as u64;
        match self.buckets.back_mut() {
            Some(b) if b.0 == sec => {
                b.1 += met;
                b.2 += n;
            }
            _ => self.buckets.push_back((sec, met, n)),
        }
        self.expire(sec);
    }

    fn expire(&mut self, sec: u64) {
        while self
            .buckets
            .front()
            .is_some_and(|b| b.0 + self.window_s <= sec)
        {
            self.buckets.pop_front();
        }
    }

    /// Attainment over the window at `now_s`; `None` when nothing was answered.
    pub fn attainment(&mut self, now_s: f64) -> Option<f64> {
        self.expire(now_s.max(0.0) as u64);
        let (met, total) = self
            .buckets
            .iter()
            .fold((0, 0), |(m, t), b| (m + b.1, t + b.2));
        (total > 0).then(|| met as f64 / total as f64)
    }

    /// True when attainment is known and below `target`.
    pub fn below(&mut self, now_s: f64, target: f64) -> bool {
        self.attainment(now_s).is_some_and(|a| a < target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_slides() {
        let mut m = SloMonitor::new(10);
        assert_eq!(m.attainment(0.0), None);
        m.record(0.5, 99, 100);
        m.record(5.0, 50, 100);
        assert_eq!(m.attainment(5.0), Some(0.745));
        assert!(m.below(5.0, 0.99));
        // the first bucket leaves the window at t = 10
        assert_eq!(m.attainment(10.2), Some(0.5));
        assert_eq!(m.attainment(30.0), None);
    }
}
