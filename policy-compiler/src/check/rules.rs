//! `allow` / `deny` blocks: principal, subjects (groups expanded), intents,
//! conditions, mode.

use meshward_engine::model::Effect;

use super::chain::ChainChecked;
use super::conditions::{check_conditions, RuleFacts};
use super::intents::Intents;
use super::lints::{broad_grant, broad_subject, BroadSubject};
use super::subjects::{subject_text, SubjectResolver};
use super::{report_repeated_setting, warn_listed_twice, Context, Names};
use crate::ast::{EffectKw, IntentRef, Mode, PrincipalExpr, RuleBlock, RuleStatement, SubjectExpr};
use crate::checked::{Condition, Principal, Rule, Subject};
use crate::diagnostics::{Code, Diagnostic};
use crate::span::{Span, Spanned};
use crate::suggest::did_you_mean;

/// The checked rules and which intents they use.
pub(super) struct CheckedRules {
    pub rules: Vec<Rule>,
    pub used_intents: Vec<bool>,
    /// `W006` warnings, reported only when the policy has no error (a
    /// condition that failed to check might have narrowed the rule).
    pub broad_grants: Vec<Diagnostic>,
}

pub(super) fn check_rules(
    cx: &mut Context,
    resolver: &mut SubjectResolver<'_, '_>,
    chain: &ChainChecked,
    intents: &Intents<'_>,
    blocks: &[&RuleBlock],
) -> CheckedRules {
    let mut checked = CheckedRules {
        rules: Vec::new(),
        used_intents: vec![false; intents.intents.len()],
        broad_grants: Vec::new(),
    };
    let mut names = Names::new("rule");
    for block in blocks {
        let rule = check_rule(cx, resolver, chain, intents, block, &mut checked);
        let index = checked.rules.len();
        if names.declare(cx, &block.id.value, block.id.span, index) {
            checked.rules.push(rule);
        }
    }
    checked
}

fn check_principal(
    cx: &mut Context,
    resolver: &mut SubjectResolver<'_, '_>,
    expr: &PrincipalExpr,
) -> Principal {
    match expr {
        PrincipalExpr::Peer(_) => Principal::Peer,
        PrincipalExpr::JwtSvid(_) => Principal::JwtSvid,
        PrincipalExpr::JwtSvidVia { via, .. } => {
            // On error (reported) keep the kind, so no follow-on errors.
            Principal::JwtSvidVia(
                resolver
                    .resolve_list(cx, "forwarder", via)
                    .unwrap_or_default(),
            )
        }
        PrincipalExpr::PeerBoundJwtSvid(_) => Principal::PeerBoundJwtSvid,
        PrincipalExpr::User(_) => Principal::User,
    }
}

