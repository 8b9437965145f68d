//! Peer certificates: `CertFacts::from_der` on arbitrary DER, and the whole
//! forwarded-certificate path (`identity::verify_peer`) with those bytes
//! wrapped the way Envoy forwards them.
//!
//! Properties: never panics; `verify_peer` accepts a certificate only when
//! its digest is the connection's (a one-bit change of the digest is always
//! refused), and then the identity is exactly the certificate's one URI
//! SAN; a cache hit answers what the first parse answered.
#![no_main]

use std::collections::HashSet;

use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use meshward_engine::identity::PeerCertificateSource;
use meshward_engine::identity::cert::{self, CertFacts};
use meshward_engine::identity::{verify_peer, CertCache, IdentityChecks, PeerInputs};
use meshward_engine::Reason;
use meshward_fuzz::NOW;
use sha2::{Digest as _, Sha256};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// URL-encoded PEM, as Envoy writes `Cert=` in x-forwarded-client-cert.
fn forwarded_pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap_or(""));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    let mut out = String::new();
    for b in pem.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fuzz_target!(|der: &[u8]| {
    let facts = CertFacts::from_der(der);
    let _ = cert::pem_certificate_to_der(der);

    let digest: [u8; 32] = Sha256::digest(der).into();
    let uri = facts.as_ref().ok().map(|f| f.spiffe_id.as_str().to_owned());
    let xfcc = match &uri {
        Some(u) => format!(
            "Hash={};Cert=\"{}\";URI={u}",
            hex(&digest),
            forwarded_pem(der)
        ),
        None => format!("Hash={};Cert=\"{}\"", hex(&digest), forwarded_pem(der)),
    };
    // Check the window at a moment inside it, when there is one.
    let now = facts.as_ref().map_or(NOW, |f| f.not_before);
    let none = HashSet::new();
    let checks = IdentityChecks {
        source: PeerCertificateSource::Forwarded,
        max_cert_lifetime_secs: None,
        revoked_serials: &none,
    };
    let digest_hex = hex(&digest);
    let inputs = PeerInputs {
        cert_digest: Some(&digest_hex),
        uri_san: uri.as_deref(),
        xfcc: Some(&xfcc),
    };
    let mut cache = CertCache::new(4);
    let first = verify_peer(&checks, &inputs, now, &mut cache).cloned();
    let second = verify_peer(&checks, &inputs, now, &mut cache).cloned();
    assert_eq!(first, second, "a cache hit answered differently");
    match (&first, &facts) {
        (Ok(id), Ok(f)) => assert_eq!(id, &f.spiffe_id),
        (Ok(id), Err(e)) => {
            panic!("verify_peer accepted {id:?} from a certificate that does not parse ({e:?})")
        }
        (Err(_), _) => {}
    }

    // Another connection's digest: never accepted.
    let mut other = digest;
    other[0] ^= 1;
    let other_hex = hex(&other);
    let forged = PeerInputs {
        cert_digest: Some(&other_hex),
        ..inputs
    };
    let mut cache = CertCache::new(4);
    let got = verify_peer(&checks, &forged, now, &mut cache);
    assert!(
        matches!(
            got,
            Err(Reason::ForwardedCertMismatch | Reason::MalformedForwardedCert)
        ),
        "a certificate was accepted for another connection's digest: {got:?}"
    );

    // The connection-only path on whatever text the bytes are.
    let text = String::from_utf8_lossy(der);
    let inputs = PeerInputs {
        cert_digest: Some(&digest_hex),
        uri_san: Some(&text),
        xfcc: None,
    };
    let checks = IdentityChecks {
        source: PeerCertificateSource::ConnectionOnly,
        ..checks
    };
    let mut cache = CertCache::new(4);
    if let Ok(id) = verify_peer(&checks, &inputs, NOW, &mut cache) {
        assert_eq!(id.as_str(), text);
    }
});
