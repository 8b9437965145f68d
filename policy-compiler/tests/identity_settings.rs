//! The `identity` block end to end through the compiler: the plugin
//! configuration `compile` writes is compared with a golden file and loaded
//! by the filter's own configuration reader; key files are read relative to
//! the policy and embedded.
//!
//! Refresh the golden configuration with
//! `UPDATE_GOLDEN=1 cargo test -p meshward-policy --test identity_settings`.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test crate: a failed expectation should panic loudly"
)]

use std::fs;
use std::path::{Path, PathBuf};

use meshward_engine::config::{FetchTarget, FilterConfig, HandOff};
use meshward_engine::identity::ClaimPath;
use meshward_engine::identity::KeyOwner;
use meshward_policy::{compile_source, Code};
use serde_json::{json, Value};

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

/// The plugin configuration without the (binary) policy member.
fn config_without_policy(config: &Value) -> Value {
    let mut config = config.clone();
    config.as_object_mut().unwrap().remove("policy");
    config
}

#[test]
fn every_source_is_emitted_as_the_filter_reads_it() {
    let path = golden("ok_identity_sources.policy");
    let source = fs::read_to_string(&path).unwrap();
    let compiled = compile_source(&source, path.to_str().unwrap()).unwrap();
    let config = compiled.plugin_config_value(&[]);

    let expected_path = golden("ok_identity_sources.plugin_config.json");
    let actual = serde_json::to_string_pretty(&config_without_policy(&config)).unwrap() + "\n";
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        fs::write(&expected_path, &actual).unwrap();
    }
    assert_eq!(
        fs::read_to_string(&expected_path).unwrap(),
        actual,
        "UPDATE_GOLDEN=1 to refresh"
    );

    let loaded = FilterConfig::from_json(config.to_string().as_bytes()).unwrap();
    let svid = loaded.jwt_svid.as_ref().unwrap();
    assert_eq!(svid.header, "x-jwt-svid");
    assert_eq!(svid.audiences, ["spiffe://prod.example/ns/shop/sa/orders"]);
    assert_eq!(svid.rules.max_lifetime_secs, Some(300));
    assert_eq!(svid.rules.clock_skew_secs, 30);
    let user = loaded.user_tokens.as_ref().unwrap();
    assert_eq!(user.rules.max_token_bytes, 8192);
    assert_eq!(user.issuers[0].issuer, "https://idp.example/realms/shop");
    assert_eq!(user.issuers[0].audiences, ["orders", "account"]);
    // Claims the issuer lists, in canonical form (the rules' spellings meet them).
    assert_eq!(
        user.claims
            .iter()
            .map(ClaimPath::as_str)
            .collect::<Vec<_>>(),
        ["realm_access.roles", "resource_access[shop.api].roles"]
    );
    let targets: Vec<&FetchTarget> = loaded.key_fetch.iter().map(|f| &f.target).collect();
    assert_eq!(
        targets,
        [
            &FetchTarget::Keys(KeyOwner::Issuer("https://idp.example/realms/shop".into())),
            &FetchTarget::Keys(KeyOwner::TrustDomain("prod.example".into())),
            &FetchTarget::Revocation,
        ]
    );
    assert_eq!(loaded.key_fetch[0].max_staleness_secs, Some(3600));
    assert_eq!(loaded.key_fetch[0].timeout_ms, 2000);
    assert_eq!(loaded.key_fetch[1].authority, "spire-server");
    assert!(loaded.revocation.is_jti_revoked("stolen-token-1"));
    assert!(loaded.revoked_serials.contains("a1b"));
    assert_eq!(loaded.chain.hand_off, HandOff::Sealed);
}

/// A scratch directory under the target dir, fresh for each test.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("keys")).unwrap();
    dir
}

