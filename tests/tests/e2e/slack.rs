//! Issue 32, live: the feedback on slack on the local cloud. A load step to a plateau the fleet
//! serves far within its SLO: the headroom goes down from 1.0 in steps and settles within 10
//! control intervals of the plateau's start, and the fleet does not oscillate (launches and
//! terminations counted after it settled). Every request is answered correctly throughout.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::util::ONE_TYPE_CATALOG as CATALOG;
use crate::util::*;

/// Control interval of the test, seconds (`start_local_cloud`'s argument).
const INTERVAL_S: f64 = 2.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_headroom_settles_on_a_plateau_and_the_fleet_holds_still() {
    within(240, async {
        let repo = repo_with(&[(
            "mlp",
            "max_batch_size = 32\nslo_ms = 200\nexecutors = 1\nintra_threads = 1\n",
        )]);
        let (g, _state) =
            start_local_cloud_with(&repo, CATALOG, "slack", "2", "8", &["--slack-feedback"]).await;
        let admin = g.admin.clone().unwrap();
        let url = format!("{}/v2/models/mlp/infer", g.base);
        let reference = Arc::new(output_f32(
            &post_json(&url, &mlp_request(&[mlp_row(9)])).await.json(),
            "probs",
        ));
        // the step: 40 req/s, then a plateau of 150 req/s (60 req/s per instance) for 25 intervals
        let (ok0, bad0) = open_loop(&url, 40.0, 4.0, &reference).await;
        let plateau_s = 25.0 * INTERVAL_S;
        let load = {
            let (url, reference) = (url.clone(), reference.clone());
            tokio::spawn(async move { open_loop(&url, 150.0, plateau_s, &reference).await })
        };
        let start = Instant::now();
        // (seconds into the plateau, headroom, steps down + up, launches + terminations)
        let mut seen: Vec<(f64, f64, u64, u64)> = Vec::new();
        while start.elapsed().as_secs_f64() < plateau_s {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let c = admin_status(&admin, "t").await["control"].clone();
            let steps = &c["headroom_steps"];
            seen.push((
                start.elapsed().as_secs_f64(),
                c["headroom"].as_f64().unwrap_or(1.0),
                steps[0].as_u64().unwrap_or(0) + steps[1].as_u64().unwrap_or(0),
                c["launches"].as_u64().unwrap_or(0) + c["terminations"].as_u64().unwrap_or(0),
            ));
        }
        let (ok1, bad1) = load.await.unwrap();
        assert_eq!(bad0 + bad1, 0, "every request answered correctly");
        let text = String::from_utf8_lossy(&get(&format!("{}/metrics", g.base)).await.unwrap().body)
            .to_string();
        println!(
            "{} answers; headroom over the plateau (s, headroom, steps, changes): {seen:?}; gauge {}",
            ok0 + ok1,
            metric(&text, "mark_plan_headroom")
        );
        let lowest = seen.iter().map(|s| s.1).fold(1.0, f64::min);
        assert!(
            lowest < 1.0,
            "the plateau is served far within the SLO: the headroom goes down"
        );
        assert!(lowest >= 0.8 - 1e-9, "never below its bound: {lowest}");
        // settled within 10 intervals: from then on no step and at most one fleet change
        let settled = 10.0 * INTERVAL_S;
        let after: Vec<_> = seen.iter().filter(|s| s.0 >= settled).collect();
        let (first, last) = (after.first().unwrap(), after.last().unwrap());
        assert!(
            last.2 - first.2 <= 1,
            "the headroom keeps moving after 10 intervals: {seen:?}"
        );
        assert!(
            last.3 - first.3 <= 1,
            "the fleet changes after the headroom settled (oscillation): {seen:?}"
        );
    })
    .await;
}
