//! A loaded policy: the wire model, checked once, plus the lookup indexes the
//! per-request path uses (route trie, per-intent subject indexes).

use std::collections::HashMap;
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

use crate::chain::ChainLimits;
use crate::codec::{self, DecodeError};
use crate::decision::RuleIdx;
use crate::model::{
    ClaimTest, CompiledPolicy, Condition, Effect, HeaderTest, IdSegment, IntentIdx, Method,
    Principal, Segment, StrId, Subject, UserTest,
};
use crate::routes::{Router, Template};
use crate::spiffe::{self, eq_bytes, pattern, text_hash, SpiffeId};

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
        intent: IntentIdx,
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
    /// A header name that is not lowercase.
    #[error("compiled policy has a header name that is not lowercase: `{0}`")]
    NotLowercase(String),
    /// An intent host that is not a canonical host (`authority` module:
    /// lower-case DNS name or dotted-quad IPv4, no trailing dot, no port), so
    /// it could never match a request's canonical host.
    #[error("compiled policy has an intent host that is not canonical: `{0}`")]
    NonCanonicalHost(String),
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

/// "No id": a string the policy never mentions.
pub(crate) const NO_ID: u32 = u32::MAX;

/// A read-only string -> id table (open addressing on [`text_hash`]), built
/// once from policy strings. Lookups take the hash precomputed by the caller
/// (a parsed [`SpiffeId`] carries its own) and never insert.
#[derive(Debug, Clone, Default)]
struct StrTable {
    slots: Vec<StrSlot>,
    mask: usize,
    /// Number of ids.
    len: usize,
    /// Every string, back to back.
    arena: String,
}

#[derive(Debug, Clone, Copy)]
struct StrSlot {
    hash: u64,
    /// `NO_ID` marks an empty slot.
    id: u32,
    /// The text: `arena[start..start + len]`.
    start: u32,
    len: u32,
}

/// Builds a [`StrTable`], deduplicating; borrows the texts until
/// [`StrTableBuilder::finish`] copies them into one arena.
#[derive(Default)]
struct StrTableBuilder<'a> {
    ids: FxMap<&'a str, u32>,
    texts: Vec<&'a str>,
}

impl<'a> StrTableBuilder<'a> {
    fn intern(&mut self, text: &'a str) -> u32 {
        if let Some(id) = self.ids.get(text) {
            return *id;
        }
        let id = self.texts.len() as u32;
        self.ids.insert(text, id);
        self.texts.push(text);
        id
    }

    fn finish(self) -> StrTable {
        let size = (self.texts.len() * 2).next_power_of_two().max(4);
        let mask = size - 1;
        let empty = StrSlot {
            hash: 0,
            id: NO_ID,
            start: 0,
            len: 0,
        };
        let mut slots = vec![empty; size];
        let mut arena = String::with_capacity(self.texts.iter().map(|t| t.len()).sum());
        for (id, text) in self.texts.iter().enumerate() {
            let hash = text_hash(text.as_bytes());
            let mut i = (hash >> 32) as usize & mask;
            while slots.get(i).is_some_and(|s| s.id != NO_ID) {
                i = (i + 1) & mask;
            }
            if let Some(slot) = slots.get_mut(i) {
                *slot = StrSlot {
                    hash,
                    id: id as u32,
                    start: arena.len() as u32,
                    len: text.len() as u32,
                };
            }
            arena.push_str(text);
        }
        StrTable {
            slots,
            mask,
            len: self.texts.len(),
            arena,
        }
    }
}

impl StrTable {
    /// The id of `text` (whose `text_hash` is `hash`), or [`NO_ID`].
    #[inline]
    fn find(&self, hash: u64, text: &str) -> u32 {
        let mut i = (hash >> 32) as usize & self.mask;
        // At most half full: an empty slot ends every probe.
        for _ in 0..self.slots.len() {
            let Some(slot) = self.slots.get(i) else {
                return NO_ID;
            };
            if slot.id == NO_ID {
                return NO_ID;
            }
            let (start, len) = (slot.start as usize, slot.len as usize);
            if slot.hash == hash
                && self
                    .arena
                    .as_bytes()
                    .get(start..start + len)
                    .is_some_and(|t| eq_bytes(t, text.as_bytes()))
            {
                return slot.id;
            }
            i = (i + 1) & self.mask;
        }
        NO_ID
    }
}

