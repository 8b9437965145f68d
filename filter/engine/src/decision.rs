//! What `evaluate` returns: a decision is a value, never an error.

use crate::model::{Effect, IntentIdx};

/// Why a decision came out as it did. `Copy`, with a stable snake_case code
/// that appears in responses, audit lines and stats (bounded cardinality).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// An enforced allow rule matched and no deny rule did.
    AllowedByRule,
    /// An enforced deny rule matched.
    DeniedByRule,
    /// The request has an intent, but no allow rule grants it to this peer.
    NoMatchingRule,
    /// The request matched no intent and no rule allows unclassified requests.
    Unclassified,
    /// The path is not in canonical form (`..`, `.`, `//`, `%2e`, `%2f`, `%5c`,
    /// `;`, `\`, control or non-ASCII bytes, fragment); never classified.
    NonCanonicalPath,
    /// The request's method is not a standard HTTP method token.
    BadMethod,
    /// The whole policy is in dry-run: the request passes, the would-be
    /// decision is reported beside it.
    PolicyDryRun,
    /// The connection carried no client certificate (no mTLS).
    NoPeerCertificate,
    /// The peer certificate has no URI SAN, or it is not a `spiffe://` URI.
    PeerNotSpiffe,
    /// The peer's URI SAN is a malformed SPIFFE ID.
    MalformedSpiffeId,
    /// The peer certificate has more than one URI SAN (SPIFFE allows exactly one).
    MultipleUriSans,
    /// The peer's trust domain is not one the policy trusts.
    UntrustedTrustDomain,
    /// The certificate's validity window is longer than the policy's bound.
    CertLifetimeExceedsBound,
    /// The certificate is expired or not yet valid.
    CertNotCurrentlyValid,
    /// The certificate's serial number is on the revocation list.
    CertRevoked,
    /// The forwarded client certificate header is malformed or its certificate
    /// cannot be parsed.
    MalformedForwardedCert,
    /// The forwarded certificate does not belong to this connection (hash or
    /// URI SAN differs from what Envoy reports for the TLS peer).
    ForwardedCertMismatch,
    /// The filter expected the forwarded client certificate and it was absent.
    MissingForwardedCert,
    /// A host call failed while reading identity; fail closed.
    IdentityUnavailable,
    /// The filter has no valid policy loaded; fail closed.
    NoPolicy,
    /// The caller chain header is malformed (grammar, numbers, identities).
    ChainMalformed,
    /// The caller chain header has a format version this proxy does not read.
    ChainUnknownVersion,
    /// The caller chain header is larger than allowed.
    ChainTooLarge,
    /// The caller chain has more hops than the policy allows.
    ChainTooDeep,
    /// The caller chain has expired.
    ChainExpired,
    /// The request carried the caller chain header more than once.
    ChainDuplicate,
    /// The caller chain's last hop is not the mTLS peer that sent it.
    ChainPeerMismatch,
    /// Outbound: the app sent a chain this proxy did not issue, or edited it.
    ChainForged,
    /// A rule needs a JWT-SVID and the request carried none.
    JwtMissing,
    /// The request carried the JWT-SVID header more than once.
    JwtDuplicateHeader,
    /// The JWT-SVID header value is larger than allowed.
    JwtTooLarge,
    /// The JWT-SVID is not a well-formed compact JWS: wrong scheme, segment count,
    /// base64url, JSON, duplicate members, claim types, `typ` or `crit` header.
    JwtMalformed,
    /// The JWT-SVID's `alg` is `none`, HMAC, unknown, outside the allowlist, or
    /// does not fit the type (or pinned `alg`) of the key its `kid` names.
    JwtAlgNotAllowed,
    /// No key of the subject's trust domain has the JWT-SVID's `kid`.
    JwtUnknownKid,
    /// The JWT-SVID's signature does not verify with its key.
    JwtBadSignature,
    /// The JWT-SVID lacks a required claim (`sub`, `aud` or `exp`).
    JwtMissingClaim,
    /// The JWT-SVID's `exp` is past (beyond the clock skew).
    JwtExpired,
    /// The JWT-SVID's `nbf` or `iat` is in the future (beyond the clock skew).
    JwtNotYetValid,
    /// The JWT-SVID's lifetime (`exp - iat`, or `exp - now`) exceeds the bound.
    JwtLifetimeExceedsBound,
    /// The JWT-SVID's `aud` names none of this workload's audiences.
    JwtWrongAudience,
    /// The JWT-SVID's `sub` is not a valid SPIFFE ID.
    JwtSubjectNotSpiffe,
    /// The JWT-SVID's subject is in a trust domain the policy does not trust.
    JwtUntrustedDomain,
    /// The JWT-SVID's `jti` is on the revocation list.
    JwtRevoked,
    /// The SPIFFE ID (token subject or peer) is on the revocation list.
    SpiffeIdRevoked,
    /// The key set for the token's trust domain or issuer is older than its
    /// maximum staleness (fetches kept failing); fail closed.
    KeysStale,
    /// The policy came from a bundle server that has not confirmed it for
    /// longer than the configured staleness bound (`bundle.max_staleness_secs`);
    /// fail closed until a fetch succeeds.
    BundleStale,
    /// There is no key set for the token's trust domain or issuer (not configured,
    /// or not fetched yet); fail closed.
    KeysUnavailable,
    /// A rule needs an end-user token and the request carried none.
    UserTokenMissing,
    /// The request carried the end-user token header more than once.
    UserTokenDuplicateHeader,
    /// The end-user token header value is larger than allowed.
    UserTokenTooLarge,
    /// The end-user token is not a well-formed compact JWS (scheme, segments,
    /// base64url, JSON, duplicate members, claim types, `crit` header).
    UserTokenMalformed,
    /// The end-user token's `alg` is `none`, HMAC, unknown, outside the
    /// allowlist, or does not fit its key.
    UserTokenAlgNotAllowed,
    /// No key of the token's issuer has the end-user token's `kid`.
    UserTokenUnknownKid,
    /// The end-user token's signature does not verify with its issuer's key.
    UserTokenBadSignature,
    /// The end-user token lacks a required claim (`iss`, `sub`, `aud` or `exp`).
    UserTokenMissingClaim,
    /// The end-user token's `exp` is past (beyond the clock skew).
    UserTokenExpired,
    /// The end-user token's `nbf` or `iat` is in the future (beyond the clock skew).
    UserTokenNotYetValid,
    /// The end-user token's lifetime exceeds the configured bound.
    UserTokenLifetimeExceedsBound,
    /// The end-user token's `aud` names none of its issuer's configured audiences.
    UserTokenWrongAudience,
    /// The end-user token's `iss` is not a configured issuer.
    UserTokenUntrustedIssuer,
    /// The end-user token's `jti` is on the revocation list.
    UserTokenRevoked,
    /// A header that a rule condition reads appears more than once: which
    /// value the app would act on is ambiguous, so no rule is evaluated.
    DuplicateHeader,
    /// The request carries a method-override header (`x-http-method-override`,
    /// `x-http-method`, `x-method-override`) naming another method than the
    /// one the policy judged; an app that honours it would act on that one.
    MethodOverride,
}

