#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "unit tests"
)]

use std::collections::BTreeMap;

use meshward_engine::audit::{audit_line, AuditFacts, AuditUser};
use meshward_engine::chain::Chain;
use meshward_engine::spiffe::SpiffeId;
use meshward_engine::{evaluate, Policy, Reason, Request, UserInfo};

use super::*;
use crate::compile_source;

const POLICY: &str = r#"
policy "replay" {
  trust_domains "shop.example"
  @POLICY_MODE@
}
group mesh {
  member "spiffe://shop.example/ns/edge/sa/gateway"
  member "spiffe://shop.example/ns/shop/sa/*"
}
chain {
  forwarder group mesh
  max_depth 4
}
identity {
  jwt_svid {
    audiences "spiffe://shop.example/ns/shop/sa/orders"
  }
  trust_bundle "shop.example" {
    keys fetch cluster "spire_bundle" path "/bundle"
  }
  issuer "https://idp.example" {
    audiences "shop"
    keys fetch cluster "idp" path "/jwks.json"
  }
}
intent orders.read {
  method GET
  path "/orders/{id}"
}
intent payments.refund {
  method POST
  path "/refunds"
}
intent ops.health {
  path "/healthz"
}
allow frontend-reads {
  subject "spiffe://shop.example/ns/shop/sa/frontend"
  intent orders.read
  when origin "spiffe://shop.example/ns/edge/sa/gateway"
  when user scope "orders.read"
}
allow tenants-read {
  subject "spiffe://shop.example/ns/shop/sa/orders"
  intent orders.read
  when header "x-tenant" in ["a", "b"]
}
allow reports-read {
  principal jwt_svid
  subject "spiffe://shop.example/ns/batch/sa/report"
  intent orders.read
}
allow admins-read {
  principal user
  intent orders.read
  when user claim "realm_access.roles" contains "admins"
}
allow support-refunds {
  subject "spiffe://shop.example/ns/support/sa/*"
  intent payments.refund
  @RULE_MODE@
}
deny no-refunds-for-bob {
  subject "spiffe://shop.example/ns/support/sa/bob"
  intent payments.refund
  mode dry-run
}
allow health {
  subject any_authenticated
  intent ops.health
}
"#;

fn policy(mode: &str, rule_mode: &str) -> Policy {
    let source = POLICY
        .replace("@POLICY_MODE@", mode)
        .replace("@RULE_MODE@", rule_mode);
    compile_source(&source, "replay.policy")
        .unwrap_or_else(|d| panic!("{d}"))
        .load()
        .unwrap()
}

/// One recorded request, as the filter would describe it.
struct Sample {
    peer: Result<&'static str, Reason>,
    jwt: Option<&'static str>,
    user: Option<AuditUser>,
    chain: Option<Vec<&'static str>>,
    method: &'static str,
    path: &'static str,
    headers: Vec<(String, String)>,
}

fn sample(peer: &'static str, method: &'static str, path: &'static str) -> Sample {
    Sample {
        peer: Ok(peer),
        jwt: None,
        user: None,
        chain: None,
        method,
        path,
        headers: Vec::new(),
    }
}

const NOW: u64 = 1_764_380_000;

