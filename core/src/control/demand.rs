//! Demand and SLO outcomes as counters, for one process and summed across replicas.
//!
//! Each replica counts what its own clients sent ([`Outcomes`]); with several replicas behind a
//! load balancer, each publishes its counters (a row per replica, rewritten every rate window)
//! and the controller sums what changed since it last looked ([`FleetDemand`]). Counters rather
//! than per-window counts: replicas' windows need no common clock, a publication that is late
//! or lost is made up by the next one, and a replica that restarts (a new `epoch`) counts from 0.

use std::collections::HashMap;

/// Counters of a model's outcomes, to turn totals into per-window counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Outcomes {
    /// Items that arrived (refused or not: demand is what the predictor forecasts).
    pub arrived: u64,
    /// Requests with an outcome: answered, refused at admission or expired in the queue.
    pub done: u64,
    /// Of those, misses: answered late, refused or expired.
    pub missed: u64,
    /// Of those, answered after half the SLO, or missed (the slack feedback's p99 signal).
    #[serde(default)]
    pub slow: u64,
}

impl Outcomes {
    /// Totals from a model's counters. Requests refused or dropped for their SLO (`on_deadline =
    /// "reject"`: `shed`, `expired`) are misses too: the SLO monitor must see an overload that
    /// admission hides from the latency figures. (The live gateway reads its metrics through
    /// `ModelMetrics::outcomes`.)
    pub fn from_counts(
        arrived: u64,
        answered: u64,
        late: u64,
        shed: u64,
        expired: u64,
        slow: u64,
    ) -> Self {
        let refused = shed + expired;
        Outcomes {
            arrived,
            done: answered + refused,
            missed: late + refused,
            slow: slow.max(late) + refused,
        }
    }

    /// What happened from `earlier` to `self` (0 for a counter that went back).
    pub fn since(&self, earlier: Outcomes) -> Outcomes {
        Outcomes {
            arrived: self.arrived.saturating_sub(earlier.arrived),
            done: self.done.saturating_sub(earlier.done),
            missed: self.missed.saturating_sub(earlier.missed),
            slow: self.slow.saturating_sub(earlier.slow),
        }
    }

    /// The sum of two counts.
    pub fn plus(&self, o: Outcomes) -> Outcomes {
        Outcomes {
            arrived: self.arrived + o.arrived,
            done: self.done + o.done,
            missed: self.missed + o.missed,
            slow: self.slow + o.slow,
        }
    }
}

/// One replica's published counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaRow {
    /// `--replica-id`.
    pub replica: String,
    /// Identifies one run of the process: counters restart from 0 with a new one.
    pub epoch: String,
    /// Its totals since it started.
    pub totals: Outcomes,
    /// What its last rate window added (what a reader that has not seen it before counts).
    pub last_window: Outcomes,
    /// Wall-clock milliseconds of the publication.
    pub updated_ms: u64,
}

/// What the reader knows of one replica's row.
#[derive(Debug, Clone)]
struct Seen {
    epoch: String,
    totals: Outcomes,
    updated_ms: u64,
    /// Reader's monotonic time of the last change of the row.
    changed_at: f64,
    /// Its arrival rate (req/s) between its two latest publications, on its own clock.
    rate: f64,
    /// Seen changing at least once (a row that never changes is of a replica gone).
    confirmed: bool,
    /// What of its totals was counted before this reader saw it.
    base: Outcomes,
}

/// One replica's row as a reader sees it (the status page's list).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct RowView {
    /// `--replica-id`.
    pub replica: String,
    /// Its arrival rate (req/s) between its two latest publications, on its own clock.
    pub rate: f64,
    /// Seconds of this reader's time since the row last changed.
    pub quiet_s: f64,
    /// Whether its rate counts in the fleet's (changed within 3 publication periods).
    pub counted: bool,
}

/// What one read of the replicas' rows adds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Absorbed {
    /// Outcomes counted since the last read, all replicas summed (exact: totals, the SLO).
    pub added: Outcomes,
    /// Arrivals to count in the reader's span since its last read: the fleet's rate (each live
    /// replica's Δcount / Δ its own timestamps) times that span. A late publication or a
    /// replica back after a gap changes its rate, never stacks its backlog into one window.
    pub arrived: u64,
}

