//! Envoy configured the way Istio configures a sidecar for a `WasmPlugin`,
//! from the manifests `meshward istio` generates: the Istio-fidelity
//! end-to-end tests run the real filter inside it.
//!
//! What is reproduced, and where Istio does it (istio/istio, read at the
//! 1.25+ sources; the WasmPlugin parts are unchanged since 1.21 except where
//! noted):
//!
//! - `pilot/pkg/model/extensions.go`, `buildPluginConfig`: the
//!   `envoy.extensions.filters.http.wasm.v3.Wasm` config: `name` =
//!   `<namespace>.<name>`, `root_id` = `spec.pluginName`, `vm_config.runtime`
//!   = `envoy.wasm.runtime.v8`, no `vm_id`, `configuration` = a
//!   `google.protobuf.StringValue` holding `spec.pluginConfig` re-serialized
//!   by `protomarshal.ToJSON` (protojson of a `google.protobuf.Struct`: keys
//!   sorted, every number a double, whitespace not guaranteed), and
//!   `failStrategy: FAIL_CLOSE` -> `failure_policy: FAIL_CLOSED` (proxies >=
//!   1.25; older ones get `fail_open: false`, which Envoy treats the same).
//! - `pilot/pkg/networking/core/extension/wasmplugin.go`: the HTTP filter is
//!   named after the resource (`extensions.istio.io/wasmplugin/<ns>.<name>`
//!   since 1.26; `extenstions.istio.io/...` in 1.21-1.25; `<ns>.<name>`
//!   before) and configured by ECDS (`config_discovery`, type URLs Wasm and
//!   RBAC, `initial_fetch_timeout: 0`). Istio serves ECDS over ADS; here a
//!   watched file stands in for the ADS stream.
//! - `pkg/wasm/convert.go` (istio-agent): `oci://` code is replaced by a
//!   local file (the module fetched from the image), and the `ISTIO_META_*`
//!   environment variables istiod put in `vm_config` are stripped. Here the
//!   module is read out of the OCI image layout `meshward oci` writes.
//! - `buildSidecarInboundHTTPOpts` (the sidecar inbound listener builder in
//!   `pilot/pkg/networking/core/`): the inbound connection manager has
//!   `forward_client_cert_details: APPEND_FORWARD` and
//!   `set_current_client_cert_details {subject, uri, dns}`; mesh config's
//!   default `pathNormalization: BASE` is `normalize_path: true` only (no
//!   slash merging). The listener is mTLS with the workload's SVID and the
//!   mesh CA as the only trust anchor.
//!
//! Not reproduced (no cluster, no istio-proxy build): Istio's own filters
//! around ours (`istio.metadata_exchange`, `istio_authn`, RBAC, stats), SDS
//! certificate delivery, the ADS transport, and the agent's download.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::client::TlsClient;
use crate::ecds::atomic_move_into;
use crate::envoy::{Envoy, StartError, LISTENER};
use crate::pki::{workload_path, Ca, Leaf};
use crate::upstream::EchoUpstream;
use crate::workspace::Scratch;

/// Istio's default trust domain.
pub const TRUST_DOMAIN: &str = "cluster.local";
/// The prefix of a WasmPlugin's ECDS resource and HTTP filter name (1.26+).
pub const RESOURCE_PREFIX: &str = "extensions.istio.io/wasmplugin/";
/// Wasm HTTP filter type URL.
pub const WASM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
/// The outbound listener's name (Istio's).
pub const OUTBOUND_LISTENER: &str = "virtualOutbound";
/// RBAC HTTP filter type URL (Istio's fallback when the module cannot be fetched).
pub const RBAC_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC";

/// A mesh CA like istiod's: one trust domain, SVIDs with one URI SAN.
pub struct MeshCa {
    ca: Ca,
}

