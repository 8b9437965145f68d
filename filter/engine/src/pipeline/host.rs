//! What the pipeline needs from the proxy it runs in, as one trait.
//!
//! A host is a thin shell: the proxy-wasm filter (`filter/wasm`), the Envoy
//! dynamic module (`filter/native`), the `meshward` CLI and the
//! [`FakeHost`](super::fake::FakeHost) of the tests each implement [`Host`]
//! by moving bytes between their proxy (or the command line) and the
//! pipeline. None of them decides anything: every call below either reads a
//! fact, applies an outcome the pipeline chose, or reports.
//!
//! Every fallible call returns [`HostError`], which keeps the host's own
//! status so a failure can be logged precisely; the pipeline turns any
//! failure on the request path into a deny (fail closed).

use core::time::Duration;

use super::headers::HeaderList;

/// Why a host call failed. `Copy`, with the host's status kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// The host has no such value (a property, a shared-data key).
    #[error("not found")]
    NotFound,
    /// The host refused the arguments.
    #[error("bad argument")]
    BadArgument,
    /// This host cannot do that at all (a CLI has no HTTP callouts, a native
    /// HTTP filter has no timers).
    #[error("not supported by this host")]
    Unsupported,
    /// Any other failure, with the host's numeric status (proxy-wasm
    /// `Status`, or the dynamic-module ABI's result code).
    #[error("host status {0}")]
    Status(u32),
}

/// Log levels, as Envoy has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Very verbose.
    Trace,
    /// Diagnostic detail.
    Debug,
    /// Normal operation (audit lines, loaded policies).
    Info,
    /// Something an operator should look at.
    Warn,
    /// Something failed.
    Error,
}

/// A counter's id as the host defined it.
pub type MetricId = u32;

/// A pending HTTP callout's id as the host gave it.
pub type CallId = u32;

/// A local response that answers the request in place of the upstream:
/// everything a host needs to send it, chosen by the pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResponse {
    /// HTTP status (401 or 403 for a deny). For a gRPC request a host that
    /// can send a gRPC status sends HTTP 200 with [`LocalResponse::grpc_status`].
    pub status: u16,
    /// `grpc-status` for gRPC requests: 16 (UNAUTHENTICATED) for a 401,
    /// 7 (PERMISSION_DENIED) for a 403. `None` for plain HTTP.
    pub grpc_status: Option<u32>,
    /// Response headers (name, value).
    pub headers: Vec<(&'static str, String)>,
    /// Response body (JSON for HTTP, empty for gRPC).
    pub body: String,
    /// Envoy's response code details (`%RESPONSE_CODE_DETAILS%`), e.g.
    /// `meshward_denied{no_matching_rule}`.
    pub details: String,
}

/// Everything the pipeline asks of its proxy.
///
/// Request-scoped calls act on the request being decided; lifecycle calls
/// (configuration, timers, callouts) on the filter instance. A host that
/// cannot do something returns [`HostError::Unsupported`].
pub trait Host {
    // --- the request -----------------------------------------------------

    /// Every request header in one call, in order, repeated names kept as
    /// separate entries. Values are bytes: header values may carry obs-text
    /// bytes that are not UTF-8.
    fn request_headers(&mut self) -> Result<Vec<(String, Vec<u8>)>, HostError>;

    /// The request headers as the pipeline keeps them. The default copies
    /// [`Host::request_headers`]; a host that can lend its serialized header
    /// map keeps it as is ([`HeaderList::from_map_bytes`]).
    fn request_header_list(&mut self) -> Result<HeaderList, HostError> {
        self.request_headers().map(HeaderList::from_bytes)
    }

