//! `meshward import istio`: golden output for the example corpus
//! (`istio/import-examples/`), the per-field report, and the command line.
//!
//! `UPDATE_GOLDEN=1 cargo test -p meshward-policy --test import_istio`
//! rewrites `tests/import/` (review the diff).

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test crate: a failed expectation should panic loudly"
)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use meshward_policy::import::{import_istio, Code, ImportOptions, ImportResult, Input};
use meshward_policy::{compile_source, run_tests};
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf()
}

fn example_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(repo().join("istio/import-examples"))
        .expect("examples")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// The examples under their repository-relative names (stable in output).
fn examples() -> Vec<Input> {
    example_files()
        .into_iter()
        .map(|p| Input {
            name: p.strip_prefix(repo()).unwrap().display().to_string(),
            text: fs::read_to_string(&p).unwrap(),
        })
        .collect()
}

fn import(yaml: &str) -> ImportResult {
    import_istio(
        &[Input {
            name: "in.yaml".to_owned(),
            text: yaml.to_owned(),
        }],
        &ImportOptions::default(),
    )
    .expect("import")
}

fn compare(path: &Path, actual: &str, failures: &mut Vec<String>) {
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        fs::write(path, actual).expect("write golden");
        return;
    }
    let expected = fs::read_to_string(path).unwrap_or_default();
    if expected != actual {
        failures.push(format!(
            "{}:\n--- expected\n{expected}\n--- actual\n{actual}",
            path.display()
        ));
    }
}

#[test]
fn examples_import_as_the_golden_files_say() {
    let result = import_istio(&examples(), &ImportOptions::default()).expect("import");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/import");
    let mut failures = Vec::new();
    let mut expected_files = vec!["report.txt".to_owned()];
    for policy in &result.policies {
        compare(&dir.join(&policy.file_name), &policy.source, &mut failures);
        expected_files.push(policy.file_name.clone());
        if let Some(tokens) = &policy.token_settings {
            let name = policy.file_name.replace(".policy", ".tokens.json");
            let text = format!("{}\n", serde_json::to_string_pretty(tokens).unwrap());
            compare(&dir.join(&name), &text, &mut failures);
            expected_files.push(name);
        }
    }
    compare(
        &dir.join("report.txt"),
        &result.report_text(),
        &mut failures,
    );
    let mut present: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    present.sort();
    expected_files.sort();
    assert_eq!(present, expected_files, "stale or missing golden files");
    assert!(
        failures.is_empty(),
        "golden files differ (UPDATE_GOLDEN=1 to refresh):\n\n{}",
        failures.join("\n\n")
    );
}

#[test]
fn the_corpus_covers_every_field_and_many_workloads() {
    let text: String = examples().iter().map(|i| i.text.clone()).collect();
    let policies = text.matches("kind: AuthorizationPolicy").count();
    assert!(policies >= 20, "{policies} AuthorizationPolicies");
    assert!(text.matches("kind: RequestAuthentication").count() >= 2);
    for field in [
        "action: ALLOW",
        "action: DENY",
        "action: AUDIT",
        "action: CUSTOM",
        "principals:",
        "notPrincipals:",
        "namespaces:",
        "notNamespaces:",
        "requestPrincipals:",
        "notRequestPrincipals:",
        "methods:",
        "notMethods:",
        "paths:",
        "notPaths:",
        "hosts:",
        "ports:",
        "ipBlocks:",
        "remoteIpBlocks:",
        "request.auth.claims[",
        "request.headers[",
        "source.principal",
        "source.namespace",
        "selector:",
        "targetRefs:",
        "jwksUri:",
        "jwks:",
        "audiences:",
        "connection.sni",
        "destination.port",
        "notValues:",
    ] {
        assert!(text.contains(field), "no example uses `{field}`");
    }
    let result = import_istio(&examples(), &ImportOptions::default()).unwrap();
    assert!(result.policies.len() >= 6);
    let namespaces: std::collections::BTreeSet<&str> = result
        .policies
        .iter()
        .filter_map(|p| p.file_name.split('.').next())
        .collect();
    assert!(namespaces.len() >= 3, "{namespaces:?}");
}

