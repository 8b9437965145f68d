//! The pipeline's [`Host`], implemented over the dynamic-module ABI.
//!
//! One host, [`NativeHost`], generic over the kind of event hook it serves
//! (its [`Scope`]):
//!
//! - [`RequestHost`] ([`RequestScope`]): a request's hook on a worker thread
//!   (request headers): headers, connection attributes, filter state, local
//!   replies, counters and gauges.
//! - [`ConfigHost`] ([`ConfigScope`]): the filter configuration on the main
//!   thread (creation, scheduled ticks, callout answers): counter and gauge
//!   definitions, HTTP callouts and their answers.
//!
//! What every hook does the same way (clock, randomness, plugin and module
//! configuration, shared data, the counter and gauge ids, logging, the tick
//! period) is written once, in `NativeHost`'s `Host` implementation; a scope
//! adds only what its hook can do. Both only move bytes. What a scope
//! cannot do is [`HostError::Unsupported`]: no callouts from a request hook
//! (a callout bound to a stream dies with it; key and bundle fetches run
//! from the configuration). HTTP filters have no timers in Envoy 1.40:
//! `set_tick_period` records the period, and a thread of the module turns it
//! into ticks on the main thread (see [`crate::module`]).

use core::time::Duration;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use meshward_engine::pipeline::{
    response, CallId, HeaderList, Host, HostError, LocalResponse, LogLevel, MetricId,
};

use crate::abi::{AbiError, AbiLogLevel, Attribute, CalloutAnswer, ConfigOps, LogOps, StreamOps};

/// Environment variable with the module configuration (what the wasm build
/// reads from `vm_config.configuration`, e.g. pinned signing keys or the
/// bundle source). It is set by whoever starts Envoy, not by whoever can
/// change the filter's configuration over xDS, which is the point of pinning
/// keys outside it.
pub const MODULE_CONFIG_ENV: &str = "MESHWARD_MODULE_CONFIG";

/// The module configuration, read once per process.
fn module_configuration() -> Option<Vec<u8>> {
    static CONFIG: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    CONFIG
        .get_or_init(|| std::env::var_os(MODULE_CONFIG_ENV).map(|v| v.into_encoded_bytes()))
        .clone()
}

/// Process-wide shared data (the proxy-wasm `shared_data` equivalent): one
/// map for every filter configuration and worker of this Envoy process, which
/// is what lets the inbound and outbound filters share the chain seal key.
fn process_data() -> &'static Mutex<HashMap<String, Vec<u8>>> {
    static DATA: OnceLock<Mutex<HashMap<String, Vec<u8>>>> = OnceLock::new();
    DATA.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The two kinds of metric a filter configuration defines. Envoy keeps
/// their ids apart (a counter and a gauge may both have id 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// A counter.
    Counter,
    /// A gauge.
    Gauge,
}

/// What every host of one filter configuration shares: the plugin
/// configuration bytes, the counters and gauges defined when it was created,
/// and the tick period the pipeline asked for.
#[derive(Debug, Default)]
pub struct ConfigShared {
    /// `filter_config` exactly as Envoy delivered it.
    pub plugin_config: Vec<u8>,
    /// Counter ids by name. Envoy 1.40 lets a filter configuration define
    /// metrics only while it is being created; later definitions of the
    /// same name (a pipeline configured again, a bundle counter bumped on a
    /// tick) find them here.
    pub counters: Mutex<HashMap<String, usize>>,
    /// Gauge ids by name, likewise.
    pub gauges: Mutex<HashMap<String, usize>>,
    /// The tick period the pipeline asked for, in milliseconds (0: none),
    /// shared with the configuration's ticker thread.
    pub tick_period_ms: Arc<AtomicU64>,
}

impl ConfigShared {
    fn ids(&self, kind: Metric) -> &Mutex<HashMap<String, usize>> {
        match kind {
            Metric::Counter => &self.counters,
            Metric::Gauge => &self.gauges,
        }
    }

    fn metric(&self, kind: Metric, name: &str) -> Option<usize> {
        self.ids(kind)
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .copied()
    }

    fn remember(&self, kind: Metric, name: &str, id: usize) {
        self.ids(kind)
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_owned(), id);
    }

    fn set_tick(&self, period: Duration) {
        let ms = u64::try_from(period.as_millis()).unwrap_or(u64::MAX).max(1);
        self.tick_period_ms.store(ms, Ordering::Relaxed);
    }
}

fn abi(err: AbiError) -> HostError {
    HostError::Status(err.0)
}

fn level(level: LogLevel) -> AbiLogLevel {
    match level {
        LogLevel::Trace => AbiLogLevel::Trace,
        LogLevel::Debug => AbiLogLevel::Debug,
        LogLevel::Info => AbiLogLevel::Info,
        LogLevel::Warn => AbiLogLevel::Warn,
        LogLevel::Error => AbiLogLevel::Error,
    }
}

