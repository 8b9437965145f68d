//! Client side (the app's own outbound calls through this proxy): forward
//! only a chain this proxy's inbound side sealed, unmodified, unexpired and
//! within this policy's chain lifetime. Anything else is denied or dropped,
//! as configured.

use super::host::Host;
use super::outcome::{HeaderEdit, Verdict};
use super::stats::Counter;
use super::{seal_key, Pipeline, RequestInput};
use crate::chain::{self, ChainError, CHAIN_HEADER};
use crate::config::OnInvalidChain;
use crate::decision::{Decision, Reason};
use crate::model::Effect;

impl Pipeline {
    /// Decides one outbound request.
    pub(super) fn decide_outbound(&mut self, input: &RequestInput, host: &mut dyn Host) -> Verdict {
        let Some(config) = self.config.as_ref() else {
            return Verdict::deny(Reason::NoPolicy);
        };
        let limits = config.policy.chain_limits();
        let on_invalid = config.chain.on_invalid;
        let headers = &input.headers;
        let values = headers.all(CHAIN_HEADER);
        let mut result = match self.seal_key.as_deref() {
            Some(key) => chain::outbound(&values, key, input.now, limits),
            None if values.is_empty() => Ok(None),
            None => Err(ChainError::BadSeal),
        };
        if result == Err(ChainError::BadSeal) {
            // A worker may hold a stale copy of the key: re-read the shared one.
            if let Ok(Some(current)) = seal_key::current(host) {
                if self.seal_key.as_deref() != Some(current.as_slice()) {
                    result = chain::outbound(&values, &current, input.now, limits);
                    self.seal_key = Some(current);
                }
            }
        }
        let mut verdict = Verdict::deny(Reason::NoPolicy);
        verdict.edits = headers
            .owned_names()
            .into_iter()
            .map(HeaderEdit::Remove)
            .collect();
        verdict.decision = Decision {
            effect: Effect::Allow,
            ..Decision::deny(Reason::AllowedByRule)
        };
        match result {
            Ok(Some(wire)) => {
                verdict.counters.push(Counter::ChainForwarded);
                // The removals above take the app's sealed copy away first.
                verdict
                    .edits
                    .push(HeaderEdit::Add(CHAIN_HEADER, wire.clone()));
                verdict.handed_chain = Some(wire);
            }
            Ok(None) => {}
            Err(err) => {
                let reason = err.reason();
                // A dropped chain lets the call go on: counted as the allow
                // it is, with the reason it lost its chain.
                let effect = match on_invalid {
                    OnInvalidChain::Deny => Effect::Deny,
                    OnInvalidChain::Drop => Effect::Allow,
                };
                verdict.counters.push(Counter::Decision(effect, reason));
                match on_invalid {
                    OnInvalidChain::Deny => {
                        verdict.counters.push(Counter::ChainRejected);
                        verdict.decision = Decision::deny(reason);
                        verdict.edits.clear();
                    }
                    // The owned-header removal drops it: the call starts a
                    // fresh chain at the next hop.
                    OnInvalidChain::Drop => {
                        verdict.counters.push(Counter::ChainDropped);
                        verdict.decision.reason = reason;
                    }
                }
            }
        }
        verdict
    }
}
