//! The `meshward` binary, run as scripts run it: exit codes, JSON output,
//! written files.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test crate: a failed expectation should panic loudly"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use meshward_engine::config::FilterConfig;
use serde_json::{json, Value};

fn crate_path(relative: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(relative)
        .display()
        .to_string()
}

fn shop() -> String {
    crate_path("examples/shop.policy")
}

fn golden(name: &str) -> String {
    crate_path(&format!("tests/golden/{name}.policy"))
}

fn meshward(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshward"))
        .args(args)
        .output()
        .expect("run meshward")
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

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", stdout(output)))
}

/// A fresh path in the system temp dir.
fn temp_path(name: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("meshward-cli-{}-{n}-{name}", std::process::id()))
}

#[test]
fn help_documents_exit_codes() {
    let output = meshward(&["--help"]);
    assert_eq!(code(&output), 0);
    let help = stdout(&output);
    for line in [
        "0  success",
        "1  the policy has errors",
        "2  usage",
        "3  `test`",
        "4  `explain`",
    ] {
        assert!(help.contains(line), "{line} missing from:\n{help}");
    }
}

#[test]
fn usage_and_io_errors_exit_2() {
    assert_eq!(code(&meshward(&[])), 2);
    assert_eq!(code(&meshward(&["check"])), 2);
    assert_eq!(code(&meshward(&["frobnicate", "x"])), 2);
    let missing = meshward(&["check", "/nonexistent/x.policy"]);
    assert_eq!(code(&missing), 2);
    assert!(stderr(&missing).contains("cannot read `/nonexistent/x.policy`"));
}

#[test]
fn check_reports_ok_errors_and_warnings() {
    let ok = meshward(&["check", &shop()]);
    assert_eq!(code(&ok), 0, "{}", stderr(&ok));
    assert!(stdout(&ok).starts_with("ok: "));

    let bad = meshward(&["check", &golden("e004_unknown_intent")]);
    assert_eq!(code(&bad), 1);
    assert!(stderr(&bad).contains("error[E004]: unknown intent `orders.raed`"));
    assert!(stderr(&bad).contains("e004_unknown_intent.policy:11:22"));

    let warned = golden("w001_unused_group");
    let lenient = meshward(&["check", &warned]);
    assert_eq!(code(&lenient), 0);
    assert!(stderr(&lenient).contains("warning[W001]"));
    assert_eq!(code(&meshward(&["check", &warned, "--deny-warnings"])), 1);
}

#[test]
fn check_json_lists_diagnostics() {
    let output = meshward(&["check", &golden("e009_duplicate"), "--format", "json"]);
    assert_eq!(code(&output), 1);
    let report = json(&output);
    assert_eq!(report["command"], "check");
    assert_eq!(report["ok"], false);
    assert_eq!(report["error_count"], 3);
    let file = &report["files"][0];
    assert_eq!(file["error_count"], 3);
    assert_eq!(file["policy_hash"], Value::Null);
    let first = &file["errors"][0];
    assert_eq!(first["code"], "E009");
    assert_eq!(first["severity"], "error");
    assert_eq!(
        (first["line"].as_u64(), first["column"].as_u64()),
        (Some(9), Some(7))
    );
    assert_eq!(first["related"][0]["line"], 5);
    assert!(first["help"].as_str().is_some_and(|h| h.contains("unique")));

    let clean = json(&meshward(&["check", &shop(), "--format", "json"]));
    assert_eq!(clean["ok"], true);
    assert_eq!(clean["files"][0]["warnings"], Value::Array(vec![]));
    assert_eq!(clean["files"][0]["rule_count"], 9);
    assert!(clean["files"][0]["policy_hash"]
        .as_str()
        .is_some_and(|h| h.len() == 64));
}

/// Runs meshward with `input` on stdin.
fn meshward_stdin(args: &[&str], input: &[u8]) -> Output {
    use std::io::Write as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_meshward"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run meshward");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write stdin");
    child.wait_with_output().expect("meshward output")
}

