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
//! more specific intents), the stats labels of intents and rules (no two may
//! collide), tests, the `identity` block (against the rules that need its
//! sources), and finally unused-declaration warnings.

mod cases;
mod chain;
mod conditions;
mod groups;
mod identity;
mod identity_source;
mod intents;
mod lints;
mod rules;
mod settings;
mod shadowing;
mod stat_names;
mod subjects;
mod templates;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::ast::{IdentityBlock, Item, PolicyFile};
use crate::checked;
use crate::diagnostics::{Code, Diagnostic, Severity};
use crate::span::{Span, Spanned};

/// Checks a parsed file. Returns the checked policy when there is no error,
/// and every diagnostic (errors and warnings) either way.
pub fn check(file: &PolicyFile) -> (Option<checked::Policy>, Vec<Diagnostic>) {
    check_in(file, None)
}

/// A settings file given beside a policy: an `identity` block that replaces
/// the policy's own (per-environment identity settings).
#[derive(Debug, Clone, Copy)]
pub struct SettingsFile<'a> {
    /// The parsed settings file.
    pub file: &'a PolicyFile,
    /// Where its key files are read from (`None`: the current directory).
    pub base_dir: Option<&'a Path>,
}

/// What checking a policy with a settings file finds.
pub struct CheckedWithSettings {
    /// The checked policy, when neither file has an error.
    pub policy: Option<checked::Policy>,
    /// Diagnostics of the policy file.
    pub policy_diagnostics: Vec<Diagnostic>,
    /// Diagnostics of the settings file.
    pub settings_diagnostics: Vec<Diagnostic>,
}

/// [`check_in`], with the identity settings taken from `settings` instead of
/// the policy's `identity` block.
pub fn check_with_settings(
    file: &PolicyFile,
    base_dir: Option<&Path>,
    settings: SettingsFile<'_>,
) -> CheckedWithSettings {
    let (policy, policy_diagnostics, settings_diagnostics) =
        check_files(file, base_dir, Some(settings));
    CheckedWithSettings {
        policy,
        policy_diagnostics,
        settings_diagnostics,
    }
}

/// The settings file's one `identity` block; anything else in it is `E040`.
fn settings_block<'a>(cx: &mut Context, file: &'a PolicyFile) -> Option<&'a IdentityBlock> {
    let mut block: Option<&IdentityBlock> = None;
    for item in &file.items {
        let (span, what) = match item {
            Item::Identity(found) if block.is_none() => {
                block = Some(found);
                continue;
            }
            Item::Identity(found) => (found.keyword, "a second `identity` block"),
            Item::Policy(b) => (b.keyword, "a `policy` block"),
            Item::Chain(b) => (b.keyword, "a `chain` block"),
            Item::Group(b) => (b.name.span, "a group"),
            Item::Intent(b) => (b.name.span, "an intent"),
            Item::Rule(b) => (b.id.span, "a rule"),
            Item::Test(b) => (b.name.span, "a test"),
        };
        cx.report(
            Diagnostic::new(
                Code::InvalidIdentitySetting,
                format!("{what} in a settings file"),
                span,
            )
            .note("a settings file holds one `identity { ... }` block and nothing else")
            .help("move it to the policy file"),
        );
    }
    if block.is_none() {
        cx.report(
            Diagnostic::new(
                Code::InvalidIdentitySetting,
                "settings file without an `identity` block",
                Span::new(0, 0),
            )
            .note("expected `identity { ... }`")
            .help("write the per-environment identity settings as `identity { issuer \"...\" { ... } }`"),
        );
    }
    block
}

/// [`check`], reading files the policy names (key sets) relative to
/// `base_dir` (`None`: the current directory).
pub fn check_in(
    file: &PolicyFile,
    base_dir: Option<&Path>,
) -> (Option<checked::Policy>, Vec<Diagnostic>) {
    let (policy, diagnostics, _) = check_files(file, base_dir, None);
    (policy, diagnostics)
}

