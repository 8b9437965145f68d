//! Safe rollout, end to end through the `meshward` binary: `replay`, `diff`
//! and `graph` golden outputs on the fixture policies and Envoy log in
//! `tests/fixtures/rollout/`, their exit codes, signed configurations, and
//! every command of `docs/rollout.md`.
//!
//! Refresh the goldens (and the fixture log, which the engine writes) after
//! an intended change with
//! `UPDATE_GOLDEN=1 cargo test -p meshward-policy --test rollout`, then
//! review the diff.

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
use std::sync::atomic::{AtomicUsize, Ordering};

use meshward_engine::audit::{audit_line, AuditFacts, AuditUser};
use meshward_engine::chain::Chain;
use meshward_engine::config::{ConfigError, FilterConfig};
use meshward_engine::signature::SignatureError;
use meshward_engine::spiffe::SpiffeId;
use meshward_engine::{evaluate, Reason, Request, UserInfo};
use meshward_policy::compile_source;
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rollout")
}

fn updating() -> bool {
    std::env::var_os("UPDATE_GOLDEN").is_some()
}

/// Runs `meshward` in `dir`.
fn meshward_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshward"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run meshward")
}

fn meshward(args: &[&str]) -> Output {
    meshward_in(&fixtures(), args)
}

fn code(output: &Output) -> i32 {
    output.status.code().expect("exit code")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A fresh empty directory.
fn temp_dir(name: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "meshward-rollout-{}-{n}-{name}",
        std::process::id()
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

// ---- the fixture log: what the filter writes under shop-v1 (dry-run) ----

const GATEWAY: &str = "spiffe://shop.example/ns/edge/sa/gateway";
const FRONTEND: &str = "spiffe://shop.example/ns/shop/sa/frontend";
const ORDERS: &str = "spiffe://shop.example/ns/shop/sa/orders";
const DESK: &str = "spiffe://shop.example/ns/support/sa/desk";
const PROBER: &str = "spiffe://shop.example/ns/monitoring/sa/prober";
const CART: &str = "spiffe://shop.example/ns/shop/sa/cart";
const T0: u64 = 1_764_380_000;

/// (peer or none, method, path, authority, headers, chain through the gateway)
type Spec = (
    Option<&'static str>,
    &'static str,
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    bool,
);

const TRAFFIC: &[Spec] = &[
    (
        Some(GATEWAY),
        "GET",
        "/products/shoes",
        "frontend",
        &[],
        false,
    ),
    (
        Some(GATEWAY),
        "GET",
        "/products/hats",
        "frontend",
        &[],
        false,
    ),
    (Some(FRONTEND), "GET", "/orders/42", "orders", &[], true),
    (Some(FRONTEND), "GET", "/orders/43", "orders", &[], false),
    (
        Some(FRONTEND),
        "POST",
        "/orders",
        "orders",
        &[("x-user", "alice")],
        false,
    ),
    (
        Some(ORDERS),
        "POST",
        "/payments/charges",
        "payments",
        &[("x-tenant", "retail")],
        false,
    ),
    (
        Some(ORDERS),
        "POST",
        "/payments/charges",
        "payments",
        &[("x-tenant", "unknown")],
        false,
    ),
    (
        Some(DESK),
        "POST",
        "/payments/refunds",
        "payments",
        &[],
        false,
    ),
    (
        Some(DESK),
        "POST",
        "/payments/refunds",
        "payments",
        &[],
        false,
    ),
    (
        Some(FRONTEND),
        "POST",
        "/payments/charges/9/refund",
        "payments",
        &[],
        false,
    ),
    (Some(PROBER), "GET", "/healthz", "orders", &[], false),
    (Some(PROBER), "GET", "/readyz", "orders", &[], false),
    (Some(PROBER), "GET", "/healthz", "payments", &[], false),
    (Some(CART), "GET", "/healthz", "orders", &[], false),
    (None, "GET", "/healthz", "orders", &[], false),
    (
        Some("spiffe://evil.example/ns/x/sa/y"),
        "GET",
        "/healthz",
        "orders",
        &[],
        false,
    ),
    (Some(FRONTEND), "DELETE", "/orders/42", "orders", &[], false),
    (
        Some(GATEWAY),
        "GET",
        "/products/socks",
        "frontend",
        &[],
        false,
    ),
];

fn envoy_prefix(time: u64, millis: u64, component: &str) -> String {
    // Envoy's default format, with a fixed clock.
    let secs = time - T0;
    format!(
        "[2025-11-29 01:33:{:02}.{millis:03}][17][info][{component}]",
        20 + secs
    )
}

/// The Envoy log: start-up lines, one audit line per request (the engine's
/// own `audit_line`), and one line cut short by a log rotation.
fn envoy_log() -> String {
    let source = fs::read_to_string(fixtures().join("shop-v1.policy")).unwrap();
    let compiled = compile_source(&source, "shop-v1.policy").unwrap();
    let policy = compiled.load().unwrap();
    let mut log = String::new();
    log.push_str(&format!(
        "{} [source/server/server.cc:430] initializing epoch 0 (base id=0, hot restart version=11.104)\n",
        envoy_prefix(T0, 1, "main")
    ));
    log.push_str(&format!(
        "{} [source/extensions/common/wasm/context.cc:1195] wasm log meshward meshward_root: meshward: loaded policy `shop` ({} rules, hash {}, mode dry-run)\n",
        envoy_prefix(T0, 2, "wasm"),
        policy.rule_count(),
        policy.hash_hex()
    ));
    for (n, (peer, method, path, authority, headers, chained)) in TRAFFIC.iter().enumerate() {
        let time = T0 + n as u64;
        let peer_id = peer
            .map(|p| SpiffeId::parse(p).unwrap())
            .ok_or(Reason::NoPeerCertificate);
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let chain = peer_id.as_ref().ok().map(|peer| {
            let mut chain = Chain::start(peer.clone(), time, 60);
            if *chained {
                chain = Chain::start(SpiffeId::parse(GATEWAY).unwrap(), time - 1, 60);
                chain.hops.push(peer.clone());
                chain.user = Some("alice".to_owned());
                chain.scopes = vec!["orders.read".to_owned()];
                chain.purpose = Some("frontend.pages".to_owned());
            }
            chain
        });
        let user: Option<AuditUser> = None;
        let request = Request {
            peer: peer_id.as_ref().map_err(|r| *r),
            jwt_svid: None,
            user: user.as_ref().map(|u| Ok(u as &dyn UserInfo)),
            chain: chain.as_ref().map(Ok),
            method,
            path,
            authority,
            headers: &headers,
        };
        let decision = evaluate(&policy, &request);
        let request_id = format!("{:08x}-0000-4000-8000-{:012x}", 0x5f0c_0000 + n, n);
        let facts = AuditFacts {
            request_id: Some(&request_id),
            traceparent: None,
            x_b3_traceid: None,
            peer: peer_id.as_ref().map_err(|r| *r),
            cert_window: peer.map(|_| (T0 - 3600, T0 + 3600)),
            jwt_svid: None,
            user: None,
            chain: chain.as_ref().map(Ok),
            headers: &headers,
            method,
            path,
            authority,
            time,
        };
        let line = audit_line(&policy, &decision, &facts);
        let prefix = format!(
            "{} [source/extensions/common/wasm/context.cc:1195] wasm log meshward meshward_filter: meshward.audit ",
            envoy_prefix(time, 500, "wasm")
        );
        if n == 12 {
            // Rotated away mid-line.
            log.push_str(&prefix);
            log.push_str(&line[..line.len() * 2 / 3]);
            log.push('\n');
        } else {
            log.push_str(&prefix);
            log.push_str(&line);
            log.push('\n');
        }
    }
    log.push_str(&format!(
        "{} [source/common/upstream/cluster_manager_impl.cc:1343] cm init: all clusters initialized\n",
        envoy_prefix(T0 + TRAFFIC.len() as u64, 0, "info")
    ));
    log
}

#[test]
fn the_fixture_log_is_what_the_engine_writes() {
    let path = fixtures().join("envoy.log");
    let log = envoy_log();
    if updating() {
        fs::write(&path, &log).unwrap();
        return;
    }
    assert_eq!(
        fs::read_to_string(&path).unwrap_or_default(),
        log,
        "{} is stale (UPDATE_GOLDEN=1 to refresh)",
        path.display()
    );
}

// ---- goldens ----

/// (golden file, arguments, expected exit code)
const GOLDENS: &[(&str, &[&str], i32)] = &[
    (
        "replay-v2.txt",
        &["replay", "--policy", "shop-v2.policy", "--log", "envoy.log"],
        5,
    ),
    (
        "replay-v2.json",
        &[
            "replay",
            "--policy",
            "shop-v2.policy",
            "--log",
            "envoy.log",
            "--format",
            "json",
        ],
        5,
    ),
    (
        "replay-v3.txt",
        &[
            "replay",
            "--policy",
            "shop-v3.policy",
            "--log",
            "envoy.log",
            "--fail-on",
            "unexpected-deny",
        ],
        0,
    ),
    (
        "diff-v1-v2.txt",
        &["diff", "shop-v1.policy", "shop-v2.policy"],
        0,
    ),
    (
        "diff-v1-v2.json",
        &[
            "diff",
            "shop-v1.policy",
            "shop-v2.policy",
            "--format",
            "json",
        ],
        0,
    ),
    (
        "diff-v2-v3.txt",
        &["diff", "shop-v2.policy", "shop-v3.policy"],
        0,
    ),
    ("graph-v3.dot", &["graph", "shop-v3.policy"], 0),
    (
        "graph-v3.svg",
        &["graph", "shop-v3.policy", "--format", "svg"],
        0,
    ),
];

#[test]
fn golden_outputs_match() {
    let mut failures = Vec::new();
    for (file, args, want) in GOLDENS {
        let output = meshward(args);
        let path = fixtures().join("golden").join(file);
        let actual = stdout(&output);
        if code(&output) != *want {
            failures.push(format!(
                "meshward {}: exit {} (want {want})\n{}",
                args.join(" "),
                code(&output),
                stderr(&output)
            ));
            continue;
        }
        if updating() {
            fs::write(&path, &actual).unwrap();
            continue;
        }
        let expected = fs::read_to_string(&path).unwrap_or_default();
        if expected != actual {
            failures.push(format!(
                "{} differs from `meshward {}`:\n--- expected\n{expected}\n--- actual\n{actual}",
                path.display(),
                args.join(" ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "golden outputs differ (UPDATE_GOLDEN=1 to refresh):\n\n{}",
        failures.join("\n\n")
    );
}

// ---- replay behaviour through the CLI ----

#[test]
fn replay_reports_the_story_of_the_fixture_log() {
    let output = meshward(&[
        "replay",
        "--policy",
        "shop-v2.policy",
        "--log",
        "envoy.log",
        "--format",
        "json",
    ]);
    assert_eq!(code(&output), 5, "{}", stderr(&output));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["lines"], 21);
    assert_eq!(report["other_lines"], 3);
    assert_eq!(report["malformed"], 1);
    assert_eq!(report["malformed_lines"][0]["line"], 15);
    assert!(report["malformed_lines"][0]["error"]
        .as_str()
        .unwrap()
        .starts_with("truncated JSON"));
    // The prober's health checks: the one deny dry-run did not predict.
    let unexpected: Vec<&Value> = report["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["kind"] == "allow_to_deny" && g["predicted_by_dry_run"] == false)
        .collect();
    assert_eq!(unexpected.len(), 1, "{report:#}");
    assert_eq!(unexpected[0]["caller"], PROBER);
    assert_eq!(unexpected[0]["count"], 2);
    assert_eq!(report["unexpected_denies"], 2);
    assert_eq!(report["failed"], true);
    // v3 fixes it: only the denies dry-run predicted remain.
    let fixed = meshward(&[
        "replay",
        "--policy",
        "shop-v3.policy",
        "--log",
        "envoy.log",
        "--fail-on",
        "unexpected-deny",
    ]);
    assert_eq!(code(&fixed), 0, "{}", stdout(&fixed));
    let strict = meshward(&["replay", "--policy", "shop-v3.policy", "--log", "envoy.log"]);
    assert_eq!(code(&strict), 5);
    let never = meshward(&[
        "replay",
        "--policy",
        "shop-v2.policy",
        "--log",
        "envoy.log",
        "--fail-on",
        "never",
    ]);
    assert_eq!(code(&never), 0);
    // Against the policy that wrote it, nothing changes: dry-run and replay agree.
    let same = meshward(&[
        "replay",
        "--policy",
        "shop-v1.policy",
        "--log",
        "envoy.log",
        "--fail-on",
        "any-change",
        "--format",
        "json",
    ]);
    assert_eq!(code(&same), 0, "{}", stdout(&same));
    let same: Value = serde_json::from_slice(&same.stdout).unwrap();
    assert_eq!(same["changed"], 0);
    assert_eq!(same["replayed"], 17);
    assert_eq!(same["recorded_policies"][0]["this_policy"], true);
}

#[test]
fn replay_reads_stdin_and_reports_usage_errors() {
    let log = fs::read(fixtures().join("envoy.log")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_meshward"))
        .args([
            "replay",
            "--policy",
            "shop-v2.policy",
            "--log",
            "-",
            "--examples",
            "1",
        ])
        .current_dir(fixtures())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&log).unwrap();
    }
    let output = child.wait_with_output().unwrap();
    assert_eq!(code(&output), 5);
    assert!(stdout(&output).contains("replay of `-`"));
    // No progress bar when stderr is not a terminal: one summary line only.
    let err = stderr(&output);
    assert!(!err.contains('\r'), "{err:?}");
    assert!(err.starts_with("replayed 21 lines in "), "{err}");
    // Missing log, broken policy.
    let missing = meshward(&["replay", "--policy", "shop-v2.policy", "--log", "nope.log"]);
    assert_eq!(code(&missing), 2);
    assert!(stderr(&missing).contains("cannot read `nope.log`"));
    let dir = temp_dir("broken");
    fs::write(dir.join("bad.policy"), "policy {").unwrap();
    let broken = meshward_in(&dir, &["replay", "--policy", "bad.policy", "--log", "x"]);
    assert_eq!(code(&broken), 1);
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn diff_exit_codes() {
    let same = meshward(&["diff", "shop-v2.policy", "shop-v2.policy", "--exit-code"]);
    assert_eq!(code(&same), 0);
    assert!(stdout(&same).contains("no semantic changes"));
    let differ = meshward(&["diff", "shop-v1.policy", "shop-v3.policy", "--exit-code"]);
    assert_eq!(code(&differ), 5);
    let report = meshward(&["diff", "shop-v1.policy", "shop-v3.policy"]);
    assert_eq!(code(&report), 0);
    let help = meshward(&["--help"]);
    assert!(stdout(&help).contains("5  `diff --exit-code`"));
}

#[test]
fn graph_writes_files() {
    let dir = temp_dir("graph");
    let out = dir.join("g.html");
    let output = meshward(&[
        "graph",
        "shop-v3.policy",
        "--format",
        "html",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let html = fs::read_to_string(&out).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    // Self-contained: no external references of any kind.
    for needle in ["http://", "https://", "src=", "href=", "<script", "@import"] {
        let allowed = needle == "http://"
            && html.matches(needle).count() == html.matches("http://www.w3.org/2000/svg").count();
        assert!(!html.contains(needle) || allowed, "`{needle}` in the page");
    }
    let _ = fs::remove_dir_all(dir);
}

// ---- signed bundles ----

fn sign_and_load(
    dir: &Path,
    policy: &str,
    key: &str,
    config_extra: Value,
) -> Result<FilterConfig, ConfigError> {
    let out = dir.join("signed.json");
    let output = meshward_in(
        dir,
        &[
            "compile",
            policy,
            "--sign",
            key,
            "-o",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let mut config: Value = serde_json::from_str(&fs::read_to_string(&out).unwrap()).unwrap();
    config
        .as_object_mut()
        .unwrap()
        .extend(config_extra.as_object().unwrap().clone());
    FilterConfig::from_json(config.to_string().as_bytes())
}

#[test]
fn keygen_and_signed_compile() {
    let dir = temp_dir("sign");
    fs::copy(fixtures().join("shop-v3.policy"), dir.join("shop.policy")).unwrap();
    let keygen = meshward_in(&dir, &["keygen", "-o", "signing.key"]);
    assert_eq!(code(&keygen), 0, "{}", stderr(&keygen));
    let public = stdout(&keygen).trim().to_owned();
    // Only the public key on stdout: 32 bytes of base64.
    assert_eq!(public.len(), 44, "{public}");
    let private = fs::read_to_string(dir.join("signing.key")).unwrap();
    assert!(private.starts_with("-----BEGIN PRIVATE KEY-----"));
    let secret_b64: String = private
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    assert!(!stdout(&keygen).contains(&secret_b64) && !stderr(&keygen).contains(&secret_b64));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = fs::metadata(dir.join("signing.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // keygen never overwrites.
    let again = meshward_in(&dir, &["keygen", "-o", "signing.key"]);
    assert_eq!(code(&again), 2);
    assert!(stderr(&again).contains("already exists"));

    let require = |keys: &[&str]| serde_json::json!({"require_signature": {"keys": keys}});
    // Signed by the listed key: loads.
    let config = sign_and_load(&dir, "shop.policy", "signing.key", require(&[&public])).unwrap();
    assert!(config.policy.rule_count() > 0);
    // Another key: refused, by key id, never showing a key.
    let other = meshward_in(&dir, &["keygen", "-o", "other.key"]);
    let other_public = stdout(&other).trim().to_owned();
    let err = sign_and_load(&dir, "shop.policy", "other.key", require(&[&public])).unwrap_err();
    assert!(
        matches!(err, ConfigError::Signature(SignatureError::UnknownKey(_))),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        !message.contains(&public) && !message.contains(&other_public),
        "{message}"
    );
    // Either of two keys.
    assert!(sign_and_load(
        &dir,
        "shop.policy",
        "other.key",
        require(&[&public, &other_public])
    )
    .is_ok());

    // Unsigned when required.
    let unsigned = dir.join("unsigned.json");
    let output = meshward_in(
        &dir,
        &["compile", "shop.policy", "-o", unsigned.to_str().unwrap()],
    );
    assert_eq!(code(&output), 0);
    let mut config: Value = serde_json::from_str(&fs::read_to_string(&unsigned).unwrap()).unwrap();
    config["require_signature"] = serde_json::json!({"keys": [public]});
    let err = FilterConfig::from_json(config.to_string().as_bytes()).unwrap_err();
    assert!(
        matches!(err, ConfigError::Signature(SignatureError::Unsigned)),
        "{err:?}"
    );

    // Tampered: another policy's bytes under the first one's signature.
    let signed = dir.join("signed.json");
    meshward_in(
        &dir,
        &[
            "compile",
            "shop.policy",
            "--sign",
            "signing.key",
            "-o",
            signed.to_str().unwrap(),
        ],
    );
    let mut config: Value = serde_json::from_str(&fs::read_to_string(&signed).unwrap()).unwrap();
    fs::copy(fixtures().join("shop-v2.policy"), dir.join("v2.policy")).unwrap();
    meshward_in(
        &dir,
        &["compile", "v2.policy", "-o", unsigned.to_str().unwrap()],
    );
    let v2: Value = serde_json::from_str(&fs::read_to_string(&unsigned).unwrap()).unwrap();
    config["policy"] = v2["policy"].clone();
    config["require_signature"] = serde_json::json!({"keys": [public]});
    let err = FilterConfig::from_json(config.to_string().as_bytes()).unwrap_err();
    assert!(
        matches!(err, ConfigError::Signature(SignatureError::BadSignature(_))),
        "{err:?}"
    );

    // A malformed signature member is refused even when none is required.
    let mut config: Value = serde_json::from_str(&fs::read_to_string(&signed).unwrap()).unwrap();
    config["signature"]["sig"] = "not base64!".into();
    let err = FilterConfig::from_json(config.to_string().as_bytes()).unwrap_err();
    assert!(
        matches!(err, ConfigError::Signature(SignatureError::Malformed(_))),
        "{err:?}"
    );

    // A key that is not a key.
    let output = meshward_in(
        &dir,
        &["compile", "shop.policy", "--sign", "shop.policy", "-o", "-"],
    );
    assert_eq!(code(&output), 2);
    assert!(stderr(&output).contains("not an Ed25519 private key"));
    let _ = fs::remove_dir_all(dir);
}

// ---- docs/rollout.md ----

/// One command of the walkthrough and what the doc says about it.
struct DocCommand {
    line: usize,
    args: Vec<String>,
    exit: i32,
    expected_output: Vec<String>,
}

/// The `$ meshward …` lines of the ```console blocks, each with the exit
/// code its `# exit N` comment states (default 0) and the output lines shown
/// under it (`…` lines elide).
fn doc_commands(doc: &str) -> Vec<DocCommand> {
    let mut commands: Vec<DocCommand> = Vec::new();
    let mut in_console = false;
    for (n, line) in doc.lines().enumerate() {
        if line.starts_with("```") {
            in_console = line.trim() == "```console";
            continue;
        }
        if !in_console {
            continue;
        }
        if let Some(command) = line.strip_prefix("$ ") {
            let (command, comment) = command.split_once(" # ").unwrap_or((command, ""));
            let exit = comment
                .strip_prefix("exit ")
                .map_or(0, |c| c.trim().parse().expect("`# exit N`"));
            let args: Vec<String> = command.split_whitespace().map(str::to_owned).collect();
            assert_eq!(
                args[0],
                "meshward",
                "line {}: only meshward commands run here",
                n + 1
            );
            commands.push(DocCommand {
                line: n + 1,
                args: args[1..].to_vec(),
                exit,
                expected_output: Vec::new(),
            });
        } else if !line.trim().is_empty() && !line.trim_start().starts_with('…') {
            if let Some(last) = commands.last_mut() {
                last.expected_output.push(line.trim_end().to_owned());
            }
        }
    }
    commands
}

#[test]
fn the_rollout_walkthrough_runs_as_written() {
    let doc_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/rollout.md");
    let doc = fs::read_to_string(&doc_path).unwrap();
    let commands = doc_commands(&doc);
    assert!(
        commands.len() >= 8,
        "too few commands found in docs/rollout.md"
    );
    let dir = temp_dir("walkthrough");
    for entry in fs::read_dir(fixtures()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
        }
    }
    for command in &commands {
        let args: Vec<&str> = command.args.iter().map(String::as_str).collect();
        let output = meshward_in(&dir, &args);
        let all = format!("{}{}", stdout(&output), stderr(&output));
        assert_eq!(
            code(&output),
            command.exit,
            "docs/rollout.md:{}: `meshward {}` exited {}, the doc says {}:\n{all}",
            command.line,
            args.join(" "),
            code(&output),
            command.exit
        );
        for expected in &command.expected_output {
            // The public key and timings differ run to run.
            if expected.contains("<public key>") || expected.contains(" lines/s)") {
                continue;
            }
            assert!(
                all.lines().any(|l| l.trim_end() == expected.as_str()),
                "docs/rollout.md:{}: `meshward {}` did not print\n{expected}\n--- it printed\n{all}",
                command.line,
                args.join(" ")
            );
        }
    }
    let _ = fs::remove_dir_all(dir);
}
