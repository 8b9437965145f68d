//! The request pipeline: host-neutral facts in, a complete outcome out.
//!
//! ```text
//! Host ──request_headers, property──▶ RequestInput ──Pipeline::decide──▶ Outcome
//!   (headers, peer evidence, tokens, time)          │   verify peer, tokens, chain
//!                                                   │   evaluate (method, path,
//!                                                   │   authority canonicalized)
//!                                                   │   method override, hand-off
//!                                                   ▼
//!   Host ◀──header edits / local response, audit line, counters,── apply
//!           decision facts as filter state (publish)
//! ```
//!
//! Everything that decides lives here. A host — the proxy-wasm filter
//! (`filter/wasm`), the Envoy dynamic module (`filter/native`), the CLI
//! (`meshward explain`, `test`, `replay`) and the tests' [`OfflineHost`] —
//! implements [`Host`] and only moves bytes: [`Pipeline::on_request_headers`]
//! reads the request through it, [`Pipeline::decide`] decides, and the
//! outcome is applied through it. The CLI builds a [`RequestInput`] from a
//! request written on the command line or recorded in an audit line and calls
//! [`Pipeline::decide`] directly, so it answers exactly what a proxy does.
//!
//! The lifecycle (start-up, configuration, key fetches) is in `lifecycle`.

mod bundles;
mod headers;
mod host;
mod inbound;
mod lifecycle;
mod offline;
mod outbound;
mod outcome;
pub mod publish;
pub mod response;
mod seal_key;
mod stats;

use crate::audit::{audit_line, outbound_audit_line, AuditFacts, AuditUser, OutboundAuditFacts};
use crate::config::{AuditLog, Direction, FilterConfig};
use crate::decision::Reason;
use crate::identity::PeerCertificateSource;
use crate::identity::{
    verify_host_principal, CertCache, JwtSvid, KeyStore, RevocationList, TokenCache, UserClaims,
};
use crate::model::Effect;
use crate::signature::TrustedKeys;
use crate::spiffe::SpiffeId;

pub use bundles::{BundleSource, BundleSourceError, BUNDLE_ENV};
pub use headers::HeaderList;
pub use host::{CallId, Host, HostError, LocalResponse, LogLevel, MetricId};
pub use inbound::{Peer, XFCC};
pub use offline::OfflineHost;
pub use outcome::{HeaderEdit, Outcome, Verdict};
pub use stats::Counter;

use lifecycle::Fetches;
use stats::Stats;

/// How many parsed peer certificates an instance (one per worker) keeps: the
/// identity module's default, under the pipeline's name.
pub(crate) use crate::identity::DEFAULT_CERT_CACHE_CAPACITY as CERT_CACHE_CAPACITY;
/// How many sealed chains an instance keeps (a chain's wire form changes
/// with its hops, intent and user, and every second with `iat`).
pub(crate) const SEAL_CACHE_CAPACITY: usize = 256;
/// How many verified tokens of each kind an instance keeps.
pub(crate) const TOKEN_CACHE_CAPACITY: usize = 4096;

/// What starts every audit log line (the JSON follows).
const AUDIT_MARKER: &str = "meshward.audit ";

/// What the host does with the request after the pipeline ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The request goes on (with the header edits applied).
    Continue,
    /// The request was answered locally.
    Stop,
}

/// How the direct peer is known for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerEvidence {
    /// The TLS connection as the host saw it: the peer certificate's SHA-256
    /// digest (64 lowercase hex digits; `None` without a client certificate)
    /// and its first URI SAN. The certificate itself travels in the
    /// forwarded-client-cert header ([`XFCC`]), bound by the digest.
    Connection {
        /// `connection.sha256_peer_certificate_digest`.
        cert_digest: Option<String>,
        /// `connection.uri_san_peer_certificate` (read in `connection_only` mode).
        uri_san: Option<String>,
    },
    /// Verified before the pipeline saw it: a request written on the command
    /// line or recorded in an audit line. The checks that depend on the
    /// policy (certificate lifetime bound, revocation) still apply.
    Verified {
        /// The SPIFFE ID, or why there is none.
        peer: Result<SpiffeId, Reason>,
        /// notBefore, notAfter of the certificate, when known.
        cert_window: Option<(u64, u64)>,
    },
}

