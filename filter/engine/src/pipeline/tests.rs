//! The pipeline through the offline host: the configuration lifecycle, key
//! fetches, and requests from raw facts (a real certificate in XFCC bound by
//! its digest) to the applied outcome.

use std::time::Duration;

use serde_json::{json, Value};

use super::*;
use crate::codec;
use crate::identity::test_certs::{san_uri, Svid, SvidSpec, T0};
use crate::model::*;

const ORDERS: &str = "spiffe://prod.example/ns/shop/sa/orders";
const FRONTEND: &str = "spiffe://prod.example/ns/shop/sa/frontend";
const BATCH: &str = "spiffe://prod.example/ns/batch/sa/report";
const NOW: u64 = T0 + 600;

/// `orders.read` (GET /orders/{id}) granted to the frontend; `vault.read`
/// (GET /secrets/**, host vault.example) denied to everyone but allowed by a
/// broader any-host grant of `/secrets/**` to the batch job.
fn policy_bytes(dry_run: bool) -> Vec<u8> {
    let mut strings: Vec<String> = vec!["shop".into()];
    let mut s = |text: &str| -> StrId {
        if let Some(i) = strings.iter().position(|s| s == text) {
            return StrId(i as u32);
        }
        strings.push(text.into());
        StrId((strings.len() - 1) as u32)
    };
    let td = s("prod.example");
    let (orders_read, orders, frontend) = (s("orders.read"), s("orders"), s(FRONTEND));
    let rule_id = s("frontend-reads-orders");
    let _ = s(ORDERS);
    let policy = CompiledPolicy {
        name: StrId(0),
        dry_run,
        strings: strings.clone(),
        trust_domains: vec![td],
        limits: Limits::default(),
        intents: vec![Intent {
            name: orders_read,
            methods: Method::Get.bit(),
            host: None,
            routes: vec![Route {
                segments: vec![Segment::Literal(orders), Segment::Param],
            }],
        }],
        rules: vec![Rule {
            id: rule_id,
            effect: Effect::Allow,
            dry_run: false,
            principal: Principal::Peer,
            subjects: vec![Subject::Exact(frontend)],
            intents: vec![IntentIdx(0)],
            unclassified: false,
            conditions: vec![],
        }],
        chain: ChainSettings::default(),
    };
    codec::encode(&policy).0
}

fn plugin_config(extra: Value) -> Vec<u8> {
    let mut config = crate::config::plugin_config_json(&policy_bytes(false), &[]);
    if let (Some(object), Value::Object(extra)) = (config.as_object_mut(), extra) {
        object.extend(extra);
    }
    config.to_string().into_bytes()
}

fn started(config: Vec<u8>) -> (Pipeline, OfflineHost) {
    let mut host = OfflineHost::at(NOW);
    host.plugin_configuration = Some(config);
    let mut pipeline = Pipeline::new();
    assert!(pipeline.on_vm_start(&mut host));
    assert!(pipeline.on_configure(&mut host), "{:?}", host.logs);
    (pipeline, host)
}

/// A request from `svid` over mTLS, with Envoy's sanitized XFCC.
fn request(
    host: &mut OfflineHost,
    peer: &Workload,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
) {
    host.reset_request();
    let mut headers: Vec<(String, Vec<u8>)> = vec![
        (":method".into(), method.into()),
        (":path".into(), path.into()),
        (":authority".into(), "orders.shop".into()),
        ("x-request-id".into(), "r-1".into()),
        (
            "x-forwarded-client-cert".into(),
            peer.cert.envoy_xfcc(&[san_uri(peer.id)]).into_bytes(),
        ),
    ];
    headers.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec())),
    );
    host.headers = headers;
    host.properties.insert(
        "connection.sha256_peer_certificate_digest".into(),
        peer.cert.digest.clone().into_bytes(),
    );
}

/// A workload's X.509-SVID (valid for the first hour after `T0`).
struct Workload {
    cert: Svid,
    id: &'static str,
}

fn svid(id: &'static str) -> Workload {
    Workload {
        cert: Svid::issue(SvidSpec {
            sans: vec![san_uri(id)],
            serial: vec![7],
            not_before: T0,
            not_after: T0 + 3600,
        }),
        id,
    }
}

