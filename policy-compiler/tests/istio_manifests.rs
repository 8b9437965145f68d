//! `meshward istio` manifests are valid `WasmPlugin`s, `PeerAuthentication`s
//! (and `EnvoyFilter`s): checked against Istio's published CRD schemas
//! (`istio/schema/`, taken from istio/api with provenance in each file's
//! header) with a real JSON-schema validator, plus Kubernetes' strict field
//! validation (unknown fields are errors) and the CEL rules the CRDs carry,
//! which a JSON-schema validator cannot run and which are checked here in
//! code: every rule in the schema files must be one this file implements.
//! The checked-in examples in `istio/examples/` are what the documented
//! commands generate today.

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
use meshward_policy::istio::{
    self, Attachment, IstioOptions, Mode, PeerCertificate, TargetKind, TargetRef,
};
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

/// An Istio CRD schema from `istio/schema/` as a JSON Schema, the way the
/// API server applies it: `nullable` becomes a `null` type, objects that do
/// not preserve unknown fields reject them (`kubectl apply` validates
/// strictly), and the object envelope (`apiVersion`, `kind`, `metadata`) is
/// allowed at the top.
fn crd_schema(file: &str, kind: &str, api_version: &str) -> Value {
    let doc = schema_doc(file);
    assert_eq!(doc["kind"], kind);
    assert_eq!(doc["apiVersion"], api_version);
    let mut schema = to_json_schema(&doc["openAPIV3Schema"]);
    let props = schema["properties"].as_object_mut().unwrap();
    props.insert("apiVersion".into(), json!({ "const": api_version }));
    props.insert("kind".into(), json!({ "const": kind }));
    props.insert(
        "metadata".into(),
        json!({"type": "object", "required": ["name", "namespace"]}),
    );
    schema
}

fn schema_doc(file: &str) -> Value {
    let path = repo().join("istio/schema").join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    serde_yaml::from_str(&text).unwrap()
}

fn wasm_plugin_schema() -> Value {
    crd_schema(
        "wasmplugin-crd-schema.yaml",
        "WasmPlugin",
        "extensions.istio.io/v1alpha1",
    )
}

fn peer_authentication_schema() -> Value {
    crd_schema(
        "peerauthentication-crd-schema.yaml",
        "PeerAuthentication",
        "security.istio.io/v1",
    )
}

/// The CEL rules this file checks in code, as the schema files spell them
/// (whitespace collapsed).
const KNOWN_CEL_RULES: [&str; 8] = [
    r#"!self.contains("*")"#,
    r#"self.all(key, !key.contains("*"))"#,
    "self.all(key, key.size() != 0)",
    "self.size() == 0",
    r#"isURL(self) ? (url(self).getScheme() in ["", "http", "https", "oci", "file"]) : (isURL("http://" + self) && url("http://" + self).getScheme() in ["", "http", "https", "oci", "file"])"#,
    r#"(has(self.valueFrom) ? self.valueFrom : "") != "HOST" || !has(self.value)"#,
    "(has(self.selector) ? 1 : 0) + (has(self.targetRef) ? 1 : 0) + (has(self.targetRefs) ? 1 : 0) <= 1",
    "self.all(key, 0 < int(key) && int(key) <= 65535)",
];
const PORT_LEVEL_RULE: &str = "has(self.portLevelMtls) ? (((has(self.selector) && has(self.selector.matchLabels)) ? self.selector.matchLabels : {}).size() > 0) : true";

fn cel_rules(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(rules) = map
                .get("x-kubernetes-validations")
                .and_then(Value::as_array)
            {
                for rule in rules {
                    let text = rule["rule"].as_str().unwrap();
                    out.push(text.split_whitespace().collect::<Vec<_>>().join(" "));
                }
            }
            map.values().for_each(|v| cel_rules(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| cel_rules(v, out)),
        _ => {}
    }
}

/// A rule added to Istio's CRDs must be implemented here before the schema
/// copy is refreshed.
#[test]
fn every_cel_rule_in_the_schemas_is_checked_in_code() {
    let mut rules = Vec::new();
    cel_rules(&schema_doc("wasmplugin-crd-schema.yaml"), &mut rules);
    cel_rules(
        &schema_doc("peerauthentication-crd-schema.yaml"),
        &mut rules,
    );
    assert!(rules.len() >= 9, "{rules:#?}");
    for rule in &rules {
        assert!(
            KNOWN_CEL_RULES.contains(&rule.as_str()) || rule == PORT_LEVEL_RULE,
            "CEL rule not checked by this test: {rule}"
        );
    }
}

