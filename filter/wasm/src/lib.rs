//! meshward's proxy-wasm filter: a shell that moves bytes between Envoy and
//! the engine's request pipeline (`meshward_engine::pipeline`). It decides
//! nothing; what it does, all of it I/O:
//!
//! - [`root`]: forwards the lifecycle (VM start, configuration, timer,
//!   HTTP call responses) to the pipeline;
//! - [`http`]: lends the pipeline to each request;
//! - [`host`]: the only module that calls `proxy_wasm::hostcalls`; it
//!   implements the engine's `Host` trait, every host failure a value.
//!
//! The `meshward` CLI and the Envoy dynamic module run the same pipeline.

mod host;
mod http;
mod root;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(root::MeshwardRoot::default())
    });
}}
