//! The cloud as the act phase reaches it: launches keyed by the plan they carry out, and no
//! change at all once this replica no longer holds the controller lease at the generation the
//! tick planned under (a fence: a leader that stalled past its lease, or lost it and took it
//! again, must not act on a plan made under an older tenure). EC2 has no conditional
//! RunInstances or TerminateInstances, so the token is checked here before each call; the
//! launch key (the same on every replica) makes two leaders' launches of one plan collapse.
//!
//! A launch's key is (control interval, type, market, ordinal), the ordinal counted by the
//! controller itself over the launches it made of that type and market in that interval — not
//! from a listing, which EC2 makes eventually consistent: a fresh listing that does not show
//! the launch just made would hand the next launch the same key, and EC2 would answer it with
//! the first instance (an idempotent success that launched nothing). A controller that takes
//! over mid-interval starts counting at 0, so its launches collapse onto its predecessor's of
//! the same interval rather than double them.

use std::collections::BTreeMap;

use mark_policies::types::Market;

use crate::cloud::driver::Driver;
use crate::control::fleet::{Fleet, FleetError};
use crate::replica::Replica;

/// The driver, the launch keys and the lease to check before each change.
pub(super) struct Keyed<'a> {
    pub cloud: &'a Driver,
    pub keys: &'a mut LaunchKeys,
    pub replica: Option<(&'a Replica, u64)>,
}

/// The launch keys of one control interval.
#[derive(Debug, Default)]
pub(super) struct LaunchKeys {
    plan: String,
    made: BTreeMap<(String, Market), u32>,
}

impl LaunchKeys {
    /// Moves to the interval `plan` (`g<index>`, see [`plan_key`]); a new one counts from 0.
    pub fn at(&mut self, plan: String) {
        if plan != self.plan {
            self.plan = plan;
            self.made.clear();
        }
    }

    /// The key of the next launch of `instance_type` on `market`.
    pub fn next(&self, instance_type: &str, market: Market) -> String {
        let n = self
            .made
            .get(&(instance_type.to_string(), market))
            .copied()
            .unwrap_or(0);
        format!("{}-{instance_type}-{market}-{n}", self.plan)
    }

    /// That launch was made: the next one of the type and market gets the next ordinal.
    pub fn made(&mut self, instance_type: &str, market: Market) {
        *self
            .made
            .entry((instance_type.to_string(), market))
            .or_default() += 1;
    }
}

impl Keyed<'_> {
    /// The fence: `Err` unless this replica still leads under the tick's generation; the guard
    /// keeps a release (a graceful stop) waiting until the call it covers is over.
    async fn fenced(&self) -> Result<Option<crate::replica::Acting>, FleetError> {
        match self.replica {
            Some((r, generation)) => r
                .acting(generation)
                .await
                .map(Some)
                .ok_or(FleetError::NotLeader),
            None => Ok(None),
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
        let _acting = self.fenced().await?;
        let key = self.keys.next(instance_type, market);
        let i = self.cloud.launch(instance_type, market, Some(&key)).await?;
        // a failed call keeps its key: retried, EC2 launches it at most once
        self.keys.made(instance_type, market);
        tracing::info!(id = %i.id, r#type = %i.instance_type, key = %key, "launched");
        Ok(())
    }
    async fn terminate(&mut self, id: &str) -> Result<(), FleetError> {
        let _acting = self.fenced().await?;
        self.cloud.terminate(id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launch_keys_count_per_type_and_market_within_an_interval() {
        let mut k = LaunchKeys::default();
        k.at("g5".into());
        assert_eq!(
            k.next("c5.large", Market::OnDemand),
            "g5-c5.large-on-demand-0"
        );
        k.made("c5.large", Market::OnDemand);
        // the second launch of the step never reuses the first's key (whatever a listing says)
        assert_eq!(
            k.next("c5.large", Market::OnDemand),
            "g5-c5.large-on-demand-1"
        );
        // an emergency launch of another type or market in the same tick has its own
        assert_eq!(
            k.next("t3.medium", Market::OnDemand),
            "g5-t3.medium-on-demand-0"
        );
        assert_eq!(k.next("c5.large", Market::Spot), "g5-c5.large-spot-0");
        // a later tick of the same interval goes on counting; a new interval starts again
        k.at("g5".into());
        assert_eq!(
            k.next("c5.large", Market::OnDemand),
            "g5-c5.large-on-demand-1"
        );
        k.at("g6".into());
        assert_eq!(
            k.next("c5.large", Market::OnDemand),
            "g6-c5.large-on-demand-0"
        );
    }

    #[test]
    fn plan_keys_are_the_wall_clock_interval() {
        assert_eq!(super::plan_key(125.0, 60.0), "g2");
        assert_eq!(super::plan_key(179.9, 60.0), "g2");
        assert_eq!(super::plan_key(180.0, 60.0), "g3");
    }
}
