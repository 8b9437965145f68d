//! The configuration lifecycle: pinned keys and the seal key at start-up,
//! the plugin configuration parsed once per instance (a missing, malformed,
//! wrong-version, corrupt or unsigned-when-required configuration is refused,
//! so Envoy refuses the listener or keeps the last good one), and key-set and
//! revocation fetches over proxy clusters on a timer.

use std::collections::HashMap;
use std::time::Duration;

use super::host::{CallId, Host, LogLevel};
use super::stats::{Counter, Stats};
use super::{seal_key, Pipeline, CERT_CACHE_CAPACITY, TOKEN_CACHE_CAPACITY};
use crate::config::{ConfigError, FetchTarget, FilterConfig};
use crate::identity::{CertCache, RevocationList, TokenCache};
use crate::signature::{self, TrustedKeys, REQUIRE_SIGNATURE_KEYS_ENV};

/// Fetch schedule: when each `key_fetch` entry is next due, and the calls in
/// flight (call id → entry index).
#[derive(Debug, Default)]
pub(super) struct Fetches {
    next_due: Vec<u64>,
    in_flight: HashMap<CallId, usize>,
}

/// Why a VM configuration is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum VmConfigError {
    /// The host could not hand the VM configuration over.
    #[error("cannot read the VM configuration")]
    Unreadable,
    /// Not a JSON document.
    #[error("the VM configuration is not JSON: {0}")]
    NotJson(String),
    /// JSON, but not an object.
    #[error("the VM configuration must be a JSON object")]
    NotObject,
    /// A member this filter does not know (a typo must not silently drop a
    /// signature requirement).
    #[error("unknown VM configuration field `{0}`")]
    UnknownField(String),
    /// `require_signature` is malformed.
    #[error("{0}")]
    Keys(String),
}

/// Reads `{"require_signature": {"keys": [...]}}` from VM configuration bytes.
pub(crate) fn pinned_keys_from(bytes: &[u8]) -> Result<Option<TrustedKeys>, VmConfigError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let doc: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| VmConfigError::NotJson(e.to_string()))?;
    let Some(object) = doc.as_object() else {
        return Err(VmConfigError::NotObject);
    };
    // `bundle` is read by `bundles::BundleSource::from_vm_configuration`.
    if let Some(unknown) = object
        .keys()
        .find(|k| *k != "require_signature" && *k != "bundle")
    {
        return Err(VmConfigError::UnknownField(unknown.clone()));
    }
    match object.get("require_signature") {
        None => Ok(None),
        Some(requirement) => TrustedKeys::from_requirement_json(&requirement.to_string())
            .map(Some)
            .map_err(|e| VmConfigError::Keys(e.to_string())),
    }
}

impl Pipeline {
    /// Start-up: keys pinned in the VM configuration or the VM environment
    /// ([`REQUIRE_SIGNATURE_KEYS_ENV`]), the counters, the chain seal key.
    /// `false`: this instance must not serve.
    pub fn on_vm_start(&mut self, host: &mut dyn Host) -> bool {
        let pinned = host
            .vm_configuration()
            .map_err(|_| VmConfigError::Unreadable)
            .and_then(|bytes| pinned_keys_from(&bytes.unwrap_or_default()))
            .and_then(|from_vm| {
                let from_env = host
                    .environment_variable(REQUIRE_SIGNATURE_KEYS_ENV)
                    .map_err(|_| VmConfigError::Unreadable)?;
                signature::pinned_keys(from_vm, from_env.as_deref())
                    .map_err(|e| VmConfigError::Keys(e.to_string()))
            });
        match pinned {
            Ok(keys) => self.pinned_keys = keys,
            Err(why) => {
                // A VM that cannot honour its pinned keys must not serve.
                host.log(
                    LogLevel::Error,
                    &format!("meshward: rejected VM configuration: {why}"),
                );
                return false;
            }
        }
        if !self.start_bundles(host) {
            return false;
        }
        self.ensure_stats(host);
        match seal_key::get_or_create(host) {
            Ok(key) => self.seal_key = Some(key),
            // Without a key no chain is sealed or forwarded: fail closed.
            Err(err) => host.log(
                LogLevel::Error,
                &format!("meshward: cannot create the chain seal key ({err})"),
            ),
        }
        true
    }

    /// Defines the counters once.
    fn ensure_stats(&mut self, host: &mut dyn Host) {
        if self.stats.is_none() {
            self.stats = Some(Stats::define(host));
        }
    }

