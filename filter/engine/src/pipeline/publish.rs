//! What a decision publishes beyond its response: the facts Envoy's own
//! access loggers read (filter state), the response code details of a deny,
//! and the names of the counters, shaped so Envoy's tag extraction turns
//! decision, reason, rule, intent and mode into Prometheus labels.
//!
//! Everything here is pure data and pure functions: a host moves the strings
//! (proxy-wasm `set_property`, the dynamic module's filter-state callback,
//! `define_metric`), it never builds them.
//!
//! # Filter state
//!
//! `decision_facts` lists `(name, value)` pairs. A proxy-wasm host sets
//! each with `set_property([name], value)`, which Envoy stores as the
//! filter-state object `wasm.<name>`: an access log prints it with
//! `%FILTER_STATE(wasm.meshward_reason:PLAIN)%`, and the OpenTelemetry and
//! gRPC access loggers read the same objects. A fact that does not apply
//! (no intent, no rule, no chain) is not set, so the log shows `null` / `-`.
//!
//! # Stats
//!
//! A counter's name is a family followed by `.label=value` pairs, e.g.
//! `meshward.decisions.decision=deny.reason=no_matching_rule`. Envoy shows
//! it as `wasmcustom.meshward.decisions.decision=deny.reason=…` in `/stats`;
//! the regexes of [`STATS_TAGS`] (shipped in every `stats_config.stats_tags`)
//! cut each pair out of the name and make it a tag, so `/stats/prometheus`
//! reads `meshward_decisions{decision="deny",reason="no_matching_rule"}`.
//! Label values are [`stat_value`]s (`[A-Za-z0-9_]`), so no value can contain
//! the `.` or `=` the regexes split on; the compiler rejects rule ids and
//! intent names that would collide after that normalization.
//!
//! Cardinality is bounded by the code and the policy: decisions by
//! (decision, reason) at most 2 × [`Reason::ALL`]; would-be outcomes the
//! same; one counter per rule (its effect and mode are fixed by the policy),
//! at most [`MAX_RULE_COUNTERS`], the rest counted under
//! [`OTHER_RULES`]; two per intent (allow, deny), at most
//! [`MAX_INTENT_COUNTERS`], the rest under [`OTHER_INTENTS`].

use std::borrow::Cow;

use crate::chain::Chain;
use crate::decision::{Decision, Reason, RuleIdx};
use crate::model::{Effect, IntentIdx};
use crate::policy::Policy;

/// Prefix of every filter-state name meshward sets (Envoy adds `wasm.`).
pub const FILTER_STATE_PREFIX: &str = "meshward_";

/// Every filter-state name `decision_facts` may set, with what it holds,
/// in the order it sets them (docs and tests iterate this table).
pub const FILTER_STATE: [(&str, &str); 15] = [
    (DECISION, "`allow` or `deny`: the enforced outcome"),
    (REASON, "the reason code of the enforced outcome"),
    (INTENT, "the request's intent, when it was classified"),
    (RULE, "the id of the rule that decided, when a rule decided"),
    (MODE, "`enforce` or `dry-run`: the policy's mode"),
    (WOULD_BE, "`allow` or `deny`: what dry-run rules (or a dry-run policy) would have decided, when that differs"),
    (WOULD_BE_REASON, "the would-be outcome's reason code"),
    (WOULD_BE_RULE, "the dry-run rule behind the would-be outcome"),
    (PEER, "the verified caller: the mTLS peer's SPIFFE ID, or a JWT-SVID subject without one"),
    (CHAIN_ORIGIN, "the caller chain's first hop (SPIFFE ID)"),
    (CHAIN_USER, "the end user the chain carries"),
    (CHAIN_PURPOSE, "the chain's original purpose (the intent at the edge)"),
    (CHAIN, "the caller chain as received, in wire form (what `meshward replay` re-decides with)"),
    (POLICY, "the policy's content hash (hex)"),
    (DIRECTION, "`inbound` (a decision on a request to this workload) or `outbound` (the app's own call)"),
];

/// Which of the [`FILTER_STATE`] facts a configuration publishes (its
/// `filter_state` member): all (the default), none, or the names an access
/// log reads. Each published fact is one host call per request, the largest
/// avoidable per-request cost when nothing reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilterStateSet(u16);

impl FilterStateSet {
    /// Every fact (the default).
    pub const ALL: Self = Self((1 << FILTER_STATE.len()) - 1);
    /// No fact: no filter-state host call.
    pub const NONE: Self = Self(0);

