//! Waypoint fidelity: the WasmPlugin `meshward istio --mode waypoint`
//! generates, run in an Envoy built the way istiod builds an ambient
//! waypoint (`tests/src/istio.rs`, [`IstioWaypoint`], with the Istio sources
//! it follows), reached over HBONE (`tests/src/hbone.rs`: HTTP/2 `CONNECT`
//! over mTLS, as ztunnel sends it).
//!
//! The filter runs on the internal listener behind the HBONE terminator,
//! where the connection has no TLS: it must read the caller from the
//! `io.istio.peer_principal` filter state the terminator set from the HBONE
//! peer's certificate, decide by it, ignore an `x-forwarded-client-cert`
//! the client wrote, and refuse a trust domain the policy does not trust, a
//! certificate with two URI SANs, and a revoked SPIFFE ID.

use std::fs;

use meshward_e2e::expect::{allowed, app_header_one, denied};
use meshward_e2e::hbone::HboneOutcome;
use meshward_e2e::istio::{module_from_layout, IstioWaypoint};
use meshward_e2e::pki::Ca;
use meshward_e2e::workspace::{filter_wasm, repo_root, Scratch};
use meshward_e2e::{Request, Response};
use meshward_policy::compile_source;
use meshward_policy::istio::{self, Attachment, IstioOptions, Mode, TargetKind, TargetRef};
use meshward_policy::oci::{Image, ImageFormat};
use serde::Deserialize;
use serde_json::Value;

const FRONTEND: &str = "spiffe://cluster.local/ns/shop/sa/frontend";
/// HBONE's `:authority`: the destination pod (or service VIP) and port.
const DESTINATION: &str = "10.0.0.7:8080";

/// Packages the filter, generates the waypoint plugin for
/// `istio/examples/shop-ambient.policy`, and starts the waypoint with it.
/// `edit` changes the plugin configuration as an operator might (runtime
/// data such as revocation lists).
fn waypoint(label: &str, edit: impl FnOnce(&mut Value)) -> (IstioWaypoint, Ca, Scratch) {
    let scratch = Scratch::new(label);
    let wasm = fs::read(filter_wasm()).unwrap();
    let image = Image::build(&wasm, ImageFormat::WasmArtifact, "meshward").unwrap();
    let layout = scratch.path().join("oci");
    image.write_layout(&layout, "0.1.0").unwrap();
    let module = module_from_layout(&layout);

    let source =
        fs::read_to_string(repo_root().join("istio/examples/shop-ambient.policy")).unwrap();
    let compiled = compile_source(&source, "shop-ambient.policy").unwrap();
    let mut opts = IstioOptions::new(
        "shop",
        Vec::new(),
        "oci://registry.example.com/meshward/filter:0.1.0",
    );
    opts.mode = Mode::Waypoint;
    opts.attachment = Attachment::Targets(vec![TargetRef {
        kind: TargetKind::Gateway,
        name: "waypoint".into(),
    }]);
    opts.sha256 = Some(image.manifest.digest_hex().to_owned());
    let yaml = istio::generate(&compiled, &[], &opts)
        .unwrap()
        .to_yaml("waypoint fidelity")
        .unwrap();
    let mut plugin = serde_yaml::Deserializer::from_str(&yaml)
        .map(|d| Value::deserialize(d).unwrap())
        .find(|d| d["kind"] == "WasmPlugin")
        .unwrap();
    assert_eq!(
        plugin["spec"]["pluginConfig"]["peer_certificate"],
        "filter_state"
    );
    edit(&mut plugin["spec"]["pluginConfig"]);

    // A second trust domain whose CA the waypoint accepts at the TLS layer
    // (a federated mesh), but which the policy does not trust.
    let foreign = Ca::new("evil.example");
    let waypoint = IstioWaypoint::start(label, &plugin, &module, &[foreign.cert_pem()])
        .unwrap_or_else(|e| panic!("{e}"));
    (waypoint, foreign, scratch)
}

