//! Many models on one fleet, the controller's side: what each model brings to a plan
//! ([`ModelInput`]), the per-model demands a provisioner receives, the model that drove a plan,
//! and the fleet's floor (`--min-instances`: at least N instances, or with 0 the fleet goes to
//! zero while Lambda carries the forecast for less than the cheapest instance). The time-share
//! rule itself is `mark_policies::mix`, shared with the WASM default provisioner.

pub use mark_policies::mix::{capacity_by_model, mixed_capacity, mixed_catalog, total_forecast};
use mark_policies::types::{
    FleetTarget, InstanceType, Market, ModelDemand, Plan, Slo, TypeCapacity,
};

use super::catalog::LambdaSpec;

/// One model served by the fleet, as the control loop knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInput {
    /// Model name.
    pub name: String,
    /// Its SLO (latency from its config; the attainment target the loop keeps).
    pub slo: Slo,
    /// The catalog with each type's capacity for this model alone (`Catalog::for_model`).
    pub catalog: Vec<InstanceType>,
    /// Memory it takes once loaded, GiB (0: unknown).
    pub footprint_gib: f64,
}

/// The demands a provisioner plans for: each model's forecast, SLO, `cap(T, m)` for the types
/// of `usable` and what the monitors measured (attainment, and the p99 since the last plan).
pub fn demands(
    models: &[ModelInput],
    forecasts: &[Vec<f64>],
    attainment: &[Option<f64>],
    p99_ms: &[Option<f64>],
    usable: &[InstanceType],
) -> Vec<ModelDemand> {
    models
        .iter()
        .zip(forecasts)
        .enumerate()
        .map(|(i, (m, f))| ModelDemand {
            model: m.name.clone(),
            forecast: f.clone(),
            slo: m.slo,
            capacity: usable
                .iter()
                .map(|t| TypeCapacity {
                    instance_type: t.name.clone(),
                    capacity_rps: m
                        .catalog
                        .iter()
                        .find(|c| c.name == t.name)
                        .map_or(0.0, |c| c.capacity_rps),
                })
                .collect(),
            footprint_gib: m.footprint_gib,
            attainment: attainment.get(i).copied().flatten(),
            p99_ms: p99_ms.get(i).copied().flatten(),
        })
        .collect()
}

/// The strictest of the models' SLOs (the one a single-model provisioner is given).
pub fn strictest(models: &[ModelInput]) -> Slo {
    models
        .iter()
        .map(|m| m.slo)
        .min_by(|a, b| a.latency_ms.total_cmp(&b.latency_ms))
        .unwrap_or(Slo {
            latency_ms: 100.0,
            attainment_target: 0.99,
        })
}

/// The model that drove a plan: at the forecast's peak interval, the one that takes the most
/// instance time (its demand over its best capacity). None without demand.
pub fn driver(demands: &[ModelDemand]) -> Option<String> {
    let total = total_forecast(demands);
    let k = (0..total.len()).max_by(|&a, &b| total[a].total_cmp(&total[b]))?;
    if total[k] <= 0.0 {
        return None;
    }
    demands
        .iter()
        .map(|d| {
            let best = d
                .capacity
                .iter()
                .map(|c| c.capacity_rps)
                .fold(0.0, f64::max);
            let need = d.forecast.get(k).copied().unwrap_or(0.0);
            let time = if best > 0.0 {
                need / best
            } else {
                f64::INFINITY
            };
            (d.model.clone(), if need > 0.0 { time } else { -1.0 })
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|x| x.0)
}

/// The fleet's floor (`--min-instances`) and the spread of its spot capacity
/// (`--spot-max-share`): the constraints on a plan's shape the controller applies after the
/// provisioner, whatever policy made the plan.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Floor {
    /// None: the provisioner's plan as it is. Some(n > 0): at least n instances. Some(0): the
    /// fleet may go to zero and leave the forecast to Lambda where that costs less.
    pub min_instances: Option<u32>,
    /// The function that carries the load at zero (needed for `Some(0)` to go to zero).
    pub lambda: Option<LambdaSpec>,
    /// No spot type holds more than this share of the plan's spot capacity
    /// ([`super::spread::spread`]); None: the plan's spot as it is.
    pub spot_max_share: Option<f64>,
}