fn samples() -> Vec<Sample> {
    let gateway = "spiffe://shop.example/ns/edge/sa/gateway";
    let frontend = "spiffe://shop.example/ns/shop/sa/frontend";
    let alice = AuditUser {
        sub: "alice".into(),
        iss: None,
        scopes: vec!["orders.read".into()],
        claims: BTreeMap::new(),
    };
    let mut admin = AuditUser {
        sub: "root".into(),
        iss: Some("https://idp.example".into()),
        scopes: vec![],
        claims: BTreeMap::new(),
    };
    // A nested claim, recorded under its canonical path.
    admin.claims.insert(
        "realm_access.roles".into(),
        meshward_engine::audit::AuditClaim::List(vec!["admins".into()]),
    );
    let mut out = vec![
        Sample {
            chain: Some(vec![gateway, frontend]),
            user: None,
            ..sample(frontend, "GET", "/orders/1")
        },
        sample(frontend, "GET", "/orders/2"),
        Sample {
            headers: vec![("x-tenant".into(), "a".into())],
            ..sample(
                "spiffe://shop.example/ns/shop/sa/orders",
                "GET",
                "/orders/3",
            )
        },
        Sample {
            headers: vec![("x-tenant".into(), "z".into())],
            ..sample(
                "spiffe://shop.example/ns/shop/sa/orders",
                "GET",
                "/orders/4",
            )
        },
        Sample {
            jwt: Some("spiffe://shop.example/ns/batch/sa/report"),
            peer: Err(Reason::NoPeerCertificate),
            ..sample(gateway, "GET", "/orders/5")
        },
        Sample {
            user: Some(admin),
            peer: Err(Reason::NoPeerCertificate),
            ..sample(gateway, "GET", "/orders/6")
        },
        sample(
            "spiffe://shop.example/ns/support/sa/alice",
            "POST",
            "/refunds",
        ),
        sample(
            "spiffe://shop.example/ns/support/sa/bob",
            "POST",
            "/refunds",
        ),
        sample("spiffe://shop.example/ns/any/sa/one", "GET", "/healthz"),
        sample("spiffe://shop.example/ns/any/sa/one", "DELETE", "/orders/1"),
        sample("spiffe://shop.example/ns/any/sa/one", "GET", "/a/../b"),
        Sample {
            peer: Err(Reason::NoPeerCertificate),
            ..sample(gateway, "GET", "/healthz")
        },
    ];
    // The chain with a user, through the gateway.
    out[0].user = None;
    out.push(Sample {
        chain: Some(vec![gateway, frontend]),
        ..sample(frontend, "GET", "/orders/7")
    });
    out.push(Sample {
        user: Some(alice),
        ..sample(frontend, "GET", "/orders/8")
    });
    out
}

/// The audit line the filter writes for `s` under `policy`.
fn record_line(policy: &Policy, s: &Sample, n: usize) -> String {
    let peer_id = s.peer.map(|p| SpiffeId::parse(p).unwrap());
    let jwt = s.jwt.map(|j| SpiffeId::parse(j).unwrap());
    let chain = s.chain.as_ref().map(|hops| {
        let mut chain = Chain::start(SpiffeId::parse(hops[0]).unwrap(), NOW - 5, 60);
        chain.hops = hops.iter().map(|h| SpiffeId::parse(h).unwrap()).collect();
        if n.is_multiple_of(2) {
            chain.user = Some("alice".into());
            chain.scopes = vec!["orders.read".into()];
        }
        chain
    });
    let request = Request {
        peer: peer_id.as_ref().map_err(|r| *r),
        jwt_svid: jwt.as_ref().map(Ok),
        user: s.user.as_ref().map(|u| Ok(u as &dyn UserInfo)),
        chain: chain.as_ref().map(Ok),
        method: s.method,
        path: s.path,
        authority: "shop",
        headers: &s.headers,
    };
    let decision = evaluate(policy, &request);
    let id = format!("req-{n}");
    let facts = AuditFacts {
        request_id: Some(&id),
        traceparent: None,
        x_b3_traceid: None,
        peer: peer_id.as_ref().map_err(|r| *r),
        cert_window: None,
        jwt_svid: jwt.as_ref().map(Ok),
        user: s.user.as_ref().map(Ok),
        chain: chain.as_ref().map(Ok),
        headers: &s.headers,
        method: s.method,
        path: s.path,
        authority: "shop",
        time: NOW,
    };
    audit_line(policy, &decision, &facts)
}

fn log_for(policy: &Policy) -> String {
    samples()
        .iter()
        .enumerate()
        .map(|(n, s)| record_line(policy, s, n) + "\n")
        .collect()
}

fn run(policy: &Policy, log: &str) -> ReplayReport {
    replay(
        policy,
        log.as_bytes(),
        &ReplayOptions::default(),
        &mut |_, _| {},
    )
    .unwrap()
}

