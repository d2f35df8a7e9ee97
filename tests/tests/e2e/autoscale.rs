//! The control loop end to end with the local cloud: a load step makes the controller launch
//! `mark worker` instances, batches run on them, every request is answered correctly; killing
//! the workers under load loses no request (batches are retried on the gateway).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::util::*;
use mark_gateway::cloud::local::LocalCloud;
use mark_gateway::control::catalog::Catalog;

use crate::util::ONE_TYPE_CATALOG as CATALOG;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_step_scales_out_and_worker_loss_loses_nothing() {
    let repo = repo_with(&[(
        "mlp",
        "max_batch_size = 32\nslo_ms = 200\nexecutors = 1\nintra_threads = 1\n",
    )]);
    let (g, state_dir) = start_local_cloud(&repo, CATALOG, "autoscale", "2", "6").await;
    let admin = g.admin.clone().unwrap();
    let url = format!("{}/v2/models/mlp/infer", g.base);
    let reference = Arc::new(output_f32(
        &post_json(&url, &mlp_request(&[mlp_row(9)])).await.json(),
        "probs",
    ));

    // MArk's stress test compressed: steady 160 req/s, then +50% to 240 req/s (capacity per
    // instance: 60 req/s)
    let (ok1, bad1) = open_loop(&url, 160.0, 5.0, &reference).await;
    let (ok2, bad2) = open_loop(&url, 240.0, 8.0, &reference).await;
    let st = admin_status(&admin, "t").await;
    let control = &st["control"];
    println!("after the step: fleet {} instances, launches {}, history {}, forecast {}, attainment {}, $/h {}",
        control["fleet"].as_array().map_or(0, |f| f.len()), control["launches"], control["history"], control["forecast"], control["attainment"], control["dollars_per_hour"]);
    let text = String::from_utf8_lossy(&get(&format!("{}/metrics", g.base)).await.unwrap().body)
        .to_string();
    let remote = metric(&text, "mark_remote_batches_total{model=\"mlp\"}");
    println!(
        "batches on workers: {remote}; answers ok {} bad {}",
        ok1 + ok2,
        bad1 + bad2
    );
    assert_eq!(bad1 + bad2, 0, "every request answered correctly");
    assert!(
        control["launches"].as_u64().unwrap() >= 2,
        "the controller did not scale out: {control}"
    );
    assert!(remote > 0.0, "no batch ran on a worker");
    assert!(metric(&text, "mark_fleet_dollars_per_hour") > 0.0);
    let attainment = control["attainment"].as_f64().unwrap_or(0.0);
    assert!(
        attainment >= 0.99,
        "SLO attainment {attainment} fell below the 99% target during the step"
    );

    // spot interruption of 80% of the fleet under load: no request lost, replacements launched
    let cloud = LocalCloud::new(
        &state_dir,
        "mark",
        "mlp",
        &mark_bin(),
        &repo,
        Catalog::parse(CATALOG, "c").unwrap(),
    );
    let launches_before = admin_status(&admin, "t").await["control"]["launches"]
        .as_u64()
        .unwrap();
    let load = tokio::spawn({
        let (url, reference) = (url.clone(), reference.clone());
        async move { open_loop(&url, 200.0, 8.0, &reference).await }
    });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let fleet: Vec<String> = cloud.list().into_iter().map(|i| i.id).collect();
    // the operator's rehearsal endpoint: bad input first, then 80% of the fleet
    let interrupt = |body: &'static str| {
        let admin = admin.clone();
        async move {
            admin_call(
                &admin,
                "t",
                "POST",
                "fleet/interrupt",
                body.as_bytes().to_vec(),
            )
            .await
        }
    };
    for bad in ["{\"share\": 1.5}", "not json"] {
        let r = interrupt(bad).await;
        assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    }
    let killed_at = Instant::now();
    let r = interrupt("{\"share\": 0.8}").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let n_kill = r.json()["interrupted"].as_array().unwrap().len();
    // recovered = the fleet is back to its size with a replacement launched, and the sliding
    // SLO attainment is at or above the 99% target
    let (mut fleet_back, mut attainment_ok, mut lowest) = (None, None, 1.0f64);
    while killed_at.elapsed() < Duration::from_secs(20) {
        let st = admin_status(&admin, "t").await;
        let c = &st["control"];
        let running = c["fleet"]
            .as_array()
            .map_or(0, |f| f.iter().filter(|i| i["state"] == "running").count());
        let att = c["attainment"].as_f64().unwrap_or(1.0);
        lowest = lowest.min(att);
        if fleet_back.is_none()
            && c["launches"].as_u64().unwrap() > launches_before
            && running >= fleet.len()
        {
            fleet_back = Some(killed_at.elapsed());
        }
        if attainment_ok.is_none() && fleet_back.is_some() && att >= 0.99 {
            attainment_ok = Some(killed_at.elapsed());
        }
        if fleet_back.is_some() && attainment_ok.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let recovered = fleet_back;
    let (ok3, bad3) = load.await.unwrap();
    println!(
        "killed {n_kill} of {} workers under 200 req/s: {ok3} answered, {bad3} lost or wrong; fleet back to {} running after {:?}; lowest sliding attainment {lowest:.4}, at or above 99% with the fleet back after {:?}",
        fleet.len(),
        fleet.len(),
        recovered,
        attainment_ok
    );
    assert!(
        n_kill * 5 >= fleet.len() * 4,
        "at least 80% of the fleet killed"
    );
    assert!(fleet.len() >= 2, "a fleet to interrupt: {fleet:?}");
    assert_eq!(bad3, 0);
    assert!(recovered.is_some(), "no replacement came up within 20 s");
    assert!(
        attainment_ok.is_some(),
        "attainment not back at the target within 20 s"
    );
    // clean up the fleet (workers outlive the gateway by design)
    drop(g);
    for i in cloud.list() {
        let _ = cloud.interrupt(&i.id);
    }
}