/// Filter-state keys get the prefix the wasm build's objects have
/// (`wasm.<name>`, proxy-wasm's `set_property`), so one access-log format
/// (`%FILTER_STATE(wasm.meshward_decision:PLAIN)%`) serves both builds.
const FILTER_STATE_PREFIX: &str = "wasm.";

/// `FILTER_STATE_PREFIX` + `name`, written into `buf` when it fits (the
/// pipeline's fact names are short constants): no allocation per fact.
fn prefixed_key<'b>(buf: &'b mut [u8; 128], name: &str) -> Cow<'b, str> {
    let len = FILTER_STATE_PREFIX.len() + name.len();
    let written = buf.get_mut(..len).and_then(|key| {
        let (head, tail) = key.split_at_mut_checked(FILTER_STATE_PREFIX.len())?;
        head.copy_from_slice(FILTER_STATE_PREFIX.as_bytes());
        tail.copy_from_slice(name.as_bytes());
        std::str::from_utf8(key).ok()
    });
    match written {
        Some(key) => Cow::Borrowed(key),
        // Longer than the buffer (no pipeline fact is).
        None => Cow::Owned(format!("{FILTER_STATE_PREFIX}{name}")),
    }
}

/// What one kind of event hook can do beyond what [`NativeHost`] does for
/// every hook. The defaults are what a configuration hook has: no request.
pub trait Scope {
    /// See [`Host::request_headers`].
    fn request_headers(&mut self) -> Result<Vec<(String, Vec<u8>)>, HostError> {
        Err(HostError::Unsupported)
    }

    /// See [`Host::request_header_list`].
    fn request_header_list(&mut self) -> Result<HeaderList, HostError> {
        self.request_headers().map(HeaderList::from_bytes)
    }

    /// See [`Host::property`].
    fn property(&mut self, _path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
        Err(HostError::Unsupported)
    }

    /// See [`Host::remove_request_header`].
    fn remove_request_header(&mut self, _name: &str) -> Result<(), HostError> {
        Err(HostError::Unsupported)
    }

    /// See [`Host::add_request_header`].
    fn add_request_header(&mut self, _name: &str, _value: &str) -> Result<(), HostError> {
        Err(HostError::Unsupported)
    }

    /// See [`Host::send_response`].
    fn send_response(&mut self, _response: &LocalResponse) -> Result<(), HostError> {
        Err(HostError::Unsupported)
    }

    /// See [`Host::set_filter_state`]; `key` has the wasm prefix already.
    fn set_filter_state(&mut self, _key: &str, _value: &str) -> Result<(), HostError> {
        Err(HostError::Unsupported)
    }

    /// Defines a metric with Envoy, when this hook still may (the
    /// configuration's creation only).
    fn define_metric(&mut self, _kind: Metric, _name: &[u8]) -> Result<usize, HostError> {
        Err(HostError::Unsupported)
    }

    /// Adds to a counter.
    fn increment_counter(&mut self, id: usize, by: u64) -> Result<(), AbiError>;

    /// Sets a gauge.
    fn set_gauge(&mut self, id: usize, value: u64) -> Result<(), AbiError>;

    /// Starts an HTTP callout (`headers` include `:method`, `:path`, `host`).
    fn callout(
        &mut self,
        _cluster: &str,
        _headers: &[(&[u8], &[u8])],
        _timeout_ms: u64,
    ) -> Result<CallId, HostError> {
        // A callout started from a request is bound to that stream; key and
        // bundle fetches run from the configuration on the main thread.
        Err(HostError::Unsupported)
    }

    /// A header of the callout answer being handled.
    fn callout_response_header(&mut self, _name: &str) -> Result<Option<Vec<u8>>, HostError> {
        Err(HostError::Unsupported)
    }
}

/// The pipeline's host for one event hook of one filter configuration.
pub struct NativeHost<'a, Sc> {
    scope: Sc,
    config: &'a ConfigShared,
    log: &'a dyn LogOps,
}

/// The host of one request hook on a worker thread.
pub type RequestHost<'a, S> = NativeHost<'a, RequestScope<'a, S>>;

/// The host of a filter configuration's hooks on the main thread.
pub type ConfigHost<'a, C> = NativeHost<'a, ConfigScope<'a, C>>;

/// A request's hook: Envoy's stream.
pub struct RequestScope<'a, S> {
    stream: &'a mut S,
}

/// A configuration's hook: Envoy's filter configuration.
pub struct ConfigScope<'a, C> {
    ops: &'a mut C,
    /// Whether Envoy still accepts metric definitions (only while the
    /// configuration is being created).
    defining: bool,
    /// The callout answer being handled, if any.
    answer: Option<&'a CalloutAnswer>,
}

impl<'a, S: StreamOps> RequestHost<'a, S> {
    /// Wraps one request's ABI handle.
    pub fn new(stream: &'a mut S, config: &'a ConfigShared, log: &'a dyn LogOps) -> Self {
        NativeHost {
            scope: RequestScope { stream },
            config,
            log,
        }
    }
}

