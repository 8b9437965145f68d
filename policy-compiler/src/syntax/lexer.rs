//! The lexer: source text → tokens. Newlines are tokens because statements
//! end at the end of a line. Unreadable input becomes an `E001` diagnostic and
//! is skipped, so the parser still sees the rest of the file.

use crate::ast::StrLit;
use crate::diagnostics::{Code, Diagnostic};
use crate::span::Span;

/// What a token is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenKind {
    /// A bare word: `[A-Za-z][A-Za-z0-9._-]*` (names, keywords, methods).
    Ident(String),
    /// A word starting with a digit, e.g. the duration `24h`.
    Quantity(String),
    /// A double-quoted string.
    Str(StrLit),
    /// `{`
    LBrace,
    /// `}`
    RBrace,
    /// `[`
    LBracket,
    /// `]`
    RBracket,
    /// `,`
    Comma,
    /// `==`
    EqEq,
    /// `!=`
    NotEq,
    /// `<=`
    LtEq,
    /// `>=`
    GtEq,
    /// End of a line (comments are not tokens: see [`lex_with_comments`]).
    Newline,
    /// End of input.
    Eof,
}

impl TokenKind {
    /// How the token is named in "expected …, found …" messages.
    pub fn describe(&self) -> String {
        match self {
            TokenKind::Ident(word) | TokenKind::Quantity(word) => format!("`{word}`"),
            TokenKind::Str(lit) => format!("string `\"{}\"`", lit.value),
            TokenKind::LBrace => "`{`".to_owned(),
            TokenKind::RBrace => "`}`".to_owned(),
            TokenKind::LBracket => "`[`".to_owned(),
            TokenKind::RBracket => "`]`".to_owned(),
            TokenKind::Comma => "`,`".to_owned(),
            TokenKind::EqEq => "`==`".to_owned(),
            TokenKind::NotEq => "`!=`".to_owned(),
            TokenKind::LtEq => "`<=`".to_owned(),
            TokenKind::GtEq => "`>=`".to_owned(),
            TokenKind::Newline => "end of line".to_owned(),
            TokenKind::Eof => "end of file".to_owned(),
        }
    }
}

/// A token and its span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// What it is.
    pub kind: TokenKind,
    /// Where it is.
    pub span: Span,
}

/// Splits `source` into tokens (always ending with `Eof`) and lexical errors.
#[cfg(test)]
pub fn lex(source: &str) -> (Vec<Token>, Vec<Diagnostic>) {
    let lexed = lex_with_comments(source);
    (lexed.tokens, lexed.errors)
}

/// Tokens together with the trivia the parser never sees: the comments,
/// for tools that rewrite source (`meshward fmt`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lexed {
    /// The tokens, as [`lex`] returns them.
    pub tokens: Vec<Token>,
    /// Each comment, from its `#` to the end of its line (newline excluded),
    /// in source order.
    pub comments: Vec<Span>,
    /// Lexical errors.
    pub errors: Vec<Diagnostic>,
}

/// Like [`lex`], also keeping where the comments are.
pub fn lex_with_comments(source: &str) -> Lexed {
    let mut lexer = Lexer::new(source);
    let mut tokens = Vec::new();
    loop {
        let token = lexer.next_token();
        let end = token.kind == TokenKind::Eof;
        tokens.push(token);
        if end {
            break;
        }
    }
    Lexed {
        tokens,
        comments: lexer.comments,
        errors: lexer.errors,
    }
}

/// The lexer as a token stream: the parser pulls one token at a time, so a
/// large policy never has all its tokens in memory at once.
pub(crate) struct Lexer<'a> {
    source: &'a str,
    pos: usize,
    /// The token the current step produced, if any.
    ready: Option<Token>,
    comments: Vec<Span>,
    errors: Vec<Diagnostic>,
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')
}

