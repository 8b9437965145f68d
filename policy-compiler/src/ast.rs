//! The syntax tree of a policy file, exactly as written: names are not yet
//! resolved and strings are not yet interpreted. Every node carries the byte
//! span it was parsed from, so later phases can point at it.

use crate::span::{Span, Spanned};

/// A whole `*.policy` file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyFile {
    /// Top-level blocks in source order.
    pub items: Vec<Item>,
}

/// One top-level block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// `policy "name" { ... }`
    Policy(PolicyBlock),
    /// `group name { ... }`
    Group(GroupBlock),
    /// `intent name { ... }`
    Intent(IntentBlock),
    /// `allow id { ... }` / `deny id { ... }`
    Rule(RuleBlock),
    /// `test "name" { ... }`
    Test(TestBlock),
    /// `chain { ... }`
    Chain(ChainBlock),
    /// `identity { ... }`
    Identity(IdentityBlock),
}

/// A double-quoted string literal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrLit {
    /// The value after unescaping.
    pub value: String,
    /// The span including the quotes.
    pub span: Span,
    /// True when the literal had no escapes, so byte `i` of `value` sits at
    /// `span.start + 1 + i` and diagnostics can point inside the string.
    pub verbatim: bool,
}

impl StrLit {
    /// The span of `value[range]` when it can be located, else the whole literal.
    pub fn sub_span(&self, range: std::ops::Range<usize>) -> Span {
        if self.verbatim && range.end <= self.value.len() {
            let base = self.span.start + 1;
            Span::new(base + range.start, base + range.end)
        } else {
            self.span
        }
    }
}

/// `enforce` or `dry-run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Decisions are enforced.
    Enforce,
    /// Decisions are reported, never enforced.
    DryRun,
}

/// `allow` or `deny`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EffectKw {
    /// `allow`
    Allow,
    /// `deny`
    Deny,
}

/// The `policy` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyBlock {
    /// The `policy` keyword.
    pub keyword: Span,
    /// The policy's name.
    pub name: StrLit,
    /// Settings in source order.
    pub settings: Vec<PolicySetting>,
}

/// A statement inside `policy { ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySetting {
    /// `trust_domains "a" "b"`
    TrustDomains {
        /// The keyword.
        keyword: Span,
        /// The domains.
        domains: Vec<StrLit>,
    },
    /// `max_cert_lifetime 24h`
    MaxCertLifetime {
        /// The keyword.
        keyword: Span,
        /// The duration as written.
        value: Spanned<String>,
    },
    /// `mode enforce|dry-run`
    Mode {
        /// The keyword.
        keyword: Span,
        /// The mode.
        mode: Spanned<Mode>,
    },
}

/// The `chain { ... }` block: how caller chains are received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBlock {
    /// The `chain` keyword.
    pub keyword: Span,
    /// Settings in source order.
    pub settings: Vec<ChainSetting>,
}

/// A statement inside `chain { ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainSetting {
    /// `forwarder group mesh "spiffe://..."`
    Forwarder {
        /// The keyword.
        keyword: Span,
        /// Peers trusted to forward the hops before them.
        subjects: Vec<SubjectExpr>,
    },
    /// `max_depth 5`
    MaxDepth {
        /// The keyword.
        keyword: Span,
        /// The number as written.
        value: Spanned<String>,
    },
    /// `lifetime 60s`
    Lifetime {
        /// The keyword.
        keyword: Span,
        /// The duration as written.
        value: Spanned<String>,
    },
}

/// `group name { member "..." }`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupBlock {
    /// The group's name.
    pub name: Spanned<String>,
    /// Member IDs or patterns.
    pub members: Vec<StrLit>,
}

/// `intent name { ... }`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntentBlock {
    /// The intent's name.
    pub name: Spanned<String>,
    /// Statements in source order.
    pub statements: Vec<IntentStatement>,
}