    /// Bumps counters.
    pub(super) fn bump(&mut self, host: &mut dyn Host, counters: &[Counter]) {
        self.ensure_stats(host);
        if let Some(stats) = self.stats.as_mut() {
            stats.bump(host, counters);
        }
    }

    /// Loads the plugin configuration. `false`: refused (the host keeps the
    /// last good configuration, or refuses to start).
    pub fn on_configure(&mut self, host: &mut dyn Host) -> bool {
        self.ensure_stats(host);
        let bytes = match host.plugin_configuration() {
            Ok(bytes) => bytes.unwrap_or_default(),
            Err(err) => {
                host.log(
                    LogLevel::Error,
                    &format!(
                        "meshward: rejected configuration: cannot read the plugin configuration ({err})"
                    ),
                );
                return false;
            }
        };
        if self.bundle_mode() {
            return self.configure_bundled(host, &bytes);
        }
        self.configure(host, &bytes)
    }

    /// Loads plugin configuration bytes (what [`Pipeline::on_configure`]
    /// reads from the host).
    pub fn configure(&mut self, host: &mut dyn Host, bytes: &[u8]) -> bool {
        let (parsed, load_ms) = self.parse_config(host, bytes);
        self.install_config(host, parsed, load_ms)
    }

    /// Parses plugin configuration bytes with the pinned keys; also returns
    /// how long decoding, validating and indexing took inside the host (ms).
    pub(super) fn parse_config(
        &self,
        host: &mut dyn Host,
        bytes: &[u8],
    ) -> (Result<FilterConfig, ConfigError>, f64) {
        let start = host.now_nanos().ok();
        let parsed = FilterConfig::from_json_pinned(bytes, self.pinned_keys.as_ref());
        let load_ms = match (start, host.now_nanos().ok()) {
            (Some(a), Some(b)) => b.saturating_sub(a) as f64 / 1e6,
            _ => f64::NAN,
        };
        (parsed, load_ms)
    }

    /// Puts a parsed configuration in force (or counts and logs its
    /// refusal). A bundle's configuration comes here parsed once, after the
    /// bundle checks read it.
    pub(super) fn install_config(
        &mut self,
        host: &mut dyn Host,
        parsed: Result<FilterConfig, ConfigError>,
        load_ms: f64,
    ) -> bool {
        self.ensure_stats(host);
        let now_secs = host.now_nanos().map_or(0, nanos_to_secs);
        match parsed {
            Ok(config) => {
                host.log(
                    LogLevel::Info,
                    &format!(
                        "meshward: loaded policy `{}` ({} rules, hash {}, mode {}, {:?}{}) in {load_ms:.1} ms",
                        config.policy.name(),
                        config.policy.rule_count(),
                        config.policy.hash_hex(),
                        if config.policy.is_dry_run() { "dry-run" } else { "enforce" },
                        config.direction,
                        if config.signed_by.is_some() { ", signature verified" } else { "" },
                    ),
                );
                let mut keys = config.key_store(now_secs);
                keys.carry_over(&self.keys);
                self.keys = keys;
                if let Some(stats) = self.stats.as_mut() {
                    stats.define_policy(host, &config.policy);
                }
                self.bump(host, &[Counter::ConfigLoaded]);
                self.certs = CertCache::new(CERT_CACHE_CAPACITY);
                self.jwt_svids = TokenCache::new(TOKEN_CACHE_CAPACITY);
                self.users = TokenCache::new(TOKEN_CACHE_CAPACITY);
                self.local_id = config.workload_id.clone();
                self.warned_no_local_identity = false;
                self.configured_revocation = config.revocation.clone();
                self.fetches = Fetches {
                    next_due: vec![now_secs; config.key_fetch.len()],
                    in_flight: HashMap::new(),
                };
                if !config.key_fetch.is_empty() {
                    // A host without timers fetches nothing: the last keys
                    // then go stale and requests fail closed (`keys_stale`).
                    if let Err(err) = host.set_tick_period(Duration::from_secs(1)) {
                        host.log(
                            LogLevel::Warn,
                            &format!("meshward: this host has no timer ({err}): key sets and revocation lists will not be fetched"),
                        );
                    }
                }
                self.config = Some(config);
                true
            }
            Err(err) => {
                self.bump(host, &[Counter::ConfigRejected]);
                if let ConfigError::Signature(sig) = &err {
                    if let Some(id) = host.define_counter(&format!(
                        "{}.reason={}",
                        super::publish::counter::CONFIG_SIGNATURE_REJECTED,
                        sig.code()
                    )) {
                        host.increment(id, 1);
                    }
                }
                host.log(
                    LogLevel::Error,
                    &format!("meshward: rejected configuration: {err}"),
                );
                false
            }
        }
    }

