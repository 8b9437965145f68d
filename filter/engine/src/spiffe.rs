//! SPIFFE IDs, parsed once and never re-validated ("parse, don't validate").
//!
//! Rules follow the SPIFFE ID specification: scheme `spiffe://` (lowercase), a
//! trust domain of `[a-z0-9.-_]`, and an optional path of non-empty segments of
//! `[A-Za-z0-9.-_]` that are not `.` or `..`. No port, user info, query or
//! fragment; at most 2048 bytes.
//!
//! [`pattern`] holds the one SPIFFE ID pattern matcher, which the compiler and
//! the engine share.

use core::fmt;

pub mod pattern;

/// Longest SPIFFE ID we accept, as in the SPIFFE specification.
pub const MAX_SPIFFE_ID_LEN: usize = 2048;
/// Longest trust domain name we accept (DNS name limit).
pub const MAX_TRUST_DOMAIN_LEN: usize = 255;

const SCHEME: &str = "spiffe://";

/// Why a string is not a SPIFFE ID. Each variant names one rule of the spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SpiffeIdError {
    /// Empty input.
    #[error("empty SPIFFE ID")]
    Empty,
    /// Longer than [`MAX_SPIFFE_ID_LEN`].
    #[error("SPIFFE ID longer than 2048 bytes")]
    TooLong,
    /// Does not start with the lowercase `spiffe://` scheme.
    #[error("SPIFFE ID must start with `spiffe://`")]
    WrongScheme,
    /// No trust domain after the scheme.
    #[error("SPIFFE ID has no trust domain")]
    MissingTrustDomain,
    /// Trust domain has a character outside `[a-z0-9.-_]` (uppercase, port, user info...).
    #[error("trust domain may only contain lowercase letters, digits, `.`, `-` and `_`")]
    BadTrustDomainChar,
    /// Trust domain longer than [`MAX_TRUST_DOMAIN_LEN`].
    #[error("trust domain longer than 255 bytes")]
    TrustDomainTooLong,
    /// A path segment is empty (`//` or a trailing `/`).
    #[error("SPIFFE ID path has an empty segment")]
    EmptySegment,
    /// A path segment is `.` or `..`.
    #[error("SPIFFE ID path segments may not be `.` or `..`")]
    DotSegment,
    /// A path segment has a character outside `[A-Za-z0-9.-_]` (`%`, `?`, `#`, ...).
    #[error("SPIFFE ID path may only contain letters, digits, `.`, `-` and `_`")]
    BadPathChar,
}

fn is_trust_domain_char(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')
}

fn is_path_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')
}

/// Parses a trust domain name (no scheme).
pub fn check_trust_domain(td: &str) -> Result<(), SpiffeIdError> {
    if td.is_empty() {
        return Err(SpiffeIdError::MissingTrustDomain);
    }
    if td.len() > MAX_TRUST_DOMAIN_LEN {
        return Err(SpiffeIdError::TrustDomainTooLong);
    }
    if !td.bytes().all(is_trust_domain_char) {
        return Err(SpiffeIdError::BadTrustDomainChar);
    }
    Ok(())
}

/// Checks one SPIFFE ID path segment (without slashes).
pub fn check_path_segment(seg: &str) -> Result<(), SpiffeIdError> {
    if seg.is_empty() {
        return Err(SpiffeIdError::EmptySegment);
    }
    if seg == "." || seg == ".." {
        return Err(SpiffeIdError::DotSegment);
    }
    if !seg.bytes().all(is_path_char) {
        return Err(SpiffeIdError::BadPathChar);
    }
    Ok(())
}

