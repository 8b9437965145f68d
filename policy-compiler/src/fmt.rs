//! `meshward fmt`: the canonical layout of policy source.
//!
//! The formatter works on the lexer's token stream plus the comments it
//! keeps aside ([`crate::syntax::lex_with_comments`]), never on the syntax
//! tree, so new statements and blocks format without changes here. The
//! layout rules:
//!
//! - a block that spans lines has its statements on lines of their own,
//!   and its `}` on a line of its own (a one-line block stays one line);
//! - two spaces of indentation per open `{` or `[` at the start of a line (a
//!   line starting with `}` or `]` is indented like its opener's line);
//! - one space between tokens, none after `[`, before `]` or before `,`;
//! - a comment on its own line is indented like code there; a comment after
//!   code is separated from it by two spaces; comment text is kept verbatim
//!   (trailing whitespace trimmed);
//! - at most one blank line in a row, none after a `{` or before a `}`, and
//!   exactly one between top-level blocks;
//! - no trailing whitespace, `\n` line ends, one final newline.
//!
//! Token text is copied from the source (strings keep their escapes), so the
//! formatted file lexes to the same tokens: it parses to the same policy and
//! compiles to the same hash. Formatting is idempotent. Source with syntax
//! errors is not formatted; the errors are returned instead.

use std::collections::HashSet;

use crate::diagnostics::Diagnostics;
use crate::span::{SourceFile, Span};
use crate::syntax::{self, lex_with_comments, TokenKind};

/// Formats policy source. `file_name` is only used in diagnostics.
pub fn format_source(source: &str, file_name: &str) -> Result<String, Diagnostics> {
    let (_, errors) = syntax::parse(source);
    if !errors.is_empty() {
        return Err(Diagnostics::new(SourceFile::new(file_name, source), errors));
    }
    let lexed = lex_with_comments(source);
    let lines = split_blocks(lines(source, &lexed.tokens, &lexed.comments));
    Ok(render(&lines))
}

/// One piece of a source line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece<'a> {
    Token(&'a TokenKind, &'a str),
    Comment(&'a str),
}

/// A source line's pieces, in order (empty for a blank line).
type Line<'a> = Vec<Piece<'a>>;

fn text(source: &str, span: Span) -> &str {
    source.get(span.start..span.end).unwrap_or("")
}

/// Splits the token stream and comments back into source lines.
fn lines<'a>(source: &'a str, tokens: &'a [syntax::Token], comments: &[Span]) -> Vec<Line<'a>> {
    let mut lines: Vec<Line<'a>> = vec![Vec::new()];
    let mut comments = comments.iter().peekable();
    for token in tokens {
        while let Some(comment) = comments.next_if(|c| c.start < token.span.start) {
            if let Some(line) = lines.last_mut() {
                line.push(Piece::Comment(text(source, *comment).trim_end()));
            }
        }
        match &token.kind {
            TokenKind::Newline => lines.push(Vec::new()),
            TokenKind::Eof => {}
            kind => {
                if let Some(line) = lines.last_mut() {
                    line.push(Piece::Token(kind, text(source, token.span)));
                }
            }
        }
    }
    lines
}

/// Puts the statements of a block that spans lines on lines of their own:
/// code after its `{` moves to the next line, code before its `}` stays
/// and the `}` moves to a line of its own. One-line blocks stay as they are.
fn split_blocks(lines: Vec<Line<'_>>) -> Vec<Line<'_>> {
    // Where to break: (line, piece index to start a new line at).
    let mut breaks: HashSet<(usize, usize)> = HashSet::new();
    let mut open: Vec<(usize, usize)> = Vec::new();
    for (l, line) in lines.iter().enumerate() {
        for (i, piece) in line.iter().enumerate() {
            match piece {
                Piece::Token(TokenKind::LBrace, _) => open.push((l, i)),
                Piece::Token(TokenKind::RBrace, _) => {
                    let Some((opener_line, opener)) = open.pop() else {
                        continue;
                    };
                    if opener_line == l {
                        continue;
                    }
                    let code_after = |line: &Line<'_>, from: usize| {
                        line.iter()
                            .skip(from)
                            .any(|p| matches!(p, Piece::Token(..)))
                    };
                    if lines
                        .get(opener_line)
                        .is_some_and(|o| code_after(o, opener + 1))
                    {
                        breaks.insert((opener_line, opener + 1));
                    }
                    if i > 0 {
                        breaks.insert((l, i));
                    }
                }
                _ => {}
            }
        }
    }
    if breaks.is_empty() {
        return lines;
    }
    let mut out = Vec::with_capacity(lines.len() + breaks.len());
    for (l, line) in lines.into_iter().enumerate() {
        let mut current = Vec::new();
        for (i, piece) in line.into_iter().enumerate() {
            if breaks.contains(&(l, i)) && !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
            current.push(piece);
        }
        out.push(current);
    }
    out
}

/// Whether no space goes between `before` and `after`.
fn tight(before: Piece<'_>, after: Piece<'_>) -> bool {
    matches!(before, Piece::Token(TokenKind::LBracket, _))
        || matches!(
            after,
            Piece::Token(TokenKind::RBracket | TokenKind::Comma, _)
        )
}

