//! A served model: its configuration, and once loaded, its metadata, queue and executors.
//!
//! Loading (sessions, warm-up, profile) runs on a blocking thread after the server is listening;
//! until it finishes the model answers 503 and `/v2/health/ready` stays 503.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::batching::batcher::Batcher;
use crate::batching::queue::ModelQueue;
use crate::batching::size_policy::PolicyFactory;
use crate::config::{ModelConfig, OnDeadline};
use crate::exec::batch_ctx::BatchCtx;
use crate::exec::batchability::{self, Batching};
use crate::exec::executor::{run_tensors, ExecutorPool};
use crate::exec::measure;
use crate::exec::session::{self, ActiveProvider, IoMeta};
use crate::metrics::Metrics;
use crate::profile::LatencyProfile;
use crate::work::ExecError;

/// A model of the repository.
pub struct Model {
    /// Name (its directory name).
    pub name: String,
    /// Its directory.
    pub dir: PathBuf,
    /// Its configuration.
    pub cfg: ModelConfig,
    loaded: OnceLock<Arc<Loaded>>,
    failed: Mutex<Option<String>>,
}

/// What a loaded model holds.
pub struct Loaded {
    /// Declared inputs.
    pub inputs: Vec<IoMeta>,
    /// Declared outputs.
    pub outputs: Vec<IoMeta>,
    /// Whether requests share runs, and why (`exec::batchability`).
    pub batching: Batching,
    /// The model queue.
    pub queue: Arc<ModelQueue>,
    /// Profile in use.
    pub profile: Arc<LatencyProfile>,
    /// Provider the sessions got.
    pub provider: ActiveProvider,
    /// The model's metrics.
    pub metrics: Arc<crate::metrics::ModelMetrics>,
    /// Fleet workers that run this model's batches (empty without a cloud driver).
    pub remotes: Arc<crate::exec::remote::RemoteSet>,
    /// Memory the model took to load (resident set growth over building its sessions and
    /// warming them up, at least its ONNX file per executor), bytes: what it needs on a worker.
    pub footprint_bytes: u64,
}

impl Loaded {
    /// Whether requests share runs.
    pub fn batchable(&self) -> bool {
        self.batching.batches()
    }

    /// Most rows one run carries, for capacity and waiting-time estimates: the max batch when
    /// batched, 1 when every request runs alone.
    pub fn rows_per_run(&self) -> u32 {
        self.batching.max_batch_size.max(1)
    }
}

/// This process's resident set, bytes (0 where `/proc` does not say).
fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// The model's state as the readiness endpoints report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelState {
    /// Still loading.
    Loading,
    /// Serving.
    Ready,
    /// Loading failed, with the reason.
    Failed(String),
}

impl Model {
    /// A model not loaded yet.
    pub fn new(name: String, dir: PathBuf, cfg: ModelConfig) -> Self {
        Model {
            name,
            dir,
            cfg,
            loaded: OnceLock::new(),
            failed: Mutex::new(None),
        }
    }

    /// The loaded state, if ready.
    pub fn loaded(&self) -> Option<&Arc<Loaded>> {
        self.loaded.get()
    }

    /// Loading, ready or failed.
    pub fn state(&self) -> ModelState {
        if self.loaded.get().is_some() {
            return ModelState::Ready;
        }
        match self.failed.lock().expect("model lock").clone() {
            Some(e) => ModelState::Failed(e),
            None => ModelState::Loading,
        }
    }

    /// Largest batch in rows the batcher forms; 0 when unbatched or not loaded yet.
    pub fn max_batch(&self) -> u32 {
        self.loaded().map_or(0, |l| l.batching.max_batch_size)
    }

    /// Path of the model's profile file.
    pub fn profile_path(&self) -> PathBuf {
        self.dir.join("profile.toml")
    }

    /// Builds sessions, warms up, profiles if needed, starts executors and the batch loop on `rt`.
    /// Blocking: call from a blocking thread.
    pub fn load(
        &self,
        metrics: &Metrics,
        policy: &PolicyFactory,
        profile_missing: bool,
        rt: &tokio::runtime::Handle,
    ) -> Result<(), ExecError> {
        let r = self.load_inner(metrics, policy, profile_missing, rt);
        if let Err(e) = &r {
            *self.failed.lock().expect("model lock") = Some(e.to_string());
        }
        r
    }

