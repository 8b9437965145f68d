//! A strict parser for Envoy's `x-forwarded-client-cert` (XFCC) header.
//!
//! What Envoy writes (`ConnectionManagerUtility::mutateXfccRequestHeader`):
//!
//! ```text
//! header  = element *( "," element )       ; one element per hop; SANITIZE_SET writes one
//! element = pair *( ";" pair )
//! pair    = key "=" value
//! key     = "By" / "Hash" / "Cert" / "Chain" / "Subject" / "URI" / "DNS"   ; case-insensitive
//! value   = quoted / bare
//! quoted  = DQUOTE *( "\" any / any-but-DQUOTE-or-backslash ) DQUOTE
//! bare    = *( any but "," ";" DQUOTE )     ; may be empty (`URI=`)
//! ```
//!
//! Envoy writes `By=` once per local URI SAN, `URI=` once per peer URI SAN and
//! `DNS=` once per peer DNS SAN, so those keys may repeat inside an element;
//! `Hash`, `Cert`, `Chain` and `Subject` may not. `Cert` and `Chain` are
//! URL-encoded PEM, always quoted; `Subject` is an RFC 2253 name, quoted, in
//! which `\` escapes the next character.
//!
//! The parser borrows from the input (values are returned raw: for a quoted
//! value, the text between the quotes with its backslash escapes intact) and
//! never panics: every deviation is an [`XfccError`].

/// Longest header we look at. Envoy's default request header limit is 60 KiB,
/// and an element with a certificate and its chain is about 2.5 KB.
pub const MAX_XFCC_LEN: usize = 64 * 1024;

/// Why an `x-forwarded-client-cert` value was rejected. Offsets are byte
/// offsets into the header value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum XfccError {
    /// The header is longer than [`MAX_XFCC_LEN`].
    #[error("x-forwarded-client-cert is longer than 64 KiB")]
    TooLong,
    /// The header value is empty.
    #[error("x-forwarded-client-cert is empty")]
    Empty,
    /// An element or pair is empty: `;;`, `,,`, or a leading or trailing `;` / `,`.
    #[error("empty element or pair at byte {0}")]
    EmptyPair(usize),
    /// A pair has no `=` between its key and value.
    #[error("pair at byte {0} has no `=`")]
    MissingEquals(usize),
    /// A key is not one of `By`, `Hash`, `Cert`, `Chain`, `Subject`, `URI`, `DNS`.
    #[error("unknown key at byte {0}")]
    UnknownKey(usize),
    /// `Hash`, `Cert`, `Chain` or `Subject` appears twice in one element.
    #[error("key at byte {0} appears twice in one element")]
    DuplicateKey(usize),
    /// A quoted value has no closing `"`.
    #[error("quoted value starting at byte {0} has no closing quote")]
    UnterminatedQuote(usize),
    /// A `"` inside an unquoted value (or in a key).
    #[error("unexpected `\"` at byte {0}")]
    StrayQuote(usize),
    /// Something other than `;`, `,` or the end follows a closing quote.
    #[error("unexpected bytes after a quoted value at byte {0}")]
    TrailingGarbage(usize),
    /// A control character (below 0x20, or 0x7f) anywhere in the header.
    #[error("control character at byte {0}")]
    ControlChar(usize),
    /// More than one element where exactly one was expected (`SANITIZE_SET`).
    #[error("more than one element where exactly one was expected")]
    MultipleElements,
}

/// The keys Envoy writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// `By`: a URI SAN of the proxy's own certificate (repeats).
    By,
    /// `Hash`: SHA-256 of the peer certificate (DER), lowercase hex.
    Hash,
    /// `Cert`: the peer certificate, URL-encoded PEM.
    Cert,
    /// `Chain`: the peer chain, URL-encoded PEM.
    Chain,
    /// `Subject`: the peer's subject name, RFC 2253.
    Subject,
    /// `URI`: a URI SAN of the peer certificate (repeats; may be empty).
    Uri,
    /// `DNS`: a DNS SAN of the peer certificate (repeats).
    Dns,
}

impl Key {
    /// Matches a key name, ignoring ASCII case.
    pub fn from_name(name: &str) -> Option<Key> {
        const KEYS: [(&str, Key); 7] = [
            ("by", Key::By),
            ("hash", Key::Hash),
            ("cert", Key::Cert),
            ("chain", Key::Chain),
            ("subject", Key::Subject),
            ("uri", Key::Uri),
            ("dns", Key::Dns),
        ];
        KEYS.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, k)| *k)
    }
}

