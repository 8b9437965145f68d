//! Writing policies: `meshward check` (several files, or stdin), `meshward
//! fmt` and `meshward completions`.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use clap::CommandFactory as _;
use meshward_policy::fmt::format_source;
use meshward_policy::{compile_source, Diagnostics};
use serde_json::json;

use super::commands::{err, out, print_json, CliResult};
use super::{Cli, Exit, Format};

/// The name `-` (stdin) has in messages and JSON.
const STDIN_NAME: &str = "<stdin>";

/// `meshward fmt`.
#[derive(Debug, clap::Args)]
pub(super) struct FmtArgs {
    /// The policy files to format in place (none, or `-`: stdin to stdout).
    #[arg(value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Write nothing; list the files that are not formatted and exit 5 if any.
    #[arg(long)]
    check: bool,
    /// Output format (`json`: one report on stdout).
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

/// `meshward completions`.
#[derive(Debug, clap::Args)]
pub(super) struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

/// One input: a file, or stdin for `-`.
struct Input {
    name: String,
    path: Option<PathBuf>,
    source: String,
}

/// Reads the inputs; `-` (at most once) is stdin.
fn read_inputs(files: &[PathBuf]) -> Result<Vec<Input>, String> {
    let stdin_count = files.iter().filter(|f| is_stdin(f)).count();
    if stdin_count > 1 {
        return Err("`-` (stdin) can be given only once".to_owned());
    }
    files
        .iter()
        .map(|file| {
            if is_stdin(file) {
                let mut source = String::new();
                std::io::stdin()
                    .read_to_string(&mut source)
                    .map_err(|e| format!("cannot read stdin: {e}"))?;
                Ok(Input {
                    name: STDIN_NAME.to_owned(),
                    path: None,
                    source,
                })
            } else {
                let source = std::fs::read_to_string(file)
                    .map_err(|e| format!("cannot read `{}`: {e}", file.display()))?;
                Ok(Input {
                    name: file.display().to_string(),
                    path: Some(file.clone()),
                    source,
                })
            }
        })
        .collect()
}

fn is_stdin(file: &Path) -> bool {
    file == Path::new("-")
}

/// `meshward check FILE...`: every file's diagnostics; fails when any file
/// has errors (or warnings, with `--deny-warnings`).
pub(super) fn check(files: &[PathBuf], format: Format, deny_warnings: bool) -> CliResult {
    let inputs = read_inputs(files)?;
    let mut reports = Vec::new();
    let (mut errors, mut warnings, mut failed) = (0, 0, false);
    for input in &inputs {
        let (diagnostics, compiled) = match compile_source(&input.source, &input.name) {
            Ok(compiled) => (compiled.warnings.clone(), Some(compiled)),
            Err(diagnostics) => (diagnostics, None),
        };
        errors += diagnostics.error_count();
        warnings += diagnostics.warning_count();
        let file_failed =
            diagnostics.has_errors() || (deny_warnings && diagnostics.warning_count() > 0);
        failed |= file_failed;
        match format {
            Format::Text => {
                err(&diagnostics.to_string());
                if let (Some(compiled), false) = (&compiled, file_failed) {
                    out(&format!(
                        "ok: `{}`: policy `{}`, {} intents, {} rules, {} tests\n",
                        input.name,
                        policy_name(compiled),
                        compiled.policy.intents.len(),
                        compiled.policy.rules.len(),
                        compiled.tests.len()
                    ))?;
                }
            }
            Format::Json => {
                let mut report = diagnostics.to_json();
                if let Some(object) = report.as_object_mut() {
                    object.insert("ok".to_owned(), json!(!file_failed));
                    let policy = compiled.as_ref();
                    object.insert("policy_name".to_owned(), json!(policy.map(policy_name)));
                    object.insert(
                        "policy_hash".to_owned(),
                        json!(policy.map(|c| c.hash_hex())),
                    );
                    object.insert(
                        "intent_count".to_owned(),
                        json!(policy.map(|c| c.policy.intents.len())),
                    );
                    object.insert(
                        "rule_count".to_owned(),
                        json!(policy.map(|c| c.policy.rules.len())),
                    );
                    object.insert(
                        "test_count".to_owned(),
                        json!(policy.map(|c| c.tests.len())),
                    );
                }
                reports.push(report);
            }
        }
    }
    if format == Format::Json {
        print_json(&json!({
            "command": "check",
            "ok": !failed,
            "deny_warnings": deny_warnings,
            "error_count": errors,
            "warning_count": warnings,
            "files": reports,
        }))?;
    }
    Ok(if failed { Exit::PolicyErrors } else { Exit::Ok })
}

fn policy_name(compiled: &meshward_policy::Compiled) -> &str {
    compiled
        .policy
        .strings
        .get(compiled.policy.name.index())
        .map_or("", String::as_str)
}

/// What `fmt` did with one input.
enum Formatted {
    Unchanged,
    Changed(String),
    Invalid(Diagnostics),
}

/// `meshward fmt`.
pub(super) fn fmt(args: &FmtArgs) -> CliResult {
    let stdin = [PathBuf::from("-")];
    let files = if args.files.is_empty() {
        &stdin[..]
    } else {
        &args.files
    };
    let inputs = read_inputs(files)?;
    let mut reports = Vec::new();
    let (mut changed, mut invalid) = (0usize, false);
    for input in &inputs {
        let result = match format_source(&input.source, &input.name) {
            Ok(text) if text == input.source => Formatted::Unchanged,
            Ok(text) => Formatted::Changed(text),
            Err(diagnostics) => Formatted::Invalid(diagnostics),
        };
        let mut report = serde_json::Map::new();
        report.insert("file".to_owned(), json!(input.name));
        report.insert(
            "changed".to_owned(),
            json!(matches!(result, Formatted::Changed(_))),
        );
        report.insert(
            "ok".to_owned(),
            json!(!matches!(result, Formatted::Invalid(_))),
        );
        match &result {
            Formatted::Invalid(diagnostics) => {
                invalid = true;
                match args.format {
                    Format::Text => err(&diagnostics.to_string()),
                    Format::Json => {
                        let errors = diagnostics.to_json().get("errors").cloned();
                        report.insert("errors".to_owned(), errors.unwrap_or_default());
                    }
                }
            }
            Formatted::Changed(text) => {
                changed += 1;
                if args.check {
                    if args.format == Format::Text {
                        out(&format!("{}\n", input.name))?;
                    }
                } else if let Some(path) = &input.path {
                    std::fs::write(path, text)
                        .map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
                    if args.format == Format::Text {
                        err(&format!("formatted `{}`\n", input.name));
                    }
                }
            }
            Formatted::Unchanged => {}
        }
        // Stdin is formatted to stdout (unchanged text too).
        if input.path.is_none() && !args.check {
            let text = match &result {
                Formatted::Changed(text) => Some(text.as_str()),
                Formatted::Unchanged => Some(input.source.as_str()),
                Formatted::Invalid(_) => None,
            };
            match (args.format, text) {
                (Format::Text, Some(text)) => out(text)?,
                (Format::Json, text) => {
                    report.insert("formatted".to_owned(), json!(text));
                }
                (Format::Text, None) => {}
            }
        }
        reports.push(serde_json::Value::Object(report));
    }
    let unformatted = args.check && changed > 0;
    if args.format == Format::Json {
        print_json(&json!({
            "command": "fmt",
            "check": args.check,
            "ok": !(invalid || unformatted),
            "changed_count": changed,
            "files": reports,
        }))?;
    } else if args.check && changed > 0 {
        err(&format!(
            "{changed} file{} not formatted: run `meshward fmt` on {}\n",
            if changed == 1 { " is" } else { "s are" },
            if changed == 1 { "it" } else { "them" }
        ));
    }
    Ok(if invalid {
        Exit::PolicyErrors
    } else if args.check && changed > 0 {
        Exit::Changes
    } else {
        Exit::Ok
    })
}

/// `meshward completions SHELL`.
pub(super) fn completions(args: &CompletionsArgs) -> CliResult {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "meshward", &mut script);
    out(&String::from_utf8_lossy(&script))?;
    Ok(Exit::Ok)
}