/// Where the request's tokens come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenEvidence {
    /// The configured headers: verified here (signature, keys, claims).
    FromHeaders,
    /// Verified before (command line, audit line): the subjects as stated.
    /// The checks that depend on the policy (trusted domains) still apply.
    Verified {
        /// JWT-SVID subject, or why it was refused; `None` = none presented.
        jwt_svid: Option<Result<SpiffeId, Reason>>,
        /// End user, or why the token was refused; `None` = none presented.
        user: Option<Result<AuditUser, Reason>>,
        /// Why the caller chain the request carried was refused, when that
        /// was recorded (an audit line keeps the reason, not the header).
        chain_refused: Option<Reason>,
    },
}

/// One request as facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestInput {
    /// Every request header, pseudo-headers (`:method`, `:path`,
    /// `:authority`) included.
    pub headers: HeaderList,
    /// The direct peer.
    pub peer: PeerEvidence,
    /// The tokens.
    pub tokens: TokenEvidence,
    /// Unix time, seconds.
    pub now: u64,
}

/// One filter instance: its configuration, caches, keys and counters.
#[derive(Debug)]
pub struct Pipeline {
    /// The loaded configuration; `None` until a good one arrives.
    config: Option<FilterConfig>,
    /// Parsed peer certificates by digest (reset with each configuration).
    certs: CertCache,
    /// Verified JWT-SVIDs by token.
    jwt_svids: TokenCache<JwtSvid>,
    /// Verified user tokens by token.
    users: TokenCache<UserClaims>,
    /// Key sets in force (inline and fetched).
    keys: KeyStore,
    /// The chain seal key.
    seal_key: Option<Vec<u8>>,
    /// Chains sealed with it, by wire form.
    seals: inbound::SealCache,
    /// This workload's SPIFFE ID, once known.
    local_id: Option<SpiffeId>,
    /// Whether the missing-local-identity warning was logged.
    warned_no_local_identity: bool,
    /// Revocations written in the configuration; a fetched list adds to them.
    configured_revocation: RevocationList,
    /// Counter ids, once defined.
    stats: Option<Stats>,
    /// Key and revocation fetches.
    fetches: Fetches,
    /// Signing keys pinned in the VM configuration: whoever can rewrite the
    /// plugin configuration cannot also drop the signature requirement.
    pinned_keys: Option<TrustedKeys>,
    /// Bundle pulls, when the VM configuration asks for them.
    bundles: Option<bundles::Bundles>,
}

impl Default for Pipeline {
    fn default() -> Self {
        Pipeline::new()
    }
}

