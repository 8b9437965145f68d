//! One function per subcommand: read input, call the library, print, and
//! choose the exit code.

use std::io::Write as _;
use std::path::Path;
use std::time::Instant;

use meshward_engine::config::FilterConfig;
use meshward_engine::identity::normalize_serial;
use meshward_engine::identity::ClaimPath;
use meshward_engine::model::Effect;
use meshward_engine::spiffe::SpiffeId;
use meshward_policy::{compile_source, compile_with_settings};
use meshward_policy::{explain_why_not, generate, jwt_svid_from_text, peer_from_text};
use meshward_policy::{run_tests, ClaimValue, Compiled, Diagnostics};
use meshward_policy::{SampleChain, SampleRequest, SampleUser};
use serde_json::json;

use super::{Command, Exit, Format, IdentityArgs};

pub(super) fn run(command: Command) -> Exit {
    let result = match command {
        Command::Check {
            files,
            format,
            deny_warnings,
        } => super::authoring::check(&files, format, deny_warnings),
        Command::Fmt(args) => super::authoring::fmt(&args),
        Command::Completions(args) => super::authoring::completions(&args),
        Command::Compile {
            file,
            output,
            settings,
            revoked_serials,
            compact,
            format,
            sign,
        } => compile(
            &file,
            settings.as_deref(),
            &output,
            &revoked_serials,
            compact,
            format,
            sign.as_deref(),
        ),
        Command::Explain {
            file,
            peer,
            method,
            path,
            host,
            headers,
            identity,
            why_not,
            format,
        } => headers
            .iter()
            .map(|h| parse_header(h))
            .collect::<Result<Vec<_>, _>>()
            .and_then(|headers| {
                let mut request = SampleRequest::new(peer_arg(&peer)?, method, path);
                request.authority = host;
                request.headers = headers;
                with_identity(request, &identity)
            })
            .and_then(|request| explain_request(&file, &request, why_not.as_deref(), format)),
        Command::Test { file, format } => test(&file, format),
        Command::GenBench { rules, stats } => gen_bench(rules, stats),
        Command::Istio(args) => super::deploy::istio(&args),
        Command::Oci(args) => super::deploy::oci(&args),
        Command::Replay(args) => super::rollout::replay_command(&args),
        Command::Diff(args) => super::rollout::diff_command(&args),
        Command::Graph(args) => super::rollout::graph_command(&args),
        Command::Keygen(args) => super::rollout::keygen_command(&args),
        Command::Bundle(args) => super::bundle::bundle_command(&args),
        Command::Decide(args) => super::decide::decide_command(&args),
        Command::Import(args) => super::import::import(&args),
    };
    result.unwrap_or_else(|message| {
        err(&format!("error: {message}\n"));
        Exit::Usage
    })
}

/// A failure that is the caller's or the system's, not the policy's (exit 2).
pub(super) type CliResult = Result<Exit, String>;

/// `--peer`: a SPIFFE ID, or `none` for a connection without a client
/// certificate. Anything else is a usage error: a certificate with such a
/// URI SAN is a filter-side deny, but on the command line it is a typo.
fn peer_arg(text: &str) -> Result<Result<SpiffeId, meshward_engine::Reason>, String> {
    match peer_from_text(text) {
        Ok(id) => Ok(Ok(id)),
        Err(meshward_engine::Reason::NoPeerCertificate) => {
            Ok(Err(meshward_engine::Reason::NoPeerCertificate))
        }
        Err(_) => Err(format!(
            "--peer `{text}` is not a SPIFFE ID (spiffe://trust-domain/path) or `none`: {}",
            SpiffeId::parse(text)
                .err()
                .map_or_else(String::new, |e| e.to_string())
        )),
    }
}

fn read(file: &Path) -> Result<String, String> {
    std::fs::read_to_string(file).map_err(|e| format!("cannot read `{}`: {e}", file.display()))
}

/// Writes to stdout. A closed pipe (`meshward ... | head`) is not an error.
pub(super) fn out(text: &str) -> Result<(), String> {
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(format!("cannot write to stdout: {e}"))
        }
        _ => Ok(()),
    }
}

