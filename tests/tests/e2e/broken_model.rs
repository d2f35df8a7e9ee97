//! Issue 31, defect 3 end to end: a worker whose model fails to load keeps its port open and
//! answers readiness with 503 and `x-mark-load: 0.000` — not saturated, broken. Made here the way
//! it happens in production: a bad model pushed to the repository in S3 (moto), which the next
//! worker fetches (its digest is right: the bytes are what was pushed) and cannot load. The
//! gateway never counts it as capacity (it stays pending: running means models ready), never
//! routes a batch to it, terminates it past its pending deadline as a launch failure, and no
//! request fails meanwhile.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::util::*;
use mark_gateway::cloud::local::LocalCloud;
use mark_gateway::control::catalog::Catalog;
use mark_gateway::control::fleet::InstanceState;

const CFG: &str =
    "max_batch_size = 32\nslo_ms = 100\nexecutors = 1\nintra_threads = 1\non_deadline = \"serve\"\n";
const URL: &str = "s3://mark-broken/prod";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_model_fails_to_load_is_never_capacity_and_is_replaced_with_no_failed_request(
) {
    within(240, async {
        let (_moto, moto) = start_moto();
        let cache = temp_dir("broken-cache");
        let env = [
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_REGION", "us-east-1"),
            ("MARK_S3_ENDPOINT", moto.as_str()),
            ("MARK_REPO_CACHE", cache.to_str().unwrap()),
        ];
        let push = |dir: &std::path::Path| {
            let out = std::process::Command::new(mark_bin())
                .args(["repo", "push", dir.to_str().unwrap(), URL])
                .envs(env.iter().copied())
                .output()
                .expect("mark repo push");
            assert!(out.status.success(), "{out:?}");
        };
        let good = repo_with(&[("mlp", CFG)]);
        push(&good);
        // one local type that boots in 5 s: a pending deadline of about 15 s, long enough for a
        // worker to fetch from moto and load (and for the test to see the broken one) on a busy
        // machine
        let catalog = local_small_catalog(5.0, "mlp = 60");
        let repo = std::path::PathBuf::from(URL);
        let (g, state) = start_local_cloud_env(
            &repo,
            &catalog,
            "broken-model",
            "1",
            "2",
            &["--min-instances", "1"],
            &env,
        )
        .await;
        let admin = g.admin.clone().unwrap();
        let cloud = LocalCloud::new(
            &state,
            "mark",
            "mlp",
            &mark_bin(),
            &repo,
            Catalog::parse(&catalog, "c").unwrap(),
        );
        let running = |cloud: &LocalCloud| {
            cloud
                .list()
                .into_iter()
                .filter(|i| i.state == InstanceState::Running)
                .collect::<Vec<_>>()
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let first = loop {
            if let Some(i) = running(&cloud).into_iter().next() {
                break i;
            }
            assert!(Instant::now() < deadline, "no worker became ready");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let url = format!("{}/v2/models/mlp/infer", g.base);
        let reference = Arc::new(output_f32(
            &post_json(&url, &mlp_request(&[mlp_row(9)])).await.json(),
            "probs",
        ));

        // a model that cannot load, pushed; the worker dies; its replacement fetches the push
        let bad = temp_dir("broken-repo");
        std::fs::create_dir_all(bad.join("mlp")).unwrap();
        std::fs::write(bad.join("mlp/config.toml"), CFG).unwrap();
        std::fs::write(bad.join("mlp/model.onnx"), vec![0x5a; 4096]).unwrap();
        push(&bad);
        let load = tokio::spawn({
            let (url, reference) = (url.clone(), reference.clone());
            async move { open_loop(&url, 40.0, 15.0, &reference).await }
        });
        cloud.interrupt(&first.id).expect("kill the worker");
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut broken: Option<String> = None;
        loop {
            let listed = cloud.list();
            assert!(
                !listed
                    .iter()
                    .any(|i| i.id != first.id && i.state == InstanceState::Running),
                "a worker that cannot load its model counted as running: {listed:?}"
            );
            if broken.is_none() {
                if let Some(i) = listed
                    .iter()
                    .find(|i| i.id != first.id && i.state == InstanceState::Pending)
                {
                    // up, and saying "broken", not "busy": readiness 503 with a load of 0,
                    // and the model's own readiness names the failure (not "still loading")
                    let ready = get(&format!("http://{}/v2/health/ready", i.addr)).await;
                    let model = get(&format!("http://{}/v2/models/mlp/ready", i.addr)).await;
                    if let (Ok(r), Ok(m)) = (ready, model) {
                        let load = r
                            .headers
                            .get("x-mark-load")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_string();
                        let why = String::from_utf8_lossy(&m.body).to_string();
                        if why.contains("failed to load") {
                            println!(
                                "pending worker {} answers readiness {} (x-mark-load {load}): {why}",
                                i.id, r.status
                            );
                            assert_eq!((r.status, load.as_str()), (503, "0.000"));
                            broken = Some(i.id.clone());
                        }
                    }
                }
            }
            let st = admin_status(&admin, "t").await;
            let failures = st["control"]["launch_failures"].as_u64().unwrap_or(0);
            if let Some(b) = &broken {
                if failures >= 1 && !listed.iter().any(|i| &i.id == b) {
                    println!(
                        "broken worker {b} terminated as a launch failure ({failures}); backed off: {}",
                        st["control"]["backed_off_types"]
                    );
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the broken worker was not terminated and counted: {st}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let (ok, lost) = load.await.unwrap();
        let text = String::from_utf8_lossy(&get(&format!("{}/metrics", g.base)).await.unwrap().body)
            .to_string();
        println!(
            "{ok} answered correctly, {lost} lost or wrong; batches to workers: {}",
            metric(&text, "mark_remote_batches_total{model=\"mlp\"}")
        );
        assert_eq!(lost, 0, "no request failed");
        assert!(ok > 400, "{ok}");
    })
    .await;
}
