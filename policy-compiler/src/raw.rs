//! Raw requests, decided offline exactly as the proxy decides them: the
//! request line and headers as the filter receives them, the client
//! certificate the TLS connection presented, and the time. `meshward decide`
//! reads them as JSON lines.
//!
//! ```json
//! {"id": "r1", "method": "GET", "path": "/orders/1", "authority": "orders",
//!  "headers": [["authorization", "Bearer eyJ…"]],
//!  "peer_cert": "-----BEGIN CERTIFICATE-----\n…", "time": 1764380000}
//! ```
//!
//! The certificate reaches the pipeline the way Envoy hands it over: the
//! SHA-256 digest of its DER as the connection's digest, its first URI SAN,
//! and the forwarded-client-cert header Envoy writes with `SANITIZE_SET`
//! (`Hash`, URL-encoded `Cert`, `URI`). Tokens and chains travel in the
//! headers and are verified by the pipeline itself.

use meshward_engine::identity::cert::{pem_certificate_to_der, CertFacts};
use meshward_engine::pipeline::{HeaderList, PeerEvidence, RequestInput, TokenEvidence, XFCC};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

/// One raw request.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawRequest {
    /// Echoed in the answer.
    #[serde(default)]
    pub id: Option<String>,
    /// `:method`.
    pub method: String,
    /// `:path` as the filter receives it (after the proxy's own path
    /// normalization).
    pub path: String,
    /// `:authority`; absent for none.
    #[serde(default)]
    pub authority: Option<String>,
    /// Further headers in order, repeats kept.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// The client certificate (PEM); absent for a connection without one.
    #[serde(default)]
    pub peer_cert: Option<String>,
    /// Unix seconds; absent for now.
    #[serde(default)]
    pub time: Option<u64>,
}

/// Why a raw request cannot be decided.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RawRequestError {
    /// `peer_cert` holds no PEM certificate.
    #[error("`peer_cert` is not a PEM certificate")]
    NotPem,
    /// A header name that no proxy would hand over.
    #[error("header name `{0}` is empty or not lowercase")]
    BadHeaderName(String),
}

impl RawRequest {
    /// The pipeline facts, as the proxy would hand them over at `now` (used
    /// when the request states no time).
    pub fn input(&self, now: u64) -> Result<RequestInput, RawRequestError> {
        let mut headers = vec![
            (":method".to_owned(), self.method.clone()),
            (":path".to_owned(), self.path.clone()),
        ];
        if let Some(authority) = &self.authority {
            headers.push((":authority".to_owned(), authority.clone()));
        }
        for (name, value) in &self.headers {
            if name.is_empty() || name.bytes().any(|b| b.is_ascii_uppercase()) {
                return Err(RawRequestError::BadHeaderName(name.clone()));
            }
            // The proxy replaces whatever the client sent (`SANITIZE_SET`).
            if name != XFCC {
                headers.push((name.clone(), value.clone()));
            }
        }
        let peer = match &self.peer_cert {
            None => PeerEvidence::Connection {
                cert_digest: None,
                uri_san: None,
            },
            Some(pem) => {
                let der = pem_certificate_to_der(pem.as_bytes()).ok_or(RawRequestError::NotPem)?;
                let digest: String = Sha256::digest(&der)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                let uri_san = CertFacts::from_der(&der)
                    .ok()
                    .map(|facts| facts.spiffe_id.as_str().to_owned());
                let mut xfcc = format!("Hash={digest};Cert=\"{}\"", url_encode(pem));
                if let Some(uri) = &uri_san {
                    xfcc.push_str(";URI=");
                    xfcc.push_str(uri);
                }
                headers.push((XFCC.to_owned(), xfcc));
                PeerEvidence::Connection {
                    cert_digest: Some(digest),
                    uri_san,
                }
            }
        };
        Ok(RequestInput {
            headers: HeaderList::new(headers),
            peer,
            tokens: TokenEvidence::FromHeaders,
            now: self.time.unwrap_or(now),
        })
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters, as Envoy
/// encodes the PEM in `Cert`.
fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3 / 2);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
