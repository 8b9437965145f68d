//! The compiled policy's byte framing.
//!
//! ```text
//! offset  size  field
//! 0       4     magic  b"MWPC" (meshward policy, compiled)
//! 4       2     format version, little-endian (currently 1)
//! 6       2     flags, little-endian (none defined; must be 0)
//! 8       32    SHA-256 of the body
//! 40      4     body length, little-endian
//! 44      n     body: `CompiledPolicy` in postcard encoding
//! ```
//! Nothing may follow the body. The decoder checks each field before it looks
//! at the next, and never trusts a length it has not bounded.

use sha2::{Digest, Sha256};

use crate::model::CompiledPolicy;

/// The four magic bytes every compiled policy starts with.
pub const MAGIC: [u8; 4] = *b"MWPC";
/// The format version this engine writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// Size of the fixed header before the body.
pub const HEADER_LEN: usize = 44;
/// Largest body we accept (a 10,000-rule policy is well under 2 MiB).
pub(crate) const MAX_BODY_LEN: usize = 16 * 1024 * 1024;

/// Why bytes are not a compiled policy this engine can load.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than the fixed header.
    #[error("compiled policy is truncated: {0} bytes, the header alone is 44")]
    TooShort(usize),
    /// Does not start with `MWPC`.
    #[error("not a meshward compiled policy (bad magic bytes)")]
    BadMagic,
    /// A format version this engine does not read.
    #[error("compiled policy format version {found} is not supported (this filter reads version {FORMAT_VERSION}); recompile with a matching `meshward`")]
    UnsupportedVersion {
        /// Version found in the header.
        found: u16,
    },
    /// Flag bits this engine does not know.
    #[error("compiled policy has unknown flags {0:#06x}")]
    UnknownFlags(u16),
    /// Body length field disagrees with the bytes present or exceeds the limit.
    #[error("compiled policy body length {declared} does not match the {actual} bytes present")]
    LengthMismatch {
        /// Length in the header.
        declared: usize,
        /// Bytes actually after the header.
        actual: usize,
    },
    /// The body's SHA-256 differs from the header: corrupt or tampered.
    #[error("compiled policy is corrupt: content hash mismatch")]
    HashMismatch,
    /// The body does not decode.
    #[error("compiled policy body is malformed: {0}")]
    MalformedBody(String),
}

/// Encodes a policy: header + postcard body. Returns the bytes and the body hash.
pub fn encode(policy: &CompiledPolicy) -> (Vec<u8>, [u8; 32]) {
    // INVARIANT: postcard serialization of plain data into a Vec cannot fail.
    let body = postcard::to_allocvec(policy).unwrap_or_default();
    let hash: [u8; 32] = Sha256::digest(&body).into();
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&hash);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    (out, hash)
}

/// Decodes and verifies bytes produced by [`encode`]. Returns the policy model
/// and its content hash. Index validity is checked by `Policy::from_compiled`.
pub fn decode(bytes: &[u8]) -> Result<(CompiledPolicy, [u8; 32]), DecodeError> {
    let (header, body) = bytes
        .split_at_checked(HEADER_LEN)
        .ok_or(DecodeError::TooShort(bytes.len()))?;
    let mut reader = HeaderReader(header);
    if reader.take::<4>() != Some(MAGIC) {
        return Err(DecodeError::BadMagic);
    }
    let version = u16::from_le_bytes(reader.take().unwrap_or_default());
    if version != FORMAT_VERSION {
        return Err(DecodeError::UnsupportedVersion { found: version });
    }
    let flags = u16::from_le_bytes(reader.take().unwrap_or_default());
    if flags != 0 {
        return Err(DecodeError::UnknownFlags(flags));
    }
    let hash: [u8; 32] = reader.take().unwrap_or_default();
    let declared = u32::from_le_bytes(reader.take().unwrap_or_default()) as usize;
    if declared != body.len() || declared > MAX_BODY_LEN {
        return Err(DecodeError::LengthMismatch {
            declared,
            actual: body.len(),
        });
    }
    let actual_hash: [u8; 32] = Sha256::digest(body).into();
    if actual_hash != hash {
        return Err(DecodeError::HashMismatch);
    }
    let (policy, trailing) = postcard::take_from_bytes::<CompiledPolicy>(body)
        .map_err(|e| DecodeError::MalformedBody(e.to_string()))?;
    if !trailing.is_empty() {
        return Err(DecodeError::MalformedBody(format!(
            "{} trailing bytes after the policy",
            trailing.len()
        )));
    }
    Ok((policy, actual_hash))
}

/// Reads fixed-size fields off the front of the header without indexing.
struct HeaderReader<'a>(&'a [u8]);

impl HeaderReader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (field, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*field)
    }
}

/// Lowercase hex of a hash, for logs and audit lines.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        for nibble in [b >> 4, b & 0xf] {
            s.push(char::from(
                DIGITS.get(usize::from(nibble)).copied().unwrap_or(b'0'),
            ));
        }
    }
    s
}
