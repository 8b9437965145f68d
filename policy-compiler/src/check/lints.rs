//! Warnings about grants that do more, or less, than they seem to:
//!
//! - `W006` a broad subject (`any_authenticated`, a whole trust domain, a
//!   domain-wide `**` pattern) allowed a write-capable, admin-looking or
//!   catch-all intent;
//! - `W007` a rule that another rule of the same effect and mode fully
//!   covers;
//! - `W009` a rule naming an intent whose requests are partly classified as
//!   a more specific intent that the rule's subjects are neither granted nor
//!   denied (a request gets exactly one intent, the most specific).
//!
//! (`W008`, a group member covered by another, is reported with the groups.)
//!
//! Each check reports only what it can prove, so `check --deny-warnings`
//! stays usable: coverage reuses the shadowing check's conservative subject
//! and principal coverage, and a lost grant is reported with a concrete
//! request that [`classify_among`] (the engine router's precedence,
//! restated over checked intents) gives to the other intent.

use std::collections::HashMap;

use meshward_engine::model::{Effect, Method};

use super::shadowing::principal_covered;
use super::Context;
use crate::ast::{IntentRef, RuleBlock, RuleStatement};
use crate::checked::{Condition, Intent, RouteTemplate, Rule, Subject, TemplateSegment};
use crate::diagnostics::{Code, Diagnostic};
use crate::span::Span;

/// Path or name words that mark an administrative or diagnostic endpoint.
const ADMIN_WORDS: &[&str] = &[
    "actuator",
    "admin",
    "administration",
    "debug",
    "heapdump",
    "internal",
    "management",
    "metrics",
    "mgmt",
    "pprof",
    "shutdown",
    "superuser",
    "threaddump",
];

/// Methods that only read.
const READ_METHODS: [Method; 3] = [Method::Get, Method::Head, Method::Options];

/// A subject as written that resolved to something broad, for `W006`.
pub(super) struct BroadSubject {
    /// Where the subject is written.
    pub span: Span,
    /// Who it admits, for the message ("any authenticated workload").
    pub who: String,
}

/// Whether a resolved subject admits a whole trust domain or more; the
/// description says who it admits.
pub(super) fn broad_subject(subject: &Subject) -> Option<String> {
    match subject {
        Subject::AnyAuthenticated => Some("any authenticated workload".to_owned()),
        Subject::TrustDomain(td) => Some(format!("every workload of `{td}`")),
        Subject::Pattern(p) if p.is_whole_domain() => Some(format!(
            "every workload of `{}` (`spiffe://{}/**`)",
            p.trust_domain, p.trust_domain
        )),
        Subject::Exact(_) | Subject::Pattern(_) => None,
    }
}

/// Why an intent is risky to grant broadly, if it is.
fn risky_intent(intent: &Intent, grpc: bool) -> Option<String> {
    if intent
        .routes
        .iter()
        .any(|r| r.segments == [TemplateSegment::Rest])
    {
        return Some(format!(
            "intent `{}` matches every path (`/**`)",
            intent.name
        ));
    }
    let words = |text: &str| {
        text.split(|c: char| !c.is_ascii_alphanumeric())
            .map(str::to_ascii_lowercase)
            .find(|w| ADMIN_WORDS.contains(&w.as_str()))
    };
    let admin = words(&intent.name).or_else(|| {
        intent.routes.iter().find_map(|r| {
            r.segments.iter().find_map(|s| match s {
                TemplateSegment::Literal(text) => words(text),
                TemplateSegment::Param | TemplateSegment::Rest => None,
            })
        })
    });
    if let Some(word) = admin {
        return Some(format!(
            "intent `{}` looks administrative (`{word}`)",
            intent.name
        ));
    }
    if grpc {
        return None; // always POST; the method says nothing about writing
    }
    if intent.methods == 0 {
        return Some(format!(
            "intent `{}` accepts every method (`POST`, `DELETE`, …)",
            intent.name
        ));
    }
    let writes: Vec<&str> = Method::ALL
        .iter()
        .filter(|m| intent.methods & m.bit() != 0 && !READ_METHODS.contains(m))
        .map(|m| m.as_str())
        .collect();
    (!writes.is_empty()).then(|| {
        format!(
            "intent `{}` accepts `{}`, which can change state",
            intent.name,
            writes.join("`, `")
        )
    })
}

