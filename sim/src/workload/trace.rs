//! A recorded trace as a workload: every item of every recorded request arrives at its
//! recorded time (the simulator's unit is one item).

use std::sync::Arc;

use super::Workload;
use crate::trace::reader::Trace;

/// The trace's arrivals, with their rates per `interval_s` for plots and baselines.
pub fn from_trace(t: &Trace, interval_s: f64) -> Workload {
    let mut times: Vec<f64> = t
        .arrivals
        .iter()
        .flat_map(|&(at, n)| std::iter::repeat_n(at, n as usize))
        .collect();
    times.sort_by(f64::total_cmp);
    let duration_s = t
        .duration_s
        .max(times.last().copied().unwrap_or(0.0))
        .max(interval_s);
    let n = (duration_s / interval_s).ceil().max(1.0) as usize;
    let mut rates = vec![0.0; n];
    for &x in &times {
        rates[((x / interval_s) as usize).min(n - 1)] += 1.0 / interval_s;
    }
    Workload::Trace {
        interval_s,
        rates,
        times: Arc::new(times),
        duration_s,
    }
}
