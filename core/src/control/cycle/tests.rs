//! The controller driven with a scripted fleet: plans on the interval, plans out of cycle after
//! an emergency, takes over at once, and spreads a late tick's arrivals over the time it covers.

use mark_policies::types::{InstanceType, Market, Slo};

use super::*;

fn catalog() -> Vec<InstanceType> {
    vec![InstanceType {
        name: "c".into(),
        vcpus: 2,
        gpus: 0,
        memory_gib: 4.0,
        price_on_demand: 0.1,
        price_spot: 0.0,
        launch_seconds: 60.0,
        capacity_rps: 50.0,
        burstable: false,
    }]
}

fn cfg() -> ControlConfig {
    ControlConfig {
        slo: Slo {
            latency_ms: 100.0,
            attainment_target: 0.99,
        },
        ..ControlConfig::default()
    }
}

fn ready(id: &str) -> FleetInstance {
    FleetInstance {
        id: id.into(),
        instance_type: "c".into(),
        market: Market::OnDemand,
        launched_at: 0.0,
        ready: true,
        in_flight: 0,
    }
}

fn tick(c: &mut Controller, now: f64, fleet: &[FleetInstance]) -> Decision {
    c.on_tick(
        now,
        fleet,
        fleet.len() as u32,
        &[model()],
        &mut |_, h, i, n| mark_policies::predictor::predict(h, i, n),
        &mut |i| i.native(),
    )
}

fn model() -> ModelInput {
    ModelInput {
        name: "m".into(),
        slo: cfg().slo,
        catalog: catalog(),
        footprint_gib: 0.0,
    }
}

fn window(arrived: u64, missed: u64) -> [Outcomes; 1] {
    [Outcomes {
        arrived,
        done: arrived,
        missed,
        slow: missed,
    }]
}

fn launched(d: &Decision) -> u32 {
    Action::launches(&d.actions()).iter().map(|l| l.2).sum()
}

#[test]
fn plans_every_interval_on_the_peak_history() {
    let mut c = Controller::new(cfg(), 5.0, 10, true);
    let fleet = [ready("a")];
    for k in 1..=24 {
        let now = 5.0 * f64::from(k);
        c.on_window(now, &window(500, 0)); // 100 req/s, all met
        let d = tick(&mut c, now, &fleet);
        assert!(d.emergency.is_none(), "attainment is 1.0: no emergency");
        if k % 12 == 0 {
            let s = d
                .step
                .as_ref()
                .expect("a plan at the interval")
                .as_ref()
                .unwrap();
            assert_eq!(d.history.last().copied(), Some(100.0));
            assert!(s.forecast[0] >= 100.0, "{:?}", s.forecast);
            assert!(
                launched(&d) >= 1,
                "one instance of 50 req/s does not cover 100"
            );
        } else {
            assert!(d.step.is_none(), "no plan inside the interval (t = {now})");
        }
    }
}

#[test]
fn an_emergency_launches_and_plans_out_of_cycle() {
    let mut c = Controller::new(cfg(), 5.0, 10, true);
    let fleet = [ready("a")];
    c.on_window(5.0, &window(500, 0));
    assert!(tick(&mut c, 5.0, &fleet).step.is_none());
    // half the requests miss while demand (100 req/s) is twice the capacity (50)
    c.on_window(10.0, &window(500, 250));
    let d = tick(&mut c, 10.0, &fleet);
    assert!(d.emergency.is_some(), "{d:?}");
    assert!(d.step.is_some(), "the emergency plans at once");
    assert_eq!(
        d.history,
        vec![100.0],
        "before an interval closed: the open peak"
    );
    assert_eq!(c.emergencies(), 1);
    // the next plan comes an interval after the out-of-cycle one
    c.on_window(15.0, &window(500, 0));
    assert!(tick(&mut c, 15.0, &fleet).step.is_none());
    assert!(tick(&mut c, 70.0, &fleet).step.is_some());
    // MArk as released had no emergency
    let mut released = Controller::new(cfg(), 5.0, 10, false);
    released.on_window(5.0, &window(500, 250));
    released.on_window(10.0, &window(500, 250));
    let d = tick(&mut released, 10.0, &fleet);
    assert!(d.emergency.is_none() && d.step.is_none());
}

