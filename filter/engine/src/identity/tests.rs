//! `verify_peer` end to end over real certificates and Envoy-shaped headers.

use std::collections::HashSet;
use std::sync::OnceLock;

use proptest::prelude::*;

use super::test_certs::{san_dns, san_uri, url_encode, Svid, SvidSpec, ORDERS, PAYMENTS, T0};
use super::*;

const NOW: u64 = T0 + 600;

fn checks(revoked: &HashSet<String>) -> IdentityChecks<'_> {
    IdentityChecks {
        source: PeerCertificateSource::Forwarded,
        max_cert_lifetime_secs: Some(24 * 3600),
        revoked_serials: revoked,
    }
}

/// A connection presenting `svid`, as Envoy describes it to the filter.
struct Conn {
    svid: Svid,
    xfcc: String,
    uri_san: Option<String>,
}

impl Conn {
    fn new(spec: SvidSpec) -> Conn {
        let uri_san = spec.sans.iter().find_map(|s| match s {
            rcgen::SanType::URI(u) => Some(u.as_str().to_owned()),
            _ => None,
        });
        let sans = spec.sans.clone();
        let svid = Svid::issue(spec);
        let xfcc = svid.envoy_xfcc(&sans);
        Conn {
            svid,
            xfcc,
            uri_san,
        }
    }

    fn inputs(&self) -> PeerInputs<'_> {
        PeerInputs {
            cert_digest: Some(&self.svid.digest),
            uri_san: self.uri_san.as_deref(),
            xfcc: Some(&self.xfcc),
        }
    }

    fn with_xfcc<'a>(&'a self, xfcc: Option<&'a str>) -> PeerInputs<'a> {
        PeerInputs {
            xfcc,
            ..self.inputs()
        }
    }
}

fn verify(inputs: &PeerInputs<'_>, cache: &mut CertCache) -> Result<String, Reason> {
    let none = HashSet::new();
    verify_peer(&checks(&none), inputs, NOW, cache).map(|id| id.as_str().to_owned())
}

#[test]
fn verifies_an_svid_and_caches_it() {
    let conn = Conn::new(SvidSpec::default());
    let mut cache = CertCache::new(8);
    assert_eq!(verify(&conn.inputs(), &mut cache).as_deref(), Ok(ORDERS));
    assert_eq!(cache.stats(), CacheStats { hits: 0, parses: 1 });
    assert_eq!(verify(&conn.inputs(), &mut cache).as_deref(), Ok(ORDERS));
    assert_eq!(cache.stats(), CacheStats { hits: 1, parses: 1 });
    // A hit does not need (or read) the header.
    assert_eq!(
        verify(&conn.with_xfcc(None), &mut cache).as_deref(),
        Ok(ORDERS)
    );
    assert_eq!(
        verify(&conn.with_xfcc(Some("garbage")), &mut cache).as_deref(),
        Ok(ORDERS)
    );
    assert_eq!(cache.stats(), CacheStats { hits: 3, parses: 1 });
    assert_eq!(cache.len(), 1);
}

#[test]
fn returns_the_certificate_facts() {
    let conn = Conn::new(SvidSpec::default());
    let mut cache = CertCache::default();
    let none = HashSet::new();
    let peer = verify_peer_cert(&checks(&none), &conn.inputs(), NOW, &mut cache).unwrap();
    assert_eq!(peer.id.as_str(), ORDERS);
    let facts = peer.cert.unwrap();
    assert_eq!(facts.serial, "a1b2c");
    assert_eq!((facts.not_before, facts.not_after), (T0, T0 + 3600));
}

