//! The audit line: one JSON object per decision, in identities and intents
//! rather than addresses. It holds the engine's inputs too (peer, method,
//! path, authority, time), so a recorded log can be replayed against another
//! policy with the same engine.

use serde::Serialize;

use crate::decision::Decision;
use crate::policy::Policy;

/// The request facts an audit line records beside the decision.
#[derive(Debug, Clone, Copy)]
pub struct AuditFacts<'a> {
    /// `x-request-id`, when present.
    pub request_id: Option<&'a str>,
    /// The verified peer SPIFFE ID, when there is one.
    pub peer: Option<&'a str>,
    /// `:method`.
    pub method: &'a str,
    /// `:path`.
    pub path: &'a str,
    /// `:authority`.
    pub authority: &'a str,
    /// Unix time, seconds.
    pub time: u64,
}

#[derive(Serialize)]
struct WouldLine<'a> {
    decision: &'a str,
    reason: &'a str,
    rule: Option<&'a str>,
}

#[derive(Serialize)]
struct AuditLine<'a> {
    request_id: Option<&'a str>,
    peer: Option<&'a str>,
    intent: Option<&'a str>,
    rule: Option<&'a str>,
    decision: &'a str,
    reason: &'a str,
    status: u16,
    mode: &'a str,
    would: Option<WouldLine<'a>>,
    policy: &'a str,
    method: &'a str,
    path: &'a str,
    authority: &'a str,
    time: u64,
}

/// Renders the audit line for one decision as compact JSON.
pub fn audit_line(policy: &Policy, decision: &Decision, facts: &AuditFacts<'_>) -> String {
    let line = AuditLine {
        request_id: facts.request_id,
        peer: facts.peer,
        intent: decision.intent.map(|i| policy.intent_name(i)),
        rule: decision.rule.map(|r| policy.rule_id(r)),
        decision: decision.effect.as_str(),
        reason: decision.reason.code(),
        status: decision.http_status(),
        mode: if policy.is_dry_run() {
            "dry-run"
        } else {
            "enforce"
        },
        would: decision.would_be.map(|w| WouldLine {
            decision: w.effect.as_str(),
            reason: w.reason.code(),
            rule: w.rule.map(|r| policy.rule_id(r)),
        }),
        policy: policy.hash_hex(),
        method: facts.method,
        path: facts.path,
        authority: facts.authority,
        time: facts.time,
    };
    // INVARIANT: serializing plain strings and numbers cannot fail.
    serde_json::to_string(&line).unwrap_or_default()
}

/// The JSON body of a deny response: decision, reason, intent, request id,
/// and nothing else about the policy.
pub fn deny_body(policy: Option<&Policy>, decision: &Decision, request_id: Option<&str>) -> String {
    let body = serde_json::json!({
        "decision": decision.effect.as_str(),
        "reason": decision.reason.code(),
        "intent": policy.and_then(|p| decision.intent.map(|i| p.intent_name(i))),
        "request_id": request_id,
    });
    body.to_string()
}
