//! The generator model (meshward's compiled policy) read back as plain facts
//! that the Cedar, Rego and Envoy RBAC writers share: intents with their
//! routes, methods and host; rules with their effect, mode, subjects, intents
//! and header conditions.
//!
//! Every equivalent policy is written from this one view of the *same*
//! compiled model that meshward loads, so the three engines enforce one
//! policy. What the writers cannot express exactly is refused here (with a
//! panic naming it), never approximated silently; the benchmarks then check
//! decision by decision that the engines agree.

use meshward_engine::model::{
    CompiledPolicy, Condition, Effect, HeaderTest, IdSegment, Method, Principal, Segment, StrId,
    Subject,
};

/// A path template segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteSeg {
    /// This literal segment.
    Lit(String),
    /// `{param}`: one segment.
    Param,
}

/// A path template: segments, and whether it ends in `**`.
#[derive(Debug, Clone)]
pub struct Route {
    /// Segments before any `**`.
    pub segs: Vec<RouteSeg>,
    /// Ends in `**` (zero or more further segments).
    pub rest: bool,
}

/// One intent.
#[derive(Debug, Clone)]
pub struct IntentView {
    /// Its name.
    pub name: String,
    /// Methods; empty = any.
    pub methods: Vec<&'static str>,
    /// Required host (lowercase, no port).
    pub host: Option<String>,
    /// Templates (any matches).
    pub routes: Vec<Route>,
}

/// A SPIFFE ID subject.
#[derive(Debug, Clone)]
pub enum SubjectView {
    /// Any peer of a trusted domain.
    AnyTrusted(Vec<String>),
    /// A whole trust domain.
    Domain(String),
    /// One SPIFFE ID.
    Exact(String),
    /// A pattern: trust domain, segments (`None` = `*`), ends in `**`.
    Pattern {
        /// Trust domain.
        td: String,
        /// Literal segments or `*`.
        segs: Vec<Option<String>>,
        /// Ends in `**`.
        rest: bool,
    },
}

/// A header condition.
#[derive(Debug, Clone)]
pub struct HeaderCond {
    /// Lowercase header name.
    pub name: String,
    /// The test.
    pub test: HeaderTestView,
}

/// Header tests (same meaning as the engine's).
#[derive(Debug, Clone)]
pub enum HeaderTestView {
    /// Present.
    Present,
    /// Absent.
    Absent,
    /// Present and equal.
    Equals(String),
    /// Absent or different.
    NotEquals(String),
    /// Present and one of.
    OneOf(Vec<String>),
    /// Present with this prefix.
    Prefix(String),
}

/// One rule.
#[derive(Debug, Clone)]
pub struct RuleView {
    /// Rule id.
    pub id: String,
    /// `deny`?
    pub deny: bool,
    /// Dry-run rule?
    pub dry_run: bool,
    /// Subjects (any matches).
    pub subjects: Vec<SubjectView>,
    /// Intent indexes into [`PolicyView::intents`].
    pub intents: Vec<usize>,
    /// Header conditions (all hold).
    pub conditions: Vec<HeaderCond>,
}

/// The whole policy.
#[derive(Debug, Clone)]
pub struct PolicyView {
    /// Trusted trust domains.
    pub trust_domains: Vec<String>,
    /// Intents, in order.
    pub intents: Vec<IntentView>,
    /// Rules, in order.
    pub rules: Vec<RuleView>,
}

impl PolicyView {
    /// Reads the compiled model. Panics on anything the writers cannot
    /// express exactly (non-peer principals, chain/user conditions,
    /// `unclassified` rules, whole-policy dry-run).
    pub fn of(model: &CompiledPolicy) -> Self {
        let s = |id: StrId| model.strings[id.index()].clone();
        assert!(!model.dry_run, "whole-policy dry-run is not translated");
        let trust_domains: Vec<String> = model.trust_domains.iter().map(|t| s(*t)).collect();
        let intents = model
            .intents
            .iter()
            .map(|i| IntentView {
                name: s(i.name),
                methods: Method::ALL
                    .iter()
                    .filter(|m| i.methods & m.bit() != 0)
                    .map(|m| m.as_str())
                    .collect(),
                host: i.host.map(s),
                routes: i
                    .routes
                    .iter()
                    .map(|r| {
                        let mut segs = Vec::new();
                        let mut rest = false;
                        for seg in &r.segments {
                            match seg {
                                Segment::Literal(id) => segs.push(RouteSeg::Lit(s(*id))),
                                Segment::Param => segs.push(RouteSeg::Param),
                                Segment::Rest => rest = true,
                            }
                        }
                        assert!(
                            !(rest && segs.contains(&RouteSeg::Param)),
                            "a `**` template with a `{{param}}` is not translated exactly"
                        );
                        Route { segs, rest }
                    })
                    .collect(),
            })
            .collect();
        let subject = |sub: &Subject| match sub {
            Subject::AnyAuthenticated => SubjectView::AnyTrusted(trust_domains.clone()),
            Subject::TrustDomain(td) => SubjectView::Domain(s(*td)),
            Subject::Exact(id) => SubjectView::Exact(s(*id)),
            Subject::Pattern {
                trust_domain,
                segments,
            } => {
                let mut segs = Vec::new();
                let mut rest = false;
                for seg in segments {
                    match seg {
                        IdSegment::Literal(id) => segs.push(Some(s(*id))),
                        IdSegment::Any => segs.push(None),
                        IdSegment::Rest => rest = true,
                    }
                }
                assert!(
                    !(rest && segs.iter().any(Option::is_none)),
                    "a `**` ID pattern with a `*` is not translated exactly"
                );
                SubjectView::Pattern {
                    td: s(*trust_domain),
                    segs,
                    rest,
                }
            }
        };
        let rules = model
            .rules
            .iter()
            .map(|r| {
                assert_eq!(
                    r.principal,
                    Principal::Peer,
                    "only peer rules are translated"
                );
                assert!(!r.unclassified, "`unclassified` rules are not translated");
                RuleView {
                    id: s(r.id),
                    deny: r.effect == Effect::Deny,
                    dry_run: r.dry_run,
                    subjects: r.subjects.iter().map(subject).collect(),
                    intents: r.intents.iter().map(|i| i.index()).collect(),
                    conditions: r
                        .conditions
                        .iter()
                        .map(|c| match c {
                            Condition::Header { name, test } => HeaderCond {
                                name: s(*name),
                                test: match test {
                                    HeaderTest::Present => HeaderTestView::Present,
                                    HeaderTest::Absent => HeaderTestView::Absent,
                                    HeaderTest::Equals(v) => HeaderTestView::Equals(s(*v)),
                                    HeaderTest::NotEquals(v) => HeaderTestView::NotEquals(s(*v)),
                                    HeaderTest::OneOf(vs) => {
                                        HeaderTestView::OneOf(vs.iter().map(|v| s(*v)).collect())
                                    }
                                    HeaderTest::Prefix(v) => HeaderTestView::Prefix(s(*v)),
                                },
                            },
                            other => panic!("condition {other:?} is not translated"),
                        })
                        .collect(),
                }
            })
            .collect();
        PolicyView {
            trust_domains,
            intents,
            rules,
        }
    }
}

/// A JSON string literal (also valid in Cedar and Rego for our strings).
pub fn quote(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}
