//! Policy bundles: a plugin configuration with a revision, the policy hash
//! and an Ed25519 signature, in one binary file that any HTTP server or
//! object store can serve (`meshward bundle` writes it; the filter pulls it,
//! see `pipeline::bundles`).
//!
//! ```text
//! offset  size  field
//!      0     4  magic        "MWBN"
//!      4     2  version      1 (big-endian u16)
//!      6     8  revision     ≥ 1 (big-endian u64); never goes backwards
//!     14     8  issued_at    Unix seconds (big-endian u64), informational
//!     22    32  policy_hash  SHA-256 content hash of the compiled policy
//!     54     4  config_len   n (big-endian u32)
//!     58     n  config       the plugin configuration JSON, as `meshward compile` writes it
//!   58+n     8  key_id       first 8 bytes of SHA-256 over the signing public key
//!   66+n    64  signature    Ed25519 over BUNDLE_SIGNING_CONTEXT ‖ bytes [0, 58+n)
//! ```
//!
//! Everything before `key_id` is signed, under its own context
//! ([`BUNDLE_SIGNING_CONTEXT`]), so a policy signature never verifies as a
//! bundle signature and the reverse. Nothing may follow the signature.

use crate::signature::{self, KeyId, SignatureError, TrustedKeys, KEY_ID_LEN};

/// The first four bytes of every bundle.
pub const MAGIC: [u8; 4] = *b"MWBN";
/// The only format version this decoder reads.
pub(crate) const VERSION: u16 = 1;
/// Prefixed to the signed bytes before signing and verifying.
pub const BUNDLE_SIGNING_CONTEXT: &[u8] = b"meshward bundle signature v1\n";
/// Bytes before the configuration.
pub const HEADER_LEN: usize = 58;
/// Bytes after the configuration (key id and signature).
pub const TRAILER_LEN: usize = KEY_ID_LEN + 64;

/// A decoded bundle (not yet verified: see [`Bundle::verify`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// The revision, ≥ 1.
    pub revision: u64,
    /// When it was packed (Unix seconds, as the packer's clock read).
    pub issued_at: u64,
    /// The compiled policy's content hash.
    pub policy_hash: [u8; 32],
    /// The plugin configuration JSON.
    pub config: Vec<u8>,
    signed_len: usize,
    signature: signature::PolicySignature,
}

/// Why bundle bytes were refused. `Copy`; every variant says what causes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// More bytes than the configured limit.
    #[error("the bundle is {size} bytes, more than the limit of {limit}")]
    TooLarge {
        /// The size received.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The bytes end before a field does (a truncated download).
    #[error("the bundle is truncated (it ends inside `{0}`)")]
    Truncated(&'static str),
    /// The first four bytes are not `MWBN`.
    #[error("not a meshward bundle (bad magic)")]
    BadMagic,
    /// A format version this decoder does not read.
    #[error("bundle format version {0} is not supported (this filter reads version 1)")]
    UnsupportedVersion(u16),
    /// Revision 0 (revisions start at 1).
    #[error("bundle revision 0 is not allowed (revisions start at 1)")]
    ZeroRevision,
    /// Bytes follow the signature.
    #[error("{0} bytes follow the bundle signature")]
    TrailingBytes(usize),
    /// The bundle is signed by a key that is not pinned.
    #[error("the bundle is signed by key `{0}`, which is not one of the pinned bundle keys")]
    UnknownKey(KeyId),
    /// The signature does not verify: the bytes were changed after signing,
    /// or the signature is corrupt.
    #[error("the bundle signature by key `{0}` does not verify: the bundle was changed after it was signed, or the signature is corrupt")]
    BadSignature(KeyId),
}

impl BundleError {
    /// Every [`BundleError::code`], for counters defined up front.
    pub const CODES: [&'static str; 8] = [
        "too_large",
        "truncated",
        "bad_magic",
        "unsupported_version",
        "zero_revision",
        "trailing_bytes",
        "unknown_key",
        "bad_signature",
    ];

    /// A stable code for counters and logs.
    pub fn code(self) -> &'static str {
        match self {
            BundleError::TooLarge { .. } => "too_large",
            BundleError::Truncated(_) => "truncated",
            BundleError::BadMagic => "bad_magic",
            BundleError::UnsupportedVersion(_) => "unsupported_version",
            BundleError::ZeroRevision => "zero_revision",
            BundleError::TrailingBytes(_) => "trailing_bytes",
            BundleError::UnknownKey(_) => "unknown_key",
            BundleError::BadSignature(_) => "bad_signature",
        }
    }
}

/// Reads fields front to back; never indexes, never reads past the end.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], BundleError> {
        let (head, tail) = self
            .rest
            .split_at_checked(n)
            .ok_or(BundleError::Truncated(field))?;
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], BundleError> {
        let bytes = self.take(N, field)?;
        <[u8; N]>::try_from(bytes).map_err(|_| BundleError::Truncated(field))
    }
}