/// Whether a condition narrows who is served (a verified user, or the
/// chain's origin, hops or purpose); header tests and chain shape do not.
fn narrows_identity(condition: &Condition) -> bool {
    match condition {
        Condition::Origin(_) | Condition::AnyHop(_) | Condition::Purpose(_) => true,
        Condition::User(_) => true,
        Condition::Header(_)
        | Condition::NoHop(_)
        | Condition::Depth { .. }
        | Condition::Complete => false,
    }
}

/// `W006` for one checked allow rule, if it grants too broadly.
/// `intent_spans` is parallel to `rule.intents`; `unclassified_at` is where
/// `unclassified` is named.
pub(super) fn broad_grant(
    rule: &Rule,
    broad: Option<&BroadSubject>,
    intents: &[Intent],
    grpc: &[bool],
    intent_spans: &[Span],
    unclassified_at: Option<Span>,
) -> Option<Diagnostic> {
    let broad = broad?;
    if rule.effect != Effect::Allow || rule.conditions.iter().any(narrows_identity) {
        return None;
    }
    let risk = match unclassified_at {
        Some(span) => Some((
            span,
            "`unclassified` is every request that matches no intent".to_owned(),
        )),
        None => rule
            .intents
            .iter()
            .zip(intent_spans)
            .find_map(|(index, span)| {
                let intent = intents.get(*index)?;
                let risk = risky_intent(intent, grpc.get(*index).copied().unwrap_or(false))?;
                Some((*span, risk))
            }),
    };
    let (intent_span, risk) = risk?;
    Some(
        Diagnostic::new(
            Code::BroadGrant,
            format!(
                "rule `{}` allows {} a sensitive intent",
                rule.id, broad.who
            ),
            broad.span,
        )
        .note("a broad subject")
        .with_label(intent_span, risk)
        .help("name the workloads (`subject \"spiffe://…\"` or a group), narrow the intent's methods and paths, or require a user or origin with `when`"),
    )
}

/// `W007`: each rule that an earlier-or-wider rule of the same effect and
/// mode covers: every subject (per principal), every intent (and
/// `unclassified`), and no condition the covered rule lacks.
pub(super) fn warn_covered_rules(cx: &mut Context, trust_domains: &[String], rules: &[Rule]) {
    // A covering rule names every intent of the covered one, so only rules
    // sharing its first intent (or `unclassified`) are candidates.
    let mut by_intent: HashMap<Option<usize>, Vec<usize>> = HashMap::new();
    for (index, rule) in rules.iter().enumerate() {
        for intent in &rule.intents {
            by_intent.entry(Some(*intent)).or_default().push(index);
        }
        if rule.unclassified {
            by_intent.entry(None).or_default().push(index);
        }
    }
    for (index, rule) in rules.iter().enumerate() {
        if incomplete(rule) {
            continue;
        }
        let key = rule.intents.first().copied();
        let candidates = by_intent.get(&key).map_or(&[][..], Vec::as_slice);
        let cover = candidates
            .iter()
            .filter_map(|i| Some((*i, rules.get(*i)?)))
            .find(|(other_index, other)| {
                *other_index != index
                    && !incomplete(other)
                    && covers(other, rule, trust_domains)
                    // Two rules covering each other: report the later one only.
                    && (*other_index < index || !covers(rule, other, trust_domains))
            });
        if let Some((_, cover)) = cover {
            let effect = match rule.effect {
                Effect::Allow => "allow",
                Effect::Deny => "deny",
            };
            cx.report(
                Diagnostic::new(
                    Code::CoveredRule,
                    format!(
                        "{effect} rule `{}` is covered by {effect} rule `{}`",
                        rule.id, cover.id
                    ),
                    rule.span,
                )
                .note("every request this rule matches, the other matches too")
                .with_label(
                    cover.span,
                    "same effect and mode, at least these subjects and intents, no other condition",
                )
                .help("remove the covered rule, or narrow the covering one"),
            );
        }
    }
}

