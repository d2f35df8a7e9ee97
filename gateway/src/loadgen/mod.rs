//! `mark bench`: an open-loop (Poisson) or closed-loop load generator against a running gateway,
//! and `--raw`, the same model run in process through ort at each batch size: the baseline that
//! the gateway's overhead is measured against.
//!
//! Open loop sends on a Poisson schedule whatever the server does (no coordinated omission:
//! arrivals are never delayed by slow answers); requests over `--concurrency` outstanding are
//! counted as shed by the generator.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rand::Rng;
use tokio::sync::Semaphore;

use crate::api::grpc::pb::grpc_inference_service_client::GrpcInferenceServiceClient;
use crate::api::grpc::pb::ModelInferRequest;
use crate::codec::client::encode_binary_request;
use crate::exec::executor::run_tensors;
use crate::exec::measure::synthetic_inputs;
use crate::exec::session::IoMeta;
use crate::profile::percentiles;
use crate::tensor::{DType, Tensor};

/// Arguments of `mark bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Gateway base URL.
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub url: String,
    /// Model to load.
    #[arg(long, default_value = "mlp")]
    pub model: String,
    /// `open` (Poisson arrivals at --rate) or `closed` (--concurrency clients back to back).
    #[arg(long, default_value = "closed")]
    pub mode: String,
    /// Requests per second (open loop).
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Seconds of load.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Concurrent requests (closed loop), or the cap on outstanding requests (open loop).
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Rows per request.
    #[arg(long, default_value_t = 1)]
    pub rows: u32,
    /// Send inputs and ask for outputs as binary tensors (REST), or raw contents (gRPC; typed
    /// contents without it).
    #[arg(long)]
    pub binary: bool,
    /// `rest` (KServe v2 over HTTP at --url) or `grpc` (KServe v2 gRPC at --grpc-url).
    #[arg(long, default_value = "rest", value_parser = ["rest", "grpc"])]
    pub protocol: String,
    /// The gateway's gRPC address (with --protocol grpc); metadata and /metrics still come from
    /// --url.
    #[arg(long, default_value = "http://127.0.0.1:8001")]
    pub grpc_url: String,
    /// Run the model in process through ort instead (no gateway): the baseline.
    #[arg(long)]
    pub raw: bool,
    /// Model repository (raw mode).
    #[arg(long, default_value = "models")]
    pub model_repo: PathBuf,
    /// Batch sizes (raw mode).
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    pub batch_sizes: Vec<u32>,
    /// Executor threads, each with its own session (raw mode).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Print one JSON line per result instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Latency objective in ms: also report goodput, the answers within it per second.
    #[arg(long)]
    pub slo_ms: Option<f64>,
}

/// Summary of one run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// What ran.
    pub label: String,
    /// Requests (or runs) completed successfully.
    pub ok: u64,
    /// Failures by HTTP status (0 = transport error).
    pub errors: BTreeMap<u16, u64>,
    /// Open-loop arrivals not sent because `--concurrency` requests were outstanding.
    pub shed_by_generator: u64,
    /// Items (rows) per second completed.
    pub items_per_s: f64,
    /// Latency percentiles, milliseconds.
    pub p50_ms: f64,
    /// 90th percentile, milliseconds.
    pub p90_ms: f64,
    /// 99th percentile, milliseconds.
    pub p99_ms: f64,
    /// Mean executed batch size seen by the gateway during the run (from /metrics).
    pub mean_batch: f64,
    /// Successful answers within `--slo-ms` per second (when given).
    pub goodput_per_s: Option<f64>,
}

impl Report {
    fn print(&self, json: bool) {
        if json {
            println!("{}", serde_json::to_string(self).expect("serializable"));
        } else {
            println!(
                "{:<40} ok={:<7} err={:<4} shed={:<5} {:>9.1} items/s  p50={:>7.3}ms p90={:>7.3}ms p99={:>7.3}ms  batch={:.2}{}{}",
                self.label,
                self.ok,
                self.errors.values().sum::<u64>(),
                self.shed_by_generator,
                self.items_per_s,
                self.p50_ms,
                self.p90_ms,
                self.p99_ms,
                self.mean_batch,
                self.goodput_per_s
                    .map_or(String::new(), |g| format!("  goodput={g:.1}/s")),
                if self.errors.is_empty() {
                    String::new()
                } else {
                    format!("  errors={:?}", self.errors)
                }
            );
        }
    }
}

