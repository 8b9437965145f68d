//! Istio `WasmPlugin` manifests for a compiled policy (`meshward istio`).
//!
//! What Istio does with a `WasmPlugin` (read from Istio's source; see
//! `istio/README.md` for the file references and versions):
//!
//! * istiod renders it as an Envoy `envoy.extensions.filters.http.wasm.v3.Wasm`
//!   (`pilot/pkg/model/extensions.go`, `buildPluginConfig`): `config.name` is
//!   `<namespace>.<name>`, `root_id` is `spec.pluginName`, `vm_config.runtime`
//!   is `envoy.wasm.runtime.v8`, `vm_config.vm_id` is left empty, and
//!   `configuration` is a `google.protobuf.StringValue` holding
//!   `spec.pluginConfig` re-serialized as JSON. `failStrategy: FAIL_CLOSE`
//!   becomes `failure_policy: FAIL_CLOSED` (proxies >= 1.25) or `fail_open:
//!   false` (older): a trap then answers 503 until the VM is recreated.
//! * the filter is delivered through ECDS with `initial_fetch_timeout: 0`
//!   (`pilot/pkg/networking/core/extension/wasmplugin.go`): the listener waits
//!   for it. The istio-agent downloads `oci://` images, checks `sha256`
//!   against the image *manifest* digest (`pkg/wasm/cache.go`) and, when the
//!   download fails with FAIL_CLOSE, substitutes a deny-all RBAC filter
//!   (`pkg/wasm/convert.go`).
//! * `match.mode: SERVER` selects sidecar inbound listeners, `CLIENT`
//!   sidecar outbound *and gateway* listeners (`workloadModeForListenerClass`).
//!
//! So meshward ships as two `WasmPlugin`s per workload: `-inbound`
//! (`SERVER`, `"direction": "inbound"`) and `-outbound` (`CLIENT`,
//! `"direction": "outbound"`). One `CLIENT_AND_SERVER` plugin cannot work: it
//! is one ECDS resource with one `pluginConfig`, so both sides would get the
//! same `direction`. Two plugins still share the chain seal key: proxy-wasm
//! shared data is scoped by `vm_id`, and Istio leaves `vm_id` empty for every
//! plugin (and, after the agent rewrites the image to the same cached file,
//! the two `vm_config`s are identical, so they share one VM as well).
//!
//! Where a plugin applies ([`Attachment`]): `selector.matchLabels` (sidecars,
//! gateway pods), `targetRefs` (a waypoint or ingress `Gateway`, or `Service`s
//! behind a waypoint), or neither (every workload of the namespace; in the
//! root namespace, `istio-system` by default, every workload of the mesh).
//! The CRD allows at most one of `selector` and `targetRefs`.
//!
//! Waypoints ([`Mode::Waypoint`]): istiod builds a waypoint's HTTP filters
//! with the `SidecarInbound` listener class (`buildWaypointHTTPFilters` in
//! `pilot/pkg/networking/core/listener_waypoint.go`), so the plugin matches
//! `SERVER`. The filter runs on the internal listener behind the HBONE
//! terminator, where there is no client certificate: it reads the caller
//! from the `io.istio.peer_principal` filter state (`"peer_certificate":
//! "filter_state"`), and a policy that needs the certificate (lifetime bound,
//! revoked serials) is refused.
//!
//! Istio's inbound listeners forward the client certificate as `Subject`,
//! `URI` and `DNS` in an appended `x-forwarded-client-cert`
//! (`APPEND_FORWARD`), never the certificate itself. The filter's default
//! `peer_certificate: forwarded` needs the certificate (lifetime bounds,
//! serial revocation, every URI SAN), so by default an `EnvoyFilter` is
//! generated beside the plugins that switches the selected workloads' inbound
//! connection managers to `SANITIZE_SET` with `cert: true`, as
//! `envoy/demo.yaml` has it. With [`PeerCertificate::ConnectionOnly`] no
//! `EnvoyFilter` is needed, but a policy that bounds certificate lifetime, or
//! a revocation list of serials, would deny every request: that is refused.

use std::collections::BTreeMap;

use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use serde_json::Value;

use ed25519_dalek::SigningKey;
use meshward_engine::pipeline::{BundleSource, BUNDLE_ENV};
use meshward_engine::signature::{PublicKey, REQUIRE_SIGNATURE_KEYS_ENV};

use crate::Compiled;

/// `apiVersion` of `WasmPlugin`.
pub const WASM_PLUGIN_API_VERSION: &str = "extensions.istio.io/v1alpha1";
/// `apiVersion` of `EnvoyFilter`.
pub const ENVOY_FILTER_API_VERSION: &str = "networking.istio.io/v1alpha3";
/// `apiVersion` of `ServiceEntry` and `DestinationRule`.
pub const NETWORKING_API_VERSION: &str = "networking.istio.io/v1";
/// Longest `vmConfig.env[].value` the `WasmPlugin` CRD accepts.
pub const MAX_ENV_VALUE: usize = 2048;
/// `apiVersion` of `PeerAuthentication`.
pub const PEER_AUTHENTICATION_API_VERSION: &str = "security.istio.io/v1";
/// Istio's default root namespace (`meshConfig.rootNamespace`): resources
/// there without a selector apply to the whole mesh.
pub const DEFAULT_ROOT_NAMESPACE: &str = "istio-system";
/// Istio's default trust domain (`meshConfig.trustDomain`).
pub const DEFAULT_MESH_TRUST_DOMAIN: &str = "cluster.local";
/// `targetRefs` holds at most this many entries (CRD `maxItems`).
pub const MAX_TARGET_REFS: usize = 16;
/// The root id the filter registers (`WasmPlugin.pluginName`).
pub const PLUGIN_NAME: &str = "meshward";
/// Kubernetes keeps objects below 1.5 MiB (etcd); warn well before.
pub const LARGE_PLUGIN_CONFIG: usize = 1024 * 1024;

/// Which side(s) of the workload's proxy to enforce on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Sidecar inbound listeners (`match.mode: SERVER`).
    #[default]
    Server,
    /// Sidecar outbound listeners (`match.mode: CLIENT`): chain forwarding.
    Client,
    /// Both, as two plugins sharing the seal key.
    Both,
    /// An Istio gateway's listeners (which Istio classes as `CLIENT`), with
    /// `"direction": "inbound"`: requests arriving at the gateway.
    Gateway,
    /// An ambient waypoint (`match.mode: SERVER`, `"direction": "inbound"`,
    /// the caller read from the `io.istio.peer_principal` filter state, the
    /// chain handed on in wire form: no app sits between the waypoint and
    /// the destination's ztunnel).
    Waypoint,
}

/// What `targetRefs` may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// `gateway.networking.k8s.io/Gateway`: a waypoint or an ingress gateway.
    Gateway,
    /// `Service` (core group): the service's traffic through its waypoint.
    Service,
}

impl TargetKind {
    /// `(group, kind)` as the CRD spells them.
    pub fn group_kind(self) -> (&'static str, &'static str) {
        match self {
            TargetKind::Gateway => ("gateway.networking.k8s.io", "Gateway"),
            TargetKind::Service => ("", "Service"),
        }
    }
}

/// One `targetRefs` entry (always in the plugin's own namespace: the CRD
/// refuses cross-namespace references).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetRef {
    /// The kind.
    pub kind: TargetKind,
    /// The resource name.
    pub name: String,
}

/// Which proxies a plugin applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attachment {
    /// `selector.matchLabels`, in order; at least one label.
    Selector(Vec<(String, String)>),
    /// `targetRefs`: 1 to [`MAX_TARGET_REFS`] resources.
    Targets(Vec<TargetRef>),
    /// Neither: every workload of the namespace (of the mesh in the root
    /// namespace).
    Namespace,
}

/// Where the policy signing keys the filter requires are pinned, through
/// `vmConfig.env` (Istio renders it as the VM's `environment_variables`; it
/// never sets the VM configuration).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum KeyPinning {
    /// No pinned keys.
    #[default]
    None,
    /// `MESHWARD_REQUIRE_SIGNATURE_KEYS` with the keys written in the
    /// `WasmPlugin` (`valueFrom: INLINE`): whoever edits the plugin edits both.
    Inline(Vec<String>),
    /// `MESHWARD_REQUIRE_SIGNATURE_KEYS` copied from the proxy's own
    /// environment (`valueFrom: HOST`), which the mesh operator sets (for
    /// example `meshConfig.defaultConfig.proxyMetadata`): a namespace's
    /// plugin author cannot substitute keys.
    Host,
}

