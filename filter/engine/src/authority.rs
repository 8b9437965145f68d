//! The request's `:authority`, parsed into one canonical form before any
//! intent is classified.
//!
//! A host-scoped intent is only as good as the agreement between the filter
//! and whoever reads the `Host` after it (the app, Envoy's router, a next
//! hop). An authority that is not plainly `host[:port]` — `vault.example..`,
//! `vault.example:443:80`, `vault.example,other.example` (two `Host` headers
//! that Envoy joins), `x@vault.example`, `vault.example%2e`, whitespace — may
//! be read as the protected host by some of them while matching no
//! host-scoped intent here; the request would then fall to a broader
//! any-host intent and a host-scoped deny would be evaded. So `evaluate`
//! parses the authority with [`CanonicalAuthority::parse`] and denies
//! anything it refuses with `non_canonical_host`, whatever Envoy's own
//! settings (`strip_trailing_host_dot` or not): the CLI, replay and every
//! proxy decide identically.
//!
//! The accepted grammar (anything else is refused):
//! - `host` or `host:port`, where `port` is 1–5 ASCII digits without a
//!   leading zero, 1–65535 (an empty port, `host:`, is refused);
//! - `host` is one of
//!   - a DNS name: labels of 1–63 bytes of ASCII letters, digits, `-` and
//!     `_`, a label neither starting nor ending with `-` (RFC 1123), at most
//!     253 bytes in all, with exactly one optional trailing `.` that is
//!     removed. `_` is accepted because real service names carry it (SRV
//!     owner names, Docker Compose and some Kubernetes-internal names, and
//!     the policy compiler has always accepted it in `host`); it is one
//!     plain byte that no reader treats as a separator, so it cannot make two
//!     readers see different hosts;
//!   - an IPv4 address in dotted-quad form (`10.0.0.1`: four decimal octets,
//!     no leading zeros). A name whose last label is numeric (`10.1`,
//!     `0x0a.0.0.1`, `010.0.0.1`, `a.123`) is refused, because URL parsers
//!     and `inet_aton` read such names as IPv4 addresses in other spellings;
//!   - an IPv6 literal in brackets (`[::1]`), without a zone; it is
//!     rewritten in RFC 5952 form (`[0:0::1]` → `[::1]`).
//! - The host is lower-cased (DNS names are case-insensitive).
//!
//! An empty authority is kept as "no host": it matches only intents without
//! `host`, exactly like a host no intent names. It is not refused because it
//! is not a bypass — the app receives no host, which it cannot read as the
//! protected one, and whoever treats a request without a host as the
//! protected host (a default virtual host) treats *any* unnamed host that
//! way, which no filter can see — and because policy tests and
//! `meshward explain` use it for requests whose host does not matter. In
//! Envoy it arises only from an HTTP/1.1 `Host:` header with an empty value;
//! a missing `Host` (HTTP/1.1) and an empty `:authority` (HTTP/2) are refused
//! by Envoy's codecs before the filter runs.

use core::fmt::{self, Write as _};
use core::net::Ipv6Addr;

/// The longest host, in bytes, of any accepted form (a DNS name's limit;
/// an IPv6 literal in brackets is at most 41 bytes).
pub(crate) const MAX_HOST_LEN: usize = 253;

/// Why an authority is not canonical. Each variant is a refusal
/// (`non_canonical_host`); the variants only make messages specific.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthorityError {
    /// A byte no host may contain: whitespace, control bytes, non-ASCII,
    /// `,` (a joined list), `@` (userinfo), `%` (percent-encoding), `/`,
    /// `\`, `?`, `#`, `*` and the like.
    #[error("byte {0:#04x} cannot appear in a host")]
    ForbiddenByte(u8),
    /// An empty label: a leading `.`, `..`, a lone `.`, or a second trailing dot.
    #[error("the host has an empty label")]
    EmptyLabel,
    /// A label longer than 63 bytes.
    #[error("a host label is longer than 63 bytes")]
    LabelTooLong,
    /// The host (without its trailing dot) is longer than 253 bytes.
    #[error("the host is longer than 253 bytes")]
    TooLong,
    /// A label that starts or ends with `-`.
    #[error("a host label starts or ends with `-`")]
    HyphenAtLabelEdge,
    /// The last label is numeric but the host is not a dotted-quad IPv4
    /// address (`10.1`, `0x0a.0.0.1`, `010.0.0.1`, `1.2.3.256`).
    #[error("the host looks like an IPv4 address but is not a dotted quad")]
    NotDottedQuad,
    /// `[...]` that is not an IPv6 address without a zone, or text after `]`
    /// that is not `:port`.
    #[error("the bracketed host is not an IPv6 address")]
    BadIpLiteral,
    /// The port is empty, not 1–5 digits, has a leading zero, is 0 or more
    /// than 65535, or there is a second `:`.
    #[error("the port is not a number from 1 to 65535")]
    BadPort,
}