    /// A property (connection attribute, filter-state object) by path, e.g.
    /// `["connection", "sha256_peer_certificate_digest"]` or
    /// `["filter_state", "io.istio.peer_principal"]`. `Ok(None)` when the
    /// host has none.
    fn property(&mut self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError>;

    /// Removes a request header (every value of it).
    fn remove_request_header(&mut self, name: &str) -> Result<(), HostError>;

    /// Adds a request header value (the pipeline removes earlier copies first
    /// where it must).
    fn add_request_header(&mut self, name: &str, value: &str) -> Result<(), HostError>;

    /// Answers the request locally; the request does not go on.
    fn send_response(&mut self, response: &LocalResponse) -> Result<(), HostError>;

    /// Publishes a decision fact where Envoy's access loggers read it
    /// (filter state). Hosts without such a channel return `Unsupported`.
    fn set_filter_state(&mut self, name: &str, value: &str) -> Result<(), HostError>;

    // --- clock and randomness ---------------------------------------------

    /// Unix time in nanoseconds, from the host's clock.
    fn now_nanos(&mut self) -> Result<u128, HostError>;

    /// Fills `buf` from a cryptographically secure source.
    fn random(&mut self, buf: &mut [u8]) -> Result<(), HostError>;

    // --- configuration ----------------------------------------------------

    /// The plugin configuration bytes, if any were delivered.
    fn plugin_configuration(&mut self) -> Result<Option<Vec<u8>>, HostError>;

    /// The VM (or module) configuration bytes, where keys may be pinned
    /// outside the plugin configuration.
    fn vm_configuration(&mut self) -> Result<Option<Vec<u8>>, HostError>;

    /// An environment variable of the VM (Envoy's
    /// `vm_config.environment_variables`, which Istio sets from
    /// `WasmPlugin.vmConfig.env`): another place keys may be pinned. Hosts
    /// without a VM environment keep the default: none.
    fn environment_variable(&mut self, _name: &str) -> Result<Option<String>, HostError> {
        Ok(None)
    }

    // --- data shared by every worker of this proxy ------------------------

    /// A value of the process-wide shared data.
    fn shared_data(&mut self, key: &str) -> Result<Option<Vec<u8>>, HostError>;

    /// Writes a value of the process-wide shared data.
    fn set_shared_data(&mut self, key: &str, value: &[u8]) -> Result<(), HostError>;

    // --- stats and logs ----------------------------------------------------

    /// Defines a counter; `None` when the host refuses (the filter still works).
    fn define_counter(&mut self, name: &str) -> Option<MetricId>;

    /// Adds `by` to a counter.
    fn increment(&mut self, id: MetricId, by: u64);

    /// Writes a log line through the proxy's logger.
    fn log(&mut self, level: LogLevel, message: &str);

    // --- callouts and timers (key and revocation fetches) -----------------

    /// Starts an HTTP GET over a cluster of the proxy; the answer comes back
    /// through [`Pipeline::on_http_call_response`](super::Pipeline::on_http_call_response).
    fn dispatch_get(
        &mut self,
        cluster: &str,
        authority: &str,
        path: &str,
        timeout: Duration,
    ) -> Result<CallId, HostError>;

    /// Asks for [`Pipeline::on_tick`](super::Pipeline::on_tick) every `period`.
    fn set_tick_period(&mut self, period: Duration) -> Result<(), HostError>;

    // --- bundle pulls (default implementations keep other hosts working) ---

    /// [`Host::dispatch_get`] with extra request headers (`if-none-match`
    /// for conditional bundle polls). The default drops the headers: every
    /// poll is then a full GET, which is correct, only costlier.
    fn dispatch_get_with_headers(
        &mut self,
        cluster: &str,
        authority: &str,
        path: &str,
        headers: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<CallId, HostError> {
        let _ = headers;
        self.dispatch_get(cluster, authority, path, timeout)
    }

    /// A header of the callout response being handled, read during
    /// [`Pipeline::on_http_call_response`](super::Pipeline::on_http_call_response)
    /// (the bundle's `etag`). The default has none.
    fn http_call_response_header(&mut self, name: &str) -> Result<Option<Vec<u8>>, HostError> {
        let _ = name;
        Err(HostError::Unsupported)
    }

    /// Defines a gauge (the active bundle revision); `None` when the host
    /// has no gauges (the default).
    fn define_gauge(&mut self, name: &str) -> Option<MetricId> {
        let _ = name;
        None
    }

    /// Sets a gauge defined by [`Host::define_gauge`].
    fn set_gauge(&mut self, id: MetricId, value: u64) {
        let _ = (id, value);
    }
}
