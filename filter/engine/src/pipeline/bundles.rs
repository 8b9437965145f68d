//! Pulling signed policy bundles (`crate::bundle`) from an HTTP server over
//! a proxy cluster: the state machine.
//!
//! The VM configuration turns it on and pins the keys, so whoever can
//! rewrite the plugin configuration cannot change where policy comes from
//! or who may sign it:
//!
//! ```json
//! {"bundle": {"cluster": "meshward_bundles", "authority": "bundles.internal",
//!             "path": "/meshward/policy.bundle", "keys": ["<base64 Ed25519 public key>"],
//!             "poll_secs": 30, "jitter": 0.2, "timeout_ms": 5000,
//!             "max_bytes": 8388608, "max_staleness_secs": 600}}
//! ```
//!
//! Where the VM configuration cannot be set (Istio's `WasmPlugin` renders
//! only `vmConfig.env`), the same object goes in the VM environment variable
//! [`BUNDLE_ENV`] (`MESHWARD_BUNDLE`); setting both is refused. Whoever sets
//! the VM environment is then who chooses the source and its keys.
//!
//! - **Polling**: every `poll_secs`, each interval drawn uniformly from
//!   `poll_secs × [1 − jitter, 1 + jitter]` so a fleet does not poll in step;
//!   the first poll at start-up. At most one poll in flight. A poll carries
//!   `if-none-match` with the `etag` of the bundle in force; `304` confirms it.
//! - **Acceptance**: at most `max_bytes`; signed by a pinned key; a revision
//!   below the one in force is refused and counted (anti-rollback); the same
//!   revision with another policy hash is refused (one revision, one
//!   content); the configuration must load (including any `require_signature`
//!   pinned beside `bundle`) and hold the policy hash the header names.
//!   Anything refused leaves the bundle in force untouched.
//! - **Staleness**: the bundle in force is *confirmed* when the server
//!   answers `304` or serves a bundle at least as new. Once it has not been
//!   confirmed for `max_staleness_secs`, every request is denied
//!   `bundle_stale` until a poll succeeds again.
//! - **Cold start**: with an empty plugin configuration the instance has no
//!   policy and denies `no_policy` until the first bundle loads. A plugin
//!   configuration in bundle mode must be a bundle (raw bytes, or base64 of
//!   them): it is verified like a fetched one and serves until a newer one
//!   arrives.
//! - **Visibility**: every change is logged and counted
//!   (`meshward.bundle.*`); the gauge `meshward.bundle.revision` holds the
//!   revision in force.

use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;

use super::host::{CallId, Host, LogLevel};
use super::lifecycle::nanos_to_secs;
use super::Pipeline;
use crate::bundle::{Bundle, BundleError, MAGIC};
use crate::decision::Reason;
use crate::signature::TrustedKeys;

/// The gauge that holds the revision in force (0: none).
pub(crate) const REVISION_GAUGE: &str = "meshward.bundle.revision";

/// Counter names, one per event.
pub mod counters {
    /// A poll was sent.
    pub(crate) const POLLED: &str = "meshward.bundle.polled";
    /// A new revision went into force.
    pub(crate) const ACTIVATED: &str = "meshward.bundle.activated";
    /// The server confirmed the bundle in force (`304`, or the same revision).
    pub(crate) const NOT_MODIFIED: &str = "meshward.bundle.not_modified";
    /// A poll failed (dispatch, timeout, reset, a status other than 200/304).
    pub(crate) const FETCH_FAILED: &str = "meshward.bundle.fetch_failed";
    /// A fetched bundle was refused (size, framing, signature, configuration,
    /// hash); `meshward.bundle.rejected.<code>` says why.
    pub(crate) const REJECTED: &str = "meshward.bundle.rejected";
    /// A fetched bundle's revision was below the one in force.
    pub(crate) const ROLLBACK_REFUSED: &str = "meshward.bundle.rollback_refused";
    /// The bundle in force went past its staleness bound.
    pub(crate) const STALE: &str = "meshward.bundle.stale";
    /// A stale bundle was confirmed again (or replaced).
    pub(crate) const RECOVERED: &str = "meshward.bundle.recovered";
}

