//! Server side: verify every credential the request carries, rebuild the
//! caller chain, evaluate the policy, then either deny or pass the request
//! on with verified facts (and a sealed chain) for the app.

use std::collections::BTreeMap;

use super::headers::HeaderList;
use super::host::{Host, LogLevel};
use super::outcome::{HeaderEdit, Verdict};
use super::stats::Counter;
use super::{PeerEvidence, Pipeline, RequestInput, TokenEvidence};
use crate::audit::{AuditClaim, AuditUser};
use crate::chain::{self, Chain, CHAIN_HEADER};
use crate::config::{FilterConfig, HandOff, MethodOverride};
use crate::decision::{Decision, Reason};
use crate::evaluate::{evaluate, Headers, Request, UserInfo};
use crate::identity::cache::Fifo;
use crate::identity::PeerCertificateSource;
use crate::identity::{
    verify_jwt_svid, verify_peer_cert, verify_user_token, CertCache, ClaimValue, IdentityChecks,
    JwtSvidContext, PeerInputs, UserClaims, UserTokenContext,
};
use crate::method_override::{conflicting_override, METHOD_OVERRIDE_HEADERS};
use crate::model::Effect;
use crate::spiffe::SpiffeId;

/// The forwarded client certificate header (Envoy's `SANITIZE_SET`).
pub const XFCC: &str = "x-forwarded-client-cert";

/// A verified mTLS peer and its certificate's validity window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The peer's SPIFFE ID.
    pub id: SpiffeId,
    /// notBefore, notAfter of its certificate, when the certificate was read.
    pub window: Option<(u64, u64)>,
}

impl Pipeline {
    /// Decides one inbound request: the verdict with everything the audit
    /// line, the counters and the response are made of.
    pub(super) fn decide_inbound(&mut self, input: &RequestInput, host: &mut dyn Host) -> Verdict {
        let Pipeline {
            config,
            certs,
            jwt_svids,
            users,
            keys,
            seal_key,
            seals,
            local_id,
            warned_no_local_identity,
            ..
        } = self;
        let Some(config) = config.as_ref() else {
            return Verdict::deny(Reason::NoPolicy);
        };
        let policy = &config.policy;
        let headers = &input.headers;
        let now = input.now;

        // The direct peer.
        let peer = read_peer(config, certs, &input.peer, headers, now);

        // Tokens: absent = None; present = verified or a deny reason.
        let (jwt_svid, user) = match &input.tokens {
            TokenEvidence::FromHeaders => {
                let jwt_svid = config.jwt_svid.as_ref().and_then(|settings| {
                    headers
                        .single(&settings.header, Reason::JwtDuplicateHeader)
                        .map(|value| {
                            let ctx = JwtSvidContext {
                                settings,
                                keys,
                                revocation: &config.revocation,
                                trusts_domain: &|td| policy.trusts_domain(td),
                                policy_max_lifetime_secs: None,
                            };
                            value.and_then(|v| {
                                verify_jwt_svid(&ctx, v, now, jwt_svids).map(|j| j.subject.clone())
                            })
                        })
                });
                let user = config.user_tokens.as_ref().and_then(|settings| {
                    headers
                        .single(&settings.header, Reason::UserTokenDuplicateHeader)
                        .map(|value| {
                            let ctx = UserTokenContext {
                                settings,
                                keys,
                                revocation: &config.revocation,
                            };
                            value.and_then(|v| {
                                verify_user_token(&ctx, v, now, users).map(audit_user)
                            })
                        })
                });
                (jwt_svid, user)
            }
            TokenEvidence::Verified { jwt_svid, user, .. } => {
                // Verified elsewhere; the checks that depend on this policy
                // apply here as the token verifier would apply them.
                let jwt_svid = jwt_svid.as_ref().map(|token| match token {
                    Ok(id) if !policy.trusts_domain(id.trust_domain()) => {
                        Err(Reason::JwtUntrustedDomain)
                    }
                    other => other.clone(),
                });
                (jwt_svid, user.clone())
            }
        };

        // No certificate and no token where tokens are expected: say which.
        let user = match (&peer, &jwt_svid, user) {
            (Err(Reason::NoPeerCertificate), None, None) if config.user_tokens.is_some() => {
                Some(Err(Reason::UserTokenMissing))
            }
            (_, _, user) => user,
        };

        // The caller chain, believed only from peers trusted to forward it.
        let chain_values = headers.all(CHAIN_HEADER);
        let refused = match &input.tokens {
            TokenEvidence::Verified { chain_refused, .. } => *chain_refused,
            TokenEvidence::FromHeaders => None,
        };
        let chain: Option<Result<Chain, Reason>> = peer.as_ref().ok().map(|p| {
            if let Some(reason) = refused {
                return Err(reason);
            }
            chain::inbound(
                &p.id,
                policy.may_forward_chain(&p.id),
                &chain_values,
                now,
                policy.chain_limits(),
            )
            .map_err(chain::ChainError::reason)
        });

        let method = headers.get_or_empty(":method");
        let path = headers.get_or_empty(":path");
        let authority = headers.get_or_empty(":authority");
        let mut decision = evaluate(
            policy,
            &Request {
                peer: peer.as_ref().map(|p| &p.id).map_err(|r| *r),
                jwt_svid: jwt_svid.as_ref().map(|r| r.as_ref().map_err(|e| *e)),
                user: user
                    .as_ref()
                    .map(|r| r.as_ref().map(|u| u as &dyn UserInfo).map_err(|e| *e)),
                chain: chain.as_ref().map(|r| r.as_ref().map_err(|e| *e)),
                method,
                path,
                authority,
                headers,
            },
        );

        decision = check_method_override(decision, config.method_override, headers, method);

        let mut verdict = Verdict {
            decision,
            peer: Some(peer),
            jwt_svid,
            user,
            chain,
            edits: Vec::new(),
            handed_chain: None,
            counters: Vec::new(),
            logs: Vec::new(),
        };

        // Allow: hand the app verified facts. A failure here turns the
        // decision into a deny before it is counted and audited.
        if verdict.decision.effect == Effect::Allow {
            let me = local_workload(local_id, host);
            let handed = hand_to_app(
                config,
                seal_key.as_deref().map(|key| (key, seals)),
                me.as_ref(),
                warned_no_local_identity,
                &mut verdict,
                headers,
                now,
            );
            if let Err(reason) = handed {
                verdict.fail_after_decision(reason);
            }
        }
        verdict
    }
}