/// A statement inside `intent { ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntentStatement {
    /// `method GET HEAD`
    Methods {
        /// The keyword.
        keyword: Span,
        /// Method tokens as written.
        methods: Vec<Spanned<String>>,
    },
    /// `path "/a" "/b/{id}"`
    Paths {
        /// The keyword.
        keyword: Span,
        /// Path templates.
        paths: Vec<StrLit>,
    },
    /// `host "orders.svc"`
    Host {
        /// The keyword.
        keyword: Span,
        /// The host.
        host: StrLit,
    },
    /// `grpc "pkg.Svc/Method"`
    Grpc {
        /// The keyword.
        keyword: Span,
        /// Fully qualified gRPC methods.
        methods: Vec<StrLit>,
    },
}

/// `allow id { ... }` or `deny id { ... }`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleBlock {
    /// Allow or deny.
    pub effect: Spanned<EffectKw>,
    /// The rule id.
    pub id: Spanned<String>,
    /// Statements in source order.
    pub statements: Vec<RuleStatement>,
}

/// A statement inside a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleStatement {
    /// `subject ...`
    Subject(SubjectExpr),
    /// `intent a b unclassified`
    Intents {
        /// The keyword.
        keyword: Span,
        /// Referenced intents.
        intents: Vec<IntentRef>,
    },
    /// `when header ...`
    When(ConditionExpr),
    /// `mode enforce|dry-run`
    Mode {
        /// The keyword.
        keyword: Span,
        /// The mode.
        mode: Spanned<Mode>,
    },
    /// `principal peer|jwt_svid [via SUBJECTS]|peer_bound_jwt_svid|user`
    Principal {
        /// The keyword.
        keyword: Span,
        /// Which credential the rule's subjects are matched against.
        principal: PrincipalExpr,
    },
}

/// Which credential a rule is about, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrincipalExpr {
    /// `peer`: the mTLS-verified direct peer (the default).
    Peer(Span),
    /// `jwt_svid`: the subject of a verified JWT-SVID.
    JwtSvid(Span),
    /// `jwt_svid via SUBJECTS`: a JWT-SVID presented through one of these peers.
    JwtSvidVia {
        /// The `jwt_svid` word.
        span: Span,
        /// The trusted forwarders (direct peers).
        via: Vec<SubjectExpr>,
    },
    /// `peer_bound_jwt_svid`: an mTLS peer and a JWT-SVID naming that same peer.
    PeerBoundJwtSvid(Span),
    /// `user`: a verified end user, no workload identity.
    User(Span),
}

impl PrincipalExpr {
    /// Where the principal's kind is written.
    pub fn span(&self) -> Span {
        match self {
            PrincipalExpr::Peer(span)
            | PrincipalExpr::JwtSvid(span)
            | PrincipalExpr::PeerBoundJwtSvid(span)
            | PrincipalExpr::User(span)
            | PrincipalExpr::JwtSvidVia { span, .. } => *span,
        }
    }
}

/// Who a rule is about, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubjectExpr {
    /// `subject group name`
    Group(Spanned<String>),
    /// `subject "spiffe://..."`: an exact ID or a pattern.
    Id(StrLit),
    /// `subject domain "td"`
    Domain(StrLit),
    /// `subject any_authenticated`
    AnyAuthenticated(Span),
}

impl SubjectExpr {
    /// Where the subject is written.
    pub fn span(&self) -> Span {
        match self {
            SubjectExpr::Group(name) => name.span,
            SubjectExpr::Id(lit) | SubjectExpr::Domain(lit) => lit.span,
            SubjectExpr::AnyAuthenticated(span) => *span,
        }
    }
}

/// An intent named in a rule or test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntentRef {
    /// A declared intent.
    Named(Spanned<String>),
    /// `unclassified`: requests that match no intent.
    Unclassified(Span),
}

/// `when ...`: one condition of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionExpr {
    /// What is tested.
    pub kind: ConditionKind,
    /// The whole condition (after `when`).
    pub span: Span,
}

