//! Assertions on what the filter answered and what the app saw, with failure
//! messages that show the whole response.

use serde_json::Value;

use crate::client::Response;

/// The headers the filter owns and sets on an allowed request.
pub const OWNED_HEADERS: [&str; 4] = [
    "x-meshward-peer",
    "x-meshward-intent",
    "x-meshward-decision",
    "x-meshward-policy",
];

/// Asserts a deny by the filter: `status`, the `x-meshward-reason` header, a
/// JSON body of exactly `{decision, reason, intent, request_id}`. Returns the
/// body.
pub fn denied(response: &Response, status: u16, reason: &str) -> Value {
    let show = || {
        format!(
            "{} {:?} {}",
            response.status,
            response.headers,
            response.text()
        )
    };
    assert_eq!(
        response.status,
        status,
        "expected a {status} deny ({reason}), got {}",
        show()
    );
    assert_eq!(
        response.header("x-meshward-reason"),
        Some(reason),
        "x-meshward-reason; response {}",
        show()
    );
    assert!(
        response
            .header("content-type")
            .is_some_and(|ct| ct.starts_with("application/json")),
        "deny content-type; response {}",
        show()
    );
    let body = response.json();
    assert_eq!(body["decision"], "deny", "body {body}");
    assert_eq!(body["reason"], reason, "body {body}");
    let mut keys: Vec<&str> = body
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["decision", "intent", "reason", "request_id"],
        "the deny body carries exactly these keys and leaks nothing else: {body}"
    );
    body
}

/// Asserts the request reached the app (200 from the echo upstream) and
/// returns what the app received: `{method, path, headers: {name: [values]}}`.
pub fn allowed(response: &Response) -> Value {
    assert_eq!(
        response.status,
        200,
        "expected the request to reach the app; got {} {:?} {}",
        response.status,
        response.headers,
        response.text()
    );
    assert_eq!(response.header("x-meshward-reason"), None);
    let echo = response.json();
    assert!(
        echo["headers"].is_object(),
        "not the echo app's answer: {echo}"
    );
    echo
}

/// Every value of a header the app received, from the echo JSON.
pub fn app_header<'a>(echo: &'a Value, name: &str) -> Vec<&'a str> {
    echo["headers"][name]
        .as_array()
        .map(|values| values.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The single value of a header the app received; panics unless exactly one.
pub fn app_header_one<'a>(echo: &'a Value, name: &str) -> &'a str {
    let values = app_header(echo, name);
    assert_eq!(
        values.len(),
        1,
        "the app got {name} {values:?}; echo {echo}"
    );
    values[0]
}