fn check_rule(
    cx: &mut Context,
    resolver: &mut SubjectResolver<'_, '_>,
    chain: &ChainChecked,
    intents: &Intents<'_>,
    block: &RuleBlock,
    usage: &mut CheckedRules,
) -> Rule {
    let mut rule = Rule {
        id: block.id.value.clone(),
        span: block.id.span,
        effect: match block.effect.value {
            EffectKw::Allow => Effect::Allow,
            EffectKw::Deny => Effect::Deny,
        },
        dry_run: false,
        principal: Principal::Peer,
        subjects: Vec::new(),
        intents: Vec::new(),
        unclassified: false,
        conditions: Vec::new(),
    };
    let mut written_subjects: Vec<Spanned<String>> = Vec::new();
    let mut broad: Option<BroadSubject> = None;
    let mut has_intent_statement = false;
    let mut unclassified_at: Option<Span> = None;
    let mut intent_spans: Vec<Span> = Vec::new();
    let mut conditions = Vec::new();
    let mut mode_at: Option<Span> = None;
    // The `principal` keyword and the principal's kind, as written.
    let mut principal_at: Option<(Span, Span)> = None;
    for statement in &block.statements {
        match statement {
            RuleStatement::Principal { keyword, principal } => {
                if let Some((first, _)) = principal_at {
                    report_repeated_setting(cx, "principal", *keyword, first);
                    continue;
                }
                principal_at = Some((*keyword, principal.span()));
                rule.principal = check_principal(cx, resolver, principal);
            }
            RuleStatement::Subject(expr) => {
                let text = subject_text(expr);
                if let Some(first) = written_subjects.iter().find(|s| s.value == text.value) {
                    warn_listed_twice(cx, "subject", &text, first.span);
                    continue;
                }
                for subject in resolver.resolve(cx, expr).unwrap_or_default() {
                    if broad.is_none() {
                        broad = broad_subject(&subject).map(|who| BroadSubject {
                            span: text.span,
                            who: match expr {
                                SubjectExpr::Group(name) => {
                                    format!("{who} (through group `{}`)", name.value)
                                }
                                _ => who,
                            },
                        });
                    }
                    if !rule.subjects.contains(&subject) {
                        rule.subjects.push(subject);
                    }
                }
                written_subjects.push(text);
            }
            RuleStatement::Intents { intents: refs, .. } => {
                has_intent_statement = true;
                for intent_ref in refs {
                    match intent_ref {
                        IntentRef::Unclassified(span) => {
                            if let Some(first) = unclassified_at {
                                let entry = Spanned::new("unclassified".to_owned(), *span);
                                warn_listed_twice(cx, "intent", &entry, first);
                            }
                            unclassified_at.get_or_insert(*span);
                            rule.unclassified = true;
                        }
                        IntentRef::Named(name) => match intents.get(&name.value) {
                            Some(index) => {
                                if let Some(position) =
                                    rule.intents.iter().position(|i| *i == index)
                                {
                                    let first =
                                        intent_spans.get(position).copied().unwrap_or(name.span);
                                    warn_listed_twice(cx, "intent", name, first);
                                    continue;
                                }
                                if let Some(used) = usage.used_intents.get_mut(index) {
                                    *used = true;
                                }
                                rule.intents.push(index);
                                intent_spans.push(name.span);
                            }
                            None => cx.report(unknown_intent(intents, name)),
                        },
                    }
                }
            }
            RuleStatement::When(condition) => conditions.push(condition),
            RuleStatement::Mode { keyword, mode } => {
                if let Some(first) = mode_at {
                    report_repeated_setting(cx, "mode", *keyword, first);
                    continue;
                }
                mode_at = Some(*keyword);
                rule.dry_run = mode.value == Mode::DryRun;
            }
        }
    }
    let facts = RuleFacts {
        principal: &rule.principal,
        subjects: &rule.subjects,
        depth_limit: chain.depth_limit,
    };
    let conditions = check_conditions(cx, resolver, intents, &facts, &conditions);
    match (&rule.principal, written_subjects.first()) {
        (Principal::User, Some(first)) => {
            let mut diagnostic = Diagnostic::new(
                Code::SubjectWithUserPrincipal,
                format!("rule `{}` is about a user but names workload subjects", rule.id),
                first.span,
            )
            .note("a `principal user` rule has no workload identity to match");
            if let Some((_, principal)) = principal_at {
                diagnostic = diagnostic.with_label(principal, "the rule's principal is a verified end user");
            }
            cx.report(diagnostic.help(
                "remove the `subject` lines and say which users with `when user …`, or match a workload with another principal",
            ));
            rule.subjects.clear();
        }
        (Principal::User, None) => {}
        (principal, None) => cx.report(
            Diagnostic::new(
                Code::RuleWithoutSubject,
                format!("rule `{}` has no subject", rule.id),
                rule.span,
            )
            .note("a rule without a subject applies to nobody")
            .help(match principal {
                Principal::Peer => "add `subject \"spiffe://…\"`, `subject group NAME`, `subject domain \"…\"` or `subject any_authenticated`",
                _ => "add `subject …` lines naming the workloads the token may identify (or use `principal user` for end users)",
            }),
        ),
        (_, Some(_)) => {}
    }
    if !has_intent_statement {
        cx.report(
            Diagnostic::new(
                Code::RuleWithoutIntent,
                format!("rule `{}` has no intent", rule.id),
                rule.span,
            )
            .note("a rule without an intent applies to no request")
            .help("add `intent NAME` (or `intent unclassified` for requests that match no intent)"),
        );
    }
    warn_chain_not_forwarded(cx, &rule, &chain.config.forwarders, &conditions);
    rule.conditions = conditions.into_iter().map(|(c, _)| c).collect();
    if rule.principal != Principal::User {
        let warning = broad_grant(
            &rule,
            broad.as_ref(),
            &intents.intents,
            &intents.grpc,
            &intent_spans,
            unclassified_at,
        );
        usage.broad_grants.extend(warning);
    }
    rule
}

