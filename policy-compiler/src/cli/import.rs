//! `meshward import istio`: convert Istio AuthorizationPolicy and
//! RequestAuthentication manifests into meshward policies.

use std::path::PathBuf;

use meshward_policy::import::{import_istio, ImportOptions, Input};

use super::{Exit, Format};

/// What `meshward import` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ImportSource {
    /// Istio AuthorizationPolicy and RequestAuthentication YAML (many
    /// documents per file).
    Istio,
}

/// `meshward import istio`: one meshward policy per workload, and a
/// per-field report of everything not converted exactly.
#[derive(Debug, clap::Args)]
pub(super) struct ImportArgs {
    /// What the files are.
    #[arg(value_enum)]
    source: ImportSource,
    /// The manifests (`-` = stdin).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Fail (exit 1, nothing written) when anything is not converted exactly.
    #[arg(long)]
    strict: bool,
    /// Report format (`json`: policies, token settings and findings on stdout).
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// A directory to write `<workload>.policy` and `<workload>.tokens.json`
    /// into (default: the policies on stdout, the report on stderr).
    #[arg(short, long, value_name = "OUT")]
    output: Option<PathBuf>,
    /// Istio's root namespace (mesh-wide policies).
    #[arg(long, value_name = "NS", default_value = "istio-system")]
    root_namespace: String,
    /// The trust domain for namespaces when no principal names one.
    #[arg(long, value_name = "TD", default_value = "cluster.local")]
    trust_domain: String,
}

fn read_input(file: &PathBuf) -> Result<Input, String> {
    let name = file.display().to_string();
    let text = if name == "-" {
        std::io::read_to_string(std::io::stdin()).map_err(|e| format!("cannot read stdin: {e}"))?
    } else {
        std::fs::read_to_string(file).map_err(|e| format!("cannot read `{name}`: {e}"))?
    };
    Ok(Input { name, text })
}

pub(super) fn import(args: &ImportArgs) -> Result<Exit, String> {
    let ImportSource::Istio = args.source;
    let inputs = args
        .files
        .iter()
        .map(read_input)
        .collect::<Result<Vec<_>, _>>()?;
    let options = ImportOptions {
        root_namespace: args.root_namespace.clone(),
        trust_domain: args.trust_domain.clone(),
    };
    let result = import_istio(&inputs, &options).map_err(|e| e.to_string())?;
    let failed = args.strict && result.strict_failures() > 0;
    if !failed {
        if let Some(dir) = &args.output {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
            for policy in &result.policies {
                let path = dir.join(&policy.file_name);
                std::fs::write(&path, &policy.source)
                    .map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
                if let Some(tokens) = &policy.token_settings {
                    let path = dir.join(policy.file_name.replace(".policy", ".tokens.json"));
                    let text = serde_json::to_string_pretty(tokens).map_err(|e| e.to_string())?;
                    std::fs::write(&path, format!("{text}\n"))
                        .map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
                }
            }
        }
    }
    match args.format {
        Format::Json => {
            let mut value = result.to_json();
            if let Some(object) = value.as_object_mut() {
                object.insert("ok".to_owned(), serde_json::Value::Bool(!failed));
            }
            super::commands::print_json(&value)?;
        }
        Format::Text => {
            if args.output.is_none() && !failed {
                let mut text = String::new();
                for policy in &result.policies {
                    text.push_str(&format!(
                        "# ==> {} <==\n{}",
                        policy.file_name, policy.source
                    ));
                    if let Some(tokens) = &policy.token_settings {
                        let json =
                            serde_json::to_string_pretty(tokens).map_err(|e| e.to_string())?;
                        text.push_str(&format!(
                            "# ==> {} <==\n{json}\n",
                            policy.file_name.replace(".policy", ".tokens.json")
                        ));
                    }
                }
                super::commands::out(&text)?;
                super::commands::err(&result.report_text());
            } else {
                super::commands::out(&result.report_text())?;
            }
            if failed {
                super::commands::err(&format!(
                    "error: --strict: {} finding(s); nothing written\n",
                    result.strict_failures()
                ));
            }
        }
    }
    Ok(if failed { Exit::PolicyErrors } else { Exit::Ok })
}
