//! Host bindings generated from the WIT contract: `v2` from `wit/policy.wit`
//! (`mark:policy@0.2.0`, the current one) and `v1` from `wit/0.1.0/policy.wit` (still loaded).
//! One world (`all-policies`) per version gives one set of types; each interface is loaded on
//! its own (`exports::mark::policy::<kind>::GuestIndices`), so a component that exports only
//! one kind loads too.
#![allow(missing_docs)]

/// `mark:policy@0.2.0`.
pub mod v2 {
    wasmtime::component::bindgen!({
        world: "all-policies",
        path: "../wit",
    });

    pub use self::mark::policy::types;
}

/// `mark:policy@0.1.0`.
pub mod v1 {
    wasmtime::component::bindgen!({
        world: "all-policies",
        path: "../wit/0.1.0",
    });

    pub use self::mark::policy::types;
}
