//! Decisions end to end: a real Envoy over mTLS with the meshward filter,
//! real SVIDs, and an echo app that shows what it received.
//!
//! Each test starts its own Envoy (about 0.2 s), so counters and audit lines
//! belong to that test alone.

use meshward_e2e::expect::{allowed, app_header, app_header_one, denied, OWNED_HEADERS};
use meshward_e2e::{Leaf, Mesh, Request};

const POLICY: &str = r#"
# The shop, reduced to what these tests need.
policy "e2e-decisions" {
  trust_domains "shop.example"
}

group frontends {
  member "spiffe://shop.example/ns/shop/sa/frontend"
}

intent orders.read {
  method GET HEAD
  path "/orders" "/orders/{id}"
}

intent orders.create {
  method POST
  path "/orders"
}

intent payments.refund {
  method POST
  path "/payments/{id}/refund"
}

allow frontend-reads-orders {
  subject group frontends
  intent orders.read
}

allow frontend-creates-orders {
  subject group frontends
  intent orders.create
}

# Being rolled out: reported as "would deny", enforced by nobody yet.
deny freeze-order-creation {
  subject group frontends
  intent orders.create
  mode dry-run
}

# Any workload of the shop namespace may refund...
allow shop-refunds {
  subject "spiffe://shop.example/ns/shop/sa/*"
  intent payments.refund
}

# ...except the frontends: deny overrides allow.
deny no-refunds-from-frontend {
  subject group frontends
  intent payments.refund
}
"#;

const FRONTEND: &str = "spiffe://shop.example/ns/shop/sa/frontend";

fn mesh(label: &str) -> Mesh {
    Mesh::builder(POLICY).label(label).start()
}

fn frontend(mesh: &Mesh) -> Leaf {
    mesh.pki.workload("shop", "frontend")
}

#[test]
fn allowed_intent_reaches_the_app_with_verified_identity_headers() {
    let mesh = mesh("allowed");
    let response = mesh.send(
        Some(&frontend(&mesh)),
        &Request::get("/orders/42").header("x-request-id", "req-allowed-1"),
    );
    let echo = allowed(&response);
    assert_eq!(echo["path"], "/orders/42");
    assert_eq!(app_header_one(&echo, "x-meshward-peer"), FRONTEND);
    assert_eq!(app_header_one(&echo, "x-meshward-intent"), "orders.read");
    assert_eq!(app_header_one(&echo, "x-meshward-decision"), "allow");
    let policy_hash = app_header_one(&echo, "x-meshward-policy").to_owned();
    assert!(
        policy_hash.len() >= 16 && policy_hash.chars().all(|c| c.is_ascii_hexdigit()),
        "x-meshward-policy is a hex hash: {policy_hash:?}"
    );

    let audit = mesh.envoy.audit_for("req-allowed-1");
    let a = &audit.json;
    assert_eq!(a["decision"], "allow", "{a}");
    assert_eq!(a["reason"], "allowed_by_rule", "{a}");
    assert_eq!(a["rule"], "frontend-reads-orders", "{a}");
    assert_eq!(a["intent"], "orders.read", "{a}");
    assert_eq!(a["peer"], FRONTEND, "{a}");
    assert_eq!(a["mode"], "enforce", "{a}");
    assert_eq!(a["method"], "GET", "{a}");
    assert_eq!(a["path"], "/orders/42", "{a}");
    assert_eq!(a["policy"], policy_hash.as_str(), "{a}");
    assert!(a["would"].is_null(), "{a}");
}