/// The VM environment variable that may carry the `bundle` member's JSON
/// object instead of the VM configuration.
pub const BUNDLE_ENV: &str = "MESHWARD_BUNDLE";

/// Default poll interval.
pub const DEFAULT_POLL_SECS: u64 = 30;
/// Default jitter (fraction of the interval).
pub const DEFAULT_JITTER: f64 = 0.2;
/// Default callout timeout.
pub const DEFAULT_TIMEOUT_MS: u64 = 5_000;
/// Default size limit.
pub const DEFAULT_MAX_BYTES: usize = 8 * 1024 * 1024;
/// Default staleness bound.
pub const DEFAULT_MAX_STALENESS_SECS: u64 = 600;

/// `bundle` in the VM configuration, as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    cluster: String,
    #[serde(default)]
    authority: Option<String>,
    path: String,
    keys: Vec<String>,
    #[serde(default)]
    poll_secs: Option<u64>,
    #[serde(default)]
    jitter: Option<f64>,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    max_bytes: Option<usize>,
    #[serde(default)]
    max_staleness_secs: Option<u64>,
}

/// Where bundles come from and what they must satisfy.
#[derive(Debug, Clone, PartialEq)]
pub struct BundleSource {
    /// The proxy cluster the server is behind.
    pub cluster: String,
    /// `:authority` of the poll (default: the cluster name).
    pub authority: String,
    /// `:path` of the bundle.
    pub path: String,
    /// The keys a bundle must be signed by.
    pub keys: TrustedKeys,
    /// Poll interval, seconds (≥ 1).
    pub poll_secs: u64,
    /// Jitter, a fraction of the interval in `[0, 0.9]`.
    pub jitter: f64,
    /// Callout timeout, milliseconds.
    pub timeout_ms: u64,
    /// Largest bundle accepted.
    pub max_bytes: usize,
    /// How long the bundle in force may go unconfirmed before requests fail
    /// closed (`bundle_stale`); at least `poll_secs`.
    pub max_staleness_secs: u64,
}

/// Why a `bundle` member is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleSourceError {
    /// Not an object of the known members with the right types.
    #[error("`bundle` must be an object with `cluster`, `path`, `keys` and optional `authority`, `poll_secs`, `jitter`, `timeout_ms`, `max_bytes`, `max_staleness_secs`: {0}")]
    Malformed(String),
    /// A key is not a base64 Ed25519 public key, or there are none.
    #[error("`bundle.keys`: {0}")]
    Keys(String),
    /// A value out of range.
    #[error("`bundle.{0}` {1}")]
    OutOfRange(&'static str, &'static str),
    /// What is wrong with the [`BUNDLE_ENV`] variable's value.
    #[error("the VM environment variable `MESHWARD_BUNDLE`: {0}")]
    Env(Box<BundleSourceError>),
    /// Both the VM configuration and the environment name a source.
    #[error("a bundle source is set both in the VM configuration (`bundle`) and in the VM environment variable `MESHWARD_BUNDLE`: set it in one place")]
    SetTwice,
}