fn send(waypoint: &IstioWaypoint, identity: &meshward_e2e::Leaf, request: &Request) -> Response {
    match waypoint
        .client(identity)
        .send(DESTINATION, request)
        .unwrap()
    {
        HboneOutcome::Response(response) => response,
        other => panic!(
            "no response through the tunnel: {other:?}\n{}",
            waypoint.envoy.log()
        ),
    }
}

#[test]
fn a_waypoint_decides_by_the_hbone_peer_identity() {
    let (waypoint, foreign, _scratch) = waypoint("waypoint-identity", |_| {});
    assert_eq!(
        waypoint.filter_name,
        "extensions.istio.io/wasmplugin/shop.meshward-waypoint"
    );
    let hour = time::Duration::hours(1);
    let frontend = waypoint.ca.svid("shop", "frontend", hour, false);
    let checkout = waypoint.ca.svid("shop", "checkout", hour, false);

    // Allowed by the HBONE peer's identity; the app sees it.
    let echo = allowed(&send(
        &waypoint,
        &frontend,
        &Request::get("/orders/42").header("x-request-id", "waypoint-1"),
    ));
    assert_eq!(app_header_one(&echo, "x-meshward-peer"), FRONTEND);
    let audit = waypoint.envoy.audit_for("waypoint-1");
    assert_eq!(audit.str("peer"), Some(FRONTEND));
    assert_eq!(audit.str("rule"), Some("frontend-reads-orders"));

    // Denied: the same caller, an intent it is not granted.
    let before = waypoint.upstream.count();
    denied(
        &send(&waypoint, &frontend, &Request::post("/orders", b"{}")),
        403,
        "no_matching_rule",
    );
    // A forged XFCC naming the workload that may create orders changes
    // nothing (the inner connection manager forwards it: APPEND_FORWARD).
    let forged = format!(
        "By=spiffe://cluster.local/ns/shop/sa/orders;URI={}",
        checkout.spiffe_id()
    );
    denied(
        &send(
            &waypoint,
            &frontend,
            &Request::post("/orders", b"{}")
                .header("x-forwarded-client-cert", &forged)
                .header("x-request-id", "waypoint-forged"),
        ),
        403,
        "no_matching_rule",
    );
    assert_eq!(
        waypoint.envoy.audit_for("waypoint-forged").str("peer"),
        Some(FRONTEND)
    );
    assert_eq!(
        waypoint.upstream.count(),
        before,
        "a denied request reached the app"
    );
    // The workload that may create orders does, by its own certificate.
    allowed(&send(
        &waypoint,
        &checkout,
        &Request::post("/orders", b"{}"),
    ));

    // A trust domain the TLS layer accepts but the policy does not trust.
    let intruder = foreign.svid("/ns/shop/sa/frontend").issue();
    denied(
        &send(&waypoint, &intruder, &Request::get("/orders/42")),
        401,
        "untrusted_trust_domain",
    );
    // Two URI SANs: `%DOWNSTREAM_PEER_URI_SAN%` joins them with `,`, and
    // SPIFFE allows exactly one.
    let two = foreign
        .leaf_with_uris(&[FRONTEND, "spiffe://cluster.local/ns/shop/sa/checkout"])
        .issue();
    denied(
        &send(&waypoint, &two, &Request::get("/orders/42")),
        401,
        "multiple_uri_sans",
    );
}

#[test]
fn a_waypoint_honours_spiffe_id_revocation() {
    let (waypoint, _foreign, _scratch) = waypoint("waypoint-revoked", |config| {
        config["revoked"] = serde_json::json!({ "spiffe_ids": [FRONTEND] });
    });
    let frontend = waypoint
        .ca
        .svid("shop", "frontend", time::Duration::hours(1), false);
    denied(
        &send(&waypoint, &frontend, &Request::get("/orders/42")),
        401,
        "spiffe_id_revoked",
    );
}