impl MeshCa {
    /// A fresh CA for `cluster.local`.
    pub fn new() -> MeshCa {
        MeshCa {
            ca: Ca::istiod(TRUST_DOMAIN),
        }
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> Vec<u8> {
        self.ca.cert_der()
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> String {
        self.ca.cert_pem()
    }

    /// An SVID `spiffe://cluster.local/ns/<ns>/sa/<sa>` valid for `lifetime`
    /// (started a minute ago), with an empty subject as istiod issues them.
    /// `dns_localhost` adds the DNS SAN our test client checks on servers.
    pub fn svid(&self, ns: &str, sa: &str, lifetime: time::Duration, dns_localhost: bool) -> Leaf {
        let mut svid = self
            .ca
            .svid(&workload_path(ns, sa))
            .empty_subject()
            .validity(Duration::from_secs(60), lifetime.unsigned_abs());
        if dns_localhost {
            svid = svid.dns("localhost");
        }
        svid.issue()
    }
}

impl Default for MeshCa {
    fn default() -> Self {
        MeshCa::new()
    }
}

/// `spec.pluginConfig` as istiod hands it to Envoy: protojson of a
/// `google.protobuf.Struct` (sorted keys, doubles), here with the extra
/// spaces protojson may insert, so the filter must not depend on layout.
pub fn istio_plugin_config_json(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let sorted: BTreeMap<&String, &Value> = map.iter().collect();
            let fields: Vec<String> = sorted
                .into_iter()
                .map(|(k, v)| {
                    format!(
                        "{}: {}",
                        Value::String(k.clone()),
                        istio_plugin_config_json(v)
                    )
                })
                .collect();
            format!("{{{}}}", fields.join(", "))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(istio_plugin_config_json).collect();
            format!("[{}]", items.join(", "))
        }
        // Struct numbers are doubles; integral ones print without a fraction.
        Value::Number(n) => {
            let f = n.as_f64().unwrap_or(0.0);
            if f.fract() == 0.0 && f.abs() < 1e21 {
                format!("{f:.0}")
            } else {
                format!("{f}")
            }
        }
        other => other.to_string(),
    }
}

/// The ECDS resource name (and HTTP filter name) of a WasmPlugin manifest.
pub fn resource_name(manifest: &Value) -> String {
    format!(
        "{RESOURCE_PREFIX}{}.{}",
        manifest["metadata"]["namespace"].as_str().unwrap_or(""),
        manifest["metadata"]["name"].as_str().unwrap_or("")
    )
}

/// The Wasm filter config istiod + istio-agent give Envoy for `manifest`, with
/// the module at `module` (what the agent fetched from the image).
pub fn wasm_filter_config(manifest: &Value, module: &Path) -> Value {
    let spec = &manifest["spec"];
    let failure_policy = match spec["failStrategy"].as_str() {
        Some("FAIL_OPEN") => "FAIL_OPEN",
        Some("FAIL_RELOAD") => "FAIL_RELOAD",
        _ => "FAIL_CLOSED",
    };
    let mut config = json!({
        "name": format!(
            "{}.{}",
            manifest["metadata"]["namespace"].as_str().unwrap_or(""),
            manifest["metadata"]["name"].as_str().unwrap_or("")
        ),
        "root_id": spec["pluginName"],
        "vm_config": {
            "runtime": "envoy.wasm.runtime.v8",
            "code": { "local": { "filename": module.display().to_string() } }
        },
        "failure_policy": failure_policy,
    });
    // `buildVMConfig`: `vmConfig.env` INLINE entries become `key_values`,
    // HOST entries `host_env_keys` (the agent strips only `ISTIO_META_*`).
    if let Some(env) = spec["vmConfig"]["env"].as_array() {
        let mut key_values = serde_json::Map::new();
        let mut host_env_keys = Vec::new();
        for var in env {
            let name = var["name"].as_str().unwrap_or("").to_owned();
            if var["valueFrom"] == "HOST" {
                host_env_keys.push(Value::from(name));
            } else {
                key_values.insert(name, var.get("value").cloned().unwrap_or(json!("")));
            }
        }
        config["vm_config"]["environment_variables"] = json!({
            "key_values": key_values,
            "host_env_keys": host_env_keys,
        });
    }
    if spec["pluginConfig"]
        .as_object()
        .is_some_and(|m| !m.is_empty())
    {
        config["configuration"] = json!({
            "@type": "type.googleapis.com/google.protobuf.StringValue",
            "value": istio_plugin_config_json(&spec["pluginConfig"]),
        });
    }
    json!({ "config": config })
}