    /// The facts named (each one of [`FILTER_STATE`]'s names); an unknown
    /// name is returned as the error.
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut bits = 0;
        for name in names {
            let index = FILTER_STATE
                .iter()
                .position(|(known, _)| *known == name)
                .ok_or_else(|| name.to_owned())?;
            bits |= 1 << index;
        }
        Ok(Self(bits))
    }

    /// Whether no fact is published.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether the fact `name` (one of [`FILTER_STATE`]'s names) is
    /// published.
    pub fn contains(self, name: &str) -> bool {
        self.0 & bit(name) != 0
    }
}

impl Default for FilterStateSet {
    fn default() -> Self {
        Self::ALL
    }
}

/// The bit of a [`FILTER_STATE`] name: a `const fn`, so `const { bit(X) }`
/// costs nothing per request; a name outside the table fails to compile.
#[expect(
    clippy::panic,
    reason = "only evaluated at compile time (`const { bit(..) }`): the panic is a build error"
)]
const fn bit(name: &str) -> u16 {
    let mut rest: &[(&str, &str)] = &FILTER_STATE;
    let mut index = 0;
    while let [(known, _), tail @ ..] = rest {
        if str_eq(known, name) {
            return 1 << index;
        }
        rest = tail;
        index += 1;
    }
    panic!("not a FILTER_STATE name")
}

/// `a == b`, usable in a `const fn`.
const fn str_eq(a: &str, b: &str) -> bool {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a, b) {
            ([], []) => return true,
            ([x, a_tail @ ..], [y, b_tail @ ..]) if *x == *y => {
                a = a_tail;
                b = b_tail;
            }
            _ => return false,
        }
    }
}

/// `meshward_decision`.
pub const DECISION: &str = "meshward_decision";
/// `meshward_reason`.
pub const REASON: &str = "meshward_reason";
/// `meshward_intent`.
pub const INTENT: &str = "meshward_intent";
/// `meshward_rule`.
pub const RULE: &str = "meshward_rule";
/// `meshward_mode`.
pub(crate) const MODE: &str = "meshward_mode";
/// `meshward_would_be`.
pub(crate) const WOULD_BE: &str = "meshward_would_be";
/// `meshward_would_be_reason`.
pub(crate) const WOULD_BE_REASON: &str = "meshward_would_be_reason";
/// `meshward_would_be_rule`.
pub(crate) const WOULD_BE_RULE: &str = "meshward_would_be_rule";
/// `meshward_peer`.
pub const PEER: &str = "meshward_peer";
/// `meshward_chain_origin`.
pub(crate) const CHAIN_ORIGIN: &str = "meshward_chain_origin";
/// `meshward_chain_user`.
pub(crate) const CHAIN_USER: &str = "meshward_chain_user";
/// `meshward_chain_purpose`.
pub(crate) const CHAIN_PURPOSE: &str = "meshward_chain_purpose";
/// `meshward_chain`.
pub const CHAIN: &str = "meshward_chain";
/// `meshward_policy`.
pub const POLICY: &str = "meshward_policy";
/// `meshward_direction`.
pub(crate) const DIRECTION: &str = "meshward_direction";

/// Which side of the workload a decision was made on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// A request arriving for this workload.
    Inbound,
    /// The app's own outbound call through this proxy.
    Outbound,
}

impl Side {
    /// `inbound` / `outbound`.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Inbound => "inbound",
            Side::Outbound => "outbound",
        }
    }
}

/// The facts of one decision that are published.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Published<'a> {
    /// The policy the decision was made with (`None`: no policy loaded).
    pub policy: Option<&'a Policy>,
    /// The decision.
    pub decision: &'a Decision,
    /// Which side decided.
    pub side: Side,
    /// The verified caller (mTLS peer, or a JWT-SVID subject without one).
    pub peer: Option<&'a str>,
    /// The caller chain as rebuilt on arrival.
    pub chain: Option<&'a Chain>,
}

