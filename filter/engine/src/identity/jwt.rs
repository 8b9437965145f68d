//! JWT-SVID verification, and the compact-JWS machinery shared with end-user
//! tokens ([`super::tokens`]).
//!
//! A token is checked in this order, cheapest first, so junk never reaches
//! the signature (milliseconds for ES256 inside V8):
//!
//! 1. scheme (`Bearer ` when configured) and size ([`Reason::JwtTooLarge`]);
//! 2. the verified-token cache (SHA-256 of the token): a hit skips 3–4 and
//!    the signature, and re-runs everything from 5 on;
//! 3. three base64url segments, a JSON object header without `crit`, a
//!    fitting `typ` ([`Reason::JwtMalformed`]); `alg` one we verify and in the
//!    allowlist — `none` and `HS*` never are ([`Reason::JwtAlgNotAllowed`]);
//! 4. a JSON object payload with no duplicate members and well-typed claims
//!    ([`Reason::JwtMalformed`]), `sub`, `aud`, `exp` present
//!    ([`Reason::JwtMissingClaim`]), `sub` a SPIFFE ID
//!    ([`Reason::JwtSubjectNotSpiffe`]);
//! 5. the subject's trust domain is trusted ([`Reason::JwtUntrustedDomain`]);
//!    its key set is there and fresh ([`Reason::KeysUnavailable`],
//!    [`Reason::KeysStale`]); `kid` names a key *of that set*
//!    ([`Reason::JwtUnknownKid`]) whose type (and pinned `alg`) fits the
//!    token's `alg` ([`Reason::JwtAlgNotAllowed`]) — a key of another trust
//!    domain can never verify the token;
//! 6. `exp`, `nbf`, `iat` against the clock with skew, lifetime bound,
//!    audience, revocation of `jti` and `sub`;
//! 7. the signature ([`Reason::JwtBadSignature`]); success is cached.
//!
//! One skeleton runs these steps for both kinds of token
//! (`identity/verifier.rs`); this module supplies the JWT-SVID's own parts
//! (`typ`, the SPIFFE subject, its trust domain's keys, subject revocation)
//! and the shared pieces (the JWS parser, claim readers, time checks).
//!
//! The header's JOSE members `jwk`, `jku`, `x5u`, `x5c` are never used: keys
//! come only from the configured or fetched sets.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::de::{Deserializer, Error as _, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use super::jwks::{Alg, AlgSet, Jwk, KeySet, KeyStore, PublicKey};
use super::revocation::RevocationList;
use super::token_cache::TokenCache;
use super::verifier::{self, Anchor, Jose, TokenVerifier};
use crate::decision::Reason;
use crate::spiffe::SpiffeId;

/// Default header carrying a JWT-SVID.
pub const DEFAULT_JWT_SVID_HEADER: &str = "x-jwt-svid";
/// Default clock skew tolerated on `exp`, `nbf` and `iat`.
pub const DEFAULT_CLOCK_SKEW_SECS: u64 = 30;
/// Default limit on a token header value.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Which kind of token is checked: picks the reason codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Svid,
    User,
}

/// A failure common to both kinds of token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fail {
    TooLarge,
    Malformed,
    AlgNotAllowed,
    UnknownKid,
    BadSignature,
    MissingClaim,
    Expired,
    NotYetValid,
    LifetimeExceedsBound,
    WrongAudience,
    Revoked,
}

