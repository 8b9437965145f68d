//! Running one request through the engine and describing the decision in the
//! policy's own terms: intent names, rule ids and their source locations.
//!
//! Both `meshward test` and `meshward explain` come through here, on a policy
//! decoded from the compiled bytes, so they answer exactly what Envoy does.

use std::fmt;

use std::collections::BTreeMap;

use meshward_engine::audit::{AuditClaim, AuditUser};
use meshward_engine::chain::{Chain, CHAIN_HEADER};
use meshward_engine::model::Effect;
use meshward_engine::pipeline::{
    HeaderList, OfflineHost, PeerEvidence, Pipeline, RequestInput, TokenEvidence, Verdict,
};
use meshward_engine::spiffe::{SpiffeId, SpiffeIdError};
use meshward_engine::{check_rule, Decision, Policy, Reason, RuleCheck, RuleIdx};
use serde_json::json;

use crate::sample::{ClaimValue, SampleRequest, SampleUser};
use crate::source_map::{Location, SourceMap};

/// The clock for sample requests: any fixed time works, a sample chain is
/// issued at it and checked at it.
const SAMPLE_NOW: u64 = 1_700_000_000;

/// The filter, offline: the engine's request pipeline configured with a
/// plugin configuration, deciding requests through an [`OfflineHost`]. This
/// is how `meshward explain`, `meshward test` and the dry-run predictions
/// decide, so they answer what the proxy does.
pub struct OfflineFilter {
    pipeline: Pipeline,
    host: OfflineHost,
    source_map: SourceMap,
}

impl OfflineFilter {
    /// A filter loaded with plugin configuration bytes (as Envoy delivers
    /// them), naming rules through `source_map`.
    pub fn new(plugin_config: &[u8], source_map: SourceMap) -> Result<Self, String> {
        let mut host = OfflineHost::at(SAMPLE_NOW);
        let mut pipeline = Pipeline::new();
        if !pipeline.on_vm_start(&mut host) || !pipeline.configure(&mut host, plugin_config) {
            let why = host
                .logs
                .iter()
                .rev()
                .map(|(_, line)| line.as_str())
                .find(|line| line.contains("rejected"))
                .unwrap_or("the configuration was refused")
                .to_owned();
            return Err(why);
        }
        Ok(OfflineFilter {
            pipeline,
            host,
            source_map,
        })
    }

    /// The compiled policy's plugin configuration, loaded.
    pub fn for_compiled(compiled: &crate::Compiled) -> Result<Self, String> {
        Self::new(
            compiled.plugin_config_json(&[]).as_bytes(),
            compiled.source_map.clone(),
        )
    }

    /// A filter loaded with an already decoded policy and default settings
    /// (the policy is encoded again; its hash must not change).
    pub fn for_policy(policy: &Policy) -> Result<Self, String> {
        let (bytes, _) = meshward_engine::codec::encode(policy.compiled());
        let config = meshward_engine::config::plugin_config_json(&bytes, &[]).to_string();
        let filter = Self::new(config.as_bytes(), SourceMap::default())?;
        match filter.policy() {
            Some(loaded) if loaded.hash() == policy.hash() => Ok(filter),
            _ => Err("the policy does not encode back to the same bytes".to_owned()),
        }
    }

    /// The pipeline's verdict for a request given as facts.
    pub fn decide_verdict(&mut self, input: &RequestInput) -> Verdict {
        self.host.reset_request();
        self.pipeline.decide(input, &mut self.host).verdict
    }

    /// The policy in force.
    pub fn policy(&self) -> Option<&Policy> {
        self.pipeline.config().map(|c| &c.policy)
    }

    /// Decides one request as the filter's inbound side would.
    pub fn decide(&mut self, request: &SampleRequest) -> Outcome {
        let input = self.input(request);
        self.decide_input(&input)
    }

    /// Decides a request given as pipeline facts.
    pub fn decide_input(&mut self, input: &RequestInput) -> Outcome {
        self.explain_input(input, None)
    }

