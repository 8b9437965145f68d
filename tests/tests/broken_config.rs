//! A broken or missing plugin configuration fails closed: the filter's
//! `on_configure` refuses it, and Envoy with a static bootstrap refuses to
//! start at all (FACTS.md), so nothing is ever served without a policy. The
//! log says why.

use meshward_e2e::envoy::{self, StartError};
use meshward_e2e::policy::plugin_config;
use meshward_e2e::workspace::Scratch;
use meshward_e2e::Mesh;

const POLICY: &str = r#"
policy "e2e-broken" {
  trust_domains "shop.example"
}
intent health {
  method GET
  path "/healthz"
}
allow anyone-health {
  subject any_authenticated
  intent health
}
"#;

/// A good configuration with its compiled policy damaged in the middle.
fn corrupted_policy_config() -> String {
    let good: serde_json::Value =
        serde_json::from_str(&plugin_config(POLICY, "broken.policy", &[])).unwrap();
    let policy = good["policy"].as_str().unwrap();
    // Flip one base64 character in the middle: valid base64, wrong bytes
    // (the content hash no longer matches).
    let mid = policy.len() / 2;
    let flipped = if &policy[mid..=mid] == "A" { "B" } else { "A" };
    let damaged = format!("{}{}{}", &policy[..mid], flipped, &policy[mid + 1..]);
    let mut bad = good.clone();
    bad["policy"] = serde_json::Value::String(damaged);
    bad.to_string()
}

fn assert_refuses_to_start(label: &str, raw: &str) {
    let result = Mesh::builder_with_raw_config(raw).label(label).try_start();
    let err = match result {
        Ok(mesh) => panic!(
            "{label}: Envoy started and serves on {} with a broken meshward configuration",
            mesh.envoy.listener()
        ),
        Err(e) => e,
    };
    match &err {
        StartError::Exited { status, .. } => assert!(!status.success(), "{label}: {status}"),
        StartError::Timeout { .. } => panic!("{label}: Envoy hung instead of refusing: {err}"),
    }
    assert!(
        err.log().contains("meshward: rejected configuration"),
        "{label}: the log does not name the problem:\n{}",
        err.log()
    );
}

#[test]
fn missing_configuration_fails_closed() {
    assert_refuses_to_start("empty-config", "");
}

#[test]
fn malformed_configuration_fails_closed() {
    assert_refuses_to_start("not-json", "this is not json");
    assert_refuses_to_start("not-base64", r#"{"policy":"!!! not base64 !!!"}"#);
    assert_refuses_to_start("not-a-policy", r#"{"policy":"aGVsbG8gd29ybGQ="}"#);
    assert_refuses_to_start(
        "unknown-field",
        r#"{"policy":"aGVsbG8gd29ybGQ=","fail_open":true}"#,
    );
}

#[test]
fn corrupted_compiled_policy_fails_closed() {
    assert_refuses_to_start("corrupted", &corrupted_policy_config());
}

#[test]
fn validate_mode_rejects_a_broken_configuration_too() {
    // What an operator's CI would run before shipping a config.
    let scratch = Scratch::new("validate-broken");
    let pki = meshward_e2e::TestPki::new();
    let cert_dir = scratch.path().join("certs");
    pki.write_envoy_files(&cert_dir).unwrap();
    let yaml = envoy::render(
        &envoy::demo_template(),
        &envoy::ConfigVars {
            listen_port: 0,
            admin_port: 0,
            upstream_port: 9,
            cert_dir,
            wasm: meshward_e2e::workspace::filter_wasm(),
            plugin_config: corrupted_policy_config(),
        },
    );
    let path = scratch.path().join("broken.yaml");
    std::fs::write(&path, yaml).unwrap();
    let (ok, output) = envoy::validate(&path);
    assert!(
        !ok,
        "envoy --mode validate accepted a corrupted policy:\n{output}"
    );
    assert!(
        output.contains("meshward: rejected configuration"),
        "validate output does not name the problem:\n{output}"
    );
}
