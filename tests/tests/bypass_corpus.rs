//! The authorization-bypass corpus: known attack shapes against one real
//! Envoy with the meshward filter, each with its expected outcome and the
//! layer that stops it (issue 8; the table is reproduced, row by row, in
//! docs/hardening.md).
//!
//! The policy grants the frontend something narrow (read orders, call one
//! gRPC method, read `/public/**` and one host's files) and explicitly
//! denies it everything admin (`/admin/**`, `/public/admin/**`, deleting
//! orders). A bypass would show as a 200 from the app. The ops admin is the
//! control identity that may do the admin things.
//!
//! Three kinds of sender, so the bytes on the wire are the test's:
//! - [`Request`]: HTTP/1.1 through the harness client (adds `host:
//!   localhost` unless given, `content-length`, `connection: close`);
//! - raw HTTP/1.1 bytes, sent exactly as written;
//! - [`H2Request`]: a raw HTTP/2 header block (pseudo-headers included).
//!
//! After the table, one invariant over everything the app received: each
//! request went through the filter (an `allow` audit line with its request
//! id and the same path), and its peer was granted its intent.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;

use meshward_e2e::expect::app_header;
use meshward_e2e::http2::{H2Client, H2Outcome, H2Request};
use meshward_e2e::{ClientError, Leaf, Mesh, Request, Response};
use serde_json::Value;

const POLICY: &str = r#"
policy "bypass-corpus" {
  trust_domains "shop.example"
}

intent orders.read {
  method GET HEAD
  path "/orders" "/orders/{id}"
}

intent orders.delete {
  method DELETE
  path "/orders/{id}"
}

intent orders.rpc {
  grpc "shop.v1.Orders/Get"
}

intent admin.all {
  path "/admin/**"
}

intent public.read {
  method GET
  path "/public/**"
}

intent public.admin {
  method GET
  path "/public/admin/**"
}

intent files.read {
  method GET
  host "files.shop.example"
  path "/files/**"
}

intent reports.read {
  method GET
  path "/reports/{id}"
}

# A host-scoped deny carved out of an any-host allow: every host's
# `/vault/**` may be read, but not the secrets of `vault.shop.example`.
intent vault.any {
  method GET
  path "/vault/**"
}

intent vault.secrets {
  method GET
  host "vault.shop.example"
  path "/vault/{name}"
}

allow frontend-reads {
  subject "spiffe://shop.example/ns/shop/sa/frontend"
  intent orders.read orders.rpc public.read files.read reports.read vault.any
}

deny frontend-no-vault-secrets {
  subject "spiffe://shop.example/ns/shop/sa/frontend"
  intent vault.secrets
}

# A deny that depends on a request header: reports are frozen in prod.
deny reports-frozen-in-prod {
  subject "spiffe://shop.example/ns/shop/sa/frontend"
  intent reports.read
  when header "x-env" == "prod"
}

allow ops {
  subject "spiffe://shop.example/ns/ops/sa/admin"
  intent admin.all public.admin orders.delete
}

# The ops admin runs meshward too: its chains are believed (within limits).
chain {
  forwarder "spiffe://shop.example/ns/ops/sa/admin"
  max_depth 4
}

deny frontend-never-admin {
  subject "spiffe://shop.example/ns/shop/sa/frontend"
  intent admin.all public.admin orders.delete
}
"#;

const FRONTEND: &str = "spiffe://shop.example/ns/shop/sa/frontend";
const OPS: &str = "spiffe://shop.example/ns/ops/sa/admin";

/// What each identity may do (the oracle for the final invariant).
const GRANTS: &[(&str, &[&str])] = &[
    (
        FRONTEND,
        &[
            "orders.read",
            "orders.rpc",
            "public.read",
            "files.read",
            "reports.read",
            "vault.any",
        ],
    ),
    (OPS, &["admin.all", "public.admin", "orders.delete"]),
];

/// Who sends a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Frontend,
    Ops,
}

/// How a row is sent.
enum Send {
    /// HTTP/1.1 through the harness client.
    H1(Request),
    /// HTTP/1.1 bytes, exactly these.
    Raw(String),
    /// HTTP/2, this header block.
    H2(H2Request),
}

