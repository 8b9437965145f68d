//! AuthorizationPolicy rules → converted rule variants ([`RuleSem`]), with a
//! finding for every field that is not converted exactly.
//!
//! The importer never converts towards more access: an ALLOW rule is
//! narrowed (an unconvertible value of a list is left out; an unconvertible
//! field or exclusion drops the rule), a DENY rule is widened (an
//! unconvertible field or value is left out, so the deny applies to more
//! requests). Both are reported.

use std::collections::BTreeSet;

use meshward_engine::model::Method;
use meshward_engine::spiffe;

use super::model::{Action, AuthorizationPolicy, Clause, Condition, Field, Rule};
use super::report::{Code, Finding};
use super::sem::{Cond, Effect, OpSem, PathPat, RuleSem, StrMatch};

/// Most meshward rules one Istio rule may expand to.
pub const MAX_VARIANTS: usize = 64;

/// What became of one field.
enum Conv<T> {
    Keep(T),
    /// Left out (a DENY widened).
    Skip,
    /// The ALLOW rule cannot be converted.
    DropRule,
}

struct Ctx<'a> {
    ap: &'a AuthorizationPolicy,
    effect: Effect,
    findings: &'a mut Vec<Finding>,
    dropped: bool,
}

impl Ctx<'_> {
    fn allow(&self) -> bool {
        self.effect == Effect::Allow
    }

    fn note(&mut self, code: Code, line: usize, field: &str, message: String) {
        self.findings
            .push(self.ap.doc.finding(code, line, field, message));
    }

    /// A whole field meshward cannot express.
    fn unsupported_field(&mut self, line: usize, field: &str, why: &str) -> Conv<()> {
        if self.allow() {
            self.note(
                Code::I001,
                line,
                field,
                format!("{why}; the ALLOW rule is not converted"),
            );
            self.dropped = true;
            Conv::DropRule
        } else {
            self.note(
                Code::I002,
                line,
                field,
                format!("{why}; left out, so the converted DENY applies regardless of it"),
            );
            Conv::Skip
        }
    }

    /// A list field where any value may match (`principals`, `paths`...):
    /// ALLOW keeps the convertible values, DENY needs them all.
    fn positive<T>(
        &mut self,
        field: &Field,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Conv<Vec<T>> {
        let (kept, bad) = parse_values(field, parse);
        let Some(bad) = bad else {
            return Conv::Keep(kept);
        };
        if !self.allow() {
            self.note(
                Code::I002,
                field.line,
                &field.path,
                format!(
                    "{bad}; the field is left out, so the converted DENY applies regardless of it"
                ),
            );
            return Conv::Skip;
        }
        if kept.is_empty() {
            self.note(
                Code::I001,
                field.line,
                &field.path,
                format!("{bad}; no value is left, so the ALLOW rule is not converted"),
            );
            self.dropped = true;
            return Conv::DropRule;
        }
        self.note(
            Code::I001,
            field.line,
            &field.path,
            format!("{bad}; left out of the converted ALLOW rule, which allows less"),
        );
        Conv::Keep(kept)
    }

    /// A list field of exclusions (`notPrincipals`, `notPaths`...): ALLOW
    /// needs them all, DENY keeps the convertible ones.
    fn negative<T>(
        &mut self,
        field: &Field,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Conv<Vec<T>> {
        let (kept, bad) = parse_values(field, parse);
        let Some(bad) = bad else {
            return Conv::Keep(kept);
        };
        if self.allow() {
            self.note(
                Code::I001,
                field.line,
                &field.path,
                format!("{bad}; without this exclusion the ALLOW rule would allow more, so it is not converted"),
            );
            self.dropped = true;
            return Conv::DropRule;
        }
        self.note(
            Code::I002,
            field.line,
            &field.path,
            format!(
                "{bad}; the exclusion is left out, so the converted DENY applies to more requests"
            ),
        );
        Conv::Keep(kept)
    }
}

/// The values of a list field that parse, and what is wrong with the others
/// (`None` when every value parses).
fn parse_values<T>(
    field: &Field,
    parse: impl Fn(&str) -> Result<T, String>,
) -> (Vec<T>, Option<String>) {
    let mut kept = Vec::new();
    let mut bad = Vec::new();
    for value in &field.values {
        match parse(value) {
            Ok(t) => kept.push(t),
            Err(why) => bad.push(format!("`{value}`: {why}")),
        }
    }
    let bad = (!bad.is_empty()).then(|| bad.join("; "));
    (kept, bad)
}

/// SPIFFE syntax is the engine's (`spiffe.rs`): one home for the rule.
fn spiffe_segment_ok(s: &str) -> bool {
    spiffe::check_path_segment(s).is_ok()
}

fn trust_domain_ok(s: &str) -> bool {
    spiffe::check_trust_domain(s).is_ok()
}

/// A principal value: `td/ns/x/sa/y`, `td/ns/x/*` (whole segments below a
/// prefix that ends in `/`), or `*`.
pub fn parse_principal(value: &str) -> Result<StrMatch, String> {
    let m = StrMatch::parse(value);
    let check = |text: &str, allow_trailing_slash: bool| {
        let (td, path) = text.split_once('/').unwrap_or((text, ""));
        if !trust_domain_ok(td) {
            return Err(format!(
                "`{td}` is not a SPIFFE trust domain meshward accepts"
            ));
        }
        let path = if allow_trailing_slash {
            path.strip_suffix('/').unwrap_or(path)
        } else {
            path
        };
        if !path.split('/').all(spiffe_segment_ok) {
            return Err("not a SPIFFE ID path of whole, valid segments".to_owned());
        }
        Ok(())
    };
    match &m {
        StrMatch::Any => Ok(m),
        StrMatch::Exact(v) => check(v, false).map(|()| m.clone()),
        StrMatch::Prefix(v) if v.ends_with('/') && v.contains('/') && v.len() > 1 => {
            check(v, true).map(|()| m.clone())
        }
        StrMatch::Prefix(_) => Err(
            "a prefix that ends inside a segment (meshward patterns match whole segments)"
                .to_owned(),
        ),
        StrMatch::Suffix(_) => {
            Err("a suffix match (meshward patterns match from the trust domain)".to_owned())
        }
    }
}

fn parse_namespace(value: &str) -> Result<String, String> {
    if spiffe_segment_ok(value) && !value.contains('*') {
        Ok(value.to_owned())
    } else {
        Err("only exact namespace names are converted".to_owned())
    }
}

/// `iss/sub`, `iss/*` or `*` (Istio splits at the last `/`).
fn parse_request_principal(value: &str) -> Result<(StrMatch, StrMatch), String> {
    if value == "*" {
        return Ok((StrMatch::Any, StrMatch::Any));
    }
    let Some((iss, sub)) = value.rsplit_once('/') else {
        return Err("not of the form `issuer/subject`".to_owned());
    };
    if iss.is_empty() || iss.contains('*') {
        return Err("only exact issuers are converted".to_owned());
    }
    match sub {
        "*" => Ok((StrMatch::Exact(iss.to_owned()), StrMatch::Any)),
        s if s.is_empty() || s.contains('*') => {
            Err("only exact subjects or `*` are converted".to_owned())
        }
        s => Ok((
            StrMatch::Exact(iss.to_owned()),
            StrMatch::Exact(s.to_owned()),
        )),
    }
}

fn parse_method(value: &str) -> Result<Option<String>, String> {
    if value == "*" {
        return Ok(None);
    }
    Method::parse(value)
        .map(|m| Some(m.as_str().to_owned()))
        .ok_or_else(|| "not an uppercase HTTP method meshward knows".to_owned())
}

fn literal_segment_ok(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'.'
                        | b'_'
                        | b'~'
                        | b'!'
                        | b'$'
                        | b'&'
                        | b'\''
                        | b'('
                        | b')'
                        | b'+'
                        | b','
                        | b'='
                        | b':'
                        | b'@'
                )
        })
}

