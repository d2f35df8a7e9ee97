//! Cloud drivers: launch, list and terminate the instances that serve batches.
//!
//! The cloud is the source of truth for the fleet: every instance carries tags (fleet, model,
//! type, market, launch time) and `list` rebuilds the fleet from them, so a restarted gateway
//! adopts running workers instead of leaking them.
//!
//! - `local`: `mark worker` processes on loopback ports with the catalog's launch delay.
//! - `ec2`: AWS EC2 through `aws-sdk-ec2` (tested against moto); `aws`: the SDK configuration it
//!   shares with the Lambda backend.

pub mod aws;
pub mod driver;
pub mod ec2;
pub mod local;

use mark_policies::types::Market;
use serde::{Deserialize, Serialize};

/// Lifecycle of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstanceState {
    /// Launched, not serving yet.
    Pending,
    /// Serving.
    Running,
}

/// An instance as the cloud reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    /// Cloud id.
    pub id: String,
    /// Fleet it belongs to (tag).
    pub fleet: String,
    /// Model it serves (tag).
    pub model: String,
    /// Type name.
    pub instance_type: String,
    /// Market.
    #[serde(with = "market_serde")]
    pub market: Market,
    /// Launch time, seconds since the Unix epoch (tag).
    pub launched_at: f64,
    /// Where its v2 endpoint listens, once known.
    pub addr: String,
    /// Pending or running.
    pub state: InstanceState,
    /// USD per hour it is billed at.
    pub price_per_hour: f64,
}

mod market_serde {
    use mark_policies::types::Market;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(m: &Market, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(match m {
            Market::OnDemand => "on-demand",
            Market::Spot => "spot",
        })
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Market, D::Error> {
        match String::deserialize(d)?.as_str() {
            "on-demand" => Ok(Market::OnDemand),
            "spot" => Ok(Market::Spot),
            other => Err(serde::de::Error::custom(format!(
                "unknown market '{other}'"
            ))),
        }
    }
}

/// Failures of a driver call.
#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    /// The catalog has no such type.
    #[error("unknown instance type '{0}'")]
    UnknownType(String),
    /// The call failed; retrying may help.
    #[error("{0}")]
    Failed(String),
}

/// Billing rule shared by drivers and the simulator: per second with a 60 s minimum.
pub fn billed_seconds(alive_s: f64) -> f64 {
    alive_s.max(60.0)
}
