//! Shadow policies: a candidate beside the live policy never changes a live decision or answer,
//! its disagreements, traps and timeouts are reported; through the admin API: start, report,
//! metrics, promote then roll back, and the refusals (wrong kind 422, no token 401).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use crate::util::*;
use mark_gateway::policy::caller::{Outcome, PolicyCaller};
use mark_gateway::policy::engine::{PolicyEngine, PolicyLimits};
use mark_gateway::policy::shadow::Shadow;
use mark_gateway::policy::slot::Slot;
use mark_gateway::policy::validate::validate;
use mark_gateway::policy::PolicyKind;
use mark_policies::traces::Rng;
use mark_policies::types as n;

const TOKEN: &str = "shadow-token-1";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/{name}.wasm", env!("OUT_DIR")))
        .expect("fixture built by tests/build.rs")
}

fn live_caller(engine: &Arc<PolicyEngine>, bytes: &[u8]) -> (PolicyCaller, Arc<Slot>) {
    let slot = Arc::new(Slot::new(PolicyKind::Batcher, 3));
    slot.install(validate(engine, bytes, PolicyKind::Batcher, "live").expect("valid"));
    (PolicyCaller::new(engine.clone(), slot.clone()), slot)
}

fn states<'a>(rng: &mut Rng, profile: &'a [n::ProfilePoint], k: usize) -> Vec<n::QueueState<'a>> {
    (0..k)
        .map(|i| n::QueueState {
            queued_items: if i % 10 == 3 {
                7
            } else if i % 10 == 6 {
                9
            } else {
                // 7 and 9 are the bomb's triggers: only where placed above
                match (rng.uniform() * 40.0) as u32 + 1 {
                    q @ (7 | 9) => q + 1,
                    q => q,
                }
            },
            queued_requests: 1,
            oldest_wait_us: (rng.uniform() * 20_000.0) as u64,
            slo_us: 50_000,
            arrival_rate: rng.uniform() * 5_000.0,
            max_batch: 32,
            executors: 1,
            profile,
        })
        .collect()
}

