//! The part of Envoy 1.40's dynamic-module ABI this module uses, as safe
//! Rust: two traits for what Envoy offers a request ([`StreamOps`]) and a
//! filter configuration ([`ConfigOps`]), and the few ABI enums we pass.
//!
//! [`crate::ffi`] implements both traits over the raw callbacks; the fuzz
//! target implements them over arbitrary bytes, so everything above this
//! line (the [`crate::host`] adapter and the pipeline) is exercised without
//! Envoy.

/// `envoy_dynamic_module_type_attribute_id` values we read (Envoy 1.40
/// `abi.h`; the enum's order is the ABI).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Attribute {
    /// `connection.mtls` (bool).
    ConnectionMtls = 29,
    /// `connection.uri_san_local_certificate`: the listener certificate's
    /// first URI SAN.
    UriSanLocalCertificate = 36,
    /// `connection.uri_san_peer_certificate`: the peer certificate's first
    /// URI SAN.
    UriSanPeerCertificate = 37,
    /// `connection.sha256_peer_certificate_digest`: 64 lowercase hex chars.
    Sha256PeerCertificateDigest = 38,
}

/// `envoy_dynamic_module_type_log_level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum AbiLogLevel {
    /// Trace.
    Trace = 0,
    /// Debug.
    Debug = 1,
    /// Info.
    Info = 2,
    /// Warn.
    Warn = 3,
    /// Error.
    Error = 4,
}

/// Why an ABI call failed: the callback said so (returned false or a
/// non-success result code, kept here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbiError(pub u32);

/// What Envoy offers during one request's event hook. Borrowed buffers
/// (header names and values, attribute values) are only valid during the
/// hook and until the next header mutation, which is why they are handed to
/// a visitor or copied before returning.
pub trait StreamOps {
    /// Visits every request header in order (repeated names are separate
    /// entries). Names and values are Envoy's bytes, not copied.
    fn for_each_request_header(
        &mut self,
        visit: &mut dyn FnMut(&[u8], &[u8]),
    ) -> Result<(), AbiError>;

    /// A string attribute; `Ok(None)` when the connection has none (no
    /// client certificate, plain-text connection).
    fn attribute_string(&mut self, attribute: Attribute) -> Result<Option<Vec<u8>>, AbiError>;

    /// A boolean attribute; `Ok(None)` when Envoy has no value.
    fn attribute_bool(&mut self, attribute: Attribute) -> Result<Option<bool>, AbiError>;

    /// The string form of a filter-state object (typed objects serialize,
    /// e.g. `envoy.string`); `Ok(None)` when there is none.
    fn filter_state(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, AbiError>;

    /// Stores a string filter-state object (a `StringAccessor`, which access
    /// logs print with `%FILTER_STATE(key:PLAIN)%`).
    fn set_filter_state(&mut self, key: &[u8], value: &[u8]) -> Result<(), AbiError>;

    /// Removes every value of a request header.
    fn remove_request_header(&mut self, name: &[u8]) -> Result<(), AbiError>;

    /// Adds one request header value.
    fn add_request_header(&mut self, name: &[u8], value: &[u8]) -> Result<(), AbiError>;

    /// `sendLocalReply`: status, headers, body and response code details.
    /// For a request Envoy sees as gRPC it answers HTTP 200 trailers-only
    /// and keeps a `grpc-status` given in `headers` (without one it says
    /// `0`, success).
    fn send_local_reply(
        &mut self,
        status: u32,
        headers: &[(&[u8], &[u8])],
        body: &[u8],
        details: &[u8],
    ) -> Result<(), AbiError>;

    /// Adds to a counter defined on this stream's filter configuration.
    fn increment_counter(&mut self, id: usize, by: u64) -> Result<(), AbiError>;

    /// Sets a gauge defined on this stream's filter configuration.
    fn set_gauge(&mut self, id: usize, value: u64) -> Result<(), AbiError>;
}

/// What Envoy offers a filter configuration (on the main thread, or from a
/// worker where the callback says it may be called from any thread).
pub trait ConfigOps {
    /// Defines a counter (only while the configuration is being created).
    fn define_counter(&mut self, name: &[u8]) -> Result<usize, AbiError>;

    /// Adds to a counter defined on this configuration.
    fn increment_counter(&mut self, id: usize, by: u64) -> Result<(), AbiError>;

    /// Defines a gauge (only while the configuration is being created, as
    /// counters).
    fn define_gauge(&mut self, name: &[u8]) -> Result<usize, AbiError>;

    /// Sets a gauge defined on this configuration.
    fn set_gauge(&mut self, id: usize, value: u64) -> Result<(), AbiError>;

    /// Starts an HTTP callout over a cluster (main thread); the answer comes
    /// to `envoy_dynamic_module_on_http_filter_config_http_callout_done`.
    fn http_callout(
        &mut self,
        cluster: &[u8],
        headers: &[(&[u8], &[u8])],
        timeout_ms: u64,
    ) -> Result<u64, AbiError>;
}

/// The answer to an HTTP callout, copied out of Envoy's buffers (callouts
/// are rare: key, revocation and bundle polls).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CalloutAnswer {
    /// Response headers (`:status` included), in Envoy's order.
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    /// The response body, its chunks joined.
    pub body: Vec<u8>,
}

impl CalloutAnswer {
    /// The first value of a header, by name (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v.as_slice())
    }

    /// `:status`, when it is a number.
    pub fn status(&self) -> Option<u16> {
        core::str::from_utf8(self.header(":status")?)
            .ok()?
            .parse()
            .ok()
    }
}

/// Writes a log line through Envoy's `dynamic_modules` logger.
pub trait LogOps {
    /// One line at `level`.
    fn log(&self, level: AbiLogLevel, message: &[u8]);
}
