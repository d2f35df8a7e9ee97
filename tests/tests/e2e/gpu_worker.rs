//! A worker whose instance type has its own latency curve in the catalog (a GPU type, say) gets
//! batches sized from that curve, end to end: `mark serve --cloud local` launches a `mark worker`
//! of that type, and under bursts the worker's batches stop at the largest batch its curve
//! measured (4) while the gateway's own executor, profiled to 64, runs bigger ones.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::util::*;
use mark_gateway::cloud::local::LocalCloud;
use mark_gateway::control::catalog::Catalog;
use mark_gateway::control::fleet::InstanceState;

const CATALOG: &str = r#"
[[instance]]
name = "local.gpu"
vcpus = 2
gpus = 1
memory_gib = 4
price_on_demand = 0.50
launch_seconds = 1.0
[instance.profile.mlp]
measured_on = "test curve: batches up to 4"
points = [
  { batch = 1, p50_us = 1000.0, p99_us = 1200.0 },
  { batch = 2, p50_us = 1100.0, p99_us = 1300.0 },
  { batch = 4, p50_us = 1300.0, p99_us = 1500.0 },
]
"#;

const BURST: usize = 48;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_batches_by_its_own_types_curve() {
    within(240, run()).await;
}

async fn run() {
    let repo = repo_with(&[(
        "mlp",
        "max_batch_size = 64\nslo_ms = 1000\non_deadline = \"serve\"\nexecutors = 1\nintra_threads = 1\n",
    )]);
    let (g, state_dir) = start_local_cloud(&repo, CATALOG, "gpu-worker", "1", "1").await;
    let url = format!("{}/v2/models/mlp/infer", g.base);
    let reference = Arc::new(output_f32(
        &post_json(&url, &mlp_request(&[mlp_row(9)])).await.json(),
        "probs",
    ));

    // load until the controller has launched the worker and batches run on it
    let cloud = LocalCloud::new(
        &state_dir,
        "mark",
        "mlp",
        &mark_bin(),
        &repo,
        Catalog::parse(CATALOG, "c").unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, bad) = open_loop(&url, 200.0, 1.0, &reference).await;
        assert_eq!(bad, 0, "every request answered correctly while scaling out");
        let text = metrics_of(&g.base).await;
        if metric(&text, "mark_remote_batches_total{model=\"mlp\"}") > 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no batch ran on a worker within 60 s: {:?}",
            cloud.list()
        );
    }
    let workers: Vec<_> = cloud
        .list()
        .into_iter()
        .filter(|i| i.state == InstanceState::Running)
        .collect();
    assert_eq!(workers.len(), 1, "{workers:?}");
    assert_eq!(workers[0].instance_type, "local.gpu");
    let worker = format!("http://{}", workers[0].addr);

    // bursts of 48 single-row requests at once: the queue holds more than either backend takes
    let http = client();
    let mut answers = Vec::new();
    for seed in 0..8 {
        let r = post_json(&url, &mlp_request(&[mlp_row(seed)])).await;
        answers.push(output_f32(&r.json(), "probs"));
    }
    let answers = Arc::new(answers);
    let before = metrics_of(&worker).await;
    let (worker_count0, worker_sum0) = batches(&before);
    for round in 0..60u32 {
        let mut calls = tokio::task::JoinSet::new();
        for k in 0..BURST as u32 {
            let (http, url) = (http.clone(), url.clone());
            let seed = (round + k) % 8;
            calls.spawn(async move {
                let r = post_json_with(&http, &url, &mlp_request(&[mlp_row(seed)])).await;
                (seed, r)
            });
        }
        while let Some(done) = calls.join_next().await {
            let (seed, r) = done.unwrap();
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
            assert_eq!(
                output_f32(&r.json(), "probs"),
                answers[seed as usize],
                "row {seed} answered with another's data"
            );
        }
    }
    let after = metrics_of(&worker).await;
    let (count, sum) = batches(&after);
    let (count, sum) = (count - worker_count0, sum - worker_sum0);
    let over_4 = count - bucket(&after, "4.0") + bucket(&before, "4.0");
    let gateway = metrics_of(&g.base).await;
    let gateway_over_4 = batches(&gateway).0 - bucket(&gateway, "4.0");
    println!(
        "worker: {count} batches, {:.2} items per batch, {over_4} above 4; gateway: {gateway_over_4} batches above 4",
        sum / count.max(1.0)
    );
    assert!(count >= 10.0, "the worker ran only {count} batches");
    assert_eq!(over_4, 0.0, "the worker ran batches beyond its curve");
    let batched = count - bucket(&after, "1.0") + bucket(&before, "1.0");
    assert!(
        batched >= 5.0,
        "the worker's batches were not batched: {sum} items in {count}, {batched} above 1"
    );
    assert!(
        gateway_over_4 > 0.0,
        "the gateway's executor, profiled to 64, never batched above 4"
    );
}

async fn metrics_of(base: &str) -> String {
    String::from_utf8_lossy(&get(&format!("{base}/metrics")).await.unwrap().body).to_string()
}

/// (batches, items) in a process's `mark_batch_size` histogram for mlp.
fn batches(text: &str) -> (f64, f64) {
    (
        metric(text, "mark_batch_size_count{model=\"mlp\"}"),
        metric(text, "mark_batch_size_sum{model=\"mlp\"}"),
    )
}

fn bucket(text: &str, le: &str) -> f64 {
    metric(
        text,
        &format!("mark_batch_size_bucket{{le=\"{le}\",model=\"mlp\"}}"),
    )
}
