//! One simulation run: the event loop over arrivals and events (the report is `finish.rs`).

use super::lane::Merged;
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
    let lane = LaneSpec {
        name: String::new(),
        workload,
        types,
        slo_ms: p.slo_ms,
        max_batch: p.max_batch,
    };
    run_lanes(&[lane], lambda, strategy, spot, p, policies, progress)
}

/// Runs one strategy over several models' workloads on one shared fleet (one lane each; the
/// first lane's workload sets the duration of a single-model run).
#[allow(clippy::too_many_arguments)]
pub fn run_lanes(
    specs: &[LaneSpec<'_>],
    lambda: Option<LambdaSpec>,
    strategy: Strategy,
    spot: bool,
    p: &SimParams,
    policies: Policies,
    progress: &mut dyn FnMut(f64),
) -> PolicyReport {
    let types = specs[0].types.clone();
    let workload = specs[0].workload;
    // the gateway's executors (`--gateway-executors`) are a backend, not a type to plan
    let mut catalog: Vec<InstanceType> = types
        .iter()
        .filter(|t| t.spec.name != crate::fleet::GATEWAY_TYPE)
        .map(|t| t.spec.clone())
        .collect();
    if !spot || strategy == Strategy::SageMaker {
        for c in &mut catalog {
            c.price_spot = 0.0;
        }
    }
    let uses_lambda = matches!(strategy, Strategy::MarkRs | Strategy::LambdaOnly);
    let floor = crate::control::mix::Floor {
        min_instances: p.min_instances.filter(|_| strategy == Strategy::MarkRs),
        spot_max_share: p.spot_max_share.filter(|_| strategy == Strategy::MarkRs),
        lambda: lambda.clone().filter(|_| uses_lambda),
    };
    let duration = specs
        .iter()
        .map(|l| l.workload.duration_s())
        .fold(0.0, f64::max);
    let names: Vec<String> = specs.iter().map(|l| l.name.clone()).collect();
    let mut sim = Sim {
        p,
        strategy,
        types,
        catalog,
        now: 0.0,
        seq: 0,
        events: BinaryHeap::new(),
        lanes: specs.iter().map(Lane::new).collect(),
        instances: Vec::new(),
        idle: BTreeSet::new(),
        lambda: if uses_lambda {
            lambda.map(|l| SimLambda::new(l, p.lambda_keepalive_s))
        } else {
            None
        },
        lambda_batches: Vec::new(),
        lambda_free: Vec::new(),
        controller: Sim::controller(p, strategy)
            .with_models(&names)
            .with_floor(floor),
        sample_arrivals: 0,
        sample_lambda: 0,
        sample_missed: 0,
        offer_scratch: Vec::new(),
        rng: mark_policies::traces::Rng::new(p.seed ^ 0x5907),
        host: host::HostOverhead::new(&p.host_overhead_ms, p.seed),
        worker: host::HostOverhead::new(&p.worker_overhead_ms, p.seed ^ 0x3a0e),
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
        live_slowdown: 1.0,
        replicas: (p.replicas.n > 1 && strategy == Strategy::MarkRs)
            .then(|| super::replicas::Replicas::new(&p.replicas, specs.len(), p.window_s, p.seed)),
    };
    // what admission weighs on every arrival, fixed for the run
    for m in 0..sim.lanes.len() {
        let n = sim.types.len();
        let best_rate = (0..n)
            .map(|ty| {
                let t = &sim.lanes[m].types[ty];
                (1..=sim.type_max_batch(m, ty))
                    .map(|b| f64::from(b) / t.service(b).max(1e-9))
                    .fold(0.0, f64::max)
            })
            .collect();
        let full_batch = (0..n)
            .map(|ty| sim.type_max_batch(m, ty) as usize)
            .max()
            .unwrap_or(1);
        let full_batch_s = (0..n)
            .map(|ty| sim.lanes[m].types[ty].service(sim.type_max_batch(m, ty)))
            .fold(f64::INFINITY, f64::min);
        let l = &mut sim.lanes[m];
        (l.best_rate, l.full_batch, l.full_batch_s) = (best_rate, full_batch, full_batch_s);
    }
    // the gateway's own executors first: the live batch loop offers a batch to a free one of
    // them before any worker (and `dispatch` offers idle instances in index order)
    if let Some(gw) = sim
        .types
        .iter()
        .position(|t| t.spec.name == crate::fleet::GATEWAY_TYPE)
    {
        for _ in 0..p.gateway_executors {
            sim.launch_pinned(gw);
        }
    }
    if strategy == Strategy::SageMaker {
        sim.sagemaker = Some(if sim.lanes.len() > 1 {
            // a multi-model endpoint: one type for the mix, its models' shares over the run
            let expected: Vec<f64> = specs
                .iter()
                .map(|l| l.workload.expected_requests().max(0.0))
                .collect();
            let total: f64 = expected.iter().sum();
            let models: Vec<crate::baselines::EndpointModel<'_>> = sim
                .lanes
                .iter()
                .zip(&expected)
                .map(|(l, e)| crate::baselines::EndpointModel {
                    types: &l.types,
                    slo_ms: l.slo_ms,
                    // no requests expected at all: equal shares
                    share: if total > 0.0 {
                        e / total
                    } else {
                        1.0 / expected.len() as f64
                    },
                })
                .collect();
            SageMakerScaler::for_endpoint(&models)
        } else {
            SageMakerScaler::new(&sim.types, p)
        });
    }
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
        _ if sim.lanes.len() > 1 && strategy == Strategy::SageMaker => {
            let sg = sim.sagemaker.as_ref().expect("the endpoint's scaler");
            let first: f64 = specs.iter().map(|l| l.workload.mean_rate_at(0.0)).sum();
            sg.endpoint().map_or_else(Vec::new, |ty| {
                let n = (first / (0.5 * sg.instance_rps())).ceil().max(1.0) as u32;
                vec![(ty, Market::OnDemand, n)]
            })
        }
        _ if sim.lanes.len() > 1 => sim.initial_mix(specs),
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
    sim.at(p.window_s, Ev::Window);
    if strategy == Strategy::SageMaker {
        sim.at(p.interval_s.min(60.0), Ev::Control);
    }
    sim.at(p.sample_s, Ev::Sample);
    if sim.replicas.is_some() {
        sim.at(0.0, Ev::Lease);
    }
    if let Some((t, _)) = p.mass_interruption {
        sim.at(t, Ev::Mass);
    }
    for (k, w) in p.faults.waves().iter().enumerate() {
        sim.at(w.at_s, Ev::Reclaim(k));
    }
    let mut arrivals = Merged::new(specs, p.seed);
    let report_every = (duration / 100.0).max(1.0);
    let mut next_report = report_every;
    loop {
        let next_ev = sim
            .events
            .peek()
            .map(|Reverse((t, _, _))| f64::from_bits(*t));
        match (arrivals.peek(), next_ev) {
            (Some((a, m)), ev) if ev.is_none_or(|e| a < e) => {
                arrivals.take(m);
                sim.now = a;
                // demand, refused or not, is what the controller forecasts
                match sim.replicas.as_mut() {
                    Some(r) => r.arrive(m),
                    None => sim.controller.arrive(m, a, 1),
                }
                if sim.late_at_arrival(m) {
                    sim.reject(m, 1);
                } else {
                    sim.lanes[m].queue.push_back(a);
                }
                sim.lanes[m].window_arrivals += 1;
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
            && sim.lanes.iter().all(|l| l.queue.is_empty())
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

impl Sim<'_> {
    /// The warm fleet at t = 0 for several models: the policy's plan for their first
    /// interval's rates, each type at its capacity for that mix.
    fn initial_mix(&mut self, specs: &[LaneSpec<'_>]) -> Vec<(usize, Market, u32)> {
        let inputs = self.model_inputs();
        let forecasts: Vec<Vec<f64>> = specs
            .iter()
            .map(|l| vec![l.workload.mean_rate_at(0.0)])
            .collect();
        let models = crate::control::mix::demands(&inputs, &forecasts, &[], &[], &self.catalog);
        let forecast = crate::control::mix::total_forecast(&models);
        let mixed = crate::control::mix::mixed_catalog(&models, &self.catalog);
        let plan = (self.policies.provision)(&crate::control::controller::ProvisionInput {
            forecast: &forecast,
            interval_s: self.p.interval_s,
            fleet: &[],
            catalog: &mixed,
            slo: crate::control::mix::strictest(&inputs),
            models: &models,
        });
        plan.map(|plan| {
            plan.targets
                .iter()
                .filter_map(|t| Some((self.type_index(&t.instance_type)?, t.market, t.count)))
                .collect()
        })
        .unwrap_or_default()
    }
}