impl<'a, C: ConfigOps> ConfigHost<'a, C> {
    fn with(
        ops: &'a mut C,
        config: &'a ConfigShared,
        log: &'a dyn LogOps,
        defining: bool,
        answer: Option<&'a CalloutAnswer>,
    ) -> Self {
        NativeHost {
            scope: ConfigScope {
                ops,
                defining,
                answer,
            },
            config,
            log,
        }
    }

    /// The host while Envoy creates the configuration: metrics may be defined.
    pub fn creating(ops: &'a mut C, config: &'a ConfigShared, log: &'a dyn LogOps) -> Self {
        Self::with(ops, config, log, true, None)
    }

    /// The host for later main-thread events (ticks).
    pub fn running(ops: &'a mut C, config: &'a ConfigShared, log: &'a dyn LogOps) -> Self {
        Self::with(ops, config, log, false, None)
    }

    /// The host for a callout's answer (`None`: it failed: timeout, reset).
    pub fn answering(
        ops: &'a mut C,
        config: &'a ConfigShared,
        log: &'a dyn LogOps,
        answer: Option<&'a CalloutAnswer>,
    ) -> Self {
        Self::with(ops, config, log, false, answer)
    }
}

impl<'a, Sc: Scope> NativeHost<'a, Sc> {
    /// A metric's id: defined when the configuration was created, or now if
    /// this hook still may define it.
    fn metric(&mut self, kind: Metric, name: &str) -> Option<MetricId> {
        let id = match self.config.metric(kind, name) {
            Some(id) => id,
            None => {
                let id = self.scope.define_metric(kind, name.as_bytes()).ok()?;
                self.config.remember(kind, name, id);
                id
            }
        };
        MetricId::try_from(id).ok()
    }

    /// Starts a GET over `cluster`.
    fn get(
        &mut self,
        cluster: &str,
        authority: &str,
        path: &str,
        accept: &str,
        extra: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<CallId, HostError> {
        let mut headers: Vec<(&[u8], &[u8])> = vec![
            (b":method", b"GET"),
            (b":path", path.as_bytes()),
            (b"host", authority.as_bytes()),
            (b"accept", accept.as_bytes()),
        ];
        headers.extend(extra.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())));
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        self.scope.callout(cluster, &headers, timeout_ms)
    }
}

impl<Sc: Scope> Host for NativeHost<'_, Sc> {
    fn request_headers(&mut self) -> Result<Vec<(String, Vec<u8>)>, HostError> {
        self.scope.request_headers()
    }

    fn request_header_list(&mut self) -> Result<HeaderList, HostError> {
        self.scope.request_header_list()
    }

    fn property(&mut self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
        self.scope.property(path)
    }

    fn remove_request_header(&mut self, name: &str) -> Result<(), HostError> {
        self.scope.remove_request_header(name)
    }

    fn add_request_header(&mut self, name: &str, value: &str) -> Result<(), HostError> {
        self.scope.add_request_header(name, value)
    }

    fn send_response(&mut self, response: &LocalResponse) -> Result<(), HostError> {
        self.scope.send_response(response)
    }

    fn set_filter_state(&mut self, name: &str, value: &str) -> Result<(), HostError> {
        self.scope
            .set_filter_state(&prefixed_key(&mut [0; 128], name), value)
    }

    fn now_nanos(&mut self) -> Result<u128, HostError> {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .map_err(|_| HostError::Unsupported)
    }

    fn random(&mut self, buf: &mut [u8]) -> Result<(), HostError> {
        getrandom::getrandom(buf).map_err(|e| HostError::Status(e.code().get()))
    }

    fn plugin_configuration(&mut self) -> Result<Option<Vec<u8>>, HostError> {
        Ok(Some(self.config.plugin_config.clone()))
    }

    fn vm_configuration(&mut self) -> Result<Option<Vec<u8>>, HostError> {
        Ok(module_configuration())
    }

    fn shared_data(&mut self, key: &str) -> Result<Option<Vec<u8>>, HostError> {
        Ok(process_data()
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .cloned())
    }

    fn set_shared_data(&mut self, key: &str, value: &[u8]) -> Result<(), HostError> {
        process_data()
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.to_owned(), value.to_vec());
        Ok(())
    }

    fn define_counter(&mut self, name: &str) -> Option<MetricId> {
        self.metric(Metric::Counter, name)
    }

    fn increment(&mut self, id: MetricId, by: u64) {
        // A counter that cannot be bumped changes no decision.
        let _ = self.scope.increment_counter(id as usize, by);
    }

    fn log(&mut self, level: LogLevel, message: &str) {
        self.log.log(self::level(level), message.as_bytes());
    }

    fn dispatch_get(
        &mut self,
        cluster: &str,
        authority: &str,
        path: &str,
        timeout: Duration,
    ) -> Result<CallId, HostError> {
        self.get(cluster, authority, path, "application/json", &[], timeout)
    }

    fn set_tick_period(&mut self, period: Duration) -> Result<(), HostError> {
        self.config.set_tick(period);
        Ok(())
    }

    fn dispatch_get_with_headers(
        &mut self,
        cluster: &str,
        authority: &str,
        path: &str,
        headers: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<CallId, HostError> {
        // As the wasm build asks for a bundle.
        self.get(
            cluster,
            authority,
            path,
            "application/octet-stream",
            headers,
            timeout,
        )
    }

    fn http_call_response_header(&mut self, name: &str) -> Result<Option<Vec<u8>>, HostError> {
        self.scope.callout_response_header(name)
    }

    fn define_gauge(&mut self, name: &str) -> Option<MetricId> {
        self.metric(Metric::Gauge, name)
    }

    fn set_gauge(&mut self, id: MetricId, value: u64) {
        // A gauge that cannot be set only loses visibility.
        let _ = self.scope.set_gauge(id as usize, value);
    }
}

