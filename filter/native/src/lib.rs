//! meshward as an Envoy dynamic module: `libmeshward.so` for Envoy 1.40.
//!
//! The same request pipeline as the proxy-wasm build
//! (`meshward_engine::pipeline`), the same plugin configuration JSON, stats
//! names, audit lines and responses, run natively inside Envoy: no V8, no
//! sandbox. The module is a shell that moves bytes; it decides nothing.
//!
//! - [`ffi`] (feature `envoy`, on by default) is the only `unsafe` code: the
//!   event hooks Envoy calls and the callbacks it exports, for the ABI of
//!   Envoy 1.40 exactly. Every hook catches panics and denies.
//! - [`abi`] is that ABI as two safe traits ([`abi::StreamOps`],
//!   [`abi::ConfigOps`]), which the fuzz target implements without Envoy.
//! - [`host`] implements the pipeline's `Host` over those traits.
//! - [`module`] routes a filter configuration's events to its pipeline
//!   (threading, ticks, recovery after a panic).
//!
//! Build: `cargo build -p meshward-native --profile native` (release
//! settings with `panic = "unwind"`, which the hooks rely on). See
//! `docs/native.md`.

#![deny(unsafe_code)]

pub mod abi;
#[cfg(feature = "envoy")]
mod ffi;
pub mod host;
pub mod module;