    /// The timer: starts every fetch that is due and not already in flight.
    pub fn on_tick(&mut self, host: &mut dyn Host) {
        self.tick_bundles(host);
        let Some(config) = self.config.as_ref() else {
            return;
        };
        let now = host.now_nanos().map_or(0, nanos_to_secs);
        let mut failed = Vec::new();
        for (index, fetch) in config.key_fetch.iter().enumerate() {
            let due = self
                .fetches
                .next_due
                .get(index)
                .copied()
                .unwrap_or(u64::MAX);
            let busy = self.fetches.in_flight.values().any(|i| *i == index);
            if now < due || busy {
                continue;
            }
            if let Some(slot) = self.fetches.next_due.get_mut(index) {
                *slot = now.saturating_add(fetch.refresh_secs.max(1));
            }
            match host.dispatch_get(
                &fetch.cluster,
                &fetch.authority,
                &fetch.path,
                Duration::from_millis(fetch.timeout_ms),
            ) {
                Ok(call) => {
                    self.fetches.in_flight.insert(call, index);
                }
                Err(err) => failed.push((
                    format!("{}{}", fetch.cluster, fetch.path),
                    format!("the call could not be dispatched ({err}; unknown cluster?)"),
                )),
            }
        }
        for (what, why) in failed {
            self.fetch_failed(host, &what, &why);
        }
    }

    /// A fetch's answer: `status` is the HTTP status (`None` on timeout or
    /// reset), `body` the response body.
    pub fn on_http_call_response(
        &mut self,
        host: &mut dyn Host,
        call: CallId,
        status: Option<u16>,
        body: Option<Vec<u8>>,
    ) {
        if self.is_bundle_call(call) {
            return self.bundle_response(host, status, body);
        }
        let Some(index) = self.fetches.in_flight.remove(&call) else {
            return;
        };
        let Some(fetch) = self.config.as_ref().and_then(|c| c.key_fetch.get(index)) else {
            return;
        };
        let what = format!("{}{}", fetch.cluster, fetch.path);
        let target = fetch.target.clone();
        let now = host.now_nanos().map_or(0, nanos_to_secs);
        let body = match (status, body) {
            (Some(200), Some(body)) => body,
            (Some(200), None) => Vec::new(),
            (status, _) => {
                let status =
                    status.map_or_else(|| "none (timeout or reset)".to_owned(), |s| s.to_string());
                self.fetch_failed(host, &what, &format!("status {status}"));
                return;
            }
        };
        match target {
            FetchTarget::Keys(owner) => match self.keys.apply_fetched(&owner, &body, now) {
                Ok(rotation) if rotation.changed() => {
                    self.bump(host, &[Counter::KeysRotated]);
                    host.log(
                        LogLevel::Info,
                        &format!("meshward: key set from {what} rotated: {rotation:?}"),
                    );
                }
                Ok(_) => {}
                Err(err) => {
                    self.fetch_failed(host, &what, &format!("{err}; keeping the last good set"))
                }
            },
            FetchTarget::Revocation => match RevocationList::from_json(&body) {
                Ok(list) => {
                    let (ids, serials, jtis) = list.counts();
                    let merged = self.configured_revocation.union(&list);
                    if let Some(config) = self.config.as_mut() {
                        config.revocation = merged;
                    }
                    self.bump(host, &[Counter::RevocationUpdated]);
                    host.log(
                        LogLevel::Info,
                        &format!("meshward: revocation lists from {what}: {ids} SPIFFE IDs, {serials} serials, {jtis} token ids"),
                    );
                }
                Err(err) => {
                    self.fetch_failed(host, &what, &format!("{err}; keeping the last lists"))
                }
            },
        }
    }

    fn fetch_failed(&mut self, host: &mut dyn Host, what: &str, why: &str) {
        self.bump(host, &[Counter::KeysFetchFailed]);
        host.log(
            LogLevel::Warn,
            &format!("meshward: fetching {what} failed: {why}"),
        );
    }
}

/// Unix nanoseconds to seconds.
pub(super) fn nanos_to_secs(nanos: u128) -> u64 {
    u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX)
}
