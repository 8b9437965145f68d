//! The parser: tokens → [`ast::PolicyFile`], recursive descent.
//!
//! Statements end at the end of their line (or at the block's `}`). After a
//! syntax error the parser skips to the end of the statement (or, outside a
//! block, to the next line starting a block) and goes on, so one run reports
//! several independent mistakes.

use crate::ast::*;
use crate::diagnostics::{Code, Diagnostic};
use crate::span::{Span, Spanned};
use crate::suggest::did_you_mean;

use super::lexer::{Lexer, Token, TokenKind};

#[path = "identity.rs"]
mod identity;

/// Keywords that start a top-level block.
const BLOCK_KEYWORDS: [&str; 8] = [
    "policy", "chain", "group", "intent", "allow", "deny", "test", "identity",
];
const POLICY_KEYWORDS: [&str; 3] = ["trust_domains", "max_cert_lifetime", "mode"];
const CHAIN_KEYWORDS: [&str; 3] = ["forwarder", "max_depth", "lifetime"];
const GROUP_KEYWORDS: [&str; 1] = ["member"];
const INTENT_KEYWORDS: [&str; 4] = ["method", "path", "host", "grpc"];
const RULE_KEYWORDS: [&str; 5] = ["principal", "subject", "intent", "when", "mode"];
const PRINCIPALS: [&str; 4] = ["peer", "jwt_svid", "peer_bound_jwt_svid", "user"];
const CONDITIONS: [&str; 8] = [
    "header", "origin", "any_hop", "no_hop", "depth", "complete", "purpose", "user",
];
const USER_TESTS: [&str; 5] = ["present", "subject", "issuer", "scope", "claim"];
const TEST_KEYWORDS: [&str; 14] = [
    "peer",
    "jwt_svid",
    "user",
    "scope",
    "issuer",
    "claim",
    "chain",
    "purpose",
    "chain_user",
    "chain_scope",
    "request",
    "host",
    "header",
    "expect",
];

/// Marks that an error was already recorded; the caller only recovers.
struct Reported;

type Parsed<T> = Result<T, Reported>;

/// Parses `source` into a file plus its syntax errors (the lexer's first),
/// pulling tokens from the lexer as it goes.
pub fn parse_source(source: &str) -> (PolicyFile, Vec<Diagnostic>) {
    let (file, mut errors, parse_errors) = parse_separately(source);
    errors.extend(parse_errors);
    (file, errors)
}

/// The file, the lexer's errors and the parser's errors.
fn parse_separately(source: &str) -> (PolicyFile, Vec<Diagnostic>, Vec<Diagnostic>) {
    let mut parser = Parser::new(Lexer::new(source));
    let file = parser.file();
    (file, parser.lexer.into_errors(), parser.errors)
}

struct Parser<'a> {
    lexer: Lexer<'a>,
    /// The token `peek` sees.
    current: Token,
    /// The span of the token before it (of `current` at the start).
    previous: Span,
    errors: Vec<Diagnostic>,
}

fn list(words: &[&str]) -> String {
    let quoted: Vec<String> = words.iter().map(|w| format!("`{w}`")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        Some((last, _)) => last.clone(),
        None => String::new(),
    }
}

