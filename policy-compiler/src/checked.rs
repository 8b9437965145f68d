//! The checked policy: every name resolved, every ID parsed once, every check
//! passed. Lowering turns it into the wire model without further validation.
//!
//! Spans stay on the declarations (rules, intents, routes, tests) so tools can
//! point back at the source, e.g. `meshward explain` naming a rule's line.

use meshward_engine::model::Effect;
use meshward_engine::spiffe::{self, SpiffeId};
use meshward_engine::Reason;

use crate::sample::{SampleChain, SampleUser};
use crate::span::Span;

/// A policy that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The policy's name.
    pub name: String,
    /// Whole-policy dry-run.
    pub dry_run: bool,
    /// Trusted trust domains, in declaration order, without duplicates.
    pub trust_domains: Vec<String>,
    /// Bound on peer certificate lifetime.
    pub max_cert_lifetime_secs: Option<u64>,
    /// Intents in declaration order.
    pub intents: Vec<Intent>,
    /// Rules in declaration order.
    pub rules: Vec<Rule>,
    /// Policy tests in declaration order.
    pub tests: Vec<TestCase>,
    /// How caller chains are received.
    pub chain: ChainConfig,
    /// Token and key settings for the plugin configuration.
    pub identity: IdentitySettings,
}

/// The checked `identity` block: everything the plugin configuration says
/// about tokens and keys, validated, with key files already read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentitySettings {
    /// `jwt_svid`: JWT-SVIDs are verified when set.
    pub jwt_svid: Option<JwtSvidSource>,
    /// `user_tokens` with its issuers: user tokens are verified when set.
    pub user_tokens: Option<UserTokenSource>,
    /// Trust bundles per trust domain, in declaration order.
    pub trust_bundles: Vec<TrustBundle>,
    /// Revocation lists fetched by the filter.
    pub revocation_fetch: Vec<FetchSource>,
    /// Revoked SPIFFE IDs written in the policy.
    pub revoked_spiffe_ids: Vec<String>,
    /// Revoked certificate serials (hex) written in the policy.
    pub revoked_serials: Vec<String>,
    /// Revoked token ids written in the policy.
    pub revoked_jtis: Vec<String>,
    /// `chain_hand_off`: `sealed` or `wire` (`None`: the filter's default).
    pub chain_hand_off: Option<String>,
}

/// Settings every token kind has (absent: the filter's default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenSettings {
    /// Lowercase header name.
    pub header: Option<String>,
    /// Authentication scheme (`""`: a bare token).
    pub scheme: Option<String>,
    /// Longest accepted `exp - iat`, seconds.
    pub max_lifetime_secs: Option<u64>,
    /// Allowed clock skew, seconds.
    pub clock_skew_secs: Option<u64>,
    /// Accepted algorithms (`ES256`, `RS256`, `PS256`, `EdDSA`).
    pub algorithms: Option<Vec<String>>,
    /// Largest token, bytes.
    pub max_token_bytes: Option<u64>,
}

/// The checked `jwt_svid` block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JwtSvidSource {
    /// Accepted audiences (at least one).
    pub audiences: Vec<String>,
    /// Header, scheme, bounds, algorithms.
    pub settings: TokenSettings,
}

/// The checked `user_tokens` block and every `issuer`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserTokenSource {
    /// Header, scheme, bounds, algorithms.
    pub settings: TokenSettings,
    /// Trusted issuers (at least one).
    pub issuers: Vec<IssuerSource>,
    /// Canonical claim paths rules read, plus those issuers list.
    pub claims: Vec<String>,
}

/// One checked `issuer` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerSource {
    /// `iss`.
    pub issuer: String,
    /// Accepted audiences (at least one).
    pub audiences: Vec<String>,
    /// The key document (inline or read from a file), validated.
    pub keys: Option<serde_json::Value>,
    /// Fetched keys.
    pub fetch: Option<FetchSource>,
}

/// One checked `trust_bundle` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustBundle {
    /// The trust domain.
    pub trust_domain: String,
    /// The key document (inline or read from a file), validated.
    pub keys: Option<serde_json::Value>,
    /// Fetched bundle.
    pub fetch: Option<FetchSource>,
}

