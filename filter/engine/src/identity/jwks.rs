//! Key sets: JWKS documents and SPIFFE bundle endpoint documents, parsed once
//! into verification-ready keys, and the [`KeyStore`] that holds one set per
//! trust domain (JWT-SVIDs) and per issuer (end-user tokens).
//!
//! Parsing is strict and happens at configure or fetch time, never per
//! request: a document with an unknown `kty`, a symmetric or private key, a
//! key whose `alg` contradicts its type, a point off the curve, an RSA modulus
//! under 2048 bits or a duplicate `kid` is rejected whole, with a typed
//! [`JwksError`]. The filter then keeps the last good set.
//!
//! A SPIFFE bundle (a JWKS with `spiffe_sequence` / `spiffe_refresh_hint`, and
//! keys with `use: "jwt-svid"` or `"x509-svid"`) is accepted as is: only its
//! `jwt-svid` keys verify JWT-SVIDs.

use std::collections::HashMap;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use serde::de::IgnoredAny;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use crate::decision::Reason;

/// Largest key set document we parse.
pub const MAX_JWKS_LEN: usize = 1024 * 1024;
/// Most keys one set may hold.
pub const MAX_KEYS_PER_SET: usize = 64;
/// Smallest RSA modulus we accept (NIST: 2048 bits and up).
pub const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus we accept (bounds the cost of one verification).
pub const MAX_RSA_BITS: usize = 4096;

/// JWK members are base64url; padding is tolerated in configuration (some
/// tools write it), tokens themselves are decoded strictly.
const B64_KEY: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A signature algorithm meshward verifies. HMAC (`HS*`) and `none` are not
/// representable: a public key can never verify them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Alg {
    /// ECDSA with P-256 and SHA-256.
    Es256,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// RSASSA-PSS with SHA-256 and MGF1-SHA-256, 32-byte salt.
    Ps256,
    /// Ed25519.
    EdDsa,
}

impl Alg {
    /// Every supported algorithm.
    pub const ALL: [Alg; 4] = [Alg::Es256, Alg::Rs256, Alg::Ps256, Alg::EdDsa];

    /// The JOSE name (`alg` value).
    pub fn name(self) -> &'static str {
        match self {
            Alg::Es256 => "ES256",
            Alg::Rs256 => "RS256",
            Alg::Ps256 => "PS256",
            Alg::EdDsa => "EdDSA",
        }
    }

    /// Parses a JOSE `alg` name we support (exact case, as RFC 7518 requires).
    pub fn from_name(name: &str) -> Option<Alg> {
        Alg::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The bit of this algorithm in an [`AlgSet`].
    fn bit(self) -> u8 {
        match self {
            Alg::Es256 => 1,
            Alg::Rs256 => 2,
            Alg::Ps256 => 4,
            Alg::EdDsa => 8,
        }
    }
}

/// An allowlist of algorithms (a bit set; `Copy`, no allocation to test).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlgSet(u8);

impl AlgSet {
    /// Every supported algorithm.
    pub const ALL: AlgSet = AlgSet(1 | 2 | 4 | 8);
    /// No algorithm.
    pub const EMPTY: AlgSet = AlgSet(0);

    /// This set plus `alg`.
    pub fn with(self, alg: Alg) -> AlgSet {
        AlgSet(self.0 | alg.bit())
    }

    /// Whether `alg` is allowed.
    pub fn contains(self, alg: Alg) -> bool {
        self.0 & alg.bit() != 0
    }

    /// True when no algorithm is allowed.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl Default for AlgSet {
    fn default() -> Self {
        AlgSet::ALL
    }
}

impl FromIterator<Alg> for AlgSet {
    fn from_iter<I: IntoIterator<Item = Alg>>(iter: I) -> Self {
        iter.into_iter().fold(AlgSet::EMPTY, AlgSet::with)
    }
}

/// A parsed public key, ready to verify.
#[derive(Clone)]
pub(crate) enum PublicKey {
    P256(p256::ecdsa::VerifyingKey),
    Rsa(rsa::RsaPublicKey),
    Ed25519(ed25519_dalek::VerifyingKey),
}

