//! Safe rollout: `meshward replay`, `meshward diff`, `meshward graph`,
//! `meshward keygen`, and signing for `meshward compile --sign`.

use std::io::{BufRead, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::ValueEnum;
use meshward_policy::graph::Graph;
use meshward_policy::replay::{self, FailOn, ReplayOptions};
use meshward_policy::{compile_source, diff, signing, Compiled};

use super::{Exit, Format};

/// `replay --fail-on`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub(super) enum FailOnArg {
    /// Exit 5 when a recorded allow would become a deny.
    #[default]
    AllowToDeny,
    /// Exit 5 when a recorded allow would become a deny that the recorded
    /// dry-run outcome (`would`) did not predict.
    UnexpectedDeny,
    /// Exit 5 when any decision (or dry-run outcome) would change.
    AnyChange,
    /// Never fail on changes (report only).
    Never,
}

/// `meshward replay`.
#[derive(Debug, clap::Args)]
pub(super) struct ReplayArgs {
    /// The policy to replay against (the new version).
    #[arg(long, value_name = "NEW.policy")]
    policy: PathBuf,
    /// The audit log: one JSON audit record per line, or raw Envoy log lines
    /// holding `meshward.audit {json}` (`-` = stdin).
    #[arg(long, value_name = "AUDIT.jsonl")]
    log: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// Which changes make the command exit 5.
    #[arg(long, value_enum, default_value_t)]
    fail_on: FailOnArg,
    /// Example lines shown per group of changes.
    #[arg(long, value_name = "N", default_value_t = 3)]
    examples: usize,
}

/// `meshward diff`.
#[derive(Debug, clap::Args)]
pub(super) struct DiffArgs {
    /// The current policy.
    old: PathBuf,
    /// The proposed policy.
    new: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// Exit 5 when the policies differ semantically (like `git diff --exit-code`).
    #[arg(long)]
    exit_code: bool,
}

/// `graph --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub(super) enum GraphFormat {
    /// Graphviz DOT.
    #[default]
    Dot,
    /// A self-contained HTML page with an SVG drawing (no network, no Graphviz).
    Html,
    /// The SVG drawing alone.
    Svg,
    /// The nodes and edges as JSON (`docs/schema/graph.json`).
    Json,
}

/// `meshward graph`.
#[derive(Debug, clap::Args)]
pub(super) struct GraphArgs {
    /// The policy file.
    file: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: GraphFormat,
    /// Where to write it (default: stdout).
    #[arg(short, long, value_name = "OUT")]
    output: Option<PathBuf>,
}

/// `meshward keygen`.
#[derive(Debug, clap::Args)]
pub(super) struct KeygenArgs {
    /// The private key file to create (PKCS#8 PEM, mode 0600).
    #[arg(short, long, value_name = "KEY")]
    output: PathBuf,
    /// Replace an existing file.
    #[arg(long)]
    force: bool,
    /// Output format (`json`: key id and public key on stdout).
    #[arg(long, value_enum, default_value_t)]
    format: Format,
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

fn print_json(value: &serde_json::Value) -> Result<(), String> {
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    out(&format!("{text}\n"))
}

/// Compiles a policy file; on errors prints them (stderr, or stdout as the
/// `command`'s JSON) and returns `None`.
fn compile_quiet(
    file: &Path,
    format: Format,
    command: &str,
) -> Result<Option<(String, Compiled)>, String> {
    let source = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read `{}`: {e}", file.display()))?;
    match compile_source(&source, &file.display().to_string()) {
        Ok(compiled) => Ok(Some((source, compiled))),
        Err(diagnostics) => {
            match format {
                Format::Text => err(&diagnostics.to_string()),
                Format::Json => {
                    print_json(&super::commands::policy_errors_json(&diagnostics, command))?
                }
            }
            Ok(None)
        }
    }
}

/// A progress line on stderr, redrawn at most every 100 ms.
struct Progress {
    started: Instant,
    last: Instant,
    total_bytes: Option<u64>,
    shown: bool,
}

impl Progress {
    fn update(&mut self, lines: u64, bytes: u64) {
        let now = Instant::now();
        if now.duration_since(self.last) < Duration::from_millis(100) {
            return;
        }
        self.last = now;
        let rate = lines as f64 / now.duration_since(self.started).as_secs_f64().max(1e-3);
        let bar = match self.total_bytes {
            Some(total) if total > 0 => {
                let fraction = (bytes as f64 / total as f64).clamp(0.0, 1.0);
                let filled = (fraction * 30.0).round() as usize;
                format!(
                    "[{}{}] {:>3.0}% ",
                    "#".repeat(filled),
                    ".".repeat(30usize.saturating_sub(filled)),
                    fraction * 100.0
                )
            }
            _ => String::new(),
        };
        err(&format!(
            "\r\x1b[2Kreplaying {bar}{lines} lines, {rate:.0} lines/s"
        ));
        self.shown = true;
    }

