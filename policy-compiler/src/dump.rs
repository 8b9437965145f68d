//! A readable dump of a compiled policy, with strings resolved: what the
//! golden tests compare and what a reviewer reads to see what the filter
//! will enforce.
//!
//! A view: the layout (header, numbered intents and rules) is here, every
//! phrase (subjects, principals, conditions, methods, routes) comes from
//! [`crate::model_text`], the one renderer of the compiled model, so the
//! dump reads in the same policy-language words as `diff` and `graph`.

use std::fmt::Write as _;

use meshward_engine::model::{Principal, StrId};

use crate::model_text::{self, string};
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
            model_text::subjects(p, &p.chain.forwarders)
        }
    );
    for (index, intent) in p.intents.iter().enumerate() {
        let _ = writeln!(out, "\nintent #{index} {}", s(intent.name));
        let methods = model_text::methods(intent.methods);
        let _ = writeln!(out, "  methods {}", methods.as_deref().unwrap_or("any"));
        if let Some(host) = intent.host {
            let _ = writeln!(out, "  host {}", s(host));
        }
        for route in &intent.routes {
            let _ = writeln!(out, "  route {}", model_text::route(p, route));
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
        if rule.principal != Principal::Peer {
            let principal = model_text::principal(p, &rule.principal);
            let _ = writeln!(out, "  principal {principal}");
        }
        for subject in &rule.subjects {
            let _ = writeln!(out, "  subject {}", model_text::subject(p, subject));
        }
        let mut intents: Vec<String> = rule
            .intents
            .iter()
            .map(|i| {
                p.intents.get(i.index()).map_or_else(
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
            let _ = writeln!(out, "  when {}", model_text::condition(p, condition));
        }
    }
    out
}
