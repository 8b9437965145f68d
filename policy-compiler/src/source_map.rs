//! Where compiled rules, intents and tests came from. The runtime carries only
//! ids and indexes; the compiler keeps this map so `meshward explain` and
//! `meshward test` can point back at the source line.

use std::fmt;

use serde::Serialize;

use crate::checked;
use crate::span::{SourceFile, Span};

/// A `file:line:column` position (1-based).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Location {
    /// The file name, as given to the compiler.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

impl Location {
    fn of(source: &SourceFile, span: Span) -> Self {
        let at = source.line_col(span.start);
        Location {
            file: source.name().to_owned(),
            line: at.line,
            column: at.col,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// Source locations by compiled index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceMap {
    /// Where each rule's id is declared, by rule index.
    pub rules: Vec<Location>,
    /// Where each intent's name is declared, by intent index.
    pub intents: Vec<Location>,
    /// Where each test's name is written, by test index.
    pub tests: Vec<Location>,
}

impl SourceMap {
    /// Builds the map for a checked policy.
    pub fn new(source: &SourceFile, policy: &checked::Policy) -> Self {
        SourceMap {
            rules: policy
                .rules
                .iter()
                .map(|r| Location::of(source, r.span))
                .collect(),
            intents: policy
                .intents
                .iter()
                .map(|i| Location::of(source, i.span))
                .collect(),
            tests: policy
                .tests
                .iter()
                .map(|t| Location::of(source, t.span))
                .collect(),
        }
    }
}