/// The kinds of `when` conditions, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConditionKind {
    /// `when header "name" <test>`
    Header {
        /// The header name as written.
        header: StrLit,
        /// The test.
        test: HeaderTestExpr,
    },
    /// `when origin SUBJECTS`: the chain's first hop.
    Origin(Vec<SubjectExpr>),
    /// `when any_hop SUBJECTS`: some hop, origin to direct peer.
    AnyHop(Vec<SubjectExpr>),
    /// `when no_hop SUBJECTS`: no hop.
    NoHop(Vec<SubjectExpr>),
    /// `when depth <= N` and friends.
    Depth(DepthExpr),
    /// `when complete`: no hops were dropped.
    Complete,
    /// `when purpose NAME...`: the intent the chain started with.
    Purpose(Vec<Spanned<String>>),
    /// `when user ...`
    User(UserTestExpr),
}

/// A bound on the number of hops, numbers as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DepthExpr {
    /// `depth <= N`
    AtMost(Spanned<String>),
    /// `depth >= N`
    AtLeast(Spanned<String>),
    /// `depth == N`
    Exactly(Spanned<String>),
    /// `depth in MIN..MAX`
    Between {
        /// MIN as written.
        min: Spanned<String>,
        /// MAX as written.
        max: Spanned<String>,
    },
}

/// A test on the end user, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserTestExpr {
    /// `user present`
    Present,
    /// `user subject "a" "b"`
    Subject(Vec<StrLit>),
    /// `user issuer "https://..."`
    Issuer(Vec<StrLit>),
    /// `user scope "s"`
    Scope(StrLit),
    /// `user claim "name" <test>`
    Claim {
        /// The claim name.
        name: StrLit,
        /// The test.
        test: ClaimTestExpr,
    },
}

/// A test on a user-token claim, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimTestExpr {
    /// `== "v"`
    Equals(StrLit),
    /// `in ["a", "b"]`
    OneOf(Vec<StrLit>),
    /// `contains "v"`
    Contains(StrLit),
}

/// A test on a header value, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderTestExpr {
    /// `present`
    Present,
    /// `absent`
    Absent,
    /// `== "v"`
    Equals(StrLit),
    /// `!= "v"`
    NotEquals(StrLit),
    /// `in ["a", "b"]`
    OneOf(Vec<StrLit>),
    /// `starts_with "v"`
    StartsWith(StrLit),
}

/// `test "name" { ... }`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestBlock {
    /// The test's name.
    pub name: StrLit,
    /// Statements in source order.
    pub statements: Vec<TestStatement>,
}

/// A statement inside a test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestStatement {
    /// `peer "spiffe://..."` or `peer none`
    Peer {
        /// The keyword.
        keyword: Span,
        /// `None` for `peer none`.
        id: Option<StrLit>,
    },
    /// `request GET "/path"`
    Request {
        /// The keyword.
        keyword: Span,
        /// Method token as written (passed to the engine unchanged).
        method: Spanned<String>,
        /// Request path as written.
        path: StrLit,
    },
    /// `host "h"`
    Host {
        /// The keyword.
        keyword: Span,
        /// The `:authority`.
        host: StrLit,
    },
    /// `header "k" "v"`
    Header {
        /// The keyword.
        keyword: Span,
        /// Header name.
        name: StrLit,
        /// Header value.
        value: StrLit,
    },
    /// `expect ...`
    Expect(ExpectExpr),
    /// `jwt_svid "spiffe://..."` or `jwt_svid invalid REASON`
    JwtSvid {
        /// The keyword.
        keyword: Span,
        /// The verified subject, or why verification failed.
        token: CredentialExpr,
    },
    /// `user "alice"` or `user invalid REASON`
    User {
        /// The keyword.
        keyword: Span,
        /// The verified subject, or why verification failed.
        token: CredentialExpr,
    },
    /// `scope "a" "b"`: scopes of the `user`.
    Scope {
        /// The keyword.
        keyword: Span,
        /// The scopes.
        scopes: Vec<StrLit>,
    },
    /// `issuer "https://..."`: issuer of the `user`'s token.
    Issuer {
        /// The keyword.
        keyword: Span,
        /// The issuer.
        issuer: StrLit,
    },
    /// `claim "name" "v" ...` or `claim "name" ["v", ...]`
    Claim {
        /// The keyword.
        keyword: Span,
        /// The claim name.
        name: StrLit,
        /// The values.
        values: Vec<StrLit>,
        /// Written as `[...]`: a list even with one value.
        list: bool,
    },
    /// `chain "spiffe://origin" ... "spiffe://peer"`
    Chain {
        /// The keyword.
        keyword: Span,
        /// Hops from the origin to the direct peer.
        hops: Vec<StrLit>,
    },
    /// `chain incomplete`
    ChainIncomplete {
        /// The keyword.
        keyword: Span,
    },
    /// `purpose NAME`: the intent the chain started with.
    Purpose {
        /// The keyword.
        keyword: Span,
        /// The intent name.
        name: Spanned<String>,
    },
    /// `chain_user "alice"`: the end user carried in the chain.
    ChainUser {
        /// The keyword.
        keyword: Span,
        /// The user's subject.
        subject: StrLit,
    },
    /// `chain_scope "a" "b"`: the chain user's scopes.
    ChainScope {
        /// The keyword.
        keyword: Span,
        /// The scopes.
        scopes: Vec<StrLit>,
    },
}