    fn finish(&self) {
        if self.shown {
            err("\r\x1b[2K");
        }
    }
}

pub(super) fn replay_command(args: &ReplayArgs) -> CliResult {
    let Some((_, compiled)) = compile_quiet(&args.policy, args.format, "replay")? else {
        return Ok(Exit::PolicyErrors);
    };
    // Through the compiled bytes, exactly as the filter loads them.
    let policy = compiled
        .load()
        .map_err(|e| format!("internal error: {e}"))?;
    let from_stdin = args.log == Path::new("-");
    let (reader, total_bytes): (Box<dyn BufRead>, Option<u64>) = if from_stdin {
        (Box::new(std::io::stdin().lock()), None)
    } else {
        let file = std::fs::File::open(&args.log)
            .map_err(|e| format!("cannot read `{}`: {e}", args.log.display()))?;
        let size = file
            .metadata()
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len());
        (
            Box::new(std::io::BufReader::with_capacity(256 * 1024, file)),
            size,
        )
    };
    let options = ReplayOptions {
        examples: args.examples,
        ..ReplayOptions::default()
    };
    let started = Instant::now();
    let mut progress = Progress {
        started,
        last: started,
        total_bytes,
        shown: false,
    };
    let on_terminal = std::io::stderr().is_terminal();
    let report = replay::replay(&policy, reader, &options, &mut |lines, bytes| {
        if on_terminal {
            progress.update(lines, bytes);
        }
    })
    .map_err(|e| format!("cannot read `{}`: {e}", args.log.display()))?;
    progress.finish();
    let elapsed = started.elapsed().as_secs_f64();
    err(&format!(
        "replayed {} lines in {elapsed:.2} s ({:.0} lines/s)\n",
        report.lines,
        report.lines as f64 / elapsed.max(1e-6)
    ));
    let log = args.log.display().to_string();
    let policy_file = args.policy.display().to_string();
    let fail_on = match args.fail_on {
        FailOnArg::AllowToDeny => FailOn::AllowToDeny,
        FailOnArg::UnexpectedDeny => FailOn::UnexpectedDeny,
        FailOnArg::AnyChange => FailOn::AnyChange,
        FailOnArg::Never => FailOn::Never,
    };
    let fails = report.fails(fail_on);
    match args.format {
        Format::Text => out(&report.to_text(&log, &policy_file))?,
        Format::Json => {
            let mut json = report.to_json(&log, &policy_file);
            if let Some(object) = json.as_object_mut() {
                object.insert(
                    "fail_on".to_owned(),
                    serde_json::json!(args
                        .fail_on
                        .to_possible_value()
                        .map(|v| v.get_name().to_owned())),
                );
                object.insert("failed".to_owned(), serde_json::json!(fails));
                object.insert("command".to_owned(), serde_json::json!("replay"));
            }
            print_json(&json)?;
        }
    }
    Ok(if fails { Exit::Changes } else { Exit::Ok })
}

