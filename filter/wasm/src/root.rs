//! Configuration lifecycle: parse the plugin configuration once per VM in
//! `on_configure`; a missing, malformed, wrong-version or corrupt config is
//! refused (Envoy then refuses the listener or keeps the last good config).

use std::cell::RefCell;
use std::rc::Rc;

use meshward_engine::config::FilterConfig;
use meshward_engine::identity::CertCache;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};

use crate::host;
use crate::http::RequestFilter;
use crate::stats::Stats;

/// How many parsed peer certificates a VM (one per worker) keeps.
const CERT_CACHE_CAPACITY: usize = 1024;

/// What every request context of this VM shares.
pub struct Shared {
    /// The loaded configuration; `None` until a good one arrives.
    pub config: Option<FilterConfig>,
    /// Parsed peer certificates by digest (reset with each new config).
    pub certs: CertCache,
    /// Counter ids.
    pub stats: Stats,
}

/// The root context: one per VM.
#[derive(Default)]
pub struct MeshwardRoot {
    shared: Option<Rc<RefCell<Shared>>>,
}

impl Context for MeshwardRoot {}

impl RootContext for MeshwardRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let shared = self.shared.get_or_insert_with(|| {
            Rc::new(RefCell::new(Shared {
                config: None,
                certs: CertCache::new(CERT_CACHE_CAPACITY),
                stats: Stats::define(),
            }))
        });
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
        match FilterConfig::from_json(&bytes) {
            Ok(config) => {
                host::log(
                    LogLevel::Info,
                    &format!(
                        "meshward: loaded policy `{}` ({} rules, hash {}, mode {})",
                        config.policy.name(),
                        config.policy.rule_count(),
                        config.policy.hash_hex(),
                        if config.policy.is_dry_run() {
                            "dry-run"
                        } else {
                            "enforce"
                        },
                    ),
                );
                state.config = Some(config);
                state.certs = CertCache::new(CERT_CACHE_CAPACITY);
                true
            }
            Err(err) => {
                state.stats.config_rejected();
                host::log(
                    LogLevel::Error,
                    &format!("meshward: rejected configuration: {err}"),
                );
                false
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
