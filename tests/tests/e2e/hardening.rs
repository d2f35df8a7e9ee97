//! Hostile clients against the real binary (issue 9): requests that used to abort or poison the
//! process, sockets that never finish, clients that leave, early errors the client must read.
//! Each test ends with a normal request answered correctly: the gateway survived.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::util::*;
use serde_json::json;

const MLP: &str = "max_batch_size = 16\nslo_ms = 200\n";

async fn gateway(extra: &[&str]) -> Gateway {
    let repo = repo_with(&[("mlp", MLP)]);
    let mut args = vec!["--model-repo", repo.to_str().unwrap()];
    args.extend_from_slice(extra);
    Gateway::start(&args).ready().await
}

/// A normal request still answers 200 with the right shape.
async fn still_serves(g: &Gateway) {
    let r = post_json(
        &format!("{}/v2/models/mlp/infer", g.base),
        &mlp_request(&[mlp_row(1)]),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.error());
    assert_eq!(output_f32(&r.json(), "probs").len(), 10);
}

#[tokio::test]
async fn hostile_requests_get_400_and_the_gateway_survives() {
    within(60, async {
        let g = gateway(&[]).await;
        let url = format!("{}/v2/models/mlp/infer", g.base);
        let cases = [
            // used to make the allocator abort the whole process
            (
                json!({"inputs":[{"name":"input","shape":[1125899906842624u64],"datatype":"FP32","data":[0]}]}),
                "its shape holds 1125899906842624",
            ),
            // product overflows usize: used to panic the handler
            (
                json!({"inputs":[{"name":"input","shape":[4294967296u64, 4294967296u64, 16],"datatype":"FP32","data":[0]}]}),
                "element count overflows",
            ),
            (
                json!({"inputs":[{"name":"input","shape":[1, 784],"datatype":"FP32","data":
                    std::iter::once(1e39).chain(std::iter::repeat_n(0.5, 783)).collect::<Vec<f64>>()}]}),
                "data[0] = 1e+39 is not a valid FP32",
            ),
            (
                json!({"inputs":[{"name":"input","shape":[1, 784],"datatype":"FP32","data":mlp_row(1)}],
                       "outputs":[{"name":"probs"},{"name":"probs"}]}),
                "output 'probs' is requested more than once",
            ),
            (
                json!({"inputs":[{"name":"input","shape":[1, 784],"datatype":"FP32","parameters":{"binary_data_size": 1u64 << 62}}]}),
                "input 'input'",
            ),
        ];
        for (body, want) in cases {
            let r = post_json(&url, &body).await;
            assert_eq!(r.status, 400, "{body}: {}", r.error());
            assert!(r.error().contains(want), "{}", r.error());
        }
        // binary extension: a BYTES-like overclaim on an FP32 input, and a header length past the body
        let header = r#"{"inputs":[{"name":"input","shape":[100000000,784],"datatype":"FP32","parameters":{"binary_data_size":4}}]}"#;
        let mut body = header.as_bytes().to_vec();
        body.extend_from_slice(&[0; 4]);
        let r = send(
            "POST",
            &url,
            &[("inference-header-content-length", header.len().to_string())],
            body,
        )
        .await
        .unwrap();
        assert_eq!(r.status, 400, "{}", r.error());
        assert!(r.error().contains("input 'input'"), "{}", r.error());
        still_serves(&g).await;
    })
    .await;
}

/// Sockets that send nothing, or stall half way, do not lock anyone out, and each is closed.
#[tokio::test]
async fn silent_and_stalled_connections_are_closed_and_lock_nobody_out() {
    within(90, async {
        let g = gateway(&[
            "--admin-listen",
            "127.0.0.1:0",
            "--admin-token",
            "t",
            "--max-connections",
            "8",
            "--body-timeout-secs",
            "1",
            "--idle-timeout-secs",
            "1",
        ])
        .await;
        let admin = g.admin.clone().unwrap();
        let admin_addr = admin.trim_start_matches("http://").to_string();
        // 64 silent sockets on the admin listener, 32 on the data plane (4x its limit)
        let silent: Vec<TcpStream> = (0..64)
            .map(|_| TcpStream::connect(&admin_addr).unwrap())
            .chain((0..32).map(|_| TcpStream::connect(g.addr).unwrap()))
            .collect();
        let t = Instant::now();
        let st = admin_status(&admin, "t").await;
        assert!(st["models"].is_array(), "{st}");
        still_serves(&g).await;
        let waited = t.elapsed();
        println!("with 96 silent sockets open: admin and data plane answered in {waited:?}");
        assert!(waited < Duration::from_secs(3), "{waited:?}");

        // a body that stalls half way: 408 after the body timeout
        let mut s = TcpStream::connect(g.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"POST /v2/models/mlp/infer HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"inputs\":")
            .unwrap();
        let t = Instant::now();
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("--body-timeout-secs"), "{answer}");
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());

        // every silent socket was closed by the gateway (first-request timeout: 2 s admin,
        // 10 s data plane)
        for mut s in silent {
            s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
            let mut buf = [0u8; 1];
            assert_eq!(s.read(&mut buf).unwrap_or(0), 0, "closed by the gateway");
        }

        // an idle keep-alive connection is closed after --idle-timeout-secs
        let mut s = TcpStream::connect(g.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"GET /v2/health/live HTTP/1.1\r\nhost: x\r\n\r\n")
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        let t = Instant::now();
        let n = s.read(&mut buf).unwrap_or(0);
        assert_eq!(n, 0, "closed after the idle timeout");
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        still_serves(&g).await;
    })
    .await;
}