/// `W005`: a rule asks about hops before its direct peer (`origin`,
/// `any_hop`, `depth` of 2 or more) while none of its direct peers is a
/// trusted forwarder, so every chain it sees restarts at that peer.
fn warn_chain_not_forwarded(
    cx: &mut Context,
    rule: &Rule,
    forwarders: &[Subject],
    conditions: &[(Condition, Span)],
) {
    let peers: Option<&[Subject]> = match &rule.principal {
        Principal::Peer | Principal::PeerBoundJwtSvid => Some(&rule.subjects),
        Principal::JwtSvidVia(via) => Some(via),
        Principal::JwtSvid | Principal::User => None,
    };
    let never_forwarded = match peers {
        Some(peers) => {
            !peers.is_empty()
                && !peers
                    .iter()
                    .any(|p| forwarders.iter().any(|f| f.may_overlap(p)))
        }
        None => forwarders.is_empty(),
    };
    if !never_forwarded {
        return;
    }
    let looks_back = conditions.iter().find(|(c, _)| match c {
        Condition::Origin(_) | Condition::AnyHop(_) => true,
        Condition::Depth { min, .. } => *min >= 2,
        _ => false,
    });
    let Some((_, span)) = looks_back else { return };
    let note = if forwarders.is_empty() {
        "no peer is trusted to forward chains, so every chain restarts at the direct peer"
    } else {
        "none of this rule's direct peers is a `forwarder`, so their chains restart at them"
    };
    cx.report(
        Diagnostic::new(
            Code::ChainNotForwarded,
            format!(
                "rule `{}` looks past its direct peer, but no chain reaches it",
                rule.id
            ),
            *span,
        )
        .note(note)
        .help("trust the rule's direct peers to forward chains with `forwarder …` in the `chain` block"),
    );
}

