//! The policy host as a library: the embedded WASM defaults answer exactly like their native
//! twins; a policy that fails at run time falls back per call, within its deadline, and rolls
//! its slot back after repeated failures.

use std::sync::Arc;
use std::time::Instant;

use mark_gateway::policy::caller::{Outcome, PolicyCaller};
use mark_gateway::policy::engine::{PolicyEngine, PolicyLimits};
use mark_gateway::policy::slot::Slot;
use mark_gateway::policy::startup::DEFAULT_POLICIES_WASM;
use mark_gateway::policy::validate::{sample_catalog, validate};
use mark_gateway::policy::PolicyKind;
use mark_policies::traces::Rng;
use mark_policies::types as n;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/{name}.wasm", env!("OUT_DIR")))
        .expect("fixture built by tests/build.rs")
}

fn caller(
    engine: &Arc<PolicyEngine>,
    kind: PolicyKind,
    bytes: &[u8],
    rollback_after: u32,
) -> (PolicyCaller, Arc<Slot>) {
    let slot = Arc::new(Slot::new(kind, rollback_after));
    slot.install(validate(engine, bytes, kind, "test").expect("valid component"));
    (PolicyCaller::new(engine.clone(), slot.clone()), slot)
}

#[test]
fn wasm_defaults_equal_native_twins() {
    let engine = PolicyEngine::new(PolicyLimits::default()).unwrap();
    let mut rng = Rng::new(42);
    let (mut b, _) = caller(&engine, PolicyKind::Batcher, DEFAULT_POLICIES_WASM, 5);
    for _ in 0..5000 {
        let profile: Vec<n::ProfilePoint> = (0..6)
            .map(|i| n::ProfilePoint {
                batch: 1 << i,
                latency_us: 100.0 * rng.uniform() + f64::from(1u32 << i) * 50.0 * rng.uniform(),
            })
            .collect();
        let s = n::QueueState {
            queued_items: (rng.uniform() * 64.0) as u32 + 1,
            queued_requests: 1,
            oldest_wait_us: (rng.uniform() * 20_000.0) as u64,
            slo_us: 1_000 + (rng.uniform() * 50_000.0) as u64,
            arrival_rate: rng.uniform() * 50_000.0,
            max_batch: 32,
            executors: 1 + (rng.uniform() * 3.0) as u32,
            profile: &profile,
        };
        assert_eq!(b.decide(&s), mark_policies::batcher::decide(&s), "{s:?}");
        assert_eq!(b.last, Outcome::Wasm);
    }
    let (mut p, _) = caller(&engine, PolicyKind::Predictor, DEFAULT_POLICIES_WASM, 5);
    for (_, trace) in mark_policies::traces::all(3) {
        for t in (10..trace.len()).step_by(37) {
            assert_eq!(
                p.predict("m", &trace[..t], 60.0, 4),
                mark_policies::predictor::predict(&trace[..t], 60.0, 4)
            );
            assert_eq!(p.last, Outcome::Wasm);
        }
    }
    // the 0.2.0 default and a 0.1.0 provisioner, on one model and on a mix of two: both
    // answer from WASM, the same plan as the native code
    let (mut v, v_slot) = caller(&engine, PolicyKind::Provisioner, DEFAULT_POLICIES_WASM, 5);
    let (mut old, old_slot) = caller(
        &engine,
        PolicyKind::Provisioner,
        &fixture("v01-provisioner"),
        5,
    );
    let (mut old_pred, _) = caller(
        &engine,
        PolicyKind::Predictor,
        &fixture("v01-provisioner"),
        5,
    );
    assert_eq!(
        old_pred.predict("m", &[10.0, 20.0, 30.0], 60.0, 3),
        mark_policies::predictor::predict(&[10.0, 20.0, 30.0], 60.0, 3)
    );
    assert_eq!(old_pred.last, Outcome::Wasm);
    let cat = sample_catalog();
    let slo = n::Slo {
        latency_ms: 100.0,
        attainment_target: 0.99,
    };
    let demand = |m: &str, f: Vec<f64>, share: f64| n::ModelDemand {
        model: m.into(),
        forecast: f,
        slo,
        capacity: cat
            .iter()
            .map(|t| n::TypeCapacity {
                instance_type: t.name.clone(),
                capacity_rps: t.capacity_rps * share,
            })
            .collect(),
        footprint_gib: 0.0,
        attainment: None,
        p99_ms: None,
    };
    for k in 0..200 {
        let a: Vec<f64> = (0..5).map(|_| rng.uniform() * 2000.0).collect();
        let mut models = vec![demand("a", a, 1.0)];
        if k % 2 == 1 {
            let b: Vec<f64> = (0..5).map(|_| rng.uniform() * 200.0).collect();
            models.push(demand("b", b, 0.1 + rng.uniform()));
        }
        let fleet = vec![n::FleetEntry {
            instance_type: "t3.medium".into(),
            market: n::Market::Spot,
            running: k % 7,
            pending: k % 3,
            ages_seconds: vec![],
        }];
        let forecast = mark_gateway::control::mix::total_forecast(&models);
        let mixed = mark_gateway::control::mix::mixed_catalog(&models, &cat);
        let input = mark_gateway::control::controller::ProvisionInput {
            forecast: &forecast,
            interval_s: 60.0,
            fleet: &fleet,
            catalog: &mixed,
            slo,
            models: &models,
        };
        let native = input.native();
        assert_eq!(v.provision(&input), native);
        assert_eq!(v.last, Outcome::Wasm);
        assert_eq!(
            old.provision(&input),
            native,
            "0.1.0 fed the sum and the mix"
        );
        assert_eq!(old.last, Outcome::Wasm);
    }
    assert_eq!(old_slot.status().wit_version.as_deref(), Some("0.1.0"));
    assert_eq!(v_slot.status().wit_version.as_deref(), Some("0.2.0"));
}

