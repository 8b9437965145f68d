//! Rule conditions: each `when` line checked on its own (header names, hop
//! subjects, depth bounds, purpose names, user tests), then against the
//! earlier conditions of the same rule, so a rule that could never apply is
//! rejected (`E014`) instead of silently never matching.
//!
//! Contradictions are decided per topic, and only where they are provable:
//!
//! - one header: the tests demand both presence and absence, or the values
//!   they admit have an empty intersection (`==`, `in`, `!=`, `starts_with`);
//! - hops: `origin`/`any_hop` subjects all excluded by a `no_hop`, two
//!   `origin`s that share no ID, depth bounds that do not intersect, a
//!   single-hop `depth` whose origin can never be the rule's direct peer, a
//!   `no_hop` that excludes every direct peer the rule accepts (the direct
//!   peer is always the last hop);
//! - purpose, user subject, user issuer: two lists that share no value;
//! - one claim: `==`/`in` values and `contains` values no single claim has.
//!
//! User conditions are fine whatever the principal: a `principal peer` rule
//! can still see a user, carried in the chain.

use std::collections::BTreeSet;

use super::intents::Intents;
use super::subjects::SubjectResolver;
use super::{warn_listed_twice, Context};
use crate::ast::{
    ClaimTestExpr, ConditionExpr, ConditionKind, DepthExpr, HeaderTestExpr, StrLit, UserTestExpr,
};
use crate::checked::{
    ClaimTest, Condition, HeaderCondition, HeaderTest, Principal, Subject, UserTest,
};
use crate::diagnostics::{Code, Diagnostic};
use crate::sample::valid_scope;
use crate::span::{Span, Spanned};
use crate::suggest::closest;

/// What the conditions of one rule are checked against.
pub(super) struct RuleFacts<'r> {
    /// The rule's principal.
    pub principal: &'r Principal,
    /// The rule's subjects (groups expanded).
    pub subjects: &'r [Subject],
    /// The most hops a chain may have (`max_depth`).
    pub depth_limit: u8,
}

impl RuleFacts<'_> {
    /// Subjects every direct peer of this rule matches one of, if the rule
    /// constrains the direct peer at all.
    fn peer_subjects(&self) -> Option<&[Subject]> {
        match self.principal {
            Principal::Peer | Principal::PeerBoundJwtSvid => Some(self.subjects),
            Principal::JwtSvidVia(via) => Some(via),
            Principal::JwtSvid | Principal::User => None,
        }
    }
}

/// Checks a rule's conditions; returns the ones that are well-formed and
/// consistent with the earlier ones, with where each is written.
pub(super) fn check_conditions(
    cx: &mut Context,
    resolver: &mut SubjectResolver<'_, '_>,
    intents: &Intents<'_>,
    facts: &RuleFacts<'_>,
    conditions: &[&ConditionExpr],
) -> Vec<(Condition, Span)> {
    let mut accepted: Vec<(Condition, Span)> = Vec::new();
    for condition in conditions {
        let Some(checked) = convert(cx, resolver, intents, facts, condition) else {
            continue;
        };
        if let Some(conflict) = conflict(&accepted, &checked, facts) {
            let mut diagnostic = Diagnostic::new(
                Code::UnsatisfiableConditions,
                conflict.message,
                condition.span,
            )
            .note(conflict.note)
            .help(conflict.help);
            for span in conflict.earlier {
                diagnostic = diagnostic.with_label(span, conflict.label);
            }
            cx.report(diagnostic);
            continue;
        }
        accepted.push((checked, condition.span));
    }
    accepted
}

/// Why a new condition cannot hold together with the earlier ones.
struct Conflict {
    message: String,
    note: &'static str,
    help: String,
    /// The earlier conditions involved.
    earlier: Vec<Span>,
    label: &'static str,
}

impl Conflict {
    fn with(message: impl Into<String>, help: impl Into<String>, earlier: Vec<Span>) -> Self {
        Conflict {
            message: message.into(),
            note: "contradicts the earlier condition",
            help: help.into(),
            earlier,
            label: "earlier condition",
        }
    }

    /// A condition that can never hold by itself, given the rule.
    fn alone(message: impl Into<String>, note: &'static str, help: impl Into<String>) -> Self {
        Conflict {
            message: message.into(),
            note,
            help: help.into(),
            earlier: Vec::new(),
            label: "",
        }
    }
}

