//! Load prediction of the per-interval **peak** request rate.
//!
//! MArk-as-released forecasts a flat `1.2 × recent peak` (its LSTM is disabled in the released
//! code): [`flat_baseline`]. The default, [`predict`], is Holt's linear exponential smoothing of
//! the peaks (level + trend, so ramps are followed instead of lagged) plus a safety margin equal to
//! a high quantile of its own recent under-forecast errors, so the headroom adapts to how noisy the
//! trace is instead of being a fixed 20%.

use crate::types::PolicyError;

/// Level smoothing factor.
pub const ALPHA: f64 = 0.5;
/// Trend smoothing factor.
pub const BETA: f64 = 0.1;
/// Headroom in robust standard deviations of the recent one-step errors.
pub const MARGIN_SIGMAS: f64 = 3.0;
/// Intervals of residuals the margin looks at.
pub const MARGIN_WINDOW: usize = 60;

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

/// Holt's smoothing of the peaks plus an adaptive margin; forecasts are finite and >= 0.
pub fn predict(
    history: &[f64],
    _interval_seconds: f64,
    horizon: u32,
) -> Result<Vec<f64>, PolicyError> {
    check(history, horizon)?;
    let Some(&first) = history.first() else {
        return Ok(vec![0.0; horizon as usize]);
    };
    let (mut level, mut trend) = (first, 0.0);
    let mut residuals = Vec::with_capacity(history.len());
    for &x in &history[1..] {
        let forecast = level + trend;
        residuals.push(x - forecast);
        let prev = level;
        level = ALPHA * x + (1.0 - ALPHA) * (level + trend);
        trend = BETA * (level - prev) + (1.0 - BETA) * trend;
    }
    // Robust sigma (1.4826 x median absolute error): spikes, which no forecast sees coming and
    // Lambda spill-over covers, do not inflate the headroom for the rest of the day.
    let recent: Vec<f64> = residuals
        .iter()
        .rev()
        .take(MARGIN_WINDOW)
        .map(|r| r.abs())
        .collect();
    let margin = MARGIN_SIGMAS * 1.4826 * quantile(recent, 0.5);
    Ok((1..=horizon)
        .map(|h| (level + f64::from(h) * trend).max(0.0) + margin)
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
