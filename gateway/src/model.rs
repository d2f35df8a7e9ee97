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
    /// Whether every input has a dynamic dim 0 (requests can be concatenated).
    pub batchable: bool,
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
        let mut sessions = Vec::with_capacity(self.cfg.executors);
        let mut provider = ActiveProvider::Cpu;
        for _ in 0..self.cfg.executors {
            let (s, p) = session::build(&self.name, &path, &self.cfg)?;
            provider = p;
            sessions.push(s);
        }
        let (inputs, outputs) = session::metadata(&self.name, &sessions[0])?;
        let batchable = inputs.iter().all(|i| i.shape.first() == Some(&-1));
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
        let max_batch = if batchable {
            self.cfg.max_batch_size as u32
        } else {
            0
        };
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
        let slo = Duration::from_secs_f64(self.cfg.slo_ms / 1000.0);
        let executors = sessions.len() as u32;
        let pool = Arc::new(ExecutorPool::spawn(
            &self.name,
            sessions,
            out_names,
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
        };
        rt.spawn(batcher.run());
        let _ = self.loaded.set(Arc::new(Loaded {
            inputs,
            outputs,
            batchable,
            queue,
            profile,
            provider,
            metrics: mm,
            remotes,
        }));
        tracing::info!(model = %self.name, ?provider, batchable, "model ready");
        Ok(())
    }
}