/// The filter-state facts of one decision that `wanted` selects, as
/// `(name, value)` pairs in the order of [`FILTER_STATE`]; facts that do not
/// apply are left out, and a fact not selected is never computed.
pub(crate) fn decision_facts<'a>(
    facts: &Published<'a>,
    wanted: FilterStateSet,
) -> Vec<(&'static str, Cow<'a, str>)> {
    let decision = facts.decision;
    let policy = facts.policy;
    let rule_id = |r: RuleIdx| policy.map(|p| Cow::Borrowed(p.rule_id(r)));
    let mut out: Vec<(&'static str, Cow<'a, str>)> = Vec::with_capacity(FILTER_STATE.len());
    // `const { bit(..) }`: the selection test is one AND per fact.
    let want = |b: u16| wanted.0 & b != 0;
    if want(const { bit(DECISION) }) {
        out.push((DECISION, Cow::Borrowed(decision.effect.as_str())));
    }
    if want(const { bit(REASON) }) {
        out.push((REASON, Cow::Borrowed(decision.reason.code())));
    }
    if let (true, Some(p), Some(i)) = (want(const { bit(INTENT) }), policy, decision.intent) {
        out.push((INTENT, Cow::Borrowed(p.intent_name(i))));
    }
    if want(const { bit(RULE) }) {
        if let Some(id) = decision.rule.and_then(rule_id) {
            out.push((RULE, id));
        }
    }
    if let (true, Some(p)) = (want(const { bit(MODE) }), policy) {
        out.push((MODE, Cow::Borrowed(policy_mode(p))));
    }
    if let Some(would) = decision.would_be {
        if want(const { bit(WOULD_BE) }) {
            out.push((WOULD_BE, Cow::Borrowed(would.effect.as_str())));
        }
        if want(const { bit(WOULD_BE_REASON) }) {
            out.push((WOULD_BE_REASON, Cow::Borrowed(would.reason.code())));
        }
        if want(const { bit(WOULD_BE_RULE) }) {
            if let Some(id) = would.rule.and_then(rule_id) {
                out.push((WOULD_BE_RULE, id));
            }
        }
    }
    if let (true, Some(peer)) = (
        want(const { bit(PEER) }),
        facts.peer.filter(|p| !p.is_empty()),
    ) {
        out.push((PEER, Cow::Borrowed(peer)));
    }
    if let Some(chain) = facts.chain {
        if want(const { bit(CHAIN_ORIGIN) }) {
            if let Some(origin) = chain.origin() {
                out.push((CHAIN_ORIGIN, Cow::Borrowed(origin.as_str())));
            }
        }
        if let (true, Some(user)) = (want(const { bit(CHAIN_USER) }), &chain.user) {
            out.push((CHAIN_USER, Cow::Borrowed(user.as_str())));
        }
        if let (true, Some(purpose)) = (want(const { bit(CHAIN_PURPOSE) }), &chain.purpose) {
            out.push((CHAIN_PURPOSE, Cow::Borrowed(purpose.as_str())));
        }
        if want(const { bit(CHAIN) }) {
            out.push((CHAIN, Cow::Owned(chain.to_wire())));
        }
    }
    if let (true, Some(p)) = (want(const { bit(POLICY) }), policy) {
        out.push((POLICY, Cow::Borrowed(p.hash_hex())));
    }
    if want(const { bit(DIRECTION) }) {
        out.push((DIRECTION, Cow::Borrowed(facts.side.as_str())));
    }
    out
}

/// `enforce` / `dry-run`, as audit lines and access logs write a policy's mode.
pub(crate) fn policy_mode(policy: &Policy) -> &'static str {
    if policy.is_dry_run() {
        "dry-run"
    } else {
        "enforce"
    }
}

/// Envoy's response code details for a deny (`%RESPONSE_CODE_DETAILS%`):
/// `meshward_denied{<reason code>}`. Reason codes are snake_case, so the
/// text never holds the whitespace Envoy would rewrite.
pub(crate) fn response_details(reason: Reason) -> String {
    let code = reason.code();
    let mut details = String::with_capacity(code.len() + 17);
    details.push_str("meshward_denied{");
    details.push_str(code);
    details.push('}');
    details
}

// --- stats -----------------------------------------------------------------

/// Most rules that get a counter of their own; further rules share
/// [`OTHER_RULES`].
pub const MAX_RULE_COUNTERS: usize = 512;
/// Most intents that get counters of their own; further intents share
/// [`OTHER_INTENTS`].
pub const MAX_INTENT_COUNTERS: usize = 512;
/// The `rule` label of the rules past [`MAX_RULE_COUNTERS`]. Rule ids start
/// with a letter or digit, so no rule's [`stat_value`] is this.
pub const OTHER_RULES: &str = "_other";
/// The `intent` label of the intents past [`MAX_INTENT_COUNTERS`].
pub const OTHER_INTENTS: &str = "_other";

