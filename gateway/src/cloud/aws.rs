//! The AWS SDK configuration both AWS drivers (EC2, Lambda) build their clients from: region,
//! optional endpoint override (an emulator), optional static credentials (else the standard
//! chain: environment, profile, instance role), and the attempts per call.

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ec2::config::Credentials;

/// Loads the shared SDK configuration.
pub async fn sdk_config(
    region: &str,
    endpoint: Option<&str>,
    credentials: Option<&(String, String)>,
    max_attempts: u32,
) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .retry_config(RetryConfig::standard().with_max_attempts(max_attempts.max(1)));
    if let Some(e) = endpoint {
        loader = loader.endpoint_url(e);
    }
    if let Some((k, s)) = credentials {
        loader = loader.credentials_provider(Credentials::new(k, s, None, None, "mark-static"));
    }
    loader.load().await
}
