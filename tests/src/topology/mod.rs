//! Topologies of several real Envoys with the meshward filter, each in
//! front of an app, wired together over mTLS on loopback: what the caller
//! chain (`tests/tests/chain.rs`) and token (`tests/tests/tokens.rs`)
//! end-to-end tests and the demo run.
//!
//! - [`proc`]: one Envoy process with N workers and named listeners
//!   ([`crate::envoy::EnvoyProc`], re-exported).
//! - [`pki`]: CAs and SVIDs on [`crate::pki`] (client SVIDs, and serving
//!   SVIDs that carry the workload's SPIFFE ID).
//! - [`app`]: the app (a [`crate::loopback`] handler) that calls the next
//!   hop and propagates the chain (or misbehaves on request), and
//!   [`app::Trace`] to read a whole path.
//! - [`docs`]: a document server (a [`crate::loopback`] handler) for
//!   fetched key sets and revocation lists.
//! - [`tokens`]: signing keys and JWT-SVIDs / user tokens minted at test time.
//! - [`ThreeHops`]: edge gateway → frontend → orders, each an Envoy with an
//!   inbound and an outbound listener (same `vm_id`) and an app.
//! - [`TokenBackend`]: a workload that verifies tokens with fetched keys,
//!   behind a plain TLS-terminating front proxy.
//!
//! Templates: `envoy/sidecar/envoy.yaml` (frontend, orders),
//! `envoy/chain/gateway.yaml`, `envoy/tokens/{backend,front}.yaml`.

pub mod app;
pub mod docs;
pub mod pki;
pub mod proc;
pub mod tokens;

use std::net::{SocketAddr, TcpListener};
use std::path::Path;

use serde_json::{json, Value};

use crate::client::{Request, Response, TlsClient};
use crate::envoy::StartError;
use crate::pki::Leaf;
use crate::policy::plugin_config;
use crate::templates::{fill, template, yaml_single_quoted};
use crate::workspace::{filter_wasm, Scratch};

use self::app::ChainApp;
use self::docs::DocServer;
use self::pki::MeshPki;
use self::proc::EnvoyProc;
use self::tokens::SigningKey;

/// The gateway's SPIFFE ID.
pub const GATEWAY: &str = "spiffe://shop.example/ns/edge/sa/gateway";
/// The frontend's SPIFFE ID.
pub const FRONTEND: &str = "spiffe://shop.example/ns/shop/sa/frontend";
/// The orders service's SPIFFE ID.
pub const ORDERS: &str = "spiffe://shop.example/ns/shop/sa/orders";
/// The end-user token issuer the gateway trusts.
pub const ISSUER: &str = "https://idp.shop.test";
/// The audience of user tokens for the shop.
pub const USER_AUDIENCE: &str = "shop";

/// The plugin configuration JSON for `source` (compiled by the real
/// compiler) with the members of `extra` added (`direction`, `chain`,
/// `user_tokens`...). Panics with the diagnostics when it does not compile.
pub fn plugin_config_with(source: &str, file_name: &str, extra: &Value) -> String {
    let mut config: Value =
        serde_json::from_str(&plugin_config(source, file_name, &[])).expect("compiled JSON");
    if let (Some(obj), Value::Object(extra)) = (config.as_object_mut(), extra) {
        for (k, v) in extra {
            obj.insert(k.clone(), v.clone());
        }
    }
    config.to_string()
}

/// A free loopback port (bound and released: a later bind may race, which
/// only ever shows as an Envoy start-up failure naming the port).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// One workload: its Envoy (inbound + outbound listeners) and its app.
/// Envoy stops before the app.
pub struct Sidecar {
    /// The Envoy process.
    pub envoy: EnvoyProc,
    /// The app behind it.
    pub app: ChainApp,
    inbound_listener: &'static str,
}

impl Sidecar {
    /// The inbound (or edge) listener.
    pub fn inbound(&self) -> SocketAddr {
        self.envoy.listener(self.inbound_listener)
    }

    /// The outbound listener the app calls through.
    pub fn outbound(&self) -> SocketAddr {
        self.envoy.listener("meshward_outbound")
    }
}

/// How to start one workload.
pub struct SidecarSpec<'a> {
    /// `gateway`, `frontend`...
    pub name: &'a str,
    /// `sidecar/envoy.yaml` or `chain/gateway.yaml` (under `envoy/`).
    pub template: &'a str,
    /// What the inbound listener serves.
    pub server: &'a Leaf,
    /// The SVID the outbound listener presents.
    pub workload: &'a Leaf,
    /// The inbound filter's plugin configuration.
    pub inbound_config: String,
    /// The outbound filter's plugin configuration.
    pub outbound_config: String,
    /// Inbound listener port (0: any).
    pub listen_port: u16,
    /// Where the outbound listener sends calls (the next hop's inbound).
    pub peer_port: u16,
    /// Envoy worker threads.
    pub concurrency: u32,
}

