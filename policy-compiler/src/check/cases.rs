//! `test` blocks: a sample request and the decision it must get.
//!
//! The request parts are kept as written (a test may send a non-canonical
//! path or an odd method on purpose); only references to rules, intents and
//! reason codes are resolved, so a typo there is a compile error rather than
//! a test that can never pass.

use meshward_engine::model::Effect;
use meshward_engine::spiffe::SpiffeId;
use meshward_engine::Reason;

use super::conditions::header_name;
use super::intents::Intents;
use super::rules::unknown_intent;
use super::{report_repeated_setting, Context, Names};
use crate::ast::{EffectKw, ExpectExpr, IntentRef, TestBlock, TestStatement};
use crate::checked::{Expectation, Rule, TestCase, WouldExpectation};
use crate::diagnostics::{Code, Diagnostic};
use crate::span::{Span, Spanned};
use crate::suggest::did_you_mean;

pub(super) fn check_tests(
    cx: &mut Context,
    intents: &Intents<'_>,
    rules: &[Rule],
    blocks: &[&TestBlock],
) -> Vec<TestCase> {
    let mut names = Names::new("test");
    let mut tests = Vec::new();
    for block in blocks {
        let test = check_test(cx, intents, rules, block);
        let declared = names.declare(cx, &block.name.value, block.name.span, tests.len());
        if let (Some(test), true) = (test, declared) {
            tests.push(test);
        }
    }
    tests
}

fn effect(keyword: EffectKw) -> Effect {
    match keyword {
        EffectKw::Allow => Effect::Allow,
        EffectKw::Deny => Effect::Deny,
    }
}

fn check_test(
    cx: &mut Context,
    intents: &Intents<'_>,
    rules: &[Rule],
    block: &TestBlock,
) -> Option<TestCase> {
    let mut peer: Option<(Span, Option<SpiffeId>)> = None;
    let mut request: Option<(Span, String, String)> = None;
    let mut host: Option<(Span, String)> = None;
    let mut headers = Vec::new();
    let mut expect: Option<(Span, Option<Expectation>)> = None;
    let mut broken = false;
    for statement in &block.statements {
        match statement {
            TestStatement::Peer { keyword, id } => {
                if let Some((first, _)) = &peer {
                    report_repeated_setting(cx, "peer", *keyword, *first);
                    continue;
                }
                let parsed = match id {
                    None => None,
                    Some(lit) => match SpiffeId::parse(&lit.value) {
                        Ok(id) => Some(id),
                        Err(error) => {
                            cx.report(
                                Diagnostic::new(
                                    Code::MalformedSpiffeId,
                                    format!("malformed SPIFFE ID `{}`", lit.value),
                                    lit.span,
                                )
                                .note(error.to_string())
                                .help("a test peer is a verified SPIFFE ID such as `spiffe://prod.example/ns/shop/sa/frontend`, or `none`"),
                            );
                            broken = true;
                            None
                        }
                    },
                };
                peer = Some((*keyword, parsed));
            }
            TestStatement::Request {
                keyword,
                method,
                path,
            } => {
                if let Some((first, ..)) = &request {
                    report_repeated_setting(cx, "request", *keyword, *first);
                    continue;
                }
                request = Some((*keyword, method.value.clone(), path.value.clone()));
            }
            TestStatement::Host { keyword, host: lit } => {
                if let Some((first, _)) = &host {
                    report_repeated_setting(cx, "host", *keyword, *first);
                    continue;
                }
                host = Some((*keyword, lit.value.clone()));
            }
            TestStatement::Header { name, value, .. } => match header_name(cx, name) {
                Some(name) => headers.push((name, value.value.clone())),
                None => broken = true,
            },
            TestStatement::Expect(expr) => {
                if let Some((first, _)) = &expect {
                    report_repeated_setting(cx, "expect", expr.keyword, *first);
                    continue;
                }
                let checked = check_expect(cx, intents, rules, expr);
                broken |= checked.is_none();
                expect = Some((expr.keyword, checked));
            }
        }
    }
    let missing: Vec<&str> = [
        ("`peer`", peer.is_none()),
        ("`request`", request.is_none()),
        ("`expect`", expect.is_none()),
    ]
    .iter()
    .filter(|(_, absent)| *absent)
    .map(|(name, _)| *name)
    .collect();
    if !missing.is_empty() {
        cx.report(
            Diagnostic::new(
                Code::IncompleteTest,
                format!("test `{}` has no {}", block.name.value, missing.join(" or ")),
                block.name.span,
            )
            .note("incomplete test")
            .help("a test needs `peer \"spiffe://…\"` (or `peer none`), `request METHOD \"/path\"` and `expect allow|deny …`"),
        );
        return None;
    }
    if broken {
        return None;
    }
    let ((_, peer), (_, method, path), (_, Some(expect))) = (peer?, request?, expect?) else {
        return None;
    };
    Some(TestCase {
        name: block.name.value.clone(),
        span: block.name.span,
        peer,
        method,
        path,
        authority: host.map(|(_, h)| h).unwrap_or_default(),
        headers,
        expect,
    })
}

