//! The peer's identity as the host established it on another connection:
//! an Istio waypoint.
//!
//! A waypoint terminates HBONE (HTTP/2 `CONNECT` over mTLS) on its
//! `connect_terminate` listener and hands each tunnelled stream to the
//! internal listener `main_internal`, where HTTP filters such as meshward run.
//! That inner connection has no TLS, so there is no peer certificate to read.
//! Istio carries the caller's identity across in filter state instead: the
//! outer listener's `set_filter_state` filter (`connect_authority` in
//! istio/istio `pilot/pkg/xds/filters/filters.go`) stores
//! `%DOWNSTREAM_PEER_URI_SAN%` as the `envoy.string` object
//! `io.istio.peer_principal`, shared with the upstream `ONCE`, and the
//! internal connection inherits it. A proxy-wasm filter reads it with
//! `get_property(["filter_state", "io.istio.peer_principal"])`.
//!
//! What this source can check, and what it cannot:
//!
//! * checked: the value is one SPIFFE ID (Envoy's `%DOWNSTREAM_PEER_URI_SAN%`
//!   joins several URI SANs with `,`: more than one is
//!   [`Reason::MultipleUriSans`]); its trust domain is one the policy trusts;
//!   the SPIFFE ID is not revoked. Every writer of this key in Istio stores
//!   the full URI (`spiffe://…`: the waypoint's `set_filter_state`,
//!   istio/proxy's `istio_authn` network filter, the sandwich mode's PROXY
//!   protocol TLV relay), so the scheme-less form of Istio's
//!   `AuthorizationPolicy` principals is refused ([`Reason::PeerNotSpiffe`]).
//! * not checked, because there is no certificate here: the certificate's
//!   lifetime bound, its serial (revocation by serial), its other SANs beyond
//!   what the joined value shows, and any binding of a forwarded certificate
//!   to the connection. The outer listener verified the chain and the
//!   validity dates during the handshake; a certificate that expires while a
//!   tunnel stays open is not noticed. A configuration that asks for lifetime
//!   bounds or serial revocation with this source is refused at load
//!   ([`crate::config::ConfigError::NeedsCertificate`]), and a fetched
//!   revocation list that names serials makes every request fail closed.
//! * trusted without proof: that the value was written by the host and not
//!   by the caller. Filter state is not reachable from request headers; it
//!   is only as good as the Envoy configuration that sets it.

use crate::decision::Reason;
use crate::identity::cert::spiffe_id_from_uri_san;
use crate::identity::RevocationList;
use crate::spiffe::SpiffeId;

/// The filter-state key Istio waypoints use for the HBONE peer's identity.
pub const ISTIO_PEER_PRINCIPAL_KEY: &str = "io.istio.peer_principal";

/// Verifies the principal the host stored for this connection.
///
/// `value` is what the host returned for the filter-state object (`None`
/// when it is absent); `trusts_domain` says whether the policy trusts a
/// trust domain; `revocation` is the revocation list in force.
pub fn verify_host_principal(
    value: Option<&[u8]>,
    trusts_domain: impl Fn(&str) -> bool,
    revocation: &RevocationList,
) -> Result<SpiffeId, Reason> {
    // No certificate to take a serial from: a list that revokes by serial
    // cannot be honoured, so nothing passes while it is in force.
    if !revocation.serials().is_empty() {
        return Err(Reason::IdentityUnavailable);
    }
    let text = match value {
        None => return Err(Reason::NoPeerCertificate),
        Some(bytes) => std::str::from_utf8(bytes).map_err(|_| Reason::MalformedSpiffeId)?,
    };
    // Envoy's formatters print `-` for a value that is not there (no client
    // certificate, or one without URI SANs).
    if text.is_empty() || text == "-" {
        return Err(Reason::NoPeerCertificate);
    }
    if text.contains(',') {
        return Err(Reason::MultipleUriSans);
    }
    let id = spiffe_id_from_uri_san(text)?;
    if !trusts_domain(id.trust_domain()) {
        return Err(Reason::UntrustedTrustDomain);
    }
    revocation.check_spiffe_id(&id)?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::RevokedConfig;

    fn trusted(td: &str) -> bool {
        td == "cluster.local"
    }

    fn verify(value: &str) -> Result<String, Reason> {
        verify_host_principal(Some(value.as_bytes()), trusted, &RevocationList::new())
            .map(|id| id.as_str().to_owned())
    }

    #[test]
    fn reads_the_full_uri_only() {
        let id = "spiffe://cluster.local/ns/shop/sa/frontend";
        assert_eq!(verify(id).unwrap(), id);
        assert_eq!(
            verify("cluster.local/ns/shop/sa/frontend"),
            Err(Reason::PeerNotSpiffe)
        );
    }

    #[test]
    fn absence_and_envoys_placeholder_are_no_peer() {
        let none = RevocationList::new();
        assert_eq!(
            verify_host_principal(None, trusted, &none),
            Err(Reason::NoPeerCertificate)
        );
        assert_eq!(verify(""), Err(Reason::NoPeerCertificate));
        assert_eq!(verify("-"), Err(Reason::NoPeerCertificate));
    }

    #[test]
    fn malformed_foreign_and_multiple_identities_are_refused() {
        assert_eq!(
            verify("spiffe://cluster.local/ns/a/sa/b,spiffe://cluster.local/ns/c/sa/d"),
            Err(Reason::MultipleUriSans)
        );
        assert_eq!(
            verify("https://cluster.local/x"),
            Err(Reason::PeerNotSpiffe)
        );
        assert_eq!(
            verify("spiffe://Cluster.Local/ns/a"),
            Err(Reason::MalformedSpiffeId)
        );
        assert_eq!(
            verify("spiffe://cluster.local/ns//a"),
            Err(Reason::MalformedSpiffeId)
        );
        assert_eq!(
            verify("spiffe://cluster.local/../a"),
            Err(Reason::MalformedSpiffeId)
        );
        assert_eq!(
            verify_host_principal(
                Some(b"spiffe://cluster.local/\xff"),
                trusted,
                &RevocationList::new()
            ),
            Err(Reason::MalformedSpiffeId)
        );
    }

    #[test]
    fn untrusted_domains_and_revoked_ids_are_refused() {
        assert_eq!(
            verify("spiffe://evil.example/ns/shop/sa/frontend"),
            Err(Reason::UntrustedTrustDomain)
        );
        let revoked = RevocationList::from_config(
            &RevokedConfig {
                spiffe_ids: vec!["spiffe://cluster.local/ns/shop/sa/frontend".to_owned()],
                ..RevokedConfig::default()
            },
            &[],
        )
        .unwrap();
        assert_eq!(
            verify_host_principal(
                Some(b"spiffe://cluster.local/ns/shop/sa/frontend"),
                trusted,
                &revoked
            ),
            Err(Reason::SpiffeIdRevoked)
        );
    }

    #[test]
    fn a_list_revoking_serials_fails_closed() {
        let serials =
            RevocationList::from_config(&RevokedConfig::default(), &["0a".to_owned()]).unwrap();
        assert_eq!(
            verify_host_principal(Some(b"spiffe://cluster.local/ns/a/sa/b"), trusted, &serials),
            Err(Reason::IdentityUnavailable)
        );
    }
}
