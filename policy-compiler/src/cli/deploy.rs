//! `meshward istio` (WasmPlugin manifests) and `meshward oci` (the filter as
//! an OCI image layout): getting a compiled policy to where it runs.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use clap::ValueEnum;
use meshward_engine::identity::normalize_serial;
use meshward_policy::istio::{
    self, Attachment, BundleOptions, FailStrategy, IstioOptions, KeyPinning, Mode, PeerCertificate,
    PullPolicy, TargetKind, TargetRef,
};
use meshward_policy::oci::{self, Image, ImageFormat};
use meshward_policy::{compile_source, Compiled};

use super::commands::{policy_errors_json, print_json, with_policy_fields};
use super::{Exit, Format};

/// `meshward oci`: package the filter's wasm as an OCI image layout.
#[derive(Debug, clap::Args)]
pub(super) struct OciArgs {
    /// The filter's wasm (`target/wasm32-wasip1/release/meshward_filter.wasm`).
    #[arg(long, value_name = "PATH")]
    wasm: PathBuf,
    /// The OCI image layout directory to write (created; an earlier layout
    /// there is replaced).
    #[arg(short, long, value_name = "DIR")]
    output: PathBuf,
    /// Also write the layout as a tarball.
    #[arg(long, value_name = "OUT.tar")]
    tar: Option<PathBuf>,
    /// Image shape: the Wasm OCI artifact (two layers with the
    /// `application/vnd.module.wasm.*` media types), or the compat image (one
    /// tar+gzip layer holding `plugin.wasm`, as `docker build` makes it).
    #[arg(long = "oci-format", value_enum, default_value_t)]
    oci_format: OciFormat,
    /// Output format (`json`: the layout's digest and paths on stdout).
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// The tag recorded in `index.json` (`org.opencontainers.image.ref.name`).
    #[arg(long, default_value = env!("CARGO_PKG_VERSION"))]
    tag: String,
}

