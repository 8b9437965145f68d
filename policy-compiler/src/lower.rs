//! [`checked::Policy`] → [`CompiledPolicy`]: interning and final shaping.
//!
//! Nothing here can fail: every check already passed. Strings are interned
//! once (each distinct string appears once in the table), and each rule's
//! subjects are reduced to the ones no other subject of the same rule covers,
//! which keeps the engine's indexes small without changing what matches.

use std::collections::HashMap;

use meshward_engine::model::{
    ChainSettings, ClaimTest, CompiledPolicy, Condition, HeaderTest, IdSegment, Intent, IntentIdx,
    Limits, Principal, Route, Rule, Segment, StrId, Subject, UserTest,
};

use crate::checked::{self, IdPatternSegment, TemplateSegment};

/// Lowers a checked policy into the wire model.
pub fn lower(policy: &checked::Policy) -> CompiledPolicy {
    let mut strings = Interner::default();
    let name = strings.intern(&policy.name);
    let trust_domains = policy
        .trust_domains
        .iter()
        .map(|td| strings.intern(td))
        .collect();
    let intents = policy
        .intents
        .iter()
        .map(|intent| lower_intent(&mut strings, intent))
        .collect();
    let rules = policy
        .rules
        .iter()
        .map(|rule| lower_rule(&mut strings, rule))
        .collect();
    let chain = ChainSettings {
        forwarders: lower_subjects(&mut strings, &policy.chain.forwarders),
        max_depth: policy.chain.max_depth,
        lifetime_secs: policy.chain.lifetime_secs,
    };
    CompiledPolicy {
        name,
        dry_run: policy.dry_run,
        strings: strings.into_table(),
        trust_domains,
        limits: Limits {
            max_cert_lifetime_secs: policy.max_cert_lifetime_secs,
        },
        intents,
        rules,
        chain,
    }
}

/// Hands out one [`StrId`] per distinct string.
#[derive(Default)]
struct Interner {
    ids: HashMap<String, StrId>,
    table: Vec<String>,
}

impl Interner {
    fn intern(&mut self, s: &str) -> StrId {
        if let Some(id) = self.ids.get(s) {
            return *id;
        }
        // INVARIANT: a policy source is far below 4 GiB, so it cannot hold
        // 2^32 distinct strings.
        let id = StrId::from_index(self.table.len()).unwrap_or(StrId(u32::MAX));
        self.table.push(s.to_owned());
        self.ids.insert(s.to_owned(), id);
        id
    }

    fn into_table(self) -> Vec<String> {
        self.table
    }
}

fn lower_intent(strings: &mut Interner, intent: &checked::Intent) -> Intent {
    Intent {
        name: strings.intern(&intent.name),
        methods: intent.methods,
        host: intent.host.as_deref().map(|h| strings.intern(h)),
        routes: intent
            .routes
            .iter()
            .map(|route| Route {
                segments: route
                    .segments
                    .iter()
                    .map(|segment| match segment {
                        TemplateSegment::Literal(text) => Segment::Literal(strings.intern(text)),
                        TemplateSegment::Param => Segment::Param,
                        TemplateSegment::Rest => Segment::Rest,
                    })
                    .collect(),
            })
            .collect(),
    }
}

fn lower_rule(strings: &mut Interner, rule: &checked::Rule) -> Rule {
    Rule {
        id: strings.intern(&rule.id),
        effect: rule.effect,
        dry_run: rule.dry_run,
        principal: match &rule.principal {
            checked::Principal::Peer => Principal::Peer,
            checked::Principal::JwtSvid => Principal::JwtSvid,
            checked::Principal::JwtSvidVia(via) => {
                Principal::JwtSvidVia(lower_subjects(strings, via))
            }
            checked::Principal::PeerBoundJwtSvid => Principal::PeerBoundJwtSvid,
            checked::Principal::User => Principal::User,
        },
        subjects: lower_subjects(strings, &rule.subjects),
        intents: rule
            .intents
            .iter()
            .map(|i| IntentIdx::from_index(*i).unwrap_or(IntentIdx(u32::MAX)))
            .collect(),
        unclassified: rule.unclassified,
        conditions: rule
            .conditions
            .iter()
            .map(|condition| lower_condition(strings, condition))
            .collect(),
    }
}

