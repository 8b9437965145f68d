//! The equivalent policy in Cedar (`cedar-policy` 4.x), and its requests.
//!
//! Two encodings, both reported:
//!
//! * **full** — Cedar decides from the same request facts meshward gets
//!   (peer, method, path, host, headers): intent classification is written
//!   into each policy's `when` clause (`like` patterns plus a segment count,
//!   which makes `*` match exactly one segment).
//! * **pre-classified** — the action is the intent, classified *for* Cedar
//!   outside the timed loop (by meshward): the most favourable encoding for
//!   Cedar, where its scope check `action == Action::"svc-1.read"` does the
//!   routing.
//!
//! Each meshward rule becomes one `permit` / `forbid` (`@id` = rule id).
//! Dry-run rules are guarded by `context.dry_run`: false gives the enforced
//! decision (what the timed loop measures), true the decision with dry-run
//! rules enforced (checked in setup against meshward's `would_be`).

use std::fmt::Write as _;
use std::str::FromStr;

use cedar_policy::{Authorizer, Context, Decision, Entities, EntityUid, PolicySet, Request};
use serde_json::json;

use crate::mix::RequestSpec;
use crate::translate::{quote, HeaderTestView, PolicyView, Route, RouteSeg, SubjectView};

/// Which encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Cedar classifies the request itself.
    Full,
    /// The action is the intent, classified outside Cedar.
    PreClassified,
}

/// A Cedar `like` pattern literal matching `s` exactly (`*` escaped).
fn like_lit(s: &str) -> String {
    quote(s).replace('*', "\\*")
}

fn route_expr(r: &Route) -> String {
    let mut text = String::new();
    for seg in &r.segs {
        text.push('/');
        match seg {
            RouteSeg::Lit(l) => text.push_str(like_lit(l).trim_matches('"')),
            RouteSeg::Param => text.push('*'),
        }
    }
    let n = r.segs.len();
    if r.rest {
        if n == 0 {
            return "true".to_owned();
        }
        // `/a/**`: `/a` itself or anything below it.
        format!(
            "(context.nsegs >= {n} && (context.path like \"{text}\" || context.path like \"{text}/*\"))"
        )
    } else if n == 0 {
        "context.path == \"/\"".to_owned()
    } else {
        format!("(context.nsegs == {n} && context.path like \"{text}\")")
    }
}

fn intent_expr(view: &PolicyView, idx: usize) -> String {
    let intent = &view.intents[idx];
    let mut parts = Vec::new();
    if !intent.methods.is_empty() {
        let methods: Vec<String> = intent.methods.iter().map(|m| quote(m)).collect();
        parts.push(format!("[{}].contains(context.method)", methods.join(", ")));
    }
    if let Some(host) = &intent.host {
        parts.push(format!("context.host == {}", quote(host)));
    }
    let routes: Vec<String> = intent.routes.iter().map(route_expr).collect();
    parts.push(format!("({})", routes.join(" || ")));
    format!("({})", parts.join(" && "))
}

fn subject_expr(s: &SubjectView) -> String {
    match s {
        SubjectView::AnyTrusted(tds) => {
            let tds: Vec<String> = tds.iter().map(|t| quote(t)).collect();
            format!("[{}].contains(context.peer_td)", tds.join(", "))
        }
        SubjectView::Domain(td) => format!("context.peer_td == {}", quote(td)),
        SubjectView::Exact(id) => format!("context.peer == {}", quote(id)),
        SubjectView::Pattern { td, segs, rest } => {
            let mut text = format!("spiffe://{}", like_lit(td).trim_matches('"'));
            for seg in segs {
                text.push('/');
                match seg {
                    Some(l) => text.push_str(like_lit(l).trim_matches('"')),
                    None => text.push('*'),
                }
            }
            let n = segs.len();
            let td = quote(td);
            if *rest {
                if n == 0 {
                    return format!("context.peer_td == {td}");
                }
                format!(
                    "(context.peer_td == {td} && context.peer_nsegs >= {n} && (context.peer like \"{text}\" || context.peer like \"{text}/*\"))"
                )
            } else {
                format!(
                    "(context.peer_td == {td} && context.peer_nsegs == {n} && context.peer like \"{text}\")"
                )
            }
        }
    }
}

fn header_expr(name: &str, test: &HeaderTestView) -> String {
    let has = format!("context.headers has {}", quote(name));
    let val = format!("context.headers[{}]", quote(name));
    match test {
        HeaderTestView::Present => has,
        HeaderTestView::Absent => format!("!({has})"),
        HeaderTestView::Equals(v) => format!("({has} && {val} == {})", quote(v)),
        HeaderTestView::NotEquals(v) => format!("(!({has}) || {val} != {})", quote(v)),
        HeaderTestView::OneOf(vs) => {
            let vs: Vec<String> = vs.iter().map(|v| quote(v)).collect();
            format!("({has} && [{}].contains({val}))", vs.join(", "))
        }
        HeaderTestView::Prefix(v) => {
            format!(
                "({has} && {val} like \"{}*\")",
                like_lit(v).trim_matches('"')
            )
        }
    }
}

