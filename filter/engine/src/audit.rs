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
    line.write()
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
    line.write()
}

/// [`AuditRecord`] over borrowed data: same members, same order, same
/// omissions (a test holds the two to the same output).
struct AuditLine<'a> {
    schema: &'static str,
    direction: Option<&'static str>,
    request_id: Option<&'a str>,
    traceparent: Option<&'a str>,
    x_b3_traceid: Option<&'a str>,
    peer: Option<&'a str>,
    peer_error: Option<&'static str>,
    cert: Option<AuditCert>,
    jwt_svid: Option<&'a str>,
    jwt_svid_error: Option<&'static str>,
    user: Option<&'a AuditUser>,
    user_error: Option<&'static str>,
    chain: Option<String>,
    chain_error: Option<&'static str>,
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

struct AuditWouldLine<'a> {
    decision: &'static str,
    reason: &'static str,
    rule: Option<&'a str>,
}

impl AuditLine<'_> {
    /// The line as serde_json would write an [`AuditRecord`] with these
    /// members, written straight into one string.
    fn write(&self) -> String {
        let mut out = String::with_capacity(640);
        let mut o = JsonObject::open(&mut out);
        o.str("schema", self.schema);
        o.some_str("direction", self.direction);
        o.opt_str("request_id", self.request_id);
        o.some_str("traceparent", self.traceparent);
        o.some_str("x_b3_traceid", self.x_b3_traceid);
        o.opt_str("peer", self.peer);
        o.some_str("peer_error", self.peer_error);
        if let Some(cert) = self.cert {
            let mut c = JsonObject::open(o.raw("cert"));
            c.u64("not_before", cert.not_before);
            c.u64("not_after", cert.not_after);
            c.close();
        }
        o.some_str("jwt_svid", self.jwt_svid);
        o.some_str("jwt_svid_error", self.jwt_svid_error);
        if let Some(user) = self.user {
            // Rare (user tokens) and nested: serde writes it.
            // INVARIANT: serializing strings and maps of strings cannot fail.
            let user = serde_json::to_string(user).unwrap_or_default();
            o.raw("user").push_str(&user);
        }
        o.some_str("user_error", self.user_error);
        o.some_str("chain", self.chain.as_deref());
        o.some_str("chain_error", self.chain_error);
        self.headers.write(&mut o);
        o.str("method", self.method);
        o.str("path", self.path);
        o.str("authority", self.authority);
        o.u64("time", self.time);
        o.opt_str("intent", self.intent);
        o.opt_str("rule", self.rule);
        o.str("decision", self.decision);
        o.str("reason", self.reason);
        o.u64("status", u64::from(self.status));
        o.str("mode", self.mode);
        match &self.would {
            None => o.null("would"),
            Some(would) => {
                let mut w = JsonObject::open(o.raw("would"));
                w.str("decision", would.decision);
                w.str("reason", would.reason);
                w.opt_str("rule", would.rule);
                w.close();
            }
        }
        o.str("policy", self.policy);
        o.close();
        out
    }
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

    /// The `headers` member, left out when none is present.
    fn write(&self, o: &mut JsonObject<'_>) {
        let mut present: Vec<(&str, &str)> = self
            .recorded()
            .filter_map(|n| self.headers.get(n).map(|v| (n, v)))
            .collect();
        if present.is_empty() {
            return;
        }
        present.sort_unstable_by(|a, b| a.0.cmp(b.0));
        present.dedup_by(|a, b| a.0 == b.0);
        let mut map = JsonObject::open(o.raw("headers"));
        for (name, value) in present {
            map.str(name, value);
        }
        map.close();
    }
}

// --- compact JSON, written by hand --------------------------------------------
//
// The audit line and the deny body are written straight into one `String`:
// serde_json's serializer costs a formatter round per member and escapes
// every string byte by byte. Strings that need no escaping (policy names,
// reason codes, the policy hash, SPIFFE IDs, most header values) are copied
// in one `push_str` after one scan. The output is byte for byte what
// serde_json writes for the same document (a test holds them together).

/// Appends `s` as a JSON string, escaped exactly as serde_json escapes it:
/// `"`, `\`, and control characters (`\b \t \n \f \r` short, the others
/// `\u00xx`); everything else, non-ASCII included, as is.
pub(crate) fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    // Most strings need no escaping: find the first byte that does, eight
    // bytes at a time, and copy everything before it at once.
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut at = clean_prefix(bytes);
    while let Some(&b) = bytes.get(at) {
        if needs_escape(b) {
            // Escaped bytes are ASCII, so `start..at` sits on char boundaries.
            out.push_str(s.get(start..at).unwrap_or_default());
            push_escape(out, b);
            start = at + 1;
            at += 1 + clean_prefix(bytes.get(at + 1..).unwrap_or_default());
        } else {
            at += 1;
        }
    }
    out.push_str(s.get(start..).unwrap_or_default());
    out.push('"');
}

fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// How many leading bytes need no escaping (a lower bound that stops at the
/// first eight-byte word holding one that may).
fn clean_prefix(bytes: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Exact "some byte is zero" / "some byte is below n" tests (n <= 0x80).
    let has_zero = |w: u64| w.wrapping_sub(ONES) & !w & HIGH != 0;
    let mut clean = 0;
    for chunk in bytes.chunks_exact(8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        let control = w.wrapping_sub(ONES * 0x20) & !w & HIGH != 0;
        if control
            || has_zero(w ^ (ONES * u64::from(b'"')))
            || has_zero(w ^ (ONES * u64::from(b'\\')))
        {
            break;
        }
        clean += 8;
    }
    clean
}

