//! Fixtures for `scripts/bench-envoy.sh`, and its decision check.
//!
//! ```text
//! envoy-fixtures write --out DIR --wasm FILE --noop-wasm FILE --sizes 10,1000,10000 \
//!     --target-port P --target-admin-port A --front-port F --front-admin-port G \
//!     [--module meshward] [--noop-module meshward_bench_noop]
//! envoy-fixtures check --front-port F --requests DIR/requests-N.tsv --expected DIR/expected-N.txt [--limit N]
//! ```
//!
//! `write` creates, under DIR:
//!
//! * `certs/`: a CA per trust domain (`mesh.example`, `partner.example`), the
//!   Envoy-under-test's serving certificate, and one X.509-SVID (12 h) per
//!   identity in `ENVOY_PEERS`, all ECDSA P-256, from the end-to-end
//!   harness's PKI (`meshward_e2e::pki`);
//! * `target-ROW.json`: one Envoy bootstrap per row (mTLS listener with the
//!   SPIFFE validator, `direct_response` 200): `none`, `noop`, `noop-xfcc`
//!   (the no-op wasm filter), `noop-module`, `noop-module-xfcc` (the no-op
//!   dynamic module), `rbac-N`, `meshward-N` (the wasm filter, audit log of
//!   denies), `native-N` (the same plugin configuration in the dynamic
//!   module `libmeshward.so`), `quiet-N` (meshward without audit lines),
//!   `jwt-N` (as `meshward-N`, and every request also carries a valid ES256
//!   JWT-SVID of its peer, verified once and then answered from the
//!   verified-token cache). The dynamic-module rows need
//!   `ENVOY_DYNAMIC_MODULES_SEARCH_PATH` to hold `lib<module>.so`;
//! * `front.json`: the load generator's Envoy — a plain-HTTP listener that
//!   routes on `x-bench-peer: I` to a cluster originating mTLS with SVID `I`;
//! * `requests-N.lua` / `requests-N.tsv`: the Envoy request mix for the
//!   N-rule policy (wrk script cycling through it; plain list);
//!   `requests-jwt-N.*`: the same requests with each peer's JWT-SVID;
//! * `expected-N.txt`: meshward's native decision (`allow`/`deny`) on each
//!   request of that mix.
//!
//! `check` sends the mix through the front proxy once (one request per
//! connection) and fails if any status disagrees with the expected decision
//! (200 = allow, 401/403 = deny; for gRPC requests Envoy answers a local
//! reply with 200 and `grpc-status` 7 or 16 = deny).

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use meshward_bench::mix::{envoy_mix, RequestSpec, ENVOY_PEERS, SEED};
use meshward_bench::rbac;
use meshward_bench::translate::PolicyView;
use meshward_bench::workload::{Owned, Workload};
use meshward_e2e::pki::{write_cert_dir, Ca, SvidBuilder};
use meshward_e2e::topology::tokens::now as unix_now;
use meshward_engine::config::plugin_config_json;
use meshward_engine::evaluate;
use meshward_engine::model::Effect;
use serde_json::{json, Value};

/// Requests in the Envoy mix.
const ENVOY_MIX_LEN: usize = 256;
/// SNI / DNS name of the Envoy under test.
const SERVER_NAME: &str = "inbound.bench";
/// The JWT-SVID audience of the Envoy under test.
const JWT_AUDIENCE: &str = "spiffe://mesh.example/ns/bench/sa/inbound";
/// How long the minted JWT-SVIDs live (a full benchmark run fits in it).
const JWT_LIFETIME_SECS: u64 = 4 * 3600;

/// One ES256 key (a fixed scalar: fixtures, not secrets) that signs a
/// JWT-SVID per peer; its JWKS is the bundle of both trust domains.
struct JwtFixture {
    jwks: Value,
    tokens: Vec<String>,
}

