//! The filter's plugin configuration: the JSON that Envoy's `configuration`
//! (a `google.protobuf.StringValue`) or Istio's `WasmPlugin.pluginConfig`
//! delivers. It carries the compiled policy (base64) plus runtime data that
//! may change without recompiling the policy (revocation lists, trust
//! bundles, token settings).
//!
//! ```json
//! {
//!   "policy": "TVdQQwEA...",
//!   "revoked_serials": ["0a1b2c"],
//!   "peer_certificate": "forwarded",
//!   "audit_log": "all",
//!   "method_override": "deny",
//!   "jwt_svid": {
//!     "header": "x-jwt-svid",
//!     "audiences": ["spiffe://shop.example/ns/shop/sa/orders"],
//!     "max_lifetime_secs": 300,
//!     "clock_skew_secs": 30
//!   },
//!   "user_tokens": {
//!     "header": "authorization",
//!     "scheme": "Bearer",
//!     "claims": ["groups", "realm_access.roles"],
//!     "issuers": [{"issuer": "https://idp.example", "audiences": ["shop"],
//!                  "jwks": {"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1", "x": "...", "y": "..."}]}}]
//!   },
//!   "trust_bundles": {"shop.example": {"spiffe_sequence": 7, "keys": [...]}},
//!   "key_fetch": [
//!     {"cluster": "bundle_server", "path": "/bundle", "trust_domain": "shop.example",
//!      "refresh_secs": 300, "max_staleness_secs": 3600}
//!   ],
//!   "revoked": {"spiffe_ids": [], "serials": [], "jtis": []}
//! }
//! ```
//!
//! `"peer_certificate": "filter_state"` (with `"peer_principal_key"`,
//! default `io.istio.peer_principal`) reads the peer from a filter-state
//! object the host set, as in an Istio waypoint; see
//! [`crate::identity::PeerCertificateSource::FilterState`].
//!
//! `signature` (written by `meshward compile --sign KEY`) and
//! `require_signature: {"keys": ["<base64 Ed25519 public key>", …]}` make
//! the filter load only a policy signed by one of the keys; keys can also be
//! pinned outside this JSON (the VM configuration, or the VM environment
//! variable `MESHWARD_REQUIRE_SIGNATURE_KEYS`); see [`crate::signature`].
//!
//! `claims` lists claim paths (see [`crate::identity::ClaimPath`]):
//! `realm_access.roles` reads `roles` inside the `realm_access` object, and a
//! key containing `.` is bracketed (`[https://shop.example/roles]`).
//!
//! Every token member is optional: without `jwt_svid` / `user_tokens` those
//! identity sources are off. `scheme` defaults to none for JWT-SVIDs and to
//! `Bearer` for user tokens (`""` means a bare token). `algorithms` (default
//! all of `ES256`, `RS256`, `PS256`, `EdDSA`) never admits `none` or `HS*`.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};

use base64::Engine as _;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::codec;
use crate::identity::claim_path::{ClaimPath, ClaimPathError};
use crate::identity::jwks::{Alg, AlgSet, JwksError, KeyOwner, KeySet, KeyStore};
use crate::identity::jwt::{
    JwtSvidSettings, TokenRules, DEFAULT_CLOCK_SKEW_SECS, DEFAULT_JWT_SVID_HEADER,
    DEFAULT_MAX_TOKEN_BYTES,
};
use crate::identity::revocation::{RevocationError, RevocationList, RevokedConfig};
use crate::identity::tokens::{
    IssuerSettings, UserTokenSettings, DEFAULT_USER_TOKEN_HEADER, DEFAULT_USER_TOKEN_SCHEME,
};
use crate::identity::PeerCertificateSource;
use crate::pipeline::publish::{FilterStateSet, FILTER_STATE};
use crate::policy::{Policy, PolicyError};
use crate::signature::{self, KeyId, PolicySignature, SignatureError, TrustedKeys};
use crate::spiffe;

/// Largest configuration we read (a 10,000-rule policy in base64 is ~2 MiB).
pub const MAX_CONFIG_LEN: usize = 32 * 1024 * 1024;

/// Which decisions produce an audit line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditLog {
    /// One line per decision.
    #[default]
    All,
    /// Only denies and would-denies.
    Denies,
    /// None.
    None,
}

/// What the inbound filter does with a method-override header that names
/// another method than the request's (`x-http-method-override`,
/// `x-method-override`, `x-http-method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MethodOverride {
    /// Deny the request (`method_override`, 403).
    #[default]
    Deny,
    /// Remove every method-override header before the app sees the request;
    /// the decision stands on the real method.
    Strip,
}

/// The plugin configuration as written in JSON.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig<'a> {
    /// Borrowed from the configuration bytes (base64 needs no JSON escape),
    /// so the largest member is never copied.
    #[serde(borrow)]
    policy: Cow<'a, str>,
    #[serde(default)]
    revoked_serials: Vec<String>,
    #[serde(default)]
    peer_certificate: PeerCertificateSource,
    #[serde(default)]
    peer_principal_key: Option<String>,
    #[serde(default)]
    audit_log: AuditLog,
    /// `"all"`, `"none"` or a list of names: read by [`filter_state`].
    #[serde(default)]
    filter_state: Option<serde_json::Value>,
    #[serde(default)]
    method_override: MethodOverride,
    #[serde(default)]
    jwt_svid: Option<RawJwtSvid>,
    #[serde(default)]
    user_tokens: Option<RawUserTokens>,
    #[serde(default)]
    trust_bundles: BTreeMap<String, Box<RawValue>>,
    #[serde(default)]
    key_fetch: Vec<RawKeyFetch>,
    #[serde(default)]
    revoked: RevokedConfig,
    /// Parsed by [`PolicySignature::from_json`] (errors never echo values).
    #[serde(default)]
    signature: Option<Box<RawValue>>,
    /// Parsed by [`TrustedKeys::from_requirement_json`].
    #[serde(default)]
    require_signature: Option<Box<RawValue>>,
    #[serde(default)]
    direction: Direction,
    #[serde(default)]
    chain: ChainConfig,
    #[serde(default)]
    workload_id: Option<String>,
}

/// Which side of the workload this filter instance guards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Server side: verify callers, evaluate the policy, hand the app a
    /// sealed caller chain.
    #[default]
    Inbound,
    /// Client side (the app's outbound calls): forward only chains this
    /// proxy's inbound side sealed.
    Outbound,
}

/// What the outbound side does with a chain the app forged or kept too long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnInvalidChain {
    /// Refuse the outbound call (403 with the chain reason).
    #[default]
    Deny,
    /// Remove the chain: the call starts a fresh chain at this workload.
    Drop,
}

