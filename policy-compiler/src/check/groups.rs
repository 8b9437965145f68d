//! `group` blocks: named sets of subjects, expanded into rules at compile time.

use super::identity::subject_from_id;
use super::settings::Settings;
use super::{warn_listed_twice, Context, Names};
use crate::ast::GroupBlock;
use crate::checked::Subject;
use crate::diagnostics::{Code, Diagnostic};
use crate::span::{Span, Spanned};

/// The declared groups and their checked members.
pub(super) struct Groups<'a> {
    names: Names<'a>,
    /// Per group (in declaration order): name, name span, members.
    entries: Vec<(&'a str, Span, Vec<Subject>)>,
}

impl<'a> Groups<'a> {
    /// The index and members of group `name`.
    pub fn get(&self, name: &str) -> Option<(usize, &[Subject])> {
        let index = self.names.get(name)?;
        let (_, _, members) = self.entries.get(index)?;
        Some((index, members))
    }

    /// Declared group names (for suggestions).
    pub fn names(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.names.names()
    }

    /// How many groups were declared.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Reports `W001` for each group no rule uses (`used` is per group index).
    pub fn warn_unused(&self, cx: &mut Context, used: &[bool]) {
        for (index, (name, span, _)) in self.entries.iter().enumerate() {
            if !used.get(index).copied().unwrap_or(false) {
                cx.report(
                    Diagnostic::new(
                        Code::UnusedGroup,
                        format!("group `{name}` is never used"),
                        *span,
                    )
                    .note("no rule or `chain` block names this group")
                    .help(format!(
                        "use it in a rule with `subject group {name}`, or remove it"
                    )),
                );
            }
        }
    }
}

pub(super) fn check_groups<'a>(
    cx: &mut Context,
    settings: &Settings,
    blocks: &[&'a GroupBlock],
) -> Groups<'a> {
    let mut groups = Groups {
        names: Names::new("group"),
        entries: Vec::new(),
    };
    for block in blocks {
        let index = groups.entries.len();
        let declared = groups
            .names
            .declare(cx, &block.name.value, block.name.span, index);
        let mut members: Vec<Subject> = Vec::new();
        let mut member_spans: Vec<Span> = Vec::new();
        let mut seen: Vec<Spanned<String>> = Vec::new();
        for member in &block.members {
            let entry = Spanned::new(member.value.clone(), member.span);
            if let Some(first) = seen.iter().find(|s| s.value == entry.value) {
                warn_listed_twice(cx, "member", &entry, first.span);
                continue;
            }
            seen.push(entry);
            if let Some(subject) = subject_from_id(cx, settings, member) {
                members.push(subject);
                member_spans.push(member.span);
            }
        }
        warn_covered_members(cx, &block.name.value, &members, &member_spans);
        if block.members.is_empty() {
            cx.report(
                Diagnostic::new(
                    Code::EmptyGroup,
                    format!("group `{}` has no members", block.name.value),
                    block.name.span,
                )
                .note("an empty group matches nobody")
                .help("add `member \"spiffe://…\"` lines, or remove the group"),
            );
        }
        if declared {
            groups
                .entries
                .push((&block.name.value, block.name.span, members));
        }
    }
    groups
}

/// `W008`: a member that another member of the same group matches already
/// (of two members matching each other, the later one is reported).
fn warn_covered_members(cx: &mut Context, group: &str, members: &[Subject], spans: &[Span]) {
    for (index, (member, span)) in members.iter().zip(spans).enumerate() {
        let cover = members
            .iter()
            .zip(spans)
            .enumerate()
            .find(|(other, (by, _))| {
                *other != index && by.covers(member) && (*other < index || !member.covers(by))
            });
        if let Some((_, (_, by_span))) = cover {
            cx.report(
                Diagnostic::new(
                    Code::CoveredMember,
                    format!("a member of group `{group}` is covered by another member"),
                    *span,
                )
                .note("every workload this member matches, the other matches too")
                .with_label(*by_span, "this member already matches it")
                .help("remove the covered member (or narrow the wider one)"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::test_support::{codes, PREAMBLE};

    #[test]
    fn group_checks() {
        let source = format!(
            "{PREAMBLE}group g {{\n  member \"spiffe://a.example/x\" \"spiffe://a.example/x\"\n  member \"spiffe://c.example/y\"\n}}\ngroup g {{\n}}\ngroup unused {{ member \"spiffe://a.example/z\" }}\nintent i {{ path \"/\" }}\nallow r {{\n  subject group g\n  intent i\n}}\n"
        );
        assert_eq!(
            codes(&source),
            [
                Code::DuplicateEntry,
                Code::UntrustedTrustDomain,
                Code::Duplicate,
                Code::EmptyGroup,
                Code::UnusedGroup,
            ]
        );
    }

    #[test]
    fn covered_members_warn() {
        let source = format!(
            "{PREAMBLE}group g {{\n  member \"spiffe://a.example/ns/x/sa/y\"\n  member \"spiffe://a.example/ns/*/sa/y\"\n  member \"spiffe://a.example/ns/z/sa/*\"\n  member \"spiffe://b.example/ns/x/sa/y\"\n}}\nintent i {{\n  method GET\n  path \"/\"\n}}\nallow r {{\n  subject group g\n  intent i\n}}\n"
        );
        let (_, diagnostics) = crate::check::test_support::check_source(&source);
        let covered: Vec<_> = diagnostics
            .iter()
            .filter(|d| d.code == Code::CoveredMember)
            .collect();
        // Only the exact ID under `ns/*/sa/y`; other domains and the
        // `ns/z/sa/*` pattern are not covered.
        assert_eq!(covered.len(), 1, "{diagnostics:#?}");
        assert_eq!(
            &source[covered[0].primary.span.start..covered[0].primary.span.end],
            "\"spiffe://a.example/ns/x/sa/y\""
        );
    }
}
