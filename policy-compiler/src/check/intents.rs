//! `intent` blocks, and the check that no two intents classify the same
//! request ambiguously.
//!
//! The engine's router (`meshward_engine` `routes`) walks a segment trie and
//! prefers, segment by segment from the left, a literal over `{param}` over
//! `**`, backtracking when a branch finds nothing. Two templates of different
//! shapes therefore never tie. Two templates of the *same shape* (the same
//! literals at the same positions, parameters at the same positions, both or
//! neither ending in `**`) land on the same trie node, where the first
//! declared intent whose methods and host accept the request wins: that is
//! order-dependent, so the compiler rejects it when the methods overlap and
//! the hosts overlap.

use std::collections::HashMap;

use meshward_engine::model::Method;

use super::templates::{display_template, parse_grpc, parse_host, parse_template, Problem};
use super::{report_repeated_setting, Context, Names};
use crate::ast::{IntentBlock, IntentStatement, StrLit};
use crate::checked::{Intent, RouteTemplate, TemplateSegment};
use crate::diagnostics::{Code, Diagnostic};
use crate::span::Span;

/// The declared intents.
pub(super) struct Intents<'a> {
    names: Names<'a>,
    /// Checked intents, indexed as in the compiled policy.
    pub intents: Vec<Intent>,
    /// Per intent: declared with `grpc` (always `POST`).
    pub grpc: Vec<bool>,
}

impl<'a> Intents<'a> {
    /// The index of intent `name`.
    pub fn get(&self, name: &str) -> Option<usize> {
        self.names.get(name)
    }

    /// Declared intent names (for suggestions).
    pub fn names(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.names.names()
    }

    /// Reports `W002` for each intent no rule uses.
    pub fn warn_unused(&self, cx: &mut Context, used: &[bool]) {
        for (index, intent) in self.intents.iter().enumerate() {
            if !used.get(index).copied().unwrap_or(false) {
                cx.report(
                    Diagnostic::new(
                        Code::UnusedIntent,
                        format!("intent `{}` is never used", intent.name),
                        intent.span,
                    )
                    .note("no rule grants or denies this intent, so its requests are always denied")
                    .help(format!(
                        "name it in a rule with `intent {}`, or remove it",
                        intent.name
                    )),
                );
            }
        }
    }
}

pub(super) fn check_intents<'a>(cx: &mut Context, blocks: &[&'a IntentBlock]) -> Intents<'a> {
    let mut intents = Intents {
        names: Names::new("intent"),
        intents: Vec::new(),
        grpc: Vec::new(),
    };
    for block in blocks {
        let intent = check_intent(cx, block);
        let grpc = block
            .statements
            .iter()
            .any(|s| matches!(s, IntentStatement::Grpc { .. }));
        let index = intents.intents.len();
        if intents
            .names
            .declare(cx, &block.name.value, block.name.span, index)
        {
            intents.intents.push(intent);
            intents.grpc.push(grpc);
        }
    }
    check_ambiguity(cx, &intents.intents);
    intents
}

fn report_problem(cx: &mut Context, code: Code, message: String, lit: &StrLit, problem: Problem) {
    cx.report(
        Diagnostic::new(code, message, lit.sub_span(problem.range))
            .note(problem.note)
            .help(problem.help),
    );
}