#[test]
fn digest_case_does_not_matter_and_garbage_digest_fails_closed() {
    let conn = Conn::new(SvidSpec::default());
    let mut cache = CertCache::new(8);
    let upper = conn.svid.digest.to_ascii_uppercase();
    let inputs = PeerInputs {
        cert_digest: Some(&upper),
        ..conn.inputs()
    };
    assert_eq!(verify(&inputs, &mut cache).as_deref(), Ok(ORDERS));
    for bad in ["", "abc", &conn.svid.digest[1..], &"zz".repeat(32)] {
        let inputs = PeerInputs {
            cert_digest: Some(bad),
            ..conn.inputs()
        };
        assert_eq!(
            verify(&inputs, &mut cache),
            Err(Reason::IdentityUnavailable),
            "{bad}"
        );
    }
}

#[test]
fn no_certificate() {
    let conn = Conn::new(SvidSpec::default());
    let mut cache = CertCache::new(8);
    // A header without a TLS peer certificate is never believed.
    let inputs = PeerInputs {
        cert_digest: None,
        ..conn.inputs()
    };
    assert_eq!(verify(&inputs, &mut cache), Err(Reason::NoPeerCertificate));
    assert_eq!(
        verify(&PeerInputs::default(), &mut cache),
        Err(Reason::NoPeerCertificate)
    );
    assert!(cache.is_empty());
}

#[test]
fn header_problems_are_not_cached() {
    let conn = Conn::new(SvidSpec::default());
    let mut cache = CertCache::new(8);
    assert_eq!(
        verify(&conn.with_xfcc(None), &mut cache),
        Err(Reason::MissingForwardedCert)
    );
    let no_cert = format!("Hash={};URI={ORDERS}", conn.svid.digest);
    assert_eq!(
        verify(&conn.with_xfcc(Some(&no_cert)), &mut cache),
        Err(Reason::MissingForwardedCert)
    );
    let two = format!("{},{}", conn.xfcc, conn.xfcc);
    assert_eq!(
        verify(&conn.with_xfcc(Some(&two)), &mut cache),
        Err(Reason::MalformedForwardedCert)
    );
    let unbalanced = conn.xfcc.replacen("Cert=\"", "Cert=", 1);
    assert_eq!(
        verify(&conn.with_xfcc(Some(&unbalanced)), &mut cache),
        Err(Reason::MalformedForwardedCert)
    );
    assert!(cache.is_empty());
    assert_eq!(cache.stats().parses, 0);
    // The genuine header still works afterwards.
    assert_eq!(verify(&conn.inputs(), &mut cache).as_deref(), Ok(ORDERS));
}

#[test]
fn undecodable_certificates_are_malformed() {
    let conn = Conn::new(SvidSpec::default());
    let mut cache = CertCache::new(8);
    let d = &conn.svid.digest;
    let pem_of = |der: &[u8]| {
        url_encode(&der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, der).unwrap())
    };
    let cases = [
        format!("Hash={d};Cert=\"%zz\""),
        format!("Hash={d};Cert=\"not pem\""),
        format!(
            "Hash={d};Cert=\"{}\"",
            url_encode(&conn.svid.pem.replace("CERTIFICATE", "X509 CRL"))
        ),
        format!(
            "Hash={d};Cert=\"{}{}\"",
            url_encode(&conn.svid.pem),
            url_encode(&conn.svid.pem)
        ),
        "x".repeat(super::xfcc::MAX_XFCC_LEN + 1),
    ];
    for header in &cases {
        assert_eq!(
            verify(&conn.with_xfcc(Some(header)), &mut cache),
            Err(Reason::MalformedForwardedCert),
            "{}",
            &header[..header.len().min(80)]
        );
    }
    // A well-formed PEM whose DER is not the connection's: a mismatch.
    let truncated = format!("Hash={d};Cert=\"{}\"", pem_of(&conn.svid.der[..20]));
    assert_eq!(
        verify(&conn.with_xfcc(Some(&truncated)), &mut cache),
        Err(Reason::ForwardedCertMismatch)
    );
    assert!(cache.is_empty());
    // DER that is not a certificate but is what the connection presented
    // (digest matches): the failure is about the certificate and is cached.
    let junk = Svid::from_der(b"\x30\x03\x02\x01\x01".to_vec());
    let header = format!("Hash={};Cert=\"{}\"", junk.digest, url_encode(&junk.pem));
    let inputs = PeerInputs {
        cert_digest: Some(&junk.digest),
        uri_san: None,
        xfcc: Some(&header),
    };
    assert_eq!(
        verify(&inputs, &mut cache),
        Err(Reason::MalformedForwardedCert)
    );
    assert_eq!(
        verify(&inputs, &mut cache),
        Err(Reason::MalformedForwardedCert)
    );
    assert_eq!(cache.stats(), CacheStats { hits: 1, parses: 1 });
}