impl PublicKey {
    /// Whether a JWS `alg` is one this key type can verify.
    pub(crate) fn fits(&self, alg: Alg) -> bool {
        matches!(
            (self, alg),
            (PublicKey::P256(_), Alg::Es256)
                | (PublicKey::Rsa(_), Alg::Rs256 | Alg::Ps256)
                | (PublicKey::Ed25519(_), Alg::EdDsa)
        )
    }

    fn kty(&self) -> &'static str {
        match self {
            PublicKey::P256(_) => "EC",
            PublicKey::Rsa(_) => "RSA",
            PublicKey::Ed25519(_) => "OKP",
        }
    }
}

/// One verification key of a set.
#[derive(Clone)]
pub struct Jwk {
    kid: Option<Box<str>>,
    /// The `alg` the JWK pins, if any: a token must then use exactly it.
    alg: Option<Alg>,
    pub(crate) key: PublicKey,
    /// SHA-256 over the key type, pinned `alg` and key material: tells a
    /// rotated key from a kept one, and binds cached tokens to their key.
    fingerprint: [u8; 32],
}

impl Jwk {
    /// The key id, if the JWK has one.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The pinned algorithm, if the JWK names one.
    pub fn alg(&self) -> Option<Alg> {
        self.alg
    }

    /// `EC`, `RSA` or `OKP`.
    pub fn kty(&self) -> &'static str {
        self.key.kty()
    }

    /// A digest of the key (type, pinned `alg`, material).
    pub fn fingerprint(&self) -> &[u8; 32] {
        &self.fingerprint
    }

    /// Whether this key may verify a token signed with `alg`.
    pub fn accepts(&self, alg: Alg) -> bool {
        self.key.fits(alg) && self.alg.is_none_or(|pinned| pinned == alg)
    }
}

impl std::fmt::Debug for Jwk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwk")
            .field("kid", &self.kid)
            .field("kty", &self.kty())
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// What a key set is for: decides which `use` values count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPurpose {
    /// JWT-SVIDs of a trust domain. In a SPIFFE bundle only `use: "jwt-svid"`
    /// keys count (and every key must say its `use`); in a plain JWKS, keys
    /// without `use`, or with `sig` / `jwt-svid`, count. Keys must have a `kid`.
    JwtSvid,
    /// End-user tokens of an issuer: keys without `use` or with `sig`.
    UserToken,
}

/// Why a key set document was rejected. The filter logs it and keeps the last
/// good set. `index` is the key's position in `keys`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    /// Larger than [`MAX_JWKS_LEN`].
    #[error("key set document is {0} bytes, more than the 1 MiB limit")]
    TooLarge(usize),
    /// Not a JSON object with a `keys` array of objects (or a member has the
    /// wrong JSON type, or appears twice).
    #[error("key set is not a valid JWKS document: {0}")]
    Json(String),
    /// More than [`MAX_KEYS_PER_SET`] keys.
    #[error("key set has {0} keys, more than the limit of 64")]
    TooManyKeys(usize),
    /// `kty` is not `EC`, `RSA` or `OKP` (symmetric `oct` keys included).
    #[error("key {index}: key type `{kty}` is not supported (EC P-256, RSA, OKP Ed25519)")]
    UnsupportedKeyType {
        /// Position in `keys`.
        index: usize,
        /// The `kty` given.
        kty: String,
    },
    /// `crv` is not one we verify (`P-256` for EC, `Ed25519` for OKP).
    #[error("key {index}: curve `{crv}` is not supported")]
    UnsupportedCurve {
        /// Position in `keys`.
        index: usize,
        /// The `crv` given (empty when absent).
        crv: String,
    },
    /// The JWK carries private key members (`d`, `p`, `q`, ...) or is a
    /// symmetric key (`k`): never configure secrets as verification keys.
    #[error("key {index}: contains private key material; publish only public keys")]
    PrivateKeyMaterial {
        /// Position in `keys`.
        index: usize,
    },
    /// A required member (`x`, `y`, `n`, `e`, `kid`...) is absent.
    #[error("key {index}: missing member `{member}`")]
    MissingMember {
        /// Position in `keys`.
        index: usize,
        /// The member's name.
        member: &'static str,
    },
    /// A member is not valid base64url, or has the wrong length.
    #[error("key {index}: member `{member}` is not valid base64url of the right length")]
    BadMember {
        /// Position in `keys`.
        index: usize,
        /// The member's name.
        member: &'static str,
    },
    /// The key material is not a valid public key (point off the curve,
    /// small-order Ed25519 point, bad RSA exponent).
    #[error("key {index}: not a valid public key")]
    InvalidKey {
        /// Position in `keys`.
        index: usize,
    },
    /// RSA modulus outside [`MIN_RSA_BITS`]..=[`MAX_RSA_BITS`].
    #[error("key {index}: RSA modulus of {bits} bits (2048 to 4096 accepted)")]
    RsaKeySize {
        /// Position in `keys`.
        index: usize,
        /// The modulus size.
        bits: usize,
    },
    /// `alg` is not one we verify (`HS256`, `none`, `ES384`...), or names an
    /// algorithm of another key type.
    #[error("key {index}: `alg` `{alg}` does not fit a {kty} key, or is not supported")]
    AlgConflict {
        /// Position in `keys`.
        index: usize,
        /// The `alg` given.
        alg: String,
        /// The key's `kty`.
        kty: String,
    },
    /// `use` is not one we know for this purpose.
    #[error("key {index}: `use` `{key_use}` is not valid here")]
    BadUse {
        /// Position in `keys`.
        index: usize,
        /// The `use` given.
        key_use: String,
    },
    /// Two usable keys share a `kid` (or two have none).
    #[error("two keys share the kid `{0}`")]
    DuplicateKid(String),
    /// `spiffe_refresh_hint` or `spiffe_sequence` is negative or not an integer.
    #[error("`{0}` must be a non-negative integer")]
    BadSpiffeMember(&'static str),
    /// A fetched SPIFFE bundle's `spiffe_sequence` went backwards: a replayed
    /// older bundle could bring back a retired key.
    #[error("bundle sequence {got} is older than the current {have}")]
    SequenceRollback {
        /// The sequence of the set in use.
        have: u64,
        /// The sequence fetched.
        got: u64,
    },
}

