//! `mark bench --raw`: the ONNX Runtime baseline the gateway is compared with (sessions driven
//! directly on threads, no HTTP).

use super::*;

pub(super) fn raw(a: &BenchArgs) -> Result<Vec<Report>, BenchError> {
    crate::exec::ort_lib::init(None)?;
    let dir = a.model_repo.join(&a.model);
    let cfg = match std::fs::read_to_string(dir.join("config.toml")) {
        Ok(t) => crate::config::ModelConfig::parse(&t, "config.toml")?,
        Err(_) => crate::config::ModelConfig::default(),
    };
    let mut sessions = Vec::new();
    for _ in 0..a.threads.max(1) {
        sessions.push(crate::exec::session::build(&a.model, &dir.join("model.onnx"), &cfg)?.0);
    }
    let (inputs, outputs) = crate::exec::session::metadata(&a.model, &sessions[0])?;
    let outs: Vec<String> = outputs.iter().map(|o| o.name.clone()).collect();
    let mut reports = Vec::new();
    for &b in &a.batch_sizes {
        let x = synthetic_inputs(&inputs, b);
        let start = Instant::now();
        let end = start + Duration::from_secs_f64(a.duration);
        let results: Vec<Vec<f64>> = std::thread::scope(|scope| {
            let handles: Vec<_> = sessions
                .iter_mut()
                .map(|s| {
                    let (x, outs) = (&x, &outs);
                    scope.spawn(move || {
                        let _ = run_tensors(s, x, outs);
                        let mut lat = Vec::new();
                        while Instant::now() < end {
                            let t = Instant::now();
                            if run_tensors(s, x, outs).is_ok() {
                                lat.push(t.elapsed().as_secs_f64() * 1e3);
                            }
                        }
                        lat
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_default())
                .collect()
        });
        let elapsed = start.elapsed().as_secs_f64();
        let mut lat: Vec<f64> = results.into_iter().flatten().collect();
        let runs = lat.len() as u64;
        let (p50, p90, p99) = pct(&mut lat);
        reports.push(Report {
            label: format!("raw-ort {} batch={} threads={}", a.model, b, a.threads),
            ok: runs,
            errors: BTreeMap::new(),
            shed_by_generator: 0,
            items_per_s: runs as f64 * f64::from(b) / elapsed,
            p50_ms: p50,
            p90_ms: p90,
            p99_ms: p99,
            mean_batch: f64::from(b),
            goodput_per_s: None,
        });
    }
    Ok(reports)
}