/// One element (one hop) of the header. Values are raw slices of the input.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element<'a> {
    /// `By` values, in order.
    pub by: Vec<&'a str>,
    /// `Hash`.
    pub hash: Option<&'a str>,
    /// `Cert` (still URL-encoded).
    pub cert: Option<&'a str>,
    /// `Chain` (still URL-encoded).
    pub chain: Option<&'a str>,
    /// `Subject` (escapes intact).
    pub subject: Option<&'a str>,
    /// `URI` values, in order.
    pub uri: Vec<&'a str>,
    /// `DNS` values, in order.
    pub dns: Vec<&'a str>,
}

impl<'a> Element<'a> {
    fn set(&mut self, key: Key, value: &'a str, key_at: usize) -> Result<(), XfccError> {
        let single = match key {
            Key::By => {
                self.by.push(value);
                return Ok(());
            }
            Key::Uri => {
                self.uri.push(value);
                return Ok(());
            }
            Key::Dns => {
                self.dns.push(value);
                return Ok(());
            }
            Key::Hash => &mut self.hash,
            Key::Cert => &mut self.cert,
            Key::Chain => &mut self.chain,
            Key::Subject => &mut self.subject,
        };
        if single.is_some() {
            return Err(XfccError::DuplicateKey(key_at));
        }
        *single = Some(value);
        Ok(())
    }
}

/// Parses a whole header value into its elements (at least one).
pub fn parse(header: &str) -> Result<Vec<Element<'_>>, XfccError> {
    if header.len() > MAX_XFCC_LEN {
        return Err(XfccError::TooLong);
    }
    if header.is_empty() {
        return Err(XfccError::Empty);
    }
    let mut parser = Parser {
        text: header,
        pos: 0,
    };
    let mut elements = Vec::new();
    loop {
        elements.push(parser.element()?);
        match parser.peek() {
            None => return Ok(elements),
            Some(b',') => parser.pos += 1,
            // `element` stops only at `,` or the end.
            Some(_) => return Err(XfccError::TrailingGarbage(parser.pos)),
        }
    }
}

/// Parses a header that must hold exactly one element, as Envoy writes it with
/// `forward_client_cert_details: SANITIZE_SET`.
pub fn parse_single(header: &str) -> Result<Element<'_>, XfccError> {
    let mut elements = parse(header)?;
    if elements.len() != 1 {
        return Err(XfccError::MultipleElements);
    }
    elements.pop().ok_or(XfccError::Empty)
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