#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<RawJwk>,
    #[serde(default)]
    spiffe_refresh_hint: Option<serde_json::Number>,
    #[serde(default)]
    spiffe_sequence: Option<serde_json::Number>,
}

#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default, rename = "use")]
    key_use: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    // Private or symmetric members: present means misconfiguration.
    #[serde(default)]
    d: Option<IgnoredAny>,
    #[serde(default)]
    p: Option<IgnoredAny>,
    #[serde(default)]
    q: Option<IgnoredAny>,
    #[serde(default)]
    k: Option<IgnoredAny>,
}

impl RawJwk {
    fn has_private_material(&self) -> bool {
        self.d.is_some() || self.p.is_some() || self.q.is_some() || self.k.is_some()
    }
}

/// The keys of one trust domain or issuer, with when they were obtained.
#[derive(Debug, Clone)]
pub struct KeySet {
    keys: Vec<Jwk>,
    refresh_hint_secs: Option<u64>,
    sequence: Option<u64>,
}

impl KeySet {
    /// A set with no key.
    pub const EMPTY: KeySet = KeySet {
        keys: Vec::new(),
        refresh_hint_secs: None,
        sequence: None,
    };

    /// Parses a JWKS or SPIFFE bundle document (bytes as configured or fetched).
    pub fn parse(doc: &[u8], purpose: KeyPurpose) -> Result<KeySet, JwksError> {
        if doc.len() > MAX_JWKS_LEN {
            return Err(JwksError::TooLarge(doc.len()));
        }
        if !super::jwt::is_json_object(doc) {
            return Err(JwksError::Json("expected a JSON object".to_owned()));
        }
        let raw: RawJwks =
            serde_json::from_slice(doc).map_err(|e| JwksError::Json(e.to_string()))?;
        Self::from_raw(raw, purpose)
    }

