//! The instance catalog: types with prices, launch times and per-model capacity; Lambda pricing.
//! Validated at load; `mark serve --catalog` exits 64 with the reason on a bad catalog.

use std::collections::BTreeMap;
use std::path::Path;

use mark_policies::types::{InstanceType, Market};
use serde::{Deserialize, Serialize};

use super::type_profile::{check_profile, ProfileSource, MAX_PROFILE_FILE_BYTES};
use crate::error::ConfigError;
use crate::profile::LatencyProfile;

/// Lambda (serverless) pricing and limits.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LambdaSpec {
    /// Function memory, MB (price scales with it).
    pub memory_mb: f64,
    /// USD per GB-second.
    pub price_per_gb_s: f64,
    /// USD per invocation.
    pub price_per_request: f64,
    /// Seconds of a cold start.
    pub cold_start_s: f64,
    /// Concurrent executions allowed.
    pub concurrency_limit: u32,
    /// Seconds one batch-1 request takes on the function (warm).
    #[serde(default = "default_lambda_latency")]
    pub latency_s: f64,
    /// Largest synchronous invocation payload, request or answer, in bytes (AWS: 6 MB). Spill
    /// batches are sized to fit it.
    #[serde(default = "default_payload_limit")]
    pub payload_limit_bytes: usize,
}

fn default_lambda_latency() -> f64 {
    0.05
}

fn default_payload_limit() -> usize {
    6 * 1024 * 1024
}

/// One instance type.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InstanceSpec {
    /// Cloud name, e.g. "c7i.large".
    pub name: String,
    /// vCPUs.
    pub vcpus: u32,
    /// GPUs.
    #[serde(default)]
    pub gpus: u32,
    /// Memory, GiB.
    pub memory_gib: f64,
    /// USD per hour, on-demand (list price).
    pub price_on_demand: f64,
    /// USD per hour, typical spot price; 0 when not offered.
    #[serde(default)]
    pub price_spot: f64,
    /// Seconds from launch request to serving.
    pub launch_seconds: f64,
    /// Burstable (CPU credits).
    #[serde(default)]
    pub burstable: bool,
    /// CPU credits earned per hour (burstable types).
    #[serde(default)]
    pub cpu_credits_per_hour: f64,
    /// Speed relative to the machine the model profiles were measured on (2.0 = batches take half
    /// the time). Used to derive capacity from a profile.
    #[serde(default = "one")]
    pub speedup: f64,
    /// Explicit capacity per model (requests/s within the SLO), overriding the derived one.
    #[serde(default)]
    pub capacity_rps: BTreeMap<String, f64>,
    /// Latency per batch size of each model on this type (`mark profile`'s format, inline or a
    /// file): batching and capacity on this type follow its own curve; without one, the model's
    /// profile scaled by `speedup`.
    #[serde(default)]
    pub profile: BTreeMap<String, ProfileSource>,
}

fn one() -> f64 {
    1.0
}

impl InstanceSpec {
    /// A spot price read live as the plan and the ledger use it: `None` unless finite and
    /// positive; a spike at or above on-demand counts as just under it (the plan then prefers
    /// on-demand).
    pub fn capped_spot(&self, p: f64) -> Option<f64> {
        (p.is_finite() && p > 0.0).then(|| p.min(self.price_on_demand * 0.999))
    }

    /// USD per hour in `market`.
    pub fn price(&self, market: Market) -> f64 {
        match market {
            Market::OnDemand => self.price_on_demand,
            Market::Spot => self.price_spot,
        }
    }

    /// Share of full speed a burstable type sustains without CPU credits (a credit is one
    /// vCPU-minute at 100%): `credits per hour / 60 / vCPUs`; 1 for other types. The provisioner
    /// plans with sustained capacity, so burstable types are bought for bursts, not for base load.
    pub fn baseline_share(&self) -> f64 {
        if self.burstable && self.vcpus > 0 {
            (self.cpu_credits_per_hour / 60.0 / f64::from(self.vcpus)).clamp(0.05, 1.0)
        } else {
            1.0
        }
    }
}

/// The catalog file.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// Region the prices are for.
    #[serde(default)]
    pub region: String,
    /// Price multiplier of SageMaker's ml.* instances over EC2 (for the baseline).
    #[serde(default = "default_markup")]
    pub sagemaker_markup: f64,
    /// Lambda, if spill-over is allowed.
    pub lambda: Option<LambdaSpec>,
    /// Instance types.
    #[serde(rename = "instance")]
    pub instances: Vec<InstanceSpec>,
}

