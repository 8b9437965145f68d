//! The audit line: one JSON object per decision, in identities and intents
//! rather than addresses. It also records every input `evaluate` used (the
//! verified identities, the chain, the headers rules read, method, path,
//! authority, time), so `meshward replay` can re-decide a recorded log
//! against another policy with the same engine.
//!
//! Every line starts with `"schema":"meshward.audit/v1"`; the schema is
//! `docs/audit-schema.json` (JSON Schema), and a new member that readers may
//! ignore keeps the version, while a removed or retyped one bumps it.
//!
//! ```json
//! {"schema":"meshward.audit/v1","request_id":"5f0c…",
//!  "traceparent":"00-4bf9…-00f0…-01","peer":"spiffe://shop.example/ns/shop/sa/frontend",
//!  "chain":"v=1;iat=…;hops=…","headers":{"x-env":"prod"},
//!  "method":"GET","path":"/orders/42","authority":"orders","time":1764380000,
//!  "intent":"orders.read","rule":"frontend-reads-orders","decision":"allow",
//!  "reason":"allowed_by_rule","status":200,"mode":"enforce","would":null,
//!  "policy":"9c1e…"}
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::chain::Chain;
use crate::decision::{Decision, Reason};
use crate::evaluate::Claim;
use crate::method_override::METHOD_OVERRIDE_HEADERS;
use crate::policy::Policy;
use crate::spiffe::SpiffeId;

/// The `schema` member of every audit line this filter writes.
pub const AUDIT_SCHEMA: &str = "meshward.audit/v1";

/// The end user as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditUser {
    /// `sub`.
    pub sub: String,
    /// `iss` (tokens verified at this hop only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Scopes.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The claims the policy reads.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub claims: BTreeMap<String, AuditClaim>,
}

/// A recorded claim value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AuditClaim {
    /// A string claim.
    Str(String),
    /// A list of strings.
    List(Vec<String>),
}

/// The peer certificate's facts, as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditCert {
    /// notBefore, Unix seconds.
    pub not_before: u64,
    /// notAfter, Unix seconds.
    pub not_after: u64,
}

/// What dry-run rules (or a dry-run policy) would have decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditWould {
    /// `allow` / `deny`.
    pub decision: String,
    /// Reason code.
    pub reason: String,
    /// Rule id, when a rule decided.
    pub rule: Option<String>,
}

/// One audit line. Unknown fields are ignored when reading, so newer
/// filters' logs still replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// The line's schema and version ([`AUDIT_SCHEMA`]); absent in lines
    /// written before it was introduced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// `outbound` for the client side's lines; absent for inbound ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<String>,
    /// `x-request-id`.
    pub request_id: Option<String>,
    /// W3C trace context (`traceparent`), when the request carried one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// Zipkin B3 trace id (`x-b3-traceid`), when the request carried one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_b3_traceid: Option<String>,
    /// The verified mTLS peer.
    pub peer: Option<String>,
    /// Why there is no verified peer (a reason code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_error: Option<String>,
    /// The peer certificate's validity window, when it was parsed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<AuditCert>,
    /// The verified JWT-SVID subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt_svid: Option<String>,
    /// Why a presented JWT-SVID was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt_svid_error: Option<String>,
    /// The end user verified at this hop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<AuditUser>,
    /// Why a presented user token was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_error: Option<String>,
    /// The caller chain as rebuilt on arrival (wire form, origin → direct peer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<String>,
    /// Why the received chain was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_error: Option<String>,
    /// The request headers that rule conditions read (those present).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// `:method`.
    pub method: String,
    /// `:path`.
    pub path: String,
    /// `:authority`.
    pub authority: String,
    /// Unix seconds.
    pub time: u64,
    /// Intent name.
    pub intent: Option<String>,
    /// Deciding rule id.
    pub rule: Option<String>,
    /// `allow` / `deny`.
    pub decision: String,
    /// Reason code.
    pub reason: String,
    /// HTTP status answered (200 = passed on).
    pub status: u16,
    /// `enforce` / `dry-run` (the policy's mode).
    pub mode: String,
    /// Dry-run outcome, when it differs.
    pub would: Option<AuditWould>,
    /// Policy content hash.
    pub policy: String,
}