#[test]
fn a_new_leader_plans_at_once() {
    let mut c = Controller::new(cfg(), 5.0, 10, true);
    c.on_window(5.0, &window(200, 0));
    c.plan_now(5.0);
    let d = tick(&mut c, 5.0, &[]);
    assert!(d.step.is_some());
    assert_eq!(d.history, vec![40.0]);
    assert!(tick(&mut c, 10.0, &[]).step.is_none());
}

#[test]
fn a_late_tick_spreads_its_arrivals_over_the_time_it_covers() {
    // 10 req/s throughout; the loop was held for 60 s by a slow cloud call
    let mut c = Controller::new(cfg(), 5.0, 10, true);
    c.on_window(5.0, &window(50, 0));
    c.on_window(65.0, &window(600, 0));
    assert!(
        (c.monitors.rates.recent_peak() - 10.0).abs() < 1e-9,
        "peak {} (all in one window would read 120)",
        c.monitors.rates.recent_peak()
    );
    assert_eq!(c.monitors.rates.history, vec![10.0]);
    // an on-time tick still counts its window as measured
    c.on_window(70.0, &window(150, 0));
    c.on_window(75.0, &window(0, 0));
    assert!((c.monitors.rates.current_peak() - 30.0).abs() < 1e-9);
}

#[test]
fn a_window_of_counters_feeds_the_monitors() {
    let before = Outcomes::default();
    // 120 arrived, 100 answered (5 late), 15 refused at admission, 5 expired in the queue
    let now = Outcomes::from_counts(120, 100, 5, 15, 5, 5);
    assert_eq!(
        now,
        Outcomes {
            arrived: 120,
            done: 120,
            missed: 25,
            slow: 25
        }
    );
    let mut c = Controller::new(cfg(), 5.0, 10, true);
    c.on_window(5.0, &[now.since(before)]);
    let a = c.monitors.slo.attainment(5.0).unwrap();
    assert!((a - 95.0 / 120.0).abs() < 1e-9, "{a}");
    // 120 arrivals in the first 5 s window: a peak of 24/s
    assert!((c.monitors.history()[0] - 24.0).abs() < 1e-9);
}

fn pending(id: &str, ty: &str, at: f64) -> FleetInstance {
    FleetInstance {
        id: id.into(),
        instance_type: ty.into(),
        market: Market::OnDemand,
        launched_at: at,
        ready: false,
        in_flight: 0,
    }
}

#[test]
fn a_launch_that_never_boots_is_terminated_not_counted_and_its_type_backed_off() {
    // type c boots in 80 s: the deadline is 3 x 80 = 240 s after the launch
    let mut cat = catalog();
    cat[0].launch_seconds = 80.0;
    let mut other = cat[0].clone();
    other.name = "d".into();
    other.price_on_demand = 0.2;
    cat.push(other);
    let mut c = Controller::new(cfg(), 5.0, 10, true);
    let models = [ModelInput {
        catalog: cat.clone(),
        ..model()
    }];
    let tick = |c: &mut Controller, now: f64, fleet: &[FleetInstance]| {
        c.on_window(now, &window(200, 0)); // 40 req/s: one instance of 50
        c.on_tick(
            now,
            fleet,
            fleet.len() as u32,
            &models,
            &mut |_, h, i, n| mark_policies::predictor::predict(h, i, n),
            &mut |i| i.native(),
        )
    };
    let stuck = [pending("p1", "c", 0.0)];
    // checked every 5 s window: overdue one window early (235 s), never billed past 240 s
    for k in 1..=47 {
        let d = tick(&mut c, 5.0 * f64::from(k), &stuck);
        assert!(d.reaped.is_empty(), "within the deadline (t = {})", 5 * k);
    }
    let d = tick(&mut c, 240.0, &stuck);
    assert_eq!(d.reaped, vec![Action::Terminate { id: "p1".into() }]);
    assert_eq!((c.launches.failures, c.launches.overdue), (1, 1));
    // still listed (the termination lags): asked again only after an interval, counted once
    assert!(tick(&mut c, 250.0, &stuck).reaped.is_empty());
    assert_eq!(tick(&mut c, 310.0, &stuck).reaped.len(), 1);
    assert_eq!(c.launches.failures, 1);
    // not capacity: the next plan launches a replacement of the cheaper type c
    let d = tick(&mut c, 370.0, &stuck);
    let s = d.step.expect("a plan").unwrap();
    assert_eq!(
        Action::launches(&s.actions),
        vec![("c", Market::OnDemand, 1)]
    );
    // the replacement fails too: c is backed off and the plan takes d
    let stuck2 = [pending("p2", "c", 370.0)];
    let d = tick(&mut c, 615.0, &stuck2);
    assert_eq!(d.reaped.len(), 1);
    assert_eq!(c.launches.backed_off(615.0).len(), 1);
    c.plan_now(620.0);
    let d = tick(&mut c, 620.0, &[]);
    let s = d.step.expect("a plan").unwrap();
    assert_eq!(
        Action::launches(&s.actions),
        vec![("d", Market::OnDemand, 1)]
    );
    // after the back-off c is planned again; a c that serves clears its record
    // (plans every interval from 620: 680, ..., 1160 inside the back-off, 1220 after it)
    let mut last = Vec::new();
    for k in 125..=244 {
        let now = 5.0 * f64::from(k);
        if let Some(Ok(s)) = tick(&mut c, now, &[]).step {
            let l: Vec<(String, Market, u32)> = Action::launches(&s.actions)
                .into_iter()
                .map(|(t, m, n)| (t.to_string(), m, n))
                .collect();
            last.push((now, l));
        }
    }
    for (t, l) in &last {
        let ty = if *t < 1215.0 { "d" } else { "c" };
        assert_eq!(
            l,
            &vec![(ty.to_string(), Market::OnDemand, 1)],
            "plan at {t}"
        );
    }
    let mut ok = ready("r1");
    ok.launched_at = 1300.0;
    tick(&mut c, 1400.0, &[ok]);
    assert!(c.launches.backed_off(1400.0).is_empty());
}

