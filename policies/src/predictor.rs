//! Load prediction of the per-interval **peak** request rate.
//!
//! MArk-as-released forecasts a flat `1.2 × recent peak` (its LSTM is disabled in the released
//! code): [`flat_baseline`]. The default, [`predict`], is Holt's linear exponential smoothing of
//! the peaks (level + trend, so ramps are followed instead of lagged) plus a safety margin equal to
//! a high quantile of its own recent under-forecast errors, so the headroom adapts to how noisy the
//! trace is instead of being a fixed 20%.
//!
//! A **level shift** (the load steps to a new level and stays: two intervals in a row far from
//! the forecast on the same side, and close to each other) restarts the smoothing at the new
//! level and forgets the errors made before it: a step's own error neither inflates the margin
//! for the next hour nor keeps a fleet for a load that stopped. Until [`MIN_RESIDUALS`] errors
//! exist at a level, the margin is MArk's own 20%; it never exceeds [`MAX_MARGIN_SHARE`] of the
//! forecast.

use crate::types::PolicyError;

/// Level smoothing factor.
pub const ALPHA: f64 = 0.5;
/// Trend smoothing factor.
pub const BETA: f64 = 0.1;
/// Headroom in robust standard deviations of the recent one-step errors.
pub const MARGIN_SIGMAS: f64 = 3.0;
/// Intervals of residuals the margin looks at.
pub const MARGIN_WINDOW: usize = 60;
/// Errors needed at a level before the margin is estimated from them.
pub const MIN_RESIDUALS: usize = 5;
/// Headroom while fewer than [`MIN_RESIDUALS`] errors exist (MArk's 1.2x).
pub const FRESH_HEADROOM: f64 = 0.2;
/// The margin never exceeds this share of the smoothed forecast.
pub const MAX_MARGIN_SHARE: f64 = 0.5;
/// An error is a level-shift candidate beyond this many robust sigmas ...
pub const SHIFT_SIGMAS: f64 = 4.0;
/// ... and beyond this share of the larger of the level and the observation.
pub const SHIFT_SHARE: f64 = 0.25;

fn check(history: &[f64], horizon: u32) -> Result<(), PolicyError> {
    if horizon == 0 || horizon > 100_000 {
        return Err(PolicyError::InvalidInput(format!(
            "horizon {horizon} outside 1..=100000"
        )));
    }
    if let Some(x) = history.iter().find(|x| !x.is_finite() || **x < 0.0) {
        return Err(PolicyError::InvalidInput(format!(
            "history holds {x}, rates must be finite and >= 0"
        )));
    }
    Ok(())
}

/// MArk-as-released: `1.2 × max(last 5 intervals)`, flat over the horizon.
pub fn flat_baseline(history: &[f64], horizon: u32) -> Result<Vec<f64>, PolicyError> {
    check(history, horizon)?;
    let recent = history.iter().rev().take(5).copied().fold(0.0, f64::max);
    Ok(vec![1.2 * recent; horizon as usize])
}

fn quantile(mut v: Vec<f64>, q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// Robust standard deviation (1.4826 x median absolute value) of the last [`MARGIN_WINDOW`]
/// errors: spikes, which no forecast sees coming and Lambda spill-over covers, do not inflate
/// the headroom for the rest of the day.
fn robust_sigma(residuals: &[f64]) -> f64 {
    let recent: Vec<f64> = residuals
        .iter()
        .rev()
        .take(MARGIN_WINDOW)
        .map(|r| r.abs())
        .collect();
    1.4826 * quantile(recent, 0.5)
}

/// Holt's smoothing of the peaks plus an adaptive margin, restarted at level shifts; forecasts
/// are finite and >= 0.
pub fn predict(
    history: &[f64],
    _interval_seconds: f64,
    horizon: u32,
) -> Result<Vec<f64>, PolicyError> {
    holt(history, horizon, true)
}

/// [`predict`] without its safety margin: the smoothed peak alone (the ablation of issue 32
/// prices what the margin buys).
pub fn predict_without_margin(history: &[f64], horizon: u32) -> Result<Vec<f64>, PolicyError> {
    holt(history, horizon, false)
}

fn holt(history: &[f64], horizon: u32, with_margin: bool) -> Result<Vec<f64>, PolicyError> {
    check(history, horizon)?;
    let Some(&first) = history.first() else {
        return Ok(vec![0.0; horizon as usize]);
    };
    let (mut level, mut trend) = (first, 0.0);
    // one-step errors since the last level shift
    let mut residuals: Vec<f64> = Vec::with_capacity(history.len().min(4 * MARGIN_WINDOW));
    // the first observation past a possible level shift: (observation, its error)
    let mut candidate: Option<(f64, f64)> = None;
    for &x in &history[1..] {
        let forecast = level + trend;
        let r = x - forecast;
        // the cheap test first: most intervals are nowhere near a shift
        let far = r.abs() > SHIFT_SHARE * level.abs().max(x)
            && r.abs() > SHIFT_SIGMAS * robust_sigma(&residuals);
        if far {
            if let Some((c, rc)) = candidate {
                if rc.signum() == r.signum() && (x - c).abs() <= SHIFT_SHARE * x.max(c) {
                    // a level shift: start over at the new level, forget the old errors
                    level = (x + c) / 2.0;
                    trend = 0.0;
                    residuals.clear();
                    candidate = None;
                    continue;
                }
            }
            candidate = Some((x, r));
        } else {
            candidate = None;
        }
        residuals.push(r);
        if residuals.len() > 4 * MARGIN_WINDOW {
            residuals.drain(..residuals.len() - MARGIN_WINDOW);
        }
        let prev = level;
        level = ALPHA * x + (1.0 - ALPHA) * (level + trend);
        trend = BETA * (level - prev) + (1.0 - BETA) * trend;
    }
    Ok((1..=horizon)
        .map(|h| {
            let base = (level + f64::from(h) * trend).max(0.0);
            let margin = if !with_margin {
                0.0
            } else if residuals.len() < MIN_RESIDUALS {
                FRESH_HEADROOM * base
            } else {
                MARGIN_SIGMAS * robust_sigma(&residuals)
            };
            base + margin.min(MAX_MARGIN_SHARE * base)
        })
        .collect())
}

/// Forecast quality of one-step-ahead predictions over a trace.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ForecastError {
    /// Mean absolute percentage error.
    pub mape: f64,
    /// Share of intervals whose forecast was below the actual peak (SLO risk).
    pub under_rate: f64,
    /// Mean over-provisioning, as a share of the mean actual peak (cost).
    pub over_share: f64,
}