/// An `:authority` in canonical form: a lower-case host (see the module
/// documentation for the grammar) and an optional port. Constructed only by
/// [`CanonicalAuthority::parse`]; `Copy` and allocation-free. The common
/// case, a host already canonical as received, borrows it; a host that had
/// to be rewritten (upper case, the trailing dot, an IPv6 literal) lives in
/// an inline buffer.
#[derive(Clone, Copy)]
pub struct CanonicalAuthority<'a> {
    host: Host<'a>,
    port: Option<u16>,
}

#[derive(Clone, Copy)]
#[expect(
    clippy::large_enum_variant,
    reason = "allocation-free by design: a rewritten host lives inline, on the stack of one decision"
)]
enum Host<'a> {
    /// The received host, already canonical (or empty: no host).
    Received(&'a str),
    /// The host rewritten into canonical form.
    // INVARIANT: `len <= MAX_HOST_LEN` and `buf[..len]` is ASCII.
    Rewritten { buf: [u8; MAX_HOST_LEN], len: u8 },
}

impl fmt::Debug for CanonicalAuthority<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CanonicalAuthority")
            .field("host", &self.host())
            .field("port", &self.port)
            .finish()
    }
}

impl PartialEq for CanonicalAuthority<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.host() == other.host() && self.port == other.port
    }
}

impl Eq for CanonicalAuthority<'_> {}

impl fmt::Display for CanonicalAuthority<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.host())?;
        match self.port {
            Some(port) => write!(f, ":{port}"),
            None => Ok(()),
        }
    }
}

/// Writes into an inline host buffer (for the IPv6 form).
struct HostWriter<'a> {
    buf: &'a mut [u8; MAX_HOST_LEN],
    len: usize,
}

impl fmt::Write for HostWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(fmt::Error)?;
        let dest = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        dest.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

