//! MArk-rs gateway: serves ONNX models over the KServe v2 protocol with SLO-aware dynamic batching.
//!
//! # Layout
//! - `api`: v2 REST endpoints, `/metrics`, and the admin API (route → decode → admit → … → encode).
//! - `batching`: bounded model queue, batch-size policy, the batch loop.
//! - `exec`: ONNX Runtime through `ort`: library loading, sessions, executor threads.
//! - `policy`: WASM policy host: engine, validation, slots, callers with native fallback.
//! - `model` / `repo`: a served model and the model repository scan.
//! - `profile` / `profiler`: latency per batch size, stored and measured.
//! - `metrics`: Prometheus counters and histograms.
//! - `bench`: load generator (open and closed loop) and raw-ort baseline.
//! - `server` / `app`: listener lifecycle and wiring of `mark serve`.
//! - `autoscale`: the live control loop (`--cloud local`): demand, SLO, controller step, driver.
//! - `cloud`: cloud drivers (`local`: `mark worker` processes), fleet rebuilt from tags.
//! - `control`: control-plane logic (catalog, peak rates, SLO monitor, controller step), no I/O.
//! - `config` / `tensor`: typed settings; tensors as dtype, shape and bytes.
//! - `sim`: `mark simulate`, the discrete-event simulator on the shared controller and policies.
//! - `lambda_fn`: `mark lambda`, the function body of the Lambda backend.
//! - `fuzzing`: entry points of the fuzz targets (also replayed as tests).

pub mod api;
pub mod app;
pub mod autoscale;
pub mod batching;
pub mod bench;
pub mod cloud;
pub mod config;
pub mod control;
pub mod exec;
pub mod fuzzing;
pub mod lambda_fn;
pub mod metrics;
pub mod model;
pub mod policy;
pub mod profile;
pub mod profiler;
pub mod repo;
pub mod server;
pub mod sim;
pub mod tensor;
