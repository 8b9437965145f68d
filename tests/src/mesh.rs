//! The fixture most tests use: a PKI, the echo app, and Envoy with the
//! meshward filter in front of it, configured from `envoy/demo.yaml`.
//!
//! ```no_run
//! use meshward_e2e::{Mesh, Request};
//! let mesh = Mesh::builder("policy \"p\" { trust_domains \"shop.example\" }").start();
//! let frontend = mesh.pki.workload("shop", "frontend");
//! let response = mesh.send(Some(&frontend), &Request::get("/orders/1"));
//! assert_eq!(response.status, 403);
//! ```

use std::path::PathBuf;

use crate::client::{ClientError, Request, Response, TlsClient};
use crate::envoy::{demo_template, render, ConfigVars, Envoy, StartError};
use crate::pki::{Leaf, TestPki};
use crate::policy::plugin_config;
use crate::upstream::EchoUpstream;
use crate::workspace::{filter_wasm, Scratch};

/// A rewrite of the rendered config (see [`MeshBuilder::edit_config`]).
type ConfigEdit = Box<dyn FnOnce(String) -> String>;

/// Configures a [`Mesh`].
pub struct MeshBuilder {
    plugin_config: PluginConfig,
    require_client_certificate: bool,
    serve_as: Option<String>,
    label: String,
    wasm: Option<PathBuf>,
    edits: Vec<ConfigEdit>,
}

enum PluginConfig {
    Policy {
        source: String,
        revoked_serials: Vec<String>,
    },
    Raw(String),
}

impl MeshBuilder {
    /// Adds a serial (hex) to the configuration's revocation list. Only for
    /// a mesh built from policy source (a raw configuration is used verbatim).
    pub fn revoke(mut self, serial_hex: &str) -> Self {
        match &mut self.plugin_config {
            PluginConfig::Policy {
                revoked_serials, ..
            } => revoked_serials.push(serial_hex.to_owned()),
            PluginConfig::Raw(_) => panic!("revoke() needs a mesh built from policy source"),
        }
        self
    }

    /// Turns client certificates off on the listener (`require_client_certificate:
    /// false` and no `validation_context`, so Envoy does not even ask for
    /// one), to prove the filter itself still denies a peer without a
    /// certificate: defence in depth against that misconfiguration.
    pub fn without_client_certificates(mut self) -> Self {
        self.require_client_certificate = false;
        self
    }

    /// Makes Envoy serve the SVID of the shop workload at `path`
    /// (`/ns/<ns>/sa/<sa>`) instead of a certificate without a SPIFFE ID, so
    /// the filter knows its own identity (`connection.uri_san_local_certificate`)
    /// and can hand a caller chain to the app.
    pub fn serve_as(mut self, path: &str) -> Self {
        self.serve_as = Some(path.to_owned());
        self
    }

    /// A name for the scratch directory.
    pub fn label(mut self, label: &str) -> Self {
        self.label = label.to_owned();
        self
    }

    /// Runs the wasm filter at `path` instead of the release build (a test
    /// build, e.g. with `trap-trigger`). The native build's module is chosen
    /// with [`crate::build::pin_native_dir`] instead.
    pub fn wasm(mut self, path: PathBuf) -> Self {
        self.wasm = Some(path);
        self
    }

    /// Rewrites the rendered `envoy/demo.yaml` before Envoy starts (another
    /// failure policy, an extra access log); edits run in order.
    pub fn edit_config(mut self, edit: impl FnOnce(String) -> String + 'static) -> Self {
        self.edits.push(Box::new(edit));
        self
    }

