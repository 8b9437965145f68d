//! A wasm trap (a panic inside the filter) must never turn into an allow.
//!
//! The filter has a test-only cargo feature, `trap-trigger`: a request
//! carrying `x-meshward-test-trap` makes it panic in
//! `on_http_request_headers`. The release artifact never has it (checked
//! below). This test builds that variant into its own target directory
//! (`target/trap/`, or uses `$MESHWARD_TRAP_WASM`), runs it in Envoy with
//! `envoy/demo.yaml` as shipped (`failure_policy: FAIL_RELOAD`), and shows:
//!
//! - the trapping request gets 503 and never reaches the app;
//! - the VM is reloaded: after a short backoff the very same filter decides
//!   again (allowed 200, denied 403 with its reason), and while it reloads
//!   nothing is let through (503 until then, never a 200 for a denied
//!   request);
//! - it holds trap after trap.
//!
//! Two more Envoys show why the setting matters: with `FAIL_CLOSED` (what
//! `fail_open: false` means) the filter stays closed but never comes back
//! (every later request 503); with `FAIL_OPEN` the trapping request gets
//! 503 but every later one skips authorization and a denied request reaches
//! the app, which is why demo.yaml must never say so (docs/hardening.md).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use meshward_e2e::envoy::{demo_template, render, ConfigVars};
use meshward_e2e::pki::TestPki;
use meshward_e2e::policy::plugin_config;
use meshward_e2e::upstream::EchoUpstream;
use meshward_e2e::workspace::{filter_wasm, repo_root, Scratch};
use meshward_e2e::{Envoy, Leaf, Request, Response, TlsClient};

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

/// The header that makes the `trap-trigger` build panic.
const TRAP: &str = "x-meshward-test-trap";
/// How long a reload may take (Envoy's backoff is about a second; the
/// machine may be busy).
const RECOVERY: Duration = Duration::from_secs(30);

/// The filter built with `--features trap-trigger` into `target/trap/`
/// (cargo makes this a no-op when it is up to date), or `$MESHWARD_TRAP_WASM`.
fn trap_wasm() -> PathBuf {
    if let Some(p) = std::env::var_os("MESHWARD_TRAP_WASM") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "MESHWARD_TRAP_WASM={} does not exist",
            p.display()
        );
        return p;
    }
    let root = repo_root();
    let target = root.join("target/trap");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(&root)
        .env("CARGO_TARGET_DIR", &target)
        .args([
            "build",
            "-p",
            "meshward-filter",
            "--target",
            "wasm32-wasip1",
            "--release",
            "--features",
            "trap-trigger",
        ])
        .output()
        .expect("run cargo build for the trap-trigger filter");
    assert!(
        out.status.success(),
        "building the trap-trigger filter failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let wasm = target.join("wasm32-wasip1/release/meshward_filter.wasm");
    assert!(wasm.is_file(), "no {}", wasm.display());
    wasm
}

/// Envoy from demo.yaml with `failure_policy` replaced by `policy` (or as
/// shipped when `None`), running `wasm`.
struct TrapMesh {
    envoy: Envoy,
    upstream: EchoUpstream,
    frontend: Leaf,
    client: TlsClient,
    _pki: TestPki,
    _scratch: Scratch,
}

impl TrapMesh {
    fn start(label: &str, wasm: &Path, failure_policy: Option<&str>) -> TrapMesh {
        let scratch = Scratch::new(label);
        let pki = TestPki::new();
        let cert_dir = scratch.path().join("certs");
        pki.write_envoy_files(&cert_dir)
            .expect("write certificates");
        let upstream = EchoUpstream::start();
        let mut yaml = render(
            &demo_template(),
            &ConfigVars {
                listen_port: 0,
                admin_port: 0,
                upstream_port: upstream.port(),
                cert_dir,
                wasm: wasm.to_path_buf(),
                plugin_config: plugin_config(POLICY, "trap.policy", &[]),
            },
        );
        let shipped = "failure_policy: FAIL_RELOAD";
        assert!(
            yaml.contains(shipped),
            "envoy/demo.yaml no longer says `{shipped}`: update this test and docs/hardening.md"
        );
        if let Some(policy) = failure_policy {
            yaml = yaml.replace(shipped, &format!("failure_policy: {policy}"));
        }
        let envoy = Envoy::start(scratch.path(), &yaml).unwrap_or_else(|e| panic!("{e}"));
        let frontend = pki.workload("shop", "frontend");
        let client = TlsClient::new(envoy.listener(), &pki.shop.cert_der(), Some(&frontend));
        TrapMesh {
            envoy,
            upstream,
            frontend,
            client,
            _pki: pki,
            _scratch: scratch,
        }
    }

    fn send(&self, request: &Request) -> Response {
        self.client.send(request).unwrap_or_else(|e| {
            panic!(
                "{} {} as {}: no response: {e}",
                request.method(),
                request.target(),
                self.frontend.spiffe_id()
            )
        })
    }

    fn trap(&self, target: &str) -> Response {
        self.send(&Request::get(target).header(TRAP, "1"))
    }

