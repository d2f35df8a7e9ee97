//! The simulated cloud's instances: per-type service times derived from the model's profile,
//! per-second billing with a 60 s minimum, spot prices, and burstable CPU credits.

use mark_policies::types::{InstanceType, Market, ProfilePoint};

use crate::control::catalog::Catalog;
use crate::profile::LatencyProfile;

/// One instance type as the simulator runs it.
#[derive(Debug, Clone)]
pub struct TypeModel {
    /// What the provisioner sees (capacity at the SLO, prices, launch time).
    pub spec: InstanceType,
    /// CPU credits earned per hour (burstable types).
    pub credits_per_hour: f64,
    /// Service time of a batch of b items at full speed, seconds (index b - 1): the profile's
    /// median divided by the type's speed.
    pub service_s: Vec<f64>,
    /// The p99 profile the batcher plans with, scaled to this type (burstables: to the speed
    /// they sustain without credits).
    pub profile: Vec<ProfilePoint>,
    /// Speed relative to the profiled machine.
    pub speed: f64,
    /// Share of full speed sustained without CPU credits (1 unless burstable).
    pub baseline: f64,
    /// Largest batch this type runs: the model's limit, bounded by the largest batch its curve
    /// measured (a GPU curve to 32 batches to 32, the CPU profile to 8 stays at 8).
    pub max_batch: u32,
}

impl TypeModel {
    /// Builds every catalog type for `model`: from the type's own profile of the model when the
    /// catalog has one, else from `profile`, where a type with an explicit `capacity_rps.<model>`
    /// gets the speed that makes the profile reach that capacity.
    pub fn from_catalog(
        catalog: &Catalog,
        model: &str,
        profile: &LatencyProfile,
        slo_ms: f64,
        max_batch: u32,
        planning: Planning,
    ) -> Vec<TypeModel> {
        let sustained = planning.sustained;
        // what the provisioner sees is exactly what `mark serve` gives it (sustained capacity
        // of burstable types included); the service times come from the type's speed
        // (`sustained` false: the ablation that plans burstables at full speed)
        let mut specs = catalog.for_model(model, profile, slo_ms * planning.slo_factor, max_batch);
        if !sustained {
            for (s, t) in specs.iter_mut().zip(&catalog.instances) {
                s.capacity_rps /= t.baseline_share();
            }
        }
        catalog
            .instances
            .iter()
            .zip(specs)
            .map(|(t, spec)| {
                let speed = catalog.speed(&t.name, model, profile, slo_ms, max_batch);
                // a type with its own curve runs batches for that curve's latency (a GPU gains
                // from a batch what a CPU does not); others run the model's, `speed` times faster
                let (curve, scale) = match catalog.profile_of(&t.name, model) {
                    Some(own) => (own, 1.0),
                    None => (profile, speed),
                };
                let p50 = |b: u32| curve.median_us(b) / scale;
                let limit = curve.batch_limit(max_batch);
                TypeModel {
                    max_batch: limit,
                    spec,
                    credits_per_hour: t.cpu_credits_per_hour,
                    baseline: t.baseline_share(),
                    service_s: (1..=limit).map(|b| p50(b) / 1e6).collect(),
                    // a burstable's batches are planned for the speed it sustains without
                    // credits (as the live gateway does): spent credits must not push them
                    // past the SLO
                    profile: curve
                        .policy_points(scale * if sustained { t.baseline_share() } else { 1.0 }),
                    speed,
                }
            })
            .collect()
    }

    /// The gateway host's executors as a backend: the model's own profile at speed 1 (the
    /// profile the gateway measured at start), no price, no launch (see [`GATEWAY_TYPE`]).
    pub fn gateway(profile: &LatencyProfile, slo_ms: f64, max_batch: u32) -> TypeModel {
        let limit = profile.batch_limit(max_batch);
        TypeModel {
            spec: InstanceType {
                name: GATEWAY_TYPE.into(),
                vcpus: 0,
                gpus: 0,
                memory_gib: 0.0,
                price_on_demand: 0.0,
                price_spot: 0.0,
                launch_seconds: 0.0,
                capacity_rps: crate::control::catalog::capacity_at_slo(
                    profile, slo_ms, max_batch, 1.0,
                ),
                burstable: false,
            },
            credits_per_hour: 0.0,
            service_s: (1..=limit).map(|b| profile.median_us(b) / 1e6).collect(),
            profile: profile.policy_points(1.0),
            speed: 1.0,
            baseline: 1.0,
            max_batch: limit,
        }
    }

