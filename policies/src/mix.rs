//! Many models on one fleet: the time-share rule that turns per-model forecasts into one plan.
//!
//! An instance of type T serves model m alone at `cap(T, m)` req/s within m's SLO. Serving a mix,
//! it spends `d_m / cap(T, m)` of its time on m, so a fleet covers the forecast vector `d` when,
//! per instance, those shares add up to at most 1. Every instance serves every model (the
//! gateway spreads each model's batches over all backends), so each instance sees the same mix,
//! and one instance of T serves `D / Σ_m d_m / cap(T, m)` req/s of it in total (`D = Σ_m d_m`):
//! the harmonic mean of its capacities, weighted by demand. Planning for the total `D` with that
//! *mixed capacity* is exactly the time-share rule, so any single-model provisioner (the native
//! one, a 0.1.0 component) plans a mix unchanged.
//!
//! A type that has no curve for a model in demand, or whose memory cannot hold the models in
//! demand, gets capacity 0: it is not part of the plan.

use crate::types::{InstanceType, ModelDemand};

/// Memory an instance keeps for the OS and the worker itself, GiB.
pub const MEMORY_RESERVE_GIB: f64 = 0.5;

/// One model alone on `catalog` (each type's `capacity_rps` is its capacity for it): the
/// demand a single-model caller hands a provisioner.
pub fn alone(
    model: &str,
    forecast: &[f64],
    slo: crate::types::Slo,
    catalog: &[InstanceType],
) -> ModelDemand {
    ModelDemand {
        model: model.into(),
        forecast: forecast.to_vec(),
        slo,
        capacity: catalog
            .iter()
            .map(|t| crate::types::TypeCapacity {
                instance_type: t.name.clone(),
                capacity_rps: t.capacity_rps,
            })
            .collect(),
        footprint_gib: 0.0,
        attainment: None,
        p99_ms: None,
    }
}

/// The total forecast: per interval, the sum of the models' forecasts (a shorter forecast counts
/// 0 past its end).
pub fn total_forecast(models: &[ModelDemand]) -> Vec<f64> {
    let n = models.iter().map(|m| m.forecast.len()).max().unwrap_or(0);
    (0..n)
        .map(|k| {
            models
                .iter()
                .map(|m| m.forecast.get(k).copied().unwrap_or(0.0).max(0.0))
                .sum()
        })
        .collect()
}

fn cap_of(m: &ModelDemand, ty: &str) -> f64 {
    m.capacity
        .iter()
        .find(|c| c.instance_type == ty)
        .map_or(0.0, |c| c.capacity_rps)
        .max(0.0)
}

/// Capacity of one instance of `ty` serving `weights` (req/s or shares per model, in the order of
/// `models`), in req/s of the mix: `Σ w / Σ w_m / cap(ty, m)`; 0 when a model with weight has
/// no capacity on it. Without any weight the models count equally.
pub fn mixed_capacity(models: &[ModelDemand], ty: &str, weights: &[f64]) -> f64 {
    let total: f64 = weights.iter().map(|w| w.max(0.0)).sum();
    let equal = total <= 0.0;
    let mut time = 0.0;
    let mut sum = 0.0;
    for (m, w) in models.iter().zip(weights) {
        let w = if equal { 1.0 } else { w.max(0.0) };
        if w <= 0.0 {
            continue;
        }
        let c = cap_of(m, ty);
        if c <= 0.0 || !c.is_finite() {
            return 0.0;
        }
        time += w / c;
        sum += w;
    }
    if time > 0.0 {
        sum / time
    } else {
        0.0
    }
}

/// Whether an instance of `t` holds every model with demand (their footprints plus the reserve).
/// One model alone always fits: the catalog lists the types it runs on, and a footprint measured
/// on the gateway (runtime set-up included) is no reason to drop a type that served it before.
pub fn fits(models: &[ModelDemand], t: &InstanceType) -> bool {
    let busy: Vec<&ModelDemand> = models
        .iter()
        .filter(|m| m.forecast.iter().any(|x| *x > 0.0))
        .collect();
    let need: f64 = busy.iter().map(|m| m.footprint_gib.max(0.0)).sum();
    busy.len() < 2 || need <= 0.0 || need + MEMORY_RESERVE_GIB <= t.memory_gib
}

/// The catalog a single-model provisioner plans the mix with: each type's `capacity_rps` is its
/// mixed capacity for the forecast, at the interval where the mix is hardest for that type (so
/// the plan covers every interval), 0 for a type that does not fit the models in memory.
pub fn mixed_catalog(models: &[ModelDemand], catalog: &[InstanceType]) -> Vec<InstanceType> {
    let n = models.iter().map(|m| m.forecast.len()).max().unwrap_or(0);
    catalog
        .iter()
        .map(|t| {
            let mut cap = f64::INFINITY;
            for k in 0..n {
                let w: Vec<f64> = models
                    .iter()
                    .map(|m| m.forecast.get(k).copied().unwrap_or(0.0))
                    .collect();
                if w.iter().any(|x| *x > 0.0) {
                    cap = cap.min(mixed_capacity(models, &t.name, &w));
                }
            }
            if !cap.is_finite() {
                // no demand at all: the models weigh equally
                cap = mixed_capacity(models, &t.name, &vec![0.0; models.len()]);
            }
            if !fits(models, t) {
                cap = 0.0;
            }
            InstanceType {
                capacity_rps: cap,
                ..t.clone()
            }
        })
        .collect()
}

