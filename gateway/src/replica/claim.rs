//! Whose row is it: a replica writes its demand row only over its own (same epoch), none, or a
//! row of an earlier run of its id that stayed unchanged for the staleness limit on this
//! process's monotonic clock. A row that changes while watched, or that another process wrote
//! over this one's, means two running processes share a `--replica-id`: each would add the
//! other's whole count as new demand at every write, so this one stops with a clear error.

use super::store::Claim;
use crate::lease::CallError;

/// What the claim needs next.
#[derive(Debug, Clone, PartialEq)]
enum State {
    /// Read the row first.
    Unknown,
    /// A write over this process's own row was refused: read it to see why.
    Refused,
    /// A row of another epoch, unchanged since `since`.
    Watching {
        epoch: String,
        updated_ms: u64,
        since: f64,
    },
    /// Written by this process.
    Mine,
    /// Another running process uses this id.
    Duplicate(String),
}

/// The claim on this replica's row.
#[derive(Debug, Clone)]
pub struct RowClaim {
    id: String,
    epoch: String,
    stale_s: f64,
    state: State,
    /// The claim the last write was made over.
    pending: Option<Claim>,
}

impl RowClaim {
    /// The claim of replica `id`, process `epoch`; a foreign row is taken over once unchanged
    /// for `stale_s`.
    pub fn new(id: &str, epoch: &str, stale_s: f64) -> Self {
        RowClaim {
            id: id.to_string(),
            epoch: epoch.to_string(),
            stale_s,
            state: State::Unknown,
            pending: None,
        }
    }

    /// True when the row must be read before writing.
    pub fn needs_read(&self) -> bool {
        matches!(
            self.state,
            State::Unknown | State::Refused | State::Watching { .. }
        )
    }

    /// The claim to publish over now, if any.
    pub fn claim(&mut self) -> Option<Claim> {
        let c = match self.state {
            State::Mine => Some(Claim::Mine),
            _ => None,
        };
        self.pending.clone_from(&c);
        c
    }

    /// The row as read at `now` (epoch and stamp, or none): the claim to publish over, if any.
    pub fn seen(&mut self, now: f64, row: Option<(String, u64)>) -> Option<Claim> {
        if self.duplicate().is_some() {
            return None;
        }
        let c = match (row, &self.state) {
            (None, _) => Some(Claim::Absent),
            (Some((e, _)), _) if e == self.epoch => Some(Claim::Mine),
            (
                Some((e, u)),
                State::Watching {
                    epoch,
                    updated_ms,
                    since,
                },
            ) if *epoch == e && *updated_ms == u => {
                (now - since >= self.stale_s).then_some(Claim::Over(e, u))
            }
            (Some((e, u)), State::Watching { .. }) => {
                self.state = State::Duplicate(format!(
                    "the row of replica id {} changed while this process waited for it to go stale (now epoch {e}, stamp {u})",
                    self.id
                ));
                None
            }
            (Some((e, u)), _) => {
                self.state = State::Watching {
                    epoch: e,
                    updated_ms: u,
                    since: now,
                };
                None
            }
        };
        self.pending.clone_from(&c);
        c
    }

    /// A publication over the pending claim answered.
    pub fn published(&mut self, r: &Result<(), CallError>) {
        match (r, self.pending.take()) {
            (Ok(()), Some(_)) => self.state = State::Mine,
            (Err(CallError::Refused), Some(Claim::Mine)) => {
                // over this process's own row: someone wrote another epoch there (or the row
                // expired: the read tells)
                self.state = State::Refused;
            }
            (Err(CallError::Refused), _) if !matches!(self.state, State::Watching { .. }) => {
                self.state = State::Unknown;
            }
            _ => {}
        }
    }

    /// After a refused write over this process's own row, the row now: a foreign epoch there is
    /// a duplicate id.
    pub fn recheck(&mut self, row: &Option<(String, u64)>) {
        if self.state != State::Refused {
            return;
        }
        self.state = match row {
            Some((e, _)) if *e != self.epoch => State::Duplicate(format!(
                "another process (epoch {e}) wrote over this one's row of replica id {}",
                self.id
            )),
            _ => State::Unknown,
        };
    }

    /// The reason to stop, when another running process uses this id.
    pub fn duplicate(&self) -> Option<&str> {
        match &self.state {
            State::Duplicate(why) => Some(why),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_id_writes_at_once_and_keeps_its_row() {
        let mut c = RowClaim::new("r0", "e1", 10.0);
        assert!(c.needs_read());
        assert_eq!(c.seen(0.0, None), Some(Claim::Absent));
        c.published(&Ok(()));
        assert!(!c.needs_read());
        assert_eq!(c.claim(), Some(Claim::Mine));
    }

    #[test]
    fn the_row_of_an_earlier_run_is_taken_once_unchanged_for_the_limit() {
        let mut c = RowClaim::new("r0", "e2", 10.0);
        assert_eq!(c.seen(0.0, Some(("e1".into(), 500))), None);
        assert_eq!(c.seen(5.0, Some(("e1".into(), 500))), None);
        assert_eq!(
            c.seen(10.5, Some(("e1".into(), 500))),
            Some(Claim::Over("e1".into(), 500))
        );
        c.published(&Ok(()));
        assert_eq!(c.claim(), Some(Claim::Mine));
        assert_eq!(c.duplicate(), None);
    }

    #[test]
    fn a_row_that_changes_while_watched_is_a_duplicate_replica_id() {
        let mut c = RowClaim::new("r0", "e2", 10.0);
        c.seen(0.0, Some(("e1".into(), 500)));
        c.seen(1.0, Some(("e1".into(), 1500)));
        assert!(c.duplicate().is_some_and(|w| w.contains("replica id r0")));
    }

    #[test]
    fn a_row_written_over_by_another_process_is_a_duplicate_replica_id() {
        let mut c = RowClaim::new("r0", "e1", 10.0);
        c.seen(0.0, None);
        c.published(&Ok(()));
        c.claim();
        c.published(&Err(CallError::Refused));
        assert!(c.needs_read());
        c.recheck(&Some(("e9".into(), 77)));
        assert_eq!(c.seen(1.0, Some(("e9".into(), 77))), None);
        assert!(c.duplicate().is_some(), "the verdict stands after the read");
        // while a row that expired (TTL) is simply written again
        let mut c = RowClaim::new("r0", "e1", 10.0);
        c.seen(0.0, None);
        c.published(&Ok(()));
        c.claim();
        c.published(&Err(CallError::Refused));
        c.recheck(&None);
        assert_eq!(c.duplicate(), None);
        assert_eq!(c.seen(1.0, None), Some(Claim::Absent));
    }

    #[test]
    fn a_restart_with_the_same_id_is_no_duplicate() {
        // the first read of a new process finds its predecessor's row: watch it, not refuse
        let mut c = RowClaim::new("r0", "e2", 10.0);
        c.recheck(&Some(("e1".into(), 500)));
        assert_eq!(c.seen(0.0, Some(("e1".into(), 500))), None);
        assert_eq!(c.duplicate(), None);
    }
}
