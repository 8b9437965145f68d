//! The filter's audit lines, read back from Envoy's log.
//!
//! The filter logs one line per decision at info level, with the message
//! `meshward.audit {json}`. Envoy wraps it in its own log format
//! (`[time][thread][info][wasm] [...] wasm log meshward meshward: meshward.audit {...}`),
//! so a line is recognised by the marker and the JSON runs to the end of it.

use serde_json::Value;

/// The marker that starts the filter's audit message.
pub const MARKER: &str = "meshward.audit ";

/// One audit line.
#[derive(Debug, Clone)]
pub struct AuditLine {
    /// The JSON object (`Value::Null` when the text after the marker is not JSON,
    /// which no assertion will then match).
    pub json: Value,
    /// The whole log line as Envoy wrote it.
    pub raw: String,
}

impl AuditLine {
    /// A string field (`None` when absent, null or not a string).
    pub fn str(&self, key: &str) -> Option<&str> {
        self.json.get(key).and_then(Value::as_str)
    }
}

/// Every audit line in a log, in order.
pub fn parse_audit_lines(log: &str) -> Vec<AuditLine> {
    log.lines()
        .filter_map(|line| {
            let at = line.find(MARKER)?;
            let json =
                serde_json::from_str(line[at + MARKER.len()..].trim()).unwrap_or(Value::Null);
            Some(AuditLine {
                json,
                raw: line.to_owned(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_audit_json_in_envoy_log_format() {
        let log = "[2026-01-01 00:00:00.000][12][info][main] starting\n\
                   [2026-01-01 00:00:00.001][12][info][wasm] [source/extensions/common/wasm/context.cc:1195] wasm log meshward meshward: meshward.audit {\"decision\":\"allow\",\"peer\":\"spiffe://a/b\"}\n";
        let lines = parse_audit_lines(log);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].str("decision"), Some("allow"));
        assert_eq!(lines[0].str("peer"), Some("spiffe://a/b"));
    }
}
