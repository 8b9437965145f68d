//! Engine tests through the real bytes path: model → encode → decode → evaluate.

use crate::codec::{self, DecodeError, FORMAT_VERSION};
use crate::decision::RuleIdx;
use crate::model::Effect;
use crate::model::*;
use crate::spiffe::SpiffeId;
use crate::{evaluate, Decision, Policy, PolicyError, Reason, Request};

/// A tiny builder so tests read like policies.
#[derive(Default)]
struct Builder {
    p: CompiledPolicy,
}

impl Default for CompiledPolicy {
    fn default() -> Self {
        CompiledPolicy {
            name: StrId(0),
            dry_run: false,
            strings: vec!["test".into()],
            trust_domains: vec![],
            limits: Limits::default(),
            intents: vec![],
            rules: vec![],
            chain: ChainSettings::default(),
        }
    }
}

impl Builder {
    fn s(&mut self, text: &str) -> StrId {
        if let Some(i) = self.p.strings.iter().position(|s| s == text) {
            return StrId(i as u32);
        }
        self.p.strings.push(text.into());
        StrId((self.p.strings.len() - 1) as u32)
    }
    fn trust(mut self, td: &str) -> Self {
        let id = self.s(td);
        self.p.trust_domains.push(id);
        self
    }
    fn intent(mut self, name: &str, methods: &[Method], paths: &[&str]) -> Self {
        let name = self.s(name);
        let routes = paths
            .iter()
            .map(|p| Route {
                segments: p
                    .trim_start_matches('/')
                    .split('/')
                    .filter(|s| !s.is_empty())
                    .map(|seg| match seg {
                        "**" => Segment::Rest,
                        s if s.starts_with('{') => Segment::Param,
                        s => Segment::Literal(self.s(s)),
                    })
                    .collect(),
            })
            .collect();
        let methods = methods.iter().fold(0, |acc, m| acc | m.bit());
        self.p.intents.push(Intent {
            name,
            methods,
            host: None,
            routes,
        });
        self
    }
    fn rule(mut self, id: &str, effect: Effect, subjects: &[&str], intents: &[u32]) -> Self {
        let id = self.s(id);
        let subjects = subjects.iter().map(|s| self.subject(s)).collect();
        self.p.rules.push(Rule {
            id,
            effect,
            dry_run: false,
            principal: Principal::Peer,
            subjects,
            intents: intents.iter().map(|i| IntentIdx(*i)).collect(),
            unclassified: false,
            conditions: vec![],
        });
        self
    }
    fn subject(&mut self, s: &str) -> Subject {
        if s == "any" {
            return Subject::AnyAuthenticated;
        }
        if let Some(td) = s.strip_prefix("domain:") {
            return Subject::TrustDomain(self.s(td));
        }
        if s.contains('*') {
            let rest = s.trim_start_matches("spiffe://");
            let (td, path) = rest.split_once('/').unwrap();
            let trust_domain = self.s(td);
            let segments = path
                .split('/')
                .map(|seg| match seg {
                    "*" => IdSegment::Any,
                    "**" => IdSegment::Rest,
                    lit => IdSegment::Literal(self.s(lit)),
                })
                .collect();
            return Subject::Pattern {
                trust_domain,
                segments,
            };
        }
        Subject::Exact(self.s(s))
    }
    fn last_rule(&mut self) -> &mut Rule {
        self.p.rules.last_mut().unwrap()
    }
    fn build(self) -> Policy {
        let (bytes, _) = codec::encode(&self.p);
        Policy::decode(&bytes).unwrap()
    }
}

const FRONTEND: &str = "spiffe://shop.example/ns/shop/sa/frontend";
const ORDERS: &str = "spiffe://shop.example/ns/shop/sa/orders";
const BATCH: &str = "spiffe://shop.example/ns/batch/sa/report";

fn shop() -> Builder {
    Builder::default()
        .trust("shop.example")
        .intent(
            "orders.read",
            &[Method::Get, Method::Head],
            &["/orders", "/orders/{id}"],
        )
        .intent("orders.admin", &[], &["/admin/**"])
        .rule(
            "read",
            Effect::Allow,
            &[FRONTEND, "spiffe://shop.example/ns/batch/**"],
            &[0],
        )
        .rule("admin-any", Effect::Allow, &["domain:shop.example"], &[1])
        .rule(
            "no-batch-admin",
            Effect::Deny,
            &["spiffe://shop.example/ns/batch/sa/*"],
            &[1],
        )
}

