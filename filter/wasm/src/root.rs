//! Configuration lifecycle: parse the plugin configuration once per VM in
//! `on_configure`; a missing, malformed, wrong-version, corrupt or unsigned
//! (when signatures are required) config is refused, so Envoy refuses the
//! listener or keeps the last good config. Also owns the timer that fetches
//! key sets and revocation lists over Envoy clusters.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use meshward_engine::config::{ConfigError, FetchTarget, FilterConfig};
use meshward_engine::identity::{
    CertCache, JwtSvid, KeyStore, RevocationList, TokenCache, UserClaims,
};
use meshward_engine::signature::TrustedKeys;
use meshward_engine::spiffe::SpiffeId;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};

use crate::host;
use crate::http::RequestFilter;
use crate::seal_key;
use crate::stats::Stats;

/// How many parsed peer certificates a VM (one per worker) keeps.
const CERT_CACHE_CAPACITY: usize = 1024;
/// How many verified tokens of each kind a VM keeps.
const TOKEN_CACHE_CAPACITY: usize = 4096;

/// What every request context of this VM shares.
pub struct Shared {
    /// The loaded configuration; `None` until a good one arrives.
    pub config: Option<FilterConfig>,
    /// Parsed peer certificates by digest (reset with each new config).
    pub certs: CertCache,
    /// Verified JWT-SVIDs by token hash.
    pub jwt_svids: TokenCache<JwtSvid>,
    /// Verified user tokens by token hash.
    pub users: TokenCache<UserClaims>,
    /// Key sets in force (inline and fetched).
    pub keys: KeyStore,
    /// The chain seal key (see `seal_key`).
    pub seal_key: Option<Vec<u8>>,
    /// This workload's SPIFFE ID, once read from the listener certificate.
    pub local_id: Option<SpiffeId>,
    /// Revocations written in the configuration; a fetched list adds to them.
    pub configured_revocation: RevocationList,
    /// Counter ids.
    pub stats: Stats,
}

/// Fetch schedule: when each `key_fetch` entry is next due, and the calls in
/// flight (dispatch token → entry index).
#[derive(Default)]
struct Fetches {
    next_due: Vec<u64>,
    in_flight: HashMap<u32, usize>,
}

/// The root context: one per VM and plugin configuration.
#[derive(Default)]
pub struct MeshwardRoot {
    shared: Option<Rc<RefCell<Shared>>>,
    fetches: Fetches,
    /// Signing keys pinned in the VM configuration: whoever can rewrite the
    /// plugin configuration cannot also drop the signature requirement.
    pinned_keys: Option<TrustedKeys>,
}

impl MeshwardRoot {
    fn shared(&mut self) -> Rc<RefCell<Shared>> {
        self.shared
            .get_or_insert_with(|| {
                Rc::new(RefCell::new(Shared {
                    config: None,
                    certs: CertCache::new(CERT_CACHE_CAPACITY),
                    jwt_svids: TokenCache::new(TOKEN_CACHE_CAPACITY),
                    users: TokenCache::new(TOKEN_CACHE_CAPACITY),
                    keys: KeyStore::new(),
                    seal_key: None,
                    local_id: None,
                    configured_revocation: RevocationList::new(),
                    stats: Stats::define(),
                }))
            })
            .clone()
    }
}

impl Context for MeshwardRoot {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let Some(index) = self.fetches.in_flight.remove(&token_id) else {
            return;
        };
        let shared = self.shared();
        let Ok(mut state) = shared.try_borrow_mut() else {
            return;
        };
        let Shared {
            config,
            keys,
            stats,
            configured_revocation,
            ..
        } = &mut *state;
        let Some(config) = config.as_mut() else {
            return;
        };
        let Some(fetch) = config.key_fetch.get(index) else {
            return;
        };
        let what = format!("{}{}", fetch.cluster, fetch.path);
        let status = host::http_call_status();
        let body = host::http_call_body(body_size);
        let now = host::now_secs().unwrap_or(0);
        let (ok_status, body) = match (status.as_deref(), body) {
            (Some("200"), Ok(Some(body))) => (true, body),
            _ => (false, Vec::new()),
        };
        if !ok_status {
            fetch_failed(
                stats,
                &what,
                &format!(
                    "status {}",
                    status.as_deref().unwrap_or("none (timeout or reset)")
                ),
            );
            return;
        }
        match &fetch.target {
            FetchTarget::Keys(owner) => match keys.apply_fetched(owner, &body, now) {
                Ok(rotation) if rotation.changed() => {
                    host::increment(stats.keys_rotated);
                    host::log(
                        LogLevel::Info,
                        &format!("meshward: key set from {what} rotated: {rotation:?}"),
                    );
                }
                Ok(_) => {}
                Err(err) => {
                    fetch_failed(stats, &what, &format!("{err}; keeping the last good set"))
                }
            },
            FetchTarget::Revocation => match RevocationList::from_json(&body) {
                Ok(list) => {
                    let (ids, serials, jtis) = list.counts();
                    config.revocation = configured_revocation.union(&list);
                    host::increment(stats.revocation_updated);
                    host::log(
                        LogLevel::Info,
                        &format!("meshward: revocation lists from {what}: {ids} SPIFFE IDs, {serials} serials, {jtis} token ids"),
                    );
                }
                Err(err) => fetch_failed(stats, &what, &format!("{err}; keeping the last lists")),
            },
        }
    }
}