    /// Decides a request given as facts, and says how the rule named
    /// `why_not` fared (`Err` when no rule has that id). A deny the rules
    /// decided also lists the allow rules that came closest.
    pub fn explain_input(&mut self, input: &RequestInput, why_not: Option<&str>) -> Outcome {
        self.host.reset_request();
        let decided = self.pipeline.decide(input, &mut self.host);
        let Some(policy) = self.pipeline.config().map(|c| &c.policy) else {
            return describe(None, &self.source_map, &decided.verdict.decision, None);
        };
        let verdict = &decided.verdict;
        // The chain is shown when the request carried one.
        let sent_chain = !input.headers.all(CHAIN_HEADER).is_empty();
        let mut outcome = describe(
            Some(policy),
            &self.source_map,
            &verdict.decision,
            verdict.chain.clone().filter(|_| sent_chain),
        );
        let Some(request) = verdict.evaluated_request(&input.headers) else {
            return outcome;
        };
        let intent = outcome.intent.clone();
        let miss =
            |rule: RuleIdx| rule_miss(policy, &self.source_map, &request, rule, intent.as_deref());
        if let Some(name) = why_not {
            outcome.why_not = (0..policy.rule_count() as u32)
                .map(RuleIdx)
                .find(|r| policy.rule_id(*r) == name)
                .and_then(|r| miss(r).map(|(_, m)| m));
        }
        if verdict.decision.effect == Effect::Deny && rules_were_consulted(verdict.decision.reason)
        {
            let mut misses: Vec<(u32, RuleIdx, RuleMiss)> = (0..policy.rule_count() as u32)
                .map(RuleIdx)
                .filter(|r| {
                    policy
                        .compiled()
                        .rules
                        .get(r.index())
                        .is_some_and(|rule| rule.effect == Effect::Allow && !rule.dry_run)
                })
                .filter_map(|r| miss(r).map(|(rank, m)| (rank, r, m)))
                .filter(|(rank, _, _)| (1..u32::MAX).contains(rank))
                .collect();
            misses.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
            outcome.near_misses = misses
                .into_iter()
                .take(MAX_NEAR_MISSES)
                .map(|(_, _, m)| m)
                .collect();
        }
        outcome
    }

    /// Explains a sample request, with `--why-not`.
    pub fn explain(&mut self, request: &SampleRequest, why_not: Option<&str>) -> Outcome {
        let input = self.input(request);
        self.explain_input(&input, why_not)
    }

    /// The pipeline facts of a sample request: the request line and headers,
    /// the sample chain as the chain header its peer would send, and the
    /// identities as verified.
    pub fn input(&self, request: &SampleRequest) -> RequestInput {
        let mut headers = vec![
            (":method".to_owned(), request.method.clone()),
            (":path".to_owned(), request.path.clone()),
        ];
        if !request.authority.is_empty() {
            headers.push((":authority".to_owned(), request.authority.clone()));
        }
        headers.extend(request.headers.iter().cloned());
        if let (Some(sample), Ok(peer), Some(policy)) =
            (&request.chain, &request.peer, self.policy())
        {
            let limits = policy.chain_limits();
            let mut sent = Chain::start(peer.clone(), SAMPLE_NOW, limits.lifetime_secs);
            if !sample.hops.is_empty() {
                sent.hops.clone_from(&sample.hops);
            }
            sent.complete = !sample.incomplete;
            sent.purpose.clone_from(&sample.purpose);
            sent.user.clone_from(&sample.user);
            sent.scopes.clone_from(&sample.scopes);
            headers.push((CHAIN_HEADER.to_owned(), sent.to_wire()));
        }
        RequestInput {
            headers: HeaderList::new(headers),
            peer: PeerEvidence::Verified {
                peer: request.peer.clone(),
                cert_window: None,
            },
            tokens: TokenEvidence::Verified {
                jwt_svid: request.jwt_svid.clone(),
                user: request.user.as_ref().map(|user| match user {
                    Ok(user) => Ok(user.to_audit_user()),
                    Err(reason) => Err(*reason),
                }),
                chain_refused: None,
            },
            now: SAMPLE_NOW,
        }
    }
}

