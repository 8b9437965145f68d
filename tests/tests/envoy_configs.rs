//! Every config shipped in `envoy/` is valid for Envoy 1.40 with the real
//! filter and a real compiled policy: `envoy --mode validate` parses it, loads
//! the wasm in V8 and runs the filter's `on_configure`.

use std::fs;

use meshward_e2e::envoy::{self, ConfigVars};
use meshward_e2e::policy::plugin_config;
use meshward_e2e::workspace::{envoy_dir, filter_wasm, repo_root, Scratch};
use meshward_e2e::TestPki;

#[test]
fn every_config_in_envoy_dir_validates() {
    let shop = fs::read_to_string(repo_root().join("policy-compiler/examples/shop.policy"))
        .expect("policy-compiler/examples/shop.policy");
    let config_json = plugin_config(&shop, "shop.policy", &[]);
    let scratch = Scratch::new("validate");
    let cert_dir = scratch.path().join("certs");
    TestPki::new().write_envoy_files(&cert_dir).unwrap();
    let vars = ConfigVars {
        listen_port: 0,
        admin_port: 0,
        upstream_port: 18080,
        cert_dir,
        wasm: filter_wasm(),
        plugin_config: config_json,
    };

    let mut configs: Vec<_> = fs::read_dir(envoy_dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    configs.sort();
    assert!(
        !configs.is_empty(),
        "no configs in {}",
        envoy_dir().display()
    );
    for config in &configs {
        let name = config.file_name().unwrap().to_string_lossy().into_owned();
        let rendered = envoy::render(&fs::read_to_string(config).unwrap(), &vars);
        let path = scratch.path().join(&name);
        fs::write(&path, rendered).unwrap();
        let (ok, output) = envoy::validate(&path);
        assert!(ok, "envoy --mode validate rejected envoy/{name}:\n{output}");
        assert!(
            output.contains("meshward: loaded policy"),
            "envoy/{name}: the filter did not report loading the policy:\n{output}"
        );
    }
}
