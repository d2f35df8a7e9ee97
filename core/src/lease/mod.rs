//! The controller lease among gateway replicas, as the AWS DynamoDB lock client keeps one: no
//! wall clocks compared across machines.
//!
//! The record (one row) names its holder and a [`Version`]: `generation` goes up with every
//! takeover (it is the fencing token each act carries), `beat` with every write. Every write is
//! conditional on what the writer saw:
//! - the holder renews every third of the lease, conditional on holding the same generation;
//!   it trusts the lease for 90% of its length after the renewal was *sent*, on its own
//!   monotonic clock;
//! - a contender reads the record and takes over only once the version it saw has stayed the
//!   same for a full lease on *its* monotonic clock (or at once when the record is absent or was
//!   given up), with a write conditional on that version: a holder that renewed in between makes
//!   the write fail. The contender's wait starts after the holder's last write, which was sent
//!   after the holder's trust started, so the holder stops acting before anyone may take over —
//!   whatever the clocks say, as long as their *rates* agree within 10% and a holder is not
//!   paused between checking its lease and acting for longer than the margin (bounded pause);
//! - a takeover is also allowed when the record already names this very process (a lost answer:
//!   the write applied, the reply did not arrive), and the generation goes up again;
//! - giving up is conditional on the generation too, so a renewal that lands after it (a late
//!   packet) is refused rather than re-extending the lease.
//!
//! [`Lease`] is the state machine (time is an argument, no I/O); [`Table`] applies the same
//! conditions to a record in memory (the simulator's table, and the tests'); the gateway's
//! DynamoDB store writes them as condition expressions.

/// What changes with every write of the record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Version {
    /// Bumped by every takeover: the fencing token.
    pub generation: u64,
    /// Bumped by every write.
    pub beat: u64,
    /// The writer's wall-clock expiry (ms; informational, and what replicas of earlier releases
    /// renew: a change of it is a beat too). 0 once given up.
    pub expires_ms: u64,
}

/// The lease record as the table holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// The holder's replica id ("" once given up).
    pub holder: String,
    /// The holding process (its replica id and epoch).
    pub incarnation: String,
    /// See [`Version`].
    pub version: Version,
    /// The holder's lease length (ms): a contender waits the longer of it and its own.
    pub lease_ms: u64,
}

impl Record {
    /// Nobody holds it (given up, by this release or an earlier one).
    pub fn released(&self) -> bool {
        self.holder.is_empty() || self.version.expires_ms == 0
    }
}

/// A conditional write of the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// Take it: when absent (`None`), when it still is the version seen (`Some`), or when it
    /// already names this process.
    Acquire(Option<Version>),
    /// Extend the lease held at this generation.
    Renew(u64),
    /// Give up the lease held at this generation.
    Release(u64),
}

/// Why a call did not apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The condition did not hold.
    Refused,
    /// The call failed (network, throttling, no table): it may or may not have applied.
    Failed(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Refused => f.write_str("condition not met"),
            CallError::Failed(e) => f.write_str(e),
        }
    }
}

/// Who writes: the replica id and its process's incarnation, with its lease length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Writer {
    /// `--replica-id`.
    pub id: String,
    /// This process (`id` and epoch).
    pub incarnation: String,
    /// Lease length (ms).
    pub lease_ms: u64,
}

/// The lease record in memory, with the conditions the DynamoDB store writes.
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// The record (absent until the first acquire).
    pub record: Option<Record>,
}

impl Table {
    /// Applies `w` by `who` at wall-clock `wall_ms` (the writer's clock); the record after.
    pub fn apply(&mut self, who: &Writer, w: Write, wall_ms: u64) -> Result<Record, CallError> {
        let mine = |r: &Record| r.holder == who.id && r.incarnation == who.incarnation;
        let ok = match (w, &self.record) {
            (Write::Acquire(None), None) => true,
            (Write::Acquire(_), Some(r)) if mine(r) => true,
            (Write::Acquire(Some(v)), Some(r)) => r.version == v,
            (Write::Acquire(_), _) => false,
            (Write::Renew(g) | Write::Release(g), Some(r)) => mine(r) && r.version.generation == g,
            (_, None) => false,
        };
        if !ok {
            return Err(CallError::Refused);
        }
        let old = self.record.clone().unwrap_or_default();
        let expires_ms = wall_ms + who.lease_ms;
        let new = match w {
            Write::Acquire(_) => Record {
                holder: who.id.clone(),
                incarnation: who.incarnation.clone(),
                version: Version {
                    generation: old.version.generation + 1,
                    beat: old.version.beat + 1,
                    expires_ms,
                },
                lease_ms: who.lease_ms,
            },
            Write::Renew(_) => Record {
                version: Version {
                    beat: old.version.beat + 1,
                    expires_ms,
                    ..old.version
                },
                lease_ms: who.lease_ms,
                ..old
            },
            Write::Release(_) => Record {
                holder: String::new(),
                incarnation: String::new(),
                version: Version {
                    beat: old.version.beat + 1,
                    expires_ms: 0,
                    ..old.version
                },
                ..old
            },
        };
        self.record = Some(new.clone());
        Ok(new)
    }
}

