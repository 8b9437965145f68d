//! The compiled policy as it travels on the wire: the contract between the
//! compiler and the filter.
//!
//! Everything the filter needs is resolved here at compile time: strings are
//! interned ([`StrId`] indexes [`CompiledPolicy::strings`]), path templates are
//! pre-split into segments, groups are expanded into subjects, SPIFFE IDs are
//! pre-parsed, and rules refer to intents by index. The filter never sees policy
//! source. [`crate::codec`] frames this with a magic, a format version and a
//! SHA-256 content hash; [`crate::Policy::from_compiled`] checks every index and
//! builds the lookup indexes once, at configure time.

use serde::{Deserialize, Serialize};

/// A typed `u32` index into one table of the policy: `#[repr(transparent)]`
/// and `#[serde(transparent)]`, so it costs and encodes exactly as the bare
/// `u32` (the wire format does not change), but an index into one table
/// cannot be passed where another is meant.
macro_rules! index_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, ::serde::Serialize,
            ::serde::Deserialize,
        )]
        #[serde(transparent)]
        #[repr(transparent)]
        pub struct $name(pub u32);

        impl $name {
            /// The position in its table.
            #[inline]
            pub const fn index(self) -> usize {
                self.0 as usize
            }

            /// The id of position `index`, if it fits in a `u32`.
            #[inline]
            pub fn from_index(index: usize) -> Option<Self> {
                u32::try_from(index).ok().map($name)
            }
        }

        impl core::fmt::Display for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}
pub(crate) use index_type;

index_type!(
    /// Index into [`CompiledPolicy::strings`].
    StrId
);
index_type!(
    /// Index into [`CompiledPolicy::intents`].
    IntentIdx
);

/// A whole compiled policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompiledPolicy {
    /// The policy's name (for logs).
    pub name: StrId,
    /// Whole-policy dry-run: nothing is blocked, every decision is reported as
    /// "would allow / would deny".
    pub dry_run: bool,
    /// Interned strings; every `StrId` indexes this table.
    pub strings: Vec<String>,
    /// Trust domains whose workloads may be subjects at all (e.g. `prod.example`).
    pub trust_domains: Vec<StrId>,
    /// Credential bounds.
    pub limits: Limits,
    /// Intents in declaration order.
    pub intents: Vec<Intent>,
    /// Rules in declaration order; a rule's position is its evaluation rank.
    pub rules: Vec<Rule>,
    /// How caller chains are received.
    pub chain: ChainSettings,
}

/// Caller-chain settings (see `crate::chain`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainSettings {
    /// Peers trusted to forward the hops before them (meshward-enabled
    /// workloads). A chain from any other peer is dropped and marked incomplete.
    pub forwarders: Vec<Subject>,
    /// Most hops a received chain may have, direct peer included.
    pub max_depth: u8,
    /// Longest a chain may live from its origin, seconds.
    pub lifetime_secs: u32,
}

impl Default for ChainSettings {
    fn default() -> Self {
        ChainSettings {
            forwarders: Vec::new(),
            max_depth: 8,
            lifetime_secs: 60,
        }
    }
}

/// Bounds on credentials, from the policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Reject a peer X.509-SVID whose validity window (notAfter - notBefore) is
    /// longer than this many seconds.
    pub max_cert_lifetime_secs: Option<u64>,
}

/// A named action, e.g. `orders.read`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    /// Intent name.
    pub name: StrId,
    /// Methods bit set (see [`Method`]); `0` means any method.
    pub methods: u16,
    /// Required `:authority` host (lowercase, without port); `None` = any host.
    pub host: Option<StrId>,
    /// Path templates; a request matching any of them (and methods/host) has this intent.
    pub routes: Vec<Route>,
}

/// A path template, split into segments at compile time.
///
/// `/orders/{id}` is `[Literal("orders"), Param]`; `/static/**` is
/// `[Literal("static"), Rest]`; `/` is `[]`. A gRPC method
/// `shop.Orders/Get` is `[Literal("shop.Orders"), Literal("Get")]` with method POST.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Segments in order; `Rest` may only be last.
    pub segments: Vec<Segment>,
}

/// One path template segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Segment {
    /// Matches exactly this (case-sensitive) segment.
    Literal(StrId),
    /// `{name}`: matches any one non-empty segment.
    Param,
    /// `**`: matches zero or more remaining segments. Only valid last.
    Rest,
}

/// HTTP methods as bits of [`Intent::methods`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Method {
    /// GET
    Get = 1 << 0,
    /// HEAD
    Head = 1 << 1,
    /// POST
    Post = 1 << 2,
    /// PUT
    Put = 1 << 3,
    /// DELETE
    Delete = 1 << 4,
    /// PATCH
    Patch = 1 << 5,
    /// OPTIONS
    Options = 1 << 6,
    /// CONNECT
    Connect = 1 << 7,
    /// TRACE
    Trace = 1 << 8,
}

impl Method {
    /// All methods, in bit order.
    pub const ALL: [Method; 9] = [
        Method::Get,
        Method::Head,
        Method::Post,
        Method::Put,
        Method::Delete,
        Method::Patch,
        Method::Options,
        Method::Connect,
        Method::Trace,
    ];

    /// Parses an uppercase HTTP method token; other spellings are not methods.
    pub fn parse(s: &str) -> Option<Method> {
        Some(match s {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "PATCH" => Method::Patch,
            "OPTIONS" => Method::Options,
            "CONNECT" => Method::Connect,
            "TRACE" => Method::Trace,
            _ => return None,
        })
    }