fn decide(
    policy: &Policy,
    peer: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Decision {
    let id = SpiffeId::parse(peer).map_err(|_| Reason::MalformedSpiffeId);
    evaluate(
        policy,
        &Request::from_peer(
            id.as_ref().map_err(|r| *r),
            method,
            path,
            "orders.shop.svc:8443",
            &headers,
        ),
    )
}

#[test]
fn allow_deny_default_and_unclassified() {
    let p = shop().build();
    let d = decide(&p, FRONTEND, "GET", "/orders/42", &[]);
    assert_eq!(
        (d.effect, d.reason, d.rule),
        (Effect::Allow, Reason::AllowedByRule, Some(RuleIdx(0)))
    );
    assert_eq!(p.intent_name(d.intent.unwrap()), "orders.read");
    assert_eq!(d.http_status(), 200);

    let d = decide(&p, FRONTEND, "POST", "/orders/42", &[]);
    assert_eq!(
        (d.effect, d.reason, d.intent),
        (Effect::Deny, Reason::Unclassified, None)
    );
    assert_eq!(d.http_status(), 403);

    let d = decide(&p, ORDERS, "GET", "/orders", &[]);
    assert_eq!((d.effect, d.reason), (Effect::Deny, Reason::NoMatchingRule));

    // Pattern with `**` grants batch workloads reads.
    let d = decide(&p, BATCH, "GET", "/orders", &[]);
    assert_eq!(d.effect, Effect::Allow);
}

#[test]
fn deny_overrides_allow() {
    let p = shop().build();
    let d = decide(&p, FRONTEND, "DELETE", "/admin/users", &[]);
    assert_eq!(
        (d.effect, p.rule_id(d.rule.unwrap())),
        (Effect::Allow, "admin-any")
    );
    let d = decide(&p, BATCH, "DELETE", "/admin/users", &[]);
    assert_eq!((d.effect, d.reason), (Effect::Deny, Reason::DeniedByRule));
    assert_eq!(p.rule_id(d.rule.unwrap()), "no-batch-admin");
}

#[test]
fn identity_failures_and_trust_domains() {
    let p = shop().build();
    let d = decide(
        &p,
        "spiffe://evil.example/ns/shop/sa/frontend",
        "GET",
        "/orders",
        &[],
    );
    assert_eq!(
        (d.effect, d.reason, d.http_status()),
        (Effect::Deny, Reason::UntrustedTrustDomain, 401)
    );
    let no_headers: &[(&str, &str)] = &[];
    let d = evaluate(
        &p,
        &Request::from_peer(
            Err(Reason::NoPeerCertificate),
            "GET",
            "/orders",
            "x",
            &no_headers,
        ),
    );
    assert_eq!(
        (d.reason, d.http_status()),
        (Reason::NoPeerCertificate, 401)
    );
}

#[test]
fn path_tricks_never_classify() {
    let p = shop().build();
    for path in [
        "/orders/../admin/x",
        "/orders/%2e%2e",
        "//orders",
        "/orders%2f42",
        "/orders/42;x",
        "/orders/",
    ] {
        let d = decide(&p, FRONTEND, "GET", path, &[]);
        assert_eq!(
            (d.effect, d.reason),
            (Effect::Deny, Reason::NonCanonicalPath),
            "{path}"
        );
    }
    let d = decide(&p, FRONTEND, "get", "/orders", &[]);
    assert_eq!(d.reason, Reason::BadMethod);
}

#[test]
fn dry_run_rule_reports_would_deny() {
    let mut b = shop().rule("no-frontend-reads", Effect::Deny, &[FRONTEND], &[0]);
    b.last_rule().dry_run = true;
    let p = b.build();
    let d = decide(&p, FRONTEND, "GET", "/orders/1", &[]);
    assert_eq!(d.effect, Effect::Allow);
    assert!(d.would_deny());
    let would = d.would_be.unwrap();
    assert_eq!(p.rule_id(would.rule.unwrap()), "no-frontend-reads");
    assert_eq!(would.reason, Reason::DeniedByRule);
}

#[test]
fn dry_run_policy_lets_everything_through() {
    let mut b = shop();
    b.p.dry_run = true;
    let p = b.build();
    let d = decide(&p, ORDERS, "GET", "/orders", &[]);
    assert_eq!((d.effect, d.reason), (Effect::Allow, Reason::PolicyDryRun));
    assert_eq!(d.would_be.unwrap().reason, Reason::NoMatchingRule);
    let d = decide(&p, FRONTEND, "GET", "/orders", &[]);
    assert_eq!(d.would_be.unwrap().effect, Effect::Allow);
    assert!(!d.would_deny());
}

#[test]
fn header_conditions() {
    let mut b = shop();
    let env = b.s("x-env");
    let prod = b.s("prod");
    b.p.rules[0].conditions = vec![Condition::Header {
        name: env,
        test: HeaderTest::Equals(prod),
    }];
    let dbg = b.s("x-debug");
    b.p.rules[0].conditions.push(Condition::Header {
        name: dbg,
        test: HeaderTest::Absent,
    });
    let p = b.build();
    assert_eq!(p.condition_headers(), ["x-env", "x-debug"]);
    assert_eq!(
        decide(&p, FRONTEND, "GET", "/orders", &[("x-env", "prod")]).effect,
        Effect::Allow
    );
    assert_eq!(
        decide(&p, FRONTEND, "GET", "/orders", &[("X-Env", "prod")]).effect,
        Effect::Allow
    );
    assert_eq!(
        decide(&p, FRONTEND, "GET", "/orders", &[("x-env", "dev")]).effect,
        Effect::Deny
    );
    assert_eq!(
        decide(&p, FRONTEND, "GET", "/orders", &[]).effect,
        Effect::Deny
    );
    assert_eq!(
        decide(
            &p,
            FRONTEND,
            "GET",
            "/orders",
            &[("x-env", "prod"), ("x-debug", "1")]
        )
        .effect,
        Effect::Deny
    );
}

#[test]
fn unclassified_rules() {
    let mut b = shop().rule("health", Effect::Allow, &["any"], &[]);
    b.last_rule().unclassified = true;
    let p = b.build();
    let d = decide(&p, ORDERS, "GET", "/healthz", &[]);
    assert_eq!((d.effect, d.intent), (Effect::Allow, None));
}

#[test]
fn codec_rejects_corruption() {
    let (bytes, hash) = codec::encode(&shop().p);
    assert_eq!(Policy::decode(&bytes).unwrap().hash(), &hash);
    assert_eq!(codec::decode(&bytes[..10]), Err(DecodeError::TooShort(10)));
    let mut bad = bytes.clone();
    bad[0] = b'X';
    assert_eq!(codec::decode(&bad), Err(DecodeError::BadMagic));
    let mut bad = bytes.clone();
    bad[4..6].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    assert_eq!(
        codec::decode(&bad),
        Err(DecodeError::UnsupportedVersion {
            found: FORMAT_VERSION + 1
        })
    );
    let mut bad = bytes.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert_eq!(codec::decode(&bad), Err(DecodeError::HashMismatch));
    let mut bad = bytes.clone();
    bad.push(0);
    assert!(matches!(
        codec::decode(&bad),
        Err(DecodeError::LengthMismatch { .. })
    ));
}

#[test]
fn inconsistent_model_is_rejected() {
    let mut b = shop();
    b.p.rules[0].intents = vec![IntentIdx(99)];
    let (bytes, _) = codec::encode(&b.p);
    assert!(matches!(
        Policy::decode(&bytes),
        Err(PolicyError::BadIntent {
            intent: IntentIdx(99),
            ..
        })
    ));
    let mut b = shop();
    b.p.intents[0].name = StrId(12345);
    let (bytes, _) = codec::encode(&b.p);
    assert_eq!(
        Policy::decode(&bytes).unwrap_err(),
        PolicyError::BadString(StrId(12345))
    );
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Policy::decode(&bytes);
        }

        #[test]
        fn flipped_bytes_are_rejected(pos in 0usize..4096, bit in 0u8..8) {
            let (bytes, _) = codec::encode(&shop().p);
            let mut bad = bytes.clone();
            let i = pos % bad.len();
            bad[i] ^= 1 << bit;
            // The hash covers the body; the header fields are each checked.
            prop_assert!(Policy::decode(&bad).is_err());
        }

        #[test]
        fn evaluation_is_deterministic_and_denies_win(
            path in "(/[a-z0-9%.;]{0,6}){0,4}",
            method in prop::sample::select(vec!["GET", "POST", "DELETE", "HEAD"]),
            peer in prop::sample::select(vec![FRONTEND, ORDERS, BATCH]),
        ) {
            let p = shop().build();
            let a = decide(&p, peer, method, &path, &[]);
            let b = decide(&p, peer, method, &path, &[]);
            prop_assert_eq!(a, b);
            // `no-batch-admin` matches batch on admin paths: never allowed.
            if peer == BATCH && a.intent == Some(IntentIdx(1)) {
                prop_assert_eq!(a.effect, Effect::Deny);
            }
        }

        #[test]
        fn canonical_paths_classify_consistently(segs in proptest::collection::vec("[a-z0-9]{1,5}", 0..6)) {
            let path = format!("/{}", segs.join("/"));
            prop_assert!(crate::path::is_canonical(&path));
        }
    }
}

