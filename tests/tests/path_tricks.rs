//! Path tricks never reach an allow they should not.
//!
//! The frontend may read anything under `/orders/**`; only the ops admin may
//! touch `/admin/**`. Every request below is the frontend trying to reach the
//! admin API (or to smuggle something past the `/orders/**` allow) by
//! spelling the path differently. The raw client sends each request line byte
//! for byte.
//!
//! Who answers, by design (see envoy/README.md):
//! - Envoy normalizes first (`normalize_path`: dot segments, percent-encoded
//!   unreserved characters, `\` → `/`; `merge_slashes`), so the filter, the
//!   router and the app all see one canonical path; the filter then denies the
//!   admin intent to the frontend.
//! - Envoy rejects encoded slashes and backslashes (`%2F`, `%5C`) with 400
//!   (`path_with_escaped_slashes_action: REJECT_REQUEST`), before any filter.
//! - The filter refuses what is still ambiguous after that (`;` path
//!   parameters) as `non_canonical_path`.
//!
//! And one invariant for every case: whatever reaches the app is exactly the
//! path the filter classified.

use meshward_e2e::expect::{allowed, app_header_one, denied};
use meshward_e2e::{Mesh, Request, Response};

const POLICY: &str = r#"
policy "e2e-paths" {
  trust_domains "shop.example"
}

intent orders.read {
  method GET
  path "/orders/**"
}

intent admin.all {
  path "/admin/**"
}

allow frontend-reads-orders {
  subject "spiffe://shop.example/ns/shop/sa/frontend"
  intent orders.read
}

allow ops-admin {
  subject "spiffe://shop.example/ns/ops/sa/admin"
  intent admin.all
}
"#;

/// What must happen to a request.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    /// Envoy answers 400 itself; the filter never runs.
    EnvoyRejects,
    /// The filter denies with 403 and this reason.
    Denied(&'static str),
}

const TRICKS: &[(&str, Outcome)] = &[
    // Dot segments, plain and percent-encoded: Envoy resolves them to
    // /admin/users, which the frontend may not touch.
    (
        "/orders/../admin/users",
        Outcome::Denied("no_matching_rule"),
    ),
    (
        "/orders/%2e%2e/admin/users",
        Outcome::Denied("no_matching_rule"),
    ),
    (
        "/orders/%2E%2E/admin/users",
        Outcome::Denied("no_matching_rule"),
    ),
    (
        "/orders/.%2e/admin/users",
        Outcome::Denied("no_matching_rule"),
    ),
    (
        "/orders/1/../../admin/users",
        Outcome::Denied("no_matching_rule"),
    ),
    (
        "/orders/./../admin/users",
        Outcome::Denied("no_matching_rule"),
    ),
    // Percent-encoded unreserved characters.
    ("/%61dmin/users", Outcome::Denied("no_matching_rule")),
    // Doubled slashes.
    ("//admin/users", Outcome::Denied("no_matching_rule")),
    (
        "/orders/..//admin/users",
        Outcome::Denied("no_matching_rule"),
    ),
    // Raw backslash: Envoy turns it into `/`, then resolves the dot segment.
    (
        "/orders/..\\admin/users",
        Outcome::Denied("no_matching_rule"),
    ),
    // Tomcat-style `..;` (some apps treat it as `..`).
    (
        "/orders/..;/admin/users",
        Outcome::Denied("no_matching_rule"),
    ),
    // Encoded slash and backslash: refused by Envoy outright.
    ("/orders/1%2f..%2f..%2fadmin/users", Outcome::EnvoyRejects),
    ("/orders/1%2F..%2F..%2Fadmin/users", Outcome::EnvoyRejects),
    ("/orders/1%5c..%5c..%5cadmin/users", Outcome::EnvoyRejects),
    ("/orders/1%5C..%5C..%5Cadmin/users", Outcome::EnvoyRejects),
    // A `;` segment followed by dot segments: Envoy resolves the dots first
    // (`42;` is just a segment to it), leaving /admin/users.
    (
        "/orders/42;/../../admin/users",
        Outcome::Denied("no_matching_rule"),
    ),
    // `;` path parameters that survive normalization: an app may strip them
    // (`/orders/42;x` → `/orders/42`); the filter will not guess.
    (
        "/orders/42;jsessionid=x",
        Outcome::Denied("non_canonical_path"),
    ),
    ("/admin;x/users", Outcome::Denied("non_canonical_path")),
    // Absolute-form request target.
    (
        "http://localhost/admin/users",
        Outcome::Denied("no_matching_rule"),
    ),
];