fn pct(lat_ms: &mut [f64]) -> (f64, f64, f64) {
    if lat_ms.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    let (p50, p99) = percentiles(lat_ms);
    let p90 = lat_ms[((lat_ms.len() as f64 - 1.0) * 0.9).round() as usize];
    (p50, p90, p99)
}

pub use error::BenchError;
use error::Ctx;

/// Runs the benchmark described by `args`.
pub async fn run(args: BenchArgs) -> Result<(), BenchError> {
    if args.raw {
        let a = args.clone();
        for r in tokio::task::spawn_blocking(move || raw(&a)).await?? {
            r.print(args.json);
        }
        return Ok(());
    }
    gateway(&args).await?.print(args.json);
    Ok(())
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

async fn get_json(client: &HttpClient, url: &str) -> Result<serde_json::Value, BenchError> {
    let resp = client
        .get(url.parse()?)
        .await
        .ctx(|| format!("GET {url}"))?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        return Err(BenchError(format!(
            "GET {url}: {status}: {}",
            String::from_utf8_lossy(&body)
        )));
    }
    Ok(serde_json::from_slice(&body)?)
}

async fn batch_stats(client: &HttpClient, url: &str, model: &str) -> (f64, f64) {
    let Ok(resp) = client
        .get(format!("{url}/metrics").parse().expect("valid url"))
        .await
    else {
        return (0.0, 0.0);
    };
    let Ok(body) = resp.into_body().collect().await else {
        return (0.0, 0.0);
    };
    let text = String::from_utf8_lossy(&body.to_bytes()).to_string();
    let find = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{name}{{model=\"{model}\"}}")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (find("mark_batch_size_sum"), find("mark_batch_size_count"))
}

/// Builds a request body (JSON or binary) with synthetic inputs of `rows` rows.
pub fn request_body(inputs: &[IoMeta], rows: u32, binary: bool) -> (Bytes, Option<usize>) {
    let tensors = synthetic_inputs(inputs, rows);
    if binary {
        let (body, n) = encode_binary_request(&tensors);
        (Bytes::from(body), Some(n))
    } else {
        (Bytes::from(json_like_python(&tensors)), None)
    }
}

/// A JSON body as the stock Python client writes it, so that the JSON path is measured on what
/// clients send: FP32 values that look like normalized pixels (k/255), written as numpy's
/// `tolist()` widens them to f64 (`0.7372549176216125`: ~18 characters per element; a ResNet
/// image is a 3 MB body).
fn json_like_python(tensors: &[Tensor]) -> Vec<u8> {
    let ins: Vec<serde_json::Value> = tensors
        .iter()
        .map(|t| {
            let data = if t.dtype == DType::Fp32 {
                (0..t.numel())
                    .map(|i| serde_json::Value::from(f64::from((i * 7919 % 256) as f32 / 255.0)))
                    .collect()
            } else {
                serde_json::to_value(crate::codec::response::Data(t)).expect("serializable")
            };
            serde_json::json!({"name": t.name, "shape": t.shape, "datatype": t.dtype.as_v2(), "data": data})
        })
        .collect();
    serde_json::json!({ "inputs": ins })
        .to_string()
        .into_bytes()
}

/// One line per second on stderr while a run lasts: answers per second, p50 and p99 of the
/// answers of that second, errors so far.
async fn live_lines(tally: Arc<Mutex<Tally>>, start: Instant) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut seen = 0usize;
    loop {
        tick.tick().await;
        let (mut lat, errors) = {
            let g = tally.lock().expect("tally");
            (
                g.lat_ms[seen.min(g.lat_ms.len())..].to_vec(),
                g.errors.values().sum::<u64>(),
            )
        };
        seen += lat.len();
        let (p50, _, p99) = pct(&mut lat);
        eprintln!(
            "{:>5.0}s {:>9.1} answers/s  p50 {:>8.3} ms  p99 {:>8.3} ms  errors {errors}",
            start.elapsed().as_secs_f64(),
            lat.len() as f64,
            p50,
            p99
        );
    }
}

struct Tally {
    lat_ms: Vec<f64>,
    errors: BTreeMap<u16, u64>,
}

