//! The converted subset of Istio's semantics, and its evaluator.
//!
//! Every AuthorizationPolicy rule the importer converts becomes a [`RuleSem`]
//! holding only the matchers it converted, each evaluated exactly as Istio's
//! generated Envoy RBAC config evaluates it (istio/istio
//! `pilot/pkg/security/authz/model/generator.go`, `matcher/string.go`):
//! strings are exact, prefix (`abc*`), suffix (`*abc`) or presence (`*`);
//! principals are matched on the peer's URI SAN with `spiffe://` prepended;
//! namespaces as the regex `.*/ns/NS/.*`; hosts case-insensitively on the
//! whole `:authority` (port included); paths on the path without its query.
//! The evaluator is the oracle for the generated `test` blocks and for the
//! importer's self-check against the meshward engine.

use std::collections::BTreeSet;

/// An Istio string match.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum StrMatch {
    /// `abc`.
    Exact(String),
    /// `abc*`.
    Prefix(String),
    /// `*abc`.
    Suffix(String),
    /// `*`: present and non-empty.
    Any,
}

impl StrMatch {
    /// Istio's reading of a value: `*` alone, a leading or a trailing `*`.
    pub fn parse(value: &str) -> StrMatch {
        if value == "*" {
            StrMatch::Any
        } else if let Some(rest) = value.strip_prefix('*') {
            StrMatch::Suffix(rest.to_owned())
        } else if let Some(rest) = value.strip_suffix('*') {
            StrMatch::Prefix(rest.to_owned())
        } else {
            StrMatch::Exact(value.to_owned())
        }
    }

    /// Whether `s` matches.
    pub fn matches(&self, s: &str) -> bool {
        match self {
            StrMatch::Exact(v) => s == v,
            StrMatch::Prefix(v) => s.starts_with(v.as_str()),
            StrMatch::Suffix(v) => s.ends_with(v.as_str()),
            StrMatch::Any => !s.is_empty(),
        }
    }

    /// Whether `s` matches, ignoring ASCII case (hosts).
    pub fn matches_ignore_case(&self, s: &str) -> bool {
        let lower = s.to_ascii_lowercase();
        let low = |v: &str| v.to_ascii_lowercase();
        match self {
            StrMatch::Exact(v) => lower == low(v),
            StrMatch::Prefix(v) => lower.starts_with(&low(v)),
            StrMatch::Suffix(v) => lower.ends_with(&low(v)),
            StrMatch::Any => !s.is_empty(),
        }
    }
}

/// A converted path matcher, on canonical paths.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathPat {
    /// Exactly these segments (`[]` = `/`).
    Exact(Vec<String>),
    /// These segments followed by at least one more: Istio's `/a/b/*`.
    Below(Vec<String>),
    /// Every path: Istio's `*` and `/*`.
    Any,
}

impl PathPat {
    /// Whether the request path (query allowed) matches as Istio's
    /// `url_path` matcher would.
    pub fn matches(&self, path: &str) -> bool {
        let path = path.split_once('?').map_or(path, |(p, _)| p);
        match self {
            PathPat::Exact(segs) => path == join(segs),
            PathPat::Below(segs) => {
                let prefix = if segs.is_empty() {
                    "/".to_owned()
                } else {
                    format!("{}/", join(segs))
                };
                path.starts_with(&prefix)
            }
            PathPat::Any => !path.is_empty(),
        }
    }

    /// The meshward template.
    pub fn template(&self) -> String {
        match self {
            PathPat::Exact(segs) => join(segs),
            PathPat::Below(segs) if segs.is_empty() => "/{p1}/**".to_owned(),
            PathPat::Below(segs) => format!("{}/{{p{}}}/**", join(segs), segs.len() + 1),
            PathPat::Any => "/**".to_owned(),
        }
    }

    /// The literal segments.
    pub fn segments(&self) -> &[String] {
        match self {
            PathPat::Exact(segs) | PathPat::Below(segs) => segs,
            PathPat::Any => &[],
        }
    }
}

/// `/` + segments.
pub fn join(segs: &[String]) -> String {
    if segs.is_empty() {
        "/".to_owned()
    } else {
        segs.iter().map(|s| format!("/{s}")).collect()
    }
}

