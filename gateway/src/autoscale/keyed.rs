//! The cloud as the act phase reaches it: launches keyed by the plan they carry out, and no
//! change at all once this replica no longer holds the controller lease (a fence: a leader
//! that stalled past its lease must not act beside the one that took over).

use mark_policies::types::Market;

use crate::cloud::driver::Driver;
use crate::control::fleet::{Fleet, FleetError};
use crate::replica::Replica;

/// The driver, the plan key and the lease to check before each change.
pub(super) struct Keyed<'a> {
    pub cloud: &'a Driver,
    /// `g<interval index>`: the wall-clock control interval the launches belong to.
    pub plan: String,
    pub replica: Option<&'a Replica>,
}

impl Keyed<'_> {
    fn fenced(&self) -> Result<(), FleetError> {
        match self.replica {
            Some(r) if !r.is_leader() => Err(FleetError::NotLeader),
            _ => Ok(()),
        }
    }
}

/// The plan key of wall-clock time `wall_s` for control intervals of `interval_s`: the same on
/// every replica, so a controller that takes over mid-interval keys its launches as the one
/// before it did.
pub(super) fn plan_key(wall_s: f64, interval_s: f64) -> String {
    format!("g{}", (wall_s / interval_s.max(1e-3)).floor() as u64)
}

impl Fleet for Keyed<'_> {
    async fn launch(&mut self, instance_type: &str, market: Market) -> Result<(), FleetError> {
        self.fenced()?;
        let i = self
            .cloud
            .launch(instance_type, market, Some(&self.plan))
            .await?;
        tracing::info!(id = %i.id, r#type = %i.instance_type, plan = %self.plan, "launched");
        Ok(())
    }
    async fn terminate(&mut self, id: &str) -> Result<(), FleetError> {
        self.fenced()?;
        self.cloud.terminate(id).await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn plan_keys_are_the_wall_clock_interval() {
        assert_eq!(super::plan_key(125.0, 60.0), "g2");
        assert_eq!(super::plan_key(179.9, 60.0), "g2");
        assert_eq!(super::plan_key(180.0, 60.0), "g3");
    }
}
