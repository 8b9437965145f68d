//! Peer identity from what Envoy tells us about the TLS connection.
//!
//! The direct peer's identity is the SPIFFE ID in its mTLS certificate. Envoy
//! shows the filter three things about that certificate:
//!
//! * `connection.sha256_peer_certificate_digest`: computed by Envoy from the
//!   handshake; the filter trusts it;
//! * `connection.uri_san_peer_certificate`: only the *first* URI SAN;
//! * with `forward_client_cert_details: SANITIZE_SET` and `cert: true`, the
//!   whole certificate as URL-encoded PEM in `x-forwarded-client-cert`.
//!
//! In [`PeerCertificateSource::Forwarded`] mode (the default) the filter reads
//! the certificate from the header and believes it only when SHA-256 of its
//! DER equals the connection's digest. A header forged by a client (or an app
//! upstream) cannot carry another connection's certificate past that check,
//! so even a misconfigured `forward_client_cert_details` cannot lend the
//! caller an identity it did not prove in the handshake. The certificate then
//! gives what the attribute cannot: *every* URI SAN (exactly one is allowed),
//! the serial (revocation) and the validity window (lifetime bounds).
//!
//! Parsing happens once per certificate: [`CertCache`] keys the outcome by the
//! digest. On a hit the header is not even read, and the request path
//! allocates nothing; the checks that depend on time, policy or the
//! revocation list run on every request.
//!
//! In [`PeerCertificateSource::ConnectionOnly`] mode only the URI SAN
//! attribute is used; lifetime bounds and serial revocation cannot be checked
//! there, so asking for them fails closed. That mode also cannot notice a
//! certificate expiring while a long-lived connection stays open, which
//! `Forwarded` catches on the next request: another reason it is the default.

pub(crate) mod cache;
pub mod cert;
pub(crate) mod claim_path;
pub(crate) mod host_principal;
pub(crate) mod jwks;
pub(crate) mod jwt;
pub(crate) mod revocation;
#[cfg(all(test, not(target_family = "wasm")))]
pub(crate) mod test_certs;
#[cfg(test)]
mod test_tokens;
pub(crate) mod token_cache;
pub(crate) mod tokens;
mod verifier;
pub mod xfcc;

use std::collections::HashSet;

use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use self::cache::{DigestHash, Fifo};
use self::cert::{parse_hex_digest, CertFacts, Digest};
pub use self::claim_path::{ClaimPath, ClaimPathError, MAX_CLAIM_PATH_KEYS, MAX_CLAIM_PATH_LEN};
pub use self::host_principal::{verify_host_principal, ISTIO_PEER_PRINCIPAL_KEY};
pub use self::jwks::{
    Alg, AlgSet, Jwk, JwksError, KeyOwner, KeyPurpose, KeySet, KeyStore, Rotation, MAX_JWKS_LEN,
    MAX_KEYS_PER_SET, MAX_RSA_BITS, MIN_RSA_BITS,
};
pub use self::jwt::{verify_jwt_svid, JwtSvid, JwtSvidContext, JwtSvidSettings, TokenRules};
pub use self::revocation::{
    normalize_serial, RevocationError, RevocationList, RevokedConfig, MAX_REVOCATION_LEN,
};
pub use self::token_cache::{TokenCache, TokenCacheStats};
pub use self::tokens::{
    verify_user_token, ClaimValue, IssuerSettings, UserClaims, UserTokenContext, UserTokenSettings,
};
use crate::decision::Reason;
use crate::spiffe::SpiffeId;

/// A sensible [`CertCache`] size: one entry per distinct peer certificate
/// (workload SVIDs rotate, so a busy service sees a few per caller); each
/// entry is a couple of hundred bytes.
pub(crate) const DEFAULT_CERT_CACHE_CAPACITY: usize = 1024;

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
    /// No certificate on this connection: the peer's principal is a
    /// filter-state object the host set from another connection's
    /// certificate (`peer_principal_key`, by default
    /// `io.istio.peer_principal`, which an Istio waypoint sets from the HBONE
    /// peer). Verified by [`verify_host_principal`]: SPIFFE
    /// syntax, one identity, trusted trust domain, SPIFFE-ID revocation.
    /// Lifetime bounds and serial revocation cannot be checked: a policy
    /// with `max_cert_lifetime`, or configured revoked serials, is refused
    /// at load ([`crate::config::ConfigError::NeedsCertificate`]).
    FilterState,
}

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
    /// Normalized revoked serials (see [`revocation::normalize_serial`]).
    pub revoked_serials: &'a HashSet<String>,
}