/// A path value: exact, `PREFIX/*`, `/*` or `*`.
pub fn parse_path(value: &str) -> Result<PathPat, String> {
    if value == "*" || value == "/*" {
        return Ok(PathPat::Any);
    }
    let (body, below) = match value.strip_suffix("/*") {
        Some(body) => (body, true),
        None => (value, false),
    };
    if value.contains('{') {
        return Err("Istio path templates (`{*}`, `{**}`) are not converted".to_owned());
    }
    if body.contains('*') {
        return Err(if value.starts_with('*') {
            "a suffix match: meshward templates cannot end a path with a suffix".to_owned()
        } else {
            "a prefix that ends inside a segment: meshward templates match whole segments"
                .to_owned()
        });
    }
    if body == "/" && !below {
        return Ok(PathPat::Exact(Vec::new()));
    }
    let Some(rest) = body.strip_prefix('/') else {
        return Err("does not start with `/`".to_owned());
    };
    let segs: Vec<String> = rest.split('/').map(str::to_owned).collect();
    if !segs.iter().all(|s| literal_segment_ok(s)) {
        return Err(
            "not a canonical path (empty, `.`/`..` segments, a trailing `/`, `%`, `;` or other characters meshward refuses)"
                .to_owned(),
        );
    }
    Ok(if below {
        PathPat::Below(segs)
    } else {
        PathPat::Exact(segs)
    })
}

