//! Reading a log line by line in bounded memory: a line longer than the
//! limit is consumed without being kept and reported as too long, so one
//! runaway line (or a file without newlines) cannot exhaust memory.

use std::io::{self, BufRead};

/// Longest line kept, bytes. An audit line is a few hundred bytes; a chain
/// header is at most 8 KiB; headers and claims add a little more.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;

/// The marker the filter writes before each audit line's JSON.
pub const AUDIT_MARKER: &str = "meshward.audit ";

/// One line of the log.
#[derive(Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// The line's bytes, without the newline (and a trailing `\r`).
    Text(&'a [u8]),
    /// The line was longer than the limit; it was skipped unread.
    TooLong {
        /// Its length in bytes.
        bytes: u64,
    },
}

/// Splits a reader into numbered lines.
pub struct Lines<R> {
    inner: R,
    buf: Vec<u8>,
    max: usize,
    line_no: u64,
    bytes_read: u64,
}

impl<R: BufRead> Lines<R> {
    /// Lines of `inner`, keeping at most `max` bytes of one line.
    pub fn new(inner: R, max: usize) -> Self {
        Lines {
            inner,
            buf: Vec::new(),
            max,
            line_no: 0,
            bytes_read: 0,
        }
    }

    /// Bytes consumed so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// The next line and its 1-based number; `None` at the end.
    pub fn next_line(&mut self) -> io::Result<Option<(u64, Line<'_>)>> {
        self.buf.clear();
        let mut length: u64 = 0;
        let mut any = false;
        loop {
            let available = match self.inner.fill_buf() {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if available.is_empty() {
                if !any {
                    return Ok(None);
                }
                break;
            }
            any = true;
            let newline = available.iter().position(|b| *b == b'\n');
            let chunk = match newline {
                Some(at) => available.get(..at).unwrap_or_default(),
                None => available,
            };
            length = length.saturating_add(chunk.len() as u64);
            if length <= self.max as u64 {
                self.buf.extend_from_slice(chunk);
            } else if !self.buf.is_empty() {
                // Over the limit: stop keeping it.
                self.buf = Vec::new();
            }
            let used = chunk.len() + usize::from(newline.is_some());
            self.inner.consume(used);
            self.bytes_read = self.bytes_read.saturating_add(used as u64);
            if newline.is_some() {
                break;
            }
        }
        self.line_no += 1;
        if length > self.max as u64 {
            return Ok(Some((self.line_no, Line::TooLong { bytes: length })));
        }
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        Ok(Some((self.line_no, Line::Text(&self.buf))))
    }
}

/// The audit JSON in a log line: the whole line when it is a JSON object
/// (an audit `.jsonl` file), or what follows [`AUDIT_MARKER`] in a raw
/// Envoy log line. `None` for any other line.
pub fn audit_json(line: &str) -> Option<&str> {
    let trimmed = line.trim();
    if trimmed.starts_with('{') {
        return Some(trimmed);
    }
    let at = line.find(AUDIT_MARKER)?;
    line.get(at + AUDIT_MARKER.len()..).map(str::trim)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    fn all(text: &[u8], max: usize, buffer: usize) -> Vec<(u64, Result<String, u64>)> {
        let reader = io::BufReader::with_capacity(buffer, text);
        let mut lines = Lines::new(reader, max);
        let mut out = Vec::new();
        while let Some((n, line)) = lines.next_line().unwrap() {
            out.push((
                n,
                match line {
                    Line::Text(t) => Ok(String::from_utf8(t.to_vec()).unwrap()),
                    Line::TooLong { bytes } => Err(bytes),
                },
            ));
        }
        assert_eq!(lines.bytes_read(), text.len() as u64);
        out
    }

    #[test]
    fn splits_lines_across_small_buffers() {
        for buffer in [1, 2, 3, 7, 64] {
            assert_eq!(
                all(b"ab\r\n\ncdef\nlast", 100, buffer),
                vec![
                    (1, Ok("ab".into())),
                    (2, Ok("".into())),
                    (3, Ok("cdef".into())),
                    (4, Ok("last".into()))
                ]
            );
        }
        assert!(all(b"", 10, 4).is_empty());
        assert_eq!(all(b"\n", 10, 4), vec![(1, Ok("".into()))]);
    }

    #[test]
    fn overlong_lines_are_reported_not_kept() {
        for buffer in [1, 3, 64] {
            assert_eq!(
                all(b"12345\n123456789\n12", 5, buffer),
                vec![(1, Ok("12345".into())), (2, Err(9)), (3, Ok("12".into()))]
            );
        }
    }

    #[test]
    fn finds_the_audit_json() {
        assert_eq!(audit_json(" {\"a\":1} "), Some("{\"a\":1}"));
        assert_eq!(
            audit_json("[2025-01-01][info][wasm] wasm log meshward: meshward.audit {\"a\":1}"),
            Some("{\"a\":1}")
        );
        assert_eq!(audit_json("[info] meshward: loaded policy"), None);
        assert_eq!(audit_json(""), None);
    }
}
