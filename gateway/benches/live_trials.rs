//! What recording a trace and running a shadow policy add to the live path, per call, measured
//! in-process (so a noisy VM's steal time, which swamps an end-to-end comparison of a few
//! percent, does not): `trace::arrival` with nothing recording and while a recording runs (its
//! writer thread draining to a temporary directory), and a batcher decision through a policy
//! slot (the embedded default component) without and with a shadow beside it.
//!
//! `cargo bench -p mark-gateway --bench live_trials` prints ns per call. Not a test: nothing is
//! asserted about speed. Compare with the request path's cost per request in
//! docs/benchmarks.md (tens of µs).

use std::sync::Arc;
use std::time::Instant;

use mark_gateway::policy::caller::PolicyCaller;
use mark_gateway::policy::engine::{PolicyEngine, PolicyLimits};
use mark_gateway::policy::shadow::Shadow;
use mark_gateway::policy::slot::Slot;
use mark_gateway::policy::startup::DEFAULT_POLICIES_WASM;
use mark_gateway::policy::validate::validate;
use mark_gateway::policy::PolicyKind;
use mark_policies::types as n;

fn per_call(label: &str, calls: u32, mut f: impl FnMut(u32)) -> f64 {
    // best of 5 rounds: the least disturbed by other tenants
    let best = (0..5)
        .map(|_| {
            let t = Instant::now();
            for i in 0..calls {
                f(i);
            }
            t.elapsed().as_secs_f64() * 1e9 / f64::from(calls)
        })
        .fold(f64::INFINITY, f64::min);
    println!("{label:<46} {best:>8.1} ns per call");
    best
}

fn main() {
    let calls = 200_000;
    let tracing = mark_gateway::trace::Tracing::default();
    per_call("trace::arrival, nothing recording", calls, |i| {
        tracing.arrival("mlp", 1 + i % 2)
    });
    let dir = std::env::temp_dir().join(format!("mark-bench-trace-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    tracing.start(&dir, 1 << 30).expect("recording starts");
    // paced like a busy gateway: the writer drains every 10 ms and a 65,536-record buffer;
    // 200k in one go would overflow it and measure the drop path instead
    let mut on = f64::INFINITY;
    for _ in 0..5 {
        on = on.min(per_call(
            "trace::arrival, recording (x5 rounds)",
            10_000,
            |i| tracing.arrival("mlp", 1 + i % 2),
        ));
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let st = tracing.stop().expect("was recording");
    println!(
        "  recorded {} records, {} bytes, {} dropped; best {on:.1} ns per arrival",
        st.records, st.bytes, st.dropped
    );
    let _ = std::fs::remove_dir_all(&dir);

    let engine = PolicyEngine::new(PolicyLimits::default()).expect("engine");
    let slot = Arc::new(Slot::new(PolicyKind::Batcher, 5));
    slot.install(validate(&engine, DEFAULT_POLICIES_WASM, PolicyKind::Batcher, "bench").unwrap());
    let mut caller = PolicyCaller::new(engine.clone(), slot.clone());
    let profile: Vec<n::ProfilePoint> = (0..6)
        .map(|i| n::ProfilePoint {
            batch: 1 << i,
            latency_us: 100.0 + f64::from(1u32 << i) * 20.0,
        })
        .collect();
    let state = |i: u32| n::QueueState {
        queued_items: 1 + i % 40,
        queued_requests: 1 + i % 40,
        oldest_wait_us: u64::from(i % 5000),
        slo_us: 50_000,
        arrival_rate: 2000.0,
        max_batch: 32,
        executors: 1,
        profile: &profile,
    };
    let off = per_call("batcher decide (WASM), no shadow", 100_000, |i| {
        std::hint::black_box(caller.decide(&state(i)));
    });
    let candidate = validate(&engine, DEFAULT_POLICIES_WASM, PolicyKind::Batcher, "c").unwrap();
    slot.shadow
        .store(Some(Shadow::start(engine.clone(), candidate)));
    let mut with = f64::INFINITY;
    for _ in 0..5 {
        with = with.min(per_call(
            "batcher decide (WASM), shadow beside it (x5)",
            400,
            |i| {
                std::hint::black_box(caller.decide(&state(i)));
            },
        ));
        // the shadow's queue holds 1,024 offers and its thread polls every 2 ms: let it catch up
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let r = slot.shadow.load_full().unwrap().report();
    println!(
        "  shadow: {} offered, {} skipped, {} compared, {:.0}% agreement, {:.0} ns mean offer; added {:.0} ns per decision",
        r.head.offered,
        r.head.skipped,
        r.compared,
        100.0 * r.agreement_rate.unwrap_or(0.0),
        r.head.offer_ns_mean,
        with - off
    );
}
