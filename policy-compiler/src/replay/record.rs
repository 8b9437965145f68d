//! One audit record back into the engine's [`Request`], as the filter
//! would have built it under the *new* policy.
//!
//! An audit line records what the filter verified under the policy in force
//! then. Most of it does not depend on the policy (the peer's SPIFFE ID, the
//! token subjects, method, path, headers); what does is re-applied here with
//! the new policy's settings:
//!
//! - a JWT-SVID subject in a trust domain the new policy does not trust is
//!   refused (`jwt_untrusted_domain`), as the token verifier would;
//! - a peer certificate whose recorded validity window is longer than the new
//!   `max_cert_lifetime` is refused (`cert_lifetime_exceeds_bound`);
//! - a received chain deeper than the new `max_depth` is refused
//!   (`chain_too_deep`); one that carries hops, a user or a purpose from a
//!   peer the new policy does not trust to forward restarts at the peer,
//!   incomplete.
//!
//! What a record cannot tell is replayed as recorded: an identity refused
//! under the old policy stays refused (the rejected value was not logged),
//! hops the old policy dropped stay dropped, and a header the old policy
//! did not read was not logged, so it replays as absent (the report warns
//! when the new policy reads such a header).

use meshward_engine::audit::{reason_from_code, AuditRecord};
use meshward_engine::chain::{self, Chain};
use meshward_engine::config::MethodOverride;
use meshward_engine::pipeline::check_method_override;
use meshward_engine::spiffe::SpiffeId;
use meshward_engine::{evaluate, Decision, Policy, Reason, Request};

/// Decides a recorded request with `policy`. `Err` says why the record is
/// unusable (it is then reported as malformed).
pub(crate) fn decide(policy: &Policy, record: &AuditRecord) -> Result<Decision, String> {
    let peer = match (&record.peer, &record.peer_error) {
        (Some(text), None) => {
            Ok(SpiffeId::parse(text).map_err(|e| format!("`peer` `{text}`: {e}"))?)
        }
        (None, Some(code)) => Err(reason(code, "peer_error")?),
        (Some(_), Some(_)) => return Err("both `peer` and `peer_error` are set".to_owned()),
        (None, None) => return Err("neither `peer` nor `peer_error` is set".to_owned()),
    };
    let peer = match (peer, record.cert, policy.max_cert_lifetime_secs()) {
        (Ok(_), Some(cert), Some(max)) if cert.not_after.saturating_sub(cert.not_before) > max => {
            Err(Reason::CertLifetimeExceedsBound)
        }
        (peer, _, _) => peer,
    };
    let jwt_svid = match (&record.jwt_svid, &record.jwt_svid_error) {
        (Some(text), None) => {
            let id = SpiffeId::parse(text).map_err(|e| format!("`jwt_svid` `{text}`: {e}"))?;
            Some(if policy.trusts_domain(id.trust_domain()) {
                Ok(id)
            } else {
                Err(Reason::JwtUntrustedDomain)
            })
        }
        (None, Some(code)) => Some(Err(reason(code, "jwt_svid_error")?)),
        (None, None) => None,
        (Some(_), Some(_)) => return Err("both `jwt_svid` and `jwt_svid_error` are set".to_owned()),
    };
    let user = match (&record.user, &record.user_error) {
        (Some(user), None) => Some(Ok(user.as_user_info())),
        (None, Some(code)) => Some(Err(reason(code, "user_error")?)),
        (None, None) => None,
        (Some(_), Some(_)) => return Err("both `user` and `user_error` are set".to_owned()),
    };
    let chain = match (&record.chain, &record.chain_error) {
        (Some(wire), None) => {
            let received = Chain::from_wire(wire, record.time, chain::MAX_CHAIN_DEPTH)
                .map_err(|e| format!("`chain`: {e}"))?;
            Some(rechecked(policy, peer.as_ref().ok(), received, record.time))
        }
        (None, Some(code)) => Some(Err(reason(code, "chain_error")?)),
        (None, None) => None,
        (Some(_), Some(_)) => return Err("both `chain` and `chain_error` are set".to_owned()),
    };
    let headers = RecordedHeaders(record);
    let request = Request {
        peer: peer.as_ref().map_err(|r| *r),
        jwt_svid: jwt_svid.as_ref().map(|j| j.as_ref().map_err(|r| *r)),
        user,
        chain: chain.as_ref().map(|c| c.as_ref().map_err(|r| *r)),
        method: &record.method,
        path: &record.path,
        authority: &record.authority,
        headers: &headers,
    };
    // The filter's own check after `evaluate` (its default setting: the
    // plugin configuration's `method_override` is not recorded).
    Ok(check_method_override(
        evaluate(policy, &request),
        MethodOverride::Deny,
        &headers,
        &record.method,
    ))
}

/// The recorded headers, looked up without copying.
struct RecordedHeaders<'a>(&'a AuditRecord);

impl meshward_engine::Headers for RecordedHeaders<'_> {
    fn get(&self, lowercase_name: &str) -> Option<&str> {
        self.0.headers.get(lowercase_name).map(String::as_str)
    }

    // Audit lines record one value per header; a request whose condition
    // header was repeated was denied `duplicate_header` before any rule ran,
    // and replays from its recorded reason only as far as this allows.
    fn is_repeated(&self, _lowercase_name: &str) -> bool {
        false
    }
}

fn reason(code: &str, field: &str) -> Result<Reason, String> {
    reason_from_code(code).ok_or_else(|| format!("unknown reason code `{code}` in `{field}`"))
}

/// The recorded chain as the new policy's inbound side would have kept it.
fn rechecked(
    policy: &Policy,
    peer: Option<&SpiffeId>,
    received: Chain,
    now: u64,
) -> Result<Chain, Reason> {
    let limits = policy.chain_limits();
    if let Some(peer) = peer {
        let carries_more = received.hops.len() > 1
            || received.user.is_some()
            || received.purpose.is_some()
            || !received.scopes.is_empty();
        if carries_more && !policy.may_forward_chain(peer) {
            let mut fresh = Chain::start(peer.clone(), now, limits.lifetime_secs);
            fresh.complete = false;
            return Ok(fresh);
        }
    }
    if received.depth() > limits.max_depth.min(chain::MAX_CHAIN_DEPTH) {
        return Err(Reason::ChainTooDeep);
    }
    Ok(received)
}
