//! `mark serve --cloud ec2` end to end on moto: the control loop launches through the real
//! `aws-sdk-ec2`; moto's instances have invented 10.x addresses that must never be contacted, so
//! the gateway routes by each instance's `mark:addr` tag (`--ec2-addr-from-tag`) and this test
//! plays the cloud's boot: it starts a loopback `mark worker` for each launch and tags the
//! instance with its address — except the first, which "never boots". The gateway must route
//! only to real workers, lose no request, and terminate the launch that never served at its
//! pending deadline (issue 31's "tried live": 35 launches, 30 terminated, 37% refused). The
//! spot prices it plans with are read live from DescribeSpotPriceHistory (issue 30).

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;

const CATALOG: &str = r#"
[[instance]]
name = "c5.large"
vcpus = 2
memory_gib = 4
price_on_demand = 0.085
price_spot = 0.035
launch_seconds = 2.0
capacity_rps = { mlp = 60 }
"#;

struct Workers(Vec<Child>);

impl Drop for Workers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_moto_routes_only_to_real_workers_and_reaps_a_launch_that_never_serves() {
    within(180, async {
        let (_moto, endpoint) = start_moto();
        let repo = repo_with(&[(
            "mlp",
            "max_batch_size = 32\nslo_ms = 100\nexecutors = 1\nintra_threads = 1\non_deadline = \"serve\"\n",
        )]);
        let dir = temp_dir("ec2-serve");
        let catalog = dir.join("catalog.toml");
        std::fs::write(&catalog, CATALOG).unwrap();
        let creds = [
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_REGION", "us-east-1"),
        ];
        let g = Gateway::start_env(
            &[
                "--model-repo", repo.to_str().unwrap(),
                "--admin-listen", "127.0.0.1:0", "--admin-token", "t",
                "--cloud", "ec2", "--fleet", "e2e",
                "--ec2-endpoint", &endpoint, "--ec2-image-id", "ami-0abcdef1234567890",
                "--ec2-addr-from-tag",
                "--catalog", catalog.to_str().unwrap(),
                "--control-interval", "2", "--control-window", "0.5", "--max-instances", "3",
                "--spot-price-interval", "10",
            ],
            &creds,
        )
        .ready()
        .await;
        let admin = g.admin.clone().unwrap();
        let conf = mark_gateway::aws_sdk::sdk_config(
            "us-east-1",
            Some(&endpoint),
            Some(&("testing".to_string(), "testing".to_string())),
            1,
        )
        .await;
        let ec2 = aws_sdk_ec2::Client::new(&conf);
        let url = format!("{}/v2/models/mlp/infer", g.base);
        let reference = std::sync::Arc::new(output_f32(
            &post_json(&url, &mlp_request(&[mlp_row(9)])).await.json(),
            "probs",
        ));
        let load = tokio::spawn({
            let (url, reference) = (url.clone(), reference.clone());
            async move { open_loop(&url, 150.0, 30.0, &reference).await }
        });
        let mut workers = Workers(Vec::new());
        let mut booted: HashMap<String, String> = HashMap::new();
        let mut broken: Option<String> = None;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = ec2
                .describe_instances()
                .filters(aws_sdk_ec2::types::Filter::builder().name("tag:mark:fleet").values("e2e").build())
                .send()
                .await
                .unwrap();
            let mut broken_gone = false;
            for i in out.reservations().iter().flat_map(|r| r.instances()) {
                let id = i.instance_id().unwrap().to_string();
                let state = i.state().and_then(|s| s.name()).map(|n| n.as_str().to_string()).unwrap_or_default();
                if broken.as_deref() == Some(id.as_str()) {
                    broken_gone = state == "terminated" || state == "shutting-down";
                    continue;
                }
                if state != "running" && state != "pending" || booted.contains_key(&id) {
                    continue;
                }
                if broken.is_none() {
                    broken = Some(id); // the first launch never boots: no worker, no address
                    continue;
                }
                let port = free_port();
                let addr = format!("127.0.0.1:{port}");
                workers.0.push(
                    Command::new(mark_bin())
                        .args(["worker", "--listen", &addr, "--model-repo", repo.to_str().unwrap()])
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .spawn()
                        .unwrap(),
                );
                ec2.create_tags()
                    .resources(&id)
                    .tags(aws_sdk_ec2::types::Tag::builder().key("mark:addr").value(&addr).build())
                    .send()
                    .await
                    .unwrap();
                booted.insert(id, addr);
            }
            let st = admin_status(&admin, "t").await;
            let text = String::from_utf8_lossy(&get(&format!("{}/metrics", g.base)).await.unwrap().body).to_string();
            let remote = metric(&text, "mark_remote_batches_total{model=\"mlp\"}");
            let failures = st["control"]["launch_failures"].as_u64().unwrap_or(0);
            if broken_gone && failures >= 1 && remote > 0.0 {
                println!(
                    "moto: {} launches, {} booted workers, the never-booting one terminated; \
                     {remote} batches on workers",
                    st["control"]["launches"],
                    booted.len()
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "broken gone {broken_gone}, failures {failures}, remote batches {remote}: {st}"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let (ok, bad) = load.await.unwrap();
        println!("{ok} answered correctly, {bad} lost or wrong");
        assert_eq!(bad, 0, "no request lost or wrong");
        // spot prices read live (DescribeSpotPriceHistory; moto quotes $0.00001 everywhere)
        // replace the catalog's $0.035 in the status and the plan
        let st = admin_status(&admin, "t").await["control"].clone();
        let live = &st["spot_prices"]["c5.large"];
        println!("live spot price of c5.large: {live}");
        assert_eq!(live[0].as_f64(), Some(0.00001), "{st}");
        assert!(live[1].as_str().is_some_and(|az| az.starts_with("us-east-1")), "{live}");
        assert!(st["spot_prices_read_at"].as_f64().unwrap() > 0.0);
        // no --ec2-subnets: every zone of the region, looked up (not null) and no error
        assert_eq!(st["spot_price_zones"], serde_json::json!([]), "{st}");
        assert_eq!(st["spot_price_error"], "", "{st}");
        assert!(st["spot_prices_by_zone"]["c5.large"]["us-east-1a"].is_number(), "{st}");
        drop(g);
    })
    .await;
}
