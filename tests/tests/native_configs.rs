//! The native build's configs under `envoy/native/` (sidecar, edge, ECDS)
//! are valid for Envoy 1.40 with the real `libmeshward.so` and a real
//! compiled policy: `envoy --mode validate` loads the module (the ABI
//! version handshake), creates each filter configuration (the pipeline's
//! configure step) and exits. A configuration the module refuses fails
//! validation: Envoy would refuse to start with it.

use std::fs;

use meshward_e2e::build::FilterBuild;
use meshward_e2e::ecds::{fill, template, yaml_single_quoted};
use meshward_e2e::envoy;
use meshward_e2e::policy::plugin_config;
use meshward_e2e::workspace::{repo_root, Scratch};
use meshward_e2e::TestPki;

/// What Envoy 1.40 logs when the module's ABI version is the one it expects.
const ABI_MATCHED: &str = "Dynamic module ABI version v0.2.0 matched";
/// What the pipeline logs when a configuration loads.
const LOADED: &str = "meshward: loaded policy";

fn config_with_direction(direction: &str) -> String {
    let shop =
        fs::read_to_string(repo_root().join("policy-compiler/examples/shop.policy")).unwrap();
    let mut config: serde_json::Value =
        serde_json::from_str(&plugin_config(&shop, "shop.policy", &[])).unwrap();
    config["direction"] = direction.into();
    config.to_string()
}

fn validate(scratch: &Scratch, name: &str, yaml: &str) -> (bool, String) {
    let path = scratch.path().join(name);
    fs::write(&path, yaml).unwrap();
    envoy::validate(&path)
}

struct Fixture {
    scratch: Scratch,
    common: Vec<(&'static str, String)>,
}

fn fixture(label: &str) -> Fixture {
    FilterBuild::pin(FilterBuild::Native);
    let scratch = Scratch::new(label);
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
    let common = vec![
        ("MESHWARD_LISTEN_PORT", "0".to_owned()),
        ("MESHWARD_ADMIN_PORT", "0".to_owned()),
        ("MESHWARD_UPSTREAM_PORT", "18080".to_owned()),
        ("MESHWARD_CERT_DIR", cert_dir.display().to_string()),
    ];
    Fixture { scratch, common }
}

fn with(
    common: &[(&'static str, String)],
    extra: &[(&'static str, String)],
) -> Vec<(&'static str, String)> {
    let mut values = common.to_vec();
    values.extend_from_slice(extra);
    values
}

#[test]
fn sidecar_edge_and_ecds_configs_validate_with_the_module() {
    let Fixture { scratch, common } = fixture("native-configs");
    let inbound = yaml_single_quoted(&config_with_direction("inbound"));
    let outbound = yaml_single_quoted(&config_with_direction("outbound"));

    let sidecar = fill(
        &template("native/sidecar.yaml"),
        &with(
            &common,
            &[
                ("MESHWARD_OUTBOUND_PORT", "0".to_owned()),
                ("MESHWARD_PEER_PORT", "18443".to_owned()),
                ("MESHWARD_PLUGIN_CONFIG", inbound.clone()),
                ("MESHWARD_OUTBOUND_PLUGIN_CONFIG", outbound),
            ],
        ),
    );
    let (ok, output) = validate(&scratch, "sidecar.yaml", &sidecar);
    assert!(
        ok,
        "envoy --mode validate rejected envoy/native/sidecar.yaml:\n{output}"
    );
    assert!(
        output.contains(ABI_MATCHED),
        "sidecar: no ABI handshake:\n{output}"
    );
    assert!(
        output.matches(LOADED).count() >= 2,
        "sidecar: not both filters loaded the policy:\n{output}"
    );

    let edge = fill(
        &template("native/edge.yaml"),
        &with(&common, &[("MESHWARD_PLUGIN_CONFIG", inbound)]),
    );
    let (ok, output) = validate(&scratch, "edge.yaml", &edge);
    assert!(
        ok,
        "envoy --mode validate rejected envoy/native/edge.yaml:\n{output}"
    );
    assert!(output.contains(LOADED), "edge:\n{output}");

    // ECDS: the bootstrap validates, and the resource is the module's.
    let ecds_dir = scratch.path().join("ecds");
    fs::create_dir_all(&ecds_dir).unwrap();
    let resource = fill(
        &template("native/ecds-filter.yaml"),
        &[(
            "MESHWARD_PLUGIN_CONFIG",
            yaml_single_quoted(&config_with_direction("inbound")),
        )],
    );
    let parsed: serde_yaml::Value = serde_yaml::from_str(&resource).unwrap();
    assert_eq!(
        parsed["resources"][0]["typed_config"]["@type"].as_str(),
        Some(meshward_e2e::build::MODULE_TYPE)
    );
    fs::write(ecds_dir.join("meshward-filter.yaml"), &resource).unwrap();
    let bootstrap = fill(
        &template("native/ecds.yaml"),
        &with(
            &common,
            &[("MESHWARD_ECDS_DIR", ecds_dir.display().to_string())],
        ),
    );
    let (ok, output) = validate(&scratch, "ecds.yaml", &bootstrap);
    assert!(
        ok,
        "envoy --mode validate rejected envoy/native/ecds.yaml:\n{output}"
    );
}

#[test]
fn a_configuration_the_module_refuses_fails_validation() {
    let Fixture { scratch, common } = fixture("native-bad-config");
    let edge = fill(
        &template("native/edge.yaml"),
        &with(
            &common,
            &[(
                "MESHWARD_PLUGIN_CONFIG",
                r#"{"policy": "bm90IGEgcG9saWN5"}"#.to_owned(),
            )],
        ),
    );
    let (ok, output) = validate(&scratch, "edge-bad.yaml", &edge);
    assert!(
        !ok,
        "Envoy accepted a configuration the module must refuse:\n{output}"
    );
    assert!(
        output.contains(ABI_MATCHED),
        "the module was not loaded:\n{output}"
    );
    assert!(
        !output.contains(LOADED),
        "a broken policy loaded:\n{output}"
    );
}
