//! Allow rules that an enforced deny always overrides.
//!
//! Deny overrides allow, so an allow is dead when one enforced, unconditional
//! deny applies to every request the allow could: each of the allow's
//! intents (and `unclassified`, if named) is among the deny's, and every
//! request the allow's principal and subjects accept, the deny's accept too.
//!
//! Principals decide which credential the subjects are matched against, so
//! coverage is per principal: a `peer` deny covers allows whose requests
//! always carry a direct peer it matches (`peer`, `peer_bound_jwt_svid`,
//! and `jwt_svid via` whose forwarders it covers); a `jwt_svid` deny covers
//! allows whose requests always carry a JWT-SVID it matches (`jwt_svid`,
//! `jwt_svid via`, `peer_bound_jwt_svid`); a `jwt_svid via` deny also needs
//! the allow's direct peer to be one of its forwarders; a
//! `peer_bound_jwt_svid` deny covers only its own kind; a `user` deny covers
//! only `user` allows. Subject coverage is `checked::Subject::covers`
//! (`any_authenticated` is also covered by a deny that covers every trusted
//! domain). The check is conservative: it reports only what it can prove,
//! and never looks at unions of patterns or at conditional denies (header,
//! chain or user conditions alike).

use std::collections::HashMap;

use meshward_engine::model::Effect;

use super::Context;
use crate::checked::{Principal, Rule, Subject};
use crate::diagnostics::{Code, Diagnostic};

pub(super) fn check_shadowing(cx: &mut Context, trust_domains: &[String], rules: &[Rule]) {
    // A shadowing deny names every intent of the allow, so only denies
    // naming its first intent (or `unclassified`, for an allow without
    // intents) are candidates; each list keeps declaration order, so the
    // deny reported is the first that shadows.
    let mut by_intent: HashMap<Option<usize>, Vec<&Rule>> = HashMap::new();
    for deny in rules
        .iter()
        .filter(|r| r.effect == Effect::Deny && !r.dry_run && r.conditions.is_empty())
    {
        for intent in &deny.intents {
            by_intent.entry(Some(*intent)).or_default().push(deny);
        }
        if deny.unclassified {
            by_intent.entry(None).or_default().push(deny);
        }
    }
    for allow in rules.iter().filter(|r| r.effect == Effect::Allow) {
        let no_subjects = allow.subjects.is_empty() && allow.principal != Principal::User;
        if no_subjects || (allow.intents.is_empty() && !allow.unclassified) {
            continue; // already reported as incomplete
        }
        let denies = by_intent
            .get(&allow.intents.first().copied())
            .map_or(&[][..], Vec::as_slice);
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
        && principal_covered(deny, allow, trust_domains)
}

/// Whether every credential set the allow accepts, the deny accepts too.
pub(super) fn principal_covered(deny: &Rule, allow: &Rule, trust_domains: &[String]) -> bool {
    use Principal::*;
    let all = |by: &[Subject], of: &[Subject]| {
        !of.is_empty() && of.iter().all(|s| covered(by, s, trust_domains))
    };
    let (denied, allowed) = (&deny.subjects[..], &allow.subjects[..]);
    match (&deny.principal, &allow.principal) {
        (User, User) => true,
        (User, _) | (_, User) => false,
        // The deny matches the direct peer.
        (Peer, Peer | PeerBoundJwtSvid) => all(denied, allowed),
        (Peer, JwtSvidVia(via)) => all(denied, via),
        (Peer, JwtSvid) => false,
        // The deny matches the JWT-SVID's subject (for a bound one, the peer).
        (JwtSvid, JwtSvid | JwtSvidVia(_) | PeerBoundJwtSvid) => all(denied, allowed),
        (JwtSvid, Peer) => false,
        (JwtSvidVia(deny_via), JwtSvidVia(allow_via)) => {
            all(deny_via, allow_via) && all(denied, allowed)
        }
        (JwtSvidVia(deny_via), PeerBoundJwtSvid) => all(deny_via, allowed) && all(denied, allowed),
        (JwtSvidVia(_), Peer | JwtSvid) => false,
        (PeerBoundJwtSvid, PeerBoundJwtSvid) => all(denied, allowed),
        (PeerBoundJwtSvid, _) => false,
    }
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
            // principals: a peer deny covers a bound allow and a via allow's forwarders
            ("principal peer_bound_jwt_svid\n subject group g\n intent i", "subject group g\n intent i"),
            ("principal jwt_svid via group g\n subject \"spiffe://b.example/x\"\n intent i", "subject \"spiffe://a.example/ns/*\"\n subject \"spiffe://a.example/ns/y/*\"\n intent i"),
            // a JWT-SVID deny covers via and bound allows by their subjects
            ("principal jwt_svid via group g\n subject \"spiffe://b.example/x\"\n intent i", "principal jwt_svid\n subject domain \"b.example\"\n intent i"),
            ("principal peer_bound_jwt_svid\n subject \"spiffe://a.example/ns/x\"\n intent i", "principal jwt_svid\n subject group g\n intent i"),
            // a via deny covers a via allow with narrower forwarders
            ("principal jwt_svid via \"spiffe://a.example/ns/x\"\n subject any_authenticated\n intent i", "principal jwt_svid via group g\n subject any_authenticated\n intent i"),
            // user denies cover user allows
            ("principal user\n intent i\n when user scope \"x\"", "principal user\n intent i j"),
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
            // a peer deny does not cover a JWT-SVID allow
            (
                "principal jwt_svid\n subject any_authenticated\n intent i",
                "subject any_authenticated\n intent i",
            ),
            // nor a JWT-SVID deny a peer allow
            (
                "subject any_authenticated\n intent i",
                "principal jwt_svid\n subject any_authenticated\n intent i",
            ),
            // a peer deny does not cover a user allow
            (
                "principal user\n intent i",
                "subject any_authenticated\n intent i",
            ),
            // a deny with a chain condition never shadows
            (
                "subject any_authenticated\n intent i",
                "subject any_authenticated\n intent i\n when no_hop group g",
            ),
            // a deny with a user condition never shadows
            (
                "principal user\n intent i",
                "principal user\n intent i\n when user scope \"x\"",
            ),
            // a via deny whose forwarders do not cover the allow's
            (
                "principal jwt_svid via \"spiffe://a.example/ns/z\"\n subject any_authenticated\n intent i",
                "principal jwt_svid via group g\n subject any_authenticated\n intent i",
            ),
            // a bound deny does not cover a plain JWT-SVID allow
            (
                "principal jwt_svid\n subject any_authenticated\n intent i",
                "principal peer_bound_jwt_svid\n subject any_authenticated\n intent i",
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
