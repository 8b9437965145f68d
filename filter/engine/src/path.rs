//! Request paths: split a `:path` into segments, or refuse it.
//!
//! Classification only ever sees canonical paths. Envoy normalizes first
//! (`normalize_path`, `merge_slashes`, escaped-slash handling); this module is
//! the second line: anything still ambiguous is refused rather than guessed,
//! so an encoding trick can never land on an allow by accident.

/// Most segments a request path may have.
pub const MAX_SEGMENTS: usize = 64;
/// Longest path (before the query) we classify.
pub const MAX_PATH_LEN: usize = 8192;

/// Why a path is not canonical. Every variant becomes `non_canonical_path`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Does not start with `/` (includes `*` and absolute-form URLs).
    #[error("path does not start with `/`")]
    NotAbsolute,
    /// An empty segment (`//`, or a trailing `/` after a segment).
    #[error("path has an empty segment")]
    EmptySegment,
    /// A `.` or `..` segment.
    #[error("path has a `.` or `..` segment")]
    DotSegment,
    /// A percent-encoded `/`, `\` or unreserved character (`%2e`, `%2f`, `%5c`,
    /// `%41`...): the same path could be spelled another way.
    #[error("path has a percent-encoded character that should not be encoded")]
    AmbiguousEncoding,
    /// Percent-encoded bytes that do not decode to valid UTF-8: overlong
    /// forms (`%c0%ae` is a disguised `.`), surrogates, bytes `%f5`-`%ff`,
    /// truncated or stray continuation bytes. Some decoders accept them.
    #[error("path has percent-encoded bytes that are not valid UTF-8")]
    InvalidUtf8,
    /// `%` not followed by two hex digits.
    #[error("path has a malformed percent-encoding")]
    BadEncoding,
    /// A byte outside visible ASCII, or `\`, `;` or `#`.
    #[error("path has a forbidden character")]
    ForbiddenChar,
    /// Longer than [`MAX_PATH_LEN`] or more than [`MAX_SEGMENTS`] segments.
    #[error("path is too long")]
    TooLong,
}

/// The segments of a canonical path, on the stack (no allocation).
#[derive(Debug, Clone, Copy)]
pub struct Segments<'a> {
    buf: [&'a str; MAX_SEGMENTS],
    len: usize,
}

impl<'a> Segments<'a> {
    /// The segments as a slice.
    pub fn as_slice(&self) -> &[&'a str] {
        self.buf.get(..self.len).unwrap_or(&[])
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Validates the UTF-8 formed by a segment's percent-encoded bytes (raw
/// bytes are visible ASCII only), following Unicode's table of well-formed
/// sequences so that overlong forms and surrogates are refused, not decoded.
#[derive(Default)]
struct Utf8Run {
    /// Continuation bytes still expected.
    pending: u8,
    /// Allowed range of the next continuation byte.
    lo: u8,
    hi: u8,
}

impl Utf8Run {
    fn byte(&mut self, b: u8) -> Result<(), PathError> {
        if self.pending > 0 {
            if b < self.lo || b > self.hi {
                return Err(PathError::InvalidUtf8);
            }
            self.pending -= 1;
            (self.lo, self.hi) = (0x80, 0xbf);
            return Ok(());
        }
        let (pending, lo, hi) = match b {
            0x00..=0x7f => return Ok(()),
            0xc2..=0xdf => (1, 0x80, 0xbf),
            0xe0 => (2, 0xa0, 0xbf),
            0xe1..=0xec | 0xee..=0xef => (2, 0x80, 0xbf),
            0xed => (2, 0x80, 0x9f),
            0xf0 => (3, 0x90, 0xbf),
            0xf1..=0xf3 => (3, 0x80, 0xbf),
            0xf4 => (3, 0x80, 0x8f),
            // Stray continuation bytes, `%c0`/`%c1` (always overlong), `%f5`+.
            _ => return Err(PathError::InvalidUtf8),
        };
        *self = Utf8Run { pending, lo, hi };
        Ok(())
    }

    fn ascii(&self) -> Result<(), PathError> {
        if self.pending > 0 {
            return Err(PathError::InvalidUtf8);
        }
        Ok(())
    }
}

/// Byte classes of the validating scan.
const PLAIN: u8 = 0;
const SLASH: u8 = 1;
const PERCENT: u8 = 2;
const QUERY: u8 = 3;
const FORBIDDEN: u8 = 4;

/// Byte classes: `PLAIN` for visible ASCII that may appear raw in a segment.
// Evaluated at compile time: an index out of range cannot reach run time.
#[expect(
    clippy::indexing_slicing,
    reason = "evaluated at compile time: an index out of range cannot reach run time"
)]
static CLASS: [u8; 256] = {
    let mut t = [FORBIDDEN; 256];
    let mut b = 0x21;
    while b <= 0x7e {
        t[b] = PLAIN;
        b += 1;
    }
    t[b'/' as usize] = SLASH;
    t[b'%' as usize] = PERCENT;
    t[b'?' as usize] = QUERY;
    t[b'\\' as usize] = FORBIDDEN;
    t[b';' as usize] = FORBIDDEN;
    t[b'#' as usize] = FORBIDDEN;
    t
};

