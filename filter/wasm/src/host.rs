//! The only place that talks to the proxy-wasm host: [`ProxyWasm`]
//! implements the engine's [`Host`] with the `Result`-returning hostcalls
//! (the SDK's trait getters unwrap host errors, which would trap an
//! authorization filter). Every host failure becomes a value, keeping the
//! host's status.

use std::time::{Duration, UNIX_EPOCH};

use meshward_engine::pipeline::{
    CallId, HeaderList, Host, HostError, LocalResponse, LogLevel, MetricId,
};
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

/// The proxy-wasm ABI (0.2.x) imports the SDK wraps without a way to pass
/// response code details, or without handling a failed status.
mod abi {
    #[link(wasm_import_module = "env")]
    extern "C" {
        pub fn proxy_send_local_response(
            status_code: u32,
            status_code_details_data: *const u8,
            status_code_details_size: usize,
            body_data: *const u8,
            body_size: usize,
            headers_data: *const u8,
            headers_size: usize,
            grpc_status: i32,
        ) -> u32;
        pub fn proxy_get_header_map_pairs(
            map_type: u32,
            return_map_data: *mut *mut u8,
            return_map_size: *mut usize,
        ) -> u32;
        pub fn proxy_set_property(
            path_data: *const u8,
            path_size: usize,
            value_data: *const u8,
            value_size: usize,
        ) -> u32;
    }
}

/// An ABI status (`proxy_wasm::types::Status` as a plain number: 0 = Ok,
/// 1 = NotFound, 2 = BadArgument).
fn abi_result(code: u32) -> Result<(), HostError> {
    match code {
        0 => Ok(()),
        1 => Err(HostError::NotFound),
        2 => Err(HostError::BadArgument),
        other => Err(HostError::Status(other)),
    }
}

/// A header list in the proxy-wasm map encoding: the pair count, each
/// name's and value's length (u32 little-endian), then each name and value
/// followed by a NUL.
fn serialize_pairs(pairs: &[(&str, &str)]) -> Vec<u8> {
    let size = 4 + pairs
        .iter()
        .map(|(n, v)| n.len() + v.len() + 10)
        .sum::<usize>();
    let mut bytes = Vec::with_capacity(size);
    let len = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
    bytes.extend_from_slice(&len(pairs.len()));
    for (name, value) in pairs {
        bytes.extend_from_slice(&len(name.len()));
        bytes.extend_from_slice(&len(value.len()));
    }
    for (name, value) in pairs {
        bytes.extend_from_slice(name.as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(value.as_bytes());
        bytes.push(0);
    }
    bytes
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

    fn request_header_list(&mut self) -> Result<HeaderList, HostError> {
        // The serialized map is kept and read in place (the SDK's
        // `get_map_bytes` copies every name and value into its own
        // allocation, and traps on a non-Ok status).
        let mut data: *mut u8 = std::ptr::null_mut();
        let mut size: usize = 0;
        // SAFETY: both out-pointers are live locals; the host writes them
        // and nothing else.
        let code = unsafe {
            abi::proxy_get_header_map_pairs(
                MapType::HttpRequestHeaders as u32,
                &raw mut data,
                &raw mut size,
            )
        };
        abi_result(code)?;
        if data.is_null() {
            return Ok(HeaderList::default());
        }
        // SAFETY: on success the host returns a buffer of `size` bytes that
        // it allocated through this module's `proxy_on_memory_allocate` (the
        // SDK's: a `Vec<u8>` of that capacity, forgotten), now owned here:
        // exactly what the SDK's own `get_map_bytes` takes back.
        let bytes = unsafe { Vec::from_raw_parts(data, size, size) };
        HeaderList::from_map_bytes(bytes).ok_or(HostError::BadArgument)
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
        // the gRPC status itself (401 → 16, 403 → 7): `grpc_status` -1.
        // The SDK's `send_http_response` passes no details and traps on a
        // non-Ok status, so the ABI call is made here.
        let headers: Vec<(&str, &str)> = response
            .headers
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .collect();
        let headers = serialize_pairs(&headers);
        let details = response.details.as_bytes();
        let body = response.body.as_bytes();
        // SAFETY: every pointer/length pair describes a live, initialized
        // buffer (`details`, `body`, `headers`) that outlives the call; the
        // host copies the bytes before returning and writes through none.
        let code = unsafe {
            abi::proxy_send_local_response(
                u32::from(response.status),
                details.as_ptr(),
                details.len(),
                body.as_ptr(),
                body.len(),
                headers.as_ptr(),
                headers.len(),
                -1,
            )
        };
        abi_result(code)
    }

    fn set_filter_state(&mut self, name: &str, value: &str) -> Result<(), HostError> {
        // Creates the filter-state object `wasm.<name>`. The path is one
        // element, so the name must not hold the NUL separator. (The SDK's
        // `set_property` traps on a non-Ok status.)
        if name.contains('\0') {
            return Err(HostError::BadArgument);
        }
        // SAFETY: both pointer/length pairs describe live, initialized
        // buffers that outlive the call; the host copies them and writes
        // through neither.
        let code = unsafe {
            abi::proxy_set_property(name.as_ptr(), name.len(), value.as_ptr(), value.len())
        };
        abi_result(code)
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

    fn environment_variable(&mut self, name: &str) -> Result<Option<String>, HostError> {
        // WASI environ: Envoy passes `vm_config.environment_variables`.
        match std::env::var(name) {
            Ok(value) => Ok(Some(value)),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(HostError::Unsupported),
        }
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
