//! A raw HTTP/2-over-TLS client for the bypass corpus: it writes the header
//! block *exactly* as given (pseudo-headers in any order, repeated, upper
//! case, connection-specific headers...), which no well-behaved HTTP/2
//! library would let a test do.
//!
//! One request per connection, prior knowledge (the client preface right
//! after the handshake; Envoy's `codec_type: AUTO` recognises it). Header
//! fields go out as HPACK "literal without indexing, new name", never
//! Huffman-coded, so the bytes are the test's. Of the response only what the
//! corpus needs is decoded: `:status` (always the first field of a response
//! header block) and the body. A `RST_STREAM` or `GOAWAY` before a response
//! is an outcome of its own: that is how Envoy's codec refuses a malformed
//! HTTP/2 request.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::{ClientConfig, ClientConnection, StreamOwned};

use crate::client::{connect, tls_config, ClientError};
use crate::pki::Leaf;

pub(crate) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
pub(crate) const DATA: u8 = 0x0;
pub(crate) const HEADERS: u8 = 0x1;
pub(crate) const RST_STREAM: u8 = 0x3;
pub(crate) const SETTINGS: u8 = 0x4;
pub(crate) const PING: u8 = 0x6;
pub(crate) const GOAWAY: u8 = 0x7;
pub(crate) const CONTINUATION: u8 = 0x9;
pub(crate) const END_STREAM: u8 = 0x1;
pub(crate) const END_HEADERS: u8 = 0x4;
pub(crate) const ACK: u8 = 0x1;
pub(crate) const PADDED: u8 = 0x8;
pub(crate) const PRIORITY: u8 = 0x20;
/// The largest frame payload a peer must accept (SETTINGS_MAX_FRAME_SIZE default).
pub(crate) const MAX_FRAME: usize = 16_384;

/// One HTTP/2 request: the header block's fields in order, and a body.
#[derive(Debug, Clone, Default)]
pub struct H2Request {
    /// Fields as sent, pseudo-headers included (`:method`, `:path`...).
    pub fields: Vec<(String, String)>,
    /// Sent in one DATA frame when not empty.
    pub body: Vec<u8>,
}

impl H2Request {
    /// `:method`, `:scheme https`, `:authority localhost`, `:path`, in that order.
    pub fn new(method: &str, path: &str) -> H2Request {
        H2Request::default()
            .field(":method", method)
            .field(":scheme", "https")
            .field(":authority", "localhost")
            .field(":path", path)
    }

    /// `GET path`.
    pub fn get(path: &str) -> H2Request {
        H2Request::new("GET", path)
    }

    /// Appends a field (repeatable; any name, any case, any order).
    pub fn field(mut self, name: &str, value: &str) -> H2Request {
        self.fields.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Replaces every field named `name` (or appends it).
    pub fn set(mut self, name: &str, value: &str) -> H2Request {
        if self.fields.iter().any(|(n, _)| n == name) {
            for (n, v) in &mut self.fields {
                if n == name {
                    *v = value.to_owned();
                }
            }
            self
        } else {
            self.field(name, value)
        }
    }

    /// Removes every field named `name`.
    pub fn without(mut self, name: &str) -> H2Request {
        self.fields.retain(|(n, _)| n != name);
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: &[u8]) -> H2Request {
        self.body = body.to_vec();
        self
    }

    /// The HPACK header block: every field as a literal without indexing
    /// with a literal name, no Huffman coding.
    pub fn header_block(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, value) in &self.fields {
            out.push(0x00);
            hpack_string(&mut out, name.as_bytes());
            hpack_string(&mut out, value.as_bytes());
        }
        out
    }
}

/// What came back for the request's stream.
#[derive(Debug, Clone)]
pub enum H2Outcome {
    /// A response: `:status` and the body.
    Response {
        /// `:status`.
        status: u16,
        /// The body (DATA frames, concatenated).
        body: Vec<u8>,
    },
    /// The stream was reset (`RST_STREAM` with this error code).
    Reset(u32),
    /// The connection was shut down (`GOAWAY` with this error code) before
    /// a response.
    GoAway(u32),
    /// The connection closed before a response.
    Closed,
}