    /// Starts everything; panics (with Envoy's log) if Envoy does not come up.
    pub fn start(self) -> Mesh {
        self.try_start().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts everything; returns Envoy's start-up failure instead of panicking.
    pub fn try_start(self) -> Result<Mesh, StartError> {
        let wasm = self.wasm.clone().unwrap_or_else(filter_wasm);
        let scratch = Scratch::new(&self.label);
        let mut pki = TestPki::new();
        if let Some(path) = &self.serve_as {
            pki.serve_as(path);
        }
        let cert_dir = scratch.path().join("certs");
        pki.write_envoy_files(&cert_dir)
            .expect("write certificates");
        let plugin_config = match &self.plugin_config {
            PluginConfig::Policy {
                source,
                revoked_serials,
            } => plugin_config(source, &format!("{}.policy", self.label), revoked_serials),
            PluginConfig::Raw(raw) => raw.clone(),
        };
        let upstream = EchoUpstream::start();
        let mut yaml = render(
            &demo_template(),
            &ConfigVars {
                listen_port: 0,
                admin_port: 0,
                upstream_port: upstream.port(),
                cert_dir,
                wasm,
                plugin_config,
            },
        );
        if !self.require_client_certificate {
            let strict = "require_client_certificate: true";
            assert!(
                yaml.contains(strict),
                "envoy/demo.yaml no longer says `{strict}`"
            );
            yaml = remove_yaml_block(
                &yaml.replace(strict, "require_client_certificate: false"),
                "validation_context:",
            );
        }
        for edit in self.edits {
            yaml = edit(yaml);
        }
        let envoy = Envoy::start(scratch.path(), &yaml)?;
        Ok(Mesh {
            envoy,
            upstream,
            pki,
            _scratch: scratch,
        })
    }
}

/// A running mesh. Drop order matters: Envoy stops first, then the app, then
/// the scratch directory goes (kept when the test failed).
pub struct Mesh {
    /// The Envoy process.
    pub envoy: Envoy,
    /// The app behind it.
    pub upstream: EchoUpstream,
    /// The CAs and Envoy's certificate.
    pub pki: TestPki,
    _scratch: Scratch,
}

impl Mesh {
    /// A mesh enforcing `policy_source` (v1 syntax).
    pub fn builder(policy_source: &str) -> MeshBuilder {
        MeshBuilder {
            plugin_config: PluginConfig::Policy {
                source: policy_source.to_owned(),
                revoked_serials: Vec::new(),
            },
            require_client_certificate: true,
            serve_as: None,
            label: "mesh".to_owned(),
            wasm: None,
            edits: Vec::new(),
        }
    }

    /// A mesh whose filter gets `raw` as its plugin configuration, verbatim
    /// (for broken-config tests).
    pub fn builder_with_raw_config(raw: &str) -> MeshBuilder {
        MeshBuilder {
            plugin_config: PluginConfig::Raw(raw.to_owned()),
            require_client_certificate: true,
            serve_as: None,
            label: "raw-config".to_owned(),
            wasm: None,
            edits: Vec::new(),
        }
    }

    /// A client presenting `identity` (or no certificate).
    pub fn client(&self, identity: Option<&Leaf>) -> TlsClient {
        TlsClient::new(self.envoy.listener(), &self.pki.shop.cert_der(), identity)
    }

    /// Sends `request` as `identity`; panics if no HTTP response comes back.
    pub fn send(&self, identity: Option<&Leaf>, request: &Request) -> Response {
        self.try_send(identity, request).unwrap_or_else(|e| {
            panic!(
                "{} {} as {}: no response: {e}",
                request.method(),
                request.target(),
                identity.map_or("<no certificate>", Leaf::spiffe_id)
            )
        })
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

/// Removes the block that starts at the line `key` (trimmed) and every
/// following line indented deeper (comments included). Panics if absent.
fn remove_yaml_block(yaml: &str, key: &str) -> String {
    let mut out = String::with_capacity(yaml.len());
    let mut skipping: Option<usize> = None;
    let mut found = false;
    for line in yaml.lines() {
        let indent = line.len() - line.trim_start().len();
        if let Some(block_indent) = skipping {
            if line.trim().is_empty() || indent > block_indent {
                continue;
            }
            skipping = None;
        }
        if line.trim() == key {
            skipping = Some(indent);
            found = true;
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    assert!(found, "envoy/demo.yaml has no `{key}` block");
    out
}

#[cfg(test)]
mod tests {
    use super::remove_yaml_block;

    #[test]
    fn removes_exactly_the_block() {
        let yaml = "a:\n  b:\n    c: 1\n    # note\n    d:\n      e: 2\n  f: 3\n";
        assert_eq!(remove_yaml_block(yaml, "b:"), "a:\n  f: 3\n");
    }
}