#[test]
fn check_takes_several_files_and_stdin() {
    let shop_source = std::fs::read(shop()).expect("shop");
    let bad = golden("e004_unknown_intent");
    let output = meshward_stdin(&["check", "-", &bad, "--format", "json"], &shop_source);
    assert_eq!(code(&output), 1);
    let report = json(&output);
    assert_eq!(report["ok"], false);
    assert_eq!(report["files"][0]["file"], "<stdin>");
    assert_eq!(report["files"][0]["ok"], true);
    assert_eq!(report["files"][1]["ok"], false);
    assert_eq!(report["error_count"], 2);

    let both = meshward_stdin(&["check", &shop(), "-"], &shop_source);
    assert_eq!(code(&both), 0, "{}", stderr(&both));
    assert_eq!(stdout(&both).lines().count(), 2);
    assert!(stdout(&both).contains("ok: `<stdin>`: policy `shop`"));

    let twice = meshward_stdin(&["check", "-", "-"], b"");
    assert_eq!(code(&twice), 2);
    assert!(stderr(&twice).contains("`-` (stdin) can be given only once"));
}

#[test]
fn fmt_formats_files_and_stdin_and_check_names_unformatted_files() {
    let messy = crate_path("tests/fmt/messy.policy");
    let formatted =
        std::fs::read_to_string(crate_path("tests/fmt/messy.formatted.policy")).expect("golden");
    let path = temp_path("messy.policy");
    std::fs::copy(&messy, &path).expect("copy");
    let path_text = path.display().to_string();

    let check = meshward(&["fmt", "--check", &path_text, &shop()]);
    assert_eq!(code(&check), 5);
    assert_eq!(stdout(&check), format!("{path_text}\n"));
    assert!(stderr(&check).contains("1 file is not formatted"));

    let json_check = json(&meshward(&[
        "fmt", "--check", &path_text, "--format", "json",
    ]));
    assert_eq!(json_check["changed_count"], 1);
    assert_eq!(json_check["ok"], false);

    assert_eq!(code(&meshward(&["fmt", &path_text])), 0);
    assert_eq!(
        std::fs::read_to_string(&path).expect("formatted"),
        formatted
    );
    assert_eq!(code(&meshward(&["fmt", "--check", &path_text])), 0);
    std::fs::remove_file(&path).ok();

    let piped = meshward_stdin(&["fmt"], std::fs::read(&messy).expect("messy").as_slice());
    assert_eq!(code(&piped), 0);
    assert_eq!(stdout(&piped), formatted);

    let broken = meshward_stdin(&["fmt", "-"], b"policy \"p\" {\n  trust_domains 'a'\n}\n");
    assert_eq!(code(&broken), 1);
    assert!(stderr(&broken).contains("error[E001]"));
    assert_eq!(stdout(&broken), "");
}

#[test]
fn completions_for_each_shell() {
    for (shell, marker) in [
        ("bash", "_meshward()"),
        ("zsh", "#compdef meshward"),
        ("fish", "complete -c meshward"),
        ("powershell", "Register-ArgumentCompleter"),
        ("elvish", "edit:completion:arg-completer[meshward]"),
    ] {
        let output = meshward(&["completions", shell]);
        assert_eq!(code(&output), 0, "{shell}");
        let script = stdout(&output);
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(
            script.contains("fmt") && script.contains("deny-warnings"),
            "{shell}"
        );
    }
    assert_eq!(code(&meshward(&["completions", "tcsh"])), 2);
}

