//! The host in a replay (issue 32): the overhead a live run recorded on the gateway's executors
//! and on its workers adds to each batch there, and the live batch loop's reservation of an idle
//! worker while the executors are busy is followed.

use super::*;

/// 20 req/s evenly spaced for 10 minutes on one worker of type `a` and one gateway executor,
/// both 10 ms per request, with the recorded overheads `host` and `worker`.
fn behind_the_gateway(host: Vec<(f64, f64, u64)>, worker: Vec<(f64, f64, u64)>) -> PolicyReport {
    let mut o = opts(
        Catalog::parse(ONE_TYPE, "test").unwrap(),
        flat_profile(10.0),
        uniform(20.0, 600.0),
        &[(Strategy::MarkRs, false)],
    );
    o.params.max_instances = 1;
    o.params.gateway_executors = 1;
    o.params.host_overhead_ms = host;
    o.params.worker_overhead_ms = worker;
    simulate(&o).policies.remove(0)
}

#[test]
fn recorded_overheads_add_to_the_batches_where_they_were_measured() {
    let plain = behind_the_gateway(Vec::new(), Vec::new());
    let both = behind_the_gateway(vec![(4.0, 5.0, 10)], vec![(1.0, 2.0, 10)]);
    let q = |r: &PolicyReport, f: f64| r.hist.quantile(f) * 1e3;
    println!(
        "no overhead: p25 {:.2} p75 {:.2} ms; executors +4-5 ms, worker +1-2 ms: p25 {:.2} p75 {:.2} ms",
        q(&plain, 0.25),
        q(&plain, 0.75),
        q(&both, 0.25),
        q(&both, 0.75)
    );
    assert!((q(&plain, 0.75) - 10.0).abs() < 0.5, "{}", q(&plain, 0.75));
    // a request every 50 ms: the executor takes one, is busy for it when the batch loop
    // reserves the next backend, so the worker takes the next (the live loop's rule), and so on:
    // half on each, each with its own overhead
    assert!((10.8..12.2).contains(&q(&both, 0.25)), "{}", q(&both, 0.25));
    assert!((13.8..15.2).contains(&q(&both, 0.75)), "{}", q(&both, 0.75));
    assert_eq!(both.attainment, plain.attainment);
}
