//! `test` blocks: a sample request and the decision it must get.
//!
//! The request parts are kept as written (a test may send a non-canonical
//! path or an odd method on purpose); only references to rules, intents and
//! reason codes are resolved, so a typo there is a compile error rather than
//! a test that can never pass. Tokens, the user and the caller chain must
//! describe something a request could carry (`E030`): a chain ends at the
//! direct peer, scopes and claims belong to a user, and so on.

use meshward_engine::model::Effect;
use meshward_engine::spiffe::SpiffeId;
use meshward_engine::Reason;

use super::conditions::header_name;
use super::intents::Intents;
use super::rules::unknown_intent;
use super::{report_repeated_setting, Context, Names};
use crate::ast::{
    CredentialExpr, EffectKw, ExpectExpr, IntentRef, StrLit, TestBlock, TestStatement,
};
use crate::checked::{Expectation, Rule, TestCase, WouldExpectation};
use crate::diagnostics::{Code, Diagnostic};
use crate::sample::{valid_scope, ClaimValue, SampleChain, SampleUser};
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

/// A SPIFFE ID written in a test (peer, JWT-SVID subject, chain hop);
/// reports `E008` when malformed.
fn test_id(cx: &mut Context, lit: &StrLit, what: &str) -> Option<SpiffeId> {
    match SpiffeId::parse(&lit.value) {
        Ok(id) => Some(id),
        Err(error) => {
            cx.report(
                Diagnostic::new(
                    Code::MalformedSpiffeId,
                    format!("malformed SPIFFE ID `{}`", lit.value),
                    lit.span,
                )
                .note(error.to_string())
                .help(format!(
                    "{what} is a verified SPIFFE ID such as `spiffe://prod.example/ns/shop/sa/frontend`"
                )),
            );
            None
        }
    }
}

/// A reason code written in a test; reports `E022` when unknown.
fn reason_code(cx: &mut Context, code: &Spanned<String>) -> Option<Reason> {
    if let Some(reason) = Reason::ALL.iter().find(|r| r.code() == code.value) {
        return Some(*reason);
    }
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
    None
}

/// `E030` for a test request no real request could be.
fn inconsistent(message: String, span: Span, note: &str, help: &str) -> Diagnostic {
    Diagnostic::new(Code::InconsistentTestRequest, message, span)
        .note(note)
        .help(help)
}

/// Once-only test statements: where each was first given.
#[derive(Default)]
struct Seen {
    peer: Option<Span>,
    request: Option<Span>,
    host: Option<Span>,
    expect: Option<Span>,
    jwt_svid: Option<Span>,
    user: Option<Span>,
    issuer: Option<Span>,
    chain: Option<Span>,
    incomplete: Option<Span>,
    purpose: Option<Span>,
    chain_user: Option<Span>,
}

/// Records a once-only statement; reports `E023` and returns false when it
/// was given before.
fn once(cx: &mut Context, slot: &mut Option<Span>, setting: &str, keyword: Span) -> bool {
    if let Some(first) = *slot {
        report_repeated_setting(cx, setting, keyword, first);
        return false;
    }
    *slot = Some(keyword);
    true
}