/// `host`, `host:*` (paired) or `*`; returns the lowercase name, whether it
/// had `:*`, and whether it had a specific port.
fn parse_host(value: &str) -> Result<(String, HostForm), String> {
    let lower = value.to_ascii_lowercase();
    let (name, form) = match lower.rsplit_once(':') {
        Some((name, "*")) => (name.to_owned(), HostForm::AnyPort),
        Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            (name.to_owned(), HostForm::Port)
        }
        Some(_) => return Err("not a host name with an optional port".to_owned()),
        None => (lower.clone(), HostForm::Bare),
    };
    if name.is_empty()
        || name.contains('*')
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'))
    {
        return Err("only exact host names are converted (no wildcards)".to_owned());
    }
    Ok((name, form))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HostForm {
    Bare,
    AnyPort,
    Port,
}

/// Alternatives for one part of a rule: any one of them may hold.
type Alternatives = Vec<Vec<Cond>>;

fn source_alternatives(ctx: &mut Ctx<'_>, source: &Clause) -> Option<(Alternatives, bool)> {
    let mut conds = Vec::new();
    let mut request_principals: Option<Vec<(StrMatch, StrMatch)>> = None;
    let mut peer_fields = false;
    for field in &source.fields {
        match field.key.as_str() {
            "principals" => match ctx.positive(field, parse_principal) {
                Conv::Keep(v) => {
                    peer_fields = true;
                    conds.push(Cond::Principal(v));
                }
                Conv::Skip => {}
                Conv::DropRule => return None,
            },
            "notPrincipals" => match ctx.negative(field, parse_principal) {
                Conv::Keep(v) if !v.is_empty() => conds.push(Cond::NotPrincipal(v)),
                Conv::Keep(_) | Conv::Skip => {}
                Conv::DropRule => return None,
            },
            "namespaces" => match ctx.positive(field, parse_namespace) {
                Conv::Keep(v) => {
                    peer_fields = true;
                    conds.push(Cond::Namespace(v));
                }
                Conv::Skip => {}
                Conv::DropRule => return None,
            },
            "notNamespaces" => match ctx.negative(field, parse_namespace) {
                Conv::Keep(v) if !v.is_empty() => conds.push(Cond::NotNamespace(v)),
                Conv::Keep(_) | Conv::Skip => {}
                Conv::DropRule => return None,
            },
            "requestPrincipals" => match ctx.positive(field, parse_request_principal) {
                Conv::Keep(v) => request_principals = Some(v),
                Conv::Skip => {}
                Conv::DropRule => return None,
            },
            key => {
                let why = match key {
                    "ipBlocks" | "notIpBlocks" | "remoteIpBlocks" | "notRemoteIpBlocks" => {
                        "meshward never matches on IP addresses (identity is cryptographic)"
                            .to_owned()
                    }
                    "notRequestPrincipals" => {
                        "meshward has no negated user-token condition".to_owned()
                    }
                    "serviceAccounts" | "notServiceAccounts" => {
                        "`serviceAccounts` is not converted; write `principals` instead".to_owned()
                    }
                    other => format!("unknown source field `{other}`"),
                };
                if let Conv::DropRule = ctx.unsupported_field(field.line, &field.path, &why) {
                    return None;
                }
            }
        }
    }
    let needs_peer = peer_fields || request_principals.is_none();
    let alternatives = match request_principals {
        None => vec![conds],
        Some(rps) => rps
            .into_iter()
            .map(|(iss, sub)| {
                let mut c = conds.clone();
                c.push(Cond::RequestPrincipal(iss, sub));
                c
            })
            .collect(),
    };
    Some((alternatives, needs_peer))
}

