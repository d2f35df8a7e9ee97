//! A type's own latency curve for a model in the catalog: where it comes from (inline or a file
//! beside the catalog), the shape it must have, and the entry `mark profile --catalog-entry`
//! prints for it.

use serde::Deserialize;

use crate::profile::LatencyProfile;

/// Where a type's profile for one model comes from.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(untagged)]
pub enum ProfileSource {
    /// A `mark profile` file, relative to the catalog (read by `Catalog::load`).
    File(String),
    /// The points inline (`{ measured_on = "...", points = [{ batch, p50_us, p99_us }, ...] }`).
    Inline(LatencyProfile),
}

/// Largest profile file read (a profile is a few hundred bytes per batch size).
pub(super) const MAX_PROFILE_FILE_BYTES: u64 = 1 << 20;

/// Checks a profile's shape: points, batch sizes increasing from 1 up, latencies positive and
/// finite, p50 <= p99, neither falling as the batch grows. The message says what is wrong.
pub fn check_profile(p: &LatencyProfile) -> Result<(), String> {
    if p.points.is_empty() {
        return Err("no points".into());
    }
    let mut prev: Option<&crate::profile::MeasuredPoint> = None;
    for pt in &p.points {
        let ok = |v: f64| v.is_finite() && v > 0.0;
        if pt.batch == 0 || !ok(pt.p50_us) || !ok(pt.p99_us) || pt.p99_us < pt.p50_us {
            return Err(format!(
                "batch {}: needs batch >= 1 and 0 < p50_us <= p99_us (got {} and {})",
                pt.batch, pt.p50_us, pt.p99_us
            ));
        }
        if let Some(q) = prev {
            if pt.batch <= q.batch {
                return Err(format!(
                    "batch sizes must increase ({} after {})",
                    pt.batch, q.batch
                ));
            }
            if pt.p50_us < q.p50_us || pt.p99_us < q.p99_us {
                return Err(format!(
                    "latency falls from batch {} to batch {}: a bigger batch cannot take less time",
                    q.batch, pt.batch
                ));
            }
        }
        prev = Some(pt);
    }
    Ok(())
}