#[test]
fn intent_not_granted_to_the_peer_is_denied_403_and_never_reaches_the_app() {
    let mesh = mesh("denied");
    let payments = mesh.pki.workload("shop", "payments");
    let response = mesh.send(
        Some(&payments),
        &Request::get("/orders/42").header("x-request-id", "req-denied-1"),
    );
    let body = denied(&response, 403, "no_matching_rule");
    assert_eq!(body["intent"], "orders.read");
    assert_eq!(body["request_id"], "req-denied-1");
    assert_eq!(mesh.upstream.count(), 0, "a denied request reached the app");

    let audit = mesh.envoy.audit_for("req-denied-1");
    assert_eq!(audit.json["decision"], "deny", "{}", audit.raw);
    assert_eq!(audit.json["reason"], "no_matching_rule", "{}", audit.raw);
    assert_eq!(
        audit.json["peer"], "spiffe://shop.example/ns/shop/sa/payments",
        "{}",
        audit.raw
    );
    assert!(audit.json["rule"].is_null(), "{}", audit.raw);
}

#[test]
fn unclassified_requests_are_denied() {
    let mesh = mesh("unclassified");
    let fe = frontend(&mesh);
    for (method, path) in [
        ("GET", "/nowhere"),
        ("GET", "/orders/42/items"),
        // Right path, method the intent does not declare.
        ("DELETE", "/orders/42"),
    ] {
        let response = mesh.send(Some(&fe), &Request::new(method, path));
        let body = denied(&response, 403, "unclassified");
        assert!(body["intent"].is_null(), "{method} {path}: {body}");
    }
    assert_eq!(mesh.upstream.count(), 0);
}

#[test]
fn deny_overrides_allow() {
    let mesh = mesh("deny-overrides");
    // `shop-refunds` (allow, shop/sa/*) and `no-refunds-from-frontend` (deny)
    // both match the frontend: the deny wins.
    let response = mesh.send(
        Some(&frontend(&mesh)),
        &Request::post("/payments/7/refund", b"{}").header("x-request-id", "req-refund-fe"),
    );
    let body = denied(&response, 403, "denied_by_rule");
    assert_eq!(body["intent"], "payments.refund");
    let audit = mesh.envoy.audit_for("req-refund-fe");
    assert_eq!(
        audit.json["rule"], "no-refunds-from-frontend",
        "{}",
        audit.raw
    );

    // Control: another shop workload matches only the allow.
    let orders = mesh.pki.workload("shop", "orders");
    let echo = allowed(&mesh.send(
        Some(&orders),
        &Request::post("/payments/7/refund", b"{}").header("x-request-id", "req-refund-orders"),
    ));
    assert_eq!(
        app_header_one(&echo, "x-meshward-intent"),
        "payments.refund"
    );
    let audit = mesh.envoy.audit_for("req-refund-orders");
    assert_eq!(audit.json["rule"], "shop-refunds", "{}", audit.raw);
    assert_eq!(mesh.upstream.count(), 1);
}

#[test]
fn dry_run_rule_that_would_deny_lets_the_request_through_and_says_so() {
    let mesh = mesh("dry-run");
    let response = mesh.send(
        Some(&frontend(&mesh)),
        &Request::post("/orders", b"{\"item\":1}").header("x-request-id", "req-dry-run"),
    );
    let echo = allowed(&response);
    assert_eq!(app_header_one(&echo, "x-meshward-decision"), "would-deny");
    assert_eq!(app_header_one(&echo, "x-meshward-intent"), "orders.create");

    let audit = mesh.envoy.audit_for("req-dry-run");
    let a = &audit.json;
    // Enforced outcome: the allow rule.
    assert_eq!(a["decision"], "allow", "{a}");
    assert_eq!(a["rule"], "frontend-creates-orders", "{a}");
    assert_eq!(a["reason"], "allowed_by_rule", "{a}");
    // What the dry-run rule would have done.
    assert_eq!(a["would"]["decision"], "deny", "{a}");
    assert_eq!(a["would"]["rule"], "freeze-order-creation", "{a}");
    assert_eq!(a["would"]["reason"], "denied_by_rule", "{a}");
    assert_eq!(
        mesh.envoy
            .counter("wasmcustom.meshward.would_be.decision=deny.reason=denied_by_rule"),
        1
    );
}

