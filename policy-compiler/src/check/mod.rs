//! `ast::PolicyFile` → [`checked::Policy`]: name resolution and every check.
//!
//! Checks never stop at the first problem: each phase records diagnostics and
//! goes on with what it could make sense of, so one run reports all errors.
//! Declarations may appear in any order; a rule may name an intent declared
//! below it.
//!
//! Phases, in order: the `policy` block (trust domains first, since subjects
//! are checked against them), groups, the `chain` block (forwarders name
//! groups; depth bounds are checked against `max_depth`), intents (then
//! their ambiguity), rules (then shadowing, covered rules and grants lost to
//! more specific intents), tests, and finally unused-declaration warnings.

mod cases;
mod chain;
mod conditions;
mod groups;
mod identity;
mod intents;
mod lints;
mod rules;
mod settings;
mod shadowing;
mod subjects;
mod templates;

use std::collections::HashMap;

use crate::ast::{Item, PolicyFile};
use crate::checked;
use crate::diagnostics::{Code, Diagnostic, Severity};
use crate::span::{Span, Spanned};

/// Checks a parsed file. Returns the checked policy when there is no error,
/// and every diagnostic (errors and warnings) either way.
pub fn check(file: &PolicyFile) -> (Option<checked::Policy>, Vec<Diagnostic>) {
    let mut cx = Context::default();
    let mut policies = Vec::new();
    let mut group_blocks = Vec::new();
    let mut intent_blocks = Vec::new();
    let mut rule_blocks = Vec::new();
    let mut test_blocks = Vec::new();
    let mut chain_blocks = Vec::new();
    for item in &file.items {
        match item {
            Item::Policy(block) => policies.push(block),
            Item::Group(block) => group_blocks.push(block),
            Item::Intent(block) => intent_blocks.push(block),
            Item::Rule(block) => rule_blocks.push(block),
            Item::Test(block) => test_blocks.push(block),
            Item::Chain(block) => chain_blocks.push(block),
        }
    }

    let settings = settings::check_policy_blocks(&mut cx, &policies);
    let groups = groups::check_groups(&mut cx, &settings, &group_blocks);
    let mut resolver = subjects::SubjectResolver::new(&settings, &groups);
    let chain = chain::check_chain_blocks(&mut cx, &mut resolver, &chain_blocks);
    let mut intents = intents::check_intents(&mut cx, &intent_blocks);
    let rules = rules::check_rules(&mut cx, &mut resolver, &chain, &intents, &rule_blocks);
    shadowing::check_shadowing(&mut cx, &settings.trust_domains, &rules.rules);
    let tests = cases::check_tests(&mut cx, &intents, &rules.rules, &test_blocks);
    // What a rule grants is only known for sure when nothing failed to
    // check (a dropped condition or subject would make a grant look wider).
    if !cx.has_errors() {
        cx.diagnostics.extend(rules.broad_grants);
        lints::warn_covered_rules(&mut cx, &settings.trust_domains, &rules.rules);
        lints::warn_lost_grants(
            &mut cx,
            &settings.trust_domains,
            &intents.intents,
            &rules.rules,
            &rule_blocks,
        );
    }
    groups.warn_unused(&mut cx, &resolver.used_groups);
    intents.warn_unused(&mut cx, &rules.used_intents);

    let has_errors = cx.has_errors();
    let policy = (!has_errors).then(|| checked::Policy {
        name: settings.name,
        dry_run: settings.dry_run,
        trust_domains: settings.trust_domains,
        max_cert_lifetime_secs: settings.max_cert_lifetime_secs,
        intents: std::mem::take(&mut intents.intents),
        rules: rules.rules,
        tests,
        chain: chain.config,
    });
    (policy, cx.diagnostics)
}

/// What every phase writes to.
#[derive(Default)]
struct Context {
    diagnostics: Vec<Diagnostic>,
}

impl Context {
    fn report(&mut self, diagnostic: Diagnostic) {
        self.diagnostics.push(diagnostic);
    }

    fn has_errors(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity() == Severity::Error)
    }
}

/// Names of one kind (intents, groups, rules, tests) and where each was first
/// declared; reports redeclarations.
struct Names<'a> {
    kind: &'static str,
    first: HashMap<&'a str, (usize, Span)>,
}

impl<'a> Names<'a> {
    fn new(kind: &'static str) -> Self {
        Names {
            kind,
            first: HashMap::new(),
        }
    }

    /// Registers `name` as entry `index`; on a redeclaration reports `E009`
    /// pointing at both and returns false.
    fn declare(&mut self, cx: &mut Context, name: &'a str, span: Span, index: usize) -> bool {
        if let Some((_, first)) = self.first.get(name) {
            cx.report(
                Diagnostic::new(
                    Code::Duplicate,
                    format!("{} `{name}` is declared twice", self.kind),
                    span,
                )
                .note("declared again here")
                .with_label(*first, "first declared here")
                .help(format!(
                    "{} {} must be unique: rename or remove one of them",
                    self.kind,
                    if self.kind == "rule" { "ids" } else { "names" }
                )),
            );
            return false;
        }
        self.first.insert(name, (index, span));
        true
    }

    fn get(&self, name: &str) -> Option<usize> {
        self.first.get(name).map(|(index, _)| *index)
    }

    fn names(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.first.keys().copied()
    }
}

/// Reports `W003` for an entry already listed earlier in the same list.
fn warn_listed_twice(cx: &mut Context, what: &str, entry: &Spanned<String>, first: Span) {
    cx.report(
        Diagnostic::new(
            Code::DuplicateEntry,
            format!("{what} `{}` is listed twice", entry.value),
            entry.span,
        )
        .note("listed again here")
        .with_label(first, "first listed here")
        .help("remove the repeated entry"),
    );
}

/// Reports `E023` for a setting that may appear once.
fn report_repeated_setting(cx: &mut Context, setting: &str, again: Span, first: Span) {
    cx.report(
        Diagnostic::new(
            Code::RepeatedSetting,
            format!("`{setting}` is given twice"),
            again,
        )
        .note("given again here")
        .with_label(first, "first given here")
        .help(format!("keep one `{setting}` line")),
    );
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;
    use crate::syntax::parse;

    /// Parses (asserting no syntax errors) and checks.
    pub fn check_source(source: &str) -> (Option<checked::Policy>, Vec<Diagnostic>) {
        let (file, errors) = parse(source);
        assert!(errors.is_empty(), "syntax errors: {errors:#?}");
        check(&file)
    }

    /// The codes reported for `source`, in report order.
    pub fn codes(source: &str) -> Vec<Code> {
        check_source(source).1.iter().map(|d| d.code).collect()
    }

    /// A valid preamble for snippets.
    pub const PREAMBLE: &str = "policy \"t\" {\n  trust_domains \"a.example\" \"b.example\"\n}\n";
}
