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
//!
//! # The public surface
//!
//! Each item has one path.
//!
//! - At the crate root, what every caller uses: [`Policy`] and
//!   [`PolicyError`] (a validated, indexed policy), [`evaluate`] with
//!   [`Request`], [`Headers`], [`UserInfo`] and [`Claim`] (its inputs), and
//!   [`Decision`], [`Reason`], [`DenyStatus`], [`RuleIdx`], [`WouldBe`] (its
//!   answer); [`check_rule`] and [`RuleCheck`] say how one rule fares. The
//!   `decision` module itself is private. [`Effect`] is also reachable as
//!   `model::Effect`, the wire type it is.
//! - [`pipeline`]: the host interface. A host (the proxy-wasm shell in
//!   `filter/wasm`, the dynamic-module shell in `filter/native`, the CLI's
//!   offline filter) implements [`pipeline::Host`] and drives a
//!   [`pipeline::Pipeline`]; the CLI and tests build
//!   [`pipeline::RequestInput`]s and use [`pipeline::OfflineHost`].
//! - The formats and building blocks the compiler, the fuzz targets and the
//!   tests use: [`model`] (the compiled policy, the compiler ↔ filter
//!   contract), [`codec`] (its byte framing), [`config`] (the plugin
//!   configuration), [`signature`] (signed bundles), [`identity`] (peer
//!   certificates, XFCC, JWT-SVIDs, user tokens, key sets, revocation),
//!   [`spiffe`] (IDs and the one pattern matcher), [`authority`] (the
//!   canonical `:authority`), [`chain`] (the caller chain), [`audit`] (the
//!   audit line), [`path`] and [`method_override`].
//!
//! ARCHITECTURE.md at the repository root walks the whole data flow.

#![deny(unsafe_code)]

pub mod audit;
pub mod authority;
pub mod bundle;
pub mod chain;
pub mod codec;
pub mod config;
mod decision;
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

pub use decision::{Decision, DenyStatus, Reason, RuleIdx, WouldBe};
pub use evaluate::{check_rule, evaluate, Claim, Headers, Request, RuleCheck, UserInfo};
pub use policy::{Policy, PolicyError};
