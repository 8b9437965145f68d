//! Signed policy bundles: an Ed25519 signature over the compiled policy,
//! carried in the plugin configuration beside it, and the runtime
//! requirement that only policies signed by listed keys are loaded.
//!
//! ```json
//! {
//!   "policy": "TVdQQwEA…",
//!   "signature": {"alg": "ed25519", "key_id": "5c1f0e9a2b7d4c83", "sig": "<base64, 64 bytes>"},
//!   "require_signature": {"keys": ["<base64 Ed25519 public key, 32 bytes>"]}
//! }
//! ```
//!
//! - **What is signed**: [`SIGNING_CONTEXT`] followed by the compiled policy
//!   bytes (the base64-decoded `policy`: magic, version, hash, body). The
//!   context keeps a policy signing key from being usable for anything else.
//!   Runtime members (revocation lists, trust bundles, token settings) are
//!   *not* covered: they are meant to change without re-signing the policy.
//! - **`key_id`**: the first 8 bytes of SHA-256 over the raw public key, as
//!   16 hex digits. It selects the trusted key; it is not a secret and is the
//!   only key material that error messages and logs ever show.
//! - **Verification** uses `verify_strict` (no malleable or small-order
//!   signatures) and refuses weak public keys.
//!
//! Trust model: a requirement written in the same JSON as the policy protects
//! against a policy slipped into a configuration whose other members the
//! platform controls (a templated or separately delivered `policy`), not
//! against someone who can rewrite the whole configuration. To pin the keys
//! outside the plugin configuration, the filter reads them from the Wasm VM
//! configuration (`{"require_signature": {...}}`, parsed by
//! [`TrustedKeys::from_requirement_json`]) or from the VM environment
//! variable [`REQUIRE_SIGNATURE_KEYS_ENV`] ([`TrustedKeys::from_env_value`];
//! Istio can set a VM's environment but not its configuration), combined by
//! [`pinned_keys`], and passes them to the configuration loader.

use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

/// The only signature algorithm.
pub(crate) const ALG_ED25519: &str = "ed25519";

/// Prefixed to the policy bytes before signing and verifying.
pub const SIGNING_CONTEXT: &[u8] = b"meshward policy signature v1\n";

/// Bytes of SHA-256 a [`KeyId`] keeps.
pub const KEY_ID_LEN: usize = 8;

/// Most keys a requirement may list.
pub const MAX_TRUSTED_KEYS: usize = 64;

/// A public key's short identifier: the first [`KEY_ID_LEN`] bytes of
/// SHA-256 over the raw 32-byte key, written as lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId([u8; KEY_ID_LEN]);

impl KeyId {
    /// The id of a raw public key.
    pub fn of(public_key: &[u8; 32]) -> KeyId {
        let digest = Sha256::digest(public_key);
        let mut id = [0u8; KEY_ID_LEN];
        for (slot, byte) in id.iter_mut().zip(digest.iter()) {
            *slot = *byte;
        }
        KeyId(id)
    }

    /// Parses the 16-hex-digit form (lowercase or uppercase).
    pub fn parse(text: &str) -> Option<KeyId> {
        if text.len() != KEY_ID_LEN * 2 {
            return None;
        }
        let mut id = [0u8; KEY_ID_LEN];
        let mut digits = text.bytes().map(|b| char::from(b).to_digit(16));
        for slot in &mut id {
            let high = digits.next().flatten()?;
            let low = digits.next().flatten()?;
            *slot = u8::try_from(high * 16 + low).ok()?;
        }
        Some(KeyId(id))
    }
}

impl core::fmt::Display for KeyId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&crate::codec::hex(&self.0))
    }
}

impl core::fmt::Debug for KeyId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// A verified-usable Ed25519 public key (valid point, not weak).
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
    id: KeyId,
}

impl PublicKey {
    /// A raw 32-byte key; `None` when it is not a valid or is a weak point.
    pub fn from_bytes(bytes: &[u8; 32]) -> Option<PublicKey> {
        let key = VerifyingKey::from_bytes(bytes).ok()?;
        if key.is_weak() {
            return None;
        }
        Some(PublicKey {
            key,
            id: KeyId::of(bytes),
        })
    }