#[test]
fn hash_must_match_the_connection() {
    let conn = Conn::new(SvidSpec::default());
    let mut cache = CertCache::new(8);
    let wrong = "0".repeat(64);
    let forged = conn.xfcc.replace(&conn.svid.digest, &wrong);
    assert_eq!(
        verify(&conn.with_xfcc(Some(&forged)), &mut cache),
        Err(Reason::ForwardedCertMismatch)
    );
    let not_hex = conn.xfcc.replace(&conn.svid.digest, "nope");
    assert_eq!(
        verify(&conn.with_xfcc(Some(&not_hex)), &mut cache),
        Err(Reason::ForwardedCertMismatch)
    );
    // Hash is optional; Cert still binds.
    let no_hash = conn
        .xfcc
        .replace(&format!("Hash={};", conn.svid.digest), "");
    assert!(!no_hash.contains("Hash="));
    assert_eq!(
        verify(&conn.with_xfcc(Some(&no_hash)), &mut cache).as_deref(),
        Ok(ORDERS)
    );
}

#[test]
fn smuggled_header_from_another_connection_is_rejected() {
    // The attacker holds a valid `orders` certificate and sends the header that
    // Envoy wrote for a `payments` connection (self-consistent Hash and Cert).
    let attacker = Conn::new(SvidSpec::default());
    let victim = Conn::new(SvidSpec {
        sans: vec![san_uri(PAYMENTS)],
        ..SvidSpec::default()
    });
    let mut cache = CertCache::new(8);
    let smuggled = PeerInputs {
        cert_digest: Some(&attacker.svid.digest),
        uri_san: attacker.uri_san.as_deref(),
        xfcc: Some(&victim.xfcc),
    };
    assert_eq!(
        verify(&smuggled, &mut cache),
        Err(Reason::ForwardedCertMismatch)
    );
    // Same, with the Hash rewritten to the attacker's digest: Cert still differs.
    let rewritten = victim
        .xfcc
        .replace(&victim.svid.digest, &attacker.svid.digest);
    let smuggled = PeerInputs {
        xfcc: Some(&rewritten),
        uri_san: None,
        ..smuggled
    };
    assert_eq!(
        verify(&smuggled, &mut cache),
        Err(Reason::ForwardedCertMismatch)
    );
    // Nothing was cached, so neither connection is poisoned.
    assert!(cache.is_empty());
    assert_eq!(
        verify(&attacker.inputs(), &mut cache).as_deref(),
        Ok(ORDERS)
    );
    assert_eq!(
        verify(&victim.inputs(), &mut cache).as_deref(),
        Ok(PAYMENTS)
    );
}

#[test]
fn uri_san_attribute_must_agree() {
    let conn = Conn::new(SvidSpec::default());
    let mut cache = CertCache::new(8);
    let other = PeerInputs {
        uri_san: Some(PAYMENTS),
        ..conn.inputs()
    };
    assert_eq!(
        verify(&other, &mut cache),
        Err(Reason::ForwardedCertMismatch)
    );
    // Checked per request, also on a hit.
    assert_eq!(verify(&conn.inputs(), &mut cache).as_deref(), Ok(ORDERS));
    assert_eq!(
        verify(&other, &mut cache),
        Err(Reason::ForwardedCertMismatch)
    );
    let absent = PeerInputs {
        uri_san: None,
        ..conn.inputs()
    };
    assert_eq!(verify(&absent, &mut cache).as_deref(), Ok(ORDERS));
}