/// Share of the lease a holder trusts after sending the call that took or renewed it.
pub const TRUST: f64 = 0.9;

/// What this replica does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Renew the lease held at this generation.
    Renew(u64),
    /// Read the record (then perhaps acquire).
    Read,
}

#[derive(Debug, Clone, Copy)]
struct Held {
    generation: u64,
    valid_until: f64,
}

#[derive(Debug, Clone, Copy)]
struct Watch {
    version: Version,
    since: f64,
    wait_s: f64,
}

/// One replica's lease: what it holds, and what it watches. Times are seconds on this
/// process's monotonic clock.
#[derive(Debug, Clone)]
pub struct Lease {
    /// Who this replica writes as.
    pub me: Writer,
    lease_s: f64,
    held: Option<Held>,
    watch: Option<Watch>,
    /// The holder last seen (this replica's view of who leads).
    pub holder_seen: String,
    /// Times this replica took the lease.
    pub acquired: u64,
}

impl Lease {
    /// A replica that holds nothing yet.
    pub fn new(me: Writer) -> Self {
        Lease {
            lease_s: me.lease_ms as f64 / 1000.0,
            me,
            held: None,
            watch: None,
            holder_seen: String::new(),
            acquired: 0,
        }
    }

    /// The lease length (s).
    pub fn lease_s(&self) -> f64 {
        self.lease_s
    }

    /// True while this replica may act at `now`.
    pub fn is_leader(&self, now: f64) -> bool {
        self.held.is_some_and(|h| now < h.valid_until)
    }

    /// The generation this replica may act under at `now` (0: none).
    pub fn generation(&self, now: f64) -> u64 {
        match self.held {
            Some(h) if now < h.valid_until => h.generation,
            _ => 0,
        }
    }

    /// True while this replica may act at `now` under `generation` (the fence each act checks).
    pub fn holds(&self, generation: u64, now: f64) -> bool {
        generation != 0 && self.generation(now) == generation
    }

    /// The call of the next round.
    pub fn next(&self) -> Next {
        match self.held {
            Some(h) => Next::Renew(h.generation),
            None => Next::Read,
        }
    }

    /// A renewal sent at `sent` answered; returns the wait before the next round (s).
    pub fn renewed(&mut self, sent: f64, r: Result<Record, CallError>) -> f64 {
        match r {
            Ok(rec) => {
                if let Some(h) = &mut self.held {
                    h.valid_until = sent + TRUST * self.lease_s;
                }
                self.holder_seen = rec.holder;
                self.lease_s / 3.0
            }
            Err(CallError::Refused) => {
                // someone took over (or this process gave it up): watch from scratch
                self.held = None;
                self.watch = None;
                self.lease_s / 10.0
            }
            // keep acting while the last renewal's trust lasts; the next renewal may still land
            Err(CallError::Failed(_)) => self.lease_s / 10.0,
        }
    }

    /// The record read at `now`: the acquire to make now, if any (else wait and read again).
    pub fn read(&mut self, now: f64, r: Result<Option<Record>, CallError>) -> Option<Write> {
        let rec = match r {
            Err(_) => return None,
            Ok(None) => return Some(Write::Acquire(None)),
            Ok(Some(rec)) => rec,
        };
        self.holder_seen = rec.holder.clone();
        if rec.released() || (rec.holder == self.me.id && rec.incarnation == self.me.incarnation) {
            return Some(Write::Acquire(Some(rec.version)));
        }
        match self.watch {
            Some(w) if w.version == rec.version => {
                (now - w.since >= w.wait_s).then_some(Write::Acquire(Some(rec.version)))
            }
            _ => {
                self.watch = Some(Watch {
                    version: rec.version,
                    since: now,
                    wait_s: self.lease_s.max(rec.lease_ms as f64 / 1000.0),
                });
                None
            }
        }
    }

    /// An acquire sent at `sent` answered; returns the wait before the next round (s).
    pub fn acquire_answered(&mut self, sent: f64, r: Result<Record, CallError>) -> f64 {
        match r {
            Ok(rec) => {
                self.acquired += 1;
                self.held = Some(Held {
                    generation: rec.version.generation,
                    valid_until: sent + TRUST * self.lease_s,
                });
                self.watch = None;
                self.holder_seen = rec.holder;
                self.lease_s / 3.0
            }
            // refused: the record changed (the next read watches the new version); failed: it
            // may have applied, and the next read finds this process named and takes it again
            Err(_) => self.lease_s / 10.0,
        }
    }

    /// Stops acting; the release to write, when a lease is held.
    pub fn give_up(&mut self) -> Option<Write> {
        self.held.take().map(|h| Write::Release(h.generation))
    }
}

#[cfg(test)]
mod tests;