impl Bundle {
    /// Decodes bundle bytes of at most `max_bytes`. The signature is parsed,
    /// not checked.
    pub fn decode(bytes: &[u8], max_bytes: usize) -> Result<Bundle, BundleError> {
        if bytes.len() > max_bytes {
            return Err(BundleError::TooLarge {
                size: bytes.len(),
                limit: max_bytes,
            });
        }
        let mut reader = Reader { rest: bytes };
        if reader.array::<4>("magic")? != MAGIC {
            return Err(BundleError::BadMagic);
        }
        let version = u16::from_be_bytes(reader.array("version")?);
        if version != VERSION {
            return Err(BundleError::UnsupportedVersion(version));
        }
        let revision = u64::from_be_bytes(reader.array("revision")?);
        if revision == 0 {
            return Err(BundleError::ZeroRevision);
        }
        let issued_at = u64::from_be_bytes(reader.array("issued_at")?);
        let policy_hash = reader.array::<32>("policy_hash")?;
        let config_len = u32::from_be_bytes(reader.array("config_len")?);
        let config_len =
            usize::try_from(config_len).map_err(|_| BundleError::Truncated("config"))?;
        let config = reader.take(config_len, "config")?.to_vec();
        let signed_len = HEADER_LEN.saturating_add(config_len);
        let key_id = reader.array::<KEY_ID_LEN>("key_id")?;
        let sig = reader.array::<64>("signature")?;
        if !reader.rest.is_empty() {
            return Err(BundleError::TrailingBytes(reader.rest.len()));
        }
        Ok(Bundle {
            revision,
            issued_at,
            policy_hash,
            config,
            signed_len,
            signature: signature::signature_from_parts(key_id, sig),
        })
    }

    /// Decodes and checks the signature against `trusted`: the only way
    /// the filter accepts bundle bytes.
    pub fn open(
        bytes: &[u8],
        max_bytes: usize,
        trusted: &TrustedKeys,
    ) -> Result<(Bundle, KeyId), BundleError> {
        let bundle = Bundle::decode(bytes, max_bytes)?;
        let key = bundle.verify(bytes, trusted)?;
        Ok((bundle, key))
    }

    /// Checks the signature over the signed part of `bytes` (the bytes this
    /// bundle was decoded from).
    pub fn verify(&self, bytes: &[u8], trusted: &TrustedKeys) -> Result<KeyId, BundleError> {
        let signed = bytes
            .get(..self.signed_len)
            .ok_or(BundleError::Truncated("config"))?;
        signature::verify_in_context(BUNDLE_SIGNING_CONTEXT, signed, &self.signature, trusted)
            .map_err(|e| match e {
                SignatureError::UnknownKey(id) => BundleError::UnknownKey(id),
                _ => BundleError::BadSignature(self.signature.key_id),
            })
    }

    /// The signing key's id as the bundle names it.
    pub fn key_id(&self) -> KeyId {
        self.signature.key_id
    }

    /// The policy hash as lowercase hex.
    pub fn policy_hash_hex(&self) -> String {
        crate::codec::hex(&self.policy_hash)
    }
}

/// Packs and signs a bundle (the compiler's side). `None` when the
/// configuration is larger than 4 GiB.
pub fn encode(
    revision: u64,
    issued_at: u64,
    policy_hash: &[u8; 32],
    config: &[u8],
    signing_key: &ed25519_dalek::SigningKey,
) -> Option<Vec<u8>> {
    let config_len = u32::try_from(config.len()).ok()?;
    let mut out = Vec::with_capacity(HEADER_LEN + config.len() + TRAILER_LEN);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_be_bytes());
    out.extend_from_slice(&revision.to_be_bytes());
    out.extend_from_slice(&issued_at.to_be_bytes());
    out.extend_from_slice(policy_hash);
    out.extend_from_slice(&config_len.to_be_bytes());
    out.extend_from_slice(config);
    let sig = signature::sign_in_context(signing_key, BUNDLE_SIGNING_CONTEXT, &out);
    out.extend_from_slice(&sig.key_id.to_bytes());
    out.extend_from_slice(&sig.to_bytes());
    Some(out)
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "unit tests"
)]
mod tests {
    use super::*;
    use crate::signature::PublicKey;
    use ed25519_dalek::SigningKey;
    use proptest::prelude::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn trusted(seed: u8) -> TrustedKeys {
        TrustedKeys::new(vec![PublicKey::of_signing_key(&key(seed))]).unwrap()
    }

    #[test]
    fn every_code_is_listed() {
        let id = PublicKey::of_signing_key(&key(1)).id();
        let all = [
            BundleError::TooLarge { size: 2, limit: 1 },
            BundleError::Truncated("header"),
            BundleError::BadMagic,
            BundleError::UnsupportedVersion(2),
            BundleError::ZeroRevision,
            BundleError::TrailingBytes(1),
            BundleError::UnknownKey(id),
            BundleError::BadSignature(id),
        ];
        let codes: Vec<_> = all.iter().map(|e| e.code()).collect();
        assert_eq!(codes, BundleError::CODES);
    }