/// `WasmPlugin.imagePullPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullPolicy {
    /// `IfNotPresent`: the agent's cache is keyed by the pinned digest.
    #[default]
    IfNotPresent,
    /// `Always`.
    Always,
}

/// `WasmPlugin.failStrategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailStrategy {
    /// `FAIL_CLOSE` (every Istio version).
    #[default]
    Close,
    /// `FAIL_RELOAD` (Istio >= 1.25 only; not in older CRDs): a trap answers
    /// 503 once and the next request runs in a fresh VM.
    Reload,
}

/// How the filter learns the peer certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PeerCertificate {
    /// From `x-forwarded-client-cert`, which an `EnvoyFilter` makes Istio
    /// set (`SANITIZE_SET`, `cert: true`).
    #[default]
    Forwarded,
    /// Only the connection's URI SAN; Istio's defaults need no change.
    ConnectionOnly,
    /// The `io.istio.peer_principal` filter state a waypoint sets from the
    /// HBONE peer's certificate ([`Mode::Waypoint`] always uses it).
    FilterState,
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct IstioOptions {
    /// Base name of the resources (`<name>-inbound`, `<name>-outbound`, ...).
    pub name: String,
    /// Namespace of the resources (a selector selects pods in it; in Istio's
    /// root namespace it selects across the mesh).
    pub namespace: String,
    /// Which proxies the plugins apply to.
    pub attachment: Attachment,
    /// The image, `oci://REGISTRY/REPOSITORY[:TAG][@sha256:HEX]`.
    pub image: String,
    /// The image manifest digest (64 lowercase hex), if known.
    pub sha256: Option<String>,
    /// Which side(s).
    pub mode: Mode,
    /// `imagePullPolicy`.
    pub pull_policy: PullPolicy,
    /// `failStrategy`.
    pub fail_strategy: FailStrategy,
    /// `peer_certificate` of the plugin configuration.
    pub peer_certificate: PeerCertificate,
    /// `imagePullSecret`, if the registry needs one.
    pub image_pull_secret: Option<String>,
    /// `priority` (ordering among `AUTHZ` plugins, descending).
    pub priority: Option<i32>,
    /// `match[].ports`: only traffic to these destination ports (empty: all).
    pub ports: Vec<u16>,
    /// The mesh's trust domain (`meshConfig.trustDomain`).
    pub mesh_trust_domain: String,
    /// Also generate the STRICT `PeerAuthentication` the policy relies on.
    pub peer_authentication: bool,
    /// Sign the policy (`signature` in `pluginConfig`).
    pub signing_key: Option<SigningKey>,
    /// Where the keys a signature must come from are pinned.
    pub pinned_keys: KeyPinning,
    /// Pull the policy as signed bundles from a server instead of carrying
    /// it in `pluginConfig`.
    pub bundle: Option<BundleOptions>,
}

/// `meshward istio --bundle-url`: the filter pulls signed bundles
/// (docs/distribution.md) from `url`. The source travels in `vmConfig.env`
/// as `MESHWARD_BUNDLE` (Istio never sets a VM configuration), the server
/// is declared by a `ServiceEntry` (and, for `https`, a `DestinationRule`
/// that originates TLS), and the filter polls the cluster istiod renders for
/// it: `outbound|PORT||HOST`. `None` settings keep the filter's defaults.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BundleOptions {
    /// `http://HOST[:PORT]/PATH` or `https://HOST[:PORT]/PATH`.
    pub url: String,
    /// The bundle signing public keys (base64), at least one.
    pub keys: Vec<String>,
    /// Poll interval, seconds.
    pub poll_secs: Option<u64>,
    /// Jitter, a fraction of the interval.
    pub jitter: Option<f64>,
    /// Poll timeout, milliseconds.
    pub timeout_ms: Option<u64>,
    /// Largest bundle accepted, bytes.
    pub max_bytes: Option<u64>,
    /// Seconds without confirmation before requests fail closed.
    pub max_staleness_secs: Option<u64>,
}

/// A bundle URL, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleUrl {
    /// `https`: the cluster originates TLS.
    pub tls: bool,
    /// The server's DNS name (`ServiceEntry.hosts[0]`).
    pub host: String,
    /// The port (80 or 443 when the URL names none).
    pub port: u16,
    /// `:path` of the polls.
    pub path: String,
}

