//! The one throwaway PKI of the harness: CAs per SPIFFE trust domain and
//! leaf certificates with exactly the properties a test needs: X.509-SVIDs
//! (URI SANs, validity window, serial), serving certificates (DNS
//! `localhost` and IP 127.0.0.1, with or without the workload's SPIFFE ID),
//! and an Envoy certificate directory to go with them.
//!
//! Every fixture builds on [`Ca`] and [`SvidBuilder`]: [`TestPki`] (one
//! Envoy), [`crate::topology::pki::MeshPki`] (several), and
//! [`crate::istio::MeshCa`] (istiod's shapes).
//!
//! Keys are ECDSA P-256 (rcgen's default), generated fresh per test run.

use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use time::OffsetDateTime;

/// The trust domain the test policies (and `policy-compiler/examples/shop.policy`) trust.
pub const SHOP: &str = "shop.example";
/// A federated trust domain: Envoy holds its CA bundle (so the handshake
/// succeeds) but the test policies do not trust it (so the filter denies).
pub const PARTNER: &str = "partner.example";

/// The SPIFFE ID `spiffe://<trust_domain><path>` (`path` empty or starting
/// with `/`).
pub fn spiffe_id(trust_domain: &str, path: &str) -> String {
    format!("spiffe://{trust_domain}{path}")
}

/// The SPIFFE ID path of a Kubernetes service account: `/ns/<ns>/sa/<sa>`.
pub fn workload_path(ns: &str, sa: &str) -> String {
    format!("/ns/{ns}/sa/{sa}")
}

/// A certificate authority for one trust domain.
pub struct Ca {
    trust_domain: String,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    /// A fresh self-signed CA, valid from an hour ago for ten days, carrying
    /// its trust domain's URI (`spiffe://<trust domain>`) as a SPIFFE CA does.
    pub fn new(trust_domain: &str) -> Ca {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "meshward tests");
        dn.push(DnType::CommonName, format!("{trust_domain} test CA"));
        Ca::self_signed(
            trust_domain,
            dn,
            vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ],
            vec![uri_san(&spiffe_id(trust_domain, ""))],
        )
    }

    /// A CA shaped like istiod's self-signed root: organization = the trust
    /// domain, no common name, no SAN, only certificate and CRL signing.
    pub fn istiod(trust_domain: &str) -> Ca {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, trust_domain);
        Ca::self_signed(
            trust_domain,
            dn,
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign],
            Vec::new(),
        )
    }

    fn self_signed(
        trust_domain: &str,
        dn: DistinguishedName,
        key_usages: Vec<KeyUsagePurpose>,
        sans: Vec<SanType>,
    ) -> Ca {
        let mut params = CertificateParams::default();
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = key_usages;
        params.subject_alt_names = sans;
        let now = OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(10);
        let key = KeyPair::generate().expect("generate CA key");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("self-sign CA");
        Ca {
            trust_domain: trust_domain.to_owned(),
            issuer,
        }
    }

    /// The trust domain this CA signs for.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The SPIFFE ID `spiffe://<trust domain><path>`.
    pub fn id(&self, path: &str) -> String {
        spiffe_id(&self.trust_domain, path)
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// The CA certificate, DER (what [`crate::client::TlsClient`] trusts).
    pub fn cert_der(&self) -> Vec<u8> {
        self.issuer.der().to_vec()
    }

    /// Starts an X.509-SVID for `spiffe://<trust domain><path>`.
    pub fn svid(&self, path: &str) -> SvidBuilder<'_> {
        SvidBuilder::new(self, vec![self.id(path)])
    }

    /// Starts a leaf certificate with arbitrary URI SANs (none, several, not
    /// SPIFFE...).
    pub fn leaf_with_uris(&self, uris: &[&str]) -> SvidBuilder<'_> {
        SvidBuilder::new(self, uris.iter().map(|u| (*u).to_owned()).collect())
    }

    /// A serving certificate that carries the workload's SPIFFE ID: URI
    /// `spiffe://<trust domain><path>`, DNS `localhost`, IP 127.0.0.1 (so the
    /// test client can verify it, and the filter reads its own identity from
    /// `connection.uri_san_local_certificate`).
    pub fn serving_svid(&self, path: &str) -> Leaf {
        self.svid(path).serving().issue()
    }

    /// A serving certificate without any SPIFFE ID (DNS `localhost`, IP
    /// 127.0.0.1): Envoy's own in a single-Envoy test, a public edge's, or a
    /// plain front proxy's. Valid from an hour ago for two days.
    pub fn server_cert(&self) -> Leaf {
        self.leaf_with_uris(&[])
            .serving()
            .validity(
                Duration::from_secs(60 * 60),
                Duration::from_secs(49 * 60 * 60),
            )
            .issue()
    }
}