/// What must happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Envoy answers this status itself; the filter never runs (no
    /// `x-meshward-reason`, no deny JSON).
    Envoy(u16),
    /// Envoy's codec refuses the request without an HTTP response: an
    /// HTTP/2 stream reset or GOAWAY, or the connection closes.
    Refused,
    /// The filter denies with this status and reason.
    Denied(u16, &'static str),
    /// The filter denies a gRPC request: Envoy turns the local reply into a
    /// gRPC one (HTTP 200, `grpc-status: 7` PERMISSION_DENIED, empty body),
    /// with this reason in `x-meshward-reason` and the audit line.
    GrpcDenied(&'static str),
    /// It reaches the app, classified as `intent`, and the app sees exactly
    /// `path`: the filter classified what the app serves.
    Allowed {
        intent: &'static str,
        path: &'static str,
    },
}

/// One attack shape.
struct Row {
    /// The family (`..`, `%2f`, smuggling...).
    shape: &'static str,
    who: Who,
    send: Send,
    expect: Expect,
    /// Which layer stops it (or why reaching the app is not a bypass).
    layer: &'static str,
}

fn row(shape: &'static str, send: Send, expect: Expect, layer: &'static str) -> Row {
    Row {
        shape,
        who: Who::Frontend,
        send,
        expect,
        layer,
    }
}

fn get(target: &str) -> Send {
    Send::H1(Request::get(target))
}

fn raw(text: &str) -> Send {
    Send::Raw(text.to_owned())
}

fn h2(request: H2Request) -> Send {
    Send::H2(request)
}

const fn denied(reason: &'static str) -> Expect {
    Expect::Denied(403, reason)
}

const fn allowed(intent: &'static str, path: &'static str) -> Expect {
    Expect::Allowed { intent, path }
}

// Which layer: the names used in the table and in docs/hardening.md.
const NORMALIZE: &str = "Envoy `normalize_path` (RFC 3986), then the filter's deny rule";
const MERGE: &str = "Envoy `merge_slashes`, then the filter's deny rule";
const ESCAPED: &str = "Envoy `path_with_escaped_slashes_action: REJECT_REQUEST`";
const CANONICAL: &str = "the filter: `non_canonical_path`";
const DEFAULT_DENY: &str = "the filter: no intent matches, default deny";
const DENY_RULE: &str = "the filter: deny rule";
const TRAILING_DOT: &str = "Envoy `strip_trailing_host_dot`: the filter, the router and the app all see `files.shop.example`";
const CODEC: &str = "Envoy's HTTP/1 codec";
const H2_CODEC: &str = "Envoy's HTTP/2 codec";
const LIMITS: &str = "Envoy's header limits (`max_request_headers_kb` 60, `max_headers_count` 100)";
const SANITIZE: &str =
    "Envoy `forward_client_cert_details: SANITIZE_SET`, the filter's owned-header removal";
const OWNED: &str = "the filter removes client-sent `x-meshward-*` before the app";
const AS_SENT: &str = "not a bypass: classified as sent, and the app gets exactly that path (an app that rewrites it again is out of meshward's reach: see docs/hardening.md)";
const QUERY: &str =
    "not a bypass: the query is not the path; the app gets the path the filter classified";
const CONTROL: &str = "control: a legitimate request";
const F1: &str = "the filter (FINDING F1, fixed): a header a rule condition reads may not repeat, since the app might act on another copy; `duplicate_header` (docs/hardening.md)";
const OVERRIDE: &str = "the filter: a method-override header naming another method than the one judged is denied `method_override` (or removed, with `\"method_override\": \"strip\"`)";
const NON_CANONICAL_HOST: &str = "the filter: `non_canonical_host`, before classification (the authority is not one `host[:port]`; an app or next hop could read it as the protected host)";
const TWO_DOTS: &str = "Envoy `strip_trailing_host_dot` removes one trailing dot and the filter's canonical form the other: decided by the host-scoped intent (without Envoy's setting: `non_canonical_host`)";
const HOST_INTENT: &str = "the filter: the canonical host (lower case, one trailing dot removed, port ignored) reaches the host-scoped intent and its deny rule";
const OVERRIDE_QUERY: &str = "not stopped: meshward classifies by the real method; an app that honours `_method` in the query must not (docs/hardening.md)";

fn rows() -> Vec<Row> {
    let long = "a".repeat(70 * 1024);
    let chain_7k = format!("v=1;iat=1;exp=2;complete=1;hops={}", "x".repeat(7 * 1024));
    let chain_70k = "x".repeat(70 * 1024);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let chain_of = |hops: &str| format!("v=1;iat={now};exp={};complete=1;hops={hops}", now + 30);
    let chain_ok = chain_of(&format!("{FRONTEND},{OPS}"));
    let chain_year = format!(
        "v=1;iat={now};exp={};complete=1;hops={FRONTEND},{OPS}",
        now + 365 * 24 * 3600
    );
    let chain_future = format!(
        "v=1;iat={};exp={};complete=1;hops={FRONTEND},{OPS}",
        now + 300,
        now + 330
    );
    let chain_other = chain_of(&format!("{OPS},{FRONTEND}"));
    let chain_deep = chain_of(&format!("{}{OPS}", format!("{FRONTEND},").repeat(6)));
    let chain_9k = chain_of(&format!("{}{OPS}", format!("{FRONTEND},").repeat(200)));
    let long_path = format!("/public/{}", "a".repeat(9000));
    let deep_path = format!("/public{}", "/a".repeat(70));
    let mut many = Request::get("/orders/42");
    for i in 0..90 {
        many = many.header(&format!("x-small-{i}"), "1");
    }
    let mut too_many = Request::get("/orders/42");
    for i in 0..120 {
        too_many = too_many.header(&format!("x-small-{i}"), "1");
    }
    let mut h2_many = H2Request::get("/orders/42");
    for i in 0..120 {
        h2_many = h2_many.field(&format!("x-small-{i}"), "1");
    }

    vec![
        // ---- controls -------------------------------------------------
        row("control", get("/orders/42"), allowed("orders.read", "/orders/42"), CONTROL),
        row("control", get("/admin/users"), denied("denied_by_rule"), DENY_RULE),
        Row {
            who: Who::Ops,
            ..row("control", get("/admin/users"), allowed("admin.all", "/admin/users"), CONTROL)
        },
        row("control", h2(H2Request::get("/orders/42")), allowed("orders.read", "/orders/42"), CONTROL),
        // ---- dot segments ---------------------------------------------
        row("..", get("/orders/../admin/users"), denied("denied_by_rule"), NORMALIZE),
        row("..", get("/orders/1/../../admin/users"), denied("denied_by_rule"), NORMALIZE),
        row("..", get("/public/../admin/users"), denied("denied_by_rule"), NORMALIZE),
        row("..", get("/../admin/users"), denied("denied_by_rule"), NORMALIZE),
        row("%2e%2e", get("/orders/%2e%2e/admin/users"), denied("denied_by_rule"), NORMALIZE),
        row("%2e%2e", get("/orders/%2E%2e/admin/users"), denied("denied_by_rule"), NORMALIZE),
        row("%2e%2e", get("/orders/.%2e/admin/users"), denied("denied_by_rule"), NORMALIZE),
        row("%2e%2e", get("/public/%2e%2e/admin/x"), denied("denied_by_rule"), NORMALIZE),
        row("/./", get("/./admin/users"), denied("denied_by_rule"), NORMALIZE),
        row("/./", get("/public/./admin/x"), denied("denied_by_rule"), NORMALIZE),
        row("/./", get("/orders/./42"), allowed("orders.read", "/orders/42"), NORMALIZE),
        row("%2e", get("/public/%2e/admin/x"), denied("denied_by_rule"), NORMALIZE),
        // ---- encoded and raw slashes ------------------------------------
        row("%2f", get("/orders/1%2f..%2f..%2fadmin/users"), Expect::Envoy(400), ESCAPED),
        row("%2f", get("/public%2fadmin/x"), Expect::Envoy(400), ESCAPED),
        row("%2f", get("/orders/1%2F..%2F..%2Fadmin/users"), Expect::Envoy(400), ESCAPED),
        row("%5c", get("/orders/1%5c..%5c..%5cadmin/users"), Expect::Envoy(400), ESCAPED),
        row("%5c", get("/public%5Cadmin/x"), Expect::Envoy(400), ESCAPED),
        row("\\", get("/orders/..\\admin/users"), denied("denied_by_rule"), NORMALIZE),
        row("\\", get("/public\\admin\\x"), denied("denied_by_rule"), NORMALIZE),
        row("//", get("//admin/users"), denied("denied_by_rule"), MERGE),
        row("//", get("/public//admin/x"), denied("denied_by_rule"), MERGE),
        row("//", get("/orders/..//admin/users"), denied("denied_by_rule"), MERGE),
        // ---- path parameters ---------------------------------------------
        row(";", get("/admin;jsessionid=1/users"), denied("non_canonical_path"), CANONICAL),
        row(";", get("/orders/42;jsessionid=abc"), denied("non_canonical_path"), CANONICAL),
        row(";", get("/public/admin;x/y"), denied("non_canonical_path"), CANONICAL),
        row(";", get("/orders/..;/admin/users"), denied("denied_by_rule"), NORMALIZE),
        // ---- unreserved characters percent-encoded ---------------------
        row("%XX", get("/%61dmin/users"), denied("denied_by_rule"), NORMALIZE),
        row("%XX", get("/public/%61dmin/x"), denied("denied_by_rule"), NORMALIZE),
        row("%XX", get("/public/adm%69n/x"), denied("denied_by_rule"), NORMALIZE),
        // ---- case and trailing dots --------------------------------------
        row("case", get("/ADMIN/users"), denied("unclassified"), DEFAULT_DENY),
        row("case", get("/Admin/users"), denied("unclassified"), DEFAULT_DENY),
        row("case", get("/public/ADMIN/x"), allowed("public.read", "/public/ADMIN/x"), AS_SENT),
        row("case", get("/Orders/42"), denied("unclassified"), DEFAULT_DENY),
        row("trailing dot", get("/admin./users"), denied("unclassified"), DEFAULT_DENY),
        row("trailing dot", get("/admin/users."), denied("denied_by_rule"), DENY_RULE),
        row("trailing dot", get("/public/admin./x"), allowed("public.read", "/public/admin./x"), AS_SENT),
        // ---- fragments and queries ----------------------------------------
        row("#", get("/orders/42#/../../admin/users"), Expect::Envoy(400), CODEC),
        row("#", get("/admin/users#x"), Expect::Envoy(400), CODEC),
        row("#", get("/orders/42%23/../../admin/users"), denied("denied_by_rule"), NORMALIZE),
        row("?", get("/orders/42?/../../admin/users"), allowed("orders.read", "/orders/42?/../../admin/users"), QUERY),
        row("?", get("/admin/users?x=/orders/42"), denied("denied_by_rule"), DENY_RULE),
        row("?", get("/orders/42%3F/../../admin/users"), denied("denied_by_rule"), NORMALIZE),
        row("?", get("/orders/42?x=%2e%2e%2fadmin"), allowed("orders.read", "/orders/42?x=%2e%2e%2fadmin"), QUERY),
        // ---- overlong UTF-8 and double encoding ---------------------------
        row("overlong UTF-8", get("/orders/%c0%ae%c0%ae/admin/users"), denied("non_canonical_path"), CANONICAL),
        row("overlong UTF-8", get("/%c0%ae%c0%ae/admin/users"), denied("non_canonical_path"), CANONICAL),
        row("overlong UTF-8", get("/public/%c0%ae%c0%ae/admin/x"), denied("non_canonical_path"), CANONICAL),
        row("overlong UTF-8", get("/public/%e0%80%ae%e0%80%ae/admin/x"), denied("non_canonical_path"), CANONICAL),
        row("invalid UTF-8", get("/public/%ed%a0%80/x"), denied("non_canonical_path"), CANONICAL),
        row("invalid UTF-8", get("/public/%ff/x"), denied("non_canonical_path"), CANONICAL),
        row("valid UTF-8", get("/public/caf%C3%A9"), allowed("public.read", "/public/caf%C3%A9"), AS_SENT),
        row("double encoding", get("/public/%252e%252e/admin/x"), allowed("public.read", "/public/%252e%252e/admin/x"), AS_SENT),
        row("raw non-ASCII", get("/public/caf\u{e9}"), Expect::Envoy(400), CODEC),
        // ---- request-target forms and authority -------------------------
        row("absolute-form", get("http://localhost/admin/users"), denied("denied_by_rule"), DENY_RULE),
        row(
            "absolute-form vs host",
            Send::H1(Request::get("http://files.shop.example/files/a").header("host", "localhost")),
            allowed("files.read", "/files/a"),
            "not a bypass: Envoy takes the authority from the absolute URI, and forwards that one to the app",
        ),
        row(
            "absolute-form vs host",
            Send::H1(Request::get("http://localhost/files/a").header("host", "files.shop.example")),
            denied("unclassified"),
            DEFAULT_DENY,
        ),
        row("host", Send::H1(Request::get("/files/a").header("host", "files.shop.example")), allowed("files.read", "/files/a"), CONTROL),
        row("host", Send::H1(Request::get("/files/a").header("host", "FILES.Shop.Example:443")), allowed("files.read", "/files/a"), CONTROL),
        row("host", Send::H1(Request::get("/files/a").header("host", "files.shop.example.")), allowed("files.read", "/files/a"), TRAILING_DOT),
        row("host", Send::H1(Request::get("/files/a").header("host", "files.shop.example.:443")), allowed("files.read", "/files/a"), TRAILING_DOT),
        row("host", Send::H1(Request::get("/files/a").header("host", "files.shop.example..")), allowed("files.read", "/files/a"), TWO_DOTS),
        row(
            "host",
            Send::H1(Request::get("/files/a").header("host", "files.shop.example").header("host", "other.example")),
            denied("non_canonical_host"),
            "the filter: Envoy joins the two values (`files.shop.example,other.example`), which is no host: `non_canonical_host`",
        ),
        row("host", Send::H1(Request::get("/files/a").header("host", "x@files.shop.example")), denied("non_canonical_host"), NON_CANONICAL_HOST),
        row("asterisk-form", get("*"), Expect::Envoy(400), CODEC),
        // ---- identity headers ---------------------------------------------
        row(
            "spoofed x-meshward-peer",
            Send::H1(Request::get("/admin/users").header("x-meshward-peer", OPS).header("X-Meshward-Peer", OPS)),
            denied("denied_by_rule"),
            OWNED,
        ),
        row(
            "spoofed x-meshward-peer",
            Send::H1(Request::get("/orders/42").header("X-MESHWARD-PEER", OPS).header("x-meshward-intent", "admin.all")),
            allowed("orders.read", "/orders/42"),
            OWNED,
        ),
        row(
            "smuggled XFCC",
            Send::H1(
                Request::get("/admin/users")
                    .header("x-forwarded-client-cert", &format!("By={FRONTEND};URI={OPS}"))
                    .header("X-Forwarded-Client-Cert", &format!("URI={OPS}")),
            ),
            denied("denied_by_rule"),
            SANITIZE,
        ),
        row(
            "smuggled XFCC",
            Send::H1(Request::get("/orders/42").header("x-forwarded-client-cert", &format!("URI={OPS}"))),
            allowed("orders.read", "/orders/42"),
            SANITIZE,
        ),
        row(
            "duplicate x-meshward-chain",
            Send::H1(
                Request::get("/orders/42")
                    .header("x-meshward-chain", &format!("v=1;iat=1;exp=9999999999;complete=1;hops={OPS}"))
                    .header("x-meshward-chain", "forged"),
            ),
            allowed("orders.read", "/orders/42"),
            "the filter: a chain from a peer that is not a `forwarder` is dropped; client copies never reach the app",
        ),
        row(
            "spoofed x-meshward-peer (HTTP/2)",
            h2(H2Request::get("/admin/users").field("x-meshward-peer", OPS)),
            denied("denied_by_rule"),
            OWNED,
        ),
        row(
            "smuggled XFCC (HTTP/2)",
            h2(H2Request::get("/orders/42").field("x-forwarded-client-cert", &format!("URI={OPS}"))),
            allowed("orders.read", "/orders/42"),
            SANITIZE,
        ),
        // ---- header conditions and duplicated headers ---------------------
        row("header condition", get("/reports/1"), allowed("reports.read", "/reports/1"), CONTROL),
        row(
            "header condition",
            Send::H1(Request::get("/reports/1").header("x-env", "prod")),
            denied("denied_by_rule"),
            DENY_RULE,
        ),
        row(
            "header condition",
            Send::H1(Request::get("/reports/1").header("X-ENV", "prod")),
            denied("denied_by_rule"),
            "the filter: header names are case-insensitive (Envoy lower-cases them)",
        ),
        row(
            "header condition",
            raw("GET /reports/1 HTTP/1.1\r\nhost: localhost\r\nx-env:  prod \t\r\nconnection: close\r\n\r\n"),
            denied("denied_by_rule"),
            "Envoy's HTTP/1 codec trims the value, then the filter's deny rule",
        ),
        row(
            "duplicate condition header",
            Send::H1(Request::get("/reports/1").header("x-env", "prod").header("x-env", "staging")),
            denied("duplicate_header"),
            F1,
        ),
        row(
            "duplicate condition header",
            Send::H1(Request::get("/reports/1").header("x-env", "staging").header("x-env", "prod")),
            denied("duplicate_header"),
            F1,
        ),
        row(
            "duplicate condition header (HTTP/2)",
            h2(H2Request::get("/reports/1").field("x-env", "staging").field("x-env", "prod")),
            denied("duplicate_header"),
            F1,
        ),
        // ---- method override ----------------------------------------------
        row(
            "method override",
            Send::H1(Request::get("/orders/42").header("x-http-method-override", "DELETE")),
            denied("method_override"),
            OVERRIDE,
        ),
        row(
            "method override",
            Send::H1(
                Request::get("/orders/42")
                    .header("x-http-method", "DELETE")
                    .header("x-method-override", "DELETE"),
            ),
            denied("method_override"),
            OVERRIDE,
        ),
        row(
            "method override (same method)",
            Send::H1(Request::get("/orders/42").header("X-HTTP-Method-Override", "get")),
            allowed("orders.read", "/orders/42"),
            "not a bypass: the override names the method the policy judged",
        ),
        row("method override", get("/orders/42?_method=DELETE"), allowed("orders.read", "/orders/42?_method=DELETE"), OVERRIDE_QUERY),
        row("method", Send::H1(Request::new("DELETE", "/orders/42")), denied("denied_by_rule"), DENY_RULE),
        row("method", Send::H1(Request::new("get", "/orders/42")), Expect::Envoy(400), "Envoy's HTTP/1 codec (unknown method; the filter would say `bad_method`)"),
        row("method", Send::H1(Request::new("FOO", "/orders/42")), Expect::Envoy(400), "Envoy's HTTP/1 codec (unknown method; the filter would say `bad_method`)"),
        // ---- gRPC paths ------------------------------------------------
        row(
            "gRPC",
            Send::H1(Request::post("/shop.v1.Orders/Get", b"\0\0\0\0\0").header("content-type", "application/grpc")),
            allowed("orders.rpc", "/shop.v1.Orders/Get"),
            CONTROL,
        ),
        row(
            "gRPC trailing part",
            Send::H1(Request::post("/shop.v1.Orders/Get/extra", b"\0\0\0\0\0").header("content-type", "application/grpc")),
            Expect::GrpcDenied("unclassified"),
            DEFAULT_DENY,
        ),
        row(
            "gRPC trailing part",
            Send::H1(Request::post("/shop.v1.Orders/Get/", b"\0\0\0\0\0").header("content-type", "application/grpc")),
            Expect::GrpcDenied("non_canonical_path"),
            CANONICAL,
        ),
        row(
            "gRPC query",
            Send::H1(Request::post("/shop.v1.Orders/Get?x", b"\0\0\0\0\0").header("content-type", "application/grpc")),
            allowed("orders.rpc", "/shop.v1.Orders/Get?x"),
            QUERY,
        ),
        row(
            "gRPC case",
            Send::H1(Request::post("/shop.v1.orders/get", b"\0\0\0\0\0").header("content-type", "application/grpc")),
            Expect::GrpcDenied("unclassified"),
            DEFAULT_DENY,
        ),
        row("gRPC method", get("/shop.v1.Orders/Get"), denied("unclassified"), DEFAULT_DENY),
        row(
            "gRPC (HTTP/2)",
            h2(H2Request::new("POST", "/shop.v1.Orders/Get/extra").field("content-type", "application/grpc").field("te", "trailers").body(b"\0\0\0\0\0")),
            Expect::GrpcDenied("unclassified"),
            DEFAULT_DENY,
        ),
        // ---- sizes -------------------------------------------------------
        row("long header", Send::H1(Request::get("/orders/42").header("x-long", &long)), Expect::Envoy(431), LIMITS),
        row("long chain", Send::H1(Request::get("/orders/42").header("x-meshward-chain", &chain_70k)), Expect::Envoy(431), LIMITS),
        row(
            "long chain",
            Send::H1(Request::get("/orders/42").header("x-meshward-chain", &chain_7k)),
            allowed("orders.read", "/orders/42"),
            "the filter: dropped (peer is not a forwarder); never reaches the app",
        ),
        Row {
            who: Who::Ops,
            ..row(
                "long chain from a forwarder",
                Send::H1(Request::get("/admin/users").header("x-meshward-chain", &chain_9k)),
                denied("chain_too_large"),
                "the filter: chain headers over 8 KiB are refused",
            )
        },
        Row {
            who: Who::Ops,
            ..row(
                "deep chain from a forwarder",
                Send::H1(Request::get("/admin/users").header("x-meshward-chain", &chain_deep)),
                denied("chain_too_deep"),
                "the filter: the policy's `max_depth` (4)",
            )
        },
        Row {
            who: Who::Ops,
            ..row(
                "duplicate chain from a forwarder",
                Send::H1(
                    Request::get("/admin/users")
                        .header("x-meshward-chain", &chain_ok)
                        .header("x-meshward-chain", &chain_ok),
                ),
                denied("chain_duplicate"),
                "the filter: a repeated chain header is refused",
            )
        },
        Row {
            who: Who::Ops,
            ..row(
                "chain not ending at the peer",
                Send::H1(Request::get("/admin/users").header("x-meshward-chain", &chain_other)),
                denied("chain_peer_mismatch"),
                "the filter: a forwarded chain must end at the mTLS peer",
            )
        },
        row("long path", get(&long_path), denied("non_canonical_path"), "the filter: paths over 8 KiB are `non_canonical_path`"),
        row("deep path", get(&deep_path), denied("non_canonical_path"), "the filter: more than 64 segments is `non_canonical_path`"),
        row("many headers", Send::H1(many), allowed("orders.read", "/orders/42"), CONTROL),
        row("many headers", Send::H1(too_many), Expect::Envoy(431), LIMITS),
        row("many headers (HTTP/2)", h2(h2_many), Expect::Refused, LIMITS),
        // ---- HTTP/1 framing and smuggling ----------------------------------
        row(
            "CL.TE",
            raw("POST /orders/42 HTTP/1.1\r\nhost: localhost\r\ncontent-length: 41\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\nGET /admin/users HTTP/1.1\r\nhost: x\r\n\r\n"),
            Expect::Envoy(400),
            CODEC,
        ),
        row(
            "TE.CL",
            raw("POST /orders/42 HTTP/1.1\r\nhost: localhost\r\ntransfer-encoding: chunked\r\ncontent-length: 4\r\n\r\n5c\r\nGET /admin/users HTTP/1.1\r\nhost: x\r\n\r\n0\r\n\r\n"),
            Expect::Envoy(400),
            CODEC,
        ),
        row(
            "TE obfuscation",
            raw("POST /orders/42 HTTP/1.1\r\nhost: localhost\r\ntransfer-encoding: xchunked\r\nconnection: close\r\n\r\n"),
            Expect::Envoy(501),
            CODEC,
        ),
        row(
            "TE obfuscation",
            raw("POST /orders/42 HTTP/1.1\r\nhost: localhost\r\ntransfer-encoding : chunked\r\nconnection: close\r\n\r\n0\r\n\r\n"),
            Expect::Envoy(400),
            CODEC,
        ),
        row(
            "duplicate content-length",
            raw("POST /orders/42 HTTP/1.1\r\nhost: localhost\r\ncontent-length: 0\r\ncontent-length: 44\r\nconnection: close\r\n\r\n"),
            Expect::Envoy(400),
            CODEC,
        ),
        row(
            "pipelined",
            raw("GET /orders/42 HTTP/1.1\r\nhost: localhost\r\n\r\nGET /admin/users HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n"),
            allowed("orders.read", "/orders/42"),
            "the filter: every pipelined request is evaluated (the second, /admin/users, never reaches the app: checked below)",
        ),
        row(
            "obs-fold",
            raw("GET /orders/42 HTTP/1.1\r\nhost: localhost\r\nx-meshward-peer: a\r\n spiffe://shop.example/ns/ops/sa/admin\r\nconnection: close\r\n\r\n"),
            allowed("orders.read", "/orders/42"),
            "Envoy's codec accepts obs-fold (joins the lines into one value); the filter removes client-sent `x-meshward-*` before the app",
        ),
        row(
            "NUL in header",
            raw("GET /orders/42 HTTP/1.1\r\nhost: localhost\r\nx-a: a\0b\r\nconnection: close\r\n\r\n"),
            Expect::Envoy(400),
            CODEC,
        ),
        row(
            "space in request line",
            raw("GET /admin /users HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n"),
            Expect::Envoy(400),
            CODEC,
        ),
        row(
            "HTTP/1.0",
            raw("GET /orders/42 HTTP/1.0\r\nhost: localhost\r\n\r\n"),
            Expect::Envoy(426),
            CODEC,
        ),
        // ---- HTTP/2 pseudo-headers --------------------------------------
        row("HTTP/2 ..", h2(H2Request::get("/orders/../admin/users")), denied("denied_by_rule"), NORMALIZE),
        row("HTTP/2 %2f", h2(H2Request::get("/public%2fadmin/x")), Expect::Envoy(400), ESCAPED),
        row("HTTP/2 duplicate :path", h2(H2Request::get("/orders/42").field(":path", "/admin/users")), Expect::Refused, H2_CODEC),
        row(
            "HTTP/2 duplicate :path",
            h2(H2Request::get("/admin/users").field(":path", "/orders/42")),
            Expect::Refused,
            H2_CODEC,
        ),
        row("HTTP/2 :path relative", h2(H2Request::get("admin/users")), Expect::Refused, H2_CODEC),
        row("HTTP/2 :path fragment", h2(H2Request::get("/orders/42#/../../admin/users")), Expect::Envoy(400), H2_CODEC),
        row("HTTP/2 :path empty", h2(H2Request::get("")), Expect::Refused, H2_CODEC),
        row(
            "HTTP/2 missing :path",
            h2(H2Request::get("/admin/users").without(":path")),
            Expect::Refused,
            H2_CODEC,
        ),
        row(
            "HTTP/2 pseudo after regular",
            h2(H2Request::default()
                .field(":method", "GET")
                .field(":scheme", "https")
                .field(":authority", "localhost")
                .field("x-a", "1")
                .field(":path", "/admin/users")),
            Expect::Refused,
            H2_CODEC,
        ),
        row(
            "HTTP/2 upper-case name",
            h2(H2Request::get("/orders/42").field("X-Meshward-Peer", OPS)),
            Expect::Refused,
            H2_CODEC,
        ),
        row(
            "HTTP/2 connection header",
            h2(H2Request::get("/orders/42").field("connection", "keep-alive")),
            Expect::Refused,
            H2_CODEC,
        ),
        row(
            "HTTP/2 transfer-encoding",
            h2(H2Request::new("POST", "/orders/42").field("transfer-encoding", "chunked").body(b"0\r\n\r\n")),
            Expect::Refused,
            H2_CODEC,
        ),
        row(
            "HTTP/2 content-length mismatch",
            h2(H2Request::new("POST", "/orders/42").field("content-length", "1").body(b"0123456789")),
            Expect::Refused,
            H2_CODEC,
        ),
        row(
            "HTTP/2 :authority vs host",
            h2(H2Request::get("/files/a").set(":authority", "files.shop.example").field("host", "other.example")),
            allowed("files.read", "/files/a"),
            "not a bypass: Envoy keeps `:authority` and the app gets that host",
        ),
        row(
            "HTTP/2 :authority vs host",
            h2(H2Request::get("/files/a").set(":authority", "other.example").field("host", "files.shop.example")),
            denied("unclassified"),
            DEFAULT_DENY,
        ),
        row(
            "HTTP/2 no :authority",
            h2(H2Request::get("/files/a").without(":authority").field("host", "files.shop.example")),
            allowed("files.read", "/files/a"),
            "not a bypass: Envoy turns `host` into `:authority`; the filter and the app see the same host",
        ),
        row(
            "HTTP/2 method override",
            h2(H2Request::get("/orders/42").field("x-http-method-override", "DELETE")),
            denied("method_override"),
            OVERRIDE,
        ),
        row(
            "HTTP/2 :method lowercase",
            h2(H2Request::new("delete", "/orders/42")),
            denied("bad_method"),
            "the filter: `bad_method`",
        ),
        Row {
            who: Who::Ops,
            ..row("control", h2(H2Request::new("DELETE", "/orders/42")), allowed("orders.delete", "/orders/42"), CONTROL)
        },
        // ---- authority: a host-scoped deny inside an any-host allow ------
        // Each malformed authority below names `vault.shop.example` in a
        // way some reader may accept; before `non_canonical_host` it matched
        // no host-scoped intent and fell to `vault.any`: allowed.
        row("vault host", vault("localhost"), allowed("vault.any", "/vault/db"), CONTROL),
        row("vault host", vault("vault.shop.example"), denied("denied_by_rule"), HOST_INTENT),
        row("vault host case", vault("VAULT.Shop.Example"), denied("denied_by_rule"), HOST_INTENT),
        row("vault host trailing dot", vault("vault.shop.example."), denied("denied_by_rule"), HOST_INTENT),
        row("vault host trailing dot", vault("Vault.Shop.Example.:8443"), denied("denied_by_rule"), HOST_INTENT),
        row("vault host port", vault("vault.shop.example:443"), denied("denied_by_rule"), HOST_INTENT),
        row("vault host double dot", vault("vault.shop.example.."), denied("denied_by_rule"), TWO_DOTS),
        row("vault host double dot", vault("vault.shop.example..:443"), denied("denied_by_rule"), TWO_DOTS),
        row("vault host triple dot", vault("vault.shop.example..."), denied("non_canonical_host"), NON_CANONICAL_HOST),
        row("vault host empty label", vault("vault..shop.example"), denied("non_canonical_host"), NON_CANONICAL_HOST),
        row("vault host second port", vault("vault.shop.example:443:80"), denied("non_canonical_host"), NON_CANONICAL_HOST),
        row("vault host empty port", vault("vault.shop.example:"), denied("non_canonical_host"), NON_CANONICAL_HOST),
        row("vault host port 0", vault("vault.shop.example:0"), denied("non_canonical_host"), NON_CANONICAL_HOST),
        row("vault host port range", vault("vault.shop.example:65536"), denied("non_canonical_host"), NON_CANONICAL_HOST),
        row("vault host port name", vault("vault.shop.example:https"), denied("non_canonical_host"), NON_CANONICAL_HOST),
        row("vault host list", vault("vault.shop.example,localhost"), denied("non_canonical_host"), NON_CANONICAL_HOST),
        row("vault host list", vault("localhost,vault.shop.example"), denied("non_canonical_host"), NON_CANONICAL_HOST),
        row(
            "vault two Host headers",
            Send::H1(Request::get("/vault/db").header("host", "localhost").header("host", "vault.shop.example")),
            denied("non_canonical_host"),
            "the filter: Envoy joins the two values (`localhost,vault.shop.example`): `non_canonical_host`",
        ),
        row(
            "vault two Host headers",
            raw("GET /vault/db HTTP/1.1\r\nhost: vault.shop.example\r\nHost: localhost\r\nconnection: close\r\n\r\n"),
            denied("non_canonical_host"),
            "the filter: Envoy joins the two values (`vault.shop.example,localhost`): `non_canonical_host`",
        ),
        row("vault host userinfo", vault("x@vault.shop.example"), denied("non_canonical_host"), NON_CANONICAL_HOST),
        row("vault host percent", vault("vault%2eshop.example"), denied("non_canonical_host"), NON_CANONICAL_HOST),
        row("vault host percent", vault("vault.shop.example%2e"), denied("non_canonical_host"), NON_CANONICAL_HOST),
        row("vault host hyphen", vault("vault.shop.example-"), denied("non_canonical_host"), NON_CANONICAL_HOST),
        row("vault host numeric", vault("10.1"), denied("non_canonical_host"), NON_CANONICAL_HOST),
        row("vault host brackets", vault("[vault.shop.example]"), denied("non_canonical_host"), NON_CANONICAL_HOST),
        row("vault host brackets", vault("[::1]:443:80"), denied("non_canonical_host"), NON_CANONICAL_HOST),
        row(
            "vault host whitespace",
            raw("GET /vault/db HTTP/1.1\r\nhost: vault.shop.example \t\r\nconnection: close\r\n\r\n"),
            denied("denied_by_rule"),
            "Envoy's HTTP/1 codec trims the value, then the host-scoped intent's deny rule",
        ),
        row(
            "vault host whitespace",
            raw("GET /vault/db HTTP/1.1\r\nhost: vault.shop.example localhost\r\nconnection: close\r\n\r\n"),
            Expect::Envoy(400),
            "Envoy's HTTP/1 codec (no space inside an authority)",
        ),
        row("vault :authority (HTTP/2)", h2(H2Request::get("/vault/db").set(":authority", "localhost")), allowed("vault.any", "/vault/db"), CONTROL),
        row("vault :authority (HTTP/2)", h2(H2Request::get("/vault/db").set(":authority", "VAULT.shop.example.")), denied("denied_by_rule"), HOST_INTENT),
        row("vault :authority (HTTP/2)", h2(H2Request::get("/vault/db").set(":authority", "vault.shop.example..")), denied("denied_by_rule"), TWO_DOTS),
        row("vault :authority (HTTP/2)", h2(H2Request::get("/vault/db").set(":authority", "vault.shop.example...")), denied("non_canonical_host"), NON_CANONICAL_HOST),
        row("vault :authority (HTTP/2)", h2(H2Request::get("/vault/db").set(":authority", "vault.shop.example:443:80")), denied("non_canonical_host"), NON_CANONICAL_HOST),
        row("vault :authority (HTTP/2)", h2(H2Request::get("/vault/db").set(":authority", "vault.shop.example,localhost")), denied("non_canonical_host"), NON_CANONICAL_HOST),
        row("vault :authority (HTTP/2)", h2(H2Request::get("/vault/db").set(":authority", "x@vault.shop.example")), Expect::Refused, "Envoy's HTTP/2 codec (userinfo in `:authority`)"),
        row(
            "vault no :authority, two host (HTTP/2)",
            h2(H2Request::get("/vault/db").without(":authority").field("host", "localhost").field("host", "vault.shop.example")),
            Expect::Refused,
            H2_CODEC,
        ),
        row(
            "vault empty host",
            raw("GET /vault/db HTTP/1.1\r\nhost: \r\nconnection: close\r\n\r\n"),
            allowed("vault.any", "/vault/db"),
            "not a bypass: an empty authority is no host, judged by the any-host intents like any host no intent names; the app gets an empty `Host`, which it cannot take for `vault.shop.example`",
        ),
        row(
            "vault no host",
            raw("GET /vault/db HTTP/1.1\r\nconnection: close\r\n\r\n"),
            Expect::Envoy(400),
            "Envoy's HTTP/1 codec (HTTP/1.1 without `Host`)",
        ),
        row("vault empty :authority (HTTP/2)", h2(H2Request::get("/vault/db").set(":authority", "")), Expect::Refused, H2_CODEC),
        // ---- chain lifetime: what a trusted forwarder may assert ----------
        Row {
            who: Who::Ops,
            ..row(
                "chain exp a year ahead from a forwarder",
                Send::H1(Request::get("/admin/users").header("x-meshward-chain", &chain_year)),
                denied("chain_lifetime_exceeds_bound"),
                "the filter: a chain's `exp` may be at most `iat` + this policy's `lifetime` (60 s); refused, never capped",
            )
        },
        Row {
            who: Who::Ops,
            ..row(
                "chain iat in the future from a forwarder",
                Send::H1(Request::get("/admin/users").header("x-meshward-chain", &chain_future)),
                denied("chain_expired"),
                "the filter: `iat` more than 30 s ahead of this proxy's clock",
            )
        },
    ]
}

/// `GET /vault/db` with this `host` header.
fn vault(host: &str) -> Send {
    Send::H1(Request::get("/vault/db").header("host", host))
}

/// What the app received, when it answered.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AppView {
    path: String,
    intent: String,
    peer: String,
}