impl<S: StreamOps> Scope for RequestScope<'_, S> {
    fn request_headers(&mut self) -> Result<Vec<(String, Vec<u8>)>, HostError> {
        let mut out = Vec::with_capacity(24);
        self.stream
            .for_each_request_header(&mut |name, value| {
                // Envoy's codecs only let token characters into names; a
                // name that is not UTF-8 anyway keeps its bytes visible as
                // U+FFFD and can never equal a name the pipeline looks for.
                let name = String::from_utf8_lossy(name).into_owned();
                out.push((name, value.to_vec()));
            })
            .map_err(abi)?;
        Ok(out)
    }

    fn request_header_list(&mut self) -> Result<HeaderList, HostError> {
        // Straight from Envoy's map into the list: one copy of each header.
        let mut list = HeaderList::with_capacity(24, 1024);
        self.stream
            .for_each_request_header(&mut |name, value| list.push_bytes(name, value))
            .map_err(abi)?;
        Ok(list)
    }

    fn property(&mut self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
        let attribute = match path {
            ["connection", "sha256_peer_certificate_digest"] => {
                Attribute::Sha256PeerCertificateDigest
            }
            ["connection", "uri_san_peer_certificate"] => Attribute::UriSanPeerCertificate,
            ["connection", "uri_san_local_certificate"] => Attribute::UriSanLocalCertificate,
            ["connection", "mtls"] => {
                // proxy-wasm encodes booleans as one byte.
                return self
                    .stream
                    .attribute_bool(Attribute::ConnectionMtls)
                    .map(|b| b.map(|b| vec![u8::from(b)]))
                    .map_err(abi);
            }
            ["filter_state", key] => {
                return self.stream.filter_state(key.as_bytes()).map_err(abi);
            }
            _ => return Err(HostError::Unsupported),
        };
        // Measured with Envoy 1.40: without a peer certificate the module ABI
        // answers these attributes with an empty string, where proxy-wasm
        // answers "not found". An empty digest or URI SAN says nothing, so it
        // is reported as absent, as the wasm build sees it.
        self.stream
            .attribute_string(attribute)
            .map(|value| value.filter(|v| !v.is_empty()))
            .map_err(abi)
    }

    fn remove_request_header(&mut self, name: &str) -> Result<(), HostError> {
        self.stream
            .remove_request_header(name.as_bytes())
            .map_err(abi)
    }

    fn add_request_header(&mut self, name: &str, value: &str) -> Result<(), HostError> {
        self.stream
            .add_request_header(name.as_bytes(), value.as_bytes())
            .map_err(abi)
    }

    fn send_response(&mut self, response: &LocalResponse) -> Result<(), HostError> {
        let grpc_status = match response.grpc_status {
            Some(code) => Some(code),
            // The pipeline reads a content-type that is not UTF-8 as "not
            // gRPC", but Envoy decides on the bytes; a deny it answers as
            // gRPC without a status would say `0`, success.
            None => envoy_sees_grpc(self.stream).then(|| grpc_status_for_http(response.status)),
        };
        let lines = match grpc_status {
            None => response
                .headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
            Some(code) => grpc_response_headers(response, code),
        };
        let headers: Vec<(&[u8], &[u8])> = lines
            .iter()
            .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
            .collect();
        // One local reply for HTTP and gRPC alike, so Envoy records the
        // details (`%RESPONSE_CODE_DETAILS%`) for both; for gRPC it answers
        // HTTP 200 trailers-only and keeps the `grpc-status` given here.
        let body = if grpc_status.is_some() {
            ""
        } else {
            response.body.as_str()
        };
        self.stream
            .send_local_reply(
                u32::from(response.status),
                &headers,
                body.as_bytes(),
                response.details.as_bytes(),
            )
            .map_err(abi)
    }

    fn set_filter_state(&mut self, key: &str, value: &str) -> Result<(), HostError> {
        self.stream
            .set_filter_state(key.as_bytes(), value.as_bytes())
            .map_err(abi)
    }

    fn increment_counter(&mut self, id: usize, by: u64) -> Result<(), AbiError> {
        self.stream.increment_counter(id, by)
    }

    fn set_gauge(&mut self, id: usize, value: u64) -> Result<(), AbiError> {
        self.stream.set_gauge(id, value)
    }
}