/// A document the filter fetches over an Envoy cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchSource {
    /// Envoy cluster.
    pub cluster: String,
    /// `:path`.
    pub path: String,
    /// `:authority`, when not the cluster name.
    pub authority: Option<String>,
    /// Seconds between fetches.
    pub refresh_secs: Option<u64>,
    /// Longest the last good key set serves without a successful fetch.
    pub max_staleness_secs: Option<u64>,
    /// Timeout of one fetch, milliseconds.
    pub timeout_ms: Option<u64>,
}

/// The checked `chain` block (defaults when there is none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainConfig {
    /// Peers trusted to forward the hops before them; groups expanded.
    pub forwarders: Vec<Subject>,
    /// Most hops a chain may have, direct peer included (1..=16).
    pub max_depth: u8,
    /// Longest a chain lives from its origin, seconds (1..=3600).
    pub lifetime_secs: u32,
}

impl ChainConfig {
    /// Most hops allowed by `max_depth`.
    pub const MAX_DEPTH: u8 = 16;
    /// Longest `lifetime`, seconds.
    pub const MAX_LIFETIME_SECS: u32 = 3600;
}

impl Default for ChainConfig {
    fn default() -> Self {
        let defaults = meshward_engine::model::ChainSettings::default();
        ChainConfig {
            forwarders: Vec::new(),
            max_depth: defaults.max_depth,
            lifetime_secs: defaults.lifetime_secs,
        }
    }
}

/// A declared intent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    /// Its name.
    pub name: String,
    /// Where the name is declared.
    pub span: Span,
    /// Method bits (`model::Method::bit`), `0` = any.
    pub methods: u16,
    /// Lowercase host without port.
    pub host: Option<String>,
    /// Path templates (gRPC methods included, as two literal segments).
    pub routes: Vec<RouteTemplate>,
}

/// A parsed path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTemplate {
    /// Segments; `Rest` only last.
    pub segments: Vec<TemplateSegment>,
    /// Where it is written.
    pub span: Span,
}

/// One path template segment.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TemplateSegment {
    /// Exactly this segment.
    Literal(String),
    /// `{name}`: any one segment.
    Param,
    /// `**`: the rest, possibly nothing.
    Rest,
}

/// A checked rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Its id.
    pub id: String,
    /// Where the id is declared.
    pub span: Span,
    /// Allow or deny.
    pub effect: Effect,
    /// `mode dry-run`.
    pub dry_run: bool,
    /// Which credential the subjects are matched against.
    pub principal: Principal,
    /// Subjects, groups expanded, without exact duplicates; empty exactly
    /// for [`Principal::User`].
    pub subjects: Vec<Subject>,
    /// Indexes into [`Policy::intents`], without duplicates.
    pub intents: Vec<usize>,
    /// Also applies to unclassified requests.
    pub unclassified: bool,
    /// All must hold.
    pub conditions: Vec<Condition>,
}

/// Which verified credential a rule's subjects are matched against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Principal {
    /// The mTLS-verified direct peer.
    #[default]
    Peer,
    /// The subject of a verified JWT-SVID.
    JwtSvid,
    /// A JWT-SVID presented through a direct peer matching one of these.
    JwtSvidVia(Vec<Subject>),
    /// A direct peer and a JWT-SVID naming that same peer.
    PeerBoundJwtSvid,
    /// A verified end user; the rule has no subjects.
    User,
}

impl Principal {
    /// How it is written after `principal`.
    pub fn keyword(&self) -> &'static str {
        match self {
            Principal::Peer => "peer",
            Principal::JwtSvid | Principal::JwtSvidVia(_) => "jwt_svid",
            Principal::PeerBoundJwtSvid => "peer_bound_jwt_svid",
            Principal::User => "user",
        }
    }
}

/// One checked condition of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// A test on a request header.
    Header(HeaderCondition),
    /// The chain's origin matches one of these.
    Origin(Vec<Subject>),
    /// Some hop (origin to direct peer) matches one of these.
    AnyHop(Vec<Subject>),
    /// No hop matches any of these.
    NoHop(Vec<Subject>),
    /// The chain has `min..=max` hops (`1 <= min <= max <= max_depth`).
    Depth {
        /// Fewest hops.
        min: u8,
        /// Most hops.
        max: u8,
    },
    /// No hops were dropped on the way.
    Complete,
    /// The chain's purpose is one of these intent names.
    Purpose(Vec<String>),
    /// A test on the end user.
    User(UserTest),
}

