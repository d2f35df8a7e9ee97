//! KServe v2 over gRPC (`GRPCInferenceService`, `proto/grpc_predict_v2.proto`), served by the
//! same connection handling as REST (`crate::server`: connection cap, first-request and idle
//! timeouts, HTTP/2 stream limit and keep-alive pings) and the same request path after decoding.
//!
//! Before tonic sees a call, [`handle`] reads its message within the REST limits: the 5-byte
//! gRPC prefix's length is checked against `--max-body-bytes` before anything is kept for it
//! (RESOURCE_EXHAUSTED above it), memory grows only with bytes that arrived, and the message
//! must arrive in full within `--body-timeout-secs` (DEADLINE_EXCEEDED after). A `grpc-timeout`
//! from the client bounds the whole call. A cancelled call drops its future: its queued request
//! is skipped as a disconnected REST client's is.

pub mod convert;
pub mod pb;
pub mod service;
pub mod status;

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use tonic::codegen::Service;
use tonic::Status;

use super::body::ReqBody;
use super::AppState;
use pb::grpc_inference_service_server::GrpcInferenceServiceServer;

/// The tonic server of [`service::V2Grpc`], with message limits from the REST settings.
pub type Server = GrpcInferenceServiceServer<service::V2Grpc>;

/// The server over `state`: messages up to `--max-body-bytes` each way.
pub fn server(state: Arc<AppState>) -> Server {
    let limit = state.cfg.max_body_bytes;
    GrpcInferenceServiceServer::new(service::V2Grpc { state })
        .max_decoding_message_size(limit)
        .max_encoding_message_size(usize::MAX)
}

/// The one entry point of the gRPC listener.
pub async fn handle(
    state: Arc<AppState>,
    mut svc: Server,
    req: Request<impl ReqBody>,
) -> Response<tonic::body::Body> {
    let deadline = grpc_timeout(req.headers());
    let (parts, body) = req.into_parts();
    let limit = state.cfg.max_body_bytes;
    let msg = match read_message(body, limit, state.cfg.body_timeout).await {
        Ok(m) => m,
        Err(s) => {
            if s.code() == tonic::Code::ResourceExhausted {
                state.metrics.request("", 413);
            }
            return s.into_http();
        }
    };
    let call = svc.call(Request::from_parts(parts, Full::new(msg)));
    let answer = match deadline {
        Some(d) => match tokio::time::timeout(d, call).await {
            Ok(r) => r,
            Err(_) => {
                return Status::deadline_exceeded(format!(
                    "the call's grpc-timeout of {} ms passed",
                    d.as_millis()
                ))
                .into_http()
            }
        },
        None => call.await,
    };
    answer.unwrap_or_else(|never| match never {})
}

/// Reads one length-prefixed gRPC message (prefix included) within `limit` bytes of message
/// and `within` time.
async fn read_message(body: impl ReqBody, limit: usize, within: Duration) -> Result<Bytes, Status> {
    let too_big = |n: u64| {
        Status::resource_exhausted(format!(
            "request message of {n} bytes exceeds the limit of {limit} bytes (--max-body-bytes)"
        ))
    };
    let read = async {
        let mut body = std::pin::pin!(body);
        let mut buf = BytesMut::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                Status::cancelled(format!("reading the request failed: {}", e.into()))
            })?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if buf.len() >= 5 || buf.len() + data.len() >= 5 {
                let mut prefix = [0u8; 5];
                let have = buf.len().min(5);
                prefix[..have].copy_from_slice(&buf[..have]);
                prefix[have..].copy_from_slice(&data[..5 - have]);
                let declared = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]);
                if declared as usize > limit {
                    return Err(too_big(u64::from(declared)));
                }
            }
            if buf.len() + data.len() > limit.saturating_add(5) {
                return Err(too_big((buf.len() + data.len()) as u64));
            }
            buf.extend_from_slice(&data);
        }
        Ok(buf.freeze())
    };
    match tokio::time::timeout(within, read).await {
        Ok(r) => r,
        Err(_) => Err(Status::deadline_exceeded(format!(
            "the request message did not arrive within {} s (--body-timeout-secs)",
            within.as_secs_f64()
        ))),
    }
}

/// The `grpc-timeout` header: digits and a unit (H, M, S, m, u, n).
fn grpc_timeout(headers: &http::HeaderMap) -> Option<Duration> {
    let v = headers.get("grpc-timeout")?.to_str().ok()?;
    if v.len() < 2 || v.len() > 9 {
        return None;
    }
    let (n, unit) = v.split_at(v.len() - 1);
    let n: u64 = n.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(declared: u32, payload: &[u8]) -> Bytes {
        let mut b = vec![0u8];
        b.extend_from_slice(&declared.to_be_bytes());
        b.extend_from_slice(payload);
        Bytes::from(b)
    }

    #[tokio::test]
    async fn messages_are_read_within_the_limit() {
        let s = Duration::from_secs(1);
        let ok = read_message(Full::new(framed(3, b"abc")), 3, s)
            .await
            .unwrap();
        assert_eq!(ok.len(), 8);
        // the declared length is refused before the payload is waited for
        let e = read_message(Full::new(framed(u32::MAX, b"")), 1 << 20, s)
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::ResourceExhausted);
        assert!(
            e.message()
                .contains("4294967295 bytes exceeds the limit of 1048576"),
            "{}",
            e.message()
        );
        // more bytes than any message within the limit
        let e = read_message(Full::new(framed(2, b"abcdef")), 4, s)
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::ResourceExhausted);
    }

    /// A body that sends one frame and then nothing, forever.
    struct Stalled(Option<Bytes>);

    impl hyper::body::Body for Stalled {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
            match self.0.take() {
                Some(b) => std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(b)))),
                None => std::task::Poll::Pending,
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_message_times_out() {
        let body = Stalled(Some(framed(10, b"abc")));
        let e = read_message(body, 100, Duration::from_secs(30))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::DeadlineExceeded);
    }

    #[test]
    fn grpc_timeout_units() {
        let h = |v: &str| {
            let mut m = http::HeaderMap::new();
            m.insert("grpc-timeout", v.parse().unwrap());
            grpc_timeout(&m)
        };
        assert_eq!(h("250m"), Some(Duration::from_millis(250)));
        assert_eq!(h("2S"), Some(Duration::from_secs(2)));
        assert_eq!(h("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(h("5x"), None);
        assert_eq!(h("m"), None);
    }
}
