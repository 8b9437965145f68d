//! The pipeline's [`Host`], implemented over the dynamic-module ABI.
//!
//! Two hosts, one per kind of event hook:
//!
//! - [`RequestHost`]: a request's hook on a worker thread (request headers):
//!   headers, connection attributes, filter state, local replies, counters.
//! - [`ConfigHost`]: the filter configuration on the main thread (creation,
//!   scheduled ticks, callout answers): counter definitions, HTTP callouts.
//!
//! Both only move bytes. What a host cannot do here is
//! [`HostError::Unsupported`]: no callouts from a request hook (a callout
//! bound to a stream dies with it; key fetches run from the configuration).
//! HTTP filters have no timers in Envoy 1.40: `set_tick_period` records the
//! period, and a thread of the module turns it into ticks on the main thread
//! (see [`crate::module`]).

use core::time::Duration;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use meshward_engine::pipeline::{CallId, Host, HostError, LocalResponse, LogLevel, MetricId};

use crate::abi::{AbiError, AbiLogLevel, Attribute, ConfigOps, LogOps, StreamOps};

/// Environment variable with the module configuration (what the wasm build
/// reads from `vm_config.configuration`, e.g. pinned signing keys). It is set
/// by whoever starts Envoy, not by whoever can change the filter's
/// configuration over xDS, which is the point of pinning keys outside it.
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

/// What every host of one filter configuration shares: the plugin
/// configuration bytes, the counters defined when it was created, and the
/// tick period the pipeline asked for.
#[derive(Debug, Default)]
pub struct ConfigShared {
    /// `filter_config` exactly as Envoy delivered it.
    pub plugin_config: Vec<u8>,
    /// Counter ids by name. Envoy 1.40 lets a filter configuration define
    /// counters only while it is being created; later definitions of the
    /// same name (a pipeline configured again on another thread) find them
    /// here.
    pub counters: Mutex<HashMap<String, usize>>,
    /// The tick period the pipeline asked for, in milliseconds (0: none),
    /// shared with the configuration's ticker thread.
    pub tick_period_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl ConfigShared {
    fn counter(&self, name: &str) -> Option<usize> {
        self.counters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .copied()
    }

    fn remember_counter(&self, name: &str, id: usize) {
        self.counters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_owned(), id);
    }