/// The counter families and their labels, as `/stats/prometheus` names them
/// (docs, the dashboard and its test read this table).
pub const FAMILIES: [(&str, &[&str], &str); 14] = [
    (
        "meshward_decisions",
        &["decision", "reason"],
        "every decision, by enforced outcome and reason",
    ),
    (
        "meshward_would_be",
        &["decision", "reason"],
        "decisions dry-run rules (or a dry-run policy) would have made differently",
    ),
    (
        "meshward_rules",
        &["rule", "mode", "decision"],
        "decisions taken by an enforced rule, or that a dry-run rule would have taken",
    ),
    (
        "meshward_intents",
        &["intent", "decision"],
        "decisions on classified requests, by intent and enforced outcome",
    ),
    ("meshward_config_loaded", &[], "configurations loaded"),
    (
        "meshward_config_rejected",
        &[],
        "configurations refused (the last good one keeps serving)",
    ),
    (
        "meshward_keys_rotated",
        &[],
        "fetched key sets that changed the keys in force",
    ),
    (
        "meshward_keys_fetch_failed",
        &[],
        "key set or revocation list fetches that failed (the last good set is kept)",
    ),
    (
        "meshward_revocation_updated",
        &[],
        "revocation lists fetched and applied",
    ),
    (
        "meshward_chain_forwarded",
        &[],
        "outbound calls that carried a chain this proxy sealed",
    ),
    (
        "meshward_chain_rejected",
        &[],
        "outbound calls denied for a forged, edited or expired chain",
    ),
    (
        "meshward_chain_dropped",
        &[],
        "outbound calls whose invalid chain was dropped (`on_invalid: drop`)",
    ),
    (
        "meshward_chain_no_local_identity",
        &[],
        "allowed requests that got no caller chain: this workload has no SPIFFE ID",
    ),
    (
        "meshward_config_signature_rejected",
        &["reason"],
        "configurations refused for their signature, by signature error code",
    ),
];

/// Fixed counters (no labels), by Envoy stat name.
pub mod counter {
    /// A configuration was loaded.
    pub(crate) const CONFIG_LOADED: &str = "meshward.config_loaded";
    /// A configuration was refused.
    pub(crate) const CONFIG_REJECTED: &str = "meshward.config_rejected";
    /// A configuration was refused for its signature; the `reason` label is
    /// the signature error's code.
    pub(crate) const CONFIG_SIGNATURE_REJECTED: &str = "meshward.config_signature_rejected";
    /// A fetched key set changed the keys in force.
    pub(crate) const KEYS_ROTATED: &str = "meshward.keys_rotated";
    /// A key set or revocation fetch failed.
    pub(crate) const KEYS_FETCH_FAILED: &str = "meshward.keys_fetch_failed";
    /// A revocation list was fetched and applied.
    pub(crate) const REVOCATION_UPDATED: &str = "meshward.revocation_updated";
    /// An outbound call carried a chain this proxy sealed.
    pub(crate) const CHAIN_FORWARDED: &str = "meshward.chain_forwarded";
    /// An outbound call was denied for its chain.
    pub(crate) const CHAIN_REJECTED: &str = "meshward.chain_rejected";
    /// An outbound call's invalid chain was dropped.
    pub(crate) const CHAIN_DROPPED: &str = "meshward.chain_dropped";
    /// An allowed request got no chain: this workload has no identity.
    pub(crate) const CHAIN_NO_LOCAL_IDENTITY: &str = "meshward.chain_no_local_identity";
}

/// A rule id or intent name as a label value: every byte that is not an
/// ASCII letter, digit or `_` becomes `_` (`ops-admin`, `ops.admin` and
/// `ops_admin` all read `ops_admin`).
pub fn stat_value(name: &str) -> Cow<'_, str> {
    let keep = |c: char| c.is_ascii_alphanumeric() || c == '_';
    if name.chars().all(keep) && !name.is_empty() {
        return Cow::Borrowed(name);
    }
    let mut out: String = name
        .chars()
        .map(|c| if keep(c) { c } else { '_' })
        .collect();
    if out.is_empty() {
        out.push('_');
    }
    Cow::Owned(out)
}

