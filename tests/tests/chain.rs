//! The caller chain across real Envoys (issue 4): an edge gateway, a
//! frontend and an orders service, each an Envoy with an inbound and an
//! outbound listener running the meshward filter (same `vm_id`) in front of
//! a small app that calls the next hop and copies `x-meshward-chain`, the
//! way it copies trace context (`tests/src/topology/`). The main topology
//! runs every Envoy with `--concurrency 2`, so the inbound side (which seals
//! the chain for the app) and the outbound side (which checks the seal)
//! often run on different worker threads.
//!
//! The main test runs its scenarios in sequence on one topology (each
//! scenario's name is in its assertion messages). `on_invalid: drop`, the
//! shipped edge config and the depth boundary get small topologies of
//! their own.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use meshward_e2e::expect::denied;
use meshward_e2e::topology::app::{chain_fields, chain_hops, Trace, CHAIN};
use meshward_e2e::topology::pki::MeshPki;
use meshward_e2e::topology::proc::EnvoyProc;
use meshward_e2e::topology::tokens::{self, now, SigningKey};
use meshward_e2e::topology::{
    plugin_config_with, spawn_sidecar, start_sidecar, Sidecar, SidecarSpec, ThreeHops,
    ThreeHopsSpec, FRONTEND, GATEWAY, ISSUER, ORDERS, USER_AUDIENCE,
};
use meshward_e2e::workspace::{filter_wasm, Scratch};
use meshward_e2e::{Request, Response, TlsClient};
use serde_json::json;

/// Users arrive here with a token; their chain starts here. A short
/// lifetime, so a replayed chain expires within the test (a legitimate
/// three-hop request takes milliseconds).
const GATEWAY_POLICY: &str = r#"
policy "edge" {
  trust_domains "shop.example"
}

# The tests add the IdP (keys minted for each run) to the plugin configuration.
identity {
  external
}

chain {
  lifetime 5s
}

intent orders.read {
  method GET
  path "/orders/{id}"
}

allow users-read-orders {
  principal user
  intent orders.read
  when user present
}
"#;

const FRONTEND_POLICY: &str = r#"
policy "frontend" {
  trust_domains "shop.example"
}

chain {
  forwarder "spiffe://shop.example/ns/edge/sa/gateway"
  max_depth 5
}

intent orders.read {
  method GET
  path "/orders/{id}"
}

allow gateway-reads-orders {
  subject "spiffe://shop.example/ns/edge/sa/gateway"
  intent orders.read
}
"#;

/// Orders: `orders.read` only for a chain that started at the gateway, lost
/// no hop, was for reading orders, on behalf of a user with the scope.
const ORDERS_POLICY: &str = r#"
policy "orders" {
  trust_domains "shop.example"
}

group mesh {
  member "spiffe://shop.example/ns/edge/sa/gateway"
  member "spiffe://shop.example/ns/shop/sa/frontend"
}

chain {
  forwarder group mesh
  max_depth 4
}

intent orders.read {
  method GET
  path "/orders/{id}"
}

allow frontend-reads-orders-for-users {
  subject "spiffe://shop.example/ns/shop/sa/frontend"
  intent orders.read
  when origin "spiffe://shop.example/ns/edge/sa/gateway"
  when complete
  when purpose orders.read
  when user scope "orders.read"
}

# A batch job whose Envoy runs no meshward: it may read orders for itself,
# but it is no forwarder, so nothing it says about earlier hops counts.
allow legacy-reads-orders-itself {
  subject "spiffe://shop.example/ns/ops/sa/legacy"
  intent orders.read
  when complete
}
"#;

const LEGACY: &str = "spiffe://shop.example/ns/ops/sa/legacy";

