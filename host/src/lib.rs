#![cfg_attr(
    all(target_arch = "wasm32", feature = "wasm-intrinsics"),
    feature(stdarch_wasm_atomic_wait)
)]
//! lwnet's host shim.
//!
//! - [`shm`]: the region shared by the two halves (`struct lwhost_shm`).
//! - [`worker`]: the host ABI (`wasm_net_*`, `wasm_store_*`) over it; what
//!   the kernel's calls land in. Built for wasm32 too (browser).
//! - [`web_layout`]: where the browser build's memory holds the region and
//!   its thread slots, as it publishes it to the JS glue.
//! - [`futex`]: wait/notify on its words (futex natively, wasm atomics).
//! - `region_service` (feature `native`): the tokio service that serves a region
//!   against lwproxy and the store; `store`: the durable store directory.
//!
//! The layout and constants come from the kernel patch through `lwabi`.

pub mod errno;
pub mod futex;
pub mod shm;
pub mod web_layout;
pub mod worker;

#[cfg(feature = "native")]
pub mod store;

#[cfg(feature = "native")]
pub mod region_service;

#[cfg(feature = "native")]
pub mod uml;