/// A fixed, unkeyed 64-bit hash of a byte string (FxHash over 8-byte words).
/// Used only to look up strings in tables built from the policy: lookups
/// never insert, so a crafted input can at most land in a crowded bucket of
/// a table whose contents it does not choose.
#[inline]
pub(crate) fn text_hash(bytes: &[u8]) -> u64 {
    const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
    let mix = |h: u64, w: u64| (h.rotate_left(5) ^ w).wrapping_mul(K);
    let len = bytes.len();
    let mut h = mix(0, len as u64);
    if len >= 8 {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            h = mix(h, word8(c));
        }
        if !chunks.remainder().is_empty() {
            // The last 8 bytes, overlapping the previous chunk.
            h = mix(h, word8(bytes.get(len - 8..).unwrap_or(&[])));
        }
    } else if len >= 4 {
        let lo = word4(bytes.get(..4).unwrap_or(&[]));
        let hi = word4(bytes.get(len - 4..).unwrap_or(&[]));
        h = mix(h, lo | (hi << 32));
    } else if let (Some(a), Some(b), Some(c)) = (bytes.first(), bytes.get(len / 2), bytes.last()) {
        h = mix(
            h,
            u64::from(*a) | (u64::from(*b) << 8) | (u64::from(*c) << 16),
        );
    }
    // A multiply only carries differences upward: fold the high half down so
    // that every bit of the table index depends on every input byte.
    h ^= h >> 32;
    h = h.wrapping_mul(K);
    h ^ (h >> 29)
}

/// The first 8 bytes of `b` (zero-padded) as a little-endian word.
#[inline]
fn word8(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    if let (Some(dst), Some(src)) = (w.get_mut(..), b.get(..8)) {
        dst.copy_from_slice(src);
    }
    u64::from_le_bytes(w)
}

/// The first 4 bytes of `b` (zero-padded) as a little-endian word.
#[inline]
fn word4(b: &[u8]) -> u64 {
    let mut w = [0u8; 4];
    if let (Some(dst), Some(src)) = (w.get_mut(..), b.get(..4)) {
        dst.copy_from_slice(src);
    }
    u64::from(u32::from_le_bytes(w))
}

/// Byte equality, without a `memcmp` call for short strings.
#[inline]
pub(crate) fn eq_bytes(a: &[u8], b: &[u8]) -> bool {
    let len = a.len();
    if len != b.len() {
        return false;
    }
    match len {
        0 => true,
        1..=3 => a.iter().zip(b).all(|(x, y)| x == y),
        4..=8 => {
            word4(a) == word4(b)
                && word4(a.get(len - 4..).unwrap_or(&[])) == word4(b.get(len - 4..).unwrap_or(&[]))
        }
        9..=16 => {
            word8(a) == word8(b)
                && word8(a.get(len - 8..).unwrap_or(&[])) == word8(b.get(len - 8..).unwrap_or(&[]))
        }
        _ => a == b,
    }
}

/// A syntactically valid SPIFFE ID. Only [`SpiffeId::parse`] constructs one.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    /// The whole ID, e.g. `spiffe://prod.example/ns/shop/sa/orders`.
    text: String,
    /// Byte offset where the path starts (== text.len() when there is no path).
    path_start: usize,
    /// `text_hash` of the whole ID and of the trust domain, computed once at
    /// parse time so that a decision looks the peer up without hashing it.
    id_hash: u64,
    td_hash: u64,
}

