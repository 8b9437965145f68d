//! `evaluate`: one request in, one [`Decision`] out. Pure, deterministic, and
//! allocation-free: the filter and the CLI call exactly this.

use crate::authority::CanonicalAuthority;
use crate::chain::Chain;
use crate::decision::{Decision, Reason, RuleIdx, WouldBe};
use crate::model::{
    ClaimTest, Condition, Effect, HeaderTest, IntentIdx, Method, Principal, Rule, StrId, UserTest,
};
use crate::path;
use crate::policy::{FoundBy, Policy, SubjectKey, RULE_DENY, RULE_DRY_RUN, RULE_PEER_ONLY};
use crate::routes::SplitPath;
use crate::spiffe::SpiffeId;

/// Request headers, looked up by lowercase name.
pub trait Headers {
    /// The header's value, if present.
    fn get(&self, lowercase_name: &str) -> Option<&str>;

    /// Whether the header occurs more than once.
    fn is_repeated(&self, lowercase_name: &str) -> bool;

    /// Reads every header of `lowercase_names` into `values` (same order):
    /// `false` if any of them occurs more than once. Implementations may do
    /// this in one pass over the headers; the default asks `is_repeated`
    /// then `get` for each name.
    fn read_all<'s>(&'s self, lowercase_names: &[String], values: &mut [Option<&'s str>]) -> bool {
        if lowercase_names.iter().any(|name| self.is_repeated(name)) {
            return false;
        }
        for (name, value) in lowercase_names.iter().zip(values) {
            *value = self.get(name);
        }
        true
    }
}

/// `k` equals `lower` (a name without ASCII uppercase) ignoring ASCII case.
#[inline]
fn eq_lowercase(k: &[u8], lower: &[u8]) -> bool {
    k.len() == lower.len()
        && k.iter()
            .zip(lower)
            .all(|(a, b)| a.to_ascii_lowercase() == *b)
}

/// Bit `n` set when some name is `n` bytes long (names of 64 bytes or more
/// set no bit and are always compared).
#[inline]
fn length_bits(names: &[String]) -> u64 {
    names.iter().fold(0u64, |acc, name| {
        acc | 1u64.checked_shl(name.len() as u32).unwrap_or(0)
    })
}

/// Whether a header of this length can be one of the names of `bits`.
#[inline]
fn may_match(bits: u64, len: usize) -> bool {
    len >= 64 || (bits >> len) & 1 != 0
}

/// Records header `k` = `v` for [`Headers::read_all`]; `false` if a name
/// already had a value.
#[inline]
fn record<'s>(k: &str, v: &'s str, names: &[String], values: &mut [Option<&'s str>]) -> bool {
    for (name, value) in names.iter().zip(values.iter_mut()) {
        if eq_lowercase(k.as_bytes(), name.as_bytes()) {
            if value.is_some() {
                return false;
            }
            *value = Some(v);
        }
    }
    true
}

/// [`Headers::read_all`] over (name, value) pairs in one pass.
pub(crate) fn read_all_pairs<'s>(
    pairs: impl Iterator<Item = (&'s str, &'s str)>,
    names: &[String],
    values: &mut [Option<&'s str>],
) -> bool {
    values.fill(None);
    let bits = length_bits(names);
    pairs
        .filter(|(k, _)| may_match(bits, k.len()))
        .all(|(k, v)| record(k, v, names, values))
}

impl Headers for &[(&str, &str)] {
    fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    fn is_repeated(&self, name: &str) -> bool {
        self.iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .nth(1)
            .is_some()
    }

    fn read_all<'s>(&'s self, names: &[String], values: &mut [Option<&'s str>]) -> bool {
        values.fill(None);
        let bits = length_bits(names);
        self.iter()
            .filter(|(k, _)| may_match(bits, k.len()))
            .all(|(k, v)| record(k, v, names, values))
    }
}

impl Headers for Vec<(String, String)> {
    fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn is_repeated(&self, name: &str) -> bool {
        self.iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .nth(1)
            .is_some()
    }

    fn read_all<'s>(&'s self, names: &[String], values: &mut [Option<&'s str>]) -> bool {
        values.fill(None);
        let bits = length_bits(names);
        self.iter()
            .filter(|(k, _)| may_match(bits, k.len()))
            .all(|(k, v)| record(k, v, names, values))
    }
}

/// Condition headers read up front into slots when the policy has at most
/// this many (otherwise each condition asks [`Headers::get`]).
const HEADER_SLOTS: usize = 8;