#[test]
fn without_configuration_every_request_is_denied_no_policy() {
    let mut host = OfflineHost::at(NOW);
    let mut pipeline = Pipeline::new();
    assert!(pipeline.on_vm_start(&mut host));
    request(&mut host, &svid(FRONTEND), "GET", "/orders/1", &[]);
    assert_eq!(pipeline.on_request_headers(&mut host), Action::Stop);
    let response = host.response.clone().unwrap();
    assert_eq!(response.status, 403);
    assert!(response.body.contains("no_policy"));
    assert_eq!(reason_count(&host, "no_policy"), 1);
    assert_eq!(
        host.filter_state.get("meshward_reason").map(String::as_str),
        Some("no_policy")
    );
    assert!(!host.filter_state.contains_key("meshward_policy"));
}

#[test]
fn allows_through_the_forwarded_certificate_and_hands_the_app_its_facts() {
    let (mut pipeline, mut host) = started(plugin_config(json!({"workload_id": ORDERS})));
    let frontend = svid(FRONTEND);
    request(
        &mut host,
        &frontend,
        "GET",
        "/orders/1",
        &[("x-meshward-peer", "spiffe://prod.example/forged")],
    );
    assert_eq!(pipeline.on_request_headers(&mut host), Action::Continue);
    assert_eq!(host.response, None);
    assert_eq!(host.removed, ["x-meshward-peer"]);
    let added: Vec<&str> = host.added.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        added,
        [
            "x-meshward-peer",
            "x-meshward-intent",
            "x-meshward-decision",
            "x-meshward-policy",
            "x-meshward-chain"
        ]
    );
    assert_eq!(host.added[0].1, FRONTEND);
    let chain = &host.added[4].1;
    assert!(chain.contains(&format!("hops={FRONTEND},{ORDERS}")) && chain.contains(";mac="));
    assert_eq!(effect_count(&host, "allow"), 1);
    // The decision facts, as filter state for the proxy's access logs.
    let fact = |name: &str| host.filter_state.get(name).map(String::as_str);
    assert_eq!(fact("meshward_decision"), Some("allow"));
    assert_eq!(fact("meshward_reason"), Some("allowed_by_rule"));
    assert_eq!(fact("meshward_peer"), Some(FRONTEND));
    assert_eq!(fact("meshward_mode"), Some("enforce"));
    assert_eq!(fact("meshward_direction"), Some("inbound"));
    assert_eq!(fact("meshward_chain_origin"), Some(FRONTEND));
    assert!(fact("meshward_intent").is_some() && fact("meshward_rule").is_some());
    assert_eq!(fact("meshward_would_be"), None);
    assert_eq!(fact("meshward_policy").map(str::len), Some(64));
    let audit: Value = serde_json::from_str(host.audit_lines()[0]).unwrap();
    assert_eq!(audit["rule"], "frontend-reads-orders");
    assert_eq!(audit["peer"], FRONTEND);
    assert_eq!(audit["request_id"], "r-1");
}

#[test]
fn filter_state_publishes_only_what_the_configuration_selects() {
    let frontend = svid(FRONTEND);
    // A list: only those facts, same decision and edits.
    let (mut pipeline, mut host) = started(plugin_config(json!({
        "workload_id": ORDERS,
        "filter_state": ["meshward_reason", "meshward_peer"],
    })));
    request(&mut host, &frontend, "GET", "/orders/1", &[]);
    assert_eq!(pipeline.on_request_headers(&mut host), Action::Continue);
    let names: Vec<&str> = host.filter_state.keys().map(String::as_str).collect();
    assert_eq!(names, ["meshward_peer", "meshward_reason"]);
    assert_eq!(host.filter_state["meshward_reason"], "allowed_by_rule");
    assert!(host.added.iter().any(|(k, _)| k == "x-meshward-chain"));
    assert_eq!(effect_count(&host, "allow"), 1);
    // `none`: no filter state at all; the audit line and counters stay.
    let (mut pipeline, mut host) = started(plugin_config(json!({
        "workload_id": ORDERS,
        "filter_state": "none",
    })));
    request(&mut host, &svid(BATCH), "GET", "/orders/1", &[]);
    assert_eq!(pipeline.on_request_headers(&mut host), Action::Stop);
    assert!(host.filter_state.is_empty());
    assert_eq!(reason_count(&host, "no_matching_rule"), 1);
    assert_eq!(host.audit_lines().len(), 1);
}