/// The class of a path byte (a table lookup; `u8` is always in range).
#[inline(always)]
fn class(b: u8) -> u8 {
    CLASS.get(usize::from(b)).copied().unwrap_or(FORBIDDEN)
}

/// End offsets (relative to the path after its leading `/`) of the segments
/// of a canonical path, filled by [`split_canonical`].
pub(crate) type SegmentEnds = [u16; MAX_SEGMENTS];

fn end_segment(seg: &[u8], utf8: &Utf8Run) -> Result<(), PathError> {
    match seg {
        [] => Err(PathError::EmptySegment),
        [b'.'] | [b'.', b'.'] => Err(PathError::DotSegment),
        _ => utf8.ascii(),
    }
}

/// Validates `raw` (an HTTP `:path`, query allowed) in one pass and records
/// where each segment ends. Returns the path after its leading `/` (query
/// dropped) and the number of segments (`/` has none). Errors are the same,
/// and in the same order, as a segment-by-segment check from the left.
pub(crate) fn split_canonical<'a>(
    raw: &'a str,
    ends: &mut SegmentEnds,
) -> Result<(&'a str, usize), PathError> {
    if raw.len() > MAX_PATH_LEN {
        let path = raw.split_once('?').map_or(raw, |(p, _)| p);
        if path.len() > MAX_PATH_LEN {
            return Err(PathError::TooLong);
        }
    }
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    let mut utf8 = Utf8Run::default();
    let mut n = 0usize;
    let mut seg_start = 1usize;
    let mut i = 1usize;
    let stop = loop {
        let Some(&b) = bytes.get(i) else { break i };
        match class(b) {
            PLAIN => {
                if utf8.pending > 0 {
                    return Err(PathError::InvalidUtf8);
                }
                i += 1;
                // The common case: a run of plain bytes.
                while let Some(&b) = bytes.get(i) {
                    if class(b) != PLAIN {
                        break;
                    }
                    i += 1;
                }
            }
            SLASH => {
                end_segment(bytes.get(seg_start..i).unwrap_or(&[]), &utf8)?;
                let slot = ends.get_mut(n).ok_or(PathError::TooLong)?;
                *slot = (i - 1) as u16;
                n += 1;
                i += 1;
                seg_start = i;
            }
            PERCENT => {
                let hi = bytes.get(i + 1).and_then(|b| hex_value(*b));
                let lo = bytes.get(i + 2).and_then(|b| hex_value(*b));
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(PathError::BadEncoding);
                };
                let decoded = (hi << 4) | lo;
                if is_unreserved(decoded) || matches!(decoded, b'/' | b'\\') {
                    return Err(PathError::AmbiguousEncoding);
                }
                utf8.byte(decoded)?;
                i += 3;
            }
            QUERY => break i,
            _ => return Err(PathError::ForbiddenChar),
        }
    };
    let rest = raw.get(1..stop).unwrap_or("");
    if rest.is_empty() {
        return Ok((rest, 0));
    }
    end_segment(bytes.get(seg_start..stop).unwrap_or(&[]), &utf8)?;
    let slot = ends.get_mut(n).ok_or(PathError::TooLong)?;
    *slot = (stop - 1) as u16;
    Ok((rest, n + 1))
}

/// Splits `raw` (an HTTP `:path`, query allowed) into canonical segments.
/// `/` has no segments. The query string is ignored for classification.
pub fn canonical_segments(raw: &str) -> Result<Segments<'_>, PathError> {
    let mut ends = [0u16; MAX_SEGMENTS];
    let (rest, n) = split_canonical(raw, &mut ends)?;
    let mut segments = Segments {
        buf: [""; MAX_SEGMENTS],
        len: n,
    };
    let mut start = 0usize;
    for (slot, end) in segments.buf.iter_mut().zip(&ends).take(n) {
        let end = usize::from(*end);
        *slot = rest.get(start..end).unwrap_or("");
        start = end + 1;
    }
    Ok(segments)
}

/// Validates `raw` like [`canonical_segments`] and returns the path after its
/// leading `/` (query dropped), without materializing the segments.
pub fn canonical_rest(raw: &str) -> Result<&str, PathError> {
    let mut ends = [0u16; MAX_SEGMENTS];
    split_canonical(raw, &mut ends).map(|(rest, _)| rest)
}