#[test]
fn a_whole_policy_in_dry_run_lets_everything_through_and_reports_what_it_would_deny() {
    let dry_policy = POLICY.replace(
        "trust_domains \"shop.example\"\n}",
        "trust_domains \"shop.example\"\n  mode dry-run\n}",
    );
    assert_ne!(dry_policy, POLICY);
    let mesh = Mesh::builder(&dry_policy).label("policy-dry-run").start();
    let payments = mesh.pki.workload("shop", "payments");
    let echo = allowed(&mesh.send(
        Some(&payments),
        &Request::get("/orders/42").header("x-request-id", "req-policy-dry-run"),
    ));
    assert_eq!(app_header_one(&echo, "x-meshward-decision"), "would-deny");
    let audit = mesh.envoy.audit_for("req-policy-dry-run");
    let a = &audit.json;
    assert_eq!(a["decision"], "allow", "{a}");
    assert_eq!(a["reason"], "policy_dry_run", "{a}");
    assert_eq!(a["mode"], "dry-run", "{a}");
    assert_eq!(a["would"]["decision"], "deny", "{a}");
    assert_eq!(a["would"]["reason"], "no_matching_rule", "{a}");
}

#[test]
fn spoofed_identity_headers_from_the_client_are_removed_or_ignored() {
    let mesh = mesh("spoofing");
    let fe = frontend(&mesh);
    let admin = "spiffe://shop.example/ns/ops/sa/admin";
    let forged_xfcc = format!(
        "By=spiffe://shop.example/ns/shop/sa/orders;Hash={};URI={admin}",
        "ab".repeat(32)
    );
    let spoofed = |request: Request| {
        request
            .header("x-meshward-peer", admin)
            .header("x-meshward-intent", "payments.refund")
            .header("x-meshward-decision", "allow")
            .header("x-meshward-policy", "0000")
            .header("x-meshward-chain", "forged")
            .header("X-Meshward-Peer", admin)
            .header("x-forwarded-client-cert", &forged_xfcc)
    };

    // Allowed request: the app sees only the filter's verified values.
    let echo = allowed(&mesh.send(Some(&fe), &spoofed(Request::get("/orders/42"))));
    assert_eq!(app_header_one(&echo, "x-meshward-peer"), FRONTEND);
    assert_eq!(app_header_one(&echo, "x-meshward-intent"), "orders.read");
    assert_eq!(app_header_one(&echo, "x-meshward-decision"), "allow");
    assert_ne!(app_header_one(&echo, "x-meshward-policy"), "0000");
    let seen: Vec<&String> = echo["headers"]
        .as_object()
        .map(|h| h.keys().filter(|k| k.starts_with("x-meshward-")).collect())
        .unwrap_or_default();
    let mut owned: Vec<&str> = OWNED_HEADERS.to_vec();
    owned.sort_unstable();
    let mut seen_sorted: Vec<&str> = seen.iter().map(|s| s.as_str()).collect();
    seen_sorted.sort_unstable();
    assert_eq!(
        seen_sorted, owned,
        "only the filter's own x-meshward-* headers reach the app"
    );
    // Envoy replaced the forged XFCC with the real peer's (SANITIZE_SET).
    let xfcc = app_header(&echo, "x-forwarded-client-cert");
    assert_eq!(xfcc.len(), 1, "{xfcc:?}");
    assert!(xfcc[0].contains(&format!("URI={FRONTEND}")), "{xfcc:?}");
    assert!(!xfcc[0].contains(admin), "forged XFCC survived: {xfcc:?}");

    // A denied request stays denied whatever identity headers it carries.
    let payments = mesh.pki.workload("shop", "payments");
    let response = mesh.send(
        Some(&payments),
        &spoofed(Request::get("/orders/42")).header("x-meshward-peer", FRONTEND),
    );
    denied(&response, 403, "no_matching_rule");
    let response = mesh.send(
        Some(&fe),
        &spoofed(Request::post("/payments/7/refund", b"{}")),
    );
    denied(&response, 403, "denied_by_rule");
    assert_eq!(mesh.upstream.count(), 1);
    // The audit trail names the real peer, not the claimed one (once the
    // last request's line is written).
    mesh.envoy.wait_audit("of the refund", |l| {
        l.str("reason") == Some("denied_by_rule")
    });
    assert!(mesh
        .envoy
        .audit_lines()
        .iter()
        .all(|l| l.json["peer"] != admin));
}

