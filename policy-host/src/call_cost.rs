//! `mark policy bench`: cost of policy calls, native vs WASM (median and p99 over many calls),
//! plus compile, validate, instantiate and swap times of a component.

use std::sync::Arc;
use std::time::Instant;

use mark_policies::types as n;

use super::caller::{Outcome, PolicyCaller};
use super::engine::PolicyEngine;
use super::slot::Slot;
use super::validate::{sample_catalog, validate};
use super::PolicyKind;

fn pct(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[((v.len() - 1) as f64 * 0.99) as usize])
}

fn time<F: FnMut()>(n: usize, mut f: F) -> (f64, f64) {
    for _ in 0..n / 10 {
        f();
    }
    pct((0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect())
}

/// Runs the benchmark for `bytes` (a component exporting all three kinds) and prints a table.
pub fn run(engine: &Arc<PolicyEngine>, bytes: &[u8], calls: usize) -> Result<(), String> {
    let profile: Vec<n::ProfilePoint> = [1u32, 2, 4, 8, 16, 32]
        .iter()
        .map(|&b| n::ProfilePoint {
            batch: b,
            latency_us: 30.0 + 5.0 * f64::from(b),
        })
        .collect();
    let state = n::QueueState {
        queued_items: 5,
        queued_requests: 5,
        oldest_wait_us: 200,
        slo_us: 50_000,
        arrival_rate: 20_000.0,
        max_batch: 32,
        executors: 1,
        profile: &profile,
    };
    let history: Vec<f64> = (0..1000)
        .map(|i| 200.0 + 100.0 * (f64::from(i) / 50.0).sin())
        .collect();
    let catalog = sample_catalog();
    let fleet = [n::FleetEntry {
        instance_type: "c7i.large".into(),
        market: n::Market::OnDemand,
        running: 3,
        pending: 1,
        ages_seconds: vec![600.0, 300.0, 60.0, 10.0],
    }];
    let slo = n::Slo {
        latency_ms: 100.0,
        attainment_target: 0.99,
    };
    let forecast = [300.0, 350.0, 400.0, 380.0, 360.0];

    println!("{:<40} {:>10} {:>10}", "call", "p50 µs", "p99 µs");
    let row = |name: &str, (p50, p99): (f64, f64)| println!("{name:<40} {p50:>10.2} {p99:>10.2}");
    row(
        "batcher native",
        time(calls, || {
            std::hint::black_box(mark_policies::batcher::decide(&state));
        }),
    );
    row(
        "predictor native (1000 points, h=5)",
        time(calls / 10, || {
            drop(std::hint::black_box(mark_policies::predictor::predict(
                &history, 60.0, 5,
            )))
        }),
    );
    row(
        "provisioner native (2 types)",
        time(calls / 10, || {
            drop(std::hint::black_box(mark_policies::provisioner::provision(
                &forecast, 60.0, &fleet, &catalog, slo,
            )))
        }),
    );

    let models = [mark_policies::mix::alone("m", &forecast, slo, &catalog)];
    let input = mark_core::control::controller::ProvisionInput {
        forecast: &forecast,
        interval_s: 60.0,
        fleet: &fleet,
        catalog: &catalog,
        slo,
        models: &models,
    };
    for kind in PolicyKind::ALL {
        let t = Instant::now();
        let p = validate(engine, bytes, kind, "bench").map_err(|e| format!("{kind}: {e}"))?;
        let validate_ms = t.elapsed().as_secs_f64() * 1e3;
        let slot = Arc::new(Slot::new(kind, u32::MAX));
        let t = Instant::now();
        slot.install(p.clone());
        let swap_us = t.elapsed().as_secs_f64() * 1e6;
        let mut caller = PolicyCaller::new(engine.clone(), slot.clone());
        let r = match kind {
            PolicyKind::Batcher => time(calls, || {
                std::hint::black_box(caller.decide(&state));
            }),
            PolicyKind::Predictor => time(calls / 10, || {
                drop(std::hint::black_box(caller.predict("m", &history, 60.0, 5)))
            }),
            PolicyKind::Provisioner => time(calls / 10, || {
                drop(std::hint::black_box(caller.provision(&input)))
            }),
        };
        if caller.last != Outcome::Wasm {
            return Err(format!(
                "{kind}: the WASM call did not answer: {:?}",
                caller.last
            ));
        }
        row(&format!("{kind} wasm"), r);
        // instantiation from InstancePre, what a caller pays once per generation
        let inst = time(200, || {
            let mut store = engine.store();
            drop(std::hint::black_box(p.pre.instantiate(&mut store)));
        });
        row(&format!("{kind} instantiate from InstancePre"), inst);
        println!(
            "{:<40} {:>10.2} ms (compile + checks + smoke calls); slot swap {swap_us:.2} µs",
            format!("{kind} validate"),
            validate_ms
        );
    }
    Ok(())
}
