//! Runs of several models on separate fleets, reported as one (a SageMaker endpoint per model,
//! mark-rs once per model): the sums, the latency of every request, and each model's part.

use std::collections::BTreeMap;

use crate::report::{ModelReport, PolicyReport, Sample};

/// `runs` (one per model, in the order of `models`, each model with its SLO in ms) as one
/// report named `name`.
pub fn combine(name: &str, models: &[(String, f64)], runs: Vec<PolicyReport>) -> PolicyReport {
    let mut it = runs.clone().into_iter();
    let mut all = it.next().expect("one run per model");
    all.name = name.to_string();
    for r in it {
        all.hist.merge(&r.hist);
        all.requests += r.requests;
        all.unserved += r.unserved;
        all.rejected += r.rejected;
        all.total_cost += r.total_cost;
        all.instance_cost += r.instance_cost;
        all.lambda_cost += r.lambda_cost;
        for (k, v) in r.instance_hours {
            *all.instance_hours.entry(k).or_default() += v;
        }
        for (k, v) in r.cost_by_backend {
            *all.cost_by_backend.entry(k).or_default() += v;
        }
        all.launches += r.launches;
        all.terminations += r.terminations;
        all.changes_skipped_by_rate += r.changes_skipped_by_rate;
        all.emergencies += r.emergencies;
        all.headroom_steps[0] += r.headroom_steps[0];
        all.headroom_steps[1] += r.headroom_steps[1];
        all.interruptions += r.interruptions;
        all.launch_errors += r.launch_errors;
        all.launch_failures += r.launch_failures;
        all.notices += r.notices;
        all.max_unserving_billed_s = all.max_unserving_billed_s.max(r.max_unserving_billed_s);
        all.max_unserving_launch_times = all
            .max_unserving_launch_times
            .max(r.max_unserving_launch_times);
        all.requeued += r.requeued;
        all.forced_batches += r.forced_batches;
        all.lambda_invocations += r.lambda_invocations;
        all.lambda_requests += r.lambda_requests;
        all.lambda_cold_starts += r.lambda_cold_starts;
        all.timeline = add_timelines(&all.timeline, &r.timeline);
    }
    let requests = all.requests.max(1) as f64;
    let h = &all.hist;
    all.attainment = if all.requests == 0 {
        1.0
    } else {
        h.met as f64 / requests
    };
    all.p50_ms = h.quantile(0.5) * 1000.0;
    all.p99_ms = h.quantile(0.99) * 1000.0;
    all.mean_ms = h.mean() * 1000.0;
    all.ccdf = h.ccdf().into_iter().map(|(s, f)| (s * 1000.0, f)).collect();
    all.dollars_per_million = all.total_cost / requests * 1e6;
    all.lambda_share = all.lambda_requests as f64 / requests;
    let total = all.total_cost.max(1e-12);
    all.models = models
        .iter()
        .zip(&runs)
        .map(|((m, slo_ms), r)| {
            (
                m.clone(),
                ModelReport {
                    requests: r.requests,
                    slo_ms: *slo_ms,
                    attainment: r.attainment,
                    p99_ms: r.p99_ms,
                    misses: r.requests - r.hist.met,
                    cost_share: r.total_cost / total,
                },
            )
        })
        .collect::<BTreeMap<_, _>>();
    all
}

/// Two timelines sampled at the same times, summed (the longer one's tail kept).
fn add_timelines(a: &[Sample], b: &[Sample]) -> Vec<Sample> {
    let n = a.len().max(b.len());
    (0..n)
        .map(|i| match (a.get(i), b.get(i)) {
            (Some(x), Some(y)) => Sample {
                t: x.t,
                load_rps: x.load_rps + y.load_rps,
                capacity_rps: x.capacity_rps + y.capacity_rps,
                instances: x.instances + y.instances,
                lambda_rps: x.lambda_rps + y.lambda_rps,
                missed: x.missed + y.missed,
                cost: x.cost + y.cost,
                // two fleets' factors: the mean
                headroom: (x.headroom + y.headroom) / 2.0,
            },
            (Some(x), None) | (None, Some(x)) => x.clone(),
            (None, None) => unreachable!("i < n"),
        })
        .collect()
}
