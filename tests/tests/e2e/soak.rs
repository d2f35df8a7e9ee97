//! Soak (issue 9): `mark serve --cloud local` with the embedded policies under open-loop load on
//! two models for `MARK_SOAK_SECS` (default 60, as CI runs it; `scripts/soak.sh MINUTES` runs it
//! longer and records the figures in docs/reliability.md), while, all at once: a hostile client
//! sends the requests that used to crash or hang the gateway, the batcher is hot-swapped every
//! few seconds, 80% of the fleet is interrupted periodically, a worker is frozen with SIGSTOP, and
//! clients hang up mid-queue. Every answer is checked against a reference per input: nothing may
//! be lost or wrong.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::util::*;
use mark_gateway::cloud::local::LocalCloud;
use mark_gateway::control::catalog::Catalog;
use mark_gateway::control::fleet::InstanceState;
use serde_json::json;

const RESNET_ROW: usize = 3 * 224 * 224;

#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    ok: AtomicU64,
    ok_within_slo: AtomicU64,
    wrong: AtomicU64,
    lost: AtomicU64,
    other: Mutex<BTreeMap<String, u64>>,
}

impl Tally {
    fn note(&self, what: String) {
        *self.other.lock().unwrap().entry(what).or_default() += 1;
    }
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/{name}.wasm", env!("OUT_DIR")))
        .expect("fixture built by tests/build.rs")
}

fn proc_figures(pid: u32) -> (u64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kb = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    (rss_kb, fds)
}

fn resnet_body(seed: u32) -> (Vec<u8>, usize) {
    let header = json!({"inputs":[{"name":"input","shape":[1,3,224,224],"datatype":"FP32","parameters":{"binary_data_size": RESNET_ROW * 4}}],
        "outputs":[{"name":"logits","parameters":{"binary_data":true}}]})
    .to_string();
    let mut body = header.clone().into_bytes();
    body.extend(
        (0..RESNET_ROW)
            .flat_map(|i| (((i as u32 * 7 + seed * 13) % 255) as f32 / 255.0).to_le_bytes()),
    );
    (body, header.len())
}