fn default_markup() -> f64 {
    1.4
}

impl Catalog {
    /// Spot prices seen live (DescribeSpotPriceHistory: type → USD per hour) replace the
    /// file's for the types the catalog offers spot for. A price that is not a positive finite
    /// number is ignored (the file's stays); one at or above on-demand counts as just under it.
    /// Returns how many prices changed.
    pub fn with_spot_prices(&mut self, prices: &BTreeMap<String, f64>) -> usize {
        let mut changed = 0;
        for t in &mut self.instances {
            let Some(&p) = prices.get(&t.name) else {
                continue;
            };
            let Some(p) = t.capped_spot(p) else {
                continue;
            };
            if t.price_spot > 0.0 && p != t.price_spot {
                t.price_spot = p;
                changed += 1;
            }
        }
        changed
    }

    /// Parses and validates a catalog; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let c: Catalog =
            toml::from_str(text).map_err(|e| ConfigError::new(origin, e.to_string()))?;
        c.validate(origin)?;
        Ok(c)
    }

    /// The catalog as TOML that `parse` reads back the same, profile files inlined (what a
    /// recorded trace keeps, so a replay needs no other file).
    pub fn to_toml(&self) -> Option<String> {
        toml::to_string(self).ok()
    }

    /// Reads and validates `path`; profile files are read relative to its directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let origin = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|e| ConfigError::new(&origin, e.to_string()))?;
        let mut c: Catalog =
            toml::from_str(&text).map_err(|e| ConfigError::new(&origin, e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for t in &mut c.instances {
            for (model, src) in &mut t.profile {
                if let ProfileSource::File(f) = src {
                    let file = base.join(&*f);
                    let bad = |m: String| {
                        ConfigError::new(
                            &origin,
                            format!("{}: profile of {model}: {}: {m}", t.name, file.display()),
                        )
                    };
                    let len = std::fs::metadata(&file)
                        .map_err(|e| bad(e.to_string()))?
                        .len();
                    if len > MAX_PROFILE_FILE_BYTES {
                        return Err(bad(format!("{len} bytes; a profile is at most 1 MiB")));
                    }
                    let p = LatencyProfile::load(&file)
                        .map_err(bad)?
                        .ok_or_else(|| bad("not found".into()))?;
                    *src = ProfileSource::Inline(p);
                }
            }
        }
        c.validate(&origin)?;
        Ok(c)
    }

    /// Checks every field's range and that names are unique.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let err = |m: String| Err(ConfigError::new(origin, m));
        if self.instances.is_empty() {
            return err("no [[instance]] entries".into());
        }
        let mut seen = std::collections::BTreeSet::new();
        for t in &self.instances {
            let n = &t.name;
            if n.is_empty() || !seen.insert(n.clone()) {
                return err(format!("instance name '{n}' is empty or repeated"));
            }
            let pos = |v: f64| v.is_finite() && v > 0.0;
            if t.vcpus == 0 || !pos(t.memory_gib) {
                return err(format!("{n}: vcpus and memory_gib must be positive"));
            }
            if !(pos(t.price_on_demand) && t.price_spot.is_finite() && t.price_spot >= 0.0) {
                return err(format!(
                    "{n}: price_on_demand must be > 0 and price_spot >= 0"
                ));
            }
            if t.price_spot >= t.price_on_demand {
                return err(format!(
                    "{n}: price_spot {} is not below price_on_demand {}",
                    t.price_spot, t.price_on_demand
                ));
            }
            if !(t.launch_seconds.is_finite() && t.launch_seconds >= 0.0 && pos(t.speedup)) {
                return err(format!("{n}: launch_seconds must be >= 0 and speedup > 0"));
            }
            if t.burstable && t.cpu_credits_per_hour <= 0.0 {
                return err(format!(
                    "{n}: a burstable type needs cpu_credits_per_hour > 0"
                ));
            }
            if let Some((m, c)) = t.capacity_rps.iter().find(|(_, c)| !pos(**c)) {
                return err(format!("{n}: capacity_rps.{m} = {c} must be > 0"));
            }
            for (m, src) in &t.profile {
                match src {
                    ProfileSource::File(f) => {
                        return err(format!(
                            "{n}: profile of {m}: the file '{f}' is read only when the catalog is loaded from a file"
                        ))
                    }
                    ProfileSource::Inline(p) => {
                        if let Err(e) = check_profile(p) {
                            return err(format!("{n}: profile of {m}: {e}"));
                        }
                    }
                }
            }
        }
        if let Some(l) = &self.lambda {
            if !(l.memory_mb >= 128.0
                && l.price_per_gb_s > 0.0
                && l.price_per_request >= 0.0
                && l.cold_start_s >= 0.0
                && l.latency_s > 0.0)
                || l.concurrency_limit == 0
            {
                return err(
                    "lambda: memory_mb >= 128, positive prices and latency, concurrency_limit >= 1"
                        .into(),
                );
            }
        }
        if !(self.sagemaker_markup.is_finite() && self.sagemaker_markup >= 1.0) {
            return err("sagemaker_markup must be >= 1".into());
        }
        Ok(())
    }

    /// The type named `name`.
    pub fn get(&self, name: &str) -> Option<&InstanceSpec> {
        self.instances.iter().find(|t| t.name == name)
    }

    /// The latency profile of `model` on type `name`, when the catalog has one (after `load`).
    pub fn profile_of(&self, name: &str, model: &str) -> Option<&LatencyProfile> {
        match self.get(name)?.profile.get(model)? {
            ProfileSource::Inline(p) => Some(p),
            ProfileSource::File(_) => None,
        }
    }

    /// Speed of type `name` running `model` relative to the machine `profile` was measured on:
    /// the ratio its explicit `capacity_rps.<model>` implies, else the ratio of the capacity its
    /// own profile gives, else its `speedup` (1 if unknown).
    pub fn speed(
        &self,
        name: &str,
        model: &str,
        profile: &LatencyProfile,
        slo_ms: f64,
        max_batch: u32,
    ) -> f64 {
        let Some(t) = self.get(name) else {
            return 1.0;
        };
        let base = capacity_at_slo(profile, slo_ms, max_batch, 1.0);
        let own = self
            .profile_of(name, model)
            .map(|p| capacity_at_slo(p, slo_ms, max_batch, 1.0));
        match (t.capacity_rps.get(model), own) {
            (Some(c), _) if base > 0.0 => c / base,
            (None, Some(c)) if base > 0.0 && c > 0.0 => c / base,
            _ => t.speedup,
        }
    }

    /// The catalog as the provisioner sees it for one model: capacity from the explicit value,
    /// else from the type's own profile of the model, else from `profile` scaled by its speedup
    /// (the same function live and in the simulator).
    pub fn for_model(
        &self,
        model: &str,
        profile: &LatencyProfile,
        slo_ms: f64,
        max_batch: u32,
    ) -> Vec<InstanceType> {
        self.instances
            .iter()
            .map(|t| InstanceType {
                name: t.name.clone(),
                vcpus: t.vcpus,
                gpus: t.gpus,
                memory_gib: t.memory_gib,
                price_on_demand: t.price_on_demand,
                price_spot: t.price_spot,
                launch_seconds: t.launch_seconds,
                capacity_rps: t.capacity_rps.get(model).copied().unwrap_or_else(|| {
                    match self.profile_of(&t.name, model) {
                        Some(own) => capacity_at_slo(own, slo_ms, max_batch, 1.0),
                        None => capacity_at_slo(profile, slo_ms, max_batch, t.speedup),
                    }
                }) * t.baseline_share(),
                burstable: t.burstable,
            })
            .collect()
    }
}