/// A stock Python client that sends a large body to an unknown model reads the 404, not a
/// broken pipe.
#[tokio::test]
async fn early_errors_reach_a_stock_python_client() {
    within(60, async {
        let g = gateway(&[]).await;
        let script = r#"
import json, sys, urllib.request, urllib.error
body = json.dumps({"inputs": [{"name": "input", "shape": [1, 150000], "datatype": "FP32", "data": [0.5] * 150000}]}).encode()
assert len(body) > 700_000, len(body)
req = urllib.request.Request(f"http://{sys.argv[1]}/v2/models/nope/infer", data=body, headers={"content-type": "application/json"})
try:
    urllib.request.urlopen(req, timeout=20)
    print("unexpected 200"); sys.exit(1)
except urllib.error.HTTPError as e:
    msg = json.loads(e.read())["error"]
    print(e.code, msg)
    sys.exit(0 if e.code == 404 and "unknown model 'nope'" in msg else 1)
"#;
        let out = std::process::Command::new("python3")
            .args(["-c", script, &g.addr.to_string()])
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{text}");
        still_serves(&g).await;
    })
    .await;
}

/// Clients that hang up while their request is queued cost no compute: their requests leave the
/// queue unrun (mark_requests_cancelled_total), and every other request is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_requests_are_never_run() {
    within(120, async {
        let repo = repo_with(&[(
            "resnet18",
            "max_batch_size = 8\nslo_ms = 60000\nexecutors = 1\nintra_threads = 1\non_deadline = \"serve\"\n",
        )]);
        let g = Gateway::start(&["--model-repo", repo.to_str().unwrap()])
            .ready()
            .await;
        let url = format!("{}/v2/models/resnet18/infer", g.base);
        let row = vec![0.25f32; 3 * 224 * 224];
        let request = |rows: usize| -> (Vec<u8>, usize) {
            let header = json!({"inputs":[{"name":"input","shape":[rows,3,224,224],"datatype":"FP32","parameters":{"binary_data_size": rows * row.len() * 4}}]}).to_string();
            let mut body = header.clone().into_bytes();
            for _ in 0..rows {
                body.extend(row.iter().flat_map(|v| v.to_le_bytes()));
            }
            (body, header.len())
        };
        let metrics = || async {
            String::from_utf8_lossy(&get(&format!("{}/metrics", g.base)).await.unwrap().body)
                .to_string()
        };
        let batches_before = metric(&metrics().await, "mark_batch_size_count{model=\"resnet18\"}");
        // keep the one executor busy with a few full batches
        let mut busy = Vec::new();
        for _ in 0..10 {
            let (body, n) = request(8);
            let url = url.clone();
            busy.push(tokio::spawn(async move {
                send(
                    "POST",
                    &url,
                    &[("inference-header-content-length", n.to_string())],
                    body,
                )
                .await
                .unwrap()
                .status
            }));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        // 10 clients send a request and hang up while it is queued
        let (body, n) = request(1);
        let head = format!("POST /v2/models/resnet18/infer HTTP/1.1\r\nhost: x\r\ncontent-type: application/octet-stream\r\ninference-header-content-length: {n}\r\ncontent-length: {}\r\n\r\n", body.len());
        for _ in 0..10 {
            let mut s = TcpStream::connect(g.addr).unwrap();
            s.write_all(head.as_bytes()).unwrap();
            s.write_all(&body).unwrap();
            // long enough for the gateway to read and queue it
            std::thread::sleep(Duration::from_millis(50));
            drop(s);
        }
        for b in busy {
            assert_eq!(b.await.unwrap(), 200);
        }
        still_serves_resnet(&url, request(1)).await;
        let text = metrics().await;
        let cancelled = metric(&text, "mark_requests_cancelled_total{model=\"resnet18\"}");
        let batches = metric(&text, "mark_batch_size_count{model=\"resnet18\"}") - batches_before;
        let items = metric(&text, "mark_batch_size_sum{model=\"resnet18\"}");
        println!("10 clients hung up while queued: cancelled {cancelled}, batches run {batches}, items {items}");
        assert_eq!(cancelled, 10.0, "items run {items}");
        // 10 busy batches of 8 and the last request: nothing of the 10 ran
        assert_eq!(items, 81.0, "only the answered requests' items ran");
    })
    .await;
}

