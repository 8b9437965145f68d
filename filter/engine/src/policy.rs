//! A loaded policy: the wire model, checked once, plus the lookup indexes the
//! per-request path uses (route trie, per-intent subject indexes).

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// FxHash (rustc's): keys are policy strings; lookups cannot grow the table.
#[derive(Default, Clone, Copy)]
pub(crate) struct Fx(u64);
impl Hasher for Fx {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes(c.try_into().unwrap_or([0; 8]));
            self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn write_u8(&mut self, b: u8) {
        self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}
pub(crate) type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<Fx>>;
type FxSet<K> = HashSet<K, BuildHasherDefault<Fx>>;

use crate::chain::ChainLimits;
use crate::codec::{self, DecodeError};
use crate::decision::RuleIdx;
use crate::model::{
    ClaimTest, CompiledPolicy, Condition, HeaderTest, IdSegment, Method, Principal, Segment, StrId,
    Subject, UserTest,
};
use crate::routes::{Router, Template};
use crate::spiffe::{self, SpiffeId};

/// Why a decoded policy is inconsistent (a compiler bug or tampering: the
/// hash matched, so these bytes were written this way).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A string index past the string table.
    #[error("compiled policy refers to string #{0}, which does not exist")]
    BadString(StrId),
    /// An intent index past the intent table.
    #[error("rule `{rule}` refers to intent #{intent}, which does not exist")]
    BadIntent {
        /// Rule id.
        rule: String,
        /// Bad index.
        intent: u32,
    },
    /// `**` somewhere other than last.
    #[error("intent `{0}` has a `**` that is not the last segment")]
    RestNotLast(String),
    /// A trust domain, SPIFFE ID or pattern that does not parse.
    #[error("compiled policy has an invalid identity `{0}`")]
    BadIdentity(String),
    /// Method bits outside the known methods.
    #[error("intent `{0}` has unknown method bits")]
    BadMethods(String),
    /// A host or header name that is not lowercase.
    #[error("compiled policy has a host or header name that is not lowercase: `{0}`")]
    NotLowercase(String),
    /// A rule that could never apply.
    #[error("rule `{0}` has no subject or no intent")]
    EmptyRule(String),
    /// The bytes are not a compiled policy (framing, version, hash, body).
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// More rules or intents than the engine indexes.
    #[error("compiled policy has too many rules or intents")]
    TooLarge,
}

/// Rules of one intent (or of unclassified requests), indexed by subject kind.
#[derive(Debug, Default, Clone)]
struct SubjectIndex {
    exact: FxMap<Box<str>, Vec<RuleIdx>>,
    domain: FxMap<Box<str>, Vec<RuleIdx>>,
    patterns: Vec<(PatternIdx, RuleIdx)>,
    any: Vec<RuleIdx>,
}

type PatternIdx = u32;

/// The rules of one intent slot, by the credential they match.
#[derive(Debug, Default, Clone)]
struct IntentRules {
    /// Rules matched against the mTLS peer.
    peer: SubjectIndex,
    /// Rules matched against the JWT-SVID subject.
    jwt_svid: SubjectIndex,
    /// Rules that need only a verified end user.
    user: Vec<RuleIdx>,
}

/// Which verified identity a candidate rule was found by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FoundBy {
    /// The mTLS peer.
    Peer,
    /// The JWT-SVID subject.
    JwtSvid,
    /// The end user.
    User,
}

/// A SPIFFE ID pattern with its strings resolved.
#[derive(Debug, Clone)]
struct Pattern {
    trust_domain: Box<str>,
    segments: Vec<PatternSeg>,
}

#[derive(Debug, Clone)]
enum PatternSeg {
    Literal(Box<str>),
    Any,
    Rest,
}

impl Pattern {
    fn matches(&self, id: &SpiffeId) -> bool {
        if *self.trust_domain != *id.trust_domain() {
            return false;
        }
        let mut actual = id.segments();
        for seg in &self.segments {
            match seg {
                PatternSeg::Rest => return true,
                PatternSeg::Any => {
                    if actual.next().is_none() {
                        return false;
                    }
                }
                PatternSeg::Literal(want) => {
                    if actual.next() != Some(want) {
                        return false;
                    }
                }
            }
        }
        actual.next().is_none()
    }
}