/// A workload whose Envoy was spawned and may not serve yet.
pub struct StartingSidecar {
    envoy: proc::Starting,
    app: ChainApp,
    inbound_listener: &'static str,
}

impl StartingSidecar {
    /// Waits for Envoy, then points the app at the outbound listener.
    pub fn ready(self) -> Result<Sidecar, StartError> {
        let envoy = self
            .envoy
            .ready(&[self.inbound_listener, "meshward_outbound"])?;
        self.app.set_next(envoy.listener("meshward_outbound"));
        Ok(Sidecar {
            envoy,
            app: self.app,
            inbound_listener: self.inbound_listener,
        })
    }
}

/// Starts a workload's app and Envoy from a template under `envoy/`.
pub fn start_sidecar(
    dir: &Path,
    pki: &MeshPki,
    spec: SidecarSpec<'_>,
) -> Result<Sidecar, StartError> {
    spawn_sidecar(dir, pki, spec).ready()
}

/// Starts a workload's app and spawns its Envoy (see [`EnvoyProc::spawn`]).
pub fn spawn_sidecar(dir: &Path, pki: &MeshPki, spec: SidecarSpec<'_>) -> StartingSidecar {
    let app = ChainApp::start(spec.name);
    let cert_dir = dir.join(format!("{}-certs", spec.name));
    pki.write_cert_dir(&cert_dir, spec.server, Some(spec.workload))
        .expect("write certificates");
    let yaml = fill(
        &template(spec.template),
        &[
            ("MESHWARD_LISTEN_PORT", spec.listen_port.to_string()),
            ("MESHWARD_ADMIN_PORT", "0".to_owned()),
            ("MESHWARD_UPSTREAM_PORT", app.port().to_string()),
            ("MESHWARD_OUTBOUND_PORT", "0".to_owned()),
            ("MESHWARD_PEER_PORT", spec.peer_port.to_string()),
            ("MESHWARD_CERT_DIR", cert_dir.display().to_string()),
            ("MESHWARD_WASM", filter_wasm().display().to_string()),
            (
                "MESHWARD_PLUGIN_CONFIG",
                yaml_single_quoted(&spec.inbound_config),
            ),
            (
                "MESHWARD_OUTBOUND_PLUGIN_CONFIG",
                yaml_single_quoted(&spec.outbound_config),
            ),
        ],
    );
    let inbound_listener = if spec.template.starts_with("chain/gateway") {
        "meshward_edge"
    } else {
        "meshward_inbound"
    };
    StartingSidecar {
        envoy: EnvoyProc::spawn(dir, spec.name, &yaml, spec.concurrency),
        app,
        inbound_listener,
    }
}

/// The policies and settings of a [`ThreeHops`].
pub struct ThreeHopsSpec<'a> {
    /// Scratch directory label.
    pub label: &'a str,
    /// Policy source of the gateway (users come in here).
    pub gateway_policy: &'a str,
    /// Policy source of the frontend.
    pub frontend_policy: &'a str,
    /// Policy source of orders.
    pub orders_policy: &'a str,
    /// `chain.on_invalid` of the frontend's outbound side (`deny`/`drop`).
    pub frontend_on_invalid: &'a str,
    /// Envoy worker threads of each of the three.
    pub concurrency: u32,
}

/// Edge gateway → frontend → orders. The gateway's edge listener takes
/// external clients (server TLS only) with a user token; each app calls the
/// next through its own Envoy's outbound listener; orders' app is the end.
///
/// Identities: the gateway's own ID comes from `workload_id` (its public
/// certificate has none); frontend and orders serve their SVID, so their
/// filters read their own ID from `connection.uri_san_local_certificate`.
pub struct ThreeHops {
    /// The gateway (edge listener `meshward_edge`).
    pub gateway: Sidecar,
    /// The frontend.
    pub frontend: Sidecar,
    /// Orders (its app has no next hop).
    pub orders: Sidecar,
    /// The CAs.
    pub pki: MeshPki,
    /// The identity provider's signing key (ES256, kid `idp-1`).
    pub idp: SigningKey,
    /// The gateway's client SVID (to pose as its proxy in tests).
    pub gateway_svid: Leaf,
    /// The frontend's client SVID.
    pub frontend_svid: Leaf,
    _scratch: Scratch,
}

