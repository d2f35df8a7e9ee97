//! The bounded per-model queue: admission, arrival-rate tracking and batch formation.
//!
//! Nothing in the queue runs for nobody: a request whose client went away (connection closed,
//! HTTP/2 stream reset) is removed without running, and, unless the model serves late answers, a
//! request whose deadline passed while it waited is answered 504 without running.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::metrics::ModelMetrics;
use crate::tensor::Tensor;
use crate::work::{ExecError, Pending};

/// Refusal at admission.
#[derive(Debug, PartialEq, Eq)]
pub struct QueueFull {
    /// The bound that was hit.
    pub capacity: usize,
}

struct Inner {
    items: VecDeque<Pending>,
    queued_items: u64,
    rate: f64,
    last_arrival: Option<Instant>,
}

/// Bounded FIFO of pending requests for one model.
pub struct ModelQueue {
    inner: Mutex<Inner>,
    /// Woken on every arrival.
    pub notify: Notify,
    capacity: usize,
    /// A request still queued this long after admission is answered 504 (`None`: served late).
    expire_after: Option<Duration>,
    metrics: Arc<ModelMetrics>,
    model: String,
}

/// A snapshot for the batch policy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Snapshot {
    /// Items that could join a batch with the oldest request (same signature).
    pub batchable_items: u32,
    /// Requests waiting.
    pub requests: u32,
    /// Age of the oldest request, microseconds.
    pub oldest_wait_us: u64,
    /// Arrival rate, items per second.
    pub arrival_rate: f64,
}

/// Time constant of the arrival-rate average, seconds.
const RATE_TAU_S: f64 = 1.0;

impl ModelQueue {
    /// An empty queue holding at most `capacity` requests that never expire.
    pub fn new(capacity: usize) -> Self {
        Self::with_deadline(capacity, None, String::new(), Arc::default())
    }

    /// An empty queue of `model` holding at most `capacity` requests; a request still queued
    /// `expire_after` after admission is answered 504 without running.
    pub fn with_deadline(
        capacity: usize,
        expire_after: Option<Duration>,
        model: String,
        metrics: Arc<ModelMetrics>,
    ) -> Self {
        ModelQueue {
            inner: Mutex::new(Inner {
                items: VecDeque::new(),
                queued_items: 0,
                rate: 0.0,
                last_arrival: None,
            }),
            notify: Notify::new(),
            capacity,
            expire_after,
            metrics,
            model,
        }
    }

    /// Input bytes per item of the oldest request (what one more item adds to a batch's payload).
    pub fn oldest_bytes_per_item(&self) -> Option<usize> {
        let g = self.inner.lock().expect("queue lock");
        let p = g.items.front()?;
        let bytes: usize = p.inputs.iter().map(Tensor::byte_len).sum();
        Some(bytes / p.items.max(1) as usize)
    }

    /// Items (rows) waiting.
    pub fn queued_items(&self) -> u64 {
        self.inner.lock().expect("queue lock").queued_items
    }

    /// Removes requests nobody waits for (counted as cancelled) and, with a deadline, requests
    /// past it (answered 504, counted as expired).
    fn purge(&self, g: &mut Inner, now: Instant) {
        let expire = self.expire_after;
        let stale = |p: &Pending| {
            p.reply.is_closed()
                || expire.is_some_and(|d| now.saturating_duration_since(p.enqueued) >= d)
        };
        if !g.items.iter().any(stale) {
            return;
        }
        let mut kept = VecDeque::with_capacity(g.items.len());
        for p in g.items.drain(..) {
            if !stale(&p) {
                kept.push_back(p);
                continue;
            }
            g.queued_items -= u64::from(p.items);
            if p.reply.is_closed() {
                self.metrics.cancelled.fetch_add(1, Relaxed);
            } else {
                self.metrics.expired.fetch_add(1, Relaxed);
                let waited = now.saturating_duration_since(p.enqueued);
                let _ = p.reply.send(Err(ExecError::Expired {
                    model: self.model.clone(),
                    waited_ms: waited.as_millis() as u64,
                }));
            }
        }
        g.items = kept;
    }

    /// Admits a request, or refuses it when the queue is full (nothing is queued then).
    pub fn push(&self, p: Pending) -> Result<(), (QueueFull, Pending)> {
        let mut g = self.inner.lock().expect("queue lock");
        if g.items.len() >= self.capacity {
            return Err((
                QueueFull {
                    capacity: self.capacity,
                },
                p,
            ));
        }
        let now = p.enqueued;
        if let Some(last) = g.last_arrival {
            // Exponentially weighted rate: each arrival of n items over gap dt contributes n/dt.
            let dt = now.saturating_duration_since(last).as_secs_f64().max(1e-6);
            let w = (-dt / RATE_TAU_S).exp();
            g.rate = w * g.rate + (1.0 - w) * (f64::from(p.items) / dt).min(1e6);
        }
        g.last_arrival = Some(now);
        g.queued_items += u64::from(p.items);
        g.items.push_back(p);
        drop(g);
        self.notify.notify_one();
        Ok(())
    }

