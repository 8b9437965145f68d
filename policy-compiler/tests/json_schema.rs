//! `--format json` is a contract: the real output of every command validates
//! against its schema in `docs/schema/`, and every document speaks one
//! vocabulary (docs/cli-json.md): `policy_hash` (never `hash`), `would_be`
//! (never `would`), `warnings` always a list, counts ending in `_count`.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test crate: a failed expectation should panic loudly"
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use jsonschema::{Retrieve, Uri};
use serde_json::Value;

const BASE: &str = "https://meshward.example/schema/";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn schema_dir() -> PathBuf {
    workspace().join("docs/schema")
}

fn crate_path(relative: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(relative)
        .display()
        .to_string()
}

/// Serves `https://meshward.example/schema/NAME.json` from `docs/schema/`.
struct SchemaFiles;

impl Retrieve for SchemaFiles {
    fn retrieve(
        &self,
        uri: &Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let name = uri
            .as_str()
            .strip_prefix(BASE)
            .ok_or_else(|| format!("not a meshward schema: {uri}"))?;
        let text = std::fs::read_to_string(schema_dir().join(name))?;
        Ok(serde_json::from_str(&text)?)
    }
}

fn validate(schema_name: &str, document: &Value) {
    let path = schema_dir().join(format!("{schema_name}.json"));
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let validator = jsonschema::options()
        .with_retriever(SchemaFiles)
        .build(&schema)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let errors: Vec<String> = validator
        .iter_errors(document)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "output does not match docs/schema/{schema_name}.json:\n{}\n{document:#}",
        errors.join("\n")
    );
    assert_vocabulary(document, "");
}

/// The shared names, checked everywhere in a document.
fn assert_vocabulary(value: &Value, at: &str) {
    match value {
        Value::Object(object) => {
            for (key, value) in object {
                let here = format!("{at}/{key}");
                assert!(
                    !["hash", "would", "would_by_rule"].contains(&key.as_str()),
                    "`{here}`: use `policy_hash` / `would_be`"
                );
                if key == "warnings" {
                    assert!(value.is_array(), "`{here}` is not a list");
                }
                if key.ends_with("_count") {
                    assert!(value.is_u64() || value.is_null(), "`{here}` is not a count");
                }
                assert_vocabulary(value, &here);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| assert_vocabulary(v, at)),
        _ => {}
    }
}

fn temp_path(name: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("meshward-schema-{}-{n}-{name}", std::process::id()))
}