#[test]
fn replaying_a_log_against_its_own_policy_changes_nothing() {
    for (mode, rule_mode) in [
        ("mode enforce", "mode enforce"),
        ("mode enforce", "mode dry-run"),
        ("mode dry-run", "mode enforce"),
    ] {
        let p = policy(mode, rule_mode);
        let log = log_for(&p);
        let report = run(&p, &log);
        assert_eq!(report.malformed, 0, "{:?}", report.malformed_lines);
        assert_eq!(report.replayed, samples().len() as u64);
        assert_eq!(
            report.changed, 0,
            "{mode} {rule_mode}: {:#?}",
            report.groups
        );
        assert_eq!(report.records_under_same_policy, report.replayed);
        assert!(!report.fails(FailOn::AnyChange));
    }
}

/// The filter writes audit lines from borrowed facts; they must be exactly
/// the owned `AuditRecord` serialized (what replay and tooling read back).
#[test]
fn audit_lines_are_the_serialized_audit_record() {
    for (mode, rule_mode) in [
        ("mode enforce", "mode enforce"),
        ("mode dry-run", "mode dry-run"),
    ] {
        let p = policy(mode, rule_mode);
        for line in log_for(&p).lines().filter(|l| !l.is_empty()) {
            let json = line.split_once('{').map(|(_, rest)| format!("{{{rest}"));
            let json = json.expect("a JSON audit line");
            let record: meshward_engine::audit::AuditRecord = serde_json::from_str(&json).unwrap();
            assert_eq!(serde_json::to_string(&record).unwrap(), json);
        }
    }
}

/// What the audit `would` field says is what replay against the enforced
/// policy decides: dry-run and replay tell the same story.
#[test]
fn recorded_would_is_what_the_enforced_policy_decides() {
    // Every rule and the policy enforced.
    let enforced = compile_source(
        &POLICY
            .replace("@POLICY_MODE@", "mode enforce")
            .replace("@RULE_MODE@", "mode enforce")
            .replace("mode dry-run", "mode enforce"),
        "enforced.policy",
    )
    .unwrap()
    .load()
    .unwrap();
    // (policy, whether `would` names the rule and reason exactly): in a
    // dry-run policy whose dry-run rule agrees in effect with the enforced
    // rules, `would` keeps the enforced rules' reason; the effect still agrees.
    for (dry, exact) in [
        (policy("mode dry-run", "mode enforce"), true),
        (policy("mode enforce", "mode dry-run"), true),
        (policy("mode dry-run", "mode dry-run"), false),
    ] {
        let log = log_for(&dry);
        let report = run(&enforced, &log);
        assert_eq!(report.malformed, 0);
        for group in &report.groups {
            // `would` is recorded only when its effect differs; when it is
            // absent the effect stays (the deciding rule may not).
            match &group.old.would {
                Some(would) => {
                    assert_eq!(group.new.decision, would.decision, "{group:#?}");
                    if exact {
                        assert_eq!(group.new.reason, would.reason, "{group:#?}");
                        assert_eq!(group.new.rule, would.rule, "{group:#?}");
                    }
                }
                None => assert_eq!(group.new.decision, group.old.decision, "{group:#?}"),
            }
        }
        assert!(report.changed > 0);
        // The dry-run table counts exactly the recorded `would` lines.
        let recorded: u64 = report
            .would
            .iter()
            .map(|w| w.recorded.allow + w.recorded.deny)
            .sum();
        let with_would = log
            .lines()
            .filter(|l| !l.contains("\"would\":null"))
            .count();
        assert_eq!(recorded, with_would as u64);
    }
}

