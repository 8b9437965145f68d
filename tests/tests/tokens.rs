//! Propagated identity across real Envoys (issue 3): JWT-SVIDs through a
//! TLS-terminating front proxy, end users with scopes, key sets fetched and
//! rotated at run time, and revocation without restart. Every token is
//! minted here, now, with keys generated for this run
//! (`tests/src/topology/tokens.rs`); key sets and revocation lists are
//! served by a test server the filter fetches through an Envoy cluster
//! (`envoy/tokens/backend.yaml`, cluster `meshward_keys`).

use std::time::{Duration, Instant};

use meshward_e2e::expect::denied;
use meshward_e2e::topology::docs::Answer;
use meshward_e2e::topology::tokens::{jwks, now, svid_claims, user_claims, SigningKey};
use meshward_e2e::topology::{plugin_config_with, TokenBackend};
use meshward_e2e::{Leaf, Request, Response, TlsClient};
use serde_json::{json, Value};

const REPORT: &str = "spiffe://shop.example/ns/batch/sa/report";
const OTHER: &str = "spiffe://shop.example/ns/batch/sa/other";
const AUDIENCE: &str = "spiffe://shop.example/ns/shop/sa/orders";
const ISSUER: &str = "https://idp.shop.test";

const POLICY: &str = r#"
policy "tokens" {
  trust_domains "shop.example"
}

# Keys are minted for each run and rotated by the tests: the token settings
# are added to the plugin configuration by `config` below.
identity {
  external
}

group gateways {
  member "spiffe://shop.example/ns/edge/sa/front-proxy"
}

intent orders.read {
  method GET
  path "/orders/{id}"
}

intent orders.export {
  method GET
  path "/exports/{id}"
}

intent orders.history {
  method GET
  path "/history/{id}"
}

intent orders.write {
  method GET
  path "/write/{id}"
}

intent orders.status {
  method GET
  path "/status/{id}"
}

# The report job reaches orders only through the front proxy, which
# terminates its TLS: the direct peer is the proxy, the job is the token.
allow report-via-gateway {
  principal jwt_svid via group gateways
  subject "spiffe://shop.example/ns/batch/sa/report"
  intent orders.read
}

# Exports need the token of the very workload on the mTLS connection.
allow report-exports-bound {
  principal peer_bound_jwt_svid
  subject "spiffe://shop.example/ns/batch/sa/report"
  intent orders.export
}

# History, on behalf of a user who granted it.
allow history-for-users {
  principal jwt_svid via group gateways
  subject "spiffe://shop.example/ns/batch/sa/report"
  intent orders.history
  when user scope "orders.history"
}

# Order status for the report job's token, whatever the direct peer.
allow report-status {
  principal jwt_svid
  subject "spiffe://shop.example/ns/batch/sa/report"
  intent orders.status
}

# Any verified peer of the shop may write (for the certificate revocation test).
allow workers-write {
  subject "spiffe://shop.example/ns/batch/**"
  intent orders.write
}
"#;

/// `GET path` with `x-request-id`, and a JWT-SVID / user token when given.
fn get(id: &str, path: &str, svid: Option<&str>, user: Option<&str>) -> Request {
    let mut r = Request::get(path).header("x-request-id", id);
    if let Some(t) = svid {
        r = r.header("x-jwt-svid", t);
    }
    if let Some(t) = user {
        r = r.header("authorization", &format!("Bearer {t}"));
    }
    r
}

fn send(client: &TlsClient, request: &Request) -> Response {
    client
        .send(request)
        .unwrap_or_else(|e| panic!("{} {}: {e}", request.method(), request.target()))
}

fn assert_allowed(response: &Response, what: &str) -> Value {
    assert_eq!(
        response.status,
        200,
        "{what}: {} {:?} {}",
        response.status,
        response.header("x-meshward-reason"),
        response.text()
    );
    response.json()
}

