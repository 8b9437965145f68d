//! Running one request through the engine and describing the decision in the
//! policy's own terms: intent names, rule ids and their source locations.
//!
//! Both `meshward test` and `meshward explain` come through here, on a policy
//! decoded from the compiled bytes, so they answer exactly what Envoy does.

use std::fmt;

use meshward_engine::model::Effect;
use meshward_engine::spiffe::{SpiffeId, SpiffeIdError};
use meshward_engine::{evaluate, Decision, Policy, Reason, Request, RuleIdx};
use serde_json::json;

use crate::source_map::{Location, SourceMap};

/// A request as a test or the CLI describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleRequest {
    /// The verified peer, or the identity reason there is none.
    pub peer: Result<SpiffeId, Reason>,
    /// `:method`.
    pub method: String,
    /// `:path` (query allowed).
    pub path: String,
    /// `:authority` (port allowed; empty when unknown).
    pub authority: String,
    /// Request headers.
    pub headers: Vec<(String, String)>,
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
}

/// Evaluates `request` against `policy` and names the result.
pub fn decide(policy: &Policy, source_map: &SourceMap, request: &SampleRequest) -> Outcome {
    let decision = evaluate(
        policy,
        &Request::from_peer(
            request.peer.as_ref().map_err(|reason| *reason),
            &request.method,
            &request.path,
            &request.authority,
            &request.headers,
        ),
    );
    describe(policy, source_map, &decision)
}

fn describe(policy: &Policy, source_map: &SourceMap, decision: &Decision) -> Outcome {
    let rule_ref = |idx: RuleIdx| RuleRef {
        id: policy.rule_id(idx).to_owned(),
        location: source_map.rules.get(idx as usize).cloned(),
    };
    Outcome {
        effect: decision.effect,
        reason: decision.reason,
        status: decision.http_status(),
        intent: decision.intent.map(|i| policy.intent_name(i).to_owned()),
        rule: decision.rule.map(rule_ref),
        would: decision.would_be.map(|w| WouldOutcome {
            effect: w.effect,
            reason: w.reason,
            rule: w.rule.map(rule_ref),
        }),
    }
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
                    Some(rule) => writeln!(f, " by {rule}"),
                    None => writeln!(f),
                }
            }
            None => writeln!(f, "would be: same (no dry-run difference)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