fn state(queued: u32, profile: &[n::ProfilePoint]) -> n::QueueState<'_> {
    n::QueueState {
        queued_items: queued,
        queued_requests: queued,
        oldest_wait_us: 0,
        slo_us: 50_000,
        arrival_rate: 100.0,
        max_batch: 32,
        executors: 1,
        profile,
    }
}

#[test]
fn runtime_traps_and_timeouts_fall_back_then_roll_back() {
    let limits = PolicyLimits::default();
    let deadline = limits.batcher_deadline;
    let engine = PolicyEngine::new(limits).unwrap();
    let profile = [
        n::ProfilePoint {
            batch: 1,
            latency_us: 100.0,
        },
        n::ProfilePoint {
            batch: 32,
            latency_us: 900.0,
        },
    ];
    let (mut c, slot) = caller(&engine, PolicyKind::Batcher, &fixture("fixed-one"), 3);
    let good = slot.current().unwrap().sha256.clone();
    slot.install(
        validate(&engine, &fixture("bomb"), PolicyKind::Batcher, "bomb")
            .expect("the bomb passes the smoke calls"),
    );
    assert_eq!(
        c.decide(&state(5, &profile)),
        n::BatchDecision::Send(2),
        "the bomb answers normally"
    );
    assert_eq!(c.last, Outcome::Wasm);

    // trap: the native default answers this call
    let s = state(7, &profile);
    assert_eq!(c.decide(&s), mark_policies::batcher::decide(&s));
    assert!(
        matches!(&c.last, Outcome::Fallback(why) if why.contains("trapped")),
        "{:?}",
        c.last
    );
    // a fresh instance serves the next call
    assert_eq!(c.decide(&state(5, &profile)), n::BatchDecision::Send(2));

    // infinite loop: interrupted at the deadline
    let t = Instant::now();
    let s = state(9, &profile);
    assert_eq!(c.decide(&s), mark_policies::batcher::decide(&s));
    let took = t.elapsed();
    assert!(
        matches!(&c.last, Outcome::Fallback(why) if why.contains("deadline")),
        "{:?}",
        c.last
    );
    assert!(
        took < deadline * 5,
        "a spinning policy held the caller for {took:?} (deadline {deadline:?})"
    );
    println!("spinning policy interrupted after {took:?} (deadline {deadline:?})");

    // three failures in a row roll the slot back to the good policy
    for _ in 0..3 {
        c.decide(&state(7, &profile));
    }
    let st = slot.status();
    assert_eq!(
        st.sha256.as_deref(),
        Some(good.as_str()),
        "rolled back to fixed-one"
    );
    assert_eq!(st.auto_rollbacks, 1);
    assert!(st
        .last_rollback_reason
        .unwrap()
        .contains("3 consecutive failed calls"));
    assert_eq!(
        c.decide(&state(7, &profile)),
        n::BatchDecision::Send(1),
        "fixed-one answers again"
    );
}