    fn from_raw(raw: RawJwks, purpose: KeyPurpose) -> Result<KeySet, JwksError> {
        if raw.keys.len() > MAX_KEYS_PER_SET {
            return Err(JwksError::TooManyKeys(raw.keys.len()));
        }
        let refresh_hint_secs = spiffe_u64(raw.spiffe_refresh_hint, "spiffe_refresh_hint")?;
        let sequence = spiffe_u64(raw.spiffe_sequence, "spiffe_sequence")?;
        let spiffe_bundle = refresh_hint_secs.is_some()
            || sequence.is_some()
            || raw
                .keys
                .iter()
                .any(|k| matches!(k.key_use.as_deref(), Some("jwt-svid" | "x509-svid")));
        let mut keys: Vec<Jwk> = Vec::with_capacity(raw.keys.len());
        for (index, raw_key) in raw.keys.iter().enumerate() {
            let Some(jwk) = parse_key(index, raw_key, purpose, spiffe_bundle)? else {
                continue;
            };
            if keys.iter().any(|k| k.kid == jwk.kid) {
                return Err(JwksError::DuplicateKid(
                    jwk.kid.as_deref().unwrap_or("").to_owned(),
                ));
            }
            keys.push(jwk);
        }
        Ok(KeySet {
            keys,
            refresh_hint_secs,
            sequence,
        })
    }

    /// The key a token's `kid` names. A token without `kid` matches only a key
    /// without one (a set holds at most one such key).
    pub fn find(&self, kid: Option<&str>) -> Option<&Jwk> {
        self.keys.iter().find(|k| k.kid.as_deref() == kid)
    }

    /// The usable keys.
    pub fn keys(&self) -> &[Jwk] {
        &self.keys
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when the set has no usable key (every token then fails `kid` lookup).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// A SPIFFE bundle's `spiffe_refresh_hint`, seconds.
    pub fn refresh_hint_secs(&self) -> Option<u64> {
        self.refresh_hint_secs
    }

    /// A SPIFFE bundle's `spiffe_sequence`.
    pub fn sequence(&self) -> Option<u64> {
        self.sequence
    }

    /// What replacing `self` by `new` changes, by `kid`.
    pub fn diff(&self, new: &KeySet) -> Rotation {
        let label = |k: &Jwk| k.kid.as_deref().unwrap_or("").to_owned();
        let mut rotation = Rotation::default();
        for key in &new.keys {
            match self.find(key.kid()) {
                None => rotation.added.push(label(key)),
                Some(old) if old.fingerprint != key.fingerprint => {
                    rotation.replaced.push(label(key));
                }
                Some(_) => rotation.kept += 1,
            }
        }
        for key in &self.keys {
            if new.find(key.kid()).is_none() {
                rotation.removed.push(label(key));
            }
        }
        rotation
    }
}

fn spiffe_u64(
    n: Option<serde_json::Number>,
    member: &'static str,
) -> Result<Option<u64>, JwksError> {
    n.map(|n| n.as_u64().ok_or(JwksError::BadSpiffeMember(member)))
        .transpose()
}

/// Parses one JWK; `Ok(None)` for a key that is valid but not for `purpose`.
fn parse_key(
    index: usize,
    raw: &RawJwk,
    purpose: KeyPurpose,
    spiffe_bundle: bool,
) -> Result<Option<Jwk>, JwksError> {
    if !matches!(raw.kty.as_str(), "EC" | "RSA" | "OKP") {
        return Err(JwksError::UnsupportedKeyType {
            index,
            kty: raw.kty.clone(),
        });
    }
    if raw.has_private_material() {
        return Err(JwksError::PrivateKeyMaterial { index });
    }
    let usable = match (purpose, raw.key_use.as_deref()) {
        (KeyPurpose::JwtSvid, Some("jwt-svid")) => true,
        (KeyPurpose::JwtSvid, None | Some("sig")) if !spiffe_bundle => true,
        (KeyPurpose::JwtSvid, Some("x509-svid" | "enc")) => false,
        (KeyPurpose::UserToken, None | Some("sig")) => true,
        (KeyPurpose::UserToken, Some("enc")) => false,
        (_, other) => {
            return Err(JwksError::BadUse {
                index,
                key_use: other.unwrap_or("").to_owned(),
            })
        }
    };
    if !usable {
        return Ok(None);
    }
    if raw.kid.as_deref() == Some("") {
        return Err(JwksError::BadMember {
            index,
            member: "kid",
        });
    }
    if purpose == KeyPurpose::JwtSvid && raw.kid.is_none() {
        // The JWT-SVID spec requires `kid` on tokens and bundle keys alike.
        return Err(JwksError::MissingMember {
            index,
            member: "kid",
        });
    }
    let key = match raw.kty.as_str() {
        "EC" => parse_ec(index, raw)?,
        "RSA" => parse_rsa(index, raw)?,
        _ => parse_okp(index, raw)?,
    };
    let alg = match raw.alg.as_deref() {
        None => None,
        Some(name) => {
            let alg = Alg::from_name(name).filter(|alg| key.fits(*alg));
            Some(alg.ok_or_else(|| JwksError::AlgConflict {
                index,
                alg: name.to_owned(),
                kty: raw.kty.clone(),
            })?)
        }
    };
    let fingerprint = fingerprint(&key, alg);
    Ok(Some(Jwk {
        kid: raw.kid.as_deref().map(Box::from),
        alg,
        key,
        fingerprint,
    }))
}

fn member<'r>(
    index: usize,
    value: &'r Option<String>,
    member: &'static str,
) -> Result<&'r str, JwksError> {
    value
        .as_deref()
        .ok_or(JwksError::MissingMember { index, member })
}