impl BundleSource {
    /// Parses the `bundle` member's JSON.
    pub fn from_json(value: &serde_json::Value) -> Result<BundleSource, BundleSourceError> {
        let raw = RawSource::deserialize(value)
            .map_err(|e| BundleSourceError::Malformed(e.to_string()))?;
        let keys = TrustedKeys::from_requirement_json(
            &serde_json::json!({ "keys": raw.keys }).to_string(),
        )
        .map_err(|e| BundleSourceError::Keys(e.to_string()))?;
        let poll_secs = raw.poll_secs.unwrap_or(DEFAULT_POLL_SECS);
        if poll_secs == 0 {
            return Err(BundleSourceError::OutOfRange(
                "poll_secs",
                "must be at least 1",
            ));
        }
        let jitter = raw.jitter.unwrap_or(DEFAULT_JITTER);
        if !(0.0..=0.9).contains(&jitter) {
            return Err(BundleSourceError::OutOfRange(
                "jitter",
                "must be in [0, 0.9]",
            ));
        }
        let max_staleness_secs = raw.max_staleness_secs.unwrap_or(DEFAULT_MAX_STALENESS_SECS);
        if max_staleness_secs < poll_secs {
            return Err(BundleSourceError::OutOfRange(
                "max_staleness_secs",
                "must be at least `poll_secs`",
            ));
        }
        if raw.cluster.is_empty() || !raw.path.starts_with('/') {
            return Err(BundleSourceError::OutOfRange(
                "cluster",
                "and `path` must be a cluster name and an absolute path",
            ));
        }
        Ok(BundleSource {
            authority: raw.authority.unwrap_or_else(|| raw.cluster.clone()),
            cluster: raw.cluster,
            path: raw.path,
            keys,
            poll_secs,
            jitter,
            timeout_ms: raw.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS).max(1),
            max_bytes: raw.max_bytes.unwrap_or(DEFAULT_MAX_BYTES),
            max_staleness_secs,
        })
    }

    /// Reads `bundle` from VM configuration bytes; `None` when absent.
    pub fn from_vm_configuration(bytes: &[u8]) -> Result<Option<BundleSource>, BundleSourceError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        let doc: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| BundleSourceError::Malformed(e.to_string()))?;
        doc.get("bundle").map(BundleSource::from_json).transpose()
    }

    /// Parses the value of [`BUNDLE_ENV`]: the `bundle` member's JSON object.
    pub fn from_env_value(text: &str) -> Result<BundleSource, BundleSourceError> {
        let in_env = |e| BundleSourceError::Env(Box::new(e));
        let doc: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| in_env(BundleSourceError::Malformed(e.to_string())))?;
        BundleSource::from_json(&doc).map_err(in_env)
    }

    /// The source in force from the VM configuration bytes and the
    /// [`BUNDLE_ENV`] value: at most one of them may set one.
    pub fn from_vm(
        vm_configuration: &[u8],
        env_value: Option<&str>,
    ) -> Result<Option<BundleSource>, BundleSourceError> {
        let from_vm = BundleSource::from_vm_configuration(vm_configuration)?;
        match (from_vm, env_value) {
            (Some(_), Some(_)) => Err(BundleSourceError::SetTwice),
            (Some(source), None) => Ok(Some(source)),
            (None, Some(text)) => BundleSource::from_env_value(text).map(Some),
            (None, None) => Ok(None),
        }
    }
}

/// The pull state of one instance.
#[derive(Debug)]
pub(super) struct Bundles {
    source: BundleSource,
    /// The revision in force (0: none yet).
    revision: u64,
    policy_hash: Option<[u8; 32]>,
    /// The `etag` the server gave the bundle in force.
    etag: Option<String>,
    /// When the server last confirmed the bundle in force (Unix seconds).
    confirmed_at: Option<u64>,
    next_due: u64,
    in_flight: Option<CallId>,
    /// Whether the last staleness check found it stale (for transitions).
    stale: bool,
}

/// Where bundle bytes came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// Embedded in the plugin configuration.
    Embedded,
    /// Fetched from the server (with this `etag`, if any).
    Server,
}

/// What happened to offered bundle bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Offer {
    /// A new revision is in force.
    Activated,
    /// The same revision and content as in force.
    Same,
    /// Refused; the bundle in force stays.
    Refused,
}

/// Every counter bundle mode bumps: defined when bundle mode starts, not
/// on first use, because the Envoy dynamic module can define counters only
/// while its filter configuration is created (dashboards also show zeros
/// rather than nothing).
fn define_counters(host: &mut dyn Host) {
    for name in [
        counters::POLLED,
        counters::ACTIVATED,
        counters::NOT_MODIFIED,
        counters::FETCH_FAILED,
        counters::REJECTED,
        counters::ROLLBACK_REFUSED,
        counters::STALE,
        counters::RECOVERED,
    ] {
        host.define_counter(name);
    }
    let refusals = ["equivocation", "policy_hash", "config"];
    for code in BundleError::CODES.into_iter().chain(refusals) {
        host.define_counter(&format!("{}.{code}", counters::REJECTED));
    }
}

fn count(host: &mut dyn Host, name: &str) {
    if let Some(id) = host.define_counter(name) {
        host.increment(id, 1);
    }
}

impl Bundles {
    fn is_stale_at(&self, now: u64) -> bool {
        self.confirmed_at
            .is_none_or(|t| now.saturating_sub(t) > self.source.max_staleness_secs)
    }