fn header_name(key: &str, prefix: &str) -> Option<String> {
    let inner = key.strip_prefix(prefix)?.strip_suffix(']')?;
    if inner.is_empty() || inner.contains('[') || inner.contains(']') {
        return None;
    }
    Some(inner.to_owned())
}

fn header_value(value: &str) -> Result<StrMatch, String> {
    match StrMatch::parse(value) {
        StrMatch::Suffix(_) => Err("a suffix match on a header is not converted".to_owned()),
        m => Ok(m),
    }
}

fn not_header_value(value: &str) -> Result<StrMatch, String> {
    match StrMatch::parse(value) {
        m @ (StrMatch::Exact(_) | StrMatch::Any) => Ok(m),
        _ => Err("only exact values (or `*`) are converted in `notValues`".to_owned()),
    }
}

fn condition_alternatives(ctx: &mut Ctx<'_>, cond: &Condition) -> Option<Alternatives> {
    let values = Field {
        key: "values".to_owned(),
        path: format!("{}.values", cond.path),
        line: cond.values_line,
        values: cond.values.clone(),
    };
    let not_values = Field {
        key: "notValues".to_owned(),
        path: format!("{}.notValues", cond.path),
        line: cond.not_values_line,
        values: cond.not_values.clone(),
    };
    let mut alternatives: Alternatives = vec![Vec::new()];
    let and = |alternatives: &mut Alternatives, ors: Vec<Cond>| {
        // AND a set of alternatives into each existing alternative.
        let mut next = Vec::new();
        for alt in alternatives.iter() {
            for or in &ors {
                let mut a = alt.clone();
                a.push(or.clone());
                next.push(a);
            }
        }
        *alternatives = next;
    };
    let key = cond.key.as_str();
    if let Some(name) = header_name(key, "request.headers[") {
        let name = name.to_ascii_lowercase();
        if !cond.values.is_empty() {
            if ctx.allow() {
                match ctx.positive(&values, header_value) {
                    Conv::Keep(ms) => {
                        ctx.note(
                            Code::I003,
                            values.line,
                            &values.path,
                            "meshward compares the whole header value: a value Istio finds inside a comma-joined list, or a repeated header, is denied".to_owned(),
                        );
                        let conds = header_conds(&name, ms);
                        and(&mut alternatives, conds);
                    }
                    Conv::Skip => {}
                    Conv::DropRule => return None,
                }
            } else {
                ctx.note(
                    Code::I002,
                    values.line,
                    &values.path,
                    "Istio also matches a value inside a comma-joined list, which meshward cannot express; the condition is left out, so the converted DENY applies regardless of the header".to_owned(),
                );
            }
        }
        if !cond.not_values.is_empty() {
            if ctx.allow() {
                ctx.note(
                    Code::I001,
                    not_values.line,
                    &not_values.path,
                    "meshward's `!=` also holds for a comma-joined list holding the value, which Istio excludes; the ALLOW rule is not converted".to_owned(),
                );
                ctx.dropped = true;
                return None;
            }
            match ctx.negative(&not_values, not_header_value) {
                Conv::Keep(ms) if !ms.is_empty() => {
                    and(&mut alternatives, vec![Cond::NotHeader(name, ms)]);
                }
                Conv::Keep(_) | Conv::Skip => {}
                Conv::DropRule => return None,
            }
        }
        return Some(alternatives);
    }
    match key {
        "source.principal" | "source.namespace" | "request.auth.principal" => {
            let namespace = key == "source.namespace";
            if !cond.values.is_empty() {
                let conv = if key == "request.auth.principal" {
                    match ctx.positive(&values, parse_request_principal) {
                        Conv::Keep(v) => Conv::Keep(
                            v.into_iter()
                                .map(|(i, s)| Cond::RequestPrincipal(i, s))
                                .collect::<Vec<_>>(),
                        ),
                        Conv::Skip => Conv::Skip,
                        Conv::DropRule => Conv::DropRule,
                    }
                } else if namespace {
                    match ctx.positive(&values, parse_namespace) {
                        Conv::Keep(v) => Conv::Keep(vec![Cond::Namespace(v)]),
                        Conv::Skip => Conv::Skip,
                        Conv::DropRule => Conv::DropRule,
                    }
                } else {
                    match ctx.positive(&values, parse_principal) {
                        Conv::Keep(v) => Conv::Keep(vec![Cond::Principal(v)]),
                        Conv::Skip => Conv::Skip,
                        Conv::DropRule => Conv::DropRule,
                    }
                };
                match conv {
                    Conv::Keep(ors) => and(&mut alternatives, ors),
                    Conv::Skip => {}
                    Conv::DropRule => return None,
                }
            }
            if !cond.not_values.is_empty() {
                if key == "request.auth.principal" {
                    if let Conv::DropRule = ctx.unsupported_field(
                        not_values.line,
                        &not_values.path,
                        "meshward has no negated user-token condition",
                    ) {
                        return None;
                    }
                } else if namespace {
                    match ctx.negative(&not_values, parse_namespace) {
                        Conv::Keep(v) if !v.is_empty() => {
                            and(&mut alternatives, vec![Cond::NotNamespace(v)]);
                        }
                        Conv::Keep(_) | Conv::Skip => {}
                        Conv::DropRule => return None,
                    }
                } else {
                    match ctx.negative(&not_values, parse_principal) {
                        Conv::Keep(v) if !v.is_empty() => {
                            and(&mut alternatives, vec![Cond::NotPrincipal(v)]);
                        }
                        Conv::Keep(_) | Conv::Skip => {}
                        Conv::DropRule => return None,
                    }
                }
            }
            Some(alternatives)
        }
        _ if key.starts_with("request.auth.claims[") => {
            let Some(name) = header_name(key, "request.auth.claims[") else {
                return match ctx.unsupported_field(
                    cond.line,
                    &cond.path,
                    "nested claims (`[a][b]`) are not converted: meshward rules read top-level claims",
                ) {
                    Conv::DropRule => None,
                    _ => Some(alternatives),
                };
            };
            if !cond.values.is_empty() {
                let exact = |v: &str| match StrMatch::parse(v) {
                    StrMatch::Exact(s) => Ok(s),
                    _ => Err("only exact claim values are converted".to_owned()),
                };
                match ctx.positive(&values, exact) {
                    Conv::Keep(vs) => {
                        let ors = vs
                            .into_iter()
                            .map(|v| Cond::Claim(name.clone(), v))
                            .collect();
                        and(&mut alternatives, ors);
                    }
                    Conv::Skip => {}
                    Conv::DropRule => return None,
                }
            }
            if !cond.not_values.is_empty() {
                if let Conv::DropRule = ctx.unsupported_field(
                    not_values.line,
                    &not_values.path,
                    "meshward has no negated claim condition",
                ) {
                    return None;
                }
            }
            Some(alternatives)
        }
        _ => {
            let why = match key {
                "source.ip" | "remote.ip" | "destination.ip" => {
                    "meshward never matches on IP addresses".to_owned()
                }
                "destination.port" => "meshward never matches on ports".to_owned(),
                "connection.sni" => "meshward does not match the TLS SNI".to_owned(),
                "request.auth.audiences" | "request.auth.presenter" => format!(
                    "`{key}` is not a rule condition in meshward (audiences are checked by the token settings)"
                ),
                other => format!("unknown condition key `{other}`"),
            };
            match ctx.unsupported_field(cond.line, &cond.path, &why) {
                Conv::DropRule => None,
                _ => Some(alternatives),
            }
        }
    }
}

