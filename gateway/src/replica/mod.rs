//! Several `mark serve` replicas behind a load balancer, one controller at a time.
//!
//! Every replica serves its own clients (own queues and batchers) and shares the fleet found by
//! its cloud tags. The control loop's *decisions* (predict → provision → act) run only on the
//! replica holding the lease in DynamoDB ([`store`]); the others keep their monitors warm with
//! the fleet-wide demand, so a replica that takes over plans from the same history at once.
//!
//! The lease is [`crate::lease`]'s: no wall clocks compared across machines, every write
//! conditional on the version seen, each act fenced by the generation it was planned under.
//! Serving never needs the table: a replica starts as a follower and reaches (or creates) the
//! table in the background, retrying with back-off.

pub mod claim;
pub mod store;

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use claim::RowClaim;
use store::{Store, StoreOptions};

use crate::clock::wall_s;
use crate::control::demand::{Outcomes, ReplicaRow};
use crate::control::status::ReplicaStatus;
use crate::lease::{CallError, Lease, Next, Write, Writer};

/// Settings of a replica (`--replica-id`, `--lease-table`, `--lease-seconds`).
#[derive(Debug, Clone)]
pub struct ReplicaOptions {
    /// This replica's name, unique among the fleet's replicas.
    pub id: String,
    /// The table and how to reach it.
    pub store: StoreOptions,
    /// Length of the lease.
    pub lease: Duration,
    /// A row unchanged this long is of a replica gone (3 publication windows, at least 10 s).
    pub stale: Duration,
}