/// A presented credential in a test: verified, or refused with a reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialExpr {
    /// Verified, with this subject.
    Valid(StrLit),
    /// `invalid REASON`: presented, failed verification.
    Invalid(Spanned<String>),
}

/// `expect allow|deny [by RULE] [reason CODE] [intent NAME] [would allow|deny [by RULE]]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectExpr {
    /// The keyword.
    pub keyword: Span,
    /// Expected enforced effect.
    pub effect: Spanned<EffectKw>,
    /// Expected deciding rule.
    pub by: Option<Spanned<String>>,
    /// Expected reason code.
    pub reason: Option<Spanned<String>>,
    /// Expected intent (or `unclassified`).
    pub intent: Option<IntentRef>,
    /// Expected dry-run outcome.
    pub would: Option<WouldExpr>,
}

/// `would allow|deny [by RULE]` inside `expect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WouldExpr {
    /// Expected would-be effect.
    pub effect: Spanned<EffectKw>,
    /// Expected would-be deciding rule.
    pub by: Option<Spanned<String>>,
}

/// `identity { ... }`: where tokens and keys come from (the plugin
/// configuration's token and key settings, written as source).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityBlock {
    /// The `identity` keyword.
    pub keyword: Span,
    /// Statements and sub-blocks in source order.
    pub settings: Vec<IdentitySetting>,
}

/// A statement or sub-block inside `identity { ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentitySetting {
    /// `jwt_svid { ... }`
    JwtSvid {
        /// The keyword.
        keyword: Span,
        /// Settings in source order.
        settings: Vec<TokenSetting>,
    },
    /// `user_tokens { ... }`: settings shared by every issuer.
    UserTokens {
        /// The keyword.
        keyword: Span,
        /// Settings in source order.
        settings: Vec<TokenSetting>,
    },
    /// `issuer "https://..." { ... }`
    Issuer(IssuerBlock),
    /// `trust_bundle "td" { ... }`
    TrustBundle(TrustBundleBlock),
    /// `revocation { ... }`
    Revocation {
        /// The keyword.
        keyword: Span,
        /// Settings in source order.
        settings: Vec<RevocationSetting>,
    },
    /// `external`: the token and key settings are added to the plugin
    /// configuration outside meshward; the cross-checks that need them are
    /// skipped.
    External(Span),
    /// `chain_hand_off sealed|wire`
    ChainHandOff {
        /// The keyword.
        keyword: Span,
        /// The value as written.
        value: Spanned<String>,
    },
}