/// What actually happened to a row.
#[derive(Debug, Clone)]
enum Observed {
    /// A response: status, the filter's reason (if it answered), the
    /// `grpc-status` (HTTP/1 only), and what the app saw (if it answered).
    Response {
        status: u16,
        reason: Option<String>,
        grpc_status: Option<String>,
        app: Option<AppView>,
    },
    /// No HTTP response: reset, GOAWAY or closed.
    Refused(String),
}

impl std::fmt::Display for Observed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Observed::Response {
                status,
                app: Some(app),
                ..
            } => write!(
                f,
                "{status} from the app as `{}`, path `{}`",
                app.intent, app.path
            ),
            Observed::Response {
                status,
                reason: Some(reason),
                grpc_status: Some(grpc),
                ..
            } => write!(f, "{status} `{reason}` (filter), grpc-status {grpc}"),
            Observed::Response {
                status,
                reason: Some(reason),
                ..
            } => write!(f, "{status} `{reason}` (filter)"),
            Observed::Response { status, .. } => write!(f, "{status} (Envoy)"),
            Observed::Refused(how) => write!(f, "refused: {how}"),
        }
    }
}

fn app_view(echo: &Value) -> Option<AppView> {
    let one = |name: &str| {
        let values = app_header(echo, name);
        match values.as_slice() {
            [v] => (*v).to_owned(),
            _ => format!("{values:?}"),
        }
    };
    Some(AppView {
        path: echo["path"].as_str()?.to_owned(),
        intent: one("x-meshward-intent"),
        peer: one("x-meshward-peer"),
    })
}