/// Builds one leaf certificate; [`SvidBuilder::issue`] signs it. By default:
/// the URI SANs it was started with, subject `O=meshward tests`, valid for
/// one hour from a minute ago, a random serial, usable for client and
/// server authentication.
pub struct SvidBuilder<'a> {
    ca: &'a Ca,
    uris: Vec<String>,
    other_sans: Vec<SanType>,
    organization: Option<&'static str>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    serial: Vec<u8>,
}

impl<'a> SvidBuilder<'a> {
    fn new(ca: &'a Ca, uris: Vec<String>) -> Self {
        let now = OffsetDateTime::now_utc();
        SvidBuilder {
            ca,
            uris,
            other_sans: Vec::new(),
            organization: Some("meshward tests"),
            // Short-lived, as SVIDs are: one hour, started a minute ago (clock slack).
            not_before: now - time::Duration::minutes(1),
            not_after: now + time::Duration::minutes(59),
            serial: random_serial(),
        }
    }

    /// The whole validity window: `not_before = now - age`, `not_after =
    /// not_before + lifetime`.
    pub fn validity(mut self, age: Duration, lifetime: Duration) -> Self {
        let now = OffsetDateTime::now_utc();
        self.not_before = now - age;
        self.not_after = self.not_before + lifetime;
        self
    }

    /// Expired a minute ago (it was valid for one hour).
    pub fn expired(self) -> Self {
        self.validity(Duration::from_secs(61 * 60), Duration::from_secs(60 * 60))
    }

    /// A chosen serial number (big-endian bytes; the first byte should be
    /// below 0x80 to stay a positive DER integer without padding).
    pub fn serial(mut self, serial: &[u8]) -> Self {
        self.serial = serial.to_vec();
        self
    }

    /// Adds a DNS SAN.
    pub fn dns(mut self, name: &str) -> Self {
        self.other_sans
            .push(SanType::DnsName(name.try_into().expect("DNS SAN is IA5")));
        self
    }

    /// Adds the SANs a test client checks on a loopback server: DNS
    /// `localhost` and IP 127.0.0.1.
    pub fn serving(mut self) -> Self {
        self = self.dns("localhost");
        self.other_sans
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        self
    }

    /// An empty subject, as istiod issues SVIDs.
    pub fn empty_subject(mut self) -> Self {
        self.organization = None;
        self
    }

    /// Signs the certificate.
    pub fn issue(self) -> Leaf {
        let mut params = CertificateParams::default();
        // SVIDs identify by URI SAN; the subject is informational.
        let mut dn = DistinguishedName::new();
        if let Some(org) = self.organization {
            dn.push(DnType::OrganizationName, org);
        }
        params.distinguished_name = dn;
        params.subject_alt_names = self.other_sans;
        params
            .subject_alt_names
            .extend(self.uris.iter().map(|u| uri_san(u)));
        params.not_before = self.not_before;
        params.not_after = self.not_after;
        params.serial_number = Some(SerialNumber::from_slice(&self.serial));
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
            KeyUsagePurpose::KeyAgreement,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsagePurpose::ServerAuth,
        ];
        let key = KeyPair::generate().expect("generate leaf key");
        let cert = params.signed_by(&key, &self.ca.issuer).expect("sign leaf");
        Leaf {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key_pem: key.serialize_pem(),
            key_der: key.serialize_der(),
            uris: self.uris,
            serial_hex: hex(&self.serial),
        }
    }
}

