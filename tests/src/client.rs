//! A raw HTTP/1.1-over-TLS client (rustls with the `ring` provider).
//!
//! It sends the request line *exactly* as written: no path normalization, no
//! percent-decoding, no header canonicalization. Path-trick tests are honest
//! only if the bytes on the wire are the bytes in the test. One request per
//! connection (`connection: close`), so every request is a fresh handshake
//! with the chosen client certificate, or none.

use std::fmt;
use std::io::{self, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use serde_json::Value;

use crate::http::{read_message, BodyDefault};
use crate::pki::Leaf;

/// One request, rendered byte for byte as given.
#[derive(Debug, Clone)]
pub struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    /// `METHOD TARGET HTTP/1.1`; the target goes on the wire unchanged.
    pub fn new(method: &str, target: &str) -> Request {
        Request {
            method: method.to_owned(),
            target: target.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// `GET target`.
    pub fn get(target: &str) -> Request {
        Request::new("GET", target)
    }

    /// `POST target` with a body.
    pub fn post(target: &str, body: &[u8]) -> Request {
        let mut r = Request::new("POST", target);
        r.body = body.to_vec();
        r
    }

    /// Adds a header (repeatable; sent in order).
    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The method.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The request target as sent.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The exact bytes sent. Adds `host: localhost` unless a host header was
    /// given, `content-length` when there is a body, and `connection: close`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!("{} {} HTTP/1.1\r\n", self.method, self.target);
        if !self
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("host"))
        {
            out.push_str("host: localhost\r\n");
        }
        for (name, value) in &self.headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        if !self.body.is_empty() {
            out.push_str(&format!("content-length: {}\r\n", self.body.len()));
        }
        out.push_str("connection: close\r\n\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

/// A response.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header names lowercased, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the body when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}); status {} body {:?}",
                self.status,
                self.text()
            )
        })
    }
}

/// Why no response came back.
#[derive(Debug)]
pub enum ClientError {
    /// TLS failed: the handshake was refused, or the server sent an alert.
    Tls(rustls::Error),
    /// The connection failed or closed without a response.
    Io(io::Error),
    /// The response could not be parsed.
    Malformed(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Tls(e) => write!(f, "TLS error: {e}"),
            ClientError::Io(e) => write!(f, "I/O error: {e}"),
            ClientError::Malformed(e) => write!(f, "malformed response: {e}"),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> Self {
        // rustls reports TLS failures through io::Error with the rustls error inside.
        let is_tls = e
            .get_ref()
            .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some());
        if is_tls {
            if let Some(tls) = e
                .into_inner()
                .and_then(|inner| inner.downcast::<rustls::Error>().ok())
            {
                return ClientError::Tls(*tls);
            }
            return ClientError::Malformed("lost TLS error".into());
        }
        ClientError::Io(e)
    }
}

/// A client for one Envoy listener, presenting one identity (or none).
#[derive(Clone)]
pub struct TlsClient {
    addr: SocketAddr,
    config: Arc<ClientConfig>,
}

impl TlsClient {
    /// Trusts `server_ca_der` for Envoy's certificate (name `localhost`) and
    /// presents `identity` as the client certificate, if any.
    pub fn new(addr: SocketAddr, server_ca_der: &[u8], identity: Option<&Leaf>) -> TlsClient {
        TlsClient {
            addr,
            config: tls_config(server_ca_der, identity, Vec::new()),
        }
    }

    /// Sends one request on a fresh connection and reads the response.
    pub fn send(&self, request: &Request) -> Result<Response, ClientError> {
        self.send_bytes(&request.to_bytes())
    }

    /// Sends raw bytes on a fresh connection and reads one response.
    pub fn send_bytes(&self, bytes: &[u8]) -> Result<Response, ClientError> {
        let mut tls = connect(self.addr, &self.config, Duration::from_secs(15))?;
        tls.write_all(bytes)?;
        tls.flush()?;
        let mut reader = BufReader::new(tls);
        let msg = read_message(&mut reader, BodyDefault::UntilClose)?
            .ok_or_else(|| ClientError::Io(io::ErrorKind::UnexpectedEof.into()))?;
        let status = msg
            .status()
            .ok_or_else(|| ClientError::Malformed(format!("status line {:?}", msg.start_line)))?;
        Ok(Response {
            status,
            headers: msg.headers,
            body: msg.body,
        })
    }
}

/// The one TLS client setup of the harness (rustls with the `ring`
/// provider): trusts `server_ca_der` for the server, presents `identity` as
/// the client certificate (or none), offers `alpn` (none: HTTP/1.1).
pub fn tls_config(
    server_ca_der: &[u8],
    identity: Option<&Leaf>,
    alpn: Vec<Vec<u8>>,
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(server_ca_der.to_vec()))
        .expect("add server CA");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("rustls protocol versions")
        .with_root_certificates(roots);
    let mut config = match identity {
        Some(leaf) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from(leaf.cert_der.clone())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf.key_der.clone())),
            )
            .expect("client certificate and key"),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn;
    Arc::new(config)
}

/// Opens a TCP connection to `addr` (5 s to connect, `io_timeout` per read
/// and write) and starts a TLS session for server name `localhost` on it
/// (the handshake completes on first use).
pub fn connect(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    io_timeout: Duration,
) -> Result<StreamOwned<ClientConnection, TcpStream>, ClientError> {
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    tcp.set_read_timeout(Some(io_timeout))?;
    tcp.set_write_timeout(Some(io_timeout))?;
    let name = ServerName::try_from("localhost").expect("server name");
    let conn = ClientConnection::new(Arc::clone(config), name).map_err(ClientError::Tls)?;
    Ok(StreamOwned::new(conn, tcp))
}