impl Pipeline {
    /// An instance without configuration (every request is denied
    /// `no_policy` until one loads).
    pub fn new() -> Self {
        Pipeline {
            config: None,
            certs: CertCache::new(CERT_CACHE_CAPACITY),
            jwt_svids: TokenCache::new(TOKEN_CACHE_CAPACITY),
            users: TokenCache::new(TOKEN_CACHE_CAPACITY),
            keys: KeyStore::new(),
            seal_key: None,
            seals: inbound::SealCache::new(SEAL_CACHE_CAPACITY),
            local_id: None,
            warned_no_local_identity: false,
            configured_revocation: RevocationList::new(),
            stats: None,
            fetches: Fetches::default(),
            pinned_keys: None,
            bundles: None,
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> Option<&FilterConfig> {
        self.config.as_ref()
    }

    /// The key set store (inline and fetched key sets).
    pub fn keys(&self) -> &KeyStore {
        &self.keys
    }

    /// One request, end to end: read it from the host, decide, apply.
    pub fn on_request_headers(&mut self, host: &mut dyn Host) -> Action {
        let input = match self.read_request(host) {
            Ok(input) => input,
            Err(reason) => {
                if reason == Reason::NoPolicy {
                    host.log(
                        LogLevel::Warn,
                        "meshward: denying request without a usable policy (no_policy)",
                    );
                }
                let outcome = self.finish(Verdict::deny(reason), None, None);
                return self.apply(host, outcome);
            }
        };
        let outcome = self.decide(&input, host);
        self.apply(host, outcome)
    }

    /// Reads one request's facts through the host: the headers in one call,
    /// and only the connection facts this configuration needs.
    pub fn read_request(&self, host: &mut dyn Host) -> Result<RequestInput, Reason> {
        let headers = host
            .request_header_list()
            .map_err(|_| Reason::IdentityUnavailable)?;
        let now = host
            .now_nanos()
            .map(lifecycle::nanos_to_secs)
            .map_err(|_| Reason::IdentityUnavailable)?;
        let Some(config) = self.config.as_ref() else {
            return Err(Reason::NoPolicy);
        };
        let text = |bytes: Option<Vec<u8>>| -> Result<Option<String>, Reason> {
            bytes
                .map(|b| String::from_utf8(b).map_err(|_| Reason::IdentityUnavailable))
                .transpose()
        };
        let peer = match config.direction {
            // The outbound side never looks at the peer.
            Direction::Outbound => PeerEvidence::Connection {
                cert_digest: None,
                uri_san: None,
            },
            // No certificate on this connection (an Istio waypoint's
            // internal listener): the host's principal, verified here.
            Direction::Inbound if config.peer_certificate == PeerCertificateSource::FilterState => {
                let principal = host
                    .property(&["filter_state", &config.peer_principal_key])
                    .map_err(|_| Reason::IdentityUnavailable)?;
                PeerEvidence::Verified {
                    peer: verify_host_principal(
                        principal.as_deref(),
                        |td| config.policy.trusts_domain(td),
                        &config.revocation,
                    ),
                    cert_window: None,
                }
            }
            Direction::Inbound => {
                let digest = host
                    .property(&["connection", "sha256_peer_certificate_digest"])
                    .map_err(|_| Reason::IdentityUnavailable)?;
                // Forwarded mode binds the XFCC certificate to the connection
                // by its digest, so its URI SAN is the connection's: reading
                // the URI SAN too would only cost another host call.
                let uri_san = match config.peer_certificate {
                    PeerCertificateSource::Forwarded | PeerCertificateSource::FilterState => None,
                    PeerCertificateSource::ConnectionOnly => host
                        .property(&["connection", "uri_san_peer_certificate"])
                        .map_err(|_| Reason::IdentityUnavailable)?,
                };
                PeerEvidence::Connection {
                    cert_digest: text(digest)?,
                    uri_san: text(uri_san)?,
                }
            }
        };
        Ok(RequestInput {
            headers,
            peer,
            tokens: TokenEvidence::FromHeaders,
            now,
        })
    }

    /// Decides one request. The host is asked only for what a decision may
    /// need beyond `input` (this workload's own identity, the current seal
    /// key); nothing is applied.
    pub fn decide(&mut self, input: &RequestInput, host: &mut dyn Host) -> Outcome {
        let request_id = input
            .headers
            .single("x-request-id", ())
            .and_then(Result::ok);
        let direction = self.config.as_ref().map(|c| c.direction);
        let verdict = match direction {
            _ if let Some(reason) = self.bundle_refusal(input.now) => Verdict::deny(reason),
            None => Verdict::deny(Reason::NoPolicy),
            Some(Direction::Inbound) => self.decide_inbound(input, host),
            Some(Direction::Outbound) => self.decide_outbound(input, host),
        };
        self.finish(verdict, Some(input), request_id)
    }

    /// The outcome of a verdict: response, audit line, counters.
    fn finish(
        &self,
        verdict: Verdict,
        input: Option<&RequestInput>,
        request_id: Option<&str>,
    ) -> Outcome {
        let config = self.config.as_ref();
        let policy = config.map(|c| &c.policy);
        let direction = config.map_or(Direction::Inbound, |c| c.direction);
        let decision = &verdict.decision;
        let grpc = input.is_some_and(|i| response::is_grpc(i.headers.get_or_empty("content-type")));
        let response = (decision.effect == Effect::Deny)
            .then(|| response::deny(policy, decision, request_id, grpc));
        let audit_line = match (config, input) {
            (Some(config), Some(input)) => {
                self.audit(config, direction, &verdict, input, request_id)
            }
            _ => None,
        };
        let counters = match direction {
            Direction::Inbound => Outcome::counters_of(&verdict),
            // Outbound calls count chain events only.
            Direction::Outbound => verdict.counters.clone(),
        };
        Outcome {
            direction,
            verdict,
            response,
            audit_line,
            counters,
        }
    }

    fn audit(
        &self,
        config: &FilterConfig,
        direction: Direction,
        verdict: &Verdict,
        input: &RequestInput,
        request_id: Option<&str>,
    ) -> Option<String> {
        let decision = &verdict.decision;
        let headers = &input.headers;
        match direction {
            Direction::Inbound => {
                let wants = match config.audit_log {
                    AuditLog::All => true,
                    AuditLog::Denies => decision.effect == Effect::Deny || decision.would_deny(),
                    AuditLog::None => false,
                };
                if !wants {
                    return None;
                }
                let peer = match &verdict.peer {
                    Some(Ok(peer)) => Ok(&peer.id),
                    Some(Err(reason)) => Err(*reason),
                    None => Err(decision.reason),
                };
                let facts = AuditFacts {
                    request_id,
                    traceparent: crate::evaluate::Headers::get(headers, "traceparent"),
                    x_b3_traceid: crate::evaluate::Headers::get(headers, "x-b3-traceid"),
                    peer,
                    cert_window: verdict
                        .peer
                        .as_ref()
                        .and_then(|p| p.as_ref().ok())
                        .and_then(|p| p.window),
                    jwt_svid: verdict
                        .jwt_svid
                        .as_ref()
                        .map(|r| r.as_ref().map_err(|e| *e)),
                    user: verdict.user.as_ref().map(|r| r.as_ref().map_err(|e| *e)),
                    chain: verdict.chain.as_ref().map(|r| r.as_ref().map_err(|e| *e)),
                    headers,
                    method: headers.get_or_empty(":method"),
                    path: headers.get_or_empty(":path"),
                    authority: headers.get_or_empty(":authority"),
                    time: input.now,
                };
                Some(audit_line(&config.policy, decision, &facts))
            }
            Direction::Outbound => {
                // Outbound calls are audited when their chain was refused.
                if verdict
                    .counters
                    .iter()
                    .all(|c| !matches!(c, Counter::ChainRejected | Counter::ChainDropped))
                    || config.audit_log == AuditLog::None
                {
                    return None;
                }
                let facts = OutboundAuditFacts {
                    request_id,
                    method: headers.get_or_empty(":method"),
                    path: headers.get_or_empty(":path"),
                    authority: headers.get_or_empty(":authority"),
                    time: input.now,
                    chain_dropped: verdict.counters.contains(&Counter::ChainDropped),
                };
                Some(outbound_audit_line(&config.policy, decision, &facts))
            }
        }
    }

    /// Publishes an outcome's decision facts as filter state
    /// ([`publish::decision_facts`]) for the proxy's access loggers: every
    /// inbound decision, and the outbound calls whose chain was refused. A
    /// host without filter state (`Unsupported`) is skipped quietly; any
    /// other failure is logged, never fatal: the decision stands.
    fn publish(&self, host: &mut dyn Host, outcome: &Outcome) {
        let verdict = &outcome.verdict;
        let side = match outcome.direction {
            Direction::Inbound => publish::Side::Inbound,
            Direction::Outbound
                if verdict
                    .counters
                    .iter()
                    .any(|c| matches!(c, Counter::ChainRejected | Counter::ChainDropped)) =>
            {
                publish::Side::Outbound
            }
            Direction::Outbound => return,
        };
        let peer = match (&verdict.peer, &verdict.jwt_svid) {
            (Some(Ok(peer)), _) => Some(peer.id.as_str()),
            (_, Some(Ok(subject))) => Some(subject.as_str()),
            _ => None,
        };
        let facts = publish::Published {
            policy: self.config.as_ref().map(|c| &c.policy),
            decision: &verdict.decision,
            side,
            peer,
            chain: verdict.chain.as_ref().and_then(|c| c.as_ref().ok()),
        };
        let wanted = self
            .config
            .as_ref()
            .map_or(publish::FilterStateSet::ALL, |c| c.filter_state);
        if wanted.is_empty() {
            return;
        }
        for (name, value) in publish::decision_facts(&facts, wanted) {
            match host.set_filter_state(name, &value) {
                Ok(()) => {}
                Err(HostError::Unsupported) => return,
                Err(err) => {
                    host.log(
                        LogLevel::Warn,
                        &format!("meshward: could not publish `{name}` as filter state ({err})"),
                    );
                    return;
                }
            }
        }
    }

    /// Applies an outcome through the host. An allow whose header edits fail
    /// becomes a deny (`identity_unavailable`): the app must never see a
    /// stale or forged identity header.
    pub fn apply(&mut self, host: &mut dyn Host, mut outcome: Outcome) -> Action {
        if outcome.allowed() && apply_edits(host, &outcome.verdict.edits).is_err() {
            let mut verdict = outcome.verdict.clone();
            verdict.fail_after_decision(Reason::IdentityUnavailable);
            outcome = Outcome {
                response: Some(response::deny(
                    self.config.as_ref().map(|c| &c.policy),
                    &verdict.decision,
                    None,
                    false,
                )),
                counters: Outcome::counters_of(&verdict),
                audit_line: None,
                verdict,
                ..outcome
            };
            host.log(
                LogLevel::Error,
                "meshward: could not write the verified identity headers: denied (identity_unavailable)",
            );
        }
        self.bump(host, &outcome.counters);
        self.publish(host, &outcome);
        for (level, message) in &outcome.verdict.logs {
            host.log(*level, message);
        }
        if let Some(line) = &outcome.audit_line {
            let mut message = String::with_capacity(AUDIT_MARKER.len() + line.len());
            message.push_str(AUDIT_MARKER);
            message.push_str(line);
            host.log(LogLevel::Info, &message);
        }
        match &outcome.response {
            None => Action::Continue,
            Some(response) => {
                if let Err(err) = host.send_response(response) {
                    host.log(
                        LogLevel::Error,
                        &format!("meshward: could not send the deny response ({err})"),
                    );
                }
                Action::Stop
            }
        }
    }
}

/// Removals first, then additions.
fn apply_edits(host: &mut dyn Host, edits: &[HeaderEdit]) -> Result<(), HostError> {
    for edit in edits {
        match edit {
            HeaderEdit::Remove(name) => host.remove_request_header(name)?,
            HeaderEdit::Add(name, value) => host.add_request_header(name, value)?,
        }
    }
    Ok(())
}

/// Answers a request when no pipeline can be reached at all (the host could
/// not lend it): a deny with `reason`, fail closed.
pub fn deny_without_pipeline(host: &mut dyn Host, reason: Reason) -> Action {
    host.log(
        LogLevel::Warn,
        &format!(
            "meshward: denying request without a usable policy ({})",
            reason.code()
        ),
    );
    let decision = crate::decision::Decision::deny(reason);
    if host
        .send_response(&response::deny(None, &decision, None, false))
        .is_err()
    {
        host.log(
            LogLevel::Error,
            "meshward: could not send the deny response",
        );
    }
    Action::Stop
}

// Needs rcgen (ring) for real certificates, which does not build for wasm32.
#[cfg(all(test, not(target_family = "wasm")))]
mod tests;