    /// Full-speed service time of `b` items, seconds.
    pub fn service(&self, b: u32) -> f64 {
        let n = self.service_s.len() as u32;
        let b = b.max(1);
        if b <= n {
            self.service_s[(b - 1) as usize]
        } else {
            self.service_s[(n - 1) as usize] * f64::from(b) / f64::from(n)
        }
    }

    /// Baseline performance of a burstable type without credits (share of full speed).
    pub fn baseline_share(&self) -> f64 {
        self.baseline
    }
}

/// How the provisioner sees the types (the ablation changes it; the service times stay).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Planning {
    /// The SLO the capacity-at-SLO rule is computed for, in multiples of the real one (1: the
    /// rule as it is; 2: batches may take the whole SLO).
    pub slo_factor: f64,
    /// Burstable types planned at the speed they sustain without credits (false: full speed).
    pub sustained: bool,
}

impl Default for Planning {
    fn default() -> Self {
        Planning {
            slo_factor: 1.0,
            sustained: true,
        }
    }
}

/// The name of the gateway's executors' type: never in the catalog the controller plans with.
pub const GATEWAY_TYPE: &str = "(gateway)";

/// One simulated instance.
#[derive(Debug, Clone)]
pub struct SimInstance {
    /// Sequential id.
    pub id: u64,
    /// Index into the type models.
    pub ty: usize,
    /// Market.
    pub market: Market,
    /// USD per hour it is billed at.
    pub price_per_hour: f64,
    /// Launch time.
    pub launched_at: f64,
    /// Time it starts serving.
    pub ready_at: f64,
    /// Serving now.
    pub ready: bool,
    /// Billing stopped (terminated or interrupted) at this time.
    pub ended_at: Option<f64>,
    /// Arrival times of the batch it runs (empty when idle).
    pub batch: Vec<f64>,
    /// The lane (model) of that batch.
    pub lane: usize,
    /// Bumped when the instance goes away, so its pending completion is ignored.
    pub epoch: u32,
    /// Terminate as soon as the running batch ends.
    pub draining: bool,
    /// CPU credit balance (burstable types).
    pub credits: f64,
    /// Time of the last credit update.
    pub credits_at: f64,
    /// It becomes ready after its launch time (false: a boot failure, `--cloud-faults`).
    pub boots: bool,
    /// A spot reclaim notice came: it takes no new batch and is gone at the reclaim.
    pub noticed: bool,
    /// One of the gateway's own executors (`--gateway-executors`): always there, free, offered
    /// batches first, and not part of the fleet the controller plans or the cloud lists.
    pub pinned: bool,
}

impl SimInstance {
    /// Alive (launched, not ended).
    pub fn alive(&self) -> bool {
        self.ended_at.is_none()
    }

    /// Running a batch.
    pub fn busy(&self) -> bool {
        !self.batch.is_empty()
    }

    /// USD billed up to `now` (or its end): per second, 60 s minimum.
    pub fn cost(&self, now: f64) -> f64 {
        let end = self.ended_at.unwrap_or(now);
        crate::control::ledger::instance_cost(self.price_per_hour, self.launched_at, end)
    }

