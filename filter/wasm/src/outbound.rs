//! Client side (the app's own outbound calls through this Envoy): forward
//! only a chain this proxy's inbound side sealed, unmodified and unexpired.
//! Anything else is denied or dropped, as configured.

use meshward_engine::chain::{self, CHAIN_HEADER};
use meshward_engine::config::OnInvalidChain;
use meshward_engine::{Decision, Headers, Reason};
use proxy_wasm::types::{Action, LogLevel};

use crate::host;
use crate::http::{respond_deny, HeaderMap};
use crate::root::Shared;
use crate::seal_key;

pub fn on_request(state: &mut Shared, headers: &HeaderMap) -> Action {
    let Some(config) = state.config.as_ref() else {
        return respond_deny(None, &Decision::deny(Reason::NoPolicy), None);
    };
    let policy = &config.policy;
    let request_id = Headers::get(headers, "x-request-id");
    let Ok(now) = host::now_secs() else {
        return respond_deny(
            Some(policy),
            &Decision::deny(Reason::IdentityUnavailable),
            request_id,
        );
    };
    let values = headers.all(CHAIN_HEADER);
    let mut result = match state.seal_key.as_deref() {
        Some(key) => chain::outbound(&values, key, now, policy.chain_limits()),
        None if values.is_empty() => Ok(None),
        None => Err(chain::ChainError::BadSeal),
    };
    if result == Err(chain::ChainError::BadSeal) {
        // A worker may hold a stale copy of the key: re-read the shared one.
        if let Ok(Some(current)) = seal_key::current() {
            if state.seal_key.as_deref() != Some(current.as_slice()) {
                result = chain::outbound(&values, &current, now, policy.chain_limits());
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
            state.stats.reason(reason);
            let action = config.chain.on_invalid;
            host::log(
                LogLevel::Info,
                &format!(
                    "meshward.audit {}",
                    serde_json::json!({
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
        return respond_deny(
            Some(policy),
            &Decision::deny(Reason::IdentityUnavailable),
            request_id,
        );
    }
    Action::Continue
}
