//! Remote backends: fleet workers (`mark worker`) that run whole batches. A batch goes to a
//! worker as one v2 request with binary tensors; the answer is split back per request. A batch
//! whose worker fails is retried once elsewhere — on Lambda when it is configured and has a free
//! slot, else on the gateway's own executors — before any client sees an error.
//!
//! Several gateway replicas may share a worker: it reports its load on every answer
//! (`x-mark-load`) and refuses batches when saturated (503). A refusal is not a failure: the
//! batch goes elsewhere as above, the worker gets none for a moment, and batches go to the
//! least loaded idle worker first.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Notify;

use super::batch_ctx::BatchCtx;
use super::wire;
use crate::codec::client::{decode_response, encode_binary_request};
use crate::codec::readiness::{
    answered_without_auth, draining_of, load_of, probe_alive, refusal_is_saturation,
};
use crate::tensor::Tensor;
use crate::work::Pending;
use mark_policies::types::ProfilePoint;

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
    /// the profile scaled by it, unless its type has its own curve).
    pub speed: f64,
    /// Its instance type's own latency curve for the model (p99 per batch size), when the
    /// catalog has one: its batches are sized from it.
    pub profile: Option<Arc<Vec<ProfilePoint>>>,
    /// When it failed its third batch in a row (it gets no batches until a health probe passes).
    pub unhealthy_since: std::sync::Mutex<Option<std::time::Instant>>,
    /// Its last reported load, in thousandths (`x-mark-load`).
    pub load_milli: AtomicU32,
    /// It refused a batch as saturated: no batches until then (ms on `wall_ms`).
    pub saturated_until_ms: AtomicU64,
    /// Batches it refused as saturated.
    pub refusals: AtomicU64,
    /// It said it drains (a spot interruption notice): no more batches, ever.
    pub draining: std::sync::atomic::AtomicBool,
    /// It answered a batch without checking the gateway–worker secret (no `x-mark-worker-auth`
    /// on its answer while the gateway has a secret): it serves anyone who reaches it.
    pub open: AtomicBool,
}

/// How long a worker that refused a batch as saturated gets no more.
const SATURATED_BACKOFF_MS: u64 = 50;

fn wall_ms() -> u64 {
    (crate::clock::wall_s() * 1000.0) as u64
}

/// Why a call to a worker did not give outputs.
enum CallError {
    /// It drains under an interruption notice: not broken, and never again.
    Draining(String),
    /// It refused the batch: saturated (503), not broken.
    Saturated(String),
    /// It failed.
    Failed(String),
}

/// Consecutive failed batches after which a worker gets no more until its health probe passes.
pub const FAILURES_TO_UNHEALTHY: u32 = 3;

impl Remote {
    /// True while it gets no batches (failed `FAILURES_TO_UNHEALTHY` in a row, probe not passed).
    pub fn unhealthy(&self) -> bool {
        self.failures.load(Relaxed) >= FAILURES_TO_UNHEALTHY
    }

    fn failed(&self) {
        if self.failures.fetch_add(1, Relaxed) + 1 == FAILURES_TO_UNHEALTHY {
            *self.unhealthy_since.lock().expect("remote lock") = Some(std::time::Instant::now());
            tracing::warn!(worker = %self.id, "worker failed {FAILURES_TO_UNHEALTHY} batches in a row: out of rotation until its health probe passes");
        }
    }
}

/// A running instance as the batch loop needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerSpec {
    /// Cloud instance id.
    pub id: String,
    /// `host:port` of its v2 endpoint.
    pub addr: String,
    /// Speed relative to the profiled machine.
    pub speed: f64,
    /// Its type's own curve for the model, if the catalog has one.
    pub profile: Option<Arc<Vec<ProfilePoint>>>,
}

/// The workers of one model, replaced as the fleet changes.
pub struct RemoteSet {
    /// Current workers.
    pub workers: ArcSwap<Vec<Arc<Remote>>>,
    /// Signalled when a worker frees up or joins.
    pub freed: Notify,
    /// Lambda spill-over backend, when configured.
    pub lambda: arc_swap::ArcSwapOption<super::lambda_client::LambdaBackend>,
    client: HttpClient,
    /// The gateway–worker secret sent with every batch (`MARK_WORKER_SECRET`), set by the
    /// control loop.
    pub secret: std::sync::OnceLock<Arc<str>>,
}