/// The fleet-wide view the controller builds from the replicas' rows.
#[derive(Debug, Clone, Default)]
pub struct FleetDemand {
    seen: HashMap<String, Seen>,
    /// Everything counted so far, all replicas summed.
    pub totals: Outcomes,
    /// Arrivals handed to the rate windows so far (the rate-attributed counterpart of
    /// `totals.arrived`).
    pub rate_arrived: u64,
    /// Replicas whose row changed within the staleness limit at the last read.
    pub live_replicas: u32,
    /// The fleet's arrival rate at the last read (req/s).
    pub rate: f64,
    /// Each replica's row as this reader sees it, at the last read.
    pub rows: Vec<RowView>,
    last_read: Option<f64>,
    carry: f64,
}

impl FleetDemand {
    /// Folds in `rows` read at `now` (the reader's monotonic clock, s), or a failed read
    /// (`None`: every replica goes on at its last rate). A row unchanged for `stale_s` of the
    /// reader's time (reads that failed not counted) is of a replica gone; its rate stops after
    /// 3 publication periods (`window_s`) unchanged. A row seen for the first time counts once
    /// it changes (a row left by a replica gone never does).
    pub fn absorb(
        &mut self,
        rows: Option<&[ReplicaRow]>,
        now: f64,
        stale_s: f64,
        window_s: f64,
    ) -> Absorbed {
        let mut added = Outcomes::default();
        let span = self.last_read.map_or(0.0, |t| (now - t).max(0.0));
        self.last_read = Some(now);
        match rows {
            Some(rows) => {
                // a row gone from the table (TTL) is forgotten once stale, not at once: if it
                // comes back (same epoch), what it adds is what changed
                self.seen.retain(|k, s| {
                    rows.iter().any(|r| r.replica == *k) || now - s.changed_at <= stale_s
                });
                for r in rows {
                    added = added.plus(self.fold(r, now, window_s));
                }
            }
            // a failed read says nothing of the rows: no replica ages for it
            None => self.seen.values_mut().for_each(|s| s.changed_at += span),
        }
        // a replica's rate goes on while its publications may merely be late (3 windows): a
        // replica gone stops adding demand then, though it counts as live until `stale_s`
        let coast_s = (3.0 * window_s).min(stale_s);
        let (mut live, mut rate) = (0, 0.0);
        self.rows.clear();
        for (id, s) in &self.seen {
            let quiet = now - s.changed_at;
            if s.confirmed && quiet <= stale_s {
                live += 1;
            }
            let counted = s.confirmed && quiet <= coast_s;
            if counted {
                rate += s.rate;
            }
            self.rows.push(RowView {
                replica: id.clone(),
                rate: s.rate,
                quiet_s: quiet,
                counted,
            });
        }
        self.rows.sort_by(|a, b| a.replica.cmp(&b.replica));
        self.live_replicas = live;
        self.rate = rate;
        let want = rate * span + self.carry;
        let arrived = want.max(0.0).floor() as u64;
        self.carry = want - arrived as f64;
        self.totals = self.totals.plus(added);
        self.rate_arrived += arrived;
        Absorbed { added, arrived }
    }