impl JwtFixture {
    fn new() -> JwtFixture {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine as _;
        use p256::ecdsa::signature::Signer as _;
        let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        let key = p256::ecdsa::SigningKey::from_slice(&[0x42; 32]).expect("P-256 scalar");
        let point = key.verifying_key().to_encoded_point(false);
        let (Some(x), Some(y)) = (point.x(), point.y()) else {
            panic!("uncompressed point");
        };
        let jwks = json!({"keys": [{
            "kty": "EC", "crv": "P-256", "kid": "bench", "use": "jwt-svid",
            "x": b64(x), "y": b64(y),
        }]});
        let now = unix_now();
        let header = b64(br#"{"alg":"ES256","kid":"bench","typ":"JWT"}"#);
        let tokens = ENVOY_PEERS
            .iter()
            .map(|peer| {
                let claims = json!({
                    "sub": peer, "aud": [JWT_AUDIENCE],
                    "iat": now - 60, "exp": now + JWT_LIFETIME_SECS,
                });
                let input = format!("{header}.{}", b64(claims.to_string().as_bytes()));
                let signature: p256::ecdsa::Signature = key.sign(input.as_bytes());
                format!("{input}.{}", b64(&signature.to_bytes()))
            })
            .collect();
        JwtFixture { jwks, tokens }
    }

    /// The plugin configuration members that turn JWT-SVID verification on.
    fn configure(&self, plugin: &mut Value) {
        plugin["jwt_svid"] = json!({
            "header": "x-jwt-svid",
            "audiences": [JWT_AUDIENCE],
            "max_lifetime_secs": JWT_LIFETIME_SECS + 120,
        });
        plugin["trust_bundles"] = json!({
            "mesh.example": self.jwks,
            "partner.example": self.jwks,
        });
    }

    /// The mix with each request carrying its peer's token.
    fn mix(&self, mix: &[(usize, RequestSpec)]) -> Vec<(usize, RequestSpec)> {
        mix.iter()
            .map(|(peer, spec)| {
                let mut spec = spec.clone();
                let token = self.tokens.get(*peer).expect("a token per peer").clone();
                spec.headers.push(("x-jwt-svid".to_owned(), token));
                (*peer, spec)
            })
            .collect()
    }
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn need(args: &[String], name: &str) -> String {
    arg(args, name).unwrap_or_else(|| panic!("missing {name}"))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("write") => write(&args),
        Some("check") => check(&args),
        _ => {
            eprintln!("usage: envoy-fixtures write|check ... (see the source)");
            std::process::exit(2);
        }
    }
}

fn put(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn file(p: &Path) -> Value {
    json!({ "filename": p.display().to_string() })
}

fn trust_domain(id: &str) -> &str {
    id.trim_start_matches("spiffe://")
        .split('/')
        .next()
        .unwrap_or("")
}

fn wasm_filter(wasm: &str, config: Option<String>) -> Value {
    let mut cfg = json!({
        "name": "bench",
        "root_id": "bench",
        // As envoy/demo.yaml: a trap answers 503 and the VM is reloaded.
        "failure_policy": "FAIL_RELOAD",
        "vm_config": {
            "vm_id": "bench",
            "runtime": "envoy.wasm.runtime.v8",
            "code": { "local": { "filename": wasm } }
        }
    });
    if let Some(c) = config {
        cfg["configuration"] = json!({
            "@type": "type.googleapis.com/google.protobuf.StringValue",
            "value": c
        });
    }
    json!({
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": cfg
        }
    })
}

/// The dynamic-module filter `lib<module>.so` with `config` as its
/// `filter_config` (a `StringValue`: the exact bytes, as envoy/native/).
fn module_filter(module: &str, config: &str) -> Value {
    json!({
        "name": module,
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter",
            "dynamic_module_config": { "name": module },
            "filter_name": module,
            "filter_config": {
                "@type": "type.googleapis.com/google.protobuf.StringValue",
                "value": config
            }
        }
    })
}

fn target_config(
    certs: &Path,
    port: u16,
    admin_port: u16,
    filters: Vec<Value>,
    xfcc: bool,
) -> Value {
    let mut http_filters = filters;
    http_filters.push(json!({
        "name": "envoy.filters.http.router",
        "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" }
    }));
    let mut hcm = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "inbound",
        "codec_type": "AUTO",
        "normalize_path": true,
        "merge_slashes": true,
        "path_with_escaped_slashes_action": "REJECT_REQUEST",
        "http_filters": http_filters,
        "route_config": {
            "name": "local",
            "virtual_hosts": [{
                "name": "all",
                "domains": ["*"],
                "routes": [{
                    "match": { "prefix": "/" },
                    "direct_response": { "status": 200, "body": { "inline_string": "ok\n" } }
                }]
            }]
        }
    });
    if xfcc {
        // meshward's default (`peer_certificate: forwarded`): the filter
        // reads the verified peer certificate from XFCC.
        hcm["forward_client_cert_details"] = json!("SANITIZE_SET");
        hcm["set_current_client_cert_details"] = json!({ "uri": true, "cert": true });
    }
    json!({
        "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": admin_port } } },
        "static_resources": {
            "listeners": [{
                "name": "inbound",
                "address": { "socket_address": { "address": "127.0.0.1", "port_value": port } },
                "filter_chains": [{
                    "transport_socket": {
                        "name": "envoy.transport_sockets.tls",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                            "require_client_certificate": true,
                            "common_tls_context": {
                                "tls_certificates": [{
                                    "certificate_chain": file(&certs.join("server.pem")),
                                    "private_key": file(&certs.join("server.key"))
                                }],
                                "validation_context": {
                                    "custom_validator_config": {
                                        "name": "envoy.tls.cert_validator.spiffe",
                                        "typed_config": {
                                            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.SPIFFECertValidatorConfig",
                                            "trust_domains": [
                                                { "name": "mesh.example", "trust_bundle": file(&certs.join("mesh.example-ca.pem")) },
                                                { "name": "partner.example", "trust_bundle": file(&certs.join("partner.example-ca.pem")) }
                                            ]
                                        }
                                    }
                                }
                            }
                        }
                    },
                    "filters": [{ "name": "envoy.filters.network.http_connection_manager", "typed_config": hcm }]
                }]
            }]
        }
    })
}

