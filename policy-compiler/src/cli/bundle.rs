//! `meshward bundle`: packs a plugin configuration (as `meshward compile`
//! writes it: policy, identity settings, revocation data) into a signed,
//! revisioned bundle for fleet distribution; `meshward bundle verify` checks
//! one the way the filter does. Format: `meshward_engine::bundle` and
//! docs/distribution.md.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use meshward_engine::bundle::{self, Bundle};
use meshward_engine::config::FilterConfig;
use meshward_engine::signature::{PublicKey, TrustedKeys};
use meshward_policy::signing;

use super::{Exit, Format};

/// Largest bundle `verify` reads unless told otherwise (the filter's default).
const DEFAULT_MAX_BYTES: usize = 8 * 1024 * 1024;

/// `meshward bundle`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(super) struct BundleArgs {
    #[command(subcommand)]
    verify: Option<BundleCommand>,
    #[command(flatten)]
    pack: Option<PackArgs>,
}

#[derive(Debug, clap::Subcommand)]
enum BundleCommand {
    /// Check a bundle's framing, signature, configuration and policy hash,
    /// as the filter does; prints its revision, hash and signing key.
    Verify(VerifyArgs),
}

/// Packing flags.
#[derive(Debug, clap::Args)]
struct PackArgs {
    /// The plugin configuration JSON (`meshward compile -o`).
    #[arg(long, value_name = "CONFIG.json", required = true)]
    config: PathBuf,
    /// The Ed25519 signing key (PKCS#8 PEM, from `meshward keygen`).
    #[arg(long, value_name = "KEY", required = true)]
    key: PathBuf,
    /// The revision (≥ 1). Proxies refuse a revision lower than the one
    /// they run.
    #[arg(long, required_unless_present = "after", conflicts_with = "after")]
    revision: Option<u64>,
    /// The bundle currently published: the new revision is its revision + 1.
    #[arg(long, value_name = "PREVIOUS.bundle")]
    after: Option<PathBuf>,
    /// The bundle file to write.
    #[arg(short, long, value_name = "OUT.bundle", required = true)]
    output: PathBuf,
    /// Output format (`json`: a summary on stdout).
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

/// `meshward bundle verify`.
#[derive(Debug, clap::Args)]
struct VerifyArgs {
    /// The bundle file.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// A trusted public key (base64, as `meshward keygen` prints it); repeat
    /// for several.
    #[arg(long = "public-key", value_name = "BASE64", required = true)]
    public_keys: Vec<String>,
    /// Refuse bundles larger than this many bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_BYTES)]
    max_bytes: usize,
    /// Output format (`json`: the bundle's facts on stdout).
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

type CliResult = Result<Exit, String>;

pub(super) fn bundle_command(args: &BundleArgs) -> CliResult {
    match (&args.verify, &args.pack) {
        (Some(BundleCommand::Verify(verify)), _) => verify_command(verify),
        (None, Some(pack)) => pack_command(pack),
        (None, None) => Err(
            "`meshward bundle` needs `--config`, `--key`, `--revision` (or `--after`) and `-o`, or `verify FILE`"
                .to_owned(),
        ),
    }
}

fn read_bytes(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))
}

fn pack_command(args: &PackArgs) -> CliResult {
    let config = read_bytes(&args.config)?;
    // Only a configuration the filter would load is packed.
    let loaded = FilterConfig::from_json(&config).map_err(|e| {
        format!(
            "`{}` is not a plugin configuration the filter loads: {e}",
            args.config.display()
        )
    })?;
    let revision = match (args.revision, &args.after) {
        (Some(0), _) => return Err("--revision must be at least 1".to_owned()),
        (Some(revision), _) => revision,
        (None, Some(previous)) => {
            let bytes = read_bytes(previous)?;
            let previous_bundle = Bundle::decode(&bytes, usize::MAX)
                .map_err(|e| format!("`{}`: {e}", previous.display()))?;
            previous_bundle
                .revision
                .checked_add(1)
                .ok_or("the previous revision is the largest possible")?
        }
        (None, None) => return Err("give --revision N or --after PREVIOUS.bundle".to_owned()),
    };
    let (key, warning) = signing::read_private_key(&args.key)?;
    if let Some(warning) = warning {
        err(&format!("warning: {warning}\n"));
    }
    let issued_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let policy_hash = *loaded.policy.hash();
    let bytes = bundle::encode(revision, issued_at, &policy_hash, &config, &key)
        .ok_or("the configuration is larger than 4 GiB")?;
    std::fs::write(&args.output, &bytes)
        .map_err(|e| format!("cannot write `{}`: {e}", args.output.display()))?;
    let summary = serde_json::json!({
        "command": "bundle",
        "output": args.output.display().to_string(),
        "revision": revision,
        "issued_at": issued_at,
        "policy_name": loaded.policy.name(),
        "policy_hash": loaded.policy.hash_hex(),
        "key_id": signing::key_id(&key),
        "bytes": bytes.len(),
    });
    match args.format {
        Format::Text => err(&format!(
            "wrote `{}`: revision {revision}, policy `{}` (hash {}), {} bytes, signed by key {}\n",
            args.output.display(),
            loaded.policy.name(),
            loaded.policy.hash_hex(),
            bytes.len(),
            signing::key_id(&key),
        )),
        Format::Json => out(&format!("{summary}\n"))?,
    }
    Ok(Exit::Ok)
}

fn verify_command(args: &VerifyArgs) -> CliResult {
    let keys = args
        .public_keys
        .iter()
        .enumerate()
        .map(|(i, text)| {
            PublicKey::from_base64(text).ok_or_else(|| {
                format!("--public-key #{} is not a base64 Ed25519 public key", i + 1)
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let trusted = TrustedKeys::new(keys).map_err(|e| e.to_string())?;
    let bytes = read_bytes(&args.file)?;
    let (bundle, signer) = Bundle::open(&bytes, args.max_bytes, &trusted)
        .map_err(|e| format!("`{}`: {e}", args.file.display()))?;
    let config = FilterConfig::from_json(&bundle.config).map_err(|e| {
        format!(
            "`{}`: signed, but its configuration does not load: {e}",
            args.file.display()
        )
    })?;
    if config.policy.hash() != &bundle.policy_hash {
        return Err(format!(
            "`{}`: the header names policy hash {} but the configuration holds {}",
            args.file.display(),
            bundle.policy_hash_hex(),
            config.policy.hash_hex()
        ));
    }
    match args.format {
        Format::Text => out(&format!(
            "{}: ok: revision {}, issued at {}, policy `{}` (hash {}, {} rules), {} bytes, signed by key {signer}\n",
            args.file.display(),
            bundle.revision,
            bundle.issued_at,
            config.policy.name(),
            bundle.policy_hash_hex(),
            config.policy.rule_count(),
            bytes.len(),
        ))?,
        Format::Json => out(&format!(
            "{}\n",
            serde_json::json!({
                "command": "bundle verify",
                "file": args.file.display().to_string(),
                "ok": true,
                "revision": bundle.revision,
                "issued_at": bundle.issued_at,
                "policy_name": config.policy.name(),
                "policy_hash": bundle.policy_hash_hex(),
                "rules": config.policy.rule_count(),
                "bytes": bytes.len(),
                "key_id": signer.to_string(),
            })
        ))?,
    }
    Ok(Exit::Ok)
}

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