fn header_conds(name: &str, ms: Vec<StrMatch>) -> Vec<Cond> {
    // One meshward condition when all values are exact (`in [...]`) or
    // there is just one; otherwise one alternative per value.
    let all_exact = ms.iter().all(|m| matches!(m, StrMatch::Exact(_)));
    if all_exact || ms.len() == 1 {
        vec![Cond::Header(name.to_owned(), ms)]
    } else {
        ms.into_iter()
            .map(|m| Cond::Header(name.to_owned(), vec![m]))
            .collect()
    }
}

fn operation(ctx: &mut Ctx<'_>, op: &Clause) -> Option<OpSem> {
    let mut sem = OpSem::default();
    let mut methods: Option<BTreeSet<String>> = None;
    let mut not_methods = BTreeSet::new();
    let mut hosts: Vec<(String, HostForm)> = Vec::new();
    let mut hosts_field: Option<&Field> = None;
    for field in &op.fields {
        match field.key.as_str() {
            "methods" => match ctx.positive(field, parse_method) {
                Conv::Keep(v) => {
                    if v.iter().all(Option::is_some) {
                        methods = Some(v.into_iter().flatten().collect());
                    }
                }
                Conv::Skip => {}
                Conv::DropRule => return None,
            },
            "notMethods" => match ctx.negative(field, parse_method) {
                Conv::Keep(v) => {
                    if v.iter().any(Option::is_none) {
                        // `*`: every method excluded.
                        methods = Some(BTreeSet::new());
                    }
                    not_methods.extend(v.into_iter().flatten());
                }
                Conv::Skip => {}
                Conv::DropRule => return None,
            },
            "paths" => match ctx.positive(field, parse_path) {
                Conv::Keep(v) => {
                    if v.contains(&PathPat::Any) {
                        sem.paths.clear();
                    } else {
                        sem.paths = v;
                    }
                }
                Conv::Skip => {}
                Conv::DropRule => return None,
            },
            "notPaths" => match ctx.negative(field, parse_path) {
                Conv::Keep(v) => sem.not_paths = v,
                Conv::Skip => {}
                Conv::DropRule => return None,
            },
            "hosts" => {
                hosts_field = Some(field);
                match ctx.positive(field, |v| {
                    if v == "*" {
                        Ok(None)
                    } else {
                        parse_host(v).map(Some)
                    }
                }) {
                    Conv::Keep(v) => {
                        if v.iter().any(Option::is_none) {
                            hosts.clear();
                            hosts_field = None;
                        } else {
                            hosts = v.into_iter().flatten().collect();
                        }
                    }
                    Conv::Skip => hosts_field = None,
                    Conv::DropRule => return None,
                }
            }
            key => {
                let why = match key {
                    "ports" | "notPorts" => {
                        "meshward never matches on ports (identity, not network location)"
                            .to_owned()
                    }
                    "notHosts" => "host exclusions are not converted".to_owned(),
                    other => format!("unknown operation field `{other}`"),
                };
                if let Conv::DropRule = ctx.unsupported_field(field.line, &field.path, &why) {
                    return None;
                }
            }
        }
    }
    if !not_methods.is_empty() {
        let base: BTreeSet<String> =
            methods.unwrap_or_else(|| Method::ALL.iter().map(|m| m.as_str().to_owned()).collect());
        methods = Some(base.difference(&not_methods).cloned().collect());
    }
    sem.methods = methods;
    if let Some(field) = hosts_field {
        // meshward compares the host without its port: Istio's `h` alone (no
        // port) or `h:8080` alone are narrower than that.
        let names: BTreeSet<String> = hosts.iter().map(|(n, _)| n.clone()).collect();
        let exact: BTreeSet<String> = names
            .iter()
            .filter(|n| {
                hosts.iter().any(|(m, f)| m == *n && *f == HostForm::Bare)
                    && hosts
                        .iter()
                        .any(|(m, f)| m == *n && *f == HostForm::AnyPort)
            })
            .cloned()
            .collect();
        let inexact: Vec<&String> = names.difference(&exact).collect();
        if !inexact.is_empty() {
            let list = inexact
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ");
            if ctx.allow() {
                if exact.is_empty() {
                    ctx.note(Code::I001, field.line, &field.path, format!("meshward matches a host with any port, Istio only as listed ({list}: list both `HOST` and `HOST:*` to convert); the ALLOW rule is not converted"));
                    ctx.dropped = true;
                    return None;
                }
                ctx.note(Code::I001, field.line, &field.path, format!("meshward matches a host with any port, Istio only as listed ({list}: list both `HOST` and `HOST:*` to convert); left out of the converted ALLOW rule, which allows less"));
                sem.hosts = Some(exact);
            } else {
                ctx.note(Code::I003, field.line, &field.path, format!("meshward matches {list} with any port: the converted DENY applies to more requests"));
                sem.hosts = Some(names);
            }
        } else {
            sem.hosts = Some(names);
        }
    }
    Some(sem)
}