/// Follows an OCI image layout like the agent's image fetcher: index ->
/// manifest -> the layer with the Wasm module media type. Returns the blob's
/// path.
pub fn module_from_layout(layout: &Path) -> PathBuf {
    let read = |p: PathBuf| -> Value {
        serde_json::from_slice(&fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    };
    let blob = |digest: &str| {
        layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let index = read(layout.join("index.json"));
    let manifest = read(blob(
        index["manifests"][0]["digest"]
            .as_str()
            .expect("manifest digest"),
    ));
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(
        layers.len(),
        2,
        "Istio's OCI-artifact fetcher wants two layers"
    );
    let layer = layers
        .iter()
        .find(|l| l["mediaType"] == "application/vnd.module.wasm.content.layer.v1+wasm")
        .expect("a Wasm content layer");
    blob(layer["digest"].as_str().expect("layer digest"))
}

/// The XFCC handling of the inbound connection manager.
#[derive(Debug, Clone)]
pub struct Xfcc {
    /// `forward_client_cert_details`.
    pub forward: String,
    /// `set_current_client_cert_details`.
    pub details: Value,
    /// `strip_trailing_host_dot` (Istio leaves it off; our patch sets it).
    pub strip_trailing_host_dot: bool,
}

impl Xfcc {
    /// Istio's sidecar inbound default.
    pub fn istio_default() -> Xfcc {
        Xfcc {
            forward: "APPEND_FORWARD".into(),
            details: json!({ "subject": true, "uri": true, "dns": true }),
            strip_trailing_host_dot: false,
        }
    }

    /// Istio's default with an `EnvoyFilter` MERGE patch applied (the
    /// `typed_config` of `patch.value`), as istiod merges it.
    pub fn patched(envoy_filter: &Value) -> Xfcc {
        let patch = &envoy_filter["spec"]["configPatches"][0]["patch"];
        assert_eq!(patch["operation"], "MERGE");
        let hcm = &patch["value"]["typed_config"];
        let mut xfcc = Xfcc::istio_default();
        if let Some(f) = hcm["forward_client_cert_details"].as_str() {
            xfcc.forward = f.to_owned();
        }
        if let Some(strip) = hcm["strip_trailing_host_dot"].as_bool() {
            xfcc.strip_trailing_host_dot = strip;
        }
        if let (Some(base), Some(extra)) = (
            xfcc.details.as_object_mut(),
            hcm["set_current_client_cert_details"].as_object(),
        ) {
            for (k, v) in extra {
                base.insert(k.clone(), v.clone());
            }
        }
        xfcc
    }
}

/// A sidecar-like Envoy: the workload's inbound mTLS listener with the
/// WasmPlugin filter from ECDS, in front of the echo app.
pub struct IstioSidecar {
    /// The Envoy process.
    pub envoy: Envoy,
    /// The app.
    pub upstream: EchoUpstream,
    /// The mesh CA.
    pub ca: MeshCa,
    /// The ECDS resource name of the plugin.
    pub filter_name: String,
    _scratch: Scratch,
}

impl IstioSidecar {
    /// Starts a sidecar for workload `spiffe://cluster.local/ns/<ns>/sa/<sa>`
    /// running the WasmPlugin `manifest` (mode `SERVER`) with the module at
    /// `module` on its inbound listener, and, if given, the `CLIENT` plugin
    /// `outbound` on an outbound listener (`virtualOutbound`, plaintext from
    /// the app, routed to the echo app for the test to see what leaves).
    pub fn start(
        label: &str,
        ns: &str,
        sa: &str,
        manifest: &Value,
        outbound: Option<&Value>,
        module: &Path,
        xfcc: &Xfcc,
    ) -> Result<IstioSidecar, StartError> {
        IstioSidecar::start_with_clusters(label, ns, sa, manifest, outbound, module, xfcc, &[])
    }

    /// [`IstioSidecar::start`] with further clusters (what istiod renders
    /// for `ServiceEntry`s: [`service_entry_clusters`]).
    #[expect(
        clippy::too_many_arguments,
        reason = "start's arguments plus the clusters"
    )]
    pub fn start_with_clusters(
        label: &str,
        ns: &str,
        sa: &str,
        manifest: &Value,
        outbound: Option<&Value>,
        module: &Path,
        xfcc: &Xfcc,
        clusters: &[Value],
    ) -> Result<IstioSidecar, StartError> {
        let scratch = Scratch::new(label);
        let ca = MeshCa::new();
        let workload = ca.svid(ns, sa, time::Duration::hours(24), true);
        let dir = scratch.path();
        fs::write(dir.join("root-cert.pem"), ca.cert_pem()).expect("write CA");
        fs::write(dir.join("cert-chain.pem"), &workload.cert_pem).expect("write cert");
        fs::write(dir.join("key.pem"), &workload.key_pem).expect("write key");
        let ecds_dir = dir.join("ecds");
        fs::create_dir_all(&ecds_dir).expect("ecds dir");
        let filter_name = resource_name(manifest);
        let publish = |name: &str, manifest: &Value, file: &str| {
            publish_wasm_plugin(&ecds_dir, name, manifest, module, file);
        };
        publish(&filter_name, manifest, "wasmplugin.json");
        let ecds_filter = |name: &str, file: &str| ecds_wasm_filter(&ecds_dir, name, file);
        let upstream = EchoUpstream::start();
        let mut bootstrap = json!({
            "node": { "id": format!("sidecar~127.0.0.1~{sa}.{ns}~{ns}.svc.cluster.local"), "cluster": format!("{sa}.{ns}") },
            "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } } },
            "static_resources": {
                "listeners": [{
                    // Istio's is `virtualInbound`; the harness looks for this name.
                    "name": LISTENER,
                    "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } },
                    "traffic_direction": "INBOUND",
                    "filter_chains": [{
                        "transport_socket": workload_mtls(dir, &[]),
                        "filters": [{
                            "name": "envoy.filters.network.http_connection_manager",
                            "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                                "stat_prefix": "inbound_0.0.0.0_8080",
                                "server_name": "istio-envoy",
                                "forward_client_cert_details": xfcc.forward,
                                "set_current_client_cert_details": xfcc.details,
                                "strip_trailing_host_dot": xfcc.strip_trailing_host_dot,
                                "normalize_path": true,
                                "http_filters": [
                                    ecds_filter(&filter_name, "wasmplugin.json"),
                                    {
                                        "name": "envoy.filters.http.router",
                                        "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" }
                                    }
                                ],
                                "route_config": {
                                    "name": "inbound|8080||",
                                    "virtual_hosts": [{
                                        "name": "inbound|http|8080",
                                        "domains": ["*"],
                                        "routes": [{ "match": { "prefix": "/" }, "route": { "cluster": "inbound|8080||" } }]
                                    }]
                                }
                            }
                        }]
                    }]
                }],
                "clusters": [{
                    "name": "inbound|8080||",
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "load_assignment": {
                        "cluster_name": "inbound|8080||",
                        "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": upstream.port() } } } }] }]
                    }
                }]
            }
        });
        if let Some(list) = bootstrap["static_resources"]["clusters"].as_array_mut() {
            list.extend(clusters.iter().cloned());
        }
        if let Some(outbound) = outbound {
            let name = resource_name(outbound);
            publish(&name, outbound, "wasmplugin-outbound.json");
            let listener = json!({
                "name": OUTBOUND_LISTENER,
                "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } },
                "traffic_direction": "OUTBOUND",
                "filter_chains": [{
                    "filters": [{
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                            "stat_prefix": "outbound_0.0.0.0_80",
                            "normalize_path": true,
                            "http_filters": [
                                ecds_filter(&name, "wasmplugin-outbound.json"),
                                { "name": "envoy.filters.http.router", "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" } }
                            ],
                            "route_config": {
                                "name": "80",
                                "virtual_hosts": [{ "name": "app", "domains": ["*"], "routes": [{ "match": { "prefix": "/" }, "route": { "cluster": "inbound|8080||" } }] }]
                            }
                        }
                    }]
                }]
            });
            if let Some(listeners) = bootstrap["static_resources"]["listeners"].as_array_mut() {
                listeners.push(listener);
            }
        }
        // Envoy reads JSON as YAML.
        let envoy = Envoy::start(
            dir,
            &serde_json::to_string_pretty(&bootstrap).expect("json"),
        )?;
        Ok(IstioSidecar {
            envoy,
            upstream,
            ca,
            filter_name,
            _scratch: scratch,
        })
    }

    /// The outbound listener's address (`None` without an outbound plugin).
    pub fn outbound_addr(&self) -> Option<std::net::SocketAddr> {
        let listeners: Value =
            serde_json::from_str(&self.envoy.admin_get("/listeners?format=json")).ok()?;
        listeners["listener_statuses"]
            .as_array()?
            .iter()
            .find(|l| l["name"] == OUTBOUND_LISTENER)
            .and_then(|l| {
                let sa = &l["local_address"]["socket_address"];
                Some(std::net::SocketAddr::new(
                    sa["address"].as_str()?.parse().ok()?,
                    u16::try_from(sa["port_value"].as_u64()?).ok()?,
                ))
            })
    }

    /// A client presenting `identity` (a peer sidecar's SVID).
    pub fn client(&self, identity: &Leaf) -> TlsClient {
        TlsClient::new(self.envoy.listener(), &self.ca.cert_der(), Some(identity))
    }
}