// ---- one condition -------------------------------------------------------

fn convert(
    cx: &mut Context,
    resolver: &mut SubjectResolver<'_, '_>,
    intents: &Intents<'_>,
    facts: &RuleFacts<'_>,
    condition: &ConditionExpr,
) -> Option<Condition> {
    Some(match &condition.kind {
        ConditionKind::Header { header, test } => Condition::Header(HeaderCondition {
            name: header_name(cx, header)?,
            test: header_test(test),
        }),
        ConditionKind::Origin(subjects) => {
            Condition::Origin(resolver.resolve_list(cx, "subject", subjects)?)
        }
        ConditionKind::AnyHop(subjects) => {
            Condition::AnyHop(resolver.resolve_list(cx, "subject", subjects)?)
        }
        ConditionKind::NoHop(subjects) => {
            Condition::NoHop(resolver.resolve_list(cx, "subject", subjects)?)
        }
        ConditionKind::Depth(expr) => {
            let (min, max) = depth_bounds(cx, expr, facts.depth_limit)?;
            Condition::Depth { min, max }
        }
        ConditionKind::Complete => Condition::Complete,
        ConditionKind::Purpose(names) => Condition::Purpose(purpose_names(cx, intents, names)?),
        ConditionKind::User(test) => Condition::User(user_test(test)),
    })
}

/// `(min, max)` hops, or `E028` when no chain can meet the bound.
fn depth_bounds(cx: &mut Context, expr: &DepthExpr, limit: u8) -> Option<(u8, u8)> {
    let number = |cx: &mut Context, n: &Spanned<String>| -> Option<u8> {
        match n.value.parse::<u8>() {
            Ok(value) => Some(value),
            Err(_) => {
                cx.report(impossible_depth(
                    format!("`{}` is not a number of hops", n.value),
                    n.span,
                    format!("a chain has 1 to {limit} hops"),
                    "write a whole number of hops, e.g. `depth <= 3`",
                ));
                None
            }
        }
    };
    let (min, max, min_span, max_span) = match expr {
        DepthExpr::AtMost(n) => (1, number(cx, n)?, None, Some(n.span)),
        DepthExpr::AtLeast(n) => (number(cx, n)?, limit, Some(n.span), None),
        DepthExpr::Exactly(n) => {
            let value = number(cx, n)?;
            (value, value, Some(n.span), Some(n.span))
        }
        DepthExpr::Between { min, max } => {
            let (lo, hi) = (number(cx, min), number(cx, max));
            (lo?, hi?, Some(min.span), Some(max.span))
        }
    };
    let zero_span = match (min_span, max_span) {
        (Some(span), _) if min == 0 => Some(span),
        (_, Some(span)) if max == 0 => Some(span),
        _ => None,
    };
    if let Some(span) = zero_span {
        cx.report(impossible_depth(
            "a chain never has 0 hops".to_owned(),
            span,
            "every chain has at least one hop: the direct peer".to_owned(),
            "depth counts hops from the origin to the direct peer, starting at 1: \
             `depth == 1` means the direct peer is the origin",
        ));
        return None;
    }
    let beyond = match (min_span, max_span) {
        (Some(span), _) if min > limit => Some((min, span)),
        (_, Some(span)) if max > limit => Some((max, span)),
        _ => None,
    };
    if let Some((value, span)) = beyond {
        cx.report(impossible_depth(
            format!("depth bound {value} is beyond `max_depth` {limit}"),
            span,
            format!("chains deeper than {limit} hops are refused before rules are evaluated"),
            format!(
                "bound the depth by at most {limit}, or raise `max_depth` in the `chain` block (up to 16)"
            ),
        ));
        return None;
    }
    if min > max {
        let span = match (min_span, max_span) {
            (Some(a), Some(b)) => a.to(b),
            (a, b) => a.or(b).unwrap_or_default(),
        };
        cx.report(impossible_depth(
            format!("depth bound `{min}..{max}` admits no number of hops"),
            span,
            format!("{min} is more than {max}"),
            "write the smaller bound first: `depth in MIN..MAX`",
        ));
        return None;
    }
    Some((min, max))
}

