//! Counters, visible in Envoy's `/stats` as `wasmcustom.meshward.*`.
//! Cardinality is bounded: one counter per decision kind, per reason code,
//! per key/chain event, and two per dry-run rule (rules are few and fixed by
//! the policy).

use std::collections::HashMap;

use meshward_engine::{Decision, Effect, Policy, Reason};

use crate::host;

/// Most rules that get their own would-deny / would-allow counters.
const MAX_RULE_COUNTERS: usize = 512;

/// Counter ids, defined once per VM (rule counters once per configuration).
#[derive(Debug, Default)]
pub struct Stats {
    allow: Option<u32>,
    deny: Option<u32>,
    would_deny: Option<u32>,
    would_allow: Option<u32>,
    config_rejected: Option<u32>,
    by_reason: Vec<(Reason, Option<u32>)>,
    /// `meshward.rule.<id>.would_deny` / `.would_allow`, by rule index.
    by_dry_run_rule: HashMap<u32, (Option<u32>, Option<u32>)>,
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
    /// Defines every fixed counter.
    pub fn define() -> Stats {
        Stats {
            allow: host::define_counter("meshward.decision.allow"),
            deny: host::define_counter("meshward.decision.deny"),
            would_deny: host::define_counter("meshward.decision.would_deny"),
            would_allow: host::define_counter("meshward.decision.would_allow"),
            config_rejected: host::define_counter("meshward.config.rejected"),
            by_reason: Reason::ALL
                .iter()
                .map(|r| {
                    (
                        *r,
                        host::define_counter(&format!("meshward.reason.{}", r.code())),
                    )
                })
                .collect(),
            by_dry_run_rule: HashMap::new(),
            chain_forwarded: host::define_counter("meshward.chain.forwarded"),
            chain_rejected: host::define_counter("meshward.chain.rejected"),
            chain_dropped: host::define_counter("meshward.chain.dropped"),
            keys_rotated: host::define_counter("meshward.keys.rotated"),
            keys_fetch_failed: host::define_counter("meshward.keys.fetch_failed"),
            revocation_updated: host::define_counter("meshward.revocation.updated"),
            chain_no_local_identity: host::define_counter("meshward.chain.no_local_identity"),
            warned_no_local_identity: std::cell::Cell::new(false),
        }
    }

    /// Defines the per-rule counters of a newly loaded policy's dry-run rules
    /// (in a dry-run policy every rule reports, up to a bound on cardinality).
    pub fn define_rules(&mut self, policy: &Policy) {
        self.warned_no_local_identity.set(false);
        let every_rule = policy.is_dry_run() && policy.rule_count() <= MAX_RULE_COUNTERS;
        self.by_dry_run_rule = (0..policy.rule_count() as u32)
            .filter(|i| every_rule || policy.rule_is_dry_run(*i))
            .take(MAX_RULE_COUNTERS)
            .map(|i| {
                let id = policy.rule_id(i);
                let deny = host::define_counter(&format!("meshward.rule.{id}.would_deny"));
                let allow = host::define_counter(&format!("meshward.rule.{id}.would_allow"));
                (i, (deny, allow))
            })
            .collect();
    }

    /// Counts one decision.
    pub fn record(&self, decision: &Decision) {
        host::increment(match decision.effect {
            Effect::Allow => self.allow,
            Effect::Deny => self.deny,
        });
        if let Some(would) = decision.would_be {
            host::increment(match would.effect {
                Effect::Deny => self.would_deny,
                Effect::Allow => self.would_allow,
            });
            if let Some((deny, allow)) = would.rule.and_then(|r| self.by_dry_run_rule.get(&r)) {
                host::increment(match would.effect {
                    Effect::Deny => *deny,
                    Effect::Allow => *allow,
                });
            }
        }
        self.reason(decision.reason);
    }

    /// Counts one reason.
    pub fn reason(&self, reason: Reason) {
        if let Some((_, id)) = self.by_reason.iter().find(|(r, _)| *r == reason) {
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