    /// Service time of `b` items starting `now`, updating the credit balance of a burstable type:
    /// credits accrue per second of wall time; a busy vCPU-minute spends one; with none left the
    /// instance runs at its baseline share.
    pub fn start_service(&mut self, t: &TypeModel, b: u32, now: f64) -> f64 {
        let full = t.service(b);
        if !t.spec.burstable {
            return full;
        }
        let cap = 24.0 * t.credits_per_hour;
        self.credits =
            (self.credits + (now - self.credits_at) * t.credits_per_hour / 3600.0).min(cap);
        self.credits_at = now;
        let s = if self.credits > 0.0 {
            full
        } else {
            full / t.baseline_share()
        };
        self.credits -= s * f64::from(t.spec.vcpus) / 60.0;
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::MeasuredPoint as P;

    fn profile() -> LatencyProfile {
        LatencyProfile::new(
            "t",
            vec![
                P {
                    batch: 1,
                    p50_us: 10_000.0,
                    p99_us: 12_000.0,
                },
                P {
                    batch: 4,
                    p50_us: 20_000.0,
                    p99_us: 24_000.0,
                },
            ],
        )
    }

    #[test]
    fn service_times_scale_with_speed_and_capacity_override() {
        let cat = Catalog::parse(
            "[[instance]]\nname='a'\nvcpus=2\nmemory_gib=4\nprice_on_demand=0.1\nlaunch_seconds=60\nspeedup=2.0\n[[instance]]\nname='g'\nvcpus=4\nmemory_gib=16\nprice_on_demand=1.0\nlaunch_seconds=60\ncapacity_rps={m=1000}\n",
            "t",
        )
        .unwrap();
        let t = TypeModel::from_catalog(&cat, "m", &profile(), 100.0, 4, Planning::default());
        assert!((t[0].service(1) - 0.005).abs() < 1e-12);
        assert!(
            (t[0].service(8) - 0.02).abs() < 1e-12,
            "linear above the last point"
        );
        assert!((t[1].spec.capacity_rps - 1000.0).abs() < 1e-6);
    }

    #[test]
    fn a_type_with_its_own_curve_runs_batches_for_that_curve() {
        let cat = Catalog::parse(
            "[[instance]]\nname='g'\nvcpus=4\ngpus=1\nmemory_gib=16\nprice_on_demand=0.5\nlaunch_seconds=60\n[instance.profile.m]\npoints=[{batch=1,p50_us=3000.0,p99_us=4000.0},{batch=4,p50_us=4000.0,p99_us=5000.0}]\n",
            "t",
        )
        .unwrap();
        let t = &TypeModel::from_catalog(&cat, "m", &profile(), 100.0, 4, Planning::default())[0];
        assert!((t.service(1) - 0.003).abs() < 1e-12);
        assert!(
            (t.service(4) - 0.004).abs() < 1e-12,
            "its own batch 4, not 4x"
        );
        assert_eq!(t.profile.last().map(|p| p.latency_us), Some(5000.0));
    }

    #[test]
    fn burstable_runs_at_baseline_without_credits() {
        let cat = Catalog::parse(
            "[[instance]]\nname='t3'\nvcpus=2\nmemory_gib=4\nprice_on_demand=0.04\nlaunch_seconds=60\nburstable=true\ncpu_credits_per_hour=24\n",
            "t",
        )
        .unwrap();
        let t = &TypeModel::from_catalog(&cat, "m", &profile(), 100.0, 4, Planning::default())[0];
        assert!((t.baseline_share() - 0.2).abs() < 1e-12);
        let mut i = SimInstance {
            id: 0,
            ty: 0,
            market: Market::OnDemand,
            price_per_hour: 0.04,
            launched_at: 0.0,
            ready_at: 0.0,
            ready: true,
            ended_at: None,
            batch: vec![],
            lane: 0,
            epoch: 0,
            draining: false,
            credits: 0.0,
            credits_at: 0.0,
            boots: true,
            noticed: false,
            pinned: false,
        };
        assert!(
            (i.start_service(t, 1, 0.0) - 0.05).abs() < 1e-12,
            "5x slower"
        );
        i.credits = 10.0;
        assert!((i.start_service(t, 1, 0.0) - 0.01).abs() < 1e-12);
        assert!((i.cost(30.0) - 0.04 / 60.0).abs() < 1e-12, "60 s minimum");
    }
}
