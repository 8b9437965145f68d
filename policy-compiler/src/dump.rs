//! A readable dump of a compiled policy, with strings resolved: what the
//! golden tests compare and what a reviewer reads to see what the filter
//! will enforce.

use std::fmt::Write as _;

use meshward_engine::model::{
    CompiledPolicy, Condition, HeaderTest, IdSegment, Method, Segment, StrId, Subject,
};

use crate::Compiled;

/// Renders the compiled policy, its size and hash.
pub fn render(compiled: &Compiled) -> String {
    let p = &compiled.policy;
    let s = |id: StrId| string(p, id);
    let mut out = String::new();
    let mode = if p.dry_run { "dry-run" } else { "enforce" };
    let _ = writeln!(out, "policy {:?} {mode}", s(p.name));
    let _ = writeln!(out, "hash {}", compiled.hash_hex());
    let _ = writeln!(
        out,
        "size {} bytes, {} strings, {} intents, {} rules",
        compiled.bytes.len(),
        p.strings.len(),
        p.intents.len(),
        p.rules.len()
    );
    let domains: Vec<&str> = p.trust_domains.iter().map(|td| s(*td)).collect();
    let _ = writeln!(out, "trust_domains {}", domains.join(" "));
    if let Some(secs) = p.limits.max_cert_lifetime_secs {
        let _ = writeln!(out, "max_cert_lifetime {secs}s");
    }
    for (index, intent) in p.intents.iter().enumerate() {
        let _ = writeln!(out, "\nintent #{index} {}", s(intent.name));
        let _ = writeln!(out, "  methods {}", methods(intent.methods));
        if let Some(host) = intent.host {
            let _ = writeln!(out, "  host {}", s(host));
        }
        for route in &intent.routes {
            let text: String = route
                .segments
                .iter()
                .map(|segment| match segment {
                    Segment::Literal(id) => format!("/{}", s(*id)),
                    Segment::Param => "/{}".to_owned(),
                    Segment::Rest => "/**".to_owned(),
                })
                .collect();
            let text = if text.is_empty() {
                "/".to_owned()
            } else {
                text
            };
            let _ = writeln!(out, "  route {text}");
        }
    }
    for (index, rule) in p.rules.iter().enumerate() {
        let mode = if rule.dry_run { " (dry-run)" } else { "" };
        let _ = writeln!(
            out,
            "\nrule #{index} {} {}{mode}",
            rule.effect.as_str(),
            s(rule.id)
        );
        for subject in &rule.subjects {
            let _ = writeln!(out, "  subject {}", subject_text(p, subject));
        }
        let mut intents: Vec<String> = rule
            .intents
            .iter()
            .map(|i| {
                p.intents.get(*i as usize).map_or_else(
                    || format!("<intent #{i}>"),
                    |intent| s(intent.name).to_owned(),
                )
            })
            .collect();
        if rule.unclassified {
            intents.push("unclassified".to_owned());
        }
        let _ = writeln!(out, "  intents {}", intents.join(", "));
        for condition in &rule.conditions {
            match condition {
                Condition::Header { name, test } => {
                    let _ = writeln!(out, "  when header {} {}", s(*name), test_text(p, test));
                }
                other => {
                    let _ = writeln!(out, "  when {other:?}");
                }
            }
        }
    }
    out
}

fn string(p: &CompiledPolicy, id: StrId) -> &str {
    p.strings
        .get(id as usize)
        .map_or("<bad string>", String::as_str)
}

fn methods(bits: u16) -> String {
    if bits == 0 {
        return "any".to_owned();
    }
    let names: Vec<&str> = Method::ALL
        .iter()
        .filter(|m| bits & m.bit() != 0)
        .map(|m| m.as_str())
        .collect();
    names.join(" ")
}

fn subject_text(p: &CompiledPolicy, subject: &Subject) -> String {
    match subject {
        Subject::AnyAuthenticated => "any_authenticated".to_owned(),
        Subject::TrustDomain(td) => format!("domain {}", string(p, *td)),
        Subject::Exact(id) => format!("exact {}", string(p, *id)),
        Subject::Pattern {
            trust_domain,
            segments,
        } => {
            let path: String = segments
                .iter()
                .map(|segment| match segment {
                    IdSegment::Literal(id) => format!("/{}", string(p, *id)),
                    IdSegment::Any => "/*".to_owned(),
                    IdSegment::Rest => "/**".to_owned(),
                })
                .collect();
            format!("pattern spiffe://{}{path}", string(p, *trust_domain))
        }
    }
}

fn test_text(p: &CompiledPolicy, test: &HeaderTest) -> String {
    match test {
        HeaderTest::Present => "present".to_owned(),
        HeaderTest::Absent => "absent".to_owned(),
        HeaderTest::Equals(v) => format!("== {:?}", string(p, *v)),
        HeaderTest::NotEquals(v) => format!("!= {:?}", string(p, *v)),
        HeaderTest::OneOf(values) => {
            let values: Vec<String> = values
                .iter()
                .map(|v| format!("{:?}", string(p, *v)))
                .collect();
            format!("in [{}]", values.join(", "))
        }
        HeaderTest::Prefix(v) => format!("starts_with {:?}", string(p, *v)),
    }
}