/// A validated, indexed policy, ready for [`crate::evaluate`].
#[derive(Debug, Clone)]
pub struct Policy {
    compiled: CompiledPolicy,
    hash: [u8; 32],
    hash_hex: String,
    trust_domains: FxSet<Box<str>>,
    router: Router,
    patterns: Vec<Pattern>,
    /// One per intent, then one for unclassified requests.
    by_intent: Vec<IntentRules>,
    condition_headers: Vec<String>,
}

impl Policy {
    /// Decodes compiled bytes (framing, hash, body) and validates them.
    pub fn decode(bytes: &[u8]) -> Result<Policy, PolicyError> {
        let (compiled, hash) = codec::decode(bytes)?;
        Policy::from_compiled(compiled, hash)
    }

    /// Checks every index and identity in `compiled` and builds the indexes.
    pub fn from_compiled(compiled: CompiledPolicy, hash: [u8; 32]) -> Result<Policy, PolicyError> {
        let str_of = |id: StrId| -> Result<&str, PolicyError> {
            compiled
                .strings
                .get(id as usize)
                .map(String::as_str)
                .ok_or(PolicyError::BadString(id))
        };
        if compiled.rules.len() > u32::MAX as usize / 2
            || compiled.intents.len() > u32::MAX as usize / 2
        {
            return Err(PolicyError::TooLarge);
        }
        str_of(compiled.name)?;

        let mut trust_domains = FxSet::default();
        for td in &compiled.trust_domains {
            let td = str_of(*td)?;
            spiffe::check_trust_domain(td).map_err(|_| PolicyError::BadIdentity(td.to_owned()))?;
            trust_domains.insert(Box::from(td));
        }

        let all_methods = Method::ALL.iter().fold(0u16, |acc, m| acc | m.bit());
        let mut templates = Vec::new();
        for (idx, intent) in compiled.intents.iter().enumerate() {
            let name = str_of(intent.name)?;
            if intent.methods & !all_methods != 0 {
                return Err(PolicyError::BadMethods(name.to_owned()));
            }
            let host = intent.host.map(&str_of).transpose()?;
            if let Some(h) = host {
                if h.bytes().any(|b| b.is_ascii_uppercase()) {
                    return Err(PolicyError::NotLowercase(h.to_owned()));
                }
            }
            for route in &intent.routes {
                let last = route.segments.len().saturating_sub(1);
                for (i, seg) in route.segments.iter().enumerate() {
                    match seg {
                        Segment::Literal(id) => {
                            str_of(*id)?;
                        }
                        Segment::Rest if i != last => {
                            return Err(PolicyError::RestNotLast(name.to_owned()))
                        }
                        Segment::Rest | Segment::Param => {}
                    }
                }
                templates.push((idx as u32, route, intent.methods, host));
            }
        }
        let router = Router::build(
            templates
                .into_iter()
                .map(|(intent, route, methods, host)| Template {
                    intent,
                    segments: &route.segments,
                    methods,
                    host,
                }),
            |id| compiled.strings.get(id as usize).map_or("", String::as_str),
        );

        let mut patterns = Vec::new();
        let mut by_intent = vec![IntentRules::default(); compiled.intents.len() + 1];
        let mut condition_headers: Vec<String> = Vec::new();
        for (rule_idx, rule) in compiled.rules.iter().enumerate() {
            let rule_idx = rule_idx as RuleIdx;
            let rule_id = str_of(rule.id)?;
            let is_user_rule = rule.principal == Principal::User;
            if rule.subjects.is_empty() != is_user_rule
                || (rule.intents.is_empty() && !rule.unclassified)
            {
                return Err(PolicyError::EmptyRule(rule_id.to_owned()));
            }
            if let Principal::JwtSvidVia(via) = &rule.principal {
                if via.is_empty() {
                    return Err(PolicyError::EmptyRule(rule_id.to_owned()));
                }
                for subject in via {
                    validate_subject(subject, &str_of)?;
                }
            }
            for cond in &rule.conditions {
                validate_condition(cond, &str_of, &mut condition_headers)?;
            }
            let mut slots: Vec<usize> = Vec::with_capacity(rule.intents.len() + 1);
            for intent in &rule.intents {
                if *intent as usize >= compiled.intents.len() {
                    return Err(PolicyError::BadIntent {
                        rule: rule_id.to_owned(),
                        intent: *intent,
                    });
                }
                slots.push(*intent as usize);
            }
            if rule.unclassified {
                slots.push(compiled.intents.len());
            }
            slots.sort_unstable();
            slots.dedup();
            for slot in &slots {
                if let (true, Some(rules)) = (is_user_rule, by_intent.get_mut(*slot)) {
                    rules.user.push(rule_idx);
                }
            }
            for subject in &rule.subjects {
                let resolved = resolve_subject(subject, &str_of, &mut patterns)?;
                for slot in &slots {
                    let Some(rules) = by_intent.get_mut(*slot) else {
                        continue;
                    };
                    let index = match rule.principal {
                        Principal::Peer | Principal::PeerBoundJwtSvid => &mut rules.peer,
                        Principal::JwtSvid | Principal::JwtSvidVia(_) => &mut rules.jwt_svid,
                        Principal::User => continue,
                    };
                    match &resolved {
                        Resolved::Any => index.any.push(rule_idx),
                        Resolved::Domain(td) => {
                            index.domain.entry(td.clone()).or_default().push(rule_idx)
                        }
                        Resolved::Exact(id) => {
                            index.exact.entry(id.clone()).or_default().push(rule_idx)
                        }
                        Resolved::Pattern(p) => index.patterns.push((*p, rule_idx)),
                    }
                }
            }
        }

        for subject in &compiled.chain.forwarders {
            validate_subject(subject, &str_of)?;
        }

        let hash_hex = codec::hex(&hash);
        Ok(Policy {
            compiled,
            hash,
            hash_hex,
            trust_domains,
            router,
            patterns,
            by_intent,
            condition_headers,
        })
    }

