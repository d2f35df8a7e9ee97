//! The operations page (`/admin/`) in a real browser: headless Chromium (Debian's package,
//! installed by scripts/test.sh) loads it against `mark serve --cloud local` after a load step,
//! signs in with the token, and the DOM it renders holds every chart with data, the fleet and the
//! policies; a screenshot is written next to it. Without the token the page shows the sign-in form
//! and no data, and the status it reads needs the cookie or the token (401 otherwise); the cookie
//! never authorizes a change.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use crate::util::*;

use crate::util::ONE_TYPE_CATALOG as CATALOG;

/// Chromium's DOM after the page ran for `budget_ms` of virtual time (and a screenshot).
fn chromium(url: &str, budget_ms: u32, screenshot: Option<&std::path::Path>) -> String {
    let profile = temp_dir("chromium");
    let mut cmd = Command::new("chromium");
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1500",
        &format!("--virtual-time-budget={budget_ms}"),
        &format!("--user-data-dir={}", profile.display()),
    ]);
    match screenshot {
        Some(p) => cmd.arg(format!("--screenshot={}", p.display())),
        None => cmd.arg("--dump-dom"),
    };
    let out = Command::new("timeout")
        .arg("60")
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .arg(url)
        .output()
        .expect("run chromium (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_the_fleet_live_and_only_with_the_token() {
    within(240, async {
        // a second model that sorts first and gets no traffic (issue 25: the charts showed the
        // first model's latency and batches, empty while another model carried the load)
        let repo = repo_with(&[
            (
                "mlp",
                "max_batch_size = 32\nslo_ms = 100\nexecutors = 1\nintra_threads = 1\n",
            ),
            ("center_batch", "max_batch_size = 8\n"),
        ]);
        let (g, _) = start_local_cloud_with(
            &repo,
            CATALOG,
            "ops-page",
            "2",
            "4",
            &["--control-model", "mlp"],
        )
        .await;
        let admin = g.admin.clone().unwrap();
        let url = format!("{}/v2/models/mlp/infer", g.base);
        let reference = Arc::new(output_f32(
            &post_json(&url, &mlp_request(&[mlp_row(9)])).await.json(),
            "probs",
        ));
        // a load step: the controller launches workers; load goes on while the browser looks
        let (ok, bad) = open_loop(&url, 150.0, 8.0, &reference).await;
        assert_eq!(bad, 0, "{ok} ok");
        let (u, r) = (url.clone(), reference.clone());
        let background = tokio::spawn(async move { open_loop(&u, 100.0, 60.0, &r).await });
        let chromium = |url: String, budget: u32, shot: Option<std::path::PathBuf>| {
            tokio::task::spawn_blocking(move || chromium(&url, budget, shot.as_deref()))
        };

        // without the token: the sign-in form, no data
        let dom = chromium(format!("{admin}/admin/"), 4000, None)
            .await
            .unwrap();
        assert!(dom.contains("MArk-rs operations"), "{dom}");
        assert!(
            dom.contains(r#"<form id="login" method="post" action="/admin/login">"#),
            "the form shows: {dom}"
        );
        assert!(
            dom.contains(r#"<main id="app" hidden="">"#),
            "no data shown: {dom}"
        );
        assert!(
            !dom.contains("local.small"),
            "no fleet data without the token"
        );

        // signed in with the token: every chart has data
        let dom = chromium(format!("{admin}/admin/#token=t"), 12000, None)
            .await
            .unwrap();
        assert!(dom.contains(r#"<main id="app">"#), "signed in: {dom}");
        assert!(dom.contains(r#"<form id="login" method="post" action="/admin/login" hidden="">"#));
        for chart in ["c-load", "c-fleet", "c-att", "c-lat", "c-batch", "c-cost"] {
            let at = dom
                .find(&format!("id=\"{chart}\""))
                .unwrap_or_else(|| panic!("{chart} missing"));
            let svg = &dom[at..at + dom[at..].find("</svg>").expect("svg end")];
            let points = svg.matches("<polyline").count();
            assert!(
                points >= 1 && svg.contains("points=\""),
                "{chart} has no lines: {svg}"
            );
            // at least two samples drawn in the first line
            let first = svg
                .split("points=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            assert!(first.split(' ').count() >= 2, "{chart}: {first}");
        }
        assert!(
            dom.contains("local.small"),
            "fleet table and chart legend name the type"
        );
        assert!(dom.contains("▲"), "a launch is marked on the fleet chart");
        assert!(dom.contains("<td>batcher</td>"), "policies table");
        let n: usize = dom
            .split(r#"<b id="t-n">"#)
            .nth(1)
            .and_then(|s| s.split('<').next())
            .and_then(|s| s.parse().ok())
            .expect("instances tile");
        assert!(n >= 1, "instances tile shows the fleet: {n}");
        // the last control step says why, in its figures
        let why = dom
            .split(r#"<p class="legend" id="why">"#)
            .nth(1)
            .and_then(|s| s.split('<').next())
            .expect("why line");
        assert!(why.contains("req/s"), "the last step's why: {why}");
        // a page opened now draws the last minutes at once (the server's 2 s samples), not
        // one point per poll from here on: one poll's worth of virtual time shows several points
        let dom = chromium(format!("{admin}/admin/#token=t"), 1500, None)
            .await
            .unwrap();
        let at = dom.find("id=\"c-load\"").expect("c-load");
        let first = dom[at..]
            .split("points=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap_or("");
        assert!(
            first.split(' ').filter(|p| !p.is_empty()).count() >= 4,
            "the backlog seeds the chart on load: {first:?}"
        );
        let history = format!("{admin}/admin/v1/status/history");
        assert_eq!(get(&history).await.unwrap().status, 401);
        let h = admin_call(&admin, "t", "GET", "status/history", vec![])
            .await
            .json();
        let samples = h.as_array().expect("an array");
        assert!(samples.len() >= 4, "{} samples", samples.len());
        assert!(
            samples.last().unwrap()["control"]["fleet"].is_array(),
            "{h}"
        );
        // after the load has stopped, a page opened now still draws latency and batch sizes from
        // the backlog, labels a sub-cent cost axis legibly, and shows each model's batching
        background.abort();
        tokio::time::sleep(Duration::from_secs(5)).await;
        let dom = chromium(format!("{admin}/admin/#token=t"), 1500, None)
            .await
            .unwrap();
        for chart in ["c-lat", "c-batch"] {
            let at = dom.find(&format!("id=\"{chart}\"")).expect(chart);
            let svg = &dom[at..at + dom[at..].find("</svg>").expect("svg end")];
            let drawn = svg
                .split("points=\"")
                .skip(1)
                .map(|s| {
                    s.split('"')
                        .next()
                        .unwrap_or("")
                        .split(' ')
                        .filter(|p| !p.is_empty())
                        .count()
                })
                .max()
                .unwrap_or(0);
            assert!(drawn >= 2, "{chart} is empty after the load stopped: {svg}");
        }
        let at = dom.find("id=\"c-cost\"").expect("c-cost");
        let svg = &dom[at..at + dom[at..].find("</svg>").expect("svg end")];
        assert!(!svg.contains(">0.00<"), "cost axis labels read 0.00: {svg}");
        assert!(
            dom.contains("<td>one request per run</td>") && dom.contains("<td>batches ≤ 32</td>"),
            "models table shows batching modes"
        );
        // a policy's name in the swap history is whole (only hashes are shortened)
        assert!(
            dom.contains("native-default"),
            "swap history names the native default"
        );
        let shot = temp_dir("ops-shot").join("ops.png");
        chromium(format!("{admin}/admin/#token=t"), 12000, Some(shot.clone()))
            .await
            .unwrap();
        let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
        let render = dom
            .split(r#"<span id="render-ms">"#)
            .nth(1)
            .and_then(|s| s.split('<').next())
            .unwrap_or("")
            .to_string();
        println!(
            "fleet {n} instances; page {} bytes; {render}; screenshot {} ({size} bytes)",
            mark_gateway::api::admin::ops::PAGE.len(),
            shot.display()
        );
        assert!(
            render.starts_with("render "),
            "the page times its renders: {render}"
        );
        assert!(size > 10_000, "screenshot written");

        // the status the page reads: 401 without cookie or token; the cookie reads but never writes
        let status = format!("{admin}/admin/v1/status");
        assert_eq!(get(&status).await.unwrap().status, 401);
        let login_url = format!("{admin}/admin/login");
        let form = [(
            "content-type",
            "application/x-www-form-urlencoded".to_string(),
        )];
        let login = |token: &str| {
            send(
                "POST",
                &login_url,
                &form,
                format!("token={token}").into_bytes(),
            )
        };
        assert_eq!(login("wrong").await.unwrap().status, 401);
        let ok = login("t").await.unwrap();
        assert_eq!(ok.status, 204);
        let set = ok
            .headers
            .get("set-cookie")
            .expect("cookie")
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            set.contains("HttpOnly")
                && set.contains("SameSite=Strict")
                && set.contains("Path=/admin"),
            "{set}"
        );
        let cookie = set.split(';').next().unwrap().to_string();
        assert!(
            !cookie.ends_with("=t"),
            "the cookie is a session, not the token: {cookie}"
        );
        let r = send("GET", &status, &[("cookie", cookie.clone())], vec![])
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        // the token itself as a cookie reads nothing
        let r = send("GET", &status, &[("cookie", "mark_admin=t".into())], vec![])
            .await
            .unwrap();
        assert_eq!(r.status, 401, "the token is not a session");
        let r = send(
            "POST",
            &format!("{admin}/admin/v1/policies/batcher/rollback"),
            &[("cookie", cookie.clone())],
            vec![],
        )
        .await
        .unwrap();
        assert_eq!(r.status, 401, "a cookie never authorizes a change");
        // logout ends the session
        let r = send(
            "POST",
            &format!("{admin}/admin/logout"),
            &[("cookie", cookie.clone())],
            vec![],
        )
        .await
        .unwrap();
        assert_eq!(r.status, 204);
        let r = send("GET", &status, &[("cookie", cookie)], vec![])
            .await
            .unwrap();
        assert_eq!(r.status, 401, "logged out");
        // failed sign-ins are throttled past 10 a minute (1 failed above; a minute boundary
        // in between restarts the count, hence up to 25 tries)
        let mut codes = Vec::new();
        for _ in 0..25 {
            let c = login("wrong").await.unwrap().status;
            codes.push(c);
            if c == 429 {
                break;
            }
        }
        assert_eq!(codes.last(), Some(&429), "{codes:?}");
        assert!(codes.len() >= 10, "not before 10 failures: {codes:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    })
    .await;
}