/// A signed leaf certificate and its private key.
#[derive(Clone)]
pub struct Leaf {
    /// PEM certificate.
    pub cert_pem: String,
    /// DER certificate.
    pub cert_der: Vec<u8>,
    /// PKCS#8 PEM private key.
    pub key_pem: String,
    /// PKCS#8 DER private key.
    pub key_der: Vec<u8>,
    /// The URI SANs, in order.
    pub uris: Vec<String>,
    /// The serial, lowercase hex, as in a revocation list.
    pub serial_hex: String,
}

impl Leaf {
    /// The first URI SAN (the SPIFFE ID of a well-formed SVID).
    pub fn spiffe_id(&self) -> &str {
        self.uris.first().map(String::as_str).unwrap_or("")
    }
}

/// Writes one Envoy's certificate directory, as the templates under
/// `envoy/` expect: `server.pem`/`server.key` (what its listener serves),
/// `workload.pem`/`workload.key` (its client SVID for outbound mTLS, when
/// it has one), and `<trust domain>-ca.pem` for each of `cas`.
pub fn write_cert_dir(
    dir: &Path,
    cas: &[&Ca],
    server: &Leaf,
    workload: Option<&Leaf>,
) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    fs::write(dir.join("server.pem"), &server.cert_pem)?;
    fs::write(dir.join("server.key"), &server.key_pem)?;
    if let Some(w) = workload {
        fs::write(dir.join("workload.pem"), &w.cert_pem)?;
        fs::write(dir.join("workload.key"), &w.key_pem)?;
    }
    for ca in cas {
        fs::write(
            dir.join(format!("{}-ca.pem", ca.trust_domain())),
            ca.cert_pem(),
        )?;
    }
    Ok(())
}

/// The standard cast of a test: a CA per trust domain, Envoy's serving cert,
/// and a CA that Envoy does not trust at all.
pub struct TestPki {
    /// Signs `spiffe://shop.example/...` (trusted by Envoy and the policy).
    pub shop: Ca,
    /// Signs `spiffe://partner.example/...` (trusted by Envoy, not the policy).
    pub partner: Ca,
    /// A CA in no bundle: its certificates fail the handshake, even when they
    /// claim a `shop.example` identity.
    pub rogue: Ca,
    /// Envoy's serving certificate, signed by `shop` (no SPIFFE ID unless
    /// [`TestPki::serve_as`] gave it one).
    pub server: Leaf,
}

impl TestPki {
    /// Generates the whole cast.
    pub fn new() -> TestPki {
        let shop = Ca::new(SHOP);
        let partner = Ca::new(PARTNER);
        // Claims the shop trust domain: a CA that is not the domain's.
        let rogue = Ca::new(SHOP);
        let server = shop.server_cert();
        TestPki {
            shop,
            partner,
            rogue,
            server,
        }
    }

    /// A short-lived SVID `spiffe://shop.example/ns/<ns>/sa/<sa>`.
    pub fn workload(&self, ns: &str, sa: &str) -> Leaf {
        self.shop.svid(&workload_path(ns, sa)).issue()
    }

    /// Makes Envoy serve the SVID of the shop workload at `path` (its
    /// SPIFFE ID plus DNS `localhost` and IP 127.0.0.1), so the filter knows
    /// its own identity.
    pub fn serve_as(&mut self, path: &str) {
        self.server = self.shop.serving_svid(path);
    }

    /// Writes what `envoy/demo.yaml` expects under `${MESHWARD_CERT_DIR}`:
    /// `server.pem`, `server.key`, `shop.example-ca.pem`, `partner.example-ca.pem`.
    pub fn write_envoy_files(&self, dir: &Path) -> io::Result<()> {
        write_cert_dir(dir, &[&self.shop, &self.partner], &self.server, None)
    }
}

impl Default for TestPki {
    fn default() -> Self {
        TestPki::new()
    }
}

fn uri_san(uri: &str) -> SanType {
    SanType::URI(uri.try_into().expect("URI SAN is IA5"))
}

/// 16 random-ish bytes with the top bit clear (a positive DER integer). Serial
/// uniqueness matters only within a test run; revocation tests pick their own.
fn random_serial() -> Vec<u8> {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(1);
    let mut out = Vec::with_capacity(16);
    for _ in 0..2 {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        out.extend_from_slice(&h.finish().to_be_bytes());
    }
    out[0] = (out[0] & 0x7f) | 0x10;
    out
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
