//! The Grafana dashboard (`examples/grafana/mark-dashboard.json`) parses, and every metric its
//! queries name is one that a live gateway with its control loop exports: checked against a real
//! `/metrics` scrape.

use std::time::{Duration, Instant};

use crate::util::*;
use serde_json::Value;

/// Every `mark_*` name in `expr`.
fn metric_names(expr: &str, out: &mut Vec<String>) {
    let mut rest = expr;
    while let Some(i) = rest.find("mark_") {
        let name: String = rest[i..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        rest = &rest[i + name.len()..];
        out.push(name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_names_an_exported_metric() {
    within(120, async {
        let path = root().join("examples/grafana/mark-dashboard.json");
        let dash: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
            .expect("the dashboard is JSON");
        let mut names = Vec::new();
        let panels = dash["panels"].as_array().expect("panels");
        assert!(panels.len() >= 10, "{} panels", panels.len());
        for p in panels {
            let targets = p["targets"].as_array().expect("targets");
            assert!(!targets.is_empty(), "panel {} has no query", p["title"]);
            for t in targets {
                metric_names(t["expr"].as_str().expect("expr"), &mut names);
            }
        }
        for v in dash["templating"]["list"].as_array().unwrap() {
            metric_names(v["query"].as_str().unwrap_or(""), &mut names);
        }
        names.sort();
        names.dedup();
        let catalog = std::fs::read_to_string(root().join("examples/catalog-local.toml")).unwrap();
        let repo = repo_with(&[("mlp", "max_batch_size = 8\n")]);
        let (g, _) = start_local_cloud(&repo, &catalog, "dashboard", "1", "0").await;
        for seed in 0..5 {
            let r = post_json(
                &format!("{}/v2/models/mlp/infer", g.base),
                &mlp_request(&[mlp_row(seed)]),
            )
            .await;
            assert_eq!(r.status, 200, "{}", r.error());
        }
        // the control loop's gauges appear after its first step
        let deadline = Instant::now() + Duration::from_secs(30);
        let text = loop {
            let t =
                String::from_utf8_lossy(&get(&format!("{}/metrics", g.base)).await.unwrap().body)
                    .to_string();
            if t.contains("mark_forecast_rate ") || Instant::now() > deadline {
                break t;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let missing: Vec<&String> = names
            .iter()
            .filter(|n| {
                !text.lines().any(|l| {
                    l.strip_prefix(n.as_str())
                        .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
                })
            })
            .collect();
        println!("dashboard queries name {} metrics: {names:?}", names.len());
        assert!(missing.is_empty(), "not exported: {missing:?}\n{text}");
    })
    .await;
}
