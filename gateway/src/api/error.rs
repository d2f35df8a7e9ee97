//! HTTP errors of the API: a status, a message that says what was wrong and how to fix it, and
//! for 503 a `Retry-After`.

use bytes::Bytes;
use http::{header, Response, StatusCode};
use http_body_util::Full;

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Human-readable reason, returned as `{"error": message}`.
    pub message: String,
    /// Seconds for `Retry-After` (503 only).
    pub retry_after: Option<u32>,
}

impl ApiError {
    /// An error with `status`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
        }
    }
    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    /// 503 with `Retry-After`.
    pub fn unavailable(message: impl Into<String>, retry_after: u32) -> Self {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: message.into(),
            retry_after: Some(retry_after),
        }
    }

    /// Renders as a JSON response.
    pub fn into_response(self) -> Response<Full<Bytes>> {
        let body = serde_json::json!({ "error": self.message }).to_string();
        let mut b = Response::builder()
            .status(self.status)
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(s) = self.retry_after {
            b = b.header(header::RETRY_AFTER, s.to_string());
        }
        b.body(Full::new(Bytes::from(body)))
            .expect("valid response")
    }
}

impl From<crate::codec::DecodeError> for ApiError {
    /// A request that cannot be decoded is the client's to fix: 400.
    fn from(e: crate::codec::DecodeError) -> Self {
        ApiError::bad_request(e.0)
    }
}

/// A JSON response with status 200.
pub fn json_ok(value: &impl serde::Serialize) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(value).expect("serializable");
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("valid response")
}