impl Kind {
    pub(crate) fn reason(self, fail: Fail) -> Reason {
        match (self, fail) {
            (Kind::Svid, Fail::TooLarge) => Reason::JwtTooLarge,
            (Kind::Svid, Fail::Malformed) => Reason::JwtMalformed,
            (Kind::Svid, Fail::AlgNotAllowed) => Reason::JwtAlgNotAllowed,
            (Kind::Svid, Fail::UnknownKid) => Reason::JwtUnknownKid,
            (Kind::Svid, Fail::BadSignature) => Reason::JwtBadSignature,
            (Kind::Svid, Fail::MissingClaim) => Reason::JwtMissingClaim,
            (Kind::Svid, Fail::Expired) => Reason::JwtExpired,
            (Kind::Svid, Fail::NotYetValid) => Reason::JwtNotYetValid,
            (Kind::Svid, Fail::LifetimeExceedsBound) => Reason::JwtLifetimeExceedsBound,
            (Kind::Svid, Fail::WrongAudience) => Reason::JwtWrongAudience,
            (Kind::Svid, Fail::Revoked) => Reason::JwtRevoked,
            (Kind::User, Fail::TooLarge) => Reason::UserTokenTooLarge,
            (Kind::User, Fail::Malformed) => Reason::UserTokenMalformed,
            (Kind::User, Fail::AlgNotAllowed) => Reason::UserTokenAlgNotAllowed,
            (Kind::User, Fail::UnknownKid) => Reason::UserTokenUnknownKid,
            (Kind::User, Fail::BadSignature) => Reason::UserTokenBadSignature,
            (Kind::User, Fail::MissingClaim) => Reason::UserTokenMissingClaim,
            (Kind::User, Fail::Expired) => Reason::UserTokenExpired,
            (Kind::User, Fail::NotYetValid) => Reason::UserTokenNotYetValid,
            (Kind::User, Fail::LifetimeExceedsBound) => Reason::UserTokenLifetimeExceedsBound,
            (Kind::User, Fail::WrongAudience) => Reason::UserTokenWrongAudience,
            (Kind::User, Fail::Revoked) => Reason::UserTokenRevoked,
        }
    }
}

/// The limits and allowlist shared by both kinds of token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRules {
    /// Authentication scheme expected before the token (`Bearer`), compared
    /// case-insensitively and followed by one or more spaces; `None`: the
    /// header value is the bare token.
    pub scheme: Option<String>,
    /// Largest header value accepted, bytes.
    pub max_token_bytes: usize,
    /// Algorithms accepted (never `none` or HMAC: not representable).
    pub algorithms: AlgSet,
    /// Tolerance on `exp`, `nbf`, `iat`, seconds.
    pub clock_skew_secs: u64,
    /// Bound on the token's lifetime (`exp - iat`, or `exp - now` without
    /// `iat`), seconds.
    pub max_lifetime_secs: Option<u64>,
}

impl Default for TokenRules {
    fn default() -> Self {
        TokenRules {
            scheme: None,
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
            algorithms: AlgSet::ALL,
            clock_skew_secs: DEFAULT_CLOCK_SKEW_SECS,
            max_lifetime_secs: None,
        }
    }
}

/// The JWT-SVID settings of the plugin configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtSvidSettings {
    /// Lowercase header name the filter reads (default `x-jwt-svid`).
    pub header: String,
    /// Audiences of this workload; a token must name at least one.
    pub audiences: Vec<String>,
    /// Scheme, size, algorithms, skew, lifetime bound.
    pub rules: TokenRules,
}

/// Everything one JWT-SVID check needs besides the token.
#[derive(Clone, Copy)]
pub struct JwtSvidContext<'a> {
    /// From the configuration.
    pub settings: &'a JwtSvidSettings,
    /// Key sets in force (trust domain sets are used).
    pub keys: &'a KeyStore,
    /// Revocation data in force.
    pub revocation: &'a RevocationList,
    /// Whether the policy trusts a trust domain (e.g. `Policy::trusts_domain`).
    pub trusts_domain: &'a dyn Fn(&str) -> bool,
    /// The policy's lifetime bound, seconds; the stricter of it and the
    /// configuration's applies.
    pub policy_max_lifetime_secs: Option<u64>,
}

impl std::fmt::Debug for JwtSvidContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtSvidContext")
            .field("settings", &self.settings)
            .field("policy_max_lifetime_secs", &self.policy_max_lifetime_secs)
            .finish_non_exhaustive()
    }
}

/// A verified JWT-SVID: what rules and audit lines may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtSvid {
    /// `sub`: the workload the token speaks for.
    pub subject: SpiffeId,
    /// `aud`, as given (one or more).
    pub audiences: Vec<String>,
    /// `exp`, Unix seconds.
    pub expires_at: u64,
    /// `iat`, if present.
    pub issued_at: Option<u64>,
    /// `nbf`, if present.
    pub not_before: Option<u64>,
    /// `jti`, if present.
    pub jti: Option<String>,
    /// `iss`, if present (not checked for JWT-SVIDs).
    pub issuer: Option<String>,
    /// The algorithm that verified it.
    pub alg: Alg,
    /// The key id that verified it.
    pub kid: Option<String>,
    /// Which key verified it: a hit is valid only while that key still
    /// stands under this `kid` in the trust domain's set.
    key_fingerprint: [u8; 32],
}

