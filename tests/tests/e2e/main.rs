//! The end-to-end tests, one binary with a module per area (as spin and linkerd keep theirs): the
//! gateway is linked once, not once per area (issue 26). nextest still runs every test in its own
//! process under its deadline (`.config/nextest.toml`); `cargo nextest run -p mark-e2e -E
//! 'test(/^row_wise::/)'` or `cargo test -p mark-e2e --test e2e row_wise::` runs one area.
//!
//! Each module starts the real `mark` binary and real emulators on loopback; `util` holds the
//! shared helpers.

mod util;

mod admin_lockout;
mod api_v2;
mod autoscale;
mod batching;
mod broken_model;
mod cli;
mod dashboard;
mod deploy_aws;
mod ec2_moto;
mod ec2_serve;
mod fleet_faults;
mod fuzz_corpora;
mod gpu_check;
mod gpu_worker;
mod grpc;
mod hardening;
mod hot_swap;
mod lambda;
mod lambda_zero;
mod layers;
mod lease_race;
mod local_cloud;
mod many_models;
mod model_store;
mod ops_page;
mod policy_host;
mod python_clients;
mod replica_faults;
mod replicas;
mod router;
mod row_wise;
mod shadow;
mod simulate;
mod slack;
mod soak;
mod trace;
mod worker_load;
mod worker_secret;
