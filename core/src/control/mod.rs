//! Control plane logic, free of I/O so that the server and the simulator share it.
//!
//! - `catalog`: instance types, prices, capacity per model; Lambda pricing.
//! - `rates`: per-interval peak arrival rate (MArk's input to the predictor).
//! - `slo`: sliding-window SLO attainment.
//! - `controller`: one control step (predict → provision → fleet actions) and the SLO emergency.
//! - `cycle`: the `Controller`, owner of the control cycle the live loop and the simulator drive.
//! - `faults`: cloud faults as an input (`--cloud-faults FILE.toml`), for the simulator and the
//!   local cloud.
//! - `fleet`: instances as a cloud reports them, the `Fleet` trait (cloud drivers and the
//!   simulated cloud) and `apply`, the one way actions reach a fleet.
//! - `demand`: demand and SLO outcome counters, one process's and summed across replicas.
//! - `latency`: a model's answer latencies since the last plan (the p99 a provisioner gets).
//! - `launch_health`: the pending deadline, launch failures and the back-off of failing types.
//! - `mix`: many models on one fleet: per-model inputs and demands, the model that drove a
//!   plan, the fleet's floor (`--min-instances`, scale to zero).
//! - `ledger`: cost and instance-hours per backend.
//! - `monitors`: the demand and SLO monitors and the emergency-launch guard.
//! - `type_profile`: a type's own latency curve per model: source, checks, the printed entry.
//! - `status`: what the live loop publishes for `GET /admin/v1/status`.

pub mod bridge;
pub mod catalog;
pub mod controller;
pub mod cycle;
pub mod demand;
pub mod faults;
pub mod fleet;
pub mod latency;
pub mod launch_health;
pub mod ledger;
pub mod mix;
pub mod monitors;
pub mod rates;
pub mod slack;
pub mod slo;
pub mod spread;
pub mod status;
pub mod type_profile;
