//! The Lambda backend for real: `cargo lambda watch` (from the PyPI `cargo-lambda` wheel, started
//! here on loopback) serves the Lambda runtime and Invoke APIs, our `mark lambda` binary is the
//! function behind them, and the gateway's driver calls it through `aws-sdk-lambda` with an
//! endpoint override. Then a saturated gateway spills batches to that function, and every answer
//! is still correct.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::util::*;
use mark_gateway::control::catalog::LambdaSpec;
use mark_gateway::exec::lambda_client::{LambdaBackend, LambdaOptions};
use mark_gateway::tensor::Tensor;

/// Kills its processes on drop.
pub(crate) struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The function name `cargo lambda watch --only-lambda-apis` serves.
pub(crate) const FUNCTION: &str = "_";

/// Starts `cargo lambda watch --only-lambda-apis` and `mark lambda` against it; returns the
/// processes and the Invoke endpoint.
pub(crate) fn start_lambda(repo: &std::path::Path) -> (Procs, String) {
    let mut func = Command::new(mark_bin());
    func.current_dir(root())
        .args(["lambda", "--model-repo"])
        .arg(repo);
    start_function(&mut func)
}

/// Starts `cargo lambda watch --only-lambda-apis` and `func` (a function's runtime loop: `mark
/// lambda`, or a packaged `bootstrap`) against it; returns the processes and the Invoke endpoint.
pub(crate) fn start_function(func: &mut Command) -> (Procs, String) {
    let port = free_port();
    let bin = root().join(".mark/venv/bin/cargo-lambda");
    assert!(bin.is_file(), "cargo-lambda missing: run scripts/setup.sh");
    // cargo lambda reads a Cargo.toml in its working directory; give it an empty package
    let dir = temp_dir("cargo-lambda");
    std::fs::write(
        dir.join("Cargo.toml"),
        "[package]\nname = \"mark-fn\"\nversion = \"0.1.0\"\nedition = \"2021\"\n[workspace]\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(dir.join("src/main.rs"), "fn main() {}\n").unwrap();
    let watch_log = dir.join("watch.log");
    let watch = Command::new(&bin)
        .current_dir(&dir)
        .args([
            "lambda",
            "watch",
            "--only-lambda-apis",
            "-A",
            "127.0.0.1",
            "-P",
        ])
        .arg(port.to_string())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&watch_log).unwrap())
        .spawn()
        .unwrap();
    let mut procs = Procs(vec![watch]);
    wait_for_port(port, || {
        format!(
            "cargo lambda watch did not start: {}",
            std::fs::read_to_string(&watch_log).unwrap_or_default()
        )
    });
    let func = func
        .env(
            "AWS_LAMBDA_RUNTIME_API",
            format!("http://127.0.0.1:{port}/.rt"),
        )
        .env("AWS_LAMBDA_FUNCTION_NAME", FUNCTION)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "2048")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("function.log")).unwrap())
        .spawn()
        .unwrap();
    procs.0.push(func);
    (procs, format!("http://127.0.0.1:{port}"))
}

pub(crate) fn spec(concurrency: u32) -> LambdaSpec {
    LambdaSpec {
        memory_mb: 2048.0,
        price_per_gb_s: 0.0000166667,
        price_per_request: 0.0000002,
        cold_start_s: 1.0,
        concurrency_limit: concurrency,
        latency_s: 0.002,
        payload_limit_bytes: 6 << 20,
    }
}

/// Deadline of one invocation in these tests.
const CALL: Duration = Duration::from_secs(20);

pub(crate) fn options(endpoint: &str) -> LambdaOptions {
    LambdaOptions {
        function: FUNCTION.into(),
        region: "us-east-1".into(),
        endpoint: Some(endpoint.into()),
        credentials: Some(("testing".into(), "testing".into())),
        max_attempts: 1,
    }
}

fn mlp_tensor(rows: &[Vec<f32>]) -> Tensor {
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    Tensor::from_f32("input", vec![rows.len() as i64, 784], &flat)
}

/// Invokes `rows` until the function answers (its first invocation cold-starts it: models load).
pub(crate) async fn invoke_until_up(l: &LambdaBackend, rows: &[Vec<f32>]) -> Vec<Tensor> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match l.invoke_tensors("mlp", &[mlp_tensor(rows)], CALL).await {
            Ok(o) => return o,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "no answer from the function: {e}"
                );
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}

