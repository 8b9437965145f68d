//! `meshward istio` manifests are valid `WasmPlugin`s (and `EnvoyFilter`s):
//! checked against Istio's CRD schema (`istio/schema/`, a copy of
//! `shared/istio/wasmplugin-crd-schema.yaml`) with a real JSON-schema
//! validator, plus Kubernetes' strict field validation (unknown fields are
//! errors) and the CEL rules the CRD carries, which a JSON-schema validator
//! cannot run and which are checked here in code. The checked-in examples in
//! `istio/examples/` are what the documented command generates today.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test crate: a failed expectation should panic loudly"
)]

use std::path::{Path, PathBuf};
use std::process::Command;

use meshward_engine::config::FilterConfig;
use meshward_policy::compile_source;
use meshward_policy::istio::{self, IstioOptions, Mode, PeerCertificate};
use serde_json::{json, Value};

const MESHWARD: &str = env!("CARGO_BIN_EXE_meshward");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

const POLICY: &str = r#"
policy "istio-test" {
  trust_domains "cluster.local"
}
intent orders.read {
  method GET
  path "/orders/{id}"
}
allow frontend-reads {
  subject "spiffe://cluster.local/ns/shop/sa/frontend"
  intent orders.read
}
"#;

/// Istio's WasmPlugin schema as a JSON Schema, the way the API server applies
/// it: `nullable` becomes a `null` type, objects that do not preserve unknown
/// fields reject them (`kubectl apply` validates strictly), and the object
/// envelope (`apiVersion`, `kind`, `metadata`) is allowed at the top.
fn wasm_plugin_schema() -> Value {
    let path = repo().join("istio/schema/wasmplugin-crd-schema.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let doc: Value = serde_yaml::from_str(&text).unwrap();
    assert_eq!(doc["kind"], "WasmPlugin");
    let mut schema = to_json_schema(&doc["openAPIV3Schema"]);
    let props = schema["properties"].as_object_mut().unwrap();
    props.insert(
        "apiVersion".into(),
        json!({"const": "extensions.istio.io/v1alpha1"}),
    );
    props.insert("kind".into(), json!({"const": "WasmPlugin"}));
    props.insert(
        "metadata".into(),
        json!({"type": "object", "required": ["name", "namespace"]}),
    );
    schema
}

fn to_json_schema(openapi: &Value) -> Value {
    match openapi {
        Value::Object(map) => {
            let mut out = serde_json::Map::new();
            let preserve = map
                .get("x-kubernetes-preserve-unknown-fields")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            for (key, value) in map {
                match key.as_str() {
                    k if k.starts_with("x-kubernetes-") => {}
                    "nullable" => {}
                    "properties" => {
                        let props = value
                            .as_object()
                            .unwrap()
                            .iter()
                            .map(|(k, v)| (k.clone(), to_json_schema(v)))
                            .collect();
                        out.insert(key.clone(), Value::Object(props));
                    }
                    "items" | "additionalProperties" => {
                        out.insert(key.clone(), to_json_schema(value));
                    }
                    _ => {
                        out.insert(key.clone(), value.clone());
                    }
                }
            }
            if map.get("nullable") == Some(&Value::Bool(true)) {
                if let Some(t) = map.get("type") {
                    out.insert("type".into(), json!([t, "null"]));
                }
            }
            if map.contains_key("properties") && !preserve {
                out.insert("additionalProperties".into(), Value::Bool(false));
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

/// Every problem with one WasmPlugin: schema errors and CEL rules.
fn wasm_plugin_problems(schema: &Value, manifest: &Value) -> Vec<String> {
    let validator = jsonschema::validator_for(schema).unwrap();
    let mut problems: Vec<String> = validator
        .iter_errors(manifest)
        .map(|e| format!("schema: {} at {}", e, e.instance_path()))
        .collect();
    let spec = &manifest["spec"];
    // CEL: url scheme is http, https, file, oci, or none.
    if let Some(url) = spec["url"].as_str() {
        if let Some((scheme, _)) = url.split_once("://") {
            if !["http", "https", "file", "oci"].contains(&scheme) {
                problems.push(format!("cel: url scheme `{scheme}`"));
            }
        }
    }
    // CEL: selector.matchLabels keys non-empty, no `*` in keys or values.
    if let Some(labels) = spec["selector"]["matchLabels"].as_object() {
        for (key, value) in labels {
            if key.is_empty() || key.contains('*') {
                problems.push(format!("cel: selector key `{key}`"));
            }
            if value.as_str().is_some_and(|v| v.contains('*')) {
                problems.push(format!("cel: selector value `{value}`"));
            }
        }
    }
    // CEL: vmConfig.env `value` only with valueFrom INLINE (or unset).
    if let Some(env) = spec["vmConfig"]["env"].as_array() {
        for var in env {
            let inline = var.get("valueFrom").is_none_or(|v| v == "INLINE");
            if var.get("value").is_some() && !inline {
                problems.push(format!(
                    "cel: env `{}` has a value but is not INLINE",
                    var["name"]
                ));
            }
        }
    }
    // The object envelope as Kubernetes checks it.
    let name = manifest["metadata"]["name"].as_str().unwrap_or("");
    let dns_label = |s: &str| {
        !s.is_empty()
            && s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-')
    };
    if !dns_label(name) {
        problems.push(format!("metadata.name `{name}`"));
    }
    if !dns_label(manifest["metadata"]["namespace"].as_str().unwrap_or("")) {
        problems.push("metadata.namespace".into());
    }
    problems
}

fn parse_yaml_stream(text: &str) -> Vec<Value> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

fn generate(mode: Mode, peer: PeerCertificate) -> Vec<Value> {
    let compiled = compile_source(POLICY, "istio-test.policy").unwrap();
    let mut opts = IstioOptions::new(
        "shop",
        vec![
            ("app".into(), "orders".into()),
            ("version".into(), "v1".into()),
        ],
        "oci://registry.example.com/meshward/filter:0.1.0",
    );
    opts.sha256 = Some("ab".repeat(32));
    opts.mode = mode;
    opts.peer_certificate = peer;
    let generated = istio::generate(&compiled, &[], &opts).unwrap();
    // Through YAML text, as kubectl would read it.
    parse_yaml_stream(&generated.to_yaml("test").unwrap())
}

#[test]
fn generated_wasm_plugins_satisfy_the_crd_schema_and_cel_rules() {
    let schema = wasm_plugin_schema();
    for mode in [Mode::Server, Mode::Client, Mode::Both, Mode::Gateway] {
        for peer in [PeerCertificate::Forwarded, PeerCertificate::ConnectionOnly] {
            for manifest in generate(mode, peer) {
                if manifest["kind"] != "WasmPlugin" {
                    continue;
                }
                let problems = wasm_plugin_problems(&schema, &manifest);
                assert!(
                    problems.is_empty(),
                    "{mode:?}/{peer:?}: {problems:#?}\n{manifest:#}"
                );
            }
        }
    }
}

#[test]
fn the_validator_is_not_vacuous() {
    let schema = wasm_plugin_schema();
    let good = generate(Mode::Server, PeerCertificate::Forwarded).remove(0);
    assert!(wasm_plugin_problems(&schema, &good).is_empty());
    type Breaker = fn(&mut Value);
    let broken: [(&str, Breaker); 7] = [
        ("bad failStrategy", |m| {
            m["spec"]["failStrategy"] = json!("FAIL_MAYBE")
        }),
        ("unknown field", |m| m["spec"]["vmId"] = json!("meshward")),
        ("bad sha256", |m| m["spec"]["sha256"] = json!("sha256:abc")),
        ("bad mode", |m| {
            m["spec"]["match"][0]["mode"] = json!("INBOUND")
        }),
        ("star selector", |m| {
            m["spec"]["selector"]["matchLabels"]["app"] = json!("*")
        }),
        ("ftp url", |m| m["spec"]["url"] = json!("ftp://x/y")),
        (
            "env value from HOST",
            |m| {
                m["spec"]["vmConfig"] =
                    json!({"env": [{"name": "A", "value": "b", "valueFrom": "HOST"}]})
            },
        ),
    ];
    for (what, breaker) in broken {
        let mut manifest = good.clone();
        breaker(&mut manifest);
        assert!(
            !wasm_plugin_problems(&schema, &manifest).is_empty(),
            "{what}: not caught"
        );
    }
}

#[test]
fn plugin_config_is_the_compiled_policy_with_direction_and_peer_source() {
    let compiled = compile_source(POLICY, "istio-test.policy").unwrap();
    let expected = compiled.plugin_config_value(&[]);
    let manifests = generate(Mode::Both, PeerCertificate::ConnectionOnly);
    let directions: Vec<(&str, &str)> = manifests
        .iter()
        .map(|m| {
            (
                m["spec"]["match"][0]["mode"].as_str().unwrap(),
                m["spec"]["pluginConfig"]["direction"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(directions, [("SERVER", "inbound"), ("CLIENT", "outbound")]);
    for manifest in &manifests {
        // An object, not a string: Istio re-serializes it as JSON for Envoy.
        let config = manifest["spec"]["pluginConfig"].as_object().unwrap();
        assert_eq!(config["policy"], expected["policy"]);
        assert_eq!(config["peer_certificate"], "connection_only");
        assert_eq!(manifest["spec"]["pluginName"], "meshward");
        assert_eq!(manifest["spec"]["phase"], "AUTHZ");
        assert_eq!(manifest["spec"]["failStrategy"], "FAIL_CLOSE");
        assert_eq!(manifest["spec"]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(
            manifest["metadata"]["annotations"]["meshward.io/policy-hash"],
            compiled.hash_hex()
        );
        // Everything but `direction` is what the engine loads today.
        let mut without_direction = config.clone();
        without_direction.remove("direction");
        let loaded =
            FilterConfig::from_json(Value::Object(without_direction).to_string().as_bytes())
                .unwrap_or_else(|e| panic!("the engine refuses the generated pluginConfig: {e}"));
        assert_eq!(loaded.policy.hash(), &compiled.hash);
    }
}

#[test]
fn forwarded_mode_adds_the_xfcc_envoy_filter_for_the_same_workloads() {
    let manifests = generate(Mode::Server, PeerCertificate::Forwarded);
    assert_eq!(manifests.len(), 2);
    let filter = &manifests[1];
    assert_eq!(filter["apiVersion"], "networking.istio.io/v1alpha3");
    assert_eq!(filter["kind"], "EnvoyFilter");
    assert_eq!(
        filter["spec"]["workloadSelector"]["labels"],
        manifests[0]["spec"]["selector"]["matchLabels"]
    );
    let patch = &filter["spec"]["configPatches"][0];
    assert_eq!(patch["applyTo"], "NETWORK_FILTER");
    assert_eq!(patch["match"]["context"], "SIDECAR_INBOUND");
    assert_eq!(patch["patch"]["operation"], "MERGE");
    let hcm = &patch["patch"]["value"]["typed_config"];
    assert_eq!(hcm["forward_client_cert_details"], "SANITIZE_SET");
    assert_eq!(hcm["set_current_client_cert_details"]["cert"], true);
    assert_eq!(hcm["strip_trailing_host_dot"], true);
    // Client-only enforcement has no inbound side to patch.
    assert_eq!(generate(Mode::Client, PeerCertificate::Forwarded).len(), 1);
}

#[test]
fn generated_yaml_is_byte_stable() {
    let a = generate(Mode::Both, PeerCertificate::Forwarded);
    let b = generate(Mode::Both, PeerCertificate::Forwarded);
    assert_eq!(a, b);
}

/// The README command, run for real; compared with `istio/examples/`.
/// `UPDATE_GOLDEN=1` rewrites the example (review the diff).
#[test]
fn checked_in_examples_are_current_and_valid() {
    let example = repo().join("istio/examples/shop-wasmplugins.yaml");
    let out = Command::new(MESHWARD)
        .current_dir(repo())
        .args([
            "istio",
            "--policy",
            "policy-compiler/examples/shop.policy",
            "--image",
            "oci://registry.example.com/meshward/filter:0.1.0",
            "--sha256",
            &"0".repeat(64),
            "--namespace",
            "shop",
            "--selector",
            "app=orders",
            "--mode",
            "both",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let generated = String::from_utf8(out.stdout).unwrap();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&example, &generated).unwrap();
    }
    let checked_in = std::fs::read_to_string(&example).unwrap_or_default();
    assert!(
        checked_in == generated,
        "istio/examples/shop-wasmplugins.yaml is not what `meshward istio` generates now \
         (UPDATE_GOLDEN=1 cargo test -p meshward-policy --test istio_manifests to refresh)"
    );
    let schema = wasm_plugin_schema();
    let docs = parse_yaml_stream(&checked_in);
    assert_eq!(docs.len(), 3);
    for doc in docs.iter().filter(|d| d["kind"] == "WasmPlugin") {
        let problems = wasm_plugin_problems(&schema, doc);
        assert!(problems.is_empty(), "{problems:#?}");
    }
}

#[test]
fn cli_refuses_what_would_deny_everything_or_select_everything() {
    let run = |extra: &[&str]| {
        let mut args = vec![
            "istio",
            "--policy",
            "policy-compiler/examples/shop.policy",
            "--image",
            "oci://registry.example.com/meshward/filter:0.1.0",
            "--namespace",
            "shop",
        ];
        args.extend_from_slice(extra);
        Command::new(MESHWARD)
            .current_dir(repo())
            .args(&args)
            .output()
            .unwrap()
    };
    // shop.policy bounds certificate lifetime: connection-only cannot check it.
    let out = run(&[
        "--selector",
        "app=orders",
        "--peer-certificate",
        "connection-only",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("max_cert_lifetime"));
    // No selector at all is a usage error (clap), a wildcard is refused.
    assert_eq!(run(&[]).status.code(), Some(2));
    let out = run(&["--selector", "app=*"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`*`"));
    // Not an OCI reference.
    let out = run(&[
        "--selector",
        "app=orders",
        "--image",
        "https://example.com/f.wasm",
    ]);
    assert_eq!(out.status.code(), Some(2));
}

/// CI puts the steering repo's `shared/` beside the clone: the copy in
/// `istio/schema/` must still be that file.
#[test]
fn schema_copy_matches_shared_when_present() {
    let shared = repo().join("../shared/istio/wasmplugin-crd-schema.yaml");
    let Ok(original) = std::fs::read_to_string(&shared) else {
        eprintln!("note: {} not present; nothing to compare", shared.display());
        return;
    };
    let copy =
        std::fs::read_to_string(repo().join("istio/schema/wasmplugin-crd-schema.yaml")).unwrap();
    let body = &copy[copy.find("# OpenAPI v3 schema").unwrap()..];
    assert_eq!(body, original, "istio/schema/ drifted from shared/istio/");
}