/// The request facts an audit line records beside the decision.
#[derive(Clone, Copy)]
pub struct AuditFacts<'a> {
    /// `x-request-id`, when present.
    pub request_id: Option<&'a str>,
    /// `traceparent`, when present.
    pub traceparent: Option<&'a str>,
    /// `x-b3-traceid`, when present.
    pub x_b3_traceid: Option<&'a str>,
    /// The verified peer, or why there is none.
    pub peer: Result<&'a SpiffeId, Reason>,
    /// Peer certificate validity window (notBefore, notAfter).
    pub cert_window: Option<(u64, u64)>,
    /// JWT-SVID outcome, when one was presented.
    pub jwt_svid: Option<Result<&'a SpiffeId, Reason>>,
    /// User outcome, when a token was presented.
    pub user: Option<Result<&'a AuditUser, Reason>>,
    /// Chain outcome, when a peer was verified.
    pub chain: Option<Result<&'a Chain, Reason>>,
    /// Headers that conditions read.
    pub headers: &'a dyn crate::evaluate::Headers,
    /// `:method`.
    pub method: &'a str,
    /// `:path`.
    pub path: &'a str,
    /// `:authority`.
    pub authority: &'a str,
    /// Unix time, seconds.
    pub time: u64,
}

/// Renders the audit line for one decision as compact JSON: the document
/// an [`AuditRecord`] serializes to (what replay reads back), written
/// straight from borrowed facts, without building the owned record (~20
/// allocations per line inside V8).
pub fn audit_line(policy: &Policy, decision: &Decision, facts: &AuditFacts<'_>) -> String {
    let code = |r: Reason| r.code();
    let headers = ConditionHeaders {
        names: policy.condition_headers(),
        headers: facts.headers,
    };
    let line = AuditLine {
        schema: AUDIT_SCHEMA,
        direction: None,
        request_id: facts.request_id,
        traceparent: facts.traceparent,
        x_b3_traceid: facts.x_b3_traceid,
        peer: facts.peer.ok().map(SpiffeId::as_str),
        peer_error: facts.peer.err().map(code),
        cert: facts.cert_window.map(|(not_before, not_after)| AuditCert {
            not_before,
            not_after,
        }),
        jwt_svid: facts.jwt_svid.and_then(Result::ok).map(SpiffeId::as_str),
        jwt_svid_error: facts.jwt_svid.and_then(Result::err).map(code),
        user: facts.user.and_then(Result::ok),
        user_error: facts.user.and_then(Result::err).map(code),
        chain: facts.chain.and_then(Result::ok).map(Chain::to_wire),
        chain_error: facts.chain.and_then(Result::err).map(code),
        headers,
        method: facts.method,
        path: facts.path,
        authority: facts.authority,
        time: facts.time,
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
        would: decision.would_be.map(|w| AuditWouldLine {
            decision: w.effect.as_str(),
            reason: w.reason.code(),
            rule: w.rule.map(|r| policy.rule_id(r)),
        }),
        policy: policy.hash_hex(),
    };
    // INVARIANT: serializing strings, numbers and maps of strings cannot fail.
    serde_json::to_string(&line).unwrap_or_default()
}

/// What an outbound audit line records: the call whose chain was refused.
#[derive(Clone, Copy)]
pub struct OutboundAuditFacts<'a> {
    /// `x-request-id`, when present.
    pub request_id: Option<&'a str>,
    /// `:method`.
    pub method: &'a str,
    /// `:path`.
    pub path: &'a str,
    /// `:authority`.
    pub authority: &'a str,
    /// Unix time, seconds.
    pub time: u64,
    /// The chain was dropped and the call went on (`on_invalid: drop`).
    pub chain_dropped: bool,
}

/// Renders the audit line of an outbound call whose chain was refused: the
/// members of an inbound line (no peer: the caller is this workload's own
/// app), with `"direction":"outbound"`. A dropped chain is decision
/// `drop-chain` (the call went on, status 200) with the chain's reason.
pub fn outbound_audit_line(
    policy: &Policy,
    decision: &Decision,
    facts: &OutboundAuditFacts<'_>,
) -> String {
    let no_headers: &[(&str, &str)] = &[];
    let line = AuditLine {
        schema: AUDIT_SCHEMA,
        direction: Some("outbound"),
        request_id: facts.request_id,
        traceparent: None,
        x_b3_traceid: None,
        peer: None,
        peer_error: None,
        cert: None,
        jwt_svid: None,
        jwt_svid_error: None,
        user: None,
        user_error: None,
        chain: None,
        chain_error: Some(decision.reason.code()).filter(|_| facts.chain_dropped),
        headers: ConditionHeaders {
            names: &[],
            headers: &no_headers,
        },
        method: facts.method,
        path: facts.path,
        authority: facts.authority,
        time: facts.time,
        intent: None,
        rule: None,
        decision: if facts.chain_dropped {
            "drop-chain"
        } else {
            decision.effect.as_str()
        },
        reason: decision.reason.code(),
        status: decision.http_status(),
        mode: if policy.is_dry_run() {
            "dry-run"
        } else {
            "enforce"
        },
        would: None,
        policy: policy.hash_hex(),
    };
    // INVARIANT: serializing strings and numbers cannot fail.
    serde_json::to_string(&line).unwrap_or_default()
}