    #[test]
    fn golden_layout() {
        let bytes = encode(7, 1_700_000_000, &[0xab; 32], b"{}", &key(1)).unwrap();
        assert_eq!(bytes.len(), HEADER_LEN + 2 + TRAILER_LEN);
        assert_eq!(&bytes[0..4], b"MWBN");
        assert_eq!(&bytes[4..6], &[0, 1]);
        assert_eq!(&bytes[6..14], &7u64.to_be_bytes());
        assert_eq!(&bytes[14..22], &1_700_000_000u64.to_be_bytes());
        assert_eq!(&bytes[22..54], &[0xab; 32]);
        assert_eq!(&bytes[54..58], &[0, 0, 0, 2]);
        assert_eq!(&bytes[58..60], b"{}");
        let id = PublicKey::of_signing_key(&key(1)).id();
        assert_eq!(&bytes[60..68], &id.to_bytes());
        let (bundle, signer) = Bundle::open(&bytes, 1 << 20, &trusted(1)).unwrap();
        assert_eq!(signer, id);
        assert_eq!(bundle.revision, 7);
        assert_eq!(bundle.issued_at, 1_700_000_000);
        assert_eq!(bundle.config, b"{}");
        assert_eq!(bundle.policy_hash_hex(), "ab".repeat(32));
    }

    #[test]
    fn refusals_are_typed() {
        let bytes = encode(3, 0, &[1; 32], b"{\"a\":1}", &key(1)).unwrap();
        let limit = 1 << 20;
        assert_eq!(
            Bundle::decode(&bytes, 10),
            Err(BundleError::TooLarge {
                size: bytes.len(),
                limit: 10
            })
        );
        assert_eq!(
            Bundle::decode(&bytes[..bytes.len() - 1], limit),
            Err(BundleError::Truncated("signature"))
        );
        assert_eq!(
            Bundle::decode(&bytes[..40], limit),
            Err(BundleError::Truncated("policy_hash"))
        );
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert_eq!(
            Bundle::decode(&trailing, limit),
            Err(BundleError::TrailingBytes(1))
        );
        let mut magic = bytes.clone();
        magic[0] = b'X';
        assert_eq!(Bundle::decode(&magic, limit), Err(BundleError::BadMagic));
        let mut version = bytes.clone();
        version[5] = 2;
        assert_eq!(
            Bundle::decode(&version, limit),
            Err(BundleError::UnsupportedVersion(2))
        );
        let zero = encode(0, 0, &[1; 32], b"{}", &key(1)).unwrap();
        assert_eq!(Bundle::decode(&zero, limit), Err(BundleError::ZeroRevision));
        // Another key: unknown; a flipped byte anywhere signed: bad signature.
        let err = Bundle::open(&bytes, limit, &trusted(2)).unwrap_err();
        assert_eq!(err.code(), "unknown_key");
        for position in [6, 20, 30, 56, 60] {
            let mut flipped = bytes.clone();
            flipped[position] ^= 1;
            if let Ok(bundle) = Bundle::decode(&flipped, limit) {
                let err = bundle.verify(&flipped, &trusted(1)).unwrap_err();
                assert_eq!(err.code(), "bad_signature", "byte {position}");
            }
        }
        // A policy signature over the same bytes is not a bundle signature.
        let policy_sig = signature::sign(&key(1), &bytes[..HEADER_LEN + 7]);
        let mut forged = bytes[..HEADER_LEN + 7].to_vec();
        forged.extend_from_slice(&policy_sig.key_id.to_bytes());
        forged.extend_from_slice(&policy_sig.to_bytes());
        assert_eq!(
            Bundle::open(&forged, limit, &trusted(1))
                .unwrap_err()
                .code(),
            "bad_signature"
        );
    }

    proptest! {
        // Ed25519 in a debug build is slow: enough cases to cover the shapes.
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn round_trip(revision in 1u64.., issued in any::<u64>(), hash in any::<[u8; 32]>(),
                      config in proptest::collection::vec(any::<u8>(), 0..512)) {
            let bytes = encode(revision, issued, &hash, &config, &key(9)).unwrap();
            let (bundle, _) = Bundle::open(&bytes, usize::MAX, &trusted(9)).unwrap();
            prop_assert_eq!(bundle.revision, revision);
            prop_assert_eq!(bundle.issued_at, issued);
            prop_assert_eq!(bundle.policy_hash, hash);
            prop_assert_eq!(bundle.config, config);
        }

        /// Arbitrary bytes never panic and never open.
        #[test]
        fn arbitrary_bytes_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            prop_assert!(Bundle::open(&bytes, usize::MAX, &trusted(9)).is_err());
        }

        /// Any single-byte change or truncation of a good bundle is refused.
        #[test]
        fn mutations_are_refused(position in 0usize..200, flip in 1u8.., cut in 0usize..200) {
            let bytes = encode(5, 1, &[3; 32], b"{\"policy\":\"x\"}", &key(9)).unwrap();
            let position = position % bytes.len();
            let mut mutated = bytes.clone();
            mutated[position] ^= flip;
            prop_assert!(Bundle::open(&mutated, usize::MAX, &trusted(9)).is_err());
            let cut = cut % bytes.len();
            prop_assert!(Bundle::open(&bytes[..cut], usize::MAX, &trusted(9)).is_err());
        }
    }
}