fn observe_h1(result: Result<Response, ClientError>) -> Observed {
    match result {
        Ok(r) => {
            let reason = r.header("x-meshward-reason").map(str::to_owned);
            let app = if reason.is_none() && r.status == 200 {
                serde_json::from_slice::<Value>(&r.body)
                    .ok()
                    .and_then(|echo| app_view(&echo))
            } else {
                None
            };
            Observed::Response {
                status: r.status,
                reason,
                grpc_status: r.header("grpc-status").map(str::to_owned),
                app,
            }
        }
        Err(e) => Observed::Refused(e.to_string()),
    }
}

fn observe_h2(result: Result<H2Outcome, ClientError>) -> Observed {
    match result {
        Ok(H2Outcome::Response { status, body }) => {
            let json: Option<Value> = serde_json::from_slice(&body).ok();
            let reason = json
                .as_ref()
                .filter(|j| j["decision"] == "deny")
                .and_then(|j| j["reason"].as_str())
                .map(str::to_owned);
            let app = json
                .as_ref()
                .filter(|j| j["headers"].is_object() && status == 200)
                .and_then(app_view);
            Observed::Response {
                status,
                reason,
                grpc_status: None,
                app,
            }
        }
        Ok(H2Outcome::Reset(code)) => Observed::Refused(format!("RST_STREAM {code:#x}")),
        Ok(H2Outcome::GoAway(code)) => Observed::Refused(format!("GOAWAY {code:#x}")),
        Ok(H2Outcome::Closed) => Observed::Refused("connection closed".to_owned()),
        Err(e) => Observed::Refused(e.to_string()),
    }
}

