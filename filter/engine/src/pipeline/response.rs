//! Deny responses: status, body, headers and details, chosen once for every
//! host.

use super::host::LocalResponse;
use crate::audit::deny_body;
use crate::decision::Decision;
use crate::policy::Policy;

/// gRPC status for a request whose caller is not authenticated.
pub(crate) const GRPC_UNAUTHENTICATED: u32 = 16;
/// gRPC status for a request the policy does not allow.
pub(crate) const GRPC_PERMISSION_DENIED: u32 = 7;

/// Whether a request is gRPC, from its `content-type`.
pub fn is_grpc(content_type: &str) -> bool {
    let content_type = content_type.trim_start().as_bytes();
    content_type.len() >= 16
        && content_type
            .get(..16)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"application/grpc"))
        && matches!(content_type.get(16), None | Some(b'+' | b';'))
}

/// The local response for a deny: 401 when the caller's identity is missing
/// or invalid, 403 otherwise; a small JSON body `{decision, intent, reason,
/// request_id}`; `x-meshward-reason`; details `meshward_denied{<reason>}` for
/// Envoy's `%RESPONSE_CODE_DETAILS%`. A gRPC request also gets the matching
/// gRPC status (16 or 7) for hosts that send one themselves.
pub fn deny(
    policy: Option<&Policy>,
    decision: &Decision,
    request_id: Option<&str>,
    grpc: bool,
) -> LocalResponse {
    let status = decision.http_status();
    let code = decision.reason.code();
    LocalResponse {
        status,
        grpc_status: grpc.then_some(if status == 401 {
            GRPC_UNAUTHENTICATED
        } else {
            GRPC_PERMISSION_DENIED
        }),
        headers: vec![
            ("content-type", "application/json".to_owned()),
            ("x-meshward-reason", code.to_owned()),
        ],
        body: deny_body(policy, decision, request_id),
        details: super::publish::response_details(decision.reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::Reason;

    #[test]
    fn grpc_is_recognized_by_content_type() {
        assert!(is_grpc("application/grpc"));
        assert!(is_grpc("application/grpc+proto"));
        assert!(is_grpc("Application/GRPC;charset=utf-8"));
        assert!(!is_grpc("application/grpc-web"));
        assert!(!is_grpc("application/json"));
        assert!(!is_grpc(""));
    }

    #[test]
    fn deny_responses_say_why() {
        let unauthenticated = deny(None, &Decision::deny(Reason::NoPeerCertificate), None, true);
        assert_eq!(unauthenticated.status, 401);
        assert_eq!(unauthenticated.grpc_status, Some(GRPC_UNAUTHENTICATED));
        assert_eq!(
            unauthenticated.details,
            "meshward_denied{no_peer_certificate}"
        );
        let forbidden = deny(
            None,
            &Decision::deny(Reason::NoMatchingRule),
            Some("r"),
            false,
        );
        assert_eq!(forbidden.status, 403);
        assert_eq!(forbidden.grpc_status, None);
        assert!(forbidden.body.contains("\"reason\":\"no_matching_rule\""));
        assert!(forbidden
            .headers
            .contains(&("x-meshward-reason", "no_matching_rule".to_owned())));
    }
}