/// A checked test on the end user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserTest {
    /// There is a verified end user.
    Present,
    /// The user's subject is one of these.
    Subject(Vec<String>),
    /// The token's issuer is one of these.
    Issuer(Vec<String>),
    /// The user has this scope.
    HasScope(String),
    /// A claim of a directly verified token.
    Claim {
        /// The claim's path, in canonical text (`a[b.c].d`).
        name: String,
        /// What must hold.
        test: ClaimTest,
    },
}

/// A checked test on a user-token claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimTest {
    /// A string claim equal to this.
    Equals(String),
    /// A string claim equal to one of these.
    OneOf(Vec<String>),
    /// A list claim containing this (or a string claim equal to it).
    Contains(String),
}

/// Who a rule is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    /// Any verified peer of a trusted domain.
    AnyAuthenticated,
    /// Every workload of one trust domain.
    TrustDomain(String),
    /// One workload.
    Exact(SpiffeId),
    /// A pattern with at least one wildcard.
    Pattern(IdPattern),
}

/// A SPIFFE ID pattern, e.g. `spiffe://prod.example/ns/edge/sa/*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdPattern {
    /// Trust domain the ID must be in.
    pub trust_domain: String,
    /// Path segment patterns; `Rest` only last.
    pub segments: Vec<IdPatternSegment>,
}

/// One segment of a SPIFFE ID pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IdPatternSegment {
    /// Exactly this segment.
    Literal(String),
    /// `*`: any one segment.
    Any,
    /// `**`: any remaining segments, possibly none.
    Rest,
}

impl IdPatternSegment {
    /// This segment as the shared matcher sees it.
    pub fn as_segment(&self) -> spiffe::pattern::Segment<'_> {
        match self {
            IdPatternSegment::Literal(s) => spiffe::pattern::Segment::Literal(s),
            IdPatternSegment::Any => spiffe::pattern::Segment::Any,
            IdPatternSegment::Rest => spiffe::pattern::Segment::Rest,
        }
    }
}

impl IdPattern {
    /// Whether the pattern matches `id`: the engine's matcher
    /// ([`spiffe::pattern`]), so the compiler never believes a subject
    /// matches what the filter would not.
    pub fn matches(&self, id: &SpiffeId) -> bool {
        spiffe::pattern::matches(
            &self.trust_domain,
            self.segments.iter().map(IdPatternSegment::as_segment),
            id,
        )
    }

    /// Whether every ID `other` matches, this matches too. Treats `other`'s
    /// segments as symbols: our literal only covers the same literal, our `*`
    /// covers any single segment, our `**` covers whatever remains.
    pub fn covers(&self, other: &IdPattern) -> bool {
        if self.trust_domain != other.trust_domain {
            return false;
        }
        let mut theirs = other.segments.iter();
        for ours in &self.segments {
            let covered = match (ours, theirs.next()) {
                (IdPatternSegment::Rest, _) => return true,
                (_, None | Some(IdPatternSegment::Rest)) => false,
                (IdPatternSegment::Any, Some(_)) => true,
                (IdPatternSegment::Literal(a), Some(IdPatternSegment::Literal(b))) => a == b,
                (IdPatternSegment::Literal(_), Some(IdPatternSegment::Any)) => false,
            };
            if !covered {
                return false;
            }
        }
        theirs.next().is_none()
    }

    /// Whether some ID may match both patterns (`true` when unsure).
    pub fn may_overlap(&self, other: &IdPattern) -> bool {
        if self.trust_domain != other.trust_domain {
            return false;
        }
        let mut ours = self.segments.iter();
        let mut theirs = other.segments.iter();
        loop {
            match (ours.next(), theirs.next()) {
                (Some(IdPatternSegment::Rest), _) | (_, Some(IdPatternSegment::Rest)) => {
                    return true
                }
                (None, None) => return true,
                (None, Some(_)) | (Some(_), None) => return false,
                (Some(IdPatternSegment::Literal(a)), Some(IdPatternSegment::Literal(b))) => {
                    if a != b {
                        return false;
                    }
                }
                (Some(_), Some(_)) => {}
            }
        }
    }

