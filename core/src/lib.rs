//! MArk-rs decision core: the logic the live gateway (`mark serve`) and the simulator
//! (`mark simulate`) share, free of I/O runtimes. It takes time and state as arguments; its
//! `Cargo.toml` names no tokio, hyper, tonic, ort, wasmtime or AWS crate, so the layer rule
//! ("the core does no I/O") is the compiler's, not a test's.
//!
//! # Layout
//! - `control`: catalog, peak rates, SLO monitor, controller step, the `Fleet` trait and `apply`,
//!   cost ledger, monitors and emergency guard, demand counters, the published status.
//! - `profile`: latency per batch size as stored, and its live counterpart (`profile::live`).
//! - `admission`: SLO-aware admission (expected answer time against the SLO).
//! - `spill`: when and how much to spill to Lambda.
//! - `clock`: the wall clock, and loop time vs the cloud's wall-clock stamps.
//! - `error`: the configuration error every parser here returns.
//! - `secret`: comparing secrets in constant time.
//! - `lease`: the controller lease among replicas (state machine and its conditions), demand
//!   rows in `control::demand`.

pub mod admission;
pub mod clock;
pub mod control;
pub mod error;
pub mod lease;
pub mod profile;
pub mod secret;
pub mod spill;