/// A verified identity's ids in the policy's tables, looked up once per
/// request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SubjectKey {
    /// Id of the full SPIFFE ID among exact subjects, or [`NO_ID`].
    exact: u32,
    /// Id of its trust domain among the policy's trust domains, or [`NO_ID`].
    domain: u32,
}

type PatternIdx = u32;

/// `Policy::rule_meta` bits.
pub(crate) const RULE_DENY: u8 = 1;
pub(crate) const RULE_DRY_RUN: u8 = 2;
/// Principal `Peer` and no conditions: holds whenever the peer index found it.
pub(crate) const RULE_PEER_ONLY: u8 = 4;

/// How a candidate's key is compared (sort order within a slot's section).
const TAG_EXACT: u8 = 0;
const TAG_DOMAIN: u8 = 1;
const TAG_PATTERN: u8 = 2;
const TAG_ANY: u8 = 3;

/// Candidate kinds, in the order of a slot's sections.
const KIND_PEER: u8 = 0;
const KIND_JWT_SVID: u8 = 1;
const KIND_USER: u8 = 2;
/// `slot_ranges[s][k]..slot_ranges[s][k + 1]`: slot `s`'s section of kind `k`.
const SLOT_BOUNDS: usize = 4;

/// Sections up to this long are scanned; longer ones are searched by key.
const SCAN_MAX: usize = 16;

/// One candidate rule of an intent slot.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    /// Exact-subject id, domain id, pattern index, or 0 (per `tag`).
    key: u32,
    rule: RuleIdx,
    tag: u8,
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
    /// Trust domain id.
    domain: u32,
    segments: Vec<PatternSeg>,
}

#[derive(Debug, Clone)]
enum PatternSeg {
    Literal(Box<str>),
    Any,
    Rest,
}

impl Pattern {
    /// Whether `id`, whose trust domain has id `domain`, matches.
    #[inline]
    fn matches(&self, domain: u32, id: &SpiffeId) -> bool {
        domain == self.domain
            && domain != NO_ID
            && pattern::path_matches(self.segments.iter().map(PatternSeg::as_segment), id)
    }
}

impl PatternSeg {
    fn as_segment(&self) -> pattern::Segment<'_> {
        match self {
            PatternSeg::Literal(s) => pattern::Segment::Literal(s),
            PatternSeg::Any => pattern::Segment::Any,
            PatternSeg::Rest => pattern::Segment::Rest,
        }
    }
}

/// A validated, indexed policy, ready for [`crate::evaluate`].
#[derive(Debug, Clone)]
pub struct Policy {
    compiled: CompiledPolicy,
    hash: [u8; 32],
    hash_hex: String,
    /// Every trust domain the policy names (trusted, subjects, patterns).
    domains: StrTable,
    /// Per domain id: listed in `trust_domains`.
    trusted: Vec<bool>,
    /// Every exact SPIFFE ID subject.
    exact_ids: StrTable,
    router: Router,
    patterns: Vec<Pattern>,
    /// One row of section bounds per intent, then one for unclassified
    /// requests (see `KIND_*`).
    slot_ranges: Vec<[u32; SLOT_BOUNDS]>,
    /// Candidates, sorted by (slot, kind, tag, key, rule).
    candidates: Vec<Candidate>,
    /// Per rule: `RULE_*` bits (what most candidates need, without reading
    /// the rule itself).
    rule_meta: Vec<u8>,
    condition_headers: Vec<String>,
    /// Header-name string id -> index in `condition_headers`, sorted.
    header_slots: Vec<(StrId, u32)>,
}

impl Policy {
    /// Decodes compiled bytes (framing, hash, body) and validates them.
    pub fn decode(bytes: &[u8]) -> Result<Policy, PolicyError> {
        let (compiled, hash) = codec::decode(bytes)?;
        Policy::from_compiled(compiled, hash)
    }

