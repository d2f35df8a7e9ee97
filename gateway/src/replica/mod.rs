//! Several `mark serve` replicas behind a load balancer, one controller at a time.
//!
//! Every replica serves its own clients (own queues and batchers) and shares the fleet found by
//! its cloud tags. The control loop's *decisions* (predict → provision → act) run only on the
//! replica holding the lease in DynamoDB ([`store`]); the others keep their monitors warm with
//! the fleet-wide demand, so a replica that takes over plans from the same history at once.
//!
//! The lease: taken with a conditional write when absent or expired, renewed every third of its
//! length, given up on a graceful stop. A holder trusts it for 90% of its length after the call
//! that took or renewed it was *sent*, so it stops acting before anyone else may take over (on
//! one clock; across machines the margin covers the skew NTP keeps).

pub mod store;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use store::{Store, StoreError, StoreOptions};

use crate::clock::wall_s;
use crate::control::demand::{Outcomes, ReplicaRow};
use crate::control::status::ReplicaStatus;

/// Settings of a replica (`--replica-id`, `--lease-table`, `--lease-seconds`).
#[derive(Debug, Clone)]
pub struct ReplicaOptions {
    /// This replica's name, unique among the fleet's replicas.
    pub id: String,
    /// The table and how to reach it.
    pub store: StoreOptions,
    /// Length of the lease.
    pub lease: Duration,
}

/// The lease as this replica knows it.
#[derive(Debug, Clone, Default)]
struct Held {
    generation: u64,
    /// Until when this replica may act as the controller.
    valid_until: Option<Instant>,
}

/// One replica's lease and published counters.
pub struct Replica {
    /// `--replica-id`.
    pub id: String,
    epoch: String,
    lease: Duration,
    store: Store,
    held: Mutex<Held>,
    /// Times this replica took the lease.
    pub acquired: AtomicU64,
    /// The last holder seen (a follower's view of who leads).
    holder: Mutex<String>,
    /// Set once the replica gave the lease up for good (shutting down).
    stopped: AtomicBool,
}