/// How the inbound side hands the chain on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HandOff {
    /// To an app, sealed: the app's calls go through an outbound filter that
    /// checks the seal (sidecars).
    #[default]
    Sealed,
    /// Straight to the next meshward hop, in wire form: for a proxy whose
    /// router forwards into the mesh with no app in between (an edge
    /// gateway).
    Wire,
}

/// `chain` as written.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainConfig {
    /// Outbound action on an invalid chain.
    #[serde(default)]
    pub on_invalid: OnInvalidChain,
    /// Inbound: sealed for an app, or wire form for the next hop.
    #[serde(default)]
    pub hand_off: HandOff,
}

/// `jwt_svid` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJwtSvid {
    #[serde(default)]
    header: Option<String>,
    #[serde(default)]
    scheme: Option<String>,
    audiences: Vec<String>,
    #[serde(default)]
    max_lifetime_secs: Option<u64>,
    #[serde(default)]
    clock_skew_secs: Option<u64>,
    #[serde(default)]
    algorithms: Option<Vec<String>>,
    #[serde(default)]
    max_token_bytes: Option<usize>,
}

/// `user_tokens` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUserTokens {
    #[serde(default)]
    header: Option<String>,
    #[serde(default)]
    scheme: Option<String>,
    issuers: Vec<RawIssuer>,
    #[serde(default)]
    claims: Vec<String>,
    #[serde(default)]
    max_lifetime_secs: Option<u64>,
    #[serde(default)]
    clock_skew_secs: Option<u64>,
    #[serde(default)]
    algorithms: Option<Vec<String>>,
    #[serde(default)]
    max_token_bytes: Option<usize>,
}

/// One issuer as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIssuer {
    issuer: String,
    audiences: Vec<String>,
    #[serde(default)]
    jwks: Option<Box<RawValue>>,
}

/// One `key_fetch` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeyFetch {
    cluster: String,
    path: String,
    #[serde(default)]
    authority: Option<String>,
    #[serde(default)]
    trust_domain: Option<String>,
    #[serde(default)]
    issuer: Option<String>,
    #[serde(default)]
    revocation: bool,
    #[serde(default)]
    refresh_secs: Option<u64>,
    #[serde(default)]
    max_staleness_secs: Option<u64>,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

/// Default interval between key fetches.
pub const DEFAULT_REFRESH_SECS: u64 = 300;
/// Default timeout of one fetch.
pub(crate) const DEFAULT_FETCH_TIMEOUT_MS: u64 = 5000;

/// What a fetch refreshes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchTarget {
    /// A trust domain's bundle or an issuer's JWKS: apply the body with
    /// [`KeyStore::apply_fetched`].
    Keys(KeyOwner),
    /// The revocation lists: parse the body with
    /// [`RevocationList::from_json`] and swap the list in force.
    Revocation,
}

/// A document the filter fetches over an Envoy cluster (`dispatch_http_call`
/// with `GET`, `path` and `authority`) every `refresh_secs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFetch {
    /// The Envoy cluster to call.
    pub cluster: String,
    /// `:path`, starting with `/`.
    pub path: String,
    /// `:authority` (default: the cluster name).
    pub authority: String,
    /// What the body replaces.
    pub target: FetchTarget,
    /// Seconds between fetches (a SPIFFE bundle's `spiffe_refresh_hint`, when
    /// shorter, may be honoured by the filter).
    pub refresh_secs: u64,
    /// For key sets: how long the last good set may serve without a
    /// successful fetch before verification fails closed (`keys_stale`).
    pub max_staleness_secs: Option<u64>,
    /// Timeout of one call, milliseconds.
    pub timeout_ms: u64,
}

