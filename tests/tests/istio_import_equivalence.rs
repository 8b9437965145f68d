//! `meshward import istio`, proven against Envoy RBAC.
//!
//! The example AuthorizationPolicies in `istio/import-examples/` are
//! imported; for every workload whose policies converted exactly (no
//! finding but notes), two listeners of one real Envoy decide the importer's
//! request corpus (every principal × every request shape the policies tell
//! apart: prefixes and exact paths, a fresh segment below each, string-prefix
//! near misses, queries, each method class, hosts with and without a port and
//! in upper case):
//!
//! 1. Envoy's RBAC filter configured the way istiod renders those
//!    AuthorizationPolicies (rendered here, independently of the importer,
//!    from the YAML: istio/istio `pilot/pkg/security/authz/builder/builder.go`
//!    (one RBAC filter per action, DENY before ALLOW, no ALLOW filter when
//!    no ALLOW policy applies, policy names `ns[NS]-policy[NAME]-rule[I]`),
//!    `model/model.go` (`from` sources OR-ed, fields AND-ed, `not*` as
//!    `not_id`/`not_rule`, a rule without `to` is `any`),
//!    `model/generator.go` (principals as `authenticated.principal_name`
//!    with `spiffe://` prepended; namespaces as the regex `.*/ns/NS/.*`;
//!    methods as `:method` header matches; paths as `url_path`; hosts as
//!    case-insensitive `:authority` matches) and `matcher/string.go`
//!    (`*` = `.+`, `abc*` prefix, `*abc` suffix));
//! 2. the meshward filter with the imported policy.
//!
//! The two must agree on every request, and both must agree with the
//! decision the importer expected. A second test does the same for request
//! principals and claims with real signed tokens, Envoy's `jwt_authn`
//! standing in for Istio's `istio_authn` (see `payload_matcher`).

use std::collections::BTreeMap;
use std::fs;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use meshward_e2e::envoy::{Envoy, LISTENER};
use meshward_e2e::istio::MeshCa;
use meshward_e2e::pki::Leaf;
use meshward_e2e::topology::tokens::{self, SigningKey};
use meshward_e2e::workspace::{filter_wasm, repo_root, Scratch};
use meshward_e2e::Request;
use meshward_policy::compile_source;
use meshward_policy::import::{import_istio, Code, ImportOptions, ImportedPolicy, Input, Sample};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// The example manifests, as `(file name, parsed documents)`.
fn examples() -> (Vec<Input>, Vec<serde_yaml::Value>) {
    let dir = repo_root().join("istio/import-examples");
    let mut inputs = Vec::new();
    let mut docs = Vec::new();
    let mut files: Vec<_> = fs::read_dir(&dir)
        .expect("istio/import-examples")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    for path in files {
        let text = fs::read_to_string(&path).expect("read example");
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value: serde_yaml::Value = serde::Deserialize::deserialize(doc).expect("yaml");
            docs.push(value);
        }
        inputs.push(Input {
            name: path
                .strip_prefix(repo_root())
                .unwrap_or(&path)
                .display()
                .to_string(),
            text,
        });
    }
    (inputs, docs)
}

// ---- Istio's rendering of AuthorizationPolicy into Envoy RBAC ----

/// `matcher.StringMatcherWithPrefix`: `*` is `.+`, a leading `*` a suffix,
/// a trailing `*` a prefix, else exact; `prefix` is prepended except to `*`.
fn string_matcher(value: &str, prefix: &str, ignore_case: bool) -> Value {
    let mut m = if value == "*" {
        json!({ "safe_regex": { "regex": ".+" } })
    } else if let Some(rest) = value.strip_prefix('*') {
        json!({ "suffix": format!("{prefix}{rest}") })
    } else if let Some(rest) = value.strip_suffix('*') {
        json!({ "prefix": format!("{prefix}{rest}") })
    } else {
        json!({ "exact": format!("{prefix}{value}") })
    };
    if ignore_case {
        m["ignore_case"] = json!(true);
    }
    m
}

