//! An HBONE client: what ztunnel (or a sidecar) does to reach a workload
//! through an Istio waypoint. It opens mTLS to the waypoint's
//! `connect_terminate` listener with its own SVID (ALPN `h2`), sends an
//! HTTP/2 `CONNECT` to `<destination ip>:<port>`, and once the tunnel is up
//! (`:status 200`) writes the application's bytes (an HTTP/1.1 request) as
//! DATA on that stream and reads the application's response back out of the
//! DATA frames.
//!
//! One tunnel and one request per connection. Header fields go out in the
//! HPACK literal form of [`crate::http2::H2Request::header_block`]; of the
//! `CONNECT` response only `:status` in the shapes Envoy sends is decoded.

use std::io::{self, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::{ClientConfig, ClientConnection, StreamOwned};

use crate::client::{connect, tls_config, ClientError, Request, Response};
use crate::http::{read_message, BodyDefault};
use crate::http2::{
    H2Request, ACK, DATA, END_HEADERS, END_STREAM, GOAWAY, HEADERS, MAX_FRAME, PADDED, PING,
    PREFACE, PRIORITY, RST_STREAM, SETTINGS,
};
use crate::pki::Leaf;

/// What came back.
#[derive(Debug)]
pub enum HboneOutcome {
    /// The tunnel was established and the application answered.
    Response(Response),
    /// The waypoint refused the `CONNECT` (a `:status` other than 200; the
    /// raw HPACK block, since only 200 is decoded).
    Refused(Vec<u8>),
    /// The stream was reset or the connection went away before an answer.
    Closed(String),
}

/// A client with one workload identity, trusting one CA for the waypoint.
pub struct HboneClient {
    addr: SocketAddr,
    config: Arc<ClientConfig>,
}

impl HboneClient {
    /// Presents `identity` to the waypoint at `addr`, whose certificate must
    /// chain to `waypoint_ca_der` and name `localhost`.
    pub fn new(addr: SocketAddr, waypoint_ca_der: &[u8], identity: &Leaf) -> HboneClient {
        HboneClient {
            addr,
            config: tls_config(waypoint_ca_der, Some(identity), vec![b"h2".to_vec()]),
        }
    }

    /// Opens a tunnel to `destination` (`ip:port`, HBONE's `:authority`)
    /// and sends `request` through it.
    pub fn send(&self, destination: &str, request: &Request) -> Result<HboneOutcome, ClientError> {
        let mut tls = connect(self.addr, &self.config, Duration::from_secs(15))?;

        let connect = H2Request::default()
            .field(":method", "CONNECT")
            .field(":authority", destination);
        let mut out = PREFACE.to_vec();
        frame(&mut out, SETTINGS, 0, 0, &[]);
        frame(&mut out, HEADERS, END_HEADERS, 1, &connect.header_block());
        tls.write_all(&out)?;
        tls.flush()?;

        let mut tunnel_up = false;
        let mut app_bytes = Vec::new();
        loop {
            let Some((kind, flags, stream, payload)) = read_frame(&mut tls)? else {
                return finish(tunnel_up, app_bytes, "the connection closed");
            };
            match kind {
                SETTINGS if flags & ACK == 0 => {
                    let mut ack = Vec::new();
                    frame(&mut ack, SETTINGS, ACK, 0, &[]);
                    tls.write_all(&ack)?;
                    tls.flush()?;
                }
                PING if flags & ACK == 0 => {
                    let mut pong = Vec::new();
                    frame(&mut pong, PING, ACK, 0, &payload);
                    tls.write_all(&pong)?;
                    tls.flush()?;
                }
                HEADERS if stream == 1 && !tunnel_up => {
                    let block = headers_fragment(flags, &payload);
                    if !is_status_200(block) {
                        return Ok(HboneOutcome::Refused(block.to_vec()));
                    }
                    if flags & END_STREAM != 0 {
                        return Ok(HboneOutcome::Closed(
                            "CONNECT answered without a tunnel".into(),
                        ));
                    }
                    tunnel_up = true;
                    let mut data = Vec::new();
                    for chunk in request.to_bytes().chunks(MAX_FRAME) {
                        frame(&mut data, DATA, 0, 1, chunk);
                    }
                    tls.write_all(&data)?;
                    tls.flush()?;
                }
                DATA if stream == 1 => {
                    app_bytes.extend_from_slice(data_payload(flags, &payload));
                    if flags & END_STREAM != 0 {
                        return finish(tunnel_up, app_bytes, "END_STREAM");
                    }
                }
                HEADERS if stream == 1 && flags & END_STREAM != 0 => {
                    // Trailers ending the tunnel.
                    return finish(tunnel_up, app_bytes, "END_STREAM");
                }
                RST_STREAM if stream == 1 => {
                    return finish(tunnel_up, app_bytes, "RST_STREAM");
                }
                GOAWAY => {
                    return finish(tunnel_up, app_bytes, "GOAWAY");
                }
                _ => {}
            }
        }
    }
}

/// The application's response, if the tunnel carried a complete one.
fn finish(tunnel_up: bool, bytes: Vec<u8>, how: &str) -> Result<HboneOutcome, ClientError> {
    if !tunnel_up || bytes.is_empty() {
        return Ok(HboneOutcome::Closed(format!(
            "{how} before an application response (tunnel up: {tunnel_up})"
        )));
    }
    let mut reader = BufReader::new(io::Cursor::new(bytes));
    let msg = read_message(&mut reader, BodyDefault::UntilClose)?
        .ok_or_else(|| ClientError::Malformed("empty tunnel response".into()))?;
    let status = msg
        .start_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ClientError::Malformed(format!("status line {:?}", msg.start_line)))?;
    Ok(HboneOutcome::Response(Response {
        status,
        headers: msg.headers,
        body: msg.body,
    }))
}