/// Converts one rule of an ALLOW or DENY policy. Returns no variants when an
/// ALLOW rule cannot be converted (findings say why).
pub fn convert_rule(
    ap: &AuthorizationPolicy,
    rule: &Rule,
    findings: &mut Vec<Finding>,
) -> Vec<RuleSem> {
    let effect = match ap.action {
        Action::Allow => Effect::Allow,
        Action::Deny => Effect::Deny,
        Action::Audit | Action::Custom => return Vec::new(),
    };
    let first_finding = findings.len();
    let mut ctx = Ctx {
        ap,
        effect,
        findings,
        dropped: false,
    };
    // Every field is looked at (and reported) even once the rule is lost.
    let mut sources: Vec<(Alternatives, bool)> = Vec::new();
    for source in &rule.from {
        if let Some(s) = source_alternatives(&mut ctx, source) {
            sources.push(s);
        }
    }
    let mut whens: Vec<Alternatives> = Vec::new();
    for cond in &rule.when {
        if let Some(w) = condition_alternatives(&mut ctx, cond) {
            whens.push(w);
        }
    }
    let mut ops = Vec::new();
    for op in &rule.to {
        if let Some(o) = operation(&mut ctx, op) {
            ops.push(o);
        }
    }
    if ctx.dropped {
        return Vec::new();
    }
    if rule.from.is_empty() {
        sources.push((vec![Vec::new()], true));
    }
    let mut variants: Vec<(Vec<Cond>, bool)> = Vec::new();
    for (alternatives, needs_peer) in sources {
        for alt in alternatives {
            variants.push((alt, needs_peer));
        }
    }
    for when in whens {
        let mut next = Vec::new();
        for (conds, needs_peer) in &variants {
            for alt in &when {
                let mut c = conds.clone();
                c.extend(alt.iter().cloned());
                next.push((c, *needs_peer));
            }
        }
        variants = next;
    }
    if variants.len() > MAX_VARIANTS {
        ctx.note(
            if ctx.allow() { Code::I001 } else { Code::I002 },
            rule.line,
            &rule.path,
            format!(
                "the rule expands to {} meshward rules (more than {MAX_VARIANTS}); it is not converted",
                variants.len()
            ),
        );
        return Vec::new();
    }
    let ops = (!rule.to.is_empty()).then_some(ops);
    let widened = ctx
        .findings
        .get(first_finding..)
        .is_some_and(|new| new.iter().any(|f| f.code == Code::I002));
    let base = format!("{}.{}.r{}", ap.namespace, ap.name, rule.index);
    let many = variants.len() > 1;
    variants
        .into_iter()
        .enumerate()
        .map(|(i, (conds, needs_peer))| RuleSem {
            id: if many {
                format!("{base}.v{}", i + 1)
            } else {
                base.clone()
            },
            effect,
            origin: format!(
                "{} ({}:{}, {})",
                ap.doc.document, ap.doc.file, rule.line, rule.path
            ),
            conds,
            needs_peer,
            ops: ops.clone(),
            widened,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_convert_only_when_exact() {
        assert_eq!(
            parse_path("/orders/*"),
            Ok(PathPat::Below(vec!["orders".into()]))
        );
        assert_eq!(
            parse_path("/orders"),
            Ok(PathPat::Exact(vec!["orders".into()]))
        );
        assert_eq!(parse_path("/"), Ok(PathPat::Exact(vec![])));
        assert_eq!(parse_path("*"), Ok(PathPat::Any));
        assert_eq!(parse_path("/*"), Ok(PathPat::Any));
        assert!(parse_path("/orders*").is_err());
        assert!(parse_path("*/status").is_err());
        assert!(parse_path("/orders/").is_err());
        assert!(parse_path("/a//b").is_err());
        assert!(parse_path("/a/{*}/b").is_err());
        assert!(parse_path("/a%2fb").is_err());
    }

    #[test]
    fn principals_and_request_principals() {
        assert!(parse_principal("cluster.local/ns/shop/sa/frontend").is_ok());
        assert!(parse_principal("cluster.local/ns/shop/*").is_ok());
        assert!(parse_principal("cluster.local/ns/shop/sa/front*").is_err());
        assert!(parse_principal("*/sa/frontend").is_err());
        assert_eq!(
            parse_request_principal("https://idp.example/alice"),
            Ok((
                StrMatch::Exact("https://idp.example".into()),
                StrMatch::Exact("alice".into())
            ))
        );
        assert_eq!(
            parse_request_principal("https://idp.example/*"),
            Ok((StrMatch::Exact("https://idp.example".into()), StrMatch::Any))
        );
        assert!(parse_request_principal("*@example.com").is_err());
    }

    #[test]
    fn hosts_need_the_port_form_for_an_exact_allow() {
        assert_eq!(
            parse_host("Orders.Shop:*"),
            Ok(("orders.shop".into(), HostForm::AnyPort))
        );
        assert_eq!(
            parse_host("orders.shop:8080"),
            Ok(("orders.shop".into(), HostForm::Port))
        );
        assert!(parse_host("*.shop").is_err());
    }
}
