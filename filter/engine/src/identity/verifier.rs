//! The one verifier skeleton both kinds of token go through: JWT-SVIDs
//! ([`super::jwt`]) and end-user tokens ([`super::tokens`]).
//!
//! [`verify`] runs the order of checks the [`super::jwt`] module docs list:
//! scheme and size, the verified-token cache, the compact JWS, the kind's
//! typed claims, the kind's anchor (whose keys, which audiences, which
//! lifetime bound), the key, the clock, the audience, `jti` revocation, the
//! kind's last checks, the signature. A kind ([`TokenVerifier`]) supplies only
//! what differs: how claims become its token, where its keys and audiences
//! come from, and what it checks after the shared steps. Every failure of a
//! shared step maps to the kind's reason code through [`Kind::reason`].

use serde_json::{Map, Value};

use super::jwks::{Alg, Jwk, KeySet};
use super::jwt::{
    audience_matches, bare_token, find_key, verify_signature, Fail, Kind, Parsed, Times, TokenRules,
};
use super::revocation::RevocationList;
use super::token_cache::TokenCache;
use crate::decision::Reason;

/// The JOSE header members a kind keeps in its token.
pub(crate) struct Jose {
    pub(crate) alg: Alg,
    pub(crate) kid: Option<String>,
    pub(crate) typ: Option<String>,
}

/// What a verified token of either kind carries for the shared checks.
pub(crate) struct Envelope<'t> {
    pub(crate) times: Times,
    pub(crate) audiences: &'t [String],
    pub(crate) jti: Option<&'t str>,
    pub(crate) alg: Alg,
    pub(crate) kid: Option<&'t str>,
    /// Which key verified it (zero until the signature is checked).
    pub(crate) key_fingerprint: &'t [u8; 32],
}

/// A verified token as the cache holds it.
pub(crate) trait Verified {
    /// The fields the shared checks read.
    fn envelope(&self) -> Envelope<'_>;
    /// Records which key verified the signature.
    fn set_key_fingerprint(&mut self, fingerprint: [u8; 32]);
}

/// Implements [`Verified`] for a token struct with the fields both kinds
/// share (`expires_at`, `issued_at`, `not_before`, `audiences`, `jti`, `alg`,
/// `kid`, `key_fingerprint`), in the module that defines it (the fingerprint
/// is private).
macro_rules! impl_verified {
    ($token:ty) => {
        impl $crate::identity::verifier::Verified for $token {
            fn envelope(&self) -> $crate::identity::verifier::Envelope<'_> {
                $crate::identity::verifier::Envelope {
                    times: $crate::identity::jwt::Times {
                        exp: self.expires_at,
                        iat: self.issued_at,
                        nbf: self.not_before,
                    },
                    audiences: &self.audiences,
                    jti: self.jti.as_deref(),
                    alg: self.alg,
                    kid: self.kid.as_deref(),
                    key_fingerprint: &self.key_fingerprint,
                }
            }

            fn set_key_fingerprint(&mut self, fingerprint: [u8; 32]) {
                self.key_fingerprint = fingerprint;
            }
        }
    };
}
pub(super) use impl_verified;

/// Where a token's trust comes from, resolved per check (keys rotate and go
/// stale, audiences and trust change with the configuration).
pub(crate) struct Anchor<'k> {
    /// The key set `kid` must name a key of.
    pub(crate) keys: &'k KeySet,
    /// Audiences accepted; the token must name at least one.
    pub(crate) audiences: &'k [String],
    /// Bound on the token's lifetime, seconds.
    pub(crate) max_lifetime_secs: Option<u64>,
}

/// One kind of token: the parts of verification that differ between kinds.
pub(crate) trait TokenVerifier<'k> {
    /// The verified token the cache holds.
    type Token: Verified;
    /// Picks the reason codes of the shared steps.
    const KIND: Kind;
    /// Scheme, size, algorithms, skew, lifetime bound.
    fn rules(&self) -> &'k TokenRules;
    /// Revocation data in force (`jti`s, and whatever [`Self::finish`] reads).
    fn revocation(&self) -> &'k RevocationList;
    /// Step 4: the kind's typed claims out of a parsed token.
    fn token(&self, jose: Jose, claims: Map<String, Value>) -> Result<Self::Token, Reason>;
    /// Step 5's first half: whether the token's issuer or trust domain is
    /// trusted, and its key set, audiences and lifetime bound.
    fn anchor(&self, token: &Self::Token, now_secs: u64) -> Result<Anchor<'k>, Reason>;
    /// Checks after `jti` revocation (none by default).
    fn finish(&self, _token: &Self::Token) -> Result<(), Reason> {
        Ok(())
    }
}

/// Verifies a token header value at `now_secs` (Unix time), through the
/// verified-token cache: the skeleton every kind of token shares.
pub(crate) fn verify<'k, 'c, V: TokenVerifier<'k>>(
    verifier: &V,
    header_value: &str,
    now_secs: u64,
    cache: &'c mut TokenCache<V::Token>,
) -> Result<&'c V::Token, Reason> {
    let kind = V::KIND;
    let rules = verifier.rules();
    let token = bare_token(rules, header_value).map_err(|f| kind.reason(f))?;
    let key = cache.key(token);
    if cache.lookup(&key, token, now_secs) {
        let hit = cache.peek(&key).ok_or(Reason::IdentityUnavailable)?;
        let jwk = check(verifier, hit, now_secs)?;
        // The kid now names another key: the cached signature says nothing.
        if jwk.fingerprint() != hit.envelope().key_fingerprint {
            return Err(kind.reason(Fail::BadSignature));
        }
        return Ok(hit);
    }
    let Parsed {
        signing_input,
        signature,
        alg,
        kid,
        typ,
        claims,
    } = Parsed::parse(kind, rules, token)?;
    let mut verified = verifier.token(Jose { alg, kid, typ }, claims)?;
    let jwk = check(verifier, &verified, now_secs)?;
    if !verify_signature(jwk, alg, signing_input.as_bytes(), &signature) {
        return Err(kind.reason(Fail::BadSignature));
    }
    verified.set_key_fingerprint(*jwk.fingerprint());
    let expires_at = verified
        .envelope()
        .times
        .exp
        .saturating_add(rules.clock_skew_secs);
    Ok(cache.insert(key, token, verified, expires_at))
}

/// Steps 5 and 6: everything but the signature, on a fresh token and on every
/// cache hit. Returns the key `kid` names in the token's anchor.
fn check<'k, V: TokenVerifier<'k>>(
    verifier: &V,
    token: &V::Token,
    now_secs: u64,
) -> Result<&'k Jwk, Reason> {
    let kind = V::KIND;
    let rules = verifier.rules();
    let anchor = verifier.anchor(token, now_secs)?;
    let envelope = token.envelope();
    let jwk = find_key(anchor.keys, envelope.kid, envelope.alg, rules.algorithms)
        .map_err(|f| kind.reason(f))?;
    envelope
        .times
        .check(rules.clock_skew_secs, anchor.max_lifetime_secs, now_secs)
        .map_err(|f| kind.reason(f))?;
    if !audience_matches(envelope.audiences, anchor.audiences) {
        return Err(kind.reason(Fail::WrongAudience));
    }
    if envelope
        .jti
        .is_some_and(|j| verifier.revocation().is_jti_revoked(j))
    {
        return Err(kind.reason(Fail::Revoked));
    }
    verifier.finish(token)?;
    Ok(jwk)
}