/// An act on the cloud under the lease (see [`Replica::acting`]).
#[derive(Debug)]
pub struct Acting(#[allow(dead_code)] tokio::sync::OwnedRwLockReadGuard<()>);

/// One replica's lease and published counters.
pub struct Replica {
    /// `--replica-id`.
    pub id: String,
    epoch: String,
    store: Store,
    table: String,
    started: Instant,
    lease: Mutex<Lease>,
    /// One lease call at a time: a release waits for a renewal in flight.
    calls: tokio::sync::Mutex<()>,
    /// Held (shared) by each act on the cloud: a release waits for the acts in flight.
    acts: Arc<tokio::sync::RwLock<()>>,
    /// Set after this process's first publication (its later ones carry one window).
    published_once: AtomicBool,
    claim: Mutex<RowClaim>,
    /// Set once the table is reachable (and exists).
    ready: AtomicBool,
    /// Set once the replica gave the lease up for good (shutting down).
    stopped: AtomicBool,
    /// Why this process must stop (another running process uses its replica id).
    fatal: Mutex<Option<String>>,
    fatal_notify: tokio::sync::Notify,
}

fn wall_ms() -> u64 {
    (wall_s() * 1000.0) as u64
}

/// The default replica id: the host's name, this process's id and a random suffix.
pub fn default_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    // host and pid alone repeat across containers with the host's network (pid 1 each)
    let id = format!(
        "{host}-{}-{:04x}",
        std::process::id(),
        rand::random::<u16>()
    );
    id.chars()
        .rev()
        .take(128)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect()
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("id", &self.id)
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

impl Replica {
    /// A replica of `o` (no call made yet: [`Replica::run`] reaches the table).
    pub async fn new(o: ReplicaOptions) -> Arc<Self> {
        let store = Store::connect(&o.store).await;
        let epoch = format!("{}-{}", std::process::id(), wall_ms());
        let lease = Lease::new(Writer {
            id: o.id.clone(),
            incarnation: format!("{}/{epoch}", o.id),
            lease_ms: o.lease.as_millis() as u64,
        });
        Arc::new(Replica {
            claim: Mutex::new(RowClaim::new(&o.id, &epoch, o.stale.as_secs_f64())),
            epoch,
            id: o.id,
            table: o.store.table.clone(),
            store,
            started: Instant::now(),
            lease: Mutex::new(lease),
            calls: tokio::sync::Mutex::new(()),
            acts: Arc::new(tokio::sync::RwLock::new(())),
            published_once: AtomicBool::new(false),
            ready: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            fatal: Mutex::new(None),
            fatal_notify: tokio::sync::Notify::new(),
        })
    }

    /// This process's monotonic clock (s).
    fn now(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    fn lease(&self) -> std::sync::MutexGuard<'_, Lease> {
        self.lease.lock().expect("lease lock")
    }

    /// True while this replica holds a lease it may act on.
    pub fn is_leader(&self) -> bool {
        self.lease().is_leader(self.now())
    }

    /// The generation of the lease this replica may act under (0 when it holds none): the
    /// fencing token a control tick carries into each of its acts.
    pub fn generation(&self) -> u64 {
        self.lease().generation(self.now())
    }

    /// True while this replica may still act under `generation` (checked before each act).
    pub fn holds(&self, generation: u64) -> bool {
        self.lease().holds(generation, self.now())
    }

    /// The fence of one act on the cloud: a guard while this replica still leads under
    /// `generation`, `None` otherwise. A release (graceful stop) waits for the guards out.
    pub async fn acting(&self, generation: u64) -> Option<Acting> {
        let guard = self.acts.clone().read_owned().await;
        self.holds(generation).then_some(Acting(guard))
    }

    /// One round: renew what is held, or read the record and perhaps take it. Returns the
    /// time to the next round.
    async fn round(&self) -> Duration {
        let _one = self.calls.lock().await;
        if self.stopped.load(Relaxed) {
            return Duration::ZERO;
        }
        let me = self.lease().me.clone();
        let next = self.lease().next();
        let sent = self.now();
        let wait = match next {
            Next::Renew(g) => {
                let r = self.store.write(&me, Write::Renew(g), wall_ms()).await;
                if let Err(e) = &r {
                    match e {
                        CallError::Refused => {
                            tracing::warn!(replica = %self.id, generation = g, "lost the controller lease")
                        }
                        CallError::Failed(e) => {
                            tracing::warn!(replica = %self.id, cause = %e, "renewing the lease failed; acting only while it surely holds")
                        }
                    }
                }
                self.lease().renewed(sent, r)
            }
            Next::Read => {
                let read = self.store.read().await;
                if let Err(CallError::Failed(e)) = &read {
                    tracing::debug!(replica = %self.id, cause = %e, "reading the lease failed");
                }
                let w = self.lease().read(self.now(), read);
                match w {
                    Some(w) => {
                        let sent = self.now();
                        let r = self.store.write(&me, w, wall_ms()).await;
                        let mut l = self.lease();
                        let before = l.acquired;
                        let wait = l.acquire_answered(sent, r);
                        if l.acquired > before {
                            tracing::info!(replica = %self.id, generation = l.generation(self.now()), "took the controller lease: this replica now runs the control loop");
                        }
                        wait
                    }
                    None => self.lease().lease_s() / 10.0,
                }
            }
        };
        Duration::from_secs_f64(wait)
    }

    /// Reaches the table (creating it when missing), retrying with back-off: meanwhile this
    /// replica serves as a follower.
    async fn reach_table(&self) {
        let mut wait = Duration::from_millis(500);
        loop {
            match self.store.ensure_table().await {
                Ok(()) => {
                    self.ready.store(true, Relaxed);
                    return;
                }
                Err(e) => {
                    let why = e.to_string();
                    if ["AccessDenied", "UnrecognizedClient", "InvalidSignature"]
                        .iter()
                        .any(|c| why.contains(c))
                    {
                        // a missing permission does not heal by retrying: say so and stop
                        self.stop_with(format!(
                            "--lease-table {}: not allowed to use the table ({why}); see the IAM policy in docs/operations.md",
                            self.table
                        ));
                        return;
                    }
                    tracing::warn!(replica = %self.id, table = %self.table, cause = %e, retry_in_s = wait.as_secs_f64(), "the lease table is not reachable: serving as a follower meanwhile");
                }
            }
            if self.stopped.load(Relaxed) {
                return;
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(5));
        }
    }

    /// Keeps the lease (or tries to take it) until [`Replica::release`].
    pub async fn run(self: Arc<Self>) {
        self.reach_table().await;
        while !self.stopped.load(Relaxed) {
            let next = self.round().await;
            tokio::time::sleep(next.max(Duration::from_millis(50))).await;
        }
    }

    /// Stops contending and gives the lease up if held (a graceful stop: the next replica takes
    /// over within its next round instead of waiting out a lease). Waits for a lease call in
    /// flight, so no renewal lands after the release.
    pub async fn release(&self) {
        let _one = self.calls.lock().await;
        self.stopped.store(true, Relaxed);
        let me = self.lease().me.clone();
        let Some(w) = self.lease().give_up() else {
            return;
        };
        // no act starts from here on; the ones in flight end before anyone may take over
        let _quiet = self.acts.write().await;
        match self.store.write(&me, w, wall_ms()).await {
            Ok(_) => tracing::info!(replica = %self.id, "gave the controller lease up"),
            Err(e) => {
                tracing::warn!(replica = %self.id, cause = %e, "giving the lease up failed; it is taken over a lease after its last renewal")
            }
        }
    }

    /// Publishes this replica's counters: `totals` since it started, `window` what its last
    /// rate window added (all of `totals` at this process's first publication). Rows expire
    /// (TTL) `ttl_s` after the publication.
    pub async fn publish(&self, totals: Outcomes, window: Outcomes, ttl_s: u64) -> bool {
        if !self.ready.load(Relaxed) {
            return false;
        }
        let read_first = self.claim.lock().expect("claim lock").needs_read();
        let claim = if read_first {
            let row = match self.store.own_row(&self.id).await {
                Ok(row) => row,
                Err(e) => {
                    tracing::warn!(replica = %self.id, cause = %e, "reading this replica's row failed");
                    return false;
                }
            };
            let mut c = self.claim.lock().expect("claim lock");
            c.recheck(&row);
            let claim = c.seen(self.now(), row);
            if let Some(why) = c.duplicate() {
                self.stop_for(why.to_string());
                return false;
            }
            claim
        } else {
            self.claim.lock().expect("claim lock").claim()
        };
        let Some(claim) = claim else {
            return false;
        };
        // the first publication of this process carries all it counted (a reader seeing the
        // row for the first time counts its last window); later ones, one window each
        let first = !self.published_once.load(Relaxed);
        let row = ReplicaRow {
            replica: self.id.clone(),
            epoch: self.epoch.clone(),
            totals,
            last_window: if first { totals } else { window },
            updated_ms: wall_ms(),
        };
        let r = self.store.publish(&row, ttl_s, &claim).await;
        self.claim.lock().expect("claim lock").published(&r);
        match r {
            Ok(()) => {
                self.published_once.store(true, Relaxed);
                true
            }
            Err(CallError::Refused) => false,
            Err(e) => {
                tracing::warn!(replica = %self.id, cause = %e, "publishing this replica's counters failed; the next window's carries them");
                false
            }
        }
    }

    fn stop_for(&self, why: String) {
        tracing::error!(replica = %self.id, "{why}: two running processes share this --replica-id");
        self.stop_with(format!(
            "--replica-id {}: {why}. Two running processes share this id; give each replica its own (or leave --replica-id out: the default is the host name, process id and a random suffix)",
            self.id
        ));
    }

    /// This process must stop: `why` is what it exits with.
    fn stop_with(&self, why: String) {
        let mut f = self.fatal.lock().expect("fatal lock");
        if f.is_none() {
            tracing::error!(replica = %self.id, "{why}");
            *f = Some(why);
            self.fatal_notify.notify_waiters();
            self.fatal_notify.notify_one();
        }
    }

    /// Resolves when this process must stop (another running process uses its replica id);
    /// the reason.
    pub async fn fatal(&self) -> String {
        loop {
            if let Some(why) = self.fatal.lock().expect("fatal lock").clone() {
                return why;
            }
            self.fatal_notify.notified().await;
        }
    }

    /// Every replica's counters, and this process's monotonic time of the read (s).
    pub async fn rows(&self) -> Option<(Vec<ReplicaRow>, f64)> {
        if !self.ready.load(Relaxed) {
            return None;
        }
        match self.store.rows().await {
            Ok(r) => Some((r, self.now())),
            Err(e) => {
                tracing::warn!(replica = %self.id, cause = %e, "reading the replicas' counters failed; each goes on at its last rate");
                None
            }
        }
    }

    /// This process's monotonic time (s), for a failed read.
    pub fn clock(&self) -> f64 {
        self.now()
    }

    /// What the status page shows of this replica.
    pub fn status(&self) -> ReplicaStatus {
        let now = self.now();
        let l = self.lease();
        ReplicaStatus {
            id: self.id.clone(),
            leader: l.is_leader(now),
            generation: l.generation(now),
            holder: l.holder_seen.clone(),
            lease_seconds: l.lease_s(),
            times_acquired: l.acquired,
            table_reachable: self.ready.load(Relaxed),
            ..ReplicaStatus::default()
        }
    }
}