/// A claim value of a user token.
#[derive(Debug, Clone, Copy)]
pub enum Claim<'a> {
    /// A string claim.
    Str(&'a str),
    /// A list-of-strings claim.
    List(&'a [String]),
}

/// A verified end user, as rules see it.
pub trait UserInfo {
    /// The user's subject (`sub`).
    fn subject(&self) -> &str;
    /// The token issuer, when the token was verified at this hop.
    fn issuer(&self) -> Option<&str>;
    /// Whether the user has this scope.
    fn has_scope(&self, scope: &str) -> bool;
    /// A claim by the canonical text of its path
    /// ([`crate::identity::ClaimPath`]), when the token was verified at
    /// this hop.
    fn claim(&self, name: &str) -> Option<Claim<'_>>;
}

/// The end user carried by a chain (subject and scopes only).
struct ChainUser<'a> {
    subject: &'a str,
    chain: &'a Chain,
}

impl UserInfo for ChainUser<'_> {
    fn subject(&self) -> &str {
        self.subject
    }
    fn issuer(&self) -> Option<&str> {
        None
    }
    fn has_scope(&self, scope: &str) -> bool {
        self.chain.scopes.iter().any(|s| s == scope)
    }
    fn claim(&self, _name: &str) -> Option<Claim<'_>> {
        None
    }
}

/// Everything `evaluate` looks at.
pub struct Request<'a> {
    /// The mTLS-verified direct peer, or why there is none.
    pub peer: Result<&'a SpiffeId, Reason>,
    /// The JWT-SVID subject: `None` when no token was presented, an error
    /// when one was presented and failed verification.
    pub jwt_svid: Option<Result<&'a SpiffeId, Reason>>,
    /// The end user from a token verified at this hop (same convention).
    pub user: Option<Result<&'a dyn UserInfo, Reason>>,
    /// The caller chain rebuilt by the inbound side; `None` = just the peer.
    pub chain: Option<Result<&'a Chain, Reason>>,
    /// `:method`.
    pub method: &'a str,
    /// `:path`, query included.
    pub path: &'a str,
    /// `:authority` (or `host`) as received, port allowed; `evaluate`
    /// canonicalizes it ([`CanonicalAuthority`]) and denies
    /// `non_canonical_host` when it cannot. Empty means no host.
    pub authority: &'a str,
    /// Request headers that conditions may read.
    pub headers: &'a dyn Headers,
}

impl<'a> Request<'a> {
    /// A request identified only by its mTLS peer.
    pub fn from_peer(
        peer: Result<&'a SpiffeId, Reason>,
        method: &'a str,
        path: &'a str,
        authority: &'a str,
        headers: &'a dyn Headers,
    ) -> Self {
        Request {
            peer,
            jwt_svid: None,
            user: None,
            chain: None,
            method,
            path,
            authority,
            headers,
        }
    }
}

/// The verified facts a rule is checked against.
struct Facts<'a> {
    peer: Option<&'a SpiffeId>,
    /// The peer's index keys, looked up once.
    peer_key: Option<SubjectKey>,
    jwt_svid: Option<&'a SpiffeId>,
    user: Option<&'a dyn UserInfo>,
    chain: Option<&'a Chain>,
    intent: Option<IntentIdx>,
    headers: &'a dyn Headers,
    /// Values of `Policy::condition_headers`, when read up front.
    header_values: Option<&'a [Option<&'a str>]>,
}

impl Facts<'_> {
    /// Hops origin → direct peer, without allocating when there is no chain.
    fn hops(&self) -> &[SpiffeId] {
        match (self.chain, self.peer) {
            (Some(chain), _) => &chain.hops,
            (None, Some(peer)) => core::slice::from_ref(peer),
            (None, None) => &[],
        }
    }
}

/// The lowest-numbered matching rule of each kind.
#[derive(Default, Clone, Copy)]
struct Matches {
    enforced_deny: Option<RuleIdx>,
    enforced_allow: Option<RuleIdx>,
    dry_run_deny: Option<RuleIdx>,
    dry_run_allow: Option<RuleIdx>,
}

fn keep_lowest(slot: &mut Option<RuleIdx>, rule: RuleIdx) {
    if slot.is_none_or(|r| rule < r) {
        *slot = Some(rule);
    }
}

fn lowest(a: Option<RuleIdx>, b: Option<RuleIdx>) -> Option<RuleIdx> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

