//! The batch loop of one model: reserve a free executor, ask the policy, form the batch, submit.
//!
//! Reserving the executor first is what makes batching adaptive: while every executor is busy,
//! requests accumulate, and the next decision sees them all.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::queue::ModelQueue;
use super::size_policy::{BatchDecision, BatchPolicy, ProfilePoint, QueueState};
use crate::exec::batch_ctx::BatchCtx;
use crate::exec::executor::Job;
use crate::exec::lambda_client::LambdaBackend;
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
    /// Largest batch; 0 when the model is not batchable (one request per run).
    pub max_batch: u32,
    /// The executors' live profile (the worse of `profile` and what batches take now, from
    /// `ctx.metrics.live`) and the generation it was read at; empty until it differs.
    pub live: (u64, Vec<ProfilePoint>),
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
            // from when the batch loop was free to send to the executors: a request queued
            // before then waited for a free executor or for the policy, both of which the
            // simulator models; the rest of its wait is the host's (the loop waking up late)
            let mut ready = Instant::now();
            let backend = tokio::select! {
                biased;
                p = self.free_executors.clone().acquire_owned() => match p {
                    Ok(p) => {
                        // waited for it: free from when the executor finished (the loop's
                        // waking up since is the host's)
                        let now = Instant::now();
                        let freed = *self.ctx.metrics.executor_freed.lock().expect("metrics lock");
                        ready = freed.filter(|&f| f > ready).map_or(now, |f| f.min(now));
                        Backend::Local(p)
                    }
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
                Backend::Remote(ref r) => {
                    // claimed when it was free: a wait before then was for a free backend
                    ready = Instant::now();
                    let (n, waited) = self.next_batch_size(r.speed, r.profile.clone()).await;
                    ready = waited.map_or(ready, |w| w.max(ready));
                    n
                }
                Backend::Local(_) => {
                    let (n, waited) = self.next_batch_size(1.0, None).await;
                    ready = waited.map_or(ready, |w| w.max(ready));
                    n
                }
            };
            let mut batch = self.queue.take(n);
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
                    let dispatched = Instant::now();
                    let mut items = 0;
                    for p in &mut batch {
                        p.host = dispatched.saturating_duration_since(p.enqueued.max(ready));
                        items += p.items;
                    }
                    // the median, as the simulator runs a batch
                    let expected = self.ctx.profile.median_us(items);
                    let timing = crate::exec::executor::Timing {
                        dispatched,
                        // (a profile nobody here measured may say anything: never a panic here)
                        expected: Duration::try_from_secs_f64(expected / 1e6)
                            .unwrap_or(Duration::ZERO),
                    };
                    if self
                        .ctx
                        .pool
                        .submit(Job {
                            batch,
                            permit: Some(permit),
                            timing: Some(timing),
                        })
                        .is_err()
                    {
                        tracing::error!(model = %self.model, "executor pool stopped; batch loop ends");
                        return;
                    }
                }
                Backend::Remote(r) => {
                    let dispatched = Instant::now();
                    for p in &mut batch {
                        p.host = dispatched.saturating_duration_since(p.enqueued.max(ready));
                    }
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

    /// The size of the next batch for a backend `speed` times as fast as the profiled machine,
    /// or with its own curve `own` (a worker whose type the catalog profiles).
    /// The batch size, and when the last wait the policy asked for ended (`None` when it asked
    /// for none).
    async fn next_batch_size(
        &mut self,
        speed: f64,
        own: Option<Arc<Vec<ProfilePoint>>>,
    ) -> (u32, Option<Instant>) {
        let scaled = own.is_none() && self.scale_profile(speed);
        let live = &self.ctx.metrics.live;
        if live.generation() != self.live.0 {
            self.live = (live.generation(), live.profile().policy_points(1.0));
        }
        // a worker with its own curve batches up to the largest batch that curve measured
        let max_batch = match own.as_deref().and_then(|p| p.last()) {
            Some(last) if self.max_batch > 0 => last.batch.clamp(1, self.max_batch),
            _ => self.max_batch,
        };
        let mut waited = None;
        loop {
            let notified = self.queue.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let Some(snap) = self.queue.snapshot(Instant::now()) else {
                notified.await;
                continue;
            };
            if max_batch == 0 {
                return (0, waited);
            }
            let state = QueueState {
                queued_items: snap.batchable_items,
                queued_requests: snap.requests,
                oldest_wait_us: snap.oldest_wait_us,
                slo_us: self.slo_us,
                arrival_rate: snap.arrival_rate,
                max_batch,
                executors: self.executors + self.remotes.healthy(),
                profile: match &own {
                    Some(p) => p,
                    None if scaled => &self.scaled.1,
                    // the executors: sized for what their batches take now, when it is worse
                    None if !self.live.1.is_empty() => &self.live.1,
                    None => &self.profile,
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
                return (snap.batchable_items.clamp(1, max_batch), waited);
            }
            match decision {
                BatchDecision::Send(n) => return (n.clamp(1, max_batch), waited),
                BatchDecision::Wait(us) => {
                    // Wait up to the time the policy asked for. Arrivals wake us, but the policy
                    // is asked again only once the queue grew by a step (an eighth of the max
                    // batch) or holds a full batch: re-asking on every arrival would make the
                    // policy cost per request instead of per batch decision.
                    // never past the oldest request's SLO (then the check above sends it)
                    let left = self.slo_us.saturating_sub(snap.oldest_wait_us).max(1);
                    let until = Instant::now() + Duration::from_micros(us.min(left));
                    let step = (max_batch / 8).max(1);
                    let seen = snap.batchable_items;
                    loop {
                        let notified = self.queue.notify.notified();
                        tokio::pin!(notified);
                        notified.as_mut().enable();
                        let now_items = self
                            .queue
                            .snapshot(Instant::now())
                            .map_or(0, |s| s.batchable_items);
                        if now_items >= max_batch || now_items >= seen + step {
                            break;
                        }
                        if tokio::time::timeout_at(until, notified).await.is_err() {
                            break;
                        }
                    }
                    waited = Some(Instant::now().min(until));
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

#[cfg(test)]
mod tests {
    //! The batch loop's timing, in paused time: the clock only moves when every task waits, so
    //! deadlines of tens of milliseconds are exact and the tests take no wall time.

    use std::sync::atomic::Ordering::Relaxed;
    use std::sync::Mutex;

    use tokio::sync::oneshot;

    use super::*;
    use crate::exec::executor::ExecutorPool;
    use crate::metrics::ModelMetrics;
    use crate::work::{Pending, Reply};

    /// Answers from a script, recording every queue state it was shown.
    struct Scripted {
        answers: Vec<BatchDecision>,
        seen: Seen,
    }

    impl BatchPolicy for Scripted {
        fn decide(&mut self, s: &QueueState<'_>) -> BatchDecision {
            self.seen
                .lock()
                .unwrap()
                .push((s.queued_items, s.oldest_wait_us));
            if self.answers.len() > 1 {
                self.answers.remove(0)
            } else {
                self.answers[0]
            }
        }
    }

    /// (queued items, oldest wait in µs) of every decision the policy was asked for.
    type Seen = Arc<Mutex<Vec<(u32, u64)>>>;

    fn batcher(answers: Vec<BatchDecision>, max_batch: u32) -> (Batcher, Seen) {
        let metrics = Arc::new(ModelMetrics::default());
        let slo = Duration::from_millis(50);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let ctx = Arc::new(BatchCtx {
            model: "m".into(),
            pool: Arc::new(ExecutorPool::spawn(
                "m",
                Vec::new(),
                Vec::new(),
                Vec::new(),
                metrics.clone(),
                slo,
            )),
            metrics,
            slo,
            outputs: Vec::new(),
            profile: Arc::default(),
            batched: true,
        });
        let b = Batcher {
            model: "m".into(),
            queue: Arc::new(ModelQueue::new(64)),
            ctx,
            remotes: Arc::default(),
            free_executors: Arc::new(Semaphore::new(1)),
            executors: 1,
            policy: Box::new(Scripted {
                answers,
                seen: seen.clone(),
            }),
            profile: Vec::new(),
            scaled: (1.0, Vec::new()),
            slo_us: 50_000,
            max_batch,
            live: (0, Vec::new()),
        };
        (b, seen)
    }

    fn push(q: &ModelQueue, items: u32) -> oneshot::Receiver<Reply> {
        let (tx, rx) = oneshot::channel();
        q.push(Pending {
            inputs: Vec::new(),
            items,
            signature: Vec::new(),
            enqueued: Instant::now(),
            host: Default::default(),
            reply: tx,
        })
        .map_err(|_| "full")
        .unwrap();
        rx
    }

    #[tokio::test(start_paused = true)]
    async fn a_policy_that_always_waits_is_overruled_at_the_slo() {
        let (mut b, seen) = batcher(vec![BatchDecision::Wait(10_000_000)], 16);
        let _rx = push(&b.queue, 3);
        let t = Instant::now();
        let (n, waited) = b.next_batch_size(1.0, None).await;
        assert_eq!(n, 3, "everything batchable goes");
        assert_eq!(
            waited,
            Some(t + Duration::from_millis(50)),
            "the wait ended then"
        );
        assert_eq!(t.elapsed(), Duration::from_millis(50), "exactly at the SLO");
        assert_eq!(b.ctx.metrics.forced_sends.load(Relaxed), 1);
        let seen = seen.lock().unwrap();
        assert_eq!(seen.first(), Some(&(3, 0)));
        assert_eq!(seen.last().map(|s| s.1), Some(50_000));
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_lasts_what_the_policy_asked_then_it_is_asked_again() {
        let (mut b, seen) = batcher(vec![BatchDecision::Wait(5_000), BatchDecision::Send(2)], 16);
        let _rx = push(&b.queue, 4);
        let t = Instant::now();
        assert_eq!(
            b.next_batch_size(1.0, None).await,
            (2, Some(t + Duration::from_millis(5)))
        );
        assert_eq!(t.elapsed(), Duration::from_millis(5));
        assert_eq!(*seen.lock().unwrap(), vec![(4, 0), (4, 5_000)]);
        assert_eq!(b.ctx.metrics.forced_sends.load(Relaxed), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn arrivals_of_a_step_end_a_wait_early() {
        let (mut b, seen) = batcher(
            vec![BatchDecision::Wait(40_000), BatchDecision::Send(16)],
            16,
        );
        let q = b.queue.clone();
        let _rx = push(&q, 1);
        let arrivals = tokio::spawn(async move {
            // one item: below the step (16 / 8 = 2), the policy is not asked again
            tokio::time::sleep(Duration::from_millis(3)).await;
            let a = push(&q, 1);
            tokio::time::sleep(Duration::from_millis(3)).await;
            let b = push(&q, 1);
            (a, b)
        });
        let t = Instant::now();
        assert_eq!(
            b.next_batch_size(1.0, None).await,
            (16, Some(t + Duration::from_millis(6)))
        );
        assert_eq!(
            t.elapsed(),
            Duration::from_millis(6),
            "woken by the second arrival"
        );
        assert_eq!(*seen.lock().unwrap(), vec![(1, 0), (3, 6_000)]);
        drop(arrivals.await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn an_empty_queue_waits_for_an_arrival_without_asking() {
        let (mut b, seen) = batcher(vec![BatchDecision::Send(1)], 16);
        let q = b.queue.clone();
        let later = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            vec![push(&q, 2)]
        });
        let t = Instant::now();
        assert_eq!(
            b.next_batch_size(1.0, None).await,
            (1, None),
            "no wait the policy asked for"
        );
        assert_eq!(t.elapsed(), Duration::from_secs(3));
        assert_eq!(
            seen.lock().unwrap().len(),
            1,
            "asked once, when the request came"
        );
        drop(later.await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn a_worker_with_its_own_curve_is_sized_from_it() {
        struct Probe(Arc<Mutex<Vec<f64>>>);
        impl BatchPolicy for Probe {
            fn decide(&mut self, s: &QueueState<'_>) -> BatchDecision {
                self.0.lock().unwrap().push(s.profile[0].latency_us);
                BatchDecision::Send(1)
            }
        }
        let (mut b, _) = batcher(vec![BatchDecision::Send(1)], 16);
        let shown = Arc::new(Mutex::new(Vec::new()));
        b.policy = Box::new(Probe(shown.clone()));
        b.profile = vec![ProfilePoint {
            batch: 1,
            latency_us: 8000.0,
        }];
        let _rx = push(&b.queue, 1);
        let gpu = Arc::new(vec![ProfilePoint {
            batch: 1,
            latency_us: 1500.0,
        }]);
        b.next_batch_size(1.0, None).await;
        b.next_batch_size(2.0, None).await;
        b.next_batch_size(2.0, Some(gpu)).await;
        assert_eq!(*shown.lock().unwrap(), vec![8000.0, 4000.0, 1500.0]);
    }

    #[test]
    fn a_faster_backend_sees_a_scaled_profile() {
        let (mut b, _) = batcher(vec![BatchDecision::Send(1)], 16);
        b.profile = vec![ProfilePoint {
            batch: 1,
            latency_us: 1000.0,
        }];
        assert!(!b.scale_profile(1.0), "the executors' own speed");
        assert!(!b.scale_profile(f64::NAN) && !b.scale_profile(0.0));
        assert!(b.scale_profile(2.0));
        assert_eq!(b.scaled.1[0].latency_us, 500.0);
    }
}