async fn still_serves_resnet(url: &str, (body, n): (Vec<u8>, usize)) {
    let r = send(
        "POST",
        url,
        &[("inference-header-content-length", n.to_string())],
        body,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}

/// Request headers, the status they must get, and a word of the message.
type Case<'a> = (&'a [(&'a str, String)], u16, &'a str);

/// Admin API without a token: a page on another origin, a rebound DNS name, or a simple POST
/// (text/plain) cannot reach it.
#[tokio::test]
async fn insecure_admin_refuses_cross_site_requests() {
    within(60, async {
        let g = gateway(&["--admin-listen", "127.0.0.1:0", "--admin-insecure"]).await;
        let admin = g.admin.clone().unwrap();
        let url = format!("{admin}/admin/v1/policies/batcher/rollback");
        let cases: [Case; 4] = [
            (
                &[
                    ("origin", "http://evil.example".into()),
                    ("content-type", "application/json".into()),
                ],
                403,
                "cross-origin",
            ),
            (
                &[
                    ("host", "evil.example:8001".into()),
                    ("content-type", "application/json".into()),
                ],
                403,
                "Host",
            ),
            (
                &[("content-type", "text/plain".into())],
                415,
                "Content-Type",
            ),
            (&[], 415, "Content-Type"),
        ];
        for (headers, status, want) in cases {
            let r = send("POST", &url, headers, Vec::new()).await.unwrap();
            assert_eq!(r.status, status, "{headers:?}: {}", r.error());
            assert!(r.error().contains(want), "{}", r.error());
        }
        // reading is fine from loopback, and a JSON POST from loopback reaches the handler
        let r = send("GET", &format!("{admin}/admin/v1/status"), &[], Vec::new())
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        let r = send(
            "POST",
            &url,
            &[
                ("content-type", "application/json".into()),
                ("origin", "http://127.0.0.1:8001".into()),
            ],
            Vec::new(),
        )
        .await
        .unwrap();
        assert!(matches!(r.status, 200 | 409), "{}: {}", r.status, r.error());
    })
    .await;
}

/// CPU seconds `pid` has used (user + system).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = stat.rsplit_once(')').unwrap().1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // fields 14 and 15 (utime, stime) are at 11 and 12 after the command name
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / 100.0
}

/// Out of file descriptors, `accept` fails: the loop backs off instead of spinning a core, and
/// serves again once connections close.
#[tokio::test]
async fn accept_failures_back_off_and_recover() {
    within(90, async {
        let repo = repo_with(&[("mlp", MLP)]);
        let g = Gateway::start_with_fd_limit(256, &["--model-repo", repo.to_str().unwrap()])
            .ready()
            .await;
        // hold more connections than there are descriptors left (each sends a request start, so
        // that none is closed as silent during the measurement)
        let mut held = Vec::new();
        for _ in 0..300 {
            match TcpStream::connect(g.addr) {
                Ok(mut s) => {
                    let _ = s.write_all(b"GET /v2/health/live HTTP/1.1\r\nhost: x\r\n");
                    held.push(s);
                }
                Err(_) => break,
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = cpu_seconds(g.pid());
        tokio::time::sleep(Duration::from_secs(2)).await;
        let used = cpu_seconds(g.pid()) - before;
        println!(
            "{} connections held at an fd limit of 256: the gateway used {used:.2} CPU s in 2 s",
            held.len()
        );
        assert!(used < 0.5, "accept loop spins: {used} CPU s in 2 s");
        let log = std::fs::read_to_string(&g.log).unwrap_or_default();
        assert!(
            log.contains("accept failed"),
            "accept never failed; log:\n{log}"
        );
        drop(held);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        still_serves(&g).await;
    })
    .await;
}
