//! `mark simulate --replicas N`: the gateway replicas on the virtual clock, with the same lease
//! ([`mark_core::lease`]) and the same fleet-wide demand ([`FleetDemand`]) as `mark serve`.
//!
//! Arrivals reach the live replicas in turn (a round-robin load balancer). Every rate window each
//! live replica publishes its counters (a publication is lost with `--replica-loss`), and the
//! replicas read every row (a read fails with the same chance). The controller sees the demand
//! the replica that leads reads — not the arrivals themselves — and acts only while some
//! replica holds the lease: a killed leader (`--replica-kill-at`) leaves the fleet unmanaged
//! until another takes over, and the cost of that, and of lost rows, is in the run's figures.

use std::collections::HashMap;

use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::control::demand::{FleetDemand, Outcomes, ReplicaRow};
use mark_core::lease::{CallError, Lease, Next, Table, Write, Writer};

/// `--replicas` and its faults.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReplicaParams {
    /// Replicas behind the load balancer (0 or 1: one gateway, no lease).
    pub n: u32,
    /// Wall clocks spread over ±this many seconds across the replicas.
    pub skew_s: f64,
    /// Share of publications (and of reads) lost.
    pub loss: f64,
    /// The replica leading at this time is killed (and not restarted).
    pub kill_at_s: Option<f64>,
    /// Lease length, seconds.
    pub lease_s: f64,
}

/// What the replicas did over a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReplicaReport {
    /// Replicas.
    pub replicas: u32,
    /// Times a replica took the lease (the first election included).
    pub acquisitions: u64,
    /// Seconds with no replica allowed to act (elections and failovers).
    pub leaderless_s: f64,
    /// Seconds from the kill to the next leader.
    pub takeover_s: Option<f64>,
    /// Publications lost.
    pub lost_publications: u64,
    /// Reads of the rows that failed.
    pub failed_reads: u64,
    /// Arrivals the clients sent.
    pub arrivals: u64,
    /// Arrivals the controller saw through the rows (the rate windows).
    pub demand_seen: u64,
}

struct Rep {
    lease: Lease,
    next_round: f64,
    skew_s: f64,
    dead: bool,
    /// Per model: counters and the totals at the last publication.
    totals: Vec<Outcomes>,
    published: Vec<Outcomes>,
    /// Per model: this replica's view of the fleet's demand.
    readers: Vec<FleetDemand>,
}

/// The replicas of one run.
pub(super) struct Replicas {
    p: ReplicaParams,
    table: Table,
    reps: Vec<Rep>,
    rows: HashMap<(usize, usize), ReplicaRow>,
    next: usize,
    rng: rand::rngs::StdRng,
    report: ReplicaReport,
    window_s: f64,
    killed_at: Option<f64>,
    last_check: f64,
}

impl Replicas {
    /// `p.n` replicas serving `models` models, publishing every `window_s`.
    pub fn new(p: &ReplicaParams, models: usize, window_s: f64, seed: u64) -> Self {
        let n = p.n.max(1) as usize;
        let reps = (0..n)
            .map(|i| {
                let spread = if n > 1 {
                    2.0 * i as f64 / (n - 1) as f64 - 1.0
                } else {
                    0.0
                };
                Rep {
                    lease: Lease::new(Writer {
                        id: format!("r{i}"),
                        incarnation: format!("r{i}/1"),
                        lease_ms: (p.lease_s * 1000.0) as u64,
                    }),
                    // out of phase, as processes started one after another
                    next_round: 0.013 * i as f64,
                    skew_s: p.skew_s * spread,
                    dead: false,
                    totals: vec![Outcomes::default(); models],
                    published: vec![Outcomes::default(); models],
                    readers: vec![FleetDemand::default(); models],
                }
            })
            .collect();
        Replicas {
            p: p.clone(),
            table: Table::default(),
            reps,
            rows: HashMap::new(),
            next: 0,
            rng: rand::rngs::StdRng::seed_from_u64(seed ^ 0x5e_91_1c_a5),
            report: ReplicaReport {
                replicas: n as u32,
                ..ReplicaReport::default()
            },
            window_s,
            killed_at: None,
            last_check: 0.0,
        }
    }

    /// An arrival of model `m`: the next live replica counts it.
    pub fn arrive(&mut self, m: usize) {
        let n = self.reps.len();
        for _ in 0..n {
            self.next = (self.next + 1) % n;
            if !self.reps[self.next].dead {
                self.reps[self.next].totals[m].arrived += 1;
                self.report.arrivals += 1;
                return;
            }
        }
    }

    /// The replica allowed to act at `now`.
    pub fn leader(&self, now: f64) -> Option<usize> {
        self.reps
            .iter()
            .position(|r| !r.dead && r.lease.is_leader(now))
    }

    fn lost(&mut self) -> bool {
        self.p.loss > 0.0 && self.rng.random::<f64>() < self.p.loss
    }