    /// The next poll time: `poll_secs` with jitter.
    fn schedule(&mut self, host: &mut dyn Host, now: u64) {
        let mut bytes = [0u8; 8];
        let unit = match host.random(&mut bytes) {
            Ok(()) => (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64,
            Err(_) => 0.5,
        };
        let poll = self.source.poll_secs as f64;
        let delay = poll * (1.0 - self.source.jitter + 2.0 * self.source.jitter * unit);
        // INVARIANT: delay is in [0.1 × poll, 1.9 × poll], finite and positive.
        let delay = (delay.round() as u64).max(1);
        self.next_due = now.saturating_add(delay);
    }
}

impl Pipeline {
    /// Start-up: reads `bundle` from the VM configuration. `false`: the
    /// member is malformed and this instance must not serve.
    pub(super) fn start_bundles(&mut self, host: &mut dyn Host) -> bool {
        let bytes = match host.vm_configuration() {
            Ok(bytes) => bytes.unwrap_or_default(),
            // Already refused by the pinned-key reader.
            Err(_) => return false,
        };
        let env = match host.environment_variable(BUNDLE_ENV) {
            Ok(value) => value,
            Err(err) => {
                host.log(
                    LogLevel::Error,
                    &format!("meshward: rejected VM configuration: cannot read the VM environment variable `{BUNDLE_ENV}` ({err})"),
                );
                return false;
            }
        };
        match BundleSource::from_vm(&bytes, env.as_deref()) {
            Ok(None) => true,
            Ok(Some(source)) => {
                host.log(
                    LogLevel::Info,
                    &format!(
                        "meshward: bundle mode: polling {}{} every {} s (jitter {}), {} pinned key(s), staleness bound {} s",
                        source.cluster,
                        source.path,
                        source.poll_secs,
                        source.jitter,
                        source.keys.len(),
                        source.max_staleness_secs
                    ),
                );
                self.bundles = Some(Bundles {
                    source,
                    revision: 0,
                    policy_hash: None,
                    etag: None,
                    confirmed_at: None,
                    next_due: 0,
                    in_flight: None,
                    stale: false,
                });
                if let Some(id) = host.define_gauge(REVISION_GAUGE) {
                    host.set_gauge(id, 0);
                }
                define_counters(host);
                true
            }
            Err(why) => {
                host.log(
                    LogLevel::Error,
                    &format!("meshward: rejected VM configuration: {why}"),
                );
                false
            }
        }
    }

    /// Whether this instance takes its policy from bundles.
    pub fn bundle_mode(&self) -> bool {
        self.bundles.is_some()
    }

    /// The bundle revision in force (0: none; `None`: not in bundle mode).
    pub fn bundle_revision(&self) -> Option<u64> {
        self.bundles.as_ref().map(|b| b.revision)
    }

    /// The plugin configuration in bundle mode: empty (wait for the first
    /// bundle) or a bundle. `false`: refused.
    pub(super) fn configure_bundled(&mut self, host: &mut dyn Host, bytes: &[u8]) -> bool {
        if let Err(err) = host.set_tick_period(Duration::from_secs(1)) {
            // Without a timer nothing is fetched: the policy goes stale and
            // requests fail closed (`bundle_stale` / `no_policy`).
            host.log(
                LogLevel::Error,
                &format!("meshward: this host has no timer ({err}): bundles will not be fetched"),
            );
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            host.log(
                LogLevel::Info,
                "meshward: no embedded bundle: denying every request (no_policy) until the first bundle loads",
            );
            return true;
        }
        let decoded;
        let raw = if bytes.starts_with(&MAGIC) {
            bytes
        } else {
            let text = String::from_utf8_lossy(bytes);
            match base64::engine::general_purpose::STANDARD.decode(text.trim()) {
                Ok(d) => {
                    decoded = d;
                    decoded.as_slice()
                }
                Err(_) => {
                    host.log(
                        LogLevel::Error,
                        "meshward: rejected configuration: in bundle mode the plugin configuration must be empty or a bundle (raw or base64)",
                    );
                    return false;
                }
            }
        };
        let before = self.bundle_revision().unwrap_or(0);
        match self.offer(host, raw, Origin::Embedded, None) {
            Offer::Activated | Offer::Same => true,
            // An embedded bundle older than the one in force is a floor,
            // not an update: keep serving.
            Offer::Refused => before > 0,
        }
    }