impl SampleUser {
    /// The user as the pipeline records a verified one.
    pub fn to_audit_user(&self) -> AuditUser {
        AuditUser {
            sub: self.subject.clone(),
            iss: self.issuer.clone(),
            scopes: self.scopes.clone(),
            claims: self
                .claims
                .iter()
                .map(|(name, value)| {
                    let value = match value {
                        ClaimValue::Str(s) => AuditClaim::Str(s.clone()),
                        ClaimValue::List(l) => AuditClaim::List(l.clone()),
                    };
                    (name.clone(), value)
                })
                .collect::<BTreeMap<_, _>>(),
        }
    }
}

/// The identity outcome of a peer written on the command line: a parsed ID,
/// or the reason the filter would give for such a certificate.
pub fn peer_from_text(text: &str) -> Result<SpiffeId, Reason> {
    if text == "none" {
        return Err(Reason::NoPeerCertificate);
    }
    SpiffeId::parse(text).map_err(|error| match error {
        SpiffeIdError::WrongScheme | SpiffeIdError::Empty => Reason::PeerNotSpiffe,
        _ => Reason::MalformedSpiffeId,
    })
}

/// The verification outcome of a JWT-SVID subject written on the command
/// line: a parsed ID, or the reason the filter gives for a subject that is
/// not a SPIFFE ID.
pub fn jwt_svid_from_text(text: &str) -> Result<SpiffeId, Reason> {
    SpiffeId::parse(text).map_err(|_| Reason::JwtSubjectNotSpiffe)
}

/// A rule id and where it is declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleRef {
    /// The rule id.
    pub id: String,
    /// Its declaration.
    pub location: Option<Location>,
}

impl fmt::Display for RuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(location) => write!(f, "`{}` ({location})", self.id),
            None => write!(f, "`{}`", self.id),
        }
    }
}

/// What dry-run rules (or a dry-run policy) would have decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WouldOutcome {
    /// The would-be effect.
    pub effect: Effect,
    /// Why.
    pub reason: Reason,
    /// The deciding rule, if any.
    pub rule: Option<RuleRef>,
}

/// A decision in the policy's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Enforced effect.
    pub effect: Effect,
    /// Why.
    pub reason: Reason,
    /// HTTP status the filter answers with (200, 401 or 403).
    pub status: u16,
    /// Intent name; `None` = unclassified (or not reached).
    pub intent: Option<String>,
    /// Deciding rule.
    pub rule: Option<RuleRef>,
    /// Dry-run outcome, when it differs.
    pub would: Option<WouldOutcome>,
    /// The caller chain as the inbound side rebuilt it from what the peer
    /// sent (or why it was refused); `None` when no chain was sent.
    pub chain: Option<Result<Chain, Reason>>,
    /// For a deny that the rules decided (or did not): the allow rules that
    /// came closest, each with the first requirement it failed.
    pub near_misses: Vec<RuleMiss>,
    /// `--why-not RULE`: how that rule fared.
    pub why_not: Option<RuleMiss>,
}

/// How one rule fared against the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleMiss {
    /// The rule.
    pub rule: RuleRef,
    /// `holds`, `intent`, `principal`, `subject` or `condition`.
    pub failed: &'static str,
    /// What did not hold, in the policy's terms.
    pub detail: String,
}

impl RuleMiss {
    /// The JSON form.
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "rule": {
                "id": self.rule.id,
                "location": self.rule.location.as_ref().map(ToString::to_string),
            },
            "failed": self.failed,
            "detail": self.detail,
        })
    }
}

/// Most near misses shown.
const MAX_NEAR_MISSES: usize = 3;

/// Reasons after which rules were looked at (and so could nearly match).
fn rules_were_consulted(reason: Reason) -> bool {
    matches!(
        reason,
        Reason::NoMatchingRule | Reason::Unclassified | Reason::DeniedByRule
    )
}