/// A converted `to.operation`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpSem {
    /// Allowed methods (after `notMethods`); `None` = any.
    pub methods: Option<BTreeSet<String>>,
    /// `paths`; empty = any path.
    pub paths: Vec<PathPat>,
    /// `notPaths`.
    pub not_paths: Vec<PathPat>,
    /// Host names (lowercase, no port), each matching the bare name and the
    /// name with any port (Istio's `h` plus `h:*`); `None` = any host.
    pub hosts: Option<BTreeSet<String>>,
}

impl OpSem {
    /// Whether a request is in this operation.
    pub fn matches(&self, method: &str, authority: &str, path: &str) -> bool {
        self.methods.as_ref().is_none_or(|m| m.contains(method))
            && (self.paths.is_empty() || self.paths.iter().any(|p| p.matches(path)))
            && !self.not_paths.iter().any(|p| p.matches(path))
            && self.hosts.as_ref().is_none_or(|names| {
                let authority = authority.to_ascii_lowercase();
                names.iter().any(|n| {
                    authority == *n
                        || authority
                            .strip_prefix(n.as_str())
                            .is_some_and(|rest| rest.starts_with(':'))
                })
            })
    }
}

/// One converted matcher over the caller (a `from.source` field or a
/// `when` condition); a rule variant holds all that must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cond {
    /// The peer principal (URI SAN without `spiffe://`) matches one.
    Principal(Vec<StrMatch>),
    /// The peer principal matches none (no peer: holds).
    NotPrincipal(Vec<StrMatch>),
    /// The peer's namespace (`.*/ns/NS/.*`) is one of these.
    Namespace(Vec<String>),
    /// The peer's namespace is none of these.
    NotNamespace(Vec<String>),
    /// A verified user token with `iss` matching and `sub` matching.
    RequestPrincipal(StrMatch, StrMatch),
    /// Header `name` present with a value matching one.
    Header(String, Vec<StrMatch>),
    /// Header `name` absent or matching none.
    NotHeader(String, Vec<StrMatch>),
    /// The user's claim `name` equals (or, for a list, holds) the value.
    Claim(String, String),
}

/// A request as both sides see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// The verified peer SPIFFE ID.
    pub peer: Option<String>,
    /// `:method`.
    pub method: String,
    /// `:authority`.
    pub authority: String,
    /// `:path`.
    pub path: String,
    /// Other headers (lowercase names).
    pub headers: Vec<(String, String)>,
    /// A verified user token.
    pub user: Option<ProbeUser>,
}

/// A verified end-user token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeUser {
    /// `iss`.
    pub issuer: String,
    /// `sub`.
    pub subject: String,
    /// List claims.
    pub claims: Vec<(String, Vec<String>)>,
}

fn namespace_of(principal: &str) -> Option<&str> {
    // Istio's `.*/ns/NS/.*` on the URI SAN.
    let (_, rest) = principal.split_once("/ns/")?;
    let (ns, _) = rest.split_once('/')?;
    Some(ns)
}

impl Cond {
    /// Whether the condition holds for `probe`.
    pub fn holds(&self, probe: &Probe) -> bool {
        let principal = probe
            .peer
            .as_deref()
            .map(|p| p.strip_prefix("spiffe://").unwrap_or(p));
        let header = |name: &str| {
            probe
                .headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        match self {
            Cond::Principal(ms) => principal.is_some_and(|p| ms.iter().any(|m| m.matches(p))),
            Cond::NotPrincipal(ms) => !principal.is_some_and(|p| ms.iter().any(|m| m.matches(p))),
            Cond::Namespace(ns) => principal
                .and_then(namespace_of)
                .is_some_and(|n| ns.iter().any(|x| x == n)),
            Cond::NotNamespace(ns) => !principal
                .and_then(namespace_of)
                .is_some_and(|n| ns.iter().any(|x| x == n)),
            Cond::RequestPrincipal(iss, sub) => probe
                .user
                .as_ref()
                .is_some_and(|u| iss.matches(&u.issuer) && sub.matches(&u.subject)),
            Cond::Header(name, ms) => header(name).is_some_and(|v| ms.iter().any(|m| m.matches(v))),
            Cond::NotHeader(name, ms) => {
                !header(name).is_some_and(|v| ms.iter().any(|m| m.matches(v)))
            }
            Cond::Claim(name, value) => probe.user.as_ref().is_some_and(|u| {
                u.claims
                    .iter()
                    .any(|(k, vs)| k == name && vs.iter().any(|v| v == value))
            }),
        }
    }
}

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Effect {
    /// ALLOW.
    Allow,
    /// DENY.
    Deny,
}

/// One converted rule variant: a meshward rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSem {
    /// The meshward rule id.
    pub id: String,
    /// ALLOW or DENY.
    pub effect: Effect,
    /// `Document file:line, spec.rules[i]` for the comment above the rule.
    pub origin: String,
    /// What must all hold about the caller.
    pub conds: Vec<Cond>,
    /// Whether the caller must have an mTLS peer (meshward `principal peer`);
    /// `false` for rules that only name request principals.
    pub needs_peer: bool,
    /// Operations (any); `None` = every request.
    pub ops: Option<Vec<OpSem>>,
    /// A DENY that applies to more requests than Istio's (fields left out).
    pub widened: bool,
}