/// `meshward.decisions.decision=<effect>.reason=<code>`.
pub(crate) fn decision_stat(effect: Effect, reason: Reason) -> String {
    format!(
        "meshward.decisions.decision={}.reason={}",
        effect.as_str(),
        reason.code()
    )
}

/// `meshward.would_be.decision=<effect>.reason=<code>`.
pub(crate) fn would_be_stat(effect: Effect, reason: Reason) -> String {
    format!(
        "meshward.would_be.decision={}.reason={}",
        effect.as_str(),
        reason.code()
    )
}

/// `meshward.rules.rule=<id>.mode=<enforce|dry_run>.decision=<effect>`:
/// one per rule, since a rule's effect and mode are fixed by the policy.
pub(crate) fn rule_stat(rule_label: &str, dry_run: bool, effect: Effect) -> String {
    format!(
        "meshward.rules.rule={rule_label}.mode={}.decision={}",
        if dry_run { "dry_run" } else { "enforce" },
        effect.as_str()
    )
}

/// `meshward.intents.intent=<name>.decision=<effect>`.
pub(crate) fn intent_stat(intent_label: &str, effect: Effect) -> String {
    format!(
        "meshward.intents.intent={intent_label}.decision={}",
        effect.as_str()
    )
}

/// The rule counters of a policy: `(rule index, Envoy stat name)` for the
/// first [`MAX_RULE_COUNTERS`] rules, then one shared [`OTHER_RULES`]
/// counter per (mode, effect) that occurs among the rest. In a dry-run
/// policy every rule reports as `dry_run`.
pub(crate) fn rule_stats(policy: &Policy) -> Vec<(Option<RuleIdx>, String)> {
    let rules = &policy.compiled().rules;
    let mut out = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        let dry_run = policy.is_dry_run() || rule.dry_run;
        let Some(idx) = RuleIdx::from_index(i) else {
            break;
        };
        if i < MAX_RULE_COUNTERS {
            let label = stat_value(policy.rule_id(idx));
            out.push((Some(idx), rule_stat(&label, dry_run, rule.effect)));
        } else {
            let name = rule_stat(OTHER_RULES, dry_run, rule.effect);
            if !out.iter().any(|(_, n)| *n == name) {
                out.push((None, name));
            }
        }
    }
    out
}

/// The intent counters of a policy: `(intent index, allow stat, deny stat)`
/// for the first [`MAX_INTENT_COUNTERS`] intents; the rest share
/// [`OTHER_INTENTS`] (index `None`).
pub(crate) fn intent_stats(policy: &Policy) -> Vec<(Option<IntentIdx>, String, String)> {
    let count = policy.compiled().intents.len();
    let mut out: Vec<(Option<IntentIdx>, String, String)> = (0..count.min(MAX_INTENT_COUNTERS))
        .filter_map(IntentIdx::from_index)
        .map(|i| {
            let label = stat_value(policy.intent_name(i));
            (
                Some(i),
                intent_stat(&label, Effect::Allow),
                intent_stat(&label, Effect::Deny),
            )
        })
        .collect();
    if count > MAX_INTENT_COUNTERS {
        out.push((
            None,
            intent_stat(OTHER_INTENTS, Effect::Allow),
            intent_stat(OTHER_INTENTS, Effect::Deny),
        ));
    }
    out
}

/// Envoy `stats_config.stats_tags`: `(tag_name, regex)`. Each regex's first
/// group is cut out of the stat name and its second becomes the tag's value.
/// They match only `<namespace>.meshward.<family>` names with `.key=value`
/// pairs, whatever namespace the host puts first (`wasmcustom` for
/// proxy-wasm).
pub const STATS_TAGS: [(&str, &str); 5] = [
    (
        "decision",
        r"^\w+\.meshward\.\w+(?:\.\w+=\w+)*?(\.decision=(\w+))",
    ),
    (
        "reason",
        r"^\w+\.meshward\.\w+(?:\.\w+=\w+)*?(\.reason=(\w+))",
    ),
    ("rule", r"^\w+\.meshward\.\w+(?:\.\w+=\w+)*?(\.rule=(\w+))"),
    (
        "intent",
        r"^\w+\.meshward\.\w+(?:\.\w+=\w+)*?(\.intent=(\w+))",
    ),
    ("mode", r"^\w+\.meshward\.\w+(?:\.\w+=\w+)*?(\.mode=(\w+))"),
];