fn check_test(
    cx: &mut Context,
    intents: &Intents<'_>,
    rules: &[Rule],
    block: &TestBlock,
) -> Option<TestCase> {
    let mut seen = Seen::default();
    let mut peer: Option<Option<SpiffeId>> = None;
    let mut peer_id_span: Option<Span> = None;
    let mut request: Option<(String, String)> = None;
    let mut host: Option<String> = None;
    let mut headers = Vec::new();
    let mut expect: Option<Option<Expectation>> = None;
    let mut jwt_svid: Option<Result<SpiffeId, Reason>> = None;
    let mut user: Option<Result<String, Reason>> = None;
    let mut scopes: Vec<String> = Vec::new();
    let mut scope_at: Option<Span> = None;
    let mut issuer: Option<String> = None;
    let mut claims: Vec<(String, ClaimValue)> = Vec::new();
    let mut claim_spans: Vec<Span> = Vec::new();
    let mut hops: Vec<(SpiffeId, Span)> = Vec::new();
    let mut purpose: Option<String> = None;
    let mut chain_user: Option<String> = None;
    let mut chain_scopes: Vec<String> = Vec::new();
    let mut chain_scope_at: Option<Span> = None;
    let mut broken = false;
    for statement in &block.statements {
        match statement {
            TestStatement::Peer { keyword, id } => {
                if !once(cx, &mut seen.peer, "peer", *keyword) {
                    continue;
                }
                peer_id_span = id.as_ref().map(|lit| lit.span);
                let parsed = match id {
                    None => None,
                    Some(lit) => {
                        let parsed = test_id(cx, lit, "a test peer");
                        broken |= parsed.is_none();
                        parsed
                    }
                };
                peer = Some(parsed);
            }
            TestStatement::Request {
                keyword,
                method,
                path,
            } => {
                if once(cx, &mut seen.request, "request", *keyword) {
                    request = Some((method.value.clone(), path.value.clone()));
                }
            }
            TestStatement::Host { keyword, host: lit } => {
                if once(cx, &mut seen.host, "host", *keyword) {
                    host = Some(lit.value.clone());
                }
            }
            TestStatement::Header { name, value, .. } => match header_name(cx, name) {
                Some(name) => headers.push((name, value.value.clone())),
                None => broken = true,
            },
            TestStatement::Expect(expr) => {
                if !once(cx, &mut seen.expect, "expect", expr.keyword) {
                    continue;
                }
                let checked = check_expect(cx, intents, rules, expr);
                broken |= checked.is_none();
                expect = Some(checked);
            }
            TestStatement::JwtSvid { keyword, token } => {
                if !once(cx, &mut seen.jwt_svid, "jwt_svid", *keyword) {
                    continue;
                }
                let parsed = match token {
                    CredentialExpr::Valid(lit) => test_id(cx, lit, "a JWT-SVID subject").map(Ok),
                    CredentialExpr::Invalid(code) => reason_code(cx, code).map(Err),
                };
                broken |= parsed.is_none();
                jwt_svid = parsed;
            }
            TestStatement::User { keyword, token } => {
                if !once(cx, &mut seen.user, "user", *keyword) {
                    continue;
                }
                let parsed = match token {
                    CredentialExpr::Valid(lit) => Some(Ok(lit.value.clone())),
                    CredentialExpr::Invalid(code) => reason_code(cx, code).map(Err),
                };
                broken |= parsed.is_none();
                user = parsed;
            }
            TestStatement::Scope {
                keyword,
                scopes: lits,
            } => {
                scope_at.get_or_insert(*keyword);
                scopes.extend(lits.iter().map(|l| l.value.clone()));
            }
            TestStatement::Issuer {
                keyword,
                issuer: lit,
            } => {
                if once(cx, &mut seen.issuer, "issuer", *keyword) {
                    issuer = Some(lit.value.clone());
                }
            }
            TestStatement::Claim {
                keyword,
                name,
                values,
                list,
            } => {
                let path = super::identity_source::canonical_claim(&name.value);
                if let Some(index) = claims.iter().position(|(n, _)| *n == path) {
                    let first = claim_spans.get(index).copied().unwrap_or(*keyword);
                    report_repeated_setting(
                        cx,
                        &format!("claim \"{}\"", name.value),
                        *keyword,
                        first,
                    );
                    continue;
                }
                let values: Vec<String> = values.iter().map(|v| v.value.clone()).collect();
                let value = match (values.as_slice(), *list) {
                    ([one], false) => ClaimValue::Str(one.clone()),
                    _ => ClaimValue::List(values),
                };
                claims.push((path, value));
                claim_spans.push(*keyword);
            }
            TestStatement::Chain {
                keyword,
                hops: lits,
            } => {
                if !once(cx, &mut seen.chain, "chain", *keyword) {
                    continue;
                }
                for lit in lits {
                    match test_id(cx, lit, "a chain hop") {
                        Some(id) => hops.push((id, lit.span)),
                        None => broken = true,
                    }
                }
            }
            TestStatement::ChainIncomplete { keyword } => {
                once(cx, &mut seen.incomplete, "chain incomplete", *keyword);
            }
            TestStatement::Purpose { keyword, name } => {
                if once(cx, &mut seen.purpose, "purpose", *keyword) {
                    purpose = Some(name.value.clone());
                }
            }
            TestStatement::ChainUser { keyword, subject } => {
                if once(cx, &mut seen.chain_user, "chain_user", *keyword) {
                    chain_user = Some(subject.value.clone());
                }
            }
            TestStatement::ChainScope {
                keyword,
                scopes: lits,
            } => {
                chain_scope_at.get_or_insert(*keyword);
                for lit in lits {
                    if !valid_scope(&lit.value) {
                        cx.report(inconsistent(
                            format!("chain scope `{}` cannot be carried in a chain", lit.value),
                            lit.span,
                            "a chain carries its user's scopes space-separated",
                            "write one non-empty scope without spaces per string: `chain_scope \"a\" \"b\"`",
                        ));
                        broken = true;
                    }
                    chain_scopes.push(lit.value.clone());
                }
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

    // What the tokens, user and chain say must fit together.
    let chain_at = [
        seen.chain,
        seen.incomplete,
        seen.purpose,
        seen.chain_user,
        chain_scope_at,
    ]
    .into_iter()
    .flatten()
    .min();
    if let (Some(at), Some(None), false) = (chain_at, &peer, broken) {
        let mut diagnostic = inconsistent(
            "a caller chain needs a direct peer".to_owned(),
            at,
            "this test has `peer none`",
            "chains arrive only over mTLS from a peer: give the test a `peer \"spiffe://…\"`",
        );
        if let Some(peer_at) = seen.peer {
            diagnostic = diagnostic.with_label(peer_at, "no peer");
        }
        cx.report(diagnostic);
        broken = true;
    }
    if let (Some((last, last_span)), Some(Some(peer_id))) = (hops.last(), &peer) {
        if last != peer_id {
            let mut diagnostic = inconsistent(
                format!("the chain ends at `{last}`, not at the peer `{peer_id}`"),
                *last_span,
                "the last hop must be the direct peer",
                "list the hops from the origin up to and including the direct peer, which is also the `peer`",
            );
            if let Some(span) = peer_id_span {
                diagnostic = diagnostic.with_label(span, "the direct peer");
            }
            cx.report(diagnostic);
            broken = true;
        }
    }
    if chain_user.is_none() {
        if let Some(at) = chain_scope_at {
            cx.report(inconsistent(
                "chain scopes without a chain user".to_owned(),
                at,
                "a chain carries scopes only with its user",
                "add `chain_user \"SUBJECT\"`",
            ));
            broken = true;
        }
    }
    let user_details = [scope_at, seen.issuer, claim_spans.first().copied()]
        .into_iter()
        .flatten()
        .min();
    if let (Some(at), false) = (user_details, matches!(user, Some(Ok(_)))) {
        let mut diagnostic = inconsistent(
            "token details without a verified user".to_owned(),
            at,
            "`scope`, `issuer` and `claim` describe the `user` token verified at this hop",
            "add `user \"SUBJECT\"`; for the user carried in the chain use `chain_user` and `chain_scope`",
        );
        if let Some(user_at) = seen.user {
            diagnostic = diagnostic.with_label(user_at, "the token failed verification");
        }
        cx.report(diagnostic);
        broken = true;
    }
    if broken {
        return None;
    }
    let (Some(peer), Some((method, path)), Some(Some(expect))) = (peer, request, expect) else {
        return None;
    };
    let chain = chain_at.map(|_| SampleChain {
        hops: hops.into_iter().map(|(id, _)| id).collect(),
        incomplete: seen.incomplete.is_some(),
        purpose,
        user: chain_user,
        scopes: chain_scopes,
    });
    Some(TestCase {
        name: block.name.value.clone(),
        span: block.name.span,
        peer,
        method,
        path,
        authority: host.unwrap_or_default(),
        headers,
        jwt_svid,
        user: user.map(|user| {
            user.map(|subject| SampleUser {
                subject,
                issuer,
                scopes,
                claims,
            })
        }),
        chain,
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
        Some(code) => {
            let reason = reason_code(cx, code);
            ok &= reason.is_some();
            reason
        }
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
    use crate::sample::ClaimValue;

    const RULES: &str =
        "intent i {\n  method GET\n  path \"/\"\n}\nallow r {\n  subject any_authenticated\n  intent i\n}\n";

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
    fn resolves_tokens_user_and_chain() {
        let (policy, diagnostics) = check_source(&format!(
            "{PREAMBLE}{RULES}test \"t\" {{\n  peer \"spiffe://a.example/fe\"\n  jwt_svid \"spiffe://a.example/fe\"\n  user \"alice\"\n  scope \"a\" \"b\"\n  scope \"c\"\n  issuer \"https://idp\"\n  claim \"g\" \"x\"\n  claim \"l\" [\"y\"]\n  claim \"m\" \"y\" \"z\"\n  chain \"spiffe://a.example/gw\" \"spiffe://a.example/fe\"\n  chain incomplete\n  purpose x.read\n  chain_user \"bob\"\n  chain_scope \"s\"\n  request GET \"/\"\n  expect allow\n}}\ntest \"u\" {{\n  peer none\n  jwt_svid invalid jwt_expired\n  user invalid user_token_revoked\n  request GET \"/\"\n  expect deny\n}}\n"
        ));
        assert!(diagnostics.is_empty(), "{diagnostics:#?}");
        let tests = policy.unwrap().tests;
        let test = &tests[0];
        assert!(matches!(&test.jwt_svid, Some(Ok(id)) if id.as_str() == "spiffe://a.example/fe"));
        let Some(Ok(user)) = &test.user else {
            panic!("expected a user");
        };
        assert_eq!(user.subject, "alice");
        assert_eq!(user.scopes, ["a", "b", "c"]);
        assert_eq!(user.issuer.as_deref(), Some("https://idp"));
        assert_eq!(
            user.claims,
            [
                ("g".to_owned(), ClaimValue::Str("x".into())),
                ("l".to_owned(), ClaimValue::List(vec!["y".into()])),
                (
                    "m".to_owned(),
                    ClaimValue::List(vec!["y".into(), "z".into()])
                ),
            ]
        );
        let chain = test.chain.as_ref().unwrap();
        assert_eq!(chain.hops.len(), 2);
        assert!(chain.incomplete);
        assert_eq!(chain.purpose.as_deref(), Some("x.read"));
        assert_eq!(chain.user.as_deref(), Some("bob"));
        assert_eq!(chain.scopes, ["s"]);
        let test = &tests[1];
        assert_eq!(test.jwt_svid, Some(Err(Reason::JwtExpired)));
        assert_eq!(test.user, Some(Err(Reason::UserTokenRevoked)));
        assert_eq!(test.chain, None);
    }

    #[test]
    fn a_chain_detail_alone_starts_a_chain_at_the_peer() {
        let (policy, _) = check_source(&format!(
            "{PREAMBLE}{RULES}test \"t\" {{\n  peer \"spiffe://a.example/fe\"\n  purpose x.read\n  request GET \"/\"\n  expect allow\n}}\n"
        ));
        let chain = policy.unwrap().tests[0].chain.clone().unwrap();
        assert!(chain.hops.is_empty() && !chain.incomplete);
    }

    #[test]
    fn reports_inconsistent_requests() {
        let test = |body: &str| {
            format!(
                "{PREAMBLE}{RULES}test \"t\" {{\n  peer \"spiffe://a.example/fe\"\n{body}  request GET \"/\"\n  expect allow\n}}\n"
            )
        };
        for body in [
            "  chain \"spiffe://a.example/fe\" \"spiffe://a.example/gw\"\n",
            "  issuer \"x\"\n",
            "  claim \"g\" \"x\"\n",
            "  user invalid user_token_expired\n  scope \"a\"\n",
            "  chain_scope \"a\"\n",
            "  chain_user \"u\"\n  chain_scope \"\"\n",
        ] {
            assert_eq!(
                codes(&test(body)),
                [Code::InconsistentTestRequest],
                "{body}"
            );
        }
        let no_peer = format!(
            "{PREAMBLE}{RULES}test \"t\" {{\n  peer none\n  chain incomplete\n  request GET \"/\"\n  expect deny\n}}\n"
        );
        assert_eq!(codes(&no_peer), [Code::InconsistentTestRequest]);
        assert_eq!(
            codes(&test("  jwt_svid invalid nope\n  chain \"x\"\n")),
            [Code::UnknownReason, Code::MalformedSpiffeId]
        );
        assert_eq!(
            codes(&test(
                "  purpose a.b\n  purpose c.d\n  chain incomplete\n  chain incomplete\n"
            )),
            [Code::RepeatedSetting, Code::RepeatedSetting]
        );
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