impl RuleSem {
    /// Whether the caller side holds.
    pub fn caller_holds(&self, probe: &Probe) -> bool {
        (!self.needs_peer || probe.peer.is_some()) && self.conds.iter().all(|c| c.holds(probe))
    }

    /// Whether the operation side holds.
    pub fn op_holds(&self, method: &str, authority: &str, path: &str) -> bool {
        self.ops
            .as_ref()
            .is_none_or(|ops| ops.iter().any(|o| o.matches(method, authority, path)))
    }

    /// Whether the rule matches `probe`.
    pub fn matches(&self, probe: &Probe) -> bool {
        self.caller_holds(probe) && self.op_holds(&probe.method, &probe.authority, &probe.path)
    }
}

/// Istio's decision for one workload: DENY first, then ALLOW if any ALLOW
/// policy applies, else allow. Returns the decision and the matching rules
/// of the deciding kind.
pub fn decide<'a>(
    rules: &'a [RuleSem],
    has_allow_policy: bool,
    probe: &Probe,
) -> (bool, Vec<&'a RuleSem>) {
    let denies: Vec<&RuleSem> = rules
        .iter()
        .filter(|r| r.effect == Effect::Deny && r.matches(probe))
        .collect();
    if !denies.is_empty() {
        return (false, denies);
    }
    let allows: Vec<&RuleSem> = rules
        .iter()
        .filter(|r| r.effect == Effect::Allow && r.matches(probe))
        .collect();
    (!has_allow_policy || !allows.is_empty(), allows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istio_string_forms() {
        assert!(StrMatch::parse("/a/*").matches("/a/b"));
        assert!(!StrMatch::parse("/a/*").matches("/a"));
        assert!(StrMatch::parse("*/x").matches("/a/x"));
        assert!(StrMatch::parse("*").matches("v"));
        assert!(!StrMatch::parse("*").matches(""));
        assert!(StrMatch::parse("Orders.Shop").matches_ignore_case("orders.shop"));
        assert!(!StrMatch::parse("orders.shop").matches_ignore_case("orders.shop:80"));
    }

    #[test]
    fn paths_ignore_the_query_and_prefixes_need_a_segment() {
        let below = PathPat::Below(vec!["api".into()]);
        assert!(below.matches("/api/x?y=1"));
        assert!(!below.matches("/api"));
        assert!(!below.matches("/apix"));
        assert_eq!(below.template(), "/api/{p2}/**");
        assert_eq!(PathPat::Exact(vec![]).template(), "/");
        assert!(PathPat::Exact(vec!["a".into()]).matches("/a?q"));
    }

    #[test]
    fn namespaces_follow_the_regex() {
        let c = Cond::Namespace(vec!["shop".into()]);
        let mut p = Probe {
            peer: Some("spiffe://cluster.local/ns/shop/sa/x".into()),
            method: "GET".into(),
            authority: String::new(),
            path: "/".into(),
            headers: vec![],
            user: None,
        };
        assert!(c.holds(&p));
        p.peer = Some("spiffe://cluster.local/ns/shopx/sa/x".into());
        assert!(!c.holds(&p));
        assert!(Cond::NotNamespace(vec!["shop".into()]).holds(&p));
    }
}