/// Why a plugin configuration was rejected. The filter logs this and fails closed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `workload_id` is not a SPIFFE ID.
    #[error("plugin configuration `workload_id` is not a SPIFFE ID: {0}")]
    BadWorkloadId(String),
    /// No configuration was delivered.
    #[error("no plugin configuration: set the filter's `configuration` to the JSON written by `meshward compile`")]
    Missing,
    /// Larger than [`MAX_CONFIG_LEN`].
    #[error("plugin configuration is {0} bytes, more than the 32 MiB limit")]
    TooLarge(usize),
    /// Not the JSON we expect.
    #[error("plugin configuration is not valid meshward JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// `policy` is not base64.
    #[error("plugin configuration `policy` is not valid base64: {0}")]
    Base64(#[from] base64::DecodeError),
    /// The compiled policy's content is inconsistent.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The policy's `signature` is missing where required, by an unlisted
    /// key, does not verify, or is malformed; or `require_signature` is
    /// invalid (see [`crate::signature`]). Messages show key ids, never keys.
    #[error("plugin configuration: {0}")]
    Signature(#[from] SignatureError),
    /// `peer_certificate: filter_state` with a policy or configuration that
    /// needs the certificate itself.
    #[error("`peer_certificate: filter_state` has no certificate to check, but {0}: use a certificate source, or drop it")]
    NeedsCertificate(&'static str),
    /// `filter_state` is not `all`, `none` or a list of published names.
    #[error("`filter_state` {0}")]
    BadFilterState(String),
    /// `peer_principal_key` without `filter_state`, or not a plain key.
    #[error("`peer_principal_key` {0}")]
    BadPrincipalKey(&'static str),
    /// A revoked serial is not hex.
    #[error("revoked serial `{0}` is not a hexadecimal certificate serial number")]
    BadSerial(String),
    /// Another entry of `revoked` is invalid.
    #[error("plugin configuration `revoked`: {0}")]
    Revocation(RevocationError),
    /// A header name is empty, not lowercase, or not an HTTP token.
    #[error("`{field}`: `{name}` is not a valid lowercase HTTP header name")]
    BadHeaderName {
        /// Where.
        field: &'static str,
        /// The name given.
        name: String,
    },
    /// A scheme is not an HTTP token.
    #[error("`{field}`: scheme `{scheme}` is not a valid HTTP authentication scheme")]
    BadScheme {
        /// Where.
        field: &'static str,
        /// The scheme given.
        scheme: String,
    },
    /// An audience list is empty (or holds an empty string): every token would
    /// fail, or any audience would do.
    #[error("`{0}`: `audiences` must list at least one non-empty audience")]
    NoAudiences(String),
    /// An algorithm name is not one meshward verifies (`none` and HMAC never are).
    #[error("`{field}`: algorithm `{alg}` is not supported (use ES256, RS256, PS256 or EdDSA; `none` and HS* are never accepted)")]
    BadAlgorithm {
        /// Where.
        field: &'static str,
        /// The name given.
        alg: String,
    },
    /// An empty `algorithms` list.
    #[error("`{0}`: `algorithms` may not be empty")]
    NoAlgorithms(&'static str),
    /// A numeric setting out of range.
    #[error("`{field}` must be {expected}")]
    BadNumber {
        /// Where.
        field: &'static str,
        /// What is accepted.
        expected: &'static str,
    },
    /// A trust bundle or issuer JWKS does not parse.
    #[error("key set of {owner}: {error}")]
    Jwks {
        /// Whose keys.
        owner: KeyOwner,
        /// Why.
        error: JwksError,
    },
    /// A `trust_bundles` key (or a `key_fetch` `trust_domain`) is not a trust domain name.
    #[error("`{0}` is not a valid trust domain name")]
    BadTrustDomain(String),
    /// An issuer with an empty `issuer`.
    #[error("`user_tokens.issuers`: every issuer needs a non-empty `issuer`")]
    EmptyIssuer,
    /// Two issuers with the same `issuer`.
    #[error("issuer `{0}` is configured twice")]
    DuplicateIssuer(String),
    /// An issuer has no inline `jwks` and no `key_fetch` entry.
    #[error("issuer `{0}` has no keys: give `jwks` inline or a `key_fetch` entry")]
    IssuerWithoutKeys(String),
    /// A `user_tokens.claims` entry is not a valid claim path.
    #[error("`user_tokens.claims`: `{path}` is not a valid claim path: {error}")]
    BadClaimPath {
        /// The path given.
        path: String,
        /// Why.
        error: ClaimPathError,
    },
    /// A `key_fetch` entry is inconsistent.
    #[error("`key_fetch[{index}]`: {problem}")]
    BadKeyFetch {
        /// Position in `key_fetch`.
        index: usize,
        /// What is wrong.
        problem: &'static str,
    },
}

/// A loaded, validated configuration.
#[derive(Debug)]
pub struct FilterConfig {
    /// Inbound (server side) or outbound (client side).
    pub direction: Direction,
    /// Outbound chain handling.
    pub chain: ChainConfig,
    /// This workload's SPIFFE ID, when set explicitly; otherwise the inbound
    /// side reads it from the listener's own certificate.
    pub workload_id: Option<crate::spiffe::SpiffeId>,
    /// The decoded, indexed policy.
    pub policy: Policy,
    /// Revoked certificate serials, normalized (lowercase hex, no separators,
    /// no leading zero bytes).
    pub revoked_serials: HashSet<String>,
    /// Where the peer certificate comes from.
    pub peer_certificate: PeerCertificateSource,
    /// With [`crate::identity::PeerCertificateSource::FilterState`]: the filter-state key
    /// holding the peer's principal.
    pub peer_principal_key: String,
    /// Which decisions to log.
    pub audit_log: AuditLog,
    /// Which decision facts to publish as filter state.
    pub filter_state: FilterStateSet,
    /// Inbound: how method-override headers are handled.
    pub method_override: MethodOverride,
    /// JWT-SVID settings; `None`: JWT-SVIDs are not read.
    pub jwt_svid: Option<JwtSvidSettings>,
    /// End-user token settings; `None`: user tokens are not read.
    pub user_tokens: Option<UserTokenSettings>,
    /// Inline key sets (trust bundles and issuer JWKS), parsed once. Build the
    /// runtime store with [`FilterConfig::key_store`].
    pub key_sets: Vec<(KeyOwner, KeySet)>,
    /// Documents to fetch on a timer.
    pub key_fetch: Vec<KeyFetch>,
    /// Revoked SPIFFE IDs, serials (`revoked.serials` and `revoked_serials`)
    /// and token ids.
    pub revocation: RevocationList,
    /// The key whose signature over the policy was verified, when a
    /// signature was required (`require_signature`, or keys pinned by
    /// [`FilterConfig::from_json_pinned`]).
    pub signed_by: Option<KeyId>,
}

impl FilterConfig {
    /// Parses and validates the plugin configuration bytes.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        Self::from_json_pinned(bytes, None)
    }

    /// [`FilterConfig::from_json`], with policy signing keys pinned outside
    /// the plugin configuration (for example in the Wasm VM configuration,
    /// which whoever edits the plugin configuration cannot change): the
    /// policy must then be signed by one of `pinned`, and also by one of
    /// `require_signature`'s keys when the plugin configuration sets it.
    /// The signature is checked before the policy bytes are decoded.
    pub fn from_json_pinned(
        bytes: &[u8],
        pinned: Option<&TrustedKeys>,
    ) -> Result<Self, ConfigError> {
        if bytes.is_empty() {
            return Err(ConfigError::Missing);
        }
        if bytes.len() > MAX_CONFIG_LEN {
            return Err(ConfigError::TooLarge(bytes.len()));
        }
        let raw: RawConfig = serde_json::from_slice(bytes)?;
        let filter_state = filter_state(raw.filter_state.as_ref())?;
        let policy_bytes = base64::engine::general_purpose::STANDARD.decode(raw.policy.trim())?;
        // A malformed signature is refused even when none is required.
        let policy_signature = raw
            .signature
            .as_deref()
            .map(|s| PolicySignature::from_json(s.get()))
            .transpose()?;
        let required = raw
            .require_signature
            .as_deref()
            .map(|r| TrustedKeys::from_requirement_json(r.get()))
            .transpose()?;
        let mut signed_by = None;
        for keys in [pinned, required.as_ref()].into_iter().flatten() {
            signed_by = Some(signature::verify(
                &policy_bytes,
                policy_signature.as_ref(),
                keys,
            )?);
        }
        // The body is decoded into the model and its bytes freed before the
        // indexes are built: the configure-time peak is what a Wasm VM keeps.
        let (compiled, hash) = codec::decode(&policy_bytes).map_err(PolicyError::from)?;
        drop(policy_bytes);
        let policy = Policy::from_compiled(compiled, hash)?;
        let revocation = RevocationList::from_config(&raw.revoked, &raw.revoked_serials).map_err(
            |e| match e {
                RevocationError::BadSerial(s) => ConfigError::BadSerial(s),
                other => ConfigError::Revocation(other),
            },
        )?;
        // Existing peer checks read this set: it holds both serial lists.
        let revoked_serials = revocation.serials().clone();
        let peer_principal_key = peer_principal_key(
            raw.peer_certificate,
            raw.peer_principal_key,
            &policy,
            &revoked_serials,
        )?;
        let jwt_svid = raw.jwt_svid.map(jwt_svid_settings).transpose()?;
        let mut key_sets = Vec::new();
        for (td, doc) in &raw.trust_bundles {
            spiffe::check_trust_domain(td).map_err(|_| ConfigError::BadTrustDomain(td.clone()))?;
            let owner = KeyOwner::TrustDomain(td.clone());
            let set = KeySet::parse(doc.get().as_bytes(), owner.purpose()).map_err(|error| {
                ConfigError::Jwks {
                    owner: owner.clone(),
                    error,
                }
            })?;
            key_sets.push((owner, set));
        }
        let (user_tokens, issuer_sets) = match raw.user_tokens {
            None => (None, Vec::new()),
            Some(raw_user) => {
                let (settings, sets) = user_token_settings(raw_user)?;
                (Some(settings), sets)
            }
        };
        key_sets.extend(issuer_sets);
        let key_fetch = raw
            .key_fetch
            .into_iter()
            .enumerate()
            .map(|(index, f)| key_fetch(index, f, user_tokens.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(user) = &user_tokens {
            for issuer in &user.issuers {
                let owner = KeyOwner::Issuer(issuer.issuer.clone());
                let inline = key_sets.iter().any(|(o, _)| *o == owner);
                let fetched = key_fetch
                    .iter()
                    .any(|f| f.target == FetchTarget::Keys(owner.clone()));
                if !inline && !fetched {
                    return Err(ConfigError::IssuerWithoutKeys(issuer.issuer.clone()));
                }
            }
        }
        Ok(FilterConfig {
            policy,
            revoked_serials,
            peer_certificate: raw.peer_certificate,
            peer_principal_key,
            audit_log: raw.audit_log,
            filter_state,
            method_override: raw.method_override,
            jwt_svid,
            user_tokens,
            key_sets,
            key_fetch,
            revocation,
            signed_by,
            direction: raw.direction,
            chain: raw.chain,
            workload_id: raw
                .workload_id
                .map(|id| {
                    crate::spiffe::SpiffeId::parse(&id)
                        .map_err(|e| ConfigError::BadWorkloadId(format!("`{id}`: {e}")))
                })
                .transpose()?,
        })
    }

    /// The runtime key store at configure time `now_secs`: the inline sets,
    /// plus, for every fetched owner, its staleness bound (an owner with
    /// nothing inline is `keys_unavailable` until its first fetch). Call
    /// [`KeyStore::carry_over`] with the previous store to keep fetched sets
    /// across configuration updates.
    pub fn key_store(&self, now_secs: u64) -> KeyStore {
        let mut store = KeyStore::new();
        for (owner, set) in &self.key_sets {
            store.replace(owner, set.clone(), now_secs);
        }
        for fetch in &self.key_fetch {
            if let FetchTarget::Keys(owner) = &fetch.target {
                store.expect_fetches(owner, fetch.max_staleness_secs, now_secs);
            }
        }
        store
    }
}

fn header_name(
    field: &'static str,
    name: Option<String>,
    default: &str,
) -> Result<String, ConfigError> {
    let name = name.unwrap_or_else(|| default.to_owned());
    let ok = !name.is_empty()
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b)
        });
    if ok {
        Ok(name)
    } else {
        Err(ConfigError::BadHeaderName { field, name })
    }
}

fn scheme(
    field: &'static str,
    scheme: Option<String>,
    default: Option<&str>,
) -> Result<Option<String>, ConfigError> {
    match scheme {
        None => Ok(default.map(str::to_owned)),
        Some(s) if s.is_empty() => Ok(None),
        Some(s)
            if s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)) =>
        {
            Ok(Some(s))
        }
        Some(s) => Err(ConfigError::BadScheme { field, scheme: s }),
    }
}