/// Longest wait for one answer (REST or gRPC) before it counts as a transport error.
const REQUEST_DEADLINE: Duration = Duration::from_secs(60);

/// Concurrent gRPC calls per HTTP/2 connection of `mark bench` (REST uses one connection per
/// outstanding request; a handful of streams per connection keeps both sides' HTTP/2 framing
/// off a single task).
const GRPC_CALLS_PER_CONNECTION: usize = 8;

/// Where and how each request goes: REST with a prepared body, or gRPC with a prepared message
/// (raw or typed contents). Both are cloned cheaply per request (`Bytes`).
enum Target {
    Rest {
        client: HttpClient,
        url: String,
        body: Bytes,
        header_len: Option<usize>,
    },
    Grpc {
        /// One HTTP/2 connection per `GRPC_CALLS_PER_CONNECTION` concurrent calls.
        clients: Vec<GrpcInferenceServiceClient<tonic::transport::Channel>>,
        next: std::sync::atomic::AtomicUsize,
        msg: ModelInferRequest,
    },
}

impl Target {
    /// Sends one request; Err is its HTTP status (gRPC codes mapped to theirs; 0: transport).
    async fn send(&self) -> Result<(), u16> {
        match self {
            Target::Rest {
                client,
                url,
                body,
                header_len,
            } => {
                let mut req =
                    hyper::Request::post(url.as_str()).header("content-type", "application/json");
                if let Some(n) = header_len {
                    req = req.header("inference-header-content-length", n.to_string());
                }
                let req = req.body(Full::new(body.clone())).expect("valid request");
                // a server that hangs counts as a transport error after REQUEST_DEADLINE
                let answer = async {
                    let resp = client.request(req).await.map_err(|_| 0u16)?;
                    let status = resp.status().as_u16();
                    let _ = resp.into_body().collect().await.map_err(|_| 0u16)?;
                    Ok::<u16, u16>(status)
                };
                let status = tokio::time::timeout(REQUEST_DEADLINE, answer)
                    .await
                    .map_err(|_| 0u16)??;
                if status == 200 {
                    Ok(())
                } else {
                    Err(status)
                }
            }
            Target::Grpc { clients, next, msg } => {
                let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % clients.len();
                match clients[k].clone().model_infer(msg.clone()).await {
                    Ok(_) => Ok(()),
                    Err(s) => Err(crate::api::grpc::status::http_of(s.code())),
                }
            }
        }
    }
}

async fn target(
    a: &BenchArgs,
    client: &HttpClient,
    inputs: &[IoMeta],
) -> Result<Target, BenchError> {
    if a.protocol == "grpc" {
        let mut clients = Vec::new();
        for _ in 0..a.concurrency.div_ceil(GRPC_CALLS_PER_CONNECTION) {
            let ch = tonic::transport::Channel::from_shared(a.grpc_url.clone())?
                .connect_timeout(Duration::from_secs(5))
                .timeout(REQUEST_DEADLINE)
                .connect()
                .await
                .ctx(|| format!("connecting to {}", a.grpc_url))?;
            clients.push(
                GrpcInferenceServiceClient::new(ch)
                    .max_decoding_message_size(usize::MAX)
                    .max_encoding_message_size(usize::MAX),
            );
        }
        let tensors = synthetic_inputs(inputs, a.rows);
        let msg = crate::api::grpc::convert::request_message(&a.model, &tensors, a.binary);
        return Ok(Target::Grpc {
            clients,
            next: Default::default(),
            msg,
        });
    }
    let (body, header_len) = request_body(inputs, a.rows, a.binary);
    Ok(Target::Rest {
        client: client.clone(),
        url: format!("{}/v2/models/{}/infer", a.url, a.model),
        body,
        header_len,
    })
}