#[test]
fn a_dry_run_deny_that_is_enforced_is_an_allow_to_deny_change() {
    // Per-rule dry-run: `no-refunds-for-bob` is dry-run in both policies,
    // `support-refunds` too in the old one.
    let old = policy("mode enforce", "mode enforce");
    let log = log_for(&old);
    let tightened = compile_source(
        &POLICY
            .replace("@POLICY_MODE@", "mode enforce")
            .replace("@RULE_MODE@", "mode enforce")
            .replace(
                "  intent payments.refund\n  mode dry-run",
                "  intent payments.refund\n  mode enforce",
            ),
        "tight.policy",
    )
    .unwrap()
    .load()
    .unwrap();
    let report = run(&tightened, &log);
    assert_eq!(report.allow_to_deny, 1, "{:#?}", report.groups);
    let group = &report.groups[0];
    assert_eq!(group.kind, ChangeKind::AllowToDeny);
    assert_eq!(group.caller, "spiffe://shop.example/ns/support/sa/bob");
    assert_eq!(
        group.old.to_string(),
        "allow by support-refunds (allowed_by_rule), would deny by no-refunds-for-bob (denied_by_rule)"
    );
    assert_eq!(
        group.new.to_string(),
        "deny by no-refunds-for-bob (denied_by_rule)"
    );
    assert_eq!(group.examples[0].line, 8);
    assert_eq!(group.examples[0].request_id.as_deref(), Some("req-7"));
    assert!(group.predicted);
    assert_eq!(report.unexpected_denies, 0);
    assert!(report.fails(FailOn::AllowToDeny));
    assert!(!report.fails(FailOn::UnexpectedDeny));
    assert!(report.fails(FailOn::AnyChange));
    assert!(!report.fails(FailOn::Never));
}

#[test]
fn malformed_lines_are_counted_with_line_numbers() {
    let p = policy("mode enforce", "mode enforce");
    let good = record_line(&p, &samples()[8], 8);
    let truncated = &good[..good.len() / 2];
    let mut log = String::new();
    log.push_str(&good);
    log.push('\n');
    log.push_str("[info] envoy starting\n");
    log.push_str(truncated);
    log.push('\n');
    log.push_str("{\"request_id\": 5}\n");
    log.push_str(&good.replace("\"peer\":\"", "\"peer\":\"not-an-id"));
    log.push('\n');
    log.push_str(&format!(
        "[2025][info][wasm] wasm log: meshward.audit {}\n",
        good.replace(
            "\"peer\":\"spiffe://shop.example/ns/any/sa/one\"",
            "\"peer\":null,\"peer_error\":\"bogus\""
        )
    ));
    log.push_str(&good.replace("\"decision\":\"allow\"", "\"decision\":\"maybe\""));
    log.push('\n');
    log.push_str(&format!("[2025][info][wasm] meshward.audit {good}\n"));
    log.push('\n');
    log.push_str(truncated); // the last line, cut short without a newline
    let report = run(&p, &log);
    assert_eq!(report.lines, 10);
    assert_eq!(report.other_lines, 2);
    assert_eq!(report.audit_lines, 8);
    assert_eq!(report.replayed, 2);
    assert_eq!(report.malformed, 6);
    let listed: Vec<(u64, &str)> = report
        .malformed_lines
        .iter()
        .map(|m| (m.line, m.error.as_str()))
        .collect();
    assert_eq!(listed.len(), 6);
    assert_eq!(listed[0].0, 3);
    assert!(listed[0].1.starts_with("truncated JSON"), "{listed:?}");
    assert_eq!(listed[1].0, 4);
    assert!(listed[1].1.starts_with("not an audit record"), "{listed:?}");
    assert_eq!(listed[2].0, 5);
    assert!(listed[2].1.contains("`peer`"), "{listed:?}");
    assert_eq!(
        listed[3],
        (6, "unknown reason code `bogus` in `peer_error`")
    );
    assert_eq!(
        listed[4],
        (7, "`decision` is `maybe`, not `allow` or `deny`")
    );
    assert_eq!(listed[5].0, 10);
    assert!(listed[5].1.starts_with("truncated JSON"));
    let text = report.to_text("log", "p.policy");
    assert!(
        text.contains("malformed lines (6)\n  line 3: truncated JSON"),
        "{text}"
    );
}