fn algorithms(field: &'static str, names: Option<Vec<String>>) -> Result<AlgSet, ConfigError> {
    let Some(names) = names else {
        return Ok(AlgSet::ALL);
    };
    let mut set = AlgSet::EMPTY;
    for alg in names {
        set = set.with(Alg::from_name(&alg).ok_or(ConfigError::BadAlgorithm { field, alg })?);
    }
    if set.is_empty() {
        return Err(ConfigError::NoAlgorithms(field));
    }
    Ok(set)
}

fn audiences(place: &str, list: Vec<String>) -> Result<Vec<String>, ConfigError> {
    if list.is_empty() || list.iter().any(String::is_empty) {
        return Err(ConfigError::NoAudiences(place.to_owned()));
    }
    Ok(list)
}

fn token_rules(
    field: &'static str,
    scheme: Option<String>,
    algorithms: AlgSet,
    clock_skew_secs: Option<u64>,
    max_lifetime_secs: Option<u64>,
    max_token_bytes: Option<usize>,
) -> Result<TokenRules, ConfigError> {
    let clock_skew_secs = clock_skew_secs.unwrap_or(DEFAULT_CLOCK_SKEW_SECS);
    if clock_skew_secs > 300 {
        return Err(ConfigError::BadNumber {
            field,
            expected: "`clock_skew_secs` at most 300",
        });
    }
    if max_lifetime_secs == Some(0) {
        return Err(ConfigError::BadNumber {
            field,
            expected: "`max_lifetime_secs` greater than 0",
        });
    }
    let max_token_bytes = max_token_bytes.unwrap_or(DEFAULT_MAX_TOKEN_BYTES);
    if !(256..=65536).contains(&max_token_bytes) {
        return Err(ConfigError::BadNumber {
            field,
            expected: "`max_token_bytes` between 256 and 65536",
        });
    }
    Ok(TokenRules {
        scheme,
        max_token_bytes,
        algorithms,
        clock_skew_secs,
        max_lifetime_secs,
    })
}

/// `filter_state`: absent or `"all"` publishes every fact, `"none"` none, a
/// list the facts it names (the names of `pipeline::publish::FILTER_STATE`).
fn filter_state(value: Option<&serde_json::Value>) -> Result<FilterStateSet, ConfigError> {
    use serde_json::Value;
    let names = || {
        FILTER_STATE
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", ")
    };
    match value {
        None => Ok(FilterStateSet::ALL),
        Some(Value::String(s)) if s == "all" => Ok(FilterStateSet::ALL),
        Some(Value::String(s)) if s == "none" => Ok(FilterStateSet::NONE),
        Some(Value::Array(items)) => {
            let mut listed = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::String(s) => listed.push(s.as_str()),
                    other => {
                        return Err(ConfigError::BadFilterState(format!(
                            "lists {}, which is not a name (one of {})",
                            json_type(other),
                            names()
                        )))
                    }
                }
            }
            FilterStateSet::from_names(listed).map_err(|unknown| {
                ConfigError::BadFilterState(format!(
                    "names `{}`, which meshward does not publish (one of {}; Envoy adds the `wasm.` prefix itself)",
                    unknown.escape_debug().take(80).collect::<String>(),
                    names()
                ))
            })
        }
        Some(other) => Err(ConfigError::BadFilterState(format!(
            "must be \"all\", \"none\" or a list of filter-state names, not {}",
            match other {
                Value::String(s) => format!("`{}`", s.escape_debug().take(80).collect::<String>()),
                _ => json_type(other).to_owned(),
            }
        ))),
    }
}

/// A JSON value's type, for messages that must not echo the value.
fn json_type(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}