impl<C: ConfigOps> Scope for ConfigScope<'_, C> {
    fn define_metric(&mut self, kind: Metric, name: &[u8]) -> Result<usize, HostError> {
        if !self.defining {
            return Err(HostError::Unsupported);
        }
        match kind {
            Metric::Counter => self.ops.define_counter(name),
            Metric::Gauge => self.ops.define_gauge(name),
        }
        .map_err(abi)
    }

    fn increment_counter(&mut self, id: usize, by: u64) -> Result<(), AbiError> {
        self.ops.increment_counter(id, by)
    }

    fn set_gauge(&mut self, id: usize, value: u64) -> Result<(), AbiError> {
        self.ops.set_gauge(id, value)
    }

    fn callout(
        &mut self,
        cluster: &str,
        headers: &[(&[u8], &[u8])],
        timeout_ms: u64,
    ) -> Result<CallId, HostError> {
        let id = self
            .ops
            .http_callout(cluster.as_bytes(), headers, timeout_ms)
            .map_err(abi)?;
        CallId::try_from(id).map_err(|_| HostError::BadArgument)
    }

    fn callout_response_header(&mut self, name: &str) -> Result<Option<Vec<u8>>, HostError> {
        Ok(self
            .answer
            .and_then(|answer| answer.header(name))
            .map(<[u8]>::to_vec))
    }
}

/// Whether Envoy answers a local reply to this request as gRPC: its
/// `content-type` (the first) is `application/grpc`, exactly or followed by
/// `+` (Envoy's `Grpc::Common::hasGrpcContentType`, on the raw bytes).
fn envoy_sees_grpc(stream: &mut impl StreamOps) -> bool {
    const GRPC: &[u8] = b"application/grpc";
    let mut content_type: Option<Vec<u8>> = None;
    let read = stream.for_each_request_header(&mut |name, value| {
        if content_type.is_none() && name.eq_ignore_ascii_case(b"content-type") {
            content_type = Some(value.to_vec());
        }
    });
    // Unreadable headers: assume gRPC, so a deny can never read as success.
    if read.is_err() {
        return true;
    }
    content_type.is_some_and(|v| {
        v.strip_prefix(GRPC)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(b"+"))
    })
}

/// The gRPC status of a local reply the pipeline made for plain HTTP (as
/// Envoy's `httpToGrpcStatus` maps it for the statuses the filter sends).
fn grpc_status_for_http(status: u16) -> u32 {
    match status {
        401 => response::GRPC_UNAUTHENTICATED,
        403 => response::GRPC_PERMISSION_DENIED,
        // UNAVAILABLE: the filter failed, not the caller.
        503 => 14,
        // UNKNOWN.
        _ => 2,
    }
}

/// The headers of a gRPC deny: `grpc-status`, `grpc-message` and ours
/// (Envoy sets `:status` 200 and the gRPC content type itself).
pub fn grpc_response_headers(response: &LocalResponse, code: u32) -> Vec<(String, String)> {
    let mut lines = vec![
        ("grpc-status".to_owned(), code.to_string()),
        (
            "grpc-message".to_owned(),
            grpc_percent_encode(&response.details),
        ),
    ];
    for (name, value) in &response.headers {
        let taken = matches!(
            *name,
            "content-type" | "content-length" | "grpc-status" | "grpc-message"
        ) || name.starts_with(':');
        if !taken {
            lines.push(((*name).to_owned(), value.clone()));
        }
    }
    lines
}