fn front_config(certs: &Path, port: u16, admin_port: u16, target_port: u16) -> Value {
    let routes: Vec<Value> = (0..ENVOY_PEERS.len())
        .map(|i| {
            json!({
                "match": {
                    "prefix": "/",
                    "headers": [{ "name": "x-bench-peer", "string_match": { "exact": i.to_string() } }]
                },
                "route": { "cluster": format!("peer{i}"), "timeout": "10s" }
            })
        })
        .collect();
    let clusters: Vec<Value> = (0..ENVOY_PEERS.len())
        .map(|i| {
            json!({
                "name": format!("peer{i}"),
                "type": "STATIC",
                "connect_timeout": "2s",
                "circuit_breakers": { "thresholds": [{ "max_connections": 4096, "max_pending_requests": 4096, "max_requests": 4096 }] },
                "load_assignment": {
                    "cluster_name": format!("peer{i}"),
                    "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": {
                        "socket_address": { "address": "127.0.0.1", "port_value": target_port }
                    } } }] }]
                },
                "transport_socket": {
                    "name": "envoy.transport_sockets.tls",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                        "sni": SERVER_NAME,
                        "common_tls_context": {
                            "tls_certificates": [{
                                "certificate_chain": file(&certs.join(format!("peer{i}.pem"))),
                                "private_key": file(&certs.join(format!("peer{i}.key")))
                            }],
                            "validation_context": { "trusted_ca": file(&certs.join("mesh.example-ca.pem")) }
                        }
                    }
                }
            })
        })
        .collect();
    json!({
        "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": admin_port } } },
        "static_resources": {
            "listeners": [{
                "name": "front",
                "address": { "socket_address": { "address": "127.0.0.1", "port_value": port } },
                "filter_chains": [{ "filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "front",
                        "codec_type": "HTTP1",
                        "http_filters": [{
                            "name": "envoy.filters.http.router",
                            "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" }
                        }],
                        "route_config": {
                            "name": "front",
                            "virtual_hosts": [{ "name": "all", "domains": ["*"], "routes": routes }]
                        }
                    }
                }] }]
            }],
            "clusters": clusters
        }
    })
}