/// `:status: 200` as Envoy encodes it: the static-table entry 8 (indexed),
/// or a literal whose name is entry 8 and whose value is the plain text 200.
fn is_status_200(block: &[u8]) -> bool {
    match block {
        [0x88, ..] => true,
        [first, len, rest @ ..] if first & 0x0f == 8 && *len == 3 => rest.starts_with(b"200"),
        _ => false,
    }
}

fn headers_fragment(flags: u8, payload: &[u8]) -> &[u8] {
    let mut start = 0;
    let mut end = payload.len();
    if flags & PADDED != 0 {
        let pad = usize::from(payload.first().copied().unwrap_or(0));
        start = 1;
        end = end.saturating_sub(pad);
    }
    if flags & PRIORITY != 0 {
        start += 5;
    }
    payload.get(start..end).unwrap_or(&[])
}

fn data_payload(flags: u8, payload: &[u8]) -> &[u8] {
    if flags & PADDED != 0 {
        let pad = usize::from(payload.first().copied().unwrap_or(0));
        payload
            .get(1..payload.len().saturating_sub(pad))
            .unwrap_or(&[])
    } else {
        payload
    }
}

/// A frame: type, flags, stream id, payload.
type Frame = (u8, u8, u32, Vec<u8>);

fn read_frame(
    tls: &mut StreamOwned<ClientConnection, TcpStream>,
) -> Result<Option<Frame>, ClientError> {
    let mut head = [0u8; 9];
    if !read_full(tls, &mut head)? {
        return Ok(None);
    }
    let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    let mut payload = vec![0u8; len];
    if !read_full(tls, &mut payload)? {
        return Ok(None);
    }
    Ok(Some((head[3], head[4], stream, payload)))
}

/// Fills `buf`; `Ok(false)` when the peer closed first.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => return Ok(false),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::UnexpectedEof
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::BrokenPipe
                ) =>
            {
                return Ok(false)
            }
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = u32::try_from(payload.len()).expect("frame length");
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_200_in_envoys_encodings_only() {
        assert!(is_status_200(&[0x88]));
        assert!(is_status_200(&[0x08, 3, b'2', b'0', b'0']));
        assert!(is_status_200(&[0x48, 3, b'2', b'0', b'0', 0x00]));
        assert!(!is_status_200(&[0x8d]));
        assert!(!is_status_200(&[0x08, 3, b'5', b'0', b'3']));
        assert!(!is_status_200(&[]));
    }
}