async fn gateway(a: &BenchArgs) -> Result<Report, BenchError> {
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(a.concurrency * 2)
        .build_http();
    let meta = tokio::time::timeout(
        Duration::from_secs(10),
        get_json(&client, &format!("{}/v2/models/{}", a.url, a.model)),
    )
    .await
    .ctx(|| "model metadata: no answer within 10 s".into())??;
    let inputs: Vec<IoMeta> = meta["inputs"]
        .as_array()
        .ctx(|| "metadata without inputs".into())?
        .iter()
        .map(|i| IoMeta {
            name: i["name"].as_str().unwrap_or_default().to_string(),
            dtype: DType::from_v2(i["datatype"].as_str().unwrap_or_default())
                .unwrap_or(DType::Fp32),
            shape: i["shape"]
                .as_array()
                .map(|s| s.iter().filter_map(|d| d.as_i64()).collect())
                .unwrap_or_default(),
        })
        .collect();
    let target = Arc::new(target(a, &client, &inputs).await?);
    let (s0, c0) = tokio::time::timeout(
        Duration::from_secs(10),
        batch_stats(&client, &a.url, &a.model),
    )
    .await
    .unwrap_or((0.0, 0.0));
    let tally = Arc::new(Mutex::new(Tally {
        lat_ms: Vec::new(),
        errors: BTreeMap::new(),
    }));
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(a.duration);
    let mut shed = 0u64;
    let live = tokio::spawn(live_lines(tally.clone(), start));
    if a.mode == "closed" {
        let mut tasks = Vec::new();
        for _ in 0..a.concurrency {
            let (target, tally) = (target.clone(), tally.clone());
            tasks.push(tokio::spawn(async move {
                while Instant::now() < end {
                    let t = Instant::now();
                    let r = target.send().await;
                    let mut g = tally.lock().expect("tally");
                    match r {
                        Ok(()) => g.lat_ms.push(t.elapsed().as_secs_f64() * 1e3),
                        Err(s) => *g.errors.entry(s).or_default() += 1,
                    }
                }
            }));
        }
        for t in tasks {
            t.await?;
        }
    } else {
        let cap = Arc::new(Semaphore::new(a.concurrency));
        let mut next = start;
        let mut tasks = Vec::new();
        let mut rng = rand::rng();
        while next < end {
            tokio::time::sleep_until(next.into()).await;
            let scheduled = next;
            let gap: f64 = -(1.0 - rng.random::<f64>()).ln() / a.rate;
            next += Duration::from_secs_f64(gap);
            let Ok(permit) = cap.clone().try_acquire_owned() else {
                shed += 1;
                continue;
            };
            let (target, tally) = (target.clone(), tally.clone());
            tasks.push(tokio::spawn(async move {
                // Latency counts from the send, not from `scheduled`: tokio's timer wheel has a
                // 1 ms granularity that would otherwise be billed to the server. Requests are
                // still sent on schedule whatever the server does (open loop).
                let _ = scheduled;
                let t = Instant::now();
                let r = target.send().await;
                drop(permit);
                let mut g = tally.lock().expect("tally");
                match r {
                    Ok(()) => g.lat_ms.push(t.elapsed().as_secs_f64() * 1e3),
                    Err(s) => *g.errors.entry(s).or_default() += 1,
                }
            }));
        }
        for t in tasks {
            t.await?;
        }
    }
    live.abort();
    let elapsed = start.elapsed().as_secs_f64();
    let (s1, c1) = tokio::time::timeout(
        Duration::from_secs(10),
        batch_stats(&client, &a.url, &a.model),
    )
    .await
    .unwrap_or((0.0, 0.0));
    let mut g = tally.lock().expect("tally");
    let ok = g.lat_ms.len() as u64;
    let goodput_per_s = a
        .slo_ms
        .map(|slo| g.lat_ms.iter().filter(|&&l| l <= slo).count() as f64 / elapsed.max(1e-9));
    let (p50, p90, p99) = pct(&mut g.lat_ms);
    let form = match (a.protocol.as_str(), a.binary) {
        ("grpc", true) => " grpc-raw",
        ("grpc", false) => " grpc-typed",
        (_, true) => " bin",
        _ => "",
    };
    let label = if a.mode == "closed" {
        format!(
            "gateway {} closed c={} rows={}{form}",
            a.model, a.concurrency, a.rows
        )
    } else {
        format!(
            "gateway {} open {}/s rows={}{form}",
            a.model, a.rate, a.rows
        )
    };
    Ok(Report {
        label,
        ok,
        errors: g.errors.clone(),
        shed_by_generator: shed,
        items_per_s: ok as f64 * f64::from(a.rows) / elapsed,
        p50_ms: p50,
        p90_ms: p90,
        p99_ms: p99,
        mean_batch: if c1 > c0 { (s1 - s0) / (c1 - c0) } else { 0.0 },
        goodput_per_s,
    })
}

mod error;
mod raw;
use raw::raw;