fn incomplete(rule: &Rule) -> bool {
    (rule.subjects.is_empty() && rule.principal != crate::checked::Principal::User)
        || (rule.intents.is_empty() && !rule.unclassified)
}

/// Whether every request `rule` matches, `by` matches too, with the same
/// effect and mode.
fn covers(by: &Rule, rule: &Rule, trust_domains: &[String]) -> bool {
    by.effect == rule.effect
        && by.dry_run == rule.dry_run
        && (!rule.unclassified || by.unclassified)
        && rule.intents.iter().all(|i| by.intents.contains(i))
        && by.conditions.iter().all(|c| rule.conditions.contains(c))
        && principal_covered(by, rule, trust_domains)
}

/// A request that one intent's template describes and a more specific
/// intent takes.
struct Lost {
    /// The intent that takes it.
    taker: usize,
    /// The taker's route that does.
    route_span: Span,
    /// `GET /stock/abc` (and a host when one is needed).
    example: String,
}

/// `W009`: for each allow rule naming intent A but not B, where B takes
/// some request A's templates describe, no allow rule grants B to at least
/// the rule's subjects (under no other condition), and no deny rule names B
/// for them (a deliberate carve-out).
pub(super) fn warn_lost_grants(
    cx: &mut Context,
    trust_domains: &[String],
    intents: &[Intent],
    rules: &[Rule],
    blocks: &[&RuleBlock],
) {
    let losses = lost_requests(intents);
    for rule in rules.iter().filter(|r| r.effect == Effect::Allow) {
        for intent in &rule.intents {
            let Some(lost) = losses.get(*intent) else {
                continue;
            };
            for loss in lost {
                if rule.intents.contains(&loss.taker)
                    || granted(rules, rule, loss.taker, trust_domains)
                    || denied(rules, rule, loss.taker, trust_domains)
                {
                    continue;
                }
                let (Some(granted), Some(taker)) = (intents.get(*intent), intents.get(loss.taker))
                else {
                    continue;
                };
                let span = intent_ref_span(blocks, rule, &granted.name).unwrap_or(rule.span);
                cx.report(
                    Diagnostic::new(
                        Code::GrantLostToSpecificIntent,
                        format!(
                            "rule `{}` grants intent `{}`, but `{}` is intent `{}`",
                            rule.id, granted.name, loss.example, taker.name
                        ),
                        span,
                    )
                    .note(format!(
                        "this grant does not cover `{}`: a request gets only its most specific intent",
                        loss.example
                    ))
                    .with_label(loss.route_span, format!("more specific: intent `{}` takes `{}`", taker.name, loss.example))
                    .help(format!(
                        "grant `{}` to these subjects too (`intent {} {}`), or narrow one of the templates",
                        taker.name, granted.name, taker.name
                    )),
                );
            }
        }
    }
}

/// Whether some allow rule grants intent `taker` to every subject of `rule`,
/// in the same mode or enforced, under no condition `rule` lacks.
fn granted(rules: &[Rule], rule: &Rule, taker: usize, trust_domains: &[String]) -> bool {
    rules.iter().any(|g| {
        g.effect == Effect::Allow
            && (!g.dry_run || rule.dry_run)
            && g.intents.contains(&taker)
            && g.conditions.iter().all(|c| rule.conditions.contains(c))
            && principal_covered(g, rule, trust_domains)
    })
}

/// Whether a deny rule names intent `taker` for every subject of `rule`:
/// the requests `rule` does not get are a deliberate carve-out.
fn denied(rules: &[Rule], rule: &Rule, taker: usize, trust_domains: &[String]) -> bool {
    rules.iter().any(|d| {
        d.effect == Effect::Deny
            && d.intents.contains(&taker)
            && principal_covered(d, rule, trust_domains)
    })
}

