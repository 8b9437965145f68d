//! Client side (the app's own outbound calls through this Envoy): forward
//! only a chain this proxy's inbound side sealed, unmodified and unexpired.
//! Anything else is denied or dropped, as configured.

use meshward_engine::chain::{self, CHAIN_HEADER};
use meshward_engine::config::OnInvalidChain;
use meshward_engine::pipeline::publish::{Published, Side};
use meshward_engine::{Decision, Effect, Headers, Reason};
use proxy_wasm::types::{Action, LogLevel};

use crate::host;
use crate::http::{deny_early, publish_facts, respond_deny, HeaderMap};
use crate::root::Shared;
use crate::seal_key;

pub fn on_request(state: &mut Shared, headers: &HeaderMap) -> Action {
    let Some(config) = state.config.as_ref() else {
        return deny_early(None, Reason::NoPolicy, None);
    };
    let policy = &config.policy;
    let request_id = Headers::get(headers, "x-request-id");
    let Ok(now) = host::now_secs() else {
        return deny_early(Some(policy), Reason::IdentityUnavailable, request_id);
    };
    let values = headers.all(CHAIN_HEADER);
    let mut result = match state.seal_key.as_deref() {
        Some(key) => chain::outbound(&values, key, now),
        None if values.is_empty() => Ok(None),
        None => Err(chain::ChainError::BadSeal),
    };
    if result == Err(chain::ChainError::BadSeal) {
        // A worker may hold a stale copy of the key: re-read the shared one.
        if let Ok(Some(current)) = seal_key::current() {
            if state.seal_key.as_deref() != Some(current.as_slice()) {
                result = chain::outbound(&values, &current, now);
                state.seal_key = Some(current);
            }
        }
    }
    let mut ok = headers.strip_owned();
    match result {
        Ok(Some(wire)) => {
            host::increment(state.stats.chain_forwarded);
            ok &= host::set_request_header(CHAIN_HEADER, &wire).is_ok();
        }
        Ok(None) => {}
        Err(err) => {
            let reason = err.reason();
            let action = config.chain.on_invalid;
            // A dropped chain lets the call go on: counted and published
            // as the allow it is, with the reason it lost its chain.
            let effect = match action {
                OnInvalidChain::Deny => Effect::Deny,
                OnInvalidChain::Drop => Effect::Allow,
            };
            state.stats.outcome(effect, reason);
            publish_facts(&Published {
                policy: Some(policy),
                decision: &Decision {
                    effect,
                    ..Decision::deny(reason)
                },
                side: Side::Outbound,
                peer: None,
                chain: None,
            });
            host::log(
                LogLevel::Info,
                &format!(
                    "meshward.audit {}",
                    serde_json::json!({
                        "schema": meshward_engine::audit::AUDIT_SCHEMA,
                        "direction": "outbound",
                        "request_id": request_id,
                        "decision": match action { OnInvalidChain::Deny => "deny", OnInvalidChain::Drop => "drop-chain" },
                        "reason": reason.code(),
                        "method": headers.get_or_empty(":method"),
                        "path": headers.get_or_empty(":path"),
                        "authority": headers.get_or_empty(":authority"),
                        "time": now,
                        "policy": policy.hash_hex(),
                    })
                ),
            );
            match action {
                OnInvalidChain::Deny => {
                    host::increment(state.stats.chain_rejected);
                    return respond_deny(Some(policy), &Decision::deny(reason), request_id);
                }
                // strip_owned already removed it: the call starts a fresh chain.
                OnInvalidChain::Drop => host::increment(state.stats.chain_dropped),
            }
        }
    }
    if !ok {
        return deny_early(Some(policy), Reason::IdentityUnavailable, request_id);
    }
    Action::Continue
}