/// Effect, reason and rule given the matching deny and allow rules:
/// deny overrides allow; nothing matching is a default deny.
fn resolve(
    deny: Option<RuleIdx>,
    allow: Option<RuleIdx>,
    classified: bool,
) -> (Effect, Reason, Option<RuleIdx>) {
    match (deny, allow) {
        (Some(rule), _) => (Effect::Deny, Reason::DeniedByRule, Some(rule)),
        (None, Some(rule)) => (Effect::Allow, Reason::AllowedByRule, Some(rule)),
        (None, None) if classified => (Effect::Deny, Reason::NoMatchingRule, None),
        (None, None) => (Effect::Deny, Reason::Unclassified, None),
    }
}

/// Whether the credential requirements of `rule.principal` hold.
fn principal_holds(policy: &Policy, rule: &Rule, facts: &Facts<'_>) -> bool {
    match &rule.principal {
        Principal::Peer => facts.peer.is_some(),
        Principal::JwtSvid => facts.jwt_svid.is_some(),
        Principal::JwtSvidVia(via) => {
            facts.jwt_svid.is_some()
                && facts
                    .peer
                    .is_some_and(|p| policy.any_subject_matches(via, p))
        }
        Principal::PeerBoundJwtSvid => {
            matches!((facts.peer, facts.jwt_svid), (Some(p), Some(j)) if p == j)
        }
        Principal::User => facts.user.is_some(),
    }
}

fn header_holds(value: Option<&str>, test: &HeaderTest, policy: &Policy) -> bool {
    match test {
        HeaderTest::Present => value.is_some(),
        HeaderTest::Absent => value.is_none(),
        HeaderTest::Equals(v) => value == Some(policy.string(*v)),
        HeaderTest::NotEquals(v) => value != Some(policy.string(*v)),
        HeaderTest::OneOf(vs) => {
            value.is_some_and(|val| vs.iter().any(|v| policy.string(*v) == val))
        }
        HeaderTest::Prefix(v) => value.is_some_and(|val| val.starts_with(policy.string(*v))),
    }
}

fn user_holds(user: Option<&dyn UserInfo>, test: &UserTest, policy: &Policy) -> bool {
    let Some(user) = user else { return false };
    match test {
        UserTest::Present => true,
        UserTest::Subject(vs) => vs.iter().any(|v| policy.string(*v) == user.subject()),
        UserTest::Issuer(vs) => user
            .issuer()
            .is_some_and(|iss| vs.iter().any(|v| policy.string(*v) == iss)),
        UserTest::HasScope(v) => user.has_scope(policy.string(*v)),
        UserTest::Claim { name, test } => {
            let Some(claim) = user.claim(policy.string(*name)) else {
                return false;
            };
            match (test, claim) {
                (ClaimTest::Equals(v), Claim::Str(s)) => s == policy.string(*v),
                (ClaimTest::OneOf(vs), Claim::Str(s)) => vs.iter().any(|v| policy.string(*v) == s),
                (ClaimTest::Contains(v), Claim::Str(s)) => s == policy.string(*v),
                (ClaimTest::Contains(v), Claim::List(items)) => {
                    items.iter().any(|i| i == policy.string(*v))
                }
                (ClaimTest::Equals(_) | ClaimTest::OneOf(_), Claim::List(_)) => false,
            }
        }
    }
}

fn header_value<'a>(policy: &Policy, name: StrId, facts: &Facts<'a>) -> Option<&'a str> {
    if let Some(values) = facts.header_values {
        if let Some(value) = policy.header_slot(name).and_then(|i| values.get(i)) {
            return *value;
        }
    }
    facts.headers.get(policy.string(name))
}

fn conditions_hold(policy: &Policy, conditions: &[Condition], facts: &Facts<'_>) -> bool {
    conditions
        .iter()
        .all(|cond| condition_holds(policy, cond, facts))
}

fn condition_holds(policy: &Policy, cond: &Condition, facts: &Facts<'_>) -> bool {
    match cond {
        Condition::Header { name, test } => {
            header_holds(header_value(policy, *name, facts), test, policy)
        }
        Condition::Origin(subjects) => facts
            .hops()
            .first()
            .is_some_and(|o| policy.any_subject_matches(subjects, o)),
        Condition::AnyHop(subjects) => facts
            .hops()
            .iter()
            .any(|h| policy.any_subject_matches(subjects, h)),
        Condition::NoHop(subjects) => !facts
            .hops()
            .iter()
            .any(|h| policy.any_subject_matches(subjects, h)),
        Condition::Depth { min, max } => {
            let depth = facts.hops().len();
            depth >= usize::from(*min) && depth <= usize::from(*max)
        }
        Condition::Complete => facts.chain.is_none_or(|c| c.complete) && !facts.hops().is_empty(),
        Condition::Purpose(names) => {
            let purpose = facts
                .chain
                .and_then(|c| c.purpose.as_deref())
                .or(facts.intent.map(|i| policy.intent_name(i)));
            purpose.is_some_and(|p| names.iter().any(|n| policy.string(*n) == p))
        }
        Condition::User(test) => user_holds(facts.user, test, policy),
    }
}