/// An enforced allow judged the real method; an override header naming
/// another one would make the app act on a method nobody authorized, so
/// with [`MethodOverride::Deny`] such an allow becomes `method_override`.
pub(crate) fn check_method_override(
    decision: Decision,
    setting: MethodOverride,
    headers: &dyn Headers,
    method: &str,
) -> Decision {
    if decision.effect == Effect::Allow
        && decision.reason != Reason::PolicyDryRun
        && setting == MethodOverride::Deny
        && conflicting_override(headers, method).is_some()
    {
        return Decision {
            intent: decision.intent,
            ..Decision::deny(Reason::MethodOverride)
        };
    }
    decision
}

/// The direct peer from the evidence the host gave.
fn read_peer(
    config: &FilterConfig,
    certs: &mut CertCache,
    evidence: &PeerEvidence,
    headers: &HeaderList,
    now: u64,
) -> Result<Peer, Reason> {
    match evidence {
        PeerEvidence::Connection {
            cert_digest,
            uri_san,
        } => {
            // Envoy's SANITIZE_SET writes exactly one; more is not Envoy's
            // doing (read as an empty, malformed header).
            let xfcc = headers.single(XFCC, "").map(|v| v.unwrap_or_else(|e| e));
            let inputs = PeerInputs {
                cert_digest: cert_digest.as_deref(),
                uri_san: match config.peer_certificate {
                    // The digest binds the XFCC certificate to the
                    // connection, so its URI SAN is the connection's.
                    PeerCertificateSource::Forwarded | PeerCertificateSource::FilterState => None,
                    PeerCertificateSource::ConnectionOnly => uri_san.as_deref(),
                },
                xfcc,
            };
            let checks = IdentityChecks {
                source: config.peer_certificate,
                max_cert_lifetime_secs: config.policy.max_cert_lifetime_secs(),
                revoked_serials: config.revocation.serials(),
            };
            let verified = verify_peer_cert(&checks, &inputs, now, certs)?;
            config.revocation.check_spiffe_id(verified.id)?;
            Ok(Peer {
                id: verified.id.clone(),
                window: verified.cert.map(|c| (c.not_before, c.not_after)),
            })
        }
        PeerEvidence::Verified { peer, cert_window } => {
            let id = peer.clone()?;
            // The checks that depend on this policy and configuration.
            if let (Some((not_before, not_after)), Some(max)) =
                (cert_window, config.policy.max_cert_lifetime_secs())
            {
                if not_after.saturating_sub(*not_before) > max {
                    return Err(Reason::CertLifetimeExceedsBound);
                }
            }
            config.revocation.check_spiffe_id(&id)?;
            Ok(Peer {
                id,
                window: *cert_window,
            })
        }
    }
}

