//! The compiled model written back in policy-language words: subjects,
//! principals, conditions and routes as an author would write them (with
//! groups expanded). `diff` compares and prints these; `graph` labels with
//! them.

use meshward_engine::model::{
    ClaimTest, CompiledPolicy, Condition, HeaderTest, IdSegment, Intent, Method, Principal, Route,
    Segment, StrId, Subject, UserTest,
};

/// The interned string, or a marker for a bad index (never in a checked policy).
pub(crate) fn string(p: &CompiledPolicy, id: StrId) -> &str {
    p.strings
        .get(id.index())
        .map_or("<bad string>", String::as_str)
}

fn quoted(value: &str) -> String {
    format!("{value:?}")
}

/// A subject as written after `subject`.
pub(crate) fn subject(p: &CompiledPolicy, subject: &Subject) -> String {
    match subject {
        Subject::AnyAuthenticated => "any_authenticated".to_owned(),
        Subject::TrustDomain(td) => format!("domain {}", quoted(string(p, *td))),
        Subject::Exact(id) => quoted(string(p, *id)),
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
            quoted(&format!("spiffe://{}{path}", string(p, *trust_domain)))
        }
    }
}

/// Subjects separated by spaces, as on one `subject`/`forwarder` line.
pub(crate) fn subjects(p: &CompiledPolicy, list: &[Subject]) -> String {
    list.iter()
        .map(|s| subject(p, s))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A principal as written after `principal`.
pub(crate) fn principal(p: &CompiledPolicy, principal: &Principal) -> String {
    match principal {
        Principal::Peer => "peer".to_owned(),
        Principal::JwtSvid => "jwt_svid".to_owned(),
        Principal::JwtSvidVia(via) => format!("jwt_svid via {}", subjects(p, via)),
        Principal::PeerBoundJwtSvid => "peer_bound_jwt_svid".to_owned(),
        Principal::User => "user".to_owned(),
    }
}

fn quoted_list(p: &CompiledPolicy, values: &[StrId]) -> String {
    let values: Vec<String> = values.iter().map(|v| quoted(string(p, *v))).collect();
    format!("[{}]", values.join(", "))
}

/// A condition as written after `when`.
pub(crate) fn condition(p: &CompiledPolicy, condition: &Condition) -> String {
    match condition {
        Condition::Header { name, test } => {
            let name = quoted(string(p, *name));
            match test {
                HeaderTest::Present => format!("header {name} present"),
                HeaderTest::Absent => format!("header {name} absent"),
                HeaderTest::Equals(v) => format!("header {name} == {}", quoted(string(p, *v))),
                HeaderTest::NotEquals(v) => {
                    format!("header {name} != {}", quoted(string(p, *v)))
                }
                HeaderTest::OneOf(values) => format!("header {name} in {}", quoted_list(p, values)),
                HeaderTest::Prefix(v) => {
                    format!("header {name} starts_with {}", quoted(string(p, *v)))
                }
            }
        }
        Condition::Origin(list) => format!("origin {}", subjects(p, list)),
        Condition::AnyHop(list) => format!("any_hop {}", subjects(p, list)),
        Condition::NoHop(list) => format!("no_hop {}", subjects(p, list)),
        Condition::Depth { min, max } if min == max => format!("depth == {min}"),
        Condition::Depth { min, max } => format!("depth in {min}..{max}"),
        Condition::Complete => "complete".to_owned(),
        Condition::Purpose(names) => {
            let names: Vec<&str> = names.iter().map(|n| string(p, *n)).collect();
            format!("purpose {}", names.join(" "))
        }
        Condition::User(test) => match test {
            UserTest::Present => "user present".to_owned(),
            UserTest::Subject(values) => {
                let values: Vec<String> = values.iter().map(|v| quoted(string(p, *v))).collect();
                format!("user subject {}", values.join(" "))
            }
            UserTest::Issuer(values) => {
                let values: Vec<String> = values.iter().map(|v| quoted(string(p, *v))).collect();
                format!("user issuer {}", values.join(" "))
            }
            UserTest::HasScope(scope) => format!("user scope {}", quoted(string(p, *scope))),
            UserTest::Claim { name, test } => {
                let name = quoted(string(p, *name));
                match test {
                    ClaimTest::Equals(v) => {
                        format!("user claim {name} == {}", quoted(string(p, *v)))
                    }
                    ClaimTest::OneOf(values) => {
                        format!("user claim {name} in {}", quoted_list(p, values))
                    }
                    ClaimTest::Contains(v) => {
                        format!("user claim {name} contains {}", quoted(string(p, *v)))
                    }
                }
            }
        },
    }
}

/// Method names of a bit set; `None` when any method matches.
pub(crate) fn methods(bits: u16) -> Option<String> {
    if bits == 0 {
        return None;
    }
    let names: Vec<&str> = Method::ALL
        .iter()
        .filter(|m| bits & m.bit() != 0)
        .map(|m| m.as_str())
        .collect();
    Some(names.join(" "))
}

/// A route template (`/orders/{}`; gRPC methods read as their path).
pub(crate) fn route(p: &CompiledPolicy, route: &Route) -> String {
    let text: String = route
        .segments
        .iter()
        .map(|segment| match segment {
            Segment::Literal(id) => format!("/{}", string(p, *id)),
            Segment::Param => "/{}".to_owned(),
            Segment::Rest => "/**".to_owned(),
        })
        .collect();
    if text.is_empty() {
        "/".to_owned()
    } else {
        text
    }
}

/// An intent's routes on one line: `GET HEAD /orders /orders/{} host orders.svc`.
pub(crate) fn intent_summary(p: &CompiledPolicy, intent: &Intent) -> String {
    let mut parts = Vec::new();
    if let Some(methods) = methods(intent.methods) {
        parts.push(methods);
    }
    parts.extend(intent.routes.iter().map(|r| route(p, r)));
    if let Some(host) = intent.host {
        parts.push(format!("host {}", string(p, host)));
    }
    parts.join(" ")
}