/// The plugin configuration: the policy, JWT-SVIDs for orders' audience,
/// the IdP's issuer, plus `extra` (keys, fetches, revocation).
fn config(extra: &Value) -> String {
    let mut members = json!({
        "direction": "inbound",
        "jwt_svid": {"audiences": [AUDIENCE], "max_lifetime_secs": 600},
    });
    if let (Some(m), Value::Object(e)) = (members.as_object_mut(), extra) {
        m.extend(e.clone());
    }
    plugin_config_with(POLICY, "tokens.policy", &members)
}

/// The shop's JWT-SVID bundle as a SPIFFE bundle document.
fn bundle(keys: &[(&SigningKey, &str)], sequence: u64) -> Value {
    let mut doc = jwks(keys, &json!({"use": "jwt-svid"}));
    doc["spiffe_sequence"] = json!(sequence);
    doc
}

fn svid(key: &SigningKey, kid: &str, sub: &str, jti: &str) -> String {
    key.mint(kid, &svid_claims(sub, AUDIENCE, 300, jti))
}

/// Sends `request` (rebuilt by `make` each time) until the answer satisfies
/// `done`, for at most `timeout`; returns that answer or panics with the last.
fn poll(
    what: &str,
    timeout: Duration,
    make: impl Fn() -> (TlsClient, Request),
    done: impl Fn(&Response) -> bool,
) -> Response {
    let deadline = Instant::now() + timeout;
    loop {
        let (client, request) = make();
        let response = send(&client, &request);
        if done(&response) {
            return response;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: still {} {:?} after {timeout:?}",
            response.status,
            response.header("x-meshward-reason")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn reason(response: &Response) -> Option<&str> {
    response.header("x-meshward-reason")
}

#[test]
fn jwt_svids_and_users_through_a_tls_terminating_front_proxy() {
    let es = SigningKey::es256();
    let ed = SigningKey::ed25519();
    let idp = SigningKey::es256();
    let cfg = config(&json!({
        "trust_bundles": {"shop.example": bundle(&[(&es, "svid-es"), (&ed, "svid-ed")], 1)},
        "user_tokens": {"issuers": [{"issuer": ISSUER, "audiences": ["shop"],
                                      "jwks": jwks(&[(&idp, "idp-1")], &json!({}))}]},
    }));
    let b =
        TokenBackend::start("tokens-front", &cfg, true, |_| {}).unwrap_or_else(|e| panic!("{e}"));
    let front = b.via_front();
    let report_token = svid(&es, "svid-es", REPORT, "r-1");

    // The direct peer is the front proxy; the subject comes from the token.
    for (n, token) in [
        report_token.clone(),
        report_token.clone(),
        svid(&ed, "svid-ed", REPORT, "r-2"),
    ]
    .iter()
    .enumerate()
    {
        let id = format!("via-{n}");
        let echo = assert_allowed(
            &send(&front, &get(&id, "/orders/1", Some(token), None)),
            &id,
        );
        assert_eq!(echo["headers"]["x-meshward-peer"][0], TokenBackend::FRONT);
        let audit = b.envoy.wait_audit(&format!("for {id}"), |l| {
            l.json["request_id"] == id.as_str()
        });
        assert_eq!(
            (audit.str("peer"), audit.str("jwt_svid"), audit.str("rule")),
            (
                Some(TokenBackend::FRONT),
                Some(REPORT),
                Some("report-via-gateway")
            ),
            "{}",
            audit.raw
        );
    }
    // Another workload's token through the same proxy: no rule for it.
    let other_token = svid(&es, "svid-es", OTHER, "o-1");
    denied(
        &send(
            &front,
            &get("via-other", "/orders/1", Some(&other_token), None),
        ),
        403,
        "no_matching_rule",
    );
    // Binding: through the proxy the token's subject is not the mTLS peer.
    denied(
        &send(
            &front,
            &get("via-export", "/exports/1", Some(&report_token), None),
        ),
        403,
        "no_matching_rule",
    );

    // Bad tokens through the proxy: each its own reason, 401.
    let now = now();
    let stranger = SigningKey::es256();
    let bad: Vec<(&str, String, &str)> = vec![
        (
            "expired",
            es.mint(
                "svid-es",
                &json!({"sub": REPORT, "aud": AUDIENCE, "iat": now - 400, "exp": now - 100}),
            ),
            "jwt_expired",
        ),
        (
            "another audience",
            es.mint(
                "svid-es",
                &svid_claims(
                    REPORT,
                    "spiffe://shop.example/ns/shop/sa/payments",
                    300,
                    "x",
                ),
            ),
            "jwt_wrong_audience",
        ),
        (
            "an unknown kid",
            stranger.mint("svid-zz", &svid_claims(REPORT, AUDIENCE, 300, "x")),
            "jwt_unknown_kid",
        ),
        (
            "a known kid, another key",
            stranger.mint("svid-es", &svid_claims(REPORT, AUDIENCE, 300, "x")),
            "jwt_bad_signature",
        ),
        (
            "a lifetime over the bound",
            es.mint("svid-es", &svid_claims(REPORT, AUDIENCE, 3600, "x")),
            "jwt_lifetime_exceeds_bound",
        ),
        (
            "a subject of an untrusted domain",
            es.mint(
                "svid-es",
                &svid_claims(
                    "spiffe://partner.example/ns/batch/sa/report",
                    AUDIENCE,
                    300,
                    "x",
                ),
            ),
            "jwt_untrusted_domain",
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(&json!({"alg": "none", "kid": "svid-es"}).to_string()),
                b64(&svid_claims(REPORT, AUDIENCE, 300, "x").to_string())
            ),
            "jwt_alg_not_allowed",
        ),
    ];
    for (what, token, want) in &bad {
        let response = send(
            &front,
            &get(&format!("bad-{want}"), "/orders/1", Some(token), None),
        );
        assert_eq!(
            (response.status, reason(&response)),
            (401, Some(*want)),
            "a JWT-SVID with {what}: {}",
            response.text()
        );
    }

    // The same valid token from a peer that is not a gateway: denied.
    let other_peer = b.pki.shop.svid("/ns/batch/sa/other");
    let report_peer = b.pki.shop.svid("/ns/batch/sa/report");
    denied(
        &send(
            &b.direct(&other_peer),
            &get("direct-other", "/orders/1", Some(&report_token), None),
        ),
        403,
        "no_matching_rule",
    );
    // Peer-bound: only when the token's subject is the mTLS peer.
    let echo = assert_allowed(
        &send(
            &b.direct(&report_peer),
            &get("bound-1", "/exports/1", Some(&report_token), None),
        ),
        "bound",
    );
    assert_eq!(echo["headers"]["x-meshward-peer"][0], REPORT);
    for (id, peer, token) in [
        ("bound-other-peer", &other_peer, Some(report_token.as_str())),
        (
            "bound-other-token",
            &report_peer,
            Some(other_token.as_str()),
        ),
        ("bound-no-token", &report_peer, None),
    ] {
        denied(
            &send(&b.direct(peer), &get(id, "/exports/1", token, None)),
            403,
            "no_matching_rule",
        );
    }

    // On behalf of a user: the scope decides.
    let alice = idp.mint(
        "idp-1",
        &user_claims(ISSUER, "alice", "shop", "orders.history profile", "u-1"),
    );
    let bob = idp.mint(
        "idp-1",
        &user_claims(ISSUER, "bob", "shop", "profile", "u-2"),
    );
    assert_allowed(
        &send(
            &front,
            &get(
                "user-alice",
                "/history/1",
                Some(&report_token),
                Some(&alice),
            ),
        ),
        "alice",
    );
    let audit = b
        .envoy
        .wait_audit("for user-alice", |l| l.json["request_id"] == "user-alice");
    assert_eq!(audit.json["user"]["sub"], "alice", "{}", audit.raw);
    assert_eq!(audit.json["user"]["iss"], ISSUER, "{}", audit.raw);
    denied(
        &send(
            &front,
            &get("user-bob", "/history/1", Some(&report_token), Some(&bob)),
        ),
        403,
        "no_matching_rule",
    );
    denied(
        &send(
            &front,
            &get("user-none", "/history/1", Some(&report_token), None),
        ),
        403,
        "no_matching_rule",
    );
    // A present but invalid user token is a 401 even where the JWT-SVID
    // alone would be allowed: never "anonymous".
    let forged_user = SigningKey::es256().mint(
        "idp-1",
        &user_claims(ISSUER, "alice", "shop", "orders.history", "u-3"),
    );
    let expired_user = idp.mint(
        "idp-1",
        &json!({"iss": ISSUER, "sub": "alice", "aud": "shop", "iat": now - 700, "exp": now - 100, "scope": "orders.history"}),
    );
    let foreign_user = idp.mint(
        "idp-1",
        &user_claims(
            "https://elsewhere.test",
            "alice",
            "shop",
            "orders.history",
            "u-4",
        ),
    );
    for (what, token, want) in [
        (
            "signed by another key",
            &forged_user,
            "user_token_bad_signature",
        ),
        ("expired", &expired_user, "user_token_expired"),
        (
            "of an unknown issuer",
            &foreign_user,
            "user_token_untrusted_issuer",
        ),
    ] {
        let response = send(
            &front,
            &get(
                &format!("user-bad-{want}"),
                "/orders/1",
                Some(&report_token),
                Some(token),
            ),
        );
        assert_eq!(
            (response.status, reason(&response)),
            (401, Some(want)),
            "a user token {what}: {}",
            response.text()
        );
    }
    assert!(
        b.app.requests().iter().all(|r| !r
            .header("x-request-id")
            .unwrap_or("")
            .starts_with("user-bad")),
        "an invalid user token reached the app"
    );
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s.as_bytes())
}

/// Key rotation through the fetched bundle: the old key stops working, the
/// new one works (also when a `kid` keeps its name but changes its key,
/// which a cached verification must notice); a failing fetch keeps the last
/// good set until `max_staleness_secs`, then verification fails closed.
#[test]
fn fetched_keys_rotate_and_fail_closed_when_stale() {
    let old = SigningKey::es256();
    let new = SigningKey::es256();
    // Same kid and key type as `new`, other key material.
    let new_again = SigningKey::es256();
    let cfg = config(&json!({
        "key_fetch": [{"cluster": "meshward_keys", "path": "/bundle", "trust_domain": "shop.example",
                       "refresh_secs": 1, "max_staleness_secs": 6, "timeout_ms": 500}],
    }));
    let b = TokenBackend::start("tokens-rotation", &cfg, true, |docs| {
        docs.serve_json("/bundle", &bundle(&[(&old, "k-old")], 1));
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let front = b.via_front();
    let old_token = svid(&old, "k-old", REPORT, "old-1");
    let new_token = svid(&new, "k-new", REPORT, "new-1");
    let request = |token: &str| {
        let (front, token) = (front.clone(), token.to_owned());
        move || (front.clone(), get("rot", "/orders/1", Some(&token), None))
    };
    let ok = |r: &Response| r.status == 200;

    // Until the first fetch the domain has no keys; then the old key works.
    poll(
        "first fetch",
        Duration::from_secs(15),
        request(&old_token),
        ok,
    );
    let rotated_at_start = b.envoy.meshward_counter("keys_rotated");
    assert!(
        rotated_at_start >= 1,
        "the first fetch counts as a rotation"
    );
    assert_eq!(
        send(&front, &get("rot-old", "/orders/1", Some(&old_token), None)).status,
        200
    );
    denied(
        &send(
            &front,
            &get("rot-new-early", "/orders/1", Some(&new_token), None),
        ),
        401,
        "jwt_unknown_kid",
    );

    // Rotate: the old key goes, a new one comes.
    b.docs.serve_json("/bundle", &bundle(&[(&new, "k-new")], 2));
    poll(
        "rotation to k-new",
        Duration::from_secs(10),
        request(&new_token),
        ok,
    );
    denied(
        &send(
            &front,
            &get("rot-old-after", "/orders/1", Some(&old_token), None),
        ),
        401,
        "jwt_unknown_kid",
    );
    assert!(b.envoy.meshward_counter("keys_rotated") > rotated_at_start);

    // The same kid, another key: the cached verification of new_token
    // must not survive it.
    let replacement = svid(&new_again, "k-new", REPORT, "new-2");
    b.docs
        .serve_json("/bundle", &bundle(&[(&new_again, "k-new")], 3));
    poll(
        "rotation of k-new's key",
        Duration::from_secs(10),
        request(&replacement),
        ok,
    );
    denied(
        &send(
            &front,
            &get("rot-replaced", "/orders/1", Some(&new_token), None),
        ),
        401,
        "jwt_bad_signature",
    );
    assert!(b
        .envoy
        .log()
        .contains("meshward: key set from meshward_keys/bundle rotated"));

    // An older bundle (sequence going back) is refused: k-old stays out.
    let failed_before = b.envoy.meshward_counter("keys_fetch_failed");
    b.docs.serve_json("/bundle", &bundle(&[(&old, "k-old")], 1));
    b.envoy.wait_until(
        "a rollback counted as a failed fetch",
        Duration::from_secs(10),
        |e| e.meshward_counter("keys_fetch_failed") > failed_before,
    );
    denied(
        &send(
            &front,
            &get("rot-rollback", "/orders/1", Some(&old_token), None),
        ),
        401,
        "jwt_unknown_kid",
    );

    // The key server fails: 500, then no answer at all. The last good set
    // (k-new, sequence 3) keeps serving until 6 s after the last success...
    b.docs
        .serve_json("/bundle", &bundle(&[(&new_again, "k-new")], 3));
    poll(
        "back to the good set",
        Duration::from_secs(10),
        request(&replacement),
        ok,
    );
    let good_hits = b.docs.hits("/bundle");
    b.docs
        .wait_hits("/bundle", good_hits, 1, Duration::from_secs(5));
    let failing_since = Instant::now();
    let failed_before = b.envoy.meshward_counter("keys_fetch_failed");
    b.docs.set("/bundle", Answer::Doc(500, "{}".to_owned()));
    b.envoy.wait_until(
        "a 500 counted as a failed fetch",
        Duration::from_secs(5),
        |e| e.meshward_counter("keys_fetch_failed") > failed_before,
    );
    assert_allowed(
        &send(
            &front,
            &get("stale-0", "/orders/1", Some(&replacement), None),
        ),
        "last good set after a 500",
    );
    b.docs.set("/bundle", Answer::Reset);
    let failed_500 = b.envoy.meshward_counter("keys_fetch_failed");
    b.envoy.wait_until(
        "a reset counted as a failed fetch",
        Duration::from_secs(5),
        |e| e.meshward_counter("keys_fetch_failed") > failed_500,
    );
    // ...then fails closed.
    let stale = poll(
        "keys_stale",
        Duration::from_secs(15),
        request(&replacement),
        |r| r.status != 200,
    );
    denied(&stale, 401, "keys_stale");
    let after = failing_since.elapsed();
    assert!(
        after >= Duration::from_secs(4),
        "stale after only {after:?}: the bound is 6 s after the last success"
    );
    assert!(b
        .envoy
        .log()
        .contains("meshward: fetching meshward_keys/bundle failed"));

    // The server is back: so are the keys.
    b.docs
        .serve_json("/bundle", &bundle(&[(&new_again, "k-new")], 3));
    poll(
        "recovery",
        Duration::from_secs(10),
        request(&replacement),
        ok,
    );
}

/// Revocation lists fetched on a timer: revoking a token id, a SPIFFE ID or
/// a certificate serial denies the very next requests, including requests
/// whose token or certificate verification is cached; lifting it restores.
#[test]
fn fetched_revocations_apply_without_restart() {
    let key = SigningKey::es256();
    let cfg = config(&json!({
        "trust_bundles": {"shop.example": bundle(&[(&key, "k1")], 1)},
        "key_fetch": [{"cluster": "meshward_keys", "path": "/revoked", "revocation": true,
                       "refresh_secs": 1, "timeout_ms": 500}],
    }));
    let b = TokenBackend::start("tokens-revocation", &cfg, true, |docs| {
        docs.serve_json("/revoked", &json!({}));
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let front = b.via_front();
    let token_1 = svid(&key, "k1", REPORT, "jti-1");
    let token_2 = svid(&key, "k1", REPORT, "jti-2");
    let worker = b
        .pki
        .shop
        .svid_with_serial("/ns/batch/sa/worker", &[0x4d, 0x57, 0x01]);
    let other = b.pki.shop.svid("/ns/batch/sa/other");
    b.docs.wait_hits("/revoked", 0, 1, Duration::from_secs(10));

    // Verified once, then from the cache.
    for n in 0..2 {
        assert_allowed(
            &send(
                &front,
                &get(&format!("pre-{n}"), "/orders/1", Some(&token_1), None),
            ),
            "before",
        );
        assert_allowed(
            &send(
                &b.direct(&worker),
                &get(&format!("pre-w{n}"), "/write/1", None, None),
            ),
            "worker before",
        );
    }
    // Publishes `doc`, then sends `probe` until it gets `want` (each
    // worker's filter fetches on its own timer), and once more: the next
    // requests stay refused.
    let revoke = |doc: Value, what: &str, probe: &dyn Fn() -> (TlsClient, Request), want: u16| {
        let updates = b.envoy.meshward_counter("revocation_updated");
        b.docs.serve_json("/revoked", &doc);
        let first = poll(what, Duration::from_secs(10), probe, |r| r.status == want);
        let (client, request) = probe();
        let again = send(&client, &request);
        assert_eq!(
            (again.status, reason(&again)),
            (first.status, reason(&first)),
            "{what}: the next request"
        );
        assert!(b.envoy.meshward_counter("revocation_updated") > updates);
        first
    };
    let via_front = |path: &'static str, token: &str| {
        let (front, token) = (front.clone(), token.to_owned());
        move || (front.clone(), get("probe", path, Some(&token), None))
    };
    let direct = |peer: &Leaf, path: &'static str| {
        let client = b.direct(peer);
        move || (client.clone(), get("probe", path, None, None))
    };

    let r = revoke(
        json!({"jtis": ["jti-1"]}),
        "revoke jti-1",
        &via_front("/orders/1", &token_1),
        401,
    );
    denied(&r, 401, "jwt_revoked");
    assert_allowed(
        &send(&front, &get("jti-other", "/orders/1", Some(&token_2), None)),
        "another jti",
    );

    let report_peer = b.pki.shop.svid("/ns/batch/sa/report");
    let r = revoke(
        json!({"jtis": ["jti-1"], "spiffe_ids": [REPORT]}),
        "revoke the report job",
        &via_front("/orders/1", &token_2),
        401,
    );
    denied(&r, 401, "spiffe_id_revoked");
    denied(
        &send(
            &b.direct(&report_peer),
            &get("id-revoked-peer", "/write/1", None, None),
        ),
        401,
        "spiffe_id_revoked",
    );

    let r = revoke(
        json!({"serials": [worker.serial_hex.to_uppercase()]}),
        "revoke the worker's certificate",
        &direct(&worker, "/write/1"),
        401,
    );
    denied(&r, 401, "cert_revoked");
    assert_allowed(
        &send(
            &b.direct(&other),
            &get("serial-other", "/write/1", None, None),
        ),
        "another certificate",
    );
    // The SPIFFE ID and jti are no longer listed: accepted again.
    assert_allowed(
        &send(
            &front,
            &get("jti-lifted", "/orders/1", Some(&token_1), None),
        ),
        "jti lifted",
    );

    revoke(
        json!({}),
        "lift every revocation",
        &direct(&worker, "/write/1"),
        200,
    );
    assert!(b
        .envoy
        .log()
        .contains("meshward: revocation lists from meshward_keys/revoked"));
}

/// A peer whose certificate is revoked (or whose SPIFFE ID is) is refused
/// even when the request also carries a valid token: a revoked credential
/// is an identity failure (principle 3), not "no peer".
#[test]
fn a_revoked_peer_is_not_rescued_by_a_token() {
    let key = SigningKey::es256();
    let revoked_serial = [0x4d, 0x57, 0x02];
    let cfg = config(&json!({
        "trust_bundles": {"shop.example": bundle(&[(&key, "k1")], 1)},
        "revoked": {"serials": ["4d5702"], "spiffe_ids": [OTHER]},
    }));
    let b = TokenBackend::start("tokens-revoked-peer", &cfg, false, |_| {})
        .unwrap_or_else(|e| panic!("{e}"));
    let stolen: Leaf = b
        .pki
        .shop
        .svid_with_serial("/ns/batch/sa/report", &revoked_serial);
    let token = svid(&key, "k1", REPORT, "ok-1");
    // The certificate alone: refused.
    denied(
        &send(
            &b.direct(&stolen),
            &get("revoked-alone", "/exports/1", None, None),
        ),
        401,
        "cert_revoked",
    );
    // With a valid JWT-SVID, under a rule that takes the token whatever
    // the peer (`principal jwt_svid`), also with a revoked SPIFFE ID as the
    // peer, and under a rule that binds token and peer.
    let other_peer = b.pki.shop.svid("/ns/batch/sa/other");
    let mut wrong = Vec::new();
    for (id, peer, path, want) in [
        ("revoked-status", &stolen, "/status/1", "cert_revoked"),
        (
            "revoked-id-status",
            &other_peer,
            "/status/1",
            "spiffe_id_revoked",
        ),
        ("revoked-bound", &stolen, "/exports/1", "cert_revoked"),
    ] {
        let response = send(&b.direct(peer), &get(id, path, Some(&token), None));
        if (response.status, reason(&response)) != (401, Some(want)) {
            let audit = b
                .envoy
                .audit_lines()
                .into_iter()
                .find(|l| l.json["request_id"] == id);
            wrong.push(format!(
                "{id}: GET {path} wanted 401 {want}, got {} {:?}; audit {}",
                response.status,
                reason(&response),
                audit.map(|a| a.json.to_string()).unwrap_or_default()
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "a revoked peer with a valid JWT-SVID:\n{}",
        wrong.join("\n")
    );
}

/// Revocations written in the plugin configuration (`revoked`, and the
/// older `revoked_serials` that `meshward compile --revoked-serial` writes)
/// stay in force when a revocation list is fetched as well: a fetched list
/// that does not repeat them must not lift them.
#[test]
fn configured_revocations_survive_a_fetched_list() {
    let key = SigningKey::es256();
    let cfg = config(&json!({
        "trust_bundles": {"shop.example": bundle(&[(&key, "k1")], 1)},
        "revoked": {"jtis": ["configured-1"]},
        "key_fetch": [{"cluster": "meshward_keys", "path": "/revoked", "revocation": true,
                       "refresh_secs": 1, "timeout_ms": 500}],
    }));
    let b = TokenBackend::start("tokens-revoked-merge", &cfg, true, |docs| {
        docs.serve_json("/revoked", &json!({"jtis": ["fetched-1"]}));
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let front = b.via_front();
    let fetched = svid(&key, "k1", REPORT, "fetched-1");
    let configured = svid(&key, "k1", REPORT, "configured-1");
    // Before the first fetch only the configured entry is known.
    let r = send(
        &front,
        &get("merge-0", "/orders/1", Some(&configured), None),
    );
    denied(&r, 401, "jwt_revoked");
    let (probe_front, probe_token) = (front.clone(), fetched.clone());
    poll(
        "the fetched list applies",
        Duration::from_secs(10),
        move || {
            (
                probe_front.clone(),
                get("merge-probe", "/orders/1", Some(&probe_token), None),
            )
        },
        |r| r.status == 401,
    );
    let r = send(
        &front,
        &get("merge-1", "/orders/1", Some(&configured), None),
    );
    assert_eq!(
        (r.status, reason(&r)),
        (401, Some("jwt_revoked")),
        "a token revoked in the configuration was accepted once a revocation list was fetched"
    );
}