#[test]
fn overlong_and_binary_lines_are_malformed_not_fatal() {
    let p = policy("mode enforce", "mode enforce");
    let mut log = Vec::new();
    log.extend_from_slice(b"{\"request_id\":\"");
    log.extend(std::iter::repeat_n(b'x', MAX_LINE_BYTES + 10));
    log.extend_from_slice(b"\"}\n{\xff\xfe}\n\xff\xfe plain binary noise\n");
    let report = replay(&p, &log[..], &ReplayOptions::default(), &mut |_, _| {}).unwrap();
    assert_eq!(report.malformed, 2);
    assert_eq!(report.other_lines, 1);
    assert!(report.malformed_lines[0].error.contains("longer than"));
    assert_eq!(report.malformed_lines[1].error, "not valid UTF-8");
}

#[test]
fn groups_and_examples_are_bounded() {
    let p = policy("mode enforce", "mode enforce");
    let mut log = String::new();
    for n in 0..50 {
        let s = sample(
            Box::leak(format!("spiffe://shop.example/ns/t/sa/w{}", n % 10).into_boxed_str()),
            "GET",
            "/healthz",
        );
        log.push_str(&record_line(&p, &s, n));
        log.push('\n');
    }
    let closed = compile_source(
        &POLICY
            .replace("@POLICY_MODE@", "mode enforce")
            .replace("@RULE_MODE@", "mode enforce")
            .replace(
                "  subject any_authenticated\n  intent ops.health\n",
                "  subject \"spiffe://shop.example/ns/t/sa/none\"\n  intent ops.health\n",
            ),
        "closed.policy",
    )
    .unwrap()
    .load()
    .unwrap();
    let options = ReplayOptions {
        examples: 2,
        max_groups: 4,
        max_malformed_listed: 1,
    };
    let report = replay(&closed, log.as_bytes(), &options, &mut |_, _| {}).unwrap();
    assert_eq!(report.changed, 50);
    assert_eq!(report.allow_to_deny, 50);
    assert_eq!(report.unexpected_denies, 50);
    assert!(report.fails(FailOn::UnexpectedDeny));
    assert_eq!(report.groups.len(), 4);
    assert_eq!(report.ungrouped_changes, 30);
    assert!(report
        .groups
        .iter()
        .all(|g| g.count == 5 && g.examples.len() == 2));
}

#[test]
fn new_policy_settings_apply_to_recorded_identities() {
    let old = policy("mode enforce", "mode enforce");
    let log = log_for(&old);
    // A policy that no longer trusts the gateway to forward chains, trusts
    // fewer hops, and reads a header the old policy never logged.
    let source = POLICY
        .replace("@POLICY_MODE@", "mode enforce")
        .replace("@RULE_MODE@", "mode enforce")
        .replace(
            "  member \"spiffe://shop.example/ns/shop/sa/*\"\n",
            "  member \"spiffe://shop.example/ns/edge/sa/other\"\n",
        )
        .replace(
            "  subject any_authenticated\n  intent ops.health\n",
            "  subject any_authenticated\n  intent ops.health\n  when header \"x-probe\" present\n",
        );
    let new = compile_source(&source, "new.policy")
        .unwrap()
        .load()
        .unwrap();
    let report = run(&new, &log);
    assert_eq!(report.malformed, 0);
    // The frontend's chain from the gateway restarts at the frontend:
    // `origin` no longer holds.
    assert!(report
        .groups
        .iter()
        .any(|g| g.caller.ends_with("/sa/frontend")
            && g.kind == ChangeKind::AllowToDeny
            && g.old.rule.as_deref() == Some("frontend-reads")));
    assert!(
        report.warnings.iter().any(|w| w.contains("`x-probe`")),
        "{:?}",
        report.warnings
    );
}