/// `E004` with a suggestion.
pub(super) fn unknown_intent(intents: &Intents<'_>, name: &Spanned<String>) -> Diagnostic {
    Diagnostic::new(
        Code::UnknownIntent,
        format!("unknown intent `{}`", name.value),
        name.span,
    )
    .note("no intent of this name is declared")
    .help(did_you_mean(&name.value, intents.names(), || {
        format!("declare it with `intent {} {{ path \"/…\" }}`", name.value)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::test_support::{check_source, codes, PREAMBLE};

    #[test]
    fn expands_groups_and_dedups_subjects() {
        let (policy, diagnostics) = check_source(&format!(
            "{PREAMBLE}group g {{\n  member \"spiffe://a.example/x\"\n  member \"spiffe://a.example/y/*\"\n}}\nintent i {{ path \"/\" }}\ndeny r {{\n  subject group g\n  subject \"spiffe://a.example/x\"\n  intent i unclassified\n  mode dry-run\n}}\n"
        ));
        assert!(diagnostics.is_empty(), "{diagnostics:#?}");
        let rule = &policy.unwrap().rules[0];
        assert_eq!(rule.effect, Effect::Deny);
        assert!(rule.dry_run && rule.unclassified);
        assert_eq!(rule.subjects.len(), 2);
        assert_eq!(rule.intents, [0]);
    }

    #[test]
    fn checks_principals() {
        let (policy, diagnostics) = check_source(&format!(
            "{PREAMBLE}group gw {{ member \"spiffe://a.example/gw\" }}\nintent i {{\n  method GET\n  path \"/\"\n}}\nallow via {{\n  principal jwt_svid via group gw\n  subject domain \"b.example\"\n  intent i\n}}\nallow users {{\n  principal user\n  intent i\n  when user scope \"s\"\n}}\nallow bound {{\n  principal peer_bound_jwt_svid\n  subject any_authenticated\n  intent i\n}}\n"
        ));
        assert!(diagnostics.is_empty(), "{diagnostics:#?}");
        let rules = policy.unwrap().rules;
        assert!(matches!(&rules[0].principal, Principal::JwtSvidVia(via) if via.len() == 1));
        assert_eq!(rules[1].principal, Principal::User);
        assert!(rules[1].subjects.is_empty());
        assert_eq!(rules[2].principal, Principal::PeerBoundJwtSvid);

        let source = format!(
            "{PREAMBLE}intent i {{ path \"/\" }}\nallow u {{\n  principal user\n  subject any_authenticated\n  intent i\n}}\nallow j {{\n  principal jwt_svid\n  intent i\n}}\nallow v {{\n  principal jwt_svid via group nope\n  subject any_authenticated\n  intent i\n}}\n"
        );
        assert_eq!(
            codes(&source),
            [
                Code::SubjectWithUserPrincipal,
                Code::RuleWithoutSubject,
                Code::UnknownGroup
            ]
        );
    }

    #[test]
    fn user_conditions_are_fine_on_any_principal() {
        // A peer rule may still see a user, carried in the chain.
        let source = format!(
            "{PREAMBLE}intent i {{ path \"/\" }}\nallow r {{\n  subject any_authenticated\n  intent i\n  when user present\n  when user subject \"alice\"\n  when user claim \"g\" contains \"x\"\n}}\n"
        );
        assert_eq!(codes(&source), []);
    }

    #[test]
    fn warns_when_no_chain_reaches_the_rule() {
        let rule = |chain: &str, principal: &str, condition: &str| {
            format!(
                "{PREAMBLE}{chain}intent i {{ path \"/\" }}\nallow r {{\n  {principal}\n  subject \"spiffe://a.example/fe\"\n  intent i\n  {condition}\n}}\n"
            )
        };
        let forwarders = "chain {\n  forwarder \"spiffe://a.example/gw\"\n}\n";
        let warned = [
            rule("", "", "when origin any_authenticated"),
            rule(forwarders, "", "when any_hop any_authenticated"),
            rule(forwarders, "", "when depth >= 2"),
            rule("", "principal jwt_svid", "when origin any_authenticated"),
        ];
        for source in &warned {
            assert_eq!(codes(source), [Code::ChainNotForwarded], "{source}");
        }
        let quiet = [
            rule(forwarders, "", "when depth <= 2"),
            rule(forwarders, "", "when no_hop \"spiffe://a.example/x\""),
            rule(
                forwarders,
                "principal jwt_svid",
                "when origin any_authenticated",
            ),
            rule(
                forwarders,
                "principal jwt_svid via \"spiffe://a.example/gw\"",
                "when origin any_authenticated",
            ),
            rule(
                "chain {\n  forwarder domain \"a.example\"\n}\n",
                "",
                "when origin any_authenticated",
            ),
        ];
        for source in &quiet {
            assert_eq!(codes(source), [], "{source}");
        }
    }

    #[test]
    fn reports_rule_problems() {
        let source = format!(
            "{PREAMBLE}intent orders.read {{ path \"/\" }}\nallow a {{\n  subject group nope\n  subject any_authenticated\n  subject any_authenticated\n  intent orders.raed orders.read orders.read\n  mode dry-run\n  mode enforce\n}}\nallow b {{\n}}\nallow a {{\n  subject any_authenticated\n  intent orders.read\n}}\n"
        );
        assert_eq!(
            codes(&source),
            [
                Code::UnknownGroup,
                Code::DuplicateEntry,
                Code::UnknownIntent,
                Code::DuplicateEntry,
                Code::RepeatedSetting,
                Code::RuleWithoutSubject,
                Code::RuleWithoutIntent,
                Code::Duplicate,
            ]
        );
        let (_, diagnostics) = check_source(&source);
        let unknown = diagnostics
            .iter()
            .find(|d| d.code == Code::UnknownIntent)
            .unwrap();
        assert_eq!(unknown.help.as_deref(), Some("did you mean `orders.read`?"));
    }
}
