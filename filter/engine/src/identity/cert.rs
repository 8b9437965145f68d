//! Facts about a peer certificate: decoding what Envoy forwards (URL-encoded
//! PEM) down to DER, and reading the SPIFFE ID, serial and validity window out
//! of it with `x509-cert`.
//!
//! Nothing here verifies a signature: Envoy validated the chain during the TLS
//! handshake. What the filter needs is the certificate's *content*, bound to
//! the connection by its SHA-256 digest (see [`super`]).

use der::Decode as _;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::Certificate;

use super::IdentityChecks;
use crate::decision::Reason;
use crate::identity::revocation::normalize_serial;
use crate::spiffe::SpiffeId;

/// A SHA-256 digest, the cache key for a peer certificate.
pub type Digest = [u8; 32];

/// What the filter keeps about a peer certificate once its DER parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFacts {
    /// The certificate's one URI SAN, a valid SPIFFE ID.
    pub spiffe_id: SpiffeId,
    /// Serial number as normalized lowercase hex (see [`normalize_serial`]).
    pub serial: String,
    /// notBefore, Unix seconds.
    pub not_before: u64,
    /// notAfter, Unix seconds (inclusive, as in RFC 5280).
    pub not_after: u64,
}

impl CertFacts {
    /// Reads the facts from a DER certificate. Errors are the deny reasons:
    /// [`Reason::MalformedForwardedCert`] when the DER is not a certificate
    /// (trailing bytes included), [`Reason::PeerNotSpiffe`] when it has no URI
    /// SAN or a non-`spiffe` one, [`Reason::MultipleUriSans`] when it has more
    /// than one, [`Reason::MalformedSpiffeId`] when the URI SAN is a bad SPIFFE ID.
    pub fn from_der(der: &[u8]) -> Result<CertFacts, Reason> {
        let cert = Certificate::from_der(der).map_err(|_| Reason::MalformedForwardedCert)?;
        let tbs = &cert.tbs_certificate;
        // `get` fails on a duplicated extension, which RFC 5280 forbids.
        let san = tbs
            .get::<SubjectAltName>()
            .map_err(|_| Reason::MalformedForwardedCert)?;
        let Some((_critical, SubjectAltName(names))) = san else {
            return Err(Reason::PeerNotSpiffe);
        };
        let mut uris = names.iter().filter_map(|name| match name {
            GeneralName::UniformResourceIdentifier(uri) => Some(uri.as_str()),
            _ => None,
        });
        let uri = uris.next().ok_or(Reason::PeerNotSpiffe)?;
        if uris.next().is_some() {
            return Err(Reason::MultipleUriSans);
        }
        let spiffe_id = spiffe_id_from_uri_san(uri)?;
        Ok(CertFacts {
            spiffe_id,
            serial: serial_hex(tbs.serial_number.as_bytes()),
            not_before: tbs.validity.not_before.to_unix_duration().as_secs(),
            not_after: tbs.validity.not_after.to_unix_duration().as_secs(),
        })
    }

    /// notAfter − notBefore, seconds (0 if the window is inverted).
    pub fn lifetime_secs(&self) -> u64 {
        self.not_after.saturating_sub(self.not_before)
    }

    /// The per-request checks, in order: validity window at `now_secs`
    /// ([`Reason::CertNotCurrentlyValid`]), lifetime bound
    /// ([`Reason::CertLifetimeExceedsBound`]), revocation ([`Reason::CertRevoked`]).
    /// Never cached: time, policy and the revocation list all move.
    pub fn check(&self, checks: &IdentityChecks<'_>, now_secs: u64) -> Result<(), Reason> {
        if now_secs < self.not_before || now_secs > self.not_after {
            return Err(Reason::CertNotCurrentlyValid);
        }
        if let Some(max) = checks.max_cert_lifetime_secs {
            if self.lifetime_secs() > max {
                return Err(Reason::CertLifetimeExceedsBound);
            }
        }
        if !checks.revoked_serials.is_empty()
            && checks.revoked_serials.contains(self.serial.as_str())
        {
            return Err(Reason::CertRevoked);
        }
        Ok(())
    }
}

/// Turns a URI SAN into a SPIFFE ID: a URI whose scheme is not `spiffe`
/// (any case) is [`Reason::PeerNotSpiffe`]; a `spiffe` URI that breaks the
/// SPIFFE ID rules (uppercase scheme included) is [`Reason::MalformedSpiffeId`].
pub fn spiffe_id_from_uri_san(uri: &str) -> Result<SpiffeId, Reason> {
    let is_spiffe = uri
        .split_once(':')
        .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("spiffe"));
    if !is_spiffe {
        return Err(Reason::PeerNotSpiffe);
    }
    SpiffeId::parse(uri).map_err(|_| Reason::MalformedSpiffeId)
}

/// Serial bytes (big-endian, as `x509-cert` gives them) as normalized hex.
fn serial_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        for nibble in [b >> 4, b & 0x0f] {
            hex.push(char::from(
                HEX.get(usize::from(nibble)).copied().unwrap_or(b'0'),
            ));
        }
    }
    normalize_serial(&hex).unwrap_or_else(|| "0".to_owned())
}

