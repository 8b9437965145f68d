//! One filter configuration of the module: the engine's pipeline, the
//! counters defined for it, and the tick schedule. Everything that decides
//! is the pipeline's; this file only routes Envoy's events to it.
//!
//! Threading: Envoy shares one filter configuration among all worker
//! threads, and the pipeline keeps `!Sync` state (certificate and token
//! caches, key sets). It lives behind one `Mutex`: a decision holds the lock
//! for the pipeline's own work only (no I/O waits: every host call is a
//! synchronous call into Envoy), so workers wait only for decisions, the
//! caches and fetched keys are shared by all workers, and one tick on the
//! main thread refreshes keys for every worker. (One pipeline per worker
//! would parse the policy and fill the caches once per worker, and fetched
//! key sets would have to be copied into each.)
//!
//! Ticks: HTTP filters have no timers in Envoy 1.40, but a filter
//! configuration has a scheduler that runs an event on the main thread and
//! may be committed to from any thread. When the pipeline asks for ticks,
//! one thread of the module per configuration sleeps for the period and
//! commits a tick event (the first right away); the tick then runs the
//! pipeline (key fetches as configuration-level HTTP callouts) on the main
//! thread, as proxy-wasm's `on_tick` does. The thread is stopped and joined
//! before Envoy destroys the configuration (`crate::ffi`).
//!
//! A panic while the pipeline is locked poisons the lock; the next request
//! builds a fresh pipeline from the same configuration bytes (as the wasm
//! build's `FAIL_RELOAD` starts a fresh VM), and a request that cannot get
//! a working pipeline is denied.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use meshward_engine::pipeline::{
    deny_without_pipeline, response, Action, Host, LocalResponse, LogLevel, Pipeline,
};
use meshward_engine::{Decision, Reason};

use crate::abi::{AbiLogLevel, CalloutAnswer, ConfigOps, LogOps, StreamOps};
use crate::host::{ConfigHost, ConfigShared, RequestHost};

/// What the request-headers hook tells Envoy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadersVerdict {
    /// Continue the filter chain (`false`: the module answered the request).
    pub proceed: bool,
}

impl HeadersVerdict {
    /// The request was answered locally.
    pub const STOP: HeadersVerdict = HeadersVerdict { proceed: false };
}

/// One filter configuration.
pub struct Module {
    shared: ConfigShared,
    /// `None` after a failed rebuild: every request is denied until one
    /// succeeds.
    pipeline: Mutex<Option<Pipeline>>,
}

impl Module {
    /// Runs the pipeline's start and configure steps on the configuration
    /// bytes (main thread, while Envoy still accepts counter definitions).
    /// `None` rejects the configuration.
    pub fn create(
        plugin_config: Vec<u8>,
        ops: &mut impl ConfigOps,
        log: &dyn LogOps,
    ) -> Option<Module> {
        let shared = ConfigShared {
            plugin_config,
            ..ConfigShared::default()
        };
        let mut pipeline = Pipeline::new();
        let mut host = ConfigHost::creating(ops, &shared, log);
        if !pipeline.on_vm_start(&mut host) || !pipeline.on_configure(&mut host) {
            return None;
        }
        Some(Module {
            shared,
            pipeline: Mutex::new(Some(pipeline)),
        })
    }

    /// Whether the pipeline asked for ticks (key or revocation fetches).
    pub fn wants_ticks(&self) -> bool {
        self.shared.tick_period_ms.load(Ordering::Relaxed) > 0
    }