/// The clusters istiod renders for the `ServiceEntry` documents among
/// `docs` (`pilot/pkg/networking/core/cluster_builder.go`,
/// `buildOutboundClusters`): one per host and port, named
/// `outbound|PORT||HOST`; `resolution: DNS` is a `STRICT_DNS` cluster on
/// `HOST:PORT` (Istio's default `dns_lookup_family` for IPv4 proxies is
/// `V4_ONLY`), with the mesh's default `connectTimeout` of 10 s. A
/// `DestinationRule` that originates TLS is not rendered here: such
/// documents are refused rather than silently dropped.
pub fn service_entry_clusters(docs: &[Value]) -> Vec<Value> {
    assert!(
        docs.iter().all(|d| d["kind"] != "DestinationRule"),
        "this harness does not render DestinationRules"
    );
    let mut clusters = Vec::new();
    for entry in docs.iter().filter(|d| d["kind"] == "ServiceEntry") {
        let spec = &entry["spec"];
        assert_eq!(spec["resolution"], "DNS", "only DNS resolution is rendered");
        for host in spec["hosts"].as_array().into_iter().flatten() {
            for port in spec["ports"].as_array().into_iter().flatten() {
                let host = host.as_str().unwrap_or_default();
                let number = port["number"].as_u64().unwrap_or_default();
                let target = port["targetPort"].as_u64().unwrap_or(number);
                let name = format!("outbound|{number}||{host}");
                clusters.push(json!({
                    "name": name,
                    "type": "STRICT_DNS",
                    "connect_timeout": "10s",
                    "dns_lookup_family": "V4_ONLY",
                    "load_assignment": {
                        "cluster_name": name,
                        "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": {
                            "socket_address": { "address": host, "port_value": target }
                        } } }] }]
                    }
                }));
            }
        }
    }
    clusters
}

