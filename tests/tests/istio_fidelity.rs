//! Istio fidelity: the manifests `meshward istio` generates, run the way
//! Istio would run them (see `tests/src/istio.rs` for what istiod and the
//! istio-agent do, with file references), on the real filter packaged by
//! `meshward oci`, with Istio-style identities
//! (`spiffe://cluster.local/ns/NS/sa/SA`) and Istio's
//! `x-forwarded-client-cert` handling.
//!
//! 1. Istio's defaults (`APPEND_FORWARD`, no certificate in XFCC) with
//!    `--peer-certificate connection-only`: decisions by the connection's
//!    identity; a forged XFCC (which `APPEND_FORWARD` lets through) changes
//!    nothing; Istio's `BASE` path normalization (no slash merging) does not
//!    open a path trick.
//! 2. The default `--peer-certificate forwarded`, with the generated
//!    `EnvoyFilter` merged into the inbound connection manager as istiod
//!    would: the certificate reaches the filter, so the policy's lifetime
//!    bound is enforced.
//! 3. Signed policies (`--sign`, `--pin-key`): the keys travel in
//!    `vmConfig.env`, which istiod renders as the VM's environment; a
//!    signed policy loads, an unsigned one is refused (every request 500:
//!    there is no earlier configuration to keep serving).
//! 4. `--bundle-url`: the bundle source travels in `vmConfig.env`
//!    (`MESHWARD_BUNDLE`), the generated `ServiceEntry` becomes the cluster
//!    istiod renders (`outbound|PORT||HOST`), and the filter pulls a signed
//!    bundle from a real nginx through it.

use std::fs;

use meshward_e2e::expect::{allowed, app_header, app_header_one, denied};
use meshward_e2e::istio::{module_from_layout, IstioSidecar, Xfcc};
use meshward_e2e::workspace::{filter_wasm, Scratch};
use meshward_e2e::Request;
use meshward_engine::config::FilterConfig;
use meshward_engine::signature::PublicKey;
use meshward_policy::compile_source;
use meshward_policy::istio::{self, IstioOptions, KeyPinning, Mode, PeerCertificate};
use meshward_policy::oci::{Image, ImageFormat};
use serde::Deserialize;
use serde_json::Value;

const FRONTEND: &str = "spiffe://cluster.local/ns/shop/sa/frontend";
const ORDERS: &str = "spiffe://cluster.local/ns/shop/sa/orders";

fn policy(lifetime_bound: Option<&str>) -> String {
    let bound = lifetime_bound
        .map(|b| format!("  max_cert_lifetime {b}\n"))
        .unwrap_or_default();
    format!(
        r#"
policy "istio-fidelity" {{
  trust_domains "cluster.local"
{bound}}}
intent orders.read {{
  method GET
  path "/orders/{{id}}"
}}
allow frontend-reads-orders {{
  subject "{FRONTEND}"
  intent orders.read
}}
"#
    )
}

/// What an operator does: package the filter, generate the manifests for the
/// `orders` workload, apply them. Returns the documents as the API server
/// would store them (parsed from the YAML) and the module the agent fetched.
struct Deployed {
    /// Every generated document.
    docs: Vec<Value>,
    /// In bundle mode, the plugin configuration the bundle must carry.
    bundle_config: Option<Value>,
    plugin: Value,
    outbound: Option<Value>,
    envoy_filter: Option<Value>,
    module: std::path::PathBuf,
    policy_hash: String,
    _scratch: Scratch,
}

fn deploy(label: &str, source: &str, peer: PeerCertificate, mode: Mode) -> Deployed {
    deploy_with(label, source, |opts| {
        opts.mode = mode;
        opts.peer_certificate = peer;
    })
}

