//! One Envoy process of a multi-Envoy topology: [`crate::envoy::EnvoyProc`]
//! (a chosen number of worker threads, several named listeners whose bound
//! ports are read back from the admin API, per-worker listener statistics).

pub use crate::envoy::{EnvoyProc, Starting};