/// The object envelope as Kubernetes checks it.
fn metadata_problems(manifest: &Value) -> Vec<String> {
    let mut problems = Vec::new();
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

/// CEL: `selector.matchLabels` keys non-empty, no `*` in keys or values.
fn match_label_problems(labels: &Value, problems: &mut Vec<String>) {
    if let Some(labels) = labels.as_object() {
        for (key, value) in labels {
            if key.is_empty() || key.contains('*') {
                problems.push(format!("cel: selector key `{key}`"));
            }
            if value.as_str().is_some_and(|v| v.contains('*')) {
                problems.push(format!("cel: selector value `{value}`"));
            }
        }
    }
}

fn schema_problems(schema: &Value, manifest: &Value) -> Vec<String> {
    let validator = jsonschema::validator_for(schema).unwrap();
    validator
        .iter_errors(manifest)
        .map(|e| format!("schema: {} at {}", e, e.instance_path()))
        .collect()
}

/// Every problem with one PeerAuthentication: schema errors and CEL rules.
fn peer_authentication_problems(schema: &Value, manifest: &Value) -> Vec<String> {
    let mut problems = schema_problems(schema, manifest);
    let spec = &manifest["spec"];
    match_label_problems(&spec["selector"]["matchLabels"], &mut problems);
    if let Some(ports) = spec["portLevelMtls"].as_object() {
        for key in ports.keys() {
            if !key.parse::<u32>().is_ok_and(|p| (1..=65535).contains(&p)) {
                problems.push(format!("cel: portLevelMtls port `{key}`"));
            }
        }
        let labels = spec["selector"]["matchLabels"]
            .as_object()
            .map_or(0, |l| l.len());
        if labels == 0 {
            problems.push("cel: portLevelMtls requires selector".into());
        }
    }
    problems.extend(metadata_problems(manifest));
    problems
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
    let mut problems = schema_problems(schema, manifest);
    let spec = &manifest["spec"];
    // CEL: url scheme is one of http, https, file, oci (or none).
    if let Some(url) = spec["url"].as_str() {
        if let Some((scheme, _)) = url.split_once("://") {
            if !["http", "https", "file", "oci"].contains(&scheme.to_ascii_lowercase().as_str()) {
                problems.push(format!("cel: url scheme `{scheme}`"));
            }
        }
    }
    match_label_problems(&spec["selector"]["matchLabels"], &mut problems);
    // CEL: at most one of selector, targetRef, targetRefs.
    let set = ["selector", "targetRef", "targetRefs"]
        .iter()
        .filter(|k| spec.get(**k).is_some())
        .count();
    if set > 1 {
        problems.push("cel: only one of targetRefs or selector can be set".into());
    }
    // CEL: no cross-namespace target references.
    let refs = spec["targetRefs"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .chain(spec.get("targetRef").cloned());
    for target in refs {
        if target["namespace"]
            .as_str()
            .is_some_and(|ns| !ns.is_empty())
        {
            problems.push("cel: cross namespace referencing is not currently supported".into());
        }
    }
    // CEL: vmConfig.env `value` only with valueFrom INLINE (or unset).
    if let Some(env) = spec["vmConfig"]["env"].as_array() {
        for var in env {
            if var.get("valueFrom").is_some_and(|v| v == "HOST") && var.get("value").is_some() {
                problems.push(format!(
                    "cel: env `{}` has a value but is not INLINE",
                    var["name"]
                ));
            }
        }
    }
    problems.extend(metadata_problems(manifest));
    problems
}

fn parse_yaml_stream(text: &str) -> Vec<Value> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

fn generate_with(mode: Mode, peer: PeerCertificate, attachment: Attachment) -> Vec<Value> {
    let compiled = compile_source(POLICY, "istio-test.policy").unwrap();
    let mut opts = IstioOptions::new(
        "shop",
        Vec::new(),
        "oci://registry.example.com/meshward/filter:0.1.0",
    );
    opts.attachment = attachment;
    opts.sha256 = Some("ab".repeat(32));
    opts.mode = mode;
    opts.peer_certificate = peer;
    opts.priority = Some(100);
    opts.ports = vec![8080];
    let generated = istio::generate(&compiled, &[], &opts).unwrap();
    // Through YAML text, as kubectl would read it.
    parse_yaml_stream(&generated.to_yaml("test").unwrap())
}

fn selector() -> Attachment {
    Attachment::Selector(vec![
        ("app".into(), "orders".into()),
        ("version".into(), "v1".into()),
    ])
}

fn generate(mode: Mode, peer: PeerCertificate) -> Vec<Value> {
    generate_with(mode, peer, selector())
}

fn target(kind: TargetKind, name: &str) -> TargetRef {
    TargetRef {
        kind,
        name: name.into(),
    }
}

/// Every mode with every attachment it accepts.
fn every_shape() -> Vec<(String, Vec<Value>)> {
    let mut shapes = Vec::new();
    for mode in [Mode::Server, Mode::Client, Mode::Both, Mode::Gateway] {
        for peer in [PeerCertificate::Forwarded, PeerCertificate::ConnectionOnly] {
            for attachment in [selector(), Attachment::Namespace] {
                let what = format!("{mode:?}/{peer:?}/{attachment:?}");
                shapes.push((what, generate_with(mode, peer, attachment)));
            }
        }
    }
    let gateway = Attachment::Targets(vec![target(TargetKind::Gateway, "ingress")]);
    shapes.push((
        "gateway targetRefs".into(),
        generate_with(Mode::Gateway, PeerCertificate::Forwarded, gateway),
    ));
    for targets in [
        vec![target(TargetKind::Gateway, "waypoint")],
        vec![
            target(TargetKind::Service, "orders"),
            target(TargetKind::Service, "payments"),
        ],
    ] {
        let what = format!("waypoint {targets:?}");
        shapes.push((
            what,
            generate_with(
                Mode::Waypoint,
                PeerCertificate::Forwarded,
                Attachment::Targets(targets),
            ),
        ));
    }
    shapes
}

#[test]
fn generated_manifests_satisfy_the_crd_schemas_and_cel_rules() {
    let wasm = wasm_plugin_schema();
    let peer_authn = peer_authentication_schema();
    let mut kinds = std::collections::BTreeSet::new();
    for (what, manifests) in every_shape() {
        for manifest in manifests {
            let kind = manifest["kind"].as_str().unwrap().to_owned();
            let problems = match kind.as_str() {
                "WasmPlugin" => wasm_plugin_problems(&wasm, &manifest),
                "PeerAuthentication" => peer_authentication_problems(&peer_authn, &manifest),
                "EnvoyFilter" => metadata_problems(&manifest),
                other => panic!("{what}: unexpected kind {other}"),
            };
            assert!(problems.is_empty(), "{what}: {problems:#?}\n{manifest:#}");
            kinds.insert(kind);
        }
    }
    assert_eq!(kinds.len(), 3, "{kinds:?}");
}

#[test]
fn the_validator_is_not_vacuous() {
    let schema = wasm_plugin_schema();
    let good = generate(Mode::Server, PeerCertificate::Forwarded).remove(0);
    assert!(wasm_plugin_problems(&schema, &good).is_empty());
    let waypoint = generate_with(
        Mode::Waypoint,
        PeerCertificate::Forwarded,
        Attachment::Targets(vec![target(TargetKind::Gateway, "waypoint")]),
    )
    .remove(0);
    assert!(wasm_plugin_problems(&schema, &waypoint).is_empty());
    type Breaker = fn(&mut Value);
    let broken: [(&str, &Value, Breaker); 13] = [
        ("bad failStrategy", &good, |m| {
            m["spec"]["failStrategy"] = json!("FAIL_MAYBE")
        }),
        ("unknown field", &good, |m| {
            m["spec"]["vmId"] = json!("meshward")
        }),
        ("bad sha256", &good, |m| {
            m["spec"]["sha256"] = json!("sha256:abc")
        }),
        ("bad mode", &good, |m| {
            m["spec"]["match"][0]["mode"] = json!("INBOUND")
        }),
        ("port 0", &good, |m| {
            m["spec"]["match"][0]["ports"] = json!([{"number": 0}])
        }),
        ("priority as text", &good, |m| {
            m["spec"]["priority"] = json!("high")
        }),
        ("star selector", &good, |m| {
            m["spec"]["selector"]["matchLabels"]["app"] = json!("*")
        }),
        ("ftp url", &good, |m| m["spec"]["url"] = json!("ftp://x/y")),
        (
            "env value from HOST",
            &good,
            |m| {
                m["spec"]["vmConfig"] =
                    json!({"env": [{"name": "A", "value": "b", "valueFrom": "HOST"}]})
            },
        ),
        ("selector and targetRefs", &waypoint, |m| {
            m["spec"]["selector"] = json!({"matchLabels": {"app": "x"}})
        }),
        ("cross-namespace target", &waypoint, |m| {
            m["spec"]["targetRefs"][0]["namespace"] = json!("other")
        }),
        ("target without kind", &waypoint, |m| {
            m["spec"]["targetRefs"][0]
                .as_object_mut()
                .unwrap()
                .remove("kind");
        }),
        ("17 targets", &waypoint, |m| {
            m["spec"]["targetRefs"] = json!((0..17)
                .map(|i| json!({"kind": "Service", "name": format!("s{i}")}))
                .collect::<Vec<_>>())
        }),
    ];
    for (what, base, breaker) in broken {
        let mut manifest = base.clone();
        breaker(&mut manifest);
        assert!(
            !wasm_plugin_problems(&schema, &manifest).is_empty(),
            "{what}: not caught"
        );
    }
    let pa_schema = peer_authentication_schema();
    let pa = generate(Mode::Server, PeerCertificate::Forwarded)
        .into_iter()
        .find(|m| m["kind"] == "PeerAuthentication")
        .unwrap();
    assert!(peer_authentication_problems(&pa_schema, &pa).is_empty());
    let pa_broken: [(&str, Breaker); 4] = [
        ("bad mtls mode", |m| m["spec"]["mtls"]["mode"] = json!("ON")),
        ("port 0", |m| {
            m["spec"]["portLevelMtls"] = json!({"0": {"mode": "STRICT"}})
        }),
        ("port level without selector", |m| {
            m["spec"].as_object_mut().unwrap().remove("selector");
            m["spec"]["portLevelMtls"] = json!({"8080": {"mode": "STRICT"}})
        }),
        ("unknown field", |m| m["spec"]["mode"] = json!("STRICT")),
    ];
    for (what, breaker) in pa_broken {
        let mut manifest = pa.clone();
        breaker(&mut manifest);
        assert!(
            !peer_authentication_problems(&pa_schema, &manifest).is_empty(),
            "{what}: not caught"
        );
    }
}

#[test]
fn peer_authentication_is_strict_for_the_same_workloads() {
    let manifests = generate(Mode::Both, PeerCertificate::Forwarded);
    let pa = manifests
        .iter()
        .find(|m| m["kind"] == "PeerAuthentication")
        .unwrap();
    assert_eq!(pa["apiVersion"], "security.istio.io/v1");
    assert_eq!(pa["spec"]["mtls"]["mode"], "STRICT");
    assert_eq!(
        pa["spec"]["selector"]["matchLabels"],
        manifests[0]["spec"]["selector"]["matchLabels"]
    );
    // Namespace-wide plugins: a namespace-wide STRICT policy.
    let wide = generate_with(
        Mode::Server,
        PeerCertificate::Forwarded,
        Attachment::Namespace,
    );
    let pa = wide
        .iter()
        .find(|m| m["kind"] == "PeerAuthentication")
        .unwrap();
    assert_eq!(pa["spec"], json!({"mtls": {"mode": "STRICT"}}));
}

#[test]
fn plugin_config_is_the_compiled_policy_with_direction_and_peer_source() {
    let compiled = compile_source(POLICY, "istio-test.policy").unwrap();
    let expected = compiled.plugin_config_value(&[]);
    let manifests: Vec<Value> = generate(Mode::Both, PeerCertificate::ConnectionOnly)
        .into_iter()
        .filter(|m| m["kind"] == "WasmPlugin")
        .collect();
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
    // The waypoint's configuration loads too, reading the caller from
    // Istio's filter state.
    let waypoint = generate_with(
        Mode::Waypoint,
        PeerCertificate::Forwarded,
        Attachment::Targets(vec![target(TargetKind::Gateway, "waypoint")]),
    );
    let config = waypoint[0]["spec"]["pluginConfig"].to_string();
    let loaded = FilterConfig::from_json(config.as_bytes())
        .unwrap_or_else(|e| panic!("the engine refuses the waypoint pluginConfig: {e}"));
    assert_eq!(
        loaded.peer_certificate,
        meshward_engine::identity::PeerCertificateSource::FilterState
    );
    assert_eq!(loaded.peer_principal_key, "io.istio.peer_principal");
}

#[test]
fn forwarded_mode_adds_the_xfcc_envoy_filter_for_the_same_workloads() {
    let manifests = generate(Mode::Server, PeerCertificate::Forwarded);
    assert_eq!(manifests.len(), 3);
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

/// The README commands, run for real; compared with `istio/examples/`.
/// `UPDATE_GOLDEN=1` rewrites the examples (review the diff).
#[test]
fn checked_in_examples_are_current_and_valid() {
    let digest = "0".repeat(64);
    let examples: [(&str, Vec<&str>, usize); 2] = [
        (
            "istio/examples/shop-wasmplugins.yaml",
            vec![
                "--policy",
                "policy-compiler/examples/shop.policy",
                "--namespace",
                "shop",
                "--selector",
                "app=orders",
                "--mode",
                "both",
                "--mesh-trust-domain",
                "shop.example",
            ],
            4,
        ),
        (
            "istio/examples/shop-waypoint.yaml",
            vec![
                "--policy",
                "istio/examples/shop-ambient.policy",
                "--namespace",
                "shop",
                "--mode",
                "waypoint",
                "--target-gateway",
                "waypoint",
                "--fail-strategy",
                "reload",
            ],
            2,
        ),
    ];
    let wasm = wasm_plugin_schema();
    let peer_authn = peer_authentication_schema();
    for (file, args, count) in examples {
        let out = Command::new(MESHWARD)
            .current_dir(repo())
            .args([
                "istio",
                "--image",
                "oci://registry.example.com/meshward/filter:0.1.0",
                "--sha256",
                &digest,
            ])
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{file}: {stderr}");
        // The documented commands warn only about FAIL_RELOAD's Istio
        // version and a namespace-wide STRICT PeerAuthentication.
        assert!(
            stderr
                .lines()
                .filter(|l| l.starts_with("warning:"))
                .all(|l| l.contains("FAIL_RELOAD") || l.contains("mTLS STRICT for every workload")),
            "{file}: {stderr}"
        );
        let generated = String::from_utf8(out.stdout).unwrap();
        let example = repo().join(file);
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&example, &generated).unwrap();
        }
        let checked_in = std::fs::read_to_string(&example).unwrap_or_default();
        assert!(
            checked_in == generated,
            "{file} is not what `meshward istio` generates now \
             (UPDATE_GOLDEN=1 cargo test -p meshward-policy --test istio_manifests to refresh)"
        );
        let docs = parse_yaml_stream(&checked_in);
        assert_eq!(docs.len(), count, "{file}");
        for doc in &docs {
            let problems = match doc["kind"].as_str() {
                Some("WasmPlugin") => wasm_plugin_problems(&wasm, doc),
                Some("PeerAuthentication") => peer_authentication_problems(&peer_authn, doc),
                _ => metadata_problems(doc),
            };
            assert!(problems.is_empty(), "{file}: {problems:#?}");
        }
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
    // No attachment at all is refused (namespace-wide must be explicit), a
    // wildcard is refused.
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--namespace-wide"));
    // A waypoint needs targets; a Service target needs a waypoint; selector
    // and targets do not mix (clap).
    assert_eq!(
        run(&["--mode", "waypoint", "--namespace-wide"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(run(&["--target-service", "orders"]).status.code(), Some(2));
    assert_eq!(
        run(&["--selector", "app=orders", "--target-gateway", "waypoint"])
            .status
            .code(),
        Some(2)
    );
    // shop.policy bounds certificate lifetime: a waypoint has no certificate.
    let out = run(&["--mode", "waypoint", "--target-gateway", "waypoint"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("max_cert_lifetime"));
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