impl ThreeHops {
    /// Starts the three workloads (their Envoys in parallel).
    pub fn start(spec: &ThreeHopsSpec<'_>) -> Result<ThreeHops, StartError> {
        let scratch = Scratch::new(spec.label);
        let pki = MeshPki::new();
        let idp = SigningKey::es256();
        let gateway_svid = pki.shop.svid("/ns/edge/sa/gateway");
        let frontend_svid = pki.shop.svid("/ns/shop/sa/frontend");
        let orders_svid = pki.shop.svid("/ns/shop/sa/orders");
        let public_cert = pki.shop.server_cert();
        let frontend_server = pki.shop.serving_svid("/ns/shop/sa/frontend");
        let orders_server = pki.shop.serving_svid("/ns/shop/sa/orders");
        let (frontend_port, orders_port) = (free_port(), free_port());
        let configs = |source: &str, file: &str, inbound: Value| {
            let mut outbound = json!({"direction": "outbound"});
            if file == "frontend.policy" {
                outbound["chain"] = json!({"on_invalid": spec.frontend_on_invalid});
            }
            (
                plugin_config_with(source, file, &inbound),
                plugin_config_with(source, file, &outbound),
            )
        };
        let (gw_in, gw_out) = configs(
            spec.gateway_policy,
            "gateway.policy",
            json!({
                "direction": "inbound",
                "workload_id": GATEWAY,
                "user_tokens": {"issuers": [{
                    "issuer": ISSUER, "audiences": [USER_AUDIENCE],
                    "jwks": tokens::jwks(&[(&idp, "idp-1")], &json!({}))}]},
            }),
        );
        let (fe_in, fe_out) = configs(
            spec.frontend_policy,
            "frontend.policy",
            json!({"direction": "inbound"}),
        );
        let (or_in, or_out) = configs(
            spec.orders_policy,
            "orders.policy",
            json!({"direction": "inbound"}),
        );
        let dir = scratch.path();
        // Spawned here, one after the other (they boot in parallel), then awaited.
        let orders = spawn_sidecar(
            dir,
            &pki,
            SidecarSpec {
                name: "orders",
                template: "sidecar/envoy.yaml",
                server: &orders_server,
                workload: &orders_svid,
                inbound_config: or_in,
                outbound_config: or_out,
                listen_port: orders_port,
                // Orders calls nobody: the discard port.
                peer_port: 9,
                concurrency: spec.concurrency,
            },
        );
        let frontend = spawn_sidecar(
            dir,
            &pki,
            SidecarSpec {
                name: "frontend",
                template: "sidecar/envoy.yaml",
                server: &frontend_server,
                workload: &frontend_svid,
                inbound_config: fe_in,
                outbound_config: fe_out,
                listen_port: frontend_port,
                peer_port: orders_port,
                concurrency: spec.concurrency,
            },
        );
        let gateway = spawn_sidecar(
            dir,
            &pki,
            SidecarSpec {
                name: "gateway",
                template: "chain/gateway.yaml",
                server: &public_cert,
                workload: &gateway_svid,
                inbound_config: gw_in,
                outbound_config: gw_out,
                listen_port: 0,
                peer_port: frontend_port,
                concurrency: spec.concurrency,
            },
        );
        let (orders, frontend, gateway) = (orders.ready(), frontend.ready(), gateway.ready());
        let orders = orders?;
        orders.app.set_end();
        Ok(ThreeHops {
            gateway: gateway?,
            frontend: frontend?,
            orders,
            pki,
            idp,
            gateway_svid,
            frontend_svid,
            _scratch: scratch,
        })
    }

    /// A user token of [`ISSUER`] for `sub` with `scope`, signed by the IdP.
    pub fn user_token(&self, sub: &str, scope: &str) -> String {
        self.idp.mint(
            "idp-1",
            &tokens::user_claims(ISSUER, sub, USER_AUDIENCE, scope, &format!("{sub}-{scope}")),
        )
    }

    /// An external client of the gateway's edge listener (no certificate).
    pub fn edge_client(&self) -> TlsClient {
        TlsClient::new(self.gateway.inbound(), &self.pki.shop.cert_der(), None)
    }

    /// A client of `to`'s inbound listener presenting `identity`.
    pub fn client(&self, to: &Sidecar, identity: &Leaf) -> TlsClient {
        TlsClient::new(to.inbound(), &self.pki.shop.cert_der(), Some(identity))
    }

