//! Certificates for a topology of several workloads: one CA per trust
//! domain, and for each workload an X.509-SVID it presents as a client, and
//! one it serves with (the same SPIFFE ID plus DNS `localhost`, so the test
//! client can verify it and the filter can read the workload's own identity
//! from `connection.uri_san_local_certificate`).
//!
//! [`crate::pki`] signs either kind but not both in one certificate; this
//! module keeps its own CAs (the same rcgen calls) and hands out
//! [`crate::pki::Leaf`]s, so [`crate::client::TlsClient`] works unchanged.

use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use time::OffsetDateTime;

use crate::pki::{hex, Leaf, PARTNER, SHOP};

/// A CA for one SPIFFE trust domain.
pub struct MeshCa {
    trust_domain: String,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl MeshCa {
    /// A fresh CA, valid from an hour ago for ten days.
    pub fn new(trust_domain: &str) -> MeshCa {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "meshward topology tests");
        dn.push(DnType::CommonName, format!("{trust_domain} CA"));
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.subject_alt_names = vec![uri(&format!("spiffe://{trust_domain}"))];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(10);
        let key = KeyPair::generate().expect("CA key");
        MeshCa {
            trust_domain: trust_domain.to_owned(),
            issuer: CertifiedIssuer::self_signed(params, key).expect("self-sign CA"),
        }
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// The CA certificate, DER (what [`crate::client::TlsClient`] trusts).
    pub fn cert_der(&self) -> Vec<u8> {
        self.issuer.der().to_vec()
    }

    /// The SPIFFE ID `spiffe://<trust domain><path>`.
    pub fn id(&self, path: &str) -> String {
        format!("spiffe://{}{path}", self.trust_domain)
    }

    /// A client SVID for `path` (one URI SAN, valid one hour) with a serial
    /// of this run.
    pub fn svid(&self, path: &str) -> Leaf {
        self.svid_with_serial(path, &next_serial())
    }

    /// A client SVID with a chosen serial (big-endian, top bit clear).
    pub fn svid_with_serial(&self, path: &str, serial: &[u8]) -> Leaf {
        let id = self.id(path);
        self.sign(vec![uri(&id)], vec![id], serial)
    }

    /// A serving certificate: the workload's SPIFFE ID plus DNS `localhost`
    /// and IP 127.0.0.1.
    pub fn serving_svid(&self, path: &str) -> Leaf {
        let id = self.id(path);
        let sans = vec![
            SanType::DnsName("localhost".try_into().expect("DNS SAN")),
            SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            uri(&id),
        ];
        self.sign(sans, vec![id], &next_serial())
    }

    /// A serving certificate without any SPIFFE ID (a public edge's
    /// certificate, or a plain front proxy's).
    pub fn server_cert(&self) -> Leaf {
        let sans = vec![
            SanType::DnsName("localhost".try_into().expect("DNS SAN")),
            SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        ];
        self.sign(sans, Vec::new(), &next_serial())
    }

    fn sign(&self, sans: Vec<SanType>, uris: Vec<String>, serial: &[u8]) -> Leaf {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "meshward topology tests");
        params.distinguished_name = dn;
        params.subject_alt_names = sans;
        let now = OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::minutes(1);
        params.not_after = now + time::Duration::minutes(59);
        params.serial_number = Some(SerialNumber::from_slice(serial));
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
            KeyUsagePurpose::KeyAgreement,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsagePurpose::ServerAuth,
        ];
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        Leaf {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key_pem: key.serialize_pem(),
            key_der: key.serialize_der(),
            uris,
            serial_hex: hex(serial),
        }
    }
}

/// The CAs of a topology: `shop.example` (trusted by every policy) and
/// `partner.example` (in Envoy's bundles, trusted by no policy).
pub struct MeshPki {
    /// Signs `spiffe://shop.example/...`.
    pub shop: MeshCa,
    /// Signs `spiffe://partner.example/...`.
    pub partner: MeshCa,
}

impl MeshPki {
    /// Fresh CAs.
    pub fn new() -> MeshPki {
        MeshPki {
            shop: MeshCa::new(SHOP),
            partner: MeshCa::new(PARTNER),
        }
    }

    /// Writes one Envoy's certificate directory, as the templates under
    /// `envoy/` expect: `server.pem`/`server.key` (what its listener
    /// serves), `workload.pem`/`workload.key` (its client SVID for outbound
    /// mTLS, when it has one), `shop.example-ca.pem`, `partner.example-ca.pem`.
    pub fn write_cert_dir(
        &self,
        dir: &Path,
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
        fs::write(dir.join("shop.example-ca.pem"), self.shop.cert_pem())?;
        fs::write(dir.join("partner.example-ca.pem"), self.partner.cert_pem())?;
        Ok(())
    }
}

impl Default for MeshPki {
    fn default() -> Self {
        MeshPki::new()
    }
}

fn uri(u: &str) -> SanType {
    SanType::URI(u.try_into().expect("URI SAN is IA5"))
}

/// 16 bytes unique within the run, top bit clear.
fn next_serial() -> Vec<u8> {
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
