//! Host bindings generated from `wit/policy.wit`. One world (`all-policies`) gives one set of
//! types; each interface is loaded on its own (`exports::mark::policy::<kind>::GuestIndices`), so
//! a component that exports only one kind loads too.
#![allow(missing_docs)]

wasmtime::component::bindgen!({
    world: "all-policies",
    path: "../wit",
});

pub use self::mark::policy::types;
