//! The AWS SDK configuration both AWS drivers (EC2, Lambda) build their clients from: region,
//! optional endpoint override (an emulator), optional static credentials (else the standard
//! chain: environment, profile, instance role), and the attempts per call. Every call has a
//! connect timeout and an operation timeout, so an endpoint that accepts and never answers cannot
//! stall the control loop (a Lambda invocation has its own, shorter deadline on top).

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ec2::config::Credentials;

/// Longest wait for a TCP connection to an AWS endpoint.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for one AWS call, retries included.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(60);

/// Loads the shared SDK configuration.
pub async fn sdk_config(
    region: &str,
    endpoint: Option<&str>,
    credentials: Option<&(String, String)>,
    max_attempts: u32,
) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .retry_config(RetryConfig::standard().with_max_attempts(max_attempts.max(1)))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_timeout(OPERATION_TIMEOUT)
                .build(),
        );
    if let Some(e) = endpoint {
        loader = loader.endpoint_url(e);
    }
    if let Some((k, s)) = credentials {
        loader = loader.credentials_provider(Credentials::new(k, s, None, None, "mark-static"));
    }
    loader.load().await
}