/// True when `raw` would be classified (a helper for tests and tools).
pub fn is_canonical(raw: &str) -> bool {
    canonical_segments(raw).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(p: &str) -> Result<Vec<&str>, PathError> {
        canonical_segments(p).map(|s| s.as_slice().to_vec())
    }

    #[test]
    fn splits_canonical_paths() {
        assert_eq!(segs("/"), Ok(vec![]));
        assert_eq!(segs("/orders/42"), Ok(vec!["orders", "42"]));
        assert_eq!(segs("/orders/42?x=/../y"), Ok(vec!["orders", "42"]));
        assert_eq!(segs("/files/a%20b"), Ok(vec!["files", "a%20b"]));
        assert_eq!(
            segs("/shop.v1.Orders/Get"),
            Ok(vec!["shop.v1.Orders", "Get"])
        );
    }

    #[test]
    fn refuses_tricks() {
        use PathError::*;
        let cases = [
            ("", NotAbsolute),
            ("*", NotAbsolute),
            ("http://x/orders", NotAbsolute),
            ("//orders", EmptySegment),
            ("/orders//42", EmptySegment),
            ("/orders/", EmptySegment),
            ("/orders/../admin", DotSegment),
            ("/./orders", DotSegment),
            ("/orders/%2e%2e/admin", AmbiguousEncoding),
            ("/orders/%2E%2E", AmbiguousEncoding),
            ("/admin%2fx", AmbiguousEncoding),
            ("/admin%2Fx", AmbiguousEncoding),
            ("/admin%5cx", AmbiguousEncoding),
            ("/%61dmin", AmbiguousEncoding),
            ("/admin%", BadEncoding),
            ("/admin%zz", BadEncoding),
            ("/admin;jsessionid=1", ForbiddenChar),
            ("/admin\\x", ForbiddenChar),
            ("/admin#frag", ForbiddenChar),
            ("/caf\u{e9}", ForbiddenChar),
            ("/a b", ForbiddenChar),
        ];
        for (input, want) in cases {
            assert_eq!(segs(input), Err(want), "{input:?}");
        }
        let too_many = "/a".repeat(MAX_SEGMENTS + 1);
        assert_eq!(segs(&too_many), Err(TooLong));
        assert_eq!(
            segs(&"/a".repeat(MAX_SEGMENTS)).map(|s| s.len()),
            Ok(MAX_SEGMENTS)
        );
    }

    #[test]
    fn percent_encoded_utf8_must_be_well_formed() {
        use PathError::InvalidUtf8;
        // Valid UTF-8 stays an opaque segment.
        assert_eq!(segs("/caf%C3%A9"), Ok(vec!["caf%C3%A9"]));
        assert_eq!(
            segs("/%E2%82%AC/%F0%9F%98%80"),
            Ok(vec!["%E2%82%AC", "%F0%9F%98%80"])
        );
        assert_eq!(
            segs("/%ED%9F%BF%F4%8F%BF%BF"),
            Ok(vec!["%ED%9F%BF%F4%8F%BF%BF"])
        );
        for bad in [
            "/%C0%AE%C0%AE/admin", // overlong `.` (the classic traversal)
            "/%c0%af",             // overlong `/`
            "/%C1%9C",             // overlong `\`
            "/%E0%80%AE",          // 3-byte overlong
            "/%F0%80%80%AE",       // 4-byte overlong
            "/%ED%A0%80",          // surrogate U+D800
            "/%F4%90%80%80",       // above U+10FFFF
            "/%F5%80%80%80",
            "/%FF",
            "/%80",       // stray continuation
            "/%C3",       // truncated at the end of the segment
            "/%C3/%A9",   // split across segments
            "/%C3a",      // interrupted by a raw byte
            "/%E2%82%20", // interrupted by an encoded ASCII byte
        ] {
            assert_eq!(segs(bad), Err(InvalidUtf8), "{bad:?}");
            assert_eq!(canonical_rest(bad), Err(InvalidUtf8), "{bad:?}");
        }
    }

    #[test]
    fn utf8_check_agrees_with_std_on_every_two_byte_sequence() {
        for a in 0x80u8..=0xff {
            for b in 0x00u8..=0xff {
                if is_unreserved(b) || matches!(b, b'/' | b'\\') {
                    continue;
                }
                let path = format!("/%{a:02X}%{b:02X}");
                let std_ok = std::str::from_utf8(&[a, b]).is_ok();
                assert_eq!(is_canonical(&path), std_ok, "{path}");
            }
        }
    }
}