/// The `io.istio.peer_principal` filter state as istiod sets it on a
/// waypoint's `connect_terminate` listener (`ConnectAuthorityFilter` in
/// istio/istio `pilot/pkg/xds/filters/filters.go`).
pub const PEER_PRINCIPAL_KEY: &str = "io.istio.peer_principal";
/// The waypoint's internal listener and cluster (Istio's `MainInternalName`).
pub const MAIN_INTERNAL: &str = "main_internal";

/// A waypoint-like Envoy, built the way istiod builds an ambient waypoint's
/// inbound path (istio/istio `pilot/pkg/networking/core/listener_waypoint.go`,
/// `buildWaypointInboundConnectTerminate` / `buildWaypointInternal`;
/// `cluster_waypoint.go`, `buildInternalUpstreamCluster`):
///
/// - `connect_terminate` (here named [`LISTENER`] for the harness): mTLS
///   with `require_client_certificate`, an HTTP/2 connection manager with
///   `allow_connect` and a `CONNECT` upgrade whose only route
///   (`connect_matcher`) terminates the tunnel into the cluster
///   `main_internal`; its HTTP filters set `io.istio.peer_principal` (and
///   `io.istio.local_principal`) from `%DOWNSTREAM_PEER_URI_SAN%` /
///   `%DOWNSTREAM_LOCAL_URI_SAN%` as `envoy.string` objects shared with the
///   upstream `ONCE`, then route;
/// - the cluster `main_internal`: a static endpoint at the internal listener
///   `main_internal` over the `internal_upstream` transport (raw buffer
///   inside), which hands the shared filter state to the internal connection;
/// - the internal listener `main_internal` (`envoy.bootstrap.internal_listener`):
///   one HTTP chain whose connection manager runs the WasmPlugin (from ECDS,
///   rendered as [`wasm_filter_config`]) in front of the app.
///
/// Not reproduced: the destination-IP filter-chain matcher and the original
/// destination listener filter of `main_internal` (one service here), Istio's
/// own filters (peer metadata, `istio_authn`, RBAC, stats), the
/// `connect_originate` side towards the destination, and ztunnel. The inner
/// connection manager uses `APPEND_FORWARD`, so an `x-forwarded-client-cert`
/// the client writes reaches the filter: the worst case for a filter that
/// must not believe it.
pub struct IstioWaypoint {
    /// The Envoy process.
    pub envoy: Envoy,
    /// The app behind the waypoint.
    pub upstream: EchoUpstream,
    /// The mesh CA (signs the waypoint's certificate).
    pub ca: MeshCa,
    /// The ECDS resource name of the plugin.
    pub filter_name: String,
    _scratch: Scratch,
}

