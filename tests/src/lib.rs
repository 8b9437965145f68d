//! meshward's end-to-end harness: real Envoy processes running the meshward
//! wasm filter over mTLS, driven by real clients with real certificates.
//!
//! The pieces, each small:
//!
//! - [`build`]: which filter build runs (`MESHWARD_BUILD=wasm|native`) and
//!   the rewrite of rendered configs for the native module.
//! - [`workspace`]: where the Envoy binary (`.venv`, from `scripts/setup.sh`)
//!   and the filter's wasm are; missing ones fail the test with the fix.
//! - [`pki`]: CAs per SPIFFE trust domain and X.509-SVIDs with chosen URI
//!   SANs, validity windows and serials (rcgen).
//! - [`upstream`]: the app: an echo server that answers with the headers it got.
//! - [`client`]: a raw HTTP/1.1-over-TLS client (rustls + ring) that sends the
//!   request line byte for byte, with a chosen client certificate or none.
//! - [`envoy`]: renders `envoy/demo.yaml`, starts Envoy on free ports, waits
//!   for readiness, reads the admin API and the log, kills it on drop.
//! - [`audit`]: the filter's `meshward.audit {json}` lines from Envoy's log.
//! - [`policy`]: compiles v1 policy source with the real compiler library.
//! - [`mesh`]: all of the above as one fixture.
//! - [`expect`]: assertions on denies (status, reason, body) and on what the
//!   app received.
//!
//! The tests live in `tests/tests/`; the demo (`scripts/demo.sh`) is the
//! `demo` binary of this crate and reuses the same harness.

pub mod audit;
pub mod build;
pub mod client;
pub mod ecds;
pub mod envoy;
pub mod expect;
pub mod http;
pub mod http2;
pub mod istio;
pub mod mesh;
pub mod pki;
pub mod policy;
pub mod topology;
pub mod upstream;
pub mod workspace;

pub use client::{ClientError, Request, Response, TlsClient};
pub use envoy::Envoy;
pub use mesh::{Mesh, MeshBuilder};
pub use pki::{Leaf, TestPki};
