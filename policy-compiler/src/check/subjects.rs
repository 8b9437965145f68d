//! Subject lists as written (`group g`, `"spiffe://…"`, `domain "td"`,
//! `any_authenticated`) → checked subjects, wherever they appear: `subject`
//! lines, `principal jwt_svid via …`, `forwarder …` and the hop conditions
//! `origin` / `any_hop` / `no_hop`. One resolver also records which groups
//! are used, for the unused-group warning.

use super::groups::Groups;
use super::identity::{subject_from_domain, subject_from_id};
use super::settings::Settings;
use super::{warn_listed_twice, Context};
use crate::ast::SubjectExpr;
use crate::checked::Subject;
use crate::diagnostics::{Code, Diagnostic};
use crate::span::Spanned;
use crate::suggest::did_you_mean;

/// Resolves subjects against the policy's groups and trust domains.
pub(super) struct SubjectResolver<'s, 'g> {
    settings: &'s Settings,
    groups: &'s Groups<'g>,
    /// Per group index: named anywhere so far.
    pub used_groups: Vec<bool>,
}

/// How a subject was written, to spot repeats in one list.
pub(super) fn subject_text(subject: &SubjectExpr) -> Spanned<String> {
    match subject {
        SubjectExpr::Group(name) => Spanned::new(format!("group {}", name.value), name.span),
        SubjectExpr::Id(lit) => Spanned::new(lit.value.clone(), lit.span),
        SubjectExpr::Domain(lit) => Spanned::new(format!("domain {}", lit.value), lit.span),
        SubjectExpr::AnyAuthenticated(span) => Spanned::new("any_authenticated".to_owned(), *span),
    }
}

impl<'s, 'g> SubjectResolver<'s, 'g> {
    pub fn new(settings: &'s Settings, groups: &'s Groups<'g>) -> Self {
        SubjectResolver {
            settings,
            groups,
            used_groups: vec![false; groups.len()],
        }
    }

    /// One subject expression, groups expanded. Reports `E005`/`E007`/`E008`
    /// and returns `None` on error.
    pub fn resolve(&mut self, cx: &mut Context, expr: &SubjectExpr) -> Option<Vec<Subject>> {
        match expr {
            SubjectExpr::Group(name) => match self.groups.get(&name.value) {
                Some((index, members)) => {
                    if let Some(used) = self.used_groups.get_mut(index) {
                        *used = true;
                    }
                    Some(members.to_vec())
                }
                None => {
                    cx.report(
                        Diagnostic::new(
                            Code::UnknownGroup,
                            format!("unknown group `{}`", name.value),
                            name.span,
                        )
                        .note("no group of this name is declared")
                        .help(did_you_mean(
                            &name.value,
                            self.groups.names(),
                            || {
                                format!(
                                    "declare it with `group {} {{ member \"spiffe://…\" }}`",
                                    name.value
                                )
                            },
                        )),
                    );
                    None
                }
            },
            SubjectExpr::Id(lit) => subject_from_id(cx, self.settings, lit).map(|s| vec![s]),
            SubjectExpr::Domain(lit) => {
                subject_from_domain(cx, self.settings, lit).map(|s| vec![s])
            }
            SubjectExpr::AnyAuthenticated(_) => Some(vec![Subject::AnyAuthenticated]),
        }
    }

    /// A list written on one line: each entry resolved, repeats warned about
    /// (`W003`) and dropped, exact duplicates merged. `None` when any entry
    /// had an error (already reported).
    pub fn resolve_list(
        &mut self,
        cx: &mut Context,
        what: &str,
        exprs: &[SubjectExpr],
    ) -> Option<Vec<Subject>> {
        let mut written: Vec<Spanned<String>> = Vec::new();
        let mut subjects: Vec<Subject> = Vec::new();
        let mut ok = true;
        for expr in exprs {
            let text = subject_text(expr);
            if let Some(first) = written.iter().find(|s| s.value == text.value) {
                warn_listed_twice(cx, what, &text, first.span);
                continue;
            }
            written.push(text);
            match self.resolve(cx, expr) {
                Some(expanded) => {
                    for subject in expanded {
                        if !subjects.contains(&subject) {
                            subjects.push(subject);
                        }
                    }
                }
                None => ok = false,
            }
        }
        ok.then_some(subjects)
    }
}
