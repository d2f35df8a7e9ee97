//! The simulated cloud: the `Fleet` the controller's actions reach through the same
//! `control::fleet::apply` as the live loop's, and the fleet view the controller plans on.

use super::*;
use crate::control::fleet::FleetError;

impl Sim<'_> {
    /// One of the gateway's own executors, serving from t = 0 (type `ty`, the gateway's).
    pub(super) fn launch_pinned(&mut self, ty: usize) {
        let idx = self.instances.len();
        self.next_id += 1;
        self.instances.push(SimInstance {
            id: self.next_id,
            ty,
            market: Market::OnDemand,
            price_per_hour: 0.0,
            launched_at: self.now,
            ready_at: self.now,
            ready: true,
            ended_at: None,
            batch: Vec::new(),
            lane: 0,
            epoch: 0,
            draining: false,
            credits: 0.0,
            credits_at: self.now,
            boots: true,
            noticed: false,
            pinned: true,
        });
        self.idle.insert(idx);
    }

    pub(super) fn terminate(&mut self, id: &str) -> bool {
        let Some(idx) = self.index_of(id).filter(|&i| self.instances[i].alive()) else {
            return false;
        };
        if self.instances[idx].busy() {
            self.instances[idx].draining = true;
        } else {
            self.end(idx);
        }
        true
    }

    /// The simulated cloud's `list`: instances alive, not draining, not under a reclaim notice,
    /// and launched at least `list_lag_s` ago (`--cloud-faults`: EC2's eventually consistent
    /// listing).
    pub(super) fn listed(&self) -> Vec<Instance> {
        let lag = self.p.faults.list_lag_s;
        self.instances
            .iter()
            .filter(|i| {
                i.alive()
                    && !i.pinned
                    && !i.draining
                    && !i.noticed
                    && self.now - i.launched_at >= lag
            })
            .map(|i| Instance {
                id: i.id.to_string(),
                fleet: String::new(),
                model: String::new(),
                instance_type: self.types[i.ty].spec.name.clone(),
                market: i.market,
                launched_at: i.launched_at,
                addr: String::new(),
                state: if i.ready {
                    InstanceState::Running
                } else {
                    InstanceState::Pending
                },
                price_per_hour: i.price_per_hour,
                zone: String::new(),
            })
            .collect()
    }

    /// The controller's view of the fleet (virtual time is loop time; a busy instance has one
    /// batch in flight).
    pub(super) fn fleet(&self) -> Vec<FleetInstance> {
        fleet_ops::view(
            &self.listed(),
            |_| true,
            |t| t,
            |id| {
                self.index_of(id)
                    .map_or(0, |idx| u32::from(self.instances[idx].busy()))
            },
        )
    }

    /// Instance ids are 1, 2, … in launch order.
    pub(super) fn index_of(&self, id: &str) -> Option<usize> {
        let idx = id.parse::<usize>().ok()?.checked_sub(1)?;
        (idx < self.instances.len()).then_some(idx)
    }

    pub(super) fn alive(&self) -> u32 {
        // the gateway's own executors are not fleet instances
        self.instances
            .iter()
            .filter(|i| i.alive() && !i.pinned)
            .count() as u32
    }

    pub(super) fn apply(&mut self, actions: Vec<Action>) {
        let size = self.alive();
        let max = self.p.max_instances;
        let (now, mut budget) = (self.now, std::mem::take(&mut self.budget));
        let done = fleet_ops::ready(fleet_ops::apply(self, actions, size, max, &mut budget, now));
        self.budget = budget;
        self.controller.on_applied(now, &done);
        self.terminations += u64::from(done.terminated);
        self.skipped_by_rate += u64::from(done.skipped_by_rate);
    }
}

/// The simulated cloud: launches are ready after the type's launch time (plus SageMaker's extra
/// for that baseline), terminations drain a busy instance first.
impl Fleet for Sim<'_> {
    async fn launch(&mut self, instance_type: &str, market: Market) -> Result<(), FleetError> {
        let refuse = self.p.faults.launch_error_rate;
        if self.p.faults.throttled(self.now)
            || self.p.faults.short_of(instance_type, market, self.now)
            || (refuse > 0.0 && self.rng.uniform() < refuse)
        {
            self.launch_errors += 1;
            return Err(FleetError::Failed(
                "InsufficientInstanceCapacity / RequestLimitExceeded (--cloud-faults)".into(),
            ));
        }
        let ty = self
            .type_index(instance_type)
            .ok_or_else(|| FleetError::UnknownType(instance_type.into()))?;
        let delay = self.types[ty].spec.launch_seconds
            + if self.strategy == Strategy::SageMaker {
                crate::baselines::SAGEMAKER_EXTRA_LAUNCH_S
            } else {
                0.0
            };
        if self.launch(ty, market, delay, false) {
            Ok(())
        } else {
            Err(FleetError::AtBound)
        }
    }

    async fn terminate(&mut self, id: &str) -> Result<(), FleetError> {
        if Sim::terminate(self, id) {
            Ok(())
        } else {
            Err(FleetError::NoSuchInstance(id.into()))
        }
    }
}
