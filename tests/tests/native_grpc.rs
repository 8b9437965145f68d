//! gRPC denies from the native build are gRPC errors, not successes, and
//! every local reply carries the wasm build's response code details.
//!
//! Envoy 1.40's local reply from a dynamic module answers a gRPC request
//! with `grpc-status: 0` (success) unless the reply's headers carry a
//! `grpc-status`, whatever the HTTP status; so the module sends its deny
//! with `grpc-status` 7 (PERMISSION_DENIED) for a 403, 16 (UNAUTHENTICATED)
//! for a 401, `grpc-message` and the reason header, and Envoy answers HTTP
//! 200 trailers-only with them. The same local reply records the details
//! (`meshward_denied{<reason>}`, `%RESPONSE_CODE_DETAILS%`), as the wasm
//! build's does. Checked with a real gRPC-style request (HTTP/2,
//! `content-type: application/grpc`, a length-prefixed message) against
//! Envoy with `libmeshward.so`; what Envoy sent downstream is read from its
//! own access log (`%GRPC_STATUS(NUMBER)%`, computed from the response it
//! encoded, and `%RESPONSE_CODE_DETAILS%`), and the HTTP status from the
//! client.

use meshward_e2e::build::FilterBuild;
use meshward_e2e::http2::{H2Client, H2Outcome, H2Request};
use meshward_e2e::{Mesh, Request, TlsClient};

const POLICY: &str = r#"
policy "grpc" {
  trust_domains "shop.example"
}

intent orders.get_rpc {
  grpc "shop.v1.Orders/Get"
}

intent orders.cancel_rpc {
  grpc "shop.v1.Orders/Cancel"
}

allow frontend-gets {
  subject "spiffe://shop.example/ns/shop/sa/frontend"
  intent orders.get_rpc
}
"#;

/// One access-log line per request, on stdout (collected with Envoy's log),
/// beside the shipped JSON access log.
const ACCESS_LOG: &str = r#"          - name: envoy.access_loggers.stdout
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
              log_format:
                text_format_source:
                  inline_string: "grpc-access id=%REQ(X-REQUEST-ID)% code=%RESPONSE_CODE% grpc=%GRPC_STATUS(NUMBER)% reason=%RESP(X-MESHWARD-REASON)% details=%RESPONSE_CODE_DETAILS%\n"
"#;

/// Envoy (demo.yaml, the native module) with the extra access log.
fn start() -> Mesh {
    FilterBuild::pin(FilterBuild::Native);
    let anchor = "          access_log:\n";
    Mesh::builder(POLICY)
        .label("native-grpc")
        .edit_config(move |yaml| {
            assert_eq!(
                yaml.matches(anchor).count(),
                1,
                "envoy/demo.yaml changed: not one `{anchor}`"
            );
            yaml.replace(anchor, &format!("{anchor}{ACCESS_LOG}"))
        })
        .start()
}

/// A unary gRPC call: HTTP/2 POST, gRPC content type, one empty message.
fn grpc_call(method: &str, request_id: &str) -> H2Request {
    H2Request::new("POST", method)
        .field("content-type", "application/grpc")
        .field("te", "trailers")
        .field("x-request-id", request_id)
        .body(&[0, 0, 0, 0, 0])
}

/// The access-log line of `request_id` (waits up to 10 s).
fn access_line(mesh: &Mesh, request_id: &str) -> String {
    let needle = format!("grpc-access id={request_id} ");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(line) = mesh.envoy.log().lines().find(|l| l.contains(&needle)) {
            return line.to_owned();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no access-log line for {request_id}; log:\n{}",
            mesh.envoy.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn grpc_denies_carry_a_grpc_error_status_and_plain_http_denies_stay_http() {
    let mesh = start();
    let ca = mesh.pki.shop.cert_der();

    // Denied by policy (403): grpc-status 7.
    let frontend = mesh.pki.workload("shop", "frontend");
    let client = H2Client::new(mesh.envoy.listener(), &ca, Some(&frontend));
    let before = mesh.upstream.count();
    match client.send(&grpc_call("/shop.v1.Orders/Cancel", "grpc-403")) {
        Ok(H2Outcome::Response { status, .. }) => {
            assert_eq!(status, 200, "a gRPC deny is HTTP 200")
        }
        other => panic!("no response to the denied gRPC call: {other:?}"),
    }
    let line = access_line(&mesh, "grpc-403");
    assert!(line.contains(" code=200 "), "{line}");
    assert!(
        line.contains(" grpc=7 "),
        "denied gRPC call not PERMISSION_DENIED: {line}"
    );
    assert!(line.contains(" reason=no_matching_rule "), "{line}");
    // The same response code details as the wasm build's deny.
    assert!(
        line.ends_with(" details=meshward_denied{no_matching_rule}"),
        "{line}"
    );
    assert_eq!(
        mesh.upstream.count(),
        before,
        "a denied call reached the app"
    );

    // A peer of a trust domain the policy does not trust (401): grpc-status 16.
    let partner = mesh.pki.partner.svid("/ns/billing/sa/invoices").issue();
    let client = H2Client::new(mesh.envoy.listener(), &ca, Some(&partner));
    match client.send(&grpc_call("/shop.v1.Orders/Get", "grpc-401")) {
        Ok(H2Outcome::Response { status, .. }) => assert_eq!(status, 200),
        other => panic!("no response to the unauthenticated gRPC call: {other:?}"),
    }
    let line = access_line(&mesh, "grpc-401");
    assert!(
        line.contains(" grpc=16 "),
        "401 not UNAUTHENTICATED: {line}"
    );
    assert!(line.contains(" reason=untrusted_trust_domain "), "{line}");
    assert!(
        line.ends_with(" details=meshward_denied{untrusted_trust_domain}"),
        "{line}"
    );
    assert_eq!(
        mesh.upstream.count(),
        before,
        "a denied call reached the app"
    );

    // Allowed: the call reaches the app.
    let client = H2Client::new(mesh.envoy.listener(), &ca, Some(&frontend));
    match client.send(&grpc_call("/shop.v1.Orders/Get", "grpc-allow")) {
        Ok(H2Outcome::Response { status, .. }) => assert_eq!(status, 200),
        other => panic!("no response to the allowed gRPC call: {other:?}"),
    }
    assert_eq!(
        mesh.upstream.count(),
        before + 1,
        "the allowed call did not reach the app"
    );

    // The same deny over plain HTTP stays an HTTP 403 with the JSON body.
    let http = TlsClient::new(mesh.envoy.listener(), &ca, Some(&frontend));
    let response = http
        .send(&Request::post("/shop.v1.Orders/Cancel", b"").header("x-request-id", "http-403"))
        .unwrap();
    assert_eq!(response.status, 403, "{}", response.text());
    assert_eq!(
        response.header("x-meshward-reason"),
        Some("no_matching_rule")
    );
    let body: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(body["reason"], "no_matching_rule");
    let line = access_line(&mesh, "http-403");
    assert!(line.contains(" code=403 "), "{line}");
    assert!(
        line.ends_with(" details=meshward_denied{no_matching_rule}"),
        "{line}"
    );
}
