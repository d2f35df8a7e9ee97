//! The thin export layer: the native policies behind the WIT contract, built into
//! `mark-default.wasm` (batcher + predictor + provisioner in one component).

use mark_policy_sdk::{batcher as b, predictor as p, provisioner as v};

use crate::types;

struct Default;

fn pred_err(e: types::PolicyError) -> p::PolicyError {
    match e {
        types::PolicyError::InvalidInput(m) => p::PolicyError::InvalidInput(m),
        types::PolicyError::Unsupported(m) => p::PolicyError::Unsupported(m),
    }
}

fn prov_err(e: types::PolicyError) -> v::PolicyError {
    match e {
        types::PolicyError::InvalidInput(m) => v::PolicyError::InvalidInput(m),
        types::PolicyError::Unsupported(m) => v::PolicyError::Unsupported(m),
    }
}

impl b::Batcher for Default {
    fn decide(s: b::QueueState) -> b::BatchDecision {
        let profile: Vec<types::ProfilePoint> = s
            .profile
            .iter()
            .map(|p| types::ProfilePoint {
                batch: p.batch,
                latency_us: p.latency_us,
            })
            .collect();
        let st = types::QueueState {
            queued_items: s.queued_items,
            queued_requests: s.queued_requests,
            oldest_wait_us: s.oldest_wait_us,
            slo_us: s.slo_us,
            arrival_rate: s.arrival_rate,
            max_batch: s.max_batch,
            executors: s.executors,
            profile: &profile,
        };
        match crate::batcher::decide(&st) {
            types::BatchDecision::Send(n) => b::BatchDecision::Send(n),
            types::BatchDecision::Wait(us) => b::BatchDecision::Wait(us),
        }
    }
}

impl p::Predictor for Default {
    fn predict(
        _model: String,
        history: Vec<f64>,
        interval_seconds: f64,
        horizon: u32,
    ) -> Result<Vec<f64>, p::PolicyError> {
        crate::predictor::predict(&history, interval_seconds, horizon).map_err(pred_err)
    }
}

fn market_in(m: v::Market) -> types::Market {
    match m {
        v::Market::OnDemand => types::Market::OnDemand,
        v::Market::Spot => types::Market::Spot,
    }
}

fn slo_in(s: v::Slo) -> types::Slo {
    types::Slo {
        latency_ms: s.latency_ms,
        attainment_target: s.attainment_target,
    }
}

impl v::Provisioner for Default {
    fn provision(
        models: Vec<v::ModelDemand>,
        interval_seconds: f64,
        fleet: Vec<v::FleetEntry>,
        catalog: Vec<v::InstanceType>,
    ) -> Result<v::Plan, v::PolicyError> {
        let fleet: Vec<types::FleetEntry> = fleet
            .into_iter()
            .map(|e| types::FleetEntry {
                instance_type: e.instance_type,
                market: market_in(e.market),
                running: e.running,
                pending: e.pending,
                ages_seconds: e.ages_seconds,
            })
            .collect();
        let catalog: Vec<types::InstanceType> = catalog
            .into_iter()
            .map(|t| types::InstanceType {
                name: t.name,
                vcpus: t.vcpus,
                gpus: t.gpus,
                memory_gib: t.memory_gib,
                price_on_demand: t.price_on_demand,
                price_spot: t.price_spot,
                launch_seconds: t.launch_seconds,
                capacity_rps: t.capacity_rps,
                burstable: t.burstable,
            })
            .collect();
        let models: Vec<types::ModelDemand> = models
            .into_iter()
            .map(|m| types::ModelDemand {
                model: m.model,
                forecast: m.forecast,
                slo: slo_in(m.slo),
                capacity: m
                    .capacity
                    .into_iter()
                    .map(|c| types::TypeCapacity {
                        instance_type: c.instance_type,
                        capacity_rps: c.capacity_rps,
                    })
                    .collect(),
                footprint_gib: m.footprint_gib,
                attainment: m.attainment,
                p99_ms: m.p99_ms,
            })
            .collect();
        let plan =
            crate::provisioner::provision_models(&models, interval_seconds, &fleet, &catalog)
                .map_err(prov_err)?;
        Ok(v::Plan {
            targets: plan
                .targets
                .into_iter()
                .map(|t| v::FleetTarget {
                    instance_type: t.instance_type,
                    market: match t.market {
                        types::Market::OnDemand => v::Market::OnDemand,
                        types::Market::Spot => v::Market::Spot,
                    },
                    count: t.count,
                })
                .collect(),
            lambda_share: plan.lambda_share,
        })
    }
}

mark_policy_sdk::export_batcher!(Default);
mark_policy_sdk::export_predictor!(Default);
mark_policy_sdk::export_provisioner!(Default);