fn frontend_mesh(label: &str) -> (Mesh, meshward_e2e::Leaf) {
    let mesh = Mesh::builder(POLICY).label(label).start();
    let frontend = mesh.pki.workload("shop", "frontend");
    (mesh, frontend)
}

fn check(response: &Response, target: &str, outcome: Outcome) {
    match outcome {
        Outcome::EnvoyRejects => {
            assert_eq!(
                response.status,
                400,
                "{target}: expected Envoy's 400, got {} {}",
                response.status,
                response.text()
            );
            assert_eq!(response.header("x-meshward-reason"), None, "{target}");
        }
        Outcome::Denied(reason) => {
            let status = response.status;
            let got = response
                .header("x-meshward-reason")
                .unwrap_or("-")
                .to_owned();
            assert!(
                status == 403 && got == reason,
                "{target}: expected 403 {reason}, got {status} {got} {}",
                response.text()
            );
            denied(response, 403, reason);
        }
    }
}

#[test]
fn path_tricks_never_reach_an_allow_they_should_not() {
    let (mesh, frontend) = frontend_mesh("path-tricks");
    let mut failures = Vec::new();
    for (target, outcome) in TRICKS {
        let response = mesh.send(Some(&frontend), &Request::get(target));
        if let Err(e) = std::panic::catch_unwind(|| check(&response, target, *outcome)) {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            failures.push(msg);
        }
    }
    assert!(
        failures.is_empty(),
        "{} path tricks misbehaved:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let reached: Vec<String> = mesh
        .upstream
        .requests()
        .into_iter()
        .map(|r| r.path)
        .collect();
    assert!(
        reached.is_empty(),
        "path tricks reached the app: {reached:?}"
    );
}

#[test]
fn the_app_sees_exactly_the_path_the_filter_classified() {
    let (mesh, frontend) = frontend_mesh("path-consistency");
    // Requests the frontend may make, spelled oddly: Envoy normalizes them,
    // the filter classifies the normalized form, and the app gets that same
    // form, never the raw one.
    for (target, normalized) in [
        ("/orders/42", "/orders/42"),
        ("/orders//42", "/orders/42"),
        ("/orders/./42", "/orders/42"),
        ("/orders/%2e/42", "/orders/42"),
        ("/orders/x/../42", "/orders/42"),
        ("/%6frders/42", "/orders/42"),
        ("/orders/42?next=../admin", "/orders/42?next=../admin"),
    ] {
        let id = format!("consistency-{}", mesh.upstream.count());
        let echo = allowed(&mesh.send(
            Some(&frontend),
            &Request::get(target).header("x-request-id", &id),
        ));
        assert_eq!(
            echo["path"], normalized,
            "{target}: the app saw {}",
            echo["path"]
        );
        assert_eq!(
            app_header_one(&echo, "x-meshward-intent"),
            "orders.read",
            "{target}"
        );
        let audit = mesh.envoy.audit_for(&id);
        assert_eq!(audit.json["path"], normalized, "{target}: {}", audit.raw);
    }

    // The admin reaching /admin through a dot segment is classified on the
    // normalized path (admin.all) and allowed: normalization, not refusal.
    let admin = mesh.pki.workload("ops", "admin");
    let echo = allowed(&mesh.send(Some(&admin), &Request::get("/orders/../admin/users")));
    assert_eq!(echo["path"], "/admin/users");
    assert_eq!(app_header_one(&echo, "x-meshward-intent"), "admin.all");
}

#[test]
fn double_encoding_reaches_the_app_undecoded_and_classified_as_sent() {
    let (mesh, frontend) = frontend_mesh("double-encoding");
    // `%25` is an encoded `%`: Envoy leaves `%252e%252e` alone (decoding it
    // would change the meaning), the filter classifies the path as sent, and
    // the app receives it as sent: a literal segment `%2e%2e` under /orders
    // (one decode), not a way into /admin. Only an app that decodes twice
    // could be fooled; that is the app's bug, and the audit line shows the
    // exact path that was allowed.
    let target = "/orders/%252e%252e/admin/users";
    let response = mesh.send(
        Some(&frontend),
        &Request::get(target).header("x-request-id", "double"),
    );
    let echo = allowed(&response);
    assert_eq!(echo["path"], target);
    assert_eq!(app_header_one(&echo, "x-meshward-intent"), "orders.read");
    let audit = mesh.envoy.audit_for("double");
    assert_eq!(audit.json["path"], target, "{}", audit.raw);
}
