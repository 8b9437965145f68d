//! Test fixtures: real X.509-SVIDs issued by an `rcgen` CA, and XFCC headers
//! rendered the way Envoy renders them.

#![expect(
    clippy::unwrap_used,
    reason = "test fixtures: a failed setup should panic loudly"
)]

use std::fmt::Write as _;
use std::time::Duration;

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
    SanType, SerialNumber,
};
use sha2::{Digest as _, Sha256};

/// 2030-01-01T00:00:00Z.
pub(crate) const T0: u64 = 1_893_456_000;
pub(crate) const ORDERS: &str = "spiffe://prod.example/ns/shop/sa/orders";
pub(crate) const PAYMENTS: &str = "spiffe://prod.example/ns/shop/sa/payments";
pub(crate) const GATEWAY: &str = "spiffe://prod.example/ns/edge/sa/gateway";

pub(crate) fn san_uri(uri: &str) -> SanType {
    SanType::URI(uri.try_into().unwrap())
}

pub(crate) fn san_dns(name: &str) -> SanType {
    SanType::DnsName(name.try_into().unwrap())
}

/// What to put in an SVID.
#[derive(Debug, Clone)]
pub(crate) struct SvidSpec {
    pub sans: Vec<SanType>,
    pub serial: Vec<u8>,
    pub not_before: u64,
    pub not_after: u64,
}

impl Default for SvidSpec {
    /// One URI SAN (`ORDERS`), serial `0a1b2c`, valid for one hour from `T0`.
    fn default() -> Self {
        SvidSpec {
            sans: vec![san_uri(ORDERS)],
            serial: vec![0x0a, 0x1b, 0x2c],
            not_before: T0,
            not_after: T0 + 3600,
        }
    }
}

/// An issued certificate.
#[derive(Debug, Clone)]
pub(crate) struct Svid {
    pub der: Vec<u8>,
    /// PEM with `\n` line endings, as BoringSSL writes it.
    pub pem: String,
    /// Envoy's `sha256_peer_certificate_digest`: lowercase hex of SHA-256(DER).
    pub digest: String,
}

/// `T0`-relative arithmetic on rcgen's date type (without naming the `time` crate).
fn at<T>(base: T, secs: u64) -> T
where
    T: std::ops::Add<Duration, Output = T> + std::ops::Sub<Duration, Output = T>,
{
    if secs >= T0 {
        base + Duration::from_secs(secs - T0)
    } else {
        base - Duration::from_secs(T0 - secs)
    }
}

thread_local! {
    static CA: CertifiedIssuer<'static, KeyPair> = {
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "meshward test CA");
        CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
    };
}

impl Svid {
    /// Issues a certificate from the (per-thread) test CA.
    pub(crate) fn issue(spec: SvidSpec) -> Svid {
        let base = date_time_ymd(2030, 1, 1);
        assert_eq!(base.unix_timestamp(), T0 as i64);
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, "svid");
        params.subject_alt_names = spec.sans;
        params.serial_number = Some(SerialNumber::from_slice(&spec.serial));
        params.not_before = at(base, spec.not_before);
        params.not_after = at(base, spec.not_after);
        let key = KeyPair::generate().unwrap();
        let cert = CA.with(|ca| params.signed_by(&key, ca).unwrap());
        Svid::from_der(cert.der().to_vec())
    }

    pub(crate) fn from_der(der: Vec<u8>) -> Svid {
        let pem = der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, &der).unwrap();
        let digest = hex(&Sha256::digest(&der));
        Svid { der, pem, digest }
    }

    /// The header Envoy writes with `SANITIZE_SET` and details
    /// `{cert, uri, dns}`: `By`, `Hash`, quoted URL-encoded `Cert`, then one
    /// `URI=` per URI SAN (an empty `URI=` when there is none) and one `DNS=`
    /// per DNS SAN.
    pub(crate) fn envoy_xfcc(&self, sans: &[SanType]) -> String {
        let mut out = format!(
            "By={GATEWAY};Hash={};Cert=\"{}\"",
            self.digest,
            url_encode(&self.pem)
        );
        let uris: Vec<_> = sans
            .iter()
            .filter_map(|s| match s {
                SanType::URI(u) => Some(u.as_str()),
                _ => None,
            })
            .collect();
        if uris.is_empty() {
            out.push_str(";URI=");
        }
        for u in uris {
            write!(out, ";URI={u}").unwrap();
        }
        for s in sans {
            if let SanType::DnsName(d) = s {
                write!(out, ";DNS={}", d.as_str()).unwrap();
            }
        }
        out
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Percent-encodes everything but RFC 3986 unreserved characters, which is
/// what Envoy does to the PEM in `Cert` (`+`, `/`, `=`, space, newline...).
pub(crate) fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            write!(out, "%{b:02X}").unwrap();
        }
    }
    out
}
