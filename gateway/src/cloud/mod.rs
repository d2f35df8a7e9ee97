//! Cloud drivers: launch, list and terminate the instances that serve batches.
//!
//! The cloud is the source of truth for the fleet: every instance carries tags (fleet, model,
//! type, market, launch time) and `list` rebuilds the fleet from them, so a restarted gateway
//! adopts running workers instead of leaking them.
//!
//! What an instance is, and the billing rule, are control-plane vocabulary (`control::fleet`);
//! the drivers implement its `Fleet` trait through `driver::Driver`.
//!
//! Launches are keyed when a controller plans them (`autoscale::keyed`: interval, type, market
//! and the controller's own ordinal), so a launch asked twice happens once (EC2: the
//! `ClientToken`; local: a key file created exclusively).
//!
//! - `local`: `mark worker` processes on loopback ports with the catalog's launch delay.
//! - `ec2`: AWS EC2 through `aws-sdk-ec2` (tested against moto), configured by `crate::aws_sdk`
//!   as the Lambda backend is.
//! - `faults`: the fault layer over either (`--cloud-faults FILE.toml`).

pub mod driver;
pub mod ec2;
pub mod faults;
pub mod local;
pub mod spot_prices;

/// Failures of a driver call: the core's typed fleet error, so the act phase passes it through
/// without turning it into a string.
pub use crate::control::fleet::FleetError as CloudError;