const JWKS: &str = r#"{"keys": [{"kty": "EC", "crv": "P-256", "kid": "idp-1", "use": "sig",
  "x": "axfR8uEsQkf4vOblY6RA8ncDfYEt6zOg9KE5RdiYwpY",
  "y": "T-NC4v4af5uO5-tKfA-eFivOM1drMV7Oy7ZAaDe_UfU"}]}"#;

const BUNDLE: &str = r#"{"spiffe_sequence": 3, "keys": [{"kty": "EC", "crv": "P-256", "kid": "b1",
  "use": "jwt-svid",
  "x": "axfR8uEsQkf4vOblY6RA8ncDfYEt6zOg9KE5RdiYwpY",
  "y": "T-NC4v4af5uO5-tKfA-eFivOM1drMV7Oy7ZAaDe_UfU"}]}"#;

const FILE_POLICY: &str = r#"policy "files" {
  trust_domains "prod.example"
}

identity {
  jwt_svid {
    audiences "spiffe://prod.example/ns/shop/sa/orders"
  }
  trust_bundle "prod.example" {
    keys file "keys/bundle.json"
  }
  issuer "https://idp.example" {
    audiences "orders"
    keys file "keys/idp.jwks.json"
  }
}

intent orders.read {
  method GET
  path "/orders/{id}"
}

allow users-read {
  principal user
  intent orders.read
  when user scope "orders.read"
}

allow checkout-reads {
  principal jwt_svid
  subject "spiffe://prod.example/ns/shop/sa/checkout"
  intent orders.read
}
"#;

#[test]
fn key_files_are_read_relative_to_the_policy_and_embedded() {
    let dir = scratch("identity_key_files");
    fs::write(dir.join("keys/idp.jwks.json"), JWKS).unwrap();
    fs::write(dir.join("keys/bundle.json"), BUNDLE).unwrap();
    let policy = dir.join("files.policy");
    let compiled = compile_source(FILE_POLICY, policy.to_str().unwrap()).unwrap();
    let config = compiled.plugin_config_value(&[]);
    let jwks: Value = serde_json::from_str(JWKS).unwrap();
    assert_eq!(config["user_tokens"]["issuers"][0]["jwks"], jwks);
    let bundle: Value = serde_json::from_str(BUNDLE).unwrap();
    assert_eq!(config["trust_bundles"]["prod.example"], bundle);
    let loaded = FilterConfig::from_json(config.to_string().as_bytes()).unwrap();
    let owners: Vec<&KeyOwner> = loaded.key_sets.iter().map(|(o, _)| o).collect();
    assert_eq!(
        owners,
        [
            &KeyOwner::TrustDomain("prod.example".into()),
            &KeyOwner::Issuer("https://idp.example".into()),
        ]
    );

    // The same policy from another directory: the files are not there.
    let elsewhere = scratch("identity_key_files_missing").join("files.policy");
    let errors = compile_source(FILE_POLICY, elsewhere.to_str().unwrap()).unwrap_err();
    let codes: Vec<Code> = errors.items().iter().map(|d| d.code).collect();
    assert_eq!(codes, [Code::UnreadableKeys, Code::UnreadableKeys]);
    let text = errors.to_string();
    assert!(
        text.contains("cannot read key file `") && text.contains("keys/idp.jwks.json`"),
        "{text}"
    );

    // A file that is not a key set for its owner (no `use: jwt-svid` in a
    // SPIFFE bundle is fine for a plain JWKS, but an `oct` key never is).
    fs::write(
        dir.join("keys/idp.jwks.json"),
        r#"{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}"#,
    )
    .unwrap();
    let errors = compile_source(FILE_POLICY, policy.to_str().unwrap()).unwrap_err();
    assert_eq!(errors.items().len(), 1);
    assert_eq!(errors.items()[0].code, Code::UnreadableKeys);
    assert!(errors.items()[0]
        .message
        .contains("is not a valid key set for issuer `https://idp.example`"));
}