    fn set_tick(&self, period: Duration) {
        let ms = u64::try_from(period.as_millis()).unwrap_or(u64::MAX).max(1);
        self.tick_period_ms
            .store(ms, std::sync::atomic::Ordering::Relaxed);
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

fn now_nanos() -> Result<u128, HostError> {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .map_err(|_| HostError::Unsupported)
}

fn random(buf: &mut [u8]) -> Result<(), HostError> {
    getrandom::getrandom(buf).map_err(|e| HostError::Status(e.code().get()))
}

fn shared_data(key: &str) -> Option<Vec<u8>> {
    process_data()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(key)
        .cloned()
}

fn set_shared_data(key: &str, value: &[u8]) {
    process_data()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(key.to_owned(), value.to_vec());
}

/// Filter-state keys get the prefix the wasm build's objects have
/// (`wasm.<name>`, proxy-wasm's `set_property`), so one access-log format
/// (`%FILTER_STATE(wasm.meshward_decision:PLAIN)%`) serves both builds.
const FILTER_STATE_PREFIX: &str = "wasm.";

/// The host of one request hook on a worker thread.
pub struct RequestHost<'a, S: StreamOps> {
    stream: &'a mut S,
    config: &'a ConfigShared,
    log: &'a dyn LogOps,
}

impl<'a, S: StreamOps> RequestHost<'a, S> {
    /// Wraps one request's ABI handle.
    pub fn new(stream: &'a mut S, config: &'a ConfigShared, log: &'a dyn LogOps) -> Self {
        RequestHost {
            stream,
            config,
            log,
        }
    }
}

impl<S: StreamOps> Host for RequestHost<'_, S> {
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
        match response.grpc_status {
            None => {
                let headers: Vec<(&[u8], &[u8])> = response
                    .headers
                    .iter()
                    .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
                    .collect();
                self.stream
                    .send_local_reply(
                        u32::from(response.status),
                        &headers,
                        response.body.as_bytes(),
                        response.details.as_bytes(),
                    )
                    .map_err(abi)
            }
            Some(code) => {
                let lines = grpc_response_headers(response, code);
                let headers: Vec<(&[u8], &[u8])> = lines
                    .iter()
                    .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
                    .collect();
                self.stream
                    .send_response_headers_only(&headers)
                    .map_err(abi)
            }
        }
    }

    fn set_filter_state(&mut self, name: &str, value: &str) -> Result<(), HostError> {
        let key = format!("{FILTER_STATE_PREFIX}{name}");
        self.stream
            .set_filter_state(key.as_bytes(), value.as_bytes())
            .map_err(abi)
    }

    fn now_nanos(&mut self) -> Result<u128, HostError> {
        now_nanos()
    }

    fn random(&mut self, buf: &mut [u8]) -> Result<(), HostError> {
        random(buf)
    }

    fn plugin_configuration(&mut self) -> Result<Option<Vec<u8>>, HostError> {
        Ok(Some(self.config.plugin_config.clone()))
    }

    fn vm_configuration(&mut self) -> Result<Option<Vec<u8>>, HostError> {
        Ok(module_configuration())
    }

    fn shared_data(&mut self, key: &str) -> Result<Option<Vec<u8>>, HostError> {
        Ok(shared_data(key))
    }

    fn set_shared_data(&mut self, key: &str, value: &[u8]) -> Result<(), HostError> {
        set_shared_data(key, value);
        Ok(())
    }

    fn define_counter(&mut self, name: &str) -> Option<MetricId> {
        // Only counters defined when the configuration was created exist.
        self.config
            .counter(name)
            .and_then(|id| MetricId::try_from(id).ok())
    }

    fn increment(&mut self, id: MetricId, by: u64) {
        // A counter that cannot be bumped changes no decision.
        let _ = self.stream.increment_counter(id as usize, by);
    }

    fn log(&mut self, level: LogLevel, message: &str) {
        self.log.log(self::level(level), message.as_bytes());
    }

    fn dispatch_get(
        &mut self,
        _cluster: &str,
        _authority: &str,
        _path: &str,
        _timeout: Duration,
    ) -> Result<CallId, HostError> {
        // A callout started from a request is bound to that stream; key
        // fetches run from the configuration on the main thread instead.
        Err(HostError::Unsupported)
    }

    fn set_tick_period(&mut self, period: Duration) -> Result<(), HostError> {
        self.config.set_tick(period);
        Ok(())
    }
}