/// The filter-state key of [`crate::identity::PeerCertificateSource::FilterState`], and the
/// load-time refusal of what that source cannot check.
fn peer_principal_key(
    source: PeerCertificateSource,
    key: Option<String>,
    policy: &Policy,
    revoked_serials: &HashSet<String>,
) -> Result<String, ConfigError> {
    if source != PeerCertificateSource::FilterState {
        return match key {
            Some(_) => Err(ConfigError::BadPrincipalKey(
                "is only read with `peer_certificate: filter_state`",
            )),
            None => Ok(String::new()),
        };
    }
    if policy.max_cert_lifetime_secs().is_some() {
        return Err(ConfigError::NeedsCertificate(
            "the policy bounds certificate lifetime (`max_cert_lifetime`)",
        ));
    }
    if !revoked_serials.is_empty() {
        return Err(ConfigError::NeedsCertificate(
            "the configuration revokes certificate serials",
        ));
    }
    let key = key.unwrap_or_else(|| crate::identity::ISTIO_PEER_PRINCIPAL_KEY.to_owned());
    let plain = !key.is_empty() && key.len() <= 256 && key.bytes().all(|b| b.is_ascii_graphic());
    if plain {
        Ok(key)
    } else {
        Err(ConfigError::BadPrincipalKey(
            "must be 1-256 printable ASCII characters without spaces",
        ))
    }
}

fn jwt_svid_settings(raw: RawJwtSvid) -> Result<JwtSvidSettings, ConfigError> {
    const FIELD: &str = "jwt_svid";
    Ok(JwtSvidSettings {
        header: header_name("jwt_svid.header", raw.header, DEFAULT_JWT_SVID_HEADER)?,
        audiences: audiences(FIELD, raw.audiences)?,
        rules: token_rules(
            FIELD,
            scheme("jwt_svid.scheme", raw.scheme, None)?,
            algorithms(FIELD, raw.algorithms)?,
            raw.clock_skew_secs,
            raw.max_lifetime_secs,
            raw.max_token_bytes,
        )?,
    })
}

fn user_token_settings(
    raw: RawUserTokens,
) -> Result<(UserTokenSettings, Vec<(KeyOwner, KeySet)>), ConfigError> {
    const FIELD: &str = "user_tokens";
    let mut issuers: Vec<IssuerSettings> = Vec::new();
    let mut sets = Vec::new();
    for raw_issuer in raw.issuers {
        if raw_issuer.issuer.is_empty() {
            return Err(ConfigError::EmptyIssuer);
        }
        if issuers.iter().any(|i| i.issuer == raw_issuer.issuer) {
            return Err(ConfigError::DuplicateIssuer(raw_issuer.issuer));
        }
        if let Some(doc) = &raw_issuer.jwks {
            let owner = KeyOwner::Issuer(raw_issuer.issuer.clone());
            let set = KeySet::parse(doc.get().as_bytes(), owner.purpose()).map_err(|error| {
                ConfigError::Jwks {
                    owner: owner.clone(),
                    error,
                }
            })?;
            sets.push((owner, set));
        }
        let place = format!("user_tokens.issuers[`{}`]", raw_issuer.issuer);
        issuers.push(IssuerSettings {
            audiences: audiences(&place, raw_issuer.audiences)?,
            issuer: raw_issuer.issuer,
        });
    }
    let settings = UserTokenSettings {
        header: header_name("user_tokens.header", raw.header, DEFAULT_USER_TOKEN_HEADER)?,
        issuers,
        claims: claim_paths(raw.claims)?,
        rules: token_rules(
            FIELD,
            scheme(
                "user_tokens.scheme",
                raw.scheme,
                Some(DEFAULT_USER_TOKEN_SCHEME),
            )?,
            algorithms(FIELD, raw.algorithms)?,
            raw.clock_skew_secs,
            raw.max_lifetime_secs,
            raw.max_token_bytes,
        )?,
    };
    Ok((settings, sets))
}

/// Parses `user_tokens.claims`, dropping a path listed twice (two spellings
/// of one path are one claim).
fn claim_paths(raw: Vec<String>) -> Result<Vec<ClaimPath>, ConfigError> {
    let mut paths: Vec<ClaimPath> = Vec::with_capacity(raw.len());
    for text in raw {
        let path = ClaimPath::parse(&text)
            .map_err(|error| ConfigError::BadClaimPath { path: text, error })?;
        if !paths.contains(&path) {
            paths.push(path);
        }
    }
    Ok(paths)
}

fn key_fetch(
    index: usize,
    raw: RawKeyFetch,
    user_tokens: Option<&UserTokenSettings>,
) -> Result<KeyFetch, ConfigError> {
    let bad = |problem| ConfigError::BadKeyFetch { index, problem };
    if raw.cluster.is_empty() {
        return Err(bad("`cluster` may not be empty"));
    }
    if !raw.path.starts_with('/') || raw.path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(bad(
            "`path` must start with `/` and hold no spaces or control characters",
        ));
    }
    let target = match (raw.trust_domain, raw.issuer, raw.revocation) {
        (Some(td), None, false) => {
            spiffe::check_trust_domain(&td).map_err(|_| ConfigError::BadTrustDomain(td.clone()))?;
            FetchTarget::Keys(KeyOwner::TrustDomain(td))
        }
        (None, Some(iss), false) => {
            let known = user_tokens.is_some_and(|u| u.issuers.iter().any(|i| i.issuer == iss));
            if !known {
                return Err(bad("`issuer` is not one of `user_tokens.issuers`"));
            }
            FetchTarget::Keys(KeyOwner::Issuer(iss))
        }
        (None, None, true) => FetchTarget::Revocation,
        _ => {
            return Err(bad(
                "set exactly one of `trust_domain`, `issuer` or `revocation: true`",
            ))
        }
    };
    let refresh_secs = raw.refresh_secs.unwrap_or(DEFAULT_REFRESH_SECS);
    if refresh_secs == 0 {
        return Err(bad("`refresh_secs` must be greater than 0"));
    }
    if let Some(max) = raw.max_staleness_secs {
        if target == FetchTarget::Revocation {
            return Err(bad("`max_staleness_secs` applies to key sets only"));
        }
        if max < refresh_secs {
            return Err(bad("`max_staleness_secs` must be at least `refresh_secs`"));
        }
    }
    let timeout_ms = raw.timeout_ms.unwrap_or(DEFAULT_FETCH_TIMEOUT_MS);
    if timeout_ms == 0 {
        return Err(bad("`timeout_ms` must be greater than 0"));
    }
    Ok(KeyFetch {
        authority: raw.authority.unwrap_or_else(|| raw.cluster.clone()),
        cluster: raw.cluster,
        path: raw.path,
        target,
        refresh_secs,
        max_staleness_secs: raw.max_staleness_secs,
        timeout_ms,
    })
}

