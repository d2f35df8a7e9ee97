//! Policy hot-swap end to end: steady load, 20+ swaps of the batcher through the admin API
//! alternating two modules whose decisions are observable in the batch-size histogram, zero
//! failed or wrong answers; hostile modules refused while serving continues; admin auth.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use crate::util::*;

const TOKEN: &str = "test-token-123";

/// These tests each drive a gateway at full load; on a 2-core machine running them at once
/// starves all three, so they take turns.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/{name}.wasm", env!("OUT_DIR")))
        .expect("fixture built by tests/build.rs")
}

fn auth() -> Vec<(&'static str, String)> {
    vec![("authorization", format!("Bearer {TOKEN}"))]
}

async fn start() -> (Gateway, String) {
    start_mlp_with_admin(TOKEN).await
}

struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    bad: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// `clients` loops of single-row requests, each answer checked against the unbatched reference.
async fn steady_load(base: &str, clients: u32) -> Load {
    let url = format!("{base}/v2/models/mlp/infer");
    let mut reference = HashMap::new();
    for i in 0..clients {
        let v = post_json(&url, &mlp_request(&[mlp_row(i)])).await.json();
        reference.insert(i, output_f32(&v, "probs"));
    }
    let reference = Arc::new(reference);
    let (stop, ok, bad) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
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
                    eprintln!(
                        "bad answer: {} {}",
                        r.status,
                        String::from_utf8_lossy(&r.body)
                    );
                    bad.fetch_add(1, Relaxed);
                }
            }
        }));
    }
    Load {
        stop,
        ok,
        bad,
        tasks,
    }
}