impl Default for RemoteSet {
    fn default() -> Self {
        RemoteSet {
            workers: ArcSwap::from_pointee(Vec::new()),
            freed: Notify::new(),
            lambda: arc_swap::ArcSwapOption::empty(),
            client: Client::builder(TokioExecutor::new()).build_http(),
            secret: std::sync::OnceLock::new(),
        }
    }
}

impl RemoteSet {
    /// Makes the set match `fleet`, the running instances, keeping existing entries.
    pub fn sync(&self, fleet: &[WorkerSpec]) {
        let cur = self.workers.load_full();
        let next: Vec<Arc<Remote>> = fleet
            .iter()
            .map(|w| {
                cur.iter()
                    .find(|r| r.id == w.id)
                    .cloned()
                    .unwrap_or_else(|| {
                        Arc::new(Remote {
                            id: w.id.clone(),
                            addr: w.addr.clone(),
                            busy: AtomicBool::new(false),
                            failures: AtomicU32::new(0),
                            batches: AtomicU64::new(0),
                            speed: w.speed,
                            profile: w.profile.clone(),
                            unhealthy_since: std::sync::Mutex::new(None),
                            load_milli: AtomicU32::new(0),
                            saturated_until_ms: AtomicU64::new(0),
                            refusals: AtomicU64::new(0),
                            draining: std::sync::atomic::AtomicBool::new(false),
                            open: AtomicBool::new(false),
                        })
                    })
            })
            .collect();
        self.workers.store(Arc::new(next));
        self.freed.notify_one();
    }