/// The headers of a gRPC deny: HTTP 200, `grpc-status` and `grpc-message`,
/// as a trailers-only response. (Envoy 1.40's local reply for a gRPC request
/// sent from a dynamic module answers `grpc-status: 0`, success, whatever
/// the HTTP status: measured, so the module builds the answer itself.)
pub fn grpc_response_headers(response: &LocalResponse, code: u32) -> Vec<(String, String)> {
    let mut lines = vec![
        (":status".to_owned(), "200".to_owned()),
        ("content-type".to_owned(), "application/grpc".to_owned()),
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

/// The host of a filter configuration's hooks on the main thread.
pub struct ConfigHost<'a, C: ConfigOps> {
    ops: &'a mut C,
    config: &'a ConfigShared,
    log: &'a dyn LogOps,
    /// Whether Envoy still accepts counter definitions (only while the
    /// configuration is being created).
    defining: bool,
}

impl<'a, C: ConfigOps> ConfigHost<'a, C> {
    /// The host while Envoy creates the configuration: counters may be defined.
    pub fn creating(ops: &'a mut C, config: &'a ConfigShared, log: &'a dyn LogOps) -> Self {
        ConfigHost {
            ops,
            config,
            log,
            defining: true,
        }
    }

    /// The host for later main-thread events (ticks, callout answers).
    pub fn running(ops: &'a mut C, config: &'a ConfigShared, log: &'a dyn LogOps) -> Self {
        ConfigHost {
            ops,
            config,
            log,
            defining: false,
        }
    }
}

impl<C: ConfigOps> Host for ConfigHost<'_, C> {
    fn request_headers(&mut self) -> Result<Vec<(String, Vec<u8>)>, HostError> {
        Err(HostError::Unsupported)
    }

    fn property(&mut self, _path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
        Err(HostError::Unsupported)
    }

    fn remove_request_header(&mut self, _name: &str) -> Result<(), HostError> {
        Err(HostError::Unsupported)
    }

    fn add_request_header(&mut self, _name: &str, _value: &str) -> Result<(), HostError> {
        Err(HostError::Unsupported)
    }

    fn send_response(&mut self, _response: &LocalResponse) -> Result<(), HostError> {
        Err(HostError::Unsupported)
    }

    fn set_filter_state(&mut self, _name: &str, _value: &str) -> Result<(), HostError> {
        Err(HostError::Unsupported)
    }

    fn now_nanos(&mut self) -> Result<u128, HostError> {
        now_nanos()
    }

    fn random(&mut self, buf: &mut [u8]) -> Result<(), HostError> {
        random(buf)
    }

    fn plugin_configuration(&mut self) -> Result<Option<Vec<u8>>, HostError> {
        Ok(Some(self.config.plugin_config.clone()))
    }

    fn vm_configuration(&mut self) -> Result<Option<Vec<u8>>, HostError> {
        Ok(module_configuration())
    }

    fn shared_data(&mut self, key: &str) -> Result<Option<Vec<u8>>, HostError> {
        Ok(shared_data(key))
    }

    fn set_shared_data(&mut self, key: &str, value: &[u8]) -> Result<(), HostError> {
        set_shared_data(key, value);
        Ok(())
    }

    fn define_counter(&mut self, name: &str) -> Option<MetricId> {
        if let Some(id) = self.config.counter(name) {
            return MetricId::try_from(id).ok();
        }
        if !self.defining {
            return None;
        }
        let id = self.ops.define_counter(name.as_bytes()).ok()?;
        self.config.remember_counter(name, id);
        MetricId::try_from(id).ok()
    }

    fn increment(&mut self, id: MetricId, by: u64) {
        let _ = self.ops.increment_counter(id as usize, by);
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
        let headers: [(&[u8], &[u8]); 4] = [
            (b":method", b"GET"),
            (b":path", path.as_bytes()),
            (b"host", authority.as_bytes()),
            (b"accept", b"application/json"),
        ];
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let id = self
            .ops
            .http_callout(cluster.as_bytes(), &headers, timeout_ms)
            .map_err(abi)?;
        CallId::try_from(id).map_err(|_| HostError::BadArgument)
    }

    fn set_tick_period(&mut self, period: Duration) -> Result<(), HostError> {
        self.config.set_tick(period);
        Ok(())
    }
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

        fn send_response_headers_only(
            &mut self,
            _headers: &[(&[u8], &[u8])],
        ) -> Result<(), AbiError> {
            Ok(())
        }

        fn increment_counter(&mut self, _id: usize, _by: u64) -> Result<(), AbiError> {
            Ok(())
        }
    }

    struct Quiet;

    impl LogOps for Quiet {
        fn log(&self, _level: AbiLogLevel, _message: &[u8]) {}
    }

    #[test]
    fn a_request_host_moves_bytes_and_keeps_failures_as_values() {
        let mut stream = Recorder::default();
        let shared = ConfigShared {
            plugin_config: b"{}".to_vec(),
            ..ConfigShared::default()
        };
        shared.remember_counter("meshward.decision.allow", 7);
        let mut host = RequestHost::new(&mut stream, &shared, &Quiet);

        let headers = host.request_headers().unwrap();
        assert_eq!(headers.len(), 3, "repeated names stay separate entries");
        assert_eq!(headers[1], ("x-obs".to_owned(), vec![0xff, 0x80]));

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
        assert_eq!(host.plugin_configuration(), Ok(Some(b"{}".to_vec())));
        assert_eq!(
            host.dispatch_get("c", "a", "/p", Duration::from_secs(1)),
            Err(HostError::Unsupported)
        );
        host.set_tick_period(Duration::from_secs(2)).unwrap();

        assert_eq!(stream.removed, [b"x-meshward-peer".to_vec()]);
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
    fn grpc_deny_is_http_200_with_the_grpc_status_and_our_headers() {
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
        assert_eq!(get(":status"), ["200"]);
        assert_eq!(get("content-type"), ["application/grpc"]);
        assert_eq!(get("grpc-status"), ["7"]);
        assert_eq!(
            get("grpc-message"),
            ["meshward_denied{no_matching_rule} %C3%A9%25"]
        );
        assert_eq!(get("x-meshward-reason"), ["no_matching_rule"]);
    }
}
