//! Scale to zero live (issue 27): `mark serve --min-instances 0` with the Lambda driver against
//! `cargo lambda watch` and `mark lambda` (the helpers of `lambda.rs`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::lambda::{invoke_until_up, options, spec, start_lambda, FUNCTION};
use crate::util::*;
use mark_gateway::exec::lambda_client::LambdaBackend;

/// Scale to zero (issue 27): `--min-instances 0` with a function priced so that an instance pays
/// above ~34 req/s. A load step launches instances; a trickle takes the fleet to zero (Lambda
/// would carry what the gateway's own executors do not); the next step brings it back; every
/// request is answered correctly throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_instances_zero_goes_to_zero_and_back_without_a_failed_request() {
    let repo = repo_with(&[(
        "mlp",
        "max_batch_size = 8\nslo_ms = 100\nexecutors = 1\nintra_threads = 1\n",
    )]);
    let (_procs, endpoint) = start_lambda(&repo);
    let dir = temp_dir("lambda-zero");
    let catalog = dir.join("catalog.toml");
    // $10 per million requests on the function; the instance bills at least 60 s: over a 5 s
    // horizon an instance ($0.10/h) costs less than the function above ~34 req/s
    std::fs::write(
        &catalog,
        "[lambda]\nmemory_mb = 2048\nprice_per_gb_s = 0.0000166667\nprice_per_request = 0.00001\ncold_start_s = 1.0\nconcurrency_limit = 4\nlatency_s = 0.003\n\n[[instance]]\nname = \"local.small\"\nvcpus = 2\nmemory_gib = 4\nprice_on_demand = 0.10\nlaunch_seconds = 0.5\ncapacity_rps = { mlp = 60 }\n",
    )
    .unwrap();
    let test = async {
        let g = Gateway::start_env(
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
                "3",
                "--control-interval",
                "1",
                "--control-window",
                "0.5",
                "--min-instances",
                "0",
                "--lambda-function",
                FUNCTION,
                "--lambda-endpoint",
                &endpoint,
            ],
            &[
                ("AWS_ACCESS_KEY_ID", "testing"),
                ("AWS_SECRET_ACCESS_KEY", "testing"),
            ],
        )
        .ready()
        .await;
        let (url, admin) = (
            format!("{}/v2/models/mlp/infer", g.base),
            g.admin.clone().unwrap(),
        );
        let reference = Arc::new(output_f32(
            &post_json(&url, &mlp_request(&[mlp_row(9)])).await.json(),
            "probs",
        ));
        let l = LambdaBackend::connect(options(&endpoint), spec(1)).await;
        invoke_until_up(&l, &[mlp_row(9)]).await;
        let fleet =
            |st: &serde_json::Value| st["control"]["fleet"].as_array().map_or(0, |f| f.len());
        let launches = |st: &serde_json::Value| st["control"]["launches"].as_u64().unwrap_or(0);

        let (ok1, bad1) = open_loop(&url, 150.0, 6.0, &reference).await;
        let st = admin_status(&admin, "t").await;
        let up = launches(&st);
        println!(
            "step: fleet {}, launches {up}, plan {}",
            fleet(&st),
            st["control"]["plan"]
        );
        assert!(up >= 1, "the step launched nothing: {}", st["control"]);

        // a trickle: the fleet goes to zero
        let trickle = tokio::spawn({
            let (url, reference) = (url.clone(), reference.clone());
            async move { open_loop(&url, 5.0, 12.0, &reference).await }
        });
        let t0 = Instant::now();
        let mut zero_after = None;
        while t0.elapsed() < Duration::from_secs(12) {
            let st = admin_status(&admin, "t").await;
            if fleet(&st) == 0 && st["control"]["lambda_share"].as_f64() == Some(1.0) {
                zero_after = Some(t0.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let (ok2, bad2) = trickle.await.unwrap();
        println!("trickle of 5 req/s: fleet at zero after {zero_after:?}");
        assert!(
            zero_after.is_some(),
            "the fleet did not go to zero under a trickle"
        );

        // the next step brings it back
        let (ok3, bad3) = open_loop(&url, 150.0, 6.0, &reference).await;
        let st = admin_status(&admin, "t").await;
        println!(
            "back: fleet {}, launches {} (were {up}); answers ok {} bad {}",
            fleet(&st),
            launches(&st),
            ok1 + ok2 + ok3,
            bad1 + bad2 + bad3
        );
        assert!(
            launches(&st) > up,
            "the fleet did not come back: {}",
            st["control"]
        );
        assert_eq!(
            bad1 + bad2 + bad3,
            0,
            "no failed request at zero or on the way back"
        );
        drop(g);
    };
    tokio::time::timeout(Duration::from_secs(120), test)
        .await
        .expect("finished within 120 s");
    let cloud = mark_gateway::cloud::local::LocalCloud::new(
        &dir.join("cloud"),
        "mark",
        "mlp",
        &mark_bin(),
        &repo,
        mark_gateway::control::catalog::Catalog::load(&catalog).unwrap(),
    );
    for i in cloud.list() {
        let _ = cloud.interrupt(&i.id);
    }
}