impl SpiffeId {
    /// Parses and validates a SPIFFE ID.
    pub fn parse(s: &str) -> Result<Self, SpiffeIdError> {
        if s.is_empty() {
            return Err(SpiffeIdError::Empty);
        }
        if s.len() > MAX_SPIFFE_ID_LEN {
            return Err(SpiffeIdError::TooLong);
        }
        let rest = s.strip_prefix(SCHEME).ok_or(SpiffeIdError::WrongScheme)?;
        let (td, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        check_trust_domain(td)?;
        if !path.is_empty() {
            // `path` starts with '/', so the first split item is the empty prefix.
            for seg in path.split('/').skip(1) {
                check_path_segment(seg)?;
            }
        }
        Ok(SpiffeId {
            text: s.to_owned(),
            path_start: SCHEME.len() + td.len(),
            id_hash: text_hash(s.as_bytes()),
            td_hash: text_hash(td.as_bytes()),
        })
    }

    /// The whole ID as text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The trust domain name, e.g. `prod.example`.
    pub fn trust_domain(&self) -> &str {
        self.text.get(SCHEME.len()..self.path_start).unwrap_or("")
    }

    /// The path including its leading `/`, or `""`.
    pub fn path(&self) -> &str {
        self.text.get(self.path_start..).unwrap_or("")
    }

    /// `text_hash` of [`SpiffeId::as_str`].
    pub(crate) fn id_hash(&self) -> u64 {
        self.id_hash
    }

    /// `text_hash` of [`SpiffeId::trust_domain`].
    pub(crate) fn td_hash(&self) -> u64 {
        self.td_hash
    }

    /// The path segments, without slashes.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.path().split('/').skip(1)
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpiffeId({})", self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_valid_ids() {
        let id = SpiffeId::parse("spiffe://prod.example/ns/shop/sa/orders").unwrap();
        assert_eq!(id.trust_domain(), "prod.example");
        assert_eq!(id.path(), "/ns/shop/sa/orders");
        assert_eq!(
            id.segments().collect::<Vec<_>>(),
            ["ns", "shop", "sa", "orders"]
        );
        let bare = SpiffeId::parse("spiffe://prod.example").unwrap();
        assert_eq!(bare.trust_domain(), "prod.example");
        assert_eq!(bare.path(), "");
        assert_eq!(bare.segments().count(), 0);
    }

    #[test]
    fn eq_bytes_agrees_with_slice_equality() {
        let base: Vec<u8> = (0u8..40).map(|i| b'a' + i % 26).collect();
        for len in 0..base.len() {
            let a = &base[..len];
            assert!(eq_bytes(a, a));
            assert!(!eq_bytes(a, &base[..len + 1]));
            for at in 0..len {
                let mut b = a.to_vec();
                b[at] ^= 0x20;
                assert!(!eq_bytes(a, &b), "len {len}, byte {at}");
            }
        }
    }

    #[test]
    fn text_hash_spreads_last_byte_differences() {
        // Fx-style mixing alone keeps the low bits of `svc-1` .. `svc-9999`
        // identical (the difference sits in the top byte of a word).
        let mut buckets = std::collections::HashSet::new();
        for k in 0..4096 {
            buckets.insert((text_hash(format!("svc-{k}").as_bytes()) >> 32) & 0xfff);
        }
        assert!(buckets.len() > 2048, "{}", buckets.len());
    }

    #[test]
    fn rejects_each_rule() {
        use SpiffeIdError::*;
        let cases = [
            ("", Empty),
            ("http://prod.example/a", WrongScheme),
            ("SPIFFE://prod.example/a", WrongScheme),
            ("spiffe://", MissingTrustDomain),
            ("spiffe:///a", MissingTrustDomain),
            ("spiffe://Prod.example/a", BadTrustDomainChar),
            ("spiffe://prod.example:443/a", BadTrustDomainChar),
            ("spiffe://user@prod.example/a", BadTrustDomainChar),
            ("spiffe://prod.example/", EmptySegment),
            ("spiffe://prod.example//a", EmptySegment),
            ("spiffe://prod.example/a/../b", DotSegment),
            ("spiffe://prod.example/./b", DotSegment),
            ("spiffe://prod.example/a%2fb", BadPathChar),
            ("spiffe://prod.example/a?x=1", BadPathChar),
            ("spiffe://prod.example/a#f", BadPathChar),
        ];
        for (input, want) in cases {
            assert_eq!(SpiffeId::parse(input), Err(want), "{input}");
        }
        let long = format!("spiffe://a/{}", "b".repeat(MAX_SPIFFE_ID_LEN));
        assert_eq!(SpiffeId::parse(&long), Err(TooLong));
    }
}