/// The binary output section of a resnet answer.
fn resnet_output(r: &Resp) -> Vec<u8> {
    let n: usize = r.headers["inference-header-content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    r.body[n..].to_vec()
}

/// A request body and its headers.
type Request = (Vec<u8>, Vec<(&'static str, String)>);

struct Load {
    url: String,
    rate: f64,
    slo: Duration,
    bodies: Vec<Request>,
    check: fn(&Resp) -> Vec<u8>,
    references: Vec<Vec<u8>>,
}

async fn run_load(load: Arc<Load>, tally: Arc<Tally>, stop: Arc<AtomicBool>) {
    let http = client();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / load.rate));
    let mut tasks = Vec::new();
    let mut i = 0usize;
    while !stop.load(Relaxed) {
        tick.tick().await;
        let (load, tally, http) = (load.clone(), tally.clone(), http.clone());
        let k = i % load.bodies.len();
        i += 1;
        tally.sent.fetch_add(1, Relaxed);
        tasks.push(tokio::spawn(async move {
            let (body, headers) = &load.bodies[k];
            let t = Instant::now();
            let r = tokio::time::timeout(
                Duration::from_secs(15),
                send_with(&http, "POST", &load.url, headers, body.clone()),
            )
            .await;
            match r {
                Ok(Ok(r)) if r.status == 200 => {
                    if (load.check)(&r) == load.references[k] {
                        tally.ok.fetch_add(1, Relaxed);
                        if t.elapsed() <= load.slo {
                            tally.ok_within_slo.fetch_add(1, Relaxed);
                        }
                    } else {
                        tally.wrong.fetch_add(1, Relaxed);
                    }
                }
                Ok(Ok(r)) => {
                    let msg: String = r.error().chars().take(48).collect();
                    tally.note(format!("{} {msg}", r.status));
                }
                Ok(Err(e)) => {
                    eprintln!("lost: {e}");
                    tally.lost.fetch_add(1, Relaxed);
                }
                Err(_) => {
                    eprintln!("lost: no answer within 15 s");
                    tally.lost.fetch_add(1, Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// One round of hostile traffic; returns how each was answered.
async fn hostile_round(
    base: &str,
    addr: std::net::SocketAddr,
    hostile: &Mutex<BTreeMap<String, u64>>,
) {
    let url = format!("{base}/v2/models/mlp/infer");
    let bodies = [
        json!({"inputs":[{"name":"input","shape":[1125899906842624u64],"datatype":"FP32","data":[0]}]}),
        json!({"inputs":[{"name":"input","shape":[4294967296u64, 4294967296u64, 16],"datatype":"FP32","data":[0]}]}),
        json!({"inputs":[{"name":"input","shape":[1, 2],"datatype":"FP32","data":[1e39, 0]}]}),
        json!({"inputs":[{"name":"input","shape":[1, 784],"datatype":"FP32","data":mlp_row(3)}],"outputs":[{"name":"probs"},{"name":"probs"}]}),
        json!({"inputs":[{"name":"input","shape":[1, 784],"datatype":"FP32","parameters":{"binary_data_size": 1u64 << 62}}]}),
    ];
    for b in bodies {
        let r = tokio::time::timeout(Duration::from_secs(10), post_json(&url, &b)).await;
        let k = r.map_or("no answer".to_string(), |r| r.status.to_string());
        *hostile.lock().unwrap().entry(k).or_default() += 1;
    }
    let big = vec![b' '; 800_000];
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        send(
            "POST",
            &format!("{base}/v2/models/nope/infer"),
            &[("content-type", "application/json".into())],
            big,
        ),
    )
    .await;
    let k = match r {
        Ok(Ok(r)) => r.status.to_string(),
        _ => "no answer".to_string(),
    };
    *hostile.lock().unwrap().entry(k).or_default() += 1;
    // a silent socket and a stalled body, both left for the gateway to close
    let _ = std::thread::spawn(move || {
        let silent = TcpStream::connect(addr);
        let stalled = TcpStream::connect(addr).and_then(|mut s| {
            s.write_all(
                b"POST /v2/models/mlp/infer HTTP/1.1\r\nhost: x\r\ncontent-length: 5000\r\n\r\n{",
            )?;
            Ok(s)
        });
        std::thread::sleep(Duration::from_secs(12));
        drop((silent, stalled));
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak() {
    let secs: u64 = std::env::var("MARK_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    within(secs + 240, async move {
        let repo = repo_with(&[
            ("mlp", "max_batch_size = 32\nslo_ms = 100\nexecutors = 1\nintra_threads = 1\n"),
            ("resnet18", "max_batch_size = 8\nslo_ms = 500\nexecutors = 1\nintra_threads = 1\n"),
        ]);
        let dir = temp_dir("soak");
        let state_dir = dir.join("cloud");
        let catalog_path = root().join("examples/catalog-local.toml");
        let g = Gateway::start(&[
            "--model-repo", repo.to_str().unwrap(),
            "--admin-listen", "127.0.0.1:0",
            "--admin-token", "t",
            "--cloud", "local",
            "--catalog", catalog_path.to_str().unwrap(),
            "--control-model", "mlp",
            "--control-interval", "5",
            "--control-window", "1",
            "--cloud-state", state_dir.to_str().unwrap(),
            "--max-instances", "4",
            "--body-timeout-secs", "5",
        ])
        .ready()
        .await;
        let admin = g.admin.clone().unwrap();
        let catalog = Catalog::load(&catalog_path).unwrap();
        let cloud = LocalCloud::new(&state_dir, "mark", "mlp", &mark_bin(), &repo, catalog);

        // references, one per input, from the gateway's own executors before any fleet exists
        let mlp_url = format!("{}/v2/models/mlp/infer", g.base);
        let resnet_url = format!("{}/v2/models/resnet18/infer", g.base);
        let json_ct = vec![("content-type", "application/json".to_string())];
        let mut mlp_bodies = Vec::new();
        let mut mlp_refs = Vec::new();
        for seed in 0..8 {
            let body = mlp_request(&[mlp_row(seed)]).to_string().into_bytes();
            let r = send("POST", &mlp_url, &json_ct, body.clone()).await.unwrap();
            mlp_refs.push(mlp_probs(&r));
            mlp_bodies.push((body, json_ct.clone()));
        }
        let mut resnet_bodies = Vec::new();
        let mut resnet_refs = Vec::new();
        for seed in 0..4 {
            let (body, n) = resnet_body(seed);
            let headers = vec![("inference-header-content-length", n.to_string())];
            let r = send("POST", &resnet_url, &headers, body.clone()).await.unwrap();
            assert_eq!(r.status, 200, "{}", r.error());
            resnet_refs.push(resnet_output(&r));
            resnet_bodies.push((body, headers));
        }
        let (rss0, fds0) = proc_figures(g.pid());

        let stop = Arc::new(AtomicBool::new(false));
        let (mlp_tally, resnet_tally) = (Arc::new(Tally::default()), Arc::new(Tally::default()));
        let loads = [
            tokio::spawn(run_load(
                Arc::new(Load { url: mlp_url.clone(), rate: 150.0, slo: Duration::from_millis(100), bodies: mlp_bodies, check: mlp_probs, references: mlp_refs }),
                mlp_tally.clone(),
                stop.clone(),
            )),
            tokio::spawn(run_load(
                Arc::new(Load { url: resnet_url.clone(), rate: 10.0, slo: Duration::from_millis(500), bodies: resnet_bodies.clone(), check: resnet_output, references: resnet_refs }),
                resnet_tally.clone(),
                stop.clone(),
            )),
        ];

        let hostile = Arc::new(Mutex::new(BTreeMap::new()));
        let (mut swaps, mut swap_failures, mut interruptions, mut hangups) = (0u64, 0u64, 0u64, 0u64);
        let mut frozen: Option<String> = None;
        let policies = [fixture("aimd-batcher"), fixture("fixed-one")];
        let started = Instant::now();
        let end = started + Duration::from_secs(secs);
        let (mut next_swap, mut next_interrupt, mut next_hostile) =
            (started + Duration::from_secs(3), started + Duration::from_secs(secs / 3), started);
        let freeze_at = started + Duration::from_secs(secs / 2);
        let (hang_body, hang_n) = resnet_body(99);
        let hang_head = format!("POST /v2/models/resnet18/infer HTTP/1.1\r\nhost: x\r\ninference-header-content-length: {hang_n}\r\ncontent-length: {}\r\n\r\n", hang_body.len());
        while Instant::now() < end {
            let now = Instant::now();
            if now >= next_swap {
                next_swap = now + Duration::from_secs(4);
                let r = admin_call(&admin, "t", "PUT", "policies/batcher", policies[(swaps % 2) as usize].clone()).await;
                swaps += 1;
                if r.status != 200 {
                    swap_failures += 1;
                }
            }
            if now >= next_interrupt {
                next_interrupt = now + Duration::from_secs((secs / 3).max(30));
                let r = admin_call(&admin, "t", "POST", "fleet/interrupt", b"{\"share\": 0.8}".to_vec()).await;
                if r.status == 200 {
                    interruptions += r.json()["interrupted"].as_array().map_or(0, |a| a.len() as u64);
                }
            }
            if frozen.is_none() && now >= freeze_at {
                if let Some(i) = cloud.list().into_iter().find(|i| i.state == InstanceState::Running) {
                    let pid = i.id.split('-').nth(1).unwrap().to_string();
                    let _ = std::process::Command::new("kill").args(["-STOP", &pid]).status();
                    frozen = Some(i.id);
                }
            }
            if now >= next_hostile {
                next_hostile = now + Duration::from_secs(2);
                hostile_round(&g.base, g.addr, &hostile).await;
            }
            // a client that hangs up while its request is queued
            if let Ok(mut s) = TcpStream::connect(g.addr) {
                let _ = s.write_all(hang_head.as_bytes());
                let _ = s.write_all(&hang_body);
                hangups += 1;
                tokio::time::sleep(Duration::from_millis(30)).await;
                drop(s);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        stop.store(true, Relaxed);
        for l in loads {
            l.await.unwrap();
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (rss1, fds1) = proc_figures(g.pid());
        let text = String::from_utf8_lossy(&get(&format!("{}/metrics", g.base)).await.unwrap().body).to_string();
        let st = admin_status(&admin, "t").await;
        let m = |s: &str| metric(&text, s);
        let mut report = "| figure | mlp (150 req/s, SLO 100 ms) | resnet18 (10 req/s, SLO 500 ms) |\n|---|---|---|\n".to_string();
        for (name, f) in [
            ("sent", (|t: &Tally| t.sent.load(Relaxed)) as fn(&Tally) -> u64),
            ("answered 200, correct", |t| t.ok.load(Relaxed)),
            ("of which within the SLO (client-measured)", |t| t.ok_within_slo.load(Relaxed)),
            ("answered 200, wrong", |t| t.wrong.load(Relaxed)),
            ("lost (no answer)", |t| t.lost.load(Relaxed)),
        ] {
            report += &format!("| {name} | {} | {} |\n", f(&mlp_tally), f(&resnet_tally));
        }
        let other = |t: &Tally| format!("{:?}", t.other.lock().unwrap());
        report += &format!("| other answers (status, reason) | {} | {} |\n", other(&mlp_tally), other(&resnet_tally));
        report += &format!(
            "| cancelled in queue (gateway metric) | {} | {} |\n",
            m("mark_requests_cancelled_total{model=\"mlp\"}"),
            m("mark_requests_cancelled_total{model=\"resnet18\"}")
        );
        report += &format!(
            "| shed at admission / expired in queue | {} / {} | {} / {} |\n",
            m("mark_requests_shed_total{model=\"mlp\"}"),
            m("mark_requests_expired_total{model=\"mlp\"}"),
            m("mark_requests_shed_total{model=\"resnet18\"}"),
            m("mark_requests_expired_total{model=\"resnet18\"}")
        );
        report += &format!(
            "\nDuration {secs} s. Hostile requests and their answers: {:?}. Clients that hung up mid-queue: {hangups}. \
             Batcher hot swaps: {swaps} ({swap_failures} refused). Workers interrupted: {interruptions}. Worker frozen with SIGSTOP: {}. \
             Batches retried after a worker failed: {}. Gateway RSS {} MiB at start, {} MiB at end; open fds {fds0} at start, {fds1} at end. \
             Control loop: SLO attainment (mlp, sliding) {}, launches {}, terminations {}.\n",
            hostile.lock().unwrap(),
            frozen.as_deref().unwrap_or("none running"),
            m("mark_remote_retries_total{model=\"mlp\"}") + m("mark_lambda_retries_total{model=\"mlp\"}"),
            rss0 / 1024,
            rss1 / 1024,
            st["control"]["attainment"],
            st["control"]["launches"],
            st["control"]["terminations"],
        );
        println!("{report}");
        if let Ok(path) = std::env::var("MARK_SOAK_REPORT") {
            std::fs::write(path, &report).unwrap();
        }
        drop(g);
        for i in cloud.list() {
            let _ = cloud.interrupt(&i.id);
        }
        for t in [&mlp_tally, &resnet_tally] {
            assert_eq!(t.lost.load(Relaxed), 0, "requests lost");
            assert_eq!(t.wrong.load(Relaxed), 0, "wrong answers");
            assert!(t.ok.load(Relaxed) * 2 > t.sent.load(Relaxed), "most requests answered correctly");
            assert!(!t.other.lock().unwrap().keys().any(|k| k.starts_with("500")), "no 500s");
        }
        let hostile = hostile.lock().unwrap();
        assert!(hostile.keys().all(|k| k.starts_with('4')), "every hostile request got a 4xx: {hostile:?}");
        assert_eq!(swap_failures, 0);
        assert!(fds1 <= fds0 + 64, "fd growth {fds0} -> {fds1}");
        assert!(rss1 < rss0 * 2 + 64 * 1024, "RSS growth {rss0} -> {rss1} KiB");
    })
    .await;
}

fn mlp_probs(r: &Resp) -> Vec<u8> {
    if r.status != 200 {
        return Vec::new();
    }
    output_f32(&r.json(), "probs")
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect()
}
