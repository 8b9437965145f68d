//! Peer identity from what Envoy tells us about the TLS connection.
//! (API skeleton; the identity helper fills in the implementation.)

use std::collections::HashSet;

use crate::config::PeerCertificateSource;
use crate::decision::Reason;
use crate::spiffe::SpiffeId;

/// What the filter read from Envoy for one request.
#[derive(Debug, Clone, Copy, Default)]
pub struct PeerInputs<'a> {
    /// `connection.sha256_peer_certificate_digest`: 64 lowercase hex chars;
    /// `None` when the connection had no client certificate.
    pub cert_digest: Option<&'a str>,
    /// `connection.uri_san_peer_certificate` (Envoy shows only the first URI SAN).
    pub uri_san: Option<&'a str>,
    /// The `x-forwarded-client-cert` header value, when present.
    pub xfcc: Option<&'a str>,
}

/// The checks the configuration and policy ask for.
#[derive(Debug, Clone, Copy)]
pub struct IdentityChecks<'a> {
    /// Where the certificate comes from.
    pub source: PeerCertificateSource,
    /// Policy bound on notAfter - notBefore, seconds.
    pub max_cert_lifetime_secs: Option<u64>,
    /// Normalized revoked serials (see `config::normalize_serial`).
    pub revoked_serials: &'a HashSet<String>,
}

/// Bounded cache of parsed peer certificates, keyed by certificate digest.
#[derive(Debug, Default)]
pub struct CertCache {}

impl CertCache {
    /// A cache holding at most `capacity` certificates.
    pub fn new(_capacity: usize) -> Self {
        CertCache {}
    }
}

/// Verifies the peer for one request; `now_secs` is Unix time.
pub fn verify_peer<'c>(
    _checks: &IdentityChecks<'_>,
    _inputs: &PeerInputs<'_>,
    _now_secs: u64,
    _cache: &'c mut CertCache,
) -> Result<&'c SpiffeId, Reason> {
    Err(Reason::IdentityUnavailable)
}
