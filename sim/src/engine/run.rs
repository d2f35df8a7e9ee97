//! One simulation run: the event loop over arrivals and events (the report is `finish.rs`).

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
        controller: Sim::controller(p, strategy),
        window_arrivals: 0,
        arrival_rate: workload.mean_rate_at(0.0),
        sample_arrivals: 0,
        sample_lambda: 0,
        sample_missed: 0,
        offer_scratch: Vec::new(),
        rng: mark_policies::traces::Rng::new(p.seed ^ 0x5907),
        policies,
        sagemaker: None,
        samples: Vec::new(),
        launches: 0,
        terminations: 0,
        skipped_by_rate: 0,
        budget: fleet_ops::ChangeBudget::new(p.launches_per_hour, p.terminations_per_hour),
        interruptions: 0,
        launch_errors: 0,
        notices: 0,
        boot_failures_left: p.faults.boot_failures,
        forced: 0,
        requeued: 0,
        duration,
        next_id: 0,
        rejected: 0,
        best_rate: Vec::new(),
        full_batch: 1,
        full_batch_s: 0.0,
        capacity_at: (-1.0, 0.0),
        live_slowdown: 1.0,
    };
    sim.best_rate = (0..sim.types.len())
        .map(|ty| {
            let t = &sim.types[ty];
            (1..=sim.type_max_batch(ty))
                .map(|b| f64::from(b) / t.service(b).max(1e-9))
                .fold(0.0, f64::max)
        })
        .collect();
    // what admission weighs on every arrival, fixed for the run
    sim.full_batch = (0..sim.types.len())
        .map(|ty| sim.type_max_batch(ty) as usize)
        .max()
        .unwrap_or(1);
    sim.full_batch_s = (0..sim.types.len())
        .map(|ty| sim.types[ty].service(sim.type_max_batch(ty)))
        .fold(f64::INFINITY, f64::min);
    // the starting fleet, warm at t = 0: sized for the first interval's rate (the whole trace's
    // peak for static-peak); the same for every strategy so none starts cold
    let initial = match &p.initial_fleet {
        Some(f) if matches!(strategy, Strategy::MarkRs | Strategy::MarkReleased) => f
            .iter()
            .filter_map(|(name, market, n)| {
                let ty = sim.types.iter().position(|t| &t.spec.name == name)?;
                Some((ty, *market, *n))
            })
            .collect(),
        _ => crate::baselines::initial_fleet(
            strategy,
            workload,
            &sim.types,
            &sim.catalog,
            p,
            &mut sim.policies,
        ),
    };
    for (ty, market, n) in initial {
        for _ in 0..n {
            sim.launch(ty, market, 0.0, true);
        }
    }
    if strategy == Strategy::SageMaker {
        sim.sagemaker = Some(SageMakerScaler::new(&sim.types, p));
    }
    sim.at(p.window_s, Ev::Window);
    if strategy == Strategy::SageMaker {
        sim.at(p.interval_s.min(60.0), Ev::Control);
    }
    sim.at(p.sample_s, Ev::Sample);
    if let Some((t, _)) = p.mass_interruption {
        sim.at(t, Ev::Mass);
    }
    for (k, r) in p.faults.reclaim.iter().enumerate() {
        sim.at(r.at_s, Ev::Reclaim(k));
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
                sim.controller.arrive(0, a, 1);
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
    sim.finish(spot)
}