#[test]
fn a_refused_certificate_is_not_rescued_by_a_token() {
    let mut b = shop();
    b.p.rules[0].principal = Principal::JwtSvid;
    let p = b.build();
    let jwt = SpiffeId::parse(FRONTEND).unwrap();
    let no_headers: &[(&str, &str)] = &[];
    let with_peer_error = |reason| {
        let mut req = Request::from_peer(Err(reason), "GET", "/orders", "x", &no_headers);
        req.jwt_svid = Some(Ok(&jwt));
        evaluate(&p, &req)
    };
    // No certificate at all: the token carries the request.
    assert_eq!(
        with_peer_error(Reason::NoPeerCertificate).effect,
        Effect::Allow
    );
    // A certificate that was presented and refused is a deny with its reason.
    for reason in [
        Reason::CertRevoked,
        Reason::SpiffeIdRevoked,
        Reason::CertLifetimeExceedsBound,
    ] {
        let d = with_peer_error(reason);
        assert_eq!(
            (d.effect, d.reason, d.http_status()),
            (Effect::Deny, reason, 401)
        );
    }
}

#[test]
fn a_repeated_condition_header_is_a_deny() {
    let mut b = shop();
    let env = b.s("x-env");
    let prod = b.s("prod");
    b.p.rules[0].conditions = vec![Condition::Header {
        name: env,
        test: HeaderTest::NotEquals(prod),
    }];
    let p = b.build();
    assert_eq!(
        decide(&p, FRONTEND, "GET", "/orders", &[("x-env", "dev")]).effect,
        Effect::Allow
    );
    let d = decide(
        &p,
        FRONTEND,
        "GET",
        "/orders",
        &[("x-env", "dev"), ("X-Env", "prod")],
    );
    assert_eq!(
        (d.effect, d.reason),
        (Effect::Deny, Reason::DuplicateHeader)
    );
    // Headers no rule reads may repeat freely.
    assert_eq!(
        decide(
            &p,
            FRONTEND,
            "GET",
            "/orders",
            &[("x-env", "dev"), ("accept", "a"), ("accept", "b")]
        )
        .effect,
        Effect::Allow
    );
}

