//! The command line: argument parsing (clap derive) and dispatch.

mod commands;

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
  4  `explain`: the decision is deny";

/// meshward: workload zero trust for the service mesh. Checks and compiles
/// identity policies for the meshward Envoy filter, and answers what the
/// filter would decide.
#[derive(Debug, Parser)]
#[command(name = "meshward", version, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
enum Format {
    /// Human-readable text.
    #[default]
    Text,
    /// One JSON document on stdout.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a policy and report every error and warning.
    #[command(after_help = EXIT_CODES)]
    Check {
        /// The policy file.
        file: PathBuf,
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
        /// A revoked certificate serial number (hex); repeatable.
        #[arg(long = "revoked-serial", value_name = "HEX")]
        revoked_serials: Vec<String>,
        /// Write the configuration as compact JSON (default: pretty).
        #[arg(long)]
        compact: bool,
        /// Summary format (`json`: hash, rule count and size on stdout).
        #[arg(long, value_enum, default_value_t)]
        format: Format,
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