fn impossible_depth(
    message: String,
    span: Span,
    note: String,
    help: impl Into<String>,
) -> Diagnostic {
    Diagnostic::new(Code::ImpossibleDepth, message, span)
        .note(note)
        .help(help)
}

/// Purpose names: any intent name, declared here or not (the chain may have
/// started at another workload, under its policy). Warns (`W004`) about a
/// name that is not declared here and looks like a typo of one that is, or
/// does not have the `service.action` shape of an intent name; refuses
/// `unclassified`, which is never a purpose.
fn purpose_names(
    cx: &mut Context,
    intents: &Intents<'_>,
    names: &[Spanned<String>],
) -> Option<Vec<String>> {
    let mut values: Vec<Spanned<String>> = Vec::new();
    let mut ok = true;
    for name in names {
        if let Some(first) = values.iter().find(|v| v.value == name.value) {
            warn_listed_twice(cx, "purpose", name, first.span);
            continue;
        }
        values.push(name.clone());
        if name.value == "unclassified" {
            cx.report(
                Diagnostic::new(
                    Code::UnsatisfiableConditions,
                    "`unclassified` is never a purpose",
                    name.span,
                )
                .note("a request that matches no intent gives its chain no purpose")
                .help("name the intents the chain may have started with, e.g. `when purpose orders.read`"),
            );
            ok = false;
            continue;
        }
        if intents.get(&name.value).is_some() {
            continue;
        }
        let typo_of = closest(&name.value, intents.names());
        if typo_of.is_none() && looks_like_intent_name(&name.value) {
            continue;
        }
        let help = match typo_of {
            Some(intent) => format!("did you mean `{intent}`?"),
            None => "purposes are intent names such as `orders.read`; if the chain starts at \
                     another workload, use the intent name of that workload's policy"
                .to_owned(),
        };
        cx.report(
            Diagnostic::new(
                Code::UnknownPurpose,
                format!("purpose `{}` is not an intent of this policy", name.value),
                name.span,
            )
            .note(match typo_of {
                Some(_) => "not declared here, and close to an intent that is",
                None => "not declared here, and not shaped like an intent name",
            })
            .help(help),
        );
    }
    ok.then(|| values.into_iter().map(|v| v.value).collect())
}

/// `service.action`: dot-separated words, at least two.
fn looks_like_intent_name(name: &str) -> bool {
    name.contains('.') && name.split('.').all(|part| !part.is_empty())
}

fn dedup(values: &[StrLit]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(values.len());
    for v in values {
        if !out.contains(&v.value) {
            out.push(v.value.clone());
        }
    }
    out
}

fn user_test(test: &UserTestExpr) -> UserTest {
    match test {
        UserTestExpr::Present => UserTest::Present,
        UserTestExpr::Subject(values) => UserTest::Subject(dedup(values)),
        UserTestExpr::Issuer(values) => UserTest::Issuer(dedup(values)),
        UserTestExpr::Scope(scope) => UserTest::HasScope(scope.value.clone()),
        UserTestExpr::Claim { name, test } => UserTest::Claim {
            name: super::identity_source::canonical_claim(&name.value),
            test: match test {
                ClaimTestExpr::Equals(v) => ClaimTest::Equals(v.value.clone()),
                ClaimTestExpr::OneOf(values) => ClaimTest::OneOf(dedup(values)),
                ClaimTestExpr::Contains(v) => ClaimTest::Contains(v.value.clone()),
            },
        },
    }
}

// ---- against the earlier conditions --------------------------------------

fn conflict(
    accepted: &[(Condition, Span)],
    new: &Condition,
    facts: &RuleFacts<'_>,
) -> Option<Conflict> {
    match new {
        Condition::Header(header) => header_conflict(accepted, header),
        Condition::Origin(_)
        | Condition::AnyHop(_)
        | Condition::NoHop(_)
        | Condition::Depth { .. } => hop_conflict(accepted, new, facts),
        Condition::Complete => None,
        Condition::Purpose(names) => {
            let earlier: Vec<Span> = accepted
                .iter()
                .filter(|(c, _)| matches!(c, Condition::Purpose(other) if !shares(names, other)))
                .map(|(_, span)| *span)
                .collect();
            (!earlier.is_empty()).then(|| {
                Conflict::with(
                    "purpose conditions can never all hold",
                    "a chain has one purpose: list every accepted intent in one `when purpose` line",
                    earlier,
                )
            })
        }
        Condition::User(test) => user_conflict(accepted, test),
    }
}