fn check_expect(
    cx: &mut Context,
    intents: &Intents<'_>,
    rules: &[Rule],
    expr: &ExpectExpr,
) -> Option<Expectation> {
    let mut ok = true;
    let mut rule_ref = |cx: &mut Context, name: &Option<Spanned<String>>| -> Option<String> {
        let name = name.as_ref()?;
        if rules.iter().any(|r| r.id == name.value) {
            return Some(name.value.clone());
        }
        cx.report(
            Diagnostic::new(
                Code::UnknownRule,
                format!("unknown rule `{}`", name.value),
                name.span,
            )
            .note("no rule has this id")
            .help(did_you_mean(
                &name.value,
                rules.iter().map(|r| r.id.as_str()),
                || "name the id of an `allow` or `deny` rule".to_owned(),
            )),
        );
        ok = false;
        None
    };
    let rule = rule_ref(cx, &expr.by);
    let would = expr.would.as_ref().map(|w| WouldExpectation {
        effect: effect(w.effect.value),
        rule: rule_ref(cx, &w.by),
    });
    let reason = match &expr.reason {
        None => None,
        Some(code) => match Reason::ALL.iter().find(|r| r.code() == code.value) {
            Some(reason) => Some(*reason),
            None => {
                cx.report(
                    Diagnostic::new(
                        Code::UnknownReason,
                        format!("unknown reason code `{}`", code.value),
                        code.span,
                    )
                    .note("not a decision reason")
                    .help(did_you_mean(&code.value, Reason::ALL.iter().map(|r| r.code()), || {
                        "reason codes are snake_case, e.g. `no_matching_rule`, `denied_by_rule`, `no_peer_certificate`".to_owned()
                    })),
                );
                ok = false;
                None
            }
        },
    };
    let intent = match &expr.intent {
        None => None,
        Some(IntentRef::Unclassified(_)) => Some(None),
        Some(IntentRef::Named(name)) => {
            if intents.get(&name.value).is_none() {
                cx.report(unknown_intent(intents, name));
                ok = false;
            }
            Some(Some(name.value.clone()))
        }
    };
    ok.then(|| Expectation {
        effect: effect(expr.effect.value),
        rule,
        reason,
        intent,
        would,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::test_support::{check_source, codes, PREAMBLE};

    const RULES: &str =
        "intent i { path \"/\" }\nallow r {\n  subject any_authenticated\n  intent i\n}\n";

    #[test]
    fn resolves_a_complete_test() {
        let (policy, diagnostics) = check_source(&format!(
            "{PREAMBLE}{RULES}test \"t\" {{\n  peer \"spiffe://a.example/x\"\n  request GET \"/?q\"\n  host \"h:8080\"\n  header \"X-A\" \"1\"\n  expect allow by r reason allowed_by_rule intent i\n}}\n"
        ));
        assert!(diagnostics.is_empty(), "{diagnostics:#?}");
        let test = &policy.unwrap().tests[0];
        assert_eq!(
            test.peer.as_ref().map(SpiffeId::as_str),
            Some("spiffe://a.example/x")
        );
        assert_eq!((test.method.as_str(), test.path.as_str()), ("GET", "/?q"));
        assert_eq!(test.authority, "h:8080");
        assert_eq!(test.headers, [("x-a".to_owned(), "1".to_owned())]);
        assert_eq!(test.expect.rule.as_deref(), Some("r"));
        assert_eq!(test.expect.reason, Some(Reason::AllowedByRule));
        assert_eq!(test.expect.intent, Some(Some("i".to_owned())));
    }

    #[test]
    fn reports_test_problems() {
        let source = format!(
            "{PREAMBLE}{RULES}test \"t\" {{\n  peer \"spiffe://A/x\"\n  request GET \"/\"\n  expect deny by q reason nope intent k would allow by z\n}}\ntest \"u\" {{\n  peer none\n}}\ntest \"t\" {{\n  peer none\n  peer none\n  request GET \"/\"\n  expect deny\n}}\n"
        );
        assert_eq!(
            codes(&source),
            [
                Code::MalformedSpiffeId,
                Code::UnknownRule,
                Code::UnknownRule,
                Code::UnknownReason,
                Code::UnknownIntent,
                Code::IncompleteTest,
                Code::RepeatedSetting,
                Code::Duplicate,
            ]
        );
    }
}
