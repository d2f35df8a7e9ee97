//! Remote backends: fleet workers (`mark worker`) that run whole batches. A batch goes to a
//! worker as one v2 request with binary tensors; the answer is split back per request. A batch
//! whose worker fails is retried once on the gateway's own executors before any client sees an
//! error.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Notify;

use super::executor::{finish_pending, ExecutorPool, Job};
use crate::batching::queue::Pending;
use crate::metrics::ModelMetrics;
use crate::tensor::{DType, Tensor, TensorData};

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// One worker.
pub struct Remote {
    /// Cloud instance id.
    pub id: String,
    /// `host:port` of its v2 endpoint.
    pub addr: String,
    /// A batch is running on it (one at a time: the worker batches further on its own side).
    pub busy: AtomicBool,
    /// Consecutive failures; at 3 the worker is skipped until the fleet list says otherwise.
    pub failures: AtomicU32,
    /// Batches it ran.
    pub batches: AtomicU64,
}

/// The workers of one model, replaced as the fleet changes.
pub struct RemoteSet {
    /// Current workers.
    pub workers: ArcSwap<Vec<Arc<Remote>>>,
    /// Signalled when a worker frees up or joins.
    pub freed: Notify,
    client: HttpClient,
}

impl Default for RemoteSet {
    fn default() -> Self {
        RemoteSet {
            workers: ArcSwap::from_pointee(Vec::new()),
            freed: Notify::new(),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }
}

impl RemoteSet {
    /// Makes the set match `fleet` (id, addr) of running instances, keeping existing entries.
    pub fn sync(&self, fleet: &[(String, String)]) {
        let cur = self.workers.load_full();
        let next: Vec<Arc<Remote>> = fleet
            .iter()
            .map(|(id, addr)| {
                cur.iter()
                    .find(|r| &r.id == id)
                    .cloned()
                    .unwrap_or_else(|| {
                        Arc::new(Remote {
                            id: id.clone(),
                            addr: addr.clone(),
                            busy: AtomicBool::new(false),
                            failures: AtomicU32::new(0),
                            batches: AtomicU64::new(0),
                        })
                    })
            })
            .collect();
        self.workers.store(Arc::new(next));
        self.freed.notify_one();
    }

    /// Claims an idle, healthy worker.
    pub fn claim(&self) -> Option<Arc<Remote>> {
        self.workers
            .load()
            .iter()
            .find(|r| {
                r.failures.load(Relaxed) < 3
                    && r.busy
                        .compare_exchange(false, true, Relaxed, Relaxed)
                        .is_ok()
            })
            .cloned()
    }

    /// Batches in flight per worker id.
    pub fn in_flight(&self) -> Vec<(String, u32)> {
        self.workers
            .load()
            .iter()
            .map(|r| (r.id.clone(), u32::from(r.busy.load(Relaxed))))
            .collect()
    }

    /// Number of usable workers.
    pub fn healthy(&self) -> u32 {
        self.workers
            .load()
            .iter()
            .filter(|r| r.failures.load(Relaxed) < 3)
            .count() as u32
    }

    /// Runs `batch` on `remote`; on failure, retries it once on the local executors.
    pub async fn run(
        self: Arc<Self>,
        remote: Arc<Remote>,
        model: String,
        batch: Vec<Pending>,
        pool: Arc<ExecutorPool>,
        metrics: Arc<ModelMetrics>,
        slo: std::time::Duration,
    ) {
        let sizes: Vec<usize> = batch.iter().map(|p| p.items as usize).collect();
        let n_inputs = batch[0].inputs.len();
        let merged: Vec<Tensor> = (0..n_inputs)
            .map(|i| Tensor::concat(&batch.iter().map(|p| &p.inputs[i]).collect::<Vec<_>>()))
            .collect();
        let started = Instant::now();
        let r = self.call(&remote, &model, &merged).await;
        remote.busy.store(false, Relaxed);
        self.freed.notify_one();
        match r {
            Ok(outs) => {
                remote.failures.store(0, Relaxed);
                remote.batches.fetch_add(1, Relaxed);
                metrics.remote_batches.fetch_add(1, Relaxed);
                metrics
                    .batch_size
                    .observe(sizes.iter().sum::<usize>() as f64);
                let _ = started;
                let total: usize = sizes.iter().sum();
                let split: Vec<Vec<Tensor>> = outs
                    .iter()
                    .map(|t| {
                        if t.batch() == total {
                            t.split(&sizes)
                        } else {
                            vec![t.clone(); sizes.len()]
                        }
                    })
                    .collect();
                for (i, p) in batch.into_iter().enumerate() {
                    finish_pending(
                        p,
                        Ok(split.iter().map(|s| s[i].clone()).collect()),
                        &metrics,
                        slo,
                    );
                }
            }
            Err(e) => {
                remote.failures.fetch_add(1, Relaxed);
                metrics.remote_retries.fetch_add(1, Relaxed);
                tracing::warn!(worker = %remote.id, cause = %e, batch = sizes.iter().sum::<usize>(), "worker failed a batch; retrying it on the gateway's executors");
                if let Err((_, job)) = pool.submit_or_return(Job {
                    batch,
                    permit: None,
                }) {
                    for p in job.batch {
                        finish_pending(
                            p,
                            Err(crate::exec::ExecError::Gone(model.clone())),
                            &metrics,
                            slo,
                        );
                    }
                }
            }
        }
    }

