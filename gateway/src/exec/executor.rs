//! Executor threads: each owns one ort session (`Session::run` takes `&mut self`) and runs whole
//! batches: concatenate inputs along dim 0, run, split outputs back per request, reply.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ort::session::Session;
use tokio::sync::OwnedSemaphorePermit;

use super::values;
use crate::metrics::ModelMetrics;
use crate::tensor::Tensor;
use crate::work::ExecError;
use crate::work::Pending;

/// A batch on its way to an executor, holding the permit that reserved the executor.
pub struct Job {
    /// Requests in the batch, oldest first.
    pub batch: Vec<Pending>,
    /// Released when the job is done (or dropped), letting the batcher form the next batch.
    /// `None` for a batch retried here after a remote worker failed it.
    pub permit: Option<OwnedSemaphorePermit>,
    /// When the batch loop sent it and what its profile says it takes; `None` for a retried
    /// batch (its time is not the host's overhead).
    pub timing: Option<Timing>,
}

/// A dispatched batch's clock: what it took from dispatch to each reply past `expected` is the
/// host's overhead (waking the executor thread, concatenating and splitting, a run slower than
/// profiled because the cores are shared), which `mark simulate` replays beside the profile.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// When the batch loop handed the batch over (tokio's clock, like `Pending::enqueued`).
    pub dispatched: tokio::time::Instant,
    /// The profile's median latency for the batch's items.
    pub expected: Duration,
}

/// Handle to a model's executor threads.
pub struct ExecutorPool {
    tx: Sender<Job>,
}

impl ExecutorPool {
    /// Starts one thread per session.
    pub fn spawn(
        model: &str,
        sessions: Vec<Session>,
        outputs: Vec<String>,
        divisible: Vec<bool>,
        metrics: Arc<ModelMetrics>,
        slo: Duration,
    ) -> Self {
        let (tx, rx) = channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for (i, session) in sessions.into_iter().enumerate() {
            let rx = rx.clone();
            let ctx = Ctx {
                model: model.to_string(),
                outputs: outputs.clone(),
                divisible: divisible.clone(),
                metrics: metrics.clone(),
                slo,
            };
            std::thread::Builder::new()
                .name(format!("exec-{model}-{i}"))
                .spawn(move || executor_loop(session, rx, ctx))
                .expect("spawn executor thread");
        }
        ExecutorPool { tx }
    }

    /// Hands a batch to the next free executor.
    pub fn submit(&self, job: Job) -> Result<(), ExecError> {
        self.tx
            .send(job)
            .map_err(|_| ExecError::Gone("pool".into()))
    }

    /// Like `submit`, but gives the batch back when the pool is gone (so its requests can be
    /// answered).
    pub fn submit_or_return(&self, job: Job) -> Result<(), Vec<Pending>> {
        self.tx.send(job).map_err(|e| e.0.batch)
    }
}

struct Ctx {
    model: String,
    outputs: Vec<String>,
    /// Per output: declared with a dynamic leading dimension (`wire::split_rows`).
    divisible: Vec<bool>,
    metrics: Arc<ModelMetrics>,
    slo: Duration,
}

fn executor_loop(mut session: Session, rx: Arc<Mutex<Receiver<Job>>>, ctx: Ctx) {
    loop {
        let job = {
            let guard = rx.lock().expect("job channel lock");
            match guard.recv() {
                Ok(j) => j,
                Err(_) => return,
            }
        };
        // A panic inside ort or the split drops the job's reply senders: every request of the batch
        // is then answered with an error by its handler, never left hanging.
        let r = std::panic::catch_unwind(AssertUnwindSafe(|| run_job(&mut session, job, &ctx)));
        if r.is_err() {
            tracing::error!(model = %ctx.model, "executor panicked while running a batch");
        }
    }
}

