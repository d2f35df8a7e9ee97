//! Arrival-rate history as MArk keeps it: the **peak** rate of each control interval, measured over
//! short windows (5 s by default) inside it. Pure: the caller passes the time.

/// Records arrivals and closes intervals.
#[derive(Debug, Clone)]
pub struct PeakRates {
    window_s: f64,
    interval_s: f64,
    window_start: f64,
    window_count: u64,
    interval_start: f64,
    interval_peak: f64,
    last_window: f64,
    /// Closed intervals' peak rates (req/s), oldest first.
    pub history: Vec<f64>,
    max_history: usize,
}

impl PeakRates {
    /// Peaks of `window_s` windows per `interval_s` interval, starting at `now_s`.
    pub fn new(now_s: f64, window_s: f64, interval_s: f64, max_history: usize) -> Self {
        PeakRates {
            window_s,
            interval_s,
            window_start: now_s,
            window_count: 0,
            interval_start: now_s,
            interval_peak: 0.0,
            last_window: 0.0,
            history: Vec::new(),
            max_history,
        }
    }

    /// Advances time to `now_s`, closing windows and intervals that ended.
    pub fn advance(&mut self, now_s: f64) {
        while now_s >= self.window_start + self.window_s {
            let rate = self.window_count as f64 / self.window_s;
            self.interval_peak = self.interval_peak.max(rate);
            self.last_window = rate;
            self.window_count = 0;
            self.window_start += self.window_s;
            if self.window_start >= self.interval_start + self.interval_s - 1e-9 {
                self.history.push(self.interval_peak);
                if self.history.len() > self.max_history {
                    self.history.remove(0);
                }
                self.interval_peak = 0.0;
                self.interval_start = self.window_start;
            }
        }
    }

    /// Counts `n` arrivals at `now_s`.
    pub fn arrive(&mut self, now_s: f64, n: u64) {
        self.advance(now_s);
        self.window_count += n;
    }

    /// Peak so far in the open interval (closed windows only).
    pub fn current_peak(&self) -> f64 {
        self.interval_peak
    }

    /// The demand now: the open interval's peak, or the last closed window's rate when no window
    /// of this interval has closed yet.
    pub fn recent_peak(&self) -> f64 {
        self.interval_peak.max(self.last_window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_peak_window_per_interval() {
        let mut r = PeakRates::new(0.0, 5.0, 20.0, 100);
        // windows of 5 s: 50, 200, 100, 0 arrivals -> rates 10, 40, 20, 0
        for (t, n) in [(1.0, 50), (6.0, 200), (11.0, 100)] {
            r.arrive(t, n);
        }
        r.advance(20.0);
        assert_eq!(r.history, vec![40.0]);
        r.arrive(21.0, 5);
        r.advance(40.0);
        assert_eq!(r.history, vec![40.0, 1.0]);
        assert_eq!(r.current_peak(), 0.0);
        assert_eq!(r.recent_peak(), 0.0, "the last window was empty");
        r.arrive(41.0, 100);
        r.advance(45.0);
        assert_eq!(r.recent_peak(), 20.0);
    }
}