/// Bounded cache of parsed peer certificates, keyed by certificate digest.
///
/// It holds what parsing a certificate concluded (its [`CertFacts`], or the
/// [`Reason`] it is unusable), never a per-request verdict. Full means the
/// oldest entry goes (FIFO). In `ConnectionOnly` mode it holds parsed URI SANs,
/// keyed by the URI text, under the same bound.
#[derive(Debug)]
pub struct CertCache {
    // INVARIANT: an entry is a function of the DER whose SHA-256 is its key;
    // nothing that depends on the header, the policy or the clock is stored.
    certs: Fifo<Digest, Result<CertFacts, Reason>, DigestHash>,
    uris: Fifo<String, SpiffeId>,
    stats: CacheStats,
}

/// Counters for the filter's stats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Certificates (or URI SANs) parsed and stored.
    pub parses: u64,
}

impl Default for CertCache {
    fn default() -> Self {
        CertCache::new(DEFAULT_CERT_CACHE_CAPACITY)
    }
}

impl CertCache {
    /// A cache holding at most `capacity` certificates (a capacity of 0 is
    /// taken as 1: the verified identity is lent out of the cache).
    pub fn new(capacity: usize) -> Self {
        CertCache {
            certs: Fifo::new(capacity),
            uris: Fifo::new(capacity),
            stats: CacheStats::default(),
        }
    }

    /// Certificates currently held (plus URI SANs in `ConnectionOnly` mode).
    pub fn len(&self) -> usize {
        self.certs.len() + self.uris.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bound given to [`CertCache::new`] (at least 1).
    pub fn capacity(&self) -> usize {
        self.certs.capacity()
    }

    /// Hit and parse counters.
    pub fn stats(&self) -> CacheStats {
        self.stats
    }

    /// Entries dropped to stay within capacity.
    pub fn evictions(&self) -> u64 {
        self.certs.evictions() + self.uris.evictions()
    }

    /// Drops every entry (counters stay).
    pub fn clear(&mut self) {
        self.certs.clear();
        self.uris.clear();
    }
}

/// A verified peer: its SPIFFE ID and, when the certificate was forwarded,
/// the certificate's facts (serial and validity, for audit lines and rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct VerifiedPeer<'c> {
    /// The peer's SPIFFE ID.
    pub id: &'c SpiffeId,
    /// The certificate's facts; `None` in `ConnectionOnly` mode.
    pub cert: Option<&'c CertFacts>,
}

/// Verifies the peer for one request; `now_secs` is Unix time.
pub fn verify_peer<'c>(
    checks: &IdentityChecks<'_>,
    inputs: &PeerInputs<'_>,
    now_secs: u64,
    cache: &'c mut CertCache,
) -> Result<&'c SpiffeId, Reason> {
    verify_peer_cert(checks, inputs, now_secs, cache).map(|peer| peer.id)
}

/// [`verify_peer`], also returning the certificate's facts when it was read.
pub(crate) fn verify_peer_cert<'c>(
    checks: &IdentityChecks<'_>,
    inputs: &PeerInputs<'_>,
    now_secs: u64,
    cache: &'c mut CertCache,
) -> Result<VerifiedPeer<'c>, Reason> {
    match checks.source {
        PeerCertificateSource::Forwarded => verify_forwarded(checks, inputs, now_secs, cache),
        PeerCertificateSource::ConnectionOnly => verify_connection_only(checks, inputs, cache),
        // No certificate to verify: the host's principal is read with
        // `verify_host_principal`; reaching here is a caller's mistake.
        PeerCertificateSource::FilterState => Err(Reason::IdentityUnavailable),
    }
}