    /// The method's token.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Patch => "PATCH",
            Method::Options => "OPTIONS",
            Method::Connect => "CONNECT",
            Method::Trace => "TRACE",
        }
    }

    /// This method's bit.
    pub fn bit(self) -> u16 {
        self as u16
    }
}

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Effect {
    /// Grant.
    Allow,
    /// Refuse; overrides any allow.
    Deny,
}

impl Effect {
    /// `allow` / `deny`.
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Allow => "allow",
            Effect::Deny => "deny",
        }
    }
}

/// One rule: `effect` `subjects` to `intents` when all `conditions` hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// Stable rule id chosen by the author (appears in audit lines).
    pub id: StrId,
    /// Allow or deny.
    pub effect: Effect,
    /// Dry-run rules are evaluated and reported but never change the outcome.
    pub dry_run: bool,
    /// Which verified identity the subjects are matched against.
    pub principal: Principal,
    /// Who; the rule applies when any subject matches the principal. Never
    /// empty, except for [`Principal::User`] rules, where it must be empty.
    pub subjects: Vec<Subject>,
    /// Which intents (indexes); never empty unless `unclassified` is set.
    pub intents: Vec<IntentIdx>,
    /// Also applies to requests that match no intent.
    pub unclassified: bool,
    /// All must hold.
    pub conditions: Vec<Condition>,
}

/// Which credential a rule's subjects are matched against.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Principal {
    /// The mTLS-verified direct peer (the default).
    #[default]
    Peer,
    /// The subject of a verified JWT-SVID; the direct peer may be anything the
    /// policy trusts, or absent (TLS terminated before us).
    JwtSvid,
    /// The subject of a verified JWT-SVID presented through a direct mTLS peer
    /// that matches one of these (a trusted forwarder such as a gateway).
    JwtSvidVia(Vec<Subject>),
    /// Both a direct mTLS peer and a JWT-SVID whose subject is that same peer.
    PeerBoundJwtSvid,
    /// A verified end-user token (edge traffic without a workload identity);
    /// the rule has no subjects and states its user conditions.
    User,
}

/// Who a rule is about. Groups are expanded into these at compile time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Subject {
    /// Any workload with a verified SPIFFE ID in a trusted domain.
    AnyAuthenticated,
    /// Every workload of this trust domain.
    TrustDomain(StrId),
    /// Exactly this SPIFFE ID (the full `spiffe://...` text).
    Exact(StrId),
    /// A SPIFFE ID pattern within one trust domain, e.g.
    /// `spiffe://prod.example/ns/shop/sa/*`.
    Pattern {
        /// Trust domain the ID must be in.
        trust_domain: StrId,
        /// Path segment patterns.
        segments: Vec<IdSegment>,
    },
}

/// One path segment of a SPIFFE ID pattern.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum IdSegment {
    /// Exactly this segment.
    Literal(StrId),
    /// `*`: any one segment.
    Any,
    /// `**`: any number (zero or more) of remaining segments. Only valid last.
    Rest,
}

/// A condition on the request. Header names are lowercase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Condition {
    /// A test on one request header.
    Header {
        /// Lowercase header name.
        name: StrId,
        /// What must hold.
        test: HeaderTest,
    },
    /// The chain's origin (first hop) matches one of these.
    Origin(Vec<Subject>),
    /// Some hop (origin to direct peer) matches one of these.
    AnyHop(Vec<Subject>),
    /// No hop matches any of these.
    NoHop(Vec<Subject>),
    /// The chain has between `min` and `max` hops (inclusive).
    Depth {
        /// Fewest hops.
        min: u8,
        /// Most hops.
        max: u8,
    },
    /// No earlier hops were dropped on the way.
    Complete,
    /// The chain's purpose (the intent where it started; this request's
    /// intent when the chain starts here) is one of these intent names.
    Purpose(Vec<StrId>),
    /// A test on the end user (from a verified user token at this hop, or
    /// from the chain when an edge verified one).
    User(UserTest),
}

/// Tests on the end user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum UserTest {
    /// There is a verified end user.
    Present,
    /// The user's subject is one of these.
    Subject(Vec<StrId>),
    /// The user's token issuer is one of these (direct tokens only).
    Issuer(Vec<StrId>),
    /// The user has this scope.
    HasScope(StrId),
    /// A claim of a directly verified token (string or list of strings),
    /// possibly nested in objects.
    Claim {
        /// The claim's path in canonical text
        /// ([`crate::identity::claim_path::ClaimPath::as_str`]).
        name: StrId,
        /// What must hold.
        test: ClaimTest,
    },
}

/// Tests on a user-token claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClaimTest {
    /// A string claim equals the value.
    Equals(StrId),
    /// A string claim equals one of the values.
    OneOf(Vec<StrId>),
    /// A list claim contains the value (or a string claim equals it).
    Contains(StrId),
}

/// Tests on a header value (exact, case-sensitive byte comparison).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HeaderTest {
    /// The header is present (any value).
    Present,
    /// The header is absent.
    Absent,
    /// The header is present and equals the value.
    Equals(StrId),
    /// The header is absent or differs from the value.
    NotEquals(StrId),
    /// The header is present and equals one of the values.
    OneOf(Vec<StrId>),
    /// The header is present and starts with the value.
    Prefix(StrId),
}