/// `mark serve` on the local cloud (state in `dir`) with the Lambda driver pointed at
/// `endpoint`: one local type serving `capacity` req/s of mlp, at most `max_instances`, a
/// `[lambda]` section with `concurrency` slots and 3 ms warm latency, 1 s control intervals, AWS
/// credentials through the standard chain as on a real deployment. Admin token `t`.
async fn gateway_with_lambda(
    repo: &std::path::Path,
    endpoint: &str,
    dir: &std::path::Path,
    concurrency: u32,
    capacity: f64,
    max_instances: u32,
) -> Gateway {
    let catalog = dir.join("catalog.toml");
    std::fs::write(
        &catalog,
        format!("[lambda]\nmemory_mb = 2048\nprice_per_gb_s = 0.0000166667\nprice_per_request = 0.0000002\ncold_start_s = 1.0\nconcurrency_limit = {concurrency}\nlatency_s = 0.003\n\n[[instance]]\nname = \"local.small\"\nvcpus = 2\nmemory_gib = 4\nprice_on_demand = 0.10\nprice_spot = 0.04\nlaunch_seconds = 0.5\ncapacity_rps = {{ mlp = {capacity} }}\n"),
    )
    .unwrap();
    let max = max_instances.to_string();
    Gateway::start_env(
        &[
            "--model-repo",
            repo.to_str().unwrap(),
            "--admin-listen",
            "127.0.0.1:0",
            "--admin-token",
            "t",
            "--cloud",
            "local",
            "--catalog",
            catalog.to_str().unwrap(),
            "--cloud-state",
            dir.join("cloud").to_str().unwrap(),
            "--max-instances",
            &max,
            "--control-interval",
            "1",
            "--control-window",
            "0.5",
            "--lambda-function",
            FUNCTION,
            "--lambda-endpoint",
            endpoint,
        ],
        &[
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
        ],
    )
    .ready()
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn driver_invokes_mark_lambda_under_cargo_lambda_watch() {
    let repo = repo_with(&[("mlp", "max_batch_size = 32\nslo_ms = 100\n")]);
    let (_procs, endpoint) = start_lambda(&repo);
    let g = Gateway::start(&["--model-repo", repo.to_str().unwrap()])
        .ready()
        .await;
    let url = format!("{}/v2/models/mlp/infer", g.base);
    let rows: Vec<Vec<f32>> = (0..5).map(mlp_row).collect();
    let reference = output_f32(&post_json(&url, &mlp_request(&rows)).await.json(), "probs");

    let l = LambdaBackend::connect(options(&endpoint), spec(1)).await;
    let outs = invoke_until_up(&l, &rows).await;
    let probs = outs.iter().find(|t| t.name == "probs").expect("probs");
    assert_eq!(probs.shape, vec![5, 10]);
    assert_eq!(
        probs.to_f32(),
        reference,
        "Lambda equals the gateway bit for bit"
    );

    // errors come back as function errors with the reason, and the function keeps serving
    let e = l
        .invoke_tensors("nope", &[mlp_tensor(&rows)], CALL)
        .await
        .unwrap_err();
    assert!(e.contains("404") && e.contains("nope"), "{e}");
    let bad = Tensor::from_f32("input", vec![1, 3], &[1.0, 2.0, 3.0]);
    let e = l.invoke_tensors("mlp", &[bad], CALL).await.unwrap_err();
    assert!(e.contains("400"), "{e}");
    let again = l
        .invoke_tensors("mlp", &[mlp_tensor(&rows[..1])], CALL)
        .await
        .unwrap();
    let probs = again.iter().find(|t| t.name == "probs").expect("probs");
    assert_eq!(probs.to_f32(), reference[..10].to_vec());

    let calls = l.invocations.load(std::sync::atomic::Ordering::Relaxed)
        + l.failures.load(std::sync::atomic::Ordering::Relaxed);
    assert!(calls >= 4);
    let cost = l.cost();
    assert!(
        cost >= calls as f64 * 0.0000002,
        "billed per request and GB-s: {cost}"
    );
    println!(
        "Lambda: {calls} invocations, {} billed ms, ${cost:.9}",
        l.billed_ms.load(std::sync::atomic::Ordering::Relaxed)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saturated_gateway_spills_to_lambda_and_answers_everything() {
    // one executor, batches of 4, a 4 ms SLO: a burst of 128 concurrent clients saturates it
    let repo = repo_with(&[(
        "mlp",
        "max_batch_size = 4\nslo_ms = 4\nexecutors = 1\nintra_threads = 1\nqueue_capacity = 4096\non_deadline = \"serve\"\n",
    )]);
    let (_procs, endpoint) = start_lambda(&repo);
    let dir = temp_dir("spill");
    let g = gateway_with_lambda(&repo, &endpoint, &dir, 1, 150.0, 0).await;
    let url = format!("{}/v2/models/mlp/infer", g.base);
    let reference = Arc::new(output_f32(
        &post_json(&url, &mlp_request(&[mlp_row(3)])).await.json(),
        "probs",
    ));
    // warm the function up (cold start) so spilled batches do not wait for model loading
    let l = LambdaBackend::connect(options(&endpoint), spec(1)).await;
    invoke_until_up(&l, &[mlp_row(3)]).await;

    let http = client();
    let body = Arc::new(mlp_request(&[mlp_row(3)]).to_string().into_bytes());
    let mut tasks = Vec::new();
    for _ in 0..128 {
        let (http, url, body, reference) =
            (http.clone(), url.clone(), body.clone(), reference.clone());
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut bad) = (0u32, 0u32);
            for _ in 0..16 {
                let r = send_with(
                    &http,
                    "POST",
                    &url,
                    &[("content-type", "application/json".into())],
                    body.to_vec(),
                )
                .await;
                match r {
                    Ok(r) if r.status == 200 && output_f32(&r.json(), "probs") == *reference => {
                        ok += 1
                    }
                    other => {
                        eprintln!("bad: {other:?}");
                        bad += 1
                    }
                }
            }
            (ok, bad)
        }));
    }
    let (mut ok, mut bad) = (0, 0);
    for t in tasks {
        let (o, b) = t.await.unwrap();
        ok += o;
        bad += b;
    }
    let text = String::from_utf8_lossy(&get(&format!("{}/metrics", g.base)).await.unwrap().body)
        .to_string();
    let spilled = metric(&text, "mark_lambda_batches_total{model=\"mlp\"}");
    let retried = metric(&text, "mark_remote_retries_total{model=\"mlp\"}");
    // the control loop publishes Lambda's cost every window
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let st = admin_status(g.admin.as_deref().unwrap(), "t").await;
    let c = &st["control"];
    println!(
        "2048 requests from 128 clients: {ok} ok, {bad} bad; {spilled} batches spilled to Lambda, {retried} retried; Lambda share {}, cost by backend {}, $/1M requests {}",
        c["lambda_share_actual"], c["cost_by_backend"], c["dollars_per_million_requests"]
    );
    assert_eq!((ok, bad), (2048, 0), "every request answered correctly");
    assert!(spilled >= 1.0, "nothing spilled to Lambda");
    assert!(c["lambda_invocations"].as_u64().unwrap() >= 1);
    assert!(c["cost_by_backend"]["lambda"].as_f64().unwrap() > 0.0);
    assert!(c["dollars_per_million_requests"].as_f64().unwrap() > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_of_killed_workers_are_retried_on_lambda() {
    let repo = repo_with(&[(
        "mlp",
        "max_batch_size = 8\nslo_ms = 100\nexecutors = 1\nintra_threads = 1\n",
    )]);
    let (_procs, endpoint) = start_lambda(&repo);
    let dir = temp_dir("lambda-retry");
    let g = gateway_with_lambda(&repo, &endpoint, &dir, 4, 60.0, 3).await;
    let (url, admin) = (
        format!("{}/v2/models/mlp/infer", g.base),
        g.admin.clone().unwrap(),
    );
    let reference = Arc::new(output_f32(
        &post_json(&url, &mlp_request(&[mlp_row(9)])).await.json(),
        "probs",
    ));
    // warm the function so retried batches do not wait for its models to load
    let l = LambdaBackend::connect(options(&endpoint), spec(1)).await;
    invoke_until_up(&l, &[mlp_row(9)]).await;
    let load = tokio::spawn({
        let (url, reference) = (url.clone(), reference.clone());
        async move { open_loop(&url, 150.0, 10.0, &reference).await }
    });
    // once workers serve batches, reclaim the whole fleet at once
    let metrics = |base: String| async move {
        String::from_utf8_lossy(&get(&format!("{base}/metrics")).await.unwrap().body).to_string()
    };
    let deadline = Instant::now() + Duration::from_secs(8);
    while metric(
        &metrics(g.base.clone()).await,
        "mark_remote_batches_total{model=\"mlp\"}",
    ) < 20.0
    {
        assert!(Instant::now() < deadline, "no batches ran on workers");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = admin_call(
        &admin,
        "t",
        "POST",
        "fleet/interrupt",
        b"{\"share\": 1.0}".to_vec(),
    )
    .await;
    assert_eq!(r.status, 200);
    let killed = r.json()["interrupted"].as_array().unwrap().len();
    let (ok, bad) = load.await.unwrap();
    let text = metrics(g.base.clone()).await;
    let (failed, on_lambda) = (
        metric(&text, "mark_remote_retries_total{model=\"mlp\"}"),
        metric(&text, "mark_lambda_retries_total{model=\"mlp\"}"),
    );
    println!(
        "{killed} workers reclaimed under 150 req/s: {ok} answered, {bad} lost or wrong; {failed} worker batches failed, {on_lambda} of them retried on Lambda"
    );
    assert!(killed >= 1);
    assert_eq!(bad, 0, "nothing lost");
    assert!(
        failed >= 1.0,
        "no worker batch failed: the kill came between batches"
    );
    assert!(
        on_lambda >= 1.0,
        "failed batches were not retried on Lambda"
    );
    // workers outlive the gateway by design: clean up the replacements
    drop(g);
    let cloud = mark_gateway::cloud::local::LocalCloud::new(
        &dir.join("cloud"),
        "mark",
        "mlp",
        &mark_bin(),
        &repo,
        mark_gateway::control::catalog::Catalog::load(&dir.join("catalog.toml")).unwrap(),
    );
    for i in cloud.list() {
        let _ = cloud.interrupt(&i.id);
    }
}

/// Issue 25 through `mark lambda`: models whose outputs are not row-wise, invoked with distinct
/// requests of 1 to 3 rows from 16 callers at once, each answered from its own rows alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mark_lambda_answers_non_row_wise_models_exactly() {
    within(240, async {
        let repo = repo_with(&[
            ("transpose", "max_batch_size = 16\n"),
            ("reduce_batch", "max_batch_size = 16\n"),
            ("mlp", "max_batch_size = 8\n"),
        ]);
        let (_procs, endpoint) = start_lambda(&repo);
        let l = Arc::new(LambdaBackend::connect(options(&endpoint), spec(16)).await);
        invoke_until_up(&l, &[mlp_row(1)]).await;
        for model in ["transpose", "reduce_batch"] {
            let mut tasks = Vec::new();
            for c in 0..16u32 {
                let l = l.clone();
                tasks.push(tokio::spawn(async move {
                    let mut bad = 0;
                    for k in (c..200).step_by(16) {
                        let rows = crate::util::rows::rows(k);
                        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
                        let x = Tensor::from_f32("X", vec![rows.len() as i64, 4], &flat);
                        let want = crate::util::rows::expected(model, &rows);
                        match l.invoke_tensors(model, &[x], CALL).await {
                            Ok(outs) => {
                                for (name, shape, values) in &want {
                                    let t = outs.iter().find(|t| t.name == *name).expect("output");
                                    if t.shape != *shape || t.to_f32() != *values {
                                        bad += 1;
                                        eprintln!("{model} {k}: {:?} {:?}", t.shape, t.to_f32());
                                    }
                                }
                            }
                            Err(e) => {
                                bad += 1;
                                eprintln!("{model} {k}: {e}");
                            }
                        }
                    }
                    bad
                }));
            }
            let mut bad = 0;
            for t in tasks {
                bad += t.await.unwrap();
            }
            println!("mark lambda, {model}: 200 invocations, {bad} wrong");
            assert_eq!(bad, 0, "{model}");
        }
    })
    .await;
}

/// Issue 25 through the gateway's Lambda backend: an unbatchable model whose output rows are
/// the request's own (`center_batch`, 1 to 3 rows a request) spills one request per invocation,
/// every answer passes the answer check (none retried) and is the request's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbatchable_model_spills_to_lambda_one_request_per_invocation() {
    within(240, async {
        let repo = repo_with(&[(
            "center_batch",
            "max_batch_size = 16\nslo_ms = 2\nexecutors = 1\nintra_threads = 1\nqueue_capacity = 4096\non_deadline = \"serve\"\n",
        )]);
        let (_procs, endpoint) = start_lambda(&repo);
        let dir = temp_dir("spill-rows");
        let g = gateway_with_lambda(&repo, &endpoint, &dir, 4, 1000.0, 0).await;
        let l = LambdaBackend::connect(options(&endpoint), spec(1)).await;
        let deadline = Instant::now() + Duration::from_secs(60);
        while l
            .invoke_tensors(
                "center_batch",
                &[Tensor::from_f32("X", vec![1, 4], &[1.0, 2.0, 3.0, 4.0])],
                CALL,
            )
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "function never answered");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
                let (ok, bad, spilled) = crate::util::rows::exact_until(
            &g.base,
            "center_batch",
            "mark_lambda_batches_total",
            20.0,
            deadline,
        )
        .await;
        println!("center_batch: {ok} exact, {bad} wrong; {spilled} batches on Lambda");
        assert_eq!(bad, 0);
    })
    .await;
}
