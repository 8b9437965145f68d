//! One audit record back into the pipeline's facts, decided by the filter's
//! own pipeline under the *new* policy.
//!
//! An audit line records what the filter verified under the policy in force
//! then. Most of it does not depend on the policy (the peer's SPIFFE ID, the
//! token subjects, method, path, authority, the headers conditions read and
//! method-override headers); what does is re-applied by the pipeline, as
//! the proxy would apply it with the new policy:
//!
//! - a JWT-SVID subject in a trust domain the new policy does not trust is
//!   refused (`jwt_untrusted_domain`);
//! - a peer certificate whose recorded validity window is longer than the new
//!   `max_cert_lifetime` is refused (`cert_lifetime_exceeds_bound`);
//! - the received chain goes through the new policy's chain rules (depth,
//!   lifetime, forwarders): one that carries hops, a user or a purpose from
//!   a peer the new policy does not trust to forward restarts at the peer,
//!   incomplete;
//! - authority canonicalization, path canonicalization and method-override
//!   headers are judged as in the proxy.
//!
//! What a record cannot tell is replayed as recorded: an identity refused
//! under the old policy stays refused (the rejected value was not logged),
//! hops the old policy dropped stay dropped, and a header the old policy
//! did not read was not logged, so it replays as absent (the report warns
//! when the new policy reads such a header).

use meshward_engine::audit::{reason_from_code, AuditRecord};
use meshward_engine::chain::{self, Chain, CHAIN_HEADER};
use meshward_engine::pipeline::{HeaderList, PeerEvidence, RequestInput, TokenEvidence};
use meshward_engine::spiffe::SpiffeId;
use meshward_engine::{Decision, Reason};

use crate::outcome::OfflineFilter;

/// Decides a recorded request with the filter's pipeline. `Err` says why the
/// record is unusable (it is then reported as malformed).
pub(crate) fn decide(filter: &mut OfflineFilter, record: &AuditRecord) -> Result<Decision, String> {
    Ok(filter.decide_verdict(&input(record)?).decision)
}

/// The pipeline facts a record holds.
pub(crate) fn input(record: &AuditRecord) -> Result<RequestInput, String> {
    let peer = match (&record.peer, &record.peer_error) {
        (Some(text), None) => {
            Ok(SpiffeId::parse(text).map_err(|e| format!("`peer` `{text}`: {e}"))?)
        }
        (None, Some(code)) => Err(reason(code, "peer_error")?),
        (Some(_), Some(_)) => return Err("both `peer` and `peer_error` are set".to_owned()),
        (None, None) => return Err("neither `peer` nor `peer_error` is set".to_owned()),
    };
    let jwt_svid = match (&record.jwt_svid, &record.jwt_svid_error) {
        (Some(text), None) => Some(Ok(
            SpiffeId::parse(text).map_err(|e| format!("`jwt_svid` `{text}`: {e}"))?
        )),
        (None, Some(code)) => Some(Err(reason(code, "jwt_svid_error")?)),
        (None, None) => None,
        (Some(_), Some(_)) => return Err("both `jwt_svid` and `jwt_svid_error` are set".to_owned()),
    };
    let user = match (&record.user, &record.user_error) {
        (Some(user), None) => Some(Ok(user.clone())),
        (None, Some(code)) => Some(Err(reason(code, "user_error")?)),
        (None, None) => None,
        (Some(_), Some(_)) => return Err("both `user` and `user_error` are set".to_owned()),
    };
    let mut headers = vec![
        (":method".to_owned(), record.method.clone()),
        (":path".to_owned(), record.path.clone()),
    ];
    if !record.authority.is_empty() {
        headers.push((":authority".to_owned(), record.authority.clone()));
    }
    headers.extend(record.headers.iter().map(|(k, v)| (k.clone(), v.clone())));
    let chain_refused = match (&record.chain, &record.chain_error) {
        (Some(wire), None) => {
            // Checked here only for its grammar: the pipeline judges it
            // under the new policy.
            let received = Chain::from_wire(wire, record.time, chain::MAX_CHAIN_DEPTH)
                .map_err(|e| format!("`chain`: {e}"))?;
            // A chain that started at the peer is what the proxy builds when
            // no chain header came: replay it as no header.
            let started_here = received.hops.len() == 1
                && peer.as_ref().ok() == received.hops.first()
                && received.complete
                && received.user.is_none()
                && received.purpose.is_none();
            if !started_here {
                headers.push((CHAIN_HEADER.to_owned(), wire.clone()));
            }
            None
        }
        (None, Some(code)) => Some(reason(code, "chain_error")?),
        (None, None) => None,
        (Some(_), Some(_)) => return Err("both `chain` and `chain_error` are set".to_owned()),
    };
    Ok(RequestInput {
        headers: HeaderList::new(headers),
        peer: PeerEvidence::Verified {
            peer,
            cert_window: record.cert.map(|c| (c.not_before, c.not_after)),
        },
        tokens: TokenEvidence::Verified {
            jwt_svid,
            user,
            chain_refused,
        },
        now: record.time,
    })
}

fn reason(code: &str, field: &str) -> Result<Reason, String> {
    reason_from_code(code).ok_or_else(|| format!("unknown reason code `{code}` in `{field}`"))
}