    /// True for `spiffe://td/**`, which matches the whole trust domain.
    pub fn is_whole_domain(&self) -> bool {
        self.segments == [IdPatternSegment::Rest]
    }
}

impl Subject {
    /// The trust domain this subject is confined to, if any.
    pub fn trust_domain(&self) -> Option<&str> {
        match self {
            Subject::AnyAuthenticated => None,
            Subject::TrustDomain(td) => Some(td),
            Subject::Exact(id) => Some(id.trust_domain()),
            Subject::Pattern(p) => Some(&p.trust_domain),
        }
    }

    /// Whether every peer that `other` matches, this matches too (provably;
    /// `false` when unsure). Only trusted peers ever reach rules, so
    /// `any_authenticated` covers everything.
    pub fn covers(&self, other: &Subject) -> bool {
        match (self, other) {
            (Subject::AnyAuthenticated, _) => true,
            (_, Subject::AnyAuthenticated) => false,
            (Subject::TrustDomain(td), other) => other.trust_domain() == Some(td.as_str()),
            (Subject::Exact(a), Subject::Exact(b)) => a == b,
            (Subject::Exact(_), _) => false,
            (Subject::Pattern(p), Subject::Exact(id)) => p.matches(id),
            (Subject::Pattern(p), Subject::Pattern(q)) => p.covers(q),
            (Subject::Pattern(p), Subject::TrustDomain(td)) => {
                p.is_whole_domain() && p.trust_domain == *td
            }
        }
    }
}

impl Subject {
    /// This subject as a pattern, when it is one ID or pattern.
    fn as_pattern(&self) -> Option<IdPattern> {
        match self {
            Subject::Pattern(p) => Some(p.clone()),
            Subject::Exact(id) => Some(IdPattern {
                trust_domain: id.trust_domain().to_owned(),
                segments: id
                    .segments()
                    .map(|s| IdPatternSegment::Literal(s.to_owned()))
                    .collect(),
            }),
            Subject::AnyAuthenticated | Subject::TrustDomain(_) => None,
        }
    }

    /// Whether some peer may match both (`true` when unsure).
    pub fn may_overlap(&self, other: &Subject) -> bool {
        match (self.trust_domain(), other.trust_domain()) {
            (None, _) | (_, None) => true,
            (Some(a), Some(b)) if a != b => false,
            _ => match (self.as_pattern(), other.as_pattern()) {
                (Some(p), Some(q)) => p.may_overlap(&q),
                _ => true,
            },
        }
    }
}

/// A condition on one request header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderCondition {
    /// Lowercase header name.
    pub name: String,
    /// The test.
    pub test: HeaderTest,
}

/// Tests on a header value (exact byte comparison).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderTest {
    /// Present, any value.
    Present,
    /// Absent.
    Absent,
    /// Present and equal.
    Equals(String),
    /// Absent or different.
    NotEquals(String),
    /// Present and equal to one of these.
    OneOf(Vec<String>),
    /// Present and starting with this.
    Prefix(String),
}

/// A policy test: a sample request and the decision it must get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestCase {
    /// The test's name.
    pub name: String,
    /// Where the name is written.
    pub span: Span,
    /// The verified peer; `None` = no client certificate.
    pub peer: Option<SpiffeId>,
    /// `:method`, as written.
    pub method: String,
    /// `:path`, as written.
    pub path: String,
    /// `:authority` (empty when not given).
    pub authority: String,
    /// Request headers.
    pub headers: Vec<(String, String)>,
    /// A JWT-SVID: verified subject, or why it was refused.
    pub jwt_svid: Option<Result<SpiffeId, Reason>>,
    /// An end user verified at this hop, or why the token was refused.
    pub user: Option<Result<SampleUser, Reason>>,
    /// The caller chain the direct peer sent.
    pub chain: Option<SampleChain>,
    /// What must come out.
    pub expect: Expectation,
}