    /// The tick period in milliseconds (0: none), for the ticker thread.
    pub fn tick_period(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.shared.tick_period_ms)
    }

    /// One request's headers: the pipeline decides.
    pub fn on_request_headers(
        &self,
        stream: &mut impl StreamOps,
        log: &dyn LogOps,
    ) -> HeadersVerdict {
        let mut host = RequestHost::new(stream, &self.shared, log);
        let mut slot = match self.pipeline.lock() {
            Ok(slot) => slot,
            Err(poisoned) => {
                // A panic interrupted an earlier request: start afresh.
                let mut slot = poisoned.into_inner();
                *slot = self.rebuild(&mut host);
                self.pipeline.clear_poison();
                slot
            }
        };
        // Inside the lock, so the test panic poisons it as a real one would.
        #[cfg(feature = "trap-trigger")]
        trap_if_asked(&mut host);
        let Some(pipeline) = slot.as_mut() else {
            // The last rebuild failed: try again, deny this request.
            *slot = self.rebuild(&mut host);
            drop(slot);
            deny_without_pipeline(&mut host, Reason::NoPolicy);
            return HeadersVerdict::STOP;
        };
        let action = pipeline.on_request_headers(&mut host);
        drop(slot);
        HeadersVerdict {
            proceed: matches!(action, Action::Continue),
        }
    }

    /// A fresh pipeline from the same bytes, or `None` (logged).
    fn rebuild(&self, host: &mut dyn Host) -> Option<Pipeline> {
        let mut pipeline = Pipeline::new();
        if pipeline.on_vm_start(host) && pipeline.on_configure(host) {
            host.log(LogLevel::Warn, "meshward: pipeline rebuilt after a panic");
            Some(pipeline)
        } else {
            host.log(
                LogLevel::Error,
                "meshward: the pipeline could not be rebuilt; denying",
            );
            None
        }
    }

    /// A tick on the main thread.
    pub fn on_tick(&self, ops: &mut impl ConfigOps, log: &dyn LogOps) {
        let mut host = ConfigHost::running(ops, &self.shared, log);
        let mut slot = self.pipeline.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(pipeline) = slot.as_mut() {
            pipeline.on_tick(&mut host);
        }
    }

    /// The answer to a callout the pipeline started from a tick.
    pub fn on_callout_done(
        &self,
        ops: &mut impl ConfigOps,
        log: &dyn LogOps,
        callout_id: u64,
        answer: Option<&CalloutAnswer>,
    ) {
        let Ok(call) = u32::try_from(callout_id) else {
            return;
        };
        // `None` (timeout, reset) and a response without a numeric
        // `:status` are both "no status" to the pipeline.
        let status = answer.and_then(CalloutAnswer::status);
        let body = answer.map(|a| a.body.clone());
        let mut host = ConfigHost::answering(ops, &self.shared, log, answer);
        let mut slot = self.pipeline.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(pipeline) = slot.as_mut() {
            pipeline.on_http_call_response(&mut host, call, status, body);
        }
    }

    /// The request hook panicked: deny this request (503, as a wasm trap
    /// answers). The poisoned lock makes the next request rebuild.
    pub fn deny_after_panic(&self, stream: &mut impl StreamOps, log: &dyn LogOps) {
        log.log(
            AbiLogLevel::Error,
            b"meshward: panic while deciding a request; denied",
        );
        let mut host = RequestHost::new(stream, &self.shared, log);
        let answer = deny_after_panic_response(&mut host);
        if host.send_response(&answer).is_err() {
            host.log(
                LogLevel::Error,
                "meshward: could not send the deny response",
            );
        }
    }
}

/// Denies a request Envoy handed to a filter without its configuration
/// (which Envoy's contract rules out; fail closed all the same).
pub fn deny_without_module(stream: &mut impl StreamOps, log: &dyn LogOps) {
    let shared = ConfigShared::default();
    let mut host = RequestHost::new(stream, &shared, log);
    deny_without_pipeline(&mut host, Reason::NoPolicy);
}

/// The answer to a request whose decision panicked: the engine's deny for
/// `no_policy`, as 503 (gRPC: 14 UNAVAILABLE), as a wasm trap is answered:
/// the filter failed, not the caller.
fn deny_after_panic_response(host: &mut dyn Host) -> LocalResponse {
    let headers = host.request_headers().unwrap_or_default();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| core::str::from_utf8(v).ok())
    };
    let grpc = header("content-type").is_some_and(response::is_grpc);
    let decision = Decision::deny(Reason::NoPolicy);
    let mut answer = response::deny(None, &decision, header("x-request-id"), grpc);
    answer.status = 503;
    answer.grpc_status = grpc.then_some(GRPC_UNAVAILABLE);
    answer.details = "meshward_panic".to_owned();
    answer
}

/// gRPC status for a request the filter could not decide.
const GRPC_UNAVAILABLE: u32 = 14;

/// Test builds only (`--features trap-trigger`, never the release module): a
/// request with `x-meshward-test-trap` panics inside the hook, so tests can
/// show a panic becomes a deny and Envoy keeps serving.
#[cfg(feature = "trap-trigger")]
#[expect(clippy::panic, reason = "deliberate panic for the fail-closed test")]
fn trap_if_asked(host: &mut dyn Host) {
    let asked = host
        .request_headers()
        .ok()
        .is_some_and(|h| h.iter().any(|(k, _)| k == "x-meshward-test-trap"));
    if asked {
        panic!("meshward: test trap requested");
    }
}