/// Where `rule` names intent `name` (the first such reference).
fn intent_ref_span(blocks: &[&RuleBlock], rule: &Rule, name: &str) -> Option<Span> {
    let block = blocks.iter().find(|b| b.id.span == rule.span)?;
    block
        .statements
        .iter()
        .find_map(|statement| match statement {
            RuleStatement::Intents { intents, .. } => intents.iter().find_map(|r| match r {
                IntentRef::Named(n) if n.value == name => Some(n.span),
                _ => None,
            }),
            _ => None,
        })
}

/// Segment values tried for `{param}` and `**` in examples.
const SAMPLES: [&str; 3] = ["abc", "x1", "item-7"];

/// Every route by its first literal segment; routes starting with
/// `{param}` or `**` (or the root `/`) may match any path.
struct RouteIndex<'a> {
    by_first: HashMap<&'a str, Vec<(usize, &'a RouteTemplate)>>,
    any_first: Vec<(usize, &'a RouteTemplate)>,
}

impl<'a> RouteIndex<'a> {
    fn new(intents: &'a [Intent]) -> Self {
        let mut index = RouteIndex {
            by_first: HashMap::new(),
            any_first: Vec::new(),
        };
        for (i, intent) in intents.iter().enumerate() {
            for route in &intent.routes {
                match route.segments.first() {
                    Some(TemplateSegment::Literal(first)) => {
                        index.by_first.entry(first).or_default().push((i, route));
                    }
                    _ => index.any_first.push((i, route)),
                }
            }
        }
        index
    }

    /// The routes that may match a path.
    fn candidates<'s>(
        &'s self,
        path: &[&str],
    ) -> impl Iterator<Item = &'s (usize, &'a RouteTemplate)> + 's {
        let first = path.first().and_then(|s| self.by_first.get(*s));
        first.into_iter().flatten().chain(&self.any_first)
    }
}

/// Per intent A: one example per other intent that takes a request A's
/// templates (and methods and host) describe.
fn lost_requests(intents: &[Intent]) -> Vec<Vec<Lost>> {
    let index = RouteIndex::new(intents);
    let mut losses: Vec<Vec<Lost>> = intents.iter().map(|_| Vec::new()).collect();
    for (b, taker) in intents.iter().enumerate() {
        for route in &taker.routes {
            for path in examples(&route.segments) {
                let segments: Vec<&str> = path.iter().map(String::as_str).collect();
                let candidates: Vec<&(usize, &RouteTemplate)> =
                    index.candidates(&segments).collect();
                for (a, a_route) in &candidates {
                    let (a, b_taker) = (*a, b);
                    let Some(granted) = intents.get(a) else {
                        continue;
                    };
                    let Some(lost) = losses.get_mut(a) else {
                        continue;
                    };
                    if a == b_taker
                        || lost.iter().any(|l| l.taker == b_taker)
                        || !template_matches(&a_route.segments, &segments)
                    {
                        continue;
                    }
                    let Some(method) = common_method(granted.methods, taker.methods) else {
                        continue;
                    };
                    let host = match (&granted.host, &taker.host) {
                        (Some(x), Some(y)) if x != y => continue,
                        (Some(h), _) | (None, Some(h)) => h.as_str(),
                        (None, None) => "",
                    };
                    let winner = classify_among(
                        intents,
                        candidates.iter().copied(),
                        &segments,
                        method.bit(),
                        host,
                    );
                    if winner == Some(b_taker) {
                        lost.push(Lost {
                            taker: b_taker,
                            route_span: route.span,
                            example: example_text(method, &path, host),
                        });
                    }
                }
            }
        }
    }
    losses
}

fn example_text(method: Method, path: &[String], host: &str) -> String {
    let path: String = if path.is_empty() {
        "/".to_owned()
    } else {
        path.iter().map(|s| format!("/{s}")).collect()
    };
    if host.is_empty() {
        format!("{} {path}", method.as_str())
    } else {
        format!("{} {path} (host {host})", method.as_str())
    }
}