    /// One row: what it adds.
    fn fold(&mut self, r: &ReplicaRow, now: f64, window_s: f64) -> Outcomes {
        let first_rate = r.last_window.arrived as f64 / window_s.max(1e-3);
        match self.seen.get_mut(&r.replica) {
            Some(s) if s.epoch == r.epoch => {
                if s.updated_ms == r.updated_ms && s.totals == r.totals {
                    return Outcomes::default();
                }
                let d = r.totals.since(s.totals);
                let dt = r.updated_ms.saturating_sub(s.updated_ms) as f64 / 1000.0;
                s.rate = if dt > 0.0 {
                    d.arrived as f64 / dt
                } else {
                    first_rate
                };
                let add = if s.confirmed {
                    d
                } else {
                    r.totals.since(s.base)
                };
                s.confirmed = true;
                s.totals = r.totals;
                s.updated_ms = r.updated_ms;
                s.changed_at = now;
                add
            }
            Some(s) => {
                // a replica restarted (a new epoch): what it counted before its first
                // publication is its last window (all of it), counted with its rate at its
                // next publication rather than stacked into this window
                *s = Seen {
                    epoch: r.epoch.clone(),
                    totals: r.totals,
                    updated_ms: r.updated_ms,
                    changed_at: now,
                    rate: 0.0,
                    confirmed: false,
                    base: r.totals.since(r.last_window),
                };
                Outcomes::default()
            }
            None => {
                // first sight: its last window is what this reader has not counted, once the
                // row shows it alive
                self.seen.insert(
                    r.replica.clone(),
                    Seen {
                        epoch: r.epoch.clone(),
                        totals: r.totals,
                        updated_ms: r.updated_ms,
                        changed_at: now,
                        rate: first_rate,
                        confirmed: false,
                        base: r.totals.since(r.last_window),
                    },
                );
                Outcomes::default()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(replica: &str, epoch: &str, arrived: u64, last: u64, at: u64) -> ReplicaRow {
        ReplicaRow {
            replica: replica.into(),
            epoch: epoch.into(),
            totals: Outcomes {
                arrived,
                done: arrived,
                missed: 0,
                slow: 0,
            },
            last_window: Outcomes {
                arrived: last,
                done: last,
                missed: 0,
                slow: 0,
            },
            updated_ms: at,
        }
    }

    fn rows(rs: &[(&str, &str, u64, u64, u64)]) -> Vec<ReplicaRow> {
        rs.iter()
            .map(|&(r, e, arrived, last, at)| row(r, e, arrived, last, at))
            .collect()
    }

    #[test]
    fn the_fleet_sum_is_every_replicas_arrivals_once() {
        let mut f = FleetDemand::default();
        // first read: rows seen, counted once they show their replica alive
        let a = f.absorb(
            Some(&rows(&[("a", "1", 100, 10, 0), ("b", "1", 50, 5, 0)])),
            0.0,
            10.0,
            1.0,
        );
        assert_eq!(a.added.arrived, 0);
        // then each one's last window and what changed since
        let a = f.absorb(
            Some(&rows(&[("a", "1", 130, 30, 1000), ("b", "1", 55, 5, 1000)])),
            1.0,
            10.0,
            1.0,
        );
        assert_eq!(a.added.arrived, 40 + 10);
        // the same rows again add nothing
        let a = f.absorb(
            Some(&rows(&[("a", "1", 130, 30, 1000), ("b", "1", 55, 5, 1000)])),
            2.0,
            10.0,
            1.0,
        );
        assert_eq!(a.added.arrived, 0);
        assert_eq!(f.totals.arrived, 50);
        assert_eq!(f.live_replicas, 2);
    }

    #[test]
    fn a_late_publication_changes_no_window_rate_under_out_of_phase_replicas() {
        // two replicas at 100 req/s each, publishing every second; the reader reads every
        // second. Replica b's publications come late (every 3 s, 300 at a time).
        let mut f = FleetDemand::default();
        let mut peak = 0u64;
        for k in 0..=30u64 {
            let t = k as f64;
            let a = ("a", "1", 100 * k, 100, 1000 * k);
            let kb = k / 3 * 3;
            let b = ("b", "1", 100 * kb, 100, 1000 * kb + 400);
            let got = f.absorb(Some(&rows(&[a, b])), t, 10.0, 1.0);
            if k > 4 {
                peak = peak.max(got.arrived);
            }
        }
        // the old sum put b's 300 into one 1 s window: 400 req/s
        assert!(peak <= 205, "a window of {peak} for a fleet at 200 req/s");
        assert!((f.rate - 200.0).abs() < 1.0, "rate {}", f.rate);
    }

    #[test]
    fn a_failed_read_or_a_replica_back_after_a_gap_does_not_double_a_window() {
        let mut f = FleetDemand::default();
        f.absorb(Some(&rows(&[("a", "1", 0, 0, 0)])), 0.0, 10.0, 1.0);
        f.absorb(Some(&rows(&[("a", "1", 50, 50, 1000)])), 1.0, 10.0, 1.0);
        // a read fails: the rate carries on over the span; the next read adds no backlog
        let a = f.absorb(None, 2.0, 10.0, 1.0);
        assert_eq!(a.arrived, 50);
        let a = f.absorb(Some(&rows(&[("a", "1", 150, 50, 3000)])), 3.0, 10.0, 1.0);
        assert_eq!((a.added.arrived, a.arrived), (100, 50));
        // a is silent 20 s (stale: counted out), then back with 20 s of arrivals at 50/s
        let a = f.absorb(Some(&rows(&[("a", "1", 150, 50, 3000)])), 20.0, 10.0, 1.0);
        assert_eq!((f.live_replicas, a.arrived), (0, 0));
        let a = f.absorb(Some(&rows(&[("a", "1", 1150, 50, 23000)])), 23.0, 10.0, 1.0);
        assert_eq!(a.added.arrived, 1000, "every arrival in the totals");
        assert!(
            a.arrived <= 3 * 50,
            "{} in the 3 s since the last read",
            a.arrived
        );
    }

    #[test]
    fn a_restarted_replica_counts_from_zero_and_a_gone_one_drops_out() {
        let mut f = FleetDemand::default();
        f.absorb(
            Some(&rows(&[("a", "1", 100, 10, 0), ("b", "1", 50, 5, 0)])),
            0.0,
            10.0,
            1.0,
        );
        f.absorb(
            Some(&rows(&[("a", "1", 110, 10, 1000), ("b", "1", 55, 5, 1000)])),
            1.0,
            10.0,
            1.0,
        );
        // a restarted after 10 s away: its first row carries all 100 it counted since
        let a = f.absorb(
            Some(&rows(&[("a", "2", 100, 100, 900), ("b", "1", 55, 5, 1000)])),
            12.0,
            10.0,
            1.0,
        );
        assert_eq!(
            (a.added.arrived, a.arrived),
            (0, 0),
            "not stacked into one window"
        );
        assert_eq!(
            f.live_replicas, 0,
            "b unchanged 11 s: gone; a not yet confirmed"
        );
        let a = f.absorb(
            Some(&rows(&[("a", "2", 110, 10, 1900), ("b", "1", 55, 5, 1000)])),
            13.0,
            10.0,
            1.0,
        );
        assert_eq!(a.added.arrived, 110, "every arrival of the new run, once");
        assert_eq!(a.arrived, 10, "at its rate");
        assert_eq!(f.live_replicas, 1);
    }

    #[test]
    fn a_row_left_by_a_replica_gone_before_the_reader_started_is_never_counted() {
        let mut f = FleetDemand::default();
        for t in 0..20 {
            let a = f.absorb(
                Some(&rows(&[("old", "1", 900, 300, 5)])),
                t as f64,
                10.0,
                1.0,
            );
            assert_eq!(a.added.arrived + a.arrived, 0);
        }
        assert_eq!(f.live_replicas, 0);
    }

    #[test]
    fn a_killed_replica_stops_adding_demand_after_three_windows_and_a_failed_read_ages_no_one() {
        let mut f = FleetDemand::default();
        let at = |k: u64| {
            rows(&[
                ("a", "1", 10 * k, 10, 1000 * k),
                ("b", "1", 10 * k.min(5), 10, 1000 * k.min(5)),
            ])
        };
        for k in 0..=5 {
            f.absorb(Some(&at(k)), k as f64, 10.0, 1.0);
        }
        assert_eq!(f.rate, 20.0);
        // b killed at 5 s: its rate goes on 3 windows, then only a's counts
        let got: Vec<u64> = (6..=10)
            .map(|k| f.absorb(Some(&at(k)), k as f64, 10.0, 1.0).arrived)
            .collect();
        assert_eq!(got, [20, 20, 20, 10, 10]);
        assert_eq!(f.live_replicas, 2, "b counts as live until 10 s unchanged");
        // reads failing for 20 s age no row: both go on at their last rate
        let mut g = FleetDemand::default();
        for k in 0..=2 {
            g.absorb(Some(&at(k)), k as f64, 10.0, 1.0);
        }
        for k in 3..=22 {
            assert_eq!(g.absorb(None, k as f64, 10.0, 1.0).arrived, 20);
        }
        g.absorb(Some(&at(23)), 23.0, 10.0, 1.0);
        assert_eq!(g.live_replicas, 2);
    }

    #[test]
    fn a_row_missing_from_one_read_and_back_adds_only_what_changed() {
        let mut f = FleetDemand::default();
        f.absorb(Some(&rows(&[("a", "1", 0, 0, 0)])), 0.0, 10.0, 1.0);
        f.absorb(Some(&rows(&[("a", "1", 10, 10, 1000)])), 1.0, 10.0, 1.0);
        f.absorb(Some(&[]), 2.0, 10.0, 1.0);
        let a = f.absorb(Some(&rows(&[("a", "1", 30, 10, 3000)])), 3.0, 10.0, 1.0);
        assert_eq!(a.added.arrived, 20);
        assert_eq!(f.totals.arrived, 30);
    }
}