/// How `rule` fared, in words, from the engine's own check.
fn rule_miss(
    policy: &Policy,
    source_map: &SourceMap,
    request: &meshward_engine::Request<'_>,
    rule: RuleIdx,
    intent: Option<&str>,
) -> Option<(u32, RuleMiss)> {
    let check = check_rule(policy, request, rule).ok()?;
    let model = policy.compiled();
    let compiled_rule = model.rules.get(rule.index())?;
    let (rank, failed, detail) = match check {
        RuleCheck::Holds => (u32::MAX, "holds", "every requirement holds".to_owned()),
        RuleCheck::Intent => {
            let granted: Vec<String> = compiled_rule
                .intents
                .iter()
                .map(|i| format!("`{}`", policy.intent_name(*i)))
                .chain(
                    compiled_rule
                        .unclassified
                        .then(|| "unclassified".to_owned()),
                )
                .collect();
            (
                0,
                "intent",
                format!(
                    "the request is {}, the rule covers {}",
                    intent.map_or_else(|| "unclassified".to_owned(), |i| format!("`{i}`")),
                    granted.join(", ")
                ),
            )
        }
        RuleCheck::Principal => (
            1,
            "principal",
            format!(
                "needs `principal {}`, which the request does not carry",
                crate::model_text::principal(model, &compiled_rule.principal)
            ),
        ),
        RuleCheck::Subject => (
            2,
            "subject",
            format!(
                "the caller is not one of {}",
                crate::model_text::subjects(model, &compiled_rule.subjects)
            ),
        ),
        RuleCheck::Condition(index) => (
            3 + u32::try_from(index).unwrap_or(u32::MAX - 3),
            "condition",
            compiled_rule
                .conditions
                .get(index)
                .map_or_else(String::new, |c| {
                    format!(
                        "`when {}` does not hold",
                        crate::model_text::condition(model, c)
                    )
                }),
        ),
    };
    Some((
        rank,
        RuleMiss {
            rule: RuleRef {
                id: policy.rule_id(rule).to_owned(),
                location: source_map.rules.get(rule.index()).cloned(),
            },
            failed,
            detail,
        },
    ))
}

fn describe(
    policy: Option<&Policy>,
    source_map: &SourceMap,
    decision: &Decision,
    chain: Option<Result<Chain, Reason>>,
) -> Outcome {
    let rule_ref = |idx: RuleIdx| RuleRef {
        id: policy.map_or("?", |p| p.rule_id(idx)).to_owned(),
        location: source_map.rules.get(idx.index()).cloned(),
    };
    Outcome {
        effect: decision.effect,
        reason: decision.reason,
        status: decision.http_status(),
        intent: decision
            .intent
            .and_then(|i| policy.map(|p| p.intent_name(i).to_owned())),
        rule: decision.rule.map(rule_ref),
        would: decision.would_be.map(|w| WouldOutcome {
            effect: w.effect,
            reason: w.reason,
            rule: w.rule.map(rule_ref),
        }),
        chain,
        near_misses: Vec::new(),
        why_not: None,
    }
}

/// A received chain as JSON.
pub(crate) fn chain_json(chain: &Result<Chain, Reason>) -> serde_json::Value {
    match chain {
        Ok(chain) => json!({
            "hops": chain.hops.iter().map(SpiffeId::as_str).collect::<Vec<_>>(),
            "complete": chain.complete,
            "purpose": chain.purpose,
            "user": chain.user,
            "scopes": chain.scopes,
        }),
        Err(reason) => json!({ "refused": reason.code() }),
    }
}

/// A received chain on one line: hops, completeness, user, purpose.
fn chain_text(chain: &Result<Chain, Reason>) -> String {
    let chain = match chain {
        Ok(chain) => chain,
        Err(reason) => return format!("refused ({})", reason.code()),
    };
    let hops: Vec<&str> = chain.hops.iter().map(SpiffeId::as_str).collect();
    let mut text = hops.join(" -> ");
    text.push_str(if chain.complete {
        " (complete)"
    } else {
        " (incomplete)"
    });
    if let Some(user) = &chain.user {
        text.push_str(&format!(", user `{user}`"));
        if !chain.scopes.is_empty() {
            text.push_str(&format!(" scopes `{}`", chain.scopes.join(" ")));
        }
    }
    if let Some(purpose) = &chain.purpose {
        text.push_str(&format!(", purpose `{purpose}`"));
    }
    text
}