/// Writes to stderr; there is nowhere left to report a failure to.
pub(super) fn err(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

pub(super) fn print_json(value: &serde_json::Value) -> Result<(), String> {
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    out(&format!("{text}\n"))
}

/// Compiles `file`; on policy errors reports them (stderr, or stdout as JSON)
/// and returns `None`.
fn compile_file(file: &Path, format: Format, command: &str) -> Result<Option<Compiled>, String> {
    let source = read(file)?;
    match compile_source(&source, &file.display().to_string()) {
        Ok(compiled) => {
            if format == Format::Text && !compiled.warnings.is_empty() {
                err(&compiled.warnings.to_string());
            }
            Ok(Some(compiled))
        }
        Err(diagnostics) => {
            report(&diagnostics, format, command)?;
            Ok(None)
        }
    }
}

/// [`compile_file`] with the identity settings from `settings`; each
/// file's diagnostics are reported against its own source.
fn compile_file_with_settings(
    file: &Path,
    settings: &Path,
    format: Format,
    command: &str,
) -> Result<Option<Compiled>, String> {
    let source = read(file)?;
    let settings_source = read(settings)?;
    match compile_with_settings(
        &source,
        &file.display().to_string(),
        &settings_source,
        &settings.display().to_string(),
    ) {
        Ok(compiled) => {
            if format == Format::Text {
                for warnings in [
                    Some(&compiled.warnings),
                    compiled.settings_warnings.as_ref(),
                ]
                .into_iter()
                .flatten()
                .filter(|w| !w.is_empty())
                {
                    err(&warnings.to_string());
                }
            }
            Ok(Some(compiled))
        }
        Err(errors) => {
            match format {
                Format::Text => {
                    for diagnostics in [&errors.policy, &errors.settings] {
                        if !diagnostics.is_empty() {
                            err(&diagnostics.to_string());
                        }
                    }
                }
                // One document: each diagnostic names its own file.
                Format::Json => {
                    let mut value = policy_errors_json(&errors.policy, command);
                    let settings = policy_errors_json(&errors.settings, command);
                    for list in ["errors", "warnings"] {
                        if let (Some(all), Some(more)) = (
                            value.get_mut(list).and_then(|v| v.as_array_mut()),
                            settings.get(list).and_then(|v| v.as_array()),
                        ) {
                            all.extend(more.iter().cloned());
                        }
                    }
                    if let Some(object) = value.as_object_mut() {
                        let errors_total =
                            errors.policy.error_count() + errors.settings.error_count();
                        let warnings_total =
                            errors.policy.warning_count() + errors.settings.warning_count();
                        object.insert("error_count".to_owned(), json!(errors_total));
                        object.insert("warning_count".to_owned(), json!(warnings_total));
                        object.insert("ok".to_owned(), json!(false));
                    }
                    print_json(&value)?;
                }
            }
            Ok(None)
        }
    }
}

fn report(diagnostics: &Diagnostics, format: Format, command: &str) -> Result<(), String> {
    match format {
        Format::Text => {
            err(&diagnostics.to_string());
            Ok(())
        }
        Format::Json => print_json(&policy_errors_json(diagnostics, command)),
    }
}

/// The JSON document of a command whose policy does not compile: the
/// diagnostics (`docs/schema/policy-errors.json`).
pub(super) fn policy_errors_json(diagnostics: &Diagnostics, command: &str) -> serde_json::Value {
    let mut value = diagnostics.to_json();
    if let Some(object) = value.as_object_mut() {
        object.insert("command".to_owned(), json!(command));
    }
    value
}

/// Adds the fields every JSON document of a command on a compiled policy
/// carries: `command`, `policy_hash`, `warning_count`, `warnings`.
pub(super) fn with_policy_fields(
    mut value: serde_json::Value,
    command: &str,
    compiled: &Compiled,
) -> serde_json::Value {
    if let Some(object) = value.as_object_mut() {
        object.insert("command".to_owned(), json!(command));
        object.insert("policy_hash".to_owned(), json!(compiled.hash_hex()));
        object.insert(
            "warning_count".to_owned(),
            json!(compiled.warnings.warning_count()),
        );
        object.insert(
            "warnings".to_owned(),
            meshward_policy::diagnostics::warnings_json(&compiled.warnings),
        );
    }
    value
}

fn compile(
    file: &Path,
    settings: Option<&Path>,
    output: &Path,
    revoked_serials: &[String],
    compact: bool,
    format: Format,
    sign: Option<&Path>,
) -> CliResult {
    let serials = revoked_serials
        .iter()
        .map(|s| {
            normalize_serial(s)
                .ok_or_else(|| format!("revoked serial `{s}` is not a hexadecimal serial number"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let compiled = match settings {
        None => compile_file(file, format, "compile")?,
        Some(settings) => compile_file_with_settings(file, settings, format, "compile")?,
    };
    let Some(compiled) = compiled else {
        return Ok(Exit::PolicyErrors);
    };
    let mut config = compiled.plugin_config_value(&serials);
    // The filter must accept what compile writes (a broken configuration
    // fails closed in Envoy, denying everything).
    FilterConfig::from_json(config.to_string().as_bytes())
        .map_err(|e| format!("internal error: the filter would refuse this configuration: {e}"))?;
    let signed_by = match sign {
        Some(key) => Some(super::rollout::sign(&mut config, &compiled, key)?),
        None => None,
    };
    let mut text = if compact {
        config.to_string()
    } else {
        serde_json::to_string_pretty(&config).map_err(|e| e.to_string())?
    };
    text.push('\n');
    let to_stdout = output == Path::new("-");
    if to_stdout {
        out(&text)?;
    } else {
        std::fs::write(output, &text)
            .map_err(|e| format!("cannot write `{}`: {e}", output.display()))?;
    }
    let summary = with_policy_fields(
        json!({
            "file": file.display().to_string(),
            "output": output.display().to_string(),
            "intent_count": compiled.policy.intents.len(),
            "rule_count": compiled.policy.rules.len(),
            "policy_bytes": compiled.bytes.len(),
            "config_bytes": text.len(),
            "signed_by": signed_by,
        }),
        "compile",
        &compiled,
    );
    match (format, to_stdout) {
        (Format::Json, false) => print_json(&summary)?,
        // The configuration itself went to stdout: keep it clean.
        (Format::Json, true) => err(&format!("{summary}\n")),
        (Format::Text, _) => err(&format!(
            "compiled `{}`: {} rules, {} intents, {} bytes, sha256 {}{} -> {}\n",
            file.display(),
            compiled.policy.rules.len(),
            compiled.policy.intents.len(),
            compiled.bytes.len(),
            compiled.hash_hex(),
            signed_by
                .as_ref()
                .map_or_else(String::new, |id| format!(", signed by key {id}")),
            output.display()
        )),
    }
    Ok(Exit::Ok)
}

fn parse_header(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_ascii_lowercase(), value.to_owned()))
        }
        _ => Err(format!("header `{text}` is not `name=value`")),
    }
}

/// Adds the `explain` token, user and chain flags to `request`.
fn with_identity(
    mut request: SampleRequest,
    identity: &IdentityArgs,
) -> Result<SampleRequest, String> {
    request.jwt_svid = identity.jwt_svid.as_deref().map(jwt_svid_from_text);
    if let Some(subject) = &identity.user {
        let mut user = SampleUser {
            subject: subject.clone(),
            issuer: identity.issuer.clone(),
            scopes: identity.scopes.clone(),
            claims: Vec::new(),
        };
        for claim in &identity.claims {
            let (name, value) = claim
                .split_once('=')
                .filter(|(name, _)| !name.is_empty())
                .ok_or_else(|| format!("claim `{claim}` is not `name=value`"))?;
            // Keyed by the canonical path, as the filter keys a token's claims.
            let path = ClaimPath::parse(name)
                .map_err(|e| format!("claim `{name}` is not a valid claim path: {e}"))?;
            let name = path.as_str();
            match user.claims.iter_mut().find(|(n, _)| n == name) {
                // Several values of one name form a list.
                Some((_, ClaimValue::List(values))) => values.push(value.to_owned()),
                Some((_, existing)) => {
                    if let ClaimValue::Str(first) = existing {
                        *existing = ClaimValue::List(vec![first.clone(), value.to_owned()]);
                    }
                }
                None => user
                    .claims
                    .push((name.to_owned(), ClaimValue::Str(value.to_owned()))),
            }
        }
        request.user = Some(Ok(user));
    }
    let has_chain = !identity.chain.is_empty()
        || identity.purpose.is_some()
        || identity.incomplete
        || identity.chain_user.is_some();
    if has_chain {
        let hops = identity
            .chain
            .iter()
            .map(|hop| {
                SpiffeId::parse(hop)
                    .map_err(|e| format!("chain hop `{hop}` is not a SPIFFE ID: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        request.chain = Some(SampleChain {
            hops,
            incomplete: identity.incomplete,
            purpose: identity.purpose.clone(),
            user: identity.chain_user.clone(),
            scopes: identity.chain_scopes.clone(),
        });
    }
    request.validate()?;
    Ok(request)
}

fn explain_request(
    file: &Path,
    request: &SampleRequest,
    why_not: Option<&str>,
    format: Format,
) -> CliResult {
    let Some(compiled) = compile_file(file, format, "explain")? else {
        return Ok(Exit::PolicyErrors);
    };
    let outcome = explain_why_not(&compiled, request, why_not)?;
    let peer = match &request.peer {
        Ok(id) => id.to_string(),
        Err(reason) => format!("none ({})", reason.code()),
    };
    match format {
        Format::Json => {
            let mut value = outcome.to_json();
            let request_json = json!({
                "peer": peer,
                "method": request.method,
                "path": request.path,
                "host": request.authority,
                "headers": request.headers.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
                "jwt_svid": request.jwt_svid.as_ref().map(|token| match token {
                    Ok(id) => json!(id.as_str()),
                    Err(reason) => json!({ "refused": reason.code() }),
                }),
                "user": request.user.as_ref().map(|user| match user {
                    Ok(user) => json!({
                        "subject": user.subject,
                        "issuer": user.issuer,
                        "scopes": user.scopes,
                        "claims": user.claims.iter().map(|(name, value)| {
                            let value = match value {
                                ClaimValue::Str(s) => json!(s),
                                ClaimValue::List(items) => json!(items),
                            };
                            (name.clone(), value)
                        }).collect::<serde_json::Map<_, _>>(),
                    }),
                    Err(reason) => json!({ "refused": reason.code() }),
                }),
                "chain": request.chain.as_ref().map(|chain| json!({
                    "hops": chain.hops.iter().map(SpiffeId::as_str).collect::<Vec<_>>(),
                    "complete": !chain.incomplete,
                    "purpose": chain.purpose,
                    "user": chain.user,
                    "scopes": chain.scopes,
                })),
            });
            if let Some(object) = value.as_object_mut() {
                object.insert("request".to_owned(), request_json);
            }
            print_json(&with_policy_fields(value, "explain", &compiled))?;
        }
        Format::Text => {
            let host = if request.authority.is_empty() {
                String::new()
            } else {
                format!(" host {}", request.authority)
            };
            let mut credentials = String::new();
            match &request.jwt_svid {
                Some(Ok(id)) => credentials.push_str(&format!(", JWT-SVID {id}")),
                Some(Err(reason)) => {
                    credentials.push_str(&format!(", JWT-SVID refused ({})", reason.code()))
                }
                None => {}
            }
            match &request.user {
                Some(Ok(user)) => credentials.push_str(&format!(", user `{}`", user.subject)),
                Some(Err(reason)) => {
                    credentials.push_str(&format!(", user token refused ({})", reason.code()))
                }
                None => {}
            }
            out(&format!(
                "request:  {} {}{host} from {peer}{credentials}\n{outcome}",
                request.method, request.path
            ))?;
        }
    }
    Ok(match outcome.effect {
        Effect::Allow => Exit::Ok,
        Effect::Deny => Exit::Denied,
    })
}

fn test(file: &Path, format: Format) -> CliResult {
    let Some(compiled) = compile_file(file, format, "test")? else {
        return Ok(Exit::PolicyErrors);
    };
    let report = run_tests(&compiled).map_err(|e| format!("internal error: {e}"))?;
    match format {
        Format::Json => print_json(&with_policy_fields(report.to_json(), "test", &compiled))?,
        Format::Text => out(&report.to_string())?,
    }
    Ok(if report.failed() > 0 {
        Exit::TestsFailed
    } else {
        Exit::Ok
    })
}

fn gen_bench(rules: usize, stats: bool) -> CliResult {
    let source = generate::generate_policy(rules);
    if !stats {
        out(&source)?;
        return Ok(Exit::Ok);
    }
    let started = Instant::now();
    let compiled = compile_source(&source, "gen-bench.policy")
        .map_err(|d| format!("internal error: generated policy does not compile:\n{d}"))?;
    let elapsed = started.elapsed();
    let config = compiled.plugin_config_json(&[]);
    print_json(&json!({
        "rules": compiled.policy.rules.len(),
        "intents": compiled.policy.intents.len(),
        "strings": compiled.policy.strings.len(),
        "source_bytes": source.len(),
        "bytes": compiled.bytes.len(),
        "bytes_per_rule": compiled.bytes.len() as f64 / rules.max(1) as f64,
        "config_bytes": config.len(),
        "compile_ms": elapsed.as_secs_f64() * 1000.0,
    }))?;
    Ok(Exit::Ok)
}