fn strings(v: &serde_yaml::Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| {
            s.iter()
                .map(|x| match x {
                    serde_yaml::Value::String(s) => s.clone(),
                    other => serde_yaml::to_string(other).unwrap().trim().to_owned(),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn or_ids(ids: Vec<Value>) -> Value {
    json!({ "or_ids": { "ids": ids } })
}

fn or_rules(rules: Vec<Value>) -> Value {
    json!({ "or_rules": { "rules": rules } })
}

fn authenticated(m: Value) -> Value {
    json!({ "authenticated": { "principal_name": m } })
}

/// A `request.headers[NAME]` value: present for `*`, else a regex that
/// also finds the value inside a comma-joined list (the shape of
/// `builder/testdata/http/allow-full-rule-out.yaml`).
fn header_matcher(name: &str, value: &str) -> Value {
    if value == "*" {
        return json!({ "header": { "name": name, "present_match": true } });
    }
    let v = if let Some(rest) = value.strip_prefix('*') {
        format!(".*{rest}")
    } else if let Some(rest) = value.strip_suffix('*') {
        format!("{rest}.*")
    } else {
        value.to_owned()
    };
    json!({ "header": { "name": name, "string_match": { "safe_regex": {
        "regex": format!("^{v}$|^{v},.*|.*,{v},.*|.*,{v}$")
    } } } })
}

/// A matcher on a claim of the verified token. istiod matches
/// `istio_authn`'s `request.auth.claims`, which Istio's own proxy fills;
/// upstream Envoy's `jwt_authn` writes the same payload under its own name
/// (`payload_in_metadata`), so only the metadata namespace differs.
fn payload_matcher(claim: &str, value: Value) -> Value {
    json!({ "metadata": {
        "filter": "envoy.filters.http.jwt_authn",
        "path": [{ "key": "payload" }, { "key": claim }],
        "value": value
    } })
}

/// `generator.go`: principals, namespaces (and `source.*` conditions).
fn principal_ids(key: &str, values: &[String]) -> Value {
    let ids = values
        .iter()
        .map(|v| match key {
            "principals" | "source.principal" => {
                authenticated(string_matcher(v, "spiffe://", false))
            }
            "namespaces" | "source.namespace" => authenticated(json!({
                "safe_regex": { "regex": format!(".*/ns/{}/.*", v.replace('*', ".*")) }
            })),
            "requestPrincipals" => {
                // Split at the last `/` (generator.go), matched on the
                // token payload's `iss` and `sub`.
                let (iss, sub) = if v == "*" { ("*", "*") } else { v.rsplit_once('/').expect("iss/sub") };
                json!({ "and_ids": { "ids": [
                    payload_matcher("iss", json!({ "string_match": string_matcher(iss, "", false) })),
                    payload_matcher("sub", json!({ "string_match": string_matcher(sub, "", false) })),
                ] } })
            }
            claim if claim.starts_with("request.auth.claims[") => {
                let name = claim
                    .trim_start_matches("request.auth.claims[")
                    .trim_end_matches(']');
                payload_matcher(
                    name,
                    json!({ "list_match": { "one_of": { "string_match": string_matcher(v, "", false) } } }),
                )
            }
            header if header.starts_with("request.headers[") => {
                let name = header
                    .trim_start_matches("request.headers[")
                    .trim_end_matches(']');
                header_matcher(name, v)
            }
            other => panic!("not rendered here: {other}"),
        })
        .collect();
    or_ids(ids)
}

fn permission(op: &serde_yaml::Value) -> Value {
    let mut rules = Vec::new();
    let map = op.as_mapping().expect("operation");
    for (k, v) in map {
        let key = k.as_str().expect("key");
        let values = strings(v);
        let (negated, base) = match key.strip_prefix("not") {
            Some(rest) => (true, rest.to_ascii_lowercase()),
            None => (false, key.to_owned()),
        };
        let list: Vec<Value> = values
            .iter()
            .map(|value| match base.as_str() {
                "methods" => {
                    if value == "*" {
                        json!({ "header": { "name": ":method", "present_match": true } })
                    } else {
                        json!({ "header": { "name": ":method", "string_match": string_matcher(value, "", false) } })
                    }
                }
                "paths" => json!({ "url_path": { "path": string_matcher(value, "", false) } }),
                "hosts" => {
                    if value == "*" {
                        json!({ "header": { "name": ":authority", "present_match": true } })
                    } else {
                        json!({ "header": { "name": ":authority", "string_match": string_matcher(value, "", true) } })
                    }
                }
                other => panic!("operation field not rendered here: {other}"),
            })
            .collect();
        let rule = or_rules(list);
        rules.push(if negated {
            json!({ "not_rule": rule })
        } else {
            rule
        });
    }
    json!({ "and_rules": { "rules": rules } })
}

fn principal(source: Option<&serde_yaml::Value>, when: &[Value]) -> Value {
    let mut ids = Vec::new();
    if let Some(map) = source.and_then(|s| s.as_mapping()) {
        for (k, v) in map {
            let key = k.as_str().expect("key");
            let values = strings(v);
            match key.strip_prefix("not") {
                Some(rest) => {
                    let base = format!("{}{}", rest[..1].to_ascii_lowercase(), &rest[1..]);
                    ids.push(json!({ "not_id": principal_ids(&base, &values) }));
                }
                None => ids.push(principal_ids(key, &values)),
            }
        }
    }
    ids.extend(when.iter().cloned());
    if ids.is_empty() {
        json!({ "any": true })
    } else {
        json!({ "and_ids": { "ids": ids } })
    }
}

/// `when` conditions on the caller, as principal ids.
fn when_ids(rule: &serde_yaml::Value) -> Vec<Value> {
    let Some(conds) = rule.get("when").and_then(|w| w.as_sequence()) else {
        return Vec::new();
    };
    let mut ids = Vec::new();
    for cond in conds {
        let key = cond["key"].as_str().expect("key");
        if let Some(values) = cond.get("values") {
            ids.push(principal_ids(key, &strings(values)));
        }
        if let Some(values) = cond.get("notValues") {
            ids.push(json!({ "not_id": principal_ids(key, &strings(values)) }));
        }
    }
    ids
}

/// One RBAC filter per action, DENY first (`builder.go`).
fn rbac_filters(policies: &[&serde_yaml::Value]) -> Vec<Value> {
    let mut by_action: BTreeMap<&str, serde_json::Map<String, Value>> = BTreeMap::new();
    let mut has_allow = false;
    for ap in policies {
        let spec = &ap["spec"];
        let action = spec
            .get("action")
            .and_then(|a| a.as_str())
            .unwrap_or("ALLOW");
        if !matches!(action, "ALLOW" | "DENY") {
            continue; // AUDIT renders a LOG filter: no decision.
        }
        has_allow |= action == "ALLOW";
        let ns = ap["metadata"]["namespace"].as_str().expect("namespace");
        let name = ap["metadata"]["name"].as_str().expect("name");
        let entry = by_action.entry(action).or_default();
        let rules = spec
            .get("rules")
            .and_then(|r| r.as_sequence())
            .cloned()
            .unwrap_or_default();
        for (i, rule) in rules.iter().enumerate() {
            let when = when_ids(rule);
            let permissions: Vec<Value> = match rule.get("to").and_then(|t| t.as_sequence()) {
                Some(ops) => ops.iter().map(|o| permission(&o["operation"])).collect(),
                None => vec![json!({ "any": true })],
            };
            let principals: Vec<Value> = match rule.get("from").and_then(|f| f.as_sequence()) {
                Some(sources) => sources
                    .iter()
                    .map(|s| principal(s.get("source"), &when))
                    .collect(),
                None => vec![principal(None, &when)],
            };
            entry.insert(
                format!("ns[{ns}]-policy[{name}]-rule[{i}]"),
                json!({ "permissions": permissions, "principals": principals }),
            );
        }
    }
    let mut filters = Vec::new();
    for action in ["DENY", "ALLOW"] {
        if action == "ALLOW" && !has_allow {
            continue;
        }
        let policies = by_action.remove(action).unwrap_or_default();
        if action == "DENY" && policies.is_empty() {
            continue;
        }
        filters.push(json!({
            "name": "envoy.filters.http.rbac",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
                "rules": { "action": action, "policies": policies }
            }
        }));
    }
    filters
}

// ---- one Envoy, two listeners per workload ----

fn listener(name: &str, dir: &std::path::Path, filters: Vec<Value>) -> Value {
    let mut http_filters = filters;
    http_filters.push(json!({
        "name": "envoy.filters.http.router",
        "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" }
    }));
    json!({
        "name": name,
        "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } },
        "filter_chains": [{
            "transport_socket": {
                "name": "envoy.transport_sockets.tls",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                    "require_client_certificate": true,
                    "common_tls_context": {
                        "tls_certificates": [{
                            "certificate_chain": { "filename": dir.join("cert-chain.pem") },
                            "private_key": { "filename": dir.join("key.pem") }
                        }],
                        "validation_context": { "trusted_ca": { "filename": dir.join("root-cert.pem") } }
                    }
                }
            },
            "filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": name,
                    // Istio's default `pathNormalization: BASE`.
                    "normalize_path": true,
                    "http_filters": http_filters,
                    "route_config": {
                        "name": name,
                        "virtual_hosts": [{
                            "name": "app",
                            "domains": ["*"],
                            "routes": [{ "match": { "prefix": "/" }, "direct_response": { "status": 200, "body": { "inline_string": "app" } } }]
                        }]
                    }
                }
            }]
        }]
    })
}

