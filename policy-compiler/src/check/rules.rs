//! `allow` / `deny` blocks: subjects (groups expanded), intents, conditions, mode.

use meshward_engine::model::Effect;

use super::conditions::check_conditions;
use super::groups::Groups;
use super::identity::{subject_from_domain, subject_from_id};
use super::intents::Intents;
use super::settings::Settings;
use super::{report_repeated_setting, warn_listed_twice, Context, Names};
use crate::ast::{EffectKw, IntentRef, Mode, RuleBlock, RuleStatement, SubjectExpr};
use crate::checked::{Rule, Subject};
use crate::diagnostics::{Code, Diagnostic};
use crate::span::{Span, Spanned};
use crate::suggest::did_you_mean;

/// The checked rules and which groups and intents they use.
pub(super) struct CheckedRules {
    pub rules: Vec<Rule>,
    pub used_groups: Vec<bool>,
    pub used_intents: Vec<bool>,
}

pub(super) fn check_rules(
    cx: &mut Context,
    settings: &Settings,
    groups: &Groups<'_>,
    intents: &Intents<'_>,
    blocks: &[&RuleBlock],
) -> CheckedRules {
    let mut checked = CheckedRules {
        rules: Vec::new(),
        used_groups: vec![false; groups.len()],
        used_intents: vec![false; intents.intents.len()],
    };
    let mut names = Names::new("rule");
    for block in blocks {
        let rule = check_rule(cx, settings, groups, intents, block, &mut checked);
        let index = checked.rules.len();
        if names.declare(cx, &block.id.value, block.id.span, index) {
            checked.rules.push(rule);
        }
    }
    checked
}

/// How a subject statement was written, to spot repeats.
fn subject_text(subject: &SubjectExpr) -> Spanned<String> {
    match subject {
        SubjectExpr::Group(name) => Spanned::new(format!("group {}", name.value), name.span),
        SubjectExpr::Id(lit) => Spanned::new(lit.value.clone(), lit.span),
        SubjectExpr::Domain(lit) => Spanned::new(format!("domain {}", lit.value), lit.span),
        SubjectExpr::AnyAuthenticated(span) => Spanned::new("any_authenticated".to_owned(), *span),
    }
}

fn check_rule(
    cx: &mut Context,
    settings: &Settings,
    groups: &Groups<'_>,
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
        subjects: Vec::new(),
        intents: Vec::new(),
        unclassified: false,
        conditions: Vec::new(),
    };
    let mut written_subjects: Vec<Spanned<String>> = Vec::new();
    let mut has_intent_statement = false;
    let mut unclassified_at: Option<Span> = None;
    let mut intent_spans: Vec<Span> = Vec::new();
    let mut conditions = Vec::new();
    let mut mode_at: Option<Span> = None;
    for statement in &block.statements {
        match statement {
            RuleStatement::Subject(expr) => {
                let text = subject_text(expr);
                if let Some(first) = written_subjects.iter().find(|s| s.value == text.value) {
                    warn_listed_twice(cx, "subject", &text, first.span);
                    continue;
                }
                written_subjects.push(text);
                let expanded: Vec<Subject> = match expr {
                    SubjectExpr::Group(name) => match groups.get(&name.value) {
                        Some((index, members)) => {
                            if let Some(used) = usage.used_groups.get_mut(index) {
                                *used = true;
                            }
                            members.to_vec()
                        }
                        None => {
                            cx.report(
                                Diagnostic::new(
                                    Code::UnknownGroup,
                                    format!("unknown group `{}`", name.value),
                                    name.span,
                                )
                                .note("no group of this name is declared")
                                .help(did_you_mean(&name.value, groups.names(), || {
                                    format!("declare it with `group {} {{ member \"spiffe://…\" }}`", name.value)
                                })),
                            );
                            Vec::new()
                        }
                    },
                    SubjectExpr::Id(lit) => {
                        subject_from_id(cx, settings, lit).into_iter().collect()
                    }
                    SubjectExpr::Domain(lit) => {
                        subject_from_domain(cx, settings, lit).into_iter().collect()
                    }
                    SubjectExpr::AnyAuthenticated(_) => vec![Subject::AnyAuthenticated],
                };
                for subject in expanded {
                    if !rule.subjects.contains(&subject) {
                        rule.subjects.push(subject);
                    }
                }
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
    rule.conditions = check_conditions(cx, &conditions);
    if written_subjects.is_empty() {
        cx.report(
            Diagnostic::new(
                Code::RuleWithoutSubject,
                format!("rule `{}` has no subject", rule.id),
                rule.span,
            )
            .note("a rule without a subject applies to nobody")
            .help("add `subject \"spiffe://…\"`, `subject group NAME`, `subject domain \"…\"` or `subject any_authenticated`"),
        );
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
    rule
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