    /// Runs the lease rounds due by `now` (calls to the table fail as reads do); returns the
    /// time of the next round.
    pub fn lease_rounds(&mut self, now: f64) -> f64 {
        if let (Some(t), None) = (self.p.kill_at_s, self.killed_at) {
            if now >= t {
                if let Some(l) = self.leader(now) {
                    self.reps[l].dead = true;
                }
                self.killed_at = Some(now);
            }
        }
        let mut next = f64::INFINITY;
        for i in 0..self.reps.len() {
            if self.reps[i].dead {
                continue;
            }
            while self.reps[i].next_round <= now {
                let t = self.reps[i].next_round;
                let wait = self.round(i, t);
                self.reps[i].next_round = t + wait.max(0.05);
            }
            next = next.min(self.reps[i].next_round);
        }
        let leaders = (0..self.reps.len())
            .filter(|&i| !self.reps[i].dead && self.reps[i].lease.is_leader(now))
            .count();
        assert!(leaders <= 1, "two acting leaders at {now:.2} s");
        if leaders == 0 {
            self.report.leaderless_s += now - self.last_check;
        } else if let (Some(k), None) = (self.killed_at, self.report.takeover_s) {
            self.report.takeover_s = Some(now - k);
        }
        self.last_check = now;
        next
    }

    fn call(&mut self, i: usize, t: f64, w: Write) -> Result<mark_core::lease::Record, CallError> {
        if self.lost() {
            return Err(CallError::Failed("throttled".into()));
        }
        let wall = ((t + self.reps[i].skew_s).max(0.0) * 1000.0) as u64;
        let me = self.reps[i].lease.me.clone();
        self.table.apply(&me, w, wall)
    }

    fn round(&mut self, i: usize, t: f64) -> f64 {
        match self.reps[i].lease.next() {
            Next::Renew(g) => {
                let r = self.call(i, t, Write::Renew(g));
                self.reps[i].lease.renewed(t, r)
            }
            Next::Read => {
                let read = if self.lost() {
                    Err(CallError::Failed("throttled".into()))
                } else {
                    Ok(self.table.record.clone())
                };
                match self.reps[i].lease.read(t, read) {
                    Some(w) => {
                        let r = self.call(i, t, w);
                        let before = self.reps[i].lease.acquired;
                        let wait = self.reps[i].lease.acquire_answered(t, r);
                        self.report.acquisitions += self.reps[i].lease.acquired - before;
                        wait
                    }
                    None => self.reps[i].lease.lease_s() / 10.0,
                }
            }
        }
    }

    /// A rate window ends at `now`: every live replica publishes and reads; returns, per model,
    /// the arrivals the controller's replica saw (the leader's view, or the first live one's).
    pub fn window(&mut self, now: f64) -> Vec<u64> {
        let models = self.reps.first().map_or(0, |r| r.totals.len());
        for i in 0..self.reps.len() {
            if self.reps[i].dead {
                continue;
            }
            if self.lost() {
                self.report.lost_publications += 1;
            } else {
                let updated_ms = ((now + self.reps[i].skew_s).max(0.0) * 1000.0) as u64;
                for m in 0..models {
                    let r = &mut self.reps[i];
                    let row = ReplicaRow {
                        replica: format!("r{i}"),
                        epoch: "1".into(),
                        totals: r.totals[m],
                        last_window: r.totals[m].since(r.published[m]),
                        updated_ms,
                    };
                    r.published[m] = r.totals[m];
                    self.rows.insert((i, m), row);
                }
            }
        }
        let stale_s = (3.0 * self.window_s).max(10.0);
        let reader = self
            .leader(now)
            .or_else(|| self.reps.iter().position(|r| !r.dead));
        let mut seen = vec![0; models];
        for i in 0..self.reps.len() {
            if self.reps[i].dead {
                continue;
            }
            let failed = self.lost();
            if failed {
                self.report.failed_reads += 1;
            }
            for (m, s) in seen.iter_mut().enumerate() {
                let rows: Vec<ReplicaRow> = (0..self.reps.len())
                    .filter_map(|k| self.rows.get(&(k, m)).cloned())
                    .collect();
                let got = self.reps[i].readers[m].absorb(
                    (!failed).then_some(&rows[..]),
                    now,
                    stale_s,
                    self.window_s,
                );
                if Some(i) == reader {
                    *s = got.arrived;
                }
            }
        }
        self.report.demand_seen += seen.iter().sum::<u64>();
        seen
    }

    /// The figures of the run.
    pub fn report(&self) -> ReplicaReport {
        self.report.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_killed_leader_is_replaced_within_two_leases_and_demand_is_seen_within_five_percent() {
        let p = ReplicaParams {
            n: 3,
            skew_s: 5.0,
            loss: 0.05,
            kill_at_s: Some(300.0),
            lease_s: 10.0,
        };
        let mut r = Replicas::new(&p, 1, 5.0, 7);
        let mut t = 0.0;
        let mut next_window = 5.0;
        let mut next_round = 0.0;
        // 100 req/s for 20 minutes
        while t < 1200.0 {
            t += 0.01;
            r.arrive(0);
            if t >= next_round {
                next_round = r.lease_rounds(t);
            }
            if t >= next_window {
                r.window(t);
                next_window += 5.0;
            }
        }
        let rep = r.report();
        println!("{rep:?}");
        assert!(rep.takeover_s.is_some_and(|s| s <= 20.0), "{rep:?}");
        assert_eq!(rep.acquisitions, 2);
        let seen = rep.demand_seen as f64 / rep.arrivals as f64;
        assert!(
            (seen - 1.0).abs() <= 0.05,
            "demand seen {seen:.3} of the arrivals"
        );
    }
}
