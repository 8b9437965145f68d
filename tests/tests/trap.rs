//! A panic inside the filter (a wasm trap, a panic in the native module)
//! must never turn into an allow, and never take Envoy down. Runs for the
//! build `MESHWARD_BUILD` selects (`scripts/test.sh` runs it for both).
//!
//! Each build has a test-only cargo feature, `trap-trigger`: a request
//! carrying `x-meshward-test-trap` makes the filter panic while deciding it.
//! The release artifact never has it (checked below). This suite builds
//! that variant into its own target directory (`target/trap/` for wasm,
//! `target/native-trap/` for the module; or `$MESHWARD_TRAP_WASM` /
//! `$MESHWARD_TRAP_NATIVE_DIR`), runs it in Envoy with `envoy/demo.yaml` as
//! shipped (wasm: `failure_policy: FAIL_RELOAD`), and shows:
//!
//! - the panicking request gets 503 and never reaches the app;
//! - the filter comes back: the very same configuration decides again
//!   (allowed 200, denied 403 with its reason), and meanwhile nothing is let
//!   through (503 until then, never a 200 for a denied request). The wasm
//!   VM is reloaded after a short backoff; the module catches the panic,
//!   denies that request `no_policy` and rebuilds its pipeline for the very
//!   next request (no backoff, no 503 in between);
//! - it holds panic after panic, and the Envoy process stays up.
//!
//! Two more Envoys show why the wasm setting matters: with `FAIL_CLOSED`
//! (what `fail_open: false` means) the filter stays closed but never comes
//! back (every later request 503); with `FAIL_OPEN` the trapping request
//! gets 503 but every later one skips authorization and a denied request
//! reaches the app, which is why demo.yaml must never say so
//! (docs/hardening.md). The module has no failure policy to set: those two
//! cases are wasm-only.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use meshward_e2e::build::{pin_native_dir, FilterBuild};
use meshward_e2e::workspace::{filter_wasm, repo_root, target_dir};
use meshward_e2e::{Leaf, Mesh, Request, Response};

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
/// The panic message of the `trap-trigger` builds.
const TRAP_MESSAGE: &str = "test trap requested";
/// How long a reload may take (Envoy's backoff is about a second; the
/// machine may be busy).
const RECOVERY: Duration = Duration::from_secs(30);
/// The failure policy envoy/demo.yaml ships for the wasm filter.
const SHIPPED: &str = "failure_policy: FAIL_RELOAD";