fn lua_str(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

fn wrk_script(mix: &[(usize, RequestSpec)]) -> String {
    let mut out = String::from(
        "-- generated by `envoy-fixtures write`: the Envoy request mix, cycled in order\nlocal specs = {\n",
    );
    for (peer, spec) in mix {
        let mut headers = format!(
            "[\"Host\"] = {}, [\"x-bench-peer\"] = \"{peer}\"",
            lua_str(&spec.authority)
        );
        for (k, v) in &spec.headers {
            if k == "x-request-id" {
                continue; // Envoy generates one per request
            }
            let _ = write!(headers, ", [{}] = {}", lua_str(k), lua_str(v));
        }
        let _ = writeln!(
            out,
            "  {{ {}, {}, {{ {headers} }} }},",
            lua_str(spec.method),
            lua_str(&spec.path)
        );
    }
    out.push_str(
        "}\nlocal reqs = {}\nlocal n = 0\n\ninit = function(args)\n  for i, s in ipairs(specs) do\n    reqs[i] = wrk.format(s[1], s[2], s[3], nil)\n  end\n  n = 0\nend\n\nrequest = function()\n  n = n % #reqs + 1\n  return reqs[n]\nend\n\n-- One machine-readable line for scripts/bench-envoy.sh (latencies in µs).\ndone = function(summary, latency, requests)\n  local e = summary.errors\n  io.write(string.format(\"WRK_RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d mean_us=%.1f non2xx=%d errors=%d\\n\",\n    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.mean,\n    e.status, e.connect + e.read + e.write + e.timeout))\nend\n",
    );
    out
}

fn write(args: &[String]) {
    let out = PathBuf::from(need(args, "--out"));
    let wasm = need(args, "--wasm");
    let noop = need(args, "--noop-wasm");
    let port: u16 = need(args, "--target-port").parse().expect("port");
    let admin: u16 = need(args, "--target-admin-port").parse().expect("port");
    let front_port: u16 = need(args, "--front-port").parse().expect("port");
    let front_admin: u16 = need(args, "--front-admin-port").parse().expect("port");
    let module = arg(args, "--module").unwrap_or_else(|| "meshward".to_owned());
    let noop_module =
        arg(args, "--noop-module").unwrap_or_else(|| "meshward_bench_noop".to_owned());
    let sizes: Vec<usize> = need(args, "--sizes")
        .split(',')
        .map(|n| n.parse().expect("size"))
        .collect();
    let certs = out.join("certs");
    std::fs::create_dir_all(&certs).expect("mkdir");

    // The end-to-end harness's PKI: a CA per trust domain; certificates
    // short-lived (12 h, started 5 min ago), within the policy's
    // `max_cert_lifetime 24h`.
    let mesh = Ca::new("mesh.example");
    let partner = Ca::new("partner.example");
    let short_lived = |leaf: SvidBuilder<'_>| {
        leaf.validity(Duration::from_secs(5 * 60), Duration::from_secs(12 * 3600))
            .issue()
    };
    let server = short_lived(
        mesh.leaf_with_uris(&["spiffe://mesh.example/ns/bench/sa/inbound"])
            .dns(SERVER_NAME),
    );
    write_cert_dir(&certs, &[&mesh, &partner], &server, None).expect("write certificates");
    for (i, id) in ENVOY_PEERS.iter().enumerate() {
        let ca = if trust_domain(id) == "partner.example" {
            &partner
        } else {
            &mesh
        };
        let peer = short_lived(ca.leaf_with_uris(&[id]));
        put(&certs.join(format!("peer{i}.pem")), &peer.cert_pem);
        put(&certs.join(format!("peer{i}.key")), &peer.key_pem);
    }

    let jwt = JwtFixture::new();
    let pretty = |v: &Value| serde_json::to_string_pretty(v).expect("json");
    // One Envoy-under-test bootstrap per row: its filters, and whether the
    // listener forwards the client certificate in XFCC.
    let put_target = |row: &str, filters: Vec<Value>, xfcc: bool| {
        put(
            &out.join(format!("target-{row}.json")),
            &pretty(&target_config(&certs, port, admin, filters, xfcc)),
        );
    };
    let meshward = |plugin: &Value| vec![wasm_filter(&wasm, Some(plugin.to_string()))];
    put_target("none", vec![], false);
    put_target("noop", vec![wasm_filter(&noop, None)], false);
    put_target("noop-xfcc", vec![wasm_filter(&noop, None)], true);
    put_target("noop-module", vec![module_filter(&noop_module, "")], false);
    put_target(
        "noop-module-xfcc",
        vec![module_filter(&noop_module, "")],
        true,
    );
    for &n in &sizes {
        // One mix per policy size (its services exist in that policy); the
        // rows without a policy use the largest size's mix.
        let mix = envoy_mix(n, ENVOY_MIX_LEN, SEED);
        put(&out.join(format!("requests-{n}.lua")), &wrk_script(&mix));
        put(&out.join(format!("requests-{n}.tsv")), &requests_tsv(&mix));
        let w = Workload::with_mix(n, 1);
        let view = PolicyView::of(&w.model);
        put_target(&format!("rbac-{n}"), rbac::filters(&view), false);
        let mut plugin = plugin_config_json(&w.bytes, &[]);
        plugin["audit_log"] = json!("denies");
        put_target(&format!("meshward-{n}"), meshward(&plugin), true);
        put_target(
            &format!("native-{n}"),
            vec![module_filter(&module, &plugin.to_string())],
            true,
        );
        // The same publishing no filter state (`lean-N`, `native-lean-N`):
        // what the decision facts for access logs cost per request.
        let mut lean = plugin.clone();
        lean["filter_state"] = json!("none");
        put_target(&format!("lean-{n}"), meshward(&lean), true);
        put_target(
            &format!("native-lean-{n}"),
            vec![module_filter(&module, &lean.to_string())],
            true,
        );
        put(
            &out.join(format!("meshward-{n}.plugin.json")),
            &plugin.to_string(),
        );
        // The same with a JWT-SVID on every request (`jwt-N`): the decisions
        // stay the peer's, the token adds a header and a cache hit.
        let mut with_jwt = plugin.clone();
        jwt.configure(&mut with_jwt);
        put_target(&format!("jwt-{n}"), meshward(&with_jwt), true);
        let jwt_mix = jwt.mix(&mix);
        put(
            &out.join(format!("requests-jwt-{n}.lua")),
            &wrk_script(&jwt_mix),
        );
        put(
            &out.join(format!("requests-jwt-{n}.tsv")),
            &requests_tsv(&jwt_mix),
        );
        // The same without audit lines (`quiet-N`), to attribute their cost.
        plugin["audit_log"] = json!("none");
        put_target(&format!("quiet-{n}"), meshward(&plugin), true);
        let mut expected = String::new();
        let mut allowed = 0;
        for (_, spec) in &mix {
            let owned = Owned::new(spec.clone());
            let allow = evaluate(&w.policy, &owned.request()).effect == Effect::Allow;
            allowed += usize::from(allow);
            expected.push_str(if allow { "allow\n" } else { "deny\n" });
        }
        put(&out.join(format!("expected-{n}.txt")), &expected);
        eprintln!(
            "{n} rules: {allowed}/{} of the Envoy mix allowed",
            mix.len()
        );
    }
    put(
        &out.join("front.json"),
        &pretty(&front_config(&certs, front_port, front_admin, port)),
    );
}

