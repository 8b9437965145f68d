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
//! # The public surface (the facade)
//!
//! The public API is what the hosts and the CLI use: the proxy-wasm shell
//! (`filter/wasm`), the dynamic-module shell (`filter/native`), the compiler
//! and CLI (`policy-compiler`), plus the end-to-end tests, benchmarks and
//! fuzz targets that drive the same calls. Every public item has exactly one
//! path; everything else is `pub(crate)`.
//!
//! - At the crate root, what every caller of `evaluate` uses: [`Policy`] and
//!   [`PolicyError`] (a validated, indexed policy), [`evaluate`] with
//!   [`Request`], [`Headers`], [`UserInfo`] and [`Claim`] (its inputs), and
//!   [`Decision`], [`Reason`], [`DenyStatus`], [`RuleIdx`], [`WouldBe`] (its
//!   answer); [`check_rule`] and [`RuleCheck`] say how one rule fares. The
//!   `decision`, `evaluate`, `policy` and `routes` modules are private. The
//!   effect of a decision is [`model::Effect`], the wire type it is.
//! - [`pipeline`]: the host interface. A host implements [`pipeline::Host`]
//!   and drives a [`pipeline::Pipeline`]; the CLI and tests build
//!   [`pipeline::RequestInput`]s and use [`pipeline::OfflineHost`];
//!   [`pipeline::publish`] names the filter-state keys and stats tags a
//!   deployment reads, and [`pipeline::response`] builds a deny when no
//!   pipeline exists (a host's panic path).
//! - The formats the compiler writes and the filter reads: [`model`] (the
//!   compiled policy, the compiler ↔ filter contract), [`codec`] (its byte
//!   framing), [`config`] (the plugin configuration), [`signature`] and
//!   [`bundle`] (signed policies and bundles), [`audit`] (the audit line,
//!   which `meshward replay` reads back).
//! - The identity building blocks the compiler checks settings with and the
//!   fuzz targets exercise: [`identity`] (one flat module: peer certificates,
//!   JWT-SVIDs and user tokens through one verifier skeleton, key sets,
//!   claim paths, revocation; the untrusted-input parsers [`identity::cert`]
//!   and [`identity::xfcc`] are submodules), [`spiffe`] (IDs and the one
//!   pattern matcher), [`chain`] (the caller chain), [`authority`] and
//!   [`path`] (canonical `:authority` and path).
//!
//! A new public item needs a caller outside the crate; the limits a public
//! error names (`MAX_*`) are public with it.
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
mod method_override;
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