#[test]
fn certificate_reasons_are_cached() {
    let cases = [
        (
            vec![san_uri(ORDERS), san_uri(PAYMENTS)],
            Reason::MultipleUriSans,
        ),
        (vec![san_dns("orders.shop.svc")], Reason::PeerNotSpiffe),
        (
            vec![san_uri("https://orders.example/")],
            Reason::PeerNotSpiffe,
        ),
        (
            vec![san_uri("spiffe://prod.example/ns//orders")],
            Reason::MalformedSpiffeId,
        ),
    ];
    for (sans, want) in cases {
        let conn = Conn::new(SvidSpec {
            sans: sans.clone(),
            ..SvidSpec::default()
        });
        let mut cache = CertCache::new(8);
        assert_eq!(verify(&conn.inputs(), &mut cache), Err(want), "{sans:?}");
        assert_eq!(verify(&conn.inputs(), &mut cache), Err(want), "{sans:?}");
        assert_eq!(cache.stats(), CacheStats { hits: 1, parses: 1 }, "{sans:?}");
    }
}

#[test]
fn two_uri_sans_are_caught_although_envoy_shows_one() {
    let conn = Conn::new(SvidSpec {
        sans: vec![san_uri(ORDERS), san_uri(PAYMENTS)],
        ..SvidSpec::default()
    });
    // Envoy's attribute shows the first URI SAN only.
    assert_eq!(conn.uri_san.as_deref(), Some(ORDERS));
    assert_eq!(conn.xfcc.matches(";URI=").count(), 2);
    let mut cache = CertCache::new(8);
    assert_eq!(
        verify(&conn.inputs(), &mut cache),
        Err(Reason::MultipleUriSans)
    );
}

#[test]
fn lifetime_validity_and_revocation_are_per_request() {
    let long = Conn::new(SvidSpec {
        not_after: T0 + 48 * 3600,
        ..SvidSpec::default()
    });
    let mut cache = CertCache::new(8);
    let none = HashSet::new();
    let mut c = checks(&none);
    assert_eq!(
        verify_peer(&c, &long.inputs(), NOW, &mut cache),
        Err(Reason::CertLifetimeExceedsBound)
    );
    c.max_cert_lifetime_secs = Some(48 * 3600);
    assert!(verify_peer(&c, &long.inputs(), NOW, &mut cache).is_ok());
    c.max_cert_lifetime_secs = None;
    assert!(verify_peer(&c, &long.inputs(), NOW, &mut cache).is_ok());

    let conn = Conn::new(SvidSpec::default());
    let revoked: HashSet<String> = ["a1b2c".to_owned()].into();
    assert!(verify_peer(&checks(&none), &conn.inputs(), NOW, &mut cache).is_ok());
    assert_eq!(
        verify_peer(&checks(&revoked), &conn.inputs(), NOW, &mut cache),
        Err(Reason::CertRevoked)
    );
    assert_eq!(
        verify_peer(&checks(&none), &conn.inputs(), T0 + 3601, &mut cache),
        Err(Reason::CertNotCurrentlyValid)
    );
    assert_eq!(
        verify_peer(&checks(&none), &conn.inputs(), T0 - 1, &mut cache),
        Err(Reason::CertNotCurrentlyValid)
    );
    assert!(verify_peer(&checks(&none), &conn.inputs(), T0 + 3600, &mut cache).is_ok());
    assert_eq!(cache.stats().parses, 2);
}

#[test]
fn expired_certificate() {
    let conn = Conn::new(SvidSpec {
        not_before: T0 - 7200,
        not_after: T0 - 3600,
        ..SvidSpec::default()
    });
    let mut cache = CertCache::new(8);
    assert_eq!(
        verify(&conn.inputs(), &mut cache),
        Err(Reason::CertNotCurrentlyValid)
    );
}