/// Whether `observed` is `expect`; `peer` is the sender's SPIFFE ID, which
/// the app must see whatever the request claimed; `h2` because an HTTP/2
/// gRPC deny can only be recognised by its empty body here (the audit line
/// check below confirms the reason).
fn matches(expect: Expect, observed: &Observed, peer: &str, h2: bool) -> bool {
    match (expect, observed) {
        (
            Expect::Envoy(want),
            Observed::Response {
                status,
                reason,
                app,
                ..
            },
        ) => *status == want && reason.is_none() && app.is_none(),
        (Expect::Refused, Observed::Refused(_)) => true,
        (Expect::Denied(want, why), Observed::Response { status, reason, .. }) => {
            *status == want && reason.as_deref() == Some(why)
        }
        (
            Expect::GrpcDenied(why),
            Observed::Response {
                status,
                reason,
                grpc_status,
                app,
            },
        ) => {
            *status == 200
                && app.is_none()
                && (h2 || (reason.as_deref() == Some(why) && grpc_status.as_deref() == Some("7")))
        }
        (Expect::Allowed { intent, path }, Observed::Response { status, app, .. }) => {
            *status == 200
                && app.as_ref()
                    == Some(&AppView {
                        path: path.to_owned(),
                        intent: intent.to_owned(),
                        peer: peer.to_owned(),
                    })
        }
        _ => false,
    }
}