async fn settle(sh: &Shadow) {
    for _ in 0..2500 {
        if sh.pending() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("the shadow thread did not catch up in 5 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_never_changes_a_live_decision_and_reports_every_difference() {
    within(120, async {
        let engine = PolicyEngine::new(PolicyLimits::default()).unwrap();
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
        let mut rng = Rng::new(7);
        let inputs = states(&mut rng, &profile, 200);
        // the same live policy twice: one slot without a shadow, one with
        let (mut plain, _) = live_caller(&engine, &fixture("fill-four"));
        let (mut watched, slot) = live_caller(&engine, &fixture("fill-four"));
        let contrary = validate(&engine, &fixture("contrary"), PolicyKind::Batcher, "c").unwrap();
        slot.shadow
            .store(Some(Shadow::start(engine.clone(), contrary)));
        for s in &inputs {
            assert_eq!(watched.decide(s), plain.decide(s), "{s:?}");
            assert_eq!(watched.last, Outcome::Wasm);
        }
        let sh = slot.shadow.load_full().unwrap();
        settle(&sh).await;
        let r = sh.report();
        println!(
            "contrary shadow: {} calls, offer cost {:.0} ns mean on the live path",
            r.head.calls, r.head.offer_ns_mean
        );
        assert_eq!((r.head.offered, r.head.skipped), (200, 0));
        assert_eq!((r.compared, r.agreements, r.disagreements), (200, 0, 200));
        assert_eq!(r.agreement_rate, Some(0.0));
        let b = r.batcher.unwrap();
        assert_eq!(b.shadow_waits, 200, "the contrary fixture always waits");
        assert_eq!(
            b.live_waits + b.live_sizes.values().sum::<u64>(),
            200,
            "every live decision is counted"
        );
        let live = slot.status();
        assert_eq!(
            (live.calls, live.failures, live.fallbacks),
            (200, 0, 0),
            "shadow calls are not the live slot's"
        );

        // a shadow that traps (queued 7) and spins (queued 9): live decisions still identical,
        // the live slot sees no failure and does not roll back; the shadow's are reported
        let bomb = validate(&engine, &fixture("bomb"), PolicyKind::Batcher, "b").unwrap();
        slot.shadow.store(Some(Shadow::start(engine.clone(), bomb)));
        let few: Vec<_> = inputs.iter().take(20).collect();
        for s in &few {
            assert_eq!(watched.decide(s), plain.decide(s), "{s:?}");
            assert_eq!(watched.last, Outcome::Wasm);
        }
        let sh = slot.shadow.load_full().unwrap();
        settle(&sh).await;
        let r = sh.report();
        assert_eq!(r.head.offered, 20);
        // 2 of each 10 inputs hit the bomb: 2 traps and 2 timeouts in 20 calls
        assert_eq!(r.head.failures, 4, "{r:?}");
        assert_eq!(r.compared + r.head.fallbacks, 20);
        assert!(r.last_failure.is_some(), "{r:?}");
        let live = slot.status();
        assert_eq!((live.failures, live.auto_rollbacks), (0, 0));
        println!(
            "bomb shadow: {} failures reported ({:?}); live slot untouched",
            r.head.failures, r.last_failure
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spinning_shadow_is_stopped_and_stays_within_its_cpu_budget() {
    within(60, async {
        let engine = PolicyEngine::new(PolicyLimits::default()).unwrap();
        let profile = [n::ProfilePoint {
            batch: 1,
            latency_us: 100.0,
        }];
        // the bomb fixture passes validation, then spins to its deadline at 9 queued items
        let nine = n::QueueState {
            queued_items: 9,
            queued_requests: 9,
            oldest_wait_us: 0,
            slo_us: 50_000,
            arrival_rate: 100.0,
            max_batch: 32,
            executors: 1,
            profile: &profile,
        };
        let (mut watched, slot) = live_caller(&engine, &fixture("fill-four"));
        let bomb = validate(&engine, &fixture("bomb"), PolicyKind::Batcher, "b").unwrap();
        slot.shadow.store(Some(Shadow::start(engine.clone(), bomb)));
        let t = std::time::Instant::now();
        for _ in 0..200 {
            watched.decide(&nine);
            assert_eq!(watched.last, Outcome::Wasm);
        }
        let live_s = t.elapsed();
        let sh = slot.shadow.load_full().unwrap();
        settle(&sh).await;
        let r = sh.report();
        println!(
            "spinning shadow: {} calls, stopped: {:?}; 200 live decisions in {live_s:?}",
            r.head.calls, r.stopped
        );
        assert!(r.stopped.is_some(), "{r:?}");
        assert_eq!(r.head.calls, 5, "stopped after 5 deadlines in a row: {r:?}");
        assert_eq!(slot.status().failures, 0, "the live slot is untouched");
    })
    .await;
}

async fn start_gateway() -> (Gateway, String) {
    start_mlp_with_admin(TOKEN).await
}

/// `clients` loops of single-row requests for `secs`, each answer checked against the row's
/// answer alone: (ok, wrong or failed).
async fn load(base: &str, clients: u32, secs: f64) -> (u64, u64) {
    let url = format!("{base}/v2/models/mlp/infer");
    let mut reference = HashMap::new();
    for i in 0..clients {
        let v = post_json(&url, &mlp_request(&[mlp_row(i)])).await.json();
        reference.insert(i, output_f32(&v, "probs"));
    }
    let reference = Arc::new(reference);
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, bad) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut tasks = Vec::new();
    for i in 0..clients {
        let (url, stop, ok, bad, reference) = (
            url.clone(),
            stop.clone(),
            ok.clone(),
            bad.clone(),
            reference.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let body = mlp_request(&[mlp_row(i)]);
            let http = client();
            while !stop.load(Relaxed) {
                let r = post_json_with(&http, &url, &body).await;
                if r.status == 200 && output_f32(&r.json(), "probs") == reference[&i] {
                    ok.fetch_add(1, Relaxed);
                } else {
                    bad.fetch_add(1, Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    (ok.load(Relaxed), bad.load(Relaxed))
}

async fn policies(admin: &str) -> serde_json::Value {
    admin_call(admin, TOKEN, "GET", "policies", vec![])
        .await
        .json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_through_the_admin_api_report_promote_and_roll_back() {
    within(240, async {
        let (g, admin) = start_gateway().await;
        let live_sha = policies(&admin).await[0]["sha256"].clone();
        assert!(live_sha.is_string(), "the embedded default runs live");

        // refusals: no token, wrong kind, unknown mode; the live policy stays
        let url = format!("{admin}/admin/v1/policies/batcher?mode=shadow");
        let r = send("PUT", &url, &[], fixture("contrary")).await.unwrap();
        assert_eq!(r.status, 401);
        let r = send("GET", &format!("{admin}/admin/v1/policies/batcher/shadow"), &[], vec![])
            .await
            .unwrap();
        assert_eq!(r.status, 401);
        let r = admin_call(&admin, TOKEN, "PUT", "policies/predictor?mode=shadow", fixture("contrary")).await;
        assert_eq!(r.status, 422, "{}", r.error());
        assert!(r.error().contains("predictor"), "{}", r.error());
        let r = admin_call(&admin, TOKEN, "PUT", "policies/batcher?mode=shade", fixture("contrary")).await;
        assert_eq!(r.status, 400, "{}", r.error());
        let r = admin_call(&admin, TOKEN, "GET", "policies/batcher/shadow", vec![]).await;
        assert_eq!(r.status, 404, "none runs yet");

        // the contrary batcher in shadow: live answers and batching unchanged
        let r = admin_call(&admin, TOKEN, "PUT", "policies/batcher?mode=shadow", fixture("contrary")).await;
        assert_eq!(r.status, 200, "{}", r.error());
        let shadow_sha = r.json()["sha256"].clone();
        let p = policies(&admin).await;
        assert_eq!(p[0]["sha256"], live_sha, "the live batcher is unchanged");
        assert_eq!(p[0]["shadow"]["sha256"], shadow_sha);
        let (ok, bad) = load(&g.base, 8, 3.0).await;
        assert!(ok > 100, "{ok} answers");
        assert_eq!(bad, 0, "wrong or failed answers with a shadow running");
        let metrics = String::from_utf8_lossy(&get(&format!("{}/metrics", g.base)).await.unwrap().body).to_string();
        // were the contrary live, every batch would wait until the SLO forces it out
        assert_eq!(metric(&metrics, "mark_batch_forced_total{model=\"mlp\"}"), 0.0);
        let r = admin_call(&admin, TOKEN, "GET", "policies/batcher/shadow", vec![]).await;
        assert_eq!(r.status, 200);
        let rep = r.json();
        let calls = rep["calls"].as_u64().unwrap();
        assert!(calls > 10, "{rep}");
        assert_eq!(rep["agreements"], 0, "{rep}");
        assert_eq!(rep["disagreements"], rep["compared"], "{rep}");
        assert_eq!(rep["batcher"]["shadow_waits"], rep["compared"], "{rep}");
        println!(
            "shadow under load: {ok} answers, {calls} shadow calls, skipped {}, offer {:.0} ns mean",
            rep["skipped"], rep["offer_ns_mean"].as_f64().unwrap()
        );
        let metrics = String::from_utf8_lossy(&get(&format!("{}/metrics", g.base)).await.unwrap().body).to_string();
        assert_eq!(
            metric(&metrics, "mark_policy_shadow_disagreements_total{kind=\"batcher\"}"),
            rep["disagreements"].as_f64().unwrap()
        );
        assert_eq!(metric(&metrics, "mark_policy_shadow_active{kind=\"batcher\"}"), 1.0);

        // promote: it goes live through the swap; roll back restores the original
        let r = admin_call(&admin, TOKEN, "POST", "policies/batcher/shadow/promote", vec![]).await;
        assert_eq!(r.status, 200, "{}", r.error());
        let p = policies(&admin).await;
        assert_eq!(p[0]["sha256"], shadow_sha);
        assert_eq!(p[0]["history"][0], live_sha);
        assert!(p[0]["shadow"].is_null());
        let r = admin_call(&admin, TOKEN, "GET", "policies/batcher/shadow", vec![]).await;
        assert_eq!(r.status, 404);
        let r = admin_call(&admin, TOKEN, "POST", "policies/batcher/rollback", vec![]).await;
        assert_eq!(r.status, 200, "{}", r.error());
        assert_eq!(policies(&admin).await[0]["sha256"], live_sha);
        let (ok, bad) = load(&g.base, 4, 1.0).await;
        assert!(ok > 10 && bad == 0, "{ok} ok, {bad} bad after the rollback");

        // a dropped shadow is gone
        let r = admin_call(&admin, TOKEN, "PUT", "policies/batcher?mode=shadow", fixture("fill-four")).await;
        assert_eq!(r.status, 200);
        let r = admin_call(&admin, TOKEN, "DELETE", "policies/batcher/shadow", vec![]).await;
        assert_eq!(r.status, 200, "{}", r.error());
        assert!(policies(&admin).await[0]["shadow"].is_null());
    })
    .await;
}