fn verify_forwarded<'c>(
    checks: &IdentityChecks<'_>,
    inputs: &PeerInputs<'_>,
    now_secs: u64,
    cache: &'c mut CertCache,
) -> Result<VerifiedPeer<'c>, Reason> {
    let digest_hex = inputs.cert_digest.ok_or(Reason::NoPeerCertificate)?;
    // Envoy always gives 64 hex digits; anything else is a host problem.
    let digest = parse_hex_digest(digest_hex).ok_or(Reason::IdentityUnavailable)?;
    let outcome = if cache.certs.contains_key(&digest) {
        cache.stats.hits += 1;
        // Found just above; the second lookup only satisfies the borrow checker.
        cache
            .certs
            .get(&digest)
            .ok_or(Reason::IdentityUnavailable)?
    } else {
        // Errors here depend on the header, not the certificate: not cached.
        let parsed = read_forwarded_cert(inputs.xfcc, &digest)?;
        cache.stats.parses += 1;
        cache.certs.insert(digest, parsed)
    };
    let facts = outcome.as_ref().map_err(|reason| *reason)?;
    if let Some(uri_san) = inputs.uri_san {
        if uri_san != facts.spiffe_id.as_str() {
            return Err(Reason::ForwardedCertMismatch);
        }
    }
    facts.check(checks, now_secs)?;
    Ok(VerifiedPeer {
        id: &facts.spiffe_id,
        cert: Some(facts),
    })
}

/// Reads the peer certificate out of the XFCC header and binds it to the
/// connection. The outer error is about the header (not cacheable); the inner
/// result is what the certificate itself says (cacheable by `digest`).
fn read_forwarded_cert(
    xfcc: Option<&str>,
    digest: &Digest,
) -> Result<Result<CertFacts, Reason>, Reason> {
    let header = xfcc.ok_or(Reason::MissingForwardedCert)?;
    let element = xfcc::parse_single(header).map_err(|_| Reason::MalformedForwardedCert)?;
    if let Some(hash) = element.hash {
        if parse_hex_digest(hash).as_ref() != Some(digest) {
            return Err(Reason::ForwardedCertMismatch);
        }
    }
    let encoded = element.cert.ok_or(Reason::MissingForwardedCert)?;
    let pem = cert::percent_decode(encoded).ok_or(Reason::MalformedForwardedCert)?;
    let der = cert::pem_certificate_to_der(&pem).ok_or(Reason::MalformedForwardedCert)?;
    if Sha256::digest(&der).as_slice() != digest.as_slice() {
        return Err(Reason::ForwardedCertMismatch);
    }
    // From here on the outcome depends only on `der`, whose hash is `digest`.
    Ok(CertFacts::from_der(&der))
}

fn verify_connection_only<'c>(
    checks: &IdentityChecks<'_>,
    inputs: &PeerInputs<'_>,
    cache: &'c mut CertCache,
) -> Result<VerifiedPeer<'c>, Reason> {
    let Some(uri) = inputs.uri_san else {
        return Err(match inputs.cert_digest {
            None => Reason::NoPeerCertificate,
            Some(_) => Reason::PeerNotSpiffe,
        });
    };
    // Lifetime and serial live in the certificate, which this mode never sees.
    if checks.max_cert_lifetime_secs.is_some() || !checks.revoked_serials.is_empty() {
        return Err(Reason::MissingForwardedCert);
    }
    let id = if cache.uris.contains_key(uri) {
        cache.stats.hits += 1;
        cache.uris.get(uri).ok_or(Reason::IdentityUnavailable)?
    } else {
        // Failures are cheap to recompute and are not cached.
        let id = cert::spiffe_id_from_uri_san(uri)?;
        cache.stats.parses += 1;
        cache.uris.insert(uri.to_owned(), id)
    };
    Ok(VerifiedPeer { id, cert: None })
}

#[cfg(test)]
mod token_tests;

// Needs rcgen (ring), which does not build for wasm32.
#[cfg(all(test, not(target_family = "wasm")))]
mod tests;