impl Reason {
    /// The stable code.
    pub fn code(self) -> &'static str {
        match self {
            Reason::AllowedByRule => "allowed_by_rule",
            Reason::DeniedByRule => "denied_by_rule",
            Reason::NoMatchingRule => "no_matching_rule",
            Reason::Unclassified => "unclassified",
            Reason::NonCanonicalPath => "non_canonical_path",
            Reason::BadMethod => "bad_method",
            Reason::PolicyDryRun => "policy_dry_run",
            Reason::NoPeerCertificate => "no_peer_certificate",
            Reason::PeerNotSpiffe => "peer_not_spiffe",
            Reason::MalformedSpiffeId => "malformed_spiffe_id",
            Reason::MultipleUriSans => "multiple_uri_sans",
            Reason::UntrustedTrustDomain => "untrusted_trust_domain",
            Reason::CertLifetimeExceedsBound => "cert_lifetime_exceeds_bound",
            Reason::CertNotCurrentlyValid => "cert_not_currently_valid",
            Reason::CertRevoked => "cert_revoked",
            Reason::MalformedForwardedCert => "malformed_forwarded_cert",
            Reason::ForwardedCertMismatch => "forwarded_cert_mismatch",
            Reason::MissingForwardedCert => "missing_forwarded_cert",
            Reason::IdentityUnavailable => "identity_unavailable",
            Reason::NoPolicy => "no_policy",
            Reason::ChainMalformed => "chain_malformed",
            Reason::ChainUnknownVersion => "chain_unknown_version",
            Reason::ChainTooLarge => "chain_too_large",
            Reason::ChainTooDeep => "chain_too_deep",
            Reason::ChainExpired => "chain_expired",
            Reason::ChainDuplicate => "chain_duplicate",
            Reason::ChainPeerMismatch => "chain_peer_mismatch",
            Reason::ChainForged => "chain_forged",
            Reason::JwtMissing => "jwt_missing",
            Reason::JwtDuplicateHeader => "jwt_duplicate_header",
            Reason::JwtTooLarge => "jwt_too_large",
            Reason::JwtMalformed => "jwt_malformed",
            Reason::JwtAlgNotAllowed => "jwt_alg_not_allowed",
            Reason::JwtUnknownKid => "jwt_unknown_kid",
            Reason::JwtBadSignature => "jwt_bad_signature",
            Reason::JwtMissingClaim => "jwt_missing_claim",
            Reason::JwtExpired => "jwt_expired",
            Reason::JwtNotYetValid => "jwt_not_yet_valid",
            Reason::JwtLifetimeExceedsBound => "jwt_lifetime_exceeds_bound",
            Reason::JwtWrongAudience => "jwt_wrong_audience",
            Reason::JwtSubjectNotSpiffe => "jwt_subject_not_spiffe",
            Reason::JwtUntrustedDomain => "jwt_untrusted_domain",
            Reason::JwtRevoked => "jwt_revoked",
            Reason::SpiffeIdRevoked => "spiffe_id_revoked",
            Reason::KeysStale => "keys_stale",
            Reason::BundleStale => "bundle_stale",
            Reason::KeysUnavailable => "keys_unavailable",
            Reason::UserTokenMissing => "user_token_missing",
            Reason::UserTokenDuplicateHeader => "user_token_duplicate_header",
            Reason::UserTokenTooLarge => "user_token_too_large",
            Reason::UserTokenMalformed => "user_token_malformed",
            Reason::UserTokenAlgNotAllowed => "user_token_alg_not_allowed",
            Reason::UserTokenUnknownKid => "user_token_unknown_kid",
            Reason::UserTokenBadSignature => "user_token_bad_signature",
            Reason::UserTokenMissingClaim => "user_token_missing_claim",
            Reason::UserTokenExpired => "user_token_expired",
            Reason::UserTokenNotYetValid => "user_token_not_yet_valid",
            Reason::UserTokenLifetimeExceedsBound => "user_token_lifetime_exceeds_bound",
            Reason::UserTokenWrongAudience => "user_token_wrong_audience",
            Reason::UserTokenUntrustedIssuer => "user_token_untrusted_issuer",
            Reason::UserTokenRevoked => "user_token_revoked",
            Reason::DuplicateHeader => "duplicate_header",
            Reason::MethodOverride => "method_override",
        }
    }

    /// Every reason, for stats registration and docs.
    pub const ALL: [Reason; 63] = [
        Reason::AllowedByRule,
        Reason::DeniedByRule,
        Reason::NoMatchingRule,
        Reason::Unclassified,
        Reason::NonCanonicalPath,
        Reason::BadMethod,
        Reason::PolicyDryRun,
        Reason::NoPeerCertificate,
        Reason::PeerNotSpiffe,
        Reason::MalformedSpiffeId,
        Reason::MultipleUriSans,
        Reason::UntrustedTrustDomain,
        Reason::CertLifetimeExceedsBound,
        Reason::CertNotCurrentlyValid,
        Reason::CertRevoked,
        Reason::MalformedForwardedCert,
        Reason::ForwardedCertMismatch,
        Reason::MissingForwardedCert,
        Reason::IdentityUnavailable,
        Reason::NoPolicy,
        Reason::ChainMalformed,
        Reason::ChainUnknownVersion,
        Reason::ChainTooLarge,
        Reason::ChainTooDeep,
        Reason::ChainExpired,
        Reason::ChainDuplicate,
        Reason::ChainPeerMismatch,
        Reason::ChainForged,
        Reason::JwtMissing,
        Reason::JwtDuplicateHeader,
        Reason::JwtTooLarge,
        Reason::JwtMalformed,
        Reason::JwtAlgNotAllowed,
        Reason::JwtUnknownKid,
        Reason::JwtBadSignature,
        Reason::JwtMissingClaim,
        Reason::JwtExpired,
        Reason::JwtNotYetValid,
        Reason::JwtLifetimeExceedsBound,
        Reason::JwtWrongAudience,
        Reason::JwtSubjectNotSpiffe,
        Reason::JwtUntrustedDomain,
        Reason::JwtRevoked,
        Reason::SpiffeIdRevoked,
        Reason::KeysStale,
        Reason::BundleStale,
        Reason::KeysUnavailable,
        Reason::UserTokenMissing,
        Reason::UserTokenDuplicateHeader,
        Reason::UserTokenTooLarge,
        Reason::UserTokenMalformed,
        Reason::UserTokenAlgNotAllowed,
        Reason::UserTokenUnknownKid,
        Reason::UserTokenBadSignature,
        Reason::UserTokenMissingClaim,
        Reason::UserTokenExpired,
        Reason::UserTokenNotYetValid,
        Reason::UserTokenLifetimeExceedsBound,
        Reason::UserTokenWrongAudience,
        Reason::UserTokenUntrustedIssuer,
        Reason::UserTokenRevoked,
        Reason::DuplicateHeader,
        Reason::MethodOverride,
    ];

    /// True when the reason means the caller's identity is missing or invalid
    /// (answered with 401 rather than 403).
    pub fn is_identity_failure(self) -> bool {
        matches!(
            self,
            Reason::NoPeerCertificate
                | Reason::PeerNotSpiffe
                | Reason::MalformedSpiffeId
                | Reason::MultipleUriSans
                | Reason::UntrustedTrustDomain
                | Reason::CertLifetimeExceedsBound
                | Reason::CertNotCurrentlyValid
                | Reason::CertRevoked
                | Reason::MalformedForwardedCert
                | Reason::ForwardedCertMismatch
                | Reason::MissingForwardedCert
                | Reason::IdentityUnavailable
                | Reason::JwtMissing
                | Reason::JwtDuplicateHeader
                | Reason::JwtTooLarge
                | Reason::JwtMalformed
                | Reason::JwtAlgNotAllowed
                | Reason::JwtUnknownKid
                | Reason::JwtBadSignature
                | Reason::JwtMissingClaim
                | Reason::JwtExpired
                | Reason::JwtNotYetValid
                | Reason::JwtLifetimeExceedsBound
                | Reason::JwtWrongAudience
                | Reason::JwtSubjectNotSpiffe
                | Reason::JwtUntrustedDomain
                | Reason::JwtRevoked
                | Reason::SpiffeIdRevoked
                | Reason::KeysStale
                | Reason::KeysUnavailable
                | Reason::UserTokenMissing
                | Reason::UserTokenDuplicateHeader
                | Reason::UserTokenTooLarge
                | Reason::UserTokenMalformed
                | Reason::UserTokenAlgNotAllowed
                | Reason::UserTokenUnknownKid
                | Reason::UserTokenBadSignature
                | Reason::UserTokenMissingClaim
                | Reason::UserTokenExpired
                | Reason::UserTokenNotYetValid
                | Reason::UserTokenLifetimeExceedsBound
                | Reason::UserTokenWrongAudience
                | Reason::UserTokenUntrustedIssuer
                | Reason::UserTokenRevoked
        )
    }
}