#[test]
fn every_generated_policy_checks_and_passes_its_tests() {
    let result = import_istio(&examples(), &ImportOptions::default()).unwrap();
    for policy in &result.policies {
        let compiled = compile_source(&policy.source, &policy.file_name)
            .unwrap_or_else(|d| panic!("{}:\n{d}", policy.file_name));
        let report = run_tests(&compiled).unwrap();
        assert_eq!(report.failed(), 0, "{}: {report}", policy.file_name);
        // A test per converted rule, at least.
        let rules =
            policy.source.matches("\nallow ").count() + policy.source.matches("\ndeny ").count();
        assert!(
            report.passed() >= rules,
            "{}: {} tests for {rules} rules",
            policy.file_name,
            report.passed()
        );
        // The self-check found no request decided differently.
        assert!(
            policy.samples.iter().all(|s| s.agrees),
            "{}",
            policy.file_name
        );
        assert!(!policy.samples.is_empty());
    }
}

/// One finding: (code, line, field).
fn findings(result: &ImportResult) -> Vec<(Code, usize, String)> {
    result
        .findings
        .iter()
        .map(|f| (f.code, f.line, f.field.clone()))
        .collect()
}

const HEAD: &str = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: p\n  namespace: ns\nspec:\n  selector:\n    matchLabels:\n      app: a\n";

#[test]
fn each_unsupported_field_is_reported_with_its_line() {
    // (action, rule YAML, expected code, expected field)
    let cases = [
        (
            "ALLOW",
            "    - from:\n        - source:\n            ipBlocks: [\"10.0.0.0/8\"]\n",
            Code::I001,
            "spec.rules[0].from[0].source.ipBlocks",
        ),
        (
            "ALLOW",
            "    - from:\n        - source:\n            remoteIpBlocks: [\"10.0.0.0/8\"]\n",
            Code::I001,
            "spec.rules[0].from[0].source.remoteIpBlocks",
        ),
        (
            "ALLOW",
            "    - to:\n        - operation:\n            ports: [\"8080\"]\n",
            Code::I001,
            "spec.rules[0].to[0].operation.ports",
        ),
        (
            "DENY",
            "    - to:\n        - operation:\n            ports: [\"8080\"]\n",
            Code::I002,
            "spec.rules[0].to[0].operation.ports",
        ),
        (
            "ALLOW",
            "    - to:\n        - operation:\n            paths: [\"/api*\"]\n",
            Code::I001,
            "spec.rules[0].to[0].operation.paths",
        ),
        (
            "ALLOW",
            "    - to:\n        - operation:\n            paths: [\"*/status\"]\n",
            Code::I001,
            "spec.rules[0].to[0].operation.paths",
        ),
        (
            "ALLOW",
            "    - to:\n        - operation:\n            paths: [\"/a/{*}\"]\n",
            Code::I001,
            "spec.rules[0].to[0].operation.paths",
        ),
        (
            "ALLOW",
            "    - to:\n        - operation:\n            hosts: [\"a.example\"]\n",
            Code::I001,
            "spec.rules[0].to[0].operation.hosts",
        ),
        (
            "ALLOW",
            "    - to:\n        - operation:\n            notHosts: [\"a.example\"]\n",
            Code::I001,
            "spec.rules[0].to[0].operation.notHosts",
        ),
        (
            "ALLOW",
            "    - to:\n        - operation:\n            methods: [\"get\"]\n",
            Code::I001,
            "spec.rules[0].to[0].operation.methods",
        ),
        (
            "ALLOW",
            "    - from:\n        - source:\n            notRequestPrincipals: [\"*\"]\n",
            Code::I001,
            "spec.rules[0].from[0].source.notRequestPrincipals",
        ),
        (
            "ALLOW",
            "    - from:\n        - source:\n            principals: [\"*/sa/x\"]\n",
            Code::I001,
            "spec.rules[0].from[0].source.principals",
        ),
        (
            "ALLOW",
            "    - from:\n        - source:\n            namespaces: [\"team-*\"]\n",
            Code::I001,
            "spec.rules[0].from[0].source.namespaces",
        ),
        (
            "ALLOW",
            "    - when:\n        - key: source.ip\n          values: [\"10.0.0.1\"]\n",
            Code::I001,
            "spec.rules[0].when[0]",
        ),
        (
            "ALLOW",
            "    - when:\n        - key: request.auth.claims[a][b]\n          values: [\"x\"]\n",
            Code::I001,
            "spec.rules[0].when[0]",
        ),
        (
            "ALLOW",
            "    - when:\n        - key: request.headers[x-a]\n          notValues: [\"x\"]\n",
            Code::I001,
            "spec.rules[0].when[0].notValues",
        ),
        (
            "ALLOW",
            "    - when:\n        - key: request.headers[x-a]\n          values: [\"x\"]\n",
            Code::I003,
            "spec.rules[0].when[0].values",
        ),
        (
            "DENY",
            "    - when:\n        - key: request.headers[x-a]\n          values: [\"x\"]\n",
            Code::I002,
            "spec.rules[0].when[0].values",
        ),
        (
            "ALLOW",
            "    - to:\n        - operation:\n            colour: [\"red\"]\n",
            Code::I001,
            "spec.rules[0].to[0].operation.colour",
        ),
    ];
    for (action, rule, code, field) in cases {
        let yaml = format!("{HEAD}  action: {action}\n  rules:\n{rule}");
        let result = import(&yaml);
        let found = findings(&result);
        let line = yaml
            .lines()
            .position(|l| {
                let key = field.rsplit('.').next().unwrap();
                let key = key.split('[').next().unwrap();
                if key == "when" {
                    l.contains("- key:")
                } else {
                    l.trim_start()
                        .trim_start_matches("- ")
                        .starts_with(&format!("{key}:"))
                }
            })
            .map(|i| i + 1)
            .unwrap();
        assert!(
            found
                .iter()
                .any(|(c, l, f)| *c == code && f == field && *l == line),
            "{action} {rule}: expected {code} at line {line} on `{field}`, got {found:?}"
        );
    }
}

