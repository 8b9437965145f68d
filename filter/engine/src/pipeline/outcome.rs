//! What the pipeline concludes for one request: the [`Verdict`] (decision and
//! the verified facts it rests on) and, from it, the complete [`Outcome`]
//! (response, header edits, audit line, counters, log lines) a host applies.

use super::headers::HeaderList;
use super::host::{LocalResponse, LogLevel};
use super::inbound::Peer;
use super::stats::{decision_counters, Counter};
use crate::audit::AuditUser;
use crate::chain::Chain;
use crate::config::Direction;
use crate::decision::{Decision, Reason};
use crate::evaluate::{Request, UserInfo};
use crate::model::Effect;
use crate::spiffe::SpiffeId;

/// One change to the request headers before it goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderEdit {
    /// Remove every value of the header.
    Remove(String),
    /// Add a value (after the removals). The filter adds only its own
    /// headers, whose names are constants.
    Add(&'static str, String),
}

/// The decision and the facts it was made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The engine's decision (after the pipeline-level checks).
    pub decision: Decision,
    /// Inbound: the verified direct peer, or why there is none.
    pub peer: Option<Result<Peer, Reason>>,
    /// The JWT-SVID subject, when one was presented.
    pub jwt_svid: Option<Result<SpiffeId, Reason>>,
    /// The end user, when a token was presented.
    pub user: Option<Result<AuditUser, Reason>>,
    /// Inbound: the chain as rebuilt on arrival. Outbound: the chain the app
    /// sent, once its seal verified.
    pub chain: Option<Result<Chain, Reason>>,
    /// Header edits that carry an allow on.
    pub edits: Vec<HeaderEdit>,
    /// The chain header value handed on (sealed for the app inbound, wire
    /// form to the next hop outbound).
    pub handed_chain: Option<String>,
    /// Counters beyond the decision's own.
    pub counters: Vec<Counter>,
    /// Log lines beyond the audit line.
    pub logs: Vec<(LogLevel, String)>,
}

impl Verdict {
    /// A deny that involved no rule, intent or identity.
    pub fn deny(reason: Reason) -> Verdict {
        Verdict {
            decision: Decision::deny(reason),
            peer: None,
            jwt_svid: None,
            user: None,
            chain: None,
            edits: Vec::new(),
            handed_chain: None,
            counters: Vec::new(),
            logs: Vec::new(),
        }
    }

    /// An allow could not be carried out (a header could not be written, no
    /// seal key): it becomes a deny with `reason`, keeping the facts.
    pub fn fail_after_decision(&mut self, reason: Reason) {
        self.decision = Decision {
            would_be: None,
            ..Decision::deny(reason)
        };
        self.edits.clear();
        self.handed_chain = None;
    }
}

/// Everything a host applies for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Which side decided.
    pub direction: Direction,
    /// The decision and its facts.
    pub verdict: Verdict,
    /// Set for a deny: the local response to send.
    pub response: Option<LocalResponse>,
    /// The audit line (without the `meshward.audit ` marker), when the
    /// configuration asks for one.
    pub audit_line: Option<String>,
    /// Counters to bump.
    pub counters: Vec<Counter>,
}

impl Outcome {
    /// True when the request goes on.
    pub fn allowed(&self) -> bool {
        self.verdict.decision.effect == Effect::Allow
    }

    /// The counters of a verdict: its decision's and its own.
    pub(super) fn counters_of(verdict: &Verdict) -> Vec<Counter> {
        let mut counters = verdict.counters.clone();
        decision_counters(&verdict.decision, &mut counters);
        counters
    }
}

impl Verdict {
    /// The request as `evaluate` saw it, rebuilt from the verified facts of
    /// an inbound verdict and the request's headers; `None` for a verdict
    /// reached before any identity was read (no policy, outbound). What
    /// `check_rule` needs to say why a rule did not apply.
    pub fn evaluated_request<'a>(&'a self, headers: &'a HeaderList) -> Option<Request<'a>> {
        let peer = self.peer.as_ref()?;
        Some(Request {
            peer: peer.as_ref().map(|p| &p.id).map_err(|r| *r),
            jwt_svid: self.jwt_svid.as_ref().map(|r| r.as_ref().map_err(|e| *e)),
            user: self
                .user
                .as_ref()
                .map(|r| r.as_ref().map(|u| u as &dyn UserInfo).map_err(|e| *e)),
            chain: self.chain.as_ref().map(|r| r.as_ref().map_err(|e| *e)),
            method: headers.get_or_empty(":method"),
            path: headers.get_or_empty(":path"),
            authority: headers.get_or_empty(":authority"),
            headers,
        })
    }
}