/// Runs meshward; returns the JSON on stdout (or on stderr with
/// `from_stderr`) and the exit code.
fn run(args: &[&str], from_stderr: bool) -> (Value, i32) {
    let output = Command::new(env!("CARGO_BIN_EXE_meshward"))
        .args(args)
        .output()
        .expect("run meshward");
    let stream = if from_stderr {
        &output.stderr
    } else {
        &output.stdout
    };
    let value = serde_json::from_slice(stream).unwrap_or_else(|e| {
        panic!(
            "meshward {args:?}: not JSON ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(stream),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (value, output.status.code().unwrap_or(-1))
}

fn json(args: &[&str]) -> Value {
    run(args, false).0
}

fn shop() -> String {
    crate_path("examples/shop.policy")
}

fn broken() -> String {
    crate_path("tests/golden/e004_unknown_intent.policy")
}

#[test]
fn every_schema_is_a_valid_json_schema_with_its_id() {
    let mut names: Vec<String> = std::fs::read_dir(schema_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.len() >= 12, "{names:?}");
    for name in names {
        let text = std::fs::read_to_string(schema_dir().join(&name)).unwrap();
        let schema: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(schema["$id"], format!("{BASE}{name}"), "{name}");
        jsonschema::options()
            .with_retriever(SchemaFiles)
            .build(&schema)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn check_output_matches_its_schema() {
    validate(
        "check",
        &json(&["check", &shop(), &broken(), "--format", "json"]),
    );
    validate(
        "check",
        &json(&[
            "check",
            &crate_path("tests/golden/w006_broad_grant.policy"),
            "--format",
            "json",
            "--deny-warnings",
        ]),
    );
}

#[test]
fn compile_explain_and_test_outputs_match_their_schemas() {
    let out = temp_path("config.json");
    let out_text = out.display().to_string();
    validate(
        "compile",
        &json(&["compile", &shop(), "-o", &out_text, "--format", "json"]),
    );
    // The configuration on stdout: the summary goes to stderr.
    let (summary, code) = run(&["compile", &shop(), "-o", "-", "--format", "json"], true);
    assert_eq!(code, 0);
    validate("compile", &summary);
    let (errors, code) = run(
        &["compile", &broken(), "-o", &out_text, "--format", "json"],
        false,
    );
    assert_eq!(code, 1);
    validate("compile", &errors);
    std::fs::remove_file(&out).ok();

    for path in ["/orders/42", "/admin/x"] {
        validate(
            "explain",
            &json(&[
                "explain",
                &shop(),
                "--peer",
                "spiffe://shop.example/ns/shop/sa/frontend",
                "--method",
                "GET",
                "--path",
                path,
                "--chain",
                "spiffe://shop.example/ns/edge/sa/gateway,spiffe://shop.example/ns/shop/sa/frontend",
                "--chain-user",
                "alice",
                "--format",
                "json",
            ]),
        );
    }
    validate("test", &json(&["test", &shop(), "--format", "json"]));
    validate(
        "test",
        &json(&[
            "test",
            &crate_path("tests/golden/ok_dry_run_policy.policy"),
            "--format",
            "json",
        ]),
    );
    validate("test", &json(&["test", &broken(), "--format", "json"]));
}

#[test]
fn rollout_outputs_match_their_schemas() {
    let fixture = |name: &str| crate_path(&format!("tests/fixtures/rollout/{name}"));
    validate(
        "replay",
        &json(&[
            "replay",
            "--policy",
            &fixture("shop-v2.policy"),
            "--log",
            &fixture("envoy.log"),
            "--format",
            "json",
        ]),
    );
    validate(
        "replay",
        &json(&[
            "replay",
            "--policy",
            &broken(),
            "--log",
            &fixture("envoy.log"),
            "--format",
            "json",
        ]),
    );
    validate(
        "diff",
        &json(&[
            "diff",
            &fixture("shop-v1.policy"),
            &fixture("shop-v2.policy"),
            "--format",
            "json",
        ]),
    );
    validate("graph", &json(&["graph", &shop(), "--format", "json"]));
    let key = temp_path("key.pem");
    validate(
        "keygen",
        &json(&[
            "keygen",
            "-o",
            &key.display().to_string(),
            "--format",
            "json",
        ]),
    );
    std::fs::remove_file(&key).ok();
}

#[test]
fn deployment_outputs_match_their_schemas() {
    let manifests = temp_path("plugin.yaml");
    let istio_args = |output: &str| {
        vec![
            "istio".to_owned(),
            "--policy".to_owned(),
            shop(),
            "--image".to_owned(),
            "oci://registry.example/meshward:0.1.0".to_owned(),
            "--namespace".to_owned(),
            "shop".to_owned(),
            "--selector".to_owned(),
            "app=orders".to_owned(),
            "--mode".to_owned(),
            "both".to_owned(),
            "-o".to_owned(),
            output.to_owned(),
            "--format".to_owned(),
            "json".to_owned(),
        ]
    };
    let args = istio_args(&manifests.display().to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    validate("istio", &json(&args));
    std::fs::remove_file(&manifests).ok();
    let args = istio_args("-");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (summary, code) = run(&args, true);
    assert_eq!(code, 0);
    validate("istio", &summary);

    // The smallest valid module: magic and version.
    let wasm = temp_path("filter.wasm");
    std::fs::write(&wasm, b"\0asm\x01\0\0\0").unwrap();
    let layout = temp_path("layout");
    validate(
        "oci",
        &json(&[
            "oci",
            "--wasm",
            &wasm.display().to_string(),
            "-o",
            &layout.display().to_string(),
            "--format",
            "json",
        ]),
    );
    std::fs::remove_file(&wasm).ok();
    std::fs::remove_dir_all(&layout).ok();
}

#[test]
fn fmt_output_matches_its_schema() {
    let messy = crate_path("tests/fmt/messy.policy");
    let (report, code) = run(
        &["fmt", "--check", &messy, &shop(), "--format", "json"],
        false,
    );
    assert_eq!(code, 5);
    validate("fmt", &report);
    let invalid = crate_path("tests/golden/e001_invalid_token.policy");
    let (report, code) = run(&["fmt", "--check", &invalid, "--format", "json"], false);
    assert_eq!(code, 1);
    validate("fmt", &report);
}

#[test]
fn schemas_reject_documents_in_the_old_vocabulary() {
    let schema_for = |name: &str| {
        let text = std::fs::read_to_string(schema_dir().join(format!("{name}.json"))).unwrap();
        jsonschema::options()
            .with_retriever(SchemaFiles)
            .build(&serde_json::from_str::<Value>(&text).unwrap())
            .unwrap()
    };
    let out = temp_path("config.json");
    let mut summary = json(&[
        "compile",
        &shop(),
        "-o",
        &out.display().to_string(),
        "--format",
        "json",
    ]);
    std::fs::remove_file(&out).ok();
    let compile = schema_for("compile");
    assert!(compile.is_valid(&summary));
    let hash = summary
        .as_object_mut()
        .unwrap()
        .remove("policy_hash")
        .unwrap();
    summary["hash"] = hash;
    assert!(
        !compile.is_valid(&summary),
        "a `hash` instead of `policy_hash`"
    );

    let mut check = json(&["check", &shop(), "--format", "json"]);
    let check_schema = schema_for("check");
    assert!(check_schema.is_valid(&check));
    check["files"][0]["warnings"] = Value::from(0);
    assert!(!check_schema.is_valid(&check), "a count as `warnings`");

    let mut explain = json(&[
        "explain",
        &shop(),
        "--peer",
        "none",
        "--method",
        "GET",
        "--path",
        "/",
        "--format",
        "json",
    ]);
    let explain_schema = schema_for("explain");
    assert!(explain_schema.is_valid(&explain));
    let would_be = explain.as_object_mut().unwrap().remove("would_be").unwrap();
    explain["would"] = would_be;
    assert!(
        !explain_schema.is_valid(&explain),
        "`would` instead of `would_be`"
    );
}
