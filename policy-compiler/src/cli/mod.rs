//! The command line: argument parsing (clap derive) and dispatch.

mod authoring;
mod bundle;
mod commands;
mod decide;
mod deploy;
mod import;
mod rollout;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Exit codes; see the binary's docs and `meshward --help`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Success; `explain`: allow.
    Ok = 0,
    /// The policy has errors.
    PolicyErrors = 1,
    /// Usage, I/O or internal error.
    Usage = 2,
    /// A policy test failed.
    TestsFailed = 3,
    /// `explain`: the decision is deny.
    Denied = 4,
    /// `diff --exit-code`: the policies differ; `replay`: a decision changed
    /// in a way `--fail-on` forbids; `fmt --check`: a file is not formatted.
    Changes = 5,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}

const EXIT_CODES: &str = "\
Exit codes:
  0  success (for `explain`: the decision is allow)
  1  the policy has errors (diagnostics on stderr, or on stdout with --format json)
  2  usage, I/O or internal error
  3  `test`: at least one policy test failed
  4  `explain`: the decision is deny
  5  `diff --exit-code`: the policies differ; `replay`: a decision changed as `--fail-on` forbids;
     `fmt --check`: a file is not formatted";

/// meshward: workload zero trust for the service mesh. Checks and compiles
/// identity policies for the meshward Envoy filter, and answers what the
/// filter would decide.
#[derive(Debug, Parser)]
#[command(name = "meshward", version, after_help = EXIT_CODES)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub(crate) enum Format {
    /// Human-readable text.
    #[default]
    Text,
    /// One JSON document on stdout.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check policies and report every error and warning.
    #[command(after_help = EXIT_CODES)]
    Check {
        /// The policy files (`-` = stdin).
        #[arg(value_name = "FILE", required = true)]
        files: Vec<PathBuf>,
        /// Output format (`json`: diagnostics as JSON on stdout).
        #[arg(long, value_enum, default_value_t)]
        format: Format,
        /// Treat warnings as errors (exit 1).
        #[arg(long)]
        deny_warnings: bool,
    },
    /// Compile a policy into the filter's plugin configuration JSON.
    #[command(after_help = EXIT_CODES)]
    Compile {
        /// The policy file.
        file: PathBuf,
        /// Where to write the plugin configuration (`-` = stdout).
        #[arg(short, long, value_name = "OUT")]
        output: PathBuf,
        /// Identity settings for this environment: a file holding one
        /// `identity { ... }` block, which replaces the policy's own.
        #[arg(long, value_name = "SETTINGS")]
        settings: Option<PathBuf>,
        /// A revoked certificate serial number (hex); repeatable.
        #[arg(long = "revoked-serial", value_name = "HEX")]
        revoked_serials: Vec<String>,
        /// Write the configuration as compact JSON (default: pretty).
        #[arg(long)]
        compact: bool,
        /// Summary format (`json`: hash, rule count and size on stdout).
        #[arg(long, value_enum, default_value_t)]
        format: Format,
        /// Sign the compiled policy with this Ed25519 private key (PKCS#8
        /// PEM, from `meshward keygen`): adds `signature` to the configuration.
        #[arg(long, value_name = "KEY")]
        sign: Option<PathBuf>,
    },
    /// Decide one request exactly as the filter would, and say why.
    #[command(after_help = EXIT_CODES)]
    Explain {
        /// The policy file.
        file: PathBuf,
        /// The verified peer SPIFFE ID, or `none` (no client certificate).
        #[arg(long, value_name = "SPIFFE_ID|none")]
        peer: String,
        /// The HTTP method.
        #[arg(long, value_name = "M")]
        method: String,
        /// The request path (query allowed).
        #[arg(long, value_name = "P")]
        path: String,
        /// The `:authority` (port allowed).
        #[arg(long, value_name = "H", default_value = "")]
        host: String,
        /// A request header `name=value`; repeatable.
        #[arg(long = "header", value_name = "K=V")]
        headers: Vec<String>,
        /// Tokens, end user and caller chain.
        #[command(flatten)]
        identity: Box<IdentityArgs>,
        /// Also say how this rule fared: the first requirement it failed
        /// (a deny lists the closest allow rules anyway).
        #[arg(long = "why-not", value_name = "RULE")]
        why_not: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Run the policy's own `test` blocks.
    #[command(after_help = EXIT_CODES)]
    Test {
        /// The policy file.
        file: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Generate Istio WasmPlugin manifests for a policy.
    #[command(after_help = EXIT_CODES)]
    Istio(Box<deploy::IstioArgs>),
    /// Package the filter's wasm as an OCI image layout (for WasmPlugin.url).
    #[command(after_help = EXIT_CODES)]
    Oci(deploy::OciArgs),
    /// Re-decide recorded audit lines with a new policy and report what changes.
    #[command(after_help = EXIT_CODES)]
    Replay(rollout::ReplayArgs),
    /// Compare two policies semantically: grants, rules, modes, intents, settings.
    #[command(after_help = EXIT_CODES)]
    Diff(rollout::DiffArgs),
    /// Draw who may do what: subjects → intents → services (DOT, SVG or HTML).
    #[command(after_help = EXIT_CODES)]
    Graph(rollout::GraphArgs),
    /// Decide raw requests (JSON lines) through the filter's pipeline, offline:
    /// certificates, tokens and chains verified as in the proxy.
    #[command(after_help = EXIT_CODES)]
    Decide(decide::DecideArgs),
    /// Convert Istio AuthorizationPolicy and RequestAuthentication YAML into
    /// meshward policies, one per workload, with a per-field report.
    #[command(after_help = EXIT_CODES)]
    Import(import::ImportArgs),
    /// Create an Ed25519 policy signing key; prints the public key (base64).
    #[command(after_help = EXIT_CODES)]
    Keygen(rollout::KeygenArgs),
    /// Pack a plugin configuration into a signed, revisioned bundle for
    /// fleet distribution (`bundle verify FILE`: check one).
    #[command(after_help = EXIT_CODES)]
    Bundle(bundle::BundleArgs),
    /// Format policy source canonically (indentation, spacing, blank lines;
    /// comments kept).
    #[command(after_help = EXIT_CODES)]
    Fmt(authoring::FmtArgs),
    /// Print a shell completion script (e.g. `meshward completions bash >
    /// /etc/bash_completion.d/meshward`).
    #[command(after_help = EXIT_CODES)]
    Completions(authoring::CompletionsArgs),
    /// Print a generated policy with N rules (for size and speed measurements).
    #[command(hide = true)]
    GenBench {
        /// How many rules.
        #[arg(long)]
        rules: usize,
        /// Print compiled size statistics instead of the source.
        #[arg(long)]
        stats: bool,
    },
}

/// `explain`: what the request carries besides its mTLS peer.
#[derive(Debug, Default, clap::Args)]
struct IdentityArgs {
    /// The verified subject of a JWT-SVID the request carries.
    #[arg(long = "jwt-svid", value_name = "SPIFFE_ID")]
    jwt_svid: Option<String>,
    /// The subject of an end-user token verified at this hop.
    #[arg(long, value_name = "SUB")]
    user: Option<String>,
    /// A scope of that user; repeatable.
    #[arg(long = "scope", value_name = "S", requires = "user")]
    scopes: Vec<String>,
    /// The issuer of that user's token.
    #[arg(long, value_name = "I", requires = "user")]
    issuer: Option<String>,
    /// A claim of that user's token `name=value`; repeatable (several values
    /// of one name form a list).
    #[arg(long = "claim", value_name = "NAME=VALUE", requires = "user")]
    claims: Vec<String>,
    /// The caller chain the peer sent: hops from the origin to the peer.
    #[arg(long, value_name = "ID,ID,...", value_delimiter = ',')]
    chain: Vec<String>,
    /// The chain's purpose (the intent where it started).
    #[arg(long, value_name = "NAME")]
    purpose: Option<String>,
    /// The chain lost earlier hops on the way.
    #[arg(long)]
    incomplete: bool,
    /// The end user carried in the chain.
    #[arg(long = "chain-user", value_name = "SUB")]
    chain_user: Option<String>,
    /// A scope of the chain's user; repeatable.
    #[arg(long = "chain-scope", value_name = "S", requires = "chain_user")]
    chain_scopes: Vec<String>,
}

/// Parses the process arguments and runs the command.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() {
                Exit::Usage.into()
            } else {
                Exit::Ok.into() // --help, --version
            };
        }
    };
    commands::run(cli.command).into()
}
