//! The only place that talks to the host. Uses the `Result`-returning
//! hostcalls (the SDK's trait getters unwrap host errors, which would trap
//! an authorization filter).

use std::time::UNIX_EPOCH;

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel, MapType, MetricType};

/// Why a host call failed, as a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostError;

/// Reads a connection property as UTF-8. `Ok(None)` when Envoy has none.
pub fn property(path: &[&str]) -> Result<Option<String>, HostError> {
    match hostcalls::get_property(path.to_vec()) {
        Ok(Some(bytes)) => String::from_utf8(bytes).map(Some).map_err(|_| HostError),
        Ok(None) => Ok(None),
        Err(_) => Err(HostError),
    }
}

/// All request headers in one host call (cheaper than several single reads).
///
/// Values are read as bytes: header values may carry obs-text bytes
/// (0x80-0xFF) that are not UTF-8, and the SDK's `get_map` unwraps a UTF-8
/// conversion, which trapped the filter (a 503 and a VM restart from a single
/// request). Such a value is kept with U+FFFD in place of the invalid bytes:
/// it can never equal a policy's literal, as the raw bytes could not either.
pub fn request_headers() -> Result<Vec<(String, String)>, HostError> {
    let pairs = hostcalls::get_map_bytes(MapType::HttpRequestHeaders).map_err(|_| HostError)?;
    Ok(pairs
        .into_iter()
        .map(|(name, value)| {
            let value = String::from_utf8(value)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
            (name, value)
        })
        .collect())
}

/// Removes a request header (all its values).
pub fn remove_request_header(name: &str) -> Result<(), HostError> {
    hostcalls::set_map_value(MapType::HttpRequestHeaders, name, None).map_err(|_| HostError)
}

/// Sets a request header, replacing any value.
pub fn set_request_header(name: &str, value: &str) -> Result<(), HostError> {
    hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value)).map_err(|_| HostError)
}

/// Adds a request header value. Cheaper than [`set_request_header`] (no
/// lookup and removal first): only for names known to be absent, such as the
/// filter's own headers after every incoming copy was removed.
pub fn add_request_header(name: &str, value: &str) -> Result<(), HostError> {
    hostcalls::add_map_value(MapType::HttpRequestHeaders, name, value).map_err(|_| HostError)
}

#[link(wasm_import_module = "env")]
extern "C" {
    // The proxy-wasm ABI (0.2.x) imports, declared here because the SDK's
    // wrappers pass no response code details and trap on any status but Ok.
    // Statuses are read as the ABI's plain `u32` (0 = Ok).
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_set_property(
        path_data: *const u8,
        path_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
}

/// Answers the request locally with Envoy response code `details`
/// (`%RESPONSE_CODE_DETAILS%`); the filter then returns `Action::Pause`.
/// `grpc_status` -1 lets Envoy derive it from the HTTP status.
pub fn send_response(
    status: u32,
    headers: &[(&str, &str)],
    body: &str,
    details: &str,
    grpc_status: i32,
) -> Result<(), HostError> {
    let headers = serialize_pairs(headers);
    // SAFETY: every pointer/length pair describes a live, initialized buffer
    // (`details`, `body`, `headers`) that outlives the call; the host copies
    // the bytes before returning and writes through none of them.
    let status = unsafe {
        proxy_send_local_response(
            status,
            details.as_ptr(),
            details.len(),
            body.as_ptr(),
            body.len(),
            headers.as_ptr(),
            headers.len(),
            grpc_status,
        )
    };
    if status == 0 {
        Ok(())
    } else {
        Err(HostError)
    }
}

/// Sets the filter-state object `wasm.<name>` of this request to `value`
/// (what `%FILTER_STATE(wasm.<name>:PLAIN)%` prints). `name` is one path
/// element, so it must not contain NUL.
pub fn set_filter_state(name: &str, value: &str) -> Result<(), HostError> {
    if name.contains('\0') {
        return Err(HostError);
    }
    // SAFETY: both pointer/length pairs describe live, initialized buffers
    // that outlive the call; the host copies them and writes through neither.
    let status =
        unsafe { proxy_set_property(name.as_ptr(), name.len(), value.as_ptr(), value.len()) };
    if status == 0 {
        Ok(())
    } else {
        Err(HostError)
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

/// The plugin configuration bytes, if any were delivered.
pub fn plugin_configuration() -> Result<Option<Vec<u8>>, HostError> {
    hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX).map_err(|_| HostError)
}

/// Current Unix time in seconds, from the host clock.
pub fn now_secs() -> Result<u64, HostError> {
    now_nanos().map(|n| u64::try_from(n / 1_000_000_000).unwrap_or(u64::MAX))
}

/// Current Unix time in nanoseconds, from the host clock (for timing).
pub fn now_nanos() -> Result<u128, HostError> {
    let now = hostcalls::get_current_time().map_err(|_| HostError)?;
    now.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .map_err(|_| HostError)
}

/// Writes one log line through Envoy's logger.
pub fn log(level: LogLevel, message: &str) {
    // Nothing useful can be done if logging itself fails.
    let _ = hostcalls::log(level, message);
}

/// Defines a counter; `None` if the host refuses (the filter still works).
pub fn define_counter(name: &str) -> Option<u32> {
    hostcalls::define_metric(MetricType::Counter, name).ok()
}

/// Adds one to a counter.
pub fn increment(counter: Option<u32>) {
    if let Some(id) = counter {
        let _ = hostcalls::increment_metric(id, 1);
    }
}

/// Reads a value of the process-wide shared data (scoped by `vm_id`).
pub fn shared_data(key: &str) -> Result<Option<Vec<u8>>, HostError> {
    hostcalls::get_shared_data(key)
        .map(|(value, _cas)| value)
        .map_err(|_| HostError)
}

/// Writes a value of the process-wide shared data.
pub fn set_shared_data(key: &str, value: &[u8]) -> Result<(), HostError> {
    hostcalls::set_shared_data(key, Some(value), None).map_err(|_| HostError)
}

/// Starts a GET over an Envoy cluster; the answer arrives in the root
/// context's `on_http_call_response`.
pub fn dispatch_get(
    cluster: &str,
    authority: &str,
    path: &str,
    timeout: std::time::Duration,
) -> Result<u32, HostError> {
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
    .map_err(|_| HostError)
}

/// `:status` of the HTTP call being answered (`None` on timeout or reset).
pub fn http_call_status() -> Option<String> {
    hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status")
        .ok()
        .flatten()
}

/// Body of the HTTP call being answered.
pub fn http_call_body(size: usize) -> Result<Option<Vec<u8>>, HostError> {
    hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, size).map_err(|_| HostError)
}

/// Asks for `on_tick` every `period`.
pub fn set_tick_period(period: std::time::Duration) {
    let _ = hostcalls::set_tick_period(period);
}

/// The VM configuration bytes (`vm_config.configuration`), if any.
pub fn vm_configuration() -> Result<Option<Vec<u8>>, HostError> {
    hostcalls::get_buffer(BufferType::VmConfiguration, 0, usize::MAX).map_err(|_| HostError)
}