    /// The timer: staleness transitions, then a poll when one is due.
    pub(super) fn tick_bundles(&mut self, host: &mut dyn Host) {
        let Ok(now) = host.now_nanos().map(nanos_to_secs) else {
            return;
        };
        self.check_staleness(host, now);
        let Some(state) = self.bundles.as_mut() else {
            return;
        };
        if state.in_flight.is_some() || now < state.next_due {
            return;
        }
        state.schedule(host, now);
        let etag = state.etag.clone();
        let headers: Vec<(&str, &str)> = etag
            .as_deref()
            .map(|e| ("if-none-match", e))
            .into_iter()
            .collect();
        let source = &state.source;
        match host.dispatch_get_with_headers(
            &source.cluster,
            &source.authority,
            &source.path,
            &headers,
            Duration::from_millis(source.timeout_ms),
        ) {
            Ok(call) => {
                state.in_flight = Some(call);
                count(host, counters::POLLED);
            }
            Err(err) => {
                let what = format!("{}{}", source.cluster, source.path);
                count(host, counters::FETCH_FAILED);
                host.log(
                    LogLevel::Warn,
                    &format!("meshward: bundle poll of {what} could not be dispatched ({err}; unknown cluster?)"),
                );
            }
        }
    }

    /// Whether `call` is this instance's bundle poll.
    pub(super) fn is_bundle_call(&self, call: CallId) -> bool {
        self.bundles
            .as_ref()
            .is_some_and(|b| b.in_flight == Some(call))
    }

    /// The answer to a bundle poll.
    pub(super) fn bundle_response(
        &mut self,
        host: &mut dyn Host,
        status: Option<u16>,
        body: Option<Vec<u8>>,
    ) {
        let Some(state) = self.bundles.as_mut() else {
            return;
        };
        state.in_flight = None;
        let what = format!("{}{}", state.source.cluster, state.source.path);
        let now = host.now_nanos().map_or(0, nanos_to_secs);
        let etag = host
            .http_call_response_header("etag")
            .ok()
            .flatten()
            .and_then(|v| String::from_utf8(v).ok());
        match status {
            Some(304) if state.revision > 0 && state.etag.is_some() => {
                state.confirmed_at = Some(now);
                count(host, counters::NOT_MODIFIED);
                host.log(
                    LogLevel::Debug,
                    &format!(
                        "meshward: bundle {what} not modified (revision {})",
                        state.revision
                    ),
                );
            }
            Some(200) => {
                let body = body.unwrap_or_default();
                self.offer(host, &body, Origin::Server, etag);
            }
            other => {
                let status =
                    other.map_or_else(|| "none (timeout or reset)".to_owned(), |s| s.to_string());
                count(host, counters::FETCH_FAILED);
                host.log(
                    LogLevel::Warn,
                    &format!("meshward: bundle poll of {what} failed: status {status}; keeping revision {}", state.revision),
                );
            }
        }
        self.check_staleness(host, now);
    }

    /// Whether requests must be denied for a stale bundle: the reason, or
    /// `None`.
    pub(super) fn bundle_refusal(&self, now: u64) -> Option<Reason> {
        let state = self.bundles.as_ref()?;
        (self.config.is_some() && state.is_stale_at(now)).then_some(Reason::BundleStale)
    }

    /// Logs and counts a staleness transition.
    fn check_staleness(&mut self, host: &mut dyn Host, now: u64) {
        let Some(state) = self.bundles.as_mut() else {
            return;
        };
        if state.revision == 0 {
            return;
        }
        let stale = state.is_stale_at(now);
        if stale == state.stale {
            return;
        }
        state.stale = stale;
        if stale {
            count(host, counters::STALE);
            host.log(
                LogLevel::Error,
                &format!(
                    "meshward: bundle revision {} not confirmed for more than {} s: denying every request (bundle_stale)",
                    state.revision, state.source.max_staleness_secs
                ),
            );
        } else {
            count(host, counters::RECOVERED);
            host.log(
                LogLevel::Info,
                &format!(
                    "meshward: bundle revision {} confirmed again: serving",
                    state.revision
                ),
            );
        }
    }