fn deploy_with(label: &str, source: &str, options: impl FnOnce(&mut IstioOptions)) -> Deployed {
    let scratch = Scratch::new(label);
    let wasm = fs::read(filter_wasm()).unwrap();
    let image = Image::build(&wasm, ImageFormat::WasmArtifact, "meshward").unwrap();
    let layout = scratch.path().join("oci");
    image.write_layout(&layout, "0.1.0").unwrap();

    let compiled = compile_source(source, "istio-fidelity.policy").unwrap();
    let mut opts = IstioOptions::new(
        "shop",
        vec![("app".into(), "orders".into())],
        "oci://registry.example.com/meshward/filter:0.1.0",
    );
    opts.sha256 = Some(image.manifest.digest_hex().to_owned());
    options(&mut opts);
    let generated = istio::generate(&compiled, &[], &opts).unwrap();
    let yaml = generated.to_yaml("istio fidelity").unwrap();
    let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&yaml)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect();
    let plugin_for = |mode: &str| {
        docs.iter()
            .find(|d| d["kind"] == "WasmPlugin" && d["spec"]["match"][0]["mode"] == mode)
            .cloned()
    };
    let mut plugin = plugin_for("SERVER").unwrap();
    let mut outbound = plugin_for("CLIENT");
    let envoy_filter = docs.iter().find(|d| d["kind"] == "EnvoyFilter").cloned();

    // The agent pins the image by its manifest digest and reads the module
    // out of the layer with the Wasm media type: it is our filter.
    assert_eq!(
        plugin["spec"]["sha256"].as_str().unwrap(),
        image.manifest.digest_hex()
    );
    let module = module_from_layout(&layout);
    assert!(
        fs::read(&module).unwrap() == wasm,
        "the image layer is not the filter"
    );

    // `direction` is part of the plugin configuration contract; a filter
    // build that does not know it yet refuses the whole configuration.
    for p in std::iter::once(&mut plugin).chain(outbound.as_mut()) {
        let Some(config) = p["spec"].get("pluginConfig").map(Value::to_string) else {
            continue;
        };
        if let Err(e) = FilterConfig::from_json(config.as_bytes()) {
            panic!("the engine refuses the generated pluginConfig: {e}");
        }
    }
    Deployed {
        docs,
        bundle_config: generated.bundle_config,
        plugin,
        outbound,
        envoy_filter,
        module,
        policy_hash: compiled.hash_hex(),
        _scratch: scratch,
    }
}

#[test]
fn istio_defaults_with_connection_only_decide_by_the_mtls_identity() {
    let d = deploy(
        "istio-default",
        &policy(None),
        PeerCertificate::ConnectionOnly,
        Mode::Both,
    );
    assert!(d.envoy_filter.is_none());
    let sidecar = IstioSidecar::start(
        "istio-default",
        "shop",
        "orders",
        &d.plugin,
        d.outbound.as_ref(),
        &d.module,
        &Xfcc::istio_default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        sidecar.filter_name,
        "extensions.istio.io/wasmplugin/shop.meshward-inbound"
    );
    let hour = time::Duration::hours(1);
    let frontend = sidecar.ca.svid("shop", "frontend", hour, false);
    let payments = sidecar.ca.svid("shop", "payments", hour, false);

    // Allowed: the app gets the verified identity and Istio's XFCC element.
    let response = sidecar
        .client(&frontend)
        .send(&Request::get("/orders/7").header("x-request-id", "istio-1"))
        .unwrap();
    let echo = allowed(&response);
    assert_eq!(app_header_one(&echo, "x-meshward-peer"), FRONTEND);
    assert_eq!(app_header_one(&echo, "x-meshward-policy"), d.policy_hash);
    let xfcc = app_header_one(&echo, "x-forwarded-client-cert");
    assert!(
        xfcc.starts_with(&format!("By={ORDERS};Hash="))
            && xfcc.ends_with(&format!(";Subject=\"\";URI={FRONTEND}")),
        "not Istio's XFCC form: {xfcc}"
    );
    let audit = sidecar.envoy.audit_for("istio-1");
    assert_eq!(audit.str("peer"), Some(FRONTEND));
    assert_eq!(audit.str("rule"), Some("frontend-reads-orders"));

    // Denied: another workload of the namespace.
    let before = sidecar.upstream.count();
    denied(
        &sidecar
            .client(&payments)
            .send(&Request::get("/orders/7"))
            .unwrap(),
        403,
        "no_matching_rule",
    );
    // APPEND_FORWARD keeps a client-sent XFCC: claiming the frontend in it
    // changes nothing, the decision is the connection's.
    let forged = format!("By={ORDERS};URI={FRONTEND}");
    denied(
        &sidecar
            .client(&payments)
            .send(&Request::get("/orders/7").header("x-forwarded-client-cert", &forged))
            .unwrap(),
        403,
        "no_matching_rule",
    );
    // Istio's default normalization does not merge slashes; the filter
    // still refuses a path it cannot classify canonically.
    denied(
        &sidecar
            .client(&frontend)
            .send(&Request::get("//orders/7"))
            .unwrap(),
        403,
        "non_canonical_path",
    );
    assert_eq!(
        sidecar.upstream.count(),
        before,
        "a denied request reached the app"
    );
    // The app saw exactly one XFCC element per allowed request.
    assert_eq!(app_header(&echo, "x-forwarded-client-cert").len(), 1);

    // The outbound plugin (`CLIENT`, a second WasmPlugin, empty vm_id like
    // every Istio plugin) verifies the chain the inbound plugin sealed for
    // the app: the two share the seal key.
    let chain = app_header_one(&echo, "x-meshward-chain").to_owned();
    let outbound = sidecar.outbound_addr().expect("outbound listener");
    let forwarded = plain_send(
        outbound,
        &Request::get("/payments/1").header("x-meshward-chain", &chain),
    );
    assert_eq!(
        forwarded.0, 200,
        "the app's own chain was not forwarded: {}",
        forwarded.1
    );
    // A chain the app edited is not.
    let mut edited = chain.clone().into_bytes();
    let at = edited.len() / 2;
    edited[at] = if edited[at] == b'A' { b'B' } else { b'A' };
    let edited = String::from_utf8(edited).unwrap();
    let refused = plain_send(
        outbound,
        &Request::get("/payments/1").header("x-meshward-chain", &edited),
    );
    assert_eq!(
        refused.0, 403,
        "an edited chain left the workload: {}",
        refused.1
    );
}