impl<'a> CanonicalAuthority<'a> {
    /// Parses `authority` (the `:authority` or `Host` value as received),
    /// or says why it is not canonical. The empty string is the absent
    /// authority (no host, no port).
    pub fn parse(authority: &'a str) -> Result<CanonicalAuthority<'a>, AuthorityError> {
        if authority.is_empty() {
            return Ok(CanonicalAuthority {
                host: Host::Received(""),
                port: None,
            });
        }
        if let Some(rest) = authority.strip_prefix('[') {
            let (inner, after) = rest.split_once(']').ok_or(AuthorityError::BadIpLiteral)?;
            let port = match after {
                "" => None,
                _ => Some(
                    after
                        .strip_prefix(':')
                        .ok_or(AuthorityError::BadIpLiteral)?,
                ),
            };
            // The address before the port, so a bad literal is reported
            // as one whatever follows it.
            let host = ipv6_host(inner)?;
            let port = port.map(parse_port).transpose()?;
            return Ok(CanonicalAuthority { host, port });
        }
        // A byte loop, not `split_once(':')`: authorities are short, and
        // this runs on every decision.
        let (host, port) = match authority.bytes().position(|b| b == b':') {
            Some(colon) => (
                authority.get(..colon).unwrap_or_default(),
                Some(authority.get(colon + 1..).unwrap_or_default()),
            ),
            None => (authority, None),
        };
        let host = name_host(host)?;
        let port = port.map(parse_port).transpose()?;
        Ok(CanonicalAuthority { host, port })
    }

    /// The canonical host: lower-case, without port or trailing dot, IPv6 in
    /// brackets; empty when the authority was absent.
    pub fn host(&self) -> &str {
        match &self.host {
            Host::Received(host) => host,
            Host::Rewritten { buf, len } => buf
                .get(..usize::from(*len))
                .and_then(|h| core::str::from_utf8(h).ok())
                .unwrap_or(""),
        }
    }

    /// The port, when one was given.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// True for the absent (empty) authority.
    pub fn is_absent(&self) -> bool {
        self.host().is_empty()
    }
}

/// Whether `host` (no port) is already a canonical host that a host-scoped
/// intent can name: a DNS name or dotted-quad IPv4 address, lower-case,
/// without a trailing dot. (IPv6 literals are canonical authorities but the
/// policy language does not name them.)
pub(crate) fn is_canonical_intent_host(host: &str) -> bool {
    !host.is_empty()
        && !host.ends_with('.')
        && !host.starts_with('[')
        && !host.contains(':')
        && CanonicalAuthority::parse(host).is_ok_and(|a| a.host() == host)
}

/// Validates a DNS name or dotted-quad IPv4 address in one pass over its
/// bytes (this runs on every decision) and returns it canonical: as
/// received when it already is, else lower-cased and without its one
/// optional trailing dot. Errors, in order of precedence: the first
/// forbidden byte, the length, then the first bad label, then a numeric
/// last label that is not a dotted quad.
fn name_host(host: &str) -> Result<Host<'_>, AuthorityError> {
    let received = host.as_bytes();
    let name = received.strip_suffix(b".").unwrap_or(received);
    if name.is_empty() {
        return Err(AuthorityError::EmptyLabel);
    }
    let mut label_start = 0;
    let mut bad_label = None;
    let mut upper = false;
    for (i, &b) in name.iter().enumerate() {
        // A `u8` index is always in the table: the check compiles away.
        match NAME_BYTES
            .get(usize::from(b))
            .copied()
            .unwrap_or(NameByte::Forbidden)
        {
            NameByte::Plain => {}
            NameByte::Upper => upper = true,
            NameByte::Dot => {
                if bad_label.is_none() {
                    bad_label = check_label(name.get(label_start..i).unwrap_or_default()).err();
                }
                label_start = i + 1;
            }
            NameByte::Forbidden => return Err(AuthorityError::ForbiddenByte(b)),
        }
    }
    if name.len() > MAX_HOST_LEN {
        return Err(AuthorityError::TooLong);
    }
    let last = name.get(label_start..).unwrap_or_default();
    if let Some(error) = bad_label.or_else(|| check_label(last).err()) {
        return Err(error);
    }
    if is_numeric_label(last) && !is_dotted_quad(name) {
        return Err(AuthorityError::NotDottedQuad);
    }
    if !upper && name.len() == received.len() {
        return Ok(Host::Received(host));
    }
    let mut buf = [0; MAX_HOST_LEN];
    let dest = buf.get_mut(..name.len()).ok_or(AuthorityError::TooLong)?;
    for (d, s) in dest.iter_mut().zip(name) {
        *d = s.to_ascii_lowercase();
    }
    let len = u8::try_from(name.len()).map_err(|_| AuthorityError::TooLong)?;
    Ok(Host::Rewritten { buf, len })
}

/// What a byte is in a DNS name or IPv4 address.
#[derive(Clone, Copy)]
enum NameByte {
    /// `a`–`z`, `0`–`9`, `-`, `_`.
    Plain,
    /// `A`–`Z`: accepted, lower-cased.
    Upper,
    /// `.`: ends a label.
    Dot,
    /// Anything else.
    Forbidden,
}

/// [`NameByte`] of every byte: one load per byte on the request path.
#[expect(
    clippy::indexing_slicing,
    reason = "evaluated at compile time, with `b < 256`"
)]
static NAME_BYTES: [NameByte; 256] = {
    let mut table = [NameByte::Forbidden; 256];
    let mut b = 0;
    while b < 256 {
        let byte = b as u8;
        table[b] = match byte {
            b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => NameByte::Plain,
            b'A'..=b'Z' => NameByte::Upper,
            b'.' => NameByte::Dot,
            _ => NameByte::Forbidden,
        };
        b += 1;
    }
    table
};

/// A DNS label: 1–63 bytes, not starting or ending with `-` (its bytes are
/// checked by the caller).
fn check_label(label: &[u8]) -> Result<(), AuthorityError> {
    match label {
        [] => Err(AuthorityError::EmptyLabel),
        _ if label.len() > 63 => Err(AuthorityError::LabelTooLong),
        [b'-', ..] | [.., b'-'] => Err(AuthorityError::HyphenAtLabelEdge),
        _ => Ok(()),
    }
}

