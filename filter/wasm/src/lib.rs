//! meshward's proxy-wasm filter: a thin shim around `meshward-engine`.
//!
//! - [`root`] owns the configuration lifecycle (parse once in `on_configure`,
//!   reject bad configs so Envoy fails closed).
//! - [`http`] runs once per request and hands it to [`inbound`] (server
//!   side: verify, evaluate, seal the chain for the app) or [`outbound`]
//!   (client side: forward only chains this proxy sealed).
//! - [`host`] is the only module that calls `proxy_wasm::hostcalls`; every
//!   host failure becomes a value, never a trap.
//!
//! Every decision is made by `meshward_engine::evaluate`, the same function
//! the `meshward` CLI calls.

mod host;
mod http;
mod inbound;
mod outbound;
mod root;
mod seal_key;
mod stats;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(root::MeshwardRoot::default())
    });
}}
