//! Per request: read the facts from Envoy once, then hand them to the inbound
//! or outbound logic. Shared pieces: the header map, owned-header hygiene and
//! deny responses.

use std::cell::RefCell;
use std::rc::Rc;

use meshward_engine::audit::deny_body;
use meshward_engine::config::Direction;
use meshward_engine::pipeline::publish::{self, Published, Side};
use meshward_engine::{Decision, Headers, Policy, Reason};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel};

use crate::host;
use crate::root::Shared;
use crate::{inbound, outbound};

/// Headers the filter owns: incoming copies are removed or replaced.
pub const OWNED_PREFIX: &str = "x-meshward-";

/// One request's context.
pub struct RequestFilter {
    shared: Option<Rc<RefCell<Shared>>>,
}

impl RequestFilter {
    pub fn new(shared: Option<Rc<RefCell<Shared>>>) -> Self {
        RequestFilter { shared }
    }
}

impl Context for RequestFilter {}

/// The request headers as read in one host call (Envoy keeps repeated
/// headers as separate entries, so duplicates stay visible).
pub struct HeaderMap(pub Vec<(String, String)>);

/// Delegates to the engine's implementation for header lists (one pass for
/// the condition headers, ASCII-case-insensitive names).
impl Headers for HeaderMap {
    fn get(&self, name: &str) -> Option<&str> {
        Headers::get(&self.0, name)
    }

    fn is_repeated(&self, name: &str) -> bool {
        self.0.is_repeated(name)
    }

    fn read_all<'s>(&'s self, names: &[String], values: &mut [Option<&'s str>]) -> bool {
        self.0.read_all(names, values)
    }
}

impl HeaderMap {
    /// The value, or `""`.
    pub fn get_or_empty(&self, name: &str) -> &str {
        Headers::get(self, name).unwrap_or("")
    }

    /// Every value of a header, in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Removes every incoming `x-meshward-*` header.
    pub fn strip_owned(&self) -> bool {
        let mut owned: Vec<&str> = self
            .0
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| k.starts_with(OWNED_PREFIX))
            .collect();
        owned.dedup();
        owned
            .into_iter()
            .all(|k| host::remove_request_header(k).is_ok())
    }
}

impl HttpContext for RequestFilter {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let headers = match host::request_headers() {
            Ok(h) => HeaderMap(h),
            Err(_) => return deny_without_policy(Reason::IdentityUnavailable, None),
        };
        #[cfg(feature = "trap-trigger")]
        trap_if_asked(&headers);
        let request_id = Headers::get(&headers, "x-request-id");
        let Some(shared) = self.shared.as_ref() else {
            return deny_without_policy(Reason::NoPolicy, request_id);
        };
        let Ok(mut state) = shared.try_borrow_mut() else {
            return deny_without_policy(Reason::NoPolicy, request_id);
        };
        let Some(direction) = state.config.as_ref().map(|c| c.direction) else {
            return deny_without_policy(Reason::NoPolicy, request_id);
        };
        match direction {
            Direction::Inbound => inbound::on_request(&mut state, &headers),
            Direction::Outbound => outbound::on_request(&mut state, &headers),
        }
    }
}

/// Test builds only (`--features trap-trigger`, never the release artifact):
/// a request with `x-meshward-test-trap` panics inside the filter, so tests
/// can show a trap never turns into an allow.
#[cfg(feature = "trap-trigger")]
#[expect(clippy::panic, reason = "deliberate trap for the fail-closed test")]
fn trap_if_asked(headers: &HeaderMap) {
    if Headers::get(headers, "x-meshward-test-trap").is_some() {
        panic!("meshward: test trap requested");
    }
}

/// Answers a deny locally, with `%RESPONSE_CODE_DETAILS%` naming the reason
/// (`meshward_denied{<reason>}`); the filter then returns `Action::Pause`.
pub fn respond_deny(
    policy: Option<&Policy>,
    decision: &Decision,
    request_id: Option<&str>,
) -> Action {
    let status = u32::from(decision.http_status());
    let body = deny_body(policy, decision, request_id);
    let sent = host::send_response(
        status,
        &[
            ("content-type", "application/json"),
            ("x-meshward-reason", decision.reason.code()),
        ],
        &body,
        &publish::response_details(decision.reason),
        -1,
    );
    if sent.is_err() {
        host::log(
            LogLevel::Error,
            "meshward: could not send the deny response",
        );
    }
    Action::Pause
}

/// Publishes a decision's facts as filter state for Envoy's access loggers
/// (`%FILTER_STATE(wasm.meshward_…:PLAIN)%`). A fact that cannot be set is
/// logged, never fatal: the decision stands either way.
pub fn publish_facts(facts: &Published<'_>) {
    let mut failed = 0_usize;
    for (name, value) in publish::decision_facts(facts) {
        failed += usize::from(host::set_filter_state(name, &value).is_err());
    }
    if failed > 0 {
        host::log(
            LogLevel::Warn,
            &format!("meshward: {failed} decision facts could not be published as filter state"),
        );
    }
}

/// A deny decided before (or without) policy evaluation: published, then
/// answered.
pub fn deny_early(policy: Option<&Policy>, reason: Reason, request_id: Option<&str>) -> Action {
    let decision = Decision::deny(reason);
    publish_facts(&Published {
        policy,
        decision: &decision,
        side: Side::Inbound,
        peer: None,
        chain: None,
    });
    respond_deny(policy, &decision, request_id)
}

fn deny_without_policy(reason: Reason, request_id: Option<&str>) -> Action {
    host::log(
        LogLevel::Warn,
        &format!(
            "meshward: denying request without a usable policy ({})",
            reason.code()
        ),
    );
    deny_early(None, reason, request_id)
}
