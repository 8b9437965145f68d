//! Writes meshward policy source for one workload.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::intents::Atom;
use super::sem::{Cond, Effect, Probe, RuleSem, StrMatch};

/// A quoted meshward string.
pub fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// meshward subject text for an Istio principal matcher.
fn principal_subject(m: &StrMatch) -> String {
    match m {
        StrMatch::Exact(v) => quote(&format!("spiffe://{v}")),
        // A prefix ending in `/`: one or more whole segments below it.
        StrMatch::Prefix(v) => quote(&format!("spiffe://{v}*/**")),
        // `parse_principal` never yields a suffix.
        StrMatch::Any | StrMatch::Suffix(_) => "any_authenticated".to_owned(),
    }
}

fn namespace_subjects(namespaces: &[String], trust_domains: &BTreeSet<String>) -> Vec<String> {
    namespaces
        .iter()
        .flat_map(|ns| {
            trust_domains
                .iter()
                .map(move |td| quote(&format!("spiffe://{td}/ns/{ns}/**")))
        })
        .collect()
}

fn subjects_of(cond: &Cond, trust_domains: &BTreeSet<String>) -> Vec<String> {
    match cond {
        Cond::Principal(ms) | Cond::NotPrincipal(ms) => {
            if ms.contains(&StrMatch::Any) {
                vec!["any_authenticated".to_owned()]
            } else {
                ms.iter().map(principal_subject).collect()
            }
        }
        Cond::Namespace(ns) | Cond::NotNamespace(ns) => namespace_subjects(ns, trust_domains),
        _ => Vec::new(),
    }
}

/// The `when` lines for a condition that is not the rule's subject.
fn when_lines(cond: &Cond, trust_domains: &BTreeSet<String>) -> Vec<String> {
    match cond {
        Cond::Principal(_) | Cond::Namespace(_) => {
            vec![format!(
                "any_hop {}",
                subjects_of(cond, trust_domains).join(" ")
            )]
        }
        Cond::NotPrincipal(_) | Cond::NotNamespace(_) => {
            vec![format!(
                "no_hop {}",
                subjects_of(cond, trust_domains).join(" ")
            )]
        }
        Cond::RequestPrincipal(iss, sub) => {
            let mut lines = Vec::new();
            if let StrMatch::Exact(i) = iss {
                lines.push(format!("user issuer {}", quote(i)));
            }
            if let StrMatch::Exact(s) = sub {
                lines.push(format!("user subject {}", quote(s)));
            }
            if lines.is_empty() {
                lines.push("user present".to_owned());
            }
            lines
        }
        Cond::Header(name, ms) => {
            let n = quote(name);
            match ms.as_slice() {
                [StrMatch::Any] => vec![format!("header {n} present")],
                [StrMatch::Prefix(p)] => vec![format!("header {n} starts_with {}", quote(p))],
                [StrMatch::Exact(v)] => vec![format!("header {n} == {}", quote(v))],
                _ => {
                    let values: Vec<String> = ms
                        .iter()
                        .filter_map(|m| match m {
                            StrMatch::Exact(v) => Some(quote(v)),
                            _ => None,
                        })
                        .collect();
                    vec![format!("header {n} in [{}]", values.join(", "))]
                }
            }
        }
        Cond::NotHeader(name, ms) => {
            let n = quote(name);
            if ms.contains(&StrMatch::Any) {
                vec![format!("header {n} absent")]
            } else {
                ms.iter()
                    .filter_map(|m| match m {
                        StrMatch::Exact(v) => Some(format!("header {n} != {}", quote(v))),
                        _ => None,
                    })
                    .collect()
            }
        }
        Cond::Claim(name, value) => {
            vec![format!(
                "user claim {} contains {}",
                quote(name),
                quote(value)
            )]
        }
    }
}

/// One rule block.
pub fn rule_block(rule: &RuleSem, intents: &[String], trust_domains: &BTreeSet<String>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# {}", rule.origin);
    let keyword = match rule.effect {
        Effect::Allow => "allow",
        Effect::Deny => "deny",
    };
    let _ = writeln!(out, "{keyword} {} {{", rule.id);
    let mut whens: Vec<String> = Vec::new();
    let mut subject_taken = false;
    if !rule.needs_peer {
        let _ = writeln!(out, "  principal user");
        subject_taken = true;
    }
    for cond in &rule.conds {
        let is_subject = matches!(cond, Cond::Principal(_) | Cond::Namespace(_));
        if is_subject && !subject_taken {
            for s in subjects_of(cond, trust_domains) {
                let _ = writeln!(out, "  subject {s}");
            }
            subject_taken = true;
        } else {
            whens.extend(when_lines(cond, trust_domains));
        }
    }
    if !subject_taken {
        let _ = writeln!(out, "  subject any_authenticated");
    }
    let _ = writeln!(out, "  intent {}", intents.join(" "));
    for w in whens {
        let _ = writeln!(out, "  when {w}");
    }
    out.push_str("}\n");
    out
}

/// One intent block.
pub fn intent_block(atom: &Atom) -> String {
    let mut out = format!("intent {} {{\n", atom.name);
    if let Some(methods) = &atom.methods {
        let _ = writeln!(out, "  method {}", methods.join(" "));
    }
    let _ = writeln!(out, "  path {}", quote(&atom.pattern.template()));
    if let Some(host) = &atom.host {
        let _ = writeln!(out, "  host {}", quote(host));
    }
    out.push_str("}\n");
    out
}

/// One test block.
pub fn test_block(name: &str, probe: &Probe, expect: &str) -> String {
    let mut out = format!("test {} {{\n", quote(name));
    match &probe.peer {
        Some(p) => {
            let _ = writeln!(out, "  peer {}", quote(p));
        }
        None => out.push_str("  peer none\n"),
    }
    let _ = writeln!(out, "  request {} {}", probe.method, quote(&probe.path));
    let _ = writeln!(out, "  host {}", quote(&probe.authority));
    for (k, v) in &probe.headers {
        let _ = writeln!(out, "  header {} {}", quote(k), quote(v));
    }
    if let Some(user) = &probe.user {
        let _ = writeln!(out, "  user {}", quote(&user.subject));
        let _ = writeln!(out, "  issuer {}", quote(&user.issuer));
        for (k, vs) in &user.claims {
            let values: Vec<String> = vs.iter().map(|v| quote(v)).collect();
            let _ = writeln!(out, "  claim {} [{}]", quote(k), values.join(", "));
        }
    }
    let _ = writeln!(out, "  expect {expect}");
    out.push_str("}\n");
    out
}

/// A short description of a probe, for test names and findings.
pub fn describe(probe: &Probe) -> String {
    let mut s = format!(
        "{} {} {} from {}",
        probe.method,
        probe.authority,
        probe.path,
        probe.peer.as_deref().unwrap_or("no peer")
    );
    if let Some(user) = &probe.user {
        let _ = write!(s, " as {}/{}", user.issuer, user.subject);
        for (k, vs) in &user.claims {
            let _ = write!(s, " {k}={}", vs.join(","));
        }
    }
    for (k, v) in &probe.headers {
        let _ = write!(s, " {k}: {v}");
    }
    s
}