fn is_control(b: u8) -> bool {
    b < 0x20 || b == 0x7f
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    /// The input between two byte offsets. Both sit on ASCII delimiters or the
    /// ends, hence on char boundaries; `get` keeps that an error, not a panic.
    fn slice(&self, start: usize, end: usize) -> Result<&'a str, XfccError> {
        self.text
            .get(start..end)
            .ok_or(XfccError::TrailingGarbage(start))
    }

    /// `pair *( ";" pair )`; stops before `,` or at the end.
    fn element(&mut self) -> Result<Element<'a>, XfccError> {
        let mut element = Element::default();
        loop {
            let key_at = self.pos;
            let key = self.key()?;
            let value = self.value()?;
            element.set(key, value, key_at)?;
            match self.peek() {
                Some(b';') => self.pos += 1,
                _ => return Ok(element),
            }
        }
    }

    /// A key and its `=`.
    fn key(&mut self) -> Result<Key, XfccError> {
        let start = self.pos;
        loop {
            match self.peek() {
                Some(b'=') => break,
                None | Some(b';' | b',') if self.pos == start => {
                    return Err(XfccError::EmptyPair(start))
                }
                None | Some(b';' | b',') => return Err(XfccError::MissingEquals(start)),
                Some(b'"') => return Err(XfccError::StrayQuote(self.pos)),
                Some(b) if is_control(b) => return Err(XfccError::ControlChar(self.pos)),
                Some(_) => self.pos += 1,
            }
        }
        let name = self.slice(start, self.pos)?;
        self.pos += 1; // the '='
        Key::from_name(name).ok_or(XfccError::UnknownKey(start))
    }

    /// A quoted or bare value; leaves `pos` on the following `;`, `,` or end.
    fn value(&mut self) -> Result<&'a str, XfccError> {
        if self.peek() == Some(b'"') {
            self.quoted()
        } else {
            self.bare()
        }
    }

    fn bare(&mut self) -> Result<&'a str, XfccError> {
        let start = self.pos;
        loop {
            match self.peek() {
                None | Some(b';' | b',') => return self.slice(start, self.pos),
                Some(b'"') => return Err(XfccError::StrayQuote(self.pos)),
                Some(b) if is_control(b) => return Err(XfccError::ControlChar(self.pos)),
                Some(_) => self.pos += 1,
            }
        }
    }

    fn quoted(&mut self) -> Result<&'a str, XfccError> {
        let open = self.pos;
        self.pos += 1;
        let start = self.pos;
        loop {
            match self.peek() {
                None => return Err(XfccError::UnterminatedQuote(open)),
                Some(b'"') => break,
                Some(b) if is_control(b) => return Err(XfccError::ControlChar(self.pos)),
                Some(b'\\') => {
                    // The escaped character must exist and follows the same rules.
                    self.pos += 1;
                    match self.peek() {
                        None => return Err(XfccError::UnterminatedQuote(open)),
                        Some(b) if is_control(b) => return Err(XfccError::ControlChar(self.pos)),
                        Some(_) => self.pos += 1,
                    }
                }
                Some(_) => self.pos += 1,
            }
        }
        let value = self.slice(start, self.pos)?;
        self.pos += 1; // the closing quote
        match self.peek() {
            None | Some(b';' | b',') => Ok(value),
            Some(_) => Err(XfccError::TrailingGarbage(self.pos)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HASH: &str = "8b1a9953c4611296a827abf8c47804d7f1b5b8e7a1e5b8b1e0d6a5f9f9c3c2b1";

    #[test]
    fn parses_what_envoy_writes() {
        let header = format!(
            "By=spiffe://prod.example/ns/shop/sa/gw;By=spiffe://prod.example/alt;Hash={HASH};\
             Cert=\"-----BEGIN%20CERTIFICATE-----%0AMIIB%2Bw%3D%3D%0A-----END%20CERTIFICATE-----%0A\";\
             Chain=\"-----BEGIN%20CERTIFICATE-----%0A-----END%20CERTIFICATE-----%0A\";\
             Subject=\"CN=orders,O=Acme\\, Inc.,OU=say \\\"hi\\\"\";\
             URI=spiffe://prod.example/ns/shop/sa/orders;DNS=orders.shop;DNS=orders"
        );
        let el = parse_single(&header).unwrap();
        assert_eq!(
            el.by,
            [
                "spiffe://prod.example/ns/shop/sa/gw",
                "spiffe://prod.example/alt"
            ]
        );
        assert_eq!(el.hash, Some(HASH));
        assert_eq!(
            el.cert,
            Some("-----BEGIN%20CERTIFICATE-----%0AMIIB%2Bw%3D%3D%0A-----END%20CERTIFICATE-----%0A")
        );
        assert!(el.chain.is_some());
        assert_eq!(
            el.subject,
            Some("CN=orders,O=Acme\\, Inc.,OU=say \\\"hi\\\"")
        );
        assert_eq!(el.uri, ["spiffe://prod.example/ns/shop/sa/orders"]);
        assert_eq!(el.dns, ["orders.shop", "orders"]);
    }

    #[test]
    fn keys_ignore_case_and_values_may_be_empty() {
        let el = parse_single("hAsH=ab;uri=;SUBJECT=\"\";dns=x").unwrap();
        assert_eq!(el.hash, Some("ab"));
        assert_eq!(el.uri, [""]);
        assert_eq!(el.subject, Some(""));
        assert_eq!(el.dns, ["x"]);
    }

    #[test]
    fn splits_elements_outside_quotes_only() {
        let all = parse("Hash=aa;Subject=\"CN=a,O=b\",Hash=bb;URI=spiffe://x/y").unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].subject, Some("CN=a,O=b"));
        assert_eq!(all[1].hash, Some("bb"));
        assert_eq!(
            parse_single("Hash=aa,Hash=bb"),
            Err(XfccError::MultipleElements)
        );
    }

    #[test]
    fn repeats_only_the_repeatable_keys() {
        let el = parse_single("By=a;By=b;URI=c;URI=d;DNS=e;DNS=f").unwrap();
        assert_eq!((el.by.len(), el.uri.len(), el.dns.len()), (2, 2, 2));
        for key in ["Hash", "Cert", "Chain", "Subject"] {
            let header = format!("{key}=\"a\";URI=x;{key}=\"b\"");
            assert_eq!(
                parse_single(&header),
                Err(XfccError::DuplicateKey(header.rfind(key).unwrap())),
                "{header}"
            );
        }
        // Case-insensitive duplicates too.
        assert_eq!(
            parse_single("Hash=a;HASH=b"),
            Err(XfccError::DuplicateKey(7))
        );
    }

    #[test]
    fn rejects_malformed_headers() {
        use XfccError::*;
        let cases: &[(&str, XfccError)] = &[
            ("", Empty),
            (";", EmptyPair(0)),
            ("Hash=a;", EmptyPair(7)),
            ("Hash=a;;URI=b", EmptyPair(7)),
            ("Hash=a,", EmptyPair(7)),
            (",Hash=a", EmptyPair(0)),
            ("Hash=a,,Hash=b", EmptyPair(7)),
            ("Hash", MissingEquals(0)),
            ("Hash=a;URI", MissingEquals(7)),
            ("Hash=a;URI,x", MissingEquals(7)),
            ("=a", UnknownKey(0)),
            ("Foo=a", UnknownKey(0)),
            (" Hash=a", UnknownKey(0)),
            ("Hash =a", UnknownKey(0)),
            ("Cert=\"abc", UnterminatedQuote(5)),
            ("Cert=\"abc\\\"", UnterminatedQuote(5)),
            ("Cert=\"abc\\", UnterminatedQuote(5)),
            ("Cert=\"a\"b", TrailingGarbage(8)),
            ("Cert=\"a\" ;URI=x", TrailingGarbage(8)),
            ("Cert=\"a\"\"b\"", TrailingGarbage(8)),
            ("Cert=a\"b\"", StrayQuote(6)),
            ("Ce\"rt=a", StrayQuote(2)),
            ("URI=a\nb", ControlChar(5)),
            ("URI=a\rb", ControlChar(5)),
            ("Subject=\"a\tb\"", ControlChar(10)),
            ("Subject=\"a\\\u{7f}\"", ControlChar(11)),
            ("Ha\0sh=a", ControlChar(2)),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input).map(|_| ()), Err(*want), "{input:?}");
        }
    }

    #[test]
    fn enforces_the_size_limit() {
        let at_limit = format!("URI={}", "a".repeat(MAX_XFCC_LEN - 4));
        assert_eq!(at_limit.len(), MAX_XFCC_LEN);
        assert!(parse_single(&at_limit).is_ok());
        let over = format!("{at_limit}a");
        assert_eq!(parse(&over), Err(XfccError::TooLong));
    }

    #[test]
    fn accepts_non_ascii_inside_values() {
        let el = parse_single("Subject=\"CN=Zoë\";URI=é").unwrap();
        assert_eq!(el.subject, Some("CN=Zoë"));
        assert_eq!(el.uri, ["é"]);
    }

    fn render_value(v: &str) -> String {
        let mut out = String::from("\"");
        for c in v.chars() {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
        out
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_strings(s in any::<String>()) {
            let _ = parse(&s);
            let _ = parse_single(&s);
        }

        #[test]
        fn never_panics_on_xfcc_like_strings(s in "[A-Za-z=;,\"\\\\ %0-9\u{e9}\n]{0,64}") {
            let _ = parse(&s);
        }

        /// Rendering quoted values and parsing them back yields the escaped text.
        #[test]
        fn quoted_values_round_trip(
            subject in "[ -~\u{e9}]{0,40}",
            cert in "[A-Za-z0-9%.-]{0,40}",
            uris in proptest::collection::vec("[a-z:/.]{0,20}", 0..4),
        ) {
            let mut header = format!("Subject={};Cert={}", render_value(&subject), render_value(&cert));
            for u in &uris {
                header.push_str(";URI=");
                header.push_str(u);
            }
            let el = parse_single(&header).unwrap();
            let unescaped = el.subject.unwrap().replace("\\\\", "\u{0}").replace('\\', "").replace('\u{0}', "\\");
            prop_assert_eq!(unescaped, subject);
            prop_assert_eq!(el.cert, Some(cert.as_str()));
            prop_assert_eq!(el.uri, uris.iter().map(String::as_str).collect::<Vec<_>>());
        }
    }
}
