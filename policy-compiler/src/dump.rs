//! A readable dump of a compiled policy, with strings resolved: what the
//! golden tests compare and what a reviewer reads to see what the filter
//! will enforce.

use std::fmt::Write as _;

use meshward_engine::model::{
    ClaimTest, CompiledPolicy, Condition, HeaderTest, IdSegment, Method, Principal, Segment, StrId,
    Subject, UserTest,
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
    let _ = writeln!(
        out,
        "chain max_depth {}, lifetime {}s, forwarders {}",
        p.chain.max_depth,
        p.chain.lifetime_secs,
        if p.chain.forwarders.is_empty() {
            "none".to_owned()
        } else {
            subjects_text(p, &p.chain.forwarders)
        }
    );
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
        match &rule.principal {
            Principal::Peer => {}
            Principal::JwtSvid => {
                let _ = writeln!(out, "  principal jwt_svid");
            }
            Principal::JwtSvidVia(via) => {
                let _ = writeln!(out, "  principal jwt_svid via {}", subjects_text(p, via));
            }
            Principal::PeerBoundJwtSvid => {
                let _ = writeln!(out, "  principal peer_bound_jwt_svid");
            }
            Principal::User => {
                let _ = writeln!(out, "  principal user");
            }
        }
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
            let _ = writeln!(out, "  when {}", condition_text(p, condition));
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

fn subjects_text(p: &CompiledPolicy, subjects: &[Subject]) -> String {
    let texts: Vec<String> = subjects.iter().map(|s| subject_text(p, s)).collect();
    texts.join(", ")
}

fn quoted_list(p: &CompiledPolicy, values: &[StrId]) -> String {
    let values: Vec<String> = values
        .iter()
        .map(|v| format!("{:?}", string(p, *v)))
        .collect();
    format!("[{}]", values.join(", "))
}

fn condition_text(p: &CompiledPolicy, condition: &Condition) -> String {
    match condition {
        Condition::Header { name, test } => {
            format!("header {} {}", string(p, *name), test_text(p, test))
        }
        Condition::Origin(subjects) => format!("origin {}", subjects_text(p, subjects)),
        Condition::AnyHop(subjects) => format!("any_hop {}", subjects_text(p, subjects)),
        Condition::NoHop(subjects) => format!("no_hop {}", subjects_text(p, subjects)),
        Condition::Depth { min, max } => format!("depth {min}..{max}"),
        Condition::Complete => "complete".to_owned(),
        Condition::Purpose(names) => {
            let names: Vec<&str> = names.iter().map(|n| string(p, *n)).collect();
            format!("purpose {}", names.join(" "))
        }
        Condition::User(test) => match test {
            UserTest::Present => "user present".to_owned(),
            UserTest::Subject(values) => format!("user subject in {}", quoted_list(p, values)),
            UserTest::Issuer(values) => format!("user issuer in {}", quoted_list(p, values)),
            UserTest::HasScope(scope) => format!("user scope {:?}", string(p, *scope)),
            UserTest::Claim { name, test } => {
                let test = match test {
                    ClaimTest::Equals(v) => format!("== {:?}", string(p, *v)),
                    ClaimTest::OneOf(values) => format!("in {}", quoted_list(p, values)),
                    ClaimTest::Contains(v) => format!("contains {:?}", string(p, *v)),
                };
                format!("user claim {:?} {test}", string(p, *name))
            }
        },
    }
}

fn test_text(p: &CompiledPolicy, test: &HeaderTest) -> String {
    match test {
        HeaderTest::Present => "present".to_owned(),
        HeaderTest::Absent => "absent".to_owned(),
        HeaderTest::Equals(v) => format!("== {:?}", string(p, *v)),
        HeaderTest::NotEquals(v) => format!("!= {:?}", string(p, *v)),
        HeaderTest::OneOf(values) => format!("in {}", quoted_list(p, values)),
        HeaderTest::Prefix(v) => format!("starts_with {:?}", string(p, *v)),
    }
}
