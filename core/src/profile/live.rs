//! Live latency: what batches really take now, beside what the start-up profile measured.
//!
//! The profile is measured once, on an idle machine. Under load the cores are shared with
//! decoding, with draining refused bodies, with the clients themselves; a burstable instance out
//! of credits or a noisy neighbour runs slower for hours. Admission and the batcher then plan with
//! the **worse** of the two (issue 25: at 5x overload answered requests missed the SLO at p99 because
//! admission trusted the idle profile).
//!
//! Kept as a slowdown factor per profile point: an EWMA of `observed / profiled` for the runs near
//! that batch size (a batch between two points is compared with the interpolated profile). A point
//! with no run yet takes the factor of the nearest point that has one. Factors below 1 (a faster
//! moment) are kept but never used: the effective profile is the worse of live and profiled.
//! Pure: the caller passes the observed run time; no clock here.

use std::sync::atomic::{
    AtomicU64,
    Ordering::{Acquire, Relaxed, Release},
};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use serde::Serialize;

use super::{LatencyProfile, MeasuredPoint};

/// Weight of one run in the EWMA: ~10 runs carry most of the estimate (a second of batches under
/// load), so a change of speed shows within a control window while one slow run moves it little.
pub const ALPHA: f64 = 0.2;
/// One run's ratio is clamped to this range before it enters the EWMA: a pause of the process
/// (a page fault storm, a debugger) must not make one run count as a 30x slowdown.
const RATIO_RANGE: (f64, f64) = (0.25, 8.0);
/// The effective profile is republished when some point's factor moved by more than this.
const REPUBLISH: f64 = 0.02;

/// A single slowdown factor: an EWMA of `observed / expected` (for a fleet worker or Lambda,
/// whose expected latency is its own curve or the profile at its speed).
#[derive(Debug, Default)]
pub struct Slowdown {
    bits: AtomicU64,
    runs: AtomicU64,
}

impl Slowdown {
    /// Records one call that took `observed_us` where `expected_us` was expected.
    pub fn observe(&self, expected_us: f64, observed_us: f64) {
        let Some(ratio) = ratio(expected_us, observed_us) else {
            return;
        };
        let first = self.runs.fetch_add(1, Relaxed) == 0;
        let _ = self.bits.fetch_update(Relaxed, Relaxed, |b| {
            let old = f64::from_bits(b);
            Some(
                if first {
                    ratio
                } else {
                    old + ALPHA * (ratio - old)
                }
                .to_bits(),
            )
        });
    }

    /// The EWMA (1.0 before any call).
    pub fn factor(&self) -> f64 {
        if self.runs.load(Relaxed) == 0 {
            1.0
        } else {
            f64::from_bits(self.bits.load(Relaxed))
        }
    }

    /// Calls observed.
    pub fn runs(&self) -> u64 {
        self.runs.load(Relaxed)
    }
}

/// Slowdown factors of a model's remote backends by name (`worker <id>`, `lambda`).
#[derive(Debug, Default)]
pub struct Slowdowns(Mutex<std::collections::BTreeMap<String, Slowdown>>);

impl Slowdowns {
    /// Records one call of backend `name`.
    pub fn observe(&self, name: &str, expected_us: f64, observed_us: f64) {
        let mut m = self.0.lock().expect("slowdowns lock");
        match m.get(name) {
            Some(s) => s.observe(expected_us, observed_us),
            None => {
                let s = Slowdown::default();
                s.observe(expected_us, observed_us);
                m.insert(name.to_string(), s);
            }
        }
    }

    /// Keeps only the backends `keep` says (the workers still in the fleet, Lambda).
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.0
            .lock()
            .expect("slowdowns lock")
            .retain(|k, _| keep(k));
    }

    /// (name, factor, calls) of every backend seen.
    pub fn snapshot(&self) -> Vec<(String, f64, u64)> {
        self.0
            .lock()
            .expect("slowdowns lock")
            .iter()
            .map(|(k, s)| (k.clone(), s.factor(), s.runs()))
            .collect()
    }
}

fn ratio(expected_us: f64, observed_us: f64) -> Option<f64> {
    (expected_us > 0.0 && observed_us.is_finite() && observed_us >= 0.0)
        .then(|| (observed_us / expected_us).clamp(RATIO_RANGE.0, RATIO_RANGE.1))
}

/// One point as the status shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LivePoint {
    /// Batch size of the profile point.
    pub batch: u32,
    /// Its profiled median, microseconds.
    pub profile_p50_us: f64,
    /// The live estimate of its median (profiled median times the factor), microseconds.
    pub live_p50_us: f64,
    /// The EWMA of observed over profiled (1.0 when no run was seen near it).
    pub slowdown: f64,
    /// Runs observed near it.
    pub runs: u64,
}

#[derive(Debug, Default)]
struct Points {
    /// Per profile point: EWMA factor and runs seen.
    factor: Vec<(f64, u64)>,
    /// The factors the effective profile was built with.
    published: Vec<f64>,
}

/// The live latency of a model's own executors, per profile point.
#[derive(Debug, Default)]
pub struct LiveLatency {
    base: ArcSwap<LatencyProfile>,
    points: Mutex<Points>,
    effective: ArcSwap<LatencyProfile>,
    generation: AtomicU64,
}

impl LiveLatency {
    /// Starts over from `base` (the start-up profile): no run observed, effective = base.
    pub fn set_base(&self, base: LatencyProfile) {
        let n = base.points.len();
        // under the lock: an `observe` in flight publishes from the old base before, not after
        let mut pts = self.points.lock().expect("live lock");
        *pts = Points {
            factor: vec![(1.0, 0); n],
            published: vec![1.0; n],
        };
        self.effective.store(Arc::new(base.clone()));
        self.base.store(Arc::new(base));
        self.generation.fetch_add(1, Release);
    }