    /// Claims an idle, healthy worker that is not saturated, the least loaded first.
    pub fn claim(&self) -> Option<Arc<Remote>> {
        let workers = self.workers.load();
        let now = wall_ms();
        let mut usable: Vec<&Arc<Remote>> = workers
            .iter()
            .filter(|r| {
                !r.unhealthy()
                    && !r.draining.load(Relaxed)
                    && !r.busy.load(Relaxed)
                    && r.saturated_until_ms.load(Relaxed) <= now
            })
            .collect();
        usable.sort_by_key(|r| r.load_milli.load(Relaxed));
        usable
            .into_iter()
            .find(|r| {
                r.busy
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

    /// Summed speed of the usable workers (a worker as fast as the profiled machine counts 1).
    pub fn capacity_units(&self) -> f64 {
        self.workers
            .load()
            .iter()
            .filter(|r| !r.unhealthy() && r.speed.is_finite() && r.speed > 0.0)
            .map(|r| r.speed)
            .sum()
    }

    /// Number of usable workers.
    pub fn healthy(&self) -> u32 {
        self.workers
            .load()
            .iter()
            .filter(|r| !r.unhealthy())
            .count() as u32
    }

    /// Asks every worker not yet known to drain whether it does (its readiness, all at once, 1 s
    /// each): a notice is seen within a tick even when this gateway sends that worker nothing.
    pub async fn check_draining(&self) {
        let mut probes = tokio::task::JoinSet::new();
        for r in self.workers.load().iter() {
            if r.draining.load(Relaxed) {
                continue;
            }
            let (client, r) = (self.client.clone(), r.clone());
            probes.spawn(async move {
                if crate::codec::readiness::probe_draining(&client, &r.addr).await
                    && !r.draining.swap(true, Relaxed)
                {
                    tracing::warn!(worker = %r.id, "worker drains (interruption notice): no more batches to it");
                }
            });
        }
        while probes.join_next().await.is_some() {}
    }

    /// Ids of the workers draining under an interruption notice.
    pub fn draining_ids(&self) -> Vec<String> {
        self.workers
            .load()
            .iter()
            .filter(|r| r.draining.load(Relaxed))
            .map(|r| r.id.clone())
            .collect()
    }

    /// Ids of the workers out of rotation.
    pub fn unhealthy_ids(&self) -> Vec<String> {
        self.workers
            .load()
            .iter()
            .filter(|r| r.unhealthy())
            .map(|r| r.id.clone())
            .collect()
    }

    /// Probes every worker out of rotation (`GET /v2/health/ready`, 1 s deadline): one that
    /// is alive (its models ready: 200, or 503 because it is saturated) is back in rotation. Returns the ids of those out of rotation for longer than
    /// `grace`: they are to be terminated and replaced.
    pub async fn check_health(&self, grace: std::time::Duration) -> Vec<String> {
        let mut dead = Vec::new();
        for r in self.workers.load().iter().filter(|r| r.unhealthy()) {
            let ok = probe_alive(&self.client, &r.addr).await;
            let mut since = r.unhealthy_since.lock().expect("remote lock");
            if ok {
                tracing::info!(worker = %r.id, "health probe passed: worker back in rotation");
                *since = None;
                r.failures.store(0, Relaxed);
                self.freed.notify_one();
            } else if since.is_some_and(|t| t.elapsed() >= grace) {
                dead.push(r.id.clone());
            }
        }
        dead
    }

    /// Runs `batch` on `remote`; on failure (an error, no answer within the deadline, an answer
    /// too large or that does not fit the model's outputs), retries it once elsewhere.
    pub async fn run(
        self: Arc<Self>,
        remote: Arc<Remote>,
        batch: Vec<Pending>,
        ctx: Arc<BatchCtx>,
    ) {
        let (merged, sizes) = wire::merge(&batch);
        let total: usize = sizes.iter().sum();
        let deadline = ctx.remote_deadline(total, remote.speed);
        let started = std::time::Instant::now();
        let r = match tokio::time::timeout(deadline, self.call(&remote, &ctx, &merged, total)).await
        {
            Ok(r) => r,
            Err(_) => Err(CallError::Failed(format!(
                "worker {} did not answer within {} ms",
                remote.addr,
                deadline.as_millis()
            ))),
        };
        drop(merged);
        remote.busy.store(false, Relaxed);
        self.freed.notify_one();
        let metrics = &ctx.metrics;
        match r {
            Ok(outs) => {
                remote.failures.store(0, Relaxed);
                remote.batches.fetch_add(1, Relaxed);
                // its call time against what its curve (or the profile at its speed) promised
                let items = u32::try_from(total).unwrap_or(u32::MAX);
                let expected = match remote.profile.as_deref() {
                    Some(own) => crate::profile::LatencyProfile::new(
                        "",
                        own.iter()
                            .map(|p| crate::profile::MeasuredPoint {
                                batch: p.batch,
                                p50_us: p.latency_us,
                                p99_us: p.latency_us,
                            })
                            .collect(),
                    )
                    .latency_us(items),
                    None => ctx.profile.median_us(items) / remote.speed.max(1e-9),
                };
                let took = started.elapsed();
                metrics.remote_slowdown.observe(
                    &format!("worker {}", remote.id),
                    expected,
                    took.as_secs_f64() * 1e6,
                );
                let past = (took.as_secs_f64() - expected / 1e6).max(0.0);
                for p in &batch {
                    metrics.worker_overhead.observe(p.host.as_secs_f64() + past);
                }
                metrics.remote_batches.fetch_add(1, Relaxed);
                if remote.open.load(Relaxed) {
                    metrics.remote_open_batches.fetch_add(1, Relaxed);
                }
                wire::finish_batch(batch, &sizes, &outs, &ctx);
            }
            Err(e) => {
                let e = match e {
                    CallError::Failed(e) => {
                        remote.failed();
                        e
                    }
                    CallError::Draining(e) => {
                        // going away (spot notice): out of rotation at once, not a failure; the
                        // control loop plans its replacement
                        if !remote.draining.swap(true, Relaxed) {
                            tracing::warn!(worker = %remote.id, "worker drains (interruption notice): no more batches to it");
                        }
                        e
                    }
                    CallError::Saturated(e) => {
                        // another replica's batches fill it: not broken, just not now
                        remote.refusals.fetch_add(1, Relaxed);
                        remote
                            .saturated_until_ms
                            .store(wall_ms() + SATURATED_BACKOFF_MS, Relaxed);
                        metrics.remote_saturated.fetch_add(1, Relaxed);
                        e
                    }
                };
                metrics.remote_retries.fetch_add(1, Relaxed);
                // elsewhere: on Lambda when a slot is free (the gateway's executors are likely
                // busy with their own share), else queued on the gateway's executors
                if let Some((l, slot)) = self
                    .lambda
                    .load_full()
                    .and_then(|l| l.try_slot().map(|s| (l, s)))
                {
                    tracing::warn!(worker = %remote.id, cause = %e, batch = total, "worker failed a batch; retrying it on Lambda");
                    metrics.lambda_retries.fetch_add(1, Relaxed);
                    l.run(slot, batch, ctx).await;
                    return;
                }
                tracing::warn!(worker = %remote.id, cause = %e, batch = total, "worker failed a batch; retrying it on the gateway's executors");
                wire::retry_locally(batch, &ctx);
            }
        }
    }

    async fn call(
        &self,
        remote: &Remote,
        ctx: &BatchCtx,
        inputs: &[Tensor],
        total: usize,
    ) -> Result<Vec<Tensor>, CallError> {
        let fail = CallError::Failed;
        let (body, n) = encode_binary_request(inputs);
        let mut req = hyper::Request::post(format!(
            "http://{}/v2/models/{}/infer",
            remote.addr, ctx.model
        ))
        .header("content-type", "application/octet-stream")
        .header("inference-header-content-length", n.to_string());
        if let Some(secret) = self.secret.get() {
            req = req.header(
                crate::codec::readiness::WORKER_SECRET_HEADER,
                secret.as_ref(),
            );
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| fail(e.to_string()))?;
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|e| fail(format!("worker {}: {e}", remote.addr)))?;
        let status = resp.status();
        // the flag follows the worker's latest answer (a worker restarted with the secret
        // stops counting); the warning is for each change to open
        let open = answered_without_auth(self.secret.get().is_some(), &resp);
        if status.is_success() && remote.open.swap(open, Relaxed) != open && open {
            tracing::warn!(worker = %remote.id, addr = %remote.addr, "this worker runs batches without checking the worker secret (its answers lack x-mark-worker-auth): anyone who reaches it can use it; start it with MARK_WORKER_SECRET or MARK_WORKER_SECRET_FILE");
        }
        let load = load_of(&resp);
        let draining = status == http::StatusCode::SERVICE_UNAVAILABLE && draining_of(&resp);
        if let Some(l) = load {
            remote
                .load_milli
                .store((l * 1000.0).min(f64::from(u32::MAX)) as u32, Relaxed);
        }
        let hlen: Option<usize> = resp
            .headers()
            .get("inference-header-content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let limit = ctx.max_response_bytes(total);
        let body = http_body_util::Limited::new(resp.into_body(), limit)
            .collect()
            .await
            .map_err(|e| {
                fail(format!(
                    "worker {}: answer over {limit} bytes or cut: {e}",
                    remote.addr
                ))
            })?
            .to_bytes();
        if !status.is_success() {
            let msg = format!(
                "worker {} answered {status}: {}",
                remote.addr,
                String::from_utf8_lossy(&body[..body.len().min(512)])
            );
            return Err(if draining {
                CallError::Draining(msg)
            } else if refusal_is_saturation(status, load) {
                CallError::Saturated(msg)
            } else {
                fail(msg)
            });
        }
        decode_response(&body, hlen)
            .and_then(|outs| wire::check_outputs(outs, &ctx.outputs, ctx.answer_rows(total)))
            .map_err(|e| fail(format!("worker {} {e}", remote.addr)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(id: &str) -> WorkerSpec {
        WorkerSpec {
            id: id.into(),
            addr: "127.0.0.1:9".into(),
            speed: 1.0,
            profile: None,
        }
    }

    #[tokio::test]
    async fn batches_go_to_the_least_loaded_idle_worker_and_never_to_a_saturated_one() {
        let set = RemoteSet::default();
        set.sync(&[spec("a"), spec("b"), spec("c")]);
        let w = set.workers.load_full();
        w[0].load_milli.store(900, Relaxed);
        w[1].load_milli.store(100, Relaxed);
        w[2].load_milli.store(400, Relaxed);
        assert_eq!(set.claim().unwrap().id, "b");
        assert_eq!(set.claim().unwrap().id, "c", "b is busy now");
        w[1].busy.store(false, Relaxed);
        w[2].busy.store(false, Relaxed);
        // b refused a batch as saturated: it gets none until its back-off ends
        w[1].saturated_until_ms.store(wall_ms() + 60_000, Relaxed);
        assert_eq!(set.claim().unwrap().id, "c");
        assert_eq!(set.claim().unwrap().id, "a");
        assert!(set.claim().is_none(), "a and c busy, b saturated");
        // a refusal is not a failure: b stays in rotation
        assert!(!w[1].unhealthy());
    }
}
