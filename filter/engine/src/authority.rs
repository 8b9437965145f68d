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
/// [`CanonicalAuthority::parse`]; `Copy` and allocation-free (the host lives
/// in an inline buffer), so the request path can afford it.
#[derive(Clone, Copy)]
pub struct CanonicalAuthority {
    host: [u8; MAX_HOST_LEN],
    // INVARIANT: `len <= MAX_HOST_LEN` and `host[..len]` is ASCII.
    len: u8,
    port: Option<u16>,
}

impl fmt::Debug for CanonicalAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CanonicalAuthority")
            .field("host", &self.host())
            .field("port", &self.port)
            .finish()
    }
}

impl PartialEq for CanonicalAuthority {
    fn eq(&self, other: &Self) -> bool {
        self.host() == other.host() && self.port == other.port
    }
}

impl Eq for CanonicalAuthority {}

impl fmt::Display for CanonicalAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.host())?;
        match self.port {
            Some(port) => write!(f, ":{port}"),
            None => Ok(()),
        }
    }
}

/// Writes into the inline host buffer (for the IPv6 form).
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

impl CanonicalAuthority {
    /// Parses `authority` (the `:authority` or `Host` value as received),
    /// or says why it is not canonical. The empty string is the absent
    /// authority (no host, no port).
    pub fn parse(authority: &str) -> Result<CanonicalAuthority, AuthorityError> {
        let mut out = CanonicalAuthority {
            host: [0; MAX_HOST_LEN],
            len: 0,
            port: None,
        };
        if authority.is_empty() {
            return Ok(out);
        }
        let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
            let (inner, after) = rest.split_once(']').ok_or(AuthorityError::BadIpLiteral)?;
            let port = match after {
                "" => None,
                _ => Some(
                    after
                        .strip_prefix(':')
                        .ok_or(AuthorityError::BadIpLiteral)?,
                ),
            };
            out.len = write_ipv6(inner, &mut out.host)?;
            (None, port)
        } else {
            match authority.split_once(':') {
                Some((host, port)) => (Some(host), Some(port)),
                None => (Some(authority), None),
            }
        };
        if let Some(host) = host {
            out.len = write_name(host, &mut out.host)?;
        }
        out.port = port.map(parse_port).transpose()?;
        Ok(out)
    }

    /// The canonical host: lower-case, without port or trailing dot, IPv6 in
    /// brackets; empty when the authority was absent.
    pub fn host(&self) -> &str {
        self.host
            .get(..usize::from(self.len))
            .and_then(|h| core::str::from_utf8(h).ok())
            .unwrap_or("")
    }

    /// The port, when one was given.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// True for the absent (empty) authority.
    pub fn is_absent(&self) -> bool {
        self.len == 0
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

/// Validates a DNS name or dotted-quad IPv4 address and writes it,
/// lower-cased and without its one optional trailing dot, into `buf`;
/// returns its length.
fn write_name(host: &str, buf: &mut [u8; MAX_HOST_LEN]) -> Result<u8, AuthorityError> {
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.is_empty() {
        return Err(AuthorityError::EmptyLabel);
    }
    if let Some(bad) = name
        .bytes()
        .find(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')))
    {
        return Err(AuthorityError::ForbiddenByte(bad));
    }
    if name.len() > MAX_HOST_LEN {
        return Err(AuthorityError::TooLong);
    }
    let mut last = "";
    for label in name.split('.') {
        if label.is_empty() {
            return Err(AuthorityError::EmptyLabel);
        }
        if label.len() > 63 {
            return Err(AuthorityError::LabelTooLong);
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(AuthorityError::HyphenAtLabelEdge);
        }
        last = label;
    }
    if is_numeric_label(last) && !is_dotted_quad(name) {
        return Err(AuthorityError::NotDottedQuad);
    }
    let dest = buf.get_mut(..name.len()).ok_or(AuthorityError::TooLong)?;
    for (d, s) in dest.iter_mut().zip(name.bytes()) {
        *d = s.to_ascii_lowercase();
    }
    u8::try_from(name.len()).map_err(|_| AuthorityError::TooLong)
}

/// A label that URL parsers (WHATWG "ends in a number") and `inet_aton`
/// read as part of an IPv4 address: all decimal digits, or `0x`/`0X`
/// followed by hex digits (possibly none).
fn is_numeric_label(label: &str) -> bool {
    if let Some(hex) = label
        .strip_prefix("0x")
        .or_else(|| label.strip_prefix("0X"))
    {
        return hex.bytes().all(|b| b.is_ascii_hexdigit());
    }
    !label.is_empty() && label.bytes().all(|b| b.is_ascii_digit())
}

/// `a.b.c.d`, four decimal octets 0–255 without leading zeros.
fn is_dotted_quad(name: &str) -> bool {
    let mut count = 0;
    for octet in name.split('.') {
        count += 1;
        let canonical_digits = matches!(octet.len(), 1..=3)
            && octet.bytes().all(|b| b.is_ascii_digit())
            && (octet.len() == 1 || !octet.starts_with('0'));
        if !canonical_digits || octet.parse::<u8>().is_err() {
            return false;
        }
    }
    count == 4
}

/// Parses the inside of `[...]` as an IPv6 address (no zone) and writes
/// `[` + its RFC 5952 form + `]` into `buf`; returns the length.
fn write_ipv6(inner: &str, buf: &mut [u8; MAX_HOST_LEN]) -> Result<u8, AuthorityError> {
    let addr: Ipv6Addr = inner.parse().map_err(|_| AuthorityError::BadIpLiteral)?;
    let mut w = HostWriter { buf, len: 0 };
    write!(w, "[{addr}]").map_err(|_| AuthorityError::BadIpLiteral)?;
    u8::try_from(w.len).map_err(|_| AuthorityError::BadIpLiteral)
}

/// 1–5 digits, no leading zero, 1–65535.
fn parse_port(port: &str) -> Result<u16, AuthorityError> {
    let digits = matches!(port.len(), 1..=5)
        && port.bytes().all(|b| b.is_ascii_digit())
        && !port.starts_with('0');
    if !digits {
        return Err(AuthorityError::BadPort);
    }
    port.parse::<u16>().map_err(|_| AuthorityError::BadPort)
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
