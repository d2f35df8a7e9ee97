//! The batch loop of one model: reserve a free executor, ask the policy, form the batch, submit.
//!
//! Reserving the executor first is what makes batching adaptive: while every executor is busy,
//! requests accumulate, and the next decision sees them all.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use super::policy::{BatchDecision, BatchPolicy, ProfilePoint, QueueState};
use super::queue::ModelQueue;
use crate::exec::batch_ctx::BatchCtx;
use crate::exec::executor::Job;
use crate::exec::lambda::LambdaBackend;
use crate::exec::remote::{Remote, RemoteSet};

/// Everything the loop needs.
pub struct Batcher {
    /// Model name, for logs.
    pub model: String,
    /// The model queue.
    pub queue: Arc<ModelQueue>,
    /// The model's batch context (executors, metrics, outputs, SLO) that every backend uses.
    pub ctx: Arc<BatchCtx>,
    /// Fleet workers (empty unless a cloud driver runs).
    pub remotes: Arc<RemoteSet>,
    /// One permit per executor.
    pub free_executors: Arc<Semaphore>,
    /// Number of executors.
    pub executors: u32,
    /// Batch-size policy (owned: a WASM policy keeps its Store here).
    pub policy: Box<dyn BatchPolicy>,
    /// Profile of the gateway's own executors: p99 latency per batch size.
    pub profile: Vec<ProfilePoint>,
    /// The profile scaled for the last remote speed seen (speed, points).
    pub scaled: (f64, Vec<ProfilePoint>),
    /// SLO, microseconds.
    pub slo_us: u64,
    /// Largest batch; 0 when the model has no dynamic batch dimension (one request per run).
    pub max_batch: u32,
}

impl Batcher {
    /// Runs until the executor pool goes away.
    pub async fn run(mut self) {
        enum Backend {
            Local(tokio::sync::OwnedSemaphorePermit),
            Remote(Arc<Remote>),
            Lambda(Arc<LambdaBackend>, tokio::sync::OwnedSemaphorePermit),
        }
        loop {
            let remotes = self.remotes.clone();
            let lambda = remotes.lambda.load_full();
            let backend = tokio::select! {
                biased;
                p = self.free_executors.clone().acquire_owned() => match p {
                    Ok(p) => Backend::Local(p),
                    Err(_) => return,
                },
                r = claim_remote(&remotes) => Backend::Remote(r),
                (l, slot) = spill_ready(&self.queue, lambda, self.slo_us) => Backend::Lambda(l, slot),
            };
            let n = match backend {
                // spilling: the oldest request is already late for an instance; send what the
                // function answers within the SLO
                Backend::Lambda(ref l, _) => {
                    let by_time = super::spill::spill_batch(
                        &self.profile,
                        self.slo_us,
                        l.spec.latency_s,
                        self.max_batch.max(1),
                    );
                    let by_payload = super::spill::payload_items(
                        self.queue.oldest_bytes_per_item().unwrap_or(0),
                        self.ctx.out_bytes_per_item(),
                        l.spec.payload_limit_bytes,
                    );
                    let most = by_time.min(by_payload);
                    self.queue
                        .snapshot(Instant::now())
                        .map_or(1, |s| s.batchable_items.clamp(1, most))
                }
                Backend::Remote(ref r) => self.next_batch_size(r.speed).await,
                Backend::Local(_) => self.next_batch_size(1.0).await,
            };
            let batch = self.queue.take(n);
            self.ctx.metrics.queue_depth.store(
                self.queue.len() as i64,
                std::sync::atomic::Ordering::Relaxed,
            );
            if batch.is_empty() {
                if let Backend::Remote(r) = backend {
                    r.busy.store(false, std::sync::atomic::Ordering::Relaxed);
                    self.remotes.freed.notify_one();
                }
                continue;
            }
            match backend {
                Backend::Local(permit) => {
                    if self
                        .ctx
                        .pool
                        .submit(Job {
                            batch,
                            permit: Some(permit),
                        })
                        .is_err()
                    {
                        tracing::error!(model = %self.model, "executor pool stopped; batch loop ends");
                        return;
                    }
                }
                Backend::Remote(r) => {
                    tokio::spawn(self.remotes.clone().run(r, batch, self.ctx.clone()));
                }
                Backend::Lambda(l, slot) => {
                    tokio::spawn(l.run(slot, batch, self.ctx.clone()));
                }
            }
        }
    }

