//! The filter's plugin configuration: the JSON that Envoy's `configuration`
//! (a `google.protobuf.StringValue`) or Istio's `WasmPlugin.pluginConfig`
//! delivers. It carries the compiled policy (base64) plus runtime data that
//! may change without recompiling the policy (revoked serials).
//!
//! ```json
//! {
//!   "policy": "TVdQQwEA...",
//!   "revoked_serials": ["0a1b2c"],
//!   "peer_certificate": "forwarded",
//!   "audit_log": "all"
//! }
//! ```

use std::collections::HashSet;

use base64::Engine as _;
use serde::Deserialize;

use crate::policy::{Policy, PolicyError};

/// Largest configuration we read (a 10,000-rule policy in base64 is ~2 MiB).
pub const MAX_CONFIG_LEN: usize = 32 * 1024 * 1024;

/// Where the filter gets the peer certificate from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerCertificateSource {
    /// Require the certificate in `x-forwarded-client-cert` (set by Envoy with
    /// `SANITIZE_SET` and `cert: true`), bound to the connection by its SHA-256
    /// digest. Enables lifetime bounds, revocation and the one-URI-SAN check.
    #[default]
    Forwarded,
    /// Only Envoy's connection attributes (first URI SAN). Lifetime bounds and
    /// serial revocation cannot be checked, so a policy that sets a lifetime
    /// bound, or a non-empty revocation list, denies every request.
    ConnectionOnly,
}

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

/// The plugin configuration as written in JSON.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    policy: String,
    #[serde(default)]
    revoked_serials: Vec<String>,
    #[serde(default)]
    peer_certificate: PeerCertificateSource,
    #[serde(default)]
    audit_log: AuditLog,
}

/// Why a plugin configuration was rejected. The filter logs this and fails closed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
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
    /// A revoked serial is not hex.
    #[error("revoked serial `{0}` is not a hexadecimal certificate serial number")]
    BadSerial(String),
}

/// A loaded, validated configuration.
#[derive(Debug)]
pub struct FilterConfig {
    /// The decoded, indexed policy.
    pub policy: Policy,
    /// Revoked certificate serials, normalized (lowercase hex, no separators,
    /// no leading zero bytes).
    pub revoked_serials: HashSet<String>,
    /// Where the peer certificate comes from.
    pub peer_certificate: PeerCertificateSource,
    /// Which decisions to log.
    pub audit_log: AuditLog,
}

impl FilterConfig {
    /// Parses and validates the plugin configuration bytes.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        if bytes.is_empty() {
            return Err(ConfigError::Missing);
        }
        if bytes.len() > MAX_CONFIG_LEN {
            return Err(ConfigError::TooLarge(bytes.len()));
        }
        let raw: RawConfig = serde_json::from_slice(bytes)?;
        let policy_bytes = base64::engine::general_purpose::STANDARD.decode(raw.policy.trim())?;
        let policy = Policy::decode(&policy_bytes)?;
        let revoked_serials = raw
            .revoked_serials
            .iter()
            .map(|s| normalize_serial(s).ok_or_else(|| ConfigError::BadSerial(s.clone())))
            .collect::<Result<_, _>>()?;
        Ok(FilterConfig {
            policy,
            revoked_serials,
            peer_certificate: raw.peer_certificate,
            audit_log: raw.audit_log,
        })
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
    fn serials_normalize() {
        assert_eq!(normalize_serial("0A:1b:2C").as_deref(), Some("a1b2c"));
        assert_eq!(normalize_serial("0x00ff").as_deref(), Some("ff"));
        assert_eq!(normalize_serial("00").as_deref(), Some("0"));
        assert_eq!(normalize_serial("xyz"), None);
        assert_eq!(normalize_serial(""), None);
    }

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
}