#[test]
fn denies_with_the_reason_the_response_and_the_counters_agree_on() {
    let (mut pipeline, mut host) = started(plugin_config(json!({})));
    // Not granted.
    request(&mut host, &svid(BATCH), "GET", "/orders/1", &[]);
    assert_eq!(pipeline.on_request_headers(&mut host), Action::Stop);
    let response = host.response.clone().unwrap();
    assert_eq!((response.status, response.grpc_status), (403, None));
    assert_eq!(response.details, "meshward_denied{no_matching_rule}");
    assert!(host.added.is_empty() && host.removed.is_empty());
    // A forged XFCC from another connection: its digest does not match.
    let frontend = svid(FRONTEND);
    request(&mut host, &frontend, "GET", "/orders/1", &[]);
    host.properties.insert(
        "connection.sha256_peer_certificate_digest".into(),
        svid(BATCH).cert.digest.into_bytes(),
    );
    pipeline.on_request_headers(&mut host);
    assert_eq!(host.response.as_ref().unwrap().status, 401);
    assert_eq!(reason_count(&host, "forwarded_cert_mismatch"), 1);
    // gRPC: the response carries the gRPC status hosts send themselves.
    request(
        &mut host,
        &svid(BATCH),
        "POST",
        "/orders/1",
        &[("content-type", "application/grpc")],
    );
    pipeline.on_request_headers(&mut host);
    assert_eq!(host.response.as_ref().unwrap().grpc_status, Some(7));
    assert_eq!(effect_count(&host, "deny"), 3);
}

#[test]
fn method_override_headers_are_denied_or_stripped_as_configured() {
    let frontend = svid(FRONTEND);
    let (mut pipeline, mut host) = started(plugin_config(json!({})));
    request(
        &mut host,
        &frontend,
        "GET",
        "/orders/1",
        &[("x-http-method-override", "DELETE")],
    );
    assert_eq!(pipeline.on_request_headers(&mut host), Action::Stop);
    assert_eq!(
        host.response.as_ref().unwrap().details,
        "meshward_denied{method_override}"
    );
    // The audit line records the override header, so replay sees it.
    let audit: Value = serde_json::from_str(host.audit_lines()[0]).unwrap();
    assert_eq!(audit["headers"]["x-http-method-override"], "DELETE");

    let (mut pipeline, mut host) = started(plugin_config(json!({"method_override": "strip"})));
    request(
        &mut host,
        &frontend,
        "GET",
        "/orders/1",
        &[("x-http-method-override", "DELETE")],
    );
    assert_eq!(pipeline.on_request_headers(&mut host), Action::Continue);
    assert!(host.removed.contains(&"x-http-method-override".to_owned()));
}

#[test]
fn a_failed_header_edit_turns_the_allow_into_a_deny() {
    let (mut pipeline, mut host) = started(plugin_config(json!({})));
    request(&mut host, &svid(FRONTEND), "GET", "/orders/1", &[]);
    host.fail_header_edits = true;
    assert_eq!(pipeline.on_request_headers(&mut host), Action::Stop);
    assert_eq!(
        host.response.as_ref().unwrap().details,
        "meshward_denied{identity_unavailable}"
    );
    assert_eq!(effect_count(&host, "allow"), 0);
    assert_eq!(reason_count(&host, "identity_unavailable"), 1);
}

#[test]
fn host_failures_fail_closed() {
    let (mut pipeline, mut host) = started(plugin_config(json!({})));
    request(&mut host, &svid(FRONTEND), "GET", "/orders/1", &[]);
    host.failing_properties = vec!["connection.sha256_peer_certificate_digest".into()];
    assert_eq!(pipeline.on_request_headers(&mut host), Action::Stop);
    assert_eq!(host.response.as_ref().unwrap().status, 401);
    host.failing_properties.clear();
    host.now_nanos = None;
    assert_eq!(pipeline.on_request_headers(&mut host), Action::Stop);
    assert!(host
        .response
        .as_ref()
        .unwrap()
        .body
        .contains("identity_unavailable"));
}

#[test]
fn a_rejected_update_keeps_the_last_good_configuration() {
    let (mut pipeline, mut host) = started(plugin_config(json!({})));
    let first = pipeline.config().unwrap().policy.hash_hex().to_owned();
    for bad in [
        b"".to_vec(),
        b"{not json".to_vec(),
        br#"{"policy": "AAAA"}"#.to_vec(),
        plugin_config(json!({"unknown_member": 1})),
    ] {
        assert!(!pipeline.configure(&mut host, &bad));
    }
    assert_eq!(host.counter("meshward.config_rejected"), 4);
    assert_eq!(pipeline.config().unwrap().policy.hash_hex(), first);
    request(&mut host, &svid(FRONTEND), "GET", "/orders/1", &[]);
    assert_eq!(pipeline.on_request_headers(&mut host), Action::Continue);
}