/// The Cedar policy text.
pub fn policy_text(view: &PolicyView, encoding: Encoding) -> String {
    let mut out = String::new();
    for rule in &view.rules {
        let effect = if rule.deny { "forbid" } else { "permit" };
        let action = match encoding {
            Encoding::Full => "action".to_owned(),
            Encoding::PreClassified => {
                let uids: Vec<String> = rule
                    .intents
                    .iter()
                    .map(|i| format!("Action::{}", quote(&view.intents[*i].name)))
                    .collect();
                match uids.as_slice() {
                    [one] => format!("action == {one}"),
                    _ => format!("action in [{}]", uids.join(", ")),
                }
            }
        };
        let mut when = Vec::new();
        if rule.dry_run {
            when.push("context.dry_run".to_owned());
        }
        if encoding == Encoding::Full {
            let intents: Vec<String> = rule.intents.iter().map(|i| intent_expr(view, *i)).collect();
            when.push(format!("({})", intents.join(" || ")));
        }
        let subjects: Vec<String> = rule.subjects.iter().map(subject_expr).collect();
        when.push(format!("({})", subjects.join(" || ")));
        for c in &rule.conditions {
            when.push(header_expr(&c.name, &c.test));
        }
        let _ = writeln!(
            out,
            "@id({})\n{effect} (principal, {action}, resource)\nwhen {{ {} }};\n",
            quote(&rule.id),
            when.join(" && ")
        );
    }
    out
}

/// A loaded Cedar policy set and its prepared requests.
pub struct CedarBench {
    /// Which encoding.
    pub encoding: Encoding,
    /// The policy text.
    pub text: String,
    /// Parsed policies.
    pub policies: PolicySet,
    /// No entities: everything is in the context.
    pub entities: Entities,
    /// The authorizer.
    pub authorizer: Authorizer,
    /// Requests with `dry_run: false` (the timed ones).
    pub enforced: Vec<Request>,
    /// The same requests with `dry_run: true`.
    pub shadow: Vec<Request>,
}

fn request(spec: &RequestSpec, intent: Option<&str>, dry_run: bool) -> Request {
    let headers: serde_json::Map<String, serde_json::Value> = spec
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    let context = json!({
        "peer": spec.peer,
        "peer_td": spec.peer_trust_domain(),
        "peer_nsegs": spec.peer_segments().len(),
        "method": spec.method,
        "path": spec.path,
        "nsegs": spec.segments().len(),
        "host": spec.host(),
        "headers": headers,
        "dry_run": dry_run,
    });
    let context = Context::from_json_value(context, None).expect("cedar context");
    let uid = |s: &str| EntityUid::from_str(s).expect("entity uid");
    let action = match intent {
        None => uid(r#"Action::"http""#),
        Some(name) => uid(&format!("Action::{}", quote(name))),
    };
    Request::new(
        uid(&format!("Workload::{}", quote(&spec.peer))),
        action,
        uid(r#"Service::"self""#),
        context,
        None,
    )
    .expect("cedar request")
}

impl CedarBench {
    /// Writes and parses the policy, prepares the requests. `intents` is the
    /// classification handed to the pre-classified encoding (ignored by the
    /// full one): `None` = unclassified.
    pub fn new(
        view: &PolicyView,
        encoding: Encoding,
        specs: &[RequestSpec],
        intents: &[Option<String>],
    ) -> Self {
        let text = policy_text(view, encoding);
        let policies = PolicySet::from_str(&text).unwrap_or_else(|e| {
            panic!(
                "cedar rejects the generated policy: {e:?}\n{}",
                &text[..text.len().min(2000)]
            )
        });
        let action_for = |i: usize| match encoding {
            Encoding::Full => None,
            Encoding::PreClassified => Some(intents[i].as_deref().unwrap_or("unclassified")),
        };
        let enforced = specs
            .iter()
            .enumerate()
            .map(|(i, s)| request(s, action_for(i), false))
            .collect();
        let shadow = specs
            .iter()
            .enumerate()
            .map(|(i, s)| request(s, action_for(i), true))
            .collect();
        CedarBench {
            encoding,
            text,
            policies,
            entities: Entities::empty(),
            authorizer: Authorizer::new(),
            enforced,
            shadow,
        }
    }

    /// The enforced decision on request `i` (what the timed loop runs).
    pub fn allows(&self, i: usize) -> bool {
        self.decide(&self.enforced[i])
    }

    /// The decision with dry-run rules enforced.
    pub fn would_allow(&self, i: usize) -> bool {
        self.decide(&self.shadow[i])
    }

    /// One authorization.
    pub fn decide(&self, req: &Request) -> bool {
        let response = self
            .authorizer
            .is_authorized(req, &self.policies, &self.entities);
        response.decision() == Decision::Allow
    }

    /// One authorization that also reports evaluation errors (setup only).
    pub fn decide_checked(&self, req: &Request) -> Result<bool, String> {
        let response = self
            .authorizer
            .is_authorized(req, &self.policies, &self.entities);
        let errors: Vec<String> = response
            .diagnostics()
            .errors()
            .map(ToString::to_string)
            .collect();
        if errors.is_empty() {
            Ok(response.decision() == Decision::Allow)
        } else {
            Err(errors.join("; "))
        }
    }
}
