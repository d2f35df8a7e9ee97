//! One simulation run: the event loop over arrivals and events, and the report it ends with.

use super::*;

/// Runs one strategy over `workload`. `progress` is called with the share of the virtual time
/// done, now and then.
#[allow(clippy::too_many_arguments)]
pub fn run(
    workload: &Workload,
    types: Vec<TypeModel>,
    lambda: Option<LambdaSpec>,
    strategy: Strategy,
    spot: bool,
    p: &SimParams,
    policies: Policies,
    progress: &mut dyn FnMut(f64),
) -> PolicyReport {
    let mut catalog: Vec<InstanceType> = types.iter().map(|t| t.spec.clone()).collect();
    if !spot || strategy == Strategy::SageMaker {
        for c in &mut catalog {
            c.price_spot = 0.0;
        }
    }
    let uses_lambda = matches!(strategy, Strategy::MarkRs | Strategy::LambdaOnly);
    let duration = workload.duration_s();
    let mut sim = Sim {
        p,
        strategy,
        types,
        catalog,
        now: 0.0,
        seq: 0,
        events: BinaryHeap::new(),
        queue: VecDeque::new(),
        instances: Vec::new(),
        idle: BTreeSet::new(),
        waiting: None,
        spill_wake: -1.0,
        spill: None,
        lambda: if uses_lambda {
            lambda.map(|l| SimLambda::new(l, p.lambda_keepalive_s))
        } else {
            None
        },
        lambda_batches: Vec::new(),
        lambda_free: Vec::new(),
        hist: LatencyHist::default(),
        rates: PeakRates::new(0.0, p.window_s, p.interval_s, 1440),
        slo: SloMonitor::new((p.interval_s * 2.0).max(10.0) as u64),
        window_arrivals: 0,
        arrival_rate: workload.mean_rate_at(0.0),
        sample_arrivals: 0,
        sample_lambda: 0,
        last_emergency: f64::NEG_INFINITY,
        rng: mark_policies::traces::Rng::new(p.seed ^ 0x5907),
        policies,
        sagemaker: None,
        samples: Vec::new(),
        launches: 0,
        interruptions: 0,
        forced: 0,
        requeued: 0,
        duration,
        next_id: 0,
        rejected: 0,
        best_rate: Vec::new(),
        capacity_at: (-1.0, 0.0),
    };
    let max_b = sim.max_batch();
    sim.best_rate = sim
        .types
        .iter()
        .map(|t| {
            (1..=max_b)
                .map(|b| f64::from(b) / t.service(b).max(1e-9))
                .fold(0.0, f64::max)
        })
        .collect();
    // the starting fleet, warm at t = 0: sized for the first interval's rate (the whole trace's
    // peak for static-peak); the same for every strategy so none starts cold
    let initial = crate::sim::baselines::initial_fleet(
        strategy,
        workload,
        &sim.types,
        &sim.catalog,
        p,
        &mut sim.policies,
    );
    for (ty, market, n) in initial {
        for _ in 0..n {
            sim.launch(ty, market, 0.0, true);
        }
    }
    if strategy == Strategy::SageMaker {
        sim.sagemaker = Some(SageMakerScaler::new(&sim.types, p));
    }
    sim.at(p.window_s, Ev::Window);
    sim.at(p.interval_s.min(60.0), Ev::Control);
    sim.at(p.sample_s, Ev::Sample);
    if let Some((t, _)) = p.mass_interruption {
        sim.at(t, Ev::Mass);
    }
    let mut arrivals = workload.arrivals(p.seed).peekable();
    let report_every = (duration / 100.0).max(1.0);
    let mut next_report = report_every;
    loop {
        let next_ev = sim
            .events
            .peek()
            .map(|Reverse((t, _, _))| f64::from_bits(*t));
        match (arrivals.peek().copied(), next_ev) {
            (Some(a), ev) if ev.is_none_or(|e| a < e) => {
                arrivals.next();
                sim.now = a;
                // demand, refused or not, is what the controller forecasts
                sim.rates.arrive(a, 1);
                if sim.late_at_arrival() {
                    sim.reject(1);
                } else {
                    sim.queue.push_back(a);
                }
                sim.window_arrivals += 1;
                if let Some(sg) = sim.sagemaker.as_mut() {
                    sg.arrivals += 1;
                }
                sim.sample_arrivals += 1;
                sim.dispatch();
            }
            (_, Some(_)) => {
                let Reverse((t, _, e)) = sim.events.pop().expect("event");
                sim.now = f64::from_bits(t);
                sim.handle(e);
                sim.dispatch();
            }
            (None, None) => break,
            (Some(_), None) => unreachable!("guarded above"),
        }
        // the workload is over and every request answered: what is left are timers
        if arrivals.peek().is_none()
            && sim.now >= duration
            && sim.queue.is_empty()
            && !sim.instances.iter().any(SimInstance::busy)
            && sim.lambda.as_ref().is_none_or(|l| l.running == 0)
        {
            break;
        }
        if sim.now >= next_report {
            progress((sim.now / duration).min(1.0));
            next_report += report_every;
        }
    }
    progress(1.0);
    // what is still queued when nothing else can happen was never served
    let unserved = sim.queue.len() as u64;
    let end = sim.now.max(duration);
    sim.now = end;
    for i in 0..sim.instances.len() {
        sim.end(i);
    }
    let mut hours: BTreeMap<String, f64> = BTreeMap::new();
    let mut by_backend: BTreeMap<String, f64> = BTreeMap::new();
    let mut instance_cost = 0.0;
    for i in &sim.instances {
        let m = match i.market {
            Market::OnDemand => "on-demand",
            Market::Spot => "spot",
        };
        let k = format!("{}/{m}", sim.types[i.ty].spec.name);
        *hours.entry(k.clone()).or_default() += i.hours(end);
        *by_backend.entry(k).or_default() += i.cost(end);
        instance_cost += i.cost(end);
    }
    let (lambda_cost, lambda_invocations, lambda_requests, cold) =
        sim.lambda.as_ref().map_or((0.0, 0, 0, 0), |l| {
            (l.cost, l.invocations, l.requests, l.cold_starts)
        });
    if lambda_invocations > 0 {
        by_backend.insert("lambda".into(), lambda_cost);
    }
    let requests = sim.hist.count + unserved + sim.rejected;
    PolicyReport {
        name: strategy.name().to_string(),
        spot: spot && strategy != Strategy::SageMaker,
        requests,
        unserved,
        rejected: sim.rejected,
        total_cost: instance_cost + lambda_cost,
        instance_cost,
        lambda_cost,
        dollars_per_million: (instance_cost + lambda_cost) / requests.max(1) as f64 * 1e6,
        cost_ratio_vs_sagemaker: None,
        attainment: if requests == 0 {
            1.0
        } else {
            sim.hist.met as f64 / requests as f64
        },
        p50_ms: sim.hist.quantile(0.5) * 1000.0,
        p99_ms: sim.hist.quantile(0.99) * 1000.0,
        mean_ms: sim.hist.mean() * 1000.0,
        instance_hours: hours,
        cost_by_backend: by_backend,
        launches: sim.launches,
        interruptions: sim.interruptions,
        requeued: sim.requeued,
        forced_batches: sim.forced,
        lambda_invocations,
        lambda_requests,
        lambda_cold_starts: cold,
        lambda_share: lambda_requests as f64 / requests.max(1) as f64,
        timeline: sim.samples,
        ccdf: sim
            .hist
            .ccdf()
            .into_iter()
            .map(|(s, f)| (s * 1000.0, f))
            .collect(),
    }
}