/// `meshward istio`: WasmPlugin manifests for a policy.
#[derive(Debug, clap::Args)]
pub(super) struct IstioArgs {
    /// The policy file.
    #[arg(long, value_name = "FILE")]
    policy: PathBuf,
    /// Where the filter image is: `oci://REGISTRY/REPOSITORY:TAG` (or
    /// `...@sha256:DIGEST`).
    #[arg(long, value_name = "oci://REG/REPO:TAG")]
    image: String,
    /// The image's manifest digest (what `meshward oci` printed), pinned as
    /// `WasmPlugin.sha256`.
    #[arg(long, value_name = "HEX", conflicts_with_all = ["wasm", "oci_layout"])]
    sha256: Option<String>,
    /// Compute the digest of the image `meshward oci --wasm PATH` builds
    /// (same bytes, same digest).
    #[arg(long, value_name = "PATH", conflicts_with = "oci_layout")]
    wasm: Option<PathBuf>,
    /// With `--wasm`: the `--format` the image is packaged with.
    #[arg(long = "oci-format", value_enum, default_value_t, requires = "wasm")]
    oci_format: OciFormat,
    /// Read (and verify) the digest from the OCI image layout `meshward oci`
    /// wrote.
    #[arg(long = "oci-layout", value_name = "DIR")]
    oci_layout: Option<PathBuf>,
    /// The namespace of the workloads (and of the generated resources).
    #[arg(
        long,
        value_name = "NS",
        required_unless_present = "mesh_wide",
        conflicts_with = "mesh_wide"
    )]
    namespace: Option<String>,
    /// A label of the workloads to enforce on, `key=value`; repeatable.
    /// Give this, a target, `--namespace-wide` or `--mesh-wide`.
    #[arg(long = "selector", value_name = "KEY=VALUE")]
    selectors: Vec<String>,
    /// `targetRefs`: a `Gateway` (a waypoint, or an ingress gateway with
    /// `--mode gateway`) in the namespace; repeatable.
    #[arg(
        long = "target-gateway",
        value_name = "NAME",
        conflicts_with = "selectors"
    )]
    target_gateways: Vec<String>,
    /// `targetRefs`: a `Service` whose waypoint enforces (`--mode
    /// waypoint`); repeatable.
    #[arg(
        long = "target-service",
        value_name = "NAME",
        conflicts_with = "selectors"
    )]
    target_services: Vec<String>,
    /// Every workload of the namespace (no selector, no targets).
    #[arg(long = "namespace-wide", conflicts_with_all = ["selectors", "target_gateways", "target_services"])]
    namespace_wide: bool,
    /// Every workload of the mesh: the resources go to Istio's root
    /// namespace (`--root-namespace`); with `--selector`, the matching
    /// workloads of every namespace.
    #[arg(long = "mesh-wide", conflicts_with_all = ["target_gateways", "target_services", "namespace_wide"])]
    mesh_wide: bool,
    /// Istio's root namespace (`meshConfig.rootNamespace`).
    #[arg(long = "root-namespace", value_name = "NS", default_value = istio::DEFAULT_ROOT_NAMESPACE)]
    root_namespace: String,
    /// `server`: inbound enforcement (`match.mode: SERVER`); `client`:
    /// outbound chain forwarding (`CLIENT`); `both`: two plugins sharing the
    /// chain seal key; `gateway`: an Istio gateway's incoming requests;
    /// `waypoint`: an ambient waypoint (targets required; the caller comes
    /// from the HBONE peer's certificate through filter state).
    #[arg(long, value_enum, default_value_t)]
    mode: IstioMode,
    /// `priority`: order among `AUTHZ` plugins (higher runs first).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    priority: Option<i32>,
    /// `match[].ports`: only traffic to this destination port; repeatable.
    #[arg(long = "port", value_name = "PORT")]
    ports: Vec<u16>,
    /// The mesh's trust domain (`meshConfig.trustDomain`): a warning when
    /// the policy does not trust it.
    #[arg(long = "mesh-trust-domain", value_name = "TD", default_value = istio::DEFAULT_MESH_TRUST_DOMAIN)]
    mesh_trust_domain: String,
    /// Do not generate the STRICT `PeerAuthentication` (the mesh already has
    /// one that covers these workloads).
    #[arg(long = "no-peer-authentication")]
    no_peer_authentication: bool,
    /// Sign the policy with this private key (from `meshward keygen`).
    #[arg(long, value_name = "KEY.pem")]
    sign: Option<PathBuf>,
    /// Require a signature by this public key (base64, as `meshward keygen`
    /// prints it), pinned in `vmConfig.env`; repeatable.
    #[arg(
        long = "pin-key",
        value_name = "BASE64",
        conflicts_with = "pin_keys_from_host"
    )]
    pin_keys: Vec<String>,
    /// Require a signature by the keys in the proxies' own
    /// `MESHWARD_REQUIRE_SIGNATURE_KEYS` environment variable (set by the
    /// mesh operator, e.g. `meshConfig.defaultConfig.proxyMetadata`).
    #[arg(long = "pin-keys-from-host")]
    pin_keys_from_host: bool,
    /// Base name of the resources (`NAME-inbound`, `NAME-outbound`, ...).
    #[arg(long, default_value = istio::PLUGIN_NAME)]
    name: String,
    /// `imagePullPolicy`.
    #[arg(long = "pull-policy", value_enum, default_value_t)]
    pull_policy: IstioPullPolicy,
    /// `imagePullSecret`: a Secret in the namespace with registry credentials.
    #[arg(long = "image-pull-secret", value_name = "SECRET")]
    image_pull_secret: Option<String>,
    /// `failStrategy`: `close` (`FAIL_CLOSE`) or `reload` (`FAIL_RELOAD`,
    /// Istio 1.25 and later only).
    #[arg(long = "fail-strategy", value_enum, default_value_t)]
    fail_strategy: IstioFailStrategy,
    /// `forwarded`: the filter reads the peer certificate from
    /// `x-forwarded-client-cert` and an EnvoyFilter makes Istio put it there;
    /// `connection-only`: only the connection's URI SAN (no EnvoyFilter; no
    /// lifetime bounds or serial revocation).
    #[arg(long = "peer-certificate", value_enum, default_value_t)]
    peer_certificate: IstioPeerCertificate,
    /// A revoked certificate serial number (hex); repeatable.
    #[arg(long = "revoked-serial", value_name = "HEX")]
    revoked_serials: Vec<String>,
    /// Also emit the observability `EnvoyFilter`s: a JSON access log with
    /// the meshward fields, and the bootstrap `stats_tags` / stats inclusion
    /// that export the filter's labelled counters (docs/observability.md).
    #[arg(long)]
    telemetry: bool,
    /// Pull the policy as signed bundles from this URL
    /// (`http(s)://HOST[:PORT]/PATH`) instead of carrying it in
    /// `pluginConfig`: adds a ServiceEntry (and a TLS-originating
    /// DestinationRule for https) and `MESHWARD_BUNDLE` in `vmConfig.env`
    /// (docs/distribution.md).
    #[arg(long = "bundle-url", value_name = "URL", requires = "bundle_keys")]
    bundle_url: Option<String>,
    /// A bundle signing public key (base64, from `meshward keygen`);
    /// repeatable; at least one with `--bundle-url`.
    #[arg(long = "bundle-key", value_name = "BASE64", requires = "bundle_url")]
    bundle_keys: Vec<String>,
    /// Bundle poll interval, seconds (filter default 30).
    #[arg(long = "bundle-poll-secs", value_name = "S", requires = "bundle_url")]
    bundle_poll_secs: Option<u64>,
    /// Bundle poll jitter, a fraction of the interval in [0, 0.9] (default 0.2).
    #[arg(long = "bundle-jitter", value_name = "F", requires = "bundle_url")]
    bundle_jitter: Option<f64>,
    /// Bundle poll timeout, milliseconds (default 5000).
    #[arg(long = "bundle-timeout-ms", value_name = "MS", requires = "bundle_url")]
    bundle_timeout_ms: Option<u64>,
    /// Largest bundle accepted, bytes (default 8 MiB).
    #[arg(long = "bundle-max-bytes", value_name = "N", requires = "bundle_url")]
    bundle_max_bytes: Option<u64>,
    /// Seconds without the server confirming the bundle before every
    /// request is denied `bundle_stale` (default 600).
    #[arg(
        long = "bundle-max-staleness-secs",
        value_name = "S",
        requires = "bundle_url"
    )]
    bundle_max_staleness_secs: Option<u64>,
    /// With `--bundle-url`: write the plugin configuration the bundles must
    /// carry (the policy with this plugin's direction and certificate
    /// source) here, for `meshward bundle --config`.
    #[arg(
        long = "bundle-config-out",
        value_name = "PLUGIN.json",
        requires = "bundle_url"
    )]
    bundle_config_out: Option<PathBuf>,
    /// Where to write the manifests (`-` = stdout).
    #[arg(short, long, value_name = "OUT.yaml", default_value = "-")]
    output: PathBuf,
    /// Summary format (`json`: hash, resources and warnings; on stderr when
    /// the manifests go to stdout).
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
enum OciFormat {
    /// The Wasm OCI artifact.
    #[default]
    WasmArtifact,
    /// The compat image (`plugin.wasm` in one tar+gzip layer).
    #[value(alias = "docker")]
    Compat,
}