/// Parses 64 hex digits (either case) into a digest.
pub fn parse_hex_digest(hex: &str) -> Option<Digest> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
        let [hi, lo] = pair else { return None };
        *byte = (nibble(*hi)? << 4) | nibble(*lo)?;
    }
    Some(out)
}

/// Decodes `%XX` escapes (as Envoy writes `Cert` and `Chain`). Every other
/// byte is taken literally, `+` included (it is base64, not a space). `None`
/// for a `%` not followed by two hex digits.
pub fn percent_decode(s: &str) -> Option<Vec<u8>> {
    fn hex(c: u8) -> Option<u8> {
        char::from(c)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    }
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hi = hex(bytes.next()?)?;
            let lo = hex(bytes.next()?)?;
            out.push((hi << 4) | lo);
        } else {
            out.push(b);
        }
    }
    Some(out)
}

/// Decodes a PEM document holding exactly one `CERTIFICATE` block (RFC 7468
/// strict grammar; anything after the block but whitespace is rejected) to DER.
pub fn pem_certificate_to_der(pem: &[u8]) -> Option<Vec<u8>> {
    let (label, der) = der::pem::decode_vec(pem).ok()?;
    (label == "CERTIFICATE").then_some(der)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::identity::PeerCertificateSource;

    #[test]
    fn per_request_checks() {
        let t0 = 1_893_456_000;
        let end = t0 + 48 * 3600;
        let f = CertFacts {
            spiffe_id: SpiffeId::parse("spiffe://prod.example/orders").unwrap(),
            serial: "a1b2c".to_owned(),
            not_before: t0,
            not_after: end,
        };
        assert_eq!(f.lifetime_secs(), 48 * 3600);
        let none = HashSet::new();
        let revoked: HashSet<String> = ["a1b2c".to_owned()].into();
        let checks = |max, revoked| IdentityChecks {
            source: PeerCertificateSource::Forwarded,
            max_cert_lifetime_secs: max,
            revoked_serials: revoked,
        };
        assert_eq!(f.check(&checks(None, &none), t0), Ok(()));
        assert_eq!(f.check(&checks(None, &none), end), Ok(()));
        assert_eq!(
            f.check(&checks(None, &none), t0 - 1),
            Err(Reason::CertNotCurrentlyValid)
        );
        assert_eq!(
            f.check(&checks(None, &none), end + 1),
            Err(Reason::CertNotCurrentlyValid)
        );
        assert_eq!(
            f.check(&checks(Some(24 * 3600), &none), t0 + 1),
            Err(Reason::CertLifetimeExceedsBound)
        );
        assert_eq!(f.check(&checks(Some(48 * 3600), &none), t0 + 1), Ok(()));
        assert_eq!(
            f.check(&checks(None, &revoked), t0 + 1),
            Err(Reason::CertRevoked)
        );
        // Validity is checked first, then the bound, then revocation.
        assert_eq!(
            f.check(&checks(Some(1), &revoked), end + 1),
            Err(Reason::CertNotCurrentlyValid)
        );
        assert_eq!(
            f.check(&checks(Some(1), &revoked), t0),
            Err(Reason::CertLifetimeExceedsBound)
        );
    }

    #[test]
    fn uri_san_classification() {
        assert!(spiffe_id_from_uri_san("spiffe://prod.example/a").is_ok());
        assert!(spiffe_id_from_uri_san("spiffe://prod.example").is_ok());
        for not_spiffe in [
            "",
            "spiffe",
            "https://x",
            "urn:x",
            "spiffe//x",
            "x:spiffe://a",
        ] {
            assert_eq!(
                spiffe_id_from_uri_san(not_spiffe),
                Err(Reason::PeerNotSpiffe),
                "{not_spiffe}"
            );
        }
        for bad in [
            "spiffe:prod",
            "Spiffe://a/b",
            "spiffe://a/b/",
            "spiffe://a:1/b",
        ] {
            assert_eq!(
                spiffe_id_from_uri_san(bad),
                Err(Reason::MalformedSpiffeId),
                "{bad}"
            );
        }
    }

    #[test]
    fn hex_digests() {
        let hex = "00ff10AbCdEf".repeat(5) + "0123";
        let d = parse_hex_digest(&hex).unwrap();
        assert_eq!(&d[..6], &[0x00, 0xff, 0x10, 0xab, 0xcd, 0xef]);
        assert_eq!(&d[30..], &[0x01, 0x23]);
        assert_eq!(parse_hex_digest(&hex[1..]), None);
        assert_eq!(parse_hex_digest(&format!("{hex}0")), None);
        assert_eq!(parse_hex_digest(&hex.replace('f', "g")), None);
        assert_eq!(parse_hex_digest(&"é".repeat(32)), None);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b%2Bc%2f+=%0A").unwrap(), b"a b+c/+=\n");
        assert_eq!(percent_decode("").unwrap(), b"");
        for bad in ["%", "%2", "%zz", "a%g0", "%%"] {
            assert_eq!(percent_decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn serial_hex_is_normalized() {
        assert_eq!(serial_hex(&[]), "0");
        assert_eq!(serial_hex(&[0, 0]), "0");
        assert_eq!(serial_hex(&[0x0a, 0xbc]), "abc");
        assert_eq!(serial_hex(&[0x00, 0xff, 0x01]), "ff01");
    }

    /// Real certificates from an rcgen CA (ring does not build for wasm32).
    #[cfg(not(target_family = "wasm"))]
    mod with_certs {
        use super::super::super::test_certs::{self, san_dns, san_uri, Svid, SvidSpec};
        use super::*;

        fn facts(spec: SvidSpec) -> Result<CertFacts, Reason> {
            CertFacts::from_der(&Svid::issue(spec).der)
        }

        #[test]
        fn reads_an_svid() {
            let svid = Svid::issue(SvidSpec::default());
            let f = CertFacts::from_der(&svid.der).unwrap();
            assert_eq!(f.spiffe_id.as_str(), test_certs::ORDERS);
            assert_eq!(f.serial, "a1b2c");
            assert_eq!(f.not_before, test_certs::T0);
            assert_eq!(f.not_after, test_certs::T0 + 3600);
            assert_eq!(f.lifetime_secs(), 3600);
        }

        #[test]
        fn serials_are_normalized() {
            let f = facts(SvidSpec {
                serial: vec![0x00, 0xff, 0x01],
                ..SvidSpec::default()
            })
            .unwrap();
            assert_eq!(f.serial, "ff01");
        }

        #[test]
        fn classifies_san_problems() {
            let cases = [
                (
                    vec![san_uri(test_certs::ORDERS), san_uri(test_certs::PAYMENTS)],
                    Reason::MultipleUriSans,
                ),
                (
                    vec![
                        san_uri(test_certs::ORDERS),
                        san_uri("https://orders.example"),
                    ],
                    Reason::MultipleUriSans,
                ),
                (vec![san_dns("orders.shop.svc")], Reason::PeerNotSpiffe),
                (vec![], Reason::PeerNotSpiffe),
                (
                    vec![san_uri("https://orders.example/x")],
                    Reason::PeerNotSpiffe,
                ),
                (
                    vec![san_dns("orders"), san_uri("urn:uuid:1234")],
                    Reason::PeerNotSpiffe,
                ),
                (
                    vec![san_uri("spiffe://Prod.Example/orders")],
                    Reason::MalformedSpiffeId,
                ),
                (
                    vec![san_uri("SPIFFE://prod.example/orders")],
                    Reason::MalformedSpiffeId,
                ),
                (
                    vec![san_uri("spiffe://prod.example/a/../b")],
                    Reason::MalformedSpiffeId,
                ),
            ];
            for (sans, want) in cases {
                let got = facts(SvidSpec {
                    sans: sans.clone(),
                    ..SvidSpec::default()
                });
                assert_eq!(got, Err(want), "{sans:?}");
            }
            // A DNS SAN beside the one URI SAN is fine.
            let ok = facts(SvidSpec {
                sans: vec![san_dns("orders"), san_uri(test_certs::ORDERS)],
                ..SvidSpec::default()
            });
            assert_eq!(ok.unwrap().spiffe_id.as_str(), test_certs::ORDERS);
        }

        #[test]
        fn rejects_what_is_not_a_certificate() {
            let mut der = Svid::issue(SvidSpec::default()).der;
            assert_eq!(
                CertFacts::from_der(&[]),
                Err(Reason::MalformedForwardedCert)
            );
            assert_eq!(
                CertFacts::from_der(b"not der"),
                Err(Reason::MalformedForwardedCert)
            );
            der.push(0);
            assert_eq!(
                CertFacts::from_der(&der),
                Err(Reason::MalformedForwardedCert)
            );
            der.truncate(der.len() - 2);
            assert_eq!(
                CertFacts::from_der(&der),
                Err(Reason::MalformedForwardedCert)
            );
        }

        #[test]
        fn pem_holds_exactly_one_certificate() {
            let a = Svid::issue(SvidSpec::default());
            let b = Svid::issue(SvidSpec::default());
            assert_eq!(pem_certificate_to_der(a.pem.as_bytes()).unwrap(), a.der);
            let crlf = a.pem.replace('\n', "\r\n");
            assert_eq!(pem_certificate_to_der(crlf.as_bytes()).unwrap(), a.der);
            let two = format!("{}{}", a.pem, b.pem);
            assert_eq!(pem_certificate_to_der(two.as_bytes()), None);
            let trailing = format!("{}junk", a.pem);
            assert_eq!(pem_certificate_to_der(trailing.as_bytes()), None);
            let key = a.pem.replace("CERTIFICATE", "PRIVATE KEY");
            assert_eq!(pem_certificate_to_der(key.as_bytes()), None);
            assert_eq!(pem_certificate_to_der(b""), None);
            assert_eq!(
                pem_certificate_to_der(b"-----BEGIN CERTIFICATE-----\n"),
                None
            );
        }
    }
}
