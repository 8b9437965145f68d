//! `meshward istio` (WasmPlugin manifests) and `meshward oci` (the filter as
//! an OCI image layout): getting a compiled policy to where it runs.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use clap::ValueEnum;
use meshward_engine::config::normalize_serial;
use meshward_policy::istio::{self, FailStrategy, IstioOptions, Mode, PeerCertificate, PullPolicy};
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
    #[arg(long, value_name = "NS")]
    namespace: String,
    /// A label of the workloads to enforce on, `key=value`; repeatable, at
    /// least one.
    #[arg(long = "selector", value_name = "KEY=VALUE", required = true)]
    selectors: Vec<String>,
    /// `server`: inbound enforcement (`match.mode: SERVER`); `client`:
    /// outbound chain forwarding (`CLIENT`); `both`: two plugins sharing the
    /// chain seal key; `gateway`: an Istio gateway's incoming requests.
    #[arg(long, value_enum, default_value_t)]
    mode: IstioMode,
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
    let mut opts = IstioOptions::new(&args.namespace, selector, &args.image);
    opts.name = args.name.clone();
    opts.sha256 = sha256;
    opts.mode = match args.mode {
        IstioMode::Server => Mode::Server,
        IstioMode::Client => Mode::Client,
        IstioMode::Both => Mode::Both,
        IstioMode::Gateway => Mode::Gateway,
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
    let generated = istio::generate(&compiled, &serials, &opts).map_err(|e| e.to_string())?;
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
        args.namespace,
        compiled.hash_hex(),
        args.output.display()
    ));
    Ok(Exit::Ok)
}