#[test]
fn allow_narrows_and_deny_widens() {
    // An unconvertible value of an ALLOW list is left out (allows less).
    let result = import(&format!(
        "{HEAD}  rules:\n    - to:\n        - operation:\n            paths: [\"/orders/*\", \"/search*\"]\n"
    ));
    let source = &result.policies[0].source;
    assert!(source.contains("path \"/orders/{p2}/**\""), "{source}");
    assert!(!source.contains("search"), "{source}");
    // An unconvertible value of a DENY list drops the field: the deny
    // applies to every path.
    let result = import(&format!(
        "{HEAD}  action: DENY\n  rules:\n    - from:\n        - source:\n            namespaces: [\"edge\"]\n      to:\n        - operation:\n            paths: [\"/orders/*\", \"*/refund\"]\n"
    ));
    let source = &result.policies[0].source;
    assert!(source.contains("deny ns.p.r0"), "{source}");
    assert!(source.contains("unclassified"), "{source}");
}

#[test]
fn a_prefix_is_a_string_prefix_and_keeps_its_requests_from_more_specific_intents() {
    // `/orders/*` covers `/orders/export` (Istio: string prefix), which a
    // second rule makes its own intent: the broad rule must still allow it.
    let result = import(&format!(
        "{HEAD}  rules:\n    - from:\n        - source:\n            principals: [\"cluster.local/ns/shop/sa/frontend\"]\n      to:\n        - operation:\n            methods: [\"GET\"]\n            paths: [\"/orders/*\"]\n    - from:\n        - source:\n            namespaces: [\"batch\"]\n      to:\n        - operation:\n            methods: [\"GET\"]\n            paths: [\"/orders/export\"]\n"
    ));
    let policy = &result.policies[0];
    assert_eq!(result.strict_failures(), 0, "{}", result.report_text());
    let compiled = compile_source(&policy.source, "p.policy").unwrap();
    let mut request = meshward_policy::SampleRequest::new(
        meshward_policy::peer_from_text("spiffe://cluster.local/ns/shop/sa/frontend"),
        "GET",
        "/orders/export",
    );
    request.authority = "orders".to_owned();
    let outcome = meshward_policy::explain(&compiled, &request).unwrap();
    assert_eq!(outcome.intent.as_deref(), Some("orders.export.get"));
    assert_eq!(outcome.effect, meshward_engine::model::Effect::Allow);
    // `/orders` itself is not under the prefix.
    request.path = "/orders".to_owned();
    let outcome = meshward_policy::explain(&compiled, &request).unwrap();
    assert_eq!(outcome.effect, meshward_engine::model::Effect::Deny);
}

#[test]
fn a_workload_without_allow_policy_gets_a_flagged_allow_all() {
    let result = import(&format!(
        "{HEAD}  action: DENY\n  rules:\n    - to:\n        - operation:\n            methods: [\"DELETE\"]\n"
    ));
    assert!(result.findings.iter().any(|f| f.code == Code::I006));
    assert_eq!(result.strict_failures(), 0);
    let source = &result.policies[0].source;
    assert!(
        source.contains("allow ns.a.istio-default-allow"),
        "{source}"
    );
    assert!(source.contains("meshward denies by default"), "{source}");
}