/// `check_rule` agrees with `evaluate`: a request is allowed exactly when
/// some allow rule holds and no deny rule does, the deciding rule holds, and
/// a rule that does not hold says which requirement failed first.
#[test]
fn check_rule_agrees_with_evaluate() {
    let p = shop().build();
    let peers = [FRONTEND, ORDERS, BATCH, "spiffe://other.example/x"];
    let requests = [
        ("GET", "/orders/42"),
        ("GET", "/orders"),
        ("DELETE", "/admin/users"),
        ("POST", "/orders/42"),
        ("GET", "/nothing"),
    ];
    for peer in peers {
        for (method, path) in requests {
            let id = SpiffeId::parse(peer).unwrap();
            let headers: &[(&str, &str)] = &[];
            let req = Request::from_peer(Ok(&id), method, path, "orders.shop.svc", &headers);
            let decision = evaluate(&p, &req);
            let checks: Vec<Result<crate::RuleCheck, Decision>> = (0..p.rule_count() as u32)
                .map(|r| crate::check_rule(&p, &req, RuleIdx(r)))
                .collect();
            if let Some(Err(deny)) = checks.first() {
                assert_eq!(*deny, decision, "{peer} {method} {path}");
                continue;
            }
            let holds = |effect: Effect| {
                checks.iter().enumerate().any(|(r, c)| {
                    *c == Ok(crate::RuleCheck::Holds) && p.compiled().rules[r].effect == effect
                })
            };
            let allowed = holds(Effect::Allow) && !holds(Effect::Deny);
            assert_eq!(
                allowed,
                decision.effect == Effect::Allow,
                "{peer} {method} {path}"
            );
            if let Some(rule) = decision.rule {
                assert_eq!(checks[rule.index()], Ok(crate::RuleCheck::Holds));
            }
        }
    }
    // Which requirement failed first.
    let id = SpiffeId::parse(ORDERS).unwrap();
    let headers: &[(&str, &str)] = &[];
    let req = Request::from_peer(Ok(&id), "GET", "/orders/1", "orders.shop.svc", &headers);
    assert_eq!(
        crate::check_rule(&p, &req, RuleIdx(0)),
        Ok(crate::RuleCheck::Subject)
    );
    let req = Request::from_peer(Ok(&id), "DELETE", "/orders/1", "orders.shop.svc", &headers);
    assert_eq!(
        crate::check_rule(&p, &req, RuleIdx(0)),
        Ok(crate::RuleCheck::Intent)
    );
}