impl BundleUrl {
    /// Parses `http(s)://HOST[:PORT]/PATH`: a DNS name (no IP address, no
    /// user, no fragment), a port in 1-65535, an absolute path.
    pub fn parse(url: &str) -> Result<BundleUrl, IstioError> {
        let bad = |why: &'static str| IstioError::BadBundleUrl(url.to_owned(), why);
        let (tls, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(bad("the scheme must be `http` or `https`"));
        };
        let (authority, path) = match rest.find('/') {
            Some(at) => rest.split_at(at),
            None => return Err(bad("it names no path")),
        };
        if path.len() < 2
            || path.contains('#')
            || path
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(bad(
                "the path must be a non-empty absolute path without spaces or a fragment",
            ));
        }
        if authority.contains('@') {
            return Err(bad("credentials in the URL are not supported"));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => (
                host,
                port.parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| bad("the port must be 1-65535"))?,
            ),
            None => (authority, if tls { 443 } else { 80 }),
        };
        let dns_name = !host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|l| check_label_name(l, 63).is_ok())
            && !host
                .split('.')
                .all(|l| l.bytes().all(|b| b.is_ascii_digit()));
        if !dns_name {
            return Err(bad(
                "the host must be a lowercase DNS name (a ServiceEntry host), not an IP address",
            ));
        }
        Ok(BundleUrl {
            tls,
            host: host.to_owned(),
            port,
            path: path.to_owned(),
        })
    }

    /// The Envoy cluster istiod renders for the `ServiceEntry` port:
    /// `outbound|PORT||HOST`.
    pub fn cluster(&self) -> String {
        format!("outbound|{}||{}", self.port, self.host)
    }

    /// `:authority` of the polls: the host, with the port when it is not
    /// the scheme's default.
    pub fn authority(&self) -> String {
        let default = if self.tls { 443 } else { 80 };
        if self.port == default {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl BundleOptions {
    /// The value of `MESHWARD_BUNDLE`, checked by the filter's own parser
    /// and against the CRD's length limit.
    pub fn env_value(&self) -> Result<String, IstioError> {
        let url = BundleUrl::parse(&self.url)?;
        if self.keys.is_empty() {
            return Err(IstioError::BadBundle(
                "give at least one bundle signing key (--bundle-key)".to_owned(),
            ));
        }
        let keys = self
            .keys
            .iter()
            .enumerate()
            .map(|(index, key)| {
                PublicKey::from_base64(key.trim())
                    .map(|k| Value::from(k.to_base64()))
                    .ok_or(IstioError::BadBundleKey(index))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut source = serde_json::Map::new();
        source.insert("cluster".to_owned(), Value::from(url.cluster()));
        source.insert("authority".to_owned(), Value::from(url.authority()));
        source.insert("path".to_owned(), Value::from(url.path.clone()));
        source.insert("keys".to_owned(), Value::Array(keys));
        let numbers: [(&str, Option<Value>); 5] = [
            ("poll_secs", self.poll_secs.map(Value::from)),
            ("jitter", self.jitter.map(Value::from)),
            ("timeout_ms", self.timeout_ms.map(Value::from)),
            ("max_bytes", self.max_bytes.map(Value::from)),
            (
                "max_staleness_secs",
                self.max_staleness_secs.map(Value::from),
            ),
        ];
        for (name, value) in numbers {
            if let Some(value) = value {
                source.insert(name.to_owned(), value);
            }
        }
        let text = serde_json::to_string(&Canonical(Value::Object(source)))
            .map_err(|e| IstioError::BadBundle(e.to_string()))?;
        // What the filter will read: refused here rather than in every proxy.
        BundleSource::from_env_value(&text).map_err(|e| IstioError::BadBundle(e.to_string()))?;
        if text.len() > MAX_ENV_VALUE {
            return Err(IstioError::BundleEnvTooLong(text.len()));
        }
        Ok(text)
    }
}

impl IstioOptions {
    /// Defaults for everything but what must be given; an empty `selector`
    /// is [`Attachment::Namespace`].
    pub fn new(namespace: &str, selector: Vec<(String, String)>, image: &str) -> IstioOptions {
        IstioOptions {
            name: PLUGIN_NAME.to_owned(),
            namespace: namespace.to_owned(),
            attachment: if selector.is_empty() {
                Attachment::Namespace
            } else {
                Attachment::Selector(selector)
            },
            image: image.to_owned(),
            sha256: None,
            mode: Mode::default(),
            pull_policy: PullPolicy::default(),
            fail_strategy: FailStrategy::default(),
            peer_certificate: PeerCertificate::default(),
            image_pull_secret: None,
            priority: None,
            ports: Vec::new(),
            mesh_trust_domain: DEFAULT_MESH_TRUST_DOMAIN.to_owned(),
            peer_authentication: true,
            signing_key: None,
            pinned_keys: KeyPinning::None,
            bundle: None,
        }
    }
}

/// Why no manifests were generated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IstioError {
    /// The namespace is not a DNS-1123 label.
    #[error("namespace `{0}` is not a valid Kubernetes namespace (lowercase letters, digits and `-`, at most 63)")]
    BadNamespace(String),
    /// The resource name is not a DNS-1123 label.
    #[error(
        "name `{0}` is not a valid resource name (lowercase letters, digits and `-`, at most 50)"
    )]
    BadName(String),
    /// A selector attachment without labels.
    #[error(
        "an empty selector: give at least one `key=value`, or attach namespace-wide explicitly"
    )]
    NoSelector,
    /// `targetRefs` is empty, too long, names a bad resource, or does not
    /// fit the mode.
    #[error("targetRefs: {0}")]
    BadTargets(String),
    /// The attachment does not fit the mode.
    #[error("{0}")]
    AttachmentForMode(&'static str),
    /// A `match` port of 0.
    #[error("port 0 is not a destination port (1-65535)")]
    BadPort,
    /// A pinned key is not a base64 Ed25519 public key.
    #[error("pinned key {0} is not a base64 Ed25519 public key (32 bytes)")]
    BadPinnedKey(usize),
    /// The pinned keys do not include the signing key: the filter would
    /// refuse the policy.
    #[error("the policy is signed with key `{0}`, which is not one of the pinned keys: the filter would refuse it")]
    SignerNotPinned(String),
    /// More pinned keys than fit the CRD's 2048-character `value`.
    #[error("the pinned keys do not fit `vmConfig.env[].value` (at most 2048 characters)")]
    TooManyPinnedKeys,
    /// The mesh trust domain is not a trust domain name.
    #[error("mesh trust domain `{0}` is not a valid trust domain name")]
    BadTrustDomain(String),
    /// A selector label key or value is not a Kubernetes label.
    #[error("selector `{key}={value}`: {why}")]
    BadSelector {
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// What is wrong.
        why: &'static str,
    },
    /// The image is not an `oci://` reference.
    #[error("image `{0}` is not `oci://REGISTRY/REPOSITORY[:TAG][@sha256:DIGEST]`")]
    BadImage(String),
    /// The digest is not 64 hex digits.
    #[error("sha256 `{0}` is not 64 hexadecimal digits")]
    BadDigest(String),
    /// `--sha256` and the `@sha256:` of the image disagree.
    #[error("the image is pinned to sha256 `{url}` but `{given}` was given")]
    DigestMismatch {
        /// From the URL.
        url: String,
        /// From the options.
        given: String,
    },
    /// The bundle URL is not one a `ServiceEntry` can declare.
    #[error("bundle URL `{0}`: {1}")]
    BadBundleUrl(String, &'static str),
    /// A bundle key is not a base64 Ed25519 public key.
    #[error("bundle key {0} is not a base64 Ed25519 public key (32 bytes)")]
    BadBundleKey(usize),
    /// The bundle settings are refused by the filter's own parser.
    #[error("bundle settings: {0}")]
    BadBundle(String),
    /// `MESHWARD_BUNDLE` would pass the CRD's 2048-character `value`.
    #[error("the bundle settings are {0} characters in `vmConfig.env` (`MESHWARD_BUNDLE`), more than the 2048 a WasmPlugin takes: pin fewer bundle keys, or use a shorter host name and path")]
    BundleEnvTooLong(usize),
    /// `--mode both` with a bundle: the two plugins need two configurations.
    #[error("--mode both needs two plugin configurations (inbound and outbound) but one bundle URL serves one: generate each side with its own --mode and --bundle-url")]
    BundleForBothSides,
    /// A connection-only configuration for a policy that needs the certificate.
    #[error("the policy {0}, which needs the peer certificate: keep the default `--peer-certificate forwarded` (adds an EnvoyFilter)")]
    NeedsCertificate(&'static str),
}

/// One generated Kubernetes object.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Resource {
    /// `apiVersion`.
    pub api_version: &'static str,
    /// `kind`.
    pub kind: &'static str,
    /// `metadata`.
    pub metadata: Metadata,
    /// `spec`.
    pub spec: Spec,
}

/// Object metadata.
#[derive(Debug, Clone, Serialize)]
pub struct Metadata {
    /// `name`.
    pub name: String,
    /// `namespace`.
    pub namespace: String,
    /// `labels`.
    pub labels: BTreeMap<String, String>,
    /// `annotations`.
    pub annotations: BTreeMap<String, String>,
}

/// The spec of either kind.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Spec {
    /// A `WasmPlugin`.
    WasmPlugin(Box<WasmPluginSpec>),
    /// An `EnvoyFilter`.
    EnvoyFilter(Canonical),
    /// A `ServiceEntry` or a `DestinationRule`.
    Networking(Canonical),
    /// A `PeerAuthentication`.
    PeerAuthentication(Canonical),
}

/// `WasmPlugin.spec`, in the order an operator reads it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WasmPluginSpec {
    /// `selector.matchLabels`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<Selector>,
    /// `targetRefs`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_refs: Option<Vec<TargetRefSpec>>,
    /// `url`.
    pub url: String,
    /// `sha256` (the image manifest digest).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// `imagePullPolicy`.
    pub image_pull_policy: &'static str,
    /// `imagePullSecret`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_pull_secret: Option<String>,
    /// `pluginName` (the filter's root id).
    pub plugin_name: &'static str,
    /// `phase`.
    pub phase: &'static str,
    /// `failStrategy`.
    pub fail_strategy: &'static str,
    /// `priority`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    /// `vmConfig` (pinned signing keys, the bundle source).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vm_config: Option<VmConfig>,
    /// `match`.
    #[serde(rename = "match")]
    pub match_: Vec<TrafficSelector>,
    /// `pluginConfig`: the compiled policy's plugin configuration (none in
    /// bundle mode: the filter pulls it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin_config: Option<Canonical>,
}

/// `selector`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Selector {
    /// `matchLabels`.
    pub match_labels: BTreeMap<String, String>,
}

/// One `targetRefs` entry as written.
#[derive(Debug, Clone, Serialize)]
pub struct TargetRefSpec {
    /// `group` (`""` for the core group).
    pub group: &'static str,
    /// `kind`.
    pub kind: &'static str,
    /// `name`.
    pub name: String,
}

/// `vmConfig`.
#[derive(Debug, Clone, Serialize)]
pub struct VmConfig {
    /// `env`.
    pub env: Vec<EnvVar>,
}

/// One `vmConfig.env` entry.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvVar {
    /// `name`.
    pub name: &'static str,
    /// `valueFrom`.
    pub value_from: &'static str,
    /// `value` (only with `INLINE`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// One `match` entry.
#[derive(Debug, Clone, Serialize)]
pub struct TrafficSelector {
    /// `mode`.
    pub mode: &'static str,
    /// `ports`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortSelector>,
}