    /// The standard base64 form (what `meshward keygen` prints).
    pub fn from_base64(text: &str) -> Option<PublicKey> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .ok()?;
        let bytes: [u8; 32] = bytes.try_into().ok()?;
        PublicKey::from_bytes(&bytes)
    }

    /// The public half of a signing key.
    pub fn of_signing_key(signing_key: &SigningKey) -> PublicKey {
        let key = signing_key.verifying_key();
        PublicKey {
            id: KeyId::of(key.as_bytes()),
            key,
        }
    }

    /// The key's id.
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// Standard base64 of the raw 32 bytes.
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.key.as_bytes())
    }
}

impl core::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "PublicKey({})", self.id)
    }
}

/// The keys a policy signature must come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKeys {
    keys: Vec<PublicKey>,
}

/// `require_signature` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequirement {
    keys: Vec<String>,
}

/// `signature` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSignature {
    alg: String,
    key_id: String,
    sig: String,
}

impl TrustedKeys {
    /// A non-empty set of at most [`MAX_TRUSTED_KEYS`] keys.
    pub fn new(keys: Vec<PublicKey>) -> Result<TrustedKeys, SignatureError> {
        if keys.is_empty() {
            return Err(SignatureError::BadRequirement(
                "`keys` must list at least one public key",
            ));
        }
        if keys.len() > MAX_TRUSTED_KEYS {
            return Err(SignatureError::BadRequirement(
                "`keys` lists more than 64 public keys",
            ));
        }
        Ok(TrustedKeys { keys })
    }

    /// Parses `{"keys": ["<base64>", …]}` (the `require_signature` member).
    /// Errors name the position of a bad key, never its value.
    pub fn from_requirement_json(json: &str) -> Result<TrustedKeys, SignatureError> {
        let raw: RawRequirement = serde_json::from_str(json).map_err(|_| {
            SignatureError::BadRequirement(
                "must be an object `{\"keys\": [\"<base64 public key>\", …]}` and nothing else",
            )
        })?;
        let keys = raw
            .keys
            .iter()
            .enumerate()
            .map(|(index, text)| {
                PublicKey::from_base64(text).ok_or(SignatureError::BadTrustedKey(index))
            })
            .collect::<Result<Vec<_>, _>>()?;
        TrustedKeys::new(keys)
    }

    /// Parses the value of [`REQUIRE_SIGNATURE_KEYS_ENV`]: base64 public keys
    /// separated by commas and/or whitespace. A variable that is set but
    /// lists no key is an error (fail closed), not "no requirement". Errors
    /// name the position of a bad key, never its value.
    pub fn from_env_value(text: &str) -> Result<TrustedKeys, SignatureError> {
        let keys = text
            .split(|c: char| c == ',' || c.is_ascii_whitespace())
            .filter(|item| !item.is_empty())
            .enumerate()
            .map(|(index, item)| {
                PublicKey::from_base64(item).ok_or(SignatureError::BadPinnedKey(index))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err(SignatureError::NoPinnedKeys);
        }
        TrustedKeys::new(keys)
    }

    /// How many keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Never true (kept for the `len` convention).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// A signature over a compiled policy.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PolicySignature {
    /// The signing key's id.
    pub key_id: KeyId,
    sig: [u8; 64],
}

impl core::fmt::Debug for PolicySignature {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "PolicySignature(ed25519, key {})", self.key_id)
    }
}

impl PolicySignature {
    /// Parses the `signature` member.
    pub fn from_json(json: &str) -> Result<PolicySignature, SignatureError> {
        let raw: RawSignature = serde_json::from_str(json).map_err(|_| {
            SignatureError::Malformed(
                "must be an object of strings `alg`, `key_id` and `sig`, and nothing else",
            )
        })?;
        if raw.alg != ALG_ED25519 {
            return Err(SignatureError::UnsupportedAlgorithm);
        }
        let key_id = KeyId::parse(&raw.key_id)
            .ok_or(SignatureError::Malformed("`key_id` must be 16 hex digits"))?;
        let sig = base64::engine::general_purpose::STANDARD
            .decode(raw.sig.trim())
            .ok()
            .and_then(|bytes| <[u8; 64]>::try_from(bytes).ok())
            .ok_or(SignatureError::Malformed(
                "`sig` must be the base64 of a 64-byte Ed25519 signature",
            ))?;
        Ok(PolicySignature { key_id, sig })
    }

