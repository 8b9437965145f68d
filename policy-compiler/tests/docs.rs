//! Docs that cannot rot:
//!
//! - every fenced block in README.md and docs/*.md says what it is (an info
//!   string); every ```` ```policy ```` block is a whole policy that compiles
//!   without a warning, whose own tests pass, and that `fmt` keeps the same
//!   policy; every
//!   ```` ```policy-fragment ```` block (a rule or block shown alone) parses;
//! - the README's CLI synopsis names exactly the commands and flags clap
//!   accepts;
//! - docs/configuration.md names every field of the plugin configuration
//!   (read from the configuration structs in the engine's source) and every
//!   value of its enumerations.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test crate: a failed expectation should panic loudly"
)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use meshward_policy::fmt::format_source;
use meshward_policy::{compile_source, run_tests, syntax};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(workspace().join(relative))
        .unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// The markdown files whose snippets are checked.
fn markdown_files() -> Vec<String> {
    let mut files = vec!["README.md".to_owned()];
    let mut docs: Vec<String> = std::fs::read_dir(workspace().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".md"))
        .map(|name| format!("docs/{name}"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// A fenced block: its info string, first content line (1-based) and text.
struct Block {
    info: String,
    line: usize,
    text: String,
}

fn fenced_blocks(markdown: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<Block> = None;
    for (index, line) in markdown.lines().enumerate() {
        let trimmed = line.trim_start();
        match (&mut open, trimmed.strip_prefix("```")) {
            (None, Some(info)) => {
                open = Some(Block {
                    info: info.trim().to_owned(),
                    line: index + 2,
                    text: String::new(),
                });
            }
            (Some(_), Some(_)) => blocks.extend(open.take()),
            (Some(block), None) => {
                block.text.push_str(line);
                block.text.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "an unclosed code fence");
    blocks
}

#[test]
fn policy_snippets_compile_and_their_tests_pass() {
    let (mut policies, mut fragments) = (0, 0);
    for file in markdown_files() {
        for block in fenced_blocks(&read(&file)) {
            let at = format!("{file}:{}", block.line);
            assert!(
                !block.info.is_empty(),
                "{at}: a code block without an info string (```policy, ```policy-fragment, ```text, ```sh, …)"
            );
            match block.info.as_str() {
                "policy" => {
                    let compiled = compile_source(&block.text, &at)
                        .unwrap_or_else(|d| panic!("{at}: the policy does not compile:\n{d}"));
                    assert!(
                        compiled.warnings.is_empty(),
                        "{at}: the policy has warnings:\n{}",
                        compiled.warnings
                    );
                    let report = run_tests(&compiled).unwrap();
                    assert_eq!(report.failed(), 0, "{at}: its tests fail:\n{report}");
                    // Formatting keeps it the same policy.
                    let formatted = format_source(&block.text, &at).unwrap();
                    assert_eq!(format_source(&formatted, &at).unwrap(), formatted, "{at}");
                    let reformatted = compile_source(&formatted, &at).unwrap();
                    assert_eq!(reformatted.hash_hex(), compiled.hash_hex(), "{at}");
                    policies += 1;
                }
                "policy-fragment" => {
                    let (_, errors) = syntax::parse(&block.text);
                    assert!(
                        errors.is_empty(),
                        "{at}: the fragment does not parse: {errors:#?}"
                    );
                    fragments += 1;
                }
                _ => {}
            }
        }
    }
    assert!(
        policies >= 2 && fragments >= 2,
        "{policies} policies, {fragments} fragments"
    );
}

fn meshward_help(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_meshward"))
        .args(args)
        .arg("--help")
        .output()
        .expect("run meshward");
    assert!(output.status.success(), "meshward {args:?} --help");
    String::from_utf8(output.stdout).unwrap()
}

/// The visible subcommands of `meshward --help`.
fn clap_commands() -> BTreeSet<String> {
    let help = meshward_help(&[]);
    let section = help
        .split("Commands:")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").next())
        .expect("a Commands section");
    section
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

/// A command's options as (short, long), from its `--help`.
fn clap_options(command: &str) -> Vec<(Option<String>, String)> {
    meshward_help(&[command])
        .lines()
        .map(str::trim_start)
        .filter(|line| line.starts_with('-'))
        .filter_map(|line| {
            let flags = line.split("  ").next().unwrap_or(line);
            let mut short = None;
            let mut long = None;
            for word in flags.split([',', ' ']) {
                if let Some(name) = word.strip_prefix("--") {
                    long = Some(format!("--{name}"));
                } else if word.len() == 2 && word.starts_with('-') {
                    short = Some(word.to_owned());
                }
            }
            long.map(|long| (short, long))
        })
        .filter(|(_, long)| long != "--help" && long != "--version")
        .collect()
}

/// The README synopsis: command → flags it mentions.
fn readme_synopsis() -> Vec<(String, BTreeSet<String>)> {
    let readme = read("README.md");
    let section = readme
        .split("## The CLI")
        .nth(1)
        .expect("a `## The CLI` section");
    let block = fenced_blocks(section)
        .into_iter()
        .next()
        .expect("a synopsis block");
    let mut commands: Vec<(String, BTreeSet<String>)> = Vec::new();
    for line in block.text.lines() {
        if let Some(rest) = line.strip_prefix("meshward ") {
            let name = rest.split_whitespace().next().unwrap().to_owned();
            commands.push((name, BTreeSet::new()));
        }
        let (_, flags) = commands.last_mut().expect("a line before any command");
        for word in line.split(|c: char| c.is_whitespace() || "[]|".contains(c)) {
            let word = word.split('=').next().unwrap_or(word);
            let is_long = word.starts_with("--") && word.len() > 2;
            let is_short = word.len() == 2 && word.starts_with('-') && word != "--";
            if is_long || is_short {
                flags.insert(word.trim_end_matches("...").to_owned());
            }
        }
    }
    commands
}

#[test]
fn readme_cli_synopsis_matches_clap() {
    let synopsis = readme_synopsis();
    let documented: BTreeSet<String> = synopsis.iter().map(|(c, _)| c.clone()).collect();
    assert_eq!(
        documented,
        clap_commands(),
        "README's CLI synopsis and `meshward --help` list different commands"
    );
    for (command, flags) in &synopsis {
        let options = clap_options(command);
        for flag in flags {
            assert!(
                options
                    .iter()
                    .any(|(short, long)| long == flag || short.as_deref() == Some(flag)),
                "README shows `meshward {command} {flag}`, which clap does not accept"
            );
        }
        for (short, long) in &options {
            assert!(
                flags.contains(long) || short.as_ref().is_some_and(|s| flags.contains(s)),
                "README's synopsis of `meshward {command}` does not show `{long}`"
            );
        }
    }
}

/// The field names of `struct NAME` in a Rust source (serde renames
/// applied).
fn struct_fields(source: &str, name: &str) -> Vec<String> {
    let body = item_body(source, &format!("struct {name} {{"));
    let mut fields = Vec::new();
    let mut rename: Option<String> = None;
    for line in body.lines().map(str::trim) {
        if line.starts_with("#[serde(") {
            if let Some(rest) = line.split("rename = \"").nth(1) {
                rename = rest.split('"').next().map(str::to_owned);
            }
            continue;
        }
        let line = line
            .strip_prefix("pub(crate) ")
            .or_else(|| line.strip_prefix("pub "))
            .unwrap_or(line);
        let Some((field, _)) = line.split_once(':') else {
            continue;
        };
        if !field.is_empty()
            && field
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            fields.push(rename.take().unwrap_or_else(|| field.to_owned()));
        }
    }
    assert!(!fields.is_empty(), "no fields found in `struct {name}`");
    fields
}

/// The snake_case values of `enum NAME` (unit variants).
fn enum_values(source: &str, name: &str) -> Vec<String> {
    let body = item_body(source, &format!("enum {name} {{"));
    let values: Vec<String> = body
        .lines()
        .map(str::trim)
        .filter_map(|line| line.strip_suffix(','))
        .filter(|v| v.chars().next().is_some_and(|c| c.is_ascii_uppercase()))
        .filter(|v| v.chars().all(|c| c.is_ascii_alphanumeric()))
        .map(|variant| {
            let mut snake = String::new();
            for (i, c) in variant.chars().enumerate() {
                if c.is_ascii_uppercase() && i > 0 {
                    snake.push('_');
                }
                snake.push(c.to_ascii_lowercase());
            }
            snake
        })
        .collect();
    assert!(!values.is_empty(), "no variants found in `enum {name}`");
    values
}

fn item_body<'a>(source: &'a str, header: &str) -> &'a str {
    let start = source
        .find(header)
        .unwrap_or_else(|| panic!("`{header}` not found"));
    let rest = &source[start + header.len()..];
    &rest[..rest.find("\n}").expect("item end")]
}

#[test]
fn configuration_doc_names_every_field_and_value() {
    let doc = read("docs/configuration.md");
    let config = read("filter/engine/src/config.rs");
    let revocation = read("filter/engine/src/identity/revocation.rs");
    let jwks = read("filter/engine/src/identity/jwks.rs");
    let structs: [(&str, &str); 8] = [
        (&config, "RawConfig<'a>"),
        (&config, "ChainConfig"),
        (&config, "RawJwtSvid"),
        (&config, "RawUserTokens"),
        (&config, "RawIssuer"),
        (&config, "RawKeyFetch"),
        (&revocation, "RevokedConfig"),
        (&jwks, "RawJwks"),
    ];
    let mut missing = Vec::new();
    for (source, name) in structs {
        for field in struct_fields(source, name) {
            if !doc.contains(&format!("`{field}`")) {
                missing.push(format!("{name}.{field}"));
            }
        }
    }
    let identity = read("filter/engine/src/identity/mod.rs");
    let enums: [(&str, &str); 6] = [
        (&identity, "PeerCertificateSource"),
        (&config, "AuditLog"),
        (&config, "MethodOverride"),
        (&config, "Direction"),
        (&config, "OnInvalidChain"),
        (&config, "HandOff"),
    ];
    for (source, name) in enums {
        for value in enum_values(source, name) {
            if !doc.contains(&format!("`{value}`")) {
                missing.push(format!("{name}::{value}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "docs/configuration.md does not document: {}",
        missing.join(", ")
    );
}

/// Every JSON block that is a plugin configuration (an object whose
/// `policy` is a compiled policy's base64, `TVdQQw…` = `MWPC`) and elides
/// nothing else loads, with its elided policy replaced by a compiled one: a
/// documented member the filter would refuse fails here.
#[test]
fn plugin_configuration_snippets_load() {
    let compiled = compile_source(
        "policy \"docs\" {\n  trust_domains \"shop.example\"\n}\n",
        "docs.policy",
    )
    .unwrap_or_else(|d| panic!("{d}"));
    let policy =
        meshward_engine::config::plugin_config_json(&compiled.bytes, &[])["policy"].clone();
    let mut loaded = 0;
    for file in markdown_files() {
        for block in fenced_blocks(&read(&file)) {
            if block.info != "json" {
                continue;
            }
            let Ok(mut value) = serde_json::from_str::<serde_json::Value>(&block.text) else {
                continue;
            };
            let Some(object) = value.as_object_mut().filter(|o| {
                o.get("policy")
                    .and_then(|p| p.as_str())
                    .is_some_and(|p| p.starts_with("TVdQQw"))
            }) else {
                continue;
            };
            object.insert("policy".to_owned(), policy.clone());
            // Another elided value (a signature shown as `…`) cannot load.
            if value.to_string().contains('…') {
                continue;
            }
            let at = format!("{file}:{}", block.line);
            meshward_engine::config::FilterConfig::from_json(value.to_string().as_bytes())
                .unwrap_or_else(|e| panic!("{at}: the plugin configuration does not load: {e}"));
            loaded += 1;
        }
    }
    assert!(loaded >= 2, "{loaded} plugin configurations");
}