/// `grpc-message` encoding (gRPC over HTTP/2): bytes outside printable ASCII,
/// and `%`, become `%XX`.
fn grpc_percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request whose attributes name themselves, recording what the host
    /// asked of it.
    #[derive(Default)]
    struct Recorder {
        filter_state_set: Vec<(Vec<u8>, Vec<u8>)>,
        removed: Vec<Vec<u8>>,
        gauges: Vec<(usize, u64)>,
    }

    impl StreamOps for Recorder {
        fn for_each_request_header(
            &mut self,
            visit: &mut dyn FnMut(&[u8], &[u8]),
        ) -> Result<(), AbiError> {
            visit(b":path", b"/a");
            visit(b"x-obs", b"\xff\x80");
            visit(b"x-obs", b"second");
            Ok(())
        }

        fn attribute_string(&mut self, attribute: Attribute) -> Result<Option<Vec<u8>>, AbiError> {
            Ok(match attribute {
                Attribute::Sha256PeerCertificateDigest => Some(b"digest".to_vec()),
                Attribute::UriSanPeerCertificate => Some(b"peer".to_vec()),
                Attribute::UriSanLocalCertificate => Some(Vec::new()),
                Attribute::ConnectionMtls => return Err(AbiError(9)),
            })
        }

        fn attribute_bool(&mut self, _attribute: Attribute) -> Result<Option<bool>, AbiError> {
            Ok(Some(true))
        }

        fn filter_state(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, AbiError> {
            Ok((key == b"io.istio.peer_principal").then(|| b"spiffe://x/y".to_vec()))
        }

        fn set_filter_state(&mut self, key: &[u8], value: &[u8]) -> Result<(), AbiError> {
            self.filter_state_set.push((key.to_vec(), value.to_vec()));
            Ok(())
        }

        fn remove_request_header(&mut self, name: &[u8]) -> Result<(), AbiError> {
            self.removed.push(name.to_vec());
            Ok(())
        }

        fn add_request_header(&mut self, _name: &[u8], _value: &[u8]) -> Result<(), AbiError> {
            Err(AbiError(0))
        }

        fn send_local_reply(
            &mut self,
            _status: u32,
            _headers: &[(&[u8], &[u8])],
            _body: &[u8],
            _details: &[u8],
        ) -> Result<(), AbiError> {
            Ok(())
        }

        fn increment_counter(&mut self, _id: usize, _by: u64) -> Result<(), AbiError> {
            Ok(())
        }

        fn set_gauge(&mut self, id: usize, value: u64) -> Result<(), AbiError> {
            self.gauges.push((id, value));
            Ok(())
        }
    }

    struct Quiet;

    impl LogOps for Quiet {
        fn log(&self, _level: AbiLogLevel, _message: &[u8]) {}
    }

    #[test]
    fn filter_state_keys_are_prefixed_whatever_their_length() {
        assert_eq!(
            prefixed_key(&mut [0; 128], "meshward_decision"),
            "wasm.meshward_decision"
        );
        let long = "n".repeat(200);
        assert_eq!(prefixed_key(&mut [0; 128], &long), format!("wasm.{long}"));
    }

    #[test]
    fn a_request_host_moves_bytes_and_keeps_failures_as_values() {
        let mut stream = Recorder::default();
        let shared = ConfigShared {
            plugin_config: b"{}".to_vec(),
            ..ConfigShared::default()
        };
        shared.remember(Metric::Counter, "meshward.decision.allow", 7);
        shared.remember(Metric::Gauge, "meshward.bundle.revision", 7);
        let mut host = RequestHost::new(&mut stream, &shared, &Quiet);

        let headers = host.request_headers().unwrap();
        assert_eq!(headers.len(), 3, "repeated names stay separate entries");
        assert_eq!(headers[1], ("x-obs".to_owned(), vec![0xff, 0x80]));
        // Read in place, the list holds what the copying path holds.
        let list = host.request_header_list().unwrap();
        assert_eq!(list, HeaderList::from_bytes(headers));
        assert_eq!(list.all("x-obs"), ["\u{fffd}\u{fffd}", "second"]);

        let digest = ["connection", "sha256_peer_certificate_digest"];
        assert_eq!(host.property(&digest), Ok(Some(b"digest".to_vec())));
        let peer = ["connection", "uri_san_peer_certificate"];
        assert_eq!(host.property(&peer), Ok(Some(b"peer".to_vec())));
        let local = ["connection", "uri_san_local_certificate"];
        assert_eq!(host.property(&local), Ok(None), "empty means absent");
        assert_eq!(host.property(&["connection", "mtls"]), Ok(Some(vec![1])));
        let istio = ["filter_state", "io.istio.peer_principal"];
        assert_eq!(host.property(&istio), Ok(Some(b"spiffe://x/y".to_vec())));
        assert_eq!(
            host.property(&["source", "address"]),
            Err(HostError::Unsupported)
        );

        assert_eq!(
            host.add_request_header("x-a", "b"),
            Err(HostError::Status(0))
        );
        host.remove_request_header("x-meshward-peer").unwrap();
        host.set_filter_state("meshward_decision", "deny").unwrap();
        assert_eq!(host.define_counter("meshward.decision.allow"), Some(7));
        assert_eq!(host.define_counter("never.defined"), None);
        assert_eq!(host.define_gauge("meshward.bundle.revision"), Some(7));
        assert_eq!(host.define_gauge("never.defined"), None);
        host.set_gauge(7, 3);
        assert_eq!(
            host.http_call_response_header("etag"),
            Err(HostError::Unsupported)
        );
        assert_eq!(host.plugin_configuration(), Ok(Some(b"{}".to_vec())));
        assert_eq!(
            host.dispatch_get("c", "a", "/p", Duration::from_secs(1)),
            Err(HostError::Unsupported)
        );
        host.set_tick_period(Duration::from_secs(2)).unwrap();

        assert_eq!(stream.removed, [b"x-meshward-peer".to_vec()]);
        assert_eq!(stream.gauges, [(7, 3)]);
        assert_eq!(
            stream.filter_state_set,
            [(b"wasm.meshward_decision".to_vec(), b"deny".to_vec())]
        );
        assert_eq!(
            shared
                .tick_period_ms
                .load(std::sync::atomic::Ordering::Relaxed),
            2000
        );
    }

    #[test]
    fn grpc_deny_carries_the_grpc_status_and_our_headers() {
        let response = LocalResponse {
            status: 403,
            grpc_status: Some(7),
            headers: vec![
                ("content-type", "application/json".to_owned()),
                ("x-meshward-reason", "no_matching_rule".to_owned()),
            ],
            body: String::new(),
            details: "meshward_denied{no_matching_rule} é%".to_owned(),
        };
        let lines = grpc_response_headers(&response, 7);
        let get = |n: &str| {
            lines
                .iter()
                .filter(|(k, _)| k == n)
                .map(|(_, v)| v.as_str())
                .collect::<Vec<_>>()
        };
        assert!(get(":status").is_empty(), "Envoy sets it (200)");
        assert!(get("content-type").is_empty(), "Envoy sets it");
        assert_eq!(get("grpc-status"), ["7"]);
        assert_eq!(
            get("grpc-message"),
            ["meshward_denied{no_matching_rule} %C3%A9%25"]
        );
        assert_eq!(get("x-meshward-reason"), ["no_matching_rule"]);
    }

    /// Header lines as bytes.
    type Lines = Vec<(Vec<u8>, Vec<u8>)>;

    /// A configuration that records definitions and callouts.
    #[derive(Default)]
    struct Config {
        defined: Vec<(Metric, Vec<u8>)>,
        gauges: Vec<(usize, u64)>,
        callouts: Vec<(Vec<u8>, Lines, u64)>,
    }

    impl ConfigOps for Config {
        fn define_counter(&mut self, name: &[u8]) -> Result<usize, AbiError> {
            self.defined.push((Metric::Counter, name.to_vec()));
            Ok(self.defined.len())
        }

        fn increment_counter(&mut self, _id: usize, _by: u64) -> Result<(), AbiError> {
            Ok(())
        }

        fn define_gauge(&mut self, name: &[u8]) -> Result<usize, AbiError> {
            self.defined.push((Metric::Gauge, name.to_vec()));
            Ok(0)
        }

        fn set_gauge(&mut self, id: usize, value: u64) -> Result<(), AbiError> {
            self.gauges.push((id, value));
            Ok(())
        }

        fn http_callout(
            &mut self,
            cluster: &[u8],
            headers: &[(&[u8], &[u8])],
            timeout_ms: u64,
        ) -> Result<u64, AbiError> {
            let headers = headers
                .iter()
                .map(|(k, v)| (k.to_vec(), v.to_vec()))
                .collect();
            self.callouts.push((cluster.to_vec(), headers, timeout_ms));
            Ok(41)
        }
    }

    #[test]
    fn metrics_are_defined_only_while_the_configuration_is_created() {
        let shared = ConfigShared::default();
        let mut ops = Config::default();
        let mut host = ConfigHost::creating(&mut ops, &shared, &Quiet);
        assert_eq!(host.define_counter("c"), Some(1));
        assert_eq!(host.define_gauge("g"), Some(0), "its own id space");
        assert_eq!(host.define_counter("c"), Some(1), "defined once");
        host.set_gauge(0, 5);

        let mut host = ConfigHost::running(&mut ops, &shared, &Quiet);
        assert_eq!(host.define_counter("c"), Some(1));
        assert_eq!(host.define_gauge("g"), Some(0));
        assert_eq!(host.define_counter("late"), None, "Envoy has frozen them");
        assert_eq!(host.define_gauge("late"), None);
        assert_eq!(
            ops.defined,
            [
                (Metric::Counter, b"c".to_vec()),
                (Metric::Gauge, b"g".to_vec())
            ]
        );
        assert_eq!(ops.gauges, [(0, 5)]);
    }

    #[test]
    fn a_bundle_poll_is_conditional_and_its_answer_shows_its_etag() {
        let shared = ConfigShared::default();
        let mut ops = Config::default();
        let mut host = ConfigHost::running(&mut ops, &shared, &Quiet);
        let call = host.dispatch_get_with_headers(
            "bundles",
            "bundles.local",
            "/p.bundle",
            &[("if-none-match", "\"abc\"")],
            Duration::from_millis(1500),
        );
        assert_eq!(call, Ok(41));
        assert_eq!(
            host.http_call_response_header("etag"),
            Ok(None),
            "no answer being handled"
        );
        let (cluster, headers, timeout) = &ops.callouts[0];
        assert_eq!(cluster, b"bundles");
        assert_eq!(*timeout, 1500);
        let text: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| {
                (
                    core::str::from_utf8(k).unwrap(),
                    core::str::from_utf8(v).unwrap(),
                )
            })
            .collect();
        assert_eq!(
            text,
            [
                (":method", "GET"),
                (":path", "/p.bundle"),
                ("host", "bundles.local"),
                ("accept", "application/octet-stream"),
                ("if-none-match", "\"abc\""),
            ]
        );

        let answer = CalloutAnswer {
            headers: vec![
                (b":status".to_vec(), b"200".to_vec()),
                (b"ETag".to_vec(), b"\"def\"".to_vec()),
            ],
            body: b"bundle".to_vec(),
        };
        assert_eq!(answer.status(), Some(200));
        let mut host = ConfigHost::answering(&mut ops, &shared, &Quiet, Some(&answer));
        assert_eq!(
            host.http_call_response_header("etag"),
            Ok(Some(b"\"def\"".to_vec()))
        );
        assert_eq!(host.http_call_response_header("last-modified"), Ok(None));
    }

    /// A request with these headers that records its one local reply.
    #[derive(Default)]
    struct Replies {
        headers: Lines,
        sent: Vec<(u32, Lines, Vec<u8>, Vec<u8>)>,
    }

    impl StreamOps for Replies {
        fn for_each_request_header(
            &mut self,
            visit: &mut dyn FnMut(&[u8], &[u8]),
        ) -> Result<(), AbiError> {
            for (k, v) in &self.headers {
                visit(k, v);
            }
            Ok(())
        }

        fn attribute_string(&mut self, _a: Attribute) -> Result<Option<Vec<u8>>, AbiError> {
            Ok(None)
        }

        fn attribute_bool(&mut self, _a: Attribute) -> Result<Option<bool>, AbiError> {
            Ok(None)
        }

        fn filter_state(&mut self, _key: &[u8]) -> Result<Option<Vec<u8>>, AbiError> {
            Ok(None)
        }

        fn set_filter_state(&mut self, _key: &[u8], _value: &[u8]) -> Result<(), AbiError> {
            Ok(())
        }

        fn remove_request_header(&mut self, _name: &[u8]) -> Result<(), AbiError> {
            Ok(())
        }

        fn add_request_header(&mut self, _name: &[u8], _value: &[u8]) -> Result<(), AbiError> {
            Ok(())
        }

        fn send_local_reply(
            &mut self,
            status: u32,
            headers: &[(&[u8], &[u8])],
            body: &[u8],
            details: &[u8],
        ) -> Result<(), AbiError> {
            let headers = headers
                .iter()
                .map(|(k, v)| (k.to_vec(), v.to_vec()))
                .collect();
            self.sent
                .push((status, headers, body.to_vec(), details.to_vec()));
            Ok(())
        }

        fn increment_counter(&mut self, _id: usize, _by: u64) -> Result<(), AbiError> {
            Ok(())
        }

        fn set_gauge(&mut self, _id: usize, _value: u64) -> Result<(), AbiError> {
            Ok(())
        }
    }

    fn http_deny() -> LocalResponse {
        LocalResponse {
            status: 403,
            grpc_status: None,
            headers: vec![("x-meshward-reason", "no_matching_rule".to_owned())],
            body: "{}".to_owned(),
            details: "meshward_denied{no_matching_rule}".to_owned(),
        }
    }

    fn grpc_status_sent(stream: &Replies) -> Option<&[u8]> {
        stream.sent[0]
            .1
            .iter()
            .find(|(k, _)| k == b"grpc-status")
            .map(|(_, v)| v.as_slice())
    }

    #[test]
    fn every_local_reply_carries_its_details_and_a_grpc_one_its_status() {
        let shared = ConfigShared::default();
        // Plain HTTP: the pipeline's reply as it is.
        let mut stream = Replies::default();
        RequestHost::new(&mut stream, &shared, &Quiet)
            .send_response(&http_deny())
            .unwrap();
        let (status, _, body, details) = &stream.sent[0];
        assert_eq!((*status, body.as_slice()), (403, b"{}".as_slice()));
        assert_eq!(details, b"meshward_denied{no_matching_rule}");
        assert_eq!(grpc_status_sent(&stream), None);

        // gRPC as the pipeline saw it: status 7, no body (Envoy would turn
        // a body into `grpc-message`), the same details.
        let mut stream = Replies::default();
        let grpc = LocalResponse {
            grpc_status: Some(7),
            body: String::new(),
            ..http_deny()
        };
        RequestHost::new(&mut stream, &shared, &Quiet)
            .send_response(&grpc)
            .unwrap();
        assert_eq!(grpc_status_sent(&stream), Some(b"7".as_slice()));
        assert_eq!(stream.sent[0].3, b"meshward_denied{no_matching_rule}");

        // gRPC to Envoy only (a content-type that is not UTF-8): Envoy
        // would say 0 without a status, so the module gives one.
        let mut stream = Replies {
            headers: vec![(b"content-type".to_vec(), b"application/grpc+\xff".to_vec())],
            ..Replies::default()
        };
        RequestHost::new(&mut stream, &shared, &Quiet)
            .send_response(&http_deny())
            .unwrap();
        assert_eq!(grpc_status_sent(&stream), Some(b"7".as_slice()));
        assert!(
            stream.sent[0].2.is_empty(),
            "no body to become grpc-message"
        );

        // Not gRPC to Envoy (`application/grpc-web`): plain HTTP.
        let mut stream = Replies {
            headers: vec![(b"content-type".to_vec(), b"application/grpc-web".to_vec())],
            ..Replies::default()
        };
        RequestHost::new(&mut stream, &shared, &Quiet)
            .send_response(&http_deny())
            .unwrap();
        assert_eq!(grpc_status_sent(&stream), None);
    }
}