    /// The `signature` member as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "alg": ALG_ED25519,
            "key_id": self.key_id.to_string(),
            "sig": base64::engine::general_purpose::STANDARD.encode(self.sig),
        })
    }
}

/// The message that is signed: [`SIGNING_CONTEXT`] then the policy bytes.
fn signed_message(policy_bytes: &[u8]) -> Vec<u8> {
    context_message(SIGNING_CONTEXT, policy_bytes)
}

/// `context` then `bytes`: every signed kind of document has its own
/// context, so a signature over one kind never verifies as another.
fn context_message(context: &[u8], bytes: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(context.len() + bytes.len());
    message.extend_from_slice(context);
    message.extend_from_slice(bytes);
    message
}

/// The Wasm VM environment variable that pins policy signing keys outside
/// the plugin configuration. Istio sets a VM's environment from
/// `WasmPlugin.vmConfig.env` (`INLINE` values, or `HOST` variables copied
/// from the proxy's own environment), never its VM configuration; Envoy
/// passes it as WASI environ (`VmConfig.environment_variables`).
pub const REQUIRE_SIGNATURE_KEYS_ENV: &str = "MESHWARD_REQUIRE_SIGNATURE_KEYS";

/// The keys pinned outside the plugin configuration, from the VM
/// configuration's `require_signature` (already parsed) and the
/// [`REQUIRE_SIGNATURE_KEYS_ENV`] variable's value. Pinning in both places
/// is refused: one of them would silently not be the one in force.
pub fn pinned_keys(
    vm_configuration: Option<TrustedKeys>,
    env_value: Option<&str>,
) -> Result<Option<TrustedKeys>, SignatureError> {
    let from_env = env_value.map(TrustedKeys::from_env_value).transpose()?;
    match (vm_configuration, from_env) {
        (Some(_), Some(_)) => Err(SignatureError::PinnedTwice),
        (from_vm, from_env) => Ok(from_vm.or(from_env)),
    }
}

/// Signs `context` followed by `bytes` (bundles: `crate::bundle`).
pub(crate) fn sign_in_context(
    signing_key: &SigningKey,
    context: &[u8],
    bytes: &[u8],
) -> PolicySignature {
    let signature = signing_key.sign(&context_message(context, bytes));
    PolicySignature {
        key_id: PublicKey::of_signing_key(signing_key).id(),
        sig: signature.to_bytes(),
    }
}

/// A signature from its raw parts (a binary format's fields).
pub(crate) fn signature_from_parts(key_id: [u8; KEY_ID_LEN], sig: [u8; 64]) -> PolicySignature {
    PolicySignature {
        key_id: KeyId(key_id),
        sig,
    }
}

impl PolicySignature {
    /// The raw 64 signature bytes.
    pub fn to_bytes(&self) -> [u8; 64] {
        self.sig
    }
}

impl KeyId {
    /// The raw id bytes.
    pub fn to_bytes(self) -> [u8; KEY_ID_LEN] {
        self.0
    }
}

/// Checks a signature over `context` followed by `bytes` by one of
/// `trusted`, as [`verify`] does for policies.
pub(crate) fn verify_in_context(
    context: &[u8],
    bytes: &[u8],
    signature: &PolicySignature,
    trusted: &TrustedKeys,
) -> Result<KeyId, SignatureError> {
    let mut candidates = trusted
        .keys
        .iter()
        .filter(|k| k.id == signature.key_id)
        .peekable();
    if candidates.peek().is_none() {
        return Err(SignatureError::UnknownKey(signature.key_id));
    }
    let message = context_message(context, bytes);
    let sig = Signature::from_bytes(&signature.sig);
    if candidates.any(|k| k.key.verify_strict(&message, &sig).is_ok()) {
        Ok(signature.key_id)
    } else {
        Err(SignatureError::BadSignature(signature.key_id))
    }
}

/// Signs compiled policy bytes (the compiler's side).
pub fn sign(signing_key: &SigningKey, policy_bytes: &[u8]) -> PolicySignature {
    let signature = signing_key.sign(&signed_message(policy_bytes));
    PolicySignature {
        key_id: PublicKey::of_signing_key(signing_key).id(),
        sig: signature.to_bytes(),
    }
}