#[test]
fn each_models_p99_since_the_last_plan_reaches_the_provisioner() {
    let names = ["a".to_string(), "b".to_string()];
    let mut c = Controller::new(cfg(), 5.0, 10, true).with_models(&names);
    let models = [
        ModelInput {
            name: "a".into(),
            ..model()
        },
        ModelInput {
            name: "b".into(),
            ..model()
        },
    ];
    let fleet = [ready("x")];
    let mut given: Vec<Vec<Option<f64>>> = Vec::new();
    // ticks `ks` (5 s windows, model a's demand only); `answer` runs before each tick
    let mut run = |c: &mut Controller,
                   ks: std::ops::RangeInclusive<u32>,
                   answer: &dyn Fn(&mut Controller, u32)| {
        for k in ks {
            let now = 5.0 * f64::from(k);
            c.on_window(now, &[window(50, 0)[0], Outcomes::default()]);
            answer(c, k);
            c.on_tick(
                now,
                &fleet,
                1,
                &models,
                &mut |_, h, i, n| mark_policies::predictor::predict(h, i, n),
                &mut |i| {
                    given.push(i.models.iter().map(|m| m.p99_ms).collect());
                    i.native()
                },
            );
        }
    };
    // model a: 99 answers at 20 ms and one at 400 ms per window, in the first interval
    run(&mut c, 1..=24, &|c, k| {
        if k <= 12 {
            c.answered(0, 0.020, 99);
            c.answered(0, 0.400, 1);
        }
    });
    // a replica that does not lead forgets what it counted: its first plan as leader starts
    // afresh
    c.answered(1, 0.5, 100);
    c.forget_interval();
    run(&mut c, 25..=36, &|_, _| {});
    assert_eq!(given.len(), 3, "three plans: {given:?}");
    let first = given[0][0].expect("a answered");
    assert!((20.0..=22.0).contains(&first), "{first}");
    assert_eq!(given[0][1], None, "b answered nothing");
    assert_eq!(
        given[1],
        vec![None, None],
        "nothing answered since the first plan"
    );
    assert_eq!(given[2], vec![None, None], "forgotten as a follower");
}

/// A fast CPU type and a GPU four times cheaper per request that boots in 150 s.
fn two_types() -> ModelInput {
    let ty = |name: &str, launch_seconds: f64, capacity_rps: f64, price: f64| InstanceType {
        name: name.into(),
        launch_seconds,
        capacity_rps,
        price_on_demand: price,
        ..catalog()[0].clone()
    };
    ModelInput {
        catalog: vec![ty("fast", 60.0, 50.0, 0.1), ty("gpu", 150.0, 400.0, 0.2)],
        ..model()
    }
}

