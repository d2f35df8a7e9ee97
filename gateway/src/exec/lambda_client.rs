//! The Lambda backend, through `aws-sdk-lambda`: a batch is one synchronous Invoke
//! (RequestResponse) of a function running `mark lambda`, which executes it with the same
//! execution core. Used for spill-over: when every instance is busy and the oldest queued request
//! would otherwise miss its SLO. Billed as AWS does: GB-seconds (duration rounded up to the
//! millisecond × memory) plus a price per request. A failed invocation is retried once on the
//! gateway's own executors.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::batch_ctx::BatchCtx;
use super::wire;
use crate::codec::client::{decode_response, encode_binary_request};
use crate::control::catalog::LambdaSpec;
use crate::work::Pending;

/// How to reach Lambda.
#[derive(Debug, Clone)]
pub struct LambdaOptions {
    /// Function name or ARN (a function running `mark lambda`).
    pub function: String,
    /// Region.
    pub region: String,
    /// Endpoint override (`cargo lambda watch`, an emulator); `None` for AWS.
    pub endpoint: Option<String>,
    /// Static credentials (access key, secret); `None` for the standard chain.
    pub credentials: Option<(String, String)>,
    /// Attempts per Invoke (1 = no SDK retries).
    pub max_attempts: u32,
}

/// What the gateway sends: one v2 batch request, base64 in JSON (Lambda payloads are JSON).
#[derive(Debug, Serialize, Deserialize)]
pub struct LambdaRequest {
    /// Model name.
    pub model: String,
    /// Length of the JSON header inside `body` (binary tensor extension).
    pub header_length: Option<usize>,
    /// The v2 request body, base64.
    pub body: String,
}

/// What `mark lambda` answers: the v2 response body, base64.
#[derive(Debug, Serialize, Deserialize)]
pub struct LambdaResponse {
    /// Length of the JSON header inside `body`.
    pub header_length: Option<usize>,
    /// The v2 response body, base64.
    pub body: String,
}

/// One Lambda function as a backend of one model.
pub struct LambdaBackend {
    client: aws_sdk_lambda::Client,
    opts: LambdaOptions,
    /// Pricing and the concurrency limit.
    pub spec: LambdaSpec,
    slots: Arc<Semaphore>,
    /// Invocations that answered.
    pub invocations: AtomicU64,
    /// Invocations that failed (retried on the gateway).
    pub failures: AtomicU64,
    /// Billed milliseconds, summed.
    pub billed_ms: AtomicU64,
    /// Requests (not items) served on Lambda.
    pub requests: AtomicU64,
}

impl LambdaBackend {
    /// Connects with `opts`; `spec` (from the catalog) gives prices and the concurrency limit.
    pub async fn connect(opts: LambdaOptions, spec: LambdaSpec) -> Self {
        let conf = crate::aws_sdk::sdk_config(
            &opts.region,
            opts.endpoint.as_deref(),
            opts.credentials.as_ref(),
            opts.max_attempts,
        )
        .await;
        LambdaBackend {
            client: aws_sdk_lambda::Client::new(&conf),
            slots: Arc::new(Semaphore::new(spec.concurrency_limit as usize)),
            opts,
            spec,
            invocations: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            billed_ms: AtomicU64::new(0),
            requests: AtomicU64::new(0),
        }
    }

    /// A concurrency slot, if one is free now.
    pub fn try_slot(&self) -> Option<OwnedSemaphorePermit> {
        self.slots.clone().try_acquire_owned().ok()
    }

    /// True when a concurrency slot is free now.
    pub fn has_free_slot(&self) -> bool {
        self.slots.available_permits() > 0
    }

    /// Waits for a concurrency slot.
    pub async fn slot(&self) -> OwnedSemaphorePermit {
        self.slots
            .clone()
            .acquire_owned()
            .await
            .expect("lambda semaphore is never closed")
    }

    /// USD billed so far.
    pub fn cost(&self) -> f64 {
        let gb_s = self.billed_ms.load(Relaxed) as f64 / 1000.0 * self.spec.memory_mb / 1024.0;
        let calls = (self.invocations.load(Relaxed) + self.failures.load(Relaxed)) as f64;
        gb_s * self.spec.price_per_gb_s + calls * self.spec.price_per_request
    }

