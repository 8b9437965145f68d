//! Revocation data: SPIFFE IDs, certificate serials and token `jti`s that must
//! no longer be accepted.
//!
//! It is runtime data, not policy: it arrives in the plugin configuration
//! (`"revoked": {...}`, plus the older top-level `revoked_serials`) or from a
//! fetch, and the filter swaps the whole [`RevocationList`] at once (it is
//! immutable once built, so an `Rc` swap in the root context is atomic for
//! every later request). Nothing caches a verdict about it: the checks run on
//! every request, cache hits included, so a revocation takes effect on the
//! next request.

use std::collections::HashSet;

use serde::Deserialize;

use crate::decision::Reason;
use crate::spiffe::SpiffeId;

/// Largest revocation document we parse.
pub const MAX_REVOCATION_LEN: usize = 8 * 1024 * 1024;

/// The revocation lists as written in JSON (the `revoked` member of the plugin
/// configuration, or a fetched document of the same shape).
///
/// ```json
/// {"spiffe_ids": ["spiffe://shop.example/ns/shop/sa/old"],
///  "serials": ["0a:1b:2c"], "jtis": ["4f1c..."]}
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokedConfig {
    /// Revoked SPIFFE IDs (exact IDs, not patterns).
    #[serde(default)]
    pub spiffe_ids: Vec<String>,
    /// Revoked certificate serials, hex (any case, `:` separators, `0x` allowed).
    #[serde(default)]
    pub serials: Vec<String>,
    /// Revoked token ids (`jti`), compared exactly.
    #[serde(default)]
    pub jtis: Vec<String>,
}

/// Why revocation data was rejected (the filter keeps the previous list).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RevocationError {
    /// Larger than [`MAX_REVOCATION_LEN`].
    #[error("revocation document is {0} bytes, more than the 8 MiB limit")]
    TooLarge(usize),
    /// Not the JSON shape of [`RevokedConfig`].
    #[error("revocation document is not valid JSON of the expected shape: {0}")]
    Json(String),
    /// An entry of `spiffe_ids` is not a SPIFFE ID.
    #[error("revoked SPIFFE ID `{0}` is not a valid SPIFFE ID")]
    BadSpiffeId(String),
    /// An entry of `serials` is not hex.
    #[error("revoked serial `{0}` is not a hexadecimal certificate serial number")]
    BadSerial(String),
    /// An entry of `jtis` is empty.
    #[error("revoked `jti` entries may not be empty")]
    EmptyJti,
}

/// The revocation lists in force. Immutable once built: replace it whole.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevocationList {
    spiffe_ids: HashSet<String>,
    serials: HashSet<String>,
    jtis: HashSet<String>,
}

impl RevocationList {
    /// Everything revoked by either list: a fetched list adds to the
    /// configured one and never lifts a revocation written in the config.
    pub fn union(&self, other: &RevocationList) -> RevocationList {
        RevocationList {
            spiffe_ids: self.spiffe_ids.union(&other.spiffe_ids).cloned().collect(),
            serials: self.serials.union(&other.serials).cloned().collect(),
            jtis: self.jtis.union(&other.jtis).cloned().collect(),
        }
    }

    /// An empty list (nothing revoked).
    pub fn new() -> Self {
        RevocationList::default()
    }

    /// Validates and normalizes configured lists. `extra_serials` are the
    /// older top-level `revoked_serials`.
    pub fn from_config(
        config: &RevokedConfig,
        extra_serials: &[String],
    ) -> Result<Self, RevocationError> {
        let spiffe_ids = config
            .spiffe_ids
            .iter()
            .map(|id| {
                SpiffeId::parse(id)
                    .map(|id| id.as_str().to_owned())
                    .map_err(|_| RevocationError::BadSpiffeId(id.clone()))
            })
            .collect::<Result<_, _>>()?;
        let serials = config
            .serials
            .iter()
            .chain(extra_serials)
            .map(|s| normalize_serial(s).ok_or_else(|| RevocationError::BadSerial(s.clone())))
            .collect::<Result<_, _>>()?;
        if config.jtis.iter().any(String::is_empty) {
            return Err(RevocationError::EmptyJti);
        }
        let jtis = config.jtis.iter().cloned().collect();
        Ok(RevocationList {
            spiffe_ids,
            serials,
            jtis,
        })
    }

    /// Parses a fetched revocation document (the shape of [`RevokedConfig`]).
    pub fn from_json(doc: &[u8]) -> Result<Self, RevocationError> {
        if doc.len() > MAX_REVOCATION_LEN {
            return Err(RevocationError::TooLarge(doc.len()));
        }
        if !super::jwt::is_json_object(doc) {
            return Err(RevocationError::Json("expected a JSON object".to_owned()));
        }
        let config: RevokedConfig =
            serde_json::from_slice(doc).map_err(|e| RevocationError::Json(e.to_string()))?;
        Self::from_config(&config, &[])
    }