/// A statement of `jwt_svid { ... }`, `user_tokens { ... }` or `issuer { ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSetting {
    /// `header "x-jwt-svid"`
    Header {
        /// The keyword.
        keyword: Span,
        /// The header name.
        name: StrLit,
    },
    /// `scheme "Bearer"` (`""`: a bare token)
    Scheme {
        /// The keyword.
        keyword: Span,
        /// The scheme.
        scheme: StrLit,
    },
    /// `audiences "a" "b"`
    Audiences {
        /// The keyword.
        keyword: Span,
        /// The audiences.
        audiences: Vec<StrLit>,
    },
    /// `max_lifetime 5m`
    MaxLifetime {
        /// The keyword.
        keyword: Span,
        /// The duration as written.
        value: Spanned<String>,
    },
    /// `clock_skew 30s`
    ClockSkew {
        /// The keyword.
        keyword: Span,
        /// The duration as written.
        value: Spanned<String>,
    },
    /// `algorithms ES256 EdDSA`
    Algorithms {
        /// The keyword.
        keyword: Span,
        /// Algorithm names as written.
        names: Vec<Spanned<String>>,
    },
    /// `max_token_bytes 8192`
    MaxTokenBytes {
        /// The keyword.
        keyword: Span,
        /// The number as written.
        value: Spanned<String>,
    },
    /// `keys ...` (issuers only)
    Keys(KeysExpr),
    /// `claims "groups" "realm_access.roles"` (issuers only)
    Claims {
        /// The keyword.
        keyword: Span,
        /// Claim paths.
        paths: Vec<StrLit>,
    },
}

/// `issuer "https://idp.example" { ... }`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerBlock {
    /// The keyword.
    pub keyword: Span,
    /// `iss`, compared exactly.
    pub issuer: StrLit,
    /// Settings in source order.
    pub settings: Vec<TokenSetting>,
}

/// `trust_bundle "prod.example" { keys ... }`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustBundleBlock {
    /// The keyword.
    pub keyword: Span,
    /// The trust domain.
    pub domain: StrLit,
    /// `keys` statements.
    pub keys: Vec<KeysExpr>,
}

/// Where a key set comes from, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeysExpr {
    /// `keys file "path/to/jwks.json"`: read at compile time, embedded.
    File {
        /// The `keys` keyword.
        keyword: Span,
        /// The path, relative to the policy file's directory.
        path: StrLit,
    },
    /// `keys inline "{...}"`: the JSON document itself.
    Inline {
        /// The `keys` keyword.
        keyword: Span,
        /// The document.
        document: StrLit,
    },
    /// `keys fetch cluster "c" path "/p" ...`: fetched by the filter.
    Fetch {
        /// The `keys` keyword.
        keyword: Span,
        /// The fetch options.
        fetch: FetchExpr,
    },
}

impl KeysExpr {
    /// The `keys` keyword.
    pub fn keyword(&self) -> Span {
        match self {
            KeysExpr::File { keyword, .. }
            | KeysExpr::Inline { keyword, .. }
            | KeysExpr::Fetch { keyword, .. } => *keyword,
        }
    }
}

/// `cluster "c" path "/p" [authority "a"] [refresh 5m] [max_staleness 1h] [timeout 5s]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchExpr {
    /// The `fetch` word.
    pub keyword: Span,
    /// Options in source order.
    pub options: Vec<FetchOption>,
}

/// One option of a fetch, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchOption {
    /// `cluster "name"`: the Envoy cluster to call.
    Cluster(Span, StrLit),
    /// `path "/p"`: the request path.
    Path(Span, StrLit),
    /// `authority "host"`: the `:authority` (default: the cluster name).
    Authority(Span, StrLit),
    /// `refresh 5m`
    Refresh(Span, Spanned<String>),
    /// `max_staleness 1h`
    MaxStaleness(Span, Spanned<String>),
    /// `timeout 5s`
    Timeout(Span, Spanned<String>),
}

/// A statement of `revocation { ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevocationSetting {
    /// `fetch cluster "c" path "/revoked.json" refresh 1m`
    Fetch(FetchExpr),
    /// `spiffe_id "spiffe://..." ...`
    SpiffeIds {
        /// The keyword.
        keyword: Span,
        /// Revoked IDs.
        ids: Vec<StrLit>,
    },
    /// `serial "0a1b" ...`
    Serials {
        /// The keyword.
        keyword: Span,
        /// Revoked certificate serials (hex).
        serials: Vec<StrLit>,
    },
    /// `jti "..." ...`
    Jtis {
        /// The keyword.
        keyword: Span,
        /// Revoked token ids.
        jtis: Vec<StrLit>,
    },
}
