//! Every `unsafe` line of the module: the Envoy 1.40 dynamic-module ABI,
//! hand-written from `source/extensions/dynamic_modules/abi/abi.h` of that
//! release, for only what meshward calls.
//!
//! - The event hooks Envoy resolves (`envoy_dynamic_module_on_*`) are
//!   exported here. Envoy refuses a module that lacks one it requires, so
//!   every HTTP-filter hook of 1.40 exists, most of them doing nothing.
//! - The callbacks Envoy exports (`envoy_dynamic_module_callback_*`) are
//!   declared here and wrapped in [`EnvoyStream`] / [`EnvoyConfig`], the
//!   implementations of [`StreamOps`] / [`ConfigOps`].
//! - Every hook runs its body under `catch_unwind`: a panic becomes a deny
//!   (503 for the request), never an unwind into Envoy's C++ frames (which is
//!   undefined behaviour) and never an abort (which would take Envoy down).
//!   That is why the module is built with `panic = "unwind"`
//!   (`cargo build -p meshward-native --profile native`).
//!
//! Argument layouts are not checked by Envoy at load: a callback whose
//! signature changed between releases would be called wrongly. This file is
//! therefore for Envoy 1.40 only; `on_program_init` returns the ABI version
//! 1.40 expects (`v0.2.0`) and Envoy logs whether it matched.

#![expect(
    unsafe_code,
    reason = "the C ABI Envoy calls: the crate's only unsafe code"
)]

use core::ffi::{c_char, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::abi::{AbiError, AbiLogLevel, Attribute, CalloutAnswer, ConfigOps, LogOps, StreamOps};
use crate::module::{HeadersVerdict, Module};

/// The ABI version of Envoy 1.40's `abi.h`, NUL-terminated.
const ABI_VERSION: &[u8] = b"v0.2.0\0";

// --- ABI types -------------------------------------------------------------

/// `envoy_dynamic_module_type_envoy_buffer`: bytes owned by Envoy.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvoyBuffer {
    ptr: *const c_char,
    length: usize,
}

/// `envoy_dynamic_module_type_module_buffer`: bytes owned by the module.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ModuleBuffer {
    ptr: *const c_char,
    length: usize,
}

/// What an empty module buffer points at: a real byte, never a dangling
/// pointer (an empty Rust slice's address is not one C may be given).
static EMPTY: [u8; 1] = [0];

impl ModuleBuffer {
    fn of(bytes: &[u8]) -> ModuleBuffer {
        let ptr = if bytes.is_empty() {
            EMPTY.as_ptr()
        } else {
            bytes.as_ptr()
        };
        ModuleBuffer {
            ptr: ptr.cast(),
            length: bytes.len(),
        }
    }

    const NULL: ModuleBuffer = ModuleBuffer {
        ptr: ptr::null(),
        length: 0,
    };
}

/// `envoy_dynamic_module_type_envoy_http_header`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvoyHttpHeader {
    key_ptr: *const c_char,
    key_length: usize,
    value_ptr: *const c_char,
    value_length: usize,
}

/// `envoy_dynamic_module_type_module_http_header`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ModuleHttpHeader {
    key_ptr: *const c_char,
    key_length: usize,
    value_ptr: *const c_char,
    value_length: usize,
}

fn module_headers(headers: &[(&[u8], &[u8])]) -> Vec<ModuleHttpHeader> {
    headers
        .iter()
        .map(|(k, v)| ModuleHttpHeader {
            key_ptr: k.as_ptr().cast(),
            key_length: k.len(),
            value_ptr: v.as_ptr().cast(),
            value_length: v.len(),
        })
        .collect()
}

/// `envoy_dynamic_module_type_http_header_type_RequestHeader`.
const REQUEST_HEADER: u32 = 0;
/// `envoy_dynamic_module_type_metrics_result_Success`.
const METRICS_SUCCESS: u32 = 0;
/// `envoy_dynamic_module_type_http_callout_init_result_Success`.
const CALLOUT_SUCCESS: u32 = 0;
/// `..._on_http_filter_request_headers_status_Continue` / `_StopIteration`.
const HEADERS_CONTINUE: u32 = 0;
const HEADERS_STOP_ITERATION: u32 = 1;
/// Body, trailers and local-reply statuses: `Continue` is 0 for each.
const CONTINUE: u32 = 0;