    /// Whether `id` is revoked.
    pub fn is_spiffe_id_revoked(&self, id: &str) -> bool {
        !self.spiffe_ids.is_empty() && self.spiffe_ids.contains(id)
    }

    /// Whether a normalized serial (see [`normalize_serial`]) is revoked.
    pub fn is_serial_revoked(&self, normalized_serial: &str) -> bool {
        !self.serials.is_empty() && self.serials.contains(normalized_serial)
    }

    /// Whether a token id is revoked.
    pub fn is_jti_revoked(&self, jti: &str) -> bool {
        !self.jtis.is_empty() && self.jtis.contains(jti)
    }

    /// [`Reason::SpiffeIdRevoked`] when `id` is revoked (for the mTLS peer too).
    pub fn check_spiffe_id(&self, id: &SpiffeId) -> Result<(), Reason> {
        if self.is_spiffe_id_revoked(id.as_str()) {
            Err(Reason::SpiffeIdRevoked)
        } else {
            Ok(())
        }
    }

    /// The normalized revoked serials, the shape `IdentityChecks` takes.
    pub fn serials(&self) -> &HashSet<String> {
        &self.serials
    }

    /// True when nothing is revoked.
    pub fn is_empty(&self) -> bool {
        self.spiffe_ids.is_empty() && self.serials.is_empty() && self.jtis.is_empty()
    }

    /// Entry counts (SPIFFE IDs, serials, jtis), for logs.
    pub fn counts(&self) -> (usize, usize, usize) {
        (self.spiffe_ids.len(), self.serials.len(), self.jtis.len())
    }
}

/// Normalizes a certificate serial written as hex (any case, optional `:`
/// separators, optional `0x`): lowercase, no separators, no leading zeros
/// (DER may add a `00` byte to keep the integer positive). `None` if not hex.
pub fn normalize_serial(s: &str) -> Option<String> {
    let s = s.trim();
    let s = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    let digits: String = s
        .chars()
        .filter(|c| *c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let trimmed = digits.trim_start_matches('0');
    Some(if trimmed.is_empty() {
        "0".to_owned()
    } else {
        trimmed.to_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_normalize() {
        assert_eq!(normalize_serial("0A:1b:2C").as_deref(), Some("a1b2c"));
        assert_eq!(normalize_serial("0x00ff").as_deref(), Some("ff"));
        assert_eq!(normalize_serial("00").as_deref(), Some("0"));
        assert_eq!(normalize_serial("xyz"), None);
        assert_eq!(normalize_serial(""), None);
    }

    #[test]
    fn normalizes_and_checks() {
        let cfg = RevokedConfig {
            spiffe_ids: vec!["spiffe://shop.example/ns/shop/sa/old".into()],
            serials: vec!["0A:1B:2C".into()],
            jtis: vec!["abc".into()],
        };
        let list = RevocationList::from_config(&cfg, &["0xff".into()]).unwrap();
        assert!(list.is_spiffe_id_revoked("spiffe://shop.example/ns/shop/sa/old"));
        assert!(!list.is_spiffe_id_revoked("spiffe://shop.example/ns/shop/sa/new"));
        assert!(list.is_serial_revoked("a1b2c"));
        assert!(list.is_serial_revoked("ff"));
        assert!(list.is_jti_revoked("abc"));
        assert!(!list.is_jti_revoked("ABC"));
        assert_eq!(list.counts(), (1, 2, 1));
        let old = SpiffeId::parse("spiffe://shop.example/ns/shop/sa/old").unwrap();
        assert_eq!(list.check_spiffe_id(&old), Err(Reason::SpiffeIdRevoked));
        assert!(RevocationList::new().is_empty());
    }

    #[test]
    fn rejects_bad_entries() {
        let bad = |cfg: RevokedConfig| RevocationList::from_config(&cfg, &[]).unwrap_err();
        assert_eq!(
            bad(RevokedConfig {
                spiffe_ids: vec!["https://x".into()],
                ..RevokedConfig::default()
            }),
            RevocationError::BadSpiffeId("https://x".into())
        );
        assert_eq!(
            bad(RevokedConfig {
                serials: vec!["xyz".into()],
                ..RevokedConfig::default()
            }),
            RevocationError::BadSerial("xyz".into())
        );
        assert_eq!(
            bad(RevokedConfig {
                jtis: vec![String::new()],
                ..RevokedConfig::default()
            }),
            RevocationError::EmptyJti
        );
        assert!(matches!(
            RevocationList::from_json(br#"{"jtis":["a"],"other":1}"#),
            Err(RevocationError::Json(_))
        ));
        assert!(matches!(
            RevocationList::from_json(b"[]"),
            Err(RevocationError::Json(_))
        ));
        let list = RevocationList::from_json(br#"{"jtis":["a"]}"#).unwrap();
        assert!(list.is_jti_revoked("a"));
    }
}
