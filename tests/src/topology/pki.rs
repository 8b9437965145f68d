//! Certificates for a topology of several workloads, on [`crate::pki`]: one
//! CA per trust domain, and for each workload an X.509-SVID it presents as
//! a client and one it serves with (the same SPIFFE ID plus DNS
//! `localhost`, so the test client can verify it and the filter can read
//! the workload's own identity from `connection.uri_san_local_certificate`).
//!
//! [`MeshCa`] is [`crate::pki::Ca`] with a topology's vocabulary: SVIDs come
//! back signed ([`crate::pki::Leaf`]s, so [`crate::client::TlsClient`] works
//! unchanged).

use std::io;
use std::path::Path;

use crate::pki::{write_cert_dir, Ca, Leaf, PARTNER, SHOP};

/// A CA for one SPIFFE trust domain.
pub struct MeshCa {
    ca: Ca,
}

impl MeshCa {
    /// A fresh CA, valid from an hour ago for ten days.
    pub fn new(trust_domain: &str) -> MeshCa {
        MeshCa {
            ca: Ca::new(trust_domain),
        }
    }

    /// The underlying CA (for SVIDs with other properties).
    pub fn ca(&self) -> &Ca {
        &self.ca
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> String {
        self.ca.cert_pem()
    }

    /// The CA certificate, DER (what [`crate::client::TlsClient`] trusts).
    pub fn cert_der(&self) -> Vec<u8> {
        self.ca.cert_der()
    }

    /// The SPIFFE ID `spiffe://<trust domain><path>`.
    pub fn id(&self, path: &str) -> String {
        self.ca.id(path)
    }

    /// A client SVID for `path` (one URI SAN, valid one hour) with a serial
    /// of this run.
    pub fn svid(&self, path: &str) -> Leaf {
        self.ca.svid(path).issue()
    }

    /// A client SVID with a chosen serial (big-endian, top bit clear).
    pub fn svid_with_serial(&self, path: &str, serial: &[u8]) -> Leaf {
        self.ca.svid(path).serial(serial).issue()
    }

    /// A serving certificate: the workload's SPIFFE ID plus DNS `localhost`
    /// and IP 127.0.0.1.
    pub fn serving_svid(&self, path: &str) -> Leaf {
        self.ca.serving_svid(path)
    }

    /// A serving certificate without any SPIFFE ID (a public edge's
    /// certificate, or a plain front proxy's).
    pub fn server_cert(&self) -> Leaf {
        self.ca.server_cert()
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

    /// Writes one Envoy's certificate directory (see
    /// [`crate::pki::write_cert_dir`]): `server.pem`/`server.key`,
    /// `workload.pem`/`workload.key` when it has a client SVID,
    /// `shop.example-ca.pem`, `partner.example-ca.pem`.
    pub fn write_cert_dir(
        &self,
        dir: &Path,
        server: &Leaf,
        workload: Option<&Leaf>,
    ) -> io::Result<()> {
        write_cert_dir(dir, &[&self.shop.ca, &self.partner.ca], server, workload)
    }
}

impl Default for MeshPki {
    fn default() -> Self {
        MeshPki::new()
    }
}