    /// Records one run of `batch` items that took `observed_us`.
    pub fn observe(&self, batch: u32, observed_us: f64) {
        let mut pts = self.points.lock().expect("live lock");
        let base = self.base.load();
        let Some(r) = ratio(base.median_us(batch), observed_us) else {
            return;
        };
        let k = base
            .points
            .iter()
            .position(|p| p.batch >= batch)
            .unwrap_or(base.points.len().saturating_sub(1));
        let Some(slot) = pts.factor.get_mut(k) else {
            return;
        };
        slot.0 = if slot.1 == 0 {
            r
        } else {
            slot.0 + ALPHA * (r - slot.0)
        };
        slot.1 += 1;
        let used = used_factors(&pts.factor);
        let moved = used
            .iter()
            .zip(&pts.published)
            .any(|(a, b)| (a - b).abs() > REPUBLISH * b);
        if moved {
            self.effective.store(Arc::new(scaled(&base, &used)));
            pts.published = used;
            self.generation.fetch_add(1, Release);
        }
    }

    /// The profile to plan with: each point the worse of profiled and live.
    pub fn profile(&self) -> Arc<LatencyProfile> {
        self.effective.load_full()
    }

    /// Changes each time the effective profile does (the batcher rebuilds its points then).
    pub fn generation(&self) -> u64 {
        self.generation.load(Acquire)
    }

    /// Profiled and live medians per point.
    pub fn points(&self) -> Vec<LivePoint> {
        let base = self.base.load();
        let pts = self.points.lock().expect("live lock");
        base.points
            .iter()
            .zip(&pts.factor)
            .map(|(p, &(f, runs))| LivePoint {
                batch: p.batch,
                profile_p50_us: p.p50_us,
                live_p50_us: p.p50_us * if runs > 0 { f } else { 1.0 },
                slowdown: if runs > 0 { f } else { 1.0 },
                runs,
            })
            .collect()
    }
}

/// The factor each point is planned with: its own when it saw runs, else the nearest point's
/// that did (1.0 when none did), never below 1.
fn used_factors(factor: &[(f64, u64)]) -> Vec<f64> {
    (0..factor.len())
        .map(|i| {
            let nearest = (0..factor.len())
                .filter(|&j| factor[j].1 > 0)
                .min_by_key(|&j| j.abs_diff(i));
            nearest.map_or(1.0, |j| factor[j].0).max(1.0)
        })
        .collect()
}

fn scaled(base: &LatencyProfile, used: &[f64]) -> LatencyProfile {
    LatencyProfile {
        measured_on: base.measured_on.clone(),
        points: base
            .points
            .iter()
            .zip(used)
            .map(|(p, &f)| MeasuredPoint {
                batch: p.batch,
                p50_us: p.p50_us * f,
                p99_us: p.p99_us * f,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> LatencyProfile {
        LatencyProfile::new(
            "t",
            [(1, 10_000.0), (4, 30_000.0), (8, 50_000.0)]
                .iter()
                .map(|&(b, us)| MeasuredPoint {
                    batch: b,
                    p50_us: us,
                    p99_us: us * 1.2,
                })
                .collect(),
        )
    }

    #[test]
    fn the_effective_profile_is_the_worse_of_live_and_profiled() {
        let live = LiveLatency::default();
        live.set_base(base());
        assert_eq!(*live.profile(), base());
        let g0 = live.generation();
        // batches of 3 (between points 1 and 4: profiled 23.3 ms) take 35 ms: 1.5x
        for _ in 0..40 {
            live.observe(3, 35_000.0);
        }
        assert!(live.generation() > g0);
        let p = live.profile();
        assert!((p.points[1].p50_us - 45_000.0).abs() < 500.0, "{p:?}");
        assert!((p.points[1].p99_us - 54_000.0).abs() < 600.0, "{p:?}");
        // points without runs take the nearest observed factor
        assert!((p.points[0].p50_us - 15_000.0).abs() < 200.0, "{p:?}");
        assert!((p.points[2].p50_us - 75_000.0).abs() < 800.0, "{p:?}");
        // a faster moment is shown but not planned with
        for _ in 0..60 {
            live.observe(8, 25_000.0);
        }
        let p = live.profile();
        assert_eq!(p.points[2].p50_us, 50_000.0);
        let shown = live.points();
        assert!(shown[2].slowdown < 0.6 && shown[2].runs == 60, "{shown:?}");
        assert_eq!(shown[1].runs, 40);
    }

    #[test]
    fn one_stalled_run_moves_the_estimate_little_and_nothing_without_a_profile() {
        let live = LiveLatency::default();
        live.set_base(base());
        live.observe(1, 10_000.0);
        live.observe(1, 10_000_000.0); // a 1000x stall, clamped to 8x
        let f = live.points()[0].slowdown;
        assert!((f - (1.0 + ALPHA * 7.0)).abs() < 1e-9, "{f}");
        let empty = LiveLatency::default();
        empty.observe(4, 1e6);
        assert!(empty.profile().points.is_empty());
        let s = Slowdown::default();
        assert_eq!(s.factor(), 1.0);
        s.observe(1000.0, 3000.0);
        s.observe(1000.0, 1000.0);
        assert!((s.factor() - (3.0 - ALPHA * 2.0)).abs() < 1e-9);
        s.observe(0.0, 5.0);
        assert_eq!(s.runs(), 2, "no expectation, nothing learned");
    }
}
