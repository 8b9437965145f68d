//! Rendering diagnostics as rustc-style text or as JSON.
//!
//! ```text
//! error[E004]: unknown intent `orders.raed`
//!   --> shop.policy:14:10
//!    |
//! 14 |   intent orders.raed
//!    |          ^^^^^^^^^^^ not declared
//!    = help: did you mean `orders.read`?
//! ```

use std::fmt::Write as _;

use serde_json::json;

use super::{Diagnostic, Diagnostics, Label, Severity};
use crate::span::{SourceFile, Span};

/// Tabs are shown as this many spaces so carets line up.
const TAB_WIDTH: usize = 4;

/// Renders every diagnostic, then a one-line summary.
pub fn render_text(diagnostics: &Diagnostics) -> String {
    let source = diagnostics.source();
    let mut out = String::new();
    for diagnostic in diagnostics.items() {
        render_one(&mut out, source, diagnostic);
        out.push('\n');
    }
    let (errors, warnings) = (diagnostics.error_count(), diagnostics.warning_count());
    if errors > 0 {
        let _ = write!(
            out,
            "error: could not compile `{}`: {}",
            source.name(),
            count(errors, "error")
        );
        if warnings > 0 {
            let _ = write!(out, ", {}", count(warnings, "warning"));
        }
        out.push('\n');
    } else if warnings > 0 {
        let _ = writeln!(
            out,
            "warning: `{}`: {}",
            source.name(),
            count(warnings, "warning")
        );
    }
    out
}

fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

fn render_one(out: &mut String, source: &SourceFile, diagnostic: &Diagnostic) {
    let width = std::iter::once(&diagnostic.primary)
        .chain(&diagnostic.secondary)
        .map(|label| source.line_col(label.span.start).line.to_string().len())
        .max()
        .unwrap_or(1);
    let pad = " ".repeat(width);
    let _ = writeln!(
        out,
        "{}[{}]: {}",
        diagnostic.severity().as_str(),
        diagnostic.code,
        diagnostic.message
    );
    render_label(out, source, &pad, "-->", &diagnostic.primary, '^');
    for label in &diagnostic.secondary {
        render_label(out, source, &pad, ":::", label, '-');
    }
    if let Some(help) = &diagnostic.help {
        let _ = writeln!(out, "{pad} = help: {help}");
    }
}

fn render_label(
    out: &mut String,
    source: &SourceFile,
    pad: &str,
    arrow: &str,
    label: &Label,
    marker: char,
) {
    let start = source.line_col(label.span.start);
    let line = source.line_text(start.line);
    let _ = writeln!(out, "{pad}{arrow} {}:{start}", source.name());
    let _ = writeln!(out, "{pad} |");
    let _ = writeln!(
        out,
        "{:>width$} | {}",
        start.line,
        expand_tabs(line),
        width = pad.len()
    );
    let (indent, len) = underline(source, line, label.span);
    let mut underline_row = format!(
        "{pad} | {}{}",
        " ".repeat(indent),
        marker.to_string().repeat(len)
    );
    if !label.note.is_empty() {
        underline_row.push(' ');
        underline_row.push_str(&label.note);
    }
    let _ = writeln!(out, "{underline_row}");
}

/// Display columns before the span and the underline length, clipped to the
/// span's first line (at least one marker, so empty spans still point).
fn underline(source: &SourceFile, line: &str, span: Span) -> (usize, usize) {
    let start = source.line_col(span.start);
    let end = source.line_col(span.end);
    let before: String = line.chars().take(start.col - 1).collect();
    let covered: String = if end.line == start.line {
        line.chars()
            .skip(start.col - 1)
            .take(end.col.saturating_sub(start.col))
            .collect()
    } else {
        line.chars().skip(start.col - 1).collect()
    };
    (display_width(&before), display_width(&covered).max(1))
}

fn display_width(s: &str) -> usize {
    s.chars()
        .map(|c| if c == '\t' { TAB_WIDTH } else { 1 })
        .sum()
}

fn expand_tabs(s: &str) -> String {
    s.replace('\t', &" ".repeat(TAB_WIDTH))
}

/// The JSON form, one object per diagnostic with 1-based lines and columns.
pub fn render_json(diagnostics: &Diagnostics) -> serde_json::Value {
    let source = diagnostics.source();
    let list = |severity: Severity| -> Vec<serde_json::Value> {
        diagnostics
            .items()
            .iter()
            .filter(|d| d.severity() == severity)
            .map(|d| diagnostic_json(source, d))
            .collect()
    };
    json!({
        "file": source.name(),
        "ok": !diagnostics.has_errors(),
        "error_count": diagnostics.error_count(),
        "warning_count": diagnostics.warning_count(),
        "errors": list(Severity::Error),
        "warnings": list(Severity::Warning),
    })
}

/// The warnings alone, as a JSON list of diagnostic objects.
pub fn warnings_json(diagnostics: &Diagnostics) -> serde_json::Value {
    serde_json::Value::Array(
        diagnostics
            .items()
            .iter()
            .filter(|d| d.severity() == Severity::Warning)
            .map(|d| diagnostic_json(diagnostics.source(), d))
            .collect(),
    )
}

fn diagnostic_json(source: &SourceFile, d: &Diagnostic) -> serde_json::Value {
    let start = source.line_col(d.primary.span.start);
    let end = source.line_col(d.primary.span.end);
    json!({
        "severity": d.severity().as_str(),
        "code": d.code.as_str(),
        "message": d.message,
        "file": source.name(),
        "line": start.line,
        "column": start.col,
        "end_line": end.line,
        "end_column": end.col,
        "label": d.primary.note,
        "help": d.help,
        "related": d
            .secondary
            .iter()
            .map(|label| label_json(source, label))
            .collect::<Vec<_>>(),
    })
}

fn label_json(source: &SourceFile, label: &Label) -> serde_json::Value {
    let start = source.line_col(label.span.start);
    let end = source.line_col(label.span.end);
    json!({
        "file": source.name(),
        "line": start.line,
        "column": start.col,
        "end_line": end.line,
        "end_column": end.col,
        "label": label.note,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostics::Code;

    fn sample() -> Diagnostics {
        let text = "intent a {\n\tpath \"x\"\n}\n";
        let source = SourceFile::new("t.policy", text);
        let start = text.find("\"x\"").unwrap();
        let first = text.find('a').unwrap();
        Diagnostics::new(
            source,
            vec![Diagnostic::new(
                Code::InvalidPathTemplate,
                "path template `x` must start with `/`",
                Span::new(start, start + 3),
            )
            .note("here")
            .with_label(Span::new(first, first + 1), "in this intent")
            .help("write `/x`")],
        )
    }

    #[test]
    fn text_has_code_location_caret_and_help() {
        let text = render_text(&sample());
        let expected = "\
error[E012]: path template `x` must start with `/`
 --> t.policy:2:7
  |
2 |     path \"x\"
  |          ^^^ here
 ::: t.policy:1:8
  |
1 | intent a {
  |        - in this intent
  = help: write `/x`

error: could not compile `t.policy`: 1 error
";
        assert_eq!(text, expected);
    }

    #[test]
    fn json_has_positions() {
        let value = render_json(&sample());
        assert_eq!(value["error_count"], 1);
        assert_eq!(value["warnings"], json!([]));
        let first = &value["errors"][0];
        assert_eq!(first["code"], "E012");
        assert_eq!(first["line"], 2);
        assert_eq!(first["column"], 7);
        assert_eq!(first["end_column"], 10);
        assert_eq!(first["related"][0]["line"], 1);
        assert_eq!(first["help"], "write `/x`");
    }
}