#[test]
fn request_authentication_becomes_user_token_settings() {
    let yaml = format!(
        "{HEAD}  rules:\n    - from:\n        - source:\n            requestPrincipals: [\"https://idp.example/alice\"]\n---\napiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata:\n  name: jwt\n  namespace: ns\nspec:\n  selector:\n    matchLabels:\n      app: a\n  jwtRules:\n    - issuer: https://idp.example\n      audiences: [\"api\"]\n      jwks: '{{\"keys\": []}}'\n"
    );
    let result = import(&yaml);
    let policy = &result.policies[0];
    assert!(
        policy.source.contains("principal user"),
        "{}",
        policy.source
    );
    assert!(policy
        .source
        .contains("when user issuer \"https://idp.example\""));
    assert!(policy.source.contains("when user subject \"alice\""));
    let tokens = policy.token_settings.as_ref().unwrap();
    assert_eq!(
        tokens["user_tokens"]["issuers"][0]["issuer"],
        "https://idp.example"
    );
    assert_eq!(tokens["user_tokens"]["issuers"][0]["audiences"][0], "api");
    assert!(tokens["user_tokens"]["issuers"][0]["jwks"]["keys"].is_array());
}

fn meshward(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshward"))
        .args(args)
        .output()
        .expect("run meshward")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("meshward-import-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    dir
}

#[test]
fn cli_writes_policies_that_check_and_test_and_strict_refuses() {
    let files: Vec<String> = example_files()
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let out = scratch("out");
    let mut args = vec!["import", "istio"];
    args.extend(files.iter().map(String::as_str));
    let out_arg = out.display().to_string();
    args.extend(["-o", &out_arg]);
    let output = meshward(&args);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(report.contains("warning[I001]"), "{report}");
    let mut written = 0;
    for entry in fs::read_dir(&out).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "policy") {
            written += 1;
            let p = path.display().to_string();
            let check = meshward(&["check", &p]);
            assert_eq!(
                check.status.code(),
                Some(0),
                "{p}: {}",
                String::from_utf8_lossy(&check.stderr)
            );
            let test = meshward(&["test", &p]);
            assert_eq!(
                test.status.code(),
                Some(0),
                "{p}: {}",
                String::from_utf8_lossy(&test.stdout)
            );
        }
    }
    assert!(written >= 6);
    let _ = fs::remove_dir_all(&out);
    let mut args = vec!["import", "istio", "--format", "json"];
    args.extend(files.iter().map(String::as_str));
    let output = meshward(&args);
    assert_eq!(output.status.code(), Some(0));
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["ok"], true);
    validate_import_schema(&json);

    // --strict: exit 1, nothing written; JSON lists every finding.
    let strict_out = scratch("strict");
    let strict_arg = strict_out.display().to_string();
    let mut args = vec![
        "import",
        "istio",
        "--strict",
        "--format",
        "json",
        "-o",
        &strict_arg,
    ];
    args.extend(files.iter().map(String::as_str));
    let output = meshward(&args);
    assert_eq!(output.status.code(), Some(1));
    assert!(!strict_out.exists());
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["ok"], false);
    validate_import_schema(&json);
    let ip = json["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["field"] == "spec.rules[0].from[0].source.ipBlocks")
        .expect("ipBlocks reported");
    assert_eq!(ip["code"], "I001");
    assert_eq!(
        ip["file"].as_str().unwrap().rsplit('/').next(),
        Some("shop-payments.yaml")
    );
    assert_eq!(ip["document"], "AuthorizationPolicy shop/payments-office");
    assert!(ip["line"].as_u64().unwrap() > 1);
}

/// The JSON output against `docs/schema/import.json`.
fn validate_import_schema(document: &Value) {
    let path = repo().join("docs/schema/import.json");
    let schema: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
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
        "import JSON does not match its schema:\n{}",
        errors.join("\n")
    );
}

/// Serves `https://meshward.example/schema/NAME.json` from `docs/schema/`.
struct SchemaFiles;

impl jsonschema::Retrieve for SchemaFiles {
    fn retrieve(
        &self,
        uri: &jsonschema::Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let name = uri
            .as_str()
            .strip_prefix("https://meshward.example/schema/")
            .ok_or_else(|| format!("not a meshward schema: {uri}"))?;
        Ok(serde_json::from_str(&fs::read_to_string(
            repo().join("docs/schema").join(name),
        )?)?)
    }
}

#[test]
fn cli_refuses_broken_yaml_with_its_line() {
    let dir = scratch("broken");
    fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.yaml");
    fs::write(&file, "kind: AuthorizationPolicy\nspec: [1,\n").unwrap();
    let output = meshward(&["import", "istio", &file.display().to_string()]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad.yaml: line"), "{stderr}");
    let _ = fs::remove_dir_all(&dir);
}