fn check_intent(cx: &mut Context, block: &IntentBlock) -> Intent {
    let mut intent = Intent {
        name: block.name.value.clone(),
        span: block.name.span,
        methods: 0,
        host: None,
        routes: Vec::new(),
    };
    let mut methods_at: Option<Span> = None;
    let mut paths_at: Option<Span> = None;
    let mut grpc_at: Option<Span> = None;
    let mut host_at: Option<Span> = None;
    let mut route_count = 0usize;
    for statement in &block.statements {
        match statement {
            IntentStatement::Methods { keyword, methods } => {
                if let Some(first) = methods_at {
                    report_repeated_setting(cx, "method", *keyword, first);
                    continue;
                }
                methods_at = Some(*keyword);
                for method in methods {
                    match Method::parse(&method.value) {
                        Some(m) if intent.methods & m.bit() != 0 => cx.report(
                            Diagnostic::new(
                                Code::DuplicateEntry,
                                format!("method `{}` is listed twice", method.value),
                                method.span,
                            )
                            .note("listed again here")
                            .help("remove the repeated method"),
                        ),
                        Some(m) => intent.methods |= m.bit(),
                        None => cx.report(unknown_method(&method.value, method.span)),
                    }
                }
            }
            IntentStatement::Paths { keyword, paths } => {
                paths_at.get_or_insert(*keyword);
                for path in paths {
                    route_count += 1;
                    match parse_template(&path.value) {
                        Ok(segments) => add_route(cx, &mut intent, segments, path.span),
                        Err(problem) => report_problem(
                            cx,
                            Code::InvalidPathTemplate,
                            format!("invalid path template `{}`", path.value),
                            path,
                            problem,
                        ),
                    }
                }
            }
            IntentStatement::Grpc { keyword, methods } => {
                grpc_at.get_or_insert(*keyword);
                for method in methods {
                    route_count += 1;
                    match parse_grpc(&method.value) {
                        Ok(segments) => add_route(cx, &mut intent, segments, method.span),
                        Err(problem) => report_problem(
                            cx,
                            Code::InvalidPathTemplate,
                            format!("invalid gRPC method `{}`", method.value),
                            method,
                            problem,
                        ),
                    }
                }
            }
            IntentStatement::Host { keyword, host } => {
                if let Some(first) = host_at {
                    report_repeated_setting(cx, "host", *keyword, first);
                    continue;
                }
                host_at = Some(*keyword);
                match parse_host(&host.value) {
                    Ok(lower) => intent.host = Some(lower),
                    Err(problem) => report_problem(
                        cx,
                        Code::InvalidHost,
                        format!("invalid host `{}`", host.value),
                        host,
                        problem,
                    ),
                }
            }
        }
    }
    if let Some(grpc) = grpc_at {
        // gRPC is always POST; a `method` or plain `path` beside it would
        // silently change what the gRPC routes match.
        if let Some(other) = methods_at.or(paths_at) {
            cx.report(
                Diagnostic::new(
                    Code::MixedIntentForm,
                    format!(
                        "intent `{}` mixes `grpc` with `path` or `method`",
                        intent.name
                    ),
                    grpc,
                )
                .note("gRPC methods are always POST")
                .with_label(other, "conflicts with this")
                .help("declare the HTTP routes in a separate intent"),
            );
        }
        intent.methods = Method::Post.bit();
    }
    if route_count == 0 {
        cx.report(
            Diagnostic::new(
                Code::IntentWithoutRoute,
                format!("intent `{}` has no `path` or `grpc`", intent.name),
                intent.span,
            )
            .note("this intent can never match a request")
            .help("add `path \"/…\"` or `grpc \"package.Service/Method\"`"),
        );
    }
    intent
}

fn add_route(cx: &mut Context, intent: &mut Intent, segments: Vec<TemplateSegment>, span: Span) {
    if let Some(first) = intent.routes.iter().find(|r| r.segments == segments) {
        cx.report(
            Diagnostic::new(
                Code::DuplicateEntry,
                format!(
                    "path `{}` is listed twice in intent `{}`",
                    display_template(&segments),
                    intent.name
                ),
                span,
            )
            .note("same shape as an earlier path")
            .with_label(first.span, "first listed here")
            .help("remove the repeated path"),
        );
        return;
    }
    intent.routes.push(RouteTemplate { segments, span });
}

fn unknown_method(written: &str, span: Span) -> Diagnostic {
    let upper = written.to_ascii_uppercase();
    let help = if Method::parse(&upper).is_some() {
        format!("methods are uppercase: `{upper}`")
    } else {
        let all: Vec<&str> = Method::ALL.iter().map(|m| m.as_str()).collect();
        format!("use one of {}", all.join(", "))
    };
    Diagnostic::new(
        Code::UnknownMethod,
        format!("unknown HTTP method `{written}`"),
        span,
    )
    .note("not a standard method")
    .help(help)
}

/// Method bits that both sets accept (`0` = any).
fn common_methods(a: u16, b: u16) -> Option<u16> {
    let all = Method::ALL.iter().fold(0, |acc, m| acc | m.bit());
    let (a, b) = (if a == 0 { all } else { a }, if b == 0 { all } else { b });
    let both = a & b;
    (both != 0).then_some(both)
}

fn hosts_overlap(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    }
}

/// Reports `E011` for each pair of intents with same-shape templates whose
/// methods and hosts overlap. Same-shape templates are grouped by hashing,
/// so the check is linear in the number of routes.
fn check_ambiguity(cx: &mut Context, intents: &[Intent]) {
    let mut by_shape: HashMap<&[TemplateSegment], Vec<(usize, Span)>> = HashMap::new();
    let mut reported: std::collections::HashSet<(usize, usize)> = std::collections::HashSet::new();
    for (index, intent) in intents.iter().enumerate() {
        for route in &intent.routes {
            let earlier = by_shape.entry(route.segments.as_slice()).or_default();
            for (other_index, other_span) in earlier.iter() {
                let Some(other) = intents.get(*other_index) else {
                    continue;
                };
                let Some(methods) = common_methods(intent.methods, other.methods) else {
                    continue;
                };
                if *other_index == index
                    || !hosts_overlap(intent.host.as_deref(), other.host.as_deref())
                    || !reported.insert((*other_index, index))
                {
                    continue;
                }
                cx.report(ambiguity(intent, other, methods, route, *other_span));
            }
            earlier.push((index, route.span));
        }
    }
}

