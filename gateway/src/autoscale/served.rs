//! The models one fleet serves (issue 27: many models, one fleet): each model's own counters
//! sampled per window, its inputs to the plan (SLO, capacity per type, footprint), and the
//! running workers made remote backends of every model (a worker serves the whole repository).

use std::sync::Arc;
use std::time::Duration;

use mark_policies::types::Slo;

use crate::api::AppState;
use crate::control::catalog::Catalog;
use crate::control::cycle::Controller;
use crate::control::demand::Outcomes;
use crate::control::fleet::{Instance, InstanceState};
use crate::control::mix::ModelInput;
use crate::control::status::ModelStatus;
use crate::exec::remote::WorkerSpec;
use crate::model::{Loaded, Model, ModelState};

/// One model of the fleet.
pub(super) struct Served {
    /// Its name.
    pub name: String,
    /// The model and what loading it built.
    pub model: Arc<Model>,
    pub loaded: Arc<Loaded>,
    /// Its counters at the last sample.
    pub last: Outcomes,
    /// Its latency histogram's bucket counts at the last sample.
    pub last_latency: Vec<u64>,
}

/// Every model the fleet serves, the control model first.
pub(super) struct ServedModels {
    pub list: Vec<Served>,
}

impl ServedModels {
    /// Waits until each of `names` (every model of the repository when empty; `first` leads)
    /// is loaded or has failed to load; those that failed are left out (and said so). None when
    /// no model loaded.
    pub async fn wait(state: &AppState, names: &[String], first: &str) -> Option<Self> {
        let mut names: Vec<String> = if names.is_empty() {
            state.models.keys().cloned().collect()
        } else {
            names.to_vec()
        };
        names.sort_by_key(|n| n != first);
        let mut list = Vec::new();
        for name in names {
            let Some(model) = state.models.get(&name).cloned() else {
                tracing::error!(model = %name, "autoscaling: unknown model");
                continue;
            };
            let loaded = loop {
                match model.state() {
                    ModelState::Ready => break model.loaded().cloned(),
                    ModelState::Failed(why) => {
                        tracing::error!(model = %name, %why, "autoscaling without this model: it failed to load");
                        break None;
                    }
                    ModelState::Loading => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            };
            if let Some(loaded) = loaded {
                list.push(Served {
                    last: loaded.metrics.outcomes(),
                    last_latency: bucket_counts(&loaded.metrics.latency),
                    name,
                    model,
                    loaded,
                });
            }
        }
        (!list.is_empty()).then_some(ServedModels { list })
    }

    /// The model the fleet is tagged with (the first).
    pub fn lead(&self) -> &Served {
        &self.list[0]
    }

    /// What each model's counters added since the last call, and the totals now.
    pub fn windows(&mut self) -> (Vec<Outcomes>, Outcomes) {
        let mut totals = Outcomes::default();
        let windows = self
            .list
            .iter_mut()
            .map(|s| {
                let now = s.loaded.metrics.outcomes();
                totals = totals.plus(now);
                let w = now.since(s.last);
                s.last = now;
                w
            })
            .collect();
        (windows, totals)
    }

    /// What each model's latency histogram added since the last call: (the bucket's upper
    /// bound in seconds, answers) for each bucket that grew; the open-ended last bucket reads
    /// as twice the last bound (over 5 s: 10 s).
    pub fn latency_windows(&mut self) -> Vec<Vec<(f64, u64)>> {
        self.list
            .iter_mut()
            .map(|s| {
                let now = s.loaded.metrics.latency.buckets();
                let last_finite = now
                    .iter()
                    .map(|b| b.0)
                    .filter(|b| b.is_finite())
                    .fold(0.0, f64::max);
                let grew = now
                    .iter()
                    .zip(s.last_latency.iter().chain(std::iter::repeat(&0)))
                    .filter(|((_, n), was)| *n > **was)
                    .map(|((b, n), was)| {
                        let b = if b.is_finite() { *b } else { 2.0 * last_finite };
                        (b, n - was)
                    })
                    .collect();
                s.last_latency = now.iter().map(|b| b.1).collect();
                grew
            })
            .collect()
    }

    /// Each model's inputs to the plan: its SLO, each type's capacity for it, its footprint.
    pub fn inputs(&self, catalog: &Catalog, attainment_target: f64) -> Vec<ModelInput> {
        self.list
            .iter()
            .map(|s| ModelInput {
                name: s.name.clone(),
                slo: Slo {
                    latency_ms: s.model.cfg.slo_ms,
                    attainment_target,
                },
                catalog: catalog.for_model(
                    &s.name,
                    &s.loaded.profile,
                    s.model.cfg.slo_ms,
                    s.loaded.rows_per_run(),
                ),
                footprint_gib: s.loaded.footprint_bytes as f64 / f64::from(1u32 << 30),
            })
            .collect()
    }

    /// The running instances become every model's remote backends, each model's batches sized
    /// for that type's speed (a burstable at what it sustains without credits) or its own curve.
    pub fn sync(&self, fleet: &[Instance], catalog: &Catalog, secret: Option<&Arc<str>>) {
        for s in &self.list {
            if let Some(k) = secret {
                let _ = s.loaded.remotes.secret.set(k.clone());
            }
            let (model, cfg) = (&s.name, &s.model.cfg);
            let running: Vec<WorkerSpec> = fleet
                .iter()
                .filter(|i| i.state == InstanceState::Running)
                .map(|i| {
                    let sustained = catalog
                        .get(&i.instance_type)
                        .map_or(1.0, |t| t.baseline_share());
                    WorkerSpec {
                        id: i.id.clone(),
                        addr: i.addr.clone(),
                        speed: sustained
                            * catalog.speed(
                                &i.instance_type,
                                model,
                                &s.loaded.profile,
                                cfg.slo_ms,
                                s.loaded.rows_per_run(),
                            ),
                        profile: catalog
                            .profile_of(&i.instance_type, model)
                            .map(|p| Arc::new(p.policy_points(sustained))),
                    }
                })
                .collect();
            s.loaded.remotes.sync(&running);
            // workers that left the fleet leave the slowdown series too
            s.loaded.metrics.remote_slowdown.retain(|k| {
                k == "lambda"
                    || k.strip_prefix("worker ")
                        .is_some_and(|id| running.iter().any(|w| w.id == id))
            });
        }
    }

    /// Workers out of rotation for any model (unhealthy), and those that said they drain.
    pub fn out_of_rotation(&self) -> (Vec<String>, Vec<String>) {
        let (mut unhealthy, mut draining) = (Vec::new(), Vec::new());
        for s in &self.list {
            for id in s.loaded.remotes.unhealthy_ids() {
                if !unhealthy.contains(&id) {
                    unhealthy.push(id);
                }
            }
            for id in s.loaded.remotes.draining_ids() {
                if !draining.contains(&id) {
                    draining.push(id);
                }
            }
        }
        (unhealthy, draining)
    }

    /// Batches in flight per worker, all models summed.
    pub fn in_flight(&self) -> Vec<(String, u32)> {
        let mut all: Vec<(String, u32)> = Vec::new();
        for s in &self.list {
            for (id, n) in s.loaded.remotes.in_flight() {
                match all.iter_mut().find(|x| x.0 == id) {
                    Some(x) => x.1 += n,
                    None => all.push((id, n)),
                }
            }
        }
        all
    }

    /// Requests answered so far, all models.
    pub fn answered(&self) -> u64 {
        self.list
            .iter()
            .map(|s| {
                s.loaded
                    .metrics
                    .answered
                    .load(std::sync::atomic::Ordering::Relaxed)
            })
            .sum()
    }
}

/// `added` (fleet-wide counts, replicas summed) split across the models in the proportions of
/// this replica's own `windows`; what rounding leaves, or all of it when this replica saw
/// nothing, goes to the first model.
pub(super) fn split_like(added: Outcomes, windows: &[Outcomes]) -> Vec<Outcomes> {
    let own = windows.iter().fold(Outcomes::default(), |a, w| a.plus(*w));
    let share = |total: u64, mine: u64, of: u64| -> u64 {
        if of == 0 {
            0
        } else {
            (total as f64 * mine as f64 / of as f64).floor() as u64
        }
    };
    let mut out: Vec<Outcomes> = windows
        .iter()
        .map(|w| Outcomes {
            arrived: share(added.arrived, w.arrived, own.arrived),
            done: share(added.done, w.done, own.done),
            missed: share(added.missed, w.missed, own.missed),
            slow: share(added.slow, w.slow, own.slow),
        })
        .collect();
    let given = out.iter().fold(Outcomes::default(), |a, w| a.plus(*w));
    if let Some(first) = out.first_mut() {
        first.arrived += added.arrived - given.arrived;
        first.done += added.done - given.done;
        first.missed += added.missed - given.missed;
    }
    // a model never misses more than it finished (the shares are rounded apart)
    let mut spare = 0;
    for w in &mut out {
        let over = w.missed.saturating_sub(w.done);
        w.missed -= over;
        spare += over;
    }
    for w in &mut out {
        let room = (w.done - w.missed).min(spare);
        w.missed += room;
        spare -= room;
    }
    out
}

/// The status rows of a control step's models (their forecasts, the plan's capacity for each,
/// the model that drove it), keeping what was observed of each since.
pub(super) fn model_status(
    step: &crate::control::controller::Step,
    before: &[ModelStatus],
) -> Vec<ModelStatus> {
    step.models
        .iter()
        .map(|m| {
            let prev = before.iter().find(|p| p.model == m.model);
            ModelStatus {
                model: m.model.clone(),
                slo_ms: m.slo.latency_ms,
                demand_rps: prev.map_or(0.0, |p| p.demand_rps),
                forecast: m.forecast.clone(),
                planned_capacity_rps: step
                    .capacity_by_model
                    .iter()
                    .find(|c| c.0 == m.model)
                    .map_or(0.0, |c| c.1),
                attainment: m.attainment,
                p99_ms: m.p99_ms,
                drove_last_plan: step.driver.as_deref() == Some(m.model.as_str()),
            }
        })
        .collect()
}

/// Each model's demand and attainment now, from the controller's per-model monitors.
pub(super) fn observed(rows: &mut Vec<ModelStatus>, c: &mut Controller, now: f64) {
    for t in &mut c.tracks {
        let i = match rows.iter().position(|r| r.model == t.name) {
            Some(i) => i,
            None => {
                rows.push(ModelStatus {
                    model: t.name.clone(),
                    ..ModelStatus::default()
                });
                rows.len() - 1
            }
        };
        rows[i].demand_rps = t.monitors.rates.recent_peak();
        rows[i].attainment = t.monitors.slo.attainment(now);
    }
}

/// Each model's gauges: demand, forecast, the plan's capacity, attainment.
pub(super) fn gauges(m: &crate::metrics::Metrics, rows: &[ModelStatus]) {
    for r in rows {
        m.set_model_gauge("mark_model_demand_rate", &r.model, r.demand_rps);
        m.set_model_gauge(
            "mark_model_forecast_rate",
            &r.model,
            r.forecast.first().copied().unwrap_or(0.0),
        );
        m.set_model_gauge(
            "mark_model_planned_capacity_rps",
            &r.model,
            r.planned_capacity_rps,
        );
        m.set_model_gauge(
            "mark_model_slo_attainment",
            &r.model,
            r.attainment.unwrap_or(1.0),
        );
    }
}

/// A latency histogram's count per bucket now.
fn bucket_counts(h: &crate::metrics::Histogram) -> Vec<u64> {
    h.buckets().iter().map(|b| b.1).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(arrived: u64, done: u64, missed: u64) -> Outcomes {
        Outcomes {
            arrived,
            done,
            missed,
            slow: 0,
        }
    }

    #[test]
    fn fleet_wide_counts_split_like_this_replicas_and_none_is_lost() {
        let s = split_like(o(300, 290, 10), &[o(20, 20, 1), o(10, 9, 0)]);
        assert_eq!(s, vec![o(200, 200, 10), o(100, 90, 0)]);
        let total = s.iter().fold(Outcomes::default(), |a, w| a.plus(*w));
        assert_eq!(total, o(300, 290, 10));
        // misses follow done: none beyond what a model finished
        let s = split_like(o(10, 10, 9), &[o(5, 1, 0), o(5, 9, 9)]);
        assert!(s.iter().all(|w| w.missed <= w.done), "{s:?}");
        assert_eq!(s.iter().map(|w| w.missed).sum::<u64>(), 9);
        // this replica saw nothing: the first model takes it all
        assert_eq!(
            split_like(o(7, 7, 0), &[o(0, 0, 0), o(0, 0, 0)]),
            vec![o(7, 7, 0), o(0, 0, 0)]
        );
    }
}
