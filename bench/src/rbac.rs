//! The equivalent policy as Envoy's native RBAC filter, from the same model.
//!
//! Envoy RBAC has one action per filter, so the policy becomes two filters,
//! the way Istio renders `AuthorizationPolicy`: a `DENY` filter with the
//! enforced deny rules, then an `ALLOW` filter with the enforced allow rules.
//! Dry-run rules go to each filter's `shadow_rules` (evaluated and counted,
//! never enforced) — meshward evaluates its dry-run rules too.
//!
//! One meshward rule = one RBAC policy: its intents as permissions (method
//! header, `:authority` host, `url_path` exact or RE2 regex per template), its
//! subjects as `authenticated.principal_name` matchers on the peer's URI SAN
//! (exact, or RE2 regex for patterns and domains), its header conditions
//! `and`-ed into each permission.

use serde_json::{json, Map, Value};

use crate::translate::{HeaderTestView, PolicyView, Route, RouteSeg, SubjectView};

/// RE2-escapes a literal.
pub fn re_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn regex(re: String) -> Value {
    json!({ "safe_regex": { "regex": re } })
}

fn route(r: &Route) -> Value {
    let literal_only = r.segs.iter().all(|s| matches!(s, RouteSeg::Lit(_)));
    let mut text = String::new();
    for seg in &r.segs {
        text.push('/');
        match seg {
            RouteSeg::Lit(l) => text.push_str(&if literal_only {
                l.clone()
            } else {
                re_escape(l)
            }),
            RouteSeg::Param => text.push_str("[^/]+"),
        }
    }
    let matcher = if r.rest {
        regex(format!(
            "^{}(/.*)?$",
            if literal_only { re_escape(&text) } else { text }
        ))
    } else if literal_only {
        json!({ "exact": if text.is_empty() { "/".to_owned() } else { text } })
    } else {
        regex(format!("^{text}$"))
    };
    json!({ "url_path": { "path": matcher } })
}

fn any_of(mut rules: Vec<Value>) -> Value {
    if rules.len() == 1 {
        rules.remove(0)
    } else {
        json!({ "or_rules": { "rules": rules } })
    }
}

fn header(name: &str, string_match: Value) -> Value {
    json!({ "header": { "name": name, "string_match": string_match } })
}

fn header_present(name: &str) -> Value {
    json!({ "header": { "name": name, "present_match": true } })
}

fn header_cond(name: &str, test: &HeaderTestView) -> Value {
    match test {
        HeaderTestView::Present => header_present(name),
        HeaderTestView::Absent => json!({ "not_rule": header_present(name) }),
        HeaderTestView::Equals(v) => header(name, json!({ "exact": v })),
        HeaderTestView::NotEquals(v) => {
            json!({ "not_rule": header(name, json!({ "exact": v })) })
        }
        HeaderTestView::OneOf(vs) => any_of(
            vs.iter()
                .map(|v| header(name, json!({ "exact": v })))
                .collect(),
        ),
        HeaderTestView::Prefix(v) => header(name, json!({ "prefix": v })),
    }
}

fn intent_permission(view: &PolicyView, idx: usize, extra: &[Value]) -> Value {
    let intent = &view.intents[idx];
    let mut rules = Vec::new();
    if !intent.methods.is_empty() {
        rules.push(any_of(
            intent
                .methods
                .iter()
                .map(|m| header(":method", json!({ "exact": m })))
                .collect(),
        ));
    }
    if let Some(host) = &intent.host {
        // Host compared case-insensitively, port dropped.
        rules.push(any_of(vec![
            header(":authority", json!({ "exact": host, "ignore_case": true })),
            header(
                ":authority",
                json!({ "prefix": format!("{host}:"), "ignore_case": true }),
            ),
        ]));
    }
    rules.push(any_of(intent.routes.iter().map(route).collect()));
    rules.extend(extra.iter().cloned());
    if rules.len() == 1 {
        rules.remove(0)
    } else {
        json!({ "and_rules": { "rules": rules } })
    }
}

fn principal(s: &SubjectView) -> Value {
    let name = match s {
        SubjectView::AnyTrusted(tds) => {
            let tds: Vec<String> = tds.iter().map(|t| re_escape(t)).collect();
            regex(format!("^spiffe://({})(/.*)?$", tds.join("|")))
        }
        SubjectView::Domain(td) => regex(format!("^spiffe://{}(/.*)?$", re_escape(td))),
        SubjectView::Exact(id) => json!({ "exact": id }),
        SubjectView::Pattern { td, segs, rest } => {
            let mut re = format!("^spiffe://{}", re_escape(td));
            for seg in segs {
                re.push('/');
                match seg {
                    Some(l) => re.push_str(&re_escape(l)),
                    None => re.push_str("[^/]+"),
                }
            }
            if *rest {
                re.push_str("(/.*)?");
            }
            re.push('$');
            regex(re)
        }
    };
    json!({ "authenticated": { "principal_name": name } })
}

/// The two RBAC filters (`DENY`, then `ALLOW`), as Envoy HTTP filter entries.
pub fn filters(view: &PolicyView) -> Vec<Value> {
    let mut enforced_deny = Map::new();
    let mut enforced_allow = Map::new();
    let mut shadow_deny = Map::new();
    let mut shadow_allow = Map::new();
    for rule in &view.rules {
        let extra: Vec<Value> = rule
            .conditions
            .iter()
            .map(|c| header_cond(&c.name, &c.test))
            .collect();
        let policy = json!({
            "permissions": rule.intents.iter().map(|i| intent_permission(view, *i, &extra)).collect::<Vec<_>>(),
            "principals": rule.subjects.iter().map(principal).collect::<Vec<_>>(),
        });
        let map = match (rule.deny, rule.dry_run) {
            (true, false) => &mut enforced_deny,
            (false, false) => &mut enforced_allow,
            (true, true) => &mut shadow_deny,
            (false, true) => &mut shadow_allow,
        };
        map.insert(rule.id.clone(), policy);
    }
    let filter =
        |name: &str, action: &str, policies: Map<String, Value>, shadow: Map<String, Value>| {
            let mut config = json!({
                "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
                "rules": { "action": action, "policies": policies },
            });
            if !shadow.is_empty() {
                config["shadow_rules"] = json!({ "action": action, "policies": shadow });
                config["shadow_rules_stat_prefix"] = json!(format!("{name}_"));
            }
            json!({ "name": name, "typed_config": config })
        };
    vec![
        filter("rbac_deny", "DENY", enforced_deny, shadow_deny),
        filter("rbac_allow", "ALLOW", enforced_allow, shadow_allow),
    ]
}