/// What Envoy's tag extraction makes of a stat name, by the rules of
/// [`STATS_TAGS`]: the name with every `.label=value` pair cut out, and the
/// tags. (Envoy does this itself; this is the same rule written out, for
/// tests and for tools reading `/stats`.)
pub fn extract_tags(name: &str) -> (String, Vec<(String, String)>) {
    let mut parts = name.split('.');
    let mut base: Vec<&str> = Vec::new();
    let mut tags = Vec::new();
    for part in parts.by_ref() {
        match part.split_once('=') {
            Some((key, value)) if STATS_TAGS.iter().any(|(t, _)| *t == key) => {
                tags.push((key.to_owned(), value.to_owned()));
            }
            _ => base.push(part),
        }
    }
    (base.join("."), tags)
}

// --- access log ------------------------------------------------------------

/// The JSON access-log format every shipped Envoy config uses (and `meshward
/// istio --telemetry` patches in): `(field, Envoy command operator)`. Field
/// names follow the audit line, so `meshward replay` reads either; the
/// decision facts come from the filter state of [`FILTER_STATE`]. The
/// nested `would` object is [`ACCESS_LOG_WOULD`].
pub const ACCESS_LOG_FIELDS: [(&str, &str); 23] = [
    ("time", "%START_TIME(%s)%"),
    ("start_time", "%START_TIME%"),
    ("request_id", "%REQ(X-REQUEST-ID)%"),
    ("traceparent", "%REQ(TRACEPARENT)%"),
    ("x_b3_traceid", "%REQ(X-B3-TRACEID)%"),
    ("method", "%REQ(:METHOD)%"),
    ("path", "%REQ(:PATH)%"),
    ("authority", "%REQ(:AUTHORITY)%"),
    ("status", "%RESPONSE_CODE%"),
    ("response_code_details", "%RESPONSE_CODE_DETAILS%"),
    ("duration_ms", "%DURATION%"),
    ("decision", "%FILTER_STATE(wasm.meshward_decision:PLAIN)%"),
    ("reason", "%FILTER_STATE(wasm.meshward_reason:PLAIN)%"),
    ("intent", "%FILTER_STATE(wasm.meshward_intent:PLAIN)%"),
    ("rule", "%FILTER_STATE(wasm.meshward_rule:PLAIN)%"),
    ("mode", "%FILTER_STATE(wasm.meshward_mode:PLAIN)%"),
    ("peer", "%FILTER_STATE(wasm.meshward_peer:PLAIN)%"),
    (
        "chain_origin",
        "%FILTER_STATE(wasm.meshward_chain_origin:PLAIN)%",
    ),
    (
        "chain_user",
        "%FILTER_STATE(wasm.meshward_chain_user:PLAIN)%",
    ),
    (
        "chain_purpose",
        "%FILTER_STATE(wasm.meshward_chain_purpose:PLAIN)%",
    ),
    ("chain", "%FILTER_STATE(wasm.meshward_chain:PLAIN)%"),
    ("policy", "%FILTER_STATE(wasm.meshward_policy:PLAIN)%"),
    ("direction", "%FILTER_STATE(wasm.meshward_direction:PLAIN)%"),
];

