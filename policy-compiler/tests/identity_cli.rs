//! `meshward` with identity settings, run as scripts run it: `compile`
//! reads key files relative to the policy and writes the complete plugin
//! configuration; `explain --claim` takes claim paths as rules write them.

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

use meshward_engine::config::FilterConfig;
use meshward_engine::identity::KeyOwner;
use serde_json::Value;

fn meshward(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshward"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run meshward")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("policies/keys")).unwrap();
    dir
}

fn golden_policy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/ok_identity_sources.policy")
}

const POLICY: &str = r#"policy "cli" {
  trust_domains "shop.example"
}

identity {
  issuer "https://idp.example" {
    audiences "orders"
    keys file "keys/idp.jwks.json"
  }
}

intent orders.read {
  method GET
  path "/orders/{id}"
}

allow admins-read {
  principal user
  intent orders.read
  when user claim "realm_access.roles" contains "admin"
}
"#;

const JWKS: &str = r#"{"keys": [{"kty": "EC", "crv": "P-256", "kid": "idp-1",
  "x": "axfR8uEsQkf4vOblY6RA8ncDfYEt6zOg9KE5RdiYwpY",
  "y": "T-NC4v4af5uO5-tKfA-eFivOM1drMV7Oy7ZAaDe_UfU"}]}"#;

#[test]
fn compile_reads_key_files_beside_the_policy_from_any_directory() {
    let dir = scratch("identity-cli-compile");
    fs::write(dir.join("policies/cli.policy"), POLICY).unwrap();
    fs::write(dir.join("policies/keys/idp.jwks.json"), JWKS).unwrap();
    let out = dir.join("cli.json");
    // Run from the scratch root: the key file is found beside the policy.
    let output = meshward(
        &[
            "compile",
            "policies/cli.policy",
            "-o",
            out.to_str().unwrap(),
        ],
        &dir,
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let written = fs::read(&out).unwrap();
    let config: Value = serde_json::from_slice(&written).unwrap();
    assert_eq!(
        config["user_tokens"]["claims"],
        serde_json::json!(["realm_access.roles"])
    );
    let loaded = FilterConfig::from_json(&written).unwrap();
    assert_eq!(
        loaded.key_sets.iter().map(|(o, _)| o).collect::<Vec<_>>(),
        [&KeyOwner::Issuer("https://idp.example".into())]
    );

    // Without the file: exit 1, the path and the cause.
    fs::remove_file(dir.join("policies/keys/idp.jwks.json")).unwrap();
    let output = meshward(
        &[
            "compile",
            "policies/cli.policy",
            "-o",
            out.to_str().unwrap(),
        ],
        &dir,
    );
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("error[E041]: cannot read key file `policies/keys/idp.jwks.json`"),
        "{stderr}"
    );
}

#[test]
fn explain_takes_claim_paths_in_any_spelling() {
    let policy = golden_policy();
    let policy = policy.to_str().unwrap();
    let explain = |claim: &str| {
        meshward(
            &[
                "explain",
                policy,
                "--peer",
                "none",
                "--method",
                "GET",
                "--path",
                "/orders/1",
                "--user",
                "bob",
                "--claim",
                claim,
                "--format",
                "json",
            ],
            Path::new(env!("CARGO_MANIFEST_DIR")),
        )
    };
    for spelling in [
        "resource_access[shop.api].roles=buyer",
        "resource_access.[shop.api].roles=buyer",
    ] {
        let output = explain(spelling);
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
        let outcome: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(outcome["decision"], "allow", "{outcome}");
        assert!(outcome.to_string().contains("\"buyers-read\""), "{outcome}");
    }
    // `shop` → `api` is another path: denied.
    let output = explain("resource_access.shop.api.roles=buyer");
    assert_eq!(output.status.code(), Some(4));
    // A malformed path is a usage error naming the problem.
    let output = explain("resource_access[shop.api.roles=buyer");
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr)
            .contains("is not a valid claim path: `[` at byte 15 is never closed by `]`"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn compile_takes_per_environment_settings() {
    let dir = scratch("identity-cli-settings");
    fs::write(dir.join("policies/cli.policy"), POLICY).unwrap();
    fs::write(dir.join("policies/keys/idp.jwks.json"), JWKS).unwrap();
    fs::create_dir_all(dir.join("envs")).unwrap();
    fs::write(
        dir.join("envs/prod.settings"),
        "identity {\n  issuer \"https://idp.prod.example\" {\n    audiences \"orders\"\n    keys fetch cluster \"idp\" path \"/jwks\"\n  }\n}\n",
    )
    .unwrap();
    fs::write(
        dir.join("envs/broken.settings"),
        "identity {\n  issuer \"https://idp.prod.example\" {\n    audiences \"orders\"\n  }\n}\n",
    )
    .unwrap();
    let out = dir.join("prod.json");
    let compile = |settings: &str| {
        meshward(
            &[
                "compile",
                "policies/cli.policy",
                "--settings",
                settings,
                "-o",
                out.to_str().unwrap(),
            ],
            &dir,
        )
    };
    let output = compile("envs/prod.settings");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let config: Value = serde_json::from_slice(&fs::read(&out).unwrap()).unwrap();
    assert_eq!(
        config["user_tokens"]["issuers"][0]["issuer"],
        "https://idp.prod.example"
    );
    assert_eq!(config["key_fetch"][0]["issuer"], "https://idp.prod.example");

    let output = compile("envs/broken.settings");
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("error[E040]: issuer `https://idp.prod.example` has no keys")
            && stderr.contains("--> envs/broken.settings:2:3"),
        "{stderr}"
    );
    // With --format json: one document, each diagnostic naming its file.
    let output = meshward(
        &[
            "compile",
            "policies/cli.policy",
            "--settings",
            "envs/broken.settings",
            "-o",
            out.to_str().unwrap(),
            "--format",
            "json",
        ],
        &dir,
    );
    assert_eq!(output.status.code(), Some(1));
    let doc: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", text(&output.stdout)));
    assert_eq!(
        (doc["ok"].clone(), doc["error_count"].clone()),
        (Value::Bool(false), 1.into())
    );
    assert_eq!(doc["errors"][0]["code"], "E040");
    assert_eq!(doc["errors"][0]["file"], "envs/broken.settings");

    let output = compile("envs/missing.settings");
    assert_eq!(output.status.code(), Some(2));
}