fn describe(send: &Send) -> String {
    let shorten = |s: &str| {
        let s = s
            .replace('\r', "\\r")
            .replace('\n', "\\n")
            .replace('\0', "\\0");
        if s.len() > 90 {
            format!(
                "{}… ({} bytes)",
                &s[..s.char_indices().nth(80).map_or(s.len(), |(i, _)| i)],
                s.len()
            )
        } else {
            s
        }
    };
    match send {
        Send::H1(r) => {
            let text = String::from_utf8_lossy(&r.to_bytes()).into_owned();
            let head = text.split("\r\nconnection: close").next().unwrap_or("");
            format!("HTTP/1.1 `{}`", shorten(head))
        }
        Send::Raw(bytes) => format!("raw `{}`", shorten(bytes)),
        Send::H2(r) => {
            let fields: Vec<String> = r
                .fields
                .iter()
                .map(|(n, v)| format!("{n}: {}", shorten(v)))
                .collect();
            let text = format!("HTTP/2 `{}`", fields.join(", "));
            if text.len() > 200 {
                format!(
                    "HTTP/2 ({} fields, `{}` …)",
                    r.fields.len(),
                    fields[..4].join(", ")
                )
            } else {
                text
            }
        }
    }
}

fn expected_text(expect: Expect) -> String {
    match expect {
        Expect::Envoy(status) => format!("{status} from Envoy"),
        Expect::Refused => "refused by Envoy (no response)".to_owned(),
        Expect::Denied(status, reason) => format!("{status} `{reason}`"),
        Expect::GrpcDenied(reason) => format!("gRPC deny: 200, grpc-status 7, `{reason}`"),
        Expect::Allowed { intent, path } => format!("200 `{intent}`, app sees `{path}`"),
    }
}