#[test]
fn compile_writes_a_loadable_plugin_configuration() {
    let out = temp_path("shop.json");
    let out_text = out.display().to_string();
    let output = meshward(&[
        "compile",
        &shop(),
        "-o",
        &out_text,
        "--revoked-serial",
        "0A:1B:2C",
        "--format",
        "json",
    ]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let summary = json(&output);
    let written = std::fs::read(&out).expect("output written");
    std::fs::remove_file(&out).ok();
    let config = FilterConfig::from_json(&written).expect("filter accepts it");
    assert_eq!(summary["command"], "compile");
    assert_eq!(summary["policy_hash"], config.policy.hash_hex());
    assert_eq!(summary["rule_count"], config.policy.rule_count());
    assert_eq!(summary["rule_count"], 9);
    assert_eq!(summary["warnings"], Value::Array(vec![]));
    assert!(summary["policy_bytes"].as_u64().is_some_and(|b| b > 44));
    assert!(config.revoked_serials.contains("a1b2c"));
    // Pretty by default.
    assert!(String::from_utf8_lossy(&written).lines().count() > 3);
}

#[test]
fn compile_compact_to_stdout_and_rejects_bad_serials() {
    let output = meshward(&["compile", &shop(), "-o", "-", "--compact"]);
    assert_eq!(code(&output), 0);
    let text = stdout(&output);
    assert_eq!(text.lines().count(), 1);
    assert!(FilterConfig::from_json(text.trim().as_bytes()).is_ok());

    let bad_serial = meshward(&["compile", &shop(), "-o", "-", "--revoked-serial", "xyz"]);
    assert_eq!(code(&bad_serial), 2);
    assert!(stderr(&bad_serial).contains("`xyz`"));

    let bad_policy = meshward(&["compile", &golden("e010_shadowed_allow"), "-o", "-"]);
    assert_eq!(code(&bad_policy), 1);
    assert!(stdout(&bad_policy).is_empty());
    assert!(stderr(&bad_policy).contains("error[E010]"));
}

const GATEWAY: &str = "spiffe://shop.example/ns/edge/sa/gateway";
const FRONTEND: &str = "spiffe://shop.example/ns/shop/sa/frontend";

/// `explain` of `GET /orders/42` from the frontend, plus `extra` flags.
fn explain_orders(extra: &[&str]) -> Output {
    let mut args = vec![
        "explain".to_owned(),
        shop(),
        "--peer".to_owned(),
        FRONTEND.to_owned(),
        "--method".to_owned(),
        "GET".to_owned(),
        "--path".to_owned(),
        "/orders/42".to_owned(),
    ];
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    meshward(&args)
}

#[test]
fn explain_allow_exits_0_and_names_the_rule_location() {
    let chain = format!("{GATEWAY},{FRONTEND}");
    let output = explain_orders(&[
        "--chain",
        &chain,
        "--chain-user",
        "alice",
        "--chain-scope",
        "orders.read",
    ]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("decision: allow"), "{text}");
    assert!(
        text.contains("rule:     `frontend-reads-orders` ("),
        "{text}"
    );
    assert!(text.contains("shop.policy:93:7)"), "{text}");
    assert!(
        text.contains(&format!(
            "chain:    {GATEWAY} -> {FRONTEND} (complete), user `alice`"
        )),
        "{text}"
    );
}

#[test]
fn explain_chain_flags_in_json() {
    let chain = format!("{GATEWAY},{FRONTEND}");
    let allow = json(&explain_orders(&[
        "--chain",
        &chain,
        "--chain-user",
        "alice",
        "--chain-scope",
        "orders.read",
        "--purpose",
        "frontend.pages",
        "--format",
        "json",
    ]));
    assert_eq!(allow["decision"], "allow");
    assert_eq!(allow["rule"]["id"], "frontend-reads-orders");
    assert_eq!(allow["chain"]["hops"][0], GATEWAY);
    assert_eq!(allow["chain"]["complete"], true);
    assert_eq!(allow["chain"]["purpose"], "frontend.pages");
    assert_eq!(allow["chain"]["user"], "alice");
    assert_eq!(allow["request"]["chain"]["scopes"][0], "orders.read");

    // The deny variants: no chain, a user without the scope, an incomplete chain.
    let no_chain = explain_orders(&["--format", "json"]);
    assert_eq!(code(&no_chain), 4);
    assert_eq!(json(&no_chain)["reason"], "no_matching_rule");
    assert_eq!(json(&no_chain)["chain"], Value::Null);
    let no_scope = explain_orders(&["--chain", &chain, "--chain-user", "bob", "--format", "json"]);
    assert_eq!(code(&no_scope), 4);
    let incomplete = json(&explain_orders(&[
        "--chain",
        &chain,
        "--chain-user",
        "alice",
        "--chain-scope",
        "orders.read",
        "--incomplete",
        "--format",
        "json",
    ]));
    assert_eq!(incomplete["decision"], "deny");
    assert_eq!(incomplete["chain"]["complete"], false);

    // A chain from a peer the policy does not trust to forward is dropped.
    let dropped = json(&meshward(&[
        "explain",
        &shop(),
        "--peer",
        "spiffe://shop.example/ns/support/sa/desk",
        "--method",
        "GET",
        "--path",
        "/healthz",
        "--chain",
        &format!("{GATEWAY},spiffe://shop.example/ns/support/sa/desk"),
        "--chain-user",
        "alice",
        "--format",
        "json",
    ]));
    assert_eq!(dropped["decision"], "allow");
    assert_eq!(
        dropped["chain"]["hops"],
        serde_json::json!(["spiffe://shop.example/ns/support/sa/desk"])
    );
    assert_eq!(dropped["chain"]["complete"], false);
    assert_eq!(dropped["chain"]["user"], Value::Null);

    // Too deep for `max_depth 5`.
    let deep: Vec<String> = (0..5)
        .map(|i| format!("spiffe://shop.example/ns/shop/sa/w{i}"))
        .chain(std::iter::once(FRONTEND.to_owned()))
        .collect();
    let too_deep = explain_orders(&["--chain", &deep.join(","), "--format", "json"]);
    assert_eq!(code(&too_deep), 4);
    assert_eq!(json(&too_deep)["reason"], "chain_too_deep");
    assert_eq!(json(&too_deep)["chain"]["refused"], "chain_too_deep");
}

#[test]
fn explain_token_and_user_flags_in_json() {
    let policy = golden("ok_chain_and_tokens");
    let explain = |extra: &[&str]| {
        let mut args = vec![
            "explain",
            policy.as_str(),
            "--peer",
            GATEWAY,
            "--method",
            "GET",
            "--path",
            "/admin/audit",
            "--format",
            "json",
        ];
        args.extend_from_slice(extra);
        meshward(&args)
    };
    let reporter = "spiffe://partner.example/ns/audit/sa/reporter";
    let allow = explain(&[
        "--jwt-svid",
        reporter,
        "--user",
        "alice",
        "--issuer",
        "https://idp.example",
        "--claim",
        "groups=ops",
        "--claim",
        "groups=admins",
    ]);
    assert_eq!(code(&allow), 0, "{}", stdout(&allow));
    let allow = json(&allow);
    assert_eq!(allow["rule"]["id"], "audit-for-admins");
    assert_eq!(allow["request"]["jwt_svid"], reporter);
    assert_eq!(
        allow["request"]["user"]["claims"]["groups"],
        serde_json::json!(["ops", "admins"])
    );
    assert_eq!(allow["request"]["user"]["issuer"], "https://idp.example");

    let not_admin = explain(&[
        "--jwt-svid",
        reporter,
        "--user",
        "alice",
        "--issuer",
        "https://idp.example",
        "--claim",
        "groups=ops",
    ]);
    assert_eq!(code(&not_admin), 4);
    assert_eq!(json(&not_admin)["reason"], "no_matching_rule");

    let untrusted = json(&explain(&["--jwt-svid", "spiffe://evil.example/x"]));
    assert_eq!(untrusted["reason"], "jwt_untrusted_domain");
    let not_spiffe = json(&explain(&["--jwt-svid", "reporter"]));
    assert_eq!(not_spiffe["reason"], "jwt_subject_not_spiffe");

    // A user token alone, at the edge.
    let browse = meshward(&[
        "explain",
        &policy,
        "--peer",
        "none",
        "--method",
        "GET",
        "--path",
        "/catalog/shoes",
        "--user",
        "alice",
        "--scope",
        "catalog.read",
        "--format",
        "json",
    ]);
    assert_eq!(code(&browse), 0, "{}", stdout(&browse));
    assert_eq!(json(&browse)["rule"]["id"], "edge-browse");
    assert_eq!(
        json(&browse)["request"]["user"]["scopes"][0],
        "catalog.read"
    );
}

#[test]
fn explain_rejects_requests_no_proxy_could_see() {
    // The chain must end at the peer.
    let wrong_end = explain_orders(&["--chain", GATEWAY]);
    assert_eq!(code(&wrong_end), 2);
    assert!(
        stderr(&wrong_end).contains("must be the direct peer"),
        "{}",
        stderr(&wrong_end)
    );
    // A chain needs a peer.
    let no_peer = meshward(&[
        "explain",
        &shop(),
        "--peer",
        "none",
        "--method",
        "GET",
        "--path",
        "/",
        "--incomplete",
    ]);
    assert_eq!(code(&no_peer), 2);
    // Scopes, issuer and claims need `--user`; chain scopes need `--chain-user`.
    assert_eq!(code(&explain_orders(&["--scope", "a"])), 2);
    assert_eq!(code(&explain_orders(&["--chain-scope", "a"])), 2);
    assert_eq!(
        code(&explain_orders(&["--user", "a", "--claim", "novalue"])),
        2
    );
    assert_eq!(code(&explain_orders(&["--chain", "not-an-id"])), 2);
}

#[test]
fn explain_deny_exits_4_with_json_details() {
    let output = meshward(&[
        "explain",
        &shop(),
        "--peer",
        "spiffe://shop.example/ns/support/sa/desk",
        "--method",
        "POST",
        "--path",
        "/payments/refunds",
        "--host",
        "payments.shop.svc:443",
        "--header",
        "x-user=alice",
        "--format",
        "json",
    ]);
    assert_eq!(code(&output), 4);
    let decision = json(&output);
    assert_eq!(decision["decision"], "deny");
    assert_eq!(decision["reason"], "no_matching_rule");
    assert_eq!(decision["status"], 403);
    assert_eq!(decision["intent"], "payments.refund");
    assert_eq!(decision["rule"], Value::Null);
    assert_eq!(decision["would_be"]["decision"], "allow");
    assert_eq!(decision["would_be"]["rule"]["id"], "support-refunds");
    assert!(decision["would_be"]["rule"]["location"]
        .as_str()
        .is_some_and(|l| l.ends_with("shop.policy:114:7")));
    assert_eq!(decision["request"]["headers"][0][0], "x-user");
}

#[test]
fn explain_identity_failures_and_bad_headers() {
    let none = meshward(&[
        "explain",
        &shop(),
        "--peer",
        "none",
        "--method",
        "GET",
        "--path",
        "/healthz",
        "--format",
        "json",
    ]);
    assert_eq!(code(&none), 4);
    let decision = json(&none);
    assert_eq!(decision["reason"], "no_peer_certificate");
    assert_eq!(decision["status"], 401);

    let bad_header = meshward(&[
        "explain",
        &shop(),
        "--peer",
        "none",
        "--method",
        "GET",
        "--path",
        "/",
        "--header",
        "novalue",
    ]);
    assert_eq!(code(&bad_header), 2);
}

#[test]
fn test_command_reports_passes_and_failures() {
    let passing = meshward(&["test", &shop()]);
    assert_eq!(code(&passing), 0, "{}", stdout(&passing));
    assert_eq!(stdout(&passing).lines().last(), Some("22 passed, 0 failed"));

    let failing = golden("ok_dry_run_policy");
    let output = meshward(&["test", &failing]);
    assert_eq!(code(&output), 3);
    let text = stdout(&output);
    assert!(text.contains("test this expectation is wrong on purpose and fails ... FAILED"));
    assert!(text.contains("expected deny, got allow"));

    let report = json(&meshward(&["test", &failing, "--format", "json"]));
    assert_eq!(
        (
            report["passed_count"].as_u64(),
            report["failed_count"].as_u64()
        ),
        (Some(2), Some(1))
    );
    assert_eq!(report["tests"][2]["passed"], false);
    assert_eq!(report["tests"][2]["outcome"]["reason"], "policy_dry_run");

    assert_eq!(
        code(&meshward(&["test", &golden("e021_incomplete_test")])),
        1
    );
}

#[test]
fn gen_bench_output_is_a_valid_policy() {
    let output = meshward(&["gen-bench", "--rules", "12"]);
    assert_eq!(code(&output), 0);
    let path = temp_path("bench.policy");
    std::fs::write(&path, &output.stdout).expect("write");
    let check = meshward(&["check", &path.display().to_string()]);
    std::fs::remove_file(&path).ok();
    assert_eq!(code(&check), 0, "{}", stderr(&check));

    let stats = json(&meshward(&["gen-bench", "--rules", "100", "--stats"]));
    assert_eq!(stats["rules"], 100);
    assert!(stats["bytes_per_rule"].as_f64().is_some_and(|b| b > 0.0));
}

/// `explain` decides through the filter's pipeline: what the pipeline adds
/// after `evaluate` (method-override headers) answers as in Envoy, and a
/// `--peer` that is not a SPIFFE ID is a usage error, not a decision.
#[test]
fn explain_runs_the_filter_pipeline() {
    let chain = format!("{GATEWAY},{FRONTEND}");
    let allowed_args = [
        "--chain",
        chain.as_str(),
        "--chain-user",
        "alice",
        "--chain-scope",
        "orders.read",
        "--format",
        "json",
    ];
    let allowed = explain_orders(&allowed_args);
    assert_eq!(code(&allowed), 0, "{}", stdout(&allowed));
    let mut overridden = allowed_args.to_vec();
    overridden.extend(["--header", "x-http-method-override=DELETE"]);
    let denied = explain_orders(&overridden);
    assert_eq!(code(&denied), 4, "{}", stdout(&denied));
    assert_eq!(json(&denied)["reason"], "method_override");
    assert_eq!(json(&denied)["status"], 403);
    let shop = shop();
    for peer in [
        "spiffe://Shop.Example/x",
        "https://shop.example/x",
        "frontend",
    ] {
        let out = meshward(&[
            "explain",
            &shop,
            "--peer",
            peer,
            "--method",
            "GET",
            "--path",
            "/orders/42",
        ]);
        assert_eq!(code(&out), 2, "{peer}: {}", stdout(&out));
        assert!(
            stderr(&out).contains("is not a SPIFFE ID"),
            "{}",
            stderr(&out)
        );
    }
}

/// `meshward decide`: raw requests through the pipeline, one answer per
/// line; a bad line gets an error answer (the others are still decided)
/// and exit 2.
#[test]
fn decide_runs_raw_requests_through_the_pipeline() {
    let config = temp_path("decide-config.json");
    let compiled = meshward(&["compile", &shop(), "-o", config.to_str().unwrap()]);
    assert_eq!(code(&compiled), 0, "{}", stderr(&compiled));
    let requests = temp_path("requests.jsonl");
    std::fs::write(
        &requests,
        [
            r#"{"id":"no-cert","method":"GET","path":"/orders/1","authority":"orders"}"#,
            r#"{"id":"forged-xfcc","method":"GET","path":"/orders/1","authority":"orders","headers":[["x-forwarded-client-cert","Hash=00;URI=spiffe://shop.example/ns/shop/sa/frontend"]]}"#,
            r#"{"id":"bad-pem","method":"GET","path":"/orders/1","peer_cert":"not a certificate"}"#,
            r#"not json"#,
        ]
        .join("\n"),
    )
    .unwrap();
    let out = meshward(&[
        "decide",
        "--config",
        config.to_str().unwrap(),
        requests.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let answers: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(answers.len(), 4, "{}", stdout(&out));
    assert_eq!(answers[0]["id"], "no-cert");
    assert_eq!(answers[0]["reason"], "no_peer_certificate");
    assert_eq!(answers[0]["status"], 401);
    // A client-sent XFCC is what Envoy's SANITIZE_SET replaces: no peer.
    assert_eq!(answers[1]["reason"], "no_peer_certificate");
    assert!(answers[2]["error"].as_str().unwrap().contains("PEM"));
    assert_eq!(answers[3]["line"], 4);
    assert!(answers[3]["error"]
        .as_str()
        .unwrap()
        .contains("not a request"));
}

/// A deny lists the allow rules that came closest, each with the first
/// requirement it failed; `--why-not RULE` says it for one rule.
#[test]
fn explain_shows_near_misses_and_why_not() {
    let denied = json(&explain_orders(&["--format", "json"]));
    assert_eq!(denied["reason"], "no_matching_rule");
    let misses = denied["near_misses"].as_array().unwrap();
    assert!(!misses.is_empty(), "{denied}");
    assert_eq!(misses[0]["rule"]["id"], "frontend-reads-orders");
    assert_eq!(misses[0]["failed"], "condition");
    assert!(misses[0]["detail"].as_str().unwrap().contains("origin"));
    assert!(misses[0]["rule"]["location"]
        .as_str()
        .unwrap()
        .contains("shop.policy"));
    let text = stdout(&explain_orders(&[]));
    assert!(text.contains("near misses:"), "{text}");

    let why = json(&explain_orders(&[
        "--why-not",
        "frontend-reads-orders",
        "--format",
        "json",
    ]));
    assert_eq!(why["why_not"]["failed"], "condition");
    let unknown = explain_orders(&["--why-not", "no-such-rule"]);
    assert_eq!(code(&unknown), 2);
    assert!(stderr(&unknown).contains("no rule `no-such-rule`"));
    // An allow has no near misses.
    let chain = format!("{GATEWAY},{FRONTEND}");
    let allowed = json(&explain_orders(&[
        "--chain",
        &chain,
        "--chain-user",
        "alice",
        "--chain-scope",
        "orders.read",
        "--format",
        "json",
    ]));
    assert_eq!(allowed["decision"], "allow");
    assert_eq!(allowed["near_misses"], json!([]));
}