impl<'a> Parser<'a> {
    fn new(mut lexer: Lexer<'a>) -> Parser<'a> {
        let current = lexer.next_token();
        Parser {
            lexer,
            previous: current.span,
            current,
            errors: Vec::new(),
        }
    }

    // ---- token access -------------------------------------------------

    fn peek(&self) -> &TokenKind {
        &self.current.kind
    }

    fn peek_span(&self) -> Span {
        self.current.span
    }

    fn bump(&mut self) -> Token {
        // At the end the lexer keeps answering `Eof` at the end's span.
        let next = self.lexer.next_token();
        let token = std::mem::replace(&mut self.current, next);
        self.previous = token.span;
        token
    }

    fn peek_ident(&self) -> Option<&str> {
        match self.peek() {
            TokenKind::Ident(word) => Some(word),
            _ => None,
        }
    }

    fn at_line_end(&self) -> bool {
        matches!(
            self.peek(),
            TokenKind::Newline | TokenKind::RBrace | TokenKind::Eof
        )
    }

    fn skip_newlines(&mut self) {
        while *self.peek() == TokenKind::Newline {
            self.bump();
        }
    }

    // ---- errors and recovery -------------------------------------------

    fn error_expected(&mut self, expected: &str, help: impl Into<String>) -> Reported {
        let found = self.peek().describe();
        self.errors.push(
            Diagnostic::new(
                Code::UnexpectedToken,
                format!("expected {expected}, found {found}"),
                self.peek_span(),
            )
            .note(format!("expected {expected}"))
            .help(help),
        );
        Reported
    }

    /// Skips the rest of a statement, leaving a closing `}` for the block.
    fn recover_statement(&mut self) {
        let mut depth = 0usize;
        loop {
            match self.peek() {
                TokenKind::Eof => return,
                TokenKind::Newline if depth == 0 => return,
                TokenKind::RBrace if depth == 0 => return,
                TokenKind::LBracket => depth += 1,
                TokenKind::RBracket => depth = depth.saturating_sub(1),
                _ => {}
            }
            self.bump();
        }
    }

    /// Skips to the next line that starts a block outside any braces.
    fn recover_block(&mut self) {
        let mut depth = 0usize;
        loop {
            match self.peek() {
                TokenKind::Eof => return,
                TokenKind::LBrace => depth += 1,
                TokenKind::RBrace => depth = depth.saturating_sub(1),
                TokenKind::Newline if depth == 0 => {
                    self.bump();
                    self.skip_newlines();
                    if self
                        .peek_ident()
                        .is_some_and(|w| BLOCK_KEYWORDS.contains(&w))
                    {
                        return;
                    }
                    continue;
                }
                _ => {}
            }
            self.bump();
        }
    }

    // ---- terminals -------------------------------------------------------

    fn keyword(&mut self) -> Span {
        self.bump().span
    }

    fn name(&mut self, what: &str) -> Parsed<Spanned<String>> {
        match self.peek().clone() {
            TokenKind::Ident(word) => {
                let span = self.bump().span;
                Ok(Spanned::new(word, span))
            }
            TokenKind::Str(lit) => {
                let help = format!("names are bare words: write `{}` without quotes", lit.value);
                Err(self.error_expected(what, help))
            }
            _ => Err(self.error_expected(
                what,
                "names are letters, digits, `.`, `-` and `_`, starting with a letter",
            )),
        }
    }

    fn string(&mut self, what: &str) -> Parsed<StrLit> {
        match self.peek().clone() {
            TokenKind::Str(lit) => {
                self.bump();
                Ok(lit)
            }
            TokenKind::Ident(word) => {
                let help = format!("strings are double-quoted: `\"{word}\"`");
                Err(self.error_expected(what, help))
            }
            _ => Err(self.error_expected(what, format!("write {what} in double quotes"))),
        }
    }

    /// One or more strings up to the end of the line.
    fn strings(&mut self, what: &str) -> Parsed<Vec<StrLit>> {
        let mut values = vec![self.string(what)?];
        while !self.at_line_end() {
            values.push(self.string(what)?);
        }
        Ok(values)
    }

    /// One or more names up to the end of the line.
    fn names(&mut self, what: &str) -> Parsed<Vec<Spanned<String>>> {
        let mut values = vec![self.name(what)?];
        while !self.at_line_end() {
            values.push(self.name(what)?);
        }
        Ok(values)
    }

    fn mode(&mut self) -> Parsed<Spanned<Mode>> {
        let mode = match self.peek_ident() {
            Some("enforce") => Mode::Enforce,
            Some("dry-run") => Mode::DryRun,
            _ => {
                return Err(self.error_expected(
                    "`enforce` or `dry-run`",
                    "a mode is `enforce` (the default) or `dry-run`",
                ))
            }
        };
        Ok(Spanned::new(mode, self.bump().span))
    }

    fn effect(&mut self) -> Parsed<Spanned<EffectKw>> {
        let effect = match self.peek_ident() {
            Some("allow") => EffectKw::Allow,
            Some("deny") => EffectKw::Deny,
            _ => return Err(self.error_expected("`allow` or `deny`", "write `allow` or `deny`")),
        };
        Ok(Spanned::new(effect, self.bump().span))
    }

    fn intent_ref(&mut self) -> Parsed<IntentRef> {
        if self.peek_ident() == Some("unclassified") {
            return Ok(IntentRef::Unclassified(self.bump().span));
        }
        self.name("an intent name").map(IntentRef::Named)
    }

    // ---- file and blocks ---------------------------------------------------

    fn file(&mut self) -> PolicyFile {
        let mut file = PolicyFile::default();
        loop {
            self.skip_newlines();
            let keyword = match self.peek() {
                TokenKind::Eof => return file,
                TokenKind::Ident(word) => word.clone(),
                _ => {
                    self.error_expected(
                        "a block",
                        format!(
                            "a policy file is a sequence of {} blocks",
                            list(&BLOCK_KEYWORDS)
                        ),
                    );
                    self.recover_block();
                    continue;
                }
            };
            let item = match keyword.as_str() {
                "policy" => self.policy_block().map(Item::Policy),
                "chain" => self.chain_block().map(Item::Chain),
                "group" => self.group_block().map(Item::Group),
                "intent" => self.intent_block().map(Item::Intent),
                "allow" | "deny" => self.rule_block().map(Item::Rule),
                "test" => self.test_block().map(Item::Test),
                "identity" => self.identity_block().map(Item::Identity),
                _ => {
                    let help = did_you_mean(&keyword, BLOCK_KEYWORDS, || {
                        format!(
                            "a policy file is a sequence of {} blocks",
                            list(&BLOCK_KEYWORDS)
                        )
                    });
                    Err(self.error_expected("a block", help))
                }
            };
            match item {
                Ok(item) => file.items.push(item),
                Err(Reported) => self.recover_block(),
            }
        }
    }

    /// Parses `{ statement* }`, calling `statement` with the leading keyword
    /// of each line; `keywords` are the valid ones, for messages.
    fn block_body<T>(
        &mut self,
        block: &str,
        keywords: &[&str],
        mut statement: impl FnMut(&mut Self, &str) -> Option<Parsed<T>>,
    ) -> Parsed<Vec<T>> {
        if *self.peek() != TokenKind::LBrace {
            return Err(self.error_expected(
                "`{`",
                format!("a {block} block's body goes in braces on the same line: `{block} ... {{`"),
            ));
        }
        let open = self.bump().span;
        let mut statements = Vec::new();
        loop {
            self.skip_newlines();
            let word = match self.peek() {
                TokenKind::RBrace => {
                    self.bump();
                    return Ok(statements);
                }
                TokenKind::Eof => {
                    self.errors.push(
                        Diagnostic::new(
                            Code::UnexpectedToken,
                            format!("unclosed {block} block"),
                            open,
                        )
                        .note("this `{` is never closed")
                        .help("add `}` after the block's last statement"),
                    );
                    return Ok(statements);
                }
                TokenKind::Ident(word) => word.clone(),
                _ => String::new(),
            };
            let parsed = match statement(self, &word) {
                Some(parsed) => parsed,
                None => {
                    let expected = format!("{} (in the {block} block)", list(keywords));
                    let help = did_you_mean(&word, keywords.iter().copied(), || {
                        format!("the {block} block holds {} statements", list(keywords))
                    });
                    Err(self.error_expected(&expected, help))
                }
            };
            match parsed {
                Ok(parsed) if self.at_line_end() => statements.push(parsed),
                Ok(_) => {
                    self.error_expected(
                        "end of line",
                        "each statement ends at the end of its line",
                    );
                    self.recover_statement();
                }
                Err(Reported) => self.recover_statement(),
            }
        }
    }

    fn policy_block(&mut self) -> Parsed<PolicyBlock> {
        let keyword = self.keyword();
        let name = self.string("the policy name")?;
        let settings = self.block_body("policy", &POLICY_KEYWORDS, |p, word| {
            Some(match word {
                "trust_domains" => {
                    let keyword = p.keyword();
                    p.strings("a trust domain")
                        .map(|domains| PolicySetting::TrustDomains { keyword, domains })
                }
                "max_cert_lifetime" => {
                    let keyword = p.keyword();
                    match p.peek().clone() {
                        TokenKind::Quantity(word) | TokenKind::Ident(word) => {
                            let span = p.bump().span;
                            Ok(PolicySetting::MaxCertLifetime {
                                keyword,
                                value: Spanned::new(word, span),
                            })
                        }
                        _ => Err(p.error_expected(
                            "a duration",
                            "write a duration such as `24h` (units `s`, `m`, `h`, `d`)",
                        )),
                    }
                }
                "mode" => {
                    let keyword = p.keyword();
                    p.mode().map(|mode| PolicySetting::Mode { keyword, mode })
                }
                _ => return None,
            })
        })?;
        Ok(PolicyBlock {
            keyword,
            name,
            settings,
        })
    }

    fn chain_block(&mut self) -> Parsed<ChainBlock> {
        let keyword = self.keyword();
        let settings = self.block_body("chain", &CHAIN_KEYWORDS, |p, word| {
            Some(match word {
                "forwarder" => {
                    let keyword = p.keyword();
                    p.subjects()
                        .map(|subjects| ChainSetting::Forwarder { keyword, subjects })
                }
                "max_depth" => {
                    let keyword = p.keyword();
                    p.number(
                        "a number of hops",
                        "write a whole number of hops from 1 to 16, e.g. `max_depth 5`",
                    )
                    .map(|value| ChainSetting::MaxDepth { keyword, value })
                }
                "lifetime" => {
                    let keyword = p.keyword();
                    match p.peek().clone() {
                        TokenKind::Quantity(word) | TokenKind::Ident(word) => {
                            let span = p.bump().span;
                            Ok(ChainSetting::Lifetime {
                                keyword,
                                value: Spanned::new(word, span),
                            })
                        }
                        _ => Err(p.error_expected(
                            "a duration",
                            "write a duration such as `60s` (units `s`, `m`, `h`, `d`)",
                        )),
                    }
                }
                _ => return None,
            })
        })?;
        Ok(ChainBlock { keyword, settings })
    }

    /// `unclassified` names the requests that match no intent.
    fn declared_name(&mut self, what: &str) -> Parsed<Spanned<String>> {
        let name = self.name(what)?;
        if name.value == "unclassified" {
            self.errors.push(
                Diagnostic::new(
                    Code::UnexpectedToken,
                    "`unclassified` is reserved",
                    name.span,
                )
                .note("reserved for requests that match no intent")
                .help("choose another name"),
            );
            return Err(Reported);
        }
        Ok(name)
    }

    fn group_block(&mut self) -> Parsed<GroupBlock> {
        self.keyword();
        let name = self.declared_name("a group name")?;
        let members = self.block_body("group", &GROUP_KEYWORDS, |p, word| {
            (word == "member").then(|| {
                p.keyword();
                p.strings("a SPIFFE ID or pattern")
            })
        })?;
        Ok(GroupBlock {
            name,
            members: members.into_iter().flatten().collect(),
        })
    }

    fn intent_block(&mut self) -> Parsed<IntentBlock> {
        self.keyword();
        let name = self.declared_name("an intent name")?;
        let statements = self.block_body("intent", &INTENT_KEYWORDS, |p, word| {
            Some(match word {
                "method" => {
                    let keyword = p.keyword();
                    p.names("an HTTP method")
                        .map(|methods| IntentStatement::Methods { keyword, methods })
                }
                "path" => {
                    let keyword = p.keyword();
                    p.strings("a path template")
                        .map(|paths| IntentStatement::Paths { keyword, paths })
                }
                "host" => {
                    let keyword = p.keyword();
                    p.string("a host")
                        .map(|host| IntentStatement::Host { keyword, host })
                }
                "grpc" => {
                    let keyword = p.keyword();
                    p.strings("a gRPC method (`package.Service/Method`)")
                        .map(|methods| IntentStatement::Grpc { keyword, methods })
                }
                _ => return None,
            })
        })?;
        Ok(IntentBlock { name, statements })
    }

    fn rule_block(&mut self) -> Parsed<RuleBlock> {
        let effect = self.effect()?;
        let id = self.name("a rule id")?;
        let statements = self.block_body("rule", &RULE_KEYWORDS, |p, word| {
            Some(match word {
                "principal" => {
                    let keyword = p.keyword();
                    p.principal()
                        .map(|principal| RuleStatement::Principal { keyword, principal })
                }
                "subject" => {
                    p.keyword();
                    p.subject().map(RuleStatement::Subject)
                }
                "intent" => {
                    let keyword = p.keyword();
                    p.intent_refs()
                        .map(|intents| RuleStatement::Intents { keyword, intents })
                }
                "when" => {
                    p.keyword();
                    p.condition().map(RuleStatement::When)
                }
                "mode" => {
                    let keyword = p.keyword();
                    p.mode().map(|mode| RuleStatement::Mode { keyword, mode })
                }
                _ => return None,
            })
        })?;
        Ok(RuleBlock {
            effect,
            id,
            statements,
        })
    }

    fn subject(&mut self) -> Parsed<SubjectExpr> {
        match self.peek().clone() {
            TokenKind::Str(lit) => {
                self.bump();
                Ok(SubjectExpr::Id(lit))
            }
            TokenKind::Ident(word) if word == "group" => {
                self.bump();
                self.name("a group name").map(SubjectExpr::Group)
            }
            TokenKind::Ident(word) if word == "domain" => {
                self.bump();
                self.string("a trust domain").map(SubjectExpr::Domain)
            }
            TokenKind::Ident(word) if word == "any_authenticated" => {
                Ok(SubjectExpr::AnyAuthenticated(self.bump().span))
            }
            _ => Err(self.error_expected(
                "a subject",
                "a subject is a quoted SPIFFE ID or pattern, `group NAME`, `domain \"TD\"` or `any_authenticated`",
            )),
        }
    }

    fn intent_refs(&mut self) -> Parsed<Vec<IntentRef>> {
        let mut refs = vec![self.intent_ref()?];
        while !self.at_line_end() {
            refs.push(self.intent_ref()?);
        }
        Ok(refs)
    }

    /// One or more subjects up to the end of the line.
    fn subjects(&mut self) -> Parsed<Vec<SubjectExpr>> {
        let mut values = vec![self.subject()?];
        while !self.at_line_end() {
            values.push(self.subject()?);
        }
        Ok(values)
    }

    /// A whole number as written (checked later, for a precise message).
    fn number(&mut self, what: &str, help: &str) -> Parsed<Spanned<String>> {
        match self.peek().clone() {
            TokenKind::Quantity(word) => {
                let span = self.bump().span;
                Ok(Spanned::new(word, span))
            }
            _ => Err(self.error_expected(what, help)),
        }
    }

    fn principal(&mut self) -> Parsed<PrincipalExpr> {
        let word = self.peek_ident().unwrap_or("").to_owned();
        let principal = match word.as_str() {
            "peer" => PrincipalExpr::Peer(self.bump().span),
            "peer_bound_jwt_svid" => PrincipalExpr::PeerBoundJwtSvid(self.bump().span),
            "user" => PrincipalExpr::User(self.bump().span),
            "jwt_svid" => {
                let span = self.bump().span;
                if self.peek_ident() == Some("via") {
                    self.bump();
                    let via = self.subjects()?;
                    PrincipalExpr::JwtSvidVia { span, via }
                } else if self.at_line_end() {
                    PrincipalExpr::JwtSvid(span)
                } else {
                    return Err(self.error_expected(
                        "`via` or end of line",
                        "for a JWT-SVID presented through a trusted forwarder write `principal jwt_svid via SUBJECT…`",
                    ));
                }
            }
            _ => {
                let help = did_you_mean(&word, PRINCIPALS, || {
                    "a principal is `peer` (the default), `jwt_svid`, `jwt_svid via SUBJECT...`, `peer_bound_jwt_svid` or `user`".to_owned()
                });
                return Err(self.error_expected("a principal", help));
            }
        };
        Ok(principal)
    }

    fn condition(&mut self) -> Parsed<ConditionExpr> {
        let start = self.peek_span();
        let word = self.peek_ident().unwrap_or("").to_owned();
        let kind = match word.as_str() {
            "header" => {
                self.bump();
                self.header_condition()?
            }
            "origin" => {
                self.bump();
                ConditionKind::Origin(self.subjects()?)
            }
            "any_hop" => {
                self.bump();
                ConditionKind::AnyHop(self.subjects()?)
            }
            "no_hop" => {
                self.bump();
                ConditionKind::NoHop(self.subjects()?)
            }
            "depth" => {
                self.bump();
                ConditionKind::Depth(self.depth()?)
            }
            "complete" => {
                self.bump();
                ConditionKind::Complete
            }
            "purpose" => {
                self.bump();
                ConditionKind::Purpose(self.names("an intent name")?)
            }
            "user" => {
                self.bump();
                ConditionKind::User(self.user_test()?)
            }
            _ => {
                let help = did_you_mean(&word, CONDITIONS, || {
                    format!("a condition starts with {}", list(&CONDITIONS))
                });
                return Err(self.error_expected("a condition", help));
            }
        };
        let end = self.previous;
        Ok(ConditionExpr {
            kind,
            span: start.to(end),
        })
    }

    fn header_condition(&mut self) -> Parsed<ConditionKind> {
        let header = self.string("a header name")?;
        let test = match self.peek().clone() {
            TokenKind::EqEq => {
                self.bump();
                HeaderTestExpr::Equals(self.string("a header value")?)
            }
            TokenKind::NotEq => {
                self.bump();
                HeaderTestExpr::NotEquals(self.string("a header value")?)
            }
            TokenKind::Ident(word) => match word.as_str() {
                "present" => {
                    self.bump();
                    HeaderTestExpr::Present
                }
                "absent" => {
                    self.bump();
                    HeaderTestExpr::Absent
                }
                "starts_with" => {
                    self.bump();
                    HeaderTestExpr::StartsWith(self.string("a prefix")?)
                }
                "in" => {
                    self.bump();
                    HeaderTestExpr::OneOf(self.string_list("a header value")?)
                }
                _ => return Err(self.header_test_expected()),
            },
            _ => return Err(self.header_test_expected()),
        };
        Ok(ConditionKind::Header { header, test })
    }

    const DEPTH_HELP: &'static str =
        "bound the hops with `depth <= N`, `depth >= N`, `depth == N` or `depth in MIN..MAX`";

    fn depth(&mut self) -> Parsed<DepthExpr> {
        let what = "a number of hops";
        match self.peek().clone() {
            TokenKind::LtEq => {
                self.bump();
                self.number(what, Self::DEPTH_HELP).map(DepthExpr::AtMost)
            }
            TokenKind::GtEq => {
                self.bump();
                self.number(what, Self::DEPTH_HELP).map(DepthExpr::AtLeast)
            }
            TokenKind::EqEq => {
                self.bump();
                self.number(what, Self::DEPTH_HELP).map(DepthExpr::Exactly)
            }
            TokenKind::Ident(word) if word == "in" => {
                self.bump();
                let range = self.number("a range `MIN..MAX`", Self::DEPTH_HELP)?;
                match range.value.split_once("..") {
                    Some((min, max)) => {
                        let min_end = range.span.start + min.len();
                        let max_start = min_end + 2;
                        Ok(DepthExpr::Between {
                            min: Spanned::new(min.to_owned(), Span::new(range.span.start, min_end)),
                            max: Spanned::new(
                                max.to_owned(),
                                Span::new(max_start.min(range.span.end), range.span.end),
                            ),
                        })
                    }
                    None => {
                        self.errors.push(
                            Diagnostic::new(
                                Code::UnexpectedToken,
                                format!("expected a range `MIN..MAX`, found `{}`", range.value),
                                range.span,
                            )
                            .note("expected a range `MIN..MAX`")
                            .help(format!(
                                "write both bounds, e.g. `depth in {0}..{0}`, or `depth == {0}`",
                                range.value
                            )),
                        );
                        Err(Reported)
                    }
                }
            }
            _ => Err(self.error_expected("`<=`, `>=`, `==` or `in`", Self::DEPTH_HELP)),
        }
    }

    fn user_test(&mut self) -> Parsed<UserTestExpr> {
        let word = self.peek_ident().unwrap_or("").to_owned();
        Ok(match word.as_str() {
            "present" => {
                self.bump();
                UserTestExpr::Present
            }
            "subject" => {
                self.bump();
                UserTestExpr::Subject(self.strings("a user subject")?)
            }
            "issuer" => {
                self.bump();
                UserTestExpr::Issuer(self.strings("a token issuer")?)
            }
            "scope" => {
                self.bump();
                UserTestExpr::Scope(self.string("a scope")?)
            }
            "claim" => {
                self.bump();
                let name = self.string("a claim name")?;
                let test =
                    match self.peek().clone() {
                        TokenKind::EqEq => {
                            self.bump();
                            ClaimTestExpr::Equals(self.string("a claim value")?)
                        }
                        TokenKind::Ident(word) if word == "in" => {
                            self.bump();
                            ClaimTestExpr::OneOf(self.string_list("a claim value")?)
                        }
                        TokenKind::Ident(word) if word == "contains" => {
                            self.bump();
                            ClaimTestExpr::Contains(self.string("a claim value")?)
                        }
                        _ => return Err(self.error_expected(
                            "a claim test",
                            "claim tests are `== \"v\"`, `in [\"a\", \"b\"]` and `contains \"v\"`",
                        )),
                    };
                UserTestExpr::Claim { name, test }
            }
            _ => {
                let help = did_you_mean(&word, USER_TESTS, || {
                    "user tests are `present`, `subject \"…\"`, `issuer \"…\"`, `scope \"…\"` and `claim \"NAME\" …`".to_owned()
                });
                return Err(self.error_expected("a user test", help));
            }
        })
    }

    fn header_test_expected(&mut self) -> Reported {
        self.error_expected(
            "a header test",
            "tests are `== \"v\"`, `!= \"v\"`, `in [\"a\", \"b\"]`, `starts_with \"v\"`, `present` and `absent`",
        )
    }

    /// `[ "a", "b" ]`; newlines inside the brackets are allowed.
    fn string_list(&mut self, what: &str) -> Parsed<Vec<StrLit>> {
        if *self.peek() != TokenKind::LBracket {
            return Err(self.error_expected("`[`", "write the values as `[\"a\", \"b\"]`"));
        }
        self.bump();
        let mut values = Vec::new();
        loop {
            self.skip_newlines();
            if *self.peek() == TokenKind::RBracket && !values.is_empty() {
                self.bump();
                return Ok(values);
            }
            values.push(self.string(what)?);
            self.skip_newlines();
            match self.peek() {
                TokenKind::Comma => {
                    self.bump();
                }
                TokenKind::RBracket => {
                    self.bump();
                    return Ok(values);
                }
                _ => {
                    return Err(self.error_expected(
                        "`,` or `]`",
                        "separate values with `,` and close the list with `]`",
                    ))
                }
            }
        }
    }

    fn test_block(&mut self) -> Parsed<TestBlock> {
        self.keyword();
        let name = self.string("the test name")?;
        let statements = self.block_body("test", &TEST_KEYWORDS, |p, word| {
            Some(match word {
                "peer" => {
                    let keyword = p.keyword();
                    if p.peek_ident() == Some("none") {
                        p.bump();
                        Ok(TestStatement::Peer { keyword, id: None })
                    } else {
                        p.string("a SPIFFE ID or `none`")
                            .map(|id| TestStatement::Peer {
                                keyword,
                                id: Some(id),
                            })
                    }
                }
                "request" => {
                    let keyword = p.keyword();
                    p.name("an HTTP method").and_then(|method| {
                        p.string("a request path")
                            .map(|path| TestStatement::Request {
                                keyword,
                                method,
                                path,
                            })
                    })
                }
                "host" => {
                    let keyword = p.keyword();
                    p.string("a host")
                        .map(|host| TestStatement::Host { keyword, host })
                }
                "header" => {
                    let keyword = p.keyword();
                    p.string("a header name").and_then(|name| {
                        p.string("a header value")
                            .map(|value| TestStatement::Header {
                                keyword,
                                name,
                                value,
                            })
                    })
                }
                "expect" => p.expect().map(TestStatement::Expect),
                "jwt_svid" => {
                    let keyword = p.keyword();
                    p.credential("a SPIFFE ID or `invalid REASON`")
                        .map(|token| TestStatement::JwtSvid { keyword, token })
                }
                "user" => {
                    let keyword = p.keyword();
                    p.credential("a user subject or `invalid REASON`")
                        .map(|token| TestStatement::User { keyword, token })
                }
                "scope" => {
                    let keyword = p.keyword();
                    p.strings("a scope")
                        .map(|scopes| TestStatement::Scope { keyword, scopes })
                }
                "issuer" => {
                    let keyword = p.keyword();
                    p.string("a token issuer")
                        .map(|issuer| TestStatement::Issuer { keyword, issuer })
                }
                "claim" => {
                    let keyword = p.keyword();
                    p.string("a claim name").and_then(|name| {
                        let list = *p.peek() == TokenKind::LBracket;
                        let values = if list {
                            p.string_list("a claim value")
                        } else {
                            p.strings("a claim value")
                        };
                        values.map(|values| TestStatement::Claim {
                            keyword,
                            name,
                            values,
                            list,
                        })
                    })
                }
                "chain" => {
                    let keyword = p.keyword();
                    if p.peek_ident() == Some("incomplete") {
                        p.bump();
                        Ok(TestStatement::ChainIncomplete { keyword })
                    } else {
                        p.chain_hops()
                            .map(|hops| TestStatement::Chain { keyword, hops })
                    }
                }
                "purpose" => {
                    let keyword = p.keyword();
                    p.name("an intent name")
                        .map(|name| TestStatement::Purpose { keyword, name })
                }
                "chain_user" => {
                    let keyword = p.keyword();
                    p.string("a user subject")
                        .map(|subject| TestStatement::ChainUser { keyword, subject })
                }
                "chain_scope" => {
                    let keyword = p.keyword();
                    p.strings("a scope")
                        .map(|scopes| TestStatement::ChainScope { keyword, scopes })
                }
                _ => return None,
            })
        })?;
        Ok(TestBlock { name, statements })
    }

    /// The hops of a test's `chain` line, up to the end of the line.
    fn chain_hops(&mut self) -> Parsed<Vec<StrLit>> {
        let mut hops = Vec::new();
        loop {
            if self.peek_ident() == Some("incomplete") && !hops.is_empty() {
                return Err(self.error_expected(
                    "a SPIFFE ID",
                    "mark the chain incomplete on a line of its own: `chain incomplete`",
                ));
            }
            let what = if hops.is_empty() {
                "a SPIFFE ID or `incomplete`"
            } else {
                "a SPIFFE ID"
            };
            hops.push(self.string(what)?);
            if self.at_line_end() {
                return Ok(hops);
            }
        }
    }

    /// A verified subject (a string) or `invalid REASON`.
    fn credential(&mut self, what: &str) -> Parsed<CredentialExpr> {
        if self.peek_ident() == Some("invalid") {
            self.bump();
            return self.name("a reason code").map(CredentialExpr::Invalid);
        }
        self.string(what).map(CredentialExpr::Valid)
    }

    fn expect(&mut self) -> Parsed<ExpectExpr> {
        let keyword = self.keyword();
        let mut expect = ExpectExpr {
            keyword,
            effect: self.effect()?,
            by: None,
            reason: None,
            intent: None,
            would: None,
        };
        while !self.at_line_end() {
            let clause = self.peek_ident().unwrap_or("").to_owned();
            let clause_span = self.peek_span();
            let repeated = match clause.as_str() {
                "by" => {
                    self.bump();
                    expect.by.replace(self.name("a rule id")?).is_some()
                }
                "reason" => {
                    self.bump();
                    expect.reason.replace(self.name("a reason code")?).is_some()
                }
                "intent" => {
                    self.bump();
                    expect.intent.replace(self.intent_ref()?).is_some()
                }
                "would" => {
                    self.bump();
                    let effect = self.effect()?;
                    let by = if self.peek_ident() == Some("by") {
                        self.bump();
                        Some(self.name("a rule id")?)
                    } else {
                        None
                    };
                    expect.would.replace(WouldExpr { effect, by }).is_some()
                }
                _ => {
                    return Err(self.error_expected(
                        "`by`, `reason`, `intent` or `would`",
                        "write `expect allow|deny [by RULE] [reason CODE] [intent NAME] [would allow|deny [by RULE]]`",
                    ))
                }
            };
            if repeated {
                self.errors.push(
                    Diagnostic::new(
                        Code::UnexpectedToken,
                        format!("`{clause}` given twice in one `expect`"),
                        clause_span,
                    )
                    .note("repeated here")
                    .help(format!("keep one `{clause}`")),
                );
                return Err(Reported);
            }
        }
        Ok(expect)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(source: &str) -> PolicyFile {
        let (file, lex_errors, errors) = parse_separately(source);
        assert!(lex_errors.is_empty(), "{lex_errors:?}");
        assert!(errors.is_empty(), "{errors:#?}");
        file
    }

    fn parse_errors(source: &str) -> Vec<Diagnostic> {
        parse_separately(source).2
    }

    #[test]
    fn parses_every_block_kind() {
        let file = parse_ok(
            r#"
policy "p" {
  trust_domains "a.example" "b.example"
  max_cert_lifetime 24h
  mode dry-run
}
group g { member "spiffe://a.example/x" "spiffe://a.example/y/*" }
intent i.read {
  method GET HEAD
  path "/a" "/a/{id}"
  host "h.svc"
}
intent i.rpc { grpc "p.S/M" }
allow r1 {
  subject group g
  subject "spiffe://a.example/z"
  subject domain "b.example"
  subject any_authenticated
  intent i.read unclassified
  when header "x" == "1"
  when header "y" in ["a",
                      "b",]
  when header "z" absent
  mode dry-run
}
deny r2 { subject group g
  intent i.rpc }
test "t" {
  peer none
  request GET "/a"
  host "h.svc"
  header "x" "1"
  expect deny reason no_peer_certificate intent i.read would allow by r1
}
"#,
        );
        assert_eq!(file.items.len(), 7);
        let Item::Rule(rule) = &file.items[4] else {
            panic!("expected a rule, got {:?}", file.items[4]);
        };
        assert_eq!(rule.id.value, "r1");
        assert_eq!(rule.statements.len(), 9);
        let RuleStatement::When(condition) = &rule.statements[6] else {
            panic!("expected a condition");
        };
        assert!(matches!(
            &condition.kind,
            ConditionKind::Header { test: HeaderTestExpr::OneOf(v), .. } if v.len() == 2
        ));
        let Item::Test(test) = &file.items[6] else {
            panic!("expected a test");
        };
        let TestStatement::Expect(expect) = &test.statements[4] else {
            panic!("expected expect");
        };
        assert_eq!(expect.effect.value, EffectKw::Deny);
        assert_eq!(
            expect.reason.as_ref().map(|r| r.value.as_str()),
            Some("no_peer_certificate")
        );
        assert_eq!(
            expect.would.as_ref().map(|w| w.effect.value),
            Some(EffectKw::Allow)
        );
    }

    #[test]
    fn parses_chains_principals_and_tokens() {
        let file = parse_ok(
            r#"
chain {
  forwarder group mesh "spiffe://a.example/gw"
  max_depth 5
  lifetime 60s
}
allow r {
  principal jwt_svid via group gateways domain "a.example"
  subject "spiffe://a.example/fe"
  intent i
  when origin group gateways
  when any_hop "spiffe://a.example/fe" any_authenticated
  when no_hop group batch
  when depth <= 3
  when depth in 2..4
  when complete
  when purpose orders.read checkout.pay
  when user present
  when user subject "alice" "bob"
  when user issuer "https://idp.example"
  when user scope "orders.read"
  when user claim "groups" contains "admins"
  when user claim "tier" in ["gold",
                             "silver"]
}
allow u { principal user
  intent i }
test "t" {
  peer none
  jwt_svid invalid jwt_expired
  user "alice"
  scope "a" "b"
  issuer "https://idp.example"
  claim "groups" "admins" "ops"
  claim "one" ["x"]
  chain "spiffe://a.example/gw" "spiffe://a.example/fe"
  chain incomplete
  purpose orders.read
  chain_user "bob"
  chain_scope "x"
  request GET "/"
  expect deny
}
"#,
        );
        assert_eq!(file.items.len(), 4);
        let Item::Chain(chain) = &file.items[0] else {
            panic!("expected a chain block");
        };
        assert_eq!(chain.settings.len(), 3);
        assert!(
            matches!(&chain.settings[0], ChainSetting::Forwarder { subjects, .. } if subjects.len() == 2)
        );
        let Item::Rule(rule) = &file.items[1] else {
            panic!("expected a rule");
        };
        let RuleStatement::Principal {
            principal: PrincipalExpr::JwtSvidVia { via, .. },
            ..
        } = &rule.statements[0]
        else {
            panic!("expected a principal");
        };
        assert_eq!(via.len(), 2);
        let kinds: Vec<&ConditionKind> = rule
            .statements
            .iter()
            .filter_map(|s| match s {
                RuleStatement::When(c) => Some(&c.kind),
                _ => None,
            })
            .collect();
        assert_eq!(kinds.len(), 13);
        let ConditionKind::Depth(DepthExpr::Between { min, max }) = kinds[4] else {
            panic!("expected a depth range, got {:?}", kinds[4]);
        };
        assert_eq!((min.value.as_str(), max.value.as_str()), ("2", "4"));
        assert_eq!(max.span.end - min.span.start, 4);
        assert!(matches!(
            kinds[12],
            ConditionKind::User(UserTestExpr::Claim { test: ClaimTestExpr::OneOf(v), .. }) if v.len() == 2
        ));
        let Item::Test(test) = &file.items[3] else {
            panic!("expected a test");
        };
        assert_eq!(test.statements.len(), 14);
        assert!(matches!(
            &test.statements[1],
            TestStatement::JwtSvid { token: CredentialExpr::Invalid(r), .. } if r.value == "jwt_expired"
        ));
        assert!(
            matches!(&test.statements[6], TestStatement::Claim { list: true, values, .. } if values.len() == 1)
        );
        assert!(matches!(
            &test.statements[8],
            TestStatement::ChainIncomplete { .. }
        ));
    }

    #[test]
    fn reports_chain_syntax_errors() {
        let errors = parse_errors(
            "allow r {\n  principal jwt_svd\n  when depth < 3\n  when depth in 3\n  when orign group g\n  when user claim \"g\" has \"x\"\n}\nchain {\n  max_depth many\n}\n",
        );
        let messages: Vec<_> = errors.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "expected a principal, found `jwt_svd`",
                // (the lexer reports `<` itself and skips it)
                "expected `<=`, `>=`, `==` or `in`, found `3`",
                "expected a range `MIN..MAX`, found `3`",
                "expected a condition, found `orign`",
                "expected a claim test, found `has`",
                "expected a number of hops, found `many`",
            ]
        );
        assert_eq!(errors[0].help.as_deref(), Some("did you mean `jwt_svid`?"));
        assert_eq!(errors[3].help.as_deref(), Some("did you mean `origin`?"));
    }