/// Runs `send` for every row on a few threads; results in row order.
fn send_all(rows: &[Row], send: impl Fn(usize, &Row) -> Observed + Sync) -> Vec<Observed> {
    let next = AtomicUsize::new(0);
    let results = Mutex::new(vec![None; rows.len()]);
    thread::scope(|scope| {
        for _ in 0..6 {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(row) = rows.get(i) else { break };
                let observed = send(i, row);
                results.lock().expect("results")[i] = Some(observed);
            });
        }
    });
    results
        .into_inner()
        .expect("results")
        .into_iter()
        .map(|o| o.expect("every row was sent"))
        .collect()
}

#[test]
fn bypass_corpus() {
    let mesh = Mesh::builder(POLICY).label("bypass-corpus").start();
    let frontend = mesh.pki.workload("shop", "frontend");
    let ops = mesh.pki.workload("ops", "admin");
    let ca = mesh.pki.shop.cert_der();
    let identity = |who: Who| -> &Leaf {
        match who {
            Who::Frontend => &frontend,
            Who::Ops => &ops,
        }
    };

    let rows = rows();
    let mut table = String::from(
        "| # | shape | request | expected | observed | stopped by |\n|---|---|---|---|---|---|\n",
    );
    // The rows are independent: send them from a few threads (an HTTP/2
    // request Envoy's codec refuses costs its one-second delayed close).
    let observed = send_all(&rows, |i, row| {
        let leaf = identity(row.who);
        // A request id per row (raw rows excepted) ties it to its audit line.
        let id = format!("bypass-{}", i + 1);
        match &row.send {
            Send::H1(request) => {
                observe_h1(mesh.try_send(Some(leaf), &request.clone().header("x-request-id", &id)))
            }
            Send::Raw(bytes) => observe_h1(mesh.client(Some(leaf)).send_bytes(bytes.as_bytes())),
            Send::H2(request) => observe_h2(
                H2Client::new(mesh.envoy.listener(), &ca, Some(leaf))
                    .send(&request.clone().field("x-request-id", &id)),
            ),
        }
    });
    let mut failures = Vec::new();
    let mut filter_decisions = Vec::new();
    for (i, (row, observed)) in rows.iter().zip(&observed).enumerate() {
        let leaf = identity(row.who);
        let id = format!("bypass-{}", i + 1);
        let who = match row.who {
            Who::Frontend => "",
            Who::Ops => " (as ops)",
        };
        let _ = writeln!(
            table,
            "| {} | {}{who} | {} | {} | {} | {} |",
            i + 1,
            row.shape,
            describe(&row.send).replace('|', "\\|"),
            expected_text(row.expect).replace('|', "\\|"),
            observed.to_string().replace('|', "\\|"),
            row.layer
        );
        let h2 = matches!(row.send, Send::H2(_));
        if !matches(row.expect, observed, leaf.spiffe_id(), h2) {
            failures.push(format!(
                "row {} ({}{who}): {}\n    expected {}\n    observed {observed}",
                i + 1,
                row.shape,
                describe(&row.send),
                expected_text(row.expect)
            ));
        }
        if !matches!(row.send, Send::Raw(_)) {
            filter_decisions.push((i + 1, id, row.expect));
        }
    }
    eprintln!("{table}");

    // The filter's audit line agrees with every answer it gave, and Envoy's
    // own refusals never reached the filter.
    let audit = mesh
        .envoy
        .audit_lines_for(filter_decisions.iter().filter_map(|(_, id, expect)| {
            (!matches!(expect, Expect::Envoy(_) | Expect::Refused)).then_some(id.as_str())
        }));
    for (n, id, expect) in &filter_decisions {
        let line = audit.iter().find(|l| l.json["request_id"] == id.as_str());
        let want = match expect {
            Expect::Denied(_, reason) | Expect::GrpcDenied(reason) => Some(("deny", *reason)),
            Expect::Allowed { .. } => Some(("allow", "allowed_by_rule")),
            Expect::Envoy(_) => None,
            // The codec may refuse before or after the filter ran.
            Expect::Refused => continue,
        };
        let got = line.map(|l| {
            (
                l.str("decision").unwrap_or("-"),
                l.str("reason").unwrap_or("-"),
            )
        });
        if got != want {
            failures.push(format!(
                "row {n}: audit line {got:?}, expected {want:?} ({})",
                line.map_or("none", |l| l.raw.as_str())
            ));
        }
    }

    // Everything the app received went through the filter (same path, same
    // host) and was granted;
    // the only chain it ever saw is one the filter sealed, starting at the
    // real peer (this policy trusts no forwarder).
    let mut strays = Vec::new();
    for seen in mesh.upstream.requests() {
        let id = seen.header("x-request-id").unwrap_or("");
        let peer = seen.header("x-meshward-peer").unwrap_or("");
        let intent = seen.header("x-meshward-intent").unwrap_or("");
        let granted = GRANTS
            .iter()
            .any(|(who, intents)| *who == peer && intents.contains(&intent));
        // Same path and same host as the filter classified.
        let host = seen.header("host").unwrap_or("");
        let audited = audit.iter().any(|l| {
            l.json["request_id"] == id
                && l.json["decision"] == "allow"
                && l.json["path"] == seen.path
                && l.json["authority"] == host
        });
        let chains = seen.header_all("x-meshward-chain");
        let chain_ok = chains.iter().all(|c| {
            let hops = c
                .split(";hops=")
                .nth(1)
                .and_then(|h| h.split(";mac=").next())
                .unwrap_or("");
            c.contains(";mac=") && hops.split(',').next() == Some(peer)
        }) && chains.len() <= 1;
        if !granted || !audited || id.is_empty() || !chain_ok {
            strays.push(format!(
                "{} {} (peer {peer:?}, intent {intent:?}, request id {id:?}, audited {audited}, chains {chains:?})",
                seen.method, seen.path
            ));
        }
    }
    assert!(
        failures.is_empty() && strays.is_empty(),
        "{} of {} rows misbehaved:\n{}\n\nrequests the app got without a matching grant and allow audit line:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n"),
        strays.join("\n")
    );
}

