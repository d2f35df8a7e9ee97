//! `mark lambda`: the function body of the Lambda backend, on the `lambda_runtime` crate. Each
//! invocation carries one batch as a binary v2 request (see `exec::lambda_client`); it runs through the
//! same admission, batching and execution core as `mark serve`, and the v2 response goes back
//! base64 in JSON. Models load once per (cold-started) instance; invocations that arrive while
//! they load wait for them.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use lambda_runtime::{service_fn, LambdaEvent};

use crate::api::{v2, AppState};
use crate::exec::lambda_client::{LambdaRequest, LambdaResponse};
use crate::model::ModelState;

/// Attempts to reach the runtime API before `mark lambda` gives up.
pub const RUNTIME_ATTEMPTS: u32 = 8;

/// Runs the Lambda runtime loop until the runtime API goes away. Needs the standard Lambda
/// environment (`AWS_LAMBDA_RUNTIME_API`, `AWS_LAMBDA_FUNCTION_NAME`, ...). A runtime API that
/// is not up yet (an emulator still starting) or drops a connection is retried with exponential
/// backoff (0.1 s doubling to 3.2 s, `RUNTIME_ATTEMPTS` in a row) before the process exits.
pub async fn run(state: Arc<AppState>) -> Result<(), lambda_runtime::Error> {
    crate::app::spawn_loading(&state);
    let mut failures = 0u32;
    loop {
        let st = state.clone();
        let started = std::time::Instant::now();
        let r = lambda_runtime::run(service_fn(move |ev: LambdaEvent<LambdaRequest>| {
            let st = st.clone();
            async move { handle(&st, ev.payload).await }
        }))
        .await;
        let Err(e) = r else { return Ok(()) };
        // a runtime that served for a while before failing starts a fresh series of attempts
        if started.elapsed() > Duration::from_secs(10) {
            failures = 0;
        }
        failures += 1;
        if failures >= RUNTIME_ATTEMPTS {
            return Err(e);
        }
        let wait = Duration::from_millis(100 << (failures - 1).min(5));
        tracing::warn!(cause = %e, attempt = failures, retry_in_ms = wait.as_millis() as u64, "Lambda runtime API unreachable; retrying");
        tokio::time::sleep(wait).await;
    }
}

/// One invocation: decode, run, encode. Errors become Lambda function errors with the reason
/// (and the HTTP status the gateway would have answered).
pub async fn handle(state: &AppState, req: LambdaRequest) -> Result<LambdaResponse, String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let model =
        v2::find(state, &req.model, None).map_err(|e| format!("{}: {}", e.status, e.message))?;
    for _ in 0..600 {
        match model.state() {
            ModelState::Loading => tokio::time::sleep(Duration::from_millis(100)).await,
            _ => break,
        }
    }
    let body = b64
        .decode(req.body.as_bytes())
        .map_err(|e| format!("400 Bad Request: body is not base64: {e}"))?;
    let enc = v2::infer_body(state, model, Bytes::from(body), req.header_length)
        .await
        .map_err(|e| format!("{}: {}", e.status, e.message))?;
    Ok(LambdaResponse {
        header_length: enc.header_len,
        body: b64.encode(enc.body),
    })
}