/// One `match[].ports` entry.
#[derive(Debug, Clone, Serialize)]
pub struct PortSelector {
    /// `number`.
    pub number: u16,
}

/// A JSON value serialized with object keys sorted, whatever `serde_json`'s
/// map order is: the output is byte-stable (and matches how Istio
/// re-serializes a `google.protobuf.Struct`).
#[derive(Debug, Clone, PartialEq)]
pub struct Canonical(pub Value);

impl Serialize for Canonical {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                let mut out = serializer.serialize_map(Some(keys.len()))?;
                for key in keys {
                    if let Some(value) = map.get(key) {
                        out.serialize_entry(key, &Canonical(value.clone()))?;
                    }
                }
                out.end()
            }
            Value::Array(items) => {
                let mut out = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    out.serialize_element(&Canonical(item.clone()))?;
                }
                out.end()
            }
            other => other.serialize(serializer),
        }
    }
}

/// The result: the resources, and warnings worth printing.
#[derive(Debug, Clone)]
pub struct Generated {
    /// `WasmPlugin`s, then the `EnvoyFilter` if any.
    pub resources: Vec<Resource>,
    /// Things the operator should know.
    pub warnings: Vec<String>,
    /// In bundle mode: the plugin configuration the bundles must carry (what
    /// `pluginConfig` would have held: the policy with this plugin's
    /// `direction` and `peer_certificate`), for `meshward bundle --config`.
    pub bundle_config: Option<Value>,
}

impl Generated {
    /// The resources as one multi-document YAML stream with a header comment.
    pub fn to_yaml(&self, header: &str) -> Result<String, serde_yaml::Error> {
        let mut out = String::new();
        for line in header.lines() {
            out.push_str(format!("# {line}").trim_end());
            out.push('\n');
        }
        for resource in &self.resources {
            out.push_str("---\n");
            out.push_str(&serde_yaml::to_string(resource)?);
        }
        Ok(out)
    }

    /// Each resource as a JSON value (for validation).
    pub fn to_json(&self) -> Vec<Value> {
        self.resources
            .iter()
            .map(|r| serde_json::to_value(r).unwrap_or(Value::Null))
            .collect()
    }
}

/// Generates the manifests for `compiled` (with `revoked_serials`, hex).
pub fn generate(
    compiled: &Compiled,
    revoked_serials: &[String],
    opts: &IstioOptions,
) -> Result<Generated, IstioError> {
    check_label_name(&opts.namespace, 63)
        .map_err(|()| IstioError::BadNamespace(opts.namespace.clone()))?;
    // Leaves room for the `-outbound` / `-xfcc` suffixes within 63.
    check_label_name(&opts.name, 50).map_err(|()| IstioError::BadName(opts.name.clone()))?;
    meshward_engine::spiffe::check_trust_domain(&opts.mesh_trust_domain)
        .map_err(|_| IstioError::BadTrustDomain(opts.mesh_trust_domain.clone()))?;
    let attachment = check_attachment(&opts.attachment, opts.mode)?;
    if opts.ports.contains(&0) {
        return Err(IstioError::BadPort);
    }
    let (url, sha256) = image_and_digest(&opts.image, opts.sha256.as_deref())?;
    let peer_certificate = if opts.mode == Mode::Waypoint {
        PeerCertificate::FilterState
    } else {
        opts.peer_certificate
    };
    if peer_certificate != PeerCertificate::Forwarded {
        if compiled.policy.limits.max_cert_lifetime_secs.is_some() {
            return Err(IstioError::NeedsCertificate(
                "bounds certificate lifetime (`max_cert_lifetime`)",
            ));
        }
        if !revoked_serials.is_empty() {
            return Err(IstioError::NeedsCertificate(
                "is given revoked certificate serials",
            ));
        }
    }
    if opts.bundle.is_some() && opts.mode == Mode::Both {
        return Err(IstioError::BundleForBothSides);
    }
    let bundle_url = opts
        .bundle
        .as_ref()
        .map(|b| BundleUrl::parse(&b.url))
        .transpose()?;
    let vm_config = vm_config(opts)?;

    let mut warnings = Vec::new();
    if sha256.is_none() {
        warnings.push(
            "no sha256: Istio will run whatever the tag points to; pin the digest with \
             --sha256, --wasm or --oci-layout"
                .to_owned(),
        );
    }
    if opts.fail_strategy == FailStrategy::Reload {
        warnings.push(
            "failStrategy FAIL_RELOAD needs Istio 1.25 or later (older CRDs reject it)".to_owned(),
        );
    }
    warnings.extend(trust_domain_warning(compiled, &opts.mesh_trust_domain));
    if opts.pinned_keys == KeyPinning::Host {
        warnings.push(format!(
            "the filter refuses to start until the proxies have `{REQUIRE_SIGNATURE_KEYS_ENV}` \
             in their environment (e.g. meshConfig.defaultConfig.proxyMetadata)"
        ));
    }

    let mut base_config = compiled.plugin_config_value(revoked_serials);
    if let Some(key) = &opts.signing_key {
        crate::signing::sign_config(&mut base_config, compiled, key);
    }
    let plugins: &[(&str, &str, &str)] = match opts.mode {
        Mode::Server => &[("inbound", "SERVER", "inbound")],
        Mode::Client => &[("outbound", "CLIENT", "outbound")],
        Mode::Both => &[
            ("inbound", "SERVER", "inbound"),
            ("outbound", "CLIENT", "outbound"),
        ],
        Mode::Gateway => &[("gateway", "CLIENT", "inbound")],
        Mode::Waypoint => &[("waypoint", "SERVER", "inbound")],
    };
    let mut resources = Vec::new();
    let mut bundle_config = None;
    for (suffix, mode, direction) in plugins {
        let mut config = base_config.clone();
        if let Value::Object(map) = &mut config {
            map.insert("direction".to_owned(), Value::from(*direction));
            if matches!(opts.mode, Mode::Gateway | Mode::Waypoint) {
                // A gateway's or waypoint's router carries the chain into
                // the mesh itself: hand it on in wire form, not sealed for an
                // app.
                map.insert("chain".to_owned(), serde_json::json!({"hand_off": "wire"}));
            }
            map.insert(
                "peer_certificate".to_owned(),
                Value::from(match peer_certificate {
                    PeerCertificate::Forwarded => "forwarded",
                    PeerCertificate::ConnectionOnly => "connection_only",
                    PeerCertificate::FilterState => "filter_state",
                }),
            );
        }
        let size = config.to_string().len();
        if opts.bundle.is_some() {
            bundle_config = Some(config.clone());
        } else if size > LARGE_PLUGIN_CONFIG {
            warnings.push(format!(
                "pluginConfig is {size} bytes: Kubernetes objects must stay under 1.5 MiB"
            ));
        }
        resources.push(Resource {
            api_version: WASM_PLUGIN_API_VERSION,
            kind: "WasmPlugin",
            metadata: metadata(opts, suffix, compiled, Some(direction)),
            spec: Spec::WasmPlugin(Box::new(WasmPluginSpec {
                selector: attachment
                    .selector
                    .clone()
                    .map(|match_labels| Selector { match_labels }),
                target_refs: attachment.target_refs.clone(),
                url: url.clone(),
                sha256: sha256.clone(),
                image_pull_policy: match opts.pull_policy {
                    PullPolicy::IfNotPresent => "IfNotPresent",
                    PullPolicy::Always => "Always",
                },
                image_pull_secret: opts.image_pull_secret.clone(),
                plugin_name: PLUGIN_NAME,
                phase: "AUTHZ",
                fail_strategy: match opts.fail_strategy {
                    FailStrategy::Close => "FAIL_CLOSE",
                    FailStrategy::Reload => "FAIL_RELOAD",
                },
                priority: opts.priority,
                vm_config: vm_config.clone(),
                match_: vec![TrafficSelector {
                    mode,
                    ports: opts
                        .ports
                        .iter()
                        .map(|&number| PortSelector { number })
                        .collect(),
                }],
                plugin_config: if opts.bundle.is_some() {
                    None
                } else {
                    Some(Canonical(config))
                },
            })),
        });
    }
    let inbound_side = matches!(opts.mode, Mode::Server | Mode::Both | Mode::Gateway);
    if peer_certificate == PeerCertificate::Forwarded && inbound_side {
        let context = if opts.mode == Mode::Gateway {
            "GATEWAY"
        } else {
            "SIDECAR_INBOUND"
        };
        resources.push(Resource {
            api_version: ENVOY_FILTER_API_VERSION,
            kind: "EnvoyFilter",
            metadata: metadata(opts, "xfcc", compiled, None),
            spec: Spec::EnvoyFilter(Canonical(xfcc_envoy_filter(&attachment, context))),
        });
    }
    if opts.peer_authentication && opts.mode != Mode::Client {
        if attachment.selector.is_none() {
            warnings.push(format!(
                "PeerAuthentication `{}-strict` makes mTLS STRICT for every workload of \
                 namespace `{}` (of the whole mesh in Istio's root namespace): plaintext \
                 callers there are refused; --no-peer-authentication leaves it out",
                opts.name, opts.namespace
            ));
        }
        resources.push(Resource {
            api_version: PEER_AUTHENTICATION_API_VERSION,
            kind: "PeerAuthentication",
            metadata: metadata(opts, "strict", compiled, None),
            spec: Spec::PeerAuthentication(Canonical(strict_peer_authentication(&attachment))),
        });
    }
    if let Some(url) = &bundle_url {
        resources.extend(bundle_server_resources(opts, url, compiled));
    }
    Ok(Generated {
        resources,
        warnings,
        bundle_config,
    })
}