fn meshward_filter(policy: &ImportedPolicy) -> Value {
    let compiled = compile_source(&policy.source, &policy.file_name)
        .unwrap_or_else(|d| panic!("{} does not compile:\n{d}", policy.file_name));
    let mut config = compiled.plugin_config_value(&[]);
    // Istio-issued identities, taken from the connection.
    config["peer_certificate"] = json!("connection_only");
    json!({
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": "meshward",
                "root_id": "meshward",
                "failure_policy": "FAIL_RELOAD",
                "vm_config": {
                    "vm_id": "meshward",
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": { "local": { "filename": filter_wasm() } }
                },
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": config.to_string()
                }
            }
        }
    })
}

fn listener_addresses(envoy: &Envoy) -> BTreeMap<String, std::net::SocketAddr> {
    let listeners: Value =
        serde_json::from_str(&envoy.admin_get("/listeners?format=json")).expect("listeners");
    listeners["listener_statuses"]
        .as_array()
        .expect("listener_statuses")
        .iter()
        .map(|l| {
            let sa = &l["local_address"]["socket_address"];
            let addr = std::net::SocketAddr::new(
                sa["address"]
                    .as_str()
                    .expect("address")
                    .parse()
                    .expect("ip"),
                u16::try_from(sa["port_value"].as_u64().expect("port")).expect("port"),
            );
            (l["name"].as_str().expect("name").to_owned(), addr)
        })
        .collect()
}