impl H2Outcome {
    /// The status, when there was a response.
    pub fn status(&self) -> Option<u16> {
        match self {
            H2Outcome::Response { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The body as JSON, when there was a response with a JSON body.
    pub fn json(&self) -> Option<serde_json::Value> {
        match self {
            H2Outcome::Response { body, .. } => serde_json::from_slice(body).ok(),
            _ => None,
        }
    }
}

/// An HTTP/2 client for one listener and one identity.
#[derive(Clone)]
pub struct H2Client {
    addr: SocketAddr,
    config: Arc<ClientConfig>,
}

impl H2Client {
    /// Trusts `server_ca_der` for Envoy's certificate (name `localhost`) and
    /// presents `identity`, offering ALPN `h2`.
    pub fn new(addr: SocketAddr, server_ca_der: &[u8], identity: Option<&Leaf>) -> H2Client {
        H2Client {
            addr,
            config: tls_config(server_ca_der, identity, vec![b"h2".to_vec()]),
        }
    }

    /// Sends `request` on stream 1 of a fresh connection.
    pub fn send(&self, request: &H2Request) -> Result<H2Outcome, ClientError> {
        let mut tls = connect(self.addr, &self.config, Duration::from_secs(10))?;
        let mut out = PREFACE.to_vec();
        frame(&mut out, SETTINGS, 0, 0, &[]);
        let block = request.header_block();
        let mut chunks = block.chunks(MAX_FRAME).peekable();
        let no_body = request.body.is_empty();
        let first = chunks.next().unwrap_or(&[]);
        let mut flags = if no_body { END_STREAM } else { 0 };
        if chunks.peek().is_none() {
            flags |= END_HEADERS;
        }
        frame(&mut out, HEADERS, flags, 1, first);
        while let Some(chunk) = chunks.next() {
            let flags = if chunks.peek().is_none() {
                END_HEADERS
            } else {
                0
            };
            frame(&mut out, CONTINUATION, flags, 1, chunk);
        }
        for (i, chunk) in request.body.chunks(MAX_FRAME).enumerate() {
            let last = (i + 1) * MAX_FRAME >= request.body.len();
            frame(&mut out, DATA, if last { END_STREAM } else { 0 }, 1, chunk);
        }
        if let Err(e) = tls.write_all(&out).and_then(|()| tls.flush()) {
            // Envoy may close before reading everything (a refused header
            // block): whatever it answered is still in the stream.
            if e.kind() != io::ErrorKind::BrokenPipe && e.kind() != io::ErrorKind::ConnectionReset {
                return Err(e.into());
            }
        }
        read_outcome(&mut tls)
    }
}

fn read_outcome(
    tls: &mut StreamOwned<ClientConnection, TcpStream>,
) -> Result<H2Outcome, ClientError> {
    let mut status: Option<u16> = None;
    let mut block: Vec<u8> = Vec::new();
    let mut body = Vec::new();
    loop {
        let Some((kind, flags, stream, payload)) = read_frame(tls)? else {
            return Ok(match status {
                Some(status) => H2Outcome::Response { status, body },
                None => H2Outcome::Closed,
            });
        };
        match kind {
            SETTINGS if flags & ACK == 0 => {
                let mut ack = Vec::new();
                frame(&mut ack, SETTINGS, ACK, 0, &[]);
                let _ = tls.write_all(&ack).and_then(|()| tls.flush());
            }
            PING if flags & ACK == 0 => {
                let mut pong = Vec::new();
                frame(&mut pong, PING, ACK, 0, &payload);
                let _ = tls.write_all(&pong).and_then(|()| tls.flush());
            }
            HEADERS | CONTINUATION if stream == 1 => {
                let fragment = if kind == HEADERS {
                    headers_fragment(flags, &payload)?
                } else {
                    &payload[..]
                };
                block.extend_from_slice(fragment);
                if flags & END_HEADERS != 0 {
                    if status.is_none() {
                        status = Some(decode_status(&block)?);
                    }
                    block.clear();
                }
                if flags & END_STREAM != 0 {
                    let status = status.ok_or_else(|| malformed("END_STREAM without :status"))?;
                    return Ok(H2Outcome::Response { status, body });
                }
            }
            DATA if stream == 1 => {
                let data = if flags & PADDED != 0 {
                    let pad = usize::from(*payload.first().unwrap_or(&0));
                    payload
                        .get(1..payload.len().saturating_sub(pad))
                        .unwrap_or(&[])
                } else {
                    &payload[..]
                };
                body.extend_from_slice(data);
                if flags & END_STREAM != 0 {
                    let status = status.ok_or_else(|| malformed("DATA before :status"))?;
                    return Ok(H2Outcome::Response { status, body });
                }
            }
            RST_STREAM if stream == 1 => {
                return Ok(match status {
                    Some(status) => H2Outcome::Response { status, body },
                    None => H2Outcome::Reset(u32_at(&payload, 0)),
                });
            }
            GOAWAY => {
                // An error GOAWAY, or one saying stream 1 was never
                // processed, ends it (Envoy then closes after its delayed
                // close timeout; no need to wait for that). A graceful
                // GOAWAY covering stream 1 lets its response finish.
                let last_stream = u32_at(&payload, 0) & 0x7fff_ffff;
                let code = u32_at(&payload, 4);
                if status.is_none() && (code != 0 || last_stream == 0) {
                    return Ok(H2Outcome::GoAway(code));
                }
            }
            _ => {}
        }
    }
}

fn headers_fragment(flags: u8, payload: &[u8]) -> Result<&[u8], ClientError> {
    let mut start = 0;
    let mut end = payload.len();
    if flags & PADDED != 0 {
        let pad = usize::from(*payload.first().ok_or_else(|| malformed("empty HEADERS"))?);
        start = 1;
        end = end
            .checked_sub(pad)
            .ok_or_else(|| malformed("HEADERS padding"))?;
    }
    if flags & PRIORITY != 0 {
        start += 5;
    }
    payload
        .get(start..end)
        .ok_or_else(|| malformed("HEADERS frame too short"))
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    bytes
        .get(at..at + 4)
        .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// A frame: type, flags, stream id, payload.
type Frame = (u8, u8, u32, Vec<u8>);

fn read_frame(
    tls: &mut StreamOwned<ClientConnection, TcpStream>,
) -> Result<Option<Frame>, ClientError> {
    let mut head = [0u8; 9];
    match read_full(tls, &mut head) {
        Ok(true) => {}
        Ok(false) => return Ok(None),
        Err(e) if is_close(&e) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    let mut payload = vec![0u8; len];
    match read_full(tls, &mut payload) {
        Ok(true) => Ok(Some((head[3], head[4], stream, payload))),
        Ok(false) => Ok(None),
        Err(e) if is_close(&e) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Fills `buf`; `Ok(false)` when the stream ended first.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => return Ok(false),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// A peer that closes without `close_notify`, or resets: the end, not a failure.
fn is_close(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
    )
}

fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = payload.len() as u32;
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

/// HPACK integer with an `n`-bit prefix; `first` carries the high bits.
fn hpack_int(out: &mut Vec<u8>, first: u8, n: u32, value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    let mut rest = value - max;
    while rest >= 128 {
        out.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    out.push(rest as u8);
}

fn hpack_string(out: &mut Vec<u8>, s: &[u8]) {
    hpack_int(out, 0x00, 7, s.len());
    out.extend_from_slice(s);
}

fn malformed(what: &str) -> ClientError {
    ClientError::Malformed(what.to_owned())
}

/// Reads `:status` from the first field of a response header block.
fn decode_status(block: &[u8]) -> Result<u16, ClientError> {
    let mut at = 0;
    loop {
        let first = *block
            .get(at)
            .ok_or_else(|| malformed("empty header block"))?;
        if first & 0xe0 == 0x20 {
            // Dynamic table size update: skip it.
            let (_, used) = read_int(&block[at..], 5)?;
            at += used;
            continue;
        }
        break;
    }
    let rest = &block[at..];
    let first = rest[0];
    // Static table entries 8..=14 are `:status` with a value.
    const STATIC_STATUS: [(usize, u16); 7] = [
        (8, 200),
        (9, 204),
        (10, 206),
        (11, 304),
        (12, 400),
        (13, 404),
        (14, 500),
    ];
    if first & 0x80 != 0 {
        let (index, _) = read_int(rest, 7)?;
        return STATIC_STATUS
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, s)| *s)
            .ok_or_else(|| malformed("first response field is not :status"));
    }
    let prefix = if first & 0x40 != 0 { 6 } else { 4 };
    let (index, used) = read_int(rest, prefix)?;
    let mut at = used;
    if index == 0 {
        // A literal name: skip it (it can only be `:status`).
        let (_, used) = read_string(&rest[at..])?;
        at += used;
    } else if !(8..=14).contains(&index) {
        return Err(malformed("first response field is not :status"));
    }
    let (value, _) = read_string(&rest[at..])?;
    let text = String::from_utf8(value).map_err(|_| malformed(":status not UTF-8"))?;
    text.parse()
        .map_err(|_| malformed(&format!(":status {text:?}")))
}

fn read_int(bytes: &[u8], n: u32) -> Result<(usize, usize), ClientError> {
    let max = (1usize << n) - 1;
    let first = usize::from(*bytes.first().ok_or_else(|| malformed("short integer"))?) & max;
    if first < max {
        return Ok((first, 1));
    }
    let mut value = max;
    let mut shift = 0;
    for (i, b) in bytes.iter().enumerate().skip(1) {
        value += usize::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok((value, i + 1));
        }
        shift += 7;
        if shift > 28 {
            break;
        }
    }
    Err(malformed("bad HPACK integer"))
}

/// A string literal; Huffman-coded ones may only hold digits (all `:status` needs).
fn read_string(bytes: &[u8]) -> Result<(Vec<u8>, usize), ClientError> {
    let huffman = bytes.first().is_some_and(|b| b & 0x80 != 0);
    let (len, used) = read_int(bytes, 7)?;
    let raw = bytes
        .get(used..used + len)
        .ok_or_else(|| malformed("short string"))?;
    let value = if huffman {
        huffman_digits(raw)?
    } else {
        raw.to_vec()
    };
    Ok((value, used + len))
}

/// Decodes a Huffman-coded string of ASCII digits (RFC 7541 Appendix B:
/// `0`-`2` are the 5-bit codes 00000-00010, `3`-`9` the 6-bit codes
/// 011001-011111); anything else is an error.
fn huffman_digits(raw: &[u8]) -> Result<Vec<u8>, ClientError> {
    let bits: Vec<u8> = raw
        .iter()
        .flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1))
        .collect();
    let mut out = Vec::new();
    let mut i = 0;
    let take = |i: usize, n: usize| -> Option<u32> {
        bits.get(i..i + n)
            .map(|s| s.iter().fold(0u32, |acc, b| (acc << 1) | u32::from(*b)))
    };
    while i < bits.len() {
        // The end: up to 7 bits of the EOS prefix (all ones).
        if bits.len() - i < 8 && bits[i..].iter().all(|b| *b == 1) {
            break;
        }
        if let Some(v @ 0..=2) = take(i, 5) {
            out.push(b'0' + v as u8);
            i += 5;
            continue;
        }
        match take(i, 6) {
            Some(v @ 0b011001..=0b011111) => {
                out.push(b'3' + (v - 0b011001) as u8);
                i += 6;
            }
            _ => return Err(malformed("Huffman-coded :status is not digits")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hpack_integers_and_strings() {
        let mut out = Vec::new();
        hpack_int(&mut out, 0, 7, 10);
        hpack_int(&mut out, 0, 5, 1337);
        assert_eq!(out, vec![10, 31, 154, 10]);
        assert_eq!(read_int(&[31, 154, 10], 5).unwrap(), (1337, 3));
        let mut s = Vec::new();
        hpack_string(&mut s, b":path");
        assert_eq!(s, b"\x05:path");
    }

    #[test]
    fn status_in_every_shape_envoy_may_send() {
        // Indexed `:status 200`.
        assert_eq!(decode_status(&[0x88]).unwrap(), 200);
        // Literal with incremental indexing, indexed name 8, Huffman "403":
        // 011010 00000 011001 + EOS padding 1 → 0x68 0x0c 0xff? (see below).
        let huff_403 = {
            let bits = "011010" /* 4 */.to_owned() + "00000" /* 0 */ + "011001" /* 3 */;
            let mut bits = bits;
            while !bits.len().is_multiple_of(8) {
                bits.push('1');
            }
            (0..bits.len() / 8)
                .map(|i| u8::from_str_radix(&bits[i * 8..i * 8 + 8], 2).unwrap())
                .collect::<Vec<u8>>()
        };
        let mut block = vec![0x48, 0x80 | huff_403.len() as u8];
        block.extend_from_slice(&huff_403);
        assert_eq!(decode_status(&block).unwrap(), 403);
        // Literal without indexing, plain "503", after a table size update.
        assert_eq!(decode_status(b"\x3f\xe1\x1f\x08\x03503").unwrap(), 503);
        // Literal never indexed with a literal name.
        assert_eq!(decode_status(b"\x10\x07:status\x03431").unwrap(), 431);
        assert!(decode_status(&[0x82]).is_err());
    }
}