fn decode_member(
    index: usize,
    value: &Option<String>,
    name: &'static str,
) -> Result<Vec<u8>, JwksError> {
    B64_KEY
        .decode(member(index, value, name)?)
        .map_err(|_| JwksError::BadMember {
            index,
            member: name,
        })
}

fn decode_fixed<const N: usize>(
    index: usize,
    value: &Option<String>,
    name: &'static str,
) -> Result<[u8; N], JwksError> {
    <[u8; N]>::try_from(decode_member(index, value, name)?).map_err(|_| JwksError::BadMember {
        index,
        member: name,
    })
}

fn parse_ec(index: usize, raw: &RawJwk) -> Result<PublicKey, JwksError> {
    if raw.crv.as_deref() != Some("P-256") {
        return Err(JwksError::UnsupportedCurve {
            index,
            crv: raw.crv.clone().unwrap_or_default(),
        });
    }
    let x: [u8; 32] = decode_fixed(index, &raw.x, "x")?;
    let y: [u8; 32] = decode_fixed(index, &raw.y, "y")?;
    // SEC1 uncompressed point: 0x04 || x || y.
    let mut sec1 = Vec::with_capacity(65);
    sec1.push(4);
    sec1.extend_from_slice(&x);
    sec1.extend_from_slice(&y);
    // Rejects points off the curve and the identity.
    p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1)
        .map(PublicKey::P256)
        .map_err(|_| JwksError::InvalidKey { index })
}

fn parse_rsa(index: usize, raw: &RawJwk) -> Result<PublicKey, JwksError> {
    let n = rsa::BigUint::from_bytes_be(&decode_member(index, &raw.n, "n")?);
    let e = rsa::BigUint::from_bytes_be(&decode_member(index, &raw.e, "e")?);
    let bits = n.bits();
    if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
        return Err(JwksError::RsaKeySize { index, bits });
    }
    // Also checks the exponent (2 <= e < 2^33).
    rsa::RsaPublicKey::new_with_max_size(n, e, MAX_RSA_BITS)
        .map(PublicKey::Rsa)
        .map_err(|_| JwksError::InvalidKey { index })
}

fn parse_okp(index: usize, raw: &RawJwk) -> Result<PublicKey, JwksError> {
    if raw.crv.as_deref() != Some("Ed25519") {
        return Err(JwksError::UnsupportedCurve {
            index,
            crv: raw.crv.clone().unwrap_or_default(),
        });
    }
    let x: [u8; 32] = decode_fixed(index, &raw.x, "x")?;
    let key =
        ed25519_dalek::VerifyingKey::from_bytes(&x).map_err(|_| JwksError::InvalidKey { index })?;
    // Small-order points let forged signatures verify for many messages.
    if key.is_weak() {
        return Err(JwksError::InvalidKey { index });
    }
    Ok(PublicKey::Ed25519(key))
}

fn fingerprint(key: &PublicKey, alg: Option<Alg>) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(key.kty().as_bytes());
    h.update([0]);
    h.update(alg.map_or("", Alg::name).as_bytes());
    h.update([0]);
    match key {
        PublicKey::P256(k) => h.update(k.to_encoded_point(false).as_bytes()),
        PublicKey::Rsa(k) => {
            use rsa::traits::PublicKeyParts as _;
            let n = k.n().to_bytes_be();
            h.update((n.len() as u64).to_be_bytes());
            h.update(&n);
            h.update(k.e().to_bytes_be());
        }
        PublicKey::Ed25519(k) => h.update(k.as_bytes()),
    }
    h.finalize().into()
}