pub(super) fn diff_command(args: &DiffArgs) -> CliResult {
    let Some((_, old)) = compile_quiet(&args.old, args.format, "diff")? else {
        return Ok(Exit::PolicyErrors);
    };
    let Some((_, new)) = compile_quiet(&args.new, args.format, "diff")? else {
        return Ok(Exit::PolicyErrors);
    };
    let changes = diff::diff(&old, &new);
    let (old_name, new_name) = (
        args.old.display().to_string(),
        args.new.display().to_string(),
    );
    match args.format {
        Format::Text => out(&changes.to_text(&old_name, &new_name))?,
        Format::Json => {
            let mut json = changes.to_json(&old_name, &new_name);
            if let Some(object) = json.as_object_mut() {
                object.insert("command".to_owned(), serde_json::json!("diff"));
            }
            print_json(&json)?;
        }
    }
    Ok(if args.exit_code && !changes.is_empty() {
        Exit::Changes
    } else {
        Exit::Ok
    })
}

pub(super) fn graph_command(args: &GraphArgs) -> CliResult {
    let format = match args.format {
        GraphFormat::Json => Format::Json,
        GraphFormat::Dot | GraphFormat::Html | GraphFormat::Svg => Format::Text,
    };
    let Some((source, compiled)) = compile_quiet(&args.file, format, "graph")? else {
        return Ok(Exit::PolicyErrors);
    };
    let graph = Graph::new(&source, &compiled);
    let text = match args.format {
        GraphFormat::Dot => graph.to_dot(),
        GraphFormat::Html => graph.to_html(),
        GraphFormat::Svg => graph.to_svg(),
        GraphFormat::Json => {
            let json = super::commands::with_policy_fields(
                graph_json(&graph, &args.file),
                "graph",
                &compiled,
            );
            let mut text = serde_json::to_string_pretty(&json).map_err(|e| e.to_string())?;
            text.push('\n');
            text
        }
    };
    match &args.output {
        None => out(&text)?,
        Some(path) if path == Path::new("-") => out(&text)?,
        Some(path) => std::fs::write(path, &text)
            .map_err(|e| format!("cannot write `{}`: {e}", path.display()))?,
    }
    Ok(Exit::Ok)
}

pub(super) fn keygen_command(args: &KeygenArgs) -> CliResult {
    let key = signing::generate_key()?;
    signing::write_private_key(&args.output, &key, args.force)?;
    match args.format {
        Format::Text => {
            err(&format!(
                "wrote private key `{}` (Ed25519, PKCS#8 PEM, mode 0600; key id {}); the public key follows on stdout: list it in `require_signature.keys`\n",
                args.output.display(),
                signing::key_id(&key)
            ));
            out(&format!("{}\n", signing::public_key_base64(&key)))?;
        }
        Format::Json => print_json(&serde_json::json!({
            "command": "keygen",
            "output": args.output.display().to_string(),
            "algorithm": "ed25519",
            "key_id": signing::key_id(&key),
            "public_key": signing::public_key_base64(&key),
        }))?,
    }
    Ok(Exit::Ok)
}

/// `graph --format json`: the drawing's nodes and edges.
fn graph_json(graph: &Graph, file: &Path) -> serde_json::Value {
    use meshward_policy::graph::Column;
    serde_json::json!({
        "file": file.display().to_string(),
        "policy_name": graph.name,
        "dry_run": graph.dry_run,
        "nodes": graph.nodes.iter().map(|n| serde_json::json!({
            "id": n.id,
            "column": match n.column {
                Column::Who => "subject",
                Column::What => "intent",
                Column::Where => "service",
            },
            "label": n.label,
            "detail": n.detail,
        })).collect::<Vec<_>>(),
        "edges": graph.edges.iter().map(|e| serde_json::json!({
            "from": e.from,
            "to": e.to,
            "effect": e.effect.map(|e| e.as_str()),
            "dry_run": e.dry_run,
            "rules": e.rules,
        })).collect::<Vec<_>>(),
    })
}

/// Adds the signature by the key in `key_file` to a plugin configuration.
pub(super) fn sign(
    config: &mut serde_json::Value,
    compiled: &Compiled,
    key_file: &Path,
) -> Result<String, String> {
    let (key, warning) = signing::read_private_key(key_file)?;
    if let Some(warning) = warning {
        err(&format!("warning: {warning}\n"));
    }
    signing::sign_config(config, compiled, &key);
    Ok(signing::key_id(&key))
}