/// Verifies a JWT-SVID header value at `now_secs` (Unix time), through the
/// verified-token cache. See the module docs for the order of checks.
pub fn verify_jwt_svid<'c>(
    ctx: &JwtSvidContext<'_>,
    header_value: &str,
    now_secs: u64,
    cache: &'c mut TokenCache<JwtSvid>,
) -> Result<&'c JwtSvid, Reason> {
    verifier::verify(ctx, header_value, now_secs, cache)
}

impl<'k> TokenVerifier<'k> for JwtSvidContext<'k> {
    type Token = JwtSvid;
    const KIND: Kind = Kind::Svid;

    fn rules(&self) -> &'k TokenRules {
        &self.settings.rules
    }

    fn revocation(&self) -> &'k RevocationList {
        self.revocation
    }

    fn token(&self, jose: Jose, mut claims: Map<String, Value>) -> Result<JwtSvid, Reason> {
        let fail = |f: Fail| Kind::Svid.reason(f);
        if let Some(typ) = &jose.typ {
            // JWT-SVID spec: `typ`, when present, is `JWT` or `JOSE`.
            if typ != "JWT" && typ != "JOSE" {
                return Err(Reason::JwtMalformed);
            }
        }
        let times = Times::take(&mut claims).map_err(fail)?;
        let sub = take_str(&mut claims, "sub")
            .map_err(fail)?
            .ok_or(Reason::JwtMissingClaim)?;
        let audiences = take_audiences(&mut claims)
            .map_err(fail)?
            .ok_or(Reason::JwtMissingClaim)?;
        let jti = take_str(&mut claims, "jti").map_err(fail)?;
        let issuer = take_str(&mut claims, "iss").map_err(fail)?;
        let subject = SpiffeId::parse(&sub).map_err(|_| Reason::JwtSubjectNotSpiffe)?;
        Ok(JwtSvid {
            subject,
            audiences,
            expires_at: times.exp,
            issued_at: times.iat,
            not_before: times.nbf,
            jti,
            issuer,
            alg: jose.alg,
            kid: jose.kid,
            key_fingerprint: [0; 32],
        })
    }

    /// The subject's trust domain is trusted and its key set is there and fresh.
    fn anchor(&self, svid: &JwtSvid, now_secs: u64) -> Result<Anchor<'k>, Reason> {
        let td = svid.subject.trust_domain();
        if !(self.trusts_domain)(td) {
            return Err(Reason::JwtUntrustedDomain);
        }
        Ok(Anchor {
            keys: self.keys.trust_domain(td, now_secs)?,
            audiences: &self.settings.audiences,
            max_lifetime_secs: min_bound(
                self.settings.rules.max_lifetime_secs,
                self.policy_max_lifetime_secs,
            ),
        })
    }

    /// The subject's SPIFFE ID is not revoked.
    fn finish(&self, svid: &JwtSvid) -> Result<(), Reason> {
        self.revocation.check_spiffe_id(&svid.subject)
    }
}

verifier::impl_verified!(JwtSvid);

/// The stricter of two optional bounds.
pub(crate) fn min_bound(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Strips the scheme and checks the size; the result is the cache key's input.
pub(crate) fn bare_token<'v>(rules: &TokenRules, value: &'v str) -> Result<&'v str, Fail> {
    if value.len() > rules.max_token_bytes {
        return Err(Fail::TooLarge);
    }
    let token = match &rules.scheme {
        None => value,
        Some(scheme) => {
            let head = value.get(..scheme.len()).ok_or(Fail::Malformed)?;
            let rest = value.get(scheme.len()..).ok_or(Fail::Malformed)?;
            if !head.eq_ignore_ascii_case(scheme) || !rest.starts_with(' ') {
                return Err(Fail::Malformed);
            }
            rest.trim_start_matches(' ')
        }
    };
    if token.is_empty() {
        return Err(Fail::Malformed);
    }
    Ok(token)
}