/// Checks that `signature` over `policy_bytes` is by one of `trusted`.
/// Returns the id of the key that signed.
pub fn verify(
    policy_bytes: &[u8],
    signature: Option<&PolicySignature>,
    trusted: &TrustedKeys,
) -> Result<KeyId, SignatureError> {
    let signature = signature.ok_or(SignatureError::Unsigned)?;
    let mut candidates = trusted
        .keys
        .iter()
        .filter(|k| k.id == signature.key_id)
        .peekable();
    if candidates.peek().is_none() {
        return Err(SignatureError::UnknownKey(signature.key_id));
    }
    let message = signed_message(policy_bytes);
    let sig = Signature::from_bytes(&signature.sig);
    if candidates.any(|k| k.key.verify_strict(&message, &sig).is_ok()) {
        Ok(signature.key_id)
    } else {
        Err(SignatureError::BadSignature(signature.key_id))
    }
}

/// Why a policy's signature (or the signature requirement) was refused.
/// The filter logs this, counts it under `meshward.config.signature.<code>`
/// and fails closed. Messages show key ids, never keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// A signature is required (by `require_signature` or pinned keys) and
    /// the configuration has no `signature`.
    #[error("the policy is not signed, and a signature by a required key (`require_signature`, or keys pinned in the VM configuration or `MESHWARD_REQUIRE_SIGNATURE_KEYS`) is required: sign it with `meshward compile --sign KEY` or `meshward istio --sign KEY`")]
    Unsigned,
    /// The signature names a key the requirement does not list.
    #[error(
        "the policy is signed by key `{0}`, which is not one of the keys `require_signature` lists"
    )]
    UnknownKey(KeyId),
    /// The signature does not verify with the key it names: the policy bytes
    /// were changed after signing, or the signature is corrupt.
    #[error("the policy signature by key `{0}` does not verify: the policy was changed after it was signed, or the signature is corrupt")]
    BadSignature(KeyId),
    /// The `signature` member is not `{alg, key_id, sig}` of the right forms.
    #[error("`signature` {0}")]
    Malformed(&'static str),
    /// `signature.alg` is not `ed25519`.
    #[error("`signature.alg` must be `ed25519`, the only algorithm meshward signs and verifies")]
    UnsupportedAlgorithm,
    /// The `require_signature` member is not `{keys: [...]}` or lists no keys.
    #[error("`require_signature` {0}")]
    BadRequirement(&'static str),
    /// A listed key is not a base64 32-byte Ed25519 public key (or is weak).
    #[error("`require_signature.keys[{0}]` is not a base64 Ed25519 public key (32 bytes, a valid curve point that is not of small order)")]
    BadTrustedKey(usize),
    /// An entry of [`REQUIRE_SIGNATURE_KEYS_ENV`] is not a base64 Ed25519
    /// public key (or is weak).
    #[error("entry {0} of the VM environment variable `MESHWARD_REQUIRE_SIGNATURE_KEYS` is not a base64 Ed25519 public key (32 bytes, a valid curve point that is not of small order)")]
    BadPinnedKey(usize),
    /// [`REQUIRE_SIGNATURE_KEYS_ENV`] is set but lists no key.
    #[error("the VM environment variable `MESHWARD_REQUIRE_SIGNATURE_KEYS` is set but lists no public key")]
    NoPinnedKeys,
    /// Keys are pinned both in the VM configuration and in the environment.
    #[error("signing keys are pinned both in the VM configuration (`require_signature`) and in `MESHWARD_REQUIRE_SIGNATURE_KEYS`: pin them in one place")]
    PinnedTwice,
}

impl SignatureError {
    /// A stable snake_case code, for counters (`meshward.config.signature.<code>`).
    pub fn code(self) -> &'static str {
        match self {
            SignatureError::Unsigned => "unsigned",
            SignatureError::UnknownKey(_) => "unknown_key",
            SignatureError::BadSignature(_) => "bad_signature",
            SignatureError::Malformed(_) | SignatureError::UnsupportedAlgorithm => "malformed",
            SignatureError::BadRequirement(_)
            | SignatureError::BadTrustedKey(_)
            | SignatureError::BadPinnedKey(_)
            | SignatureError::NoPinnedKeys
            | SignatureError::PinnedTwice => "bad_requirement",
        }
    }

    /// Every code, for defining counters.
    pub const CODES: [&'static str; 5] = [
        "unsigned",
        "unknown_key",
        "bad_signature",
        "malformed",
        "bad_requirement",
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    fn trusted(keys: &[&SigningKey]) -> TrustedKeys {
        TrustedKeys::new(keys.iter().map(|k| PublicKey::of_signing_key(k)).collect()).unwrap()
    }

    const POLICY: &[u8] = b"MWPC\x01\x00 compiled policy bytes";

    #[test]
    fn sign_verify_round_trip_through_json() {
        let k = key(7);
        let sig = sign(&k, POLICY);
        let json = sig.to_json().to_string();
        let parsed = PolicySignature::from_json(&json).unwrap();
        assert_eq!(parsed, sig);
        assert_eq!(
            verify(POLICY, Some(&parsed), &trusted(&[&key(1), &k])),
            Ok(PublicKey::of_signing_key(&k).id())
        );
        // The requirement's JSON form, as `keygen` prints the key.
        let requirement = serde_json::json!({"keys": [PublicKey::of_signing_key(&k).to_base64()]});
        let keys = TrustedKeys::from_requirement_json(&requirement.to_string()).unwrap();
        assert_eq!(keys.len(), 1);
        assert!(verify(POLICY, Some(&parsed), &keys).is_ok());
    }

    #[test]
    fn tampered_bytes_are_refused() {
        let k = key(7);
        let sig = sign(&k, POLICY);
        let keys = trusted(&[&k]);
        for i in 0..POLICY.len() {
            let mut bytes = POLICY.to_vec();
            bytes[i] ^= 0x01;
            assert_eq!(
                verify(&bytes, Some(&sig), &keys),
                Err(SignatureError::BadSignature(sig.key_id)),
                "byte {i}"
            );
        }
        let mut longer = POLICY.to_vec();
        longer.push(0);
        assert!(verify(&longer, Some(&sig), &keys).is_err());
        // A flipped signature bit, too.
        let mut json = sig.to_json();
        let mut raw = base64::engine::general_purpose::STANDARD
            .decode(json["sig"].as_str().unwrap())
            .unwrap();
        raw[10] ^= 0x80;
        json["sig"] = base64::engine::general_purpose::STANDARD.encode(raw).into();
        let flipped = PolicySignature::from_json(&json.to_string()).unwrap();
        assert_eq!(
            verify(POLICY, Some(&flipped), &keys),
            Err(SignatureError::BadSignature(sig.key_id))
        );
    }

    #[test]
    fn wrong_key_and_unsigned_are_refused() {
        let sig = sign(&key(7), POLICY);
        assert_eq!(
            verify(POLICY, Some(&sig), &trusted(&[&key(8)])),
            Err(SignatureError::UnknownKey(sig.key_id))
        );
        // A signature that claims a trusted key's id but was made by another key.
        let mut forged = sign(&key(9), POLICY);
        forged.key_id = PublicKey::of_signing_key(&key(8)).id();
        assert_eq!(
            verify(POLICY, Some(&forged), &trusted(&[&key(8)])),
            Err(SignatureError::BadSignature(forged.key_id))
        );
        assert_eq!(
            verify(POLICY, None, &trusted(&[&key(8)])),
            Err(SignatureError::Unsigned)
        );
        // The signature is over the context too: a raw signature of the bytes fails.
        let raw = key(7).sign(POLICY);
        let bare = PolicySignature {
            key_id: sig.key_id,
            sig: raw.to_bytes(),
        };
        assert!(verify(POLICY, Some(&bare), &trusted(&[&key(7)])).is_err());
    }

    #[test]
    fn malformed_signature_members() {
        let good = sign(&key(7), POLICY).to_json();
        let with = |name: &str, value: serde_json::Value| {
            let mut v = good.clone();
            v[name] = value;
            PolicySignature::from_json(&v.to_string())
        };
        assert_eq!(
            with("alg", "EdDSA".into()),
            Err(SignatureError::UnsupportedAlgorithm)
        );
        assert!(matches!(
            with("key_id", "abc".into()),
            Err(SignatureError::Malformed(_))
        ));
        assert!(matches!(
            with("key_id", "zzzzzzzzzzzzzzzz".into()),
            Err(SignatureError::Malformed(_))
        ));
        assert!(matches!(
            with("sig", "!!".into()),
            Err(SignatureError::Malformed(_))
        ));
        assert!(matches!(
            with("sig", "AAAA".into()),
            Err(SignatureError::Malformed(_))
        ));
        assert!(matches!(
            with("sig", 5.into()),
            Err(SignatureError::Malformed(_))
        ));
        assert!(matches!(
            with("extra", true.into()),
            Err(SignatureError::Malformed(_))
        ));
        for text in ["", "[]", "\"sig\"", "{}", "null"] {
            assert!(matches!(
                PolicySignature::from_json(text),
                Err(SignatureError::Malformed(_))
            ));
        }
    }

    #[test]
    fn bad_requirements() {
        let good = PublicKey::of_signing_key(&key(1)).to_base64();
        let cases = [
            (serde_json::json!({"keys": []}), "bad_requirement"),
            (serde_json::json!({"keys": good}), "bad_requirement"),
            (
                serde_json::json!({"keys": [good], "x": 1}),
                "bad_requirement",
            ),
            (
                serde_json::json!({"keys": [good, "AAAA"]}),
                "bad_requirement",
            ),
            // The identity point: a weak key anyone can "sign" for.
            (
                serde_json::json!({"keys": [base64::engine::general_purpose::STANDARD.encode({
                    let mut b = [0u8; 32]; b[0] = 1; b
                })]}),
                "bad_requirement",
            ),
        ];
        for (json, code) in cases {
            let err = TrustedKeys::from_requirement_json(&json.to_string()).unwrap_err();
            assert_eq!(err.code(), code, "{json}");
            // Never echo a key.
            assert!(!err.to_string().contains(&good), "{err}");
        }
        assert_eq!(
            TrustedKeys::from_requirement_json(
                &serde_json::json!({"keys": [good, "AAAA"]}).to_string()
            ),
            Err(SignatureError::BadTrustedKey(1))
        );
    }

    #[test]
    fn key_ids_are_sha256_prefixes() {
        let k = PublicKey::of_signing_key(&key(3));
        let digest = Sha256::digest(k.key.as_bytes());
        assert_eq!(k.id().to_string(), crate::codec::hex(&digest[..KEY_ID_LEN]));
        assert_eq!(KeyId::parse(&k.id().to_string()), Some(k.id()));
        assert_eq!(
            KeyId::parse(&k.id().to_string().to_uppercase()),
            Some(k.id())
        );
        assert_eq!(KeyId::parse("0123"), None);
        assert_eq!(KeyId::parse("+123456789abcdef"), None);
        // Debug output never shows key bytes.
        assert_eq!(format!("{k:?}"), format!("PublicKey({})", k.id()));
        for code in SignatureError::CODES {
            assert!(!code.is_empty());
        }
    }

    #[test]
    fn keys_pinned_in_the_vm_environment() {
        let a = PublicKey::of_signing_key(&key(1)).to_base64();
        let b = PublicKey::of_signing_key(&key(2)).to_base64();
        let both = TrustedKeys::from_env_value(&format!(" {a},\n{b} ")).unwrap();
        assert_eq!(both, trusted(&[&key(1), &key(2)]));
        assert_eq!(
            TrustedKeys::from_env_value(&format!("{a} {b}")).unwrap(),
            both
        );
        assert_eq!(
            TrustedKeys::from_env_value(" , "),
            Err(SignatureError::NoPinnedKeys)
        );
        let err = TrustedKeys::from_env_value(&format!("{a},AAAA")).unwrap_err();
        assert_eq!(err, SignatureError::BadPinnedKey(1));
        assert!(!err.to_string().contains(&a));
        // A policy signed by a pinned key verifies; an unsigned one does not.
        let signed = sign(&key(2), POLICY);
        assert_eq!(verify(POLICY, Some(&signed), &both), Ok(signed.key_id));
        assert_eq!(verify(POLICY, None, &both), Err(SignatureError::Unsigned));
        // One place only; absent everywhere is no requirement.
        assert_eq!(pinned_keys(None, None), Ok(None));
        assert_eq!(pinned_keys(None, Some(&a)), Ok(Some(trusted(&[&key(1)]))));
        assert_eq!(
            pinned_keys(Some(trusted(&[&key(2)])), None),
            Ok(Some(trusted(&[&key(2)])))
        );
        assert_eq!(
            pinned_keys(Some(trusted(&[&key(2)])), Some(&a)),
            Err(SignatureError::PinnedTwice)
        );
        assert_eq!(
            pinned_keys(None, Some("")),
            Err(SignatureError::NoPinnedKeys)
        );
    }
}