impl<'a> Lexer<'a> {
    pub(crate) fn new(source: &'a str) -> Lexer<'a> {
        Lexer {
            source,
            pos: 0,
            ready: None,
            comments: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// The lexical errors so far (all of them once `Eof` was returned).
    pub(crate) fn into_errors(self) -> Vec<Diagnostic> {
        self.errors
    }

    fn peek(&self) -> Option<char> {
        self.source
            .get(self.pos..)
            .and_then(|rest| rest.chars().next())
    }

    fn peek_second(&self) -> Option<char> {
        self.source
            .get(self.pos..)
            .and_then(|rest| rest.chars().nth(1))
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn push(&mut self, kind: TokenKind, start: usize) {
        self.ready = Some(Token {
            kind,
            span: Span::new(start, self.pos),
        });
    }

    /// The next token; `Eof` at the end, and again on every later call.
    pub(crate) fn next_token(&mut self) -> Token {
        loop {
            if let Some(token) = self.ready.take() {
                return token;
            }
            let Some(c) = self.peek() else {
                let end = self.source.len();
                return Token {
                    kind: TokenKind::Eof,
                    span: Span::new(end, end),
                };
            };
            let start = self.pos;
            match c {
                '\n' => {
                    self.bump();
                    self.push(TokenKind::Newline, start);
                }
                ' ' | '\t' | '\r' => {
                    self.bump();
                }
                '#' => {
                    while self.peek().is_some_and(|c| c != '\n') {
                        self.bump();
                    }
                    self.comments.push(Span::new(start, self.pos));
                }
                '{' | '}' | '[' | ']' | ',' => {
                    self.bump();
                    let kind = match c {
                        '{' => TokenKind::LBrace,
                        '}' => TokenKind::RBrace,
                        '[' => TokenKind::LBracket,
                        ']' => TokenKind::RBracket,
                        _ => TokenKind::Comma,
                    };
                    self.push(kind, start);
                }
                '=' | '!' | '<' | '>' if self.peek_second() == Some('=') => {
                    self.bump();
                    self.bump();
                    let kind = match c {
                        '=' => TokenKind::EqEq,
                        '!' => TokenKind::NotEq,
                        '<' => TokenKind::LtEq,
                        _ => TokenKind::GtEq,
                    };
                    self.push(kind, start);
                }
                '"' => self.string(),
                c if c.is_ascii_alphanumeric() => {
                    while self.peek().is_some_and(is_word_char) {
                        self.bump();
                    }
                    let word = self.source.get(start..self.pos).unwrap_or("").to_owned();
                    let kind = if c.is_ascii_digit() {
                        TokenKind::Quantity(word)
                    } else {
                        TokenKind::Ident(word)
                    };
                    self.push(kind, start);
                }
                _ => self.invalid_run(),
            }
        }
    }

    /// Skips a run of characters that start no token and reports it once.
    fn invalid_run(&mut self) {
        let start = self.pos;
        while let Some(c) = self.peek() {
            let starts_token = c.is_ascii_alphanumeric()
                || c.is_whitespace()
                || matches!(c, '"' | '#' | '{' | '}' | '[' | ']' | ',')
                || (matches!(c, '=' | '!' | '<' | '>') && self.peek_second() == Some('='));
            if starts_token && self.pos > start {
                break;
            }
            self.bump();
        }
        let text = self.source.get(start..self.pos).unwrap_or("");
        let help = match text {
            "=" => "compare with `==`".to_owned(),
            "!" => "negate with `!=`".to_owned(),
            "'" => "strings use double quotes: `\"...\"`".to_owned(),
            "<" | ">" => "depth bounds are inclusive: write `<=` or `>=`".to_owned(),
            _ => "remove it, or put it inside a double-quoted string".to_owned(),
        };
        self.errors.push(
            Diagnostic::new(
                Code::InvalidToken,
                format!("unexpected character `{}`", text.escape_debug()),
                Span::new(start, self.pos),
            )
            .note("not part of the policy language")
            .help(help),
        );
    }

    /// Reads a double-quoted string with `\"` and `\\` escapes. A string ends
    /// at its line: a missing closing quote is reported and the rest of the
    /// line becomes the string, so parsing goes on.
    fn string(&mut self) {
        let start = self.pos;
        self.bump();
        let mut value = String::new();
        let mut verbatim = true;
        loop {
            match self.peek() {
                None | Some('\n') => {
                    self.errors.push(
                        Diagnostic::new(
                            Code::InvalidToken,
                            "unterminated string",
                            Span::new(start, self.pos),
                        )
                        .note("this string has no closing `\"` on its line")
                        .help("close the string with `\"`; strings cannot span lines"),
                    );
                    break;
                }
                Some('"') => {
                    self.bump();
                    break;
                }
                Some('\\') => {
                    let escape_start = self.pos;
                    self.bump();
                    verbatim = false;
                    match self.peek() {
                        Some(c @ ('"' | '\\')) => {
                            self.bump();
                            value.push(c);
                        }
                        other => {
                            if other.is_some_and(|c| c != '\n') {
                                self.bump();
                            }
                            self.errors.push(
                                Diagnostic::new(
                                    Code::InvalidToken,
                                    "unknown escape in string",
                                    Span::new(escape_start, self.pos),
                                )
                                .note("only `\\\"` and `\\\\` are escapes")
                                .help("write `\\\\` for a literal backslash"),
                            );
                        }
                    }
                }
                Some(c) => {
                    self.bump();
                    value.push(c);
                }
            }
        }
        let span = Span::new(start, self.pos);
        self.push(
            TokenKind::Str(StrLit {
                value,
                span,
                verbatim,
            }),
            start,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(source: &str) -> Vec<TokenKind> {
        let (tokens, errors) = lex(source);
        assert!(errors.is_empty(), "{errors:?}");
        tokens.into_iter().map(|t| t.kind).collect()
    }

    fn string(value: &str, start: usize, end: usize, verbatim: bool) -> TokenKind {
        TokenKind::Str(StrLit {
            value: value.to_owned(),
            span: Span::new(start, end),
            verbatim,
        })
    }

    #[test]
    fn lexes_words_strings_and_punctuation() {
        assert_eq!(
            kinds("allow read-orders { # comment\n when header \"x\" == \"a\\\"b\" }"),
            vec![
                TokenKind::Ident("allow".into()),
                TokenKind::Ident("read-orders".into()),
                TokenKind::LBrace,
                TokenKind::Newline,
                TokenKind::Ident("when".into()),
                TokenKind::Ident("header".into()),
                string("x", 43, 46, true),
                TokenKind::EqEq,
                string("a\"b", 50, 56, false),
                TokenKind::RBrace,
                TokenKind::Eof,
            ]
        );
        assert_eq!(
            kinds("<= >= 2..4"),
            vec![
                TokenKind::LtEq,
                TokenKind::GtEq,
                TokenKind::Quantity("2..4".into()),
                TokenKind::Eof,
            ]
        );
        assert_eq!(
            kinds("24h [\"a\", \"b\"] !="),
            vec![
                TokenKind::Quantity("24h".into()),
                TokenKind::LBracket,
                string("a", 5, 8, true),
                TokenKind::Comma,
                string("b", 10, 13, true),
                TokenKind::RBracket,
                TokenKind::NotEq,
                TokenKind::Eof,
            ]
        );
    }

    #[test]
    fn reports_bad_characters_once_per_run_and_goes_on() {
        let (tokens, errors) = lex("a @@ b = c");
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0].primary.span, Span::new(2, 4));
        assert_eq!(errors[1].help.as_deref(), Some("compare with `==`"));
        let idents = tokens
            .iter()
            .filter(|t| matches!(t.kind, TokenKind::Ident(_)))
            .count();
        assert_eq!(idents, 3);
    }

    #[test]
    fn unterminated_string_stops_at_line_end() {
        let (tokens, errors) = lex("\"abc\nx");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].message, "unterminated string");
        assert_eq!(tokens[0].kind, string("abc", 0, 4, true));
        assert_eq!(tokens[1].kind, TokenKind::Newline);
    }

    #[test]
    fn unknown_escape_is_an_error() {
        let (_, errors) = lex("\"a\\nb\"");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].primary.span, Span::new(2, 4));
    }
}
