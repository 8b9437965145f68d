//! The syntax tree of a policy file, exactly as written: names are not yet
//! resolved and strings are not yet interpreted. Every node carries the byte
//! span it was parsed from, so later phases can point at it.

use crate::span::{Span, Spanned};

/// A whole `*.policy` file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyFile {
    /// Top-level blocks in source order.
    pub items: Vec<Item>,
}

/// One top-level block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// `policy "name" { ... }`
    Policy(PolicyBlock),
    /// `group name { ... }`
    Group(GroupBlock),
    /// `intent name { ... }`
    Intent(IntentBlock),
    /// `allow id { ... }` / `deny id { ... }`
    Rule(RuleBlock),
    /// `test "name" { ... }`
    Test(TestBlock),
}

/// A double-quoted string literal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrLit {
    /// The value after unescaping.
    pub value: String,
    /// The span including the quotes.
    pub span: Span,
    /// True when the literal had no escapes, so byte `i` of `value` sits at
    /// `span.start + 1 + i` and diagnostics can point inside the string.
    pub verbatim: bool,
}

impl StrLit {
    /// The span of `value[range]` when it can be located, else the whole literal.
    pub fn sub_span(&self, range: std::ops::Range<usize>) -> Span {
        if self.verbatim && range.end <= self.value.len() {
            let base = self.span.start + 1;
            Span::new(base + range.start, base + range.end)
        } else {
            self.span
        }
    }
}

/// `enforce` or `dry-run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Decisions are enforced.
    Enforce,
    /// Decisions are reported, never enforced.
    DryRun,
}

/// `allow` or `deny`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EffectKw {
    /// `allow`
    Allow,
    /// `deny`
    Deny,
}

/// The `policy` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyBlock {
    /// The `policy` keyword.
    pub keyword: Span,
    /// The policy's name.
    pub name: StrLit,
    /// Settings in source order.
    pub settings: Vec<PolicySetting>,
}

/// A statement inside `policy { ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySetting {
    /// `trust_domains "a" "b"`
    TrustDomains {
        /// The keyword.
        keyword: Span,
        /// The domains.
        domains: Vec<StrLit>,
    },
    /// `max_cert_lifetime 24h`
    MaxCertLifetime {
        /// The keyword.
        keyword: Span,
        /// The duration as written.
        value: Spanned<String>,
    },
    /// `mode enforce|dry-run`
    Mode {
        /// The keyword.
        keyword: Span,
        /// The mode.
        mode: Spanned<Mode>,
    },
}

/// `group name { member "..." }`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupBlock {
    /// The group's name.
    pub name: Spanned<String>,
    /// Member IDs or patterns.
    pub members: Vec<StrLit>,
}

/// `intent name { ... }`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntentBlock {
    /// The intent's name.
    pub name: Spanned<String>,
    /// Statements in source order.
    pub statements: Vec<IntentStatement>,
}

/// A statement inside `intent { ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntentStatement {
    /// `method GET HEAD`
    Methods {
        /// The keyword.
        keyword: Span,
        /// Method tokens as written.
        methods: Vec<Spanned<String>>,
    },
    /// `path "/a" "/b/{id}"`
    Paths {
        /// The keyword.
        keyword: Span,
        /// Path templates.
        paths: Vec<StrLit>,
    },
    /// `host "orders.svc"`
    Host {
        /// The keyword.
        keyword: Span,
        /// The host.
        host: StrLit,
    },
    /// `grpc "pkg.Svc/Method"`
    Grpc {
        /// The keyword.
        keyword: Span,
        /// Fully qualified gRPC methods.
        methods: Vec<StrLit>,
    },
}

/// `allow id { ... }` or `deny id { ... }`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleBlock {
    /// Allow or deny.
    pub effect: Spanned<EffectKw>,
    /// The rule id.
    pub id: Spanned<String>,
    /// Statements in source order.
    pub statements: Vec<RuleStatement>,
}

/// A statement inside a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleStatement {
    /// `subject ...`
    Subject(SubjectExpr),
    /// `intent a b unclassified`
    Intents {
        /// The keyword.
        keyword: Span,
        /// Referenced intents.
        intents: Vec<IntentRef>,
    },
    /// `when header ...`
    When(ConditionExpr),
    /// `mode enforce|dry-run`
    Mode {
        /// The keyword.
        keyword: Span,
        /// The mode.
        mode: Spanned<Mode>,
    },
}

/// Who a rule is about, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubjectExpr {
    /// `subject group name`
    Group(Spanned<String>),
    /// `subject "spiffe://..."`: an exact ID or a pattern.
    Id(StrLit),
    /// `subject domain "td"`
    Domain(StrLit),
    /// `subject any_authenticated`
    AnyAuthenticated(Span),
}

/// An intent named in a rule or test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntentRef {
    /// A declared intent.
    Named(Spanned<String>),
    /// `unclassified`: requests that match no intent.
    Unclassified(Span),
}

/// `when header "name" <test>`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionExpr {
    /// The header name as written.
    pub header: StrLit,
    /// The test.
    pub test: HeaderTestExpr,
    /// The whole condition (after `when`).
    pub span: Span,
}

/// A test on a header value, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderTestExpr {
    /// `present`
    Present,
    /// `absent`
    Absent,
    /// `== "v"`
    Equals(StrLit),
    /// `!= "v"`
    NotEquals(StrLit),
    /// `in ["a", "b"]`
    OneOf(Vec<StrLit>),
    /// `starts_with "v"`
    StartsWith(StrLit),
}

/// `test "name" { ... }`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestBlock {
    /// The test's name.
    pub name: StrLit,
    /// Statements in source order.
    pub statements: Vec<TestStatement>,
}

/// A statement inside a test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestStatement {
    /// `peer "spiffe://..."` or `peer none`
    Peer {
        /// The keyword.
        keyword: Span,
        /// `None` for `peer none`.
        id: Option<StrLit>,
    },
    /// `request GET "/path"`
    Request {
        /// The keyword.
        keyword: Span,
        /// Method token as written (passed to the engine unchanged).
        method: Spanned<String>,
        /// Request path as written.
        path: StrLit,
    },
    /// `host "h"`
    Host {
        /// The keyword.
        keyword: Span,
        /// The `:authority`.
        host: StrLit,
    },
    /// `header "k" "v"`
    Header {
        /// The keyword.
        keyword: Span,
        /// Header name.
        name: StrLit,
        /// Header value.
        value: StrLit,
    },
    /// `expect ...`
    Expect(ExpectExpr),
}

/// `expect allow|deny [by RULE] [reason CODE] [intent NAME] [would allow|deny [by RULE]]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectExpr {
    /// The keyword.
    pub keyword: Span,
    /// Expected enforced effect.
    pub effect: Spanned<EffectKw>,
    /// Expected deciding rule.
    pub by: Option<Spanned<String>>,
    /// Expected reason code.
    pub reason: Option<Spanned<String>>,
    /// Expected intent (or `unclassified`).
    pub intent: Option<IntentRef>,
    /// Expected dry-run outcome.
    pub would: Option<WouldExpr>,
}

/// `would allow|deny [by RULE]` inside `expect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WouldExpr {
    /// Expected would-be effect.
    pub effect: Spanned<EffectKw>,
    /// Expected would-be deciding rule.
    pub by: Option<Spanned<String>>,
}