/// A client config presenting `leaf`, trusting the mesh CA for `localhost`.
fn client_config(ca_der: &[u8], leaf: &Leaf) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca_der.to_vec()))
        .expect("CA");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![CertificateDer::from(leaf.cert_der.clone())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf.key_der.clone())),
        )
        .expect("client certificate");
    Arc::new(config)
}

/// A kept-alive mTLS connection to one listener, reconnecting when the
/// server closes it. The harness client sends `connection: close` and reads
/// a body a `HEAD` response never sends; the corpus is large enough that a
/// handshake per request would dominate the test's time.
struct Conn {
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    stream: Option<BufReader<StreamOwned<ClientConnection, TcpStream>>>,
}

impl Conn {
    fn new(addr: SocketAddr, config: Arc<ClientConfig>) -> Conn {
        Conn {
            addr,
            config,
            stream: None,
        }
    }

    fn connect(&self) -> std::io::Result<BufReader<StreamOwned<ClientConnection, TcpStream>>> {
        let tcp = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))?;
        tcp.set_read_timeout(Some(Duration::from_secs(15)))?;
        let name = ServerName::try_from("localhost").expect("server name");
        let conn = ClientConnection::new(Arc::clone(&self.config), name).expect("tls");
        Ok(BufReader::new(StreamOwned::new(conn, tcp)))
    }

    /// One request on the connection; the response status.
    fn exchange(&mut self, bytes: &[u8], head: bool) -> std::io::Result<(u16, bool)> {
        if self.stream.is_none() {
            self.stream = Some(self.connect()?);
        }
        let stream = self.stream.as_mut().expect("connected");
        stream.get_mut().write_all(bytes)?;
        stream.get_mut().flush()?;
        let mut line = String::new();
        if stream.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("status line {line:?}")))?;
        let mut length = 0usize;
        let mut close = false;
        loop {
            let mut header = String::new();
            stream.read_line(&mut header)?;
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').unwrap_or((header, ""));
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
            if name.eq_ignore_ascii_case("connection") && value.trim().eq_ignore_ascii_case("close")
            {
                close = true;
            }
        }
        if !head {
            let mut body = vec![0; length];
            std::io::Read::read_exact(stream, &mut body)?;
        }
        Ok((status, close))
    }

    /// Sends `request` (kept alive), reconnecting once if the server had
    /// closed the connection.
    fn status(&mut self, request: &Request) -> u16 {
        let bytes = String::from_utf8(request.to_bytes())
            .expect("utf-8")
            .replace("connection: close\r\n", "connection: keep-alive\r\n")
            .into_bytes();
        let head = request.method() == "HEAD";
        for attempt in 0..2 {
            match self.exchange(&bytes, head) {
                Ok((status, close)) => {
                    if close {
                        self.stream = None;
                    }
                    return status;
                }
                Err(e) if attempt == 0 => {
                    let _ = e;
                    self.stream = None;
                }
                Err(e) => panic!("{}: {e}", self.addr),
            }
        }
        unreachable!("two attempts")
    }
}

