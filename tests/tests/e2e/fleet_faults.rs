//! A fleet worker that freezes (SIGSTOP: a hung process, or a spot instance gone without a
//! reset) under load: its batch is retried elsewhere after the remote deadline, no client waits
//! for it or gets an error, it leaves the rotation, and the control loop terminates and
//! replaces it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::util::*;
use mark_gateway::cloud::local::LocalCloud;
use mark_gateway::control::catalog::Catalog;
use mark_gateway::control::fleet::InstanceState;

use crate::util::ONE_TYPE_CATALOG as CATALOG;

fn pid_of(id: &str) -> u32 {
    // local instance ids are local-<pid>-<port>
    id.split('-')
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("local id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_worker_loses_nothing_and_is_replaced() {
    within(180, async {
        let repo = repo_with(&[(
            "mlp",
            "max_batch_size = 32\nslo_ms = 100\nexecutors = 1\nintra_threads = 1\non_deadline = \"serve\"\n",
        )]);
        let (g, state_dir) = start_local_cloud(&repo, CATALOG, "frozen", "2", "4").await;
        let admin = g.admin.clone().unwrap();
        let cloud = LocalCloud::new(&state_dir, "mark", "mlp", &mark_bin(), &repo, Catalog::parse(CATALOG, "c").unwrap());
        let url = format!("{}/v2/models/mlp/infer", g.base);
        let reference = Arc::new(output_f32(&post_json(&url, &mlp_request(&[mlp_row(9)])).await.json(), "probs"));

        // load until at least two workers run
        let warm = tokio::spawn({
            let (url, reference) = (url.clone(), reference.clone());
            async move { open_loop(&url, 150.0, 10.0, &reference).await }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        while cloud.list().iter().filter(|i| i.state == InstanceState::Running).count() < 2 {
            assert!(Instant::now() < deadline, "the fleet never reached 2 running workers");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let (ok0, bad0) = warm.await.unwrap();
        assert_eq!(bad0, 0, "{ok0} ok");

        // freeze one worker under load
        let load = tokio::spawn({
            let (url, reference) = (url.clone(), reference.clone());
            async move { open_loop(&url, 150.0, 12.0, &reference).await }
        });
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let frozen = cloud
            .list()
            .into_iter()
            .find(|i| i.state == InstanceState::Running)
            .expect("a running worker")
            .id;
        let stopped = std::process::Command::new("kill")
            .args(["-STOP", &pid_of(&frozen).to_string()])
            .status()
            .unwrap();
        assert!(stopped.success());
        let frozen_at = Instant::now();
        let (ok, bad) = load.await.unwrap();
        let text = String::from_utf8_lossy(&get(&format!("{}/metrics", g.base)).await.unwrap().body).to_string();
        let retries = metric(&text, "mark_remote_retries_total{model=\"mlp\"}")
            + metric(&text, "mark_lambda_retries_total{model=\"mlp\"}");
        println!("worker {frozen} frozen under 150 req/s: {ok} answered correctly, {bad} lost or wrong, {retries} batches retried");
        assert_eq!(bad, 0, "no request lost or wrong");
        assert!(retries >= 1.0, "the frozen worker's batch was retried: {text}");

        // out of rotation, then terminated by the control loop (grace: 10 s) and replaced
        let deadline = Instant::now() + Duration::from_secs(40);
        while cloud.list().iter().any(|i| i.id == frozen) {
            assert!(Instant::now() < deadline, "the frozen worker was never terminated");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        println!("frozen worker terminated {:?} after it froze", frozen_at.elapsed());
        let st = admin_status(&admin, "t").await;
        assert!(st["control"]["terminations"].as_u64().unwrap() >= 1, "{st}");
        drop(g);
        for i in cloud.list() {
            let _ = cloud.interrupt(&i.id);
        }
    })
    .await;
}
