//! The request pipeline: host-neutral facts in, a complete outcome out.
//!
//! Everything that decides lives here; a host (proxy-wasm, the Envoy dynamic
//! module, the CLI, the tests' fake) only moves bytes through [`Host`].

pub mod host;
pub mod publish;

pub use host::{CallId, Host, HostError, LocalResponse, LogLevel, MetricId};
