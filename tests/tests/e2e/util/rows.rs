//! The test models whose outputs are not one row per input row (`scripts/gen_test_models.py`):
//! distinct requests for them and the answer each request must get, computed here from its own
//! rows alone (issue 25: batched, clients got answers computed over other clients' rows).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use super::*;

/// The models under test and what each computes from its own `X[n,4]`.
pub const NON_ROW_WISE: [&str; 4] = ["reduce_batch", "transpose", "scalar_out", "center_batch"];

/// Request `k`'s rows: 1 to 3 rows of 4 values, distinct for each `k`.
pub fn rows(k: u32) -> Vec<[f32; 4]> {
    (0..(k % 3 + 1))
        .map(|r| std::array::from_fn(|c| ((k * 7 + r * 3 + c as u32 * 5) % 23) as f32 * 0.5 - 3.0))
        .collect()
}

/// The v2 JSON request for `rows`.
pub fn request(rows: &[[f32; 4]]) -> serde_json::Value {
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    serde_json::json!({"inputs": [{"name": "X", "shape": [rows.len(), 4], "datatype": "FP32", "data": flat}]})
}

/// The outputs `model` must answer for `rows` alone: (name, shape, values).
pub fn expected(model: &str, rows: &[[f32; 4]]) -> Vec<(&'static str, Vec<i64>, Vec<f32>)> {
    let n = rows.len();
    let col = |c: usize| rows.iter().map(|r| r[c]).sum::<f32>();
    match model {
        // reduce_forced: the same file, forced to batch
        "reduce_batch" | "reduce_forced" => vec![("Y", vec![4], (0..4).map(col).collect())],
        // the rows whose sum is positive
        "filter_forced" => {
            let kept: Vec<&[f32; 4]> = rows
                .iter()
                .filter(|r| r.iter().sum::<f32>() > 0.0)
                .collect();
            vec![(
                "Y",
                vec![kept.len() as i64, 4],
                kept.into_iter().flatten().copied().collect(),
            )]
        }
        "transpose" => vec![(
            "Y",
            vec![4, n as i64],
            (0..4)
                .flat_map(|c| rows.iter().map(move |r| r[c]))
                .collect(),
        )],
        "scalar_out" => vec![
            ("S", vec![], vec![(0..4).map(col).sum()]),
            (
                "D",
                vec![n as i64, 4],
                rows.iter().flatten().map(|v| v * 2.0).collect(),
            ),
        ],
        "center_batch" => vec![(
            "Y",
            vec![n as i64, 4],
            rows.iter()
                .flat_map(|r| (0..4).map(move |c| r[c] - col(c) / n as f32))
                .collect(),
        )],
        "rowwise_anon" => vec![(
            "Y",
            vec![n as i64, 4],
            rows.iter().flatten().map(|v| v * 2.0 + 1.0).collect(),
        )],
        other => panic!("no expectation for {other}"),
    }
}

/// Whether the answer `v` carries exactly `want` (floats within 1e-5 relative).
pub fn matches(v: &serde_json::Value, want: &[(&str, Vec<i64>, Vec<f32>)]) -> Result<(), String> {
    for (name, shape, values) in want {
        let o = v["outputs"]
            .as_array()
            .and_then(|a| a.iter().find(|o| o["name"] == *name))
            .ok_or_else(|| format!("no output {name} in {v}"))?;
        let got_shape: Vec<i64> = o["shape"]
            .as_array()
            .map(|a| a.iter().filter_map(|d| d.as_i64()).collect())
            .unwrap_or_default();
        let got = output_f32(v, name);
        let close = got.len() == values.len()
            && got
                .iter()
                .zip(values)
                .all(|(a, b)| (a - b).abs() <= 1e-5 * (1.0 + b.abs()));
        if got_shape != *shape || !close {
            return Err(format!(
                "output {name}: got {got_shape:?} {got:?}, want {shape:?} {values:?}"
            ));
        }
    }
    Ok(())
}

/// `count` distinct requests to `model` at `url`, `clients` at a time; returns (exact, wrong
/// or failed), printing the first few failures.
pub async fn exact_under_concurrency(
    base: &str,
    model: &str,
    count: u32,
    clients: u32,
) -> (u64, u64) {
    let (ok, bad) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let url = format!("{base}/v2/models/{model}/infer");
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (url, model, ok, bad) = (url.clone(), model.to_string(), ok.clone(), bad.clone());
        tasks.push(tokio::spawn(async move {
            let http = client();
            for k in (c..count).step_by(clients as usize) {
                let rows = rows(k);
                let r = send_with(
                    &http,
                    "POST",
                    &url,
                    &[("content-type", "application/json".into())],
                    request(&rows).to_string().into_bytes(),
                )
                .await;
                let verdict = match r {
                    Ok(r) if r.status == 200 => matches(&r.json(), &expected(&model, &rows)),
                    Ok(r) => Err(format!(
                        "{}: {}",
                        r.status,
                        String::from_utf8_lossy(&r.body)
                    )),
                    Err(e) => Err(e.to_string()),
                };
                match verdict {
                    Ok(()) => ok.fetch_add(1, Relaxed),
                    Err(e) => {
                        if bad.fetch_add(1, Relaxed) < 5 {
                            eprintln!("{model} request {k}: {e}");
                        }
                        0
                    }
                };
            }
        }));
    }
    for t in tasks {
        t.await.expect("client task");
    }
    (ok.load(Relaxed), bad.load(Relaxed))
}

/// Rounds of 400 distinct requests to `model` (48 at a time) until the counter `series` (a
/// per-model counter of remote batches) reaches `at_least`, each answer checked, no backend answer
/// refused by the answer check (`mark_remote_retries_total` stays 0). Returns (exact, wrong or
/// failed, the counter). Fails past `deadline`.
pub async fn exact_until(
    base: &str,
    model: &str,
    series: &str,
    at_least: f64,
    deadline: std::time::Instant,
) -> (u64, u64, f64) {
    let (mut ok, mut bad, mut seen) = (0, 0, 0.0);
    while seen < at_least {
        assert!(
            std::time::Instant::now() < deadline,
            "{series} for {model} reached only {seen}"
        );
        let (o, b) = exact_under_concurrency(base, model, 400, 48).await;
        ok += o;
        bad += b;
        let text = metrics_text(base).await;
        seen = metric(&text, &format!("{series}{{model=\"{model}\"}}"));
        let retried = metric(
            &text,
            &format!("mark_remote_retries_total{{model=\"{model}\"}}"),
        );
        assert_eq!(retried, 0.0, "a backend's answer was refused by the check");
    }
    (ok, bad, seen)
}

/// A repository with `models` (name, config) where a name may stand for another model's file:
/// `("reduce_forced", "reduce_batch", cfg)` serves `reduce_batch`'s ONNX file as `reduce_forced`.
pub fn repo_aliased(models: &[(&str, &str, &str)]) -> PathBuf {
    let mut sources: Vec<(&str, &str)> = models.iter().map(|&(_, src, _)| (src, "")).collect();
    sources.sort();
    sources.dedup();
    let staged = repo_with(&sources);
    let dir = temp_dir("repo-aliased");
    for &(name, src, cfg) in models {
        let dst = dir.join(name);
        std::fs::create_dir_all(&dst).expect("model dir");
        let file = std::fs::canonicalize(staged.join(src).join("model.onnx")).expect("model");
        std::os::unix::fs::symlink(file, dst.join("model.onnx")).expect("symlink");
        std::fs::write(dst.join("config.toml"), cfg).expect("config");
    }
    dir
}