fn ambiguity(
    intent: &Intent,
    other: &Intent,
    methods: u16,
    route: &RouteTemplate,
    other_span: Span,
) -> Diagnostic {
    let all = Method::ALL.iter().fold(0, |acc, m| acc | m.bit());
    let method_text = if methods == all {
        "requests".to_owned()
    } else {
        let names: Vec<&str> = Method::ALL
            .iter()
            .filter(|m| methods & m.bit() != 0)
            .map(|m| m.as_str())
            .collect();
        format!("`{}` requests", names.join("`, `"))
    };
    let host_text = match intent.host.as_deref().or(other.host.as_deref()) {
        Some(host) => format!(" for host `{host}`"),
        None => String::new(),
    };
    Diagnostic::new(
        Code::AmbiguousIntents,
        format!(
            "intents `{}` and `{}` both classify {method_text} to `{}`{host_text}",
            other.name,
            intent.name,
            display_template(&route.segments)
        ),
        route.span,
    )
    .note(format!("matches in `{}`", intent.name))
    .with_label(other_span, format!("same path shape in `{}`", other.name))
    .help("the winner would depend on declaration order: make the paths differ, give the intents disjoint `method`s or different `host`s, or merge them")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::test_support::{check_source, codes, PREAMBLE};

    fn with_rule(intents: &str, names: &str) -> String {
        format!(
            "{PREAMBLE}{intents}\nallow r {{\n  subject \"spiffe://a.example/x\"\n  intent {names}\n}}\n"
        )
    }

    #[test]
    fn checks_intent_statements() {
        let (policy, diagnostics) = check_source(&with_rule(
            "intent a {\n  method GET HEAD\n  path \"/orders\" \"/orders/{id}\"\n  host \"Orders.Svc\"\n}\nintent b { grpc \"shop.v1.Orders/Get\" }",
            "a b",
        ));
        assert!(diagnostics.is_empty(), "{diagnostics:#?}");
        let policy = policy.unwrap();
        let a = &policy.intents[0];
        assert_eq!(a.methods, Method::Get.bit() | Method::Head.bit());
        assert_eq!(a.host.as_deref(), Some("orders.svc"));
        assert_eq!(a.routes.len(), 2);
        let b = &policy.intents[1];
        assert_eq!(b.methods, Method::Post.bit());
        assert_eq!(
            b.routes[0].segments,
            [
                TemplateSegment::Literal("shop.v1.Orders".into()),
                TemplateSegment::Literal("Get".into())
            ]
        );
    }

    #[test]
    fn reports_each_intent_problem() {
        assert_eq!(
            codes(&with_rule(
                "intent a {\n  method get BREW GET GET\n  method POST\n  path \"x\" \"/a\" \"/a\"\n  host \"h:1\"\n  host \"h\"\n}\nintent b { grpc \"x\" }\nintent c {\n  method GET\n}\nintent d {\n  grpc \"p.S/M\"\n  path \"/p\"\n}",
                "a b c d",
            )),
            [
                Code::UnknownMethod,
                Code::UnknownMethod,
                Code::DuplicateEntry,
                Code::RepeatedSetting,
                Code::InvalidPathTemplate,
                Code::DuplicateEntry,
                Code::InvalidHost,
                Code::RepeatedSetting,
                Code::InvalidPathTemplate,
                Code::IntentWithoutRoute,
                Code::MixedIntentForm,
            ]
        );
    }

    #[test]
    fn same_shape_with_overlapping_methods_and_hosts_is_ambiguous() {
        let ambiguous = [
            ("path \"/o/{id}\"", "path \"/o/{x}\""),
            (
                "method GET\n path \"/o/**\"",
                "method GET POST\n path \"/o/**\"",
            ),
            ("host \"h\"\n path \"/o\"", "path \"/o\""),
            ("grpc \"p.S/M\"", "path \"/p.S/M\""),
        ];
        for (a, b) in ambiguous {
            let source = with_rule(
                &format!("intent a {{\n {a}\n}}\nintent b {{\n {b}\n}}"),
                "a b",
            );
            assert_eq!(codes(&source), [Code::AmbiguousIntents], "{a} / {b}");
        }
    }

    #[test]
    fn different_shapes_or_disjoint_methods_or_hosts_are_not() {
        let fine = [
            ("path \"/o/{id}\"", "path \"/o/export\""),
            ("path \"/o/**\"", "path \"/o/{id}\""),
            ("path \"/o\"", "path \"/o/**\""),
            ("path \"/a/{x}/c\"", "path \"/{y}/b/c\""),
            ("method GET\n path \"/o\"", "method POST\n path \"/o\""),
            ("host \"h1\"\n path \"/o\"", "host \"h2\"\n path \"/o\""),
            ("grpc \"p.S/M\"", "method GET\n path \"/p.S/M\""),
        ];
        for (a, b) in fine {
            let source = with_rule(
                &format!("intent a {{\n {a}\n}}\nintent b {{\n {b}\n}}"),
                "a b",
            );
            assert_eq!(codes(&source), [], "{a} / {b}");
        }
    }
}