fn shares(a: &[String], b: &[String]) -> bool {
    a.iter().any(|v| b.contains(v))
}

fn header_conflict(accepted: &[(Condition, Span)], checked: &HeaderCondition) -> Option<Conflict> {
    let same_header: Vec<(&HeaderCondition, Span)> = accepted
        .iter()
        .filter_map(|(c, span)| match c {
            Condition::Header(h) if h.name == checked.name => Some((h, *span)),
            _ => None,
        })
        .collect();
    let tests: Vec<&HeaderTest> = same_header
        .iter()
        .map(|(c, _)| &c.test)
        .chain(std::iter::once(&checked.test))
        .collect();
    if satisfiable(&tests) {
        return None;
    }
    Some(Conflict {
        message: format!("conditions on header `{}` can never all hold", checked.name),
        note: "contradicts the earlier condition",
        help: contradiction_help(&tests).to_owned(),
        earlier: same_header.iter().map(|(_, span)| *span).collect(),
        label: "earlier condition on the same header",
    })
}

/// Whether every subject in `subjects` is covered by one in `by`.
fn all_covered(subjects: &[Subject], by: &[Subject]) -> bool {
    !subjects.is_empty() && subjects.iter().all(|s| by.iter().any(|b| b.covers(s)))
}

/// Whether no subject of `a` may match the same ID as one of `b`.
fn disjoint(a: &[Subject], b: &[Subject]) -> bool {
    !a.iter().any(|x| b.iter().any(|y| x.may_overlap(y)))
}

fn hop_conflict(
    accepted: &[(Condition, Span)],
    new: &Condition,
    facts: &RuleFacts<'_>,
) -> Option<Conflict> {
    let peer = facts.peer_subjects();
    // On its own: a `no_hop` that every direct peer of the rule matches.
    if let (Condition::NoHop(excluded), Some(peer)) = (new, peer) {
        if all_covered(peer, excluded) {
            return Some(Conflict::alone(
                "`no_hop` excludes every direct peer of this rule",
                "the direct peer is always a hop",
                "hops run from the origin to the direct peer: narrow `no_hop` so it leaves out the rule's direct peers",
            ));
        }
    }
    for (earlier, span) in accepted {
        let help: Option<&str> = match (earlier, new) {
            (Condition::Origin(o), Condition::NoHop(n)) | (Condition::NoHop(n), Condition::Origin(o))
                if all_covered(o, n) =>
            {
                Some("the origin is a hop: `no_hop` excludes every origin `origin` accepts")
            }
            (Condition::AnyHop(a), Condition::NoHop(n)) | (Condition::NoHop(n), Condition::AnyHop(a))
                if all_covered(a, n) =>
            {
                Some("`no_hop` excludes every hop `any_hop` asks for")
            }
            (Condition::Origin(a), Condition::Origin(b)) if disjoint(a, b) => {
                Some("a chain has one origin: list every accepted origin in one `when origin` line")
            }
            (Condition::Depth { min: a, max: b }, Condition::Depth { min: c, max: d })
                if a.max(c) > b.min(d) =>
            {
                Some("depth bounds must overlap: write one bound, e.g. `depth in 2..4`")
            }
            (Condition::Depth { max: 1, .. }, Condition::Origin(o) | Condition::AnyHop(o))
            | (Condition::Origin(o) | Condition::AnyHop(o), Condition::Depth { max: 1, .. })
                if peer.is_some_and(|p| disjoint(o, p)) =>
            {
                Some("with a single hop the origin is the direct peer, and this rule's direct peers never match")
            }
            _ => None,
        };
        if let Some(help) = help {
            return Some(Conflict::with(
                "conditions on the chain's hops can never all hold",
                help,
                vec![*span],
            ));
        }
    }
    None
}