/// FINDING F1, fixed (the engine now denies `duplicate_header`; see
/// docs/hardening.md): a header that a rule condition reads must not
/// be ambiguous. With `x-env: staging` then `x-env: prod`, the filter reads
/// `staging` and the deny `reports-frozen-in-prod` does not apply, while an
/// app that reads the last value (or the joined `staging, prod`) acts as in
/// prod. Suggested fix: deny such requests (a `duplicate_header` reason, as
/// for `jwt_duplicate_header`) when a header some rule condition reads
/// (`Policy::condition_headers`) occurs more than once.
#[test]
fn duplicated_condition_headers_are_refused() {
    let mesh = Mesh::builder(POLICY).label("bypass-f1").start();
    let frontend = mesh.pki.workload("shop", "frontend");
    for (a, b) in [("staging", "prod"), ("prod", "staging"), ("prod", "prod")] {
        let response = mesh.send(
            Some(&frontend),
            &Request::get("/reports/1")
                .header("x-env", a)
                .header("x-env", b),
        );
        assert_eq!(
            response.status,
            403,
            "x-env: {a}, x-env: {b} got {} {}",
            response.status,
            response.text()
        );
    }
    assert_eq!(mesh.upstream.count(), 0);
}

/// With `"method_override": "strip"` the request is judged by its real method
/// and the app never sees the override headers.
#[test]
fn method_override_headers_can_be_stripped_instead() {
    let compiled = meshward_e2e::policy::plugin_config(POLICY, "bypass-strip.policy", &[]);
    let mut config: Value = serde_json::from_str(&compiled).expect("plugin config JSON");
    config["method_override"] = Value::from("strip");
    let mesh = Mesh::builder_with_raw_config(&config.to_string())
        .label("bypass-strip")
        .start();
    let frontend = mesh.pki.workload("shop", "frontend");
    let response = mesh.send(
        Some(&frontend),
        &Request::get("/orders/42")
            .header("x-http-method-override", "DELETE")
            .header("x-http-method", "DELETE")
            .header("x-method-override", "DELETE")
            .header("x-other", "kept"),
    );
    assert_eq!(response.status, 200, "{}", response.text());
    let seen = mesh.upstream.requests();
    let [seen] = seen.as_slice() else {
        panic!("the app got {} requests", seen.len());
    };
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.header("x-other"), Some("kept"));
    for name in [
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
    ] {
        assert_eq!(seen.header(name), None, "{name} reached the app");
    }
}

/// Header values may carry obs-text bytes (0x80-0xFF) that are not UTF-8;
/// Envoy's HTTP/1 codec passes them on. The filter must decide such a
/// request like any other, never trap on it: a trap answers 503 and
/// restarts the VM, so one request could deny service to everyone else.
#[test]
fn non_utf8_header_values_are_decided_not_trapped_on() {
    let mesh = Mesh::builder(POLICY).label("bypass-obs-text").start();
    let frontend = mesh.pki.workload("shop", "frontend");
    let client = mesh.client(Some(&frontend));
    for (name, value) in [
        ("x-note", &b"caf\xe9"[..]),
        ("x-env", &b"pr\xf6d"[..]),
        ("x-request-id", &b"\xff\xfe"[..]),
    ] {
        let mut raw = b"GET /orders/42 HTTP/1.1\r\nhost: localhost\r\n".to_vec();
        raw.extend_from_slice(name.as_bytes());
        raw.extend_from_slice(b": ");
        raw.extend_from_slice(value);
        raw.extend_from_slice(b"\r\nconnection: close\r\n\r\n");
        let response = client.send_bytes(&raw).expect("a response");
        assert_eq!(response.status, 200, "{name}: {}", response.text());
        // And the next request is decided normally (no VM restart).
        let next = mesh.send(Some(&frontend), &Request::get("/orders/42"));
        assert_eq!(next.status, 200, "after {name}: {}", next.text());
    }
}
