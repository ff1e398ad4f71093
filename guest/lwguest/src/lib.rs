//! lwguest: what the lwnet guest tools share. `no_std` + alloc over system calls
//! (see [`sys`]); std only for unit tests on the build machine.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod fs;
pub mod http;
pub mod index;
pub mod json;
pub mod net;
pub mod progress;
pub mod rt;
pub mod sort;
pub mod store;
pub mod sys;
pub mod syscall;

// The tools use these types directly; one version for the whole workspace.
pub use ed25519_dalek;
pub use sha2;