fn user_conflict(accepted: &[(Condition, Span)], test: &UserTest) -> Option<Conflict> {
    match test {
        UserTest::HasScope(scope) if !valid_scope(scope) => Some(Conflict::alone(
            format!("scope `{scope}` can never match"),
            "scopes are single words, separated by spaces in a token",
            "name one scope, e.g. `when user scope \"orders.read\"`; for several, one line each",
        )),
        UserTest::Claim { name, .. } if name.is_empty() => Some(Conflict::alone(
            "a claim with an empty name never exists",
            "the claim name is empty",
            "name the claim, e.g. `when user claim \"groups\" contains \"admins\"`",
        )),
        UserTest::Subject(values) | UserTest::Issuer(values) => {
            let is_subject = matches!(test, UserTest::Subject(_));
            let earlier: Vec<Span> = accepted
                .iter()
                .filter(|(c, _)| match c {
                    Condition::User(UserTest::Subject(other)) if is_subject => {
                        !shares(values, other)
                    }
                    Condition::User(UserTest::Issuer(other)) if !is_subject => {
                        !shares(values, other)
                    }
                    _ => false,
                })
                .map(|(_, span)| *span)
                .collect();
            let (what, line) = if is_subject {
                ("subject", "user subject")
            } else {
                ("issuer", "user issuer")
            };
            (!earlier.is_empty()).then(|| {
                Conflict::with(
                    format!("conditions on the user's {what} can never all hold"),
                    format!("a user has one {what}: list every accepted value in one `when {line}` line"),
                    earlier,
                )
            })
        }
        UserTest::Claim { name, test } => {
            let same: Vec<(&ClaimTest, Span)> = accepted
                .iter()
                .filter_map(|(c, span)| match c {
                    Condition::User(UserTest::Claim { name: n, test }) if n == name => {
                        Some((test, *span))
                    }
                    _ => None,
                })
                .collect();
            let tests: Vec<&ClaimTest> = same
                .iter()
                .map(|(t, _)| *t)
                .chain(std::iter::once(test))
                .collect();
            (!claim_satisfiable(&tests)).then(|| Conflict {
                message: format!("conditions on claim `{name}` can never all hold"),
                note: "contradicts the earlier condition",
                help: "`==` and `in` need a string claim with that value, and `contains` on a string claim is `==`: remove or merge the conditions".to_owned(),
                earlier: same.iter().map(|(_, span)| *span).collect(),
                label: "earlier condition on the same claim",
            })
        }
        UserTest::Present | UserTest::HasScope(_) => None,
    }
}

/// Whether one claim value passes every test: a list claim passes any
/// number of `contains`; `==`/`in` need a string claim, which then must
/// equal every `contains` value too.
fn claim_satisfiable(tests: &[&ClaimTest]) -> bool {
    let mut allowed: Option<BTreeSet<&str>> = None;
    let mut contains: BTreeSet<&str> = BTreeSet::new();
    for test in tests {
        let admitted: BTreeSet<&str> = match test {
            ClaimTest::Equals(v) => std::iter::once(v.as_str()).collect(),
            ClaimTest::OneOf(vs) => vs.iter().map(String::as_str).collect(),
            ClaimTest::Contains(v) => {
                contains.insert(v);
                continue;
            }
        };
        allowed = Some(match allowed {
            Some(current) => current.intersection(&admitted).copied().collect(),
            None => admitted,
        });
    }
    match allowed {
        None => true,
        Some(values) => match contains.len() {
            0 => !values.is_empty(),
            1 => contains.iter().all(|c| values.contains(c)),
            _ => false,
        },
    }
}

fn contradiction_help(tests: &[&HeaderTest]) -> &'static str {
    let equals = tests
        .iter()
        .filter(|t| matches!(t, HeaderTest::Equals(_)))
        .count();
    if tests.iter().any(|t| matches!(t, HeaderTest::Absent)) {
        "a header cannot be absent and also present or have a value: remove one of the conditions"
    } else if equals > 1 {
        "to accept any of several values write one condition: `in [\"a\", \"b\"]`"
    } else {
        "remove or fix one of the conditions: as written the rule can never apply"
    }
}

