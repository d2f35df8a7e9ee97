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

/// The fleet-wide view the controller builds from the replicas' rows.
#[derive(Debug, Clone, Default)]
pub struct FleetDemand {
    seen: HashMap<String, (String, Outcomes)>,
    /// Everything counted so far, all replicas summed.
    pub totals: Outcomes,
    /// Replicas whose row was fresh at the last read.
    pub live_replicas: u32,
}

impl FleetDemand {
    /// Folds in `rows` read at wall-clock `now_ms`; rows older than `stale_ms` are of replicas
    /// gone (their last counts were taken when they were fresh). Returns what was added.
    pub fn absorb(&mut self, rows: &[ReplicaRow], now_ms: u64, stale_ms: u64) -> Outcomes {
        let mut added = Outcomes::default();
        let mut live = 0;
        for r in rows {
            if now_ms.saturating_sub(r.updated_ms) > stale_ms {
                continue;
            }
            live += 1;
            let delta = match self.seen.get(&r.replica) {
                Some((epoch, last)) if *epoch == r.epoch => r.totals.since(*last),
                // a replica restarted: everything it counted since is new
                Some(_) => r.totals,
                // first sight (a new replica, or this one just took over): its last window
                None => r.last_window,
            };
            added = added.plus(delta);
            self.seen
                .insert(r.replica.clone(), (r.epoch.clone(), r.totals));
        }
        self.live_replicas = live;
        self.totals = self.totals.plus(added);
        added
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

    #[test]
    fn the_fleet_sum_is_every_replicas_arrivals_once() {
        let mut f = FleetDemand::default();
        // first read: each replica's last window
        let a = f.absorb(&[row("a", "1", 100, 10, 0), row("b", "1", 50, 5, 0)], 0, 10);
        assert_eq!(a.arrived, 15);
        // then only what changed, however many windows each published in between
        let a = f.absorb(&[row("a", "1", 130, 10, 5), row("b", "1", 50, 0, 5)], 5, 10);
        assert_eq!(a.arrived, 30);
        // the same rows again add nothing
        assert_eq!(f.absorb(&[row("a", "1", 130, 10, 5)], 6, 10).arrived, 0);
        assert_eq!(f.totals.arrived, 45);
    }

    #[test]
    fn a_restarted_replica_counts_from_zero_and_a_gone_one_drops_out() {
        let mut f = FleetDemand::default();
        f.absorb(&[row("a", "1", 100, 10, 0), row("b", "1", 50, 5, 0)], 0, 10);
        let a = f.absorb(&[row("a", "2", 7, 7, 15), row("b", "1", 60, 10, 0)], 20, 10);
        assert_eq!(a.arrived, 7, "b is stale: skipped; a restarted: all 7 new");
        assert_eq!(f.live_replicas, 1);
    }
}