/// Decides one request. Never panics, never allocates.
pub fn evaluate(policy: &Policy, req: &Request<'_>) -> Decision {
    let decision = evaluate_rules(policy, req);
    if !policy.is_dry_run() {
        return decision;
    }
    // Whole-policy dry-run: let everything through, report what would happen.
    let would = decision.would_be.unwrap_or(WouldBe {
        effect: decision.effect,
        reason: decision.reason,
        rule: decision.rule,
    });
    Decision {
        effect: Effect::Allow,
        reason: Reason::PolicyDryRun,
        intent: decision.intent,
        rule: None,
        would_be: Some(would),
    }
}

fn evaluate_rules(policy: &Policy, req: &Request<'_>) -> Decision {
    with_facts(policy, req, |facts| decide_rules(policy, facts)).unwrap_or_else(|deny| deny)
}

/// The checks before any rule (credentials, duplicate condition headers,
/// method, path, authority), then `then` with the verified facts and the
/// request's intent. `Err` is the deny a check gave.
fn with_facts<R>(
    policy: &Policy,
    req: &Request<'_>,
    then: impl FnOnce(&Facts<'_>) -> R,
) -> Result<R, Decision> {
    // A credential that was presented and failed is a deny, never "anonymous".
    let user = match req.user {
        Some(Err(reason)) => return Err(Decision::deny(reason)),
        Some(Ok(user)) => Some(user),
        None => None,
    };
    let jwt_svid = match req.jwt_svid {
        Some(Err(reason)) => return Err(Decision::deny(reason)),
        Some(Ok(id)) => Some(id),
        None => None,
    };
    let peer = match req.peer {
        Ok(peer) => Some(peer),
        // Without mTLS at all, a verified token may still carry the request;
        // a certificate that was presented and refused is always a deny.
        Err(Reason::NoPeerCertificate) if jwt_svid.is_some() || user.is_some() => None,
        Err(reason) => return Err(Decision::deny(reason)),
    };
    let peer_key = peer.map(|p| policy.subject_key(p));
    if peer_key.is_some_and(|k| !policy.trusts_key(&k)) {
        return Err(Decision::deny(Reason::UntrustedTrustDomain));
    }
    let chain = match req.chain {
        Some(Err(reason)) => return Err(Decision::deny(reason)),
        Some(Ok(chain)) => Some(chain),
        None => None,
    };
    // A condition must never depend on which copy of a header is read.
    let names = policy.condition_headers();
    let mut slots: [Option<&str>; HEADER_SLOTS] = [None; HEADER_SLOTS];
    let header_values = match slots.get_mut(..names.len()) {
        Some(values) => {
            if !req.headers.read_all(names, values) {
                return Err(Decision::deny(Reason::DuplicateHeader));
            }
            Some(&*values)
        }
        None => {
            if names.iter().any(|name| req.headers.is_repeated(name)) {
                return Err(Decision::deny(Reason::DuplicateHeader));
            }
            None
        }
    };
    let Some(method) = Method::parse(req.method) else {
        return Err(Decision::deny(Reason::BadMethod));
    };
    let mut ends = [0u16; path::MAX_SEGMENTS];
    let Ok((rest, count)) = path::split_canonical(req.path, &mut ends) else {
        return Err(Decision::deny(Reason::NonCanonicalPath));
    };
    // Classification sees only the canonical host; anything else could be
    // read as a protected host by the app while matching no intent here.
    let Ok(authority) = CanonicalAuthority::parse(req.authority) else {
        return Err(Decision::deny(Reason::NonCanonicalHost));
    };
    let host = authority.host();
    let split = SplitPath {
        rest,
        ends: &ends,
        count,
    };
    let intent: Option<IntentIdx> = policy.router().classify_split(&split, method.bit(), host);

    // The user at this hop: a directly verified token wins over the chain's.
    let chain_user = chain.and_then(|c| {
        c.user
            .as_deref()
            .map(|subject| ChainUser { subject, chain: c })
    });
    let facts = Facts {
        peer,
        peer_key,
        jwt_svid,
        user: user.or(chain_user.as_ref().map(|u| u as &dyn UserInfo)),
        chain,
        intent,
        headers: req.headers,
        header_values,
    };

    Ok(then(&facts))
}

/// The rules' verdict for verified facts.
fn decide_rules(policy: &Policy, facts: &Facts<'_>) -> Decision {
    let (peer, jwt_svid, intent) = (facts.peer, facts.jwt_svid, facts.intent);
    let peer_key = facts.peer_key;
    let mut found = Matches::default();
    let rules = &policy.compiled().rules;
    let mut consider = |idx: RuleIdx| {
        let meta = policy.rule_meta(idx);
        if meta & RULE_PEER_ONLY != 0 {
            // Principal `Peer`, no conditions: the rule itself is not read.
            if facts.peer.is_none() {
                return;
            }
        } else {
            let Some(rule) = rules.get(idx.index()) else {
                return;
            };
            if !principal_holds(policy, rule, facts)
                || !conditions_hold(policy, &rule.conditions, facts)
            {
                return;
            }
        }
        let slot = match (meta & RULE_DENY != 0, meta & RULE_DRY_RUN != 0) {
            (true, false) => &mut found.enforced_deny,
            (false, false) => &mut found.enforced_allow,
            (true, true) => &mut found.dry_run_deny,
            (false, true) => &mut found.dry_run_allow,
        };
        keep_lowest(slot, idx);
    };
    let peer_id = peer.zip(peer_key);
    policy.for_each_candidate(intent, FoundBy::Peer, peer_id, &mut consider);
    let jwt_id = jwt_svid.map(|j| (j, policy.subject_key(j)));
    policy.for_each_candidate(intent, FoundBy::JwtSvid, jwt_id, &mut consider);
    if facts.user.is_some() {
        policy.for_each_candidate(intent, FoundBy::User, None, &mut consider);
    }

    let classified = intent.is_some();
    let (effect, reason, rule) = resolve(found.enforced_deny, found.enforced_allow, classified);
    // What the outcome would be with the dry-run rules enforced too.
    let (would_effect, would_reason, would_rule) = resolve(
        lowest(found.enforced_deny, found.dry_run_deny),
        lowest(found.enforced_allow, found.dry_run_allow),
        classified,
    );
    let would_be = (would_effect != effect).then_some(WouldBe {
        effect: would_effect,
        reason: would_reason,
        rule: would_rule,
    });
    Decision {
        effect,
        reason,
        intent,
        rule,
        would_be,
    }
}

/// How one rule fares against a request: the first of its requirements that
/// does not hold, in the order the engine checks them. What `meshward
/// explain` shows for near misses and `--why-not`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleCheck {
    /// Every requirement holds: the rule applies to the request.
    Holds,
    /// The request's intent is not one the rule names (or the request is
    /// unclassified and the rule does not take unclassified requests).
    Intent,
    /// The rule's principal needs a credential the request does not carry
    /// (a JWT-SVID, one through a forwarder, a user, an mTLS peer).
    Principal,
    /// None of the rule's subjects is the request's identity.
    Subject,
    /// The condition at this index (source order) does not hold.
    Condition(usize),
}

