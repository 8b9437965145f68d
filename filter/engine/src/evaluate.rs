//! `evaluate`: one request in, one [`Decision`] out. Pure, deterministic, and
//! allocation-free: the filter and the CLI call exactly this.

use crate::decision::{Decision, Reason, RuleIdx, WouldBe};
use crate::model::{Condition, Effect, HeaderTest, IntentIdx, Method};
use crate::path;
use crate::policy::Policy;
use crate::routes::authority_host;
use crate::spiffe::SpiffeId;

/// Request headers, looked up by lowercase name.
pub trait Headers {
    /// The header's value, if present.
    fn get(&self, lowercase_name: &str) -> Option<&str>;
}

impl Headers for &[(&str, &str)] {
    fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

impl Headers for Vec<(String, String)> {
    fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Everything `evaluate` looks at.
pub struct Request<'a> {
    /// The verified peer, or why there is none.
    pub peer: Result<&'a SpiffeId, Reason>,
    /// `:method`.
    pub method: &'a str,
    /// `:path`, query included.
    pub path: &'a str,
    /// `:authority` (or `host`), port allowed.
    pub authority: &'a str,
    /// Request headers that conditions may read.
    pub headers: &'a dyn Headers,
}

/// The lowest-numbered matching rule of each kind.
#[derive(Default, Clone, Copy)]
struct Matches {
    enforced_deny: Option<RuleIdx>,
    enforced_allow: Option<RuleIdx>,
    dry_run_deny: Option<RuleIdx>,
    dry_run_allow: Option<RuleIdx>,
}

fn keep_lowest(slot: &mut Option<RuleIdx>, rule: RuleIdx) {
    if slot.is_none_or(|r| rule < r) {
        *slot = Some(rule);
    }
}

fn lowest(a: Option<RuleIdx>, b: Option<RuleIdx>) -> Option<RuleIdx> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

/// Effect, reason and rule given the matching deny and allow rules:
/// deny overrides allow; nothing matching is a default deny.
fn resolve(
    deny: Option<RuleIdx>,
    allow: Option<RuleIdx>,
    classified: bool,
) -> (Effect, Reason, Option<RuleIdx>) {
    match (deny, allow) {
        (Some(rule), _) => (Effect::Deny, Reason::DeniedByRule, Some(rule)),
        (None, Some(rule)) => (Effect::Allow, Reason::AllowedByRule, Some(rule)),
        (None, None) if classified => (Effect::Deny, Reason::NoMatchingRule, None),
        (None, None) => (Effect::Deny, Reason::Unclassified, None),
    }
}

fn conditions_hold(policy: &Policy, conditions: &[Condition], headers: &dyn Headers) -> bool {
    conditions.iter().all(|cond| {
        let Condition::Header { name, test } = cond;
        let value = headers.get(policy.string(*name));
        match test {
            HeaderTest::Present => value.is_some(),
            HeaderTest::Absent => value.is_none(),
            HeaderTest::Equals(v) => value == Some(policy.string(*v)),
            HeaderTest::NotEquals(v) => value != Some(policy.string(*v)),
            HeaderTest::OneOf(vs) => {
                value.is_some_and(|val| vs.iter().any(|v| policy.string(*v) == val))
            }
            HeaderTest::Prefix(v) => value.is_some_and(|val| val.starts_with(policy.string(*v))),
        }
    })
}

/// Decides one request. Never panics, never allocates.
pub fn evaluate(policy: &Policy, req: &Request<'_>) -> Decision {
    let decision = evaluate_rules(policy, req);
    if !policy.is_dry_run() {
        return decision;
    }
    // Whole-policy dry-run: let everything through, report what would happen.
    let would = decision.would_be.unwrap_or(WouldBe {
        effect: decision.effect,
        reason: decision.reason,
        rule: decision.rule,
    });
    Decision {
        effect: Effect::Allow,
        reason: Reason::PolicyDryRun,
        intent: decision.intent,
        rule: None,
        would_be: Some(would),
    }
}

fn evaluate_rules(policy: &Policy, req: &Request<'_>) -> Decision {
    let peer = match req.peer {
        Ok(peer) => peer,
        Err(reason) => return Decision::deny(reason),
    };
    if !policy.trusts_domain(peer.trust_domain()) {
        return Decision::deny(Reason::UntrustedTrustDomain);
    }
    let Some(method) = Method::parse(req.method) else {
        return Decision::deny(Reason::BadMethod);
    };
    let Ok(segments) = path::canonical_segments(req.path) else {
        return Decision::deny(Reason::NonCanonicalPath);
    };
    let host = authority_host(req.authority);
    let intent: Option<IntentIdx> =
        policy
            .router()
            .classify(segments.as_slice(), method.bit(), host);

    let mut found = Matches::default();
    let rules = &policy.compiled().rules;
    policy.for_each_candidate(intent, peer, |idx| {
        let Some(rule) = rules.get(idx as usize) else {
            return;
        };
        if !conditions_hold(policy, &rule.conditions, req.headers) {
            return;
        }
        let slot = match (rule.effect, rule.dry_run) {
            (Effect::Deny, false) => &mut found.enforced_deny,
            (Effect::Allow, false) => &mut found.enforced_allow,
            (Effect::Deny, true) => &mut found.dry_run_deny,
            (Effect::Allow, true) => &mut found.dry_run_allow,
        };
        keep_lowest(slot, idx);
    });

    let classified = intent.is_some();
    let (effect, reason, rule) = resolve(found.enforced_deny, found.enforced_allow, classified);
    // What the outcome would be with the dry-run rules enforced too.
    let (would_effect, would_reason, would_rule) = resolve(
        lowest(found.enforced_deny, found.dry_run_deny),
        lowest(found.enforced_allow, found.dry_run_allow),
        classified,
    );
    let would_be = (would_effect != effect).then_some(WouldBe {
        effect: would_effect,
        reason: would_reason,
        rule: would_rule,
    });
    Decision {
        effect,
        reason,
        intent,
        rule,
        would_be,
    }
}