fn check_files(
    file: &PolicyFile,
    base_dir: Option<&Path>,
    settings_file: Option<SettingsFile<'_>>,
) -> (Option<checked::Policy>, Vec<Diagnostic>, Vec<Diagnostic>) {
    let mut cx = Context {
        base_dir: base_dir.map(Path::to_path_buf),
        ..Context::default()
    };
    let mut policies = Vec::new();
    let mut group_blocks = Vec::new();
    let mut intent_blocks = Vec::new();
    let mut rule_blocks = Vec::new();
    let mut test_blocks = Vec::new();
    let mut chain_blocks = Vec::new();
    let mut identity_blocks = Vec::new();
    for item in &file.items {
        match item {
            Item::Policy(block) => policies.push(block),
            Item::Group(block) => group_blocks.push(block),
            Item::Intent(block) => intent_blocks.push(block),
            Item::Rule(block) => rule_blocks.push(block),
            Item::Test(block) => test_blocks.push(block),
            Item::Chain(block) => chain_blocks.push(block),
            Item::Identity(block) => identity_blocks.push(block),
        }
    }

    let settings = settings::check_policy_blocks(&mut cx, &policies);
    let groups = groups::check_groups(&mut cx, &settings, &group_blocks);
    let mut resolver = subjects::SubjectResolver::new(&settings, &groups);
    let chain = chain::check_chain_blocks(&mut cx, &mut resolver, &chain_blocks);
    let mut intents = intents::check_intents(&mut cx, &intent_blocks);
    let rules = rules::check_rules(&mut cx, &mut resolver, &chain, &intents, &rule_blocks);
    shadowing::check_shadowing(&mut cx, &settings.trust_domains, &rules.rules);
    stat_names::check_stat_names(
        &mut cx,
        "intent",
        intents.intents.iter().map(|i| (i.name.as_str(), i.span)),
    );
    stat_names::check_stat_names(
        &mut cx,
        "rule",
        rules.rules.iter().map(|r| (r.id.as_str(), r.span)),
    );
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
    let mut settings_cx = Context {
        base_dir: settings_file
            .and_then(|s| s.base_dir)
            .map(Path::to_path_buf),
        ..Context::default()
    };
    let input = match settings_file {
        None => identity_source::IdentityInput::Policy(&identity_blocks),
        Some(settings) => identity_source::IdentityInput::SettingsFile {
            block: settings_block(&mut settings_cx, settings.file),
            cx: &mut settings_cx,
        },
    };
    let identity = identity_source::check_identity(
        &mut cx,
        input,
        &identity_source::RuleView {
            settings: &settings,
            chain: &chain.config,
            rule_blocks: &rule_blocks,
            rules: &rules.rules,
            test_blocks: &test_blocks,
        },
    );
    groups.warn_unused(&mut cx, &resolver.used_groups);
    intents.warn_unused(&mut cx, &rules.used_intents);

    let has_errors = cx.has_errors()
        || settings_cx
            .diagnostics
            .iter()
            .any(|d| d.severity() == Severity::Error);
    let policy = (!has_errors).then(|| checked::Policy {
        name: settings.name,
        dry_run: settings.dry_run,
        trust_domains: settings.trust_domains,
        max_cert_lifetime_secs: settings.max_cert_lifetime_secs,
        intents: std::mem::take(&mut intents.intents),
        rules: rules.rules,
        tests,
        chain: chain.config,
        identity,
    });
    (policy, cx.diagnostics, settings_cx.diagnostics)
}

/// What every phase writes to.
#[derive(Default)]
struct Context {
    diagnostics: Vec<Diagnostic>,
    /// Where relative file names in the policy are resolved.
    base_dir: Option<PathBuf>,
}

impl Context {
    /// A file named in the policy, relative to the policy's directory.
    fn resolve(&self, name: &str) -> PathBuf {
        match &self.base_dir {
            Some(dir) => dir.join(name),
            None => PathBuf::from(name),
        }
    }

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

    /// A valid preamble for snippets. Their token settings are `external`,
    /// so snippets about other checks need no identity sources.
    pub const PREAMBLE: &str = "policy \"t\" {\n  trust_domains \"a.example\" \"b.example\"\n}\nidentity {\n  external\n}\n";
}