#[test]
fn external_settings_skip_the_cross_checks_and_emit_nothing() {
    let source = r#"policy "p" {
  trust_domains "prod.example"
}
identity {
  external
}
intent i {
  path "/"
}
allow r {
  principal user
  intent i
  when user claim "realm_access.roles" contains "admin"
}
"#;
    let compiled = compile_source(source, "p.policy").unwrap();
    let config = compiled.plugin_config_value(&[]);
    for member in [
        "jwt_svid",
        "user_tokens",
        "trust_bundles",
        "key_fetch",
        "revoked",
        "chain",
    ] {
        assert!(config.get(member).is_none(), "{member}");
    }
    // Without `external`, the same policy is refused: the rule could never match.
    let without = source.replace("identity {\n  external\n}\n", "");
    let errors = compile_source(&without, "p.policy").unwrap_err();
    assert_eq!(errors.items()[0].code, Code::MissingIdentitySource);
    // `external` with sources written beside it is a contradiction.
    let mixed = source.replace(
        "  external\n",
        "  external\n  issuer \"https://idp.example\" {\n    audiences \"a\"\n    keys fetch cluster \"idp\" path \"/jwks\"\n  }\n",
    );
    let errors = compile_source(&mixed, "p.policy").unwrap_err();
    let codes: Vec<Code> = errors.items().iter().map(|d| d.code).collect();
    assert_eq!(codes, [Code::InvalidIdentitySetting]);
}

#[test]
fn claims_rules_read_are_added_to_the_configuration() {
    let source = r#"policy "p" {
  trust_domains "prod.example"
}
identity {
  issuer "https://idp.example" {
    audiences "a"
    keys fetch cluster "idp" path "/jwks"
  }
}
intent i {
  path "/"
}
allow r {
  principal user
  intent i
  when user claim "resource_access.[shop.api].roles" contains "buyer"
  when user claim "tenant" == "acme"
}
"#;
    let compiled = compile_source(source, "p.policy").unwrap();
    let config = compiled.plugin_config_value(&[]);
    assert_eq!(
        config["user_tokens"]["claims"],
        json!(["resource_access[shop.api].roles", "tenant"])
    );
}

/// The complete policies in the identity section of the language reference
/// compile without warnings and their tests pass; the fragment with
/// `external` compiles inside a policy, the settings file beside the first
/// example.
#[test]
fn the_identity_docs_examples_compile() {
    let doc = fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/policy-language.md"),
    )
    .unwrap();
    let start = doc.find("### Identity settings").expect("identity section");
    let end = start + doc[start..].find("\n### ").expect("next section");
    let section = &doc[start..end];
    let snippets: Vec<&str> = section
        .split("```")
        .skip(1)
        .step_by(2)
        .map(|block| block.split_once('\n').map_or(block, |(_, text)| text))
        .collect();
    let mut policies = 0;
    for snippet in &snippets {
        let source = if snippet.starts_with("policy ") {
            policies += 1;
            (*snippet).to_owned()
        } else {
            format!(
                "policy \"p\" {{\n  trust_domains \"shop.example\"\n}}\n{snippet}intent i {{\n  path \"/\"\n}}\nallow r {{\n  principal user\n  intent i\n}}\n"
            )
        };
        let compiled = if snippet.starts_with("# prod.settings") {
            // A settings file, for the first example policy.
            meshward_policy::compile_with_settings(
                snippets[0],
                "shop.policy",
                snippet,
                "prod.settings",
            )
            .unwrap_or_else(|e| panic!("{}\n{}", e.policy, e.settings))
        } else {
            compile_source(&source, "docs.policy")
                .unwrap_or_else(|d| panic!("docs snippet does not compile:\n{snippet}\n{d}"))
        };
        assert!(compiled.warnings.is_empty(), "{}", compiled.warnings);
        let report = meshward_policy::run_tests(&compiled).unwrap();
        assert_eq!(report.failed(), 0, "{report}");
        FilterConfig::from_json(compiled.plugin_config_json(&[]).as_bytes()).unwrap();
    }
    assert_eq!((snippets.len(), policies), (4, 2));
}