fn request_for(sample: &Sample) -> Request {
    let mut r = Request::new(&sample.probe.method, &sample.probe.path)
        .header("host", &sample.probe.authority);
    for (k, v) in &sample.probe.headers {
        r = r.header(k, v);
    }
    r
}

#[test]
fn imported_policies_decide_like_istio_rbac() {
    let (inputs, docs) = examples();
    let result = import_istio(&inputs, &ImportOptions::default()).expect("import");
    // The converted subset: workloads whose documents have no finding but
    // notes and I003 (header values, which Istio also finds inside a
    // comma-joined list: the corpus sends none; see the end of the test).
    let converted = |p: &&ImportedPolicy| {
        !result
            .findings
            .iter()
            .any(|f| p.documents.contains(&f.document) && !f.code.is_note() && f.code != Code::I003)
    };
    let exact: Vec<&ImportedPolicy> = result.policies.iter().filter(converted).collect();
    let names: Vec<&str> = exact.iter().map(|p| p.file_name.as_str()).collect();
    assert_eq!(
        names,
        [
            "mesh.policy",
            "shop.namespace.policy",
            "shop.catalog.policy",
            "shop.inventory.policy",
            "shop.orders.policy"
        ],
        "{}",
        result.report_text()
    );

    let scratch = Scratch::new("istio-import");
    let dir = scratch.path();
    let ca = MeshCa::new();
    let server = ca.svid("istio-system", "envoy", time::Duration::hours(2), true);
    fs::write(dir.join("root-cert.pem"), ca.cert_pem()).expect("write CA");
    fs::write(dir.join("cert-chain.pem"), &server.cert_pem).expect("write cert");
    fs::write(dir.join("key.pem"), &server.key_pem).expect("write key");

    let mut listeners = Vec::new();
    for (i, policy) in exact.iter().enumerate() {
        let aps: Vec<&serde_yaml::Value> = docs
            .iter()
            .filter(|d| d["kind"].as_str() == Some("AuthorizationPolicy"))
            .filter(|d| {
                let id = format!(
                    "AuthorizationPolicy {}/{}",
                    d["metadata"]["namespace"].as_str().unwrap_or("default"),
                    d["metadata"]["name"].as_str().unwrap_or_default()
                );
                policy.documents.contains(&id)
            })
            .collect();
        assert_eq!(aps.len(), policy.documents.len(), "{}", policy.file_name);
        let meshward_name = if i == 0 {
            LISTENER.to_owned()
        } else {
            format!("meshward_{i}")
        };
        listeners.push(listener(&meshward_name, dir, vec![meshward_filter(policy)]));
        listeners.push(listener(&format!("rbac_{i}"), dir, rbac_filters(&aps)));
    }
    let bootstrap = json!({
        "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } } },
        "static_resources": { "listeners": listeners }
    });
    let envoy = Envoy::start(
        dir,
        &serde_json::to_string_pretty(&bootstrap).expect("json"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let addresses = listener_addresses(&envoy);

    // Peers: one certificate per SPIFFE ID in the corpus.
    let mut leaves: BTreeMap<String, Arc<ClientConfig>> = BTreeMap::new();
    let mut jobs: Vec<(usize, &Sample)> = Vec::new();
    for (i, policy) in exact.iter().enumerate() {
        for sample in &policy.samples {
            // Envoy sees mTLS peers only; user tokens need Istio's own
            // `istio_authn` filter, which upstream Envoy does not have.
            let Some(peer) = &sample.probe.peer else {
                continue;
            };
            if sample.probe.user.is_some() {
                continue;
            }
            // Envoy's HTTP/1 codec answers 400 to `CONNECT /path` before
            // any filter runs (in Istio as here).
            if sample.probe.method == "CONNECT" {
                continue;
            }
            assert!(
                sample.agrees,
                "the importer's own check disagreed: {sample:?}"
            );
            leaves.entry(peer.clone()).or_insert_with(|| {
                let path = peer
                    .strip_prefix("spiffe://cluster.local/ns/")
                    .expect("istio id");
                let (ns, sa) = path.split_once("/sa/").expect("ns/sa");
                client_config(
                    &ca.cert_der(),
                    &ca.svid(ns, sa, time::Duration::hours(2), false),
                )
            });
            jobs.push((i, sample));
        }
    }
    assert!(jobs.len() > 500, "corpus of {} requests", jobs.len());

    // One bucket per (workload, peer): its requests reuse two connections.
    let mut buckets: BTreeMap<(usize, String), Vec<&Sample>> = BTreeMap::new();
    for (i, sample) in &jobs {
        let peer = sample.probe.peer.clone().expect("peer");
        buckets.entry((*i, peer)).or_default().push(sample);
    }
    let buckets: Vec<_> = buckets.into_iter().collect();
    let next = AtomicUsize::new(0);
    let disagreements = Mutex::new(Vec::new());
    let started = std::time::Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let Some(((i, peer), samples)) = buckets.get(n) else { break };
                let config = &leaves[peer];
                let meshward_name = if *i == 0 { LISTENER.to_owned() } else { format!("meshward_{i}") };
                let mut rbac_conn = Conn::new(addresses[&format!("rbac_{i}")], Arc::clone(config));
                let mut meshward_conn = Conn::new(addresses[&meshward_name], Arc::clone(config));
                for sample in samples {
                    let request = request_for(sample);
                    let rbac = rbac_conn.status(&request);
                    let meshward = meshward_conn.status(&request);
                    let ok = (rbac == 200) == (meshward == 200)
                        && (rbac == 200) == sample.allow
                        && matches!(rbac, 200 | 403)
                        && matches!(meshward, 200 | 403);
                    if !ok {
                        disagreements.lock().expect("lock").push(format!(
                            "{}: {} {} {} from {peer}: RBAC {rbac}, meshward {meshward}, importer expected {}",
                            exact[*i].file_name,
                            sample.probe.method,
                            sample.probe.authority,
                            sample.probe.path,
                            if sample.allow { "allow" } else { "deny" }
                        ));
                    }
                }
            });
        }
    });
    let disagreements = disagreements.into_inner().expect("lock");
    let allowed = jobs.iter().filter(|(_, s)| s.allow).count();
    eprintln!(
        "istio import equivalence: {} requests ({allowed} allowed) on {} workloads, {} disagreements, {:?}",
        jobs.len(),
        exact.len(),
        disagreements.len(),
        started.elapsed()
    );
    // The documented difference: a header value inside a comma-joined list
    // matches Istio's rule, not meshward's (a fail-closed deny).
    let i = exact
        .iter()
        .position(|p| p.file_name == "shop.inventory.policy")
        .expect("inventory");
    let config = &leaves["spiffe://cluster.local/ns/shop/sa/import-probe"];
    let joined = Request::new("GET", "/inventory/widgets")
        .header("host", "inventory")
        .header("x-tenant", "initech,acme");
    let rbac = Conn::new(addresses[&format!("rbac_{i}")], Arc::clone(config)).status(&joined);
    let meshward_name = if i == 0 {
        LISTENER.to_owned()
    } else {
        format!("meshward_{i}")
    };
    let meshward = Conn::new(addresses[&meshward_name], Arc::clone(config)).status(&joined);
    assert_eq!((rbac, meshward), (200, 403), "comma-joined header value");

    assert!(
        disagreements.is_empty(),
        "{} of {} requests decided differently:\n{}",
        disagreements.len(),
        jobs.len(),
        disagreements.join("\n")
    );
    drop(envoy);
}

