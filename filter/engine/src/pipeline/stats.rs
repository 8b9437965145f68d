//! Counters, defined through the host under the names of [`super::publish`]:
//! a family followed by `.label=value` pairs, which the `stats_tags` shipped
//! in every Envoy config turn into Prometheus labels
//! (`meshward_decisions{decision,reason}`, `meshward_would_be{…}`,
//! `meshward_rules{rule,mode,decision}`, `meshward_intents{intent,decision}`).
//! In Envoy they show up as `wasmcustom.meshward.*` (wasm) or under the
//! module's stats prefix. Cardinality is bounded by the code (reasons) and
//! the policy (rules and intents, each capped: see `publish`).

use crate::policy::FxMap as HashMap;

use super::host::{Host, MetricId};
use super::publish::{self, counter};
use crate::decision::{Decision, Reason, RuleIdx};
use crate::model::{Effect, IntentIdx};
use crate::policy::Policy;

/// A counter the pipeline asks the host to bump.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Counter {
    /// `meshward.decisions.decision=<effect>.reason=<code>`.
    Decision(Effect, Reason),
    /// `meshward.would_be.decision=<effect>.reason=<code>`.
    Would(Effect, Reason),
    /// `meshward.rules.rule=<id>.mode=<mode>.decision=<effect>`: a decision
    /// an enforced rule took, or a dry-run rule would have taken.
    Rule(RuleIdx),
    /// `meshward.intents.intent=<name>.decision=<effect>`.
    Intent(IntentIdx, Effect),
    /// `meshward.chain_forwarded`: outbound, a sealed chain went on.
    ChainForwarded,
    /// `meshward.chain_rejected`: outbound, a call was denied for its chain.
    ChainRejected,
    /// `meshward.chain_dropped`: outbound, a bad chain was dropped.
    ChainDropped,
    /// `meshward.chain_no_local_identity`: no SPIFFE ID of our own to extend
    /// the chain with.
    ChainNoLocalIdentity,
    /// `meshward.keys_rotated`.
    KeysRotated,
    /// `meshward.keys_fetch_failed`.
    KeysFetchFailed,
    /// `meshward.revocation_updated`.
    RevocationUpdated,
    /// `meshward.config_loaded`.
    ConfigLoaded,
    /// `meshward.config_rejected`.
    ConfigRejected,
}

/// The fixed counters' names.
const FIXED: [(Counter, &str); 9] = [
    (Counter::ChainForwarded, counter::CHAIN_FORWARDED),
    (Counter::ChainRejected, counter::CHAIN_REJECTED),
    (Counter::ChainDropped, counter::CHAIN_DROPPED),
    (
        Counter::ChainNoLocalIdentity,
        counter::CHAIN_NO_LOCAL_IDENTITY,
    ),
    (Counter::KeysRotated, counter::KEYS_ROTATED),
    (Counter::KeysFetchFailed, counter::KEYS_FETCH_FAILED),
    (Counter::RevocationUpdated, counter::REVOCATION_UPDATED),
    (Counter::ConfigLoaded, counter::CONFIG_LOADED),
    (Counter::ConfigRejected, counter::CONFIG_REJECTED),
];

/// The outcome every reason has when it decides (the counters defined at
/// start-up, so dashboards show zeros rather than nothing).
fn usual_effect(reason: Reason) -> Effect {
    match reason {
        Reason::AllowedByRule | Reason::PolicyDryRun => Effect::Allow,
        _ => Effect::Deny,
    }
}

/// Counter ids as the host defined them.
#[derive(Debug, Default)]
pub struct Stats {
    ids: HashMap<Counter, MetricId>,
    /// Rules past the cap: their shared `_other` counter, by rule index.
    other_rules: HashMap<RuleIdx, MetricId>,
    /// Intents past the cap: the shared `_other` counters (allow, deny).
    other_intents: (Option<MetricId>, Option<MetricId>),
}