impl From<OciFormat> for ImageFormat {
    fn from(format: OciFormat) -> Self {
        match format {
            OciFormat::WasmArtifact => ImageFormat::WasmArtifact,
            OciFormat::Compat => ImageFormat::Compat,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
enum IstioMode {
    #[default]
    Server,
    Client,
    Both,
    Gateway,
    Waypoint,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
enum IstioPullPolicy {
    #[default]
    IfNotPresent,
    Always,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
enum IstioFailStrategy {
    #[default]
    Close,
    Reload,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
enum IstioPeerCertificate {
    #[default]
    Forwarded,
    ConnectionOnly,
}

type CliResult = Result<Exit, String>;

fn err(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

fn out(text: &str) -> Result<(), String> {
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(format!("cannot write to stdout: {e}"))
        }
        _ => Ok(()),
    }
}

fn read_wasm(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))
}

/// `meshward oci`.
pub(super) fn oci(args: &OciArgs) -> CliResult {
    let wasm = read_wasm(&args.wasm)?;
    let image = Image::build(&wasm, args.oci_format.into(), istio::PLUGIN_NAME)
        .map_err(|e| format!("`{}`: {e}", args.wasm.display()))?;
    image
        .write_layout(&args.output, &args.tag)
        .map_err(|e| e.to_string())?;
    if let Some(tar) = &args.tar {
        let bytes = image.layout_tar(&args.tag).map_err(|e| e.to_string())?;
        std::fs::write(tar, bytes).map_err(|e| format!("cannot write `{}`: {e}", tar.display()))?;
    }
    let hex = image.manifest.digest_hex();
    if args.format == Format::Json {
        print_json(&serde_json::json!({
            "command": "oci",
            "wasm": args.wasm.display().to_string(),
            "output": args.output.display().to_string(),
            "tar": args.tar.as_ref().map(|t| t.display().to_string()),
            "oci_format": args.oci_format.to_possible_value().map(|v| v.get_name().to_owned()),
            "tag": args.tag,
            "manifest_digest": image.manifest_digest(),
            "sha256": hex,
        }))?;
        return Ok(Exit::Ok);
    }
    err(&format!(
        "wrote OCI image layout `{}` ({}, tag `{}`{}): manifest {}\n\
         pin it in WasmPlugin.sha256 (`meshward istio --oci-layout {}`), push with\n  \
         oras cp --from-oci-layout {}:{} REGISTRY/REPOSITORY:{}\n",
        args.output.display(),
        image.format,
        args.tag,
        args.tar
            .as_ref()
            .map(|t| format!(", tarball `{}`", t.display()))
            .unwrap_or_default(),
        image.manifest_digest(),
        args.output.display(),
        args.output.display(),
        args.tag,
        args.tag,
    ));
    // stdout: the digest alone, for scripts.
    out(&format!("{hex}\n"))?;
    Ok(Exit::Ok)
}

/// `meshward istio`.
pub(super) fn istio(args: &IstioArgs) -> CliResult {
    let serials = args
        .revoked_serials
        .iter()
        .map(|s| {
            normalize_serial(s)
                .ok_or_else(|| format!("revoked serial `{s}` is not a hexadecimal serial number"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let selector = args
        .selectors
        .iter()
        .map(|s| match s.split_once('=') {
            Some((k, v)) => Ok((k.to_owned(), v.to_owned())),
            None => Err(format!("selector `{s}` is not `key=value`")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let sha256 = match (&args.sha256, &args.wasm, &args.oci_layout) {
        (Some(hex), _, _) => Some(hex.clone()),
        (_, Some(wasm), _) => {
            let image = Image::build(
                &read_wasm(wasm)?,
                args.oci_format.into(),
                istio::PLUGIN_NAME,
            )
            .map_err(|e| format!("`{}`: {e}", wasm.display()))?;
            Some(image.manifest.digest_hex().to_owned())
        }
        (_, _, Some(dir)) => {
            let tag = args
                .image
                .rsplit_once(':')
                .map(|(_, t)| t)
                .filter(|t| !t.contains('/') && !args.image.contains('@'));
            let summary = oci::read_layout(dir, None)
                .or_else(|e| tag.map_or(Err(e), |t| oci::read_layout(dir, Some(t))))
                .map_err(|e| e.to_string())?;
            Some(summary.manifest_digest)
        }
        _ => None,
    };
    let source = std::fs::read_to_string(&args.policy)
        .map_err(|e| format!("cannot read `{}`: {e}", args.policy.display()))?;
    let compiled: Compiled = match compile_source(&source, &args.policy.display().to_string()) {
        Ok(compiled) => compiled,
        Err(diagnostics) => {
            match args.format {
                Format::Text => err(&diagnostics.to_string()),
                Format::Json => print_json(&policy_errors_json(&diagnostics, "istio"))?,
            }
            return Ok(Exit::PolicyErrors);
        }
    };
    if args.format == Format::Text && !compiled.warnings.is_empty() {
        err(&compiled.warnings.to_string());
    }
    let targets: Vec<TargetRef> = args
        .target_gateways
        .iter()
        .map(|name| (TargetKind::Gateway, name))
        .chain(
            args.target_services
                .iter()
                .map(|name| (TargetKind::Service, name)),
        )
        .map(|(kind, name)| TargetRef {
            kind,
            name: name.clone(),
        })
        .collect();
    let namespace = match &args.namespace {
        Some(namespace) => namespace.clone(),
        None => args.root_namespace.clone(),
    };
    let attachment = if !targets.is_empty() {
        Attachment::Targets(targets)
    } else if !selector.is_empty() {
        Attachment::Selector(selector)
    } else if args.namespace_wide || args.mesh_wide {
        Attachment::Namespace
    } else {
        return Err(
            "say where the plugin applies: --selector KEY=VALUE, --target-gateway NAME, \
             --target-service NAME, --namespace-wide or --mesh-wide"
                .to_owned(),
        );
    };
    let mut opts = IstioOptions::new(&namespace, Vec::new(), &args.image);
    opts.attachment = attachment;
    opts.priority = args.priority;
    opts.ports = args.ports.clone();
    opts.mesh_trust_domain = args.mesh_trust_domain.clone();
    opts.peer_authentication = !args.no_peer_authentication;
    if let Some(key_file) = &args.sign {
        let (key, warning) = meshward_policy::signing::read_private_key(key_file)?;
        if let Some(warning) = warning {
            err(&format!("warning: {warning}\n"));
        }
        opts.signing_key = Some(key);
    }
    opts.pinned_keys = if args.pin_keys_from_host {
        KeyPinning::Host
    } else if args.pin_keys.is_empty() {
        KeyPinning::None
    } else {
        KeyPinning::Inline(args.pin_keys.clone())
    };
    opts.name = args.name.clone();
    opts.sha256 = sha256;
    opts.mode = match args.mode {
        IstioMode::Server => Mode::Server,
        IstioMode::Client => Mode::Client,
        IstioMode::Both => Mode::Both,
        IstioMode::Gateway => Mode::Gateway,
        IstioMode::Waypoint => Mode::Waypoint,
    };
    opts.pull_policy = match args.pull_policy {
        IstioPullPolicy::IfNotPresent => PullPolicy::IfNotPresent,
        IstioPullPolicy::Always => PullPolicy::Always,
    };
    opts.fail_strategy = match args.fail_strategy {
        IstioFailStrategy::Close => FailStrategy::Close,
        IstioFailStrategy::Reload => FailStrategy::Reload,
    };
    opts.peer_certificate = match args.peer_certificate {
        IstioPeerCertificate::Forwarded => PeerCertificate::Forwarded,
        IstioPeerCertificate::ConnectionOnly => PeerCertificate::ConnectionOnly,
    };
    opts.image_pull_secret = args.image_pull_secret.clone();
    opts.bundle = args.bundle_url.as_ref().map(|url| BundleOptions {
        url: url.clone(),
        keys: args.bundle_keys.clone(),
        poll_secs: args.bundle_poll_secs,
        jitter: args.bundle_jitter,
        timeout_ms: args.bundle_timeout_ms,
        max_bytes: args.bundle_max_bytes,
        max_staleness_secs: args.bundle_max_staleness_secs,
    });
    let mut generated = istio::generate(&compiled, &serials, &opts).map_err(|e| e.to_string())?;
    if let Some(config) = &generated.bundle_config {
        match &args.bundle_config_out {
            Some(path) => {
                let text = serde_json::to_string_pretty(config)
                    .map_err(|e| format!("internal error: {e}"))?;
                std::fs::write(path, text + "\n")
                    .map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
            }
            None => generated.warnings.push(
                "the bundles must carry this plugin's configuration (its direction and \
                 certificate source): write it with --bundle-config-out PLUGIN.json and pack it \
                 with `meshward bundle --config PLUGIN.json`"
                    .to_owned(),
            ),
        }
    }
    if args.telemetry {
        let telemetry = meshward_policy::istio_telemetry::resources(&opts, &compiled.hash_hex());
        generated.resources.extend(telemetry);
    }
    let header = format!(
        "Generated by `meshward istio` from `{}` (policy hash {}).\n\
         Apply with `kubectl apply -f`; regenerate rather than edit.",
        args.policy.display(),
        compiled.hash_hex()
    );
    let yaml = generated
        .to_yaml(&header)
        .map_err(|e| format!("internal error: {e}"))?;
    if args.output == Path::new("-") {
        out(&yaml)?;
    } else {
        std::fs::write(&args.output, &yaml)
            .map_err(|e| format!("cannot write `{}`: {e}", args.output.display()))?;
    }
    let names: Vec<String> = generated
        .resources
        .iter()
        .map(|r| format!("{}/{}", r.kind, r.metadata.name))
        .collect();
    if args.format == Format::Json {
        let mut summary = with_policy_fields(
            serde_json::json!({
                "file": args.policy.display().to_string(),
                "output": args.output.display().to_string(),
                "namespace": args.namespace,
                "resources": generated.resources.iter().map(|r| serde_json::json!({
                    "kind": r.kind,
                    "name": r.metadata.name,
                })).collect::<Vec<_>>(),
            }),
            "istio",
            &compiled,
        );
        // The generator's own warnings join the policy's.
        if let Some(object) = summary.as_object_mut() {
            let mut warnings = match object.remove("warnings") {
                Some(serde_json::Value::Array(list)) => list,
                _ => Vec::new(),
            };
            warnings.extend(
                generated
                    .warnings
                    .iter()
                    .map(|w| serde_json::json!({ "message": w })),
            );
            object.insert("warning_count".to_owned(), warnings.len().into());
            object.insert("warnings".to_owned(), warnings.into());
        }
        if args.output == Path::new("-") {
            err(&format!("{summary}\n"));
        } else {
            print_json(&summary)?;
        }
        return Ok(Exit::Ok);
    }
    for warning in &generated.warnings {
        err(&format!("warning: {warning}\n"));
    }
    err(&format!(
        "generated {} in namespace `{}` for policy {} -> {}\n",
        names.join(", "),
        namespace,
        compiled.hash_hex(),
        args.output.display()
    ));
    Ok(Exit::Ok)
}