fn run_job(session: &mut Session, job: Job, ctx: &Ctx) {
    let Job {
        batch,
        permit,
        timing,
    } = job;
    let sizes: Vec<usize> = batch.iter().map(|p| p.items as usize).collect();
    let total: usize = sizes.iter().sum();
    let n_inputs = batch[0].inputs.len();
    let started = Instant::now();
    let merged: Vec<Tensor> = (0..n_inputs)
        .map(|i| {
            if batch.len() == 1 {
                batch[0].inputs[i].clone()
            } else {
                Tensor::concat(&batch.iter().map(|p| &p.inputs[i]).collect::<Vec<_>>())
            }
        })
        .collect();
    let result = run_tensors(session, &merged, &ctx.outputs);
    let elapsed = started.elapsed();
    if permit.is_some() {
        *ctx.metrics.executor_freed.lock().expect("metrics lock") =
            Some(tokio::time::Instant::now());
    }
    drop(permit);
    ctx.metrics
        .busy_us
        .fetch_add(elapsed.as_micros() as u64, Relaxed);
    ctx.metrics.batch_size.observe(total as f64);
    if result.is_ok() {
        ctx.metrics
            .live
            .observe(total as u32, elapsed.as_secs_f64() * 1e6);
    }
    match result.map(|outs| super::wire::split_rows(&outs, &sizes, &ctx.divisible)) {
        Ok(Some(split)) => {
            for (p, mine) in batch.into_iter().zip(split) {
                finish(p, Ok(mine), ctx, timing);
            }
        }
        Ok(None) => {
            // outputs that are not one row per input row (a forced batch, or a batch a
            // worker could not divide): every request runs again alone, so that none is
            // answered from another's rows
            tracing::error!(model = %ctx.model, requests = batch.len(), "batch outputs are not one row per input row; running its requests one by one");
            for p in batch {
                let alone = run_tensors(session, &p.inputs, &ctx.outputs).map_err(|message| {
                    ExecError::Run {
                        model: ctx.model.clone(),
                        message,
                    }
                });
                // run alone after the batch: not the host's overhead
                finish(p, alone, ctx, None);
            }
        }
        Err(message) => {
            tracing::error!(model = %ctx.model, cause = %message, batch = total, "batch failed");
            for p in batch {
                finish(
                    p,
                    Err(ExecError::Run {
                        model: ctx.model.clone(),
                        message: message.clone(),
                    }),
                    ctx,
                    None,
                );
            }
        }
    }
}

fn finish(p: Pending, reply: Result<Vec<Tensor>, ExecError>, ctx: &Ctx, timing: Option<Timing>) {
    if let Some(t) = timing {
        let past = t.dispatched.elapsed().saturating_sub(t.expected);
        ctx.metrics
            .host_overhead
            .observe((p.host + past).as_secs_f64());
    }
    finish_pending(p, reply, &ctx.metrics, ctx.slo);
}

/// Answers one request and records its latency (shared with the remote backends).
pub fn finish_pending(
    p: Pending,
    reply: Result<Vec<Tensor>, ExecError>,
    metrics: &ModelMetrics,
    slo: Duration,
) {
    let latency = p.enqueued.elapsed();
    metrics.latency.observe(latency.as_secs_f64());
    metrics.answered.fetch_add(1, Relaxed);
    if latency > slo / 2 {
        metrics.slo_half.fetch_add(1, Relaxed);
        if latency > slo {
            metrics.slo_missed.fetch_add(1, Relaxed);
        }
    }
    // The receiver is gone only when the client hung up; nothing to do then.
    let _ = p.reply.send(reply);
}

/// Runs `inputs` (in the session's input order) and returns the named outputs as tensors.
pub fn run_tensors(
    session: &mut Session,
    inputs: &[Tensor],
    outputs: &[String],
) -> Result<Vec<Tensor>, String> {
    let mut vals = Vec::with_capacity(inputs.len());
    for t in inputs {
        vals.push((t.name.clone(), values::to_ort(t)?));
    }
    let out = session.run(vals).map_err(|e| e.to_string())?;
    outputs
        .iter()
        .map(|name| {
            let v = out
                .get(name.as_str())
                .ok_or_else(|| format!("output '{name}' missing from the run"))?;
            values::from_ort(name, v)
        })
        .collect()
}
