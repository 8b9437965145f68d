//! Identity settings written as policy source, through a real Envoy: the
//! plugin configuration is exactly what `meshward compile` emits from the
//! policy's `identity` block (no JSON written here). The IdP's JWKS is
//! fetched by the filter over the `meshward_keys` Envoy cluster, and rules
//! read claims nested in the user token's JSON objects (`realm_access.roles`,
//! a bracketed key with dots, a namespaced top-level claim). The policy's own
//! tests (what `meshward test` predicts) agree with what Envoy decides.

use std::time::{Duration, Instant};

use meshward_e2e::expect::denied;
use meshward_e2e::topology::tokens::{jwks, now, SigningKey};
use meshward_e2e::topology::TokenBackend;
use meshward_e2e::{Request, Response, TlsClient};
use meshward_policy::{compile_source, run_tests};
use serde_json::{json, Value};

const ISSUER: &str = "https://idp.shop.test/realms/shop";

const POLICY: &str = r#"
policy "identity-source" {
  trust_domains "shop.example"
}

identity {
  user_tokens {
    max_lifetime 1h
  }
  issuer "https://idp.shop.test/realms/shop" {
    audiences "orders"
    keys fetch cluster "meshward_keys" path "/jwks" refresh 1s max_staleness 1h timeout 1s
    claims "realm_access.roles" "resource_access[shop.api].roles" "[https://shop.example/tier]"
  }
}

intent orders.read {
  method GET
  path "/orders/{id}"
}

intent orders.refund {
  method GET
  path "/refunds/{id}"
}

intent orders.priority {
  method GET
  path "/priority/{id}"
}

allow realm-admins-read {
  principal user
  intent orders.read
  when user claim "realm_access.roles" contains "admin"
}

allow api-refunders {
  principal user
  intent orders.refund
  when user claim "resource_access[shop.api].roles" contains "refunder"
}

allow gold-priority {
  principal user
  intent orders.priority
  when user claim "[https://shop.example/tier]" == "gold"
}

test "a realm admin reads" {
  peer "spiffe://shop.example/ns/shop/sa/frontend"
  user "alice"
  claim "realm_access.roles" ["admin", "offline_access"]
  request GET "/orders/1"
  expect allow by realm-admins-read
}

test "a role of the `shop` client is not one of `shop.api`" {
  peer "spiffe://shop.example/ns/shop/sa/frontend"
  user "bob"
  claim "resource_access.shop.roles" ["refunder"]
  request GET "/refunds/1"
  expect deny reason no_matching_rule
}

test "a gold customer" {
  peer "spiffe://shop.example/ns/shop/sa/frontend"
  user "carol"
  claim "[https://shop.example/tier]" "gold"
  request GET "/priority/1"
  expect allow by gold-priority
}
"#;

fn get(id: &str, path: &str, token: &str) -> Request {
    Request::get(path)
        .header("x-request-id", id)
        .header("authorization", &format!("Bearer {token}"))
}

fn send(client: &TlsClient, request: &Request) -> Response {
    client
        .send(request)
        .unwrap_or_else(|e| panic!("{} {}: {e}", request.method(), request.target()))
}

/// A token of the IdP for `sub` carrying `extra` claims.
fn token(idp: &SigningKey, sub: &str, extra: Value) -> String {
    let now = now();
    let mut claims = json!({"iss": ISSUER, "sub": sub, "aud": "orders", "iat": now,
                            "exp": now + 600, "jti": format!("{sub}-1")});
    if let (Some(c), Value::Object(extra)) = (claims.as_object_mut(), extra) {
        c.extend(extra);
    }
    idp.mint("idp-1", &claims)
}