/// One plaintext HTTP/1.1 request (the app talking to its sidecar's
/// outbound listener); returns the status and the body.
fn plain_send(addr: std::net::SocketAddr, request: &Request) -> (u16, String) {
    use std::io::Write as _;
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    stream.write_all(&request.to_bytes()).unwrap();
    let message = meshward_e2e::http::read_message(
        &mut std::io::BufReader::new(stream),
        meshward_e2e::http::BodyDefault::UntilClose,
    )
    .unwrap()
    .unwrap();
    let status = message
        .start_line
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    (status, String::from_utf8_lossy(&message.body).into_owned())
}

#[test]
fn generated_envoy_filter_delivers_the_certificate_for_lifetime_bounds() {
    let d = deploy(
        "istio-forwarded",
        &policy(Some("2h")),
        PeerCertificate::Forwarded,
        Mode::Server,
    );
    let envoy_filter = d
        .envoy_filter
        .as_ref()
        .expect("forwarded mode adds an EnvoyFilter");
    let xfcc = Xfcc::patched(envoy_filter);
    assert_eq!(xfcc.forward, "SANITIZE_SET");
    let sidecar = IstioSidecar::start(
        "istio-forwarded",
        "shop",
        "orders",
        &d.plugin,
        None,
        &d.module,
        &xfcc,
    )
    .unwrap_or_else(|e| panic!("{e}"));

    let short = sidecar
        .ca
        .svid("shop", "frontend", time::Duration::hours(1), false);
    let echo = allowed(
        &sidecar
            .client(&short)
            .send(&Request::get("/orders/7"))
            .unwrap(),
    );
    assert_eq!(app_header_one(&echo, "x-meshward-peer"), FRONTEND);
    let forwarded = app_header_one(&echo, "x-forwarded-client-cert");
    assert!(
        forwarded.contains(";Cert=\""),
        "no certificate in XFCC: {forwarded}"
    );

    // istiod's default workload certificates live 24h: over this policy's 2h.
    let long = sidecar
        .ca
        .svid("shop", "frontend", time::Duration::hours(24), false);
    denied(
        &sidecar
            .client(&long)
            .send(&Request::get("/orders/7"))
            .unwrap(),
        401,
        "cert_lifetime_exceeds_bound",
    );
}

