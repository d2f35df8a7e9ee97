//! Issue 29: a shared secret between the gateway and its workers (`MARK_WORKER_SECRET`). The
//! local cloud's workers inherit it; the gateway's batches carry it and run on them; a request
//! to a worker without it (anyone else on the network) is refused with 401.

use std::sync::Arc;
use std::time::Duration;

use crate::util::*;

const SECRET: &str = "0123456789abcdef-worker-secret";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_run_batches_only_for_requests_with_the_secret() {
    within(120, async {
        let repo = repo_with(&[(
            "mlp",
            "max_batch_size = 32\nslo_ms = 200\nexecutors = 1\nintra_threads = 1\n",
        )]);
        let (g, _state) = start_local_cloud_env(
            &repo,
            ONE_TYPE_CATALOG,
            "worker-secret",
            "2",
            "4",
            &[],
            &[("MARK_WORKER_SECRET", SECRET)],
        )
        .await;
        let admin = g.admin.clone().unwrap();
        let url = format!("{}/v2/models/mlp/infer", g.base);
        let reference = Arc::new(output_f32(
            &post_json(&url, &mlp_request(&[mlp_row(9)])).await.json(),
            "probs",
        ));
        let (ok, bad) = open_loop(&url, 150.0, 6.0, &reference).await;
        assert_eq!(bad, 0, "{ok} ok");
        let text =
            String::from_utf8_lossy(&get(&format!("{}/metrics", g.base)).await.unwrap().body)
                .to_string();
        let on_workers = metric(&text, "mark_remote_batches_total{model=\"mlp\"}");
        assert!(
            on_workers > 0.0,
            "batches ran on the workers with the secret"
        );
        let st = admin_status(&admin, "t").await;
        let addr = st["control"]["fleet"]
            .as_array()
            .and_then(|f| f.iter().find(|i| i["state"] == "running"))
            .and_then(|i| i["addr"].as_str())
            .expect("a running worker")
            .to_string();
        let direct = format!("http://{addr}/v2/models/mlp/infer");
        let body = serde_json::to_vec(&mlp_request(&[mlp_row(1)])).unwrap();
        let json = ("content-type", "application/json".to_string());
        let r = send("POST", &direct, std::slice::from_ref(&json), body.clone())
            .await
            .unwrap();
        assert_eq!(r.status, 401, "a request without the secret runs nothing");
        let wrong = ("x-mark-worker-secret", "not-the-secret-at-all".to_string());
        let r = send("POST", &direct, &[json.clone(), wrong], body.clone())
            .await
            .unwrap();
        assert_eq!(r.status, 401);
        let right = ("x-mark-worker-secret", SECRET.to_string());
        let r = send("POST", &direct, &[json, right], body).await.unwrap();
        assert_eq!(r.status, 200, "the gateway's header runs it");
        assert_eq!(
            r.headers
                .get("x-mark-worker-auth")
                .and_then(|v| v.to_str().ok()),
            Some("secret"),
            "a worker with a secret says so on its answers"
        );
        assert!(
            text.contains("mark_remote_open_batches_total{model=\"mlp\"} 0"),
            "the counter is exported and no batch ran on a worker without the secret"
        );
        // health stays open to probes and load balancers
        let r = get(&format!("http://{addr}/v2/health/live")).await.unwrap();
        assert_eq!(r.status, 200);
        println!("{on_workers} batches on workers with the secret; 401 without it");
        tokio::time::sleep(Duration::from_millis(10)).await;
    })
    .await;
}