/// Builds the plugin configuration JSON for a compiled policy (used by the
/// compiler; kept here so writer and reader live side by side).
pub fn plugin_config_json(policy_bytes: &[u8], revoked_serials: &[String]) -> serde_json::Value {
    serde_json::json!({
        "policy": base64::engine::general_purpose::STANDARD.encode(policy_bytes),
        "revoked_serials": revoked_serials,
        "peer_certificate": "forwarded",
        "audit_log": "all",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_missing_and_malformed() {
        assert!(matches!(
            FilterConfig::from_json(b""),
            Err(ConfigError::Missing)
        ));
        assert!(matches!(
            FilterConfig::from_json(b"{"),
            Err(ConfigError::Json(_))
        ));
        assert!(matches!(
            FilterConfig::from_json(br#"{"policy":"!!!"}"#),
            Err(ConfigError::Base64(_))
        ));
        assert!(matches!(
            FilterConfig::from_json(br#"{"policy":"TVdQQw=="}"#),
            Err(ConfigError::Policy(PolicyError::Decode(
                crate::codec::DecodeError::TooShort(4)
            )))
        ));
        assert!(matches!(
            FilterConfig::from_json(br#"{"policy":"","surprise":1}"#),
            Err(ConfigError::Json(_))
        ));
    }

    /// Plugin configuration JSON around a valid empty policy, with `extra`
    /// members merged in.
    fn config_with(extra: serde_json::Value) -> Result<FilterConfig, ConfigError> {
        let (bytes, _) = crate::codec::encode(&crate::model::CompiledPolicy::default());
        let mut json = plugin_config_json(&bytes, &[]);
        if let (Some(obj), serde_json::Value::Object(extra)) = (json.as_object_mut(), extra) {
            obj.extend(extra);
        }
        FilterConfig::from_json(json.to_string().as_bytes())
    }

    fn ec_jwks(kid: &str, key_use: Option<&str>) -> serde_json::Value {
        // The P-256 generator point: a valid public key, fine for parsing tests.
        let mut key = serde_json::json!({
            "kty": "EC", "crv": "P-256", "kid": kid,
            "x": "axfR8uEsQkf4vOblY6RA8ncDfYEt6zOg9KE5RdiYwpY",
            "y": "T-NC4v4af5uO5-tKfA-eFivOM1drMV7Oy7ZAaDe_UfU",
        });
        if let Some(u) = key_use {
            key["use"] = serde_json::json!(u);
        }
        serde_json::json!({ "keys": [key] })
    }

    #[test]
    fn filter_state_selects_the_published_facts() {
        use crate::pipeline::publish::{PEER, REASON};
        let set = |v: serde_json::Value| config_with(serde_json::json!({ "filter_state": v }));
        assert_eq!(
            config_with(serde_json::json!({})).unwrap().filter_state,
            FilterStateSet::ALL
        );
        assert_eq!(
            set(serde_json::json!("all")).unwrap().filter_state,
            FilterStateSet::ALL
        );
        assert_eq!(
            set(serde_json::json!("none")).unwrap().filter_state,
            FilterStateSet::NONE
        );
        assert_eq!(
            set(serde_json::json!([])).unwrap().filter_state,
            FilterStateSet::NONE
        );
        let listed = set(serde_json::json!(["meshward_reason", "meshward_peer"]))
            .unwrap()
            .filter_state;
        assert!(listed.contains(REASON) && listed.contains(PEER));
        assert!(!listed.contains(crate::pipeline::publish::DECISION));

        let message = |v: serde_json::Value| set(v).unwrap_err().to_string();
        let unknown = message(serde_json::json!(["wasm.meshward_reason"]));
        assert!(
            unknown.starts_with("`filter_state` names `wasm.meshward_reason`, which meshward does not publish (one of meshward_decision, meshward_reason,"),
            "{unknown}"
        );
        assert!(
            unknown.ends_with("Envoy adds the `wasm.` prefix itself)"),
            "{unknown}"
        );
        assert_eq!(
            message(serde_json::json!("some")),
            "`filter_state` must be \"all\", \"none\" or a list of filter-state names, not `some`"
        );
        assert_eq!(
            message(serde_json::json!(true)),
            "`filter_state` must be \"all\", \"none\" or a list of filter-state names, not a boolean"
        );
        assert!(message(serde_json::json!([7]))
            .starts_with("`filter_state` lists a number, which is not a name"));
    }

    #[test]
    fn user_token_claims_are_paths() {
        let issuer = |claims: serde_json::Value| {
            serde_json::json!({"user_tokens": {"claims": claims, "issuers": [
                {"issuer": "https://idp.example", "audiences": ["shop"], "jwks": ec_jwks("k1", None)}
            ]}})
        };
        let cfg = config_with(issuer(serde_json::json!([
            "realm_access.roles",
            "a.[b.c]",
            "a[b.c]"
        ])))
        .unwrap();
        let user = cfg.user_tokens.unwrap();
        assert_eq!(
            user.claims
                .iter()
                .map(ClaimPath::as_str)
                .collect::<Vec<_>>(),
            ["realm_access.roles", "a[b.c]"]
        );
        let err = config_with(issuer(serde_json::json!(["a..b"]))).unwrap_err();
        assert!(matches!(
            &err,
            ConfigError::BadClaimPath { path, error: ClaimPathError::EmptyKey { at: 2 } } if path == "a..b"
        ));
        assert_eq!(
            err.to_string(),
            "`user_tokens.claims`: `a..b` is not a valid claim path: empty key at byte 2"
        );
    }

    #[test]
    fn filter_state_peer_source() {
        let cfg = config_with(serde_json::json!({"peer_certificate": "filter_state"})).unwrap();
        assert_eq!(cfg.peer_certificate, PeerCertificateSource::FilterState);
        assert_eq!(cfg.peer_principal_key, "io.istio.peer_principal");
        let own = config_with(serde_json::json!({
            "peer_certificate": "filter_state", "peer_principal_key": "example.peer"
        }))
        .unwrap();
        assert_eq!(own.peer_principal_key, "example.peer");
        // Revoked SPIFFE IDs work without a certificate; serials do not.
        assert!(config_with(serde_json::json!({
            "peer_certificate": "filter_state",
            "revoked": {"spiffe_ids": ["spiffe://cluster.local/ns/a/sa/b"]}
        }))
        .is_ok());
        for serials in [
            serde_json::json!({"revoked_serials": ["0a"]}),
            serde_json::json!({"revoked": {"serials": ["0a"]}}),
        ] {
            let mut extra = serials;
            extra["peer_certificate"] = "filter_state".into();
            assert!(matches!(
                config_with(extra),
                Err(ConfigError::NeedsCertificate(_))
            ));
        }
        let mut bounded = crate::model::CompiledPolicy::default();
        bounded.limits.max_cert_lifetime_secs = Some(3600);
        let (bytes, _) = crate::codec::encode(&bounded);
        let mut json = plugin_config_json(&bytes, &[]);
        json["peer_certificate"] = "filter_state".into();
        assert!(matches!(
            FilterConfig::from_json(json.to_string().as_bytes()),
            Err(ConfigError::NeedsCertificate(_))
        ));
        // The key only with filter state, and only a plain key.
        assert!(matches!(
            config_with(serde_json::json!({"peer_principal_key": "io.istio.peer_principal"})),
            Err(ConfigError::BadPrincipalKey(_))
        ));
        assert!(matches!(
            config_with(
                serde_json::json!({"peer_certificate": "filter_state", "peer_principal_key": "a b"})
            ),
            Err(ConfigError::BadPrincipalKey(_))
        ));
    }

    #[test]
    fn method_override_defaults_to_deny() {
        let default = config_with(serde_json::json!({})).unwrap();
        assert_eq!(default.method_override, MethodOverride::Deny);
        let strip = config_with(serde_json::json!({"method_override": "strip"})).unwrap();
        assert_eq!(strip.method_override, MethodOverride::Strip);
        assert!(matches!(
            config_with(serde_json::json!({"method_override": "pass"})),
            Err(ConfigError::Json(_))
        ));
    }

    #[test]
    fn token_features_are_off_by_default() {
        let cfg = config_with(serde_json::json!({})).unwrap();
        assert!(cfg.jwt_svid.is_none());
        assert!(cfg.user_tokens.is_none());
        assert!(cfg.key_sets.is_empty() && cfg.key_fetch.is_empty());
        assert!(cfg.revocation.is_empty());
    }

    #[test]
    fn full_token_configuration() {
        let cfg = config_with(serde_json::json!({
            "revoked_serials": ["0A:1B"],
            "jwt_svid": {"audiences": ["spiffe://shop.example/ns/shop/sa/orders"],
                         "max_lifetime_secs": 300, "clock_skew_secs": 10, "algorithms": ["ES256", "EdDSA"]},
            "user_tokens": {"claims": ["groups"], "max_lifetime_secs": 86400, "issuers": [
                {"issuer": "https://idp.example", "audiences": ["shop"], "jwks": ec_jwks("u1", Some("sig"))},
                {"issuer": "https://fetched.example", "audiences": ["shop"]}]},
            "trust_bundles": {"shop.example": {"spiffe_sequence": 2, "keys": ec_jwks("j1", Some("jwt-svid"))["keys"]}},
            "key_fetch": [
                {"cluster": "bundles", "path": "/bundle", "trust_domain": "shop.example",
                 "refresh_secs": 60, "max_staleness_secs": 3600},
                {"cluster": "idp", "path": "/jwks", "authority": "idp.example", "issuer": "https://fetched.example"},
                {"cluster": "ops", "path": "/revoked.json", "revocation": true, "refresh_secs": 30}],
            "revoked": {"spiffe_ids": ["spiffe://shop.example/old"], "serials": ["ff"], "jtis": ["j"]},
        }))
        .unwrap();
        let svid = cfg.jwt_svid.as_ref().unwrap();
        assert_eq!(svid.header, "x-jwt-svid");
        assert_eq!(svid.rules.scheme, None);
        assert_eq!(svid.rules.clock_skew_secs, 10);
        assert_eq!(svid.rules.max_lifetime_secs, Some(300));
        assert_eq!(svid.rules.max_token_bytes, 8192);
        assert!(svid.rules.algorithms.contains(Alg::EdDsa));
        assert!(!svid.rules.algorithms.contains(Alg::Rs256));
        let user = cfg.user_tokens.as_ref().unwrap();
        assert_eq!(user.header, "authorization");
        assert_eq!(user.rules.scheme.as_deref(), Some("Bearer"));
        assert_eq!(
            user.claims
                .iter()
                .map(ClaimPath::as_str)
                .collect::<Vec<_>>(),
            ["groups"]
        );
        assert_eq!(user.issuers.len(), 2);
        assert_eq!(cfg.key_sets.len(), 2);
        assert_eq!(cfg.key_fetch.len(), 3);
        assert_eq!(cfg.key_fetch[0].authority, "bundles");
        assert_eq!(cfg.key_fetch[1].refresh_secs, DEFAULT_REFRESH_SECS);
        assert_eq!(cfg.key_fetch[2].target, FetchTarget::Revocation);
        // Both serial lists feed the existing peer checks.
        assert!(cfg.revoked_serials.contains("a1b") && cfg.revoked_serials.contains("ff"));
        assert!(cfg.revocation.is_jti_revoked("j"));
        let store = cfg.key_store(1000);
        let td = KeyOwner::TrustDomain("shop.example".into());
        assert!(store.trust_domain("shop.example", 1000 + 3600).is_ok());
        assert_eq!(
            store.trust_domain("shop.example", 1000 + 3601).unwrap_err(),
            crate::Reason::KeysStale
        );
        assert_eq!(store.get(&td).unwrap().sequence(), Some(2));
        assert!(store.issuer("https://idp.example", u64::MAX).is_ok());
        assert_eq!(
            store.issuer("https://fetched.example", 1000).unwrap_err(),
            crate::Reason::KeysUnavailable
        );
    }

    #[test]
    fn bad_token_settings_are_typed_errors() {
        let issuer = |jwks: serde_json::Value| {
            serde_json::json!({"user_tokens": {"issuers": [
                {"issuer": "https://idp.example", "audiences": ["shop"], "jwks": jwks}]}})
        };
        let svid = |extra: serde_json::Value| {
            let mut s = serde_json::json!({"audiences": ["a"]});
            if let (Some(o), serde_json::Value::Object(e)) = (s.as_object_mut(), extra) {
                o.extend(e);
            }
            serde_json::json!({ "jwt_svid": s })
        };
        let fetch = |f: serde_json::Value| serde_json::json!({"key_fetch": [f]});
        let cases: Vec<(serde_json::Value, &str)> = vec![
            (
                svid(serde_json::json!({"algorithms": ["HS256"]})),
                "BadAlgorithm",
            ),
            (
                svid(serde_json::json!({"algorithms": ["none"]})),
                "BadAlgorithm",
            ),
            (svid(serde_json::json!({"algorithms": []})), "NoAlgorithms"),
            (svid(serde_json::json!({"audiences": []})), "NoAudiences"),
            (svid(serde_json::json!({"audiences": [""]})), "NoAudiences"),
            (
                svid(serde_json::json!({"header": "X-JWT"})),
                "BadHeaderName",
            ),
            (svid(serde_json::json!({"header": ""})), "BadHeaderName"),
            (svid(serde_json::json!({"scheme": "Bear er"})), "BadScheme"),
            (
                svid(serde_json::json!({"clock_skew_secs": 3600})),
                "BadNumber",
            ),
            (
                svid(serde_json::json!({"max_lifetime_secs": 0})),
                "BadNumber",
            ),
            (
                svid(serde_json::json!({"max_token_bytes": 10})),
                "BadNumber",
            ),
            (svid(serde_json::json!({"surprise": 1})), "Json"),
            (serde_json::json!({"jwt_svid": {}}), "Json"),
            (
                issuer(serde_json::json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]})),
                "Jwks",
            ),
            (issuer(serde_json::json!({"keys": "no"})), "Jwks"),
            (
                serde_json::json!({"user_tokens": {"issuers": [
                {"issuer": "https://idp.example", "audiences": ["shop"], "jwks": ec_jwks("a", None)},
                {"issuer": "https://idp.example", "audiences": ["shop"], "jwks": ec_jwks("a", None)}]}}),
                "DuplicateIssuer",
            ),
            (
                serde_json::json!({"user_tokens": {"issuers": [
                {"issuer": "https://idp.example", "audiences": ["shop"]}]}}),
                "IssuerWithoutKeys",
            ),
            (
                serde_json::json!({"trust_bundles": {"Shop.Example": ec_jwks("a", None)}}),
                "BadTrustDomain",
            ),
            (
                serde_json::json!({"trust_bundles": {"shop.example": ec_jwks("", None)}}),
                "Jwks",
            ),
            (
                fetch(serde_json::json!({"cluster": "c", "path": "/b"})),
                "BadKeyFetch",
            ),
            (
                fetch(serde_json::json!({"cluster": "c", "path": "b", "trust_domain": "t"})),
                "BadKeyFetch",
            ),
            (
                fetch(serde_json::json!({"cluster": "", "path": "/b", "trust_domain": "t"})),
                "BadKeyFetch",
            ),
            (
                fetch(
                    serde_json::json!({"cluster": "c", "path": "/b", "trust_domain": "t", "revocation": true}),
                ),
                "BadKeyFetch",
            ),
            (
                fetch(
                    serde_json::json!({"cluster": "c", "path": "/b", "issuer": "https://unknown"}),
                ),
                "BadKeyFetch",
            ),
            (
                fetch(
                    serde_json::json!({"cluster": "c", "path": "/b", "trust_domain": "t", "refresh_secs": 0}),
                ),
                "BadKeyFetch",
            ),
            (
                fetch(
                    serde_json::json!({"cluster": "c", "path": "/b", "trust_domain": "t", "refresh_secs": 60, "max_staleness_secs": 30}),
                ),
                "BadKeyFetch",
            ),
            (
                fetch(
                    serde_json::json!({"cluster": "c", "path": "/b", "revocation": true, "max_staleness_secs": 3000}),
                ),
                "BadKeyFetch",
            ),
            (
                fetch(serde_json::json!({"cluster": "c", "path": "/b", "trust_domain": "T"})),
                "BadTrustDomain",
            ),
            (
                serde_json::json!({"revoked": {"spiffe_ids": ["nope"]}}),
                "Revocation",
            ),
            (
                serde_json::json!({"revoked": {"serials": ["xyz"]}}),
                "BadSerial",
            ),
            (serde_json::json!({"revoked_serials": ["xyz"]}), "BadSerial"),
            (serde_json::json!({"revoked": {"jtis": [""]}}), "Revocation"),
            (serde_json::json!({"revoked": {"other": []}}), "Json"),
        ];
        for (extra, want) in cases {
            let err = config_with(extra.clone()).unwrap_err();
            let got = format!("{err:?}");
            assert!(got.starts_with(want), "{extra}: {got}");
            // Every message is a readable sentence.
            assert!(!err.to_string().is_empty());
        }
    }

    #[test]
    fn signature_requirements() {
        let (bytes, _) = crate::codec::encode(&crate::model::CompiledPolicy::default());
        let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
        let public = signature::PublicKey::of_signing_key(&key);
        let signed = signature::sign(&key, &bytes);
        let load = |sig: Option<serde_json::Value>, keys: Option<serde_json::Value>| {
            let mut json = plugin_config_json(&bytes, &[]);
            if let Some(sig) = sig {
                json["signature"] = sig;
            }
            if let Some(keys) = keys {
                json["require_signature"] = serde_json::json!({ "keys": keys });
            }
            FilterConfig::from_json(json.to_string().as_bytes())
        };
        let keys = serde_json::json!([public.to_base64()]);
        let cfg = load(Some(signed.to_json()), Some(keys.clone())).unwrap();
        assert_eq!(cfg.signed_by, Some(public.id()));
        // Signed but not required: loads, unverified.
        assert_eq!(load(Some(signed.to_json()), None).unwrap().signed_by, None);
        assert!(matches!(
            load(None, Some(keys.clone())),
            Err(ConfigError::Signature(SignatureError::Unsigned))
        ));
        let other =
            signature::PublicKey::of_signing_key(&ed25519_dalek::SigningKey::from_bytes(&[4; 32]));
        assert!(matches!(
            load(
                Some(signed.to_json()),
                Some(serde_json::json!([other.to_base64()]))
            ),
            Err(ConfigError::Signature(SignatureError::UnknownKey(_)))
        ));
        let mut bad = signed.to_json();
        bad["alg"] = "rsa".into();
        assert!(matches!(
            load(Some(bad), None),
            Err(ConfigError::Signature(SignatureError::UnsupportedAlgorithm))
        ));
        assert!(matches!(
            load(Some(signed.to_json()), Some(serde_json::json!([]))),
            Err(ConfigError::Signature(SignatureError::BadRequirement(_)))
        ));
        // Keys pinned outside the plugin configuration apply without
        // `require_signature`, and cannot be loosened by it.
        let pinned = TrustedKeys::from_requirement_json(
            &serde_json::json!({ "keys": [other.to_base64()] }).to_string(),
        )
        .unwrap();
        let json = {
            let mut json = plugin_config_json(&bytes, &[]);
            json["signature"] = signed.to_json();
            json["require_signature"] = serde_json::json!({ "keys": keys });
            json.to_string()
        };
        assert!(matches!(
            FilterConfig::from_json_pinned(json.as_bytes(), Some(&pinned)),
            Err(ConfigError::Signature(SignatureError::UnknownKey(_)))
        ));
        let unsigned = plugin_config_json(&bytes, &[]).to_string();
        assert!(matches!(
            FilterConfig::from_json_pinned(unsigned.as_bytes(), Some(&pinned)),
            Err(ConfigError::Signature(SignatureError::Unsigned))
        ));
    }
}