    /// The wire model this policy was loaded from.
    pub fn compiled(&self) -> &CompiledPolicy {
        &self.compiled
    }

    /// The content hash of the compiled body.
    pub fn hash(&self) -> &[u8; 32] {
        &self.hash
    }

    /// The content hash as lowercase hex (it appears in every audit line).
    pub fn hash_hex(&self) -> &str {
        &self.hash_hex
    }

    /// The policy's name.
    pub fn name(&self) -> &str {
        self.string(self.compiled.name)
    }

    /// Whole-policy dry-run.
    pub fn is_dry_run(&self) -> bool {
        self.compiled.dry_run
    }

    /// Policy bound on certificate lifetime, seconds.
    pub fn max_cert_lifetime_secs(&self) -> Option<u64> {
        self.compiled.limits.max_cert_lifetime_secs
    }

    /// The name of intent `idx` (`""` if out of range).
    pub fn intent_name(&self, idx: u32) -> &str {
        self.compiled
            .intents
            .get(idx as usize)
            .map_or("", |i| self.string(i.name))
    }

    /// The id of rule `idx` (`""` if out of range).
    pub fn rule_id(&self, idx: RuleIdx) -> &str {
        self.compiled
            .rules
            .get(idx as usize)
            .map_or("", |r| self.string(r.id))
    }

    /// Whether rule `idx` is a dry-run rule.
    pub fn rule_is_dry_run(&self, idx: RuleIdx) -> bool {
        self.compiled
            .rules
            .get(idx as usize)
            .is_some_and(|r| r.dry_run)
    }

    /// Number of rules.
    pub fn rule_count(&self) -> usize {
        self.compiled.rules.len()
    }

    /// Lowercase names of the request headers that rule conditions read; the
    /// filter fetches only these.
    pub fn condition_headers(&self) -> &[String] {
        &self.condition_headers
    }

    /// Whether workloads of this trust domain may be subjects.
    pub fn trusts_domain(&self, trust_domain: &str) -> bool {
        self.trust_domains.contains(trust_domain)
    }