/// Request principals and claims: RequestAuthentication rendered as Istio
/// renders it for Envoy's `jwt_authn` (provider `origins-0`, a missing
/// token allowed, an invalid one refused), AuthorizationPolicy rules on the
/// token's `iss`, `sub` and claims; meshward with the imported policy and the
/// imported `user_tokens` settings. Real tokens, signed at test time.
#[test]
fn user_token_rules_decide_like_istio_jwt_authn_and_rbac() {
    let key = SigningKey::es256();
    let jwks = tokens::jwks(&[(&key, "k1")], &json!({}));
    let yaml = format!(
        r#"apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: ledger-jwt
  namespace: shop
spec:
  selector:
    matchLabels:
      app: ledger
  jwtRules:
    - issuer: https://accounts.shop.example
      audiences: ["ledger"]
      jwks: '{jwks}'
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: ledger-users
  namespace: shop
spec:
  selector:
    matchLabels:
      app: ledger
  rules:
    - from:
        - source:
            requestPrincipals: ["https://accounts.shop.example/alice", "https://accounts.shop.example/bob"]
      to:
        - operation:
            methods: ["GET"]
            paths: ["/ledger/*"]
    - from:
        - source:
            principals: ["cluster.local/ns/shop/sa/frontend"]
            requestPrincipals: ["https://accounts.shop.example/*"]
      to:
        - operation:
            methods: ["GET"]
            paths: ["/ledger"]
      when:
        - key: request.auth.claims[groups]
          values: ["auditors"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: ledger-suspended
  namespace: shop
spec:
  selector:
    matchLabels:
      app: ledger
  action: DENY
  rules:
    - when:
        - key: request.auth.claims[status]
          values: ["suspended"]
"#
    );
    let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&yaml)
        .map(|d| serde::Deserialize::deserialize(d).expect("yaml"))
        .collect();
    let result = import_istio(
        &[Input {
            name: "ledger.yaml".to_owned(),
            text: yaml.clone(),
        }],
        &ImportOptions::default(),
    )
    .expect("import");
    assert_eq!(result.strict_failures(), 0, "{}", result.report_text());
    let [policy] = result.policies.as_slice() else {
        panic!("one workload: {}", result.report_text())
    };

    let scratch = Scratch::new("istio-import-jwt");
    let dir = scratch.path();
    let ca = MeshCa::new();
    let server = ca.svid("istio-system", "envoy", time::Duration::hours(2), true);
    fs::write(dir.join("root-cert.pem"), ca.cert_pem()).expect("write CA");
    fs::write(dir.join("cert-chain.pem"), &server.cert_pem).expect("write cert");
    fs::write(dir.join("key.pem"), &server.key_pem).expect("write key");

    let jwt_authn = json!({
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": { "origins-0": {
                "issuer": "https://accounts.shop.example",
                "audiences": ["ledger"],
                "local_jwks": { "inline_string": jwks.to_string() },
                "payload_in_metadata": "payload",
                "forward": true
            } },
            "rules": [{ "match": { "prefix": "/" }, "requires": { "requires_any": { "requirements": [
                { "provider_name": "origins-0" }, { "allow_missing": {} }
            ] } } }]
        }
    });
    let aps: Vec<&serde_yaml::Value> = docs
        .iter()
        .filter(|d| d["kind"].as_str() == Some("AuthorizationPolicy"))
        .collect();
    let mut rbac = vec![jwt_authn];
    rbac.extend(rbac_filters(&aps));
    let mut meshward = meshward_filter(policy);
    // The plugin configuration with the imported `user_tokens`.
    let value = meshward["typed_config"]["config"]["configuration"]["value"]
        .as_str()
        .expect("configuration")
        .to_owned();
    let mut config: Value = serde_json::from_str(&value).expect("json");
    for (k, v) in policy
        .token_settings
        .as_ref()
        .expect("token settings")
        .as_object()
        .expect("object")
    {
        config[k] = v.clone();
    }
    meshward["typed_config"]["config"]["configuration"]["value"] = json!(config.to_string());
    let bootstrap = json!({
        "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } } },
        "static_resources": { "listeners": [
            listener(LISTENER, dir, vec![meshward]),
            listener("rbac_0", dir, rbac),
        ] }
    });
    let envoy = Envoy::start(
        dir,
        &serde_json::to_string_pretty(&bootstrap).expect("json"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let addresses = listener_addresses(&envoy);

    let mut clients: BTreeMap<String, (Conn, Conn)> = BTreeMap::new();
    let mut checked = 0;
    let mut with_user = 0;
    let mut disagreements = Vec::new();
    for sample in &policy.samples {
        let Some(peer) = &sample.probe.peer else {
            continue;
        };
        if sample.probe.method == "CONNECT" {
            continue;
        }
        let (rbac_conn, meshward_conn) = clients.entry(peer.clone()).or_insert_with(|| {
            let path = peer
                .strip_prefix("spiffe://cluster.local/ns/")
                .expect("istio id");
            let (ns, sa) = path.split_once("/sa/").expect("ns/sa");
            let config = client_config(
                &ca.cert_der(),
                &ca.svid(ns, sa, time::Duration::hours(2), false),
            );
            (
                Conn::new(addresses["rbac_0"], Arc::clone(&config)),
                Conn::new(addresses[LISTENER], config),
            )
        });
        let mut request = request_for(sample);
        if let Some(user) = &sample.probe.user {
            let mut claims = tokens::user_claims(&user.issuer, &user.subject, "ledger", "", "jti");
            for (name, values) in &user.claims {
                claims[name] = json!(values);
            }
            request = request.header(
                "authorization",
                &format!("Bearer {}", key.mint("k1", &claims)),
            );
            with_user += 1;
        }
        let rbac = rbac_conn.status(&request);
        let meshward = meshward_conn.status(&request);
        checked += 1;
        if (rbac == 200) != (meshward == 200) || (rbac == 200) != sample.allow {
            disagreements.push(format!(
                "{}: RBAC {rbac}, meshward {meshward}, importer expected {}",
                meshward_policy::import::emit::describe(&sample.probe),
                if sample.allow { "allow" } else { "deny" }
            ));
        }
    }
    eprintln!("istio import equivalence with tokens: {checked} requests ({with_user} with a user token), {} disagreements", disagreements.len());
    let allowed = policy
        .samples
        .iter()
        .filter(|s| s.allow && s.probe.peer.is_some() && s.probe.user.is_some())
        .count();
    assert!(allowed > 5, "{allowed} allowed user requests");
    assert!(
        with_user > 20 && checked > 50,
        "{checked} requests, {with_user} with a user"
    );
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
    drop(envoy);
}