/// The `ServiceEntry` that gives the bundle server a cluster
/// (`outbound|PORT||HOST`, resolved by DNS, outside the mesh), and for
/// `https` the `DestinationRule` that originates TLS to it: the filter's
/// polls are plain HTTP into the cluster, Envoy encrypts them, checks the
/// server's certificate against the proxy's CA roots and sends `HOST` as SNI.
fn bundle_server_resources(
    opts: &IstioOptions,
    url: &BundleUrl,
    compiled: &Compiled,
) -> Vec<Resource> {
    let mut resources = vec![Resource {
        api_version: NETWORKING_API_VERSION,
        kind: "ServiceEntry",
        metadata: metadata(opts, "bundles", compiled, None),
        spec: Spec::Networking(Canonical(serde_json::json!({
            "hosts": [url.host],
            "location": "MESH_EXTERNAL",
            "resolution": "DNS",
            "ports": [{ "number": url.port, "name": "http-bundles", "protocol": "HTTP" }]
        }))),
    }];
    if url.tls {
        resources.push(Resource {
            api_version: NETWORKING_API_VERSION,
            kind: "DestinationRule",
            metadata: metadata(opts, "bundles", compiled, None),
            spec: Spec::Networking(Canonical(serde_json::json!({
                "host": url.host,
                "trafficPolicy": {
                    "portLevelSettings": [{
                        "port": { "number": url.port },
                        "tls": { "mode": "SIMPLE", "sni": url.host }
                    }]
                }
            }))),
        });
    }
    resources
}

/// The attachment as written in a spec: at most one of the two is set.
#[derive(Debug, Clone, Default)]
struct AttachmentSpec {
    selector: Option<BTreeMap<String, String>>,
    target_refs: Option<Vec<TargetRefSpec>>,
}

/// Checks the attachment against the CRD and the mode.
fn check_attachment(attachment: &Attachment, mode: Mode) -> Result<AttachmentSpec, IstioError> {
    match attachment {
        Attachment::Selector(labels) => {
            if mode == Mode::Waypoint {
                return Err(IstioError::AttachmentForMode(
                    "a waypoint plugin attaches with targetRefs (the waypoint Gateway or Services), not a selector",
                ));
            }
            if labels.is_empty() {
                return Err(IstioError::NoSelector);
            }
            let mut match_labels = BTreeMap::new();
            for (key, value) in labels {
                check_selector(key, value)?;
                match_labels.insert(key.clone(), value.clone());
            }
            Ok(AttachmentSpec {
                selector: Some(match_labels),
                target_refs: None,
            })
        }
        Attachment::Targets(targets) => {
            let bad = |why: String| IstioError::BadTargets(why);
            if targets.is_empty() || targets.len() > MAX_TARGET_REFS {
                return Err(bad(format!("give 1 to {MAX_TARGET_REFS} targets")));
            }
            let mut out = Vec::new();
            for target in targets {
                let allowed = match (mode, target.kind) {
                    (Mode::Waypoint, _) | (Mode::Gateway, TargetKind::Gateway) => true,
                    (Mode::Server | Mode::Client | Mode::Both | Mode::Gateway, _) => false,
                };
                if !allowed {
                    return Err(bad(format!(
                        "{} `{}`: sidecars attach with a selector or namespace-wide; \
                         Gateways take --mode gateway or waypoint, Services --mode waypoint",
                        target.kind.group_kind().1,
                        target.name
                    )));
                }
                // Gateways and Services are named as DNS-1123 labels.
                check_label_name(&target.name, 63)
                    .map_err(|()| bad(format!("`{}` is not a valid resource name", target.name)))?;
                let (group, kind) = target.kind.group_kind();
                if out
                    .iter()
                    .any(|t: &TargetRefSpec| t.kind == kind && t.name == target.name)
                {
                    return Err(bad(format!("{kind} `{}` is listed twice", target.name)));
                }
                out.push(TargetRefSpec {
                    group,
                    kind,
                    name: target.name.clone(),
                });
            }
            Ok(AttachmentSpec {
                selector: None,
                target_refs: Some(out),
            })
        }
        Attachment::Namespace => {
            if mode == Mode::Waypoint {
                return Err(IstioError::AttachmentForMode(
                    "a waypoint plugin attaches with targetRefs (the waypoint Gateway or Services)",
                ));
            }
            Ok(AttachmentSpec::default())
        }
    }
}

/// `vmConfig.env` for the pinned keys, and the check that the signing key
/// (when there is one) is among them.
fn vm_config(opts: &IstioOptions) -> Result<Option<VmConfig>, IstioError> {
    let mut env = Vec::new();
    env.extend(pinned_keys_env(opts)?);
    if let Some(bundle) = &opts.bundle {
        env.push(EnvVar {
            name: BUNDLE_ENV,
            value_from: "INLINE",
            value: Some(bundle.env_value()?),
        });
    }
    Ok((!env.is_empty()).then_some(VmConfig { env }))
}

/// The `MESHWARD_REQUIRE_SIGNATURE_KEYS` entry, if keys are pinned.
fn pinned_keys_env(opts: &IstioOptions) -> Result<Option<EnvVar>, IstioError> {
    let env = match &opts.pinned_keys {
        KeyPinning::None => return Ok(None),
        KeyPinning::Host => EnvVar {
            name: REQUIRE_SIGNATURE_KEYS_ENV,
            value_from: "HOST",
            value: None,
        },
        KeyPinning::Inline(keys) => {
            let parsed = keys
                .iter()
                .enumerate()
                .map(|(index, key)| {
                    PublicKey::from_base64(key.trim()).ok_or(IstioError::BadPinnedKey(index))
                })
                .collect::<Result<Vec<_>, _>>()?;
            if parsed.is_empty() {
                return Err(IstioError::BadPinnedKey(0));
            }
            if let Some(signer) = &opts.signing_key {
                let signer = PublicKey::of_signing_key(signer);
                if !parsed.iter().any(|k| k.id() == signer.id()) {
                    return Err(IstioError::SignerNotPinned(signer.id().to_string()));
                }
            }
            let value = parsed
                .iter()
                .map(PublicKey::to_base64)
                .collect::<Vec<_>>()
                .join(",");
            if value.len() > MAX_ENV_VALUE {
                return Err(IstioError::TooManyPinnedKeys);
            }
            EnvVar {
                name: REQUIRE_SIGNATURE_KEYS_ENV,
                value_from: "INLINE",
                value: Some(value),
            }
        }
    };
    Ok(Some(env))
}

