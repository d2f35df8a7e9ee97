//! Reading request bodies from outside: within a byte limit and a time limit, and draining the
//! body of a request refused early so that the client reads the answer instead of a reset.

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Limited};

use super::error::ApiError;

/// A request body the API reads: hyper's `Incoming` on a socket, any in-memory body in tests
/// (the handlers run without a socket there, as axum's `oneshot` tests do).
pub trait ReqBody:
    hyper::body::Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>>
    + Send
    + Unpin
    + 'static
{
}

impl<B> ReqBody for B where
    B: hyper::body::Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>>
        + Send
        + Unpin
        + 'static
{
}

/// Reads and discards up to `cap` bytes of a body we refuse, for at most `within`, so that the
/// client, still sending, reads our error instead of a connection reset (Python's `urllib`,
/// `requests` and `tritonclient` raise `BrokenPipeError` otherwise). Beyond either bound the
/// connection is dropped.
pub async fn drain(mut body: impl ReqBody, cap: usize, within: Duration) {
    let _ = tokio::time::timeout(within, async {
        let mut seen = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            seen = seen.saturating_add(frame.data_ref().map_or(0, |d| d.len()));
            if seen > cap {
                break;
            }
        }
    })
    .await;
}

/// Reads a body of at most `limit` bytes within `within`: `too_big()` above the limit, 408 when
/// it takes longer, 400 when the read fails.
pub async fn read_limited(
    body: impl ReqBody,
    limit: usize,
    within: Duration,
    too_big: impl Fn() -> ApiError,
    what: &str,
) -> Result<Bytes, ApiError> {
    match tokio::time::timeout(within, Limited::new(body, limit).collect()).await {
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the {what} did not arrive within {} s (--body-timeout-secs)",
                within.as_secs_f64()
            ),
        )),
        Ok(Ok(b)) => Ok(b.to_bytes()),
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(too_big())
        }
        Ok(Err(e)) => Err(ApiError::bad_request(format!(
            "reading the {what} failed: {e}"
        ))),
    }
}

/// The media type of a request (`Content-Type` without parameters, lower case; empty if none).
pub fn media_type(headers: &http::HeaderMap) -> String {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}