impl IstioWaypoint {
    /// Starts a waypoint running the WasmPlugin `manifest` with the module
    /// at `module`. `extra_roots_pem` are further CAs the HBONE listener
    /// accepts client certificates from (a federated trust domain, say).
    pub fn start(
        label: &str,
        manifest: &Value,
        module: &Path,
        extra_roots_pem: &[String],
    ) -> Result<IstioWaypoint, StartError> {
        let scratch = Scratch::new(label);
        let ca = MeshCa::new();
        let waypoint = ca.svid("shop", "waypoint", time::Duration::hours(24), true);
        let dir = scratch.path();
        let mut roots = ca.cert_pem();
        for extra in extra_roots_pem {
            roots.push_str(extra);
        }
        fs::write(dir.join("root-cert.pem"), roots).expect("write CA");
        fs::write(dir.join("cert-chain.pem"), &waypoint.cert_pem).expect("write cert");
        fs::write(dir.join("key.pem"), &waypoint.key_pem).expect("write key");
        let ecds_dir = dir.join("ecds");
        fs::create_dir_all(&ecds_dir).expect("ecds dir");
        let filter_name = resource_name(manifest);
        publish_wasm_plugin(&ecds_dir, &filter_name, manifest, module, "wasmplugin.json");
        let upstream = EchoUpstream::start();
        let shared_principal = |key: &str, format: &str| {
            json!({
                "object_key": key,
                "factory_key": "envoy.string",
                "format_string": { "text_format_source": { "inline_string": format } },
                "shared_with_upstream": "ONCE"
            })
        };
        let connect_terminate = json!({
            // Istio's is `connect_terminate` on port 15008.
            "name": LISTENER,
            "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } },
            "filter_chains": [{
                "name": "default",
                "transport_socket": workload_mtls(dir, &["h2"]),
                "filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "connect_terminate",
                        "codec_type": "HTTP2",
                        "use_remote_address": false,
                        "stream_idle_timeout": "0s",
                        "upgrade_configs": [{ "upgrade_type": "CONNECT" }],
                        "http2_protocol_options": { "allow_connect": true, "max_concurrent_streams": 100 },
                        "route_config": {
                            "name": "default",
                            "virtual_hosts": [{
                                "name": "default",
                                "domains": ["*"],
                                "routes": [{
                                    "match": { "connect_matcher": {} },
                                    "route": {
                                        "cluster": MAIN_INTERNAL,
                                        "upgrade_configs": [{ "upgrade_type": "CONNECT", "connect_config": {} }]
                                    }
                                }]
                            }]
                        },
                        "http_filters": [
                            {
                                "name": "connect_authority",
                                "typed_config": {
                                    "@type": "type.googleapis.com/envoy.extensions.filters.http.set_filter_state.v3.Config",
                                    "on_request_headers": [
                                        shared_principal(PEER_PRINCIPAL_KEY, "%DOWNSTREAM_PEER_URI_SAN%"),
                                        shared_principal("io.istio.local_principal", "%DOWNSTREAM_LOCAL_URI_SAN%")
                                    ]
                                }
                            },
                            {
                                "name": "envoy.filters.http.router",
                                "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" }
                            }
                        ]
                    }
                }]
            }]
        });
        let main_internal = json!({
            "name": MAIN_INTERNAL,
            "internal_listener": {},
            "traffic_direction": "INBOUND",
            "filter_chains": [{
                "name": "inbound-vip|8080|http|orders.shop.svc.cluster.local",
                "filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "inbound_0.0.0.0_8080",
                        "server_name": "istio-envoy",
                        "use_remote_address": false,
                        "forward_client_cert_details": "APPEND_FORWARD",
                        "normalize_path": true,
                        "http_filters": [
                            ecds_wasm_filter(&ecds_dir, &filter_name, "wasmplugin.json"),
                            {
                                "name": "envoy.filters.http.router",
                                "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" }
                            }
                        ],
                        "route_config": {
                            "name": "inbound-vip|8080|http|orders.shop.svc.cluster.local",
                            "virtual_hosts": [{
                                "name": "inbound|http|8080",
                                "domains": ["*"],
                                "routes": [{ "match": { "prefix": "/" }, "route": { "cluster": "orders" } }]
                            }]
                        }
                    }
                }]
            }]
        });
        let main_internal_cluster = json!({
            "name": MAIN_INTERNAL,
            "type": "STATIC",
            "load_assignment": {
                "cluster_name": MAIN_INTERNAL,
                "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": {
                    "envoy_internal_address": { "server_listener_name": MAIN_INTERNAL }
                } } }] }]
            },
            "transport_socket": {
                "name": "internal_upstream",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.internal_upstream.v3.InternalUpstreamTransport",
                    "transport_socket": {
                        "name": "raw_buffer",
                        "typed_config": { "@type": "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer" }
                    }
                }
            }
        });
        let orders = json!({
            "name": "orders",
            "type": "STATIC",
            "connect_timeout": "1s",
            "load_assignment": {
                "cluster_name": "orders",
                "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": upstream.port() } } } }] }]
            }
        });
        let bootstrap = json!({
            "node": { "id": "waypoint~127.0.0.1~waypoint.shop~shop.svc.cluster.local", "cluster": "waypoint.shop" },
            "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } } },
            "bootstrap_extensions": [{
                "name": "envoy.bootstrap.internal_listener",
                "typed_config": { "@type": "type.googleapis.com/envoy.extensions.bootstrap.internal_listener.v3.InternalListener" }
            }],
            "static_resources": {
                "listeners": [connect_terminate, main_internal],
                "clusters": [main_internal_cluster, orders]
            }
        });
        let envoy = Envoy::start(
            dir,
            &serde_json::to_string_pretty(&bootstrap).expect("json"),
        )?;
        Ok(IstioWaypoint {
            envoy,
            upstream,
            ca,
            filter_name,
            _scratch: scratch,
        })
    }

    /// An HBONE client (ztunnel's side) presenting `identity`.
    pub fn client(&self, identity: &Leaf) -> crate::hbone::HboneClient {
        crate::hbone::HboneClient::new(self.envoy.listener(), &self.ca.cert_der(), identity)
    }
}

