//! meshward benchmarks: the engine at 10 to 10,000 rules against Cedar and
//! regorus evaluating the equivalent policy on the same requests, allocation
//! counts, footprint, and the generators behind `scripts/bench-envoy.sh`.
//!
//! Everything here is benchmark code: it panics loudly on anything
//! unexpected. See `bench/README.md` for the method and the results.

pub mod alloc;
pub mod cedar;
pub mod compare;
pub mod mix;
pub mod rbac;
pub mod rego;
pub mod stats;
pub mod translate;
pub mod workload;
