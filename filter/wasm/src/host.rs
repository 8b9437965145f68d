//! The only place that talks to the proxy-wasm host: [`ProxyWasm`]
//! implements the engine's [`Host`] with the `Result`-returning hostcalls
//! (the SDK's trait getters unwrap host errors, which would trap an
//! authorization filter). Every host failure becomes a value, keeping the
//! host's status.

use std::time::{Duration, UNIX_EPOCH};

use meshward_engine::pipeline::{CallId, Host, HostError, LocalResponse, LogLevel, MetricId};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType, MetricType, Status};

/// The proxy-wasm host (its state lives in Envoy; this is a handle).
#[derive(Debug, Default, Clone, Copy)]
pub struct ProxyWasm;

fn status(status: Status) -> HostError {
    match status {
        Status::NotFound => HostError::NotFound,
        Status::BadArgument => HostError::BadArgument,
        other => HostError::Status(other as u32),
    }
}

fn level(level: LogLevel) -> proxy_wasm::types::LogLevel {
    use proxy_wasm::types::LogLevel as Wasm;
    match level {
        LogLevel::Trace => Wasm::Trace,
        LogLevel::Debug => Wasm::Debug,
        LogLevel::Info => Wasm::Info,
        LogLevel::Warn => Wasm::Warn,
        LogLevel::Error => Wasm::Error,
    }
}

impl Host for ProxyWasm {
    fn request_headers(&mut self) -> Result<Vec<(String, Vec<u8>)>, HostError> {
        // Bytes: `get_map` unwraps a UTF-8 conversion of every value, and
        // HTTP/1 obs-text bytes would trap the filter.
        hostcalls::get_map_bytes(MapType::HttpRequestHeaders).map_err(status)
    }

    fn property(&mut self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
        hostcalls::get_property(path.to_vec()).map_err(status)
    }

    fn remove_request_header(&mut self, name: &str) -> Result<(), HostError> {
        hostcalls::set_map_value(MapType::HttpRequestHeaders, name, None).map_err(status)
    }

    fn add_request_header(&mut self, name: &str, value: &str) -> Result<(), HostError> {
        hostcalls::add_map_value(MapType::HttpRequestHeaders, name, value).map_err(status)
    }

    fn send_response(&mut self, response: &LocalResponse) -> Result<(), HostError> {
        // Envoy maps the HTTP status of a local reply to a gRPC request onto
        // the gRPC status itself (401 → 16, 403 → 7).
        let headers: Vec<(&str, &str)> = response
            .headers
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .collect();
        hostcalls::send_http_response(
            u32::from(response.status),
            headers,
            Some(response.body.as_bytes()),
        )
        .map_err(status)
    }

    fn set_filter_state(&mut self, name: &str, value: &str) -> Result<(), HostError> {
        // Creates the filter-state object `wasm.<name>`.
        hostcalls::set_property(vec![name], Some(value.as_bytes())).map_err(status)
    }

    fn now_nanos(&mut self) -> Result<u128, HostError> {
        let now = hostcalls::get_current_time().map_err(status)?;
        now.duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .map_err(|_| HostError::BadArgument)
    }

    fn random(&mut self, buf: &mut [u8]) -> Result<(), HostError> {
        // WASI `random_get`: the host's CSPRNG.
        getrandom::getrandom(buf).map_err(|_| HostError::Unsupported)
    }

    fn plugin_configuration(&mut self) -> Result<Option<Vec<u8>>, HostError> {
        hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX).map_err(status)
    }

    fn vm_configuration(&mut self) -> Result<Option<Vec<u8>>, HostError> {
        hostcalls::get_buffer(BufferType::VmConfiguration, 0, usize::MAX).map_err(status)
    }

    fn shared_data(&mut self, key: &str) -> Result<Option<Vec<u8>>, HostError> {
        hostcalls::get_shared_data(key)
            .map(|(value, _cas)| value)
            .map_err(status)
    }

    fn set_shared_data(&mut self, key: &str, value: &[u8]) -> Result<(), HostError> {
        hostcalls::set_shared_data(key, Some(value), None).map_err(status)
    }

    fn define_counter(&mut self, name: &str) -> Option<MetricId> {
        hostcalls::define_metric(MetricType::Counter, name).ok()
    }

    fn increment(&mut self, id: MetricId, by: u64) {
        let by = i64::try_from(by).unwrap_or(i64::MAX);
        let _ = hostcalls::increment_metric(id, by);
    }

    fn log(&mut self, level_: LogLevel, message: &str) {
        // Nothing useful can be done if logging itself fails.
        let _ = hostcalls::log(level(level_), message);
    }

    fn dispatch_get(
        &mut self,
        cluster: &str,
        authority: &str,
        path: &str,
        timeout: Duration,
    ) -> Result<CallId, HostError> {
        hostcalls::dispatch_http_call(
            cluster,
            vec![
                (":method", "GET"),
                (":path", path),
                (":authority", authority),
                ("accept", "application/json"),
            ],
            None,
            vec![],
            timeout,
        )
        .map_err(status)
    }

    fn set_tick_period(&mut self, period: Duration) -> Result<(), HostError> {
        hostcalls::set_tick_period(period).map_err(status)
    }

    fn dispatch_get_with_headers(
        &mut self,
        cluster: &str,
        authority: &str,
        path: &str,
        headers: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<CallId, HostError> {
        let mut all = vec![
            (":method", "GET"),
            (":path", path),
            (":authority", authority),
            ("accept", "application/octet-stream"),
        ];
        all.extend_from_slice(headers);
        hostcalls::dispatch_http_call(cluster, all, None, vec![], timeout).map_err(status)
    }

    fn http_call_response_header(&mut self, name: &str) -> Result<Option<Vec<u8>>, HostError> {
        // Bytes: a non-UTF-8 value must not trap the filter.
        hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, name).map_err(status)
    }

    fn define_gauge(&mut self, name: &str) -> Option<MetricId> {
        hostcalls::define_metric(MetricType::Gauge, name).ok()
    }

    fn set_gauge(&mut self, id: MetricId, value: u64) {
        // A gauge that cannot be set only loses visibility.
        let _ = hostcalls::record_metric(id, value);
    }
}

/// `:status` of the HTTP call being answered (`None` on timeout or reset).
pub fn http_call_status() -> Option<u16> {
    hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status")
        .ok()
        .flatten()
        .and_then(|s| s.parse().ok())
}

/// Body of the HTTP call being answered.
pub fn http_call_body(size: usize) -> Option<Vec<u8>> {
    hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, size)
        .ok()
        .flatten()
}
