//! Latency profiles: measured latency per batch size, the input of every batch-size decision.
//!
//! A profile is written by `mark profile` (or by `mark serve` when a model has none) to
//! `DIR/<model>/profile.toml`. Latency for a batch size between two measured points is
//! interpolated linearly; above the last point it grows in proportion to the batch.

use serde::{Deserialize, Serialize};
use std::path::Path;

pub mod live;

/// One measured point of a profile (a batch size with its p50 and p99); what policies see of
/// it is `mark_policies::types::MeasuredPoint` (the p99), made by [`LatencyProfile::policy_points`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MeasuredPoint {
    /// Items along dim 0.
    pub batch: u32,
    /// Median latency of one run, microseconds.
    pub p50_us: f64,
    /// 99th-percentile latency of one run, microseconds.
    pub p99_us: f64,
}

/// A model's latency per batch size on one machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct LatencyProfile {
    /// Where it was measured (host name or instance type).
    #[serde(default)]
    pub measured_on: String,
    /// Points sorted by batch size.
    pub points: Vec<MeasuredPoint>,
}

impl LatencyProfile {
    /// What a batch policy sees of this profile on a machine `speed` times as fast: each batch
    /// size with its p99 latency.
    pub fn policy_points(&self, speed: f64) -> Vec<mark_policies::types::ProfilePoint> {
        self.points
            .iter()
            .map(|p| mark_policies::types::ProfilePoint {
                batch: p.batch,
                latency_us: p.p99_us / speed,
            })
            .collect()
    }

    /// `max_batch` bounded by the largest batch measured: a batch the profile has not measured is
    /// never planned (its latency would be a guess). At least 1; `max_batch` for an empty profile.
    pub fn batch_limit(&self, max_batch: u32) -> u32 {
        self.points
            .last()
            .map_or(max_batch, |p| p.batch.min(max_batch))
            .max(1)
    }

    /// Builds a profile, sorting the points.
    pub fn new(measured_on: impl Into<String>, mut points: Vec<MeasuredPoint>) -> Self {
        points.sort_by_key(|p| p.batch);
        LatencyProfile {
            measured_on: measured_on.into(),
            points,
        }
    }

    /// Expected (p99) latency in microseconds of a batch of `batch` items.
    ///
    /// p99 rather than the median: the batcher plans against the SLO, and a plan made with the
    /// median misses it half the time the batch is the one that decides.
    pub fn latency_us(&self, batch: u32) -> f64 {
        self.interpolate(batch, |p| p.p99_us)
    }

    /// Median latency in microseconds of a batch of `batch` items.
    pub fn median_us(&self, batch: u32) -> f64 {
        self.interpolate(batch, |p| p.p50_us)
    }

    /// `pick` of the points, linear between measured batch sizes, proportional to the batch above
    /// the last one; 0 for an empty profile.
    fn interpolate(&self, batch: u32, pick: fn(&MeasuredPoint) -> f64) -> f64 {
        let pts = &self.points;
        let (Some(first), Some(last)) = (pts.first(), pts.last()) else {
            return 0.0;
        };
        let batch = batch.max(1);
        if batch <= first.batch {
            return pick(first);
        }
        for w in pts.windows(2) {
            let (a, b) = (&w[0], &w[1]);
            if batch <= b.batch {
                let t = f64::from(batch - a.batch) / f64::from(b.batch - a.batch);
                return pick(a) + t * (pick(b) - pick(a));
            }
        }
        pick(last) * f64::from(batch) / f64::from(last.batch)
    }

    /// Reads `path`; `Ok(None)` when it does not exist.
    pub fn load(path: &Path) -> Result<Option<Self>, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let p: LatencyProfile =
                    toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
                if p.points.is_empty() {
                    return Err(format!("{}: no points", path.display()));
                }
                if p.points.iter().any(|q| q.batch == 0) {
                    return Err(format!("{}: a point with batch 0", path.display()));
                }
                Ok(Some(LatencyProfile::new(p.measured_on, p.points)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Writes the profile as TOML (atomically, through a temporary file).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let text = toml::to_string_pretty(self).map_err(std::io::Error::other)?;
        let tmp = path.with_extension("toml.tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(tmp, path)
    }
}

/// Median and 99th percentile of samples (sorted in place).
pub fn percentiles(samples: &mut [f64]) -> (f64, f64) {
    if samples.is_empty() {
        return (0.0, 0.0);
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.99))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prof() -> LatencyProfile {
        LatencyProfile::new(
            "t",
            vec![
                MeasuredPoint {
                    batch: 4,
                    p50_us: 300.0,
                    p99_us: 400.0,
                },
                MeasuredPoint {
                    batch: 1,
                    p50_us: 100.0,
                    p99_us: 100.0,
                },
            ],
        )
    }

    #[test]
    fn interpolates_and_extrapolates() {
        let p = prof();
        assert_eq!(p.latency_us(1), 100.0);
        assert_eq!(p.latency_us(2), 200.0);
        assert_eq!(p.latency_us(4), 400.0);
        assert_eq!(p.latency_us(8), 800.0);
    }

    #[test]
    fn save_load_round_trip() {
        let dir = std::env::temp_dir().join(format!("mark-prof-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("profile.toml");
        prof().save(&path).unwrap();
        assert_eq!(LatencyProfile::load(&path).unwrap(), Some(prof()));
        assert_eq!(LatencyProfile::load(&dir.join("none.toml")).unwrap(), None);
    }

    #[test]
    fn percentile_picks() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentiles(&mut v), (51.0, 99.0));
    }
}