fn lower_condition(strings: &mut Interner, condition: &checked::Condition) -> Condition {
    match condition {
        checked::Condition::Header(header) => Condition::Header {
            name: strings.intern(&header.name),
            test: lower_test(strings, &header.test),
        },
        checked::Condition::Origin(subjects) => {
            Condition::Origin(lower_subjects(strings, subjects))
        }
        checked::Condition::AnyHop(subjects) => {
            Condition::AnyHop(lower_subjects(strings, subjects))
        }
        checked::Condition::NoHop(subjects) => Condition::NoHop(lower_subjects(strings, subjects)),
        checked::Condition::Depth { min, max } => Condition::Depth {
            min: *min,
            max: *max,
        },
        checked::Condition::Complete => Condition::Complete,
        checked::Condition::Purpose(names) => Condition::Purpose(intern_all(strings, names)),
        checked::Condition::User(test) => Condition::User(match test {
            checked::UserTest::Present => UserTest::Present,
            checked::UserTest::Subject(values) => UserTest::Subject(intern_all(strings, values)),
            checked::UserTest::Issuer(values) => UserTest::Issuer(intern_all(strings, values)),
            checked::UserTest::HasScope(scope) => UserTest::HasScope(strings.intern(scope)),
            checked::UserTest::Claim { name, test } => UserTest::Claim {
                name: strings.intern(name),
                test: match test {
                    checked::ClaimTest::Equals(v) => ClaimTest::Equals(strings.intern(v)),
                    checked::ClaimTest::OneOf(values) => {
                        ClaimTest::OneOf(intern_all(strings, values))
                    }
                    checked::ClaimTest::Contains(v) => ClaimTest::Contains(strings.intern(v)),
                },
            },
        }),
    }
}

fn intern_all(strings: &mut Interner, values: &[String]) -> Vec<StrId> {
    values.iter().map(|v| strings.intern(v)).collect()
}

/// The minimal subjects of a list, lowered.
fn lower_subjects(strings: &mut Interner, subjects: &[checked::Subject]) -> Vec<Subject> {
    minimal_subjects(subjects)
        .into_iter()
        .map(|subject| lower_subject(strings, subject))
        .collect()
}

/// The subjects that no other kept subject covers, in first-seen order.
fn minimal_subjects(subjects: &[checked::Subject]) -> Vec<&checked::Subject> {
    let mut kept: Vec<&checked::Subject> = Vec::with_capacity(subjects.len());
    for subject in subjects {
        if kept.iter().any(|k| k.covers(subject)) {
            continue;
        }
        kept.retain(|k| !subject.covers(k));
        kept.push(subject);
    }
    kept
}

fn lower_subject(strings: &mut Interner, subject: &checked::Subject) -> Subject {
    match subject {
        checked::Subject::AnyAuthenticated => Subject::AnyAuthenticated,
        checked::Subject::TrustDomain(td) => Subject::TrustDomain(strings.intern(td)),
        checked::Subject::Exact(id) => Subject::Exact(strings.intern(id.as_str())),
        checked::Subject::Pattern(pattern) => Subject::Pattern {
            trust_domain: strings.intern(&pattern.trust_domain),
            segments: pattern
                .segments
                .iter()
                .map(|segment| match segment {
                    IdPatternSegment::Literal(text) => IdSegment::Literal(strings.intern(text)),
                    IdPatternSegment::Any => IdSegment::Any,
                    IdPatternSegment::Rest => IdSegment::Rest,
                })
                .collect(),
        },
    }
}