/// The JOSE header members we read. Others (`jwk`, `jku`, `x5c`...) are
/// ignored: never a source of keys.
#[derive(Deserialize)]
struct JoseHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
}

/// A structurally valid compact JWS whose signature is not checked yet.
pub(crate) struct Parsed<'t> {
    pub(crate) signing_input: &'t str,
    pub(crate) signature: Vec<u8>,
    pub(crate) alg: Alg,
    pub(crate) kid: Option<String>,
    pub(crate) typ: Option<String>,
    pub(crate) claims: Map<String, Value>,
}

impl<'t> Parsed<'t> {
    /// Steps 3 and 4 up to typed claims: segments, header, `alg`, payload.
    pub(crate) fn parse(kind: Kind, rules: &TokenRules, token: &'t str) -> Result<Self, Reason> {
        let malformed = kind.reason(Fail::Malformed);
        let (signing_input, sig_b64) = token.rsplit_once('.').ok_or(malformed)?;
        let (header_b64, payload_b64) = signing_input.split_once('.').ok_or(malformed)?;
        if payload_b64.contains('.') {
            return Err(malformed);
        }
        let header_json = URL_SAFE_NO_PAD.decode(header_b64).map_err(|_| malformed)?;
        if !is_json_object(&header_json) {
            return Err(malformed);
        }
        let header: JoseHeader = serde_json::from_slice(&header_json).map_err(|_| malformed)?;
        // RFC 7515 4.1.11: extensions we do not understand must be refused.
        if header.crit.is_some() {
            return Err(malformed);
        }
        let alg = Alg::from_name(&header.alg)
            .filter(|alg| rules.algorithms.contains(*alg))
            .ok_or(kind.reason(Fail::AlgNotAllowed))?;
        if header.kid.as_deref() == Some("") {
            return Err(malformed);
        }
        let payload = URL_SAFE_NO_PAD.decode(payload_b64).map_err(|_| malformed)?;
        let StrictObject(claims) = serde_json::from_slice(&payload).map_err(|_| malformed)?;
        let signature = URL_SAFE_NO_PAD.decode(sig_b64).map_err(|_| malformed)?;
        Ok(Parsed {
            signing_input,
            signature,
            alg,
            kid: header.kid,
            typ: header.typ,
            claims,
        })
    }
}

/// Whether a JSON text is an object. serde's derived structs also accept an
/// array of the members' values (`["ES256"]` as a header): we do not.
pub(crate) fn is_json_object(json: &[u8]) -> bool {
    json.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

/// A JSON object whose top-level members are unique: a parser that keeps the
/// last of two `sub`s must not disagree with one that keeps the first.
struct StrictObject(Map<String, Value>);

impl<'de> Deserialize<'de> for StrictObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = StrictObject;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<StrictObject, A::Error> {
                let mut map = Map::new();
                while let Some((key, value)) = access.next_entry::<String, Value>()? {
                    if map.contains_key(&key) {
                        return Err(A::Error::custom(format_args!("duplicate member `{key}`")));
                    }
                    map.insert(key, value);
                }
                Ok(StrictObject(map))
            }
        }
        deserializer.deserialize_map(ObjectVisitor)
    }
}

/// Takes a string claim: absent is `None`, another JSON type is malformed.
pub(crate) fn take_str(
    claims: &mut Map<String, Value>,
    name: &str,
) -> Result<Option<String>, Fail> {
    match claims.remove(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Fail::Malformed),
    }
}

/// Takes `aud`: a string or an array of strings (RFC 7519 4.1.3).
pub(crate) fn take_audiences(claims: &mut Map<String, Value>) -> Result<Option<Vec<String>>, Fail> {
    match claims.remove("aud") {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(vec![s])),
        Some(Value::Array(items)) => string_list(items).map(Some).ok_or(Fail::Malformed),
        Some(_) => Err(Fail::Malformed),
    }
}

/// An array of strings, or `None` if any item is not a string.
pub(crate) fn string_list(items: Vec<Value>) -> Option<Vec<String>> {
    items
        .into_iter()
        .map(|v| match v {
            Value::String(s) => Some(s),
            _ => None,
        })
        .collect()
}