    /// Deadline of one invocation: twice the SLO plus four times the function's batch latency
    /// and one cold start. Past it the invocation counts as failed and the batch is retried.
    pub fn deadline(&self, slo: Duration) -> Duration {
        let s = &self.spec;
        let extra = (4.0 * s.latency_s + s.cold_start_s).clamp(0.0, 900.0);
        slo * 2 + Duration::from_secs_f64(extra)
    }

    /// Runs `batch` on the function (holding `slot`); on failure, retries it on the gateway's
    /// executors.
    pub async fn run(
        self: Arc<Self>,
        slot: OwnedSemaphorePermit,
        batch: Vec<Pending>,
        ctx: Arc<BatchCtx>,
    ) {
        let (merged, sizes) = wire::merge(&batch);
        let total: usize = sizes.iter().sum();
        let started = std::time::Instant::now();
        let r = self
            .invoke_tensors(&ctx.model, &merged, self.deadline(ctx.slo))
            .await
            .and_then(|outs| {
                wire::check_outputs(outs, &ctx.outputs, ctx.answer_rows(total))
                    .map_err(|e| format!("function {} {e}", self.opts.function))
            });
        drop((slot, merged));
        match r {
            Ok(outs) => {
                // the call against the catalog's invocation latency plus the batch's profiled time
                let items = u32::try_from(total).unwrap_or(u32::MAX);
                ctx.metrics.remote_slowdown.observe(
                    "lambda",
                    self.spec.latency_s * 1e6 + ctx.profile.median_us(items),
                    started.elapsed().as_secs_f64() * 1e6,
                );
                self.requests.fetch_add(batch.len() as u64, Relaxed);
                ctx.metrics.lambda_batches.fetch_add(1, Relaxed);
                wire::finish_batch(batch, &sizes, &outs, &ctx);
            }
            Err(e) => {
                ctx.metrics.remote_retries.fetch_add(1, Relaxed);
                tracing::warn!(function = %self.opts.function, cause = %e, "Lambda failed a batch; retrying it on the gateway's executors");
                wire::retry_locally(batch, &ctx);
            }
        }
    }

    /// One synchronous invocation running `inputs` (batched along dim 0) on `model`; billed and
    /// counted whether it succeeds or not.
    pub async fn invoke_tensors(
        &self,
        model: &str,
        inputs: &[crate::tensor::Tensor],
        deadline: Duration,
    ) -> Result<Vec<crate::tensor::Tensor>, String> {
        let (body, n) = encode_binary_request(inputs);
        let started = Instant::now();
        let r = match tokio::time::timeout(deadline, self.invoke(model, &body, n)).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "function {} did not answer within {} ms",
                self.opts.function,
                deadline.as_millis()
            )),
        };
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        self.billed_ms.fetch_add(ms.ceil().max(1.0) as u64, Relaxed);
        match &r {
            Ok(_) => self.invocations.fetch_add(1, Relaxed),
            Err(_) => self.failures.fetch_add(1, Relaxed),
        };
        r
    }

    async fn invoke(
        &self,
        model: &str,
        body: &[u8],
        header_len: usize,
    ) -> Result<Vec<crate::tensor::Tensor>, String> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let req = LambdaRequest {
            model: model.to_string(),
            header_length: Some(header_len),
            body: b64.encode(body),
        };
        let payload = serde_json::to_vec(&req).map_err(|e| e.to_string())?;
        let out = self
            .client
            .invoke()
            .function_name(&self.opts.function)
            .invocation_type(InvocationType::RequestResponse)
            .payload(Blob::new(payload))
            .send()
            .await
            .map_err(|e| format!("invoke {}: {}", self.opts.function, display_err(&e)))?;
        let payload = out.payload().map(|b| b.as_ref()).unwrap_or_default();
        if let Some(kind) = out.function_error() {
            return Err(format!(
                "function {} failed ({kind}): {}",
                self.opts.function,
                String::from_utf8_lossy(payload)
            ));
        }
        let resp: LambdaResponse = serde_json::from_slice(payload)
            .map_err(|e| format!("function {} answered garbage: {e}", self.opts.function))?;
        let body = b64
            .decode(resp.body)
            .map_err(|e| format!("function {} answered bad base64: {e}", self.opts.function))?;
        decode_response(&body, resp.header_length)
            .map_err(|e| format!("function {} {e}", self.opts.function))
    }
}

fn display_err(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