/// The expected decision of a test; unset parts are not compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectation {
    /// Enforced effect.
    pub effect: Effect,
    /// Deciding rule id.
    pub rule: Option<String>,
    /// Reason.
    pub reason: Option<Reason>,
    /// Intent: `Some(None)` = unclassified.
    pub intent: Option<Option<String>>,
    /// Dry-run outcome.
    pub would: Option<WouldExpectation>,
}

/// The expected dry-run outcome of a test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WouldExpectation {
    /// Would-be effect.
    pub effect: Effect,
    /// Would-be deciding rule id.
    pub rule: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(text: &str) -> IdPattern {
        let (td, path) = text.split_once('/').unwrap_or((text, ""));
        IdPattern {
            trust_domain: td.to_owned(),
            segments: path
                .split('/')
                .filter(|s| !s.is_empty())
                .map(|s| match s {
                    "*" => IdPatternSegment::Any,
                    "**" => IdPatternSegment::Rest,
                    s => IdPatternSegment::Literal(s.to_owned()),
                })
                .collect(),
        }
    }

    fn id(text: &str) -> SpiffeId {
        SpiffeId::parse(text).unwrap()
    }

    #[test]
    fn pattern_matching() {
        let p = pattern("d/ns/*/sa/**");
        assert!(p.matches(&id("spiffe://d/ns/a/sa")));
        assert!(p.matches(&id("spiffe://d/ns/a/sa/b/c")));
        assert!(!p.matches(&id("spiffe://d/ns/a")));
        assert!(!p.matches(&id("spiffe://e/ns/a/sa")));
        assert!(pattern("d/**").matches(&id("spiffe://d")));
    }

    #[test]
    fn pattern_coverage() {
        let covers = |a: &str, b: &str| pattern(a).covers(&pattern(b));
        assert!(covers("d/ns/*", "d/ns/x"));
        assert!(covers("d/ns/*", "d/ns/*"));
        assert!(covers("d/ns/**", "d/ns/*/sa/**"));
        assert!(covers("d/**", "d"));
        assert!(!covers("d/ns/x", "d/ns/*"));
        assert!(!covers("d/ns/*", "d/ns/**"));
        assert!(!covers("d/ns/*", "d/ns/x/y"));
        assert!(!covers("d/ns/*/*", "d/ns/x"));
        assert!(!covers("d/ns/*", "e/ns/x"));
    }

    #[test]
    fn pattern_overlap() {
        let overlap = |a: &str, b: &str| pattern(a).may_overlap(&pattern(b));
        assert!(overlap("d/ns/*", "d/ns/x"));
        assert!(overlap("d/ns/x/**", "d/*/x/y"));
        assert!(overlap("d/**", "d"));
        assert!(!overlap("d/ns/x", "d/ns/y"));
        assert!(!overlap("d/ns/*", "d/ns/x/y"));
        assert!(!overlap("d/ns/*", "e/ns/x"));
        let exact = Subject::Exact(id("spiffe://d/ns/a"));
        assert!(exact.may_overlap(&Subject::Pattern(pattern("d/ns/*"))));
        assert!(!exact.may_overlap(&Subject::Exact(id("spiffe://d/ns/b"))));
        assert!(!exact.may_overlap(&Subject::TrustDomain("e".into())));
        assert!(exact.may_overlap(&Subject::AnyAuthenticated));
    }

    #[test]
    fn subject_coverage() {
        let any = Subject::AnyAuthenticated;
        let domain = Subject::TrustDomain("d".into());
        let exact = Subject::Exact(id("spiffe://d/ns/a"));
        let pat = Subject::Pattern(pattern("d/ns/*"));
        let whole = Subject::Pattern(pattern("d/**"));
        assert!(any.covers(&domain) && any.covers(&exact));
        assert!(domain.covers(&exact) && domain.covers(&pat) && domain.covers(&whole));
        assert!(!domain.covers(&any));
        assert!(pat.covers(&exact) && !exact.covers(&pat));
        assert!(whole.covers(&domain) && !pat.covers(&domain));
        assert!(!Subject::TrustDomain("e".into()).covers(&exact));
    }
}
