//! meshward's end-to-end harness: real Envoy processes running the meshward
//! wasm filter over mTLS, driven by real clients with real certificates.
//!
//! The pieces, each small, each written once and used by every end-to-end
//! test, the demo (`src/bin/demo.rs`) and the soak (`src/bin/soak.rs`):
//!
//! - [`build`]: which filter build runs (`MESHWARD_BUILD=wasm|native`) and
//!   the rewrite of rendered configs for the native module.
//! - [`workspace`]: where the Envoy binary (`.venv`, from `scripts/setup.sh`)
//!   and the filter's wasm are, and per-test scratch directories; missing
//!   ones fail the test with the fix.
//! - [`pki`]: the one PKI: CAs per SPIFFE trust domain, X.509-SVIDs with
//!   chosen URI SANs, validity windows and serials, serving certificates
//!   with or without the workload's SPIFFE ID, certificate directories
//!   (rcgen); the SPIFFE ID helpers.
//! - [`templates`]: the one filler of the Envoy config templates under
//!   `envoy/` (`${NAME}` placeholders, what `envsubst` does).
//! - [`envoy`]: the one Envoy process wrapper: starts Envoy on free ports
//!   with N workers, waits until its named listeners are bound, reads the
//!   admin API (stats, per-worker counters) and the log, kills it on drop;
//!   [`Envoy`] is the single-listener view of `envoy/demo.yaml`.
//! - [`audit`]: the filter's `meshward.audit {json}` lines from Envoy's log.
//! - [`http`]: just enough HTTP/1.1 to read one message, and one
//!   plain-HTTP exchange (Envoy's admin endpoint, an app's outbound call).
//! - [`loopback`]: the one loopback HTTP/1.1 server; [`upstream`] (the echo
//!   app that answers with the request it got), [`topology::app`] and
//!   [`topology::docs`] are handlers on it.
//! - [`client`]: the one TLS client setup (rustls + ring), and a raw
//!   HTTP/1.1-over-TLS client that sends the request line byte for byte,
//!   with a chosen client certificate or none.
//! - [`http2`]: a raw HTTP/2-over-TLS client (header blocks byte for byte)
//!   for the bypass corpus, on the same TLS setup.
//! - [`policy`]: compiles v1 policy source with the real compiler library.
//! - [`mesh`]: one Envoy from `envoy/demo.yaml` in front of the echo app,
//!   with its PKI, as one fixture (what most tests use).
//! - [`ecds`]: the same with the filter configured through ECDS from a
//!   watched directory, for live configuration updates (tests, the soak).
//! - [`istio`]: Envoy configured the way Istio configures a sidecar for a
//!   `WasmPlugin` (ECDS, XFCC settings, istiod-shaped certificates).
//! - [`topology`]: several Envoys wired together over mTLS, each in front
//!   of an app that calls the next hop (caller chain, tokens, the demo's
//!   three hops); signing keys and tokens minted at test time.
//! - [`expect`]: assertions on denies (status, reason, body) and on what the
//!   app received.
//!
//! The tests live in `tests/tests/`; the demo (`scripts/demo.sh`) and the
//! soak (`scripts/soak.sh`) are binaries of this crate and reuse the same
//! harness.

pub mod audit;
pub mod build;
pub mod bundle_server;
pub mod client;
pub mod ecds;
pub mod envoy;
pub mod expect;
pub mod hbone;
pub mod http;
pub mod http2;
pub mod istio;
pub mod loopback;
pub mod mesh;
pub mod pki;
pub mod policy;
pub mod templates;
pub mod topology;
pub mod upstream;
pub mod workspace;

pub use client::{ClientError, Request, Response, TlsClient};
pub use envoy::Envoy;
pub use mesh::{Mesh, MeshBuilder};
pub use pki::{Leaf, TestPki};
