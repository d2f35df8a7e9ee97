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
                p.predict(&trace[..t], 60.0, 4),
                mark_policies::predictor::predict(&trace[..t], 60.0, 4)
            );
            assert_eq!(p.last, Outcome::Wasm);
        }
    }
    let (mut v, _) = caller(&engine, PolicyKind::Provisioner, DEFAULT_POLICIES_WASM, 5);
    let cat = sample_catalog();
    let slo = n::Slo {
        latency_ms: 100.0,
        attainment_target: 0.99,
    };
    for k in 0..200 {
        let forecast: Vec<f64> = (0..5).map(|_| rng.uniform() * 2000.0).collect();
        let fleet = vec![n::FleetEntry {
            instance_type: "t3.medium".into(),
            market: n::Market::Spot,
            running: k % 7,
            pending: k % 3,
            ages_seconds: vec![],
        }];
        assert_eq!(
            v.provision(&forecast, 60.0, &fleet, &cat, slo),
            mark_policies::provisioner::provision(&forecast, 60.0, &fleet, &cat, slo)
        );
        assert_eq!(v.last, Outcome::Wasm);
    }
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