/// USD per request on `l` (the invocation and the GB-seconds of one warm batch-1 run).
pub fn lambda_cost_per_request(l: &LambdaSpec) -> f64 {
    l.price_per_request + l.price_per_gb_s * l.memory_mb / 1024.0 * l.latency_s
}

impl Floor {
    /// Whether Lambda alone carries `forecast` (req/s per interval of `interval_s`) for less
    /// than the cheapest instances of one type that cover its peak would cost over the same
    /// horizon (at least their billing minimum of 60 s, and their launch time), within the
    /// function's concurrency (at 80% of the limit). Never without a type that serves.
    pub fn lambda_only(&self, forecast: &[f64], interval_s: f64, catalog: &[InstanceType]) -> bool {
        let (Some(0), Some(l)) = (self.min_instances, &self.lambda) else {
            return false;
        };
        let peak = forecast.iter().copied().fold(0.0, f64::max);
        if peak * l.latency_s.max(1e-3) > 0.8 * f64::from(l.concurrency_limit) {
            return false;
        }
        let requests: f64 = forecast.iter().map(|r| r.max(0.0) * interval_s).sum();
        let lambda = requests * lambda_cost_per_request(l);
        let span = (forecast.len() as f64 * interval_s).max(60.0);
        // the cheapest fleet of one type that covers the peak
        let instances = catalog
            .iter()
            .filter(|t| t.capacity_rps > 0.0)
            .flat_map(|t| {
                let n = (peak / t.capacity_rps).ceil().max(1.0);
                Market::ALL
                    .into_iter()
                    .map(move |m| t.price(m))
                    .filter(|p| *p > 0.0)
                    .map(move |p| n * p * (span + t.launch_seconds) / 3600.0)
            })
            .fold(f64::INFINITY, f64::min);
        instances.is_finite() && lambda < instances
    }

    /// The on-demand type the floor is made of: the cheapest that serves.
    pub fn cheapest(catalog: &[InstanceType]) -> Option<&InstanceType> {
        catalog
            .iter()
            .filter(|t| t.capacity_rps > 0.0 && t.price_on_demand > 0.0)
            .min_by(|a, b| a.price_on_demand.total_cmp(&b.price_on_demand))
    }

    /// Instances missing from a fleet of `have` (launching ones included) for the floor; 0 at
    /// the floor's zero.
    pub fn shortfall(&self, have: usize) -> u32 {
        self.min_instances.map_or(0, |n| {
            n.saturating_sub(u32::try_from(have).unwrap_or(u32::MAX))
        })
    }