fn on_two_types(c: &mut Controller, now: f64, fleet: &[FleetInstance]) -> Decision {
    c.on_tick(
        now,
        fleet,
        fleet.len() as u32,
        &[two_types()],
        &mut |_, h, i, n| mark_policies::predictor::predict(h, i, n),
        &mut |i| i.native(),
    )
}

#[test]
fn a_step_far_above_the_fleet_is_bridged_and_the_bridge_retired_once_the_plan_serves() {
    let mut c = Controller::new(cfg(), 5.0, 40, true);
    let mut fleet = vec![FleetInstance {
        ready: true,
        ..pending("a", "fast", 0.0)
    }];
    c.on_window(5.0, &window(250, 0));
    assert!(on_two_types(&mut c, 5.0, &fleet).emergency.is_none());
    // a step to 1,000 req/s, half of it missed: no type covers 950 req/s alone
    c.on_window(10.0, &window(5000, 2500));
    let d = on_two_types(&mut c, 10.0, &fleet);
    assert_eq!(
        d.emergency,
        Some(Action::Launch {
            instance_type: "fast".into(),
            market: Market::OnDemand,
            count: 16,
        }),
        "a bridge of the fast type, at most 16"
    );
    assert_eq!(
        d.actions().last(),
        d.emergency.as_ref(),
        "the plan's launches come first: the bridge never takes their room or budget"
    );
    let plan = d.step.expect("planned at once").unwrap();
    let gpus: u32 = Action::launches(&plan.actions)
        .iter()
        .filter(|l| l.0 == "gpu")
        .map(|l| l.2)
        .sum();
    assert!(
        gpus >= 3,
        "the plan covers the step with GPUs: {:?}",
        plan.actions
    );
    for k in 0..16 {
        fleet.push(pending(&format!("b{k}"), "fast", 10.0));
    }
    for k in 0..gpus {
        fleet.push(pending(&format!("g{k}"), "gpu", 10.0));
    }
    let mut retired = Vec::new();
    for k in 3..=60 {
        let now = 5.0 * f64::from(k);
        for i in &mut fleet {
            let boot = if i.instance_type == "gpu" {
                150.0
            } else {
                60.0
            };
            i.ready = now >= i.launched_at + boot;
        }
        c.on_window(now, &window(5000, 0));
        let d = on_two_types(&mut c, now, &fleet);
        assert!(
            d.emergency.is_none(),
            "the bridge and the pending GPUs cover the deficit (t = {now})"
        );
        if let Some(Ok(s)) = &d.step {
            for a in &s.actions {
                match a {
                    Action::Terminate { id } => {
                        assert!(
                            !id.starts_with('b'),
                            "the plan never touches the bridge: {a:?}"
                        )
                    }
                    Action::Launch { instance_type, .. } => {
                        assert_ne!(
                            instance_type, "fast",
                            "the plan does not plan the bridge in"
                        )
                    }
                }
            }
        }
        for a in &d.retired {
            let Action::Terminate { id } = a else {
                panic!("{a:?}")
            };
            assert!(id.starts_with('b') && now >= 10.0 + 150.0, "{id} at {now}");
            retired.push(id.clone());
        }
        fleet.retain(|i| !retired.contains(&i.id));
    }
    assert_eq!(retired.len(), 16, "every member goes once the GPUs serve");
}

#[test]
fn a_bridge_takes_only_the_room_the_plan_of_its_tick_leaves() {
    let mut c = Controller::new(cfg(), 5.0, 8, true);
    let fleet = vec![FleetInstance {
        ready: true,
        ..pending("a", "fast", 0.0)
    }];
    c.on_window(5.0, &window(250, 0));
    on_two_types(&mut c, 5.0, &fleet);
    c.on_window(10.0, &window(5000, 2500));
    let d = on_two_types(&mut c, 10.0, &fleet);
    let planned: u32 = Action::launches(&d.step.as_ref().unwrap().as_ref().unwrap().actions)
        .iter()
        .map(|l| l.2)
        .sum();
    assert!(planned >= 3);
    let Some(Action::Launch { count, .. }) = d.emergency else {
        panic!("{d:?}")
    };
    assert_eq!(
        count,
        8 - 1 - planned,
        "max 8, one instance, the plan's launches first"
    );
}
