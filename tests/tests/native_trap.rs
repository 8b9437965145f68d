//! A panic inside the native module never turns into an allow, and never
//! takes Envoy down.
//!
//! A native module has no sandbox: a panic that unwound into Envoy's C++
//! frames, or aborted, would end the whole proxy. The module is built with
//! `panic = "unwind"` and every hook catches panics. The crate's test-only
//! feature `trap-trigger` panics (inside the pipeline's lock) on a request
//! carrying `x-meshward-test-trap`; this test builds that variant into its
//! own target directory (`target/native-trap/`), runs it in Envoy with
//! `envoy/demo.yaml` rewritten for the module, and shows:
//!
//! - the panicking request gets 503 with the deny reason and never reaches
//!   the app;
//! - the very next requests are decided again (allowed 200, denied 403 with
//!   its reason): the module rebuilds the pipeline from the same
//!   configuration, with no backoff and nothing let through meanwhile;
//! - it holds panic after panic, and the Envoy process stays up.
//!
//! The release module never has the feature (checked below).

use std::path::PathBuf;
use std::process::Command;

use meshward_e2e::build::{pin_native_dir, FilterBuild};
use meshward_e2e::envoy::{demo_template, render, ConfigVars};
use meshward_e2e::pki::TestPki;
use meshward_e2e::policy::plugin_config;
use meshward_e2e::upstream::EchoUpstream;
use meshward_e2e::workspace::{repo_root, Scratch};
use meshward_e2e::{Envoy, Request, TlsClient};

const POLICY: &str = r#"
policy "trap" {
  trust_domains "shop.example"
}

intent orders.read {
  method GET
  path "/orders/{id}"
}

intent admin.all {
  path "/admin/**"
}

allow frontend-reads {
  subject "spiffe://shop.example/ns/shop/sa/frontend"
  intent orders.read
}
"#;

const TRAP: &str = "x-meshward-test-trap";

/// The module built with `--features trap-trigger` into
/// `target/native-trap/` (a no-op when up to date), or `$MESHWARD_TRAP_NATIVE_DIR`.
fn trap_module_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("MESHWARD_TRAP_NATIVE_DIR") {
        return PathBuf::from(dir);
    }
    let root = repo_root();
    let target = root.join("target/native-trap");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(&root)
        .env("CARGO_TARGET_DIR", &target)
        // A test artifact: no need for the release module's LTO (minutes).
        .env("CARGO_PROFILE_NATIVE_LTO", "false")
        .env("CARGO_PROFILE_NATIVE_CODEGEN_UNITS", "16")
        .args([
            "build",
            "-p",
            "meshward-native",
            "--profile",
            "native",
            "--features",
            "trap-trigger",
        ])
        .output()
        .expect("run cargo build for the trap-trigger module");
    assert!(
        out.status.success(),
        "building the trap-trigger module failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = target.join("native");
    assert!(
        dir.join("libmeshward.so").is_file(),
        "no module in {}",
        dir.display()
    );
    dir
}

#[test]
fn a_panic_denies_that_request_and_the_next_ones_are_decided_again() {
    FilterBuild::pin(FilterBuild::Native);
    pin_native_dir(trap_module_dir());
    let scratch = Scratch::new("native-trap");
    let pki = TestPki::new();
    let cert_dir = scratch.path().join("certs");
    pki.write_envoy_files(&cert_dir).unwrap();
    let upstream = EchoUpstream::start();
    let yaml = render(
        &demo_template(),
        &ConfigVars {
            listen_port: 0,
            admin_port: 0,
            upstream_port: upstream.port(),
            cert_dir,
            wasm: scratch.path().join("unused.wasm"),
            plugin_config: plugin_config(POLICY, "trap.policy", &[]),
        },
    );
    let envoy = Envoy::start(scratch.path(), &yaml).unwrap_or_else(|e| panic!("{e}"));
    let frontend = pki.workload("shop", "frontend");
    let client = TlsClient::new(envoy.listener(), &pki.shop.cert_der(), Some(&frontend));
    let send = |request: &Request| {
        client.send(request).unwrap_or_else(|e| {
            panic!(
                "{} {}: no response: {e}; log:\n{}",
                request.method(),
                request.target(),
                envoy.log()
            )
        })
    };

    assert_eq!(send(&Request::get("/orders/1")).status, 200);
    for round in 0..3 {
        let before = upstream.count();
        let trapped = send(&Request::get("/orders/2").header(TRAP, "1"));
        assert_eq!(trapped.status, 503, "round {round}: {}", trapped.text());
        assert_eq!(trapped.header("x-meshward-reason"), Some("no_policy"));
        assert_eq!(
            upstream.count(),
            before,
            "round {round}: the panicking request reached the app"
        );

        // The very next requests: decided by a rebuilt pipeline.
        let allowed = send(&Request::get("/orders/3"));
        assert_eq!(allowed.status, 200, "round {round}: {}", allowed.text());
        let denied = send(&Request::get("/admin/users"));
        assert_eq!(denied.status, 403, "round {round}: {}", denied.text());
        assert_eq!(denied.header("x-meshward-reason"), Some("no_matching_rule"));
    }
    let log = envoy.log();
    assert_eq!(
        log.matches("meshward: pipeline rebuilt after a panic")
            .count(),
        3,
        "one rebuild per panic expected; log:\n{log}"
    );
    assert!(
        envoy.admin_get("/ready").trim() == "LIVE",
        "Envoy is not serving after the panics"
    );
}

#[test]
fn the_release_module_cannot_be_made_to_panic_on_purpose() {
    // The trap is compiled in only with the feature: the release module has
    // neither the header name nor the panic message.
    let module = meshward_e2e::workspace::target_dir().join("native/libmeshward.so");
    let bytes = std::fs::read(&module).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run `{}`",
            module.display(),
            meshward_e2e::build::BUILD_NATIVE
        )
    });
    for needle in [TRAP.as_bytes(), b"test trap requested".as_slice()] {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "the release module contains `{}`",
            String::from_utf8_lossy(needle)
        );
    }
}
