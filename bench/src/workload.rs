//! One benchmark workload: a generated policy of N rules, compiled and loaded
//! the way the filter loads it, plus its request mix prepared for every engine.

use meshward_engine::model::CompiledPolicy;
use meshward_engine::model::Effect;
use meshward_engine::spiffe::SpiffeId;
use meshward_engine::{evaluate, Decision, Policy, Request};
use meshward_policy::generate::generate_policy;

use crate::mix::{request_mix, RequestSpec, SEED};

/// Rule counts every report covers.
pub const SIZES: [usize; 4] = [10, 100, 1_000, 10_000];
/// Requests in each mix.
pub const MIX_LEN: usize = 256;

/// What a request owns so that a [`Request`] can borrow it.
#[derive(Debug, Clone)]
pub struct Owned {
    /// The request as generated.
    pub spec: RequestSpec,
    /// The peer, parsed once (the filter caches it per certificate digest).
    pub peer: SpiffeId,
    /// Pseudo-headers and headers, lowercase names, as one list (the filter
    /// reads the header map in one host call). The engine's own `Headers`
    /// implementation for it is used, so the bench follows the trait.
    pub headers: Vec<(String, String)>,
}

impl Owned {
    /// Prepares one request.
    pub fn new(spec: RequestSpec) -> Self {
        let peer = SpiffeId::parse(&spec.peer).unwrap_or_else(|e| panic!("{}: {e}", spec.peer));
        let mut headers = vec![
            (":method".to_owned(), spec.method.to_owned()),
            (":path".to_owned(), spec.path.clone()),
            (":authority".to_owned(), spec.authority.clone()),
        ];
        headers.extend(spec.headers.iter().cloned());
        Owned {
            spec,
            peer,
            headers,
        }
    }

    /// The engine's view of it.
    pub fn request(&self) -> Request<'_> {
        Request::from_peer(
            Ok(&self.peer),
            self.spec.method,
            &self.spec.path,
            &self.spec.authority,
            &self.headers,
        )
    }
}

/// A compiled, loaded policy and its request mix.
pub struct Workload {
    /// Rules in the policy.
    pub rules: usize,
    /// Policy source.
    pub source: String,
    /// The compiled wire model.
    pub model: CompiledPolicy,
    /// The encoded policy bytes.
    pub bytes: Vec<u8>,
    /// The loaded policy (decoded from `bytes`, as the filter does).
    pub policy: Policy,
    /// The request mix.
    pub requests: Vec<Owned>,
}

impl Workload {
    /// Generates, compiles and loads the `rules`-rule policy and its mix.
    pub fn new(rules: usize) -> Self {
        Self::with_mix(rules, MIX_LEN)
    }

    /// Same, with `mix_len` requests.
    pub fn with_mix(rules: usize, mix_len: usize) -> Self {
        let source = generate_policy(rules);
        let compiled = meshward_policy::compile_source(&source, "bench.policy")
            .unwrap_or_else(|d| panic!("generated policy ({rules} rules) fails to compile:\n{d}"));
        assert_eq!(compiled.policy.rules.len(), rules);
        let policy = Policy::decode(&compiled.bytes)
            .unwrap_or_else(|e| panic!("compiled policy does not load: {e}"));
        let requests = request_mix(rules, mix_len, SEED)
            .into_iter()
            .map(Owned::new)
            .collect();
        Workload {
            rules,
            source,
            model: compiled.policy,
            bytes: compiled.bytes,
            policy,
            requests,
        }
    }

    /// The prepared engine requests (borrowing `self`).
    pub fn engine_requests(&self) -> Vec<Request<'_>> {
        self.requests.iter().map(Owned::request).collect()
    }

    /// meshward's decision on request `i`.
    pub fn decide(&self, i: usize) -> Decision {
        evaluate(&self.policy, &self.requests[i].request())
    }
}

/// The outcome every engine must agree on: the enforced effect, and the
/// effect with the dry-run rules enforced too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Enforced: allow?
    pub allow: bool,
    /// With dry-run rules enforced: allow?
    pub would_allow: bool,
}

impl Verdict {
    /// meshward's verdict from its decision.
    pub fn of(decision: &Decision) -> Self {
        let allow = decision.effect == Effect::Allow;
        Verdict {
            allow,
            would_allow: decision
                .would_be
                .map_or(allow, |w| w.effect == Effect::Allow),
        }
    }
}