/// Builds a `trap-trigger` variant of `package` into `target/<dir>/` (cargo
/// makes this a no-op when it is up to date).
fn build_trap_variant(dir: &str, package: &str, args: &[&str], env: &[(&str, &str)]) -> PathBuf {
    let root = repo_root();
    let target = root.join("target").join(dir);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(&root)
        .env("CARGO_TARGET_DIR", &target)
        .envs(env.iter().copied())
        .args(["build", "-p", package, "--features", "trap-trigger"])
        .args(args)
        .output()
        .expect("run cargo build for the trap-trigger variant");
    assert!(
        out.status.success(),
        "building the trap-trigger {package} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    target
}

/// The `trap-trigger` artifact of `build`: the wasm file, or the directory
/// holding `libmeshward.so`.
fn trap_artifact(build: FilterBuild) -> PathBuf {
    let (env, subpath) = match build {
        FilterBuild::Wasm => (
            "MESHWARD_TRAP_WASM",
            "wasm32-wasip1/release/meshward_filter.wasm",
        ),
        FilterBuild::Native => ("MESHWARD_TRAP_NATIVE_DIR", "native"),
    };
    if let Some(path) = std::env::var_os(env) {
        let path = PathBuf::from(path);
        assert!(path.exists(), "{env}={} does not exist", path.display());
        return path;
    }
    let target = match build {
        FilterBuild::Wasm => build_trap_variant(
            "trap",
            "meshward-filter",
            &["--target", "wasm32-wasip1", "--release"],
            &[],
        ),
        FilterBuild::Native => build_trap_variant(
            "native-trap",
            "meshward-native",
            &["--profile", "native"],
            // A test artifact: no need for the release module's LTO (minutes).
            &[
                ("CARGO_PROFILE_NATIVE_LTO", "false"),
                ("CARGO_PROFILE_NATIVE_CODEGEN_UNITS", "16"),
            ],
        ),
    };
    let artifact = target.join(subpath);
    assert!(artifact.exists(), "no {}", artifact.display());
    artifact
}

/// The file Envoy loads for `artifact` (the module inside its directory).
fn loaded_file(build: FilterBuild, artifact: PathBuf) -> PathBuf {
    match build {
        FilterBuild::Wasm => artifact,
        FilterBuild::Native => artifact.join("libmeshward.so"),
    }
}

/// Envoy from demo.yaml in front of the echo app, running the trap build,
/// with the wasm `failure_policy` replaced by `policy` (or as shipped when
/// `None`).
struct TrapMesh {
    mesh: Mesh,
    build: FilterBuild,
    frontend: Leaf,
}

impl TrapMesh {
    fn start(label: &str, failure_policy: Option<&'static str>) -> TrapMesh {
        let build = FilterBuild::current();
        let artifact = trap_artifact(build);
        let mut builder = Mesh::builder(POLICY).label(label);
        builder = match build {
            FilterBuild::Wasm => builder.wasm(artifact),
            FilterBuild::Native => {
                pin_native_dir(artifact);
                builder
            }
        };
        let mesh = builder
            .edit_config(move |yaml| {
                assert!(
                    yaml.contains(SHIPPED),
                    "envoy/demo.yaml no longer says `{SHIPPED}`: update this test and docs/hardening.md"
                );
                match failure_policy {
                    Some(policy) => yaml.replace(SHIPPED, &format!("failure_policy: {policy}")),
                    None => yaml,
                }
            })
            .start();
        let frontend = mesh.pki.workload("shop", "frontend");
        TrapMesh {
            mesh,
            build,
            frontend,
        }
    }

    fn send(&self, request: &Request) -> Response {
        self.mesh.send(Some(&self.frontend), request)
    }

    fn trap(&self, target: &str) -> Response {
        self.send(&Request::get(target).header(TRAP, "1"))
    }

    /// Sends an allowed and a denied request until the allowed one is
    /// answered 200 again; meanwhile everything must be 503 (filter down) or
    /// the right decision, never a 200 for the denied one. Returns how long
    /// it took and how many 503s were seen.
    fn wait_for_recovery(&self) -> (Duration, usize) {
        let start = Instant::now();
        let mut unavailable = 0;
        loop {
            let denied = self.send(&Request::get("/admin/users"));
            assert!(
                denied.status == 503 || denied.status == 403,
                "a denied request got {} while the filter recovers: {}",
                denied.status,
                denied.text()
            );
            let allowed = self.send(&Request::get("/orders/7"));
            match allowed.status {
                200 => return (start.elapsed(), unavailable),
                503 => unavailable += 1,
                other => panic!(
                    "an allowed request got {other} while the filter recovers: {}",
                    allowed.text()
                ),
            }
            assert!(
                start.elapsed() < RECOVERY,
                "the filter did not come back within {RECOVERY:?}; log:\n{}",
                self.mesh.envoy.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn trap_reached_the_app(&self) -> bool {
        self.mesh
            .upstream
            .requests()
            .iter()
            .any(|r| r.header(TRAP).is_some())
    }
}

/// Whether the wasm-only `failure_policy` cases apply (the module has no
/// failure policy: it catches panics itself).
fn wasm_only(case: &str) -> bool {
    let wasm = FilterBuild::current() == FilterBuild::Wasm;
    if !wasm {
        eprintln!("{case}: wasm only (failure_policy is a setting of the wasm filter; the native module catches panics itself)");
    }
    wasm
}

#[test]
fn the_release_build_has_no_trap_and_the_test_build_has_one() {
    let build = FilterBuild::current();
    let release = match build {
        FilterBuild::Wasm => filter_wasm(),
        // Not `native_module_dir()`: this process may have pinned the trap
        // module.
        FilterBuild::Native => target_dir().join("native/libmeshward.so"),
    };
    let read = |path: &PathBuf| {
        std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    };
    let contains =
        |bytes: &[u8], needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    let bytes = read(&release);
    for needle in [TRAP, TRAP_MESSAGE] {
        assert!(
            !contains(&bytes, needle),
            "the release {build:?} build contains `{needle}`: the trap-trigger feature leaked into it"
        );
    }
    // The optimizer may fold the header name into the comparison; the
    // panic message stays.
    let trap = read(&loaded_file(build, trap_artifact(build)));
    assert!(
        [TRAP, TRAP_MESSAGE].iter().any(|n| contains(&trap, n)),
        "the trap-trigger {build:?} build has no trap"
    );
}

#[test]
fn a_trap_is_a_503_never_an_allow_and_the_filter_recovers() {
    let mesh = TrapMesh::start("trap", None);
    // The trap build decides like the release build.
    assert_eq!(mesh.send(&Request::get("/orders/7")).status, 200);
    let denied = mesh.send(&Request::get("/admin/users"));
    assert_eq!(
        (denied.status, denied.header("x-meshward-reason")),
        (403, Some("no_matching_rule"))
    );
    let before = mesh.mesh.upstream.count();

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
        if mesh.build == FilterBuild::Native {
            // The module answers the panic itself, with the engine's deny.
            assert_eq!(trapped.header("x-meshward-reason"), Some("no_policy"));
        }
        assert!(
            !mesh.trap_reached_the_app(),
            "a trapping request reached the app"
        );
        let (took, unavailable) = mesh.wait_for_recovery();
        if mesh.build == FilterBuild::Native {
            assert_eq!(
                unavailable, 0,
                "round {round}: the module rebuilds for the very next request"
            );
        }
        recoveries.push((took, unavailable));

        // Back to normal decisions, with audit lines again.
        let id = format!("after-trap-{round}");
        let ok = mesh.send(&Request::get("/orders/9").header("x-request-id", &id));
        assert_eq!(ok.status, 200, "{}", ok.text());
        assert_eq!(mesh.mesh.envoy.audit_for(&id).json["decision"], "allow");
        let no = mesh.send(&Request::get("/admin/users"));
        assert_eq!(
            (no.status, no.header("x-meshward-reason")),
            (403, Some("no_matching_rule")),
            "{}",
            no.text()
        );
    }
    eprintln!(
        "{:?} recoveries (time, 503s while recovering): {recoveries:?}",
        mesh.build
    );
    // Only the allowed requests reached the app: none with the trap header,
    // none for /admin.
    let seen = mesh.mesh.upstream.requests();
    assert!(seen.iter().all(|r| r.path.starts_with("/orders/")));
    assert!(mesh.mesh.upstream.count() > before);
    if mesh.build == FilterBuild::Native {
        let log = mesh.mesh.envoy.log();
        assert_eq!(
            log.matches("meshward: pipeline rebuilt after a panic")
                .count(),
            3,
            "one rebuild per panic expected; log:\n{log}"
        );
    }
    assert_eq!(
        mesh.mesh.envoy.admin_get("/ready").trim(),
        "LIVE",
        "Envoy is not serving after the panics"
    );
}

#[test]
fn fail_closed_stays_closed_and_never_recovers() {
    if !wasm_only("fail_closed_stays_closed_and_never_recovers") {
        return;
    }
    let mesh = TrapMesh::start("trap-fail-closed", Some("FAIL_CLOSED"));
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
        mesh.mesh.upstream.count(),
        1,
        "only the request before the trap got through"
    );
}

#[test]
fn fail_open_lets_every_request_after_a_trap_skip_authorization() {
    if !wasm_only("fail_open_lets_every_request_after_a_trap_skip_authorization") {
        return;
    }
    // Documents the danger, so nobody "fixes" a reload storm this way: with
    // FAIL_OPEN the trapping request itself still gets 503, but the dead VM
    // is never reloaded and every later request skips the filter: a denied
    // request reaches the app, with no verified identity.
    let mesh = TrapMesh::start("trap-fail-open", Some("FAIL_OPEN"));
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
        mesh.mesh
            .upstream
            .requests()
            .iter()
            .any(|r| r.path == "/admin/users" && r.header("x-meshward-peer").is_none()),
        "the request reached the app with no verified identity"
    );
}
