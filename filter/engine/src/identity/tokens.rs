//! End-user tokens (OIDC / OAuth access tokens as JWTs): verified like
//! JWT-SVIDs, by the same skeleton (`identity/verifier.rs`; [`super::jwt`] lists
//! the order of checks), against the keys of the token's own issuer, which
//! must be a configured one. The result,
//! [`UserClaims`], is what rules can use: subject, scopes and the named
//! claims the policy asks for. A named claim is a [`ClaimPath`], so a rule can
//! read a claim nested in JSON objects (`realm_access.roles`); the value found
//! must be a string or a list of strings (anything else: the claim is absent
//! to rules, so a condition on it does not hold).
//!
//! A present but invalid token is a deny with a `user_token_*` reason (401),
//! never an anonymous request.

use serde_json::{Map, Value};

use super::claim_path::ClaimPath;
use super::jwks::{Alg, KeyStore};
use super::jwt::{string_list, take_audiences, take_str, Fail, Kind, Times, TokenRules};
use super::revocation::RevocationList;
use super::token_cache::TokenCache;
use super::verifier::{self, Anchor, Jose, TokenVerifier};
use crate::decision::Reason;

/// Default header carrying the end-user token.
pub const DEFAULT_USER_TOKEN_HEADER: &str = "authorization";
/// Default scheme before the end-user token.
pub const DEFAULT_USER_TOKEN_SCHEME: &str = "Bearer";

/// One trusted issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerSettings {
    /// `iss`, compared exactly (e.g. `https://idp.example`).
    pub issuer: String,
    /// Accepted audiences; a token must name at least one.
    pub audiences: Vec<String>,
}

/// The end-user token settings of the plugin configuration. Issuer keys live
/// in the [`KeyStore`] under [`super::jwks::KeyOwner::Issuer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserTokenSettings {
    /// Lowercase header name (default `authorization`).
    pub header: String,
    /// Trusted issuers.
    pub issuers: Vec<IssuerSettings>,
    /// Paths of the extra claims rules use (string or list-of-string claims,
    /// possibly nested in objects).
    pub claims: Vec<ClaimPath>,
    /// Scheme (default `Bearer`), size, algorithms, skew, lifetime bound.
    pub rules: TokenRules,
}

impl UserTokenSettings {
    fn issuer(&self, iss: &str) -> Option<&IssuerSettings> {
        self.issuers.iter().find(|i| i.issuer == iss)
    }
}

/// Everything one end-user token check needs besides the token.
#[derive(Debug, Clone, Copy)]
pub struct UserTokenContext<'a> {
    /// From the configuration.
    pub settings: &'a UserTokenSettings,
    /// Key sets in force (issuer sets are used).
    pub keys: &'a KeyStore,
    /// Revocation data in force (`jti`s).
    pub revocation: &'a RevocationList,
}

/// A claim value rules can compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimValue {
    /// A string claim.
    Str(String),
    /// An array of strings.
    List(Vec<String>),
}

impl ClaimValue {
    /// Equality for a string claim, membership for a list claim.
    pub fn contains(&self, value: &str) -> bool {
        match self {
            ClaimValue::Str(s) => s == value,
            ClaimValue::List(items) => items.iter().any(|i| i == value),
        }
    }
}

/// A verified end-user token: what rules may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserClaims {
    /// `iss`, one of the configured issuers.
    pub issuer: String,
    /// `sub`.
    pub subject: String,
    /// Scopes from `scope` (space-separated) and `scp` (string or array),
    /// in token order, without duplicates.
    pub scopes: Vec<String>,
    /// The configured named claims the token has, keyed by the canonical
    /// text of their [`ClaimPath`], as strings or string lists (a claim of
    /// another JSON type, or a list holding anything but strings, is left out).
    pub claims: Vec<(String, ClaimValue)>,
    /// `aud`, as given.
    pub audiences: Vec<String>,
    /// `exp`, Unix seconds.
    pub expires_at: u64,
    /// `iat`, if present.
    pub issued_at: Option<u64>,
    /// `nbf`, if present.
    pub not_before: Option<u64>,
    /// `jti`, if present.
    pub jti: Option<String>,
    /// The algorithm that verified it.
    pub alg: Alg,
    /// The key id that verified it.
    pub kid: Option<String>,
    key_fingerprint: [u8; 32],
}