/// [`AuditRecord`] over borrowed data: same members, same order, same
/// omissions (a test holds the two to the same output).
#[derive(Serialize)]
struct AuditLine<'a> {
    schema: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    direction: Option<&'static str>,
    request_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    traceparent: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    x_b3_traceid: Option<&'a str>,
    peer: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    peer_error: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cert: Option<AuditCert>,
    #[serde(skip_serializing_if = "Option::is_none")]
    jwt_svid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    jwt_svid_error: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a AuditUser>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_error: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    chain: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    chain_error: Option<&'static str>,
    #[serde(skip_serializing_if = "ConditionHeaders::is_empty")]
    headers: ConditionHeaders<'a>,
    method: &'a str,
    path: &'a str,
    authority: &'a str,
    time: u64,
    intent: Option<&'a str>,
    rule: Option<&'a str>,
    decision: &'static str,
    reason: &'static str,
    status: u16,
    mode: &'static str,
    would: Option<AuditWouldLine<'a>>,
    policy: &'a str,
}

#[derive(Serialize)]
struct AuditWouldLine<'a> {
    decision: &'static str,
    reason: &'static str,
    rule: Option<&'a str>,
}

/// The condition headers present, as a JSON object in name order (as the
/// `BTreeMap` of [`AuditRecord::headers`] writes them).
///
/// Method-override headers are recorded too: the pipeline denies or strips
/// them, and replay must see them to decide the same way.
struct ConditionHeaders<'a> {
    names: &'a [String],
    headers: &'a dyn crate::evaluate::Headers,
}

impl<'a> ConditionHeaders<'a> {
    fn recorded(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.names
            .iter()
            .map(String::as_str)
            .chain(METHOD_OVERRIDE_HEADERS)
    }

    fn is_empty(&self) -> bool {
        self.recorded().all(|n| self.headers.get(n).is_none())
    }
}

impl Serialize for ConditionHeaders<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut present: Vec<(&str, &str)> = self
            .recorded()
            .filter_map(|n| self.headers.get(n).map(|v| (n, v)))
            .collect();
        present.sort_unstable_by(|a, b| a.0.cmp(b.0));
        present.dedup_by(|a, b| a.0 == b.0);
        let mut map = serializer.serialize_map(Some(present.len()))?;
        for (name, value) in present {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

/// The reason with this code, if any (for reading audit lines back); the
/// codes are those of the one reason table, [`Reason::from_code`].
pub fn reason_from_code(code: &str) -> Option<Reason> {
    Reason::from_code(code)
}

impl AuditUser {
    /// The user as `evaluate` sees it.
    pub fn as_user_info(&self) -> &dyn crate::evaluate::UserInfo {
        self
    }
}

impl crate::evaluate::UserInfo for AuditUser {
    fn subject(&self) -> &str {
        &self.sub
    }
    fn issuer(&self) -> Option<&str> {
        self.iss.as_deref()
    }
    fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
    fn claim(&self, name: &str) -> Option<Claim<'_>> {
        self.claims.get(name).map(|c| match c {
            AuditClaim::Str(s) => Claim::Str(s),
            AuditClaim::List(l) => Claim::List(l),
        })
    }
}

/// The JSON body of a deny response: decision, reason, intent, request id,
/// and nothing else about the policy.
pub(crate) fn deny_body(
    policy: Option<&Policy>,
    decision: &Decision,
    request_id: Option<&str>,
) -> String {
    /// Members in the order `serde_json::json!` wrote them (sorted).
    #[derive(Serialize)]
    struct DenyBody<'a> {
        decision: &'static str,
        intent: Option<&'a str>,
        reason: &'static str,
        request_id: Option<&'a str>,
    }
    let body = DenyBody {
        decision: decision.effect.as_str(),
        intent: policy.and_then(|p| decision.intent.map(|i| p.intent_name(i))),
        reason: decision.reason.code(),
        request_id,
    };
    // INVARIANT: serializing strings cannot fail.
    serde_json::to_string(&body).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deny_body_is_small_stable_json() {
        let decision = Decision::deny(Reason::NoPolicy);
        assert_eq!(
            deny_body(None, &decision, Some("r-1")),
            r#"{"decision":"deny","intent":null,"reason":"no_policy","request_id":"r-1"}"#
        );
        assert_eq!(
            deny_body(None, &decision, None),
            r#"{"decision":"deny","intent":null,"reason":"no_policy","request_id":null}"#
        );
        // Escaping is JSON's.
        let body = deny_body(None, &decision, Some("a\"b"));
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&body).unwrap()["request_id"],
            "a\"b"
        );
    }
}