/// Writes the ECDS resource for one WasmPlugin into `ecds_dir/file`.
pub fn publish_wasm_plugin(
    ecds_dir: &Path,
    name: &str,
    manifest: &Value,
    module: &Path,
    file: &str,
) {
    let resource = json!({
        "resources": [{
            "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
            "name": name,
            "typed_config": {
                "@type": WASM_TYPE,
                "config": wasm_filter_config(manifest, module)["config"],
            }
        }]
    });
    atomic_move_into(ecds_dir, file, &resource.to_string());
}

/// The HTTP filter that takes WasmPlugin `name` from ECDS (`ecds_dir/file`),
/// as istiod configures it (`initial_fetch_timeout: 0`, Wasm and RBAC types).
pub fn ecds_wasm_filter(ecds_dir: &Path, name: &str, file: &str) -> Value {
    json!({
        "name": name,
        "config_discovery": {
            "config_source": {
                "resource_api_version": "V3",
                "initial_fetch_timeout": "0s",
                "path_config_source": {
                    "path": ecds_dir.join(file),
                    "watched_directory": { "path": ecds_dir }
                }
            },
            "type_urls": [WASM_TYPE, RBAC_TYPE]
        }
    })
}

/// The downstream mTLS of a workload's listener: its SVID
/// (`cert-chain.pem`, `key.pem` in `dir`), client certificates required and
/// checked against `root-cert.pem`, offering `alpn`.
fn workload_mtls(dir: &Path, alpn: &[&str]) -> Value {
    let mut common = json!({
        "tls_certificates": [{
            "certificate_chain": { "filename": dir.join("cert-chain.pem") },
            "private_key": { "filename": dir.join("key.pem") }
        }],
        "validation_context": { "trusted_ca": { "filename": dir.join("root-cert.pem") } }
    });
    if !alpn.is_empty() {
        common["alpn_protocols"] = json!(alpn);
    }
    json!({
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            "require_client_certificate": true,
            "common_tls_context": common
        }
    })
}
