//! Remote backends: fleet workers (`mark worker`) that run whole batches. A batch goes to a
//! worker as one v2 request with binary tensors; the answer is split back per request. A batch
//! whose worker fails is retried once elsewhere — on Lambda when it is configured and has a free
//! slot, else on the gateway's own executors — before any client sees an error.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Notify;

use super::executor::ExecutorPool;
use super::wire;
use crate::batching::queue::Pending;
use crate::metrics::ModelMetrics;
use crate::tensor::Tensor;

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
    /// Speed of its instance type relative to the profiled machine (its batches are sized from
    /// the profile scaled by it).
    pub speed: f64,
}

/// The workers of one model, replaced as the fleet changes.
pub struct RemoteSet {
    /// Current workers.
    pub workers: ArcSwap<Vec<Arc<Remote>>>,
    /// Signalled when a worker frees up or joins.
    pub freed: Notify,
    /// Lambda spill-over backend, when configured.
    pub lambda: arc_swap::ArcSwapOption<super::lambda::LambdaBackend>,
    client: HttpClient,
}

impl Default for RemoteSet {
    fn default() -> Self {
        RemoteSet {
            workers: ArcSwap::from_pointee(Vec::new()),
            freed: Notify::new(),
            lambda: arc_swap::ArcSwapOption::empty(),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }
}

impl RemoteSet {
    /// Makes the set match `fleet` (id, addr, speed) of running instances, keeping existing
    /// entries.
    pub fn sync(&self, fleet: &[(String, String, f64)]) {
        let cur = self.workers.load_full();
        let next: Vec<Arc<Remote>> = fleet
            .iter()
            .map(|(id, addr, speed)| {
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
                            speed: *speed,
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
        let (merged, sizes) = wire::merge(&batch);
        let r = self.call(&remote, &model, &merged).await;
        remote.busy.store(false, Relaxed);
        self.freed.notify_one();
        match r {
            Ok(outs) => {
                remote.failures.store(0, Relaxed);
                remote.batches.fetch_add(1, Relaxed);
                metrics.remote_batches.fetch_add(1, Relaxed);
                wire::finish_batch(batch, &sizes, &outs, &metrics, slo);
            }
            Err(e) => {
                remote.failures.fetch_add(1, Relaxed);
                metrics.remote_retries.fetch_add(1, Relaxed);
                // elsewhere: on Lambda when a slot is free (the gateway's executors are likely
                // busy with their own share), else queued on the gateway's executors
                if let Some((l, slot)) = self
                    .lambda
                    .load_full()
                    .and_then(|l| l.try_slot().map(|s| (l, s)))
                {
                    tracing::warn!(worker = %remote.id, cause = %e, batch = sizes.iter().sum::<usize>(), "worker failed a batch; retrying it on Lambda");
                    metrics.lambda_retries.fetch_add(1, Relaxed);
                    l.run(slot, model, batch, pool, metrics, slo).await;
                    return;
                }
                tracing::warn!(worker = %remote.id, cause = %e, batch = sizes.iter().sum::<usize>(), "worker failed a batch; retrying it on the gateway's executors");
                wire::retry_locally(&pool, batch, &model, &metrics, slo);
            }
        }
    }

    async fn call(
        &self,
        remote: &Remote,
        model: &str,
        inputs: &[Tensor],
    ) -> Result<Vec<Tensor>, String> {
        let (body, n) = wire::encode_batch(inputs);
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
        wire::decode_outputs(&body, hlen)
    }
}
