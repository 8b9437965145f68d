//! Just enough HTTP/1.1 to read one message off a stream: a head (start line
//! and headers) and a body framed by `content-length`, `chunked`, or the end of
//! the stream. Shared by the test client (responses), the loopback servers
//! (requests), and plain-HTTP calls ([`exchange`]: Envoy's admin endpoint,
//! an app's call to its outbound listener). Deliberately small and strict:
//! anything odd is an error, and nothing is normalized.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Largest head we accept.
const MAX_HEAD: usize = 64 * 1024;
/// Largest body we accept.
const MAX_BODY: usize = 8 * 1024 * 1024;

/// One parsed message: start line, headers in order, body.
#[derive(Debug, Clone)]
pub struct Message {
    /// `GET /path HTTP/1.1` or `HTTP/1.1 200 OK`.
    pub start_line: String,
    /// Header names lowercased, values trimmed, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The decoded body.
    pub body: Vec<u8>,
}

/// How the body ends when neither `content-length` nor `chunked` is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyDefault {
    /// Requests: no body.
    Empty,
    /// Responses: read to the end of the stream.
    UntilClose,
}

/// Reads one message. `Ok(None)` when the stream ends before any byte of a
/// new message (a keep-alive connection closing cleanly).
pub fn read_message(r: &mut impl BufRead, default: BodyDefault) -> io::Result<Option<Message>> {
    let mut start_line = String::new();
    if read_line(r, &mut start_line)? == 0 {
        return Ok(None);
    }
    let start_line = start_line.trim_end_matches(['\r', '\n']).to_owned();
    let mut headers = Vec::new();
    let mut head_len = start_line.len();
    loop {
        let mut line = String::new();
        if read_line(r, &mut line)? == 0 {
            return Err(invalid("stream ended inside the message head"));
        }
        head_len += line.len();
        if head_len > MAX_HEAD {
            return Err(invalid("message head too large"));
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| invalid(&format!("header line without a colon: {line:?}")))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let body = if header("transfer-encoding").is_some_and(|te| te.eq_ignore_ascii_case("chunked")) {
        read_chunked(r)?
    } else if let Some(len) = header("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| invalid(&format!("bad content-length {len:?}")))?;
        if len > MAX_BODY {
            return Err(invalid("body too large"));
        }
        let mut body = vec![0; len];
        r.read_exact(&mut body)?;
        body
    } else {
        match default {
            BodyDefault::Empty => Vec::new(),
            BodyDefault::UntilClose => {
                let mut body = Vec::new();
                r.take(MAX_BODY as u64).read_to_end(&mut body)?;
                body
            }
        }
    };
    Ok(Some(Message {
        start_line,
        headers,
        body,
    }))
}

/// Sends `request` (the whole message, ending the connection with
/// `connection: close`) over plain TCP to `addr` on a fresh connection and
/// reads one response (up to `read_timeout` per read).
pub fn exchange(addr: SocketAddr, request: &[u8], read_timeout: Duration) -> io::Result<Message> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(read_timeout))?;
    s.write_all(request)?;
    read_message(&mut BufReader::new(s), BodyDefault::UntilClose)?
        .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))
}

impl Message {
    /// The status code of a response (`None` for a request, or a status
    /// line that is not one).
    pub fn status(&self) -> Option<u16> {
        self.start_line.split(' ').nth(1)?.parse().ok()
    }

    /// The first value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a header, in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Reads one line; bytes that are not UTF-8 (obs-text in header values)
/// are kept as U+FFFD rather than failing the whole message.
fn read_line(r: &mut impl BufRead, buf: &mut String) -> io::Result<usize> {
    let mut bytes = Vec::new();
    let n = r.take(MAX_HEAD as u64).read_until(b'\n', &mut bytes)?;
    if n > 0 && bytes.last() != Some(&b'\n') {
        return Err(invalid("line too long or stream ended mid-line"));
    }
    buf.push_str(&String::from_utf8_lossy(&bytes));
    Ok(n)
}

fn read_chunked(r: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size_line = String::new();
        read_line(r, &mut size_line)?;
        let size_hex = size_line.trim().split(';').next().unwrap_or("");
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| invalid(&format!("bad chunk size {size_line:?}")))?;
        if size == 0 {
            // Trailers, then the empty line.
            loop {
                let mut line = String::new();
                if read_line(r, &mut line)? == 0 || line.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        if body.len() + size > MAX_BODY {
            return Err(invalid("body too large"));
        }
        let start = body.len();
        body.resize(start + size, 0);
        r.read_exact(&mut body[start..])?;
        let mut crlf = [0u8; 2];
        r.read_exact(&mut crlf)?;
        if &crlf != b"\r\n" {
            return Err(invalid("chunk not followed by CRLF"));
        }
    }
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_content_length_and_chunked() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: b\r\n\r\nhi";
        let m = read_message(&mut &raw[..], BodyDefault::UntilClose)
            .unwrap()
            .unwrap();
        assert_eq!(m.start_line, "HTTP/1.1 200 OK");
        assert_eq!(m.header("x-a"), Some("b"));
        assert_eq!(m.body, b"hi");

        let raw = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhi\r\n1;x\r\n!\r\n0\r\n\r\n";
        let m = read_message(&mut &raw[..], BodyDefault::UntilClose)
            .unwrap()
            .unwrap();
        assert_eq!(m.body, b"hi!");
    }

    #[test]
    fn request_without_length_has_no_body_and_eof_is_none() {
        let raw = b"GET /a HTTP/1.1\r\nhost: x\r\n\r\nGET /b HTTP/1.1\r\n\r\n";
        let mut r = &raw[..];
        let a = read_message(&mut r, BodyDefault::Empty).unwrap().unwrap();
        let b = read_message(&mut r, BodyDefault::Empty).unwrap().unwrap();
        assert_eq!(a.start_line, "GET /a HTTP/1.1");
        assert_eq!(b.start_line, "GET /b HTTP/1.1");
        assert!(read_message(&mut r, BodyDefault::Empty).unwrap().is_none());
    }
}