#[test]
fn stats_counters_move() {
    let mesh = mesh("stats");
    let fe = frontend(&mesh);
    let payments = mesh.pki.workload("shop", "payments");
    let names = [
        "wasmcustom.meshward.decisions.decision=allow.reason=allowed_by_rule",
        "wasmcustom.meshward.would_be.decision=deny.reason=denied_by_rule",
        "wasmcustom.meshward.decisions.decision=deny.reason=denied_by_rule",
        "wasmcustom.meshward.decisions.decision=deny.reason=no_matching_rule",
        "wasmcustom.meshward.decisions.decision=deny.reason=unclassified",
        "wasmcustom.meshward.rules.rule=frontend_reads_orders.mode=enforce.decision=allow",
        "wasmcustom.meshward.rules.rule=freeze_order_creation.mode=dry_run.decision=deny",
        "wasmcustom.meshward.intents.intent=orders_read.decision=deny",
    ];
    let before: Vec<u64> = names.iter().map(|n| mesh.envoy.counter(n)).collect();
    // The counters exist before any request (defined at start-up), except
    // would-be outcomes, defined when first seen.
    let stats = mesh.envoy.stats("wasmcustom.meshward.");
    for name in names.iter().filter(|n| !n.contains(".would_be.")) {
        assert!(
            stats.contains_key(*name),
            "{name} missing from /stats: {stats:?}"
        );
    }

    allowed(&mesh.send(Some(&fe), &Request::get("/orders/1")));
    allowed(&mesh.send(Some(&fe), &Request::get("/orders/2")));
    allowed(&mesh.send(Some(&fe), &Request::post("/orders", b"{}"))); // would-deny
    denied(
        &mesh.send(Some(&payments), &Request::get("/orders/1")),
        403,
        "no_matching_rule",
    );
    denied(
        &mesh.send(Some(&fe), &Request::get("/elsewhere")),
        403,
        "unclassified",
    );
    denied(
        &mesh.send(Some(&fe), &Request::post("/payments/1/refund", b"{}")),
        403,
        "denied_by_rule",
    );

    let after: Vec<u64> = names.iter().map(|n| mesh.envoy.counter(n)).collect();
    let delta: Vec<(&str, u64)> = names
        .iter()
        .zip(before.iter().zip(&after))
        .map(|(n, (b, a))| (*n, a - b))
        .collect();
    assert_eq!(
        delta,
        vec![
            (
                "wasmcustom.meshward.decisions.decision=allow.reason=allowed_by_rule",
                3
            ),
            (
                "wasmcustom.meshward.would_be.decision=deny.reason=denied_by_rule",
                1
            ),
            (
                "wasmcustom.meshward.decisions.decision=deny.reason=denied_by_rule",
                1
            ),
            (
                "wasmcustom.meshward.decisions.decision=deny.reason=no_matching_rule",
                1
            ),
            (
                "wasmcustom.meshward.decisions.decision=deny.reason=unclassified",
                1
            ),
            (
                "wasmcustom.meshward.rules.rule=frontend_reads_orders.mode=enforce.decision=allow",
                2
            ),
            (
                "wasmcustom.meshward.rules.rule=freeze_order_creation.mode=dry_run.decision=deny",
                1
            ),
            (
                "wasmcustom.meshward.intents.intent=orders_read.decision=deny",
                1
            ),
        ]
    );
}