type EnvoyFilterPtr = *mut c_void;
type EnvoyConfigPtr = *mut c_void;
type ModuleFilterPtr = *const c_void;
type ModuleConfigPtr = *const c_void;

// --- callbacks Envoy exports -------------------------------------------------

extern "C" {
    fn envoy_dynamic_module_callback_log(level: u32, message: ModuleBuffer);

    fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        config: EnvoyConfigPtr,
        name: ModuleBuffer,
        label_names: *mut ModuleBuffer,
        label_names_length: usize,
        counter_id: *mut usize,
    ) -> u32;

    fn envoy_dynamic_module_callback_http_filter_increment_counter(
        filter: EnvoyFilterPtr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;

    fn envoy_dynamic_module_callback_http_filter_config_increment_counter(
        config: EnvoyConfigPtr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;

    fn envoy_dynamic_module_callback_http_filter_config_define_gauge(
        config: EnvoyConfigPtr,
        name: ModuleBuffer,
        label_names: *mut ModuleBuffer,
        label_names_length: usize,
        gauge_id: *mut usize,
    ) -> u32;

    fn envoy_dynamic_module_callback_http_filter_set_gauge(
        filter: EnvoyFilterPtr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;

    fn envoy_dynamic_module_callback_http_filter_config_set_gauge(
        config: EnvoyConfigPtr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;

    fn envoy_dynamic_module_callback_http_get_headers_size(
        filter: EnvoyFilterPtr,
        header_type: u32,
    ) -> usize;

    fn envoy_dynamic_module_callback_http_get_headers(
        filter: EnvoyFilterPtr,
        header_type: u32,
        result_headers: *mut EnvoyHttpHeader,
    ) -> bool;

    fn envoy_dynamic_module_callback_http_add_header(
        filter: EnvoyFilterPtr,
        header_type: u32,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;

    fn envoy_dynamic_module_callback_http_set_header(
        filter: EnvoyFilterPtr,
        header_type: u32,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;

    fn envoy_dynamic_module_callback_http_send_response(
        filter: EnvoyFilterPtr,
        status_code: u32,
        headers: *mut ModuleHttpHeader,
        headers_size: usize,
        body: ModuleBuffer,
        details: ModuleBuffer,
    );

    fn envoy_dynamic_module_callback_http_set_filter_state_bytes(
        filter: EnvoyFilterPtr,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;

    fn envoy_dynamic_module_callback_http_get_filter_state_typed(
        filter: EnvoyFilterPtr,
        key: ModuleBuffer,
        result: *mut EnvoyBuffer,
    ) -> bool;

    fn envoy_dynamic_module_callback_http_filter_get_attribute_string(
        filter: EnvoyFilterPtr,
        attribute_id: u32,
        result: *mut EnvoyBuffer,
    ) -> bool;

    fn envoy_dynamic_module_callback_http_filter_get_attribute_bool(
        filter: EnvoyFilterPtr,
        attribute_id: u32,
        result: *mut bool,
    ) -> bool;

    fn envoy_dynamic_module_callback_http_filter_config_http_callout(
        config: EnvoyConfigPtr,
        callout_id: *mut u64,
        cluster_name: ModuleBuffer,
        headers: *mut ModuleHttpHeader,
        headers_size: usize,
        body: ModuleBuffer,
        timeout_milliseconds: u64,
    ) -> u32;

    fn envoy_dynamic_module_callback_http_filter_config_scheduler_new(
        config: EnvoyConfigPtr,
    ) -> *mut c_void;

    fn envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
        scheduler: *mut c_void,
        event_id: u64,
    );

    fn envoy_dynamic_module_callback_http_filter_config_scheduler_delete(scheduler: *mut c_void);
}

/// Copies an Envoy buffer.
///
/// # Safety
/// `buf` must come from a callback that just filled it: `ptr` points at
/// `length` readable bytes (or is null).
unsafe fn copy_envoy_buffer(buf: EnvoyBuffer) -> Vec<u8> {
    if buf.ptr.is_null() || buf.length == 0 {
        return Vec::new();
    }
    // SAFETY: per the caller's contract, `length` bytes at `ptr` are readable
    // and owned by Envoy for the rest of the current hook.
    unsafe { std::slice::from_raw_parts(buf.ptr.cast::<u8>(), buf.length) }.to_vec()
}

/// Borrows `length` bytes Envoy owns.
///
/// # Safety
/// `ptr` points at `length` readable bytes (or is null) that stay valid and
/// unmodified for `'a`.
unsafe fn borrow<'a>(ptr: *const c_char, length: usize) -> &'a [u8] {
    if ptr.is_null() || length == 0 {
        return &[];
    }
    // SAFETY: per the caller's contract.
    unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), length) }
}

/// The shape of every `..._config_define_{counter,gauge}` callback.
type DefineMetric =
    unsafe extern "C" fn(EnvoyConfigPtr, ModuleBuffer, *mut ModuleBuffer, usize, *mut usize) -> u32;

/// The shape of every `..._increment_counter` / `..._set_gauge` callback,
/// on a filter or on a filter configuration.
type UpdateMetric = unsafe extern "C" fn(*mut c_void, usize, *mut ModuleBuffer, usize, u64) -> u32;

/// Defines a metric without labels.
///
/// # Safety
/// `config` is a live filter configuration and `define` one of the define
/// callbacks above.
unsafe fn define_metric(
    define: DefineMetric,
    config: EnvoyConfigPtr,
    name: &[u8],
) -> Result<usize, AbiError> {
    let mut id = 0usize;
    // SAFETY: per the caller's contract; `name` outlives the call (Envoy
    // copies it); no labels (null, 0); `id` is a valid place for the result.
    let result = unsafe { define(config, ModuleBuffer::of(name), ptr::null_mut(), 0, &mut id) };
    (result == METRICS_SUCCESS)
        .then_some(id)
        .ok_or(AbiError(result))
}

/// Adds to a counter or sets a gauge, without labels.
///
/// # Safety
/// `owner` is the live filter or filter configuration `update` expects.
unsafe fn update_metric(
    update: UpdateMetric,
    owner: *mut c_void,
    id: usize,
    value: u64,
) -> Result<(), AbiError> {
    // SAFETY: per the caller's contract; no labels (null, 0).
    let result = unsafe { update(owner, id, ptr::null_mut(), 0, value) };
    (result == METRICS_SUCCESS)
        .then_some(())
        .ok_or(AbiError(result))
}

// --- the safe wrappers -------------------------------------------------------

/// Envoy's logger.
pub struct EnvoyLog;

impl LogOps for EnvoyLog {
    fn log(&self, level: AbiLogLevel, message: &[u8]) {
        // SAFETY: the buffer points at `message`, alive for the call; Envoy
        // copies it into its log sink before returning.
        unsafe { envoy_dynamic_module_callback_log(level as u32, ModuleBuffer::of(message)) }
    }
}

/// One request's `DynamicModuleHttpFilter`, valid during the hook that
/// received it.
pub struct EnvoyStream {
    filter: EnvoyFilterPtr,
}

impl StreamOps for EnvoyStream {
    fn for_each_request_header(
        &mut self,
        visit: &mut dyn FnMut(&[u8], &[u8]),
    ) -> Result<(), AbiError> {
        // SAFETY: `filter` is the live filter of the current hook.
        let count = unsafe {
            envoy_dynamic_module_callback_http_get_headers_size(self.filter, REQUEST_HEADER)
        };
        let mut headers = vec![
            EnvoyHttpHeader {
                key_ptr: ptr::null(),
                key_length: 0,
                value_ptr: ptr::null(),
                value_length: 0,
            };
            count
        ];
        // SAFETY: `headers` has room for the `count` entries Envoy just
        // reported, and nothing mutates the map between the two calls (same
        // thread, same hook).
        let ok = unsafe {
            envoy_dynamic_module_callback_http_get_headers(
                self.filter,
                REQUEST_HEADER,
                headers.as_mut_ptr(),
            )
        };
        if !ok {
            return Err(AbiError(0));
        }
        for header in &headers {
            // SAFETY: Envoy filled each entry with pointers into its header
            // map, valid until the hook ends or a header is mutated; `visit`
            // cannot mutate headers (it has no access to this stream).
            let (name, value) = unsafe {
                (
                    borrow(header.key_ptr, header.key_length),
                    borrow(header.value_ptr, header.value_length),
                )
            };
            visit(name, value);
        }
        Ok(())
    }

    fn attribute_string(&mut self, attribute: Attribute) -> Result<Option<Vec<u8>>, AbiError> {
        let mut out = EnvoyBuffer {
            ptr: ptr::null(),
            length: 0,
        };
        // SAFETY: `filter` is live; `out` is a valid place for the result.
        let found = unsafe {
            envoy_dynamic_module_callback_http_filter_get_attribute_string(
                self.filter,
                attribute as u32,
                &mut out,
            )
        };
        // SAFETY: on success Envoy filled `out` with its own bytes.
        Ok(found.then(|| unsafe { copy_envoy_buffer(out) }))
    }

    fn attribute_bool(&mut self, attribute: Attribute) -> Result<Option<bool>, AbiError> {
        let mut out = false;
        // SAFETY: `filter` is live; `out` is a valid place for the result.
        let found = unsafe {
            envoy_dynamic_module_callback_http_filter_get_attribute_bool(
                self.filter,
                attribute as u32,
                &mut out,
            )
        };
        Ok(found.then_some(out))
    }

    fn filter_state(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, AbiError> {
        let mut out = EnvoyBuffer {
            ptr: ptr::null(),
            length: 0,
        };
        // SAFETY: `filter` is live; `key` outlives the call; `out` is valid.
        let found = unsafe {
            envoy_dynamic_module_callback_http_get_filter_state_typed(
                self.filter,
                ModuleBuffer::of(key),
                &mut out,
            )
        };
        // SAFETY: on success Envoy filled `out` with its own bytes.
        Ok(found.then(|| unsafe { copy_envoy_buffer(out) }))
    }

    fn set_filter_state(&mut self, key: &[u8], value: &[u8]) -> Result<(), AbiError> {
        // SAFETY: `filter` is live; both buffers outlive the call (Envoy
        // copies them).
        let ok = unsafe {
            envoy_dynamic_module_callback_http_set_filter_state_bytes(
                self.filter,
                ModuleBuffer::of(key),
                ModuleBuffer::of(value),
            )
        };
        ok.then_some(()).ok_or(AbiError(0))
    }

    fn remove_request_header(&mut self, name: &[u8]) -> Result<(), AbiError> {
        // SAFETY: `filter` is live; a null value removes the header (abi.h).
        let ok = unsafe {
            envoy_dynamic_module_callback_http_set_header(
                self.filter,
                REQUEST_HEADER,
                ModuleBuffer::of(name),
                ModuleBuffer::NULL,
            )
        };
        ok.then_some(()).ok_or(AbiError(0))
    }

    fn add_request_header(&mut self, name: &[u8], value: &[u8]) -> Result<(), AbiError> {
        if value.is_empty() {
            // Envoy 1.40's `add_header` refuses an empty value, and
            // `set_header` with one removes the header: an empty value cannot
            // be added through this ABI. The pipeline adds only headers whose
            // incoming copies it removed, so the header ends up absent (never
            // a client's value); the wasm build adds it empty.
            // SAFETY: `filter` is live; both buffers outlive the call.
            let ok = unsafe {
                envoy_dynamic_module_callback_http_set_header(
                    self.filter,
                    REQUEST_HEADER,
                    ModuleBuffer::of(name),
                    ModuleBuffer::of(value),
                )
            };
            return ok.then_some(()).ok_or(AbiError(1));
        }
        // SAFETY: `filter` is live; both buffers outlive the call.
        let ok = unsafe {
            envoy_dynamic_module_callback_http_add_header(
                self.filter,
                REQUEST_HEADER,
                ModuleBuffer::of(name),
                ModuleBuffer::of(value),
            )
        };
        ok.then_some(()).ok_or(AbiError(0))
    }

    fn send_local_reply(
        &mut self,
        status: u32,
        headers: &[(&[u8], &[u8])],
        body: &[u8],
        details: &[u8],
    ) -> Result<(), AbiError> {
        let mut lines = module_headers(headers);
        // SAFETY: `filter` is live; `lines` and the buffers they point into,
        // `body` and `details` all outlive the call (Envoy copies them).
        unsafe {
            envoy_dynamic_module_callback_http_send_response(
                self.filter,
                status,
                lines.as_mut_ptr(),
                lines.len(),
                ModuleBuffer::of(body),
                ModuleBuffer::of(details),
            );
        }
        Ok(())
    }

    fn increment_counter(&mut self, id: usize, by: u64) -> Result<(), AbiError> {
        // SAFETY: `filter` is the live filter of the current hook.
        unsafe {
            update_metric(
                envoy_dynamic_module_callback_http_filter_increment_counter,
                self.filter,
                id,
                by,
            )
        }
    }

    fn set_gauge(&mut self, id: usize, value: u64) -> Result<(), AbiError> {
        // SAFETY: as above.
        unsafe {
            update_metric(
                envoy_dynamic_module_callback_http_filter_set_gauge,
                self.filter,
                id,
                value,
            )
        }
    }
}

/// A `DynamicModuleHttpFilterConfig`, valid until its destroy hook.
pub struct EnvoyConfig {
    config: EnvoyConfigPtr,
}

impl ConfigOps for EnvoyConfig {
    fn define_counter(&mut self, name: &[u8]) -> Result<usize, AbiError> {
        // SAFETY: `config` is live until its destroy hook.
        unsafe {
            define_metric(
                envoy_dynamic_module_callback_http_filter_config_define_counter,
                self.config,
                name,
            )
        }
    }

    fn increment_counter(&mut self, id: usize, by: u64) -> Result<(), AbiError> {
        // SAFETY: as above.
        unsafe {
            update_metric(
                envoy_dynamic_module_callback_http_filter_config_increment_counter,
                self.config,
                id,
                by,
            )
        }
    }

    fn define_gauge(&mut self, name: &[u8]) -> Result<usize, AbiError> {
        // SAFETY: as above.
        unsafe {
            define_metric(
                envoy_dynamic_module_callback_http_filter_config_define_gauge,
                self.config,
                name,
            )
        }
    }

    fn set_gauge(&mut self, id: usize, value: u64) -> Result<(), AbiError> {
        // SAFETY: as above.
        unsafe {
            update_metric(
                envoy_dynamic_module_callback_http_filter_config_set_gauge,
                self.config,
                id,
                value,
            )
        }
    }

    fn http_callout(
        &mut self,
        cluster: &[u8],
        headers: &[(&[u8], &[u8])],
        timeout_ms: u64,
    ) -> Result<u64, AbiError> {
        let mut lines = module_headers(headers);
        let mut id = 0u64;
        // SAFETY: `config` is live (main thread); every buffer outlives the
        // call (Envoy copies the request).
        let result = unsafe {
            envoy_dynamic_module_callback_http_filter_config_http_callout(
                self.config,
                &mut id,
                ModuleBuffer::of(cluster),
                lines.as_mut_ptr(),
                lines.len(),
                ModuleBuffer::NULL,
                timeout_ms,
            )
        };
        (result == CALLOUT_SUCCESS)
            .then_some(id)
            .ok_or(AbiError(result))
    }
}

/// What the module keeps per filter configuration: the [`Module`], Envoy's
/// main-thread scheduler of the configuration, and the ticker thread that
/// commits tick events to it.
struct ConfigObject {
    module: Module,
    scheduler: *mut c_void,
    ticker: Option<Ticker>,
}

/// The configuration scheduler, handed to the ticker thread.
struct SchedulerHandle(*mut c_void);

// SAFETY: abi.h allows `..._config_scheduler_commit` from any thread; the
// handle is only used for that, and the ticker is joined before the
// scheduler is deleted (`on_http_filter_config_destroy`).
unsafe impl Send for SchedulerHandle {}

/// A thread that commits a tick event every period (the first right away),
/// until stopped.
struct Ticker {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    fn start(scheduler: SchedulerHandle, period_ms: Arc<AtomicU64>) -> Option<Ticker> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let signal = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("meshward-ticker".to_owned())
            .spawn(move || {
                let scheduler = scheduler;
                let (stopped, wake) = &*signal;
                let mut guard = stopped.lock().unwrap_or_else(PoisonError::into_inner);
                while !*guard {
                    // SAFETY: see `SchedulerHandle`: the scheduler outlives
                    // this thread, and commit may be called from any thread.
                    unsafe {
                        envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
                            scheduler.0,
                            0,
                        )
                    };
                    let period = period_ms.load(Ordering::Relaxed).max(1);
                    guard = wake
                        .wait_timeout(guard, Duration::from_millis(period))
                        .map(|(g, _)| g)
                        .unwrap_or_else(|e| e.into_inner().0);
                }
            })
            .ok()?;
        Some(Ticker {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread and waits for it (it wakes at once).
    fn stop(&mut self) {
        let (stopped, wake) = &*self.stop;
        *stopped.lock().unwrap_or_else(PoisonError::into_inner) = true;
        wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// # Safety
/// `ptr` is a pointer this module returned from `on_http_filter_config_new`
/// and Envoy has not destroyed yet.
unsafe fn config_object<'a>(ptr: ModuleConfigPtr) -> Option<&'a ConfigObject> {
    // SAFETY: per the caller's contract it is null or a live ConfigObject.
    unsafe { ptr.cast::<ConfigObject>().as_ref() }
}

// --- event hooks ---------------------------------------------------------------

/// Called once when Envoy loads the module: the ABI version handshake.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    ABI_VERSION.as_ptr().cast()
}

/// A new filter configuration (main thread): runs the pipeline's start and
/// configure steps, defining its counters now (Envoy allows definitions only
/// here). Null rejects the configuration (Envoy refuses the listener, or
/// keeps the previous configuration on an update).
///
/// # Safety
/// Called by Envoy with its ABI contract: `config_envoy` is live, `name` and
/// `config` point at readable bytes for the duration of the call.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    config_envoy: EnvoyConfigPtr,
    _name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> ModuleConfigPtr {
    // SAFETY: Envoy's buffer, valid during this call.
    let bytes = unsafe { copy_envoy_buffer(config) };
    let created = catch_unwind(AssertUnwindSafe(|| {
        let mut ops = EnvoyConfig {
            config: config_envoy,
        };
        Module::create(bytes, &mut ops, &EnvoyLog)
    }));
    let Ok(Some(module)) = created else {
        if created.is_err() {
            EnvoyLog.log(
                AbiLogLevel::Error,
                b"meshward: panic while loading the configuration; rejected",
            );
        }
        return ptr::null();
    };
    // SAFETY: `config_envoy` is live; the scheduler is deleted in destroy.
    let scheduler =
        unsafe { envoy_dynamic_module_callback_http_filter_config_scheduler_new(config_envoy) };
    let ticker = if module.wants_ticks() && !scheduler.is_null() {
        Ticker::start(SchedulerHandle(scheduler), module.tick_period())
    } else {
        None
    };
    if module.wants_ticks() && ticker.is_none() {
        EnvoyLog.log(
            AbiLogLevel::Error,
            b"meshward: cannot start the ticker: fetched keys will not refresh",
        );
    }
    let object = Box::new(ConfigObject {
        module,
        scheduler,
        ticker,
    });
    Box::into_raw(object).cast_const().cast()
}

/// # Safety
/// `config` is a pointer returned by `on_http_filter_config_new`; Envoy
/// calls this once, after every filter of the configuration is gone.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(
    config: ModuleConfigPtr,
) {
    if config.is_null() {
        return;
    }
    // SAFETY: we created it with Box::into_raw; Envoy destroys it once.
    let mut object = unsafe { Box::from_raw(config.cast_mut().cast::<ConfigObject>()) };
    // INVARIANT: the ticker is joined before its scheduler is deleted.
    if let Some(ticker) = object.ticker.as_mut() {
        ticker.stop();
    }
    if !object.scheduler.is_null() {
        // SAFETY: created in config_new for this configuration, deleted once.
        unsafe {
            envoy_dynamic_module_callback_http_filter_config_scheduler_delete(object.scheduler)
        };
    }
    // Dropping a Module runs no code of ours that can panic (plain data).
    drop(object);
}

/// Per-route configuration is not supported: null rejects it (fail closed
/// rather than silently ignore a setting).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_new(
    _name: EnvoyBuffer,
    _config: EnvoyBuffer,
) -> *const c_void {
    ptr::null()
}

/// Nothing to release: `per_route_config_new` never returns an object.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_destroy(
    _config: *const c_void,
) {
}

/// A new stream. The filter needs no per-stream state: its module pointer
/// is the configuration itself, which Envoy keeps alive for as long as any
/// of its filters exists (each holds a shared pointer to it). No allocation.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config: ModuleConfigPtr,
    _filter_envoy: EnvoyFilterPtr,
) -> ModuleFilterPtr {
    config
}

/// The request headers: the decision.
///
/// # Safety
/// Envoy's contract: `filter_envoy` is the live stream, `filter` what
/// `on_http_filter_new` returned (a live configuration).
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    filter_envoy: EnvoyFilterPtr,
    filter: ModuleFilterPtr,
    _end_of_stream: bool,
) -> u32 {
    let mut stream = EnvoyStream {
        filter: filter_envoy,
    };
    // SAFETY: `filter` is the configuration pointer (see on_http_filter_new).
    let Some(object) = (unsafe { config_object(filter) }) else {
        crate::module::deny_without_module(&mut stream, &EnvoyLog);
        return HEADERS_STOP_ITERATION;
    };
    let verdict = catch_unwind(AssertUnwindSafe(|| {
        object.module.on_request_headers(&mut stream, &EnvoyLog)
    }));
    let verdict = verdict.unwrap_or_else(|_| {
        // The panic's message was printed by the default hook (stderr).
        object.module.deny_after_panic(&mut stream, &EnvoyLog);
        HeadersVerdict::STOP
    });
    if verdict.proceed {
        HEADERS_CONTINUE
    } else {
        HEADERS_STOP_ITERATION
    }
}