/// The TOML to paste into a catalog's `[[instance]]` entry named `instance_type`: `profile` as
/// that type's curve for `model` (`mark profile --catalog-entry TYPE`). Latencies are made
/// non-decreasing in the batch size (a running maximum), as validation requires: on a small model
/// a measured batch of 2 can come out faster than a batch of 1.
pub fn catalog_entry(instance_type: &str, model: &str, profile: &LatencyProfile) -> String {
    let mut out = format!(
        "# paste after the fields of the [[instance]] with name = \"{instance_type}\"\n\
         [instance.profile.{model}]\nmeasured_on = \"{instance_type}\"\npoints = [\n"
    );
    let (mut p50, mut p99) = (0.0f64, 0.0f64);
    for pt in &profile.points {
        p50 = p50.max(pt.p50_us);
        p99 = p99.max(pt.p99_us).max(p50);
        out.push_str(&format!(
            "  {{ batch = {}, p50_us = {p50:.1}, p99_us = {p99:.1} }},\n",
            pt.batch
        ));
    }
    out.push_str("]\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::catalog::{capacity_at_slo, Catalog};
    use crate::profile::MeasuredPoint as ProfilePoint;

    /// A GPU-like curve: batches of 16 cost little more than batches of 1.
    const GPU: &str = r#"
[[instance]]
name = "g4dn.xlarge"
vcpus = 4
gpus = 1
memory_gib = 16
price_on_demand = 0.526
launch_seconds = 120
[instance.profile.resnet18]
measured_on = "test curve"
points = [
  { batch = 1, p50_us = 4000.0, p99_us = 5000.0 },
  { batch = 8, p50_us = 8000.0, p99_us = 9000.0 },
  { batch = 16, p50_us = 12000.0, p99_us = 14000.0 },
]
"#;

    fn cpu_profile() -> LatencyProfile {
        LatencyProfile::new(
            "cpu",
            vec![
                ProfilePoint {
                    batch: 1,
                    p50_us: 20_000.0,
                    p99_us: 22_000.0,
                },
                ProfilePoint {
                    batch: 16,
                    p50_us: 320_000.0,
                    p99_us: 330_000.0,
                },
            ],
        )
    }

    #[test]
    fn a_type_with_its_own_profile_gets_capacity_from_its_curve() {
        let c = Catalog::parse(GPU, "gpu.toml").unwrap();
        let cpu = cpu_profile();
        let t = &c.for_model("resnet18", &cpu, 100.0, 16)[0];
        // budget 50 ms: batch 16 runs in 14 ms p99 -> 16 / 14 ms
        assert!(
            (t.capacity_rps - 16.0 / 0.014).abs() < 1e-6,
            "{}",
            t.capacity_rps
        );
        // the CPU curve at the same budget: batch 2 (42 ms by interpolation) is the best
        let base = capacity_at_slo(&cpu, 100.0, 16, 1.0);
        let speed = c.speed("g4dn.xlarge", "resnet18", &cpu, 100.0, 16);
        assert!((speed - t.capacity_rps / base).abs() < 1e-9);
        // another model on the same type falls back to the model's profile and speedup 1
        let other = &c.for_model("mlp", &cpu, 100.0, 16)[0];
        assert!((other.capacity_rps - base).abs() < 1e-9);
        assert!(c.profile_of("g4dn.xlarge", "mlp").is_none());
    }

    #[test]
    fn bad_profiles_name_the_type_and_model() {
        let cases = [
            (
                "batch = 8, p50_us = 8000.0",
                "batch = 1, p50_us = 8000.0",
                "batch sizes must increase (1 after 1)",
            ),
            (
                "p50_us = 12000.0, p99_us = 14000.0",
                "p50_us = 2000.0, p99_us = 3000.0",
                "latency falls from batch 8 to batch 16",
            ),
            (
                "p50_us = 4000.0, p99_us = 5000.0",
                "p50_us = -4.0, p99_us = 5000.0",
                "0 < p50_us <= p99_us",
            ),
            (
                "p50_us = 4000.0, p99_us = 5000.0",
                "p50_us = 6000.0, p99_us = 5000.0",
                "0 < p50_us <= p99_us",
            ),
        ];
        for (from, to, want) in cases {
            let text = GPU.replacen(from, to, 1);
            let e = Catalog::parse(&text, "gpu.toml").unwrap_err().to_string();
            assert!(
                e.contains("gpu.toml")
                    && e.contains("g4dn.xlarge: profile of resnet18")
                    && e.contains(want),
                "{want}: {e}"
            );
        }
    }

    #[test]
    fn profile_files_are_read_beside_the_catalog() {
        let dir = std::env::temp_dir().join(format!("mark-cat-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("profiles")).unwrap();
        let mut own = cpu_profile();
        own.measured_on = "g4dn.xlarge".into();
        own.save(&dir.join("profiles/r.toml")).unwrap();
        let head = GPU.split("[instance.profile.resnet18]").next().unwrap();
        let text = format!("{head}profile = {{ resnet18 = \"profiles/r.toml\" }}\n");
        std::fs::write(dir.join("cat.toml"), &text).unwrap();
        let c = Catalog::load(&dir.join("cat.toml")).unwrap();
        assert_eq!(c.profile_of("g4dn.xlarge", "resnet18"), Some(&own));
        // a missing file names the catalog, the type and the file
        std::fs::write(dir.join("cat.toml"), text.replace("r.toml", "gone.toml")).unwrap();
        let e = Catalog::load(&dir.join("cat.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("g4dn.xlarge: profile of resnet18") && e.contains("gone.toml"),
            "{e}"
        );
        // without a file to be relative to, a path is refused
        assert!(Catalog::parse(&text, "inline")
            .unwrap_err()
            .to_string()
            .contains("read only when"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_printed_catalog_entry_pastes_into_a_valid_catalog() {
        let noisy = LatencyProfile::new(
            "vm",
            vec![
                ProfilePoint {
                    batch: 1,
                    p50_us: 900.0,
                    p99_us: 1500.0,
                },
                ProfilePoint {
                    batch: 2,
                    p50_us: 850.0,
                    p99_us: 1000.0,
                },
                ProfilePoint {
                    batch: 4,
                    p50_us: 1600.0,
                    p99_us: 2100.0,
                },
            ],
        );
        let head = GPU.split("[instance.profile.resnet18]").next().unwrap();
        let text = format!("{head}{}", catalog_entry("g4dn.xlarge", "mlp", &noisy));
        let c = Catalog::parse(&text, "pasted").unwrap();
        let p = c.profile_of("g4dn.xlarge", "mlp").unwrap();
        assert_eq!(p.measured_on, "g4dn.xlarge");
        let p99: Vec<f64> = p.points.iter().map(|x| x.p99_us).collect();
        assert_eq!(p99, vec![1500.0, 1500.0, 2100.0], "never falling");
        assert_eq!(p.points[1].p50_us, 900.0);
    }
}
