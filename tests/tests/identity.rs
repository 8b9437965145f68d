//! Peer identity end to end: what happens to certificates that are missing,
//! foreign, too long-lived, revoked, ambiguous or expired.
//!
//! Two layers answer, and the tests check each where it applies:
//! - Envoy's TLS handshake (`require_client_certificate`, the SPIFFE
//!   validator with one CA bundle per trust domain) refuses no certificate,
//!   unknown CAs, non-SPIFFE and expired certificates: no HTTP exchange at all.
//! - The filter refuses what the handshake lets through but the policy does
//!   not: a trust domain Envoy federates with but the policy does not trust,
//!   a validity window over the policy's bound, a revoked serial, several URI
//!   SANs. Those get 401 with a precise reason.

use std::time::Duration;

use meshward_e2e::client::ClientError;
use meshward_e2e::expect::{allowed, app_header_one, denied};
use meshward_e2e::{Mesh, Request};
use rustls::AlertDescription;

const POLICY: &str = r#"
policy "e2e-identity" {
  trust_domains "shop.example"
  max_cert_lifetime 24h
}

intent orders.read {
  method GET
  path "/orders/{id}"
}

allow workloads-read-orders {
  subject any_authenticated
  intent orders.read
}
"#;

const HOUR: Duration = Duration::from_secs(3600);

fn mesh(label: &str) -> Mesh {
    Mesh::builder(POLICY).label(label).start()
}

fn get(id: &str) -> Request {
    Request::get("/orders/42").header("x-request-id", id)
}

/// Asserts the TLS handshake was refused with `alert` and nothing reached the app.
fn refused_in_handshake(
    result: Result<meshward_e2e::Response, ClientError>,
    alert: AlertDescription,
    mesh: &Mesh,
) {
    match result {
        Err(ClientError::Tls(rustls::Error::AlertReceived(got))) => {
            assert_eq!(got, alert, "TLS alert");
        }
        Err(other) => panic!("expected TLS alert {alert:?}, got error {other}"),
        Ok(r) => panic!(
            "expected the handshake to be refused ({alert:?}), got HTTP {} {}",
            r.status,
            r.text()
        ),
    }
    assert_eq!(mesh.upstream.count(), 0, "a refused peer reached the app");
}

#[test]
fn a_valid_short_lived_svid_is_allowed() {
    let mesh = mesh("valid");
    let svid = mesh.pki.workload("shop", "frontend");
    let echo = allowed(&mesh.send(Some(&svid), &get("valid")));
    assert_eq!(
        app_header_one(&echo, "x-meshward-peer"),
        "spiffe://shop.example/ns/shop/sa/frontend"
    );
}

#[test]
fn no_client_certificate_is_refused() {
    let mesh = mesh("no-cert");
    // The shipped config: the handshake itself fails.
    refused_in_handshake(
        mesh.try_send(None, &get("no-cert")),
        AlertDescription::CertificateRequired,
        &mesh,
    );
}

#[test]
fn no_client_certificate_is_denied_401_by_the_filter_when_tls_lets_it_through() {
    // Defence in depth: with client certificates turned off on the listener
    // by mistake, the filter still denies.
    let mesh = Mesh::builder(POLICY)
        .label("no-cert-optional-tls")
        .without_client_certificates()
        .start();
    let response = mesh.send(None, &get("no-cert-filter"));
    let body = denied(&response, 401, "no_peer_certificate");
    assert_eq!(body["request_id"], "no-cert-filter");
    assert!(body["intent"].is_null(), "{body}");
    assert_eq!(mesh.upstream.count(), 0);
    let audit = mesh.envoy.audit_for("no-cert-filter");
    assert!(audit.json["peer"].is_null(), "{}", audit.raw);
    assert_eq!(audit.json["reason"], "no_peer_certificate", "{}", audit.raw);
}

