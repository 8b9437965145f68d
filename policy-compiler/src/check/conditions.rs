//! Rule conditions: header names, and whether the conditions of one rule can
//! ever hold together.
//!
//! Conditions on different headers are independent, so satisfiability is
//! decided per header: the tests on one header hold together unless they
//! demand both presence and absence, or the values they admit have an empty
//! intersection (`==`, `in`, `!=`, `starts_with`).

use std::collections::BTreeSet;

use super::Context;
use crate::ast::{ConditionExpr, HeaderTestExpr, StrLit};
use crate::checked::{HeaderCondition, HeaderTest};
use crate::diagnostics::{Code, Diagnostic};
use crate::span::Span;

/// Checks a rule's conditions; returns the ones that are well-formed.
pub(super) fn check_conditions(
    cx: &mut Context,
    conditions: &[&ConditionExpr],
) -> Vec<HeaderCondition> {
    let mut accepted: Vec<(HeaderCondition, Span)> = Vec::new();
    for condition in conditions {
        let Some(name) = header_name(cx, &condition.header) else {
            continue;
        };
        let checked = HeaderCondition {
            name,
            test: header_test(&condition.test),
        };
        let same_header: Vec<&(HeaderCondition, Span)> = accepted
            .iter()
            .filter(|(c, _)| c.name == checked.name)
            .collect();
        let tests: Vec<&HeaderTest> = same_header
            .iter()
            .map(|(c, _)| &c.test)
            .chain(std::iter::once(&checked.test))
            .collect();
        if !satisfiable(&tests) {
            let mut diagnostic = Diagnostic::new(
                Code::UnsatisfiableConditions,
                format!("conditions on header `{}` can never all hold", checked.name),
                condition.span,
            )
            .note("contradicts the earlier condition")
            .help(contradiction_help(&tests));
            for (_, span) in &same_header {
                diagnostic = diagnostic.with_label(*span, "earlier condition on the same header");
            }
            cx.report(diagnostic);
            continue;
        }
        accepted.push((checked, condition.span));
    }
    accepted.into_iter().map(|(c, _)| c).collect()
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
        let condition = &policy.unwrap().rules[0].conditions[0];
        assert_eq!(condition.name, "x-tenant");
        assert_eq!(
            condition.test,
            HeaderTest::OneOf(vec!["a".into(), "b".into()])
        );
    }
}