    /// Checks every index and identity in `compiled` (`validate`), then
    /// builds the indexes (`Policy::index`).
    pub fn from_compiled(compiled: CompiledPolicy, hash: [u8; 32]) -> Result<Policy, PolicyError> {
        Ok(Policy::index(validate(compiled)?, hash))
    }

    /// Interns, indexes and classifies a validated policy. Cannot fail: every
    /// string id, intent index, identity and route shape was checked by
    /// [`validate`].
    fn index(Validated(compiled): Validated, hash: [u8; 32]) -> Policy {
        // INVARIANT: `validate` checked every string id read here, so the
        // fallback is never taken.
        let str_of = |id: StrId| compiled.strings.get(id.index()).map_or("", String::as_str);

        let mut domains = StrTableBuilder::default();
        let trusted_ids: Vec<u32> = compiled
            .trust_domains
            .iter()
            .map(|td| domains.intern(str_of(*td)))
            .collect();
        let mut exact_ids = StrTableBuilder::default();

        let router = Router::build(
            compiled
                .intents
                .iter()
                .enumerate()
                .flat_map(|(idx, intent)| {
                    let host = intent.host.map(str_of);
                    intent.routes.iter().map(move |route| Template {
                        intent: IntentIdx(idx as u32),
                        segments: &route.segments,
                        methods: intent.methods,
                        host,
                    })
                }),
            str_of,
        );

        let mut patterns = Vec::new();
        // (slot, kind, tag, key, rule), sorted below into per-slot sections.
        let mut candidates: Vec<(u32, u8, u8, u32, RuleIdx)> = Vec::new();
        let mut condition_headers: Vec<String> = Vec::new();
        let mut header_slots: Vec<(StrId, u32)> = Vec::new();
        let mut rule_meta = Vec::with_capacity(compiled.rules.len());
        for (rule_idx, rule) in compiled.rules.iter().enumerate() {
            let rule_idx = RuleIdx(rule_idx as u32);
            rule_meta.push(
                if rule.effect == Effect::Deny {
                    RULE_DENY
                } else {
                    0
                } | if rule.dry_run { RULE_DRY_RUN } else { 0 }
                    | if rule.principal == Principal::Peer && rule.conditions.is_empty() {
                        RULE_PEER_ONLY
                    } else {
                        0
                    },
            );
            for cond in &rule.conditions {
                if let Condition::Header { name, .. } = cond {
                    let text = str_of(*name);
                    if !condition_headers.iter().any(|h| h == text) {
                        condition_headers.push(text.to_owned());
                    }
                    let slot = condition_headers.iter().position(|h| h == text);
                    if let (Some(slot), Err(at)) =
                        (slot, header_slots.binary_search_by_key(name, |(id, _)| *id))
                    {
                        header_slots.insert(at, (*name, slot as u32));
                    }
                }
            }
            let mut slots: Vec<usize> = rule.intents.iter().map(|i| i.index()).collect();
            if rule.unclassified {
                slots.push(compiled.intents.len());
            }
            slots.sort_unstable();
            slots.dedup();
            let kind = match rule.principal {
                Principal::Peer | Principal::PeerBoundJwtSvid => KIND_PEER,
                Principal::JwtSvid | Principal::JwtSvidVia(_) => KIND_JWT_SVID,
                Principal::User => {
                    for slot in &slots {
                        candidates.push((*slot as u32, KIND_USER, TAG_ANY, 0, rule_idx));
                    }
                    continue;
                }
            };
            for subject in &rule.subjects {
                let (tag, key) = match resolve_subject(subject, &str_of, &mut patterns) {
                    Resolved::Any => (TAG_ANY, 0),
                    Resolved::Domain(td) => (TAG_DOMAIN, domains.intern(td)),
                    Resolved::Exact(id) => (TAG_EXACT, exact_ids.intern(id)),
                    Resolved::Pattern(p) => (TAG_PATTERN, p),
                };
                for slot in &slots {
                    candidates.push((*slot as u32, kind, tag, key, rule_idx));
                }
            }
        }

        // Patterns by domain id (their domains join the domain table).
        let patterns = patterns
            .into_iter()
            .map(|(td, segments): (&str, Vec<PatternSeg>)| Pattern {
                domain: domains.intern(td),
                segments,
            })
            .collect();

        candidates.sort_unstable();
        let slot_count = compiled.intents.len() + 1;
        let mut slot_ranges = Vec::with_capacity(slot_count);
        for slot in 0..slot_count as u32 {
            let mut bounds = [0u32; SLOT_BOUNDS];
            for (kind, bound) in bounds.iter_mut().enumerate() {
                let kind = kind as u8;
                *bound = candidates.partition_point(|c| (c.0, c.1) < (slot, kind)) as u32;
            }
            slot_ranges.push(bounds);
        }
        let candidates = candidates
            .iter()
            .map(|c| Candidate {
                key: c.3,
                rule: c.4,
                tag: c.2,
            })
            .collect();

        let domains = domains.finish();
        let exact_ids = exact_ids.finish();
        let mut trusted = vec![false; domains.len];
        for id in trusted_ids {
            if let Some(t) = trusted.get_mut(id as usize) {
                *t = true;
            }
        }

        let hash_hex = codec::hex(&hash);
        Policy {
            compiled,
            hash,
            hash_hex,
            domains,
            trusted,
            exact_ids,
            router,
            patterns,
            slot_ranges,
            candidates,
            rule_meta,
            condition_headers,
            header_slots,
        }
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
    pub fn intent_name(&self, idx: IntentIdx) -> &str {
        self.compiled
            .intents
            .get(idx.index())
            .map_or("", |i| self.string(i.name))
    }

    /// The id of rule `idx` (`""` if out of range).
    pub fn rule_id(&self, idx: RuleIdx) -> &str {
        self.compiled
            .rules
            .get(idx.index())
            .map_or("", |r| self.string(r.id))
    }

    /// Whether rule `idx` is a dry-run rule.
    pub fn rule_is_dry_run(&self, idx: RuleIdx) -> bool {
        self.compiled
            .rules
            .get(idx.index())
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
        let id = self
            .domains
            .find(text_hash(trust_domain.as_bytes()), trust_domain);
        self.trusted.get(id as usize).copied().unwrap_or(false)
    }

    /// `id`'s exact-subject and trust-domain ids (hashes precomputed in `id`).
    #[inline]
    pub(crate) fn subject_key(&self, id: &SpiffeId) -> SubjectKey {
        SubjectKey {
            exact: self.exact_ids.find(id.id_hash(), id.as_str()),
            domain: self.domains.find(id.td_hash(), id.trust_domain()),
        }
    }

    /// Whether the trust domain of `key` is trusted.
    #[inline]
    pub(crate) fn trusts_key(&self, key: &SubjectKey) -> bool {
        self.trusted
            .get(key.domain as usize)
            .copied()
            .unwrap_or(false)
    }

    /// `RULE_*` bits of rule `idx` (0 if out of range).
    #[inline]
    pub(crate) fn rule_meta(&self, idx: RuleIdx) -> u8 {
        self.rule_meta.get(idx.index()).copied().unwrap_or(0)
    }

    /// Index in [`Policy::condition_headers`] of a header name's string id.
    #[inline]
    pub(crate) fn header_slot(&self, name: StrId) -> Option<usize> {
        self.header_slots
            .binary_search_by_key(&name, |(id, _)| *id)
            .ok()
            .and_then(|i| self.header_slots.get(i))
            .map(|(_, slot)| *slot as usize)
    }

    /// Number of route trie nodes (size reports).
    pub fn route_nodes(&self) -> usize {
        self.router.node_count()
    }

    pub(crate) fn string(&self, id: StrId) -> &str {
        self.compiled
            .strings
            .get(id.index())
            .map_or("", String::as_str)
    }

    pub(crate) fn router(&self) -> &Router {
        &self.router
    }

    /// Calls `visit` with every rule of this intent slot (`None` =
    /// unclassified) whose subjects match `id` for the credential `by`
    /// (for [`FoundBy::User`], every user rule). A rule may be visited more
    /// than once when several of its subjects match.
    #[inline]
    pub(crate) fn for_each_candidate(
        &self,
        intent: Option<IntentIdx>,
        by: FoundBy,
        id: Option<(&SpiffeId, SubjectKey)>,
        mut visit: impl FnMut(RuleIdx),
    ) {
        let slot = intent.map_or(self.compiled.intents.len(), IntentIdx::index);
        let Some(bounds) = self.slot_ranges.get(slot) else {
            return;
        };
        let section = |kind: u8| -> &[Candidate] {
            let kind = usize::from(kind);
            match (bounds.get(kind), bounds.get(kind + 1)) {
                (Some(a), Some(b)) => self.candidates.get(*a as usize..*b as usize).unwrap_or(&[]),
                _ => &[],
            }
        };
        let (kind, id, key) = match (by, id) {
            (FoundBy::User, _) => {
                section(KIND_USER).iter().for_each(|c| visit(c.rule));
                return;
            }
            (_, None) => return,
            (FoundBy::Peer, Some((id, key))) => (KIND_PEER, id, key),
            (FoundBy::JwtSvid, Some((id, key))) => (KIND_JWT_SVID, id, key),
        };
        let cands = section(kind);
        let pattern_matches = |c: &Candidate| {
            self.patterns
                .get(c.key as usize)
                .is_some_and(|p| p.matches(key.domain, id))
        };
        if cands.len() <= SCAN_MAX {
            for c in cands {
                let hit = match c.tag {
                    TAG_EXACT => c.key == key.exact,
                    TAG_DOMAIN => c.key == key.domain,
                    TAG_PATTERN => pattern_matches(c),
                    _ => true,
                };
                if hit {
                    visit(c.rule);
                }
            }
            return;
        }
        // A long section: binary-search the keyed parts.
        let mut keyed = |tag: u8, want: u32| {
            if want == NO_ID {
                return;
            }
            let from = cands.partition_point(|c| (c.tag, c.key) < (tag, want));
            for c in cands.get(from..).unwrap_or(&[]) {
                if (c.tag, c.key) != (tag, want) {
                    break;
                }
                visit(c.rule);
            }
        };
        keyed(TAG_EXACT, key.exact);
        keyed(TAG_DOMAIN, key.domain);
        let from = cands.partition_point(|c| c.tag < TAG_PATTERN);
        for c in cands.get(from..).unwrap_or(&[]) {
            if c.tag == TAG_ANY || (c.tag == TAG_PATTERN && pattern_matches(c)) {
                visit(c.rule);
            }
        }
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
            } => pattern::matches(
                self.string(*trust_domain),
                segments.iter().map(|seg| match seg {
                    IdSegment::Literal(want) => pattern::Segment::Literal(self.string(*want)),
                    IdSegment::Any => pattern::Segment::Any,
                    IdSegment::Rest => pattern::Segment::Rest,
                }),
                id,
            ),
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

/// A compiled policy that [`validate`] accepted: what [`Policy::index`]
/// relies on.
struct Validated(CompiledPolicy);

/// Checks every string id, intent index, identity, host and route shape of
/// `compiled`, in a fixed order (the first failure is the one reported).
fn validate(compiled: CompiledPolicy) -> Result<Validated, PolicyError> {
    let str_of = |id: StrId| -> Result<&str, PolicyError> {
        compiled
            .strings
            .get(id.index())
            .map(String::as_str)
            .ok_or(PolicyError::BadString(id))
    };
    if compiled.rules.len() > u32::MAX as usize / 2
        || compiled.intents.len() > u32::MAX as usize / 2
    {
        return Err(PolicyError::TooLarge);
    }
    str_of(compiled.name)?;
    for td in &compiled.trust_domains {
        let td = str_of(*td)?;
        spiffe::check_trust_domain(td).map_err(|_| PolicyError::BadIdentity(td.to_owned()))?;
    }

    let all_methods = Method::ALL.iter().fold(0u16, |acc, m| acc | m.bit());
    for intent in &compiled.intents {
        let name = str_of(intent.name)?;
        if intent.methods & !all_methods != 0 {
            return Err(PolicyError::BadMethods(name.to_owned()));
        }
        if let Some(h) = intent.host.map(&str_of).transpose()? {
            if !crate::authority::is_canonical_intent_host(h) {
                return Err(PolicyError::NonCanonicalHost(h.to_owned()));
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
        }
    }

    for rule in &compiled.rules {
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
            validate_condition(cond, &str_of)?;
        }
        for intent in &rule.intents {
            if intent.index() >= compiled.intents.len() {
                return Err(PolicyError::BadIntent {
                    rule: rule_id.to_owned(),
                    intent: *intent,
                });
            }
        }
        for subject in &rule.subjects {
            validate_subject(subject, &str_of)?;
        }
    }

    for subject in &compiled.chain.forwarders {
        validate_subject(subject, &str_of)?;
    }
    Ok(Validated(compiled))
}

fn validate_subject<'a>(
    subject: &Subject,
    str_of: &impl Fn(StrId) -> Result<&'a str, PolicyError>,
) -> Result<(), PolicyError> {
    match subject {
        Subject::AnyAuthenticated => Ok(()),
        Subject::TrustDomain(td) => {
            let td = str_of(*td)?;
            spiffe::check_trust_domain(td).map_err(|_| PolicyError::BadIdentity(td.to_owned()))
        }
        Subject::Exact(id) => {
            let id = str_of(*id)?;
            SpiffeId::parse(id)
                .map(|_| ())
                .map_err(|_| PolicyError::BadIdentity(id.to_owned()))
        }
        Subject::Pattern {
            trust_domain,
            segments,
        } => {
            let td = str_of(*trust_domain)?;
            spiffe::check_trust_domain(td).map_err(|_| PolicyError::BadIdentity(td.to_owned()))?;
            let last = segments.len().saturating_sub(1);
            for (i, seg) in segments.iter().enumerate() {
                match seg {
                    IdSegment::Literal(s) => {
                        let s = str_of(*s)?;
                        spiffe::check_path_segment(s)
                            .map_err(|_| PolicyError::BadIdentity(s.to_owned()))?;
                    }
                    IdSegment::Any => {}
                    IdSegment::Rest if i == last => {}
                    IdSegment::Rest => {
                        return Err(PolicyError::BadIdentity(format!(
                            "spiffe://{td}/.../**/..."
                        )))
                    }
                }
            }
            Ok(())
        }
    }
}

fn validate_condition<'a>(
    cond: &Condition,
    str_of: &impl Fn(StrId) -> Result<&'a str, PolicyError>,
) -> Result<(), PolicyError> {
    let strs = |ids: &[StrId]| ids.iter().try_for_each(|id| str_of(*id).map(|_| ()));
    match cond {
        Condition::Header { name, test } => {
            let name = str_of(*name)?;
            if name.bytes().any(|b| b.is_ascii_uppercase()) {
                return Err(PolicyError::NotLowercase(name.to_owned()));
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

enum Resolved<'a> {
    Any,
    Domain(&'a str),
    Exact(&'a str),
    Pattern(PatternIdx),
}

/// A validated subject as the index keys it; patterns are collected into
/// `patterns` (trust domain, segments).
fn resolve_subject<'a>(
    subject: &Subject,
    str_of: &impl Fn(StrId) -> &'a str,
    patterns: &mut Vec<(&'a str, Vec<PatternSeg>)>,
) -> Resolved<'a> {
    match subject {
        Subject::AnyAuthenticated => Resolved::Any,
        Subject::TrustDomain(td) => Resolved::Domain(str_of(*td)),
        Subject::Exact(id) => Resolved::Exact(str_of(*id)),
        Subject::Pattern {
            trust_domain,
            segments,
        } => {
            let resolved = segments
                .iter()
                .map(|seg| match seg {
                    IdSegment::Literal(s) => PatternSeg::Literal(str_of(*s).into()),
                    IdSegment::Any => PatternSeg::Any,
                    IdSegment::Rest => PatternSeg::Rest,
                })
                .collect();
            let idx = patterns.len() as PatternIdx;
            patterns.push((str_of(*trust_domain), resolved));
            Resolved::Pattern(idx)
        }
    }
}