/// A method both intents accept, `GET` first.
fn common_method(a: u16, b: u16) -> Option<Method> {
    Method::ALL
        .iter()
        .copied()
        .find(|m| (a == 0 || a & m.bit() != 0) && (b == 0 || b & m.bit() != 0))
}

/// Concrete paths a template describes: each sample for the parameters, and
/// `**` as nothing or one sample segment.
fn examples(template: &[TemplateSegment]) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    for sample in SAMPLES {
        for rest in [None, Some(sample)] {
            let mut path = Vec::new();
            for segment in template {
                match segment {
                    TemplateSegment::Literal(text) => path.push(text.clone()),
                    TemplateSegment::Param => path.push(sample.to_owned()),
                    TemplateSegment::Rest => path.extend(rest.map(str::to_owned)),
                }
            }
            if !paths.contains(&path) {
                paths.push(path);
            }
        }
    }
    paths
}

/// Whether a template matches a path (as segments).
fn template_matches(template: &[TemplateSegment], path: &[&str]) -> bool {
    let mut rest = path.iter();
    for segment in template {
        match segment {
            TemplateSegment::Rest => return true,
            TemplateSegment::Param => {
                if rest.next().is_none() {
                    return false;
                }
            }
            TemplateSegment::Literal(text) => {
                if rest.next() != Some(&text.as_str()) {
                    return false;
                }
            }
        }
    }
    rest.next().is_none()
}

/// The rank of a matching template at each position, compared
/// lexicographically: a literal (2) beats `{param}` (1) beats `**` (0), and
/// a template ending with the path (2) beats `**` matching nothing.
fn rank(template: &[TemplateSegment]) -> Vec<u8> {
    let mut key = Vec::with_capacity(template.len() + 1);
    for segment in template {
        match segment {
            TemplateSegment::Literal(_) => key.push(2),
            TemplateSegment::Param => key.push(1),
            TemplateSegment::Rest => {
                key.push(0);
                return key;
            }
        }
    }
    key.push(2);
    key
}