    /// Sends an allowed and a denied request until the allowed one is
    /// answered 200 again; meanwhile everything must be 503 (VM down) or
    /// the right decision, never a 200 for the denied one. Returns how long
    /// it took and how many 503s were seen.
    fn wait_for_recovery(&self) -> (Duration, usize) {
        let start = Instant::now();
        let mut unavailable = 0;
        loop {
            let denied = self.send(&Request::get("/admin/users"));
            assert!(
                denied.status == 503 || denied.status == 403,
                "a denied request got {} while the VM reloads: {}",
                denied.status,
                denied.text()
            );
            let allowed = self.send(&Request::get("/orders/7"));
            match allowed.status {
                200 => return (start.elapsed(), unavailable),
                503 => unavailable += 1,
                other => panic!(
                    "an allowed request got {other} while the VM reloads: {}",
                    allowed.text()
                ),
            }
            assert!(
                start.elapsed() < RECOVERY,
                "the filter did not come back within {RECOVERY:?}; log:\n{}",
                self.envoy.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn trap_reached_the_app(&self) -> bool {
        self.upstream
            .requests()
            .iter()
            .any(|r| r.header(TRAP).is_some())
    }
}

#[test]
fn the_release_filter_has_no_trap_and_the_test_build_has_one() {
    let needle = TRAP.as_bytes();
    let contains = |path: &Path| {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        bytes.windows(needle.len()).any(|w| w == needle)
    };
    assert!(
        !contains(&filter_wasm()),
        "the release filter knows `{TRAP}`: the trap-trigger feature leaked into the default build"
    );
    assert!(contains(&trap_wasm()), "the trap-trigger build has no trap");
}

#[test]
fn a_trap_is_a_503_never_an_allow_and_the_filter_recovers() {
    let mesh = TrapMesh::start("trap-fail-reload", &trap_wasm(), None);
    // The trap build decides like the release build.
    assert_eq!(mesh.send(&Request::get("/orders/7")).status, 200);
    let denied = mesh.send(&Request::get("/admin/users"));
    assert_eq!(
        (denied.status, denied.header("x-meshward-reason")),
        (403, Some("no_matching_rule"))
    );
    let before = mesh.upstream.count();

    let mut recoveries = Vec::new();
    for (round, target) in ["/orders/7", "/admin/users", "/orders/8"]
        .iter()
        .enumerate()
    {
        let trapped = mesh.trap(target);
        assert_eq!(
            trapped.status,
            503,
            "round {round}: a trapping request on {target} got {} {}",
            trapped.status,
            trapped.text()
        );
        assert!(
            !mesh.trap_reached_the_app(),
            "a trapping request reached the app"
        );
        recoveries.push(mesh.wait_for_recovery());

        // Back to normal decisions, with audit lines again.
        let id = format!("after-trap-{round}");
        let ok = mesh.send(&Request::get("/orders/9").header("x-request-id", &id));
        assert_eq!(ok.status, 200, "{}", ok.text());
        assert_eq!(mesh.envoy.audit_for(&id).json["decision"], "allow");
        let no = mesh.send(&Request::get("/admin/users"));
        assert_eq!(
            (no.status, no.header("x-meshward-reason")),
            (403, Some("no_matching_rule")),
            "{}",
            no.text()
        );
    }
    eprintln!("FAIL_RELOAD recoveries (time, 503s while reloading): {recoveries:?}");
    // Only the allowed requests reached the app: none with the trap header,
    // none for /admin.
    let seen = mesh.upstream.requests();
    assert!(seen.iter().all(|r| r.path.starts_with("/orders/")));
    assert!(mesh.upstream.count() > before);
}

#[test]
fn fail_closed_stays_closed_and_never_recovers() {
    let mesh = TrapMesh::start("trap-fail-closed", &trap_wasm(), Some("FAIL_CLOSED"));
    assert_eq!(mesh.send(&Request::get("/orders/7")).status, 200);
    assert_eq!(mesh.trap("/orders/7").status, 503);
    // Closed, and it stays so: every request after the trap is 503.
    let until = Instant::now() + Duration::from_secs(4);
    let mut answered = 0;
    while Instant::now() < until {
        for target in ["/orders/7", "/admin/users"] {
            let r = mesh.send(&Request::get(target));
            assert_eq!(
                r.status,
                503,
                "{target} after a trap with FAIL_CLOSED: {}",
                r.text()
            );
            answered += 1;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(answered > 10);
    assert_eq!(
        mesh.upstream.count(),
        1,
        "only the request before the trap got through"
    );
}

#[test]
fn fail_open_lets_every_request_after_a_trap_skip_authorization() {
    // Documents the danger, so nobody "fixes" a reload storm this way: with
    // FAIL_OPEN the trapping request itself still gets 503, but the dead VM
    // is never reloaded and every later request skips the filter: a denied
    // request reaches the app, with no verified identity.
    let mesh = TrapMesh::start("trap-fail-open", &trap_wasm(), Some("FAIL_OPEN"));
    assert_eq!(mesh.send(&Request::get("/admin/users")).status, 403);
    assert_eq!(mesh.trap("/admin/users").status, 503);
    let after = mesh.send(&Request::get("/admin/users"));
    assert_eq!(
        after.status,
        200,
        "Envoy no longer skips a failed filter with FAIL_OPEN; update docs/hardening.md: {}",
        after.text()
    );
    assert!(
        mesh.upstream
            .requests()
            .iter()
            .any(|r| r.path == "/admin/users" && r.header("x-meshward-peer").is_none()),
        "the request reached the app with no verified identity"
    );
}