/// The `would` object of the access-log format: the would-be outcome.
pub const ACCESS_LOG_WOULD: [(&str, &str); 3] = [
    ("decision", "%FILTER_STATE(wasm.meshward_would_be:PLAIN)%"),
    (
        "reason",
        "%FILTER_STATE(wasm.meshward_would_be_reason:PLAIN)%",
    ),
    ("rule", "%FILTER_STATE(wasm.meshward_would_be_rule:PLAIN)%"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_values_keep_word_characters_only() {
        assert_eq!(stat_value("ops-admin"), "ops_admin");
        assert_eq!(stat_value("ops.admin"), "ops_admin");
        assert_eq!(stat_value("ops_admin"), "ops_admin");
        assert_eq!(stat_value("Orders.Read2"), "Orders_Read2");
        assert_eq!(stat_value(""), "_");
        assert!(matches!(stat_value("plain_1"), Cow::Borrowed(_)));
    }

    #[test]
    fn stat_names_split_into_family_and_labels() {
        let name = format!(
            "wasmcustom.{}",
            decision_stat(Effect::Deny, Reason::NoMatchingRule)
        );
        assert_eq!(
            extract_tags(&name),
            (
                "wasmcustom.meshward.decisions".to_owned(),
                vec![
                    ("decision".to_owned(), "deny".to_owned()),
                    ("reason".to_owned(), "no_matching_rule".to_owned())
                ]
            )
        );
        let (base, tags) = extract_tags(&format!(
            "wasmcustom.{}",
            rule_stat(&stat_value("ops.admin"), true, Effect::Allow)
        ));
        assert_eq!(base, "wasmcustom.meshward.rules");
        assert_eq!(tags.len(), 3);
        assert_eq!(tags[0], ("rule".to_owned(), "ops_admin".to_owned()));
        assert_eq!(tags[1], ("mode".to_owned(), "dry_run".to_owned()));
    }

    #[test]
    fn every_family_name_is_what_extraction_yields() {
        // Each labelled family's stat names reduce to the family's
        // Prometheus name (namespace dropped, dots as underscores).
        let samples = [
            decision_stat(Effect::Allow, Reason::AllowedByRule),
            would_be_stat(Effect::Deny, Reason::NoMatchingRule),
            rule_stat("r", false, Effect::Deny),
            intent_stat("i", Effect::Allow),
            counter::CONFIG_LOADED.to_owned(),
            counter::KEYS_FETCH_FAILED.to_owned(),
        ];
        for sample in samples {
            let (base, tags) = extract_tags(&sample);
            let prom = base.replace('.', "_");
            let family = FAMILIES.iter().find(|(f, _, _)| *f == prom);
            let (_, labels, _) = family.unwrap_or_else(|| panic!("no family {prom}"));
            let names: Vec<&str> = tags.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(&names, labels, "{sample}");
        }
    }

    #[test]
    fn details_name_the_reason() {
        assert_eq!(
            response_details(Reason::NoMatchingRule),
            "meshward_denied{no_matching_rule}"
        );
        for reason in Reason::ALL {
            assert!(!response_details(reason).contains(char::is_whitespace));
        }
    }

    #[test]
    fn facts_without_policy_name_decision_reason_and_side() {
        let decision = Decision::deny(Reason::NoPolicy);
        let facts = decision_facts(
            &Published {
                policy: None,
                decision: &decision,
                side: Side::Inbound,
                peer: None,
                chain: None,
            },
            FilterStateSet::ALL,
        );
        let names: Vec<&str> = facts.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, [DECISION, REASON, DIRECTION]);
        assert_eq!(facts[1].1, "no_policy");
        // Every published name is in the table, with the prefix.
        for (name, _) in FILTER_STATE {
            assert!(name.starts_with(FILTER_STATE_PREFIX));
        }
    }

    #[test]
    fn a_selection_publishes_only_the_facts_it_names() {
        let decision = Decision::deny(Reason::NoPolicy);
        let published = Published {
            policy: None,
            decision: &decision,
            side: Side::Inbound,
            peer: Some("spiffe://shop.example/ns/shop/sa/web"),
            chain: None,
        };
        let only = FilterStateSet::from_names([REASON, PEER, CHAIN]).unwrap();
        let names: Vec<&str> = decision_facts(&published, only)
            .iter()
            .map(|(n, _)| *n)
            .collect();
        // CHAIN is selected but does not apply (no chain): left out.
        assert_eq!(names, [REASON, PEER]);
        assert!(decision_facts(&published, FilterStateSet::NONE).is_empty());
        assert!(FilterStateSet::NONE.is_empty());
        for (name, _) in FILTER_STATE {
            assert!(FilterStateSet::ALL.contains(name));
            assert!(!FilterStateSet::NONE.contains(name));
            assert!(FilterStateSet::from_names([name]).unwrap().contains(name));
        }
        assert_eq!(FilterStateSet::default(), FilterStateSet::ALL);
        assert_eq!(
            FilterStateSet::from_names(FILTER_STATE.iter().map(|(n, _)| *n)),
            Ok(FilterStateSet::ALL)
        );
        assert_eq!(
            FilterStateSet::from_names(["wasm.meshward_reason"]),
            Err("wasm.meshward_reason".to_owned())
        );
    }

    #[test]
    fn the_access_log_format_prints_every_published_fact() {
        for (name, _) in FILTER_STATE {
            let operator = format!("%FILTER_STATE(wasm.{name}:PLAIN)%");
            assert!(
                ACCESS_LOG_FIELDS
                    .iter()
                    .chain(ACCESS_LOG_WOULD.iter())
                    .any(|(_, op)| *op == operator),
                "{name}"
            );
        }
    }
}