/// A warning when the mesh's own workloads would be refused as callers
/// (`untrusted_trust_domain`): the policy does not trust the mesh's domain.
fn trust_domain_warning(compiled: &Compiled, mesh_trust_domain: &str) -> Option<String> {
    let policy = &compiled.policy;
    let domains: Vec<&str> = policy
        .trust_domains
        .iter()
        .filter_map(|id| policy.strings.get(id.index()))
        .map(String::as_str)
        .collect();
    if domains.contains(&mesh_trust_domain) {
        return None;
    }
    Some(format!(
        "the policy trusts {} but the mesh's trust domain is `{mesh_trust_domain}`: \
         callers from this mesh are denied (`untrusted_trust_domain`); add it to \
         `trust_domains`, or pass --mesh-trust-domain if the mesh uses another",
        if domains.is_empty() {
            "no trust domain".to_owned()
        } else {
            domains
                .iter()
                .map(|d| format!("`{d}`"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    ))
}

/// The STRICT `PeerAuthentication` for the same workloads: plaintext calls
/// carry no peer identity, so the policy can only mean what it says when the
/// mesh refuses them. With a selector it covers the selected workloads; else
/// the namespace (in the root namespace: the mesh). A waypoint's targets are
/// ambient workloads, whose ztunnel enforces it namespace-wide.
fn strict_peer_authentication(attachment: &AttachmentSpec) -> Value {
    match &attachment.selector {
        Some(labels) => serde_json::json!({
            "selector": { "matchLabels": labels },
            "mtls": { "mode": "STRICT" }
        }),
        None => serde_json::json!({ "mtls": { "mode": "STRICT" } }),
    }
}

fn metadata(
    opts: &IstioOptions,
    suffix: &str,
    compiled: &Compiled,
    direction: Option<&str>,
) -> Metadata {
    let mut labels = BTreeMap::new();
    labels.insert("app.kubernetes.io/name".to_owned(), "meshward".to_owned());
    labels.insert("app.kubernetes.io/component".to_owned(), suffix.to_owned());
    labels.insert(
        "app.kubernetes.io/managed-by".to_owned(),
        "meshward".to_owned(),
    );
    let mut annotations = BTreeMap::new();
    annotations.insert("meshward.io/policy-hash".to_owned(), compiled.hash_hex());
    if let Some(direction) = direction {
        annotations.insert("meshward.io/direction".to_owned(), direction.to_owned());
    }
    Metadata {
        name: format!("{}-{suffix}", opts.name),
        namespace: opts.namespace.clone(),
        labels,
        annotations,
    }
}

/// The `EnvoyFilter` that makes the selected workloads' inbound connection
/// managers put the peer certificate into `x-forwarded-client-cert`
/// (`SANITIZE_SET` replaces Istio's `APPEND_FORWARD`; `MERGE` keeps Istio's
/// `subject`/`dns` flags and adds `cert`), and that strips a trailing dot
/// from the host (`shop.example.` and `shop.example` are one name to the app,
/// so they must be one name to the policy too).
fn xfcc_envoy_filter(attachment: &AttachmentSpec, context: &str) -> Value {
    envoy_filter_spec(
        vec![hcm_merge_patch(
            context,
            serde_json::json!({
                "forward_client_cert_details": "SANITIZE_SET",
                "set_current_client_cert_details": { "cert": true, "uri": true },
                "strip_trailing_host_dot": true
            }),
        )],
        attachment.selector.as_ref(),
        attachment.target_refs.as_deref(),
    )
}

/// One `EnvoyFilter` patch merging `members` into the `typed_config` of the
/// HTTP connection managers of `context` (`SIDECAR_INBOUND`, `GATEWAY`, ...).
pub(crate) fn hcm_merge_patch(context: &str, members: Value) -> Value {
    let mut typed_config = serde_json::json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
    });
    if let (Some(config), Value::Object(members)) = (typed_config.as_object_mut(), members) {
        config.extend(members);
    }
    serde_json::json!({
        "applyTo": "NETWORK_FILTER",
        "match": {
            "context": context,
            "listener": {
                "filterChain": {
                    "filter": { "name": "envoy.filters.network.http_connection_manager" }
                }
            }
        },
        "patch": { "operation": "MERGE", "value": { "typed_config": typed_config } }
    })
}

/// An `EnvoyFilter` spec: `patches`, applied to the workloads with these
/// labels (`workloadSelector`) or to these `targetRefs`; with neither, to
/// every proxy of the resource's namespace.
pub(crate) fn envoy_filter_spec(
    patches: Vec<Value>,
    labels: Option<&BTreeMap<String, String>>,
    target_refs: Option<&[TargetRefSpec]>,
) -> Value {
    let mut spec = serde_json::Map::new();
    spec.insert("configPatches".to_owned(), Value::Array(patches));
    if let Some(labels) = labels.filter(|l| !l.is_empty()) {
        spec.insert(
            "workloadSelector".to_owned(),
            serde_json::json!({ "labels": labels }),
        );
    }
    if let Some(targets) = target_refs {
        spec.insert(
            "targetRefs".to_owned(),
            serde_json::to_value(targets).unwrap_or(Value::Null),
        );
    }
    Value::Object(spec)
}

/// Splits `oci://...[@sha256:HEX]` and reconciles the digest with `sha256`.
fn image_and_digest(
    image: &str,
    sha256: Option<&str>,
) -> Result<(String, Option<String>), IstioError> {
    let bad = || IstioError::BadImage(image.to_owned());
    let rest = image.strip_prefix("oci://").ok_or_else(bad)?;
    let (repo_and_tag, pinned) = match rest.split_once('@') {
        Some((repo, digest)) => {
            let hex = digest.strip_prefix("sha256:").ok_or_else(bad)?;
            (repo, Some(normalize_digest(hex)?))
        }
        None => (rest, None),
    };
    let (host, path) = repo_and_tag.split_once('/').ok_or_else(bad)?;
    let path_ok = !path.is_empty()
        && path
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/:".contains(c));
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c));
    if !path_ok || !host_ok || image.contains(char::is_whitespace) {
        return Err(bad());
    }
    let given = sha256.map(normalize_digest).transpose()?;
    let digest = match (pinned, given) {
        (Some(url), Some(given)) if url != given => {
            return Err(IstioError::DigestMismatch { url, given })
        }
        (pinned, given) => given.or(pinned),
    };
    Ok((image.to_owned(), digest))
}

/// Accepts `HEX` or `sha256:HEX`; returns lowercase hex.
pub fn normalize_digest(text: &str) -> Result<String, IstioError> {
    let hex = text.strip_prefix("sha256:").unwrap_or(text);
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(hex.to_ascii_lowercase())
    } else {
        Err(IstioError::BadDigest(text.to_owned()))
    }
}

/// A DNS-1123 label of at most `max` characters.
fn check_label_name(name: &str, max: usize) -> Result<(), ()> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let ok_ends = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_alphanumeric());
    if ok_chars && ok_ends && name.len() <= max {
        Ok(())
    } else {
        Err(())
    }
}

/// A Kubernetes label key (`[prefix/]name`) and value, plus Istio's CEL
/// rules for `selector.matchLabels` (no `*`, non-empty key).
fn check_selector(key: &str, value: &str) -> Result<(), IstioError> {
    let bad = |why| IstioError::BadSelector {
        key: key.to_owned(),
        value: value.to_owned(),
        why,
    };
    if key.contains('*') || value.contains('*') {
        return Err(bad("Istio does not allow `*` in selector labels"));
    }
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        let ok = !prefix.is_empty()
            && prefix.len() <= 253
            && prefix
                .split('.')
                .all(|part| check_label_name(part, 63).is_ok());
        if !ok {
            return Err(bad("the key's prefix is not a DNS subdomain"));
        }
    }
    if !is_label_text(name) || name.is_empty() {
        return Err(bad(
            "the key is not a label name (1-63 of `A-Za-z0-9-_.`, alphanumeric at both ends)",
        ));
    }
    if !is_label_text(value) {
        return Err(bad(
            "the value is not a label value (0-63 of `A-Za-z0-9-_.`, alphanumeric at both ends)",
        ));
    }
    Ok(())
}

