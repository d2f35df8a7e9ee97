//! MArk-rs gateway: serves ONNX models over the KServe v2 protocol with SLO-aware dynamic batching,
//! and scales a fleet of instances (and Lambda) to the forecast load at the lowest cost.
//!
//! # Layout, in layers (a module imports only from its own layer or the ones below)
//!
//! **Front doors** (what `mark`'s subcommands run):
//! - `cli`: every subcommand and flag of `mark`, and the checks on flags that go together.
//! - `app` / `server`: every subcommand's body (`app::serve_cmd::Serve` for `mark serve` and
//!   `mark worker`, `app::commands`, `app::profile_cmd`); listeners and connection limits.
//! - `autoscale`: the live control loop, in phases: sample, observe, plan, act, publish.
//! - `lambda_function`: `mark lambda`, the function body of the Lambda backend.
//! - `loadgen`: `mark bench`, the load generator (open and closed loop) and raw-ort baseline.
//! - `replica`: several `mark serve` replicas, one controller: the lease and the replicas'
//!   counters in DynamoDB.
//! - `sim`: `mark simulate`, the discrete-event simulator on the shared controller and policies.
//! - `deploy`: `mark package lambda|worker` and `mark deploy`: the function's zip, the runtime
//!   and user data for a stock AMI, the launch template, the lease table, the IAM documents.
//! - `fuzzing`: entry points of the fuzz targets (also replayed as tests).
//!
//! **Request path** (a request: `api` → `batching` → `exec`):
//! - `api`: v2 REST endpoints and the v2 gRPC service (`api::grpc`, one request path after
//!   decoding), `/metrics`, the admin API and its operations page (`api::ops`).
//! - `model` / `repo`: a served model and the model repository scan.
//! - `batching`: bounded model queue, batch-size policy, the batch loop, spill and admission rules.
//! - `exec`: ONNX Runtime through `ort` (sessions, executor threads), fleet workers and the Lambda
//!   client as remote backends, the batch wire format.
//! - `cloud`: cloud drivers (`local`: `mark worker` processes; `ec2`), fleet rebuilt from tags.
//! - `policy`: WASM policy host: engine, validation, slots, callers with native fallback, shadow
//!   candidates beside the live policy.
//! - `trace`: recording live arrivals and the control loop's view (JSON Lines, rotated, bounded)
//!   and reading a trace back for `mark simulate --workload trace:DIR`.
//!
//! **Core** (no I/O: the server and the simulator share it):
//! - `control`, `profile`, `clock`, and `batching::{admission, spill}`: re-exported from the
//!   `mark-core` crate (`core/`), which links no I/O runtime: catalog, peak rates, SLO monitor,
//!   controller step, the `Fleet` trait and `apply`, cost ledger, monitors and emergency guard,
//!   the published status; latency profiles (stored and live); wall and loop clocks.
//! - `codec`: the v2 wire format, once: request decode (JSON `data` parsed straight into tensor
//!   bytes: `json_skim`, `json_data`), response encode, and the client side.
//! - `work`: the unit of work (a pending request and its reply channel) and its failures.
//! - `failure`: why a subcommand stopped, and the exit code for it (64, 65, 69, 1).

//! - `config` / `tensor` / `metrics` / `secret` / `aws_sdk`: typed settings; tensors as dtype,
//!   shape and bytes; Prometheus counters; constant-time compare; the AWS SDK configuration.
//!
//! `docs/architecture.md` draws both paths through these modules.

pub mod api;
pub mod app;
pub mod autoscale;
pub mod aws_sdk;
pub mod batching;
pub mod cli;
pub use mark_core::clock;
pub mod cloud;
pub mod codec;
pub mod config;
pub mod deploy;
pub use mark_core::control;
pub use mark_core::lease;
pub mod exec;
pub mod failure;
pub mod fuzzing;
pub mod lambda_function;
pub mod loadgen;
pub mod metrics;
pub mod model;
pub use mark_core::profile;
pub use mark_policy_host as policy;
pub mod replica;
pub mod repo;
pub use mark_core::secret;
pub mod server;
pub use mark_sim as sim;
pub mod tensor;
pub mod trace;
pub mod work;
