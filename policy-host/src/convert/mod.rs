//! Every host-side conversion of the policy types, in one place: native (`mark-policies`) to and
//! from the WIT host bindings of each contract version (`v1`, `v2`: the same functions over
//! each version's types, from `shared.rs`, plus 0.2.0's model demands), and the owned copy of a queue state the shadows keep. (The guest
//! side's are in `mark-policies`' `export.rs`.)

use mark_policies::types as n;

use super::offer::OwnedQueueState;

/// Conversions to and from `mark:policy@0.1.0`.
pub mod v1 {
    use mark_policies::types as n;

    use crate::bindings::v1::types as w;

    include!("shared.rs");
}

/// Conversions to and from `mark:policy@0.2.0`.
pub mod v2 {
    use mark_policies::types as n;

    use crate::bindings::v2::types as w;

    include!("shared.rs");

    /// Native model demands to WIT.
    pub fn models(ms: &[n::ModelDemand]) -> Vec<w::ModelDemand> {
        ms.iter()
            .map(|m| w::ModelDemand {
                model: m.model.clone(),
                forecast: m.forecast.clone(),
                slo: slo(m.slo),
                capacity: m
                    .capacity
                    .iter()
                    .map(|c| w::TypeCapacity {
                        instance_type: c.instance_type.clone(),
                        capacity_rps: c.capacity_rps,
                    })
                    .collect(),
                footprint_gib: m.footprint_gib,
                attainment: m.attainment,
                p99_ms: m.p99_ms,
            })
            .collect()
    }
}

impl OwnedQueueState {
    /// Copies a live state.
    pub fn of(s: &n::QueueState<'_>) -> Self {
        OwnedQueueState {
            queued_items: s.queued_items,
            queued_requests: s.queued_requests,
            oldest_wait_us: s.oldest_wait_us,
            slo_us: s.slo_us,
            arrival_rate: s.arrival_rate,
            max_batch: s.max_batch,
            executors: s.executors,
            profile: s.profile.to_vec(),
        }
    }

    /// The state as the policies take it.
    pub fn view(&self) -> n::QueueState<'_> {
        n::QueueState {
            queued_items: self.queued_items,
            queued_requests: self.queued_requests,
            oldest_wait_us: self.oldest_wait_us,
            slo_us: self.slo_us,
            arrival_rate: self.arrival_rate,
            max_batch: self.max_batch,
            executors: self.executors,
            profile: &self.profile,
        }
    }
}
