//! Slots and callers with the real default component (`mark-default.wasm`, built by `build.rs`):
//! swaps, generations, fallbacks and rollbacks.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use mark_policies::types as n;

use super::caller::{Outcome, PolicyCallError, PolicyCaller};
use super::engine::{PolicyEngine, PolicyLimits};
use super::slot::Slot;
use super::validate::{sample_catalog, validate};
use super::PolicyKind;

static DEFAULT_WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/mark-default.wasm"));

fn engine() -> Arc<PolicyEngine> {
    PolicyEngine::new(PolicyLimits::default()).expect("engine")
}

fn profile() -> Vec<n::ProfilePoint> {
    [1u32, 2, 4, 8, 16]
        .iter()
        .map(|&b| n::ProfilePoint {
            batch: b,
            latency_us: 2_000.0 + 500.0 * f64::from(b),
        })
        .collect()
}

fn state(p: &[n::ProfilePoint], queued: u32, waited_us: u64) -> n::QueueState<'_> {
    n::QueueState {
        queued_items: queued,
        queued_requests: queued,
        oldest_wait_us: waited_us,
        slo_us: 50_000,
        arrival_rate: 400.0,
        max_batch: 16,
        executors: 2,
        profile: p,
    }
}

#[test]
fn an_empty_slot_answers_natively_and_counts_it() {
    let e = engine();
    let slot = Arc::new(Slot::new(PolicyKind::Batcher, 3));
    let mut c = PolicyCaller::new(e, slot.clone());
    let p = profile();
    for (q, w) in [(1, 0), (9, 10_000), (16, 49_000)] {
        let s = state(&p, q, w);
        assert_eq!(c.decide(&s), mark_policies::batcher::decide(&s));
        assert_eq!(c.last, Outcome::Native);
    }
    assert_eq!(slot.status().calls, 3);
    assert_eq!(slot.status().active, "native-default");
}

#[test]
fn the_default_component_answers_as_the_native_code_does() {
    let e = engine();
    let slot = Arc::new(Slot::new(PolicyKind::Predictor, 3));
    slot.install(validate(&e, DEFAULT_WASM, PolicyKind::Predictor, "test").expect("valid"));
    let mut c = PolicyCaller::new(e.clone(), slot.clone());
    let history = [100.0, 120.0, 150.0, 140.0, 180.0];
    let got = c.predict("m", &history, 60.0, 5).unwrap();
    assert_eq!(c.last, Outcome::Wasm);
    assert_eq!(
        got,
        mark_policies::predictor::predict(&history, 60.0, 5).unwrap()
    );

    let prov = Arc::new(Slot::new(PolicyKind::Provisioner, 3));
    prov.install(validate(&e, DEFAULT_WASM, PolicyKind::Provisioner, "test").expect("valid"));
    let mut c = PolicyCaller::new(e, prov);
    let slo = n::Slo {
        latency_ms: 100.0,
        attainment_target: 0.99,
    };
    let cat = sample_catalog();
    // two models: the 0.2.0 component gets them one by one and plans their mix as the native
    // code does
    let demand = |m: &str, f: &[f64], share: f64| n::ModelDemand {
        model: m.into(),
        forecast: f.to_vec(),
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
    let models = [demand("a", &got, 1.0), demand("b", &[30.0; 5], 0.25)];
    let forecast = mark_core::control::mix::total_forecast(&models);
    let mixed = mark_core::control::mix::mixed_catalog(&models, &cat);
    let input = mark_core::control::controller::ProvisionInput {
        forecast: &forecast,
        interval_s: 60.0,
        fleet: &[],
        catalog: &mixed,
        slo,
        models: &models,
    };
    let plan = c.provision(&input).unwrap();
    assert_eq!(c.last, Outcome::Wasm);
    assert_eq!(plan, input.native().unwrap());
    assert_eq!(
        plan,
        mark_policies::provisioner::provision_models(&models, 60.0, &[], &cat).unwrap()
    );
    assert!(!plan.targets.is_empty());
}

#[test]
fn a_swap_is_picked_up_by_the_next_call_and_rollback_restores_the_previous() {
    let e = engine();
    let slot = Arc::new(Slot::new(PolicyKind::Batcher, 3));
    let first = validate(&e, DEFAULT_WASM, PolicyKind::Batcher, "first").unwrap();
    let second = validate(&e, DEFAULT_WASM, PolicyKind::Batcher, "second").unwrap();
    assert!(second.generation > first.generation);
    slot.install(first.clone());
    let mut c = PolicyCaller::new(e, slot.clone());
    let p = profile();
    c.decide(&state(&p, 4, 0));
    assert_eq!(first.stats.calls.load(Relaxed), 1);
    slot.install(second.clone());
    c.decide(&state(&p, 4, 0));
    assert_eq!(c.last, Outcome::Wasm);
    assert_eq!(
        second.stats.calls.load(Relaxed),
        1,
        "the new generation answered"
    );
    assert_eq!(first.stats.calls.load(Relaxed), 1);
    assert_eq!(slot.status().history.len(), 2, "native default, then first");

    let back = slot.rollback().expect("something to roll back to");
    assert_eq!(back.map(|p| p.generation), Some(first.generation));
    c.decide(&state(&p, 4, 0));
    assert_eq!(first.stats.calls.load(Relaxed), 2);
    assert_eq!(
        slot.rollback().map(|p| p.is_none()),
        Some(true),
        "then the native default"
    );
    assert!(slot.rollback().is_none(), "nothing left");
}

#[test]
fn repeated_failures_of_the_current_generation_roll_the_slot_back() {
    let e = engine();
    let slot = Slot::new(PolicyKind::Batcher, 3);
    let good = validate(&e, DEFAULT_WASM, PolicyKind::Batcher, "good").unwrap();
    let bad = validate(&e, DEFAULT_WASM, PolicyKind::Batcher, "bad").unwrap();
    slot.install(good.clone());
    slot.install(bad.clone());
    // failures of another generation (a call that raced a swap) do not count
    for _ in 0..5 {
        slot.record_failure(good.generation, "stale");
    }
    assert_eq!(slot.current().unwrap().generation, bad.generation);
    slot.record_failure(bad.generation, "trap");
    slot.record_success();
    slot.record_failure(bad.generation, "trap");
    slot.record_failure(bad.generation, "trap");
    assert_eq!(
        slot.current().unwrap().generation,
        bad.generation,
        "a success reset the count"
    );
    slot.record_failure(bad.generation, "deadline");
    assert_eq!(slot.current().unwrap().generation, good.generation);
    let st = slot.status();
    assert_eq!(st.auto_rollbacks, 1);
    assert!(
        st.last_rollback_reason
            .unwrap()
            .contains("3 consecutive failed calls"),
        "names the count"
    );
}

#[test]
fn only_malformed_answers_leave_the_instance_trusted() {
    let trap = PolicyCallError::Trapped("unreachable".into());
    let slow = PolicyCallError::Deadline { ms: 2.0 };
    let bad = PolicyCallError::Malformed("malformed plan".into());
    assert!(trap.is_trap() && slow.is_trap() && !bad.is_trap());
    assert_eq!(
        slow.to_string(),
        "exceeded its deadline of 2 ms and was interrupted"
    );
    assert_eq!(trap.to_string(), "trapped: unreachable");
    assert_eq!(bad.to_string(), "malformed plan");
}