#[test]
fn signing_keys_pinned_in_vm_env_admit_only_signed_policies() {
    let key = ed25519_dalek::SigningKey::from_bytes(&[42; 32]);
    let pinned = KeyPinning::Inline(vec![PublicKey::of_signing_key(&key).to_base64()]);
    let signed = deploy_with("istio-signed", &policy(None), |opts| {
        opts.peer_certificate = PeerCertificate::ConnectionOnly;
        opts.signing_key = Some(key.clone());
        opts.pinned_keys = pinned.clone();
    });
    // What istiod gives the VM: MESHWARD_REQUIRE_SIGNATURE_KEYS in its
    // environment, nothing in the plugin configuration.
    let env = &signed.plugin["spec"]["vmConfig"]["env"][0];
    assert_eq!(env["name"], "MESHWARD_REQUIRE_SIGNATURE_KEYS");
    assert!(signed.plugin["spec"]["pluginConfig"]
        .get("require_signature")
        .is_none());
    let sidecar = IstioSidecar::start(
        "istio-signed",
        "shop",
        "orders",
        &signed.plugin,
        None,
        &signed.module,
        &Xfcc::istio_default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let frontend = sidecar
        .ca
        .svid("shop", "frontend", time::Duration::hours(1), false);
    allowed(
        &sidecar
            .client(&frontend)
            .send(&Request::get("/orders/7"))
            .unwrap(),
    );
    assert!(
        sidecar.envoy.log().contains("signature verified"),
        "{}",
        sidecar.envoy.log()
    );

    // The same pinned keys, a policy nobody signed: the filter refuses the
    // configuration; with no earlier one, every request is answered 500.
    let unsigned = deploy_with("istio-unsigned", &policy(None), |opts| {
        opts.peer_certificate = PeerCertificate::ConnectionOnly;
        opts.pinned_keys = pinned;
    });
    let sidecar = IstioSidecar::start(
        "istio-unsigned",
        "shop",
        "orders",
        &unsigned.plugin,
        None,
        &unsigned.module,
        &Xfcc::istio_default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let frontend = sidecar
        .ca
        .svid("shop", "frontend", time::Duration::hours(1), false);
    let response = sidecar
        .client(&frontend)
        .send(&Request::get("/orders/7"))
        .unwrap();
    assert_eq!(response.status, 500, "{response:?}");
    assert_eq!(sidecar.upstream.count(), 0, "an unsigned policy served");
    let log = sidecar.envoy.log();
    assert!(log.contains("the policy is not signed"), "{log}");
}

#[test]
fn bundle_url_pulls_signed_bundles_through_the_service_entry_cluster() {
    use meshward_e2e::bundle_server::{free_port, Mode as Serving, Nginx, BUNDLE_PATH};
    use meshward_e2e::istio::service_entry_clusters;
    use meshward_policy::istio::BundleOptions;

    let key = ed25519_dalek::SigningKey::from_bytes(&[43; 32]);
    let scratch = Scratch::new("istio-bundle-server");
    let port = free_port();
    let nginx = Nginx::start(&scratch.path().join("nginx"), port, Serving::Serve);
    // `localhost`: a DNS name the STRICT_DNS cluster resolves to loopback.
    let url = format!("http://localhost:{port}{BUNDLE_PATH}");
    let d = deploy_with("istio-bundle", &policy(None), |opts| {
        opts.peer_certificate = PeerCertificate::ConnectionOnly;
        opts.bundle = Some(BundleOptions {
            url: url.clone(),
            keys: vec![PublicKey::of_signing_key(&key).to_base64()],
            poll_secs: Some(1),
            jitter: Some(0.0),
            timeout_ms: Some(2000),
            max_staleness_secs: Some(60),
            ..BundleOptions::default()
        });
    });
    // What istiod gives the VM: the source in its environment, no plugin
    // configuration at all.
    let env = &d.plugin["spec"]["vmConfig"]["env"][0];
    assert_eq!(env["name"], "MESHWARD_BUNDLE");
    assert!(d.plugin["spec"].get("pluginConfig").is_none());
    let clusters = service_entry_clusters(&d.docs);
    assert_eq!(clusters.len(), 1);
    let cluster = format!("outbound|{port}||localhost");
    assert_eq!(clusters[0]["name"], cluster.as_str());
    assert!(env["value"].as_str().unwrap().contains(&cluster));

    let sidecar = IstioSidecar::start_with_clusters(
        "istio-bundle",
        "shop",
        "orders",
        &d.plugin,
        None,
        &d.module,
        &Xfcc::istio_default(),
        &clusters,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let frontend = sidecar
        .ca
        .svid("shop", "frontend", time::Duration::hours(1), false);
    // Nothing published: no policy, every request denied.
    denied(
        &sidecar
            .client(&frontend)
            .send(&Request::get("/orders/7"))
            .unwrap(),
        403,
        "no_policy",
    );

    // The configuration `meshward istio --bundle-config-out` writes, packed
    // and signed as `meshward bundle` does, published with the script.
    let config = d.bundle_config.as_ref().unwrap().to_string();
    let hash = FilterConfig::from_json(config.as_bytes())
        .unwrap()
        .policy
        .hash()
        .to_owned();
    let bytes = meshward_engine::bundle::encode(1, 0, &hash, config.as_bytes(), &key).unwrap();
    nginx.publish(&bytes);
    let revision = "wasmcustom.meshward.bundle.revision";
    sidecar
        .envoy
        .wait_until("revision 1", std::time::Duration::from_secs(20), |e| {
            e.stats(revision).get(revision) == Some(&1)
        });
    let echo = allowed(
        &sidecar
            .client(&frontend)
            .send(&Request::get("/orders/7"))
            .unwrap(),
    );
    assert_eq!(app_header_one(&echo, "x-meshward-policy"), d.policy_hash);
    assert!(
        sidecar.envoy.log().contains("bundle revision 1 in force"),
        "{}",
        sidecar.envoy.log()
    );
    // The polls reached nginx; once the bundle was in force they were
    // conditional and answered 304.
    let not_modified = "wasmcustom.meshward.bundle.not_modified";
    sidecar
        .envoy
        .wait_until("a 304", std::time::Duration::from_secs(20), |e| {
            e.stats(not_modified)
                .get(not_modified)
                .is_some_and(|n| *n >= 1)
        });
    let access = fs::read_to_string(scratch.path().join("nginx/nginx-access.log")).unwrap();
    assert!(
        access.contains(&format!("\"GET {BUNDLE_PATH} HTTP/1.1\" 304")),
        "{access}"
    );
}