    async fn call(
        &self,
        remote: &Remote,
        model: &str,
        inputs: &[Tensor],
    ) -> Result<Vec<Tensor>, String> {
        let mut bin = Vec::new();
        let ins: Vec<serde_json::Value> = inputs
            .iter()
            .map(|t| {
                let b = match &t.data {
                    TensorData::Raw(r) => r.clone(),
                    TensorData::Strings(s) => s.iter().flat_map(|x| (x.len() as u32).to_le_bytes().into_iter().chain(x.iter().copied())).collect(),
                };
                let v = serde_json::json!({"name": t.name, "shape": t.shape, "datatype": t.dtype.as_v2(), "parameters": {"binary_data_size": b.len()}});
                bin.extend_from_slice(&b);
                v
            })
            .collect();
        let header = serde_json::json!({"inputs": ins, "parameters": {"binary_data_output": true}})
            .to_string();
        let n = header.len();
        let mut body = header.into_bytes();
        body.extend_from_slice(&bin);
        let req = hyper::Request::post(format!("http://{}/v2/models/{model}/infer", remote.addr))
            .header("content-type", "application/octet-stream")
            .header("inference-header-content-length", n.to_string())
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|e| format!("worker {}: {e}", remote.addr))?;
        let status = resp.status();
        let hlen: Option<usize> = resp
            .headers()
            .get("inference-header-content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        if !status.is_success() {
            return Err(format!(
                "worker {} answered {status}: {}",
                remote.addr,
                String::from_utf8_lossy(&body)
            ));
        }
        decode_outputs(&body, hlen)
    }
}

fn decode_outputs(body: &[u8], header_len: Option<usize>) -> Result<Vec<Tensor>, String> {
    let n = header_len.unwrap_or(body.len()).min(body.len());
    let head: serde_json::Value = serde_json::from_slice(&body[..n]).map_err(|e| e.to_string())?;
    let mut rest = &body[n..];
    let mut out = Vec::new();
    for o in head["outputs"].as_array().ok_or("no outputs")? {
        let name = o["name"].as_str().ok_or("output without name")?.to_string();
        let dtype = DType::from_v2(o["datatype"].as_str().unwrap_or("")).ok_or("bad datatype")?;
        let shape: Vec<i64> = o["shape"]
            .as_array()
            .ok_or("no shape")?
            .iter()
            .filter_map(|d| d.as_i64())
            .collect();
        let size = o["parameters"]["binary_data_size"]
            .as_u64()
            .ok_or("output not binary")? as usize;
        if size > rest.len() {
            return Err("truncated binary output".into());
        }
        let (mine, tail) = rest.split_at(size);
        rest = tail;
        let data = if dtype == DType::Bytes {
            let mut v = Vec::new();
            let mut r = mine;
            while r.len() >= 4 {
                let l = u32::from_le_bytes([r[0], r[1], r[2], r[3]]) as usize;
                v.push(r[4..4 + l.min(r.len() - 4)].to_vec());
                r = &r[(4 + l).min(r.len())..];
            }
            TensorData::Strings(v)
        } else {
            TensorData::Raw(mine.to_vec())
        };
        out.push(Tensor {
            name,
            dtype,
            shape,
            data,
        });
    }
    Ok(out)
}