    /// Number of route trie nodes (size reports).
    pub fn route_nodes(&self) -> usize {
        self.router.node_count()
    }

    pub(crate) fn string(&self, id: StrId) -> &str {
        self.compiled
            .strings
            .get(id as usize)
            .map_or("", String::as_str)
    }

    pub(crate) fn router(&self) -> &Router {
        &self.router
    }

    /// Calls `visit` with every rule of this intent slot (`None` =
    /// unclassified) whose subjects match `id` for the credential `by`
    /// (for [`FoundBy::User`], every user rule). A rule may be visited more
    /// than once when several of its subjects match.
    pub(crate) fn for_each_candidate(
        &self,
        intent: Option<u32>,
        by: FoundBy,
        id: Option<&SpiffeId>,
        mut visit: impl FnMut(RuleIdx),
    ) {
        let slot = intent.map_or(self.compiled.intents.len(), |i| i as usize);
        let Some(rules) = self.by_intent.get(slot) else {
            return;
        };
        let index = match (by, id) {
            (FoundBy::User, _) => {
                rules.user.iter().copied().for_each(visit);
                return;
            }
            (_, None) => return,
            (FoundBy::Peer, Some(_)) => &rules.peer,
            (FoundBy::JwtSvid, Some(_)) => &rules.jwt_svid,
        };
        let Some(id) = id else { return };
        if let Some(found) = index.exact.get(id.as_str()) {
            found.iter().copied().for_each(&mut visit);
        }
        if let Some(found) = index.domain.get(id.trust_domain()) {
            found.iter().copied().for_each(&mut visit);
        }
        for (pattern, rule) in &index.patterns {
            if self
                .patterns
                .get(*pattern as usize)
                .is_some_and(|p| p.matches(id))
            {
                visit(*rule);
            }
        }
        index.any.iter().copied().for_each(visit);
    }

    /// Whether `id` matches `subject` (used for conditions and forwarders,
    /// where subject lists are short).
    pub(crate) fn subject_matches(&self, subject: &Subject, id: &SpiffeId) -> bool {
        match subject {
            Subject::AnyAuthenticated => true,
            Subject::TrustDomain(td) => self.string(*td) == id.trust_domain(),
            Subject::Exact(exact) => self.string(*exact) == id.as_str(),
            Subject::Pattern {
                trust_domain,
                segments,
            } => {
                if self.string(*trust_domain) != id.trust_domain() {
                    return false;
                }
                let mut actual = id.segments();
                for seg in segments {
                    match seg {
                        IdSegment::Rest => return true,
                        IdSegment::Any => {
                            if actual.next().is_none() {
                                return false;
                            }
                        }
                        IdSegment::Literal(want) => {
                            if actual.next() != Some(self.string(*want)) {
                                return false;
                            }
                        }
                    }
                }
                actual.next().is_none()
            }
        }
    }

    /// Whether `id` matches any of `subjects`.
    pub(crate) fn any_subject_matches(&self, subjects: &[Subject], id: &SpiffeId) -> bool {
        subjects.iter().any(|s| self.subject_matches(s, id))
    }

    /// Whether the policy trusts this peer to forward the hops before it.
    pub fn may_forward_chain(&self, peer: &SpiffeId) -> bool {
        self.any_subject_matches(&self.compiled.chain.forwarders, peer)
    }

    /// Chain depth and lifetime bounds.
    pub fn chain_limits(&self) -> ChainLimits {
        ChainLimits {
            max_depth: usize::from(self.compiled.chain.max_depth),
            lifetime_secs: u64::from(self.compiled.chain.lifetime_secs),
        }
    }

    /// Names of the user-token claims that rule conditions read.
    pub fn user_claim_names(&self) -> impl Iterator<Item = &str> {
        self.compiled
            .rules
            .iter()
            .flat_map(|r| &r.conditions)
            .filter_map(|c| match c {
                Condition::User(UserTest::Claim { name, .. }) => Some(self.string(*name)),
                _ => None,
            })
    }
}