    /// Verifies offered bundle bytes and puts them in force when they are
    /// good and newer.
    fn offer(
        &mut self,
        host: &mut dyn Host,
        bytes: &[u8],
        origin: Origin,
        etag: Option<String>,
    ) -> Offer {
        let Some(state) = self.bundles.as_ref() else {
            return Offer::Refused;
        };
        let now = host.now_nanos().map_or(0, nanos_to_secs);
        let from = match origin {
            Origin::Embedded => "the embedded bundle".to_owned(),
            Origin::Server => format!("bundle {}{}", state.source.cluster, state.source.path),
        };
        let current = state.revision;
        let bundle = match Bundle::open(bytes, state.source.max_bytes, &state.source.keys) {
            Ok((bundle, _)) => bundle,
            Err(err) => {
                count(host, counters::REJECTED);
                count(host, &format!("{}.{}", counters::REJECTED, err.code()));
                host.log(
                    LogLevel::Error,
                    &format!("meshward: refused {from}: {err}; keeping revision {current}"),
                );
                return Offer::Refused;
            }
        };
        if bundle.revision < current {
            count(host, counters::ROLLBACK_REFUSED);
            host.log(
                LogLevel::Error,
                &format!(
                    "meshward: refused {from}: revision {} is older than revision {current} in force (rollback)",
                    bundle.revision
                ),
            );
            return Offer::Refused;
        }
        if bundle.revision == current {
            if state.policy_hash != Some(bundle.policy_hash) {
                count(host, counters::REJECTED);
                count(host, &format!("{}.equivocation", counters::REJECTED));
                host.log(
                    LogLevel::Error,
                    &format!(
                        "meshward: refused {from}: revision {current} with policy hash {} differs from the revision {current} in force",
                        bundle.policy_hash_hex()
                    ),
                );
                return Offer::Refused;
            }
            if let Some(state) = self.bundles.as_mut() {
                state.confirmed_at = Some(now);
                if etag.is_some() {
                    state.etag = etag;
                }
            }
            count(host, counters::NOT_MODIFIED);
            return Offer::Same;
        }
        // A newer revision: it must load and hold the policy it names. The
        // configuration is parsed once: what is checked is what goes into force.
        let (parsed, load_ms) = self.parse_config(host, &bundle.config);
        let refusal = match &parsed {
            Err(err) => Some(("config", format!("its configuration does not load: {err}"))),
            Ok(config) if config.policy.hash() != &bundle.policy_hash => Some((
                "policy_hash",
                format!(
                    "the header names policy hash {} but the configuration holds {}",
                    bundle.policy_hash_hex(),
                    config.policy.hash_hex()
                ),
            )),
            Ok(_) => None,
        };
        if let Some((code, why)) = refusal {
            count(host, counters::REJECTED);
            count(host, &format!("{}.{code}", counters::REJECTED));
            host.log(
                LogLevel::Error,
                &format!(
                    "meshward: refused {from} (revision {}): {why}; keeping revision {current}",
                    bundle.revision
                ),
            );
            return Offer::Refused;
        }
        if !self.install_config(host, parsed, load_ms) {
            count(host, counters::REJECTED);
            count(host, &format!("{}.config", counters::REJECTED));
            return Offer::Refused;
        }
        if let Some(state) = self.bundles.as_mut() {
            state.revision = bundle.revision;
            state.policy_hash = Some(bundle.policy_hash);
            state.etag = etag;
            state.confirmed_at = Some(now);
        }
        count(host, counters::ACTIVATED);
        if let Some(id) = host.define_gauge(REVISION_GAUGE) {
            host.set_gauge(id, bundle.revision);
        }
        host.log(
            LogLevel::Info,
            &format!(
                "meshward: bundle revision {} in force (was {current}; policy hash {}, issued at {}, from {from})",
                bundle.revision,
                bundle.policy_hash_hex(),
                bundle.issued_at
            ),
        );
        Offer::Activated
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "unit tests"
)]
#[path = "bundle_tests.rs"]
mod tests;