#[test]
fn cache_stays_bounded() {
    let mut cache = CertCache::new(3);
    let conns: Vec<Conn> = (0u8..5)
        .map(|i| {
            Conn::new(SvidSpec {
                serial: vec![0x10, i],
                ..SvidSpec::default()
            })
        })
        .collect();
    for conn in &conns {
        assert_eq!(verify(&conn.inputs(), &mut cache).as_deref(), Ok(ORDERS));
        assert!(cache.len() <= 3);
    }
    assert_eq!(cache.len(), 3);
    assert_eq!(cache.evictions(), 2);
    // The newest are hits; the oldest was evicted and is parsed again.
    assert!(verify(&conns[4].inputs(), &mut cache).is_ok());
    assert_eq!(cache.stats(), CacheStats { hits: 1, parses: 5 });
    assert!(verify(&conns[0].inputs(), &mut cache).is_ok());
    assert_eq!(cache.stats(), CacheStats { hits: 1, parses: 6 });
    // Evicted and no header: the connection must send it again.
    assert_eq!(
        verify(&conns[1].with_xfcc(None), &mut cache),
        Err(Reason::MissingForwardedCert)
    );
    cache.clear();
    assert!(cache.is_empty());
}

fn connection_only(
    revoked: &HashSet<String>,
    max: Option<u64>,
    digest: Option<&str>,
    uri_san: Option<&str>,
    cache: &mut CertCache,
) -> Result<String, Reason> {
    let checks = IdentityChecks {
        source: PeerCertificateSource::ConnectionOnly,
        max_cert_lifetime_secs: max,
        revoked_serials: revoked,
    };
    let inputs = PeerInputs {
        cert_digest: digest,
        uri_san,
        xfcc: None,
    };
    verify_peer(&checks, &inputs, NOW, cache).map(|id| id.as_str().to_owned())
}

#[test]
fn connection_only_mode() {
    let none = HashSet::new();
    let revoked: HashSet<String> = ["a1b2c".to_owned()].into();
    let d = Some("ab".repeat(32));
    let d = d.as_deref();
    let mut cache = CertCache::new(2);
    let mut run =
        |revoked, max, digest, uri| connection_only(revoked, max, digest, uri, &mut cache);
    assert_eq!(run(&none, None, d, Some(ORDERS)).as_deref(), Ok(ORDERS));
    assert_eq!(run(&none, None, None, None), Err(Reason::NoPeerCertificate));
    assert_eq!(run(&none, None, d, None), Err(Reason::PeerNotSpiffe));
    assert_eq!(run(&none, None, d, Some("")), Err(Reason::PeerNotSpiffe));
    assert_eq!(
        run(&none, None, d, Some("https://orders.example")),
        Err(Reason::PeerNotSpiffe)
    );
    assert_eq!(
        run(&none, None, d, Some("spiffe://Prod/x")),
        Err(Reason::MalformedSpiffeId)
    );
    assert_eq!(
        run(&none, Some(86400), d, Some(ORDERS)),
        Err(Reason::MissingForwardedCert)
    );
    assert_eq!(
        run(&revoked, None, d, Some(ORDERS)),
        Err(Reason::MissingForwardedCert)
    );
    assert_eq!(run(&none, None, d, Some(ORDERS)).as_deref(), Ok(ORDERS));
    assert_eq!(run(&none, None, d, Some(PAYMENTS)).as_deref(), Ok(PAYMENTS));
    assert_eq!(
        run(&none, None, d, Some("spiffe://prod.example/x")).as_deref(),
        Ok("spiffe://prod.example/x")
    );
    assert_eq!(cache.stats(), CacheStats { hits: 1, parses: 3 });
    assert_eq!(cache.len(), 2);
}