    /// Requests waiting.
    pub fn len(&self) -> usize {
        self.inner.lock().expect("queue lock").items.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// State for the policy at `now`; `None` when empty.
    pub fn snapshot(&self, now: Instant) -> Option<Snapshot> {
        let mut g = self.inner.lock().expect("queue lock");
        self.purge(&mut g, now);
        let first = g.items.front()?;
        let batchable: u64 = g
            .items
            .iter()
            .filter(|p| p.signature == first.signature)
            .map(|p| u64::from(p.items))
            .sum();
        // The rate decays while nothing arrives, so a burst that ended does not keep batches waiting.
        let idle = g
            .last_arrival
            .map(|t| now.saturating_duration_since(t).as_secs_f64())
            .unwrap_or(0.0);
        Some(Snapshot {
            batchable_items: batchable.min(u64::from(u32::MAX)) as u32,
            requests: g.items.len() as u32,
            oldest_wait_us: now.saturating_duration_since(first.enqueued).as_micros() as u64,
            arrival_rate: g.rate * (-idle / RATE_TAU_S).exp(),
        })
    }

    /// Removes the oldest request and, in order, later ones with the same signature while the total
    /// stays within `max_items`. The oldest is always taken, even when it alone exceeds the bound.
    ///
    /// With a deadline, requests queued past it are answered 504 first (never run). Whether a
    /// request would end late once run is not guessed here: a profile that underrates a backend
    /// (a catalog speed, a busy core) would drop requests that make it.
    pub fn take(&self, max_items: u32) -> Vec<Pending> {
        let mut g = self.inner.lock().expect("queue lock");
        self.purge(&mut g, Instant::now());
        let Some(first) = g.items.pop_front() else {
            return Vec::new();
        };
        let mut total = first.items;
        let sig = first.signature.clone();
        let mut out = vec![first];
        let mut i = 0;
        while i < g.items.len() && total < max_items {
            if g.items[i].signature == sig && total + g.items[i].items <= max_items {
                let p = g.items.remove(i).expect("index in range");
                total += p.items;
                out.push(p);
            } else {
                i += 1;
            }
        }
        g.queued_items -= out.iter().map(|p| u64::from(p.items)).sum::<u64>();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::work::Reply;
    use tokio::sync::oneshot;

    fn pending(items: u32, sig: i64) -> (Pending, oneshot::Receiver<Reply>) {
        let (tx, rx) = oneshot::channel();
        (
            Pending {
                inputs: vec![],
                items,
                signature: vec![vec![sig]],
                enqueued: Instant::now(),
                host: Default::default(),
                reply: tx,
            },
            rx,
        )
    }

    #[test]
    fn full_queue_refuses_and_keeps_order() {
        let q = ModelQueue::new(2);
        let (a, _ra) = pending(1, 0);
        let (b, _rb) = pending(2, 0);
        q.push(a).unwrap();
        q.push(b).unwrap();
        let (err, back) = q.push(pending(3, 0).0).unwrap_err();
        assert_eq!(err.capacity, 2);
        assert_eq!(back.items, 3);
        let b = q.take(10);
        assert_eq!(b.iter().map(|p| p.items).collect::<Vec<_>>(), vec![1, 2]);
    }

    #[test]
    fn abandoned_requests_leave_without_running() {
        let metrics = Arc::new(ModelMetrics::default());
        let q = ModelQueue::with_deadline(10, None, "m".into(), metrics.clone());
        let (a, rx_a) = pending(1, 0);
        let (b, rx_b) = pending(2, 0);
        q.push(a).unwrap();
        q.push(b).unwrap();
        drop(rx_a); // the client hung up
        let snap = q.snapshot(Instant::now()).unwrap();
        assert_eq!((snap.requests, snap.batchable_items), (1, 2));
        let batch = q.take(10);
        assert_eq!(batch.len(), 1);
        assert_eq!(batch[0].items, 2);
        assert_eq!(metrics.cancelled.load(Relaxed), 1);
        drop(rx_b);
    }

    #[test]
    fn requests_past_their_deadline_are_answered_504_without_running() {
        let metrics = Arc::new(ModelMetrics::default());
        let q = ModelQueue::with_deadline(
            10,
            Some(Duration::from_millis(20)),
            "m".into(),
            metrics.clone(),
        );
        let (a, mut rx_a) = pending(1, 0);
        q.push(a).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        let (b, _rx_b) = pending(1, 0);
        q.push(b).unwrap();
        let batch = q.take(10);
        assert_eq!(batch.len(), 1, "only the fresh request runs");
        assert!(matches!(
            rx_a.try_recv(),
            Ok(Err(ExecError::Expired { .. }))
        ));
        assert_eq!(metrics.expired.load(Relaxed), 1);
        assert_eq!(q.queued_items(), 0);
    }

    #[test]
    fn take_groups_by_signature_and_bound() {
        let q = ModelQueue::new(10);
        let mut clients = Vec::new();
        for (n, s) in [(2, 0), (1, 1), (2, 0), (3, 0)] {
            let (p, rx) = pending(n, s);
            clients.push(rx);
            q.push(p).unwrap();
        }
        let snap = q.snapshot(Instant::now()).unwrap();
        assert_eq!(snap.batchable_items, 7);
        assert_eq!(snap.requests, 4);
        let b = q.take(4);
        assert_eq!(b.iter().map(|p| p.items).collect::<Vec<_>>(), vec![2, 2]);
        // the other-signature request is now the oldest
        let b = q.take(4);
        assert_eq!(b[0].signature, vec![vec![1]]);
        assert_eq!(q.len(), 1);
    }
}
