//! The local cloud driver against real `mark worker` processes: launch delay, readiness, adoption
//! of a running fleet by a new driver (a restarted gateway), termination, spot interruption,
//! billing.

use std::time::{Duration, Instant};

use crate::util::*;
use mark_gateway::cloud::local::LocalCloud;
use mark_gateway::control::catalog::Catalog;
use mark_gateway::control::fleet::InstanceState;
use mark_policies::types::Market;

const CATALOG: &str = r#"
[[instance]]
name = "fast.small"
vcpus = 2
memory_gib = 4
price_on_demand = 0.36
price_spot = 0.12
launch_seconds = 1.5
"#;

#[tokio::test]
async fn launch_adopt_terminate_interrupt_and_bill() {
    let repo = repo_with(&[("mlp", "max_batch_size = 8\n")]);
    let state = temp_dir("cloud");
    let catalog = Catalog::parse(CATALOG, "test catalog").unwrap();
    let cloud = LocalCloud::new(
        &state,
        "test-fleet",
        "mlp",
        &mark_bin(),
        &repo,
        catalog.clone(),
    );

    let t0 = Instant::now();
    let a = cloud.launch("fast.small", Market::OnDemand).unwrap();
    let b = cloud.launch("fast.small", Market::Spot).unwrap();
    assert!(cloud.launch("nope.large", Market::Spot).is_err());
    let l = cloud.list();
    assert_eq!(l.len(), 2);
    assert!(l.iter().all(|i| i.state == InstanceState::Pending), "{l:?}");

    // both come up after the launch delay and serve v2
    let deadline = Instant::now() + Duration::from_secs(60);
    while cloud
        .list()
        .iter()
        .any(|i| i.state != InstanceState::Running)
    {
        assert!(
            Instant::now() < deadline,
            "workers never came up: {:?}",
            cloud.list()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let up = t0.elapsed();
    assert!(
        up >= Duration::from_secs_f64(1.5),
        "came up before the launch delay: {up:?}"
    );
    for i in [&a, &b] {
        let base = format!("http://{}", i.addr);
        let deadline = Instant::now() + Duration::from_secs(60);
        while get(&format!("{base}/v2/health/ready"))
            .await
            .map(|r| r.status)
            .ok()
            != Some(200)
        {
            assert!(Instant::now() < deadline, "worker {} never ready", i.id);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let r = post_json(
            &format!("{base}/v2/models/mlp/infer"),
            &mlp_request(&[mlp_row(1)]),
        )
        .await;
        assert_eq!(r.status, 200);
    }
    println!(
        "2 workers serving {:.2} s after launch (launch delay 1.5 s)",
        up.as_secs_f64()
    );

    // a new driver on the same state (a restarted gateway) adopts the fleet from the tags
    let adopted = LocalCloud::new(
        &state,
        "test-fleet",
        "mlp",
        &mark_bin(),
        &repo,
        catalog.clone(),
    );
    let ids: Vec<String> = adopted.list().iter().map(|i| i.id.clone()).collect();
    assert_eq!(ids, vec![a.id.clone(), b.id.clone()]);
    assert!(
        LocalCloud::new(&state, "other-fleet", "mlp", &mark_bin(), &repo, catalog)
            .list()
            .is_empty(),
        "fleets are separate"
    );

    // billing: per second with a 60 s minimum, at the catalog price of each market
    let now = a.launched_at + 10.0;
    let cost = adopted.cost_so_far(now);
    let expected = (0.36 + 0.12) * 60.0 / 3600.0;
    assert!((cost - expected).abs() < 1e-3, "cost {cost} vs {expected}");
    assert!((adopted.dollars_per_hour() - 0.48).abs() < 1e-9);

    // spot interruption kills at once; termination stops the other
    adopted.interrupt(&b.id).unwrap();
    adopted.terminate(&a.id).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cloud.list().is_empty() {
        assert!(
            Instant::now() < deadline,
            "instances survived: {:?}",
            cloud.list()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        get(&format!("http://{}/v2/health/live", b.addr))
            .await
            .is_err(),
        "interrupted worker still answers"
    );
}