/// Whether any audience of the token is one we accept.
pub(crate) fn audience_matches(token: &[String], accepted: &[String]) -> bool {
    token.iter().any(|a| accepted.iter().any(|b| a == b))
}

/// The time claims of a token, Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Times {
    pub(crate) exp: u64,
    pub(crate) iat: Option<u64>,
    pub(crate) nbf: Option<u64>,
}

impl Times {
    /// Takes `exp` (required), `iat`, `nbf` from the claims.
    pub(crate) fn take(claims: &mut Map<String, Value>) -> Result<Times, Fail> {
        let exp = numeric_date(claims.remove("exp"))?;
        let iat = numeric_date(claims.remove("iat"))?;
        let nbf = numeric_date(claims.remove("nbf"))?;
        Ok(Times {
            exp: exp.ok_or(Fail::MissingClaim)?,
            iat,
            nbf,
        })
    }

    /// Expiry, not-before, issued-in-the-future, lifetime bound.
    pub(crate) fn check(&self, skew: u64, max_lifetime: Option<u64>, now: u64) -> Result<(), Fail> {
        if now >= self.exp.saturating_add(skew) {
            return Err(Fail::Expired);
        }
        let horizon = now.saturating_add(skew);
        if self.nbf.is_some_and(|nbf| nbf > horizon) || self.iat.is_some_and(|iat| iat > horizon) {
            return Err(Fail::NotYetValid);
        }
        if let Some(max) = max_lifetime {
            let lifetime = self.exp.saturating_sub(self.iat.unwrap_or(now));
            if lifetime > max {
                return Err(Fail::LifetimeExceedsBound);
            }
        }
        Ok(())
    }
}

/// A NumericDate: a non-negative JSON number of seconds (fractions truncated).
fn numeric_date(value: Option<Value>) -> Result<Option<u64>, Fail> {
    let Some(value) = value else { return Ok(None) };
    let Value::Number(n) = value else {
        return Err(Fail::Malformed);
    };
    if let Some(secs) = n.as_u64() {
        return Ok(Some(secs));
    }
    match n.as_f64() {
        // 1.8e19 < u64::MAX: the cast below cannot saturate silently.
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "finite and in 0..1.8e19 < u64::MAX: the cast cannot saturate"
        )]
        Some(f) if f.is_finite() && (0.0..1.8e19).contains(&f) => Ok(Some(f as u64)),
        _ => Err(Fail::Malformed),
    }
}

/// Finds the key `kid` names and checks that it may verify `alg`.
pub(crate) fn find_key<'k>(
    keys: &'k KeySet,
    kid: Option<&str>,
    alg: Alg,
    allowed: AlgSet,
) -> Result<&'k Jwk, Fail> {
    let jwk = keys.find(kid).ok_or(Fail::UnknownKid)?;
    // An RSA key asked to check ES256 (or a pinned RS256 key asked for PS256)
    // is an algorithm confusion attempt.
    if !allowed.contains(alg) || !jwk.accepts(alg) {
        return Err(Fail::AlgNotAllowed);
    }
    Ok(jwk)
}

/// Checks a JWS signature over `signing_input` with `jwk` under `alg`.
pub(crate) fn verify_signature(
    jwk: &Jwk,
    alg: Alg,
    signing_input: &[u8],
    signature: &[u8],
) -> bool {
    use p256::ecdsa::signature::Verifier as _;
    match (&jwk.key, alg) {
        (PublicKey::P256(key), Alg::Es256) => p256::ecdsa::Signature::from_slice(signature)
            .is_ok_and(|sig| key.verify(signing_input, &sig).is_ok()),
        (PublicKey::Rsa(key), Alg::Rs256) => key
            .verify(
                rsa::Pkcs1v15Sign::new::<Sha256>(),
                &Sha256::digest(signing_input),
                signature,
            )
            .is_ok(),
        (PublicKey::Rsa(key), Alg::Ps256) => key
            .verify(
                rsa::Pss::new::<Sha256>(),
                &Sha256::digest(signing_input),
                signature,
            )
            .is_ok(),
        (PublicKey::Ed25519(key), Alg::EdDsa) => ed25519_dalek::Signature::from_slice(signature)
            .is_ok_and(|sig| key.verify_strict(signing_input, &sig).is_ok()),
        _ => false,
    }
}