    /// Prepares the profile of a backend `speed` times as fast as the one profiled; true when
    /// it differs from the executors' own (then it is in `self.scaled`).
    fn scale_profile(&mut self, speed: f64) -> bool {
        if (speed - 1.0).abs() < 1e-9 || speed.is_nan() || speed <= 0.0 {
            return false;
        }
        if self.scaled.0 != speed {
            self.scaled = (
                speed,
                self.profile
                    .iter()
                    .map(|p| ProfilePoint {
                        batch: p.batch,
                        latency_us: p.latency_us / speed,
                    })
                    .collect(),
            );
        }
        true
    }

    async fn next_batch_size(&mut self, speed: f64) -> u32 {
        let scaled = self.scale_profile(speed);
        loop {
            let notified = self.queue.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let Some(snap) = self.queue.snapshot(Instant::now()) else {
                notified.await;
                continue;
            };
            if self.max_batch == 0 {
                return 0;
            }
            let state = QueueState {
                queued_items: snap.batchable_items,
                queued_requests: snap.requests,
                oldest_wait_us: snap.oldest_wait_us,
                slo_us: self.slo_us,
                arrival_rate: snap.arrival_rate,
                max_batch: self.max_batch,
                executors: self.executors + self.remotes.healthy(),
                profile: if scaled {
                    &self.scaled.1
                } else {
                    &self.profile
                },
            };
            let decision = self.policy.decide(&state);
            // Liveness is the host's, not the policy's: once the oldest request has waited a
            // whole SLO, it goes now, whatever a (possibly custom) policy says.
            if matches!(decision, BatchDecision::Wait(_)) && snap.oldest_wait_us >= self.slo_us {
                self.ctx
                    .metrics
                    .forced_sends
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return snap.batchable_items.clamp(1, self.max_batch);
            }
            match decision {
                BatchDecision::Send(n) => return n.clamp(1, self.max_batch),
                BatchDecision::Wait(us) => {
                    // Wait up to the time the policy asked for. Arrivals wake us, but the policy
                    // is asked again only once the queue grew by a step (an eighth of the max
                    // batch) or holds a full batch: re-asking on every arrival would make the
                    // policy cost per request instead of per batch decision.
                    // never past the oldest request's SLO (then the check above sends it)
                    let left = self.slo_us.saturating_sub(snap.oldest_wait_us).max(1);
                    let until = tokio::time::Instant::now() + Duration::from_micros(us.min(left));
                    let step = (self.max_batch / 8).max(1);
                    let seen = snap.batchable_items;
                    loop {
                        let notified = self.queue.notify.notified();
                        tokio::pin!(notified);
                        notified.as_mut().enable();
                        let now_items = self
                            .queue
                            .snapshot(Instant::now())
                            .map_or(0, |s| s.batchable_items);
                        if now_items >= self.max_batch || now_items >= seen + step {
                            break;
                        }
                        if tokio::time::timeout_at(until, notified).await.is_err() {
                            break;
                        }
                    }
                }
            }
        }
    }
}

/// Waits until a fleet worker is idle and claims it.
async fn claim_remote(remotes: &RemoteSet) -> Arc<Remote> {
    loop {
        let notified = remotes.freed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(r) = remotes.claim() {
            return r;
        }
        notified.await;
    }
}

/// Resolves when the queue's oldest request has waited so long that an instance could no longer
/// answer it within the SLO (every instance is busy, or this branch would not be polled), and a
/// Lambda concurrency slot is free. Never resolves without Lambda.
async fn spill_ready(
    queue: &ModelQueue,
    lambda: Option<Arc<LambdaBackend>>,
    slo_us: u64,
) -> (Arc<LambdaBackend>, tokio::sync::OwnedSemaphorePermit) {
    let Some(l) = lambda else {
        return std::future::pending().await;
    };
    let after_us = super::spill::spill_after_us(slo_us, l.spec.latency_s);
    loop {
        let notified = queue.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        match queue.snapshot(Instant::now()) {
            None => notified.await,
            Some(s) if s.oldest_wait_us >= after_us => {
                return (l.clone(), l.slot().await);
            }
            Some(s) => {
                tokio::time::sleep(Duration::from_micros(after_us - s.oldest_wait_us)).await;
            }
        }
    }
}
