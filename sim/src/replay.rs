//! `mark simulate --workload trace:DIR`: the recorded setting (model, SLO, catalog, profile,
//! control timing, fleet at the start) replaces the flags', and the mark-rs runs are compared
//! with what actually happened live: the simulator's own calibration.

use std::path::Path;

use mark_policies::types::Market;
use serde::Serialize;

use super::args::SimulateArgs;
use super::report::Summary;
use crate::control::catalog::Catalog;
use crate::profile::LatencyProfile;
use crate::trace::reader::{Live, Trace};

/// What the trace sets for the run.
pub struct Setting {
    /// The recorded catalog (profiles inline), when the control loop ran.
    pub catalog: Option<Catalog>,
    /// The model's recorded profile.
    pub profile: Option<LatencyProfile>,
    /// The fleet at the start.
    pub fleet: Vec<(String, Market, u32)>,
}

/// Reads the trace's setting into `a` (model, SLO, batch, timing, target, on_deadline) and
/// returns the rest. A trace recorded without the control loop has no setting: the flags stay.
pub fn apply(t: &Trace, a: &mut SimulateArgs, dir: &Path) -> Result<Setting, String> {
    let Some(c) = &t.context else {
        return Ok(Setting {
            catalog: None,
            profile: None,
            fleet: Vec::new(),
        });
    };
    a.model = c.model.clone();
    a.slo_ms = c.slo_ms;
    a.max_batch = c.max_batch.max(1);
    a.interval = c.interval_s;
    a.window = c.window_s;
    a.attainment_target = c.attainment_target;
    a.on_deadline = c.on_deadline.clone();
    let origin = format!("{} (recorded catalog)", dir.display());
    let catalog = match &c.catalog_toml {
        Some(text) => Some(Catalog::parse(text, &origin).map_err(|e| e.to_string())?),
        None => None,
    };
    let profile = match &c.profile {
        Some(v) => Some(
            serde_json::from_value::<LatencyProfile>(v.clone())
                .map_err(|e| format!("{}: recorded profile: {e}", dir.display()))?,
        ),
        None => None,
    };
    let mut fleet: Vec<(String, Market, u32)> = Vec::new();
    for (_, ty, market, _) in &t.fleet_at_start {
        let m: Market = market
            .parse()
            .map_err(|e| format!("{}: recorded fleet: {e}", dir.display()))?;
        match fleet.iter_mut().find(|f| &f.0 == ty && f.1 == m) {
            Some(f) => f.2 += 1,
            None => fleet.push((ty.clone(), m, 1)),
        }
    }
    Ok(Setting {
        catalog,
        profile: profile.filter(|p| !p.points.is_empty()),
        fleet,
    })
}

/// Live against simulated, for one mark-rs run.
#[derive(Debug, Clone, Serialize)]
pub struct Calibration {
    /// The run (mark-rs or mark-rs+spot).
    pub run: String,
    /// What happened live.
    pub live: Live,
    /// Requests simulated.
    pub sim_requests: u64,
    /// Simulated attainment.
    pub sim_attainment: f64,
    /// Simulated cost, dollars.
    pub sim_cost: f64,
    /// Simulated p99, ms.
    pub sim_p99_ms: f64,
}

/// The calibration of every mark-rs run in `s`.
pub fn calibrate(t: &Trace, s: &Summary) -> Vec<Calibration> {
    let live = t.live();
    s.policies
        .iter()
        .filter(|p| p.name == "mark-rs")
        .map(|p| Calibration {
            run: p.label(),
            live: live.clone(),
            sim_requests: p.requests,
            sim_attainment: p.attainment,
            sim_cost: p.total_cost,
            sim_p99_ms: p.p99_ms,
        })
        .collect()
}

/// The calibration as a table.
pub fn table(c: &[Calibration]) -> String {
    let mut out = String::from("calibration: the recorded live run against its replay\n");
    let opt = |x: Option<f64>, f: &dyn Fn(f64) -> String| x.map_or("-".into(), f);
    for k in c {
        let l = &k.live;
        out.push_str(&format!(
            "  {:<14} requests {:>9} live / {:>9} sim   attainment {} live / {:.4} sim   cost {} live / ${:.4} sim   p99 {} live / {:.1} ms sim\n",
            k.run,
            l.requests,
            k.sim_requests,
            opt(l.attainment, &|a| format!("{a:.4}")),
            k.sim_attainment,
            opt(l.cost, &|x| format!("${x:.4}")),
            k.sim_cost,
            opt(l.p99_ms, &|x| format!("{x:.1} ms")),
            k.sim_p99_ms,
        ));
    }
    out
}
