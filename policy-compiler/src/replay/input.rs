//! Reading a log line by line in bounded memory: a line longer than the
//! limit is consumed without being kept and reported as too long, so one
//! runaway line (or a file without newlines) cannot exhaust memory.
//!
//! Two line forms are read: the filter's audit line (`meshward.audit {…}`
//! in Envoy's log, or a bare JSON object; `docs/audit-schema.json`), and the
//! JSON access-log line of the shipped Envoy configs, whose fields carry the
//! same names (`decision`, `reason`, `peer`, `chain`, `policy`, `would`…)
//! filled from the filter state the filter publishes. The access-log form
//! has no condition headers and no end-user claims verified at this hop, so
//! rules reading those are re-decided without them.

use std::io::{self, BufRead};

use meshward_engine::audit::AuditRecord;
use serde_json::{Map, Value};

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

/// The record a line's JSON holds: `Ok(None)` for an access-log line of a
/// request the filter never decided (Envoy refused it first: no decision
/// facts), an error when it is neither form.
pub fn parse_record(json: &str) -> Result<Option<AuditRecord>, serde_json::Error> {
    let mut value: Value = serde_json::from_str(json)?;
    if let Some(object) = value.as_object_mut() {
        if is_access_log(object) {
            if object.get("decision").is_none_or(Value::is_null) {
                return Ok(None);
            }
            from_access_log(object);
        }
    }
    serde_json::from_value(value).map(Some)
}

/// An access-log line carries Envoy's own `response_code_details`; an audit
/// line never does.
fn is_access_log(object: &Map<String, Value>) -> bool {
    object.contains_key("response_code_details")
}

/// Rewrites an access-log object into the audit record's shape: Envoy writes
/// `%START_TIME(%s)%` as a string, `null` for an unset filter-state fact or
/// request header, and a `would` object of nulls when nothing differs.
fn from_access_log(object: &mut Map<String, Value>) {
    if let Some(Value::String(text)) = object.get("time") {
        let secs = text.parse::<u64>().map_or(Value::Null, Value::from);
        object.insert("time".to_owned(), secs);
    }
    for text in ["method", "path", "authority", "mode", "policy"] {
        if object.get(text).is_none_or(Value::is_null) {
            object.insert(text.to_owned(), Value::from(""));
        }
    }
    let would_differs = object
        .get("would")
        .and_then(|w| w.get("decision"))
        .is_some_and(|d| !d.is_null());
    if !would_differs {
        object.insert("would".to_owned(), Value::Null);
    }
    // The audit line's status is what the filter answered: 200 means the
    // request was passed on, whatever the app answered then.
    if object.get("decision").and_then(Value::as_str) == Some("allow") {
        object.insert("status".to_owned(), Value::from(200));
    }
}

#[cfg(test)]
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

    /// An access-log line as the shipped Envoy configs write it, as a live
    /// Envoy 1.40 wrote it (tests/tests/observability.rs).
    const ACCESS_LOG_DENY: &str = r#"{"authority":"localhost","chain":"v=1;iat=1796539763;exp=1796539823;complete=1;hops=spiffe://shop.example/ns/shop/sa/payments","chain_origin":"spiffe://shop.example/ns/shop/sa/payments","chain_purpose":null,"chain_user":null,"decision":"deny","direction":"inbound","duration_ms":0,"intent":"orders.read","method":"GET","mode":"enforce","path":"/orders/1","peer":"spiffe://shop.example/ns/shop/sa/payments","policy":"4a2689b1e451f780b5121d745ee25471c80959086ba3b448c89b41e10048f88b","reason":"no_matching_rule","request_id":"obs-deny","response_code_details":"meshward_denied{no_matching_rule}","rule":null,"start_time":"2026-12-06T06:49:23.409Z","status":403,"time":"1796539763","traceparent":null,"would":{"decision":null,"reason":null,"rule":null},"x_b3_traceid":null}"#;

    #[test]
    fn reads_the_access_log_form() {
        let record = parse_record(ACCESS_LOG_DENY).unwrap().unwrap();
        assert_eq!(record.time, 1_796_539_763);
        assert_eq!(record.decision, "deny");
        assert_eq!(record.reason, "no_matching_rule");
        assert_eq!(record.intent.as_deref(), Some("orders.read"));
        assert_eq!(
            record.peer.as_deref(),
            Some("spiffe://shop.example/ns/shop/sa/payments")
        );
        assert_eq!(record.would, None);
        assert_eq!(record.status, 403);
        assert!(record.policy.starts_with("4a2689b1"));
        assert!(record.chain.is_some());
    }

    #[test]
    fn access_log_lines_without_a_decision_are_skipped() {
        let refused = ACCESS_LOG_DENY
            .replace(r#""decision":"deny""#, r#""decision":null"#)
            .replace(r#""status":403"#, r#""status":400"#);
        assert_eq!(parse_record(&refused).unwrap(), None);
    }

    #[test]
    fn a_dry_run_access_log_line_keeps_its_would_be_outcome() {
        let line = ACCESS_LOG_DENY
            .replace(r#""decision":"deny""#, r#""decision":"allow""#)
            .replace(
                r#""would":{"decision":null,"reason":null,"rule":null}"#,
                r#""would":{"decision":"deny","reason":"denied_by_rule","rule":"freeze"}"#,
            );
        let record = parse_record(&line).unwrap().unwrap();
        assert_eq!(record.status, 200);
        let would = record.would.unwrap();
        assert_eq!(
            (would.decision.as_str(), would.rule.as_deref()),
            ("deny", Some("freeze"))
        );
    }

    #[test]
    fn audit_lines_read_as_before() {
        let line = r#"{"schema":"meshward.audit/v1","request_id":"r","peer":null,"method":"GET","path":"/","authority":"a","time":1,"intent":null,"rule":null,"decision":"deny","reason":"no_peer_certificate","status":401,"mode":"enforce","would":null,"policy":"00"}"#;
        let record = parse_record(line).unwrap().unwrap();
        assert_eq!(record.schema.as_deref(), Some("meshward.audit/v1"));
        assert!(parse_record("{\"decision\":").is_err());
    }
}