/// A label that URL parsers (WHATWG "ends in a number") and `inet_aton`
/// read as part of an IPv4 address: all decimal digits, or `0x`/`0X`
/// followed by hex digits (possibly none).
fn is_numeric_label(label: &[u8]) -> bool {
    if let Some(hex) = label
        .strip_prefix(b"0x")
        .or_else(|| label.strip_prefix(b"0X"))
    {
        return hex.iter().all(u8::is_ascii_hexdigit);
    }
    !label.is_empty() && label.iter().all(u8::is_ascii_digit)
}

/// `a.b.c.d`, four decimal octets 0–255 without leading zeros.
fn is_dotted_quad(name: &[u8]) -> bool {
    let mut count = 0;
    for octet in name.split(|&b| b == b'.') {
        count += 1;
        let canonical_digits = matches!(octet.len(), 1..=3)
            && octet.iter().all(u8::is_ascii_digit)
            && (octet.len() == 1 || !octet.starts_with(b"0"));
        if !canonical_digits {
            return false;
        }
        // At most three digits: no overflow.
        let value = octet.iter().fold(0u32, |v, d| v * 10 + u32::from(d - b'0'));
        if value > 255 {
            return false;
        }
    }
    count == 4
}

/// Parses the inside of `[...]` as an IPv6 address (no zone) and writes
/// `[` + its RFC 5952 form + `]`.
fn ipv6_host(inner: &str) -> Result<Host<'static>, AuthorityError> {
    let addr: Ipv6Addr = inner.parse().map_err(|_| AuthorityError::BadIpLiteral)?;
    let mut buf = [0; MAX_HOST_LEN];
    let mut w = HostWriter {
        buf: &mut buf,
        len: 0,
    };
    write!(w, "[{addr}]").map_err(|_| AuthorityError::BadIpLiteral)?;
    let len = u8::try_from(w.len).map_err(|_| AuthorityError::BadIpLiteral)?;
    Ok(Host::Rewritten { buf, len })
}

