//! Allow rules that an enforced deny always overrides.
//!
//! Deny overrides allow, so an allow is dead when one enforced, unconditional
//! deny applies to every request the allow could: each of the allow's
//! intents (and `unclassified`, if named) is among the deny's, and each of
//! the allow's subjects is covered by one of the deny's subjects (see
//! `checked::Subject::covers`; `any_authenticated` is also covered by a deny
//! that covers every trusted domain). The check is conservative: it reports
//! only what it can prove, and never looks at unions of patterns or at
//! conditional denies.

use meshward_engine::model::Effect;

use super::Context;
use crate::checked::{Rule, Subject};
use crate::diagnostics::{Code, Diagnostic};

pub(super) fn check_shadowing(cx: &mut Context, trust_domains: &[String], rules: &[Rule]) {
    let denies: Vec<&Rule> = rules
        .iter()
        .filter(|r| r.effect == Effect::Deny && !r.dry_run && r.conditions.is_empty())
        .collect();
    for allow in rules.iter().filter(|r| r.effect == Effect::Allow) {
        if allow.subjects.is_empty() || (allow.intents.is_empty() && !allow.unclassified) {
            continue; // already reported as incomplete
        }
        if let Some(deny) = denies.iter().find(|d| shadows(d, allow, trust_domains)) {
            cx.report(
                Diagnostic::new(
                    Code::ShadowedAllow,
                    format!(
                        "allow rule `{}` never applies: deny rule `{}` always overrides it",
                        allow.id, deny.id
                    ),
                    allow.span,
                )
                .note("shadowed allow")
                .with_label(deny.span, "this enforced deny covers every subject and intent of the allow")
                .help("deny overrides allow: narrow the deny (subjects, intents or a `when` condition) or remove the allow"),
            );
        }
    }
}

fn shadows(deny: &Rule, allow: &Rule, trust_domains: &[String]) -> bool {
    (!allow.unclassified || deny.unclassified)
        && allow.intents.iter().all(|i| deny.intents.contains(i))
        && allow
            .subjects
            .iter()
            .all(|s| covered(&deny.subjects, s, trust_domains))
}

fn covered(by: &[Subject], subject: &Subject, trust_domains: &[String]) -> bool {
    if by.iter().any(|t| t.covers(subject)) {
        return true;
    }
    // Any authenticated peer is in some trusted domain.
    *subject == Subject::AnyAuthenticated
        && !trust_domains.is_empty()
        && trust_domains.iter().all(|td| {
            let domain = Subject::TrustDomain(td.clone());
            by.iter().any(|t| t.covers(&domain))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::test_support::{codes, PREAMBLE};

    fn policy(rules: &str) -> String {
        format!(
            "{PREAMBLE}intent i {{ path \"/i\" }}\nintent j {{ path \"/j\" }}\ngroup g {{\n  member \"spiffe://a.example/ns/x\"\n  member \"spiffe://a.example/ns/y/*\"\n}}\n{rules}"
        )
    }

    #[test]
    fn reports_provably_shadowed_allows() {
        let shadowed = [
            // pattern covers exact and narrower pattern (via group)
            ("subject group g\n intent i", "subject \"spiffe://a.example/ns/*\"\n subject \"spiffe://a.example/ns/y/*\"\n intent i j"),
            // whole domain covers everything in it
            ("subject \"spiffe://a.example/ns/x\"\n intent i", "subject domain \"a.example\"\n intent i"),
            // any_authenticated covered by every trusted domain
            ("subject any_authenticated\n intent i", "subject domain \"a.example\"\n subject \"spiffe://b.example/**\"\n intent i"),
            // unclassified
            ("subject any_authenticated\n intent unclassified\n when header \"x\" present", "subject any_authenticated\n intent unclassified"),
            // a dry-run allow is shadowed too
            ("subject \"spiffe://a.example/ns/x\"\n intent i\n mode dry-run", "subject any_authenticated\n intent i j"),
        ];
        for (allow, deny) in shadowed {
            let source = policy(&format!(
                "allow a {{\n {allow}\n}}\ndeny d {{\n {deny}\n}}\n"
            ));
            assert!(
                codes(&source).contains(&Code::ShadowedAllow),
                "{allow} / {deny}"
            );
        }
    }

    #[test]
    fn stays_quiet_when_not_provable() {
        let fine = [
            // one intent is not denied
            (
                "subject group g\n intent i j",
                "subject any_authenticated\n intent i",
            ),
            // a subject is not covered
            (
                "subject \"spiffe://a.example/ns/z\"\n intent i",
                "subject group g\n intent i",
            ),
            // any_authenticated with one trusted domain uncovered
            (
                "subject any_authenticated\n intent i",
                "subject domain \"a.example\"\n intent i",
            ),
            // the deny is conditional
            (
                "subject any_authenticated\n intent i",
                "subject any_authenticated\n intent i\n when header \"x\" present",
            ),
            // the deny is dry-run
            (
                "subject any_authenticated\n intent i",
                "subject any_authenticated\n intent i\n mode dry-run",
            ),
            // unclassified not denied
            (
                "subject any_authenticated\n intent i unclassified",
                "subject any_authenticated\n intent i j",
            ),
            // a narrower pattern does not cover a wider one
            (
                "subject \"spiffe://a.example/ns/**\"\n intent i",
                "subject \"spiffe://a.example/ns/*\"\n intent i",
            ),
        ];
        for (allow, deny) in fine {
            let source = policy(&format!(
                "allow a {{\n {allow}\n}}\ndeny d {{\n {deny}\n}}\n"
            ));
            assert!(
                !codes(&source).contains(&Code::ShadowedAllow),
                "{allow} / {deny}"
            );
        }
    }
}