impl Load {
    async fn finish(self) -> (u64, u64) {
        self.stop.store(true, Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        (self.ok.load(Relaxed), self.bad.load(Relaxed))
    }
}

async fn batch_hist(base: &str) -> (f64, f64, f64) {
    let text =
        String::from_utf8_lossy(&get(&format!("{base}/metrics")).await.unwrap().body).to_string();
    (
        metric(&text, "mark_batch_size_count{model=\"mlp\"}"),
        metric(&text, "mark_batch_size_bucket{le=\"1.0\",model=\"mlp\"}"),
        metric(&text, "mark_batch_size_sum{model=\"mlp\"}"),
    )
}

async fn active_sha(admin: &str) -> String {
    let r = admin_call(admin, TOKEN, "GET", "policies", vec![]).await;
    r.json()[0]["sha256"]
        .as_str()
        .unwrap_or("native")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_swap_batcher_24_times_under_load() {
    let _turn = SERIAL.lock().await;
    let (g, admin) = start().await;
    let load = steady_load(&g.base, 12).await;
    let modules = [
        ("fixed-one", fixture("fixed-one")),
        ("fill-four", fixture("fill-four")),
    ];
    let mut swap_us = Vec::new();
    let mut validate_ms = Vec::new();
    for i in 0..24 {
        let (name, bytes) = &modules[i % 2];
        let r = admin_call(&admin, TOKEN, "PUT", "policies/batcher", bytes.clone()).await;
        assert_eq!(
            r.status,
            200,
            "swap {i} to {name}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let v = r.json();
        swap_us.push(v["swap_us"].as_f64().unwrap());
        validate_ms.push(v["validate_ms"].as_f64().unwrap());
        tokio::time::sleep(Duration::from_millis(150)).await; // decisions made before the swap drain
        let (c0, ones0, s0) = batch_hist(&g.base).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (c1, ones1, s1) = batch_hist(&g.base).await;
        let (batches, singles) = (c1 - c0, ones1 - ones0);
        assert!(batches > 5.0, "swap {i}: only {batches} batches in 300 ms");
        if *name == "fixed-one" {
            let st = admin_call(&admin, TOKEN, "GET", "policies", vec![])
                .await
                .json();
            assert_eq!(
                singles, batches,
                "swap {i}: fixed-one must send batches of exactly 1; slot: {}",
                st[0]
            );
        } else {
            let mean = (s1 - s0) / batches;
            assert!(
                singles / batches < 0.2 && mean >= 3.0,
                "swap {i}: fill-four should batch ≥4: {singles}/{batches} singles, mean {mean:.2}"
            );
        }
    }
    let (ok, bad) = load.finish().await;
    assert_eq!(bad, 0, "failed or wrong answers during swaps");
    assert!(ok > 1000, "load too light: {ok}");
    swap_us.sort_by(f64::total_cmp);
    validate_ms.sort_by(f64::total_cmp);
    println!(
        "24 swaps under load: {ok} correct answers, 0 failed; swap (pointer store) p50 {:.1} µs max {:.1} µs; validate p50 {:.1} ms max {:.1} ms",
        swap_us[12], swap_us[23], validate_ms[12], validate_ms[23]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_modules_are_refused_while_serving_continues() {
    let _turn = SERIAL.lock().await;
    let (g, admin) = start().await;
    let load = steady_load(&g.base, 4).await;
    let put = |bytes: Vec<u8>| {
        let admin = admin.clone();
        async move { admin_call(&admin, TOKEN, "PUT", "policies/batcher", bytes).await }
    };
    let before = active_sha(&admin).await;
    let mut garbage = vec![0u8; 4096];
    for (i, b) in garbage.iter_mut().enumerate() {
        *b = (i * 7919 % 251) as u8;
    }
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "infinite loop",
            fixture("spin"),
            422,
            "exceeded its deadline",
        ),
        ("4 GiB allocation", fixture("hog"), 422, "refused memory"),
        ("panic", fixture("panic"), 422, "trapped"),
        (
            "imports WASI",
            fixture("wasi"),
            422,
            "imports `wasi:cli/environment@0.2.0`",
        ),
        (
            "wrong WIT version",
            fixture("v2"),
            422,
            "built against mark:policy@0.3.0; this gateway implements mark:policy@0.2.0 (and loads 0.1.0)",
        ),
        (
            "core module",
            fixture("core-module"),
            422,
            "not a component",
        ),
        ("garbage", garbage, 422, "not WebAssembly"),
        ("batch of 0", fixture("bad-answer"), 422, "malformed answer"),
        (
            "oversized",
            vec![0u8; 17 << 20],
            413,
            "exceeds the upload limit",
        ),
    ];
    for (what, bytes, status, msg) in cases {
        let t = std::time::Instant::now();
        let r = put(bytes).await;
        assert_eq!(
            r.status,
            status,
            "{what}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert!(
            r.error().contains(msg),
            "{what}: expected {msg:?} in {:?}",
            r.error()
        );
        assert_eq!(
            active_sha(&admin).await,
            before,
            "{what}: the running policy must stay"
        );
        println!(
            "{what:>18}: {status} in {:>6.1} ms: {}",
            t.elapsed().as_secs_f64() * 1e3,
            r.error()
        );
    }
    // admin authentication
    let url = format!("{admin}/admin/v1/policies");
    assert_eq!(send("GET", &url, &[], vec![]).await.unwrap().status, 401);
    let wrong = send(
        "GET",
        &url,
        &[("authorization", "Bearer nope".into())],
        vec![],
    )
    .await
    .unwrap();
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.headers["www-authenticate"], "Bearer");
    let r = send(
        "PUT",
        &format!("{admin}/admin/v1/policies/batcher"),
        &[],
        fixture("fixed-one"),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 401, "unauthenticated upload");
    assert_eq!(active_sha(&admin).await, before);
    assert_eq!(
        send(
            "PUT",
            &format!("{admin}/admin/v1/policies/nope"),
            &auth(),
            vec![]
        )
        .await
        .unwrap()
        .status,
        404
    );

    // a good upload, then the operator's rollback returns to the previous one
    let r = put(fixture("aimd-batcher")).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_ne!(active_sha(&admin).await, before);
    let r = admin_call(&admin, TOKEN, "POST", "policies/batcher/rollback", vec![]).await;
    assert_eq!(r.status, 200);
    assert_eq!(active_sha(&admin).await, before);

    let (ok, bad) = load.finish().await;
    assert_eq!(bad, 0);
    assert!(ok > 100, "serving stalled: {ok}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aimd_example_loaded_at_start_batches() {
    let _turn = SERIAL.lock().await;
    let dir = temp_dir("aimd");
    let path = dir.join("aimd.wasm");
    std::fs::write(&path, fixture("aimd-batcher")).unwrap();
    let repo = repo_with(&[(
        "mlp",
        "max_batch_size = 32\nslo_ms = 50\non_deadline = \"serve\"\n",
    )]);
    let policy = format!("batcher={}", path.display());
    let g = Gateway::start(&[
        "--model-repo",
        repo.to_str().unwrap(),
        "--admin-listen",
        "127.0.0.1:0",
        "--admin-token",
        TOKEN,
        "--policy",
        &policy,
    ])
    .ready()
    .await;
    let admin = g.admin.clone().unwrap();
    let load = steady_load(&g.base, 16).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (ok, bad) = load.finish().await;
    assert_eq!(bad, 0);
    let (count, _, sum) = batch_hist(&g.base).await;
    let st = admin_call(&admin, TOKEN, "GET", "policies", vec![])
        .await
        .json();
    assert!(
        st[0]["source"].as_str().unwrap().ends_with("aimd.wasm"),
        "{st}"
    );
    assert!(st[0]["calls"].as_u64().unwrap() > 10);
    assert_eq!(st[0]["failures"], 0);
    println!(
        "aimd: {ok} answers, mean batch {:.2}, policy p50 {} µs",
        sum / count,
        st[0]["p50_us"]
    );
    assert!(sum / count > 1.5, "AIMD never grew the batch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_policy_hot_loads_and_takes_effect() {
    let _turn = SERIAL.lock().await;
    let (g, admin) = start().await;
    let load = steady_load(&g.base, 16).await;
    let r = admin_call(
        &admin,
        TOKEN,
        "PUT",
        "policies/batcher",
        fixture("c-batcher"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (c0, _, s0) = batch_hist(&g.base).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (c1, _, s1) = batch_hist(&g.base).await;
    let (ok, bad) = load.finish().await;
    assert_eq!(bad, 0);
    let st = admin_call(&admin, TOKEN, "GET", "policies", vec![])
        .await
        .json();
    assert_eq!(st[0]["failures"], 0, "{}", st[0]);
    assert!(st[0]["calls"].as_u64().unwrap() > 10);
    let mean = (s1 - s0) / (c1 - c0);
    println!(
        "C batcher: {ok} answers, mean batch {mean:.2}, call p50 {} µs",
        st[0]["p50_us"]
    );
    // it sends once a quarter of the max batch (32 / 4 = 8) is queued
    assert!(
        mean >= 4.0,
        "C policy decisions not in effect: mean batch {mean:.2}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_that_always_waits_cannot_starve_a_request() {
    let _turn = SERIAL.lock().await;
    let (g, admin) = start().await;
    // fill-four waits until 4 items are queued: a lone request would wait forever
    let r = admin_call(
        &admin,
        TOKEN,
        "PUT",
        "policies/batcher",
        fixture("fill-four"),
    )
    .await;
    assert_eq!(r.status, 200);
    let t = std::time::Instant::now();
    let r = post_json(
        &format!("{}/v2/models/mlp/infer", g.base),
        &mlp_request(&[mlp_row(3)]),
    )
    .await;
    let took = t.elapsed();
    assert_eq!(r.status, 200);
    // SLO is 50 ms: the host sends it once it has waited that long
    assert!(
        took < Duration::from_millis(500),
        "lone request took {took:?}"
    );
    let text = String::from_utf8_lossy(&get(&format!("{}/metrics", g.base)).await.unwrap().body)
        .to_string();
    assert!(
        metric(&text, "mark_batch_forced_total{model=\"mlp\"}") >= 1.0,
        "{text}"
    );
    println!("lone request under an always-wait policy answered in {took:?}");
}
