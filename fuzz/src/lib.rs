//! Shared pieces of meshward's fuzz targets.
//!
//! - [`fixture`]: the fixed policy and its independent reference evaluator,
//!   the very file the engine's property tests use
//!   (`filter/engine/tests/fixture/mod.rs`), so the fuzzer and `cargo test`
//!   check one oracle.
//! - [`tokens`]: fixed signing keys, the plugin configuration that trusts
//!   them, and the JWT-SVIDs / user tokens minted with them.

#[path = "../../filter/engine/tests/fixture/mod.rs"]
pub mod fixture;

pub mod tokens;

/// The "now" every time-dependent target uses: 2030-03-17T17:46:40Z.
pub const NOW: u64 = 1_900_000_000;
