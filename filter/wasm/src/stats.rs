//! Counters, visible in Envoy's `/stats` as `wasmcustom.meshward.*`.
//! Cardinality is bounded: three decisions and one counter per reason code.

use meshward_engine::{Decision, Effect, Reason};

use crate::host;

/// Counter ids, defined once per VM.
#[derive(Debug, Default)]
pub struct Stats {
    allow: Option<u32>,
    deny: Option<u32>,
    would_deny: Option<u32>,
    config_rejected: Option<u32>,
    by_reason: Vec<(Reason, Option<u32>)>,
}

impl Stats {
    /// Defines every counter.
    pub fn define() -> Stats {
        Stats {
            allow: host::define_counter("meshward.decision.allow"),
            deny: host::define_counter("meshward.decision.deny"),
            would_deny: host::define_counter("meshward.decision.would_deny"),
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
        }
    }

    /// Counts one decision.
    pub fn record(&self, decision: &Decision) {
        host::increment(match decision.effect {
            Effect::Allow => self.allow,
            Effect::Deny => self.deny,
        });
        if decision.would_deny() {
            host::increment(self.would_deny);
        }
        if let Some((_, id)) = self.by_reason.iter().find(|(r, _)| *r == decision.reason) {
            host::increment(*id);
        }
    }

    /// Counts a rejected configuration.
    pub fn config_rejected(&self) {
        host::increment(self.config_rejected);
    }
}