fn validate_subject<'a>(
    subject: &Subject,
    str_of: &impl Fn(StrId) -> Result<&'a str, PolicyError>,
) -> Result<(), PolicyError> {
    resolve_subject(subject, str_of, &mut Vec::new()).map(|_| ())
}

fn validate_condition<'a>(
    cond: &Condition,
    str_of: &impl Fn(StrId) -> Result<&'a str, PolicyError>,
    condition_headers: &mut Vec<String>,
) -> Result<(), PolicyError> {
    let strs = |ids: &[StrId]| ids.iter().try_for_each(|id| str_of(*id).map(|_| ()));
    match cond {
        Condition::Header { name, test } => {
            let name = str_of(*name)?;
            if name.bytes().any(|b| b.is_ascii_uppercase()) {
                return Err(PolicyError::NotLowercase(name.to_owned()));
            }
            if !condition_headers.iter().any(|h| h == name) {
                condition_headers.push(name.to_owned());
            }
            match test {
                HeaderTest::Present | HeaderTest::Absent => Ok(()),
                HeaderTest::Equals(v) | HeaderTest::NotEquals(v) | HeaderTest::Prefix(v) => {
                    strs(&[*v])
                }
                HeaderTest::OneOf(vs) => strs(vs),
            }
        }
        Condition::Origin(subjects) | Condition::AnyHop(subjects) | Condition::NoHop(subjects) => {
            subjects
                .iter()
                .try_for_each(|s| validate_subject(s, str_of))
        }
        Condition::Depth { .. } | Condition::Complete => Ok(()),
        Condition::Purpose(names) => strs(names),
        Condition::User(test) => match test {
            UserTest::Present => Ok(()),
            UserTest::Subject(v) | UserTest::Issuer(v) => strs(v),
            UserTest::HasScope(v) => strs(&[*v]),
            UserTest::Claim { name, test } => {
                str_of(*name)?;
                match test {
                    ClaimTest::Equals(v) | ClaimTest::Contains(v) => strs(&[*v]),
                    ClaimTest::OneOf(vs) => strs(vs),
                }
            }
        },
    }
}

enum Resolved {
    Any,
    Domain(Box<str>),
    Exact(Box<str>),
    Pattern(PatternIdx),
}

fn resolve_subject<'a>(
    subject: &Subject,
    str_of: &impl Fn(StrId) -> Result<&'a str, PolicyError>,
    patterns: &mut Vec<Pattern>,
) -> Result<Resolved, PolicyError> {
    Ok(match subject {
        Subject::AnyAuthenticated => Resolved::Any,
        Subject::TrustDomain(td) => {
            let td = str_of(*td)?;
            spiffe::check_trust_domain(td).map_err(|_| PolicyError::BadIdentity(td.to_owned()))?;
            Resolved::Domain(td.into())
        }
        Subject::Exact(id) => {
            let id = str_of(*id)?;
            SpiffeId::parse(id).map_err(|_| PolicyError::BadIdentity(id.to_owned()))?;
            Resolved::Exact(id.into())
        }
        Subject::Pattern {
            trust_domain,
            segments,
        } => {
            let td = str_of(*trust_domain)?;
            spiffe::check_trust_domain(td).map_err(|_| PolicyError::BadIdentity(td.to_owned()))?;
            let last = segments.len().saturating_sub(1);
            let mut resolved = Vec::with_capacity(segments.len());
            for (i, seg) in segments.iter().enumerate() {
                resolved.push(match seg {
                    IdSegment::Literal(s) => {
                        let s = str_of(*s)?;
                        spiffe::check_path_segment(s)
                            .map_err(|_| PolicyError::BadIdentity(s.to_owned()))?;
                        PatternSeg::Literal(s.into())
                    }
                    IdSegment::Any => PatternSeg::Any,
                    IdSegment::Rest if i == last => PatternSeg::Rest,
                    IdSegment::Rest => {
                        return Err(PolicyError::BadIdentity(format!(
                            "spiffe://{td}/.../**/..."
                        )))
                    }
                });
            }
            let idx = patterns.len() as PatternIdx;
            patterns.push(Pattern {
                trust_domain: td.into(),
                segments: resolved,
            });
            Resolved::Pattern(idx)
        }
    })
}