    #[test]
    fn collects_several_errors_and_recovers() {
        let errors = parse_errors(
            r#"
intent a {
  pth "/a"
  method GET
  host h
}
polcy "x" {
}
allow r {
  subject any_authenticated extra
  intent a
}
"#,
        );
        let messages: Vec<_> = errors.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(messages.len(), 4, "{messages:#?}");
        assert!(messages[0]
            .starts_with("expected `method`, `path`, `host` or `grpc` (in the intent block)"));
        assert_eq!(errors[0].help.as_deref(), Some("did you mean `path`?"));
        assert_eq!(messages[1], "expected a host, found `h`");
        assert_eq!(errors[2].help.as_deref(), Some("did you mean `policy`?"));
        assert_eq!(messages[3], "expected end of line, found `extra`");
    }

    #[test]
    fn unclosed_block_points_at_the_brace() {
        let errors = parse_errors("intent a {\n path \"/a\"\n");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].message, "unclosed intent block");
        assert_eq!(errors[0].primary.span, Span::new(9, 10));
    }

    #[test]
    fn reserved_and_repeated_clauses() {
        let errors = parse_errors("intent unclassified { path \"/\" }");
        assert_eq!(errors[0].message, "`unclassified` is reserved");
        let errors = parse_errors("test \"t\" { expect allow by a by b }");
        assert_eq!(errors[0].message, "`by` given twice in one `expect`");
    }
}