/// Checks one rule against a request with the same facts `evaluate` uses.
/// `Err` is the deny that comes before any rule is looked at (a refused
/// credential, a non-canonical path or host...).
pub fn check_rule(
    policy: &Policy,
    req: &Request<'_>,
    rule: RuleIdx,
) -> Result<RuleCheck, Decision> {
    with_facts(policy, req, |facts| {
        let Some(rule) = policy.compiled().rules.get(rule.index()) else {
            return RuleCheck::Intent;
        };
        let names_intent = match facts.intent {
            Some(intent) => rule.intents.contains(&intent),
            None => rule.unclassified,
        };
        if !names_intent {
            return RuleCheck::Intent;
        }
        if !principal_holds(policy, rule, facts) {
            return RuleCheck::Principal;
        }
        let identity = match rule.principal {
            Principal::Peer => facts.peer,
            Principal::User => None,
            Principal::JwtSvid | Principal::JwtSvidVia(_) | Principal::PeerBoundJwtSvid => {
                facts.jwt_svid
            }
        };
        let subject_ok = match rule.principal {
            Principal::User => true,
            _ => identity.is_some_and(|id| policy.any_subject_matches(&rule.subjects, id)),
        };
        if !subject_ok {
            return RuleCheck::Subject;
        }
        match rule
            .conditions
            .iter()
            .position(|cond| !condition_holds(policy, cond, facts))
        {
            Some(index) => RuleCheck::Condition(index),
            None => RuleCheck::Holds,
        }
    })
}
