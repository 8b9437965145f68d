//! Source text → [`crate::ast::PolicyFile`]: the lexer and the parser.
//!
//! Both collect errors instead of stopping at the first, so `meshward check`
//! reports every independent syntax mistake in one run.

mod lexer;
mod parser;

pub use lexer::{lex_with_comments, Lexed, Token, TokenKind};

use crate::ast::PolicyFile;
use crate::diagnostics::Diagnostic;

/// Parses a policy file. The tree holds everything that parsed; the
/// diagnostics (all errors) say what did not.
pub fn parse(source: &str) -> (PolicyFile, Vec<Diagnostic>) {
    parser::parse_source(source)
}
