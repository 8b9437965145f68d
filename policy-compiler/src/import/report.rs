//! The per-field import report: one finding per field that was not converted
//! exactly, with the input file, the document and the line.

use std::fmt;

use serde::Serialize;

/// A finding's stable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Code {
    /// A field of an ALLOW rule meshward cannot express: the rule is not
    /// converted (meshward allows less than Istio did).
    I001,
    /// A field of a DENY rule meshward cannot express: the field is left out,
    /// so the converted deny applies to more requests than Istio's.
    I002,
    /// Converted, but meshward admits fewer requests than Istio for this
    /// field (a fail-closed difference, such as comma-joined header values).
    I003,
    /// An action that is not converted (`CUSTOM`: an external authorizer).
    I004,
    /// An `AUDIT` policy: it never changes a decision, and meshward audits
    /// every decision, so nothing is emitted for it.
    I005,
    /// A workload with no ALLOW policy: Istio allows what is not denied, so
    /// an explicit allow-all rule is emitted (meshward denies by default).
    I006,
    /// A document, field or value the importer does not understand.
    I007,
    /// An ALLOW rule grants requests that meshward classifies into an intent
    /// the rule only partly covers: those requests are denied.
    I008,
    /// A RequestAuthentication setting that needs an operator's attention
    /// (a `jwksUri` to serve through an Envoy cluster, a missing audience).
    I009,
    /// A generated sample the converted policy decides differently from the
    /// Istio semantics it was converted from (its test is left out).
    I010,
    /// An ALLOW rule that a DENY always overrides, in Istio as well: it is
    /// left out (meshward refuses shadowed rules).
    I011,
}

impl Code {
    /// Notes describe exact conversions; `--strict` ignores them.
    pub fn is_note(self) -> bool {
        matches!(self, Code::I005 | Code::I006 | Code::I011)
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable code.
    pub code: Code,
    /// The input file.
    pub file: String,
    /// 1-based line in that file.
    pub line: usize,
    /// The document: `Kind namespace/name`.
    pub document: String,
    /// The field's path in the document, e.g. `spec.rules[0].from[0].source.ipBlocks`.
    pub field: String,
    /// What was found and what the import did about it.
    pub message: String,
}

impl Finding {
    /// `note` or `warning`.
    pub fn severity(&self) -> &'static str {
        if self.code.is_note() {
            "note"
        } else {
            "warning"
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}[{}]: {}\n  --> {}:{} ({}, `{}`)",
            self.severity(),
            self.code,
            self.message,
            self.file,
            self.line,
            self.document,
            self.field
        )
    }
}

/// Where a document came from, to stamp findings with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocRef {
    /// The input file.
    pub file: String,
    /// `Kind namespace/name`.
    pub document: String,
}

impl DocRef {
    /// A finding about `field` at `line` of this document.
    pub fn finding(
        &self,
        code: Code,
        line: usize,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Finding {
        Finding {
            code,
            file: self.file.clone(),
            line,
            document: self.document.clone(),
            field: field.into(),
            message: message.into(),
        }
    }
}