#[test]
fn connection_only_returns_no_facts() {
    let none = HashSet::new();
    let checks = IdentityChecks {
        source: PeerCertificateSource::ConnectionOnly,
        max_cert_lifetime_secs: None,
        revoked_serials: &none,
    };
    let inputs = PeerInputs {
        cert_digest: None,
        uri_san: Some(ORDERS),
        xfcc: None,
    };
    let mut cache = CertCache::new(1);
    let peer = verify_peer_cert(&checks, &inputs, NOW, &mut cache).unwrap();
    assert_eq!((peer.id.as_str(), peer.cert), (ORDERS, None));
}

/// Certificates shared by the property tests (issuing is the slow part).
fn fixtures() -> &'static [Conn] {
    static FIXTURES: OnceLock<Vec<Conn>> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        vec![
            Conn::new(SvidSpec::default()),
            Conn::new(SvidSpec {
                sans: vec![san_uri(ORDERS), san_uri(PAYMENTS)],
                ..SvidSpec::default()
            }),
        ]
    })
}

fn arb_checks_source() -> impl Strategy<Value = PeerCertificateSource> {
    prop_oneof![
        Just(PeerCertificateSource::Forwarded),
        Just(PeerCertificateSource::ConnectionOnly)
    ]
}

proptest! {
    #[test]
    fn verify_peer_never_panics(
        source in arb_checks_source(),
        max in proptest::option::of(any::<u64>()),
        revoke in any::<bool>(),
        digest in proptest::option::of(prop_oneof!["[0-9a-fA-F]{64}", any::<String>()]),
        uri_san in proptest::option::of(prop_oneof!["spiffe://[a-z.]{0,8}(/[a-z.]{0,4}){0,3}", any::<String>()]),
        xfcc in proptest::option::of(prop_oneof![
            "((By|Hash|Cert|URI|DNS|Subject)=(\"[^\"]{0,12}\"|[a-z%0-9:/]{0,12})[;,]?){0,6}",
            any::<String>(),
        ]),
        now in any::<u64>(),
        capacity in 0usize..3,
    ) {
        let revoked: HashSet<String> = if revoke { ["a1b2c".to_owned()].into() } else { HashSet::new() };
        let checks = IdentityChecks { source, max_cert_lifetime_secs: max, revoked_serials: &revoked };
        let inputs = PeerInputs {
            cert_digest: digest.as_deref(),
            uri_san: uri_san.as_deref(),
            xfcc: xfcc.as_deref(),
        };
        let mut cache = CertCache::new(capacity);
        let first = verify_peer(&checks, &inputs, now, &mut cache).cloned();
        let second = verify_peer(&checks, &inputs, now, &mut cache).cloned();
        prop_assert_eq!(first, second);
        prop_assert!(cache.len() <= 2 * cache.capacity());
    }

    /// Mangling a genuine header never yields a different identity: the
    /// outcome is the genuine SPIFFE ID or a deny.
    #[test]
    fn mangled_headers_never_lend_another_identity(
        which in 0usize..2,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6),
        now in (T0 - 10)..(T0 + 4000),
    ) {
        let conn = &fixtures()[which];
        let mut bytes = conn.xfcc.clone().into_bytes();
        for (at, byte, op) in edits {
            let i = at.index(bytes.len().max(1));
            match op {
                0 if i < bytes.len() => bytes[i] = byte,
                1 => bytes.insert(i.min(bytes.len()), byte),
                _ if i < bytes.len() => { bytes.remove(i); }
                _ => {}
            }
        }
        let header = String::from_utf8_lossy(&bytes);
        let none = HashSet::new();
        let mut cache = CertCache::new(4);
        let got = verify_peer(&checks(&none), &conn.with_xfcc(Some(&header)), now, &mut cache)
            .map(|id| id.as_str().to_owned());
        if let Ok(id) = got {
            prop_assert_eq!(which, 0);
            prop_assert_eq!(id, ORDERS);
        }
    }
}
