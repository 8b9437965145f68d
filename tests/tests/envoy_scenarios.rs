//! The multi-file and multi-listener configs under `envoy/` (sidecar, edge
//! gateway, ECDS) are valid for Envoy 1.40 with the real filter and a real
//! compiled policy: `envoy --mode validate` parses them, loads the wasm in V8
//! and runs `on_configure` for every statically configured filter. (The
//! ECDS config's filter arrives at run time: `live_updates.rs` runs it.)

use std::fs;

use meshward_e2e::ecds::{fill, filter_resource, template, yaml_single_quoted};
use meshward_e2e::envoy;
use meshward_e2e::policy::plugin_config;
use meshward_e2e::workspace::{filter_wasm, repo_root, Scratch};
use meshward_e2e::TestPki;
use meshward_engine::config::FilterConfig;

/// The shop policy's plugin configuration with `"direction"` set, as
/// `envoy/README.md` describes it (checked with the engine first).
fn config_with_direction(direction: &str) -> String {
    let shop =
        fs::read_to_string(repo_root().join("policy-compiler/examples/shop.policy")).unwrap();
    let mut config: serde_json::Value =
        serde_json::from_str(&plugin_config(&shop, "shop.policy", &[])).unwrap();
    config["direction"] = direction.into();
    let text = config.to_string();
    if let Err(e) = FilterConfig::from_json(text.as_bytes()) {
        panic!("the engine refuses the {direction} configuration: {e}");
    }
    text
}

fn validate(scratch: &Scratch, name: &str, yaml: &str) -> String {
    let path = scratch.path().join(name);
    fs::write(&path, yaml).unwrap();
    let (ok, output) = envoy::validate(&path);
    assert!(ok, "envoy --mode validate rejected {name}:\n{output}");
    output
}

#[test]
fn sidecar_edge_and_ecds_configs_validate() {
    let scratch = Scratch::new("scenarios");
    let cert_dir = scratch.path().join("certs");
    let pki = TestPki::new();
    pki.write_envoy_files(&cert_dir).unwrap();
    for (file, leaf) in [
        ("workload", pki.workload("shop", "orders")),
        ("gateway", pki.workload("edge", "gateway")),
    ] {
        fs::write(cert_dir.join(format!("{file}.pem")), &leaf.cert_pem).unwrap();
        fs::write(cert_dir.join(format!("{file}.key")), &leaf.key_pem).unwrap();
    }
    let wasm = filter_wasm();
    let common = |extra: &[(&'static str, String)]| {
        let mut values = vec![
            ("MESHWARD_LISTEN_PORT", "0".to_owned()),
            ("MESHWARD_ADMIN_PORT", "0".to_owned()),
            ("MESHWARD_UPSTREAM_PORT", "18080".to_owned()),
            ("MESHWARD_CERT_DIR", cert_dir.display().to_string()),
            ("MESHWARD_WASM", wasm.display().to_string()),
        ];
        values.extend_from_slice(extra);
        values
    };
    let inbound = yaml_single_quoted(&config_with_direction("inbound"));
    let outbound = yaml_single_quoted(&config_with_direction("outbound"));

    let sidecar = fill(
        &template("sidecar/envoy.yaml"),
        &common(&[
            ("MESHWARD_OUTBOUND_PORT", "0".to_owned()),
            ("MESHWARD_PEER_PORT", "18443".to_owned()),
            ("MESHWARD_PLUGIN_CONFIG", inbound.clone()),
            ("MESHWARD_OUTBOUND_PLUGIN_CONFIG", outbound),
        ]),
    );
    let output = validate(&scratch, "sidecar.yaml", &sidecar);
    // One on_configure per listener's filter, both with the policy.
    assert!(
        output.matches("meshward: loaded policy").count() >= 2,
        "sidecar: not both filters loaded the policy:\n{output}"
    );

    let edge = fill(
        &template("edge/envoy.yaml"),
        &common(&[("MESHWARD_PLUGIN_CONFIG", inbound)]),
    );
    let output = validate(&scratch, "edge.yaml", &edge);
    assert!(
        output.contains("meshward: loaded policy"),
        "edge:\n{output}"
    );

    // ECDS: the bootstrap validates; the resource file is well-formed YAML
    // naming the filter the listener asks for.
    let ecds_dir = scratch.path().join("ecds");
    fs::create_dir_all(&ecds_dir).unwrap();
    let resource = filter_resource(&wasm, &config_with_direction("inbound"));
    fs::write(ecds_dir.join("meshward-filter.yaml"), &resource).unwrap();
    let bootstrap = fill(
        &template("ecds/envoy.yaml"),
        &common(&[("MESHWARD_ECDS_DIR", ecds_dir.display().to_string())]),
    );
    validate(&scratch, "ecds.yaml", &bootstrap);
}