#[test]
fn keys_pinned_in_the_vm_configuration_refuse_an_unsigned_policy() {
    let mut host = OfflineHost::at(NOW);
    let key = crate::signature::PublicKey::from_bytes(&[
        0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe, 0xd3, 0xc9, 0x64, 0x07,
        0x3a, 0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6, 0x23, 0x25, 0xaf, 0x02, 0x1a, 0x68, 0xf7, 0x07,
        0x51, 0x1a,
    ])
    .unwrap();
    host.vm_configuration = Some(
        json!({"require_signature": {"keys": [key.to_base64()]}})
            .to_string()
            .into_bytes(),
    );
    let mut pipeline = Pipeline::new();
    assert!(pipeline.on_vm_start(&mut host));
    assert!(!pipeline.configure(&mut host, &plugin_config(json!({}))));
    assert!(host
        .logs
        .iter()
        .any(|(_, l)| l.contains("rejected configuration")));
    // A VM configuration that cannot be honoured stops the VM.
    host.vm_configuration = Some(br#"{"require_signatures": {}}"#.to_vec());
    assert!(!Pipeline::new().on_vm_start(&mut host));
}

#[test]
fn instances_share_one_seal_key() {
    let mut host = OfflineHost::at(NOW);
    let mut first = Pipeline::new();
    let mut second = Pipeline::new();
    assert!(first.on_vm_start(&mut host) && second.on_vm_start(&mut host));
    assert_eq!(first.seal_key, second.seal_key);
    assert_eq!(
        first.seal_key.as_ref().map(Vec::len),
        Some(seal_key::KEY_LEN)
    );
}

fn jwks(kid: &str) -> Value {
    // A P-256 public key (the point is on the curve; no token is verified).
    json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": kid, "use": "jwt-svid",
        "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
        "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]})
}

#[test]
fn key_fetches_follow_their_schedule_and_go_stale_when_they_keep_failing() {
    let config = plugin_config(json!({
        "jwt_svid": {"audiences": [ORDERS]},
        "key_fetch": [{"cluster": "bundles", "path": "/bundle", "trust_domain": "prod.example",
                       "refresh_secs": 60, "max_staleness_secs": 300}]
    }));
    let (mut pipeline, mut host) = started(config);
    assert_eq!(host.tick_period, Some(Duration::from_secs(1)));
    // Due at once; not again while in flight.
    pipeline.on_tick(&mut host);
    pipeline.on_tick(&mut host);
    assert_eq!(host.callouts.len(), 1);
    assert_eq!(
        (
            host.callouts[0].cluster.as_str(),
            host.callouts[0].path.as_str()
        ),
        ("bundles", "/bundle")
    );
    // A good answer installs the set.
    let body = jwks("k1").to_string().into_bytes();
    let first = host.callouts[0].id;
    pipeline.on_http_call_response(&mut host, first, Some(200), Some(body));
    assert!(pipeline.keys().trust_domain("prod.example", NOW).is_ok());
    // Not due again before refresh_secs.
    pipeline.on_tick(&mut host);
    assert_eq!(host.callouts.len(), 1);
    // After refresh_secs: fetched again; a failure keeps the last good set.
    host.now_nanos = Some(u128::from(NOW + 61) * 1_000_000_000);
    pipeline.on_tick(&mut host);
    assert_eq!(host.callouts.len(), 2);
    let second = host.callouts[1].id;
    pipeline.on_http_call_response(&mut host, second, Some(500), None);
    assert_eq!(host.counter("meshward.keys_fetch_failed"), 1);
    assert!(host
        .logs
        .iter()
        .any(|(_, l)| l.contains("fetching bundles/bundle failed: status 500")));
    assert!(pipeline
        .keys()
        .trust_domain("prod.example", NOW + 61)
        .is_ok());
    // Past max_staleness the set no longer serves: requests fail closed.
    assert_eq!(
        pipeline
            .keys()
            .trust_domain("prod.example", NOW + 301)
            .err(),
        Some(Reason::KeysStale)
    );
    // An answer to a call nobody made is ignored.
    pipeline.on_http_call_response(&mut host, 999, Some(200), Some(b"{}".to_vec()));
    assert_eq!(host.counter("meshward.keys_fetch_failed"), 1);
}

#[test]
fn a_host_that_cannot_dispatch_counts_a_failed_fetch() {
    let config = plugin_config(json!({
        "jwt_svid": {"audiences": [ORDERS]},
        "key_fetch": [{"cluster": "nowhere", "path": "/b", "trust_domain": "prod.example"}]
    }));
    let mut host = OfflineHost::at(NOW);
    host.callouts_supported = false;
    host.plugin_configuration = Some(config);
    let mut pipeline = Pipeline::new();
    assert!(pipeline.on_vm_start(&mut host) && pipeline.on_configure(&mut host));
    pipeline.on_tick(&mut host);
    assert_eq!(host.counter("meshward.keys_fetch_failed"), 1);
}

#[test]
fn outbound_forwards_only_chains_this_proxy_sealed() {
    // Inbound seals a chain for the app...
    let (mut inbound, mut host) = started(plugin_config(json!({"workload_id": ORDERS})));
    request(&mut host, &svid(FRONTEND), "GET", "/orders/1", &[]);
    inbound.on_request_headers(&mut host);
    let sealed = host
        .added
        .iter()
        .find(|(k, _)| k == "x-meshward-chain")
        .map(|(_, v)| v.clone())
        .unwrap();
    // ...the outbound side of the same proxy (same shared data) forwards it.
    let mut outbound = Pipeline::new();
    host.plugin_configuration = Some(plugin_config(json!({"direction": "outbound"})));
    assert!(outbound.on_vm_start(&mut host) && outbound.on_configure(&mut host));
    let call = |host: &mut OfflineHost, chain: &str| {
        host.reset_request();
        host.headers = vec![
            (":method".into(), b"GET".to_vec()),
            (":path".into(), b"/payments".to_vec()),
            (":authority".into(), b"payments".to_vec()),
            ("x-meshward-chain".into(), chain.as_bytes().to_vec()),
        ];
    };
    call(&mut host, &sealed);
    assert_eq!(outbound.on_request_headers(&mut host), Action::Continue);
    let forwarded = &host.added[0].1;
    assert!(!forwarded.contains("mac=") && forwarded.contains(ORDERS));
    assert_eq!(host.counter("meshward.chain_forwarded"), 1);
    // An edited chain is refused and audited as an outbound line.
    call(&mut host, &sealed.replace("complete=1", "complete=0"));
    assert_eq!(outbound.on_request_headers(&mut host), Action::Stop);
    assert_eq!(
        host.response.as_ref().unwrap().details,
        "meshward_denied{chain_forged}"
    );
    let audit: Value = serde_json::from_str(host.audit_lines()[0]).unwrap();
    assert_eq!(
        (audit["direction"].as_str(), audit["status"].as_u64()),
        (Some("outbound"), Some(403))
    );
    assert_eq!(audit["mode"], "enforce");
    assert_eq!(host.counter("meshward.chain_rejected"), 1);
}

#[test]
fn the_cli_path_decides_like_the_proxy_path() {
    // The same request as raw facts (certificate in XFCC) and as verified
    // facts (what the CLI and replay give) decides the same.
    let (mut pipeline, mut host) = started(plugin_config(json!({"workload_id": ORDERS})));
    for (peer, path, extra) in [
        (FRONTEND, "/orders/1", vec![]),
        (BATCH, "/orders/1", vec![]),
        (
            FRONTEND,
            "/orders/1",
            vec![("x-http-method-override", "PUT")],
        ),
        (FRONTEND, "/orders/%2e%2e/admin", vec![]),
        (FRONTEND, "/other", vec![]),
    ] {
        let cert = svid(peer);
        request(&mut host, &cert, "GET", path, &extra);
        let raw = pipeline.read_request(&mut host).unwrap();
        let from_proxy = pipeline.decide(&raw, &mut host).verdict.decision;
        let verified = RequestInput {
            peer: PeerEvidence::Verified {
                peer: SpiffeId::parse(peer).map_err(|_| Reason::MalformedSpiffeId),
                cert_window: Some((T0, T0 + 3600)),
            },
            tokens: TokenEvidence::Verified {
                jwt_svid: None,
                user: None,
                chain_refused: None,
            },
            ..raw
        };
        let from_cli = pipeline.decide(&verified, &mut host).verdict.decision;
        assert_eq!(from_proxy, from_cli, "{peer} {path} {extra:?}");
    }
}

/// A request on an Istio waypoint's internal listener: no TLS facts, the
/// caller in the `io.istio.peer_principal` filter state.
fn waypoint_request(host: &mut OfflineHost, principal: Option<&str>, path: &str) {
    host.reset_request();
    host.properties.clear();
    host.headers = vec![
        (":method".into(), b"GET".to_vec()),
        (":path".into(), path.as_bytes().to_vec()),
        (":authority".into(), b"orders.shop".to_vec()),
        ("x-request-id".into(), b"r-w".to_vec()),
        // A client-written XFCC naming a permitted workload: never believed.
        (
            "x-forwarded-client-cert".into(),
            format!("URI={FRONTEND}").into_bytes(),
        ),
    ];
    if let Some(principal) = principal {
        host.properties.insert(
            "filter_state.io.istio.peer_principal".into(),
            principal.as_bytes().to_vec(),
        );
    }
}

#[test]
fn a_waypoint_peer_comes_from_filter_state() {
    let (mut pipeline, mut host) =
        started(plugin_config(json!({"peer_certificate": "filter_state"})));
    waypoint_request(&mut host, Some(FRONTEND), "/orders/1");
    assert_eq!(pipeline.on_request_headers(&mut host), Action::Continue);
    assert!(
        host.added
            .iter()
            .any(|(n, v)| n == "x-meshward-peer" && v == FRONTEND),
        "{:?}",
        host.added
    );
    let denied = |host: &OfflineHost| {
        let response = host.response.as_ref().expect("a deny");
        let reason = response
            .headers
            .iter()
            .find(|(n, _)| *n == "x-meshward-reason")
            .map(|(_, v)| v.clone());
        (response.status, reason.unwrap_or_default())
    };
    for (principal, status, reason) in [
        (Some(BATCH), 403, "no_matching_rule"),
        (
            Some("spiffe://evil.example/ns/shop/sa/frontend"),
            401,
            "untrusted_trust_domain",
        ),
        (
            Some("prod.example/ns/shop/sa/frontend"),
            401,
            "peer_not_spiffe",
        ),
        (None, 401, "no_peer_certificate"),
    ] {
        waypoint_request(&mut host, principal, "/orders/1");
        assert_eq!(pipeline.on_request_headers(&mut host), Action::Stop);
        assert_eq!(denied(&host), (status, reason.to_owned()), "{principal:?}");
    }
    // The filter state unreadable: fail closed.
    waypoint_request(&mut host, Some(FRONTEND), "/orders/1");
    host.failing_properties = vec!["filter_state.io.istio.peer_principal".into()];
    assert_eq!(pipeline.on_request_headers(&mut host), Action::Stop);
    assert_eq!(denied(&host).1, "identity_unavailable");
}

#[test]
fn keys_pinned_in_the_vm_environment_refuse_an_unsigned_policy() {
    let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let public = crate::signature::PublicKey::of_signing_key(&key).to_base64();
    let mut host = OfflineHost::at(NOW);
    host.environment.insert(
        crate::signature::REQUIRE_SIGNATURE_KEYS_ENV.into(),
        public.clone(),
    );
    let mut pipeline = Pipeline::new();
    assert!(pipeline.on_vm_start(&mut host));
    assert!(!pipeline.configure(&mut host, &plugin_config(json!({}))));
    let signature = crate::signature::sign(&key, &policy_bytes(false));
    assert!(pipeline.configure(
        &mut host,
        &plugin_config(json!({ "signature": signature.to_json() }))
    ));
    // Set but unusable, or pinned in two places: the VM does not start.
    host.environment.insert(
        crate::signature::REQUIRE_SIGNATURE_KEYS_ENV.into(),
        "not-a-key".into(),
    );
    assert!(!Pipeline::new().on_vm_start(&mut host));
    host.environment.insert(
        crate::signature::REQUIRE_SIGNATURE_KEYS_ENV.into(),
        public.clone(),
    );
    host.vm_configuration = Some(
        json!({"require_signature": {"keys": [public]}})
            .to_string()
            .into_bytes(),
    );
    assert!(!Pipeline::new().on_vm_start(&mut host));
}

/// Decisions with `effect` (`allow` / `deny`), whatever their reason.
fn effect_count(host: &OfflineHost, effect: &str) -> u64 {
    let prefix = format!("meshward.decisions.decision={effect}.");
    host.counters
        .iter()
        .filter(|(name, _)| name.starts_with(&prefix))
        .map(|(_, n)| n)
        .sum()
}

/// Decisions with reason `code`, whatever their effect.
fn reason_count(host: &OfflineHost, code: &str) -> u64 {
    let suffix = format!(".reason={code}");
    host.counters
        .iter()
        .filter(|(name, _)| name.starts_with("meshward.decisions.") && name.ends_with(&suffix))
        .map(|(_, n)| n)
        .sum()
}