#[test]
fn a_trust_domain_the_policy_does_not_trust_is_denied_401() {
    let mesh = mesh("untrusted-domain");
    // partner.example: Envoy has its bundle (federation), the policy does not
    // trust it.
    let partner = mesh.pki.partner.svid("/ns/shop/sa/frontend").issue();
    let response = mesh.send(Some(&partner), &get("partner"));
    denied(&response, 401, "untrusted_trust_domain");
    assert_eq!(mesh.upstream.count(), 0);

    // A CA in no bundle cannot even claim a shop.example identity.
    let rogue = mesh.pki.rogue.svid("/ns/shop/sa/frontend").issue();
    refused_in_handshake(
        mesh.try_send(Some(&rogue), &get("rogue")),
        AlertDescription::CertificateUnknown,
        &mesh,
    );
}

#[test]
fn certificate_lifetime_over_the_policy_bound_is_denied_401() {
    let mesh = mesh("lifetime");
    // Valid right now, but issued for 48 h: over `max_cert_lifetime 24h`.
    let long = mesh
        .pki
        .shop
        .svid("/ns/shop/sa/frontend")
        .validity(HOUR, 48 * HOUR)
        .issue();
    denied(
        &mesh.send(Some(&long), &get("48h")),
        401,
        "cert_lifetime_exceeds_bound",
    );
    assert_eq!(mesh.upstream.count(), 0);

    // Exactly at the bound is fine; so is anything shorter.
    for (label, lifetime) in [("24h", 24 * HOUR), ("23h", 23 * HOUR)] {
        let ok = mesh
            .pki
            .shop
            .svid("/ns/shop/sa/frontend")
            .validity(HOUR, lifetime)
            .issue();
        allowed(&mesh.send(Some(&ok), &get(label)));
    }
}

#[test]
fn a_revoked_serial_is_denied_401_without_recompiling_the_policy() {
    const REVOKED: [u8; 8] = [0x4d, 0x57, 0x00, 0x01, 0xde, 0xad, 0xbe, 0xef];
    // Written the way an operator might: upper case, colon-separated.
    let mesh = Mesh::builder(POLICY)
        .label("revoked")
        .revoke("4D:57:00:01:DE:AD:BE:EF")
        .start();
    let revoked = mesh
        .pki
        .shop
        .svid("/ns/shop/sa/frontend")
        .serial(&REVOKED)
        .issue();
    assert_eq!(revoked.serial_hex, "4d570001deadbeef");
    denied(
        &mesh.send(Some(&revoked), &get("revoked")),
        401,
        "cert_revoked",
    );
    assert_eq!(mesh.upstream.count(), 0);

    // The same identity with a fresh certificate is fine.
    let fresh = mesh.pki.workload("shop", "frontend");
    allowed(&mesh.send(Some(&fresh), &get("fresh")));
}

#[test]
fn a_certificate_with_two_uri_sans_is_denied_401() {
    let mesh = mesh("two-uris");
    // Envoy's `connection.uri_san_peer_certificate` shows only the first; the
    // filter sees both in the forwarded certificate.
    let two = mesh
        .pki
        .shop
        .leaf_with_uris(&[
            "spiffe://shop.example/ns/shop/sa/frontend",
            "spiffe://shop.example/ns/ops/sa/admin",
        ])
        .issue();
    denied(
        &mesh.send(Some(&two), &get("two-uris")),
        401,
        "multiple_uri_sans",
    );
    assert_eq!(mesh.upstream.count(), 0);
}

#[test]
fn expired_and_non_spiffe_certificates_are_refused_in_the_handshake() {
    let mesh = mesh("expired");
    let expired = mesh.pki.shop.svid("/ns/shop/sa/frontend").expired().issue();
    refused_in_handshake(
        mesh.try_send(Some(&expired), &get("expired")),
        AlertDescription::CertificateUnknown,
        &mesh,
    );
    let not_spiffe = mesh
        .pki
        .shop
        .leaf_with_uris(&["https://shop.example/frontend"])
        .issue();
    refused_in_handshake(
        mesh.try_send(Some(&not_spiffe), &get("not-spiffe")),
        AlertDescription::CertificateUnknown,
        &mesh,
    );
}