/// Checks a header name (an HTTP token) and lowercases it.
pub(super) fn header_name(cx: &mut Context, lit: &StrLit) -> Option<String> {
    let is_token_char = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if !lit.value.is_empty() && lit.value.chars().all(is_token_char) {
        return Some(lit.value.to_ascii_lowercase());
    }
    let bad = lit.value.char_indices().find(|(_, c)| !is_token_char(*c));
    let (span, note) = match bad {
        Some((i, c)) => (
            lit.sub_span(i..i + c.len_utf8()),
            format!("`{}` cannot appear in a header name", c.escape_debug()),
        ),
        None => (lit.span, "the header name is empty".to_owned()),
    };
    let help = if lit.value.starts_with(':') {
        "pseudo-headers are not conditions: the path, method and host are matched by intents"
    } else {
        "a header name is letters, digits and `!#$%&'*+-.^_`|~`, e.g. `x-tenant`"
    };
    cx.report(
        Diagnostic::new(
            Code::InvalidHeaderName,
            format!("invalid header name `{}`", lit.value),
            span,
        )
        .note(note)
        .help(help),
    );
    None
}

fn header_test(test: &HeaderTestExpr) -> HeaderTest {
    match test {
        HeaderTestExpr::Present => HeaderTest::Present,
        HeaderTestExpr::Absent => HeaderTest::Absent,
        HeaderTestExpr::Equals(v) => HeaderTest::Equals(v.value.clone()),
        HeaderTestExpr::NotEquals(v) => HeaderTest::NotEquals(v.value.clone()),
        HeaderTestExpr::OneOf(vs) => {
            // Keep the first occurrence of each value, in order.
            let mut values: Vec<String> = Vec::with_capacity(vs.len());
            for v in vs {
                if !values.contains(&v.value) {
                    values.push(v.value.clone());
                }
            }
            HeaderTest::OneOf(values)
        }
        HeaderTestExpr::StartsWith(v) => HeaderTest::Prefix(v.value.clone()),
    }
}

