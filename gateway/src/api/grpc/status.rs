//! The gateway's errors as gRPC statuses: the code a v2 client expects for each REST status, the
//! same message, and for UNAVAILABLE the retry hint (`retry-after` seconds, as REST's header, and
//! `grpc-retry-pushback-ms`, which gRPC's own retry policy reads).

use http::StatusCode;
use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

use crate::api::error::ApiError;

/// The gRPC code for a REST status.
pub fn code_of(status: StatusCode) -> Code {
    match status {
        StatusCode::BAD_REQUEST | StatusCode::UNSUPPORTED_MEDIA_TYPE => Code::InvalidArgument,
        StatusCode::NOT_FOUND => Code::NotFound,
        StatusCode::SERVICE_UNAVAILABLE => Code::Unavailable,
        StatusCode::PAYLOAD_TOO_LARGE => Code::ResourceExhausted,
        StatusCode::GATEWAY_TIMEOUT | StatusCode::REQUEST_TIMEOUT => Code::DeadlineExceeded,
        StatusCode::INTERNAL_SERVER_ERROR => Code::Internal,
        _ => Code::Unknown,
    }
}

/// The REST status for a gRPC code (what `mark bench` reports errors by); 0 for the rest.
pub fn http_of(code: Code) -> u16 {
    match code {
        Code::InvalidArgument => 400,
        Code::NotFound => 404,
        Code::Unavailable => 503,
        Code::ResourceExhausted => 413,
        Code::DeadlineExceeded => 504,
        Code::Internal => 500,
        _ => 0,
    }
}

/// `e` as a gRPC status.
pub fn to_status(e: ApiError) -> Status {
    let mut s = Status::new(code_of(e.status), e.message);
    if let Some(secs) = e.retry_after {
        let md = s.metadata_mut();
        md.insert("retry-after", MetadataValue::from(secs));
        md.insert(
            "grpc-retry-pushback-ms",
            MetadataValue::from(u64::from(secs) * 1000),
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_retry_hint() {
        let s = to_status(ApiError::unavailable("model 'm' is loading", 2));
        assert_eq!(s.code(), Code::Unavailable);
        assert_eq!(s.message(), "model 'm' is loading");
        assert_eq!(s.metadata().get("retry-after").unwrap(), "2");
        assert_eq!(s.metadata().get("grpc-retry-pushback-ms").unwrap(), "2000");
        assert_eq!(
            to_status(ApiError::bad_request("input 'x' has shape [3]")).code(),
            Code::InvalidArgument
        );
        assert_eq!(
            code_of(StatusCode::PAYLOAD_TOO_LARGE),
            Code::ResourceExhausted
        );
        assert_eq!(code_of(StatusCode::NOT_FOUND), Code::NotFound);
        assert_eq!(code_of(StatusCode::INTERNAL_SERVER_ERROR), Code::Internal);
    }
}
