//! Many models, one fleet (issue 27), live on the local cloud: two models take load steps at
//! different times; the controller plans one fleet for their mix (each model's demand,
//! forecast and planned capacity in the status, the model that drove the plan named), both
//! models' batches run on the same workers, and every request is answered correctly.

use std::sync::Arc;
use std::time::Duration;

use crate::util::*;

/// The status row of `model`.
fn row<'a>(st: &'a serde_json::Value, model: &str) -> &'a serde_json::Value {
    st["control"]["models"]
        .as_array()
        .and_then(|a| a.iter().find(|m| m["model"] == model))
        .unwrap_or_else(|| panic!("no status row for {model}: {}", st["control"]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_models_with_steps_at_different_times_share_one_fleet() {
    let cfg = "max_batch_size = 32\nslo_ms = 200\nexecutors = 1\nintra_threads = 1\n";
    let repo = repo_with(&[("mlp", cfg)]);
    // the second model: the same network under another name
    let b = repo.join("mlp_b");
    std::fs::create_dir_all(&b).unwrap();
    std::os::unix::fs::symlink(
        std::fs::canonicalize(repo.join("mlp/model.onnx")).unwrap(),
        b.join("model.onnx"),
    )
    .unwrap();
    std::fs::write(b.join("config.toml"), cfg).unwrap();
    // one type; each instance serves 60 req/s of either model alone
    let catalog = local_small_catalog(1.0, "mlp = 60, mlp_b = 60");
    let test = async {
        let (g, _state) = start_local_cloud(&repo, &catalog, "many-models", "2", "6").await;
        let admin = g.admin.clone().unwrap();
        let url = |m: &str| format!("{}/v2/models/{m}/infer", g.base);
        let reference = Arc::new(output_f32(
            &post_json(&url("mlp"), &mlp_request(&[mlp_row(9)]))
                .await
                .json(),
            "probs",
        ));

        // mlp steps up to 150 req/s while mlp_b is idle
        let (ok1, bad1) = open_loop(&url("mlp"), 150.0, 8.0, &reference).await;
        let st = admin_status(&admin, "t").await;
        let (a, b) = (row(&st, "mlp"), row(&st, "mlp_b"));
        println!(
            "step 1: mlp {a}\n        mlp_b {b}\n        why: {}",
            st["control"]["last_step_why"]
        );
        assert!(a["planned_capacity_rps"].as_f64().unwrap() > 60.0, "{a}");
        assert_eq!(a["drove_last_plan"], true);
        // the p99 the provisioner was given: mlp's answers (refused ones are misses, not
        // answers), read at the gateway's latency bucket bound over the SLO (250 ms for 200) and
        // up to 10% above it
        let p99 = a["p99_ms"].as_f64().expect("mlp's p99 measured");
        assert_eq!(a["slo_ms"].as_f64(), Some(200.0), "{a}");
        assert!(p99 > 0.0 && p99 <= 1.1 * 250.0, "{a}");
        let launches1 = st["control"]["launches"].as_u64().unwrap();
        assert!(
            launches1 >= 2,
            "the fleet scaled out for mlp: {}",
            st["control"]
        );

        // then mlp stops and mlp_b steps up: the same fleet serves it
        let (ok2, bad2) = open_loop(&url("mlp_b"), 150.0, 8.0, &reference).await;
        let st = admin_status(&admin, "t").await;
        let (a, b) = (row(&st, "mlp"), row(&st, "mlp_b"));
        println!(
            "step 2: mlp {a}\n        mlp_b {b}\n        why: {}",
            st["control"]["last_step_why"]
        );
        assert!(b["planned_capacity_rps"].as_f64().unwrap() > 60.0, "{b}");
        assert!(
            b["planned_capacity_rps"].as_f64().unwrap()
                > a["planned_capacity_rps"].as_f64().unwrap(),
            "the plan follows the model that has the load now: {a} {b}"
        );
        assert!(b["attainment"].as_f64().unwrap_or(0.0) >= 0.99, "{b}");
        let text =
            String::from_utf8_lossy(&get(&format!("{}/metrics", g.base)).await.unwrap().body)
                .to_string();
        let on_workers = |m: &str| {
            metric(
                &text,
                &format!("mark_remote_batches_total{{model=\"{m}\"}}"),
            )
        };
        println!(
            "answers ok {} bad {}; batches on workers: mlp {}, mlp_b {}; fleet {} instances, {} launches",
            ok1 + ok2,
            bad1 + bad2,
            on_workers("mlp"),
            on_workers("mlp_b"),
            st["control"]["fleet"].as_array().map_or(0, |f| f.len()),
            st["control"]["launches"]
        );
        assert_eq!(bad1 + bad2, 0, "every request answered correctly");
        // the per-model gauges
        assert!(metric(&text, "mark_model_planned_capacity_rps{model=\"mlp_b\"}") > 60.0);
        assert!(metric(&text, "mark_model_demand_rate{model=\"mlp_b\"}") > 100.0);
        assert!(
            on_workers("mlp") > 0.0 && on_workers("mlp_b") > 0.0,
            "both models ran on the fleet's workers"
        );
        // one fleet: mlp_b's step needed few launches beyond mlp's (it took over mlp's workers)
        let launches2 = st["control"]["launches"].as_u64().unwrap();
        assert!(
            launches2 <= launches1 + 2,
            "{launches1} then {launches2} launches"
        );
    };
    tokio::time::timeout(Duration::from_secs(120), test)
        .await
        .expect("the two-model test finished within 120 s");
}