/// Replaces every header the filter owns with verified facts and the chain
/// (sealed for an app, or in wire form for a router that forwards into the
/// mesh). An error is the deny reason.
fn hand_to_app(
    config: &FilterConfig,
    seal_key: Option<(&[u8], &mut SealCache)>,
    this_workload: Option<&SpiffeId>,
    warned_no_local_identity: &mut bool,
    verdict: &mut Verdict,
    headers: &HeaderList,
    now: u64,
) -> Result<(), Reason> {
    let policy = &config.policy;
    let decision = verdict.decision;
    let intent = decision.intent.map(|i| policy.intent_name(i));
    let peer_ok = matches!(verdict.peer, Some(Ok(_)));
    let app_chain = match this_workload {
        Some(me) => chain_for_app(
            config,
            peer_ok,
            verdict.chain.as_ref().and_then(|c| c.as_ref().ok()),
            verdict.user.as_ref(),
            me,
            intent,
            now,
        )?,
        None => {
            // Without our own identity the chain cannot go on: say so,
            // loudly but once per configuration, and count every time.
            verdict.counters.push(Counter::ChainNoLocalIdentity);
            if !*warned_no_local_identity {
                *warned_no_local_identity = true;
                verdict.logs.push((
                        LogLevel::Warn,
                        "meshward: this listener's certificate has no SPIFFE URI SAN and `workload_id` is not set: \
                         the app gets no caller chain, so the next hop sees a chain that starts here"
                            .to_owned(),
                    ));
            }
            None
        }
    };
    let peer_text = match (&verdict.peer, &verdict.jwt_svid) {
        (Some(Ok(p)), _) => p.id.as_str().to_owned(),
        (_, Some(Ok(j))) => j.as_str().to_owned(),
        _ => String::new(),
    };
    let verdict_text = if decision.would_deny() {
        "would-deny"
    } else {
        "allow"
    };
    let chain_value = match (app_chain, config.chain.hand_off, seal_key) {
        (None, _, _) => None,
        (Some(c), HandOff::Wire, _) => Some(c.to_wire()),
        (Some(c), HandOff::Sealed, Some((key, seals))) => Some(seals.seal(&c, key)),
        // No key (the VM could not create one): no chain rather than an
        // unsealed one the app could edit.
        (Some(_), HandOff::Sealed, None) => return Err(Reason::IdentityUnavailable),
    };
    let mut edits: Vec<HeaderEdit> = headers
        .owned_names()
        .into_iter()
        .map(HeaderEdit::Remove)
        .collect();
    if config.method_override == MethodOverride::Strip {
        for name in METHOD_OVERRIDE_HEADERS {
            if headers.contains(name) {
                edits.push(HeaderEdit::Remove(name.to_owned()));
            }
        }
    }
    for (name, value) in [
        ("x-meshward-peer", peer_text),
        (
            "x-meshward-intent",
            intent.unwrap_or("unclassified").to_owned(),
        ),
        ("x-meshward-decision", verdict_text.to_owned()),
        ("x-meshward-policy", policy.hash_hex().to_owned()),
    ] {
        edits.push(HeaderEdit::Add(name, value));
    }
    if let Some(value) = &chain_value {
        edits.push(HeaderEdit::Add(CHAIN_HEADER, value.clone()));
    }
    verdict.edits = edits;
    verdict.handed_chain = chain_value;
    Ok(())
}

