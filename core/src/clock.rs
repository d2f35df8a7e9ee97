//! The process's one wall clock, and the one place where wall time meets the control loop's clock.
//!
//! The cloud stamps instances with wall time (seconds since the Unix epoch, a tag that survives a
//! gateway restart); the controller step reasons in loop time (seconds since the loop started, the
//! simulator's virtual clock). [`LoopClock`] converts between them so no caller does it inline.

use std::time::{Instant, SystemTime};

/// Seconds since the Unix epoch, with sub-second precision (plus `MARK_TEST_WALL_SKEW_S`, a
/// test hook that sets this process's wall clock off by that many seconds, as a machine whose
/// clock drifted: the replicas' tests run with clocks ±5 s apart).
pub fn wall_s() -> f64 {
    static SKEW: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    let skew = *SKEW.get_or_init(|| {
        std::env::var("MARK_TEST_WALL_SKEW_S")
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite() && v.abs() <= 86_400.0)
            .unwrap_or(0.0)
    });
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
        + skew
}

/// Whole seconds since the Unix epoch (for stamps shown to operators).
pub fn wall_secs() -> u64 {
    wall_s() as u64
}

/// The control loop's clock: seconds since it started, on a monotonic clock.
#[derive(Debug, Clone, Copy)]
pub struct LoopClock {
    started: Instant,
}

impl LoopClock {
    /// A clock whose zero is now.
    pub fn start() -> Self {
        Self {
            started: Instant::now(),
        }
    }

    /// Loop time now.
    pub fn now(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// The loop time of a wall-clock stamp (negative for stamps before the loop started, as for
    /// instances adopted from an earlier gateway).
    pub fn of_wall(&self, wall: f64) -> f64 {
        to_loop_time(wall, wall_s(), self.now())
    }
}

/// The loop time of wall stamp `wall`, given that wall time `wall_now` is loop time `loop_now`.
pub fn to_loop_time(wall: f64, wall_now: f64, loop_now: f64) -> f64 {
    wall - (wall_now - loop_now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_stamps_map_onto_loop_time() {
        // an instance launched 30 s before the loop's 100th second is 70 in loop time
        assert_eq!(to_loop_time(1_000_070.0, 1_000_100.0, 100.0), 70.0);
        // one adopted from before the loop started has a negative launch time
        assert_eq!(to_loop_time(999_990.0, 1_000_100.0, 100.0), -10.0);
        let c = LoopClock::start();
        assert!((c.of_wall(wall_s()) - c.now()).abs() < 0.5);
    }
}
