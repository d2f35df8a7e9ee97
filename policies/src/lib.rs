//! MArk's default policies as plain Rust: no I/O, no clock, no WebAssembly.
//!
//! The gateway links this crate natively as the fallback for every policy call; the `export`
//! feature builds the very same functions into one WASM component (`mark-default.wasm`) that
//! `mark serve` loads by default, so the WASM path is the one exercised.
//!
//! # Layout
//! - `types`: plain mirrors of the WIT types.
//! - `batcher`: SLO-aware batch sizing from a latency profile.
//! - `predictor`: peak-rate forecast (Holt + adaptive margin) and MArk-as-released's flat baseline.
//! - `provisioner`: MArk's greedy cost-per-request instance selection.
//! - `mix`: many models on one fleet: the time-share rule (per-model forecasts to one plan).
//! - `traces`: deterministic generated traces for scoring predictors.

pub mod batcher;
pub mod mix;
pub mod predictor;
pub mod provisioner;
pub mod traces;
pub mod types;

#[cfg(feature = "export")]
mod export;