/// A tick on the main thread (committed by the ticker thread): key fetches.
///
/// # Safety
/// Envoy's contract: both pointers belong to a live configuration.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(
    config_envoy: EnvoyConfigPtr,
    config: ModuleConfigPtr,
    _event_id: u64,
) {
    // SAFETY: Envoy passes the pointer config_new returned.
    let Some(object) = (unsafe { config_object(config) }) else {
        return;
    };
    let mut ops = EnvoyConfig {
        config: config_envoy,
    };
    if catch_unwind(AssertUnwindSafe(|| {
        object.module.on_tick(&mut ops, &EnvoyLog)
    }))
    .is_err()
    {
        EnvoyLog.log(AbiLogLevel::Error, b"meshward: panic during a tick");
    }
}

/// The answer to a configuration callout (a key or revocation fetch).
///
/// # Safety
/// Envoy's contract: `headers` / `body_chunks` point at `headers_size` /
/// `body_chunks_size` entries (or are null), valid during the call.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_http_callout_done(
    config_envoy: EnvoyConfigPtr,
    config: ModuleConfigPtr,
    callout_id: u64,
    result: u32,
    headers: *mut EnvoyHttpHeader,
    headers_size: usize,
    body_chunks: *mut EnvoyBuffer,
    body_chunks_size: usize,
) {
    // SAFETY: Envoy passes the pointer config_new returned.
    let Some(object) = (unsafe { config_object(config) }) else {
        return;
    };
    let answer = (result == CALLOUT_SUCCESS).then(|| {
        let headers: &[EnvoyHttpHeader] = if headers.is_null() {
            &[]
        } else {
            // SAFETY: Envoy's array of `headers_size` entries, valid now.
            unsafe { std::slice::from_raw_parts(headers, headers_size) }
        };
        let chunks: &[EnvoyBuffer] = if body_chunks.is_null() {
            &[]
        } else {
            // SAFETY: Envoy's array of `body_chunks_size` buffers, valid now.
            unsafe { std::slice::from_raw_parts(body_chunks, body_chunks_size) }
        };
        CalloutAnswer {
            headers: headers
                .iter()
                .map(|header| {
                    // SAFETY: each entry points into Envoy's response
                    // headers, valid during this call; copied here.
                    unsafe {
                        (
                            borrow(header.key_ptr, header.key_length).to_vec(),
                            borrow(header.value_ptr, header.value_length).to_vec(),
                        )
                    }
                })
                .collect(),
            body: chunks
                .iter()
                // SAFETY: each buffer is Envoy's, valid during this call.
                .flat_map(|chunk| unsafe { borrow(chunk.ptr, chunk.length) })
                .copied()
                .collect(),
        }
    });
    let mut ops = EnvoyConfig {
        config: config_envoy,
    };
    let done = catch_unwind(AssertUnwindSafe(|| {
        object
            .module
            .on_callout_done(&mut ops, &EnvoyLog, callout_id, answer.as_ref())
    }));
    if done.is_err() {
        EnvoyLog.log(AbiLogLevel::Error, b"meshward: panic in a callout answer");
    }
}