/// Sealed chains by their wire form. A seal (HMAC-SHA256, ~25k
/// instructions natively) is a function of the key and the wire text alone,
/// and the wire form of the chain handed to an app changes only with its
/// hops, intent, user and the second (`iat`): most requests reuse one.
#[derive(Debug)]
pub(super) struct SealCache {
    /// The key the entries were sealed with; another key empties the cache.
    key: Vec<u8>,
    sealed: Fifo<String, String>,
}

impl SealCache {
    pub(super) fn new(capacity: usize) -> Self {
        SealCache {
            key: Vec::new(),
            sealed: Fifo::new(capacity),
        }
    }

    /// `chain.seal(key)`, from the cache when it holds that wire form.
    fn seal(&mut self, chain: &Chain, key: &[u8]) -> String {
        if self.key != key {
            self.sealed.clear();
            key.clone_into(&mut self.key);
        }
        let wire = chain.to_wire();
        if let Some(sealed) = self.sealed.get(&wire) {
            return sealed.clone();
        }
        self.sealed.insert(wire, chain.seal(key)).clone()
    }
}

/// This workload's own SPIFFE ID: configured, or the inbound listener's
/// certificate (read once, then kept for the configuration).
fn local_workload(cached: &mut Option<SpiffeId>, host: &mut dyn Host) -> Option<SpiffeId> {
    if cached.is_none() {
        *cached = host
            .property(&["connection", "uri_san_local_certificate"])
            .ok()
            .flatten()
            .and_then(|uri| String::from_utf8(uri).ok())
            .and_then(|uri| SpiffeId::parse(&uri).ok());
    }
    cached.clone()
}

/// The end user as audit lines and rules see it.
fn audit_user(claims: &UserClaims) -> AuditUser {
    AuditUser {
        sub: claims.subject.clone(),
        iss: Some(claims.issuer.clone()),
        scopes: claims.scopes.clone(),
        claims: claims
            .claims
            .iter()
            .map(|(name, value)| {
                let value = match value {
                    ClaimValue::Str(s) => AuditClaim::Str(s.clone()),
                    ClaimValue::List(l) => AuditClaim::List(l.clone()),
                };
                (name.clone(), value)
            })
            .collect::<BTreeMap<_, _>>(),
    }
}

/// The chain the app gets: the rebuilt chain extended with this workload, or
/// (for a request authenticated by tokens alone, e.g. at the edge) a chain
/// that starts here. A user verified at this hop fills in a chain without one.
fn chain_for_app(
    config: &FilterConfig,
    has_peer: bool,
    received: Option<&Chain>,
    user: Option<&Result<AuditUser, Reason>>,
    me: &SpiffeId,
    intent: Option<&str>,
    now: u64,
) -> Result<Option<Chain>, Reason> {
    let limits = config.policy.chain_limits();
    let mut chain = match (received, has_peer) {
        (Some(chain), _) => {
            chain::for_app(chain.clone(), me, intent).map_err(chain::ChainError::reason)?
        }
        // A peer whose chain was refused never gets this far (that is a deny).
        (None, true) => return Ok(None),
        (None, false) => {
            let mut chain = Chain::start(me.clone(), now, limits.lifetime_secs);
            chain.purpose = intent.map(str::to_owned);
            chain
        }
    };
    if let (None, Some(Ok(user))) = (&chain.user, user) {
        chain.user = Some(user.sub.clone());
        chain.scopes = user.scopes.clone();
    }
    Ok(Some(chain))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_seals_are_the_seals() {
        let peer = SpiffeId::parse("spiffe://td.example/ns/a/sa/b").unwrap();
        let mut seals = SealCache::new(2);
        let chains: Vec<Chain> = (0..3)
            .map(|i| Chain::start(peer.clone(), 1_000 + i, 60))
            .collect();
        for _ in 0..2 {
            for chain in &chains {
                assert_eq!(seals.seal(chain, b"key-1"), chain.seal(b"key-1"));
            }
        }
        // Another key never gets a seal made with the first one.
        let first = chains.first().unwrap();
        assert_eq!(seals.seal(first, b"key-2"), first.seal(b"key-2"));
        assert_ne!(seals.seal(first, b"key-2"), first.seal(b"key-1"));
    }
}
