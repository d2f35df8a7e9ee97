//! Issue 25: every client gets exactly its own answer. Models whose outputs are not one row per
//! input row (a reduction over the batch, a transpose, a scalar, a row-mixing model whose
//! signature looks row-wise) are found at load and run one request at a time, on the gateway's
//! executors and on fleet workers; a model forced to batch is still answered exactly; the
//! batchable models keep batching.

use std::time::{Duration, Instant};

use crate::util::rows::*;
use crate::util::*;

const FORCED: &str = "force_batching = \"test: the operator is wrong on purpose\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_row_wise_models_answer_every_concurrent_request_exactly() {
    within(240, async {
        let repo = repo_aliased(&[
            ("reduce_batch", "reduce_batch", "max_batch_size = 16\n"),
            ("transpose", "transpose", "max_batch_size = 16\n"),
            ("scalar_out", "scalar_out", "max_batch_size = 16\n"),
            ("center_batch", "center_batch", "max_batch_size = 16\n"),
            ("rowwise_anon", "rowwise_anon", "max_batch_size = 16\n"),
            (
                "reduce_forced",
                "reduce_batch",
                &format!("max_batch_size = 16\n{FORCED}"),
            ),
            (
                "filter_forced",
                "filter_rows",
                &format!("max_batch_size = 16\n{FORCED}"),
            ),
            ("mlp", "mlp", "max_batch_size = 32\nintra_threads = 1\n"),
            (
                "mlp_never",
                "mlp",
                "max_batch_size = 0\nintra_threads = 1\n",
            ),
            ("magika", "magika", "max_batch_size = 8\n"),
        ]);
        let g = Gateway::start(&[
            "--model-repo",
            repo.to_str().unwrap(),
            "--admin-listen",
            "127.0.0.1:0",
            "--admin-token",
            "t",
        ])
        .ready()
        .await;

        // decided at load: metadata, Triton's config form and the status say so
        let modes = [
            ("reduce_batch", "unbatched", "fixed leading dimension 4"),
            ("transpose", "unbatched", "fixed leading dimension 4"),
            ("scalar_out", "unbatched", "scalar"),
            ("center_batch", "unbatched", "real rows failed"),
            ("rowwise_anon", "batched", "dynamic dimension"),
            // force never overrides a shape that cannot be divided by rows
            ("reduce_forced", "unbatched", "force_batching ignored"),
            // a data-dependent row count that ONNX Runtime reports as N: forced, it is batched
            ("filter_forced", "forced", "forced by the model's config"),
            ("mlp", "batched", "same named batch dimension"),
            ("mlp_never", "unbatched", "max_batch_size = 0"),
            ("magika", "batched", "dynamic dimension"),
        ];
        for (m, mode, why) in modes {
            let meta = get(&format!("{}/v2/models/{m}", g.base))
                .await
                .unwrap()
                .json();
            assert_eq!(meta["batching"]["mode"], mode, "{m}: {meta}");
            let reason = meta["batching"]["reason"].as_str().unwrap();
            assert!(reason.contains(why), "{m}: {reason}");
            let cfg = get(&format!("{}/v2/models/{m}/config", g.base))
                .await
                .unwrap()
                .json();
            let max = cfg["max_batch_size"].as_u64().unwrap();
            assert_eq!(max == 0, mode == "unbatched", "{m}: {cfg}");
            assert_eq!(meta["max_batch_size"].as_u64().unwrap(), max);
        }
        let cfg = get(&format!("{}/v2/models/transpose/config", g.base))
            .await
            .unwrap()
            .json();
        assert_eq!(
            cfg["input"][0]["dims"],
            serde_json::json!([-1, 4]),
            "unbatched keeps dim 0"
        );
        let cfg = get(&format!("{}/v2/models/mlp/config", g.base))
            .await
            .unwrap()
            .json();
        assert_eq!(
            cfg["input"][0]["dims"],
            serde_json::json!([784]),
            "batched drops dim 0"
        );
        let st = admin_status(g.admin.as_deref().unwrap(), "t").await;
        let status_modes: Vec<(String, String)> = st["models"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["name"].as_str().unwrap().to_string(),
                    m["batching"]["mode"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        for (m, mode, _) in modes {
            assert!(
                status_modes.contains(&(m.to_string(), mode.to_string())),
                "{m} {mode}: {status_modes:?}"
            );
        }

        // 400 distinct requests each, 32 at a time: every answer is the request's own
        let t0 = Instant::now();
        // filter_forced: batches whose rows do not add up are run again request
        // by request, never broadcast
        for m in NON_ROW_WISE
            .into_iter()
            .chain(["rowwise_anon", "reduce_forced", "filter_forced"])
        {
            let (ok, bad) = exact_under_concurrency(&g.base, m, 400, 32).await;
            println!("{m}: {ok} exact, {bad} wrong or failed");
            assert_eq!((ok, bad), (400, 0), "{m}");
        }
        println!("7 x 400 requests in {:.1} s", t0.elapsed().as_secs_f64());

        // the batchable ones batch, the unbatched ones never put two requests in one run
        let rows: Vec<Vec<f32>> = (0..1).map(mlp_row).collect();
        let body = mlp_request(&rows);
        let mut tasks = Vec::new();
        for m in ["mlp", "mlp_never"] {
            for _ in 0..32 {
                let (url, body) = (format!("{}/v2/models/{m}/infer", g.base), body.clone());
                tasks.push(tokio::spawn(async move {
                    let http = client();
                    for _ in 0..20 {
                        assert_eq!(post_json_with(&http, &url, &body).await.status, 200);
                    }
                }));
            }
        }
        for t in tasks {
            t.await.unwrap();
        }
        let text = metrics_text(&g.base).await;
        let mean = |m: &str| {
            metric(&text, &format!("mark_batch_size_sum{{model=\"{m}\"}}"))
                / metric(&text, &format!("mark_batch_size_count{{model=\"{m}\"}}"))
        };
        println!(
            "mean batch: mlp {:.2}, rowwise_anon {:.2}, mlp_never {:.2}, transpose {:.2}",
            mean("mlp"),
            mean("rowwise_anon"),
            mean("mlp_never"),
            mean("transpose")
        );
        assert!(mean("mlp") > 1.0, "mlp still batches");
        // the forced model did form batches: their answers above came from the reruns
        println!("mean batch: filter_forced {:.2}", mean("filter_forced"));
        assert!(mean("filter_forced") > 1.0, "filter_forced was batched");
        for m in [
            "mlp_never",
            "transpose",
            "reduce_batch",
            "scalar_out",
            "center_batch",
        ] {
            assert_eq!(mean(m), 1.0, "{m} runs one request at a time");
        }
    })
    .await;
}

/// The fleet path: the control loop launches `mark worker`s for the unbatchable `center_batch`
/// (1 to 3 rows a request, answers with the request's rows), the gateway hands them one request
/// per batch, every answer passes the answer check (no retry) and is the request's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbatchable_model_on_fleet_workers_answers_exactly() {
    within(240, async {
        let repo = repo_with(&[(
            "center_batch",
            "max_batch_size = 16\nexecutors = 1\nintra_threads = 1\n",
        )]);
        let catalog = ONE_TYPE_CATALOG.replace("{ mlp = 60 }", "{ center_batch = 40 }");
        let (g, _) = start_local_cloud_with(
            &repo,
            &catalog,
            "rows-fleet",
            "1",
            "2",
            &["--control-model", "center_batch"],
        )
        .await;

        // load until workers have run batches of it, checking every answer
        let deadline = Instant::now() + Duration::from_secs(120);
        let (ok, bad, remote) = exact_until(
            &g.base,
            "center_batch",
            "mark_remote_batches_total",
            50.0,
            deadline,
        )
        .await;
        println!("center_batch with workers: {ok} exact, {bad} wrong; {remote} batches on workers");
        assert_eq!(bad, 0);
    })
    .await;
}
