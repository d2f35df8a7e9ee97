//! Control plane logic, free of I/O so that the server and the simulator share it.
//!
//! - `catalog`: instance types, prices, capacity per model; Lambda pricing.
//! - `rates`: per-interval peak arrival rate (MArk's input to the predictor).
//! - `slo`: sliding-window SLO attainment.
//! - `controller`: one control step (predict → provision → fleet actions) and the SLO emergency.

pub mod catalog;
pub mod controller;
pub mod rates;
pub mod slo;