fn wall_ms() -> u64 {
    (wall_s() * 1000.0) as u64
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("id", &self.id)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl Replica {
    /// Connects to the table (creating it when missing).
    pub async fn connect(o: ReplicaOptions) -> Result<Arc<Self>, String> {
        let store = Store::connect(&o.store).await;
        store
            .ensure_table()
            .await
            .map_err(|e| format!("lease table {}: {e}", o.store.table))?;
        Ok(Arc::new(Replica {
            epoch: format!("{}-{}", std::process::id(), wall_ms()),
            id: o.id,
            lease: o.lease,
            store,
            held: Mutex::new(Held::default()),
            acquired: AtomicU64::new(0),
            holder: Mutex::new(String::new()),
            stopped: AtomicBool::new(false),
        }))
    }

    /// True while this replica holds a lease it may act on.
    pub fn is_leader(&self) -> bool {
        self.held
            .lock()
            .expect("lease lock")
            .valid_until
            .is_some_and(|t| Instant::now() < t)
    }

    /// The generation of the lease this replica holds (0 when it holds none).
    pub fn generation(&self) -> u64 {
        let h = self.held.lock().expect("lease lock");
        if h.valid_until.is_some_and(|t| Instant::now() < t) {
            h.generation
        } else {
            0
        }
    }

    /// One round: renew what is held, or try to take it. Returns the time to the next round.
    async fn round(&self) -> Duration {
        let lease_ms = self.lease.as_millis() as u64;
        let sent = Instant::now();
        let trust = self.lease.mul_f64(0.9);
        let held = self.held.lock().expect("lease lock").clone();
        let holding = held.valid_until.is_some();
        let r = if holding {
            self.store
                .renew(&self.id, held.generation, wall_ms(), lease_ms)
                .await
                .map(|()| held.generation)
        } else {
            self.store.acquire(&self.id, wall_ms(), lease_ms).await
        };
        let refused = matches!(r, Err(StoreError::Refused));
        let next = self.settle(r, holding, held.generation, sent + trust);
        if refused {
            if let Ok(Some((holder, _, _))) = self.store.holder().await {
                *self.holder.lock().expect("holder lock") = holder;
            }
        }
        next
    }

    /// Records the outcome of a round; returns the time to the next one.
    fn settle(
        &self,
        r: Result<u64, StoreError>,
        holding: bool,
        held_generation: u64,
        valid_until: Instant,
    ) -> Duration {
        let mut h = self.held.lock().expect("lease lock");
        match r {
            Ok(generation) => {
                if !holding {
                    self.acquired.fetch_add(1, Relaxed);
                    tracing::info!(replica = %self.id, generation, "took the controller lease: this replica now runs the control loop");
                }
                *h = Held {
                    generation,
                    valid_until: Some(valid_until),
                };
                *self.holder.lock().expect("holder lock") = self.id.clone();
                self.lease / 3
            }
            Err(StoreError::Refused) => {
                if holding {
                    tracing::warn!(replica = %self.id, generation = held_generation, "lost the controller lease");
                }
                *h = Held::default();
                self.lease / 10
            }
            Err(StoreError::Failed(e)) => {
                // keep acting only while the lease is surely still ours
                if h.valid_until.is_some_and(|t| Instant::now() >= t) {
                    *h = Held::default();
                }
                tracing::warn!(replica = %self.id, cause = %e, "lease call failed");
                self.lease / 10
            }
        }
    }

    /// Keeps the lease (or tries to take it) until [`Replica::release`].
    pub async fn run(self: Arc<Self>) {
        while !self.stopped.load(Relaxed) {
            let next = self.round().await;
            tokio::time::sleep(next.max(Duration::from_millis(50))).await;
        }
    }

    /// Stops contending and gives the lease up if held (a graceful stop: the next replica takes
    /// over within its next round instead of waiting for the lease to expire).
    pub async fn release(&self) {
        self.stopped.store(true, Relaxed);
        let h = std::mem::take(&mut *self.held.lock().expect("lease lock"));
        if h.valid_until.is_some() {
            match self.store.release(&self.id, h.generation).await {
                Ok(()) => {
                    tracing::info!(replica = %self.id, generation = h.generation, "gave the controller lease up")
                }
                Err(e) => {
                    tracing::warn!(replica = %self.id, cause = %e, "giving the lease up failed; it expires on its own")
                }
            }
        }
    }

    /// Publishes this replica's counters: `totals` since it started, `window` what its last
    /// rate window added. Rows expire (TTL) `ttl_s` after the publication.
    pub async fn publish(&self, totals: Outcomes, window: Outcomes, ttl_s: u64) -> bool {
        let row = ReplicaRow {
            replica: self.id.clone(),
            epoch: self.epoch.clone(),
            totals,
            last_window: window,
            updated_ms: wall_ms(),
        };
        match self.store.publish(&row, ttl_s).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(replica = %self.id, cause = %e, "publishing this replica's counters failed; the next window's carries them");
                false
            }
        }
    }

    /// Every replica's counters, and the wall-clock time of the read (ms).
    pub async fn rows(&self) -> Option<(Vec<ReplicaRow>, u64)> {
        match self.store.rows().await {
            Ok(r) => Some((r, wall_ms())),
            Err(e) => {
                tracing::warn!(replica = %self.id, cause = %e, "reading the replicas' counters failed; the next window's read makes it up");
                None
            }
        }
    }

    /// What the status page shows of this replica.
    pub fn status(&self) -> ReplicaStatus {
        ReplicaStatus {
            id: self.id.clone(),
            leader: self.is_leader(),
            generation: self.generation(),
            holder: self.holder.lock().expect("holder lock").clone(),
            lease_seconds: self.lease.as_secs_f64(),
            times_acquired: self.acquired.load(Relaxed),
            ..ReplicaStatus::default()
        }
    }
}
