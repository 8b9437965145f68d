//! Counters, named once here and defined through the host. In Envoy they show
//! up as `wasmcustom.meshward.*` (wasm) or under the module's stats prefix.
//! Cardinality is bounded: one counter per decision kind, per reason code,
//! per key/chain/config event, and two per dry-run rule (at most
//! [`MAX_RULE_COUNTERS`]).

use std::collections::HashMap;

use super::host::{Host, MetricId};
use crate::decision::{Decision, Reason, RuleIdx};
use crate::model::Effect;
use crate::policy::Policy;

/// Most rules that get their own would-deny / would-allow counters.
pub const MAX_RULE_COUNTERS: usize = 512;

/// A counter the pipeline asks the host to bump.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Counter {
    /// `meshward.decision.allow` / `.deny`.
    Decision(Effect),
    /// `meshward.decision.would_allow` / `.would_deny`.
    Would(Effect),
    /// `meshward.reason.<code>`.
    Reason(Reason),
    /// `meshward.rule.<id>.would_deny` / `.would_allow`.
    RuleWould(RuleIdx, Effect),
    /// `meshward.chain.forwarded`: outbound, a sealed chain went on.
    ChainForwarded,
    /// `meshward.chain.rejected`: outbound, a call was denied for its chain.
    ChainRejected,
    /// `meshward.chain.dropped`: outbound, a bad chain was dropped.
    ChainDropped,
    /// `meshward.chain.no_local_identity`: no SPIFFE ID of our own to extend
    /// the chain with.
    ChainNoLocalIdentity,
    /// `meshward.keys.rotated`.
    KeysRotated,
    /// `meshward.keys.fetch_failed`.
    KeysFetchFailed,
    /// `meshward.revocation.updated`.
    RevocationUpdated,
    /// `meshward.config.rejected`.
    ConfigRejected,
}

/// The fixed counters' names.
const FIXED: [(Counter, &str); 12] = [
    (Counter::Decision(Effect::Allow), "meshward.decision.allow"),
    (Counter::Decision(Effect::Deny), "meshward.decision.deny"),
    (Counter::Would(Effect::Deny), "meshward.decision.would_deny"),
    (
        Counter::Would(Effect::Allow),
        "meshward.decision.would_allow",
    ),
    (Counter::ChainForwarded, "meshward.chain.forwarded"),
    (Counter::ChainRejected, "meshward.chain.rejected"),
    (Counter::ChainDropped, "meshward.chain.dropped"),
    (
        Counter::ChainNoLocalIdentity,
        "meshward.chain.no_local_identity",
    ),
    (Counter::KeysRotated, "meshward.keys.rotated"),
    (Counter::KeysFetchFailed, "meshward.keys.fetch_failed"),
    (Counter::RevocationUpdated, "meshward.revocation.updated"),
    (Counter::ConfigRejected, "meshward.config.rejected"),
];

/// The name of a reason's counter.
pub fn reason_counter_name(reason: Reason) -> String {
    format!("meshward.reason.{}", reason.code())
}

/// The names of a rule's dry-run counters (would deny, would allow).
pub fn rule_counter_names(rule_id: &str) -> (String, String) {
    (
        format!("meshward.rule.{rule_id}.would_deny"),
        format!("meshward.rule.{rule_id}.would_allow"),
    )
}

/// Counter ids as the host defined them.
#[derive(Debug, Default)]
pub struct Stats {
    ids: HashMap<Counter, MetricId>,
}

impl Stats {
    /// Defines every fixed and per-reason counter.
    pub fn define(host: &mut dyn Host) -> Stats {
        let mut ids = HashMap::new();
        for (counter, name) in FIXED {
            if let Some(id) = host.define_counter(name) {
                ids.insert(counter, id);
            }
        }
        for reason in Reason::ALL {
            if let Some(id) = host.define_counter(&reason_counter_name(reason)) {
                ids.insert(Counter::Reason(reason), id);
            }
        }
        Stats { ids }
    }

    /// Defines the per-rule counters of a newly loaded policy's dry-run rules
    /// (in a dry-run policy every rule reports, up to the bound), dropping
    /// those of the previous policy.
    pub fn define_rules(&mut self, host: &mut dyn Host, policy: &Policy) {
        self.ids
            .retain(|counter, _| !matches!(counter, Counter::RuleWould(..)));
        let every_rule = policy.is_dry_run() && policy.rule_count() <= MAX_RULE_COUNTERS;
        let rules = (0..policy.rule_count() as u32)
            .filter(|i| every_rule || policy.rule_is_dry_run(*i))
            .take(MAX_RULE_COUNTERS);
        for rule in rules {
            let (deny, allow) = rule_counter_names(policy.rule_id(rule));
            for (effect, name) in [(Effect::Deny, deny), (Effect::Allow, allow)] {
                if let Some(id) = host.define_counter(&name) {
                    self.ids.insert(Counter::RuleWould(rule, effect), id);
                }
            }
        }
    }

    /// Bumps each counter by one (counters the host refused are skipped).
    pub fn bump(&self, host: &mut dyn Host, counters: &[Counter]) {
        for counter in counters {
            if let Some(id) = self.ids.get(counter) {
                host.increment(*id, 1);
            }
        }
    }
}

/// The counters one decision bumps.
pub fn decision_counters(decision: &Decision, out: &mut Vec<Counter>) {
    out.push(Counter::Decision(decision.effect));
    if let Some(would) = decision.would_be {
        out.push(Counter::Would(would.effect));
        if let Some(rule) = would.rule {
            out.push(Counter::RuleWould(rule, would.effect));
        }
    }
    out.push(Counter::Reason(decision.reason));
}