impl Outcome {
    /// The JSON form used by `--format json`.
    pub fn to_json(&self) -> serde_json::Value {
        let rule_json = |rule: &Option<RuleRef>| match rule {
            Some(rule) => json!({
                "id": rule.id,
                "location": rule.location.as_ref().map(ToString::to_string),
            }),
            None => serde_json::Value::Null,
        };
        json!({
            "decision": self.effect.as_str(),
            "reason": self.reason.code(),
            "status": self.status,
            "intent": self.intent,
            "rule": rule_json(&self.rule),
            "would_be": self.would.as_ref().map(|w| json!({
                "decision": w.effect.as_str(),
                "reason": w.reason.code(),
                "rule": rule_json(&w.rule),
            })),
            "chain": self.chain.as_ref().map(chain_json),
            "near_misses": self.near_misses.iter().map(RuleMiss::to_json).collect::<Vec<_>>(),
            "why_not": self.why_not.as_ref().map(RuleMiss::to_json),
        })
    }

    /// One line, e.g. ``deny by `r` (denied_by_rule), intent `i` ``.
    pub fn summary(&self) -> String {
        let mut text = self.effect.as_str().to_owned();
        if let Some(rule) = &self.rule {
            text.push_str(&format!(" by `{}`", rule.id));
        }
        text.push_str(&format!(" ({})", self.reason.code()));
        if let Some(intent) = &self.intent {
            text.push_str(&format!(", intent `{intent}`"));
        }
        if let Some(would) = &self.would {
            text.push_str(&format!(", would {}", would.effect.as_str()));
            if let Some(rule) = &would.rule {
                text.push_str(&format!(" by `{}`", rule.id));
            }
            text.push_str(&format!(" ({})", would.reason.code()));
        }
        text
    }
}