/// A policy that reads users, with development settings of its own.
const ENV_POLICY: &str = r#"policy "env" {
  trust_domains "prod.example"
}

identity {
  issuer "https://idp.dev.example" {
    audiences "orders"
    keys fetch cluster "dev_idp" path "/jwks"
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

#[test]
fn a_settings_file_replaces_the_policys_identity_block() {
    let dir = scratch("identity_settings_file");
    fs::create_dir_all(dir.join("envs/keys")).unwrap();
    fs::write(dir.join("envs/keys/idp.jwks.json"), JWKS).unwrap();
    let settings = r#"# production
identity {
  issuer "https://idp.example" {
    audiences "orders"
    keys file "keys/idp.jwks.json"
    keys fetch cluster "idp" path "/jwks" refresh 5m max_staleness 1h
  }
}
"#;
    let policy_path = dir.join("env.policy");
    let settings_path = dir.join("envs/prod.settings");
    let compiled = meshward_policy::compile_with_settings(
        ENV_POLICY,
        policy_path.to_str().unwrap(),
        settings,
        settings_path.to_str().unwrap(),
    )
    .unwrap_or_else(|e| panic!("{}\n{}", e.policy, e.settings));
    let config = compiled.plugin_config_value(&[]);
    let issuers = &config["user_tokens"]["issuers"];
    assert_eq!(issuers.as_array().unwrap().len(), 1);
    assert_eq!(issuers[0]["issuer"], "https://idp.example");
    // The key file is read relative to the settings file.
    assert_eq!(
        issuers[0]["jwks"],
        serde_json::from_str::<Value>(JWKS).unwrap()
    );
    assert_eq!(config["key_fetch"][0]["cluster"], "idp");
    assert_eq!(
        config["user_tokens"]["claims"],
        json!(["realm_access.roles"])
    );
    // The compiled policy is the same with either settings: only the
    // plugin configuration differs.
    let dev = compile_source(ENV_POLICY, policy_path.to_str().unwrap()).unwrap();
    assert_eq!(dev.hash, compiled.hash);
    assert_eq!(
        dev.plugin_config_value(&[])["user_tokens"]["issuers"][0]["issuer"],
        "https://idp.dev.example"
    );
    FilterConfig::from_json(config.to_string().as_bytes()).unwrap();
}

#[test]
fn settings_file_findings_are_reported_against_the_right_file() {
    // No issuer in the settings: the rule's error is the policy's; the
    // stray intent and the unused bundle are the settings file's.
    let settings = r#"intent stray {
  path "/"
}
identity {
  trust_budle "prod.example" {
  }
}
"#;
    let errors =
        meshward_policy::compile_with_settings(ENV_POLICY, "env.policy", settings, "prod.settings")
            .unwrap_err();
    // A syntax error stops both files before checking.
    assert!(errors.policy.is_empty());
    assert_eq!(errors.settings.items()[0].code, Code::UnexpectedToken);

    let settings = r#"intent stray {
  path "/"
}
identity {
  trust_bundle "prod.example" {
    keys fetch cluster "spire" path "/"
  }
}
"#;
    let errors =
        meshward_policy::compile_with_settings(ENV_POLICY, "env.policy", settings, "prod.settings")
            .unwrap_err();
    let codes =
        |d: &meshward_policy::Diagnostics| d.items().iter().map(|d| d.code).collect::<Vec<_>>();
    assert_eq!(codes(&errors.policy), [Code::MissingIdentitySource]);
    assert_eq!(
        codes(&errors.settings),
        [Code::InvalidIdentitySetting, Code::UnusedIdentitySource]
    );
    let text = errors.settings.to_string();
    assert!(text.contains("--> prod.settings:1:8"), "{text}");
    assert!(
        errors.policy.to_string().contains("--> env.policy:20:8"),
        "{}",
        errors.policy
    );
}