fn lower_test(strings: &mut Interner, test: &checked::HeaderTest) -> HeaderTest {
    match test {
        checked::HeaderTest::Present => HeaderTest::Present,
        checked::HeaderTest::Absent => HeaderTest::Absent,
        checked::HeaderTest::Equals(v) => HeaderTest::Equals(strings.intern(v)),
        checked::HeaderTest::NotEquals(v) => HeaderTest::NotEquals(strings.intern(v)),
        checked::HeaderTest::OneOf(values) => {
            HeaderTest::OneOf(values.iter().map(|v| strings.intern(v)).collect())
        }
        checked::HeaderTest::Prefix(v) => HeaderTest::Prefix(strings.intern(v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::test_support::{check_source, PREAMBLE};

    fn lowered(body: &str) -> CompiledPolicy {
        let (policy, diagnostics) = check_source(&format!("{PREAMBLE}{body}"));
        let policy = policy.unwrap_or_else(|| panic!("{diagnostics:#?}"));
        lower(&policy)
    }

    #[test]
    fn interns_each_string_once() {
        let compiled = lowered(
            "intent a.example { path \"/a.example/{id}\" }\nallow a.example {\n  subject domain \"a.example\"\n  intent a.example\n  when header \"a.example\" == \"a.example\"\n}\n",
        );
        let count = compiled
            .strings
            .iter()
            .filter(|s| *s == "a.example")
            .count();
        assert_eq!(count, 1);
        let id = compiled
            .strings
            .iter()
            .position(|s| s == "a.example")
            .map(|i| StrId(i as u32))
            .unwrap();
        assert_eq!(compiled.trust_domains[0], id);
        assert_eq!(compiled.intents[0].name, id);
        assert_eq!(
            compiled.intents[0].routes[0].segments,
            [Segment::Literal(id), Segment::Param]
        );
        assert_eq!(compiled.rules[0].id, id);
        assert_eq!(compiled.rules[0].subjects, [Subject::TrustDomain(id)]);
        assert_eq!(
            compiled.rules[0].conditions,
            [Condition::Header {
                name: id,
                test: HeaderTest::Equals(id)
            }]
        );
    }

    #[test]
    fn lowers_chain_settings_principals_and_conditions() {
        let compiled = lowered(
            "group gw {\n  member \"spiffe://a.example/gw\"\n  member \"spiffe://a.example/gw\"\n}\nchain {\n  forwarder group gw\n  forwarder \"spiffe://a.example/*\"\n  max_depth 4\n  lifetime 2m\n}\nintent i { path \"/\" }\nallow r {\n  principal jwt_svid via group gw\n  subject domain \"b.example\"\n  intent i\n  when origin group gw\n  when any_hop \"spiffe://a.example/x\" \"spiffe://a.example/*\"\n  when no_hop \"spiffe://b.example/batch/**\"\n  when depth in 2..3\n  when complete\n  when purpose i other.intent\n  when user subject \"alice\"\n  when user issuer \"https://idp\"\n  when user scope \"s\"\n  when user claim \"g\" in [\"a\", \"b\"]\n  when user claim \"h\" == \"a\"\n  when user claim \"k\" contains \"a\"\n  when user present\n}\nallow u {\n  principal user\n  intent i\n}\n",
        );
        let s = |text: &str| {
            compiled
                .strings
                .iter()
                .position(|s| s == text)
                .map(|i| StrId(i as u32))
                .unwrap_or_else(|| panic!("`{text}` not interned"))
        };
        // Forwarders: the pattern covers the gateway, so only it remains.
        assert_eq!(compiled.chain.forwarders.len(), 1);
        assert_eq!(
            (compiled.chain.max_depth, compiled.chain.lifetime_secs),
            (4, 120)
        );
        let rule = &compiled.rules[0];
        assert_eq!(
            rule.principal,
            Principal::JwtSvidVia(vec![Subject::Exact(s("spiffe://a.example/gw"))])
        );
        assert_eq!(
            rule.conditions,
            [
                Condition::Origin(vec![Subject::Exact(s("spiffe://a.example/gw"))]),
                Condition::AnyHop(vec![Subject::Pattern {
                    trust_domain: s("a.example"),
                    segments: vec![IdSegment::Any],
                }]),
                Condition::NoHop(vec![Subject::Pattern {
                    trust_domain: s("b.example"),
                    segments: vec![IdSegment::Literal(s("batch")), IdSegment::Rest],
                }]),
                Condition::Depth { min: 2, max: 3 },
                Condition::Complete,
                Condition::Purpose(vec![s("i"), s("other.intent")]),
                Condition::User(UserTest::Subject(vec![s("alice")])),
                Condition::User(UserTest::Issuer(vec![s("https://idp")])),
                Condition::User(UserTest::HasScope(s("s"))),
                Condition::User(UserTest::Claim {
                    name: s("g"),
                    test: ClaimTest::OneOf(vec![s("a"), s("b")]),
                }),
                Condition::User(UserTest::Claim {
                    name: s("h"),
                    test: ClaimTest::Equals(s("a")),
                }),
                Condition::User(UserTest::Claim {
                    name: s("k"),
                    test: ClaimTest::Contains(s("a")),
                }),
                Condition::User(UserTest::Present),
            ]
        );
        assert_eq!(compiled.rules[1].principal, Principal::User);
        assert!(compiled.rules[1].subjects.is_empty());
        // The engine accepts what the compiler writes.
        let (bytes, hash) = meshward_engine::codec::encode(&compiled);
        let policy = meshward_engine::Policy::decode(&bytes).unwrap();
        assert_eq!(policy.hash(), &hash);
        assert_eq!(policy.chain_limits().max_depth, 4);
    }

    #[test]
    fn drops_subjects_covered_within_a_rule() {
        let compiled = lowered(
            "group g {\n  member \"spiffe://a.example/ns/x\"\n  member \"spiffe://b.example/y\"\n}\nintent i { path \"/\" }\nallow r {\n  subject group g\n  subject \"spiffe://a.example/ns/*\"\n  intent i\n}\n",
        );
        let subjects = &compiled.rules[0].subjects;
        assert_eq!(subjects.len(), 2, "{subjects:?}");
        assert!(matches!(subjects[0], Subject::Exact(_)));
        assert!(matches!(subjects[1], Subject::Pattern { .. }));
    }
}