/// The plan's capacity per model: the mixed capacity of the planned instances, split by each
/// model's share of the total forecast peak interval.
pub fn capacity_by_model(models: &[ModelDemand], mixed_capacity_rps: f64) -> Vec<(String, f64)> {
    let total = total_forecast(models);
    let (k, peak) = total
        .iter()
        .copied()
        .enumerate()
        .fold((0, 0.0), |b, (i, x)| if x > b.1 { (i, x) } else { b });
    models
        .iter()
        .map(|m| {
            let share = if peak > 0.0 {
                m.forecast.get(k).copied().unwrap_or(0.0).max(0.0) / peak
            } else {
                1.0 / models.len().max(1) as f64
            };
            (m.model.clone(), mixed_capacity_rps * share)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Slo, TypeCapacity};

    fn model(name: &str, forecast: &[f64], caps: &[(&str, f64)], gib: f64) -> ModelDemand {
        ModelDemand {
            model: name.into(),
            forecast: forecast.to_vec(),
            slo: Slo {
                latency_ms: 100.0,
                attainment_target: 0.99,
            },
            capacity: caps
                .iter()
                .map(|(t, c)| TypeCapacity {
                    instance_type: (*t).into(),
                    capacity_rps: *c,
                })
                .collect(),
            footprint_gib: gib,
            attainment: None,
            p99_ms: None,
        }
    }

    fn ty(name: &str, gib: f64) -> InstanceType {
        InstanceType {
            name: name.into(),
            vcpus: 2,
            gpus: 0,
            memory_gib: gib,
            price_on_demand: 0.1,
            price_spot: 0.0,
            launch_seconds: 60.0,
            capacity_rps: 999.0,
            burstable: false,
        }
    }

    #[test]
    fn the_mixed_capacity_is_the_time_share_rule() {
        // c serves a at 100/s and b at 25/s: 50 a + 10 b take 0.5 + 0.4 = 0.9 of an instance,
        // so one instance serves 60 / 0.9 = 66.7 req/s of that mix
        let ms = [
            model("a", &[50.0], &[("c", 100.0)], 0.0),
            model("b", &[10.0], &[("c", 25.0)], 0.0),
        ];
        let cat = mixed_catalog(&ms, &[ty("c", 4.0)]);
        assert!((cat[0].capacity_rps - 60.0 / 0.9).abs() < 1e-9);
        assert_eq!(total_forecast(&ms), vec![60.0]);
        // one model alone: its own capacity
        let one = mixed_catalog(&ms[..1], &[ty("c", 4.0)]);
        assert_eq!(one[0].capacity_rps, 100.0);
        // the plan's capacity split by demand
        let by = capacity_by_model(&ms, 120.0);
        assert_eq!(by, vec![("a".to_string(), 100.0), ("b".to_string(), 20.0)]);
    }

    #[test]
    fn the_hardest_interval_sets_the_capacity_and_idle_models_do_not_count() {
        let ms = [
            model("a", &[100.0, 0.0], &[("c", 100.0)], 0.0),
            model("b", &[0.0, 10.0], &[("c", 10.0)], 0.0),
        ];
        let cat = mixed_catalog(&ms, &[ty("c", 4.0)]);
        assert_eq!(cat[0].capacity_rps, 10.0, "b's interval is the hard one");
        // a type with no curve for b cannot serve the mix; for a alone it could
        let ms2 = [
            model("a", &[100.0], &[("c", 100.0), ("g", 900.0)], 0.0),
            model("b", &[10.0], &[("c", 10.0)], 0.0),
        ];
        let cat = mixed_catalog(&ms2, &[ty("c", 4.0), ty("g", 16.0)]);
        assert_eq!(cat[1].capacity_rps, 0.0);
        let ms3 = [
            model("a", &[100.0], &[("c", 100.0), ("g", 900.0)], 0.0),
            model("b", &[0.0], &[("c", 10.0)], 0.0),
        ];
        assert_eq!(mixed_catalog(&ms3, &[ty("g", 16.0)])[0].capacity_rps, 900.0);
    }

    #[test]
    fn a_type_that_cannot_hold_the_models_is_not_planned() {
        let ms = [
            model("a", &[10.0], &[("small", 100.0), ("big", 100.0)], 1.5),
            model("b", &[10.0], &[("small", 100.0), ("big", 100.0)], 1.5),
        ];
        let cat = mixed_catalog(&ms, &[ty("small", 2.0), ty("big", 8.0)]);
        assert_eq!(cat[0].capacity_rps, 0.0, "3 GiB of models on 2 GiB");
        assert_eq!(cat[1].capacity_rps, 100.0);
        // with b idle, a alone fits the small one
        let ms = [
            model("a", &[10.0], &[("small", 100.0)], 1.5),
            model("b", &[0.0], &[("small", 100.0)], 1.5),
        ];
        assert_eq!(
            mixed_catalog(&ms, &[ty("small", 2.0)])[0].capacity_rps,
            100.0
        );
    }
}