/// Depth change of a line, and whether it starts by closing.
fn depth_effect(line: &[Piece<'_>]) -> (isize, bool) {
    let delta = line
        .iter()
        .map(|piece| match piece {
            Piece::Token(TokenKind::LBrace | TokenKind::LBracket, _) => 1,
            Piece::Token(TokenKind::RBrace | TokenKind::RBracket, _) => -1,
            _ => 0,
        })
        .sum();
    let closes_first = matches!(
        line.first(),
        Some(Piece::Token(TokenKind::RBrace | TokenKind::RBracket, _))
    );
    (delta, closes_first)
}

fn opens(line: &[Piece<'_>]) -> bool {
    matches!(
        line.iter().rev().find(|p| !matches!(p, Piece::Comment(_))),
        Some(Piece::Token(TokenKind::LBrace | TokenKind::LBracket, _))
    )
}

fn render(lines: &[Line<'_>]) -> String {
    let mut out = String::new();
    let mut depth: isize = 0;
    // Whether a blank line is owed before the next non-blank line.
    let mut blank_pending = false;
    let mut previous: Option<&Line<'_>> = None;
    for line in lines {
        if line.is_empty() {
            blank_pending = previous.is_some();
            continue;
        }
        let (delta, closes_first) = depth_effect(line);
        let indent = if closes_first { depth - 1 } else { depth }.max(0);
        if let Some(previous) = previous {
            let after_opener = opens(previous);
            let top_level_after_block = depth == 0 && ends_block(previous);
            let blank = !after_opener && !closes_first && (blank_pending || top_level_after_block);
            if blank {
                out.push('\n');
            }
        }
        blank_pending = false;
        for _ in 0..indent {
            out.push_str("  ");
        }
        let mut last: Option<Piece<'_>> = None;
        for piece in line {
            if let Some(before) = last {
                match piece {
                    Piece::Comment(_) => out.push_str("  "),
                    Piece::Token(..) if tight(before, *piece) => {}
                    Piece::Token(..) => out.push(' '),
                }
            }
            match piece {
                Piece::Token(_, text) | Piece::Comment(text) => out.push_str(text),
            }
            last = Some(*piece);
        }
        out.push('\n');
        depth = (depth + delta).max(0);
        previous = Some(line);
    }
    out
}

/// Whether a line holding a whole block (`intent a { path "/" }`) ends with
/// its closing brace.
fn ends_block(line: &[Piece<'_>]) -> bool {
    matches!(
        line.iter().rev().find(|p| !matches!(p, Piece::Comment(_))),
        Some(Piece::Token(TokenKind::RBrace, _))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(source: &str) -> String {
        format_source(source, "t.policy").unwrap()
    }

    #[test]
    fn reindents_and_normalizes_spacing() {
        let source = "policy   \"p\"{\n trust_domains \"a.example\"   # ours\n}\n\n\n\nintent i {\n        method GET HEAD\n\n\n  path \"/a\"\t\"/b/{id}\"\n}\nallow r {\n subject any_authenticated\n intent i\n when header \"x\" in [ \"1\" ,\"2\" ]\n}\n# the end\n";
        let expected = "policy \"p\" {\n  trust_domains \"a.example\"  # ours\n}\n\nintent i {\n  method GET HEAD\n\n  path \"/a\" \"/b/{id}\"\n}\n\nallow r {\n  subject any_authenticated\n  intent i\n  when header \"x\" in [\"1\", \"2\"]\n}\n\n# the end\n";
        assert_eq!(fmt(source), expected);
        assert_eq!(fmt(expected), expected);
    }

    #[test]
    fn keeps_comments_and_one_line_blocks() {
        let source = "# header\n\n# about p\npolicy \"p\" {\n\n  # inside\n  trust_domains \"a.example\"\n\n}\nintent a { path \"/\" }\nintent b { path \"/b\" }  #  trailing   \n";
        let expected = "# header\n\n# about p\npolicy \"p\" {\n  # inside\n  trust_domains \"a.example\"\n}\n\nintent a { path \"/\" }\n\nintent b { path \"/b\" }  #  trailing\n";
        assert_eq!(fmt(source), expected);
        assert_eq!(fmt(expected), expected);
    }

    #[test]
    fn splits_blocks_that_span_lines() {
        let source = "policy \"p\" { trust_domains \"a.example\"\n  max_cert_lifetime 24h }\nintent a { path \"/\" }\n";
        let expected = "policy \"p\" {\n  trust_domains \"a.example\"\n  max_cert_lifetime 24h\n}\n\nintent a { path \"/\" }\n";
        assert_eq!(fmt(source), expected);
        assert_eq!(fmt(expected), expected);
    }

    /// The layout comes from tokens alone, so blocks nested deeper than the
    /// grammar has today format too (formatted here without parsing).
    #[test]
    fn nests_any_block_by_depth() {
        let source = "outer {\ninner \"x\" {\n# note\nkey \"v\"   [\"a\",\"b\"]\n  deeper {\nleaf 5m }\n}\n}\n";
        let layout = |text: &str| {
            let lexed = lex_with_comments(text);
            render(&split_blocks(lines(text, &lexed.tokens, &lexed.comments)))
        };
        let once = layout(source);
        assert_eq!(
            once,
            "outer {\n  inner \"x\" {\n    # note\n    key \"v\" [\"a\", \"b\"]\n    deeper {\n      leaf 5m\n    }\n  }\n}\n"
        );
        assert_eq!(layout(&once), once);
    }

    #[test]
    fn strings_keep_their_escapes() {
        let source = "policy \"p\\\"q\" {\r\n  trust_domains \"a.example\"\r\n}\r\n";
        assert_eq!(
            fmt(source),
            "policy \"p\\\"q\" {\n  trust_domains \"a.example\"\n}\n"
        );
    }

    #[test]
    fn refuses_source_with_syntax_errors() {
        let error =
            format_source("policy \"p\" {\n  trust_domains 'a'\n}\n", "bad.policy").unwrap_err();
        assert!(error.has_errors());
        assert!(error.to_string().contains("bad.policy:2:"), "{error}");
    }
}
