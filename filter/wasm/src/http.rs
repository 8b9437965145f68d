//! Per request: read the facts from Envoy, verify the peer, evaluate, act.

use std::cell::RefCell;
use std::rc::Rc;

use meshward_engine::audit::{audit_line, deny_body, AuditFacts};
use meshward_engine::config::AuditLog;
use meshward_engine::identity::{verify_peer, IdentityChecks, PeerInputs};
use meshward_engine::{evaluate, Decision, Effect, Headers, Reason, Request};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel};

use crate::host;
use crate::root::Shared;

/// Headers the filter owns: incoming copies are always removed.
const OWNED_PREFIX: &str = "x-meshward-";
const XFCC: &str = "x-forwarded-client-cert";

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

/// The request headers as read in one host call.
struct HeaderMap(Vec<(String, String)>);

impl Headers for HeaderMap {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .as_slice()
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl HeaderMap {
    fn get_or_empty(&self, name: &str) -> &str {
        Headers::get(self, name).unwrap_or("")
    }

    /// How many times a header occurs (Envoy keeps duplicates as separate entries).
    fn count(&self, name: &str) -> usize {
        self.0.iter().filter(|(k, _)| k == name).count()
    }
}

impl HttpContext for RequestFilter {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let headers = match host::request_headers() {
            Ok(h) => HeaderMap(h),
            Err(_) => return deny_without_policy(Reason::IdentityUnavailable, None),
        };
        let Some(shared) = self.shared.as_ref() else {
            return deny_without_policy(Reason::NoPolicy, Headers::get(&headers, "x-request-id"));
        };
        let Ok(mut state) = shared.try_borrow_mut() else {
            return deny_without_policy(Reason::NoPolicy, Headers::get(&headers, "x-request-id"));
        };
        let Shared {
            config,
            certs,
            stats,
        } = &mut *state;
        let Some(config) = config.as_ref() else {
            return deny_without_policy(Reason::NoPolicy, Headers::get(&headers, "x-request-id"));
        };
        let policy = &config.policy;
        let now = host::now_secs();

        // Identity: the TLS connection's certificate digest binds everything.
        let digest = host::property(&["connection", "sha256_peer_certificate_digest"]);
        let uri_san = host::property(&["connection", "uri_san_peer_certificate"]);
        let peer = match (digest, uri_san, now) {
            (Ok(digest), Ok(uri_san), Ok(now)) => {
                let xfcc = match headers.count(XFCC) {
                    0 => None,
                    // Envoy's SANITIZE_SET writes exactly one; more is not Envoy's doing.
                    1 => Headers::get(&headers, XFCC),
                    _ => Some(""),
                };
                let inputs = PeerInputs {
                    cert_digest: digest.as_deref(),
                    uri_san: uri_san.as_deref(),
                    xfcc,
                };
                let checks = IdentityChecks {
                    source: config.peer_certificate,
                    max_cert_lifetime_secs: policy.max_cert_lifetime_secs(),
                    revoked_serials: &config.revoked_serials,
                };
                verify_peer(&checks, &inputs, now, certs).cloned()
            }
            _ => Err(Reason::IdentityUnavailable),
        };

        let method = headers.get_or_empty(":method");
        let path = headers.get_or_empty(":path");
        let authority = headers.get_or_empty(":authority");
        let request_id = Headers::get(&headers, "x-request-id");
        let decision = evaluate(
            policy,
            &Request::from_peer(
                peer.as_ref().map_err(|r| *r),
                method,
                path,
                authority,
                &headers,
            ),
        );
        stats.record(&decision);

        let wants_audit = match config.audit_log {
            AuditLog::All => true,
            AuditLog::Denies => decision.effect == Effect::Deny || decision.would_deny(),
            AuditLog::None => false,
        };
        if wants_audit {
            let facts = AuditFacts {
                request_id,
                peer: peer.as_ref().ok().map(|p| p.as_str()),
                method,
                path,
                authority,
                time: now.unwrap_or(0),
            };
            host::log(
                LogLevel::Info,
                &format!("meshward.audit {}", audit_line(policy, &decision, &facts)),
            );
        }

        if decision.effect == Effect::Deny {
            return respond_deny(&decision, &deny_body(Some(policy), &decision, request_id));
        }

        // Allow: replace every header we own with verified facts.
        let owned: Vec<&str> = headers
            .0
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| k.starts_with(OWNED_PREFIX))
            .collect();
        let mut ok = owned
            .into_iter()
            .all(|k| host::remove_request_header(k).is_ok());
        let peer_text = peer.as_ref().map(|p| p.as_str()).unwrap_or("");
        let intent = decision
            .intent
            .map_or("unclassified", |i| policy.intent_name(i));
        let verdict = if decision.would_deny() {
            "would-deny"
        } else {
            "allow"
        };
        for (name, value) in [
            ("x-meshward-peer", peer_text),
            ("x-meshward-intent", intent),
            ("x-meshward-decision", verdict),
            ("x-meshward-policy", policy.hash_hex()),
        ] {
            ok &= host::set_request_header(name, value).is_ok();
        }
        if !ok {
            // The app must never see a forged identity header: fail closed.
            let denied = Decision::deny(Reason::IdentityUnavailable);
            return respond_deny(&denied, &deny_body(Some(policy), &denied, request_id));
        }
        Action::Continue
    }
}

fn respond_deny(decision: &Decision, body: &str) -> Action {
    let status = u32::from(decision.http_status());
    let sent = host::send_response(
        status,
        &[
            ("content-type", "application/json"),
            ("x-meshward-reason", decision.reason.code()),
        ],
        body,
    );
    if sent.is_err() {
        host::log(
            LogLevel::Error,
            "meshward: could not send the deny response",
        );
    }
    Action::Pause
}

fn deny_without_policy(reason: Reason, request_id: Option<&str>) -> Action {
    let decision = Decision::deny(reason);
    host::log(
        LogLevel::Warn,
        &format!(
            "meshward: denying request without a usable policy ({})",
            reason.code()
        ),
    );
    respond_deny(&decision, &deny_body(None, &decision, request_id))
}