/// The intent the engine's router gives a request: the most specific
/// matching template whose intent accepts the method and host; among
/// same-shape templates (which `E011` allows only with disjoint methods or
/// hosts) the first declared. `routes` must hold every route that may match.
fn classify_among<'r>(
    intents: &[Intent],
    routes: impl Iterator<Item = &'r (usize, &'r RouteTemplate)>,
    path: &[&str],
    method_bit: u16,
    host: &str,
) -> Option<usize> {
    let mut best: Option<(Vec<u8>, usize)> = None;
    for (index, route) in routes {
        let Some(intent) = intents.get(*index) else {
            continue;
        };
        let accepts = (intent.methods == 0 || intent.methods & method_bit != 0)
            && intent
                .host
                .as_deref()
                .is_none_or(|h| h.eq_ignore_ascii_case(host));
        if !accepts || !template_matches(&route.segments, path) {
            continue;
        }
        let key = rank(&route.segments);
        let better = match &best {
            None => true,
            Some((b, i)) => key > *b || (key == *b && index < i),
        };
        if better {
            best = Some((key, *index));
        }
    }
    best.map(|(_, index)| index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::test_support::{check_source, codes, PREAMBLE};

    fn policy(body: &str) -> String {
        format!("{PREAMBLE}{body}")
    }

    #[test]
    fn broad_grants_on_sensitive_intents_warn() {
        let warned = [
            // any method
            "intent i { path \"/x\" }\nallow r {\n  subject any_authenticated\n  intent i\n}\n",
            // a write method, whole domain
            "intent i {\n  method GET POST\n  path \"/x\"\n}\nallow r {\n  subject domain \"a.example\"\n  intent i\n}\n",
            // an admin-looking path, domain-wide pattern
            "intent i {\n  method GET\n  path \"/internal/debug/pprof\"\n}\nallow r {\n  subject \"spiffe://a.example/**\"\n  intent i\n}\n",
            // catch-all
            "intent i {\n  method GET\n  path \"/**\"\n}\nallow r {\n  subject any_authenticated\n  intent i\n}\n",
            // unclassified, through a group with a domain-wide member
            "group g { member \"spiffe://b.example/**\" }\nintent i {\n  method GET\n  path \"/x\"\n}\nallow r {\n  subject group g\n  intent i unclassified\n}\n",
            // an admin-looking gRPC name; a header condition does not narrow
            "intent ops.admin { grpc \"ops.v1.Admin/Reset\" }\nallow r {\n  subject any_authenticated\n  intent ops.admin\n  when header \"x\" present\n}\n",
        ];
        for body in warned {
            assert!(codes(&policy(body)).contains(&Code::BroadGrant), "{body}");
        }
        let quiet = [
            // read-only, not admin-looking
            "intent i {\n  method GET HEAD\n  path \"/orders/{id}\"\n}\nallow r {\n  subject any_authenticated\n  intent i\n}\n",
            // a plain gRPC method
            "intent i { grpc \"shop.v1.Orders/Get\" }\nallow r {\n  subject any_authenticated\n  intent i\n}\n",
            // narrow subjects
            "intent i { path \"/**\" }\nallow r {\n  subject \"spiffe://a.example/ns/*/sa/x\"\n  intent i\n}\n",
            // a user is required
            "intent i { path \"/admin\" }\nallow r {\n  subject any_authenticated\n  intent i\n  when user scope \"admin\"\n}\n",
            // a deny is never too broad
            "intent i { path \"/admin\" }\ndeny r {\n  subject any_authenticated\n  intent i\n}\n",
        ];
        for body in quiet {
            assert!(!codes(&policy(body)).contains(&Code::BroadGrant), "{body}");
        }
    }

    #[test]
    fn covered_rules_warn() {
        let head = "group g {\n  member \"spiffe://a.example/x\"\n}\nintent i {\n  method GET\n  path \"/i\"\n}\nintent j {\n  method GET\n  path \"/j\"\n}\n";
        let warned = [
            "allow a {\n  subject \"spiffe://a.example/x\"\n  intent i\n  when header \"h\" present\n}\nallow b {\n  subject \"spiffe://a.example/*\"\n  intent i j\n}\n",
            "allow a {\n  subject group g\n  intent i\n}\nallow b {\n  subject \"spiffe://a.example/x\"\n  intent i\n}\n",
            "deny a {\n  subject \"spiffe://a.example/x\"\n  intent j\n}\ndeny b {\n  subject \"spiffe://a.example/*\"\n  intent j\n}\n",
        ];
        for rules in warned {
            let (_, diagnostics) = check_source(&policy(&format!("{head}{rules}")));
            let covered: Vec<&str> = diagnostics
                .iter()
                .filter(|d| d.code == Code::CoveredRule)
                .map(|d| d.message.as_str())
                .collect();
            assert_eq!(covered.len(), 1, "{rules}: {covered:?}");
        }
        let quiet = [
            // the wider rule has a condition the narrower lacks
            "allow a {\n  subject \"spiffe://a.example/x\"\n  intent i\n}\nallow b {\n  subject \"spiffe://a.example/*\"\n  intent i\n  when header \"h\" present\n}\n",
            // another mode
            "allow a {\n  subject \"spiffe://a.example/x\"\n  intent i\n  mode dry-run\n}\nallow b {\n  subject \"spiffe://a.example/*\"\n  intent i\n}\n",
            // an intent is not covered
            "allow a {\n  subject \"spiffe://a.example/x\"\n  intent i j\n}\nallow b {\n  subject \"spiffe://a.example/*\"\n  intent i\n}\n",
            // another principal
            "allow a {\n  principal jwt_svid\n  subject \"spiffe://a.example/x\"\n  intent i\n}\nallow b {\n  subject \"spiffe://a.example/*\"\n  intent i\n}\n",
        ];
        for rules in quiet {
            assert!(
                !codes(&policy(&format!("{head}{rules}"))).contains(&Code::CoveredRule),
                "{rules}"
            );
        }
    }

    #[test]
    fn grants_lost_to_a_more_specific_intent_warn_with_an_example() {
        let source = policy(
            "intent stock.any {\n  method GET\n  path \"/stock/**\"\n}\nintent stock.item {\n  method GET\n  path \"/stock/{sku}\"\n}\nallow ops {\n  subject \"spiffe://a.example/ops\"\n  intent stock.any\n}\nallow shop {\n  subject \"spiffe://a.example/shop\"\n  intent stock.item\n}\n",
        );
        let (_, diagnostics) = check_source(&source);
        let lost: Vec<_> = diagnostics
            .iter()
            .filter(|d| d.code == Code::GrantLostToSpecificIntent)
            .collect();
        assert_eq!(lost.len(), 1, "{diagnostics:#?}");
        assert_eq!(
            lost[0].message,
            "rule `ops` grants intent `stock.any`, but `GET /stock/abc` is intent `stock.item`"
        );
        let quiet = [
            // a deliberate carve-out: the specific intent is denied to them
            "allow ops {\n  subject \"spiffe://a.example/ops\"\n  intent stock.any\n}\ndeny no-items {\n  subject \"spiffe://a.example/*\"\n  intent stock.item\n}\n",
            // the subjects are granted the specific intent too
            "allow ops {\n  subject \"spiffe://a.example/ops\"\n  intent stock.any stock.item\n}\n",
            "allow ops {\n  subject \"spiffe://a.example/ops\"\n  intent stock.any\n}\nallow all {\n  subject \"spiffe://a.example/*\"\n  intent stock.item\n}\n",
        ];
        let intents = "intent stock.any {\n  method GET\n  path \"/stock/**\"\n}\nintent stock.item {\n  method GET\n  path \"/stock/{sku}\"\n}\n";
        for rules in quiet {
            assert!(
                !codes(&policy(&format!("{intents}{rules}")))
                    .contains(&Code::GrantLostToSpecificIntent),
                "{rules}"
            );
        }
        // Disjoint methods: the specific intent never takes the request.
        let disjoint = policy(
            "intent stock.any {\n  method GET\n  path \"/stock/**\"\n}\nintent stock.write {\n  method PUT\n  path \"/stock/{sku}\"\n}\nallow ops {\n  subject \"spiffe://a.example/ops\"\n  intent stock.any\n}\nallow w {\n  subject \"spiffe://a.example/w\"\n  intent stock.write\n}\n",
        );
        assert!(!codes(&disjoint).contains(&Code::GrantLostToSpecificIntent));
    }

    #[test]
    fn classification_follows_the_engine() {
        // The same precedence cases as the engine's router tests, checked
        // end to end through the compiled policy.
        let source = policy(
            "intent p { path \"/orders/{id}\" }\nintent e { path \"/orders/export\" }\nintent s { path \"/static/**\" }\nintent all {\n  method GET\n  path \"/**\"\n}\nintent deep { path \"/orders/export/export\" }\nallow r {\n  subject \"spiffe://a.example/x\"\n  intent p e s all deep\n}\n",
        );
        let compiled = crate::compile_source(&source, "t.policy").unwrap();
        let (checked, _) = check_source(&source);
        let intents = checked.unwrap().intents;
        for (method, path) in [
            ("GET", "/orders/42"),
            ("GET", "/orders/export"),
            ("GET", "/static"),
            ("GET", "/static/a/b"),
            ("GET", "/orders/export/x"),
            ("POST", "/orders/export/x"),
            ("GET", "/"),
        ] {
            let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
            let bit = Method::parse(method).unwrap().bit();
            let index = RouteIndex::new(&intents);
            let ours = classify_among(&intents, index.candidates(&segments), &segments, bit, "")
                .map(|i| intents[i].name.clone());
            let request = crate::SampleRequest::new(
                crate::peer_from_text("spiffe://a.example/x"),
                method.to_owned(),
                path.to_owned(),
            );
            let outcome = crate::explain(&compiled, &request).unwrap();
            assert_eq!(ours, outcome.intent, "{method} {path}");
        }
    }
}