fn three_hops(label: &str, frontend_on_invalid: &str, concurrency: u32) -> ThreeHops {
    ThreeHops::start(&ThreeHopsSpec {
        label,
        gateway_policy: GATEWAY_POLICY,
        frontend_policy: FRONTEND_POLICY,
        orders_policy: ORDERS_POLICY,
        frontend_on_invalid,
        concurrency,
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

/// A chain in the unsealed wire form a meshward proxy sends to the next
/// hop (what a test posing as a trusted forwarder's proxy writes).
fn wire(hops: &[&str], user: Option<(&str, &str)>, iat: u64, exp: u64) -> String {
    let mut out = format!("v=1;iat={iat};exp={exp};complete=1;purpose=orders.read");
    if let Some((sub, scope)) = user {
        out.push_str(&format!(";user={sub};scope={}", scope.replace(' ', "%20")));
    }
    out.push_str(&format!(";hops={}", hops.join(",")));
    out
}

/// `GET /orders/7` with `x-request-id` and the given chain header values.
fn get_with_chain(id: &str, chain: &[&str]) -> Request {
    let mut r = Request::get("/orders/7").header("x-request-id", id);
    for c in chain {
        r = r.header(CHAIN, c);
    }
    r
}

fn send(client: &TlsClient, request: &Request) -> Response {
    client
        .send(request)
        .unwrap_or_else(|e| panic!("{} {}: {e}", request.method(), request.target()))
}

/// The audit lines the outbound side of `envoy` wrote for `id`.
/// The outbound audit lines of request `id`, waiting (up to 5 s) for the
/// first to be written: the same Envoy also writes the request's inbound
/// line, and the two may reach its log file at different times, so waiting
/// for "any line of this request" returned too early under load.
fn outbound_refusals(envoy: &EnvoyProc, id: &str) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let found: Vec<serde_json::Value> = envoy
            .audit_lines()
            .into_iter()
            .filter(|l| l.json["request_id"] == id && l.json["direction"] == "outbound")
            .map(|l| l.json)
            .collect();
        if !found.is_empty() || Instant::now() > deadline {
            return found;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// The Envoy's filter never trapped (a wasm panic shows in its log).
fn assert_no_trap(envoy: &EnvoyProc) {
    let log = envoy.log();
    for needle in [
        "panicked",
        "Function: proxy_on",
        "wasm trap",
        "Plugin configured to fail",
    ] {
        assert!(
            !log.contains(needle),
            "{}: the filter trapped (`{needle}` in its log)",
            envoy.name()
        );
    }
}

#[test]
fn caller_chain_across_three_envoys() {
    let t = three_hops("chain", "deny", 2);
    let sealed_at_frontend = legitimate_path(&t);
    frontend_calls_orders_without_the_chain(&t);
    users_without_the_scope_and_bad_tokens(&t);
    a_client_cannot_bring_its_own_chain(&t);
    chain_sealed_on_one_worker_verifies_on_the_other(&t);
    the_frontend_app_cannot_forge_edit_extend_or_reorder(&t);
    a_peer_not_trusted_to_forward_is_ignored(&t);
    crafted_chain_headers_are_refused(&t);
    a_replayed_chain_expires(&t, &sealed_at_frontend);
    for s in [&t.gateway, &t.frontend, &t.orders] {
        assert_no_trap(&s.envoy);
    }
}

/// Gateway → frontend → orders for alice with `orders.read`. Returns the
/// sealed chain the frontend's app received (replayed later).
fn legitimate_path(t: &ThreeHops) -> String {
    let token = t.user_token("alice", "orders.read profile");
    let trace = Trace::of(&t.get_as_user("legit-1", "/orders/42", Some(&token)));
    trace.assert_reached(&["gateway", "frontend", "orders"]);

    // Each app gets the chain so far, ending with itself, sealed.
    for (app, hops) in [
        ("gateway", vec![GATEWAY]),
        ("frontend", vec![GATEWAY, FRONTEND]),
        ("orders", vec![GATEWAY, FRONTEND, ORDERS]),
    ] {
        let chain = trace.chain_at(app);
        assert_eq!(chain_hops(&chain), hops, "legitimate path: chain at {app}");
        let f = chain_fields(&chain);
        assert_eq!(
            (f["user"].as_str(), f["scope"].as_str()),
            ("alice", "orders.read%20profile"),
            "legitimate path: {app}: {chain}"
        );
        assert_eq!(
            f["purpose"], "orders.read",
            "legitimate path: {app}: {chain}"
        );
        assert_eq!(f["complete"], "1", "legitimate path: {app}: {chain}");
        assert!(
            f.contains_key("mac"),
            "the app's copy is sealed: {app}: {chain}"
        );
    }
    // Every hop decided on the same request id; orders' audit line records
    // the whole chain as it arrived (wire form, origin to direct peer).
    let gw = t.gateway.envoy.inbound_audit("legit-1");
    assert_eq!(gw.json["user"]["sub"], "alice", "{}", gw.raw);
    assert_eq!(gw.str("peer_error"), Some("no_peer_certificate"));
    let fe = t.frontend.envoy.inbound_audit("legit-1");
    assert_eq!(fe.str("peer"), Some(GATEWAY));
    assert_eq!(
        chain_hops(fe.str("chain").unwrap_or("")),
        [GATEWAY],
        "{}",
        fe.raw
    );
    let audit = t.orders.envoy.inbound_audit("legit-1");
    assert_eq!(
        (audit.str("decision"), audit.str("rule"), audit.str("peer")),
        (
            Some("allow"),
            Some("frontend-reads-orders-for-users"),
            Some(FRONTEND)
        ),
        "{}",
        audit.raw
    );
    let chain = audit.str("chain").unwrap_or("");
    assert_eq!(chain_hops(chain), [GATEWAY, FRONTEND], "{}", audit.raw);
    assert!(
        !chain.contains("mac="),
        "audit carries the wire form: {chain}"
    );
    let f = chain_fields(chain);
    assert_eq!(
        (
            f["user"].as_str(),
            f["purpose"].as_str(),
            f["complete"].as_str()
        ),
        ("alice", "orders.read", "1"),
        "{}",
        audit.raw
    );
    trace.chain_at("frontend")
}

/// The frontend calls orders without propagating the chain: orders sees a
/// chain that starts at the frontend, with no user, and denies.
fn frontend_calls_orders_without_the_chain(t: &ThreeHops) {
    t.frontend
        .app
        .set_rewrite(Arc::new(|_: &[String]| Vec::new()));
    let token = t.user_token("alice", "orders.read");
    let trace = Trace::of(&t.get_as_user("no-chain-1", "/orders/42", Some(&token)));
    t.frontend.app.behave();
    trace.assert_denied(&["gateway", "frontend"], 403, "no_matching_rule");
    let audit = t.orders.envoy.inbound_audit("no-chain-1");
    let chain = audit.str("chain").unwrap_or("");
    assert_eq!(chain_hops(chain), [FRONTEND], "no chain: {}", audit.raw);
    assert!(!chain.contains("user="), "no chain: {}", audit.raw);

    // The same, straight from a client holding the frontend's SVID.
    let direct = t.client(&t.orders, &t.frontend_svid);
    let response = send(&direct, &get_with_chain("no-chain-2", &[]));
    denied(&response, 403, "no_matching_rule");
    assert!(t.orders.app.requests_with_id("no-chain-1").is_empty());
    assert!(t.orders.app.requests_with_id("no-chain-2").is_empty());
}

fn users_without_the_scope_and_bad_tokens(t: &ThreeHops) {
    // Bob got in at the edge, but lacks `orders.read`: orders says no.
    let token = t.user_token("bob", "profile catalog.read");
    let trace = Trace::of(&t.get_as_user("bob-1", "/orders/42", Some(&token)));
    trace.assert_denied(&["gateway", "frontend"], 403, "no_matching_rule");
    let audit = t.orders.envoy.inbound_audit("bob-1");
    assert_eq!(
        chain_fields(audit.str("chain").unwrap_or(""))["user"],
        "bob",
        "bob: {}",
        audit.raw
    );

    // No token at all, and a token from a key the IdP does not publish:
    // refused at the edge, never anonymous.
    let trace = Trace::of(&t.get_as_user("anon-1", "/orders/42", None));
    // No certificate and no token where tokens are expected: the reason says which is missing.
    trace.assert_denied(&[], 401, "user_token_missing");
    let rogue = SigningKey::es256().mint(
        "idp-1",
        &tokens::user_claims(ISSUER, "alice", USER_AUDIENCE, "orders.read", "rogue"),
    );
    let trace = Trace::of(&t.get_as_user("rogue-1", "/orders/42", Some(&rogue)));
    trace.assert_denied(&[], 401, "user_token_bad_signature");
    assert!(t.gateway.app.requests_with_id("rogue-1").is_empty());
}

/// An external client sends its own `x-meshward-chain` (claiming to come
/// from the frontend for an admin): the edge drops it and starts the chain
/// at the gateway for the verified user.
fn a_client_cannot_bring_its_own_chain(t: &ThreeHops) {
    let token = t.user_token("alice", "orders.read");
    let forged = wire(
        &[FRONTEND],
        Some(("admin", "orders.read orders.admin")),
        now(),
        now() + 30,
    );
    let request = Request::get("/orders/42")
        .header("x-request-id", "client-chain-1")
        .header("authorization", &format!("Bearer {token}"))
        .header(CHAIN, &forged)
        .header("x-meshward-peer", FRONTEND);
    let trace = Trace::of(&send(&t.edge_client(), &request));
    trace.assert_reached(&["gateway", "frontend", "orders"]);
    let at_gateway = trace.chain_at("gateway");
    assert_eq!(chain_hops(&at_gateway), [GATEWAY], "{at_gateway}");
    assert_eq!(chain_fields(&at_gateway)["user"], "alice", "{at_gateway}");
    // The client's `x-meshward-peer` is replaced (there is no mTLS peer at the
    // edge, so the filter's own value is empty). The native build cannot add
    // an empty header value (Envoy 1.40's module ABI refuses it; docs/native.md):
    // there the header is absent, never the client's.
    let expected_peer = match meshward_e2e::build::FilterBuild::current() {
        meshward_e2e::build::FilterBuild::Wasm => vec![String::new()],
        meshward_e2e::build::FilterBuild::Native => Vec::new(),
    };
    assert_eq!(trace.received("gateway", "x-meshward-peer"), expected_peer);
}

/// With two workers, the edge listener's connection and the app's outbound
/// connection are accepted by either worker (kernel `SO_REUSEPORT`
/// balancing). Per request, the per-worker connection counters tell which
/// worker sealed the chain and which checked it; keep sending until several
/// requests crossed workers. Not one may be refused.
fn chain_sealed_on_one_worker_verifies_on_the_other(t: &ThreeHops) {
    let gw = &t.gateway.envoy;
    assert_eq!(
        gw.worker_connections("meshward_edge").len(),
        2,
        "two workers: {:?}",
        gw.stats("listener.")
    );
    let forged_before: u64 = [gw, &t.frontend.envoy]
        .iter()
        .map(|e| {
            // Refused (deny) or dropped (the call goes on without it).
            e.meshward_counter("decisions.decision=deny.reason=chain_forged")
                + e.meshward_counter("decisions.decision=allow.reason=chain_forged")
        })
        .sum();
    let token = t.user_token("alice", "orders.read");
    let (mut crossed, mut same) = (0, 0);
    let mut pairs = Vec::new();
    for n in 0..120 {
        let edge_before = gw.worker_connections("meshward_edge");
        let out_before = gw.worker_connections("meshward_outbound");
        let id = format!("workers-{n}");
        let trace = Trace::of(&t.get_as_user(&id, "/orders/42", Some(&token)));
        trace.assert_reached(&["gateway", "frontend", "orders"]);
        let moved = |before: &BTreeMap<u32, u64>, after: BTreeMap<u32, u64>| -> Vec<u32> {
            after
                .into_iter()
                .filter(|(w, v)| before.get(w).copied().unwrap_or(0) < *v)
                .map(|(w, _)| w)
                .collect()
        };
        let sealed_on = moved(&edge_before, gw.worker_connections("meshward_edge"));
        let checked_on = moved(&out_before, gw.worker_connections("meshward_outbound"));
        assert_eq!(
            (sealed_on.len(), checked_on.len()),
            (1, 1),
            "one new connection per listener per request"
        );
        pairs.push((sealed_on[0], checked_on[0]));
        if sealed_on == checked_on {
            same += 1;
        } else {
            crossed += 1;
        }
        if pairs.len() >= 20 && crossed >= 5 && same >= 1 {
            break;
        }
    }
    assert!(
        crossed >= 5,
        "too few requests crossed workers to prove anything (sealed→checked: {pairs:?})"
    );
    let forged_after: u64 = [gw, &t.frontend.envoy]
        .iter()
        .map(|e| {
            // Refused (deny) or dropped (the call goes on without it).
            e.meshward_counter("decisions.decision=deny.reason=chain_forged")
                + e.meshward_counter("decisions.decision=allow.reason=chain_forged")
        })
        .sum();
    assert_eq!(forged_after, forged_before, "a chain was refused as forged");
    eprintln!(
        "workers: {} requests, {crossed} sealed and checked on different workers",
        pairs.len()
    );
}

/// What the frontend's app might do to the chain it received, and the
/// refusal its own Envoy's outbound side answers.
fn the_frontend_app_cannot_forge_edit_extend_or_reorder(t: &ThreeHops) {
    // A chain sealed by another proxy (the gateway's key).
    let token = t.user_token("alice", "orders.read");
    let gateway_sealed =
        Trace::of(&t.get_as_user("take-gw-chain", "/orders/42", Some(&token))).chain_at("gateway");
    let other_gateway = "spiffe://shop.example/ns/edge/sa/other-gateway";
    type Edit = Arc<dyn Fn(&str) -> Vec<String> + Send + Sync>;
    let swap_exp = |c: &str| {
        let exp = chain_fields(c)["exp"].clone();
        let later = exp.parse::<u64>().unwrap_or(0) + 3600;
        c.replace(&format!("exp={exp}"), &format!("exp={later}"))
    };
    let variants: Vec<(&str, Edit, &str)> = vec![
        (
            "invent a chain (no seal)",
            Arc::new(|_| {
                vec![wire(
                    &[GATEWAY, FRONTEND],
                    Some(("alice", "orders.read")),
                    now(),
                    now() + 30,
                )]
            }),
            "chain_forged",
        ),
        (
            "invent a chain with a made-up seal",
            Arc::new(|_| {
                vec![format!(
                    "{};mac=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                    wire(
                        &[GATEWAY, FRONTEND],
                        Some(("alice", "orders.read")),
                        now(),
                        now() + 30
                    )
                )]
            }),
            "chain_forged",
        ),
        (
            "strip the seal",
            Arc::new(|c| vec![c.split(";mac=").next().unwrap_or("").to_owned()]),
            "chain_forged",
        ),
        (
            "change the user",
            Arc::new(|c| vec![c.replace("user=alice", "user=mallory")]),
            "chain_forged",
        ),
        (
            "add a scope",
            Arc::new(|c| vec![c.replace("scope=orders.read", "scope=orders.read%20orders.admin")]),
            "chain_forged",
        ),
        (
            "change the purpose",
            Arc::new(|c| vec![c.replace("purpose=orders.read", "purpose=orders.admin")]),
            "chain_forged",
        ),
        (
            "change a hop",
            Arc::new(move |c| vec![c.replace(GATEWAY, other_gateway)]),
            "chain_forged",
        ),
        (
            "add a hop at the end",
            Arc::new(|c| vec![c.replace(";mac=", &format!(",{LEGACY};mac="))]),
            "chain_forged",
        ),
        (
            "add a hop at the origin",
            Arc::new(|c| vec![c.replace("hops=", &format!("hops={LEGACY},"))]),
            "chain_forged",
        ),
        (
            "reorder the hops",
            Arc::new(|c| {
                vec![c.replace(
                    &format!("{GATEWAY},{FRONTEND}"),
                    &format!("{FRONTEND},{GATEWAY}"),
                )]
            }),
            "chain_forged",
        ),
        (
            "prolong the expiry",
            Arc::new(move |c| vec![swap_exp(c)]),
            "chain_forged",
        ),
        (
            "send a chain another proxy sealed",
            Arc::new(move |_| vec![gateway_sealed.clone()]),
            "chain_forged",
        ),
        (
            "send the chain twice",
            Arc::new(|c| vec![c.to_owned(), c.to_owned()]),
            "chain_duplicate",
        ),
    ];
    let rejected_before = t.frontend.envoy.meshward_counter("chain_rejected");
    for (n, (what, edit, reason)) in variants.iter().enumerate() {
        let edit = Arc::clone(edit);
        t.frontend
            .app
            .set_rewrite(Arc::new(move |incoming: &[String]| {
                edit(incoming.first().map(String::as_str).unwrap_or(""))
            }));
        let id = format!("forge-{n}");
        let trace = Trace::of(&t.get_as_user(&id, "/orders/42", Some(&token)));
        t.frontend.app.behave();
        assert_eq!(
            (trace.reached(), trace.status, trace.reason.as_deref()),
            (vec!["gateway", "frontend"], 403, Some(*reason)),
            "the frontend app tried to {what}: {:?}; trace {trace:#?}",
            trace.app("frontend")["sent_chain"]
        );
        assert_eq!(trace.body["reason"], *reason, "{what}: {}", trace.body);
        assert!(
            t.orders.app.requests_with_id(&id).is_empty(),
            "{what}: reached orders"
        );
        let refusals = outbound_refusals(&t.frontend.envoy, &id);
        assert_eq!(refusals.len(), 1, "{what}: {refusals:?}");
        assert_eq!(
            (&refusals[0]["decision"], &refusals[0]["reason"]),
            (&json!("deny"), &json!(reason)),
            "{what}"
        );
    }
    assert_eq!(
        t.frontend.envoy.meshward_counter("chain_rejected") - rejected_before,
        variants.len() as u64
    );
}

/// `legacy` is not a forwarder: the chain it sends (claiming the gateway as
/// origin and alice as the user) is dropped, and its request restarts the
/// chain at itself, marked incomplete, so `when complete` does not hold.
fn a_peer_not_trusted_to_forward_is_ignored(t: &ThreeHops) {
    let legacy = t.pki.shop.svid("/ns/ops/sa/legacy");
    let client = t.client(&t.orders, &legacy);
    let claimed = wire(
        &[GATEWAY, LEGACY],
        Some(("alice", "orders.read")),
        now(),
        now() + 30,
    );
    let response = send(&client, &get_with_chain("legacy-1", &[&claimed]));
    denied(&response, 403, "no_matching_rule");
    let audit = t.orders.envoy.inbound_audit("legacy-1");
    let chain = audit.str("chain").unwrap_or("");
    assert_eq!(
        chain_hops(chain),
        [LEGACY],
        "untrusted forwarder: {}",
        audit.raw
    );
    let f = chain_fields(chain);
    assert_eq!(f["complete"], "0", "untrusted forwarder: {}", audit.raw);
    assert!(
        !f.contains_key("user"),
        "the claimed user is dropped: {}",
        audit.raw
    );

    // Without a chain, the same peer is a complete one-hop chain: allowed.
    let response = send(&client, &get_with_chain("legacy-2", &[]));
    assert_eq!(response.status, 200, "legacy alone: {}", response.text());
    let seen = t.orders.app.requests_with_id("legacy-2");
    let chain = seen[0].header(CHAIN).unwrap_or("");
    assert_eq!(chain_hops(chain), [LEGACY, ORDERS], "{chain}");
    assert_eq!(chain_fields(chain)["complete"], "1");
}

/// A test client holding the frontend's SVID poses as its proxy and sends
/// chain headers straight to orders' inbound listener.
fn crafted_chain_headers_are_refused(t: &ThreeHops) {
    let client = t.client(&t.orders, &t.frontend_svid);
    let (iat, exp) = (now(), now() + 30);
    let alice = Some(("alice", "orders.read"));
    let hop = |n: usize| format!("spiffe://shop.example/ns/shop/sa/hop{n}");
    let ok = wire(&[GATEWAY, FRONTEND], alice, iat, exp);

    // The trusted forwarder's word is taken: this is the trust model.
    let response = send(&client, &get_with_chain("crafted-ok", &[&ok]));
    assert_eq!(response.status, 200, "crafted-ok: {}", response.text());

    let five: Vec<String> = [
        GATEWAY.to_owned(),
        hop(1),
        hop(2),
        hop(3),
        FRONTEND.to_owned(),
    ]
    .to_vec();
    let five: Vec<&str> = five.iter().map(String::as_str).collect();
    let many: Vec<String> = (0..300).map(hop).collect();
    let mut huge: Vec<&str> = vec![GATEWAY];
    huge.extend(many.iter().map(String::as_str));
    huge.push(FRONTEND);
    let huge = wire(&huge, alice, iat, exp);
    assert!(huge.len() > 8192, "{}", huge.len());
    let cases: Vec<(&str, Vec<String>, &str)> = vec![
        (
            "deeper than max_depth 4",
            vec![wire(&five, alice, iat, exp)],
            "chain_too_deep",
        ),
        ("over 8 KiB", vec![huge], "chain_too_large"),
        (
            "not the grammar",
            vec!["hello".to_owned()],
            "chain_malformed",
        ),
        (
            "a field out of order",
            vec![ok.replace(
                ";complete=1;purpose=orders.read",
                ";purpose=orders.read;complete=1",
            )],
            "chain_malformed",
        ),
        (
            "a hop that is no SPIFFE ID",
            vec![ok.replace(GATEWAY, "https://gateway.example")],
            "chain_malformed",
        ),
        (
            "a seal on the wire",
            vec![format!("{ok};mac=AAAA")],
            "chain_malformed",
        ),
        (
            "two chain headers",
            vec![ok.clone(), ok.clone()],
            "chain_duplicate",
        ),
        (
            "format version 2",
            vec![ok.replace("v=1;", "v=2;")],
            "chain_unknown_version",
        ),
        (
            "expired at its origin",
            vec![wire(&[GATEWAY, FRONTEND], alice, iat - 100, iat - 40)],
            "chain_expired",
        ),
        (
            "not ending at the sender",
            vec![wire(&[FRONTEND, GATEWAY], alice, iat, exp)],
            "chain_peer_mismatch",
        ),
        // A trusted forwarder cannot prolong a chain past this policy's
        // `lifetime` (60 s by default), however far ahead its `exp` is.
        (
            "exp a year ahead",
            vec![wire(
                &[GATEWAY, FRONTEND],
                alice,
                iat,
                iat + 365 * 24 * 3600,
            )],
            "chain_lifetime_exceeds_bound",
        ),
        (
            "exp one second past iat + lifetime",
            vec![wire(&[GATEWAY, FRONTEND], alice, iat - 10, iat + 51)],
            "chain_lifetime_exceeds_bound",
        ),
        (
            "iat in the future beyond the skew",
            vec![wire(&[GATEWAY, FRONTEND], alice, iat + 120, iat + 150)],
            "chain_expired",
        ),
    ];
    for (n, (what, values, reason)) in cases.iter().enumerate() {
        let id = format!("crafted-{n}");
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        let response = send(&client, &get_with_chain(&id, &values));
        assert_eq!(
            (response.status, response.header("x-meshward-reason")),
            (403, Some(*reason)),
            "{what}: {}",
            response.text()
        );
        denied(&response, 403, reason);
        let audit = t.orders.envoy.inbound_audit(&id);
        assert_eq!(
            audit.str("chain_error"),
            Some(*reason),
            "{what}: {}",
            audit.raw
        );
        assert!(t.orders.app.requests_with_id(&id).is_empty(), "{what}");
    }
    // Still serving, same VM: no crash.
    let response = send(&client, &get_with_chain("crafted-after", &[&ok]));
    assert_eq!(
        response.status,
        200,
        "after the bad headers: {}",
        response.text()
    );
}

/// The frontend's app keeps the sealed chain of an earlier request and uses
/// it after it expired (the gateway's `lifetime 5s`).
fn a_replayed_chain_expires(t: &ThreeHops, sealed: &str) {
    let exp: u64 = chain_fields(sealed)["exp"].parse().unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(12);
    while now() <= exp {
        assert!(
            Instant::now() < deadline,
            "the chain does not expire: {sealed}"
        );
        thread::sleep(Duration::from_millis(200));
    }
    let replay = sealed.to_owned();
    t.frontend
        .app
        .set_rewrite(Arc::new(move |_: &[String]| vec![replay.clone()]));
    let token = t.user_token("alice", "orders.read");
    let trace = Trace::of(&t.get_as_user("replay-1", "/orders/42", Some(&token)));
    t.frontend.app.behave();
    trace.assert_denied(&["gateway", "frontend"], 403, "chain_expired");
    assert!(t.orders.app.requests_with_id("replay-1").is_empty());
    // The same request with its own, fresh chain goes through.
    let trace = Trace::of(&t.get_as_user("replay-2", "/orders/42", Some(&token)));
    trace.assert_reached(&["gateway", "frontend", "orders"]);
}

/// `on_invalid: drop`: a chain the app edited is removed and the call starts
/// a fresh chain at the frontend, which orders then denies for lacking the
/// gateway origin and the user.
#[test]
fn on_invalid_drop_restarts_the_chain_at_the_frontend() {
    let t = three_hops("chain-drop", "drop", 1);
    let token = t.user_token("alice", "orders.read");

    let trace = Trace::of(&t.get_as_user("drop-ok", "/orders/42", Some(&token)));
    trace.assert_reached(&["gateway", "frontend", "orders"]);

    t.frontend.app.set_rewrite(Arc::new(|incoming: &[String]| {
        incoming
            .iter()
            .map(|c| c.replace("user=alice", "user=mallory"))
            .collect()
    }));
    let trace = Trace::of(&t.get_as_user("drop-1", "/orders/42", Some(&token)));
    trace.assert_denied(&["gateway", "frontend"], 403, "no_matching_rule");
    // The call went on, without the chain: orders saw the frontend as origin.
    let audit = t.orders.envoy.inbound_audit("drop-1");
    let chain = audit.str("chain").unwrap_or("");
    assert_eq!(chain_hops(chain), [FRONTEND], "{}", audit.raw);
    assert!(!chain.contains("user="), "{}", audit.raw);
    let refusal = outbound_refusals(&t.frontend.envoy, "drop-1");
    assert_eq!(refusal.len(), 1, "{refusal:?}");
    assert_eq!(
        (&refusal[0]["decision"], &refusal[0]["reason"]),
        (&json!("drop-chain"), &json!("chain_forged"))
    );
    assert_eq!(t.frontend.envoy.meshward_counter("chain_dropped"), 1);
    assert_eq!(t.frontend.envoy.meshward_counter("chain_rejected"), 0);
}

/// `max_depth 4` means a chain of four hops, direct peer included, is
/// accepted (docs/policy-language.md, "Caller chain"). Orders gets such a
/// chain from the frontend (a trusted forwarder) and its rule allows it.
#[test]
fn a_chain_of_exactly_max_depth_hops_is_accepted() {
    let scratch = Scratch::new("chain-depth");
    let pki = MeshPki::new();
    let orders = start_orders_alone(&scratch, &pki);
    let frontend = pki.shop.svid("/ns/shop/sa/frontend");
    let client = TlsClient::new(orders.inbound(), &pki.shop.cert_der(), Some(&frontend));
    let hops = [
        GATEWAY,
        "spiffe://shop.example/ns/shop/sa/hop1",
        "spiffe://shop.example/ns/shop/sa/hop2",
        FRONTEND,
    ];
    let chain = wire(&hops, Some(("alice", "orders.read")), now(), now() + 30);
    let response = send(&client, &get_with_chain("depth-4", &[&chain]));
    let audit = orders.envoy.inbound_audit("depth-4");
    assert_eq!(
        (
            response.status,
            audit.str("decision"),
            &audit.json["status"]
        ),
        (200, Some("allow"), &json!(200)),
        "a {}-hop chain with max_depth 4: answered {} {:?}; audit line {}",
        hops.len(),
        response.status,
        response.header("x-meshward-reason"),
        audit.raw
    );
}

/// The outbound side bounds the sealed chain the app sends back by its own
/// policy's `lifetime`, the bound the inbound side applies. The frontend's
/// inbound policy says `lifetime 1h` and its outbound policy the default
/// 60 s: the state after a live update shortened the lifetime, while the app
/// still holds chains sealed before it. A test client holding the gateway's
/// SVID poses as its proxy (the gateway is a trusted forwarder) and sends
/// the chains; orders is the next hop.
#[test]
fn an_overlong_sealed_chain_is_refused_outbound() {
    let scratch = Scratch::new("chain-lifetime");
    let pki = MeshPki::new();
    let orders = start_orders_alone(&scratch, &pki);
    let long = FRONTEND_POLICY.replace("max_depth 5", "max_depth 5\n  lifetime 1h");
    assert_ne!(long, FRONTEND_POLICY);
    let frontend = start_sidecar(
        scratch.path(),
        &pki,
        SidecarSpec {
            name: "frontend",
            template: "sidecar/envoy.yaml",
            server: &pki.shop.serving_svid("/ns/shop/sa/frontend"),
            workload: &pki.shop.svid("/ns/shop/sa/frontend"),
            inbound_config: plugin_config_with(
                &long,
                "frontend-1h.policy",
                &json!({"direction": "inbound"}),
            ),
            outbound_config: plugin_config_with(
                FRONTEND_POLICY,
                "frontend.policy",
                &json!({"direction": "outbound"}),
            ),
            listen_port: 0,
            peer_port: orders.inbound().port(),
            concurrency: 1,
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let gateway = pki.shop.svid("/ns/edge/sa/gateway");
    let client = TlsClient::new(frontend.inbound(), &pki.shop.cert_der(), Some(&gateway));
    let alice = Some(("alice", "orders.read"));

    // Within both bounds: on to orders, which allows it.
    let ok = wire(&[GATEWAY], alice, now(), now() + 30);
    let trace = Trace::of(&send(&client, &get_with_chain("life-ok", &[&ok])));
    trace.assert_reached(&["frontend", "orders"]);

    // Thirty minutes: within the inbound bound, sealed for the app with its
    // `exp` unchanged (never extended, never capped); the outbound side
    // refuses it when the app sends it on.
    let half_hour = wire(&[GATEWAY], alice, now(), now() + 1800);
    let trace = Trace::of(&send(&client, &get_with_chain("life-long", &[&half_hour])));
    trace.assert_denied(&["frontend"], 403, "chain_lifetime_exceeds_bound");
    let sealed = trace.chain_at("frontend");
    assert_eq!(
        (
            chain_fields(&sealed)["iat"].as_str(),
            chain_fields(&sealed)["exp"].as_str()
        ),
        (
            chain_fields(&half_hour)["iat"].as_str(),
            chain_fields(&half_hour)["exp"].as_str()
        ),
        "the app's copy keeps the received iat and exp: {sealed}"
    );
    let refusal = outbound_refusals(&frontend.envoy, "life-long");
    assert_eq!(refusal.len(), 1, "{refusal:?}");
    assert_eq!(
        (&refusal[0]["decision"], &refusal[0]["reason"]),
        (&json!("deny"), &json!("chain_lifetime_exceeds_bound"))
    );
    assert!(orders.app.requests_with_id("life-long").is_empty());

    // A year ahead exceeds even the inbound bound: refused on receipt, the
    // app never sees it.
    let year = wire(&[GATEWAY], alice, now(), now() + 365 * 24 * 3600);
    let response = send(&client, &get_with_chain("life-year", &[&year]));
    denied(&response, 403, "chain_lifetime_exceeds_bound");
    assert!(frontend.app.requests_with_id("life-year").is_empty());
    for envoy in [&frontend.envoy, &orders.envoy] {
        assert_no_trap(envoy);
    }
}

fn start_orders_alone(scratch: &Scratch, pki: &MeshPki) -> Sidecar {
    let _ = filter_wasm();
    let orders = start_sidecar(
        scratch.path(),
        pki,
        SidecarSpec {
            name: "orders",
            template: "sidecar/envoy.yaml",
            server: &pki.shop.serving_svid("/ns/shop/sa/orders"),
            workload: &pki.shop.svid("/ns/shop/sa/orders"),
            inbound_config: plugin_config_with(
                ORDERS_POLICY,
                "orders.policy",
                &json!({"direction": "inbound"}),
            ),
            outbound_config: plugin_config_with(
                ORDERS_POLICY,
                "orders.policy",
                &json!({"direction": "outbound"}),
            ),
            listen_port: 0,
            peer_port: 9,
            concurrency: 1,
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    orders.app.set_end();
    orders
}

/// The shipped edge gateway (`envoy/edge/envoy.yaml`) routes the edge
/// listener straight into the mesh, without an app and outbound listener in
/// between. The chain it starts (origin = the gateway, the verified user)
/// must arrive at the frontend in a form the frontend accepts.
#[test]
fn the_shipped_edge_config_carries_the_user_into_the_mesh() {
    use meshward_e2e::ecds::{fill, template, yaml_single_quoted};
    let scratch = Scratch::new("chain-edge");
    let dir = scratch.path();
    let pki = MeshPki::new();
    let idp = SigningKey::es256();
    let frontend_port = meshward_e2e::topology::free_port();
    let frontend = spawn_sidecar(
        dir,
        &pki,
        SidecarSpec {
            name: "frontend",
            template: "sidecar/envoy.yaml",
            server: &pki.shop.serving_svid("/ns/shop/sa/frontend"),
            workload: &pki.shop.svid("/ns/shop/sa/frontend"),
            inbound_config: plugin_config_with(
                FRONTEND_POLICY,
                "frontend.policy",
                &json!({"direction": "inbound"}),
            ),
            outbound_config: plugin_config_with(
                FRONTEND_POLICY,
                "frontend.policy",
                &json!({"direction": "outbound"}),
            ),
            listen_port: frontend_port,
            peer_port: 9,
            concurrency: 1,
        },
    );
    let cert_dir = dir.join("edge-certs");
    let gateway_svid = pki.shop.svid("/ns/edge/sa/gateway");
    pki.write_cert_dir(&cert_dir, &pki.shop.server_cert(), None)
        .unwrap();
    std::fs::write(cert_dir.join("gateway.pem"), &gateway_svid.cert_pem).unwrap();
    std::fs::write(cert_dir.join("gateway.key"), &gateway_svid.key_pem).unwrap();
    let edge_config = plugin_config_with(
        GATEWAY_POLICY,
        "gateway.policy",
        &json!({
            "direction": "inbound",
            "chain": {"hand_off": "wire"},
            "workload_id": GATEWAY,
            "user_tokens": {"issuers": [{"issuer": ISSUER, "audiences": [USER_AUDIENCE],
                "jwks": tokens::jwks(&[(&idp, "idp-1")], &json!({}))}]},
        }),
    );
    let yaml = fill(
        &template("edge/envoy.yaml"),
        &[
            ("MESHWARD_LISTEN_PORT", "0".to_owned()),
            ("MESHWARD_ADMIN_PORT", "0".to_owned()),
            ("MESHWARD_UPSTREAM_PORT", frontend_port.to_string()),
            ("MESHWARD_CERT_DIR", cert_dir.display().to_string()),
            ("MESHWARD_WASM", filter_wasm().display().to_string()),
            ("MESHWARD_PLUGIN_CONFIG", yaml_single_quoted(&edge_config)),
        ],
    );
    let edge = EnvoyProc::spawn(dir, "edge", &yaml, 1);
    let frontend = frontend.ready().unwrap_or_else(|e| panic!("{e}"));
    frontend.app.set_end();
    let edge = edge
        .ready(&["meshward_edge"])
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = edge.listener("meshward_edge");
    let client = TlsClient::new(
        std::net::SocketAddr::from(([127, 0, 0, 1], addr.port())),
        &pki.shop.cert_der(),
        None,
    );
    let token = idp.mint(
        "idp-1",
        &tokens::user_claims(ISSUER, "alice", USER_AUDIENCE, "orders.read", "edge-1"),
    );
    let request = Request::get("/orders/42")
        .header("x-request-id", "edge-1")
        .header("authorization", &format!("Bearer {token}"));
    let response = send(&client, &request);
    // The edge replaces x-request-id (use_remote_address): look at all.
    let frontend_audit: Vec<String> = frontend
        .envoy
        .audit_lines()
        .into_iter()
        .map(|l| l.raw)
        .collect();
    assert_eq!(
        response.status,
        200,
        "edge → frontend: {} {:?}; frontend audit lines {frontend_audit:#?}",
        response.status,
        response.header("x-meshward-reason"),
    );
    let trace = Trace::of(&response);
    let chain = trace.chain_at("frontend");
    assert_eq!(chain_hops(&chain), [GATEWAY, FRONTEND], "{chain}");
    assert_eq!(chain_fields(&chain)["user"], "alice", "{chain}");
}