#[test]
fn nested_claims_from_a_fetched_jwks_through_envoy() {
    let compiled = compile_source(POLICY, "identity-source.policy")
        .unwrap_or_else(|d| panic!("the policy does not compile:\n{d}"));
    assert!(compiled.warnings.is_empty(), "{}", compiled.warnings);
    // What `meshward test` predicts.
    let report = run_tests(&compiled).expect("the compiled policy loads");
    assert_eq!((report.passed(), report.failed()), (3, 0), "{report}");
    // What `meshward compile` writes, as is.
    let config = compiled.plugin_config_json(&[]);

    let idp = SigningKey::es256();
    let b = TokenBackend::start("identity-source", &config, false, |docs| {
        docs.serve_json("/jwks", &jwks(&[(&idp, "idp-1")], &json!({"use": "sig"})));
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let client = b.direct(&b.pki.shop.svid("/ns/shop/sa/frontend"));

    let admin = token(
        &idp,
        "alice",
        json!({"realm_access": {"roles": ["admin", "offline_access"]}}),
    );
    // Until the first fetch the issuer has no keys (fail closed); then the
    // realm admin is allowed by the nested claim.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = send(&client, &get("first", "/orders/1", &admin));
        if r.status == 200 {
            break;
        }
        assert_eq!(r.header("x-meshward-reason"), Some("keys_unavailable"));
        assert!(Instant::now() < deadline, "the JWKS was never fetched");
        std::thread::sleep(Duration::from_millis(200));
    }
    let allowed = send(&client, &get("admin", "/orders/1", &admin));
    assert_eq!(allowed.status, 200, "{}", allowed.text());

    let cases: [(&str, &str, Value, u16); 8] = [
        // `roles` is a string, not a list: `contains` is equality.
        (
            "string-role",
            "/orders/2",
            json!({"realm_access": {"roles": "admin"}}),
            200,
        ),
        // Not an admin.
        (
            "user-role",
            "/orders/3",
            json!({"realm_access": {"roles": ["user"]}}),
            403,
        ),
        // A list where an object was expected: the claim is absent.
        (
            "list-in-path",
            "/orders/4",
            json!({"realm_access": [{"roles": ["admin"]}]}),
            403,
        ),
        // A list holding a non-string: absent, never a partial match.
        (
            "mixed-list",
            "/orders/5",
            json!({"realm_access": {"roles": ["admin", 7]}}),
            403,
        ),
        // The key `shop.api` (with a dot) inside `resource_access`.
        (
            "api-refunder",
            "/refunds/1",
            json!({"resource_access": {"shop.api": {"roles": ["refunder"]}}}),
            200,
        ),
        // `shop` → `api` is another path: no match.
        (
            "nested-not-dotted",
            "/refunds/2",
            json!({"resource_access": {"shop": {"api": {"roles": ["refunder"]}}}}),
            403,
        ),
        // A namespaced top-level claim whose name holds dots and slashes.
        (
            "gold",
            "/priority/1",
            json!({"https://shop.example/tier": "gold"}),
            200,
        ),
        // A number is never equal to a string.
        (
            "numeric-tier",
            "/priority/2",
            json!({"https://shop.example/tier": 1}),
            403,
        ),
    ];
    for (id, path, claims, status) in cases {
        let r = send(&client, &get(id, path, &token(&idp, id, claims)));
        if status == 200 {
            assert_eq!(r.status, 200, "{id}: {:?}", r.header("x-meshward-reason"));
        } else {
            denied(&r, status, "no_matching_rule");
        }
    }

    // A token signed by another key (same `kid`) is refused before any
    // claim is read.
    let forged = token(
        &SigningKey::es256(),
        "mallory",
        json!({"realm_access": {"roles": ["admin"]}}),
    );
    denied(
        &send(&client, &get("forged", "/orders/9", &forged)),
        401,
        "user_token_bad_signature",
    );
}

const SVID_POLICY: &str = r#"
policy "identity-source-svids" {
  trust_domains "shop.example"
}

identity {
  jwt_svid {
    audiences "spiffe://shop.example/ns/shop/sa/orders"
    max_lifetime 10m
    algorithms ES256
  }
  trust_bundle "shop.example" {
    keys fetch cluster "meshward_keys" path "/bundle" refresh 1s max_staleness 1h timeout 1s
  }
  revocation {
    fetch cluster "meshward_keys" path "/revoked" refresh 1s
    jti "revoked-in-source"
  }
}

intent orders.status {
  method GET
  path "/status/{id}"
}

allow report-status {
  principal jwt_svid
  subject "spiffe://shop.example/ns/batch/sa/report"
  intent orders.status
}
"#;

fn svid_get(id: &str, token: &str) -> Request {
    Request::get("/status/1")
        .header("x-request-id", id)
        .header("x-jwt-svid", token)
}

/// A JWT-SVID of the report job for the orders workload, valid 5 minutes.
fn report_svid(key: &SigningKey, kid: &str, jti: &str) -> String {
    let now = now();
    key.mint(
        kid,
        &json!({"sub": "spiffe://shop.example/ns/batch/sa/report",
                "aud": ["spiffe://shop.example/ns/shop/sa/orders"],
                "iat": now, "exp": now + 300, "jti": jti}),
    )
}

#[test]
fn jwt_svids_against_a_fetched_spiffe_bundle_and_revocations_from_source() {
    let compiled = compile_source(SVID_POLICY, "identity-source-svids.policy")
        .unwrap_or_else(|d| panic!("the policy does not compile:\n{d}"));
    assert!(compiled.warnings.is_empty(), "{}", compiled.warnings);
    let config = compiled.plugin_config_json(&[]);

    let spire = SigningKey::es256();
    let b = TokenBackend::start("identity-source-svids", &config, false, |docs| {
        // A SPIFFE bundle as SPIRE's bundle endpoint serves it.
        let mut bundle = jwks(&[(&spire, "spire-1")], &json!({"use": "jwt-svid"}));
        bundle["spiffe_sequence"] = json!(1);
        docs.serve_json("/bundle", &bundle);
        docs.serve_json("/revoked", &json!({"jtis": ["revoked-fetched"]}));
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let client = b.direct(&b.pki.shop.svid("/ns/shop/sa/frontend"));

    let good = report_svid(&spire, "spire-1", "good-1");
    let deadline = Instant::now() + Duration::from_secs(20);
    while send(&client, &svid_get("first", &good)).status != 200 {
        assert!(Instant::now() < deadline, "the bundle was never fetched");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The revocation list is fetched on its own timer.
    b.docs.wait_hits("/revoked", 0, 1, Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_secs(10);
    let fetched = report_svid(&spire, "spire-1", "revoked-fetched");
    while send(&client, &svid_get("fetched-probe", &fetched)).status != 401 {
        assert!(
            Instant::now() < deadline,
            "the revocation list was never applied"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    denied(
        &send(&client, &svid_get("fetched", &fetched)),
        401,
        "jwt_revoked",
    );
    // A jti revoked in the policy source stays revoked beside the fetched list.
    denied(
        &send(
            &client,
            &svid_get(
                "in-source",
                &report_svid(&spire, "spire-1", "revoked-in-source"),
            ),
        ),
        401,
        "jwt_revoked",
    );
    // Only ES256 is allowed here; a key the bundle does not hold is unknown.
    denied(
        &send(
            &client,
            &svid_get(
                "stranger",
                &report_svid(&SigningKey::es256(), "other", "x-1"),
            ),
        ),
        401,
        "jwt_unknown_kid",
    );
    assert_eq!(send(&client, &svid_get("again", &good)).status, 200);
}