/// Index into the policy's rules.
pub type RuleIdx = u32;

/// What the dry-run rules (or a dry-run policy) would have decided, when that
/// differs from the enforced outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WouldBe {
    /// The effect had the dry-run rules been enforced.
    pub effect: Effect,
    /// Why.
    pub reason: Reason,
    /// The rule responsible, if a rule decided.
    pub rule: Option<RuleIdx>,
}

/// The engine's answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The enforced outcome.
    pub effect: Effect,
    /// Why.
    pub reason: Reason,
    /// The request's intent, when it was classified.
    pub intent: Option<IntentIdx>,
    /// The rule that decided, when a rule decided.
    pub rule: Option<RuleIdx>,
    /// Set when dry-run rules (or a dry-run policy) would decide differently.
    pub would_be: Option<WouldBe>,
}

impl Decision {
    /// The HTTP status the filter answers a deny with: 401 when the caller's
    /// identity is missing or invalid, 403 otherwise. 200 for an allow.
    pub fn http_status(&self) -> u16 {
        match self.effect {
            Effect::Allow => 200,
            Effect::Deny if self.reason.is_identity_failure() => 401,
            Effect::Deny => 403,
        }
    }

    /// True when a dry-run rule or policy would have denied an allowed request.
    pub fn would_deny(&self) -> bool {
        self.effect == Effect::Allow && matches!(self.would_be, Some(w) if w.effect == Effect::Deny)
    }

    /// A deny that involved no rule or intent (identity failure, no policy...).
    pub fn deny(reason: Reason) -> Self {
        Decision {
            effect: Effect::Deny,
            reason,
            intent: None,
            rule: None,
            would_be: None,
        }
    }
}