/// 1–5 digits, no leading zero, 1–65535.
fn parse_port(port: &str) -> Result<u16, AuthorityError> {
    let digits = matches!(port.len(), 1..=5)
        && port.bytes().all(|b| b.is_ascii_digit())
        && !port.starts_with('0');
    if !digits {
        return Err(AuthorityError::BadPort);
    }
    // At most five digits: no overflow in u32.
    let value = port.bytes().fold(0u32, |v, d| v * 10 + u32::from(d - b'0'));
    u16::try_from(value).map_err(|_| AuthorityError::BadPort)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canonical(a: &str) -> Result<String, AuthorityError> {
        CanonicalAuthority::parse(a).map(|c| c.to_string())
    }

    #[test]
    fn accepts_and_canonicalizes() {
        for (input, want) in [
            ("vault.example", "vault.example"),
            ("Vault.Example", "vault.example"),
            ("vault.example.", "vault.example"),
            ("VAULT.example.:8443", "vault.example:8443"),
            ("vault.example:443", "vault.example:443"),
            ("localhost", "localhost"),
            ("my_service", "my_service"),
            ("_http._tcp.example", "_http._tcp.example"),
            ("a-b.c-d", "a-b.c-d"),
            ("x1.example", "x1.example"),
            ("10.0.0.1", "10.0.0.1"),
            ("10.0.0.1:80", "10.0.0.1:80"),
            ("255.255.255.255", "255.255.255.255"),
            ("0.0.0.0.", "0.0.0.0"),
            ("[::1]", "[::1]"),
            ("[::1]:8443", "[::1]:8443"),
            ("[0:0:0:0:0:0:0:1]", "[::1]"),
            ("[2001:DB8::A]", "[2001:db8::a]"),
            ("[::ffff:10.0.0.1]:1", "[::ffff:10.0.0.1]:1"),
            ("a.example:65535", "a.example:65535"),
            ("a.example:1", "a.example:1"),
            ("a.0xg", "a.0xg"),
            ("a.1x", "a.1x"),
        ] {
            assert_eq!(canonical(input).as_deref(), Ok(want), "{input}");
        }
        let a = CanonicalAuthority::parse("Files.Shop.Example.:443").unwrap();
        assert_eq!(a.host(), "files.shop.example");
        assert_eq!(a.port(), Some(443));
        assert!(!a.is_absent());
    }

    #[test]
    fn the_absent_authority_is_no_host() {
        let a = CanonicalAuthority::parse("").unwrap();
        assert!(a.is_absent());
        assert_eq!(a.host(), "");
        assert_eq!(a.port(), None);
    }

    #[test]
    fn refuses_every_other_shape() {
        use AuthorityError::*;
        let long_label = format!("{}.example", "a".repeat(64));
        let long_name = ["a".repeat(63).as_str(); 4].join(".");
        let max_name = format!(
            "{}.{}",
            ["a".repeat(63).as_str(); 3].join("."),
            "a".repeat(61)
        );
        assert_eq!(max_name.len(), 253);
        assert!(canonical(&max_name).is_ok());
        assert!(canonical(&format!("{max_name}.")).is_ok());
        for (input, want) in [
            ("vault.example..", EmptyLabel),
            ("vault..example", EmptyLabel),
            (".vault.example", EmptyLabel),
            (".", EmptyLabel),
            ("..", EmptyLabel),
            ("vault.example.:", BadPort),
            ("vault.example:443:80", BadPort),
            ("vault.example:", BadPort),
            ("vault.example:0", BadPort),
            ("vault.example:080", BadPort),
            ("vault.example:65536", BadPort),
            ("vault.example:123456", BadPort),
            ("vault.example:http", BadPort),
            ("vault.example:+80", BadPort),
            ("vault.example: 80", BadPort),
            (":443", EmptyLabel),
            ("vault.example,other.example", ForbiddenByte(b',')),
            ("vault.example, other.example", ForbiddenByte(b',')),
            ("x@vault.example", ForbiddenByte(b'@')),
            ("vault.example ", ForbiddenByte(b' ')),
            (" vault.example", ForbiddenByte(b' ')),
            ("vault\texample", ForbiddenByte(b'\t')),
            ("vault.example\0", ForbiddenByte(0)),
            ("vault.example\r\n", ForbiddenByte(b'\r')),
            ("vault%2eexample", ForbiddenByte(b'%')),
            ("vault.example%2e", ForbiddenByte(b'%')),
            ("vault.example/x", ForbiddenByte(b'/')),
            ("vault.example\\x", ForbiddenByte(b'\\')),
            ("vault.example?x", ForbiddenByte(b'?')),
            ("vault.example#x", ForbiddenByte(b'#')),
            ("*.example", ForbiddenByte(b'*')),
            ("vault.exampl\u{e9}", ForbiddenByte(0xc3)),
            ("-vault.example", HyphenAtLabelEdge),
            ("vault-.example", HyphenAtLabelEdge),
            (long_label.as_str(), LabelTooLong),
            (long_name.as_str(), TooLong),
            ("10.1", NotDottedQuad),
            ("10.0.0.1.1", NotDottedQuad),
            ("010.0.0.1", NotDottedQuad),
            ("0x0a.0.0.1", NotDottedQuad),
            ("1.2.3.256", NotDottedQuad),
            ("a.123", NotDottedQuad),
            ("127.0.0.0x1", NotDottedQuad),
            ("2130706433", NotDottedQuad),
            ("a.0x", NotDottedQuad),
            ("0x", NotDottedQuad),
            ("[::1", BadIpLiteral),
            ("[::1]x", BadIpLiteral),
            ("[::1]]", BadIpLiteral),
            ("[::1]:", BadPort),
            ("[::1]:80:80", BadPort),
            ("[vault.example]", BadIpLiteral),
            ("[fe80::1%25eth0]", BadIpLiteral),
            ("[fe80::1%eth0]", BadIpLiteral),
            ("[]", BadIpLiteral),
            ("[[::1]]", BadIpLiteral),
            ("[vault]:http", BadIpLiteral),
            ("::1", EmptyLabel),
            ("]", ForbiddenByte(b']')),
        ] {
            assert_eq!(canonical(input), Err(want), "{input:?}");
        }
    }

    #[test]
    fn intent_hosts_must_already_be_canonical() {
        assert!(is_canonical_intent_host("vault.example"));
        assert!(is_canonical_intent_host("10.0.0.1"));
        for bad in [
            "",
            "Vault.example",
            "vault.example.",
            "vault.example:443",
            "vault..example",
            "[::1]",
            "10.1",
            "a b",
        ] {
            assert!(!is_canonical_intent_host(bad), "{bad:?}");
        }
    }

    #[test]
    fn display_parses_back_to_itself() {
        for input in ["A.b.:1", "[::FFFF:1.2.3.4]:65535", "x", "1.2.3.4"] {
            let a = CanonicalAuthority::parse(input).unwrap();
            assert_eq!(CanonicalAuthority::parse(&a.to_string()).unwrap(), a);
        }
    }
}