// The remaining HTTP-filter hooks of Envoy 1.40: the module has nothing to do
// in them, but Envoy resolves them when it loads the module.

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    _filter_envoy: EnvoyFilterPtr,
    _filter: ModuleFilterPtr,
    _end_of_stream: bool,
) -> u32 {
    CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    _filter_envoy: EnvoyFilterPtr,
    _filter: ModuleFilterPtr,
) -> u32 {
    CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    _filter_envoy: EnvoyFilterPtr,
    _filter: ModuleFilterPtr,
    _end_of_stream: bool,
) -> u32 {
    CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    _filter_envoy: EnvoyFilterPtr,
    _filter: ModuleFilterPtr,
    _end_of_stream: bool,
) -> u32 {
    CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    _filter_envoy: EnvoyFilterPtr,
    _filter: ModuleFilterPtr,
) -> u32 {
    CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    _filter_envoy: EnvoyFilterPtr,
    _filter: ModuleFilterPtr,
) {
}

/// Nothing to free: the filter pointer is the configuration (see `_new`).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_destroy(_filter: ModuleFilterPtr) {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    _filter_envoy: EnvoyFilterPtr,
    _filter: ModuleFilterPtr,
    _callout_id: u64,
    _result: u32,
    _headers: *mut EnvoyHttpHeader,
    _headers_size: usize,
    _body_chunks: *mut EnvoyBuffer,
    _body_chunks_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _filter_envoy: EnvoyFilterPtr,
    _filter: ModuleFilterPtr,
    _stream_id: u64,
    _headers: *mut EnvoyHttpHeader,
    _headers_size: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _filter_envoy: EnvoyFilterPtr,
    _filter: ModuleFilterPtr,
    _stream_id: u64,
    _data: *const EnvoyBuffer,
    _data_count: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _filter_envoy: EnvoyFilterPtr,
    _filter: ModuleFilterPtr,
    _stream_id: u64,
    _trailers: *mut EnvoyHttpHeader,
    _trailers_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _filter_envoy: EnvoyFilterPtr,
    _filter: ModuleFilterPtr,
    _stream_id: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _filter_envoy: EnvoyFilterPtr,
    _filter: ModuleFilterPtr,
    _stream_id: u64,
    _reason: u32,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    _filter_envoy: EnvoyFilterPtr,
    _filter: ModuleFilterPtr,
    _event_id: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_headers(
    _config_envoy: EnvoyConfigPtr,
    _config: ModuleConfigPtr,
    _stream_id: u64,
    _headers: *mut EnvoyHttpHeader,
    _headers_size: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_data(
    _config_envoy: EnvoyConfigPtr,
    _config: ModuleConfigPtr,
    _stream_id: u64,
    _data: *const EnvoyBuffer,
    _data_count: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_trailers(
    _config_envoy: EnvoyConfigPtr,
    _config: ModuleConfigPtr,
    _stream_id: u64,
    _trailers: *mut EnvoyHttpHeader,
    _trailers_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_complete(
    _config_envoy: EnvoyConfigPtr,
    _config: ModuleConfigPtr,
    _stream_id: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_reset(
    _config_envoy: EnvoyConfigPtr,
    _config: ModuleConfigPtr,
    _stream_id: u64,
    _reason: u32,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _filter_envoy: EnvoyFilterPtr,
    _filter: ModuleFilterPtr,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _filter_envoy: EnvoyFilterPtr,
    _filter: ModuleFilterPtr,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_local_reply(
    _filter_envoy: EnvoyFilterPtr,
    _filter: ModuleFilterPtr,
    _response_code: u32,
    _details: EnvoyBuffer,
    _reset_imminent: bool,
) -> u32 {
    CONTINUE
}
