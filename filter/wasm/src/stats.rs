//! Counters, named by the engine (`pipeline::publish`) so that Envoy's tag
//! extraction (`stats_config.stats_tags`, shipped in every `envoy/` config)
//! turns decision, reason, rule, intent and mode into Prometheus labels:
//! `meshward_decisions{decision,reason}`, `meshward_would_be{decision,reason}`,
//! `meshward_rules{rule,mode,decision}`, `meshward_intents{intent,decision}`.
//! Cardinality is bounded by the code (reasons) and the policy (rules and
//! intents, each capped; see `publish`).

use std::collections::HashMap;

use meshward_engine::pipeline::publish::{self, counter};
use meshward_engine::{Decision, Effect, Policy, Reason, RuleIdx};

use crate::host;

/// Counter ids, defined once per VM (rule and intent counters once per
/// configuration; outcome counters when first needed).
#[derive(Debug, Default)]
pub struct Stats {
    /// `meshward.decisions.decision=…reason=…`, by outcome.
    decisions: HashMap<(Effect, Reason), Option<u32>>,
    /// `meshward.would_be.decision=…reason=…`, by would-be outcome.
    would_be: HashMap<(Effect, Reason), Option<u32>>,
    /// One counter per rule (by index); rules past the cap share the
    /// `_other` counter of their mode and effect.
    rules: HashMap<RuleIdx, Option<u32>>,
    other_rules: HashMap<String, Option<u32>>,
    /// (allow, deny) per intent; `None` key: intents past the cap.
    intents: HashMap<Option<u32>, (Option<u32>, Option<u32>)>,
    config_loaded: Option<u32>,
    config_rejected: Option<u32>,
    pub chain_forwarded: Option<u32>,
    pub chain_rejected: Option<u32>,
    pub chain_dropped: Option<u32>,
    pub keys_rotated: Option<u32>,
    pub keys_fetch_failed: Option<u32>,
    pub revocation_updated: Option<u32>,
    pub chain_no_local_identity: Option<u32>,
    warned_no_local_identity: std::cell::Cell<bool>,
}

impl Stats {
    /// Defines every fixed counter, and the outcome counters every
    /// deployment sees (so dashboards show zeros rather than nothing).
    pub fn define() -> Stats {
        let decisions = Reason::ALL
            .iter()
            .map(|r| {
                let effect = match r {
                    Reason::AllowedByRule | Reason::PolicyDryRun => Effect::Allow,
                    _ => Effect::Deny,
                };
                let id = host::define_counter(&publish::decision_stat(effect, *r));
                ((effect, *r), id)
            })
            .collect();
        Stats {
            decisions,
            config_loaded: host::define_counter(counter::CONFIG_LOADED),
            config_rejected: host::define_counter(counter::CONFIG_REJECTED),
            chain_forwarded: host::define_counter(counter::CHAIN_FORWARDED),
            chain_rejected: host::define_counter(counter::CHAIN_REJECTED),
            chain_dropped: host::define_counter(counter::CHAIN_DROPPED),
            keys_rotated: host::define_counter(counter::KEYS_ROTATED),
            keys_fetch_failed: host::define_counter(counter::KEYS_FETCH_FAILED),
            revocation_updated: host::define_counter(counter::REVOCATION_UPDATED),
            chain_no_local_identity: host::define_counter(counter::CHAIN_NO_LOCAL_IDENTITY),
            ..Stats::default()
        }
    }

    /// Defines the rule and intent counters of a newly loaded policy.
    pub fn define_policy(&mut self, policy: &Policy) {
        self.warned_no_local_identity.set(false);
        host::increment(self.config_loaded);
        self.rules.clear();
        self.other_rules.clear();
        for (index, name) in publish::rule_stats(policy) {
            let id = host::define_counter(&name);
            match index {
                Some(i) => {
                    self.rules.insert(i, id);
                }
                None => {
                    self.other_rules.insert(name, id);
                }
            }
        }
        self.intents = publish::intent_stats(policy)
            .into_iter()
            .map(|(index, allow, deny)| {
                (
                    index,
                    (host::define_counter(&allow), host::define_counter(&deny)),
                )
            })
            .collect();
    }

    /// Counts one decision: its outcome, its would-be outcome, the rule
    /// behind each, and its intent.
    pub fn record(&mut self, policy: Option<&Policy>, decision: &Decision) {
        self.outcome(decision.effect, decision.reason);
        if let Some(would) = decision.would_be {
            let id = *self
                .would_be
                .entry((would.effect, would.reason))
                .or_insert_with(|| {
                    host::define_counter(&publish::would_be_stat(would.effect, would.reason))
                });
            host::increment(id);
            if let Some(rule) = would.rule {
                self.rule(policy, rule);
            }
        }
        if let Some(rule) = decision.rule {
            self.rule(policy, rule);
        }
        if let Some(intent) = decision.intent {
            let counters = self
                .intents
                .get(&Some(intent))
                .or_else(|| self.intents.get(&None));
            if let Some((allow, deny)) = counters {
                host::increment(match decision.effect {
                    Effect::Allow => *allow,
                    Effect::Deny => *deny,
                });
            }
        }
    }

    /// Counts an outcome that is not a policy evaluation (an outbound chain
    /// refusal, a request without a usable policy).
    pub fn outcome(&mut self, effect: Effect, reason: Reason) {
        let id = *self
            .decisions
            .entry((effect, reason))
            .or_insert_with(|| host::define_counter(&publish::decision_stat(effect, reason)));
        host::increment(id);
    }

    fn rule(&self, policy: Option<&Policy>, rule: RuleIdx) {
        if let Some(id) = self.rules.get(&rule) {
            host::increment(*id);
            return;
        }
        // Past the cap: the shared counter of the rule's mode and effect.
        let Some(policy) = policy else { return };
        let Some(compiled) = policy.compiled().rules.get(rule as usize) else {
            return;
        };
        let name = publish::rule_stat(
            publish::OTHER_RULES,
            policy.is_dry_run() || compiled.dry_run,
            compiled.effect,
        );
        if let Some(id) = self.other_rules.get(&name) {
            host::increment(*id);
        }
    }

    /// True the first time it is asked (per configuration).
    pub fn warn_no_local_identity_once(&self) -> bool {
        !self.warned_no_local_identity.replace(true)
    }

    /// Counts a rejected configuration.
    pub fn config_rejected(&self) {
        host::increment(self.config_rejected);
    }
}
