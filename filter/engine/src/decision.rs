//! What `evaluate` returns: a decision is a value, never an error.
//!
//! Every [`Reason`] is declared once, in the `reasons!` table below: its doc,
//! its stable code, and the status a deny with it is answered with. The enum,
//! [`Reason::ALL`], [`Reason::code`], [`Reason::from_code`] and
//! [`Reason::deny_status`] are generated from that one row, so a new reason
//! cannot be left out of the stats, of replay, or of the 401/403 choice.

use crate::model::{Effect, IntentIdx};

/// The status a deny is answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenyStatus {
    /// 401: the caller's identity is missing or invalid.
    Unauthorized,
    /// 403: the caller is known (or identity does not matter) and the request
    /// is refused.
    Forbidden,
}

impl DenyStatus {
    /// The HTTP status code.
    pub const fn code(self) -> u16 {
        match self {
            DenyStatus::Unauthorized => 401,
            DenyStatus::Forbidden => 403,
        }
    }
}

/// Declares [`Reason`] from one table: `Variant = "code", DenyStatus;` per row,
/// with the row's doc comment becoming the variant's.
macro_rules! reasons {
    ($( $(#[doc = $doc:literal])+ $variant:ident = $code:literal, $status:ident; )+) => {
        /// Why a decision came out as it did. `Copy`, with a stable snake_case
        /// code that appears in responses, audit lines and stats (bounded
        /// cardinality).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Reason {
            $( $(#[doc = $doc])+ $variant, )+
        }

        impl Reason {
            /// How many reasons there are.
            pub const COUNT: usize = [$($code),+].len();

            /// Every reason, in declaration order, for stats registration and docs.
            pub const ALL: [Reason; Reason::COUNT] = [$(Reason::$variant),+];

            /// The stable code (public contract: responses, audit lines,
            /// stats, replay).
            pub const fn code(self) -> &'static str {
                match self {
                    $( Reason::$variant => $code, )+
                }
            }

            /// The reason with this code, if there is one.
            pub fn from_code(code: &str) -> Option<Reason> {
                match code {
                    $( $code => Some(Reason::$variant), )+
                    _ => None,
                }
            }

            /// The status a deny with this reason is answered with. Reasons
            /// that only accompany an allow (`allowed_by_rule`,
            /// `policy_dry_run`) are listed as 403: a deny carrying one of
            /// them is still refused.
            pub const fn deny_status(self) -> DenyStatus {
                match self {
                    $( Reason::$variant => DenyStatus::$status, )+
                }
            }
        }
    };
}

reasons! {
    /// An enforced allow rule matched and no deny rule did.
    AllowedByRule = "allowed_by_rule", Forbidden;
    /// An enforced deny rule matched.
    DeniedByRule = "denied_by_rule", Forbidden;
    /// The request has an intent, but no allow rule grants it to this peer.
    NoMatchingRule = "no_matching_rule", Forbidden;
    /// The request matched no intent and no rule allows unclassified requests.
    Unclassified = "unclassified", Forbidden;
    /// The path is not in canonical form (`..`, `.`, `//`, `%2e`, `%2f`, `%5c`,
    /// `;`, `\`, control or non-ASCII bytes, fragment); never classified.
    NonCanonicalPath = "non_canonical_path", Forbidden;
    /// The `:authority` is not a canonical `host[:port]` (a DNS name, a
    /// dotted-quad IPv4 address or a bracketed IPv6 literal, with at most one
    /// optional trailing dot and one numeric port): a joined list, a second
    /// port, userinfo, an empty label, whitespace... (`authority` module);
    /// never classified, since another reader could take it for a protected
    /// host.
    NonCanonicalHost = "non_canonical_host", Forbidden;
    /// The request's method is not a standard HTTP method token.
    BadMethod = "bad_method", Forbidden;
    /// The whole policy is in dry-run: the request passes, the would-be
    /// decision is reported beside it.
    PolicyDryRun = "policy_dry_run", Forbidden;
    /// The connection carried no client certificate (no mTLS).
    NoPeerCertificate = "no_peer_certificate", Unauthorized;
    /// The peer certificate has no URI SAN, or it is not a `spiffe://` URI.
    PeerNotSpiffe = "peer_not_spiffe", Unauthorized;
    /// The peer's URI SAN is a malformed SPIFFE ID.
    MalformedSpiffeId = "malformed_spiffe_id", Unauthorized;
    /// The peer certificate has more than one URI SAN (SPIFFE allows exactly one).
    MultipleUriSans = "multiple_uri_sans", Unauthorized;
    /// The peer's trust domain is not one the policy trusts.
    UntrustedTrustDomain = "untrusted_trust_domain", Unauthorized;
    /// The certificate's validity window is longer than the policy's bound.
    CertLifetimeExceedsBound = "cert_lifetime_exceeds_bound", Unauthorized;
    /// The certificate is expired or not yet valid.
    CertNotCurrentlyValid = "cert_not_currently_valid", Unauthorized;
    /// The certificate's serial number is on the revocation list.
    CertRevoked = "cert_revoked", Unauthorized;
    /// The forwarded client certificate header is malformed or its certificate
    /// cannot be parsed.
    MalformedForwardedCert = "malformed_forwarded_cert", Unauthorized;
    /// The forwarded certificate does not belong to this connection (hash or
    /// URI SAN differs from what Envoy reports for the TLS peer).
    ForwardedCertMismatch = "forwarded_cert_mismatch", Unauthorized;
    /// The filter expected the forwarded client certificate and it was absent.
    MissingForwardedCert = "missing_forwarded_cert", Unauthorized;
    /// A host call failed while reading identity; fail closed.
    IdentityUnavailable = "identity_unavailable", Unauthorized;
    /// The filter has no valid policy loaded; fail closed.
    NoPolicy = "no_policy", Forbidden;
    /// The caller chain header is malformed (grammar, numbers, identities).
    ChainMalformed = "chain_malformed", Forbidden;
    /// The caller chain header has a format version this proxy does not read.
    ChainUnknownVersion = "chain_unknown_version", Forbidden;
    /// The caller chain header is larger than allowed.
    ChainTooLarge = "chain_too_large", Forbidden;
    /// The caller chain has more hops than the policy allows.
    ChainTooDeep = "chain_too_deep", Forbidden;
    /// The caller chain has expired.
    ChainExpired = "chain_expired", Forbidden;
    /// The caller chain claims a longer life (`exp - iat`) than this
    /// policy's chain `lifetime`: a forwarder tried to prolong it, or its
    /// policy allows longer chains than this one.
    ChainLifetimeExceedsBound = "chain_lifetime_exceeds_bound", Forbidden;
    /// The request carried the caller chain header more than once.
    ChainDuplicate = "chain_duplicate", Forbidden;
    /// The caller chain's last hop is not the mTLS peer that sent it.
    ChainPeerMismatch = "chain_peer_mismatch", Forbidden;
    /// Outbound: the app sent a chain this proxy did not issue, or edited it.
    ChainForged = "chain_forged", Forbidden;
    /// A rule needs a JWT-SVID and the request carried none.
    JwtMissing = "jwt_missing", Unauthorized;
    /// The request carried the JWT-SVID header more than once.
    JwtDuplicateHeader = "jwt_duplicate_header", Unauthorized;
    /// The JWT-SVID header value is larger than allowed.
    JwtTooLarge = "jwt_too_large", Unauthorized;
    /// The JWT-SVID is not a well-formed compact JWS: wrong scheme, segment count,
    /// base64url, JSON, duplicate members, claim types, `typ` or `crit` header.
    JwtMalformed = "jwt_malformed", Unauthorized;
    /// The JWT-SVID's `alg` is `none`, HMAC, unknown, outside the allowlist, or
    /// does not fit the type (or pinned `alg`) of the key its `kid` names.
    JwtAlgNotAllowed = "jwt_alg_not_allowed", Unauthorized;
    /// No key of the subject's trust domain has the JWT-SVID's `kid`.
    JwtUnknownKid = "jwt_unknown_kid", Unauthorized;
    /// The JWT-SVID's signature does not verify with its key.
    JwtBadSignature = "jwt_bad_signature", Unauthorized;
    /// The JWT-SVID lacks a required claim (`sub`, `aud` or `exp`).
    JwtMissingClaim = "jwt_missing_claim", Unauthorized;
    /// The JWT-SVID's `exp` is past (beyond the clock skew).
    JwtExpired = "jwt_expired", Unauthorized;
    /// The JWT-SVID's `nbf` or `iat` is in the future (beyond the clock skew).
    JwtNotYetValid = "jwt_not_yet_valid", Unauthorized;
    /// The JWT-SVID's lifetime (`exp - iat`, or `exp - now`) exceeds the bound.
    JwtLifetimeExceedsBound = "jwt_lifetime_exceeds_bound", Unauthorized;
    /// The JWT-SVID's `aud` names none of this workload's audiences.
    JwtWrongAudience = "jwt_wrong_audience", Unauthorized;
    /// The JWT-SVID's `sub` is not a valid SPIFFE ID.
    JwtSubjectNotSpiffe = "jwt_subject_not_spiffe", Unauthorized;
    /// The JWT-SVID's subject is in a trust domain the policy does not trust.
    JwtUntrustedDomain = "jwt_untrusted_domain", Unauthorized;
    /// The JWT-SVID's `jti` is on the revocation list.
    JwtRevoked = "jwt_revoked", Unauthorized;
    /// The SPIFFE ID (token subject or peer) is on the revocation list.
    SpiffeIdRevoked = "spiffe_id_revoked", Unauthorized;
    /// The key set for the token's trust domain or issuer is older than its
    /// maximum staleness (fetches kept failing); fail closed.
    KeysStale = "keys_stale", Unauthorized;
    /// The policy came from a bundle server that has not confirmed it for
    /// longer than the configured staleness bound (`bundle.max_staleness_secs`);
    /// fail closed until a fetch succeeds.
    BundleStale = "bundle_stale", Forbidden;
    /// There is no key set for the token's trust domain or issuer (not configured,
    /// or not fetched yet); fail closed.
    KeysUnavailable = "keys_unavailable", Unauthorized;
    /// A rule needs an end-user token and the request carried none.
    UserTokenMissing = "user_token_missing", Unauthorized;
    /// The request carried the end-user token header more than once.
    UserTokenDuplicateHeader = "user_token_duplicate_header", Unauthorized;
    /// The end-user token header value is larger than allowed.
    UserTokenTooLarge = "user_token_too_large", Unauthorized;
    /// The end-user token is not a well-formed compact JWS (scheme, segments,
    /// base64url, JSON, duplicate members, claim types, `crit` header).
    UserTokenMalformed = "user_token_malformed", Unauthorized;
    /// The end-user token's `alg` is `none`, HMAC, unknown, outside the
    /// allowlist, or does not fit its key.
    UserTokenAlgNotAllowed = "user_token_alg_not_allowed", Unauthorized;
    /// No key of the token's issuer has the end-user token's `kid`.
    UserTokenUnknownKid = "user_token_unknown_kid", Unauthorized;
    /// The end-user token's signature does not verify with its issuer's key.
    UserTokenBadSignature = "user_token_bad_signature", Unauthorized;
    /// The end-user token lacks a required claim (`iss`, `sub`, `aud` or `exp`).
    UserTokenMissingClaim = "user_token_missing_claim", Unauthorized;
    /// The end-user token's `exp` is past (beyond the clock skew).
    UserTokenExpired = "user_token_expired", Unauthorized;
    /// The end-user token's `nbf` or `iat` is in the future (beyond the clock skew).
    UserTokenNotYetValid = "user_token_not_yet_valid", Unauthorized;
    /// The end-user token's lifetime exceeds the configured bound.
    UserTokenLifetimeExceedsBound = "user_token_lifetime_exceeds_bound", Unauthorized;
    /// The end-user token's `aud` names none of its issuer's configured audiences.
    UserTokenWrongAudience = "user_token_wrong_audience", Unauthorized;
    /// The end-user token's `iss` is not a configured issuer.
    UserTokenUntrustedIssuer = "user_token_untrusted_issuer", Unauthorized;
    /// The end-user token's `jti` is on the revocation list.
    UserTokenRevoked = "user_token_revoked", Unauthorized;
    /// A header that a rule condition reads appears more than once: which
    /// value the app would act on is ambiguous, so no rule is evaluated.
    DuplicateHeader = "duplicate_header", Forbidden;
    /// The request carries a method-override header (`x-http-method-override`,
    /// `x-http-method`, `x-method-override`) naming another method than the
    /// one the policy judged; an app that honours it would act on that one.
    MethodOverride = "method_override", Forbidden;
}

impl Reason {
    /// True when the reason means the caller's identity is missing or invalid
    /// (answered with 401 rather than 403).
    pub const fn is_identity_failure(self) -> bool {
        matches!(self.deny_status(), DenyStatus::Unauthorized)
    }
}

crate::model::index_type!(
    /// Index into the policy's rules ([`crate::model::CompiledPolicy::rules`]).
    RuleIdx
);

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
            Effect::Deny => self.reason.deny_status().code(),
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

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// Published codes and their deny status (stats, audit lines and replay
    /// depend on the strings): a rename or a status flip fails here.
    const PUBLISHED: &[(&str, u16)] = &[
        ("allowed_by_rule", 403),
        ("denied_by_rule", 403),
        ("no_matching_rule", 403),
        ("unclassified", 403),
        ("non_canonical_path", 403),
        ("bad_method", 403),
        ("policy_dry_run", 403),
        ("no_peer_certificate", 401),
        ("peer_not_spiffe", 401),
        ("malformed_spiffe_id", 401),
        ("multiple_uri_sans", 401),
        ("untrusted_trust_domain", 401),
        ("cert_lifetime_exceeds_bound", 401),
        ("cert_not_currently_valid", 401),
        ("cert_revoked", 401),
        ("malformed_forwarded_cert", 401),
        ("forwarded_cert_mismatch", 401),
        ("missing_forwarded_cert", 401),
        ("identity_unavailable", 401),
        ("no_policy", 403),
        ("chain_malformed", 403),
        ("chain_unknown_version", 403),
        ("chain_too_large", 403),
        ("chain_too_deep", 403),
        ("chain_expired", 403),
        ("chain_duplicate", 403),
        ("chain_peer_mismatch", 403),
        ("chain_forged", 403),
        ("jwt_missing", 401),
        ("jwt_duplicate_header", 401),
        ("jwt_too_large", 401),
        ("jwt_malformed", 401),
        ("jwt_alg_not_allowed", 401),
        ("jwt_unknown_kid", 401),
        ("jwt_bad_signature", 401),
        ("jwt_missing_claim", 401),
        ("jwt_expired", 401),
        ("jwt_not_yet_valid", 401),
        ("jwt_lifetime_exceeds_bound", 401),
        ("jwt_wrong_audience", 401),
        ("jwt_subject_not_spiffe", 401),
        ("jwt_untrusted_domain", 401),
        ("jwt_revoked", 401),
        ("spiffe_id_revoked", 401),
        ("keys_stale", 401),
        ("keys_unavailable", 401),
        ("user_token_missing", 401),
        ("user_token_duplicate_header", 401),
        ("user_token_too_large", 401),
        ("user_token_malformed", 401),
        ("user_token_alg_not_allowed", 401),
        ("user_token_unknown_kid", 401),
        ("user_token_bad_signature", 401),
        ("user_token_missing_claim", 401),
        ("user_token_expired", 401),
        ("user_token_not_yet_valid", 401),
        ("user_token_lifetime_exceeds_bound", 401),
        ("user_token_wrong_audience", 401),
        ("user_token_untrusted_issuer", 401),
        ("user_token_revoked", 401),
        ("duplicate_header", 403),
        ("method_override", 403),
    ];

    #[test]
    fn codes_are_unique_snake_case_and_round_trip() {
        let mut seen = HashSet::new();
        for reason in Reason::ALL {
            let code = reason.code();
            assert!(seen.insert(code), "duplicate code `{code}`");
            assert!(!code.is_empty() && !code.starts_with('_') && !code.ends_with('_'));
            assert!(!code.contains("__"), "`{code}`");
            assert!(
                code.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "`{code}` is not snake_case"
            );
            assert_eq!(Reason::from_code(code), Some(reason));
        }
        assert_eq!(seen.len(), Reason::COUNT);
        assert_eq!(Reason::from_code(""), None);
        assert_eq!(Reason::from_code("Allowed_By_Rule"), None);
        assert_eq!(Reason::from_code("allowed_by_rule "), None);
    }

    #[test]
    fn published_codes_keep_their_string_and_status() {
        for (code, status) in PUBLISHED {
            let reason = Reason::from_code(code).unwrap_or_else(|| panic!("`{code}` vanished"));
            assert_eq!(reason.deny_status().code(), *status, "`{code}`");
            assert_eq!(reason.is_identity_failure(), *status == 401, "`{code}`");
            assert_eq!(Decision::deny(reason).http_status(), *status, "`{code}`");
        }
    }

    #[test]
    fn allow_is_200_whatever_the_reason() {
        for reason in Reason::ALL {
            let d = Decision {
                effect: Effect::Allow,
                reason,
                intent: None,
                rule: None,
                would_be: None,
            };
            assert_eq!(d.http_status(), 200);
        }
    }
}