/// What replacing a key set changed, by `kid` (`""` for a key without one),
/// for the filter's rotation log line and counter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rotation {
    /// Kids that are new.
    pub added: Vec<String>,
    /// Kids that are gone (tokens signed with them stop verifying).
    pub removed: Vec<String>,
    /// Kids whose key material (or pinned `alg`) changed.
    pub replaced: Vec<String>,
    /// Keys that stayed the same.
    pub kept: usize,
}

impl Rotation {
    /// True when any key was added, removed or replaced.
    pub fn changed(&self) -> bool {
        !(self.added.is_empty() && self.removed.is_empty() && self.replaced.is_empty())
    }
}

/// Whose keys a set is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyOwner {
    /// A trust domain's JWT-SVID keys, e.g. `shop.example`.
    TrustDomain(String),
    /// An end-user token issuer, e.g. `https://idp.example`.
    Issuer(String),
}

impl KeyOwner {
    /// Which keys of a document count for this owner.
    pub fn purpose(&self) -> KeyPurpose {
        match self {
            KeyOwner::TrustDomain(_) => KeyPurpose::JwtSvid,
            KeyOwner::Issuer(_) => KeyPurpose::UserToken,
        }
    }
}

impl std::fmt::Display for KeyOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyOwner::TrustDomain(td) => write!(f, "trust domain `{td}`"),
            KeyOwner::Issuer(iss) => write!(f, "issuer `{iss}`"),
        }
    }
}

/// One owner's current keys, when they were obtained, and how long they may
/// serve without a successful refresh.
#[derive(Debug, Clone, Default)]
struct Slot {
    /// `None` until the first fetch succeeds when nothing was inline.
    set: Option<KeySet>,
    /// When `set` was installed (or, before any set, when fetching started).
    fetched_at: u64,
    /// The staleness bound, for owners whose keys are fetched.
    max_staleness_secs: Option<u64>,
    /// The owner's keys are fetched (a `key_fetch` entry names it).
    fetched: bool,
    /// `set` came from a fetch rather than the inline configuration.
    from_fetch: bool,
}

/// The key sets in force: one per trust domain and one per issuer.
///
/// Built from the configuration at configure time, updated by fetches. Each
/// set carries `fetched_at` (Unix seconds); when an owner has a maximum
/// staleness (from its `key_fetch` entry) and no fetch succeeded for longer
/// than that, verification against it fails closed with
/// [`Reason::KeysStale`]. Lookups by `&str` do not allocate.
#[derive(Debug, Clone, Default)]
pub struct KeyStore {
    trust_domains: HashMap<String, Slot>,
    issuers: HashMap<String, Slot>,
}

impl KeyStore {
    /// An empty store.
    pub fn new() -> Self {
        KeyStore::default()
    }

    fn slot_mut(&mut self, owner: &KeyOwner) -> &mut Slot {
        match owner {
            KeyOwner::TrustDomain(td) => self.trust_domains.entry(td.clone()).or_default(),
            KeyOwner::Issuer(iss) => self.issuers.entry(iss.clone()).or_default(),
        }
    }

    fn slot(&self, owner: &KeyOwner) -> Option<&Slot> {
        match owner {
            KeyOwner::TrustDomain(td) => self.trust_domains.get(td),
            KeyOwner::Issuer(iss) => self.issuers.get(iss),
        }
    }

    /// Installs (or replaces) `owner`'s keys as of `now_secs`, as configured
    /// inline, and returns what changed.
    pub fn replace(&mut self, owner: &KeyOwner, set: KeySet, now_secs: u64) -> Rotation {
        self.install(owner, set, now_secs, false)
    }

    fn install(
        &mut self,
        owner: &KeyOwner,
        set: KeySet,
        now_secs: u64,
        from_fetch: bool,
    ) -> Rotation {
        let slot = self.slot_mut(owner);
        let rotation = slot.set.as_ref().unwrap_or(&KeySet::EMPTY).diff(&set);
        slot.set = Some(set);
        slot.fetched_at = now_secs;
        slot.from_fetch = from_fetch;
        rotation
    }

