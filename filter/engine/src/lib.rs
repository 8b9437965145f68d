//! meshward's decision engine, free of any proxy-wasm host.
//!
//! The pipeline, end to end:
//!
//! ```text
//! policy source ──(meshward compiler)──▶ model::CompiledPolicy ──codec::encode──▶ bytes
//!   bytes (in the plugin configuration JSON) ──config::FilterConfig::from_json──▶ Policy
//!   Envoy connection facts ──identity::verify_peer──▶ SpiffeId (or a deny Reason)
//!   (Policy, Request) ──evaluate──▶ Decision { effect, reason, intent, rule, would_be }
//! ```
//!
//! The filter (a thin proxy-wasm shim) and the `meshward` CLI both call this
//! crate, so `meshward explain` answers exactly what Envoy enforces.

pub mod audit;
pub mod bundle;
pub mod chain;
pub mod codec;
pub mod config;
pub mod decision;
mod evaluate;
pub mod identity;
pub mod method_override;
pub mod model;
pub mod path;
pub mod pipeline;
mod policy;
mod routes;
pub mod signature;
pub mod spiffe;

#[cfg(test)]
mod tests;

pub use decision::{Decision, Reason, RuleIdx, WouldBe};
pub use evaluate::{evaluate, Claim, Headers, Request, UserInfo};
pub use model::Effect;
pub use policy::{Policy, PolicyError};
