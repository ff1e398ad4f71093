//! `lwproxy`: the WebSocket-to-TCP/TLS proxy of lwnet, as a library (the `lwproxy` binary is
//! `src/main.rs`). See proxy/README.md for the server and `docs/protocol.md` for the protocol.
//!
//! [`protocol`] is the one definition of the wire protocol: clients in this repository
//! (lwhost's main side, the tests, the benchmarks) import it rather than restating it.

pub mod audit;
pub mod auth;
pub mod config;
pub mod forwarded;
pub mod frames;
pub mod limits;
pub mod platform;
pub mod policy;
pub mod preauth;
pub mod protocol;
pub mod relay;
pub mod server;
pub mod session;
pub mod shared_limits;
pub mod tls;
pub mod wisp;
pub mod wisp_session;