/// Reads `{"require_signature": {"keys": [...]}}` from the VM configuration
/// (`vm_config.configuration`), if any.
fn pinned_keys() -> Result<Option<TrustedKeys>, String> {
    let bytes = host::vm_configuration()
        .map_err(|_| "cannot read the VM configuration".to_owned())?
        .unwrap_or_default();
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let doc: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| format!("the VM configuration is not JSON: {e}"))?;
    let Some(object) = doc.as_object() else {
        return Err("the VM configuration must be a JSON object".to_owned());
    };
    if let Some(unknown) = object.keys().find(|k| *k != "require_signature") {
        return Err(format!("unknown VM configuration field `{unknown}`"));
    }
    match object.get("require_signature") {
        None => Ok(None),
        Some(requirement) => TrustedKeys::from_requirement_json(&requirement.to_string())
            .map(Some)
            .map_err(|e| e.to_string()),
    }
}

fn fetch_failed(stats: &Stats, what: &str, why: &str) {
    host::increment(stats.keys_fetch_failed);
    host::log(
        LogLevel::Warn,
        &format!("meshward: fetching {what} failed: {why}"),
    );
}

impl RootContext for MeshwardRoot {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        match pinned_keys() {
            Ok(keys) => self.pinned_keys = keys,
            Err(why) => {
                // A VM that cannot honour its pinned keys must not serve.
                host::log(
                    LogLevel::Error,
                    &format!("meshward: rejected VM configuration: {why}"),
                );
                return false;
            }
        }
        let shared = self.shared();
        let key = seal_key::get_or_create();
        if let Ok(mut state) = shared.try_borrow_mut() {
            match key {
                Ok(key) => state.seal_key = Some(key),
                // Without a key no chain is sealed or forwarded: fail closed.
                Err(_) => host::log(
                    LogLevel::Error,
                    "meshward: cannot create the chain seal key",
                ),
            }
        }
        true
    }

    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let shared = self.shared();
        let bytes = match host::plugin_configuration() {
            Ok(bytes) => bytes.unwrap_or_default(),
            Err(_) => {
                host::log(
                    LogLevel::Error,
                    "meshward: rejected configuration: cannot read the plugin configuration",
                );
                return false;
            }
        };
        let Ok(mut state) = shared.try_borrow_mut() else {
            return false;
        };
        let now = host::now_secs().unwrap_or(0);
        let started = host::now_nanos().ok();
        let parsed = FilterConfig::from_json_pinned(&bytes, self.pinned_keys.as_ref());
        // Decoding, validating and indexing the policy, inside the VM.
        let load_ms = match (started, host::now_nanos().ok()) {
            (Some(a), Some(b)) => b.saturating_sub(a) as f64 / 1e6,
            _ => f64::NAN,
        };
        match parsed {
            Ok(config) => {
                host::log(
                    LogLevel::Info,
                    &format!(
                        "meshward: loaded policy `{}` ({} rules, hash {}, mode {}, {:?}{}) in {load_ms:.1} ms",
                        config.policy.name(),
                        config.policy.rule_count(),
                        config.policy.hash_hex(),
                        if config.policy.is_dry_run() {
                            "dry-run"
                        } else {
                            "enforce"
                        },
                        config.direction,
                        if config.signed_by.is_some() {
                            ", signature verified"
                        } else {
                            ""
                        },
                    ),
                );
                let mut keys = config.key_store(now);
                keys.carry_over(&state.keys);
                state.keys = keys;
                state.stats.define_policy(&config.policy);
                state.certs = CertCache::new(CERT_CACHE_CAPACITY);
                state.jwt_svids = TokenCache::new(TOKEN_CACHE_CAPACITY);
                state.users = TokenCache::new(TOKEN_CACHE_CAPACITY);
                state.local_id = config.workload_id.clone();
                state.configured_revocation = config.revocation.clone();
                self.fetches = Fetches {
                    next_due: vec![now; config.key_fetch.len()],
                    in_flight: HashMap::new(),
                };
                if !config.key_fetch.is_empty() {
                    host::set_tick_period(Duration::from_secs(1));
                }
                state.config = Some(config);
                true
            }
            Err(err) => {
                state.stats.config_rejected();
                if let ConfigError::Signature(sig) = &err {
                    host::increment(host::define_counter(&format!(
                        "{}.reason={}",
                        meshward_engine::pipeline::publish::counter::CONFIG_SIGNATURE_REJECTED,
                        sig.code()
                    )));
                }
                host::log(
                    LogLevel::Error,
                    &format!("meshward: rejected configuration: {err}"),
                );
                false
            }
        }
    }

    fn on_tick(&mut self) {
        let shared = self.shared();
        let Ok(state) = shared.try_borrow() else {
            return;
        };
        let Some(config) = state.config.as_ref() else {
            return;
        };
        let now = host::now_secs().unwrap_or(0);
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
            match host::dispatch_get(
                &fetch.cluster,
                &fetch.authority,
                &fetch.path,
                Duration::from_millis(fetch.timeout_ms),
            ) {
                Ok(token) => {
                    self.fetches.in_flight.insert(token, index);
                }
                Err(_) => fetch_failed(
                    &state.stats,
                    &format!("{}{}", fetch.cluster, fetch.path),
                    "the call could not be dispatched (unknown cluster?)",
                ),
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        // Without a configuration the request context denies with `no_policy`.
        Some(Box::new(RequestFilter::new(self.shared.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