    /// Declares that `owner`'s keys are fetched and may not serve longer than
    /// `max_staleness_secs` after the last success (an inline set counts as
    /// obtained at `now_secs`). An owner with no keys yet is
    /// [`Reason::KeysUnavailable`] until a fetch succeeds.
    pub fn expect_fetches(
        &mut self,
        owner: &KeyOwner,
        max_staleness_secs: Option<u64>,
        now_secs: u64,
    ) {
        let slot = self.slot_mut(owner);
        slot.fetched = true;
        slot.fetched_at = now_secs;
        slot.max_staleness_secs = max_staleness_secs;
    }

    /// Parses a fetched document for `owner` and installs it as of `now_secs`
    /// (also when nothing changed: a successful fetch renews the set). On
    /// error the current set stays (the last good set); a SPIFFE bundle whose
    /// `spiffe_sequence` is lower than the current one is refused.
    pub fn apply_fetched(
        &mut self,
        owner: &KeyOwner,
        body: &[u8],
        now_secs: u64,
    ) -> Result<Rotation, JwksError> {
        let set = KeySet::parse(body, owner.purpose())?;
        let current = self.slot(owner).and_then(|s| s.set.as_ref());
        if let (Some(have), Some(got)) = (current.and_then(KeySet::sequence), set.sequence()) {
            if got < have {
                return Err(JwksError::SequenceRollback { have, got });
            }
        }
        Ok(self.install(owner, set, now_secs, true))
    }

    /// Takes over, for every owner this store fetches, the set that `old`
    /// (the store of the previous configuration) had fetched, with its
    /// fetch time: a configuration update neither loses a rotation that
    /// happened since the inline keys were written nor resets staleness.
    pub fn carry_over(&mut self, old: &KeyStore) {
        let pairs = self
            .trust_domains
            .iter_mut()
            .map(|(k, s)| (old.trust_domains.get(k), s))
            .chain(
                self.issuers
                    .iter_mut()
                    .map(|(k, s)| (old.issuers.get(k), s)),
            );
        for (prev, slot) in pairs {
            let Some(prev) = prev.filter(|p| p.from_fetch) else {
                continue;
            };
            if slot.fetched {
                slot.set.clone_from(&prev.set);
                slot.fetched_at = prev.fetched_at;
                slot.from_fetch = true;
            }
        }
    }

    /// The current set of `owner`, stale or not.
    pub fn get(&self, owner: &KeyOwner) -> Option<&KeySet> {
        self.slot(owner).and_then(|s| s.set.as_ref())
    }

    /// When `owner`'s keys were last installed (or fetching started).
    pub fn fetched_at(&self, owner: &KeyOwner) -> Option<u64> {
        self.slot(owner).map(|s| s.fetched_at)
    }

    /// The keys of a trust domain for verifying a JWT-SVID at `now_secs`:
    /// [`Reason::KeysUnavailable`] when there are none, [`Reason::KeysStale`]
    /// past the staleness bound.
    pub fn trust_domain(&self, trust_domain: &str, now_secs: u64) -> Result<&KeySet, Reason> {
        usable(self.trust_domains.get(trust_domain), now_secs)
    }

    /// The keys of an issuer for verifying an end-user token at `now_secs`.
    pub fn issuer(&self, issuer: &str, now_secs: u64) -> Result<&KeySet, Reason> {
        usable(self.issuers.get(issuer), now_secs)
    }

    /// Every owner the store knows.
    pub fn owners(&self) -> impl Iterator<Item = KeyOwner> + '_ {
        self.trust_domains
            .keys()
            .map(|td| KeyOwner::TrustDomain(td.clone()))
            .chain(self.issuers.keys().map(|i| KeyOwner::Issuer(i.clone())))
    }
}

fn usable(slot: Option<&Slot>, now_secs: u64) -> Result<&KeySet, Reason> {
    let slot = slot.ok_or(Reason::KeysUnavailable)?;
    let set = slot.set.as_ref().ok_or(Reason::KeysUnavailable)?;
    if let Some(max) = slot.max_staleness_secs {
        if now_secs.saturating_sub(slot.fetched_at) > max {
            return Err(Reason::KeysStale);
        }
    }
    Ok(set)
}
