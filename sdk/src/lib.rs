//! # mark-policy-sdk
//!
//! Write MArk-rs policies as WebAssembly components: a batcher (batch sizing), a predictor (load
//! forecast) or a provisioner (instance selection), then hot-load them into a running gateway.
//!
//! A complete batcher policy:
//!
//! ```ignore
//! use mark_policy_sdk::batcher::*;
//!
//! struct HalfFull;
//! impl Batcher for HalfFull {
//!     fn decide(s: QueueState) -> BatchDecision {
//!         if s.queued_items * 2 >= s.max_batch { BatchDecision::Send(s.max_batch) } else { BatchDecision::Wait(1_000) }
//!     }
//! }
//! mark_policy_sdk::export_batcher!(HalfFull);
//! ```
//!
//! Build it for `wasm32-unknown-unknown` as a `cdylib`, turn it into a component, check it, load it:
//!
//! ```text
//! cargo build --release --target wasm32-unknown-unknown
//! wasm-tools component new target/wasm32-unknown-unknown/release/half_full.wasm -o half_full.wasm
//! mark policy check half_full.wasm
//! curl -H "authorization: Bearer $MARK_ADMIN_TOKEN" -T half_full.wasm localhost:8001/admin/v1/policies/batcher
//! ```
//!
//! One component can export several kinds: call several export macros on the same type (the
//! default `mark-default.wasm` exports all three).
//!
//! Policies are pure: they may not import anything (no WASI), every call runs under a deadline and
//! a memory limit, and a trap, timeout or malformed answer makes the gateway use its native default
//! for that call. See `docs/policies.md`.

#![no_std]
#![allow(missing_docs)]

extern crate alloc;

pub use alloc::{string::String, vec, vec::Vec};

/// The WIT package version this SDK builds against.
pub const WIT_VERSION: &str = "0.2.0";

pub use batcher::export_batcher;
pub use predictor::export_predictor;
pub use provisioner::export_provisioner;

/// Batch sizing: implement [`batcher::Batcher`] and call [`export_batcher!`].
pub mod batcher {
    wit_bindgen::generate!({
        world: "batcher-policy",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "export_batcher",
        default_bindings_module: "mark_policy_sdk::batcher",
    });
    pub use self::exports::mark::policy::batcher::Guest as Batcher;
    pub use self::mark::policy::types::{BatchDecision, ProfilePoint, QueueState};
    pub use crate::{String, Vec};
}

/// Load prediction: implement [`predictor::Predictor`] and call [`export_predictor!`].
pub mod predictor {
    wit_bindgen::generate!({
        world: "predictor-policy",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "export_predictor",
        default_bindings_module: "mark_policy_sdk::predictor",
    });
    pub use self::exports::mark::policy::predictor::Guest as Predictor;
    pub use self::mark::policy::types::PolicyError;
    pub use crate::{String, Vec};
}

/// Instance selection: implement [`provisioner::Provisioner`] and call [`export_provisioner!`].
pub mod provisioner {
    wit_bindgen::generate!({
        world: "provisioner-policy",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "export_provisioner",
        default_bindings_module: "mark_policy_sdk::provisioner",
    });
    pub use self::exports::mark::policy::provisioner::Guest as Provisioner;
    pub use self::mark::policy::types::{
        FleetEntry, FleetTarget, InstanceType, Market, ModelDemand, Plan, PolicyError, Slo,
        TypeCapacity,
    };
    pub use crate::{String, Vec};
}

/// The previous contract, `mark:policy@0.1.0` (one forecast, one SLO): for components that
/// must keep its signatures. The gateway still loads them; new policies use the modules above.
pub mod v0_1 {
    /// A 0.1.0 predictor (`predict(history, interval-seconds, horizon)`).
    pub mod predictor {
        wit_bindgen::generate!({
            world: "predictor-policy-v0-1",
            path: "../wit/0.1.0",
            pub_export_macro: true,
            export_macro_name: "export_predictor_v0_1",
            default_bindings_module: "mark_policy_sdk::v0_1::predictor",
        });
        pub use self::exports::mark::policy::predictor::Guest as Predictor;
        pub use self::mark::policy::types::PolicyError;
        pub use crate::{String, Vec};
    }

    /// A 0.1.0 provisioner (`provision(forecast, interval-seconds, fleet, catalog, slo)`).
    pub mod provisioner {
        wit_bindgen::generate!({
            world: "provisioner-policy-v0-1",
            path: "../wit/0.1.0",
            pub_export_macro: true,
            export_macro_name: "export_provisioner_v0_1",
            default_bindings_module: "mark_policy_sdk::v0_1::provisioner",
        });
        pub use self::exports::mark::policy::provisioner::Guest as Provisioner;
        pub use self::mark::policy::types::{
            FleetEntry, FleetTarget, InstanceType, Market, Plan, PolicyError, Slo,
        };
        pub use crate::{String, Vec};
    }
}