/// Scores a predictor one step ahead over `trace`, after `warmup` intervals.
pub fn evaluate(trace: &[f64], warmup: usize, f: impl Fn(&[f64]) -> f64) -> ForecastError {
    let (mut ape, mut under, mut over, mut actual, mut n) = (0.0, 0, 0.0, 0.0, 0);
    for t in warmup..trace.len() {
        let p = f(&trace[..t]);
        let a = trace[t];
        ape += (p - a).abs() / a.max(1e-9);
        under += usize::from(p < a);
        over += (p - a).max(0.0);
        actual += a;
        n += 1;
    }
    let n = n.max(1) as f64;
    ForecastError {
        mape: ape / n,
        under_rate: under as f64 / n,
        over_share: over / actual.max(1e-9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traces;

    #[test]
    fn rejects_bad_input() {
        assert!(predict(&[1.0, f64::NAN], 60.0, 3).is_err());
        assert!(predict(&[1.0, -2.0], 60.0, 3).is_err());
        assert!(predict(&[1.0], 60.0, 0).is_err());
        assert_eq!(predict(&[], 60.0, 2).unwrap(), vec![0.0, 0.0]);
    }

    #[test]
    fn follows_a_ramp() {
        let ramp: Vec<f64> = (0..50).map(|i| 100.0 + 10.0 * f64::from(i)).collect();
        let f = predict(&ramp, 60.0, 3).unwrap();
        assert!(f[0] >= 590.0 && f[0] < 620.0, "{f:?}");
        assert!(f[2] > f[0]);
        assert_eq!(flat_baseline(&ramp, 1).unwrap()[0], 1.2 * 590.0);
    }

    fn last(history: &[f64]) -> f64 {
        predict(history, 60.0, 1).unwrap()[0]
    }

    fn flat(level: f64, n: usize) -> Vec<f64> {
        // a flat load with +-2% noise (deterministic)
        let mut r = traces::Rng::new(level as u64);
        (0..n)
            .map(|_| level * (1.0 + 0.02 * (2.0 * r.uniform() - 1.0)))
            .collect()
    }

    #[test]
    fn a_step_up_is_followed_without_tripling_the_load() {
        // the live demo's case: 0 req/s, then a flat 530 (forecast 1,690 before the fix)
        let mut h = vec![0.0; 30];
        h.extend(flat(530.0, 1));
        let first = last(&h);
        assert!(first <= 2.0 * 530.0, "one interval after the step: {first}");
        for n in 2..=20 {
            let mut h = vec![0.0; 30];
            h.extend(flat(530.0, n));
            let f = last(&h);
            assert!(
                (530.0 * 0.95..=530.0 * 1.25).contains(&f),
                "{n} intervals after the step: {f}"
            );
        }
        // the same with no history before the step
        for n in 1..=10 {
            let f = last(&flat(530.0, n));
            assert!((500.0..=530.0 * 1.25).contains(&f), "{n}: {f}");
        }
    }

    #[test]
    fn a_step_down_and_a_stop_release_the_fleet_within_two_intervals() {
        let mut h = flat(1000.0, 120);
        h.extend(flat(300.0, 2));
        let f = last(&h);
        assert!(
            (285.0..=300.0 * 1.25).contains(&f),
            "after a step down: {f}"
        );
        let mut h = flat(500.0, 120);
        h.extend([0.0, 0.0]);
        assert_eq!(last(&h), 0.0, "after the load stopped");
        // and stays there: no memory of the old level's errors
        h.extend([0.0; 30]);
        assert_eq!(last(&h), 0.0);
        // back to 500 after the stop: followed again
        h.extend(flat(500.0, 3));
        let f = last(&h);
        assert!((480.0..=500.0 * 1.25).contains(&f), "{f}");
    }

    #[test]
    fn a_one_interval_spike_is_not_a_level_shift() {
        let mut h = flat(300.0, 120);
        let before = last(&h);
        h.push(900.0);
        h.extend(flat(300.0, 3));
        let after = last(&h);
        assert!(
            (after - before).abs() < 0.2 * before,
            "before {before}, after the spike {after}"
        );
    }

    #[test]
    fn beats_the_flat_baseline_on_generated_traces() {
        for (name, trace) in traces::all(7) {
            let ours = evaluate(&trace, 30, |h| predict(h, 60.0, 1).unwrap()[0]);
            let flat = evaluate(&trace, 30, |h| flat_baseline(h, 1).unwrap()[0]);
            println!("{name:>10}: ours mape {:.3} under {:.3} over {:.3} | flat mape {:.3} under {:.3} over {:.3}",
                ours.mape, ours.under_rate, ours.over_share, flat.mape, flat.under_rate, flat.over_share);
            assert!(ours.mape < flat.mape, "{name}: {ours:?} vs {flat:?}");
            assert!(
                ours.over_share < flat.over_share,
                "{name}: {ours:?} vs {flat:?}"
            );
        }
    }
}