impl Stats {
    /// Defines every fixed counter and each reason's decision counter.
    pub fn define(host: &mut dyn Host) -> Stats {
        let mut ids = HashMap::default();
        for (counter, name) in FIXED {
            if let Some(id) = host.define_counter(name) {
                ids.insert(counter, id);
            }
        }
        // Defined up front, not on first use: the Envoy dynamic module can
        // define counters only while its filter configuration is created.
        for reason in Reason::ALL {
            let effect = usual_effect(reason);
            if let Some(id) = host.define_counter(&publish::decision_stat(effect, reason)) {
                ids.insert(Counter::Decision(effect, reason), id);
            }
            if let Some(id) = host.define_counter(&publish::would_be_stat(effect, reason)) {
                ids.insert(Counter::Would(effect, reason), id);
            }
        }
        Stats {
            ids,
            ..Stats::default()
        }
    }

    /// Defines the rule and intent counters of a newly loaded policy,
    /// dropping those of the previous one.
    pub fn define_policy(&mut self, host: &mut dyn Host, policy: &Policy) {
        self.ids
            .retain(|c, _| !matches!(c, Counter::Rule(..) | Counter::Intent(..)));
        self.other_rules.clear();
        let mut other: HashMap<String, Option<MetricId>> = HashMap::default();
        let stats = publish::rule_stats(policy);
        for (index, name) in &stats {
            if let Some(rule) = index {
                if let Some(id) = host.define_counter(name) {
                    self.ids.insert(Counter::Rule(*rule), id);
                }
            } else {
                other.insert(name.clone(), host.define_counter(name));
            }
        }
        // Rules past the cap share the `_other` counter of their mode and
        // effect.
        if !other.is_empty() {
            for (i, rule) in policy.compiled().rules.iter().enumerate() {
                let Some(idx) = RuleIdx::from_index(i) else {
                    break;
                };
                if self.ids.contains_key(&Counter::Rule(idx)) {
                    continue;
                }
                let dry_run = policy.is_dry_run() || rule.dry_run;
                let name = publish::rule_stat(publish::OTHER_RULES, dry_run, rule.effect);
                if let Some(Some(id)) = other.get(&name) {
                    self.other_rules.insert(idx, *id);
                }
            }
        }
        self.other_intents = (None, None);
        for (index, allow, deny) in publish::intent_stats(policy) {
            let (allow, deny) = (host.define_counter(&allow), host.define_counter(&deny));
            match index {
                Some(i) => {
                    for (effect, id) in [(Effect::Allow, allow), (Effect::Deny, deny)] {
                        if let Some(id) = id {
                            self.ids.insert(Counter::Intent(i, effect), id);
                        }
                    }
                }
                None => self.other_intents = (allow, deny),
            }
        }
    }

    /// Bumps each counter by one. A decision or would-be counter not seen
    /// before is defined first; counters the host refused are skipped.
    pub fn bump(&mut self, host: &mut dyn Host, counters: &[Counter]) {
        for counter in counters {
            let id = match counter {
                Counter::Rule(rule) => self
                    .ids
                    .get(counter)
                    .or_else(|| self.other_rules.get(rule))
                    .copied(),
                Counter::Intent(_, effect) => self.ids.get(counter).copied().or(match effect {
                    Effect::Allow => self.other_intents.0,
                    Effect::Deny => self.other_intents.1,
                }),
                Counter::Decision(effect, reason) | Counter::Would(effect, reason) => {
                    match self.ids.get(counter) {
                        Some(id) => Some(*id),
                        None => {
                            let name = match counter {
                                Counter::Would(..) => publish::would_be_stat(*effect, *reason),
                                _ => publish::decision_stat(*effect, *reason),
                            };
                            let id = host.define_counter(&name);
                            if let Some(id) = id {
                                self.ids.insert(*counter, id);
                            }
                            id
                        }
                    }
                }
                _ => self.ids.get(counter).copied(),
            };
            if let Some(id) = id {
                host.increment(id, 1);
            }
        }
    }
}

/// The counters one decision bumps: its outcome, its would-be outcome, the
/// rule behind each, and its intent.
pub fn decision_counters(decision: &Decision, out: &mut Vec<Counter>) {
    out.push(Counter::Decision(decision.effect, decision.reason));
    if let Some(rule) = decision.rule {
        out.push(Counter::Rule(rule));
    }
    if let Some(would) = decision.would_be {
        out.push(Counter::Would(would.effect, would.reason));
        if let Some(rule) = would.rule {
            out.push(Counter::Rule(rule));
        }
    }
    if let Some(intent) = decision.intent {
        out.push(Counter::Intent(intent, decision.effect));
    }
}