    /// `GET path` at the edge with `x-request-id: id` and, when given, a
    /// user token.
    pub fn get_as_user(&self, id: &str, path: &str, token: Option<&str>) -> Response {
        let mut request = Request::get(path).header("x-request-id", id);
        if let Some(t) = token {
            request = request.header("authorization", &format!("Bearer {t}"));
        }
        self.edge_client()
            .send(&request)
            .unwrap_or_else(|e| panic!("GET {path} at the edge ({id}): {e}"))
    }
}

/// A workload that verifies JWT-SVIDs and user tokens (keys and revocation
/// lists fetched from a [`DocServer`] through the `meshward_keys` cluster),
/// an echo app behind it, and a plain TLS-terminating front proxy in front
/// of it (`envoy/tokens/front.yaml`) that forwards over mTLS as [`TokenBackend::FRONT`].
pub struct TokenBackend {
    /// The workload's Envoy (`envoy/tokens/backend.yaml`).
    pub envoy: EnvoyProc,
    /// The front proxy's Envoy, when started.
    pub front: Option<EnvoyProc>,
    /// Serves `/bundle`, `/jwks`, `/revoked` as the test sets them.
    pub docs: DocServer,
    /// The app.
    pub app: crate::upstream::EchoUpstream,
    /// The CAs.
    pub pki: MeshPki,
    _scratch: Scratch,
}

impl TokenBackend {
    /// The front proxy's SPIFFE ID.
    pub const FRONT: &'static str = "spiffe://shop.example/ns/edge/sa/front-proxy";

    /// Starts the document server, the workload with `plugin_config` (its
    /// `key_fetch` entries name the cluster `meshward_keys`), and, with
    /// `with_front`, the front proxy. `before_start` lets the test put the
    /// first documents in place.
    pub fn start(
        label: &str,
        plugin_config: &str,
        with_front: bool,
        before_start: impl FnOnce(&DocServer),
    ) -> Result<TokenBackend, StartError> {
        let scratch = Scratch::new(label);
        let pki = MeshPki::new();
        let docs = DocServer::start();
        before_start(&docs);
        let app = crate::upstream::EchoUpstream::start();
        let dir = scratch.path();
        let cert_dir = dir.join("backend-certs");
        pki.write_cert_dir(
            &cert_dir,
            &pki.shop.serving_svid("/ns/shop/sa/orders"),
            None,
        )
        .expect("write certificates");
        let backend_port = free_port();
        let yaml = fill(
            &template("tokens/backend.yaml"),
            &[
                ("MESHWARD_LISTEN_PORT", backend_port.to_string()),
                ("MESHWARD_ADMIN_PORT", "0".to_owned()),
                ("MESHWARD_UPSTREAM_PORT", app.port().to_string()),
                ("MESHWARD_KEYS_PORT", docs.port().to_string()),
                ("MESHWARD_CERT_DIR", cert_dir.display().to_string()),
                ("MESHWARD_WASM", filter_wasm().display().to_string()),
                ("MESHWARD_PLUGIN_CONFIG", yaml_single_quoted(plugin_config)),
            ],
        );
        let front = if with_front {
            let front_dir = dir.join("front-certs");
            let front_svid = pki.shop.svid("/ns/edge/sa/front-proxy");
            pki.write_cert_dir(&front_dir, &pki.shop.server_cert(), Some(&front_svid))
                .expect("write certificates");
            let yaml = fill(
                &template("tokens/front.yaml"),
                &[
                    ("MESHWARD_LISTEN_PORT", "0".to_owned()),
                    ("MESHWARD_ADMIN_PORT", "0".to_owned()),
                    ("MESHWARD_PEER_PORT", backend_port.to_string()),
                    ("MESHWARD_CERT_DIR", front_dir.display().to_string()),
                ],
            );
            Some(yaml)
        } else {
            None
        };
        let backend = EnvoyProc::spawn(dir, "backend", &yaml, 1);
        let front = front.map(|y| EnvoyProc::spawn(dir, "front", &y, 1));
        let envoy = backend.ready(&["meshward_inbound"]);
        let front = front.map(|f| f.ready(&["front"]));
        Ok(TokenBackend {
            envoy: envoy?,
            front: front.transpose()?,
            docs,
            app,
            pki,
            _scratch: scratch,
        })
    }

    /// A client of the workload's own mTLS listener presenting `identity`.
    pub fn direct(&self, identity: &Leaf) -> TlsClient {
        TlsClient::new(
            self.envoy.listener("meshward_inbound"),
            &self.pki.shop.cert_der(),
            Some(identity),
        )
    }

    /// A client of the front proxy (no client certificate).
    pub fn via_front(&self) -> TlsClient {
        let front = self.front.as_ref().expect("started without a front proxy");
        TlsClient::new(front.listener("front"), &self.pki.shop.cert_der(), None)
    }
}