    fn load_inner(
        &self,
        metrics: &Metrics,
        policy: &PolicyFactory,
        profile_missing: bool,
        rt: &tokio::runtime::Handle,
    ) -> Result<(), ExecError> {
        let path = self.dir.join("model.onnx");
        let rss_before = resident_bytes();
        let mut sessions = Vec::with_capacity(self.cfg.executors);
        let mut provider = ActiveProvider::Cpu;
        for _ in 0..self.cfg.executors {
            let (s, p) = session::build(&self.name, &path, &self.cfg)?;
            provider = p;
            sessions.push(s);
        }
        let (inputs, outputs) = session::metadata(&self.name, &sessions[0])?;
        let out_names: Vec<String> = outputs.iter().map(|o| o.name.clone()).collect();
        let warm = measure::synthetic_inputs(&inputs, 1);
        for s in sessions.iter_mut() {
            for _ in 0..self.cfg.warmup_runs {
                run_tensors(s, &warm, &out_names).map_err(|m| ExecError::Run {
                    model: self.name.clone(),
                    message: m,
                })?;
            }
        }
        let file_bytes = std::fs::metadata(&path).map_or(0, |m| m.len());
        let footprint_bytes = resident_bytes()
            .saturating_sub(rss_before)
            .max(file_bytes * sessions.len() as u64);
        let batching = self.decide_batching(&mut sessions[0], &inputs, &outputs, &out_names);
        let max_batch = batching.max_batch_size;
        let profile =
            match LatencyProfile::load(&self.profile_path()).map_err(|m| ExecError::Load {
                model: self.name.clone(),
                message: m,
            })? {
                Some(p) => p,
                None if profile_missing => {
                    let sizes = measure::default_batch_sizes(max_batch.max(1));
                    let p = measure::measure(&mut sessions[0], &inputs, &out_names, &sizes, 2, 10)
                        .map_err(|m| ExecError::Run {
                            model: self.name.clone(),
                            message: m,
                        })?;
                    if let Err(e) = p.save(&self.profile_path()) {
                        tracing::warn!(model = %self.name, cause = %e, "could not write profile");
                    }
                    tracing::info!(model = %self.name, points = p.points.len(), "profiled");
                    p
                }
                None => LatencyProfile::default(),
            };
        let profile = Arc::new(profile);
        let mm = metrics.model(&self.name);
        mm.live.set_base((*profile).clone());
        let slo = Duration::from_secs_f64(self.cfg.slo_ms / 1000.0);
        let executors = sessions.len() as u32;
        let pool = Arc::new(ExecutorPool::spawn(
            &self.name,
            sessions,
            out_names,
            crate::exec::batch_ctx::divisible(&outputs),
            mm.clone(),
            slo,
        ));
        let remotes = Arc::new(crate::exec::remote::RemoteSet::default());
        let expire_after = match self.cfg.on_deadline {
            OnDeadline::Reject => Some(slo),
            OnDeadline::Serve => None,
        };
        let queue = Arc::new(ModelQueue::with_deadline(
            self.cfg.queue_capacity,
            expire_after,
            self.name.clone(),
            mm.clone(),
        ));
        let ctx = Arc::new(BatchCtx {
            model: self.name.clone(),
            pool,
            metrics: mm.clone(),
            slo,
            outputs: outputs.clone(),
            profile: profile.clone(),
            batched: batching.batches(),
        });
        let batcher = Batcher {
            model: self.name.clone(),
            queue: queue.clone(),
            ctx,
            remotes: remotes.clone(),
            free_executors: Arc::new(Semaphore::new(executors as usize)),
            executors,
            policy: policy(),
            profile: profile.policy_points(1.0),
            scaled: (1.0, Vec::new()),
            slo_us: slo.as_micros() as u64,
            max_batch,
            live: (0, Vec::new()),
        };
        rt.spawn(batcher.run());
        let _ = self.loaded.set(Arc::new(Loaded {
            inputs,
            outputs,
            batching: batching.clone(),
            queue,
            profile,
            provider,
            metrics: mm,
            remotes,
            footprint_bytes,
        }));
        tracing::info!(model = %self.name, ?provider, batching = ?batching.mode, max_batch, "model ready");
        Ok(())
    }

    /// Whether this model's requests may share a run: its config, its ONNX signature and a check
    /// with two random rows (`exec::batchability`). The log says which and why.
    fn decide_batching(
        &self,
        session: &mut ort::session::Session,
        inputs: &[IoMeta],
        outputs: &[IoMeta],
        out_names: &[String],
    ) -> Batching {
        let (in_syms, out_syms) = session::leading_symbols(session);
        let io: Vec<(&IoMeta, &str, bool)> = inputs
            .iter()
            .zip(&in_syms)
            .map(|(m, s)| (m, s.as_str(), true))
            .chain(
                outputs
                    .iter()
                    .zip(&out_syms)
                    .map(|(m, s)| (m, s.as_str(), false)),
            )
            .collect();
        let b = batchability::decide(&self.cfg, batchability::by_signature(&io), || {
            batchability::rows_check(session, inputs, out_names)
        });
        match b.mode {
            batchability::Mode::Batched => {
                tracing::info!(model = %self.name, reason = %b.reason, "batched")
            }
            batchability::Mode::Forced => {
                tracing::warn!(model = %self.name, reason = %b.reason, "batched by force")
            }
            batchability::Mode::Unbatched => {
                tracing::warn!(model = %self.name, reason = %b.reason, "not batchable: one request per run")
            }
        }
        b
    }
}