impl fmt::Display for Outcome {
    /// The `meshward explain` text form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "decision: {} (HTTP {})",
            self.effect.as_str(),
            self.status
        )?;
        writeln!(f, "reason:   {}", self.reason.code())?;
        match &self.intent {
            Some(intent) => writeln!(f, "intent:   `{intent}`")?,
            None => writeln!(f, "intent:   none (unclassified or not reached)")?,
        }
        match &self.rule {
            Some(rule) => writeln!(f, "rule:     {rule}")?,
            None => writeln!(f, "rule:     none")?,
        }
        match &self.would {
            Some(would) => {
                write!(
                    f,
                    "would be: {} ({})",
                    would.effect.as_str(),
                    would.reason.code()
                )?;
                match &would.rule {
                    Some(rule) => writeln!(f, " by {rule}")?,
                    None => writeln!(f)?,
                }
            }
            None => writeln!(f, "would be: same (no dry-run difference)")?,
        }
        if let Some(chain) = &self.chain {
            writeln!(f, "chain:    {}", chain_text(chain))?;
        }
        if !self.near_misses.is_empty() {
            writeln!(f, "near misses:")?;
            for miss in &self.near_misses {
                writeln!(f, "  {}: {}", miss.rule, miss.detail)?;
            }
        }
        if let Some(miss) = &self.why_not {
            writeln!(f, "why not {}: {}", miss.rule, miss.detail)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::SampleChain;
    use meshward_engine::{Claim, UserInfo as _};

    const POLICY: &str = "policy \"p\" {\n  trust_domains \"a.example\"\n}\nchain {\n  forwarder \"spiffe://a.example/fe\"\n  max_depth 3\n}\nintent i { path \"/\" }\nallow r {\n  subject any_authenticated\n  intent i\n}\n";

    fn id(text: &str) -> SpiffeId {
        SpiffeId::parse(text).unwrap()
    }

    fn received(peer: &str, sample: &SampleChain) -> Result<Chain, Reason> {
        let compiled = crate::compile_source(POLICY, "p.policy").unwrap();
        let mut filter = OfflineFilter::for_compiled(&compiled).unwrap();
        let mut request = SampleRequest::new(Ok(id(peer)), "GET", "/");
        request.chain = Some(sample.clone());
        filter.decide(&request).chain.unwrap()
    }

    #[test]
    fn receives_chains_like_the_inbound_side() {
        let sample = SampleChain {
            hops: vec![id("spiffe://a.example/gw"), id("spiffe://a.example/fe")],
            incomplete: false,
            purpose: Some("x.read".into()),
            user: Some("alice@example.com".into()),
            scopes: vec!["a".into(), "b".into()],
        };
        // From a forwarder: believed as sent.
        let chain = received("spiffe://a.example/fe", &sample).unwrap();
        assert_eq!(chain.hops, sample.hops);
        assert!(chain.complete);
        assert_eq!(chain.purpose.as_deref(), Some("x.read"));
        assert_eq!(chain.user.as_deref(), Some("alice@example.com"));
        assert_eq!(chain.scopes, ["a", "b"]);
        // From anyone else: restarts at the peer, incomplete, nothing else kept.
        let mut other = sample.clone();
        other.hops = vec![id("spiffe://a.example/gw"), id("spiffe://a.example/x")];
        let chain = received("spiffe://a.example/x", &other).unwrap();
        assert_eq!(chain.hops, [id("spiffe://a.example/x")]);
        assert!(!chain.complete && chain.user.is_none() && chain.purpose.is_none());
        // No hops: the chain starts at the peer.
        let chain = received("spiffe://a.example/fe", &SampleChain::default()).unwrap();
        assert_eq!(chain.hops, [id("spiffe://a.example/fe")]);
        // Deeper than `max_depth`.
        let deep = SampleChain {
            hops: ["w", "x", "y", "fe"]
                .iter()
                .map(|n| id(&format!("spiffe://a.example/{n}")))
                .collect(),
            ..SampleChain::default()
        };
        assert_eq!(
            received("spiffe://a.example/fe", &deep),
            Err(Reason::ChainTooDeep)
        );
    }

    #[test]
    fn sample_users_answer_like_verified_tokens() {
        let user = SampleUser {
            subject: "alice".into(),
            issuer: None,
            scopes: vec!["a".into()],
            claims: vec![
                ("s".into(), ClaimValue::Str("x".into())),
                ("l".into(), ClaimValue::List(vec!["y".into()])),
            ],
        };
        assert_eq!(user.subject(), "alice");
        assert!(user.has_scope("a") && !user.has_scope("b"));
        assert!(matches!(user.claim("s"), Some(Claim::Str("x"))));
        assert!(matches!(user.claim("l"), Some(Claim::List([y])) if y == "y"));
        assert!(user.claim("z").is_none());
    }

    #[test]
    fn validates_what_a_request_could_carry() {
        let peer = id("spiffe://a.example/fe");
        let mut request = SampleRequest::new(Ok(peer.clone()), "GET", "/");
        request.chain = Some(SampleChain {
            hops: vec![id("spiffe://a.example/gw"), peer],
            ..SampleChain::default()
        });
        assert!(request.validate().is_ok());
        request.chain = Some(SampleChain {
            hops: vec![id("spiffe://a.example/gw")],
            ..SampleChain::default()
        });
        assert!(request.validate().is_err());
        request.chain = Some(SampleChain {
            scopes: vec!["a".into()],
            ..SampleChain::default()
        });
        assert!(request.validate().is_err());
        request.peer = Err(Reason::NoPeerCertificate);
        request.chain = Some(SampleChain::default());
        assert!(request.validate().is_err());
    }

    #[test]
    fn peers_from_text() {
        assert_eq!(peer_from_text("none"), Err(Reason::NoPeerCertificate));
        assert_eq!(peer_from_text("http://x/y"), Err(Reason::PeerNotSpiffe));
        assert_eq!(
            peer_from_text("spiffe://X/y"),
            Err(Reason::MalformedSpiffeId)
        );
        assert_eq!(
            peer_from_text("spiffe://x/y").map(|id| id.to_string()),
            Ok("spiffe://x/y".to_owned())
        );
    }
}