impl UserClaims {
    /// A named claim by the canonical text of its path, if the token had it
    /// (and it was configured).
    pub fn claim(&self, name: &str) -> Option<&ClaimValue> {
        self.claims.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// Whether the token grants `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

/// Verifies an end-user token header value at `now_secs`, through the cache.
pub fn verify_user_token<'c>(
    ctx: &UserTokenContext<'_>,
    header_value: &str,
    now_secs: u64,
    cache: &'c mut TokenCache<UserClaims>,
) -> Result<&'c UserClaims, Reason> {
    verifier::verify(ctx, header_value, now_secs, cache)
}

impl<'k> TokenVerifier<'k> for UserTokenContext<'k> {
    type Token = UserClaims;
    const KIND: Kind = Kind::User;

    fn rules(&self) -> &'k TokenRules {
        &self.settings.rules
    }

    fn revocation(&self) -> &'k RevocationList {
        self.revocation
    }

    fn token(&self, jose: Jose, mut claims: Map<String, Value>) -> Result<UserClaims, Reason> {
        let fail = |f: Fail| Kind::User.reason(f);
        // Named claims first: a rule may also name a registered claim (`iss`...).
        let named = self
            .settings
            .claims
            .iter()
            .filter_map(|path| named_claim(&claims, path).map(|v| (path.as_str().to_owned(), v)))
            .collect();
        let times = Times::take(&mut claims).map_err(fail)?;
        let issuer = take_str(&mut claims, "iss")
            .map_err(fail)?
            .ok_or(Reason::UserTokenMissingClaim)?;
        let subject = take_str(&mut claims, "sub")
            .map_err(fail)?
            .ok_or(Reason::UserTokenMissingClaim)?;
        let audiences = take_audiences(&mut claims)
            .map_err(fail)?
            .ok_or(Reason::UserTokenMissingClaim)?;
        let jti = take_str(&mut claims, "jti").map_err(fail)?;
        let scopes = take_scopes(&mut claims).map_err(fail)?;
        Ok(UserClaims {
            issuer,
            subject,
            scopes,
            claims: named,
            audiences,
            expires_at: times.exp,
            issued_at: times.iat,
            not_before: times.nbf,
            jti,
            alg: jose.alg,
            kid: jose.kid,
            key_fingerprint: [0; 32],
        })
    }

    /// The issuer is a configured one and its key set is there and fresh.
    fn anchor(&self, user: &UserClaims, now_secs: u64) -> Result<Anchor<'k>, Reason> {
        let issuer = self
            .settings
            .issuer(&user.issuer)
            .ok_or(Reason::UserTokenUntrustedIssuer)?;
        Ok(Anchor {
            keys: self.keys.issuer(&user.issuer, now_secs)?,
            audiences: &issuer.audiences,
            max_lifetime_secs: self.settings.rules.max_lifetime_secs,
        })
    }
}

verifier::impl_verified!(UserClaims);

/// Scopes from `scope` (RFC 8693: space-separated string) and `scp` (string
/// or array, as some IdPs write it). Another JSON type is malformed.
fn take_scopes(claims: &mut Map<String, Value>) -> Result<Vec<String>, Fail> {
    let mut scopes: Vec<String> = Vec::new();
    let mut push = |s: &str| {
        for scope in s.split(' ').filter(|s| !s.is_empty()) {
            if !scopes.iter().any(|have| have == scope) {
                scopes.push(scope.to_owned());
            }
        }
    };
    for name in ["scope", "scp"] {
        match claims.remove(name) {
            None => {}
            Some(Value::String(s)) => push(&s),
            Some(Value::Array(items)) if name == "scp" => {
                for item in string_list(items).ok_or(Fail::Malformed)? {
                    push(&item);
                }
            }
            Some(_) => return Err(Fail::Malformed),
        }
    }
    Ok(scopes)
}

/// A named claim as a string or string list; other JSON types (numbers,
/// booleans, null, objects, lists holding anything but strings) are left out,
/// so a rule on them does not match, which denies.
fn named_claim(claims: &Map<String, Value>, path: &ClaimPath) -> Option<ClaimValue> {
    match path.lookup(claims)? {
        Value::String(s) => Some(ClaimValue::Str(s.clone())),
        Value::Array(items) => string_list(items.clone()).map(ClaimValue::List),
        _ => None,
    }
}