#[test]
fn a_recorded_chain_outliving_the_new_lifetime_is_refused() {
    let old = policy("mode enforce", "mode enforce");
    // The recorded chains lived 60 s from their origin; the new policy
    // allows 30 s, as its inbound side would have.
    let log = log_for(&old);
    let source = POLICY
        .replace("@POLICY_MODE@", "mode enforce")
        .replace("@RULE_MODE@", "mode enforce")
        .replace("  max_depth 4\n", "  max_depth 4\n  lifetime 30s\n");
    assert_ne!(source, POLICY.replace("@POLICY_MODE@", "mode enforce"));
    let new = compile_source(&source, "new.policy")
        .unwrap()
        .load()
        .unwrap();
    let report = run(&new, &log);
    assert_eq!(report.malformed, 0);
    assert!(
        report
            .groups
            .iter()
            .any(|g| g.caller.ends_with("/sa/frontend")
                && g.kind == ChangeKind::AllowToDeny
                && g.new.reason == "chain_lifetime_exceeds_bound"),
        "{:#?}",
        report.groups
    );
    // With the same lifetime nothing changes.
    assert_eq!(run(&old, &log).changed, 0);
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    fn check_counts(report: &ReplayReport) {
        assert_eq!(report.lines, report.other_lines + report.audit_lines);
        assert_eq!(report.audit_lines, report.replayed + report.malformed);
        assert_eq!(report.replayed, report.unchanged + report.changed);
        assert_eq!(
            report.changed,
            report.allow_to_deny + report.deny_to_allow + report.other_changes
        );
        let grouped: u64 = report.groups.iter().map(|g| g.count).sum();
        assert_eq!(grouped + report.ungrouped_changes, report.changed);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any bytes at all: no panic, every line accounted for.
        #[test]
        fn arbitrary_logs(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let p = policy("mode enforce", "mode dry-run");
            let report = replay(&p, &bytes[..], &ReplayOptions::default(), &mut |_, _| {}).unwrap();
            check_counts(&report);
        }

        /// Real audit lines, cut and corrupted: no panic, cut lines malformed.
        #[test]
        fn mutated_audit_lines(
            picks in proptest::collection::vec((0usize..14, 0usize..1000, any::<u8>(), 0usize..1000), 1..20),
        ) {
            let old = policy("mode dry-run", "mode enforce");
            let new = policy("mode enforce", "mode dry-run");
            let lines: Vec<String> = log_for(&old).lines().map(str::to_owned).collect();
            let mut log = Vec::new();
            for (which, cut, byte, at) in picks {
                let mut line = lines[which % lines.len()].clone().into_bytes();
                match cut % 3 {
                    0 => line.truncate(cut % line.len()),
                    1 => {
                        let at = at % line.len();
                        line[at] = byte;
                    }
                    _ => {}
                }
                log.extend_from_slice(&line);
                log.push(b'\n');
            }
            let report = replay(&new, &log[..], &ReplayOptions::default(), &mut |_, _| {}).unwrap();
            check_counts(&report);
        }
    }
}

#[test]
fn nested_claims_are_recorded_and_replayed_by_path() {
    let policy = policy("mode enforce", "mode enforce");
    let samples = samples();
    let (n, admin) = samples
        .iter()
        .enumerate()
        .find(|(_, s)| s.path == "/orders/6")
        .unwrap();
    let line = record_line(&policy, admin, n);
    assert!(
        line.contains(r#""realm_access.roles":["admins"]"#),
        "{line}"
    );
    assert!(line.contains(r#""rule":"admins-read""#), "{line}");
    // The same line against a policy that reads the claim under another
    // path: the recorded claim does not apply, the allow becomes a deny.
    let other = POLICY
        .replace("@POLICY_MODE@", "mode enforce")
        .replace("@RULE_MODE@", "mode enforce")
        .replace("realm_access.roles", "resource_access[shop.api].roles");
    let other = compile_source(&other, "other.policy")
        .unwrap()
        .load()
        .unwrap();
    assert_eq!(run(&policy, &format!("{line}\n")).unchanged, 1);
    let report = run(&other, &format!("{line}\n"));
    assert_eq!((report.changed, report.allow_to_deny), (1, 1));
}
