//! Envoy with the meshward filter configured through ECDS from a watched
//! directory (`envoy/ecds/`): [`EcdsMesh`] starts it and [`EcdsMesh::publish`]
//! rolls a new plugin configuration out the documented way, by rendering
//! `envoy/ecds/meshward-filter.yaml` to a temporary file in the watched
//! directory and renaming it over the live one (an atomic move).
//!
//! [`fill`], [`template`] and [`yaml_single_quoted`] are re-exported from
//! [`crate::templates`], the one template filler.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::client::{ClientError, Request, Response, TlsClient};
use crate::envoy::{Envoy, StartError};
use crate::pki::{Leaf, TestPki};
use crate::upstream::EchoUpstream;
use crate::workspace::{filter_wasm, Scratch};

pub use crate::templates::{fill, template, yaml_single_quoted};

/// The HTTP filter's (and the ECDS resource's) name in `envoy/ecds/`.
pub const FILTER_NAME: &str = "meshward";

/// The ECDS resource file for `plugin_config`, rendered from
/// `envoy/ecds/meshward-filter.yaml`.
pub fn filter_resource(wasm: &Path, plugin_config: &str) -> String {
    let resource = fill(
        &template("ecds/meshward-filter.yaml"),
        &[
            ("MESHWARD_WASM", wasm.display().to_string()),
            ("MESHWARD_PLUGIN_CONFIG", yaml_single_quoted(plugin_config)),
        ],
    );
    // The same resource for the native module when that build runs.
    crate::build::prepare_config(&resource).yaml
}

/// Writes `content` to `dir/.name.tmp`, then renames it to `dir/name`: the
/// atomic move Envoy's `watched_directory` reacts to.
pub fn atomic_move_into(dir: &Path, name: &str, content: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    fs::write(&tmp, content).unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
    fs::rename(&tmp, dir.join(name))
        .unwrap_or_else(|e| panic!("rename into {}: {e}", dir.display()));
}

/// Envoy from `envoy/ecds/envoy.yaml`, the echo app, and the PKI.
pub struct EcdsMesh {
    /// The Envoy process.
    pub envoy: Envoy,
    /// The app behind it.
    pub upstream: EchoUpstream,
    /// The CAs and Envoy's certificate.
    pub pki: TestPki,
    ecds_dir: PathBuf,
    wasm: PathBuf,
    _scratch: Scratch,
}

impl EcdsMesh {
    /// Starts Envoy with `plugin_config` as the first filter configuration.
    pub fn start(label: &str, plugin_config: &str) -> Result<EcdsMesh, StartError> {
        let wasm = filter_wasm();
        let scratch = Scratch::new(label);
        let pki = TestPki::new();
        let cert_dir = scratch.path().join("certs");
        pki.write_envoy_files(&cert_dir)
            .expect("write certificates");
        let ecds_dir = scratch.path().join("ecds");
        fs::create_dir_all(&ecds_dir).expect("create ecds dir");
        atomic_move_into(
            &ecds_dir,
            "meshward-filter.yaml",
            &filter_resource(&wasm, plugin_config),
        );
        let upstream = EchoUpstream::start();
        let yaml = fill(
            &template("ecds/envoy.yaml"),
            &[
                ("MESHWARD_LISTEN_PORT", "0".to_owned()),
                ("MESHWARD_ADMIN_PORT", "0".to_owned()),
                ("MESHWARD_UPSTREAM_PORT", upstream.port().to_string()),
                ("MESHWARD_CERT_DIR", cert_dir.display().to_string()),
                ("MESHWARD_ECDS_DIR", ecds_dir.display().to_string()),
            ],
        );
        let envoy = Envoy::start(scratch.path(), &yaml)?;
        Ok(EcdsMesh {
            envoy,
            upstream,
            pki,
            ecds_dir,
            wasm,
            _scratch: scratch,
        })
    }

    /// Rolls `plugin_config` out: render, write beside, move over.
    pub fn publish(&self, plugin_config: &str) {
        atomic_move_into(
            &self.ecds_dir,
            "meshward-filter.yaml",
            &filter_resource(&self.wasm, plugin_config),
        );
    }

    /// The watched directory.
    pub fn ecds_dir(&self) -> &Path {
        &self.ecds_dir
    }

    /// An ECDS counter of the meshward filter, e.g. `update_success`,
    /// `update_rejected` (0 when absent).
    pub fn ecds_counter(&self, name: &str) -> u64 {
        self.envoy.counter(&format!(
            "extension_config_discovery.http_filter.{FILTER_NAME}.{name}"
        ))
    }

    /// Waits until the ECDS counter `name` reaches `at_least`; panics after
    /// `timeout` with the counters seen.
    pub fn wait_ecds_counter(&self, name: &str, at_least: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.ecds_counter(name) < at_least {
            if Instant::now() > deadline {
                panic!(
                    "ECDS counter {name} did not reach {at_least} within {timeout:?}: {:?}",
                    self.envoy.stats(&format!(
                        "extension_config_discovery.http_filter.{FILTER_NAME}."
                    ))
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A client presenting `identity`.
    pub fn client(&self, identity: Option<&Leaf>) -> TlsClient {
        TlsClient::new(self.envoy.listener(), &self.pki.shop.cert_der(), identity)
    }

    /// Sends `request` as `identity`.
    pub fn try_send(
        &self,
        identity: Option<&Leaf>,
        request: &Request,
    ) -> Result<Response, ClientError> {
        self.client(identity).send(request)
    }
}