/// Whether some header value (or its absence) passes every test.
fn satisfiable(tests: &[&HeaderTest]) -> bool {
    let needs_absent = tests.iter().any(|t| matches!(t, HeaderTest::Absent));
    let needs_present = tests.iter().any(|t| {
        matches!(
            t,
            HeaderTest::Present
                | HeaderTest::Equals(_)
                | HeaderTest::OneOf(_)
                | HeaderTest::Prefix(_)
        )
    });
    if needs_absent {
        // `!=` holds for an absent header too.
        return !needs_present;
    }
    let mut allowed: Option<BTreeSet<&str>> = None;
    let mut excluded: BTreeSet<&str> = BTreeSet::new();
    let mut prefixes: Vec<&str> = Vec::new();
    for test in tests {
        let admitted: Option<BTreeSet<&str>> = match test {
            HeaderTest::Equals(v) => Some(std::iter::once(v.as_str()).collect()),
            HeaderTest::OneOf(vs) => Some(vs.iter().map(String::as_str).collect()),
            HeaderTest::NotEquals(v) => {
                excluded.insert(v);
                None
            }
            HeaderTest::Prefix(p) => {
                prefixes.push(p);
                None
            }
            HeaderTest::Present | HeaderTest::Absent => None,
        };
        if let Some(admitted) = admitted {
            allowed = Some(match allowed {
                Some(current) => current.intersection(&admitted).copied().collect(),
                None => admitted,
            });
        }
    }
    match allowed {
        Some(values) => values
            .iter()
            .any(|v| !excluded.contains(v) && prefixes.iter().all(|p| v.starts_with(p))),
        // Infinitely many values start with the longest prefix; a finite `!=`
        // list cannot exclude them all. Prefixes must nest, though.
        None => {
            let longest = prefixes
                .iter()
                .max_by_key(|p| p.len())
                .copied()
                .unwrap_or("");
            prefixes.iter().all(|p| longest.starts_with(p))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::test_support::{check_source, codes, PREAMBLE};

    fn rule(conditions: &str) -> String {
        format!(
            "{PREAMBLE}intent i {{ path \"/\" }}\nallow r {{\n  subject any_authenticated\n  intent i\n{conditions}}}\n"
        )
    }

    #[test]
    fn satisfiability() {
        use HeaderTest::*;
        let s = |v: &str| v.to_owned();
        let sat = |tests: &[HeaderTest]| satisfiable(&tests.iter().collect::<Vec<_>>());
        assert!(sat(&[Present, Equals(s("a")), NotEquals(s("b"))]));
        assert!(sat(&[Absent, NotEquals(s("a"))]));
        assert!(sat(&[OneOf(vec![s("a"), s("b")]), NotEquals(s("a"))]));
        assert!(sat(&[Prefix(s("ab")), Prefix(s("a")), NotEquals(s("ab"))]));
        assert!(sat(&[Prefix(s("a")), OneOf(vec![s("x"), s("ay")])]));
        assert!(!sat(&[Present, Absent]));
        assert!(!sat(&[Equals(s("a")), Absent]));
        assert!(!sat(&[Equals(s("a")), Equals(s("b"))]));
        assert!(!sat(&[Equals(s("a")), NotEquals(s("a"))]));
        assert!(!sat(&[OneOf(vec![s("a")]), NotEquals(s("a"))]));
        assert!(!sat(&[OneOf(vec![s("a"), s("b")]), OneOf(vec![s("c")])]));
        assert!(!sat(&[Prefix(s("a")), Prefix(s("b"))]));
        assert!(!sat(&[Prefix(s("a")), Equals(s("b"))]));
        assert!(!sat(&[Prefix(s("a")), Absent]));
    }

    #[test]
    fn reports_contradictions_with_both_locations() {
        let (_, diagnostics) = check_source(&rule(
            "  when header \"X-Env\" == \"prod\"\n  when header \"x-env\" == \"dev\"\n  when header \"x-debug\" present\n  when header \"x-debug\" absent\n",
        ));
        let codes: Vec<_> = diagnostics.iter().map(|d| d.code).collect();
        assert_eq!(
            codes,
            [Code::UnsatisfiableConditions, Code::UnsatisfiableConditions]
        );
        assert_eq!(
            diagnostics[0].message,
            "conditions on header `x-env` can never all hold"
        );
        assert_eq!(diagnostics[0].secondary.len(), 1);
    }

    /// The codes for a rule with `conditions` (group `g` may go unused).
    fn codes_of(conditions: &str) -> Vec<Code> {
        let mut found = codes(&format!(
            "{PREAMBLE}group g {{ member \"spiffe://a.example/gw\" }}\nchain {{\n  forwarder domain \"a.example\"\n  max_depth 6\n}}\nintent i {{ path \"/\" }}\nallow r {{\n  subject \"spiffe://a.example/fe\"\n  intent i\n{conditions}}}\n"
        ));
        found.retain(|c| *c != Code::UnusedGroup);
        found
    }

    #[test]
    fn depth_bounds() {
        let (policy, _) = check_source(&rule(
            "  when depth <= 3\n  when depth >= 2\n  when depth in 2..8\n",
        ));
        let conditions = &policy.unwrap().rules[0].conditions;
        assert_eq!(
            conditions,
            &[
                Condition::Depth { min: 1, max: 3 },
                Condition::Depth { min: 2, max: 8 },
                Condition::Depth { min: 2, max: 8 },
            ]
        );
        for bad in [
            "== 0", "<= 0", "in 0..2", "in 3..2", "== 7", ">= 7", "in 2..7", "<= 300", "== 1x",
        ] {
            assert_eq!(
                codes_of(&format!("  when depth {bad}\n")),
                [Code::ImpossibleDepth],
                "{bad}"
            );
        }
        assert_eq!(codes_of("  when depth in 1..6\n  when depth == 6\n"), []);
    }

    #[test]
    fn hop_contradictions() {
        let contradictions = [
            "  when origin group g\n  when no_hop group g\n",
            "  when no_hop \"spiffe://a.example/**\"\n  when origin group g\n",
            "  when any_hop \"spiffe://a.example/x\"\n  when no_hop \"spiffe://a.example/*\"\n",
            "  when origin group g\n  when origin \"spiffe://a.example/x\"\n",
            "  when depth <= 2\n  when depth >= 3\n",
            "  when depth == 1\n  when origin group g\n",
            "  when no_hop \"spiffe://a.example/fe\"\n",
            "  when no_hop any_authenticated\n",
        ];
        for conditions in contradictions {
            assert_eq!(
                codes_of(conditions),
                [Code::UnsatisfiableConditions],
                "{conditions}"
            );
        }
        let fine = [
            "  when origin group g\n  when no_hop \"spiffe://a.example/x\"\n",
            "  when origin \"spiffe://a.example/*\"\n  when origin group g\n",
            "  when any_hop \"spiffe://a.example/*\"\n  when no_hop group g\n",
            "  when depth <= 2\n  when depth >= 2\n",
            "  when depth == 1\n  when origin \"spiffe://a.example/fe\"\n",
            "  when complete\n  when complete\n",
        ];
        for conditions in fine {
            assert_eq!(codes_of(conditions), [], "{conditions}");
        }
    }

    #[test]
    fn purpose_and_user_contradictions() {
        let contradictions = [
            "  when purpose a.b c.d\n  when purpose e.f\n",
            "  when purpose unclassified\n",
            "  when user subject \"a\"\n  when user subject \"b\"\n",
            "  when user issuer \"a\"\n  when user issuer \"b\"\n",
            "  when user scope \"\"\n",
            "  when user scope \"a b\"\n",
            "  when user claim \"\" == \"x\"\n",
            "  when user claim \"c\" == \"a\"\n  when user claim \"c\" == \"b\"\n",
            "  when user claim \"c\" in [\"a\", \"b\"]\n  when user claim \"c\" contains \"x\"\n",
        ];
        for conditions in contradictions {
            assert_eq!(
                codes_of(conditions),
                [Code::UnsatisfiableConditions],
                "{conditions}"
            );
        }
        let fine = [
            "  when purpose a.b c.d\n  when purpose c.d\n",
            "  when user subject \"a\" \"b\"\n  when user subject \"b\"\n",
            "  when user subject \"a\"\n  when user issuer \"b\"\n",
            "  when user claim \"c\" contains \"a\"\n  when user claim \"c\" contains \"b\"\n",
            "  when user claim \"c\" in [\"a\", \"b\"]\n  when user claim \"c\" contains \"a\"\n",
            "  when user claim \"c\" == \"a\"\n  when user claim \"d\" == \"b\"\n",
            "  when user scope \"a\"\n  when user scope \"b\"\n",
        ];
        for conditions in fine {
            assert_eq!(codes_of(conditions), [], "{conditions}");
        }
    }

    #[test]
    fn purpose_names_need_not_be_local() {
        assert_eq!(codes_of("  when purpose checkout.pay\n"), []);
        assert_eq!(codes_of("  when purpose i\n"), []);
        assert_eq!(
            codes_of("  when purpose checkout j\n"),
            [Code::UnknownPurpose, Code::UnknownPurpose]
        );
        assert_eq!(codes_of("  when purpose a.b a.b\n"), [Code::DuplicateEntry]);
    }

    #[test]
    fn claim_satisfiability() {
        use ClaimTest::*;
        let s = |v: &str| v.to_owned();
        let sat = |tests: &[ClaimTest]| claim_satisfiable(&tests.iter().collect::<Vec<_>>());
        assert!(sat(&[Contains(s("a")), Contains(s("b"))]));
        assert!(sat(&[Equals(s("a")), Contains(s("a"))]));
        assert!(sat(&[OneOf(vec![s("a"), s("b")]), Equals(s("b"))]));
        assert!(!sat(&[Equals(s("a")), Contains(s("b"))]));
        assert!(!sat(&[Equals(s("a")), Contains(s("a")), Contains(s("b"))]));
        assert!(!sat(&[OneOf(vec![s("a")]), OneOf(vec![s("b")])]));
    }

    #[test]
    fn header_names_are_tokens() {
        assert_eq!(
            codes(&rule("  when header \":path\" present\n  when header \"a b\" present\n  when header \"\" present\n")),
            [Code::InvalidHeaderName, Code::InvalidHeaderName, Code::InvalidHeaderName]
        );
    }

    #[test]
    fn lowercases_names_and_dedups_lists() {
        let (policy, _) = check_source(&rule(
            "  when header \"X-Tenant\" in [\"a\", \"b\", \"a\"]\n",
        ));
        let Condition::Header(condition) = &policy.unwrap().rules[0].conditions[0] else {
            panic!("expected a header condition");
        };
        assert_eq!(condition.name, "x-tenant");
        assert_eq!(
            condition.test,
            HeaderTest::OneOf(vec!["a".into(), "b".into()])
        );
    }
}