/// Empty, or 1-63 of `[A-Za-z0-9-_.]` starting and ending alphanumeric.
fn is_label_text(text: &str) -> bool {
    if text.is_empty() {
        return true;
    }
    text.len() <= 63
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && text
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && text
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = "policy \"p\" {\n  trust_domains \"cluster.local\"\n}\nintent i { path \"/\" }\nallow r {\n  subject any_authenticated\n  intent i\n}\n";

    fn compiled() -> Compiled {
        crate::compile_source(POLICY, "p.policy").unwrap()
    }

    fn opts() -> IstioOptions {
        IstioOptions::new(
            "shop",
            vec![("app".to_owned(), "orders".to_owned())],
            "oci://registry.example.com/meshward/filter:0.1.0",
        )
    }

    #[test]
    fn both_modes_give_two_plugins_with_their_directions() {
        let mut o = opts();
        o.mode = Mode::Both;
        let generated = generate(&compiled(), &[], &o).unwrap();
        let json = generated.to_json();
        let names: Vec<&str> = json
            .iter()
            .map(|r| r["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "meshward-inbound",
                "meshward-outbound",
                "meshward-xfcc",
                "meshward-strict"
            ]
        );
        assert_eq!(json[0]["spec"]["match"][0]["mode"], "SERVER");
        assert_eq!(json[0]["spec"]["pluginConfig"]["direction"], "inbound");
        assert_eq!(json[1]["spec"]["match"][0]["mode"], "CLIENT");
        assert_eq!(json[1]["spec"]["pluginConfig"]["direction"], "outbound");
        assert_eq!(json[2]["kind"], "EnvoyFilter");
    }

    #[test]
    fn client_only_needs_no_envoy_filter_and_no_peer_authentication() {
        let mut o = opts();
        o.mode = Mode::Client;
        let generated = generate(&compiled(), &[], &o).unwrap();
        assert_eq!(generated.resources.len(), 1);
    }

    fn waypoint_opts() -> IstioOptions {
        let mut o = opts();
        o.mode = Mode::Waypoint;
        o.attachment = Attachment::Targets(vec![TargetRef {
            kind: TargetKind::Gateway,
            name: "waypoint".to_owned(),
        }]);
        o
    }

    #[test]
    fn a_waypoint_plugin_targets_the_gateway_and_reads_filter_state() {
        let generated = generate(&compiled(), &[], &waypoint_opts()).unwrap();
        let json = generated.to_json();
        assert_eq!(json.len(), 2, "{json:#?}");
        let spec = &json[0]["spec"];
        assert_eq!(
            spec["targetRefs"],
            serde_json::json!([{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "waypoint"}])
        );
        assert!(spec.get("selector").is_none());
        assert_eq!(spec["match"][0]["mode"], "SERVER");
        assert_eq!(spec["pluginConfig"]["peer_certificate"], "filter_state");
        assert_eq!(spec["pluginConfig"]["direction"], "inbound");
        assert_eq!(spec["pluginConfig"]["chain"]["hand_off"], "wire");
        // Namespace-wide STRICT mTLS: ztunnel enforces it for ambient pods.
        assert_eq!(json[1]["kind"], "PeerAuthentication");
        assert_eq!(
            json[1]["spec"],
            serde_json::json!({"mtls": {"mode": "STRICT"}})
        );
        // Without a certificate, lifetime bounds and serials cannot be checked.
        assert!(matches!(
            generate(&compiled(), &["0a".to_owned()], &waypoint_opts()),
            Err(IstioError::NeedsCertificate(_))
        ));
    }

    #[test]
    fn attachments_must_fit_the_mode() {
        let mut o = waypoint_opts();
        o.attachment = Attachment::Namespace;
        assert!(matches!(
            generate(&compiled(), &[], &o),
            Err(IstioError::AttachmentForMode(_))
        ));
        o.attachment = Attachment::Selector(vec![("app".to_owned(), "x".to_owned())]);
        assert!(matches!(
            generate(&compiled(), &[], &o),
            Err(IstioError::AttachmentForMode(_))
        ));
        let service = |name: &str| TargetRef {
            kind: TargetKind::Service,
            name: name.to_owned(),
        };
        let mut sidecar = opts();
        sidecar.attachment = Attachment::Targets(vec![service("orders")]);
        assert!(matches!(
            generate(&compiled(), &[], &sidecar),
            Err(IstioError::BadTargets(_))
        ));
        let mut twice = waypoint_opts();
        twice.attachment = Attachment::Targets(vec![service("orders"), service("orders")]);
        assert!(matches!(
            generate(&compiled(), &[], &twice),
            Err(IstioError::BadTargets(_))
        ));
        twice.attachment =
            Attachment::Targets((0..17).map(|i| service(&format!("s{i}"))).collect());
        assert!(matches!(
            generate(&compiled(), &[], &twice),
            Err(IstioError::BadTargets(_))
        ));
        let mut namespace_wide = opts();
        namespace_wide.attachment = Attachment::Namespace;
        let json = generate(&compiled(), &[], &namespace_wide)
            .unwrap()
            .to_json();
        assert!(json[0]["spec"].get("selector").is_none());
        assert!(json[1]["spec"].get("workloadSelector").is_none());
        let mut no_port = opts();
        no_port.ports = vec![0];
        assert_eq!(
            generate(&compiled(), &[], &no_port).unwrap_err(),
            IstioError::BadPort
        );
    }

    #[test]
    fn priority_ports_and_trust_domain_warning() {
        let mut o = opts();
        o.priority = Some(-5);
        o.ports = vec![8080, 9090];
        let generated = generate(&compiled(), &[], &o).unwrap();
        let json = generated.to_json();
        assert_eq!(json[0]["spec"]["priority"], -5);
        assert_eq!(
            json[0]["spec"]["match"][0]["ports"],
            serde_json::json!([{"number": 8080}, {"number": 9090}])
        );
        assert!(generated
            .warnings
            .iter()
            .all(|w| !w.contains("trust domain")));
        o.mesh_trust_domain = "prod.example".to_owned();
        let generated = generate(&compiled(), &[], &o).unwrap();
        assert!(
            generated
                .warnings
                .iter()
                .any(|w| w.contains("`cluster.local`") && w.contains("`prod.example`")),
            "{:?}",
            generated.warnings
        );
    }

    #[test]
    fn signed_policies_and_pinned_keys() {
        use meshward_engine::config::FilterConfig;
        use meshward_engine::signature::TrustedKeys;
        let key = SigningKey::from_bytes(&[7; 32]);
        let public = PublicKey::of_signing_key(&key).to_base64();
        let mut o = opts();
        o.signing_key = Some(key.clone());
        o.pinned_keys = KeyPinning::Inline(vec![public.clone()]);
        let json = generate(&compiled(), &[], &o).unwrap().to_json();
        let spec = &json[0]["spec"];
        assert_eq!(
            spec["vmConfig"],
            serde_json::json!({"env": [{"name": "MESHWARD_REQUIRE_SIGNATURE_KEYS",
                                        "valueFrom": "INLINE", "value": public}]})
        );
        // The filter loads it with the keys pinned as the env var carries them.
        let pinned =
            TrustedKeys::from_env_value(spec["vmConfig"]["env"][0]["value"].as_str().unwrap())
                .unwrap();
        let mut config = spec["pluginConfig"].clone();
        config.as_object_mut().unwrap().remove("direction");
        let loaded =
            FilterConfig::from_json_pinned(config.to_string().as_bytes(), Some(&pinned)).unwrap();
        assert!(loaded.signed_by.is_some());
        // A signer that is not pinned would be refused by the filter: refused here.
        o.pinned_keys = KeyPinning::Inline(vec![PublicKey::of_signing_key(
            &SigningKey::from_bytes(&[8; 32]),
        )
        .to_base64()]);
        assert!(matches!(
            generate(&compiled(), &[], &o),
            Err(IstioError::SignerNotPinned(_))
        ));
        o.pinned_keys = KeyPinning::Inline(vec!["AAAA".to_owned()]);
        assert_eq!(
            generate(&compiled(), &[], &o).unwrap_err(),
            IstioError::BadPinnedKey(0)
        );
        o.pinned_keys = KeyPinning::Host;
        let generated = generate(&compiled(), &[], &o).unwrap();
        assert_eq!(
            generated.to_json()[0]["spec"]["vmConfig"],
            serde_json::json!({"env": [{"name": "MESHWARD_REQUIRE_SIGNATURE_KEYS", "valueFrom": "HOST"}]})
        );
        assert!(generated
            .warnings
            .iter()
            .any(|w| w.contains("proxyMetadata")));
    }

    fn bundle_opts(url: &str) -> BundleOptions {
        BundleOptions {
            url: url.to_owned(),
            keys: vec![PublicKey::of_signing_key(&SigningKey::from_bytes(&[3; 32])).to_base64()],
            poll_secs: Some(20),
            max_staleness_secs: Some(300),
            ..BundleOptions::default()
        }
    }

    #[test]
    fn bundle_mode_pulls_from_the_cluster_istio_renders_for_the_service_entry() {
        let mut o = opts();
        o.bundle = Some(bundle_opts(
            "https://bundles.example.com/meshward/orders.bundle",
        ));
        let generated = generate(&compiled(), &[], &o).unwrap();
        let json = generated.to_json();
        let kinds: Vec<&str> = json.iter().map(|r| r["kind"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "WasmPlugin",
                "EnvoyFilter",
                "PeerAuthentication",
                "ServiceEntry",
                "DestinationRule"
            ]
        );
        let spec = &json[0]["spec"];
        assert!(spec.get("pluginConfig").is_none(), "{spec:#}");
        let env = &spec["vmConfig"]["env"][0];
        assert_eq!(env["name"], "MESHWARD_BUNDLE");
        assert_eq!(env["valueFrom"], "INLINE");
        // The filter reads exactly this.
        let source = BundleSource::from_env_value(env["value"].as_str().unwrap()).unwrap();
        assert_eq!(source.cluster, "outbound|443||bundles.example.com");
        assert_eq!(source.authority, "bundles.example.com");
        assert_eq!(source.path, "/meshward/orders.bundle");
        assert_eq!((source.poll_secs, source.max_staleness_secs), (20, 300));
        assert_eq!(
            json[3]["spec"],
            serde_json::json!({"hosts": ["bundles.example.com"], "location": "MESH_EXTERNAL",
                               "resolution": "DNS",
                               "ports": [{"number": 443, "name": "http-bundles", "protocol": "HTTP"}]})
        );
        assert_eq!(
            json[4]["spec"]["trafficPolicy"]["portLevelSettings"][0],
            serde_json::json!({"port": {"number": 443},
                               "tls": {"mode": "SIMPLE", "sni": "bundles.example.com"}})
        );
        // The configuration to pack is what pluginConfig would have held.
        let config = generated.bundle_config.unwrap();
        assert_eq!(config["direction"], "inbound");
        assert_eq!(config["peer_certificate"], "forwarded");
        meshward_engine::config::FilterConfig::from_json(config.to_string().as_bytes()).unwrap();

        // Plain HTTP on a port of its own: no DestinationRule; the port is
        // in the authority; signing keys pinned beside it.
        let key = SigningKey::from_bytes(&[7; 32]);
        o.bundle = Some(bundle_opts("http://bundles.shop.svc.cluster.local:8080/b"));
        o.signing_key = Some(key.clone());
        o.pinned_keys = KeyPinning::Inline(vec![PublicKey::of_signing_key(&key).to_base64()]);
        let generated = generate(&compiled(), &[], &o).unwrap();
        let json = generated.to_json();
        assert_eq!(json.last().unwrap()["kind"], "ServiceEntry");
        let env = &json[0]["spec"]["vmConfig"]["env"];
        assert_eq!(env[0]["name"], "MESHWARD_REQUIRE_SIGNATURE_KEYS");
        let source = BundleSource::from_env_value(env[1]["value"].as_str().unwrap()).unwrap();
        assert_eq!(
            source.cluster,
            "outbound|8080||bundles.shop.svc.cluster.local"
        );
        assert_eq!(source.authority, "bundles.shop.svc.cluster.local:8080");
        assert!(generated.bundle_config.unwrap().get("signature").is_some());
    }

    #[test]
    fn bundle_settings_are_refused_with_a_reason() {
        let refused = |edit: &dyn Fn(&mut BundleOptions), mode: Mode| {
            let mut o = opts();
            o.mode = mode;
            let mut b = bundle_opts("http://bundles.example.com/b");
            edit(&mut b);
            o.bundle = Some(b);
            generate(&compiled(), &[], &o).unwrap_err()
        };
        for url in [
            "ftp://bundles.example.com/b",
            "http://bundles.example.com",
            "http://bundles.example.com/",
            "http://10.0.0.1/b",
            "http://Bundles.example.com/b",
            "http://user@bundles.example.com/b",
            "http://bundles.example.com:0/b",
            "http://bundles.example.com/a b",
        ] {
            assert!(
                matches!(
                    refused(&|b| b.url = url.to_owned(), Mode::Server),
                    IstioError::BadBundleUrl(..)
                ),
                "{url}"
            );
        }
        assert_eq!(
            refused(&|b| b.keys = vec!["AAAA".to_owned()], Mode::Server),
            IstioError::BadBundleKey(0)
        );
        assert!(matches!(
            refused(&|b| b.keys.clear(), Mode::Server),
            IstioError::BadBundle(_)
        ));
        // The filter's own checks: staleness below the poll interval.
        let err = refused(&|b| b.max_staleness_secs = Some(5), Mode::Server);
        assert!(err.to_string().contains("max_staleness_secs"), "{err}");
        // 64 keys (the filter's most) do not fit Istio's 2048 characters.
        let many: Vec<String> = (0..64u8)
            .map(|i| PublicKey::of_signing_key(&SigningKey::from_bytes(&[i; 32])).to_base64())
            .collect();
        assert!(matches!(
            refused(&|b| b.keys = many.clone(), Mode::Server),
            IstioError::BundleEnvTooLong(n) if n > MAX_ENV_VALUE
        ));
        assert_eq!(refused(&|_| {}, Mode::Both), IstioError::BundleForBothSides);
    }

    #[test]
    fn connection_only_refuses_what_needs_the_certificate() {
        let mut o = opts();
        o.peer_certificate = PeerCertificate::ConnectionOnly;
        assert!(generate(&compiled(), &[], &o).is_ok());
        assert!(matches!(
            generate(&compiled(), &["0a".to_owned()], &o),
            Err(IstioError::NeedsCertificate(_))
        ));
        let bounded = crate::compile_source(
            &POLICY.replace(
                "\"cluster.local\"\n",
                "\"cluster.local\"\n  max_cert_lifetime 24h\n",
            ),
            "p.policy",
        )
        .unwrap();
        assert!(matches!(
            generate(&bounded, &[], &o),
            Err(IstioError::NeedsCertificate(_))
        ));
    }

    #[test]
    fn digests_from_url_and_flag_must_agree() {
        let hex = "ab".repeat(32);
        let pinned = format!("oci://r.example/m/f@sha256:{hex}");
        assert_eq!(
            image_and_digest(&pinned, None).unwrap().1.as_deref(),
            Some(hex.as_str())
        );
        assert!(matches!(
            image_and_digest(&pinned, Some(&"cd".repeat(32))),
            Err(IstioError::DigestMismatch { .. })
        ));
        assert!(image_and_digest("https://r.example/f.wasm", None).is_err());
        assert!(image_and_digest("oci://nohost", None).is_err());
        assert_eq!(
            normalize_digest(&format!("sha256:{}", "AB".repeat(32))).unwrap(),
            "ab".repeat(32)
        );
    }

    #[test]
    fn selectors_follow_kubernetes_and_istio_rules() {
        assert!(check_selector("app", "orders").is_ok());
        assert!(check_selector("app.kubernetes.io/name", "orders").is_ok());
        assert!(check_selector("app", "").is_ok());
        assert!(check_selector("app", "*").is_err());
        assert!(check_selector("", "x").is_err());
        assert!(check_selector("app", &"x".repeat(64)).is_err());
        assert!(check_selector("Bad_Prefix/app", "x").is_err());
    }

    #[test]
    fn canonical_sorts_keys_at_every_level() {
        let value = serde_json::json!({"b": 1, "a": {"d": [{"z": 1, "y": 2}], "c": true}});
        let text = serde_json::to_string(&Canonical(value)).unwrap();
        assert_eq!(text, r#"{"a":{"c":true,"d":[{"y":2,"z":1}]},"b":1}"#);
    }
}