fn push_escape(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let short = match b {
        b'"' => "\\\"",
        b'\\' => "\\\\",
        0x08 => "\\b",
        0x09 => "\\t",
        0x0a => "\\n",
        0x0c => "\\f",
        0x0d => "\\r",
        _ => "",
    };
    if short.is_empty() {
        out.push_str("\\u00");
        for nibble in [b >> 4, b & 0x0f] {
            out.push(char::from(
                HEX.get(usize::from(nibble)).copied().unwrap_or(b'0'),
            ));
        }
    } else {
        out.push_str(short);
    }
}

/// A JSON object being written: members separated by commas.
pub(crate) struct JsonObject<'o> {
    out: &'o mut String,
    first: bool,
}

impl<'o> JsonObject<'o> {
    pub(crate) fn open(out: &'o mut String) -> Self {
        out.push('{');
        JsonObject { out, first: true }
    }

    fn key(&mut self, key: &str) -> &mut String {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        // Keys are this module's own identifiers or header names (escaped).
        push_json_str(self.out, key);
        self.out.push(':');
        self.out
    }

    pub(crate) fn str(&mut self, key: &str, value: &str) {
        let out = self.key(key);
        push_json_str(out, value);
    }

    pub(crate) fn opt_str(&mut self, key: &str, value: Option<&str>) {
        match value {
            Some(v) => self.str(key, v),
            None => self.key(key).push_str("null"),
        }
    }

    /// A member written only when present (`skip_serializing_if = "Option::is_none"`).
    pub(crate) fn some_str(&mut self, key: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.str(key, v);
        }
    }

    pub(crate) fn u64(&mut self, key: &str, value: u64) {
        let out = self.key(key);
        let mut digits = [0u8; 20];
        let mut n = value;
        let mut at = digits.len();
        loop {
            at -= 1;
            if let Some(d) = digits.get_mut(at) {
                *d = b'0' + (n % 10) as u8;
            }
            n /= 10;
            if n == 0 {
                break;
            }
        }
        for &d in digits.get(at..).unwrap_or_default() {
            out.push(char::from(d));
        }
    }

    pub(crate) fn null(&mut self, key: &str) {
        self.key(key).push_str("null");
    }

    /// A member whose value the caller writes (an object, or serde's output).
    pub(crate) fn raw(&mut self, key: &str) -> &mut String {
        self.key(key)
    }

    pub(crate) fn close(self) {
        self.out.push('}');
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
    // Members in the order `serde_json::json!` wrote them (sorted).
    let mut out = String::with_capacity(128);
    let mut o = JsonObject::open(&mut out);
    o.str("decision", decision.effect.as_str());
    o.opt_str(
        "intent",
        policy.and_then(|p| decision.intent.map(|i| p.intent_name(i))),
    );
    o.str("reason", decision.reason.code());
    o.opt_str("request_id", request_id);
    o.close();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let mut every_ascii = String::new();
        for b in 0u8..0x80 {
            every_ascii.push(char::from(b));
        }
        for s in [
            "",
            "plain",
            every_ascii.as_str(),
            "caf\u{e9} \u{1f600} \u{2028}\u{fffd}",
            "\"quoted\" \\ back\\slash\u{7f}",
            "tail\n",
        ] {
            let mut out = String::new();
            push_json_str(&mut out, s);
            assert_eq!(out, serde_json::to_string(s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn lines_are_what_serde_writes_for_the_record() {
        let awkward = "a\"b\\c\u{1}\u{1f}\t/\u{e9}";
        let headers: &[(&str, &str)] = &[("x-tenant", awkward), ("x-http-method-override", "GET")];
        let names = vec!["x-tenant".to_owned(), "x-absent".to_owned()];
        let user = AuditUser {
            sub: "u\"1".into(),
            iss: Some("https://idp".into()),
            scopes: vec!["read".into()],
            claims: BTreeMap::from([("team".to_owned(), AuditClaim::Str("a\nb".into()))]),
        };
        for (full, would) in [(true, true), (false, false)] {
            let line = AuditLine {
                schema: AUDIT_SCHEMA,
                direction: (!full).then_some("outbound"),
                request_id: full.then_some(awkward),
                traceparent: full.then_some("00-abc-def-01"),
                x_b3_traceid: full.then_some(awkward),
                peer: full.then_some("spiffe://td/ns/a/sa/b"),
                peer_error: (!full).then_some("no_peer_certificate"),
                cert: full.then_some(AuditCert {
                    not_before: 0,
                    not_after: u64::MAX,
                }),
                jwt_svid: full.then_some("spiffe://td/x"),
                jwt_svid_error: full.then_some("jwt_expired"),
                user: full.then_some(&user),
                user_error: full.then_some("user_token_expired"),
                chain: full.then(|| "v=1;iat=1".to_owned()),
                chain_error: full.then_some("chain_expired"),
                headers: ConditionHeaders {
                    names: if full { &names } else { &[] },
                    headers: &headers,
                },
                method: "GET",
                path: awkward,
                authority: "h\u{0}",
                time: 1_764_380_000,
                intent: full.then_some("orders.read"),
                rule: None,
                decision: "deny",
                reason: "denied_by_rule",
                status: 403,
                mode: "enforce",
                would: would.then_some(AuditWouldLine {
                    decision: "allow",
                    reason: "allowed_by_rule",
                    rule: Some(awkward),
                }),
                policy: "9c1e",
            };
            let written = line.write();
            let record: AuditRecord = serde_json::from_str(&written).unwrap();
            assert_eq!(written, serde_json::to_string(&record).unwrap());
            assert_eq!(record.path, awkward);
        }
    }

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