    /// `plan` with the floor applied: empty with every request to Lambda when
    /// [`Floor::lambda_only`]; else topped up to `min_instances` with the cheapest on-demand
    /// type that serves.
    pub fn apply(
        &self,
        mut plan: Plan,
        forecast: &[f64],
        interval_s: f64,
        catalog: &[InstanceType],
    ) -> Plan {
        if self.lambda_only(forecast, interval_s, catalog) {
            return Plan {
                targets: Vec::new(),
                lambda_share: 1.0,
            };
        }
        let Some(n) = self.min_instances.filter(|n| *n > 0) else {
            return plan;
        };
        let have: u32 = plan.targets.iter().map(|t| t.count).sum();
        if have >= n {
            return plan;
        }
        let Some(cheapest) = Self::cheapest(catalog) else {
            return plan;
        };
        match plan
            .targets
            .iter_mut()
            .find(|t| t.instance_type == cheapest.name && t.market == Market::OnDemand)
        {
            Some(t) => t.count += n - have,
            None => plan.targets.push(FleetTarget {
                instance_type: cheapest.name.clone(),
                market: Market::OnDemand,
                count: n - have,
            }),
        }
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ty(name: &str, price: f64, cap: f64) -> InstanceType {
        InstanceType {
            name: name.into(),
            vcpus: 2,
            gpus: 0,
            memory_gib: 4.0,
            price_on_demand: price,
            price_spot: 0.0,
            launch_seconds: 60.0,
            capacity_rps: cap,
            burstable: false,
        }
    }

    fn lambda() -> LambdaSpec {
        LambdaSpec {
            memory_mb: 2048.0,
            price_per_gb_s: 0.0000166667,
            price_per_request: 0.0000002,
            cold_start_s: 1.0,
            concurrency_limit: 100,
            latency_s: 0.05,
            payload_limit_bytes: 6 << 20,
        }
    }

    #[test]
    fn zero_instances_while_lambda_carries_the_trickle_for_less() {
        let cat = [ty("c", 0.085, 100.0)];
        let floor = Floor {
            min_instances: Some(0),
            lambda: Some(lambda()),
            spot_max_share: None,
        };
        // $1.87e-6 per request: 1 req/s for 5 minutes is $0.00056, an instance $0.0085
        assert!(floor.lambda_only(&[1.0; 5], 60.0, &cat));
        let p = floor.apply(
            Plan {
                targets: vec![FleetTarget {
                    instance_type: "c".into(),
                    market: Market::OnDemand,
                    count: 1,
                }],
                lambda_share: 0.0,
            },
            &[1.0; 5],
            60.0,
            &cat,
        );
        assert!(p.targets.is_empty() && p.lambda_share == 1.0);
        // 20 req/s costs more on Lambda than the instance: the plan stands
        assert!(!floor.lambda_only(&[20.0; 5], 60.0, &cat));
        // without a function, or with the default floor, never zero
        let none = Floor {
            min_instances: Some(0),
            lambda: None,
            spot_max_share: None,
        };
        assert!(!none.lambda_only(&[1.0; 5], 60.0, &cat));
        assert!(!Floor::default().lambda_only(&[1.0; 5], 60.0, &cat));
        // past the function's concurrency (80 of 100 at 50 ms: 1,600 req/s), instances
        let cheap_big = [ty("c", 100.0, 5000.0)];
        assert!(!floor.lambda_only(&[2000.0; 5], 60.0, &cheap_big));
        // a peak above one instance's capacity is priced as the instances it needs, not as
        // "no instance covers it" (which would leave a large load to Lambda): 10 of them cost
        // $0.085 over the horizon, Lambda $0.56
        let small = [ty("c", 0.085, 100.0)];
        assert!(!floor.lambda_only(&[1000.0; 5], 60.0, &small));
        assert!(!floor.lambda_only(&[1.0; 5], 60.0, &[]), "no type: no zero");
    }

    #[test]
    fn a_floor_of_n_tops_the_plan_up_with_the_cheapest_type() {
        let cat = [ty("big", 0.2, 300.0), ty("small", 0.05, 20.0)];
        let floor = Floor {
            min_instances: Some(2),
            lambda: None,
            spot_max_share: None,
        };
        let p = floor.apply(
            Plan {
                targets: Vec::new(),
                lambda_share: 0.0,
            },
            &[0.0; 5],
            60.0,
            &cat,
        );
        assert_eq!(p.targets.len(), 1);
        assert_eq!(
            (p.targets[0].instance_type.as_str(), p.targets[0].count),
            ("small", 2)
        );
    }

    #[test]
    fn the_driver_is_the_model_that_takes_the_most_instance_time() {
        let d = |m: &str, f: f64, cap: f64| ModelDemand {
            model: m.into(),
            forecast: vec![f],
            slo: Slo {
                latency_ms: 100.0,
                attainment_target: 0.99,
            },
            capacity: vec![TypeCapacity {
                instance_type: "c".into(),
                capacity_rps: cap,
            }],
            footprint_gib: 0.0,
            attainment: None,
            p99_ms: None,
        };
        // 100 req/s of a light model vs 20 of a heavy one: the heavy one needs more time
        let ds = [d("mlp", 100.0, 1000.0), d("resnet", 20.0, 40.0)];
        assert_eq!(driver(&ds).as_deref(), Some("resnet"));
        assert_eq!(driver(&[d("x", 0.0, 10.0)]), None);
    }
}