/// Requests per second one backend serves while meeting the SLO: the best `b / latency(b)` over
/// batch sizes up to `max_batch` and the largest measured whose latency is at most half the SLO
/// (a request may wait for the batch ahead of it, then ride its own). 0 when even batch 1 does
/// not fit.
pub fn capacity_at_slo(profile: &LatencyProfile, slo_ms: f64, max_batch: u32, speedup: f64) -> f64 {
    let budget_us = slo_ms * 1000.0 / 2.0;
    (1..=profile.batch_limit(max_batch))
        .map(|b| (b, profile.latency_us(b) / speedup))
        .filter(|(_, l)| *l > 0.0 && *l <= budget_us)
        .map(|(b, l)| f64::from(b) * 1e6 / l)
        .fold(0.0, f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::MeasuredPoint as ProfilePoint;

    const OK: &str = r#"
region = "us-east-1"
[lambda]
memory_mb = 2048
price_per_gb_s = 0.0000166667
price_per_request = 0.0000002
cold_start_s = 1.5
concurrency_limit = 100

[[instance]]
name = "c7i.large"
vcpus = 2
memory_gib = 4
price_on_demand = 0.08925
price_spot = 0.035
launch_seconds = 90
speedup = 1.5
capacity_rps = { resnet18 = 150 }

[[instance]]
name = "t3.medium"
vcpus = 2
memory_gib = 4
price_on_demand = 0.0416
price_spot = 0.0125
launch_seconds = 60
burstable = true
cpu_credits_per_hour = 24
"#;

    #[test]
    fn the_catalog_survives_its_toml_with_profile_files_inlined() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples/catalog-us-east-1.toml");
        let c = Catalog::load(&path).unwrap();
        let text = c.to_toml().expect("serializes");
        assert_eq!(Catalog::parse(&text, "round trip").unwrap(), c);
    }

    #[test]
    fn parses_and_derives_capacity() {
        let c = Catalog::parse(OK, "cat.toml").unwrap();
        let p = LatencyProfile::new(
            "t",
            vec![
                ProfilePoint {
                    batch: 1,
                    p50_us: 100.0,
                    p99_us: 100.0,
                },
                ProfilePoint {
                    batch: 8,
                    p50_us: 400.0,
                    p99_us: 400.0,
                },
            ],
        );
        let v = c.for_model("mlp", &p, 1.0, 8);
        // budget 500 us: batch 8 at 400 us -> 20 000 rps; with speedup 1.5 -> 30 000; the
        // burstable t3.medium sustains 24 credits/h / 60 / 2 vCPUs = 20% of that: 4 000
        assert!(
            (v[1].capacity_rps - 4_000.0).abs() < 1e-6,
            "{}",
            v[1].capacity_rps
        );
        assert!(
            (v[0].capacity_rps - 30_000.0).abs() < 1e-6,
            "{}",
            v[0].capacity_rps
        );
        assert_eq!(c.for_model("resnet18", &p, 1.0, 8)[0].capacity_rps, 150.0);
        // speed per type: from `speedup`, or implied by an explicit capacity
        assert_eq!(c.speed("c7i.large", "mlp", &p, 1.0, 8), 1.5);
        assert!((c.speed("c7i.large", "resnet18", &p, 1.0, 8) - 150.0 / 20_000.0).abs() < 1e-12);
        assert_eq!(c.speed("nope", "mlp", &p, 1.0, 8), 1.0);
    }

    #[test]
    fn rejects_bad_catalogs_with_the_reason() {
        for (bad, want) in [
            (
                OK.replace("price_spot = 0.035", "price_spot = 0.5"),
                "not below price_on_demand",
            ),
            (
                OK.replace("cpu_credits_per_hour = 24", ""),
                "burstable type needs",
            ),
            (
                OK.replace("name = \"t3.medium\"", "name = \"c7i.large\""),
                "repeated",
            ),
            (
                OK.replace("concurrency_limit = 100", "concurrency_limit = 0"),
                "lambda",
            ),
            (
                OK.replace(
                    "vcpus = 2\nmemory_gib = 4\nprice_on_demand = 0.08925",
                    "vcpus = 2\nmemory_gib = 4\nprice_on_demand = -1",
                ),
                "price_on_demand",
            ),
        ] {
            let e = Catalog::parse(&bad, "cat.toml").unwrap_err().to_string();
            assert!(e.contains(want) && e.starts_with("cat.toml"), "{want}: {e}");
        }
    }

    #[test]
    fn shipped_example_is_valid() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/catalog-us-east-1.toml"
        );
        let c = Catalog::load(Path::new(path)).unwrap();
        assert!(c.instances.len() >= 8);
    }

    #[test]
    fn live_spot_prices_replace_the_files_within_bounds() {
        let mut c = Catalog::parse(OK, "t").unwrap();
        let before = c.instances.clone();
        let name = before[0].name.clone();
        let od = before[0].price_on_demand;
        let prices: BTreeMap<String, f64> = [
            (name.clone(), od / 4.0),
            (before[1].name.clone(), od * 100.0),
            ("not-in-the-catalog".to_string(), 0.01),
        ]
        .into_iter()
        .collect();
        assert_eq!(c.with_spot_prices(&prices), 2);
        assert_eq!(c.get(&name).unwrap().price_spot, od / 4.0);
        let od1 = before[1].price_on_demand;
        assert_eq!(
            c.instances[1].price_spot,
            od1 * 0.999,
            "a spike counts as just under on-demand"
        );
        assert_eq!(c.with_spot_prices(&prices), 0, "no change the second time");
        let zero: BTreeMap<String, f64> = [(name.clone(), 0.0)].into_iter().collect();
        assert_eq!(
            c.with_spot_prices(&zero),
            0,
            "0 is no price (spot stays offered)"
        );
    }
}