fn requests_tsv(mix: &[(usize, RequestSpec)]) -> String {
    let mut requests = String::new();
    for (peer, spec) in mix {
        let _ = writeln!(
            requests,
            "{peer}\t{}\t{}\t{}\t{}",
            spec.method,
            spec.path,
            spec.authority,
            spec.headers
                .iter()
                .filter(|(k, _)| k != "x-request-id")
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(";")
        );
    }
    requests
}

fn check(args: &[String]) {
    let port: u16 = need(args, "--front-port").parse().expect("port");
    let expected = std::fs::read_to_string(need(args, "--expected")).expect("expected file");
    let expected: Vec<&str> = expected.lines().collect();
    let requests = std::fs::read_to_string(need(args, "--requests")).expect("requests file");
    let limit: usize = arg(args, "--limit").map_or(usize::MAX, |l| l.parse().expect("limit"));
    let mut mismatches = Vec::new();
    let mut checked = 0;
    for (line, want) in requests.lines().zip(&expected).take(limit) {
        let f: Vec<&str> = line.split('\t').collect();
        let (peer, method, path, authority, headers) = (f[0], f[1], f[2], f[3], f[4]);
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nhost: {authority}\r\nx-bench-peer: {peer}\r\nconnection: close\r\ncontent-length: 0\r\n"
        );
        for h in headers.split(';').filter(|h| !h.is_empty()) {
            let (k, v) = h.split_once('=').expect("header");
            let _ = write!(req, "{k}: {v}\r\n");
        }
        req.push_str("\r\n");
        let mut stream =
            TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("connect: {e}"));
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        stream.write_all(req.as_bytes()).expect("send");
        let mut resp = Vec::new();
        let _ = stream.read_to_end(&mut resp);
        let resp = String::from_utf8_lossy(&resp);
        let status: u16 = resp
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        // Envoy turns a local reply to a gRPC request into HTTP 200 with a
        // `grpc-status` (7 = PERMISSION_DENIED, 16 = UNAUTHENTICATED).
        let grpc_status = resp
            .split("\r\n\r\n")
            .next()
            .unwrap_or("")
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case("grpc-status")
                    .then(|| v.trim().to_owned())
            });
        // A gRPC request that reaches the `direct_response` gets grpc-status
        // 2 (UNKNOWN, message "ok"): Envoy converts that local reply too.
        let got = match (status, grpc_status.as_deref()) {
            (200, None | Some("0" | "2")) => "allow",
            (200, Some("7" | "16")) | (401 | 403, _) => "deny",
            _ => "error",
        };
        checked += 1;
        if got != *want {
            mismatches.push(format!(
                "  {method} {path} peer {} host {authority} [{headers}]: expected {want}, got {status} (grpc-status {})",
                ENVOY_PEERS[peer.parse::<usize>().expect("peer")],
                grpc_status.as_deref().unwrap_or("-")
            ));
        }
    }
    if mismatches.is_empty() {
        println!("all {checked} requests decided as expected");
    } else {
        eprintln!(
            "{} of {checked} requests decided differently:\n{}",
            mismatches.len(),
            mismatches.join("\n")
        );
        std::process::exit(1);
    }
}
