//! Parity: the CLI's offline pipeline (`meshward decide`,
//! `meshward_policy::outcome::OfflineFilter`) and a real Envoy with the
//! filter decide a corpus of more than 300 requests identically — decision,
//! reason, intent and rule — from the same facts: the request line and
//! headers, the client certificate, the tokens and chains the request
//! carries, and the time.
//!
//! What Envoy's HTTP connection manager does *before* any filter runs
//! (`normalize_path`, `merge_slashes`, `strip_trailing_host_dot`, rejecting
//! malformed requests with a 400) is Envoy's, not the pipeline's: the CLI
//! side takes `:path` and `:authority` as the filter received them (the
//! audit line records both), and a request Envoy rejects before the filter
//! is counted, not compared.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use meshward_e2e::topology::plugin_config_with;
use meshward_e2e::topology::tokens::{jwks, now, svid_claims, user_claims, SigningKey};
use meshward_e2e::{Leaf, Mesh, Request};
use meshward_policy::outcome::OfflineFilter;
use meshward_policy::raw::RawRequest;
use meshward_policy::source_map::SourceMap;
use serde_json::{json, Value};

const POLICY: &str = r#"
policy "parity" {
  trust_domains "shop.example"
}

# Keys are minted for each run: the test writes the token settings into the
# plugin configuration itself.
identity {
  external
}

group frontends {
  member "spiffe://shop.example/ns/shop/sa/frontend"
}

group gateways {
  member "spiffe://shop.example/ns/edge/sa/gateway"
}

chain {
  forwarder group gateways
  max_depth 4
  lifetime 60s
}

intent orders.read {
  method GET HEAD
  path "/orders" "/orders/{id}"
}

intent orders.write {
  method POST PUT
  path "/orders/{id}"
}

intent vault.read {
  method GET
  path "/secrets/**"
  host "vault.example"
}

intent anything.read {
  method GET
  path "/**"
}

intent reports.read {
  method GET
  path "/reports/{id}"
}

intent admin {
  path "/admin/**"
}

allow frontend-reads-orders {
  subject group frontends
  intent orders.read
}

allow gateway-writes-orders {
  subject group gateways
  intent orders.write
  when header "x-env" == "prod"
}

deny freeze-writes {
  subject group gateways
  intent orders.write
  mode dry-run
}

allow frontend-reads-anything {
  subject group frontends
  intent anything.read
}

deny nobody-reads-the-vault {
  subject any_authenticated
  intent vault.read
}

allow batch-reads-reports-as-gateway-users {
  subject "spiffe://shop.example/ns/batch/sa/*"
  intent reports.read
  when origin group gateways
}

allow users-read-reports {
  principal user
  intent reports.read
  when user scope "reports.read"
}

allow jobs-read-reports {
  principal jwt_svid via group gateways
  subject "spiffe://shop.example/ns/batch/sa/report"
  intent reports.read
}
"#;

const AUDIENCE: &str = "spiffe://shop.example/ns/shop/sa/orders";
const ISSUER: &str = "https://idp.shop.test";
const GATEWAY: &str = "spiffe://shop.example/ns/edge/sa/gateway";
const REPORT_JOB: &str = "spiffe://shop.example/ns/batch/sa/report";

/// One corpus request: who sends it and what it carries.
struct Case {
    id: String,
    peer: usize,
    method: &'static str,
    path: String,
    host: String,
    headers: Vec<(String, String)>,
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

fn case(peer: usize, method: &'static str, path: &str, host: &str) -> Case {
    Case {
        id: format!("parity-{}", NEXT.fetch_add(1, Ordering::Relaxed)),
        peer,
        method,
        path: path.to_owned(),
        host: host.to_owned(),
        headers: Vec::new(),
    }
}

impl Case {
    fn header(mut self, name: &str, value: &str) -> Case {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// Every combination the corpus covers.
fn corpus(tokens: &Tokens, peers: usize) -> Vec<Case> {
    let mut cases = Vec::new();
    let paths = [
        "/orders",
        "/orders/42",
        "/orders/42?x=1",
        "/orders/%34%32",
        "/orders/a%2fb",
        "/orders/..%2fadmin",
        "/orders/42;x",
        "/orders/42/",
        "/secrets/db/password",
        "/reports/7",
        "/admin/users",
        "/admin",
        "/other",
        "/ORDERS/42",
    ];
    let methods = ["GET", "OPTIONS", "POST", "PUT", "DELETE", "PATCH"];
    // Methods × paths × peers.
    for peer in 0..peers {
        for path in paths {
            for method in methods {
                cases.push(case(peer, method, path, "orders.shop"));
            }
        }
    }
    // Authorities, canonical and not, against the host-scoped deny.
    let hosts = [
        "vault.example",
        "VAULT.example",
        "vault.example:8443",
        "vault.example.",
        "vault.example..",
        "vault.example:80:80",
        "vault.example,other.example",
        "vault.example:",
        "vault.example:99999",
        "[::1]",
        "127.0.0.1:8080",
        "other.example",
        "vault_example",
        "-vault.example",
    ];
    for host in hosts {
        for peer in 0..peers {
            cases.push(case(peer, "GET", "/secrets/db", host));
        }
    }
    // Two Host headers (Envoy joins or refuses them).
    cases.push(case(0, "GET", "/secrets/db", "vault.example").header("host", "other.example"));
    cases.push(case(0, "GET", "/secrets/db", "other.example").header("host", "vault.example"));
    // Method overrides and duplicate headers on an allowed request.
    for (name, value) in [
        ("x-http-method-override", "DELETE"),
        ("x-http-method-override", "GET"),
        ("x-http-method", "post"),
        ("x-method-override", "PUT"),
    ] {
        cases.push(case(0, "GET", "/orders/42", "orders.shop").header(name, value));
    }
    cases.push(
        case(0, "GET", "/orders/42", "orders.shop")
            .header("x-http-method-override", "GET")
            .header("x-http-method-override", "GET"),
    );
    for env in [vec!["prod"], vec!["dev"], vec!["prod", "prod"], vec![]] {
        let mut c = case(1, "PUT", "/orders/9", "orders.shop");
        for value in env {
            c = c.header("x-env", value);
        }
        cases.push(c);
    }
    // JWT-SVIDs through the gateway (and from a peer that is not one).
    for (peer, token) in [
        (1, &tokens.svid_ok),
        (1, &tokens.svid_expired),
        (1, &tokens.svid_wrong_aud),
        (1, &tokens.svid_bad_sig),
        (1, &tokens.garbage),
        (0, &tokens.svid_ok),
    ] {
        cases.push(case(peer, "GET", "/reports/1", "orders.shop").header("x-jwt-svid", token));
    }
    cases.push(
        case(1, "GET", "/reports/1", "orders.shop")
            .header("x-jwt-svid", &tokens.svid_ok)
            .header("x-jwt-svid", &tokens.svid_ok),
    );
    // End-user tokens.
    for (peer, token) in [
        (0, &tokens.user_ok),
        (0, &tokens.user_no_scope),
        (0, &tokens.user_other_issuer),
        (2, &tokens.user_ok),
        (2, &tokens.garbage),
    ] {
        cases.push(
            case(peer, "GET", "/reports/2", "orders.shop")
                .header("authorization", &format!("Bearer {token}")),
        );
    }
    // Chains: from the gateway (a forwarder) and from a batch job (not one).
    let t = now();
    let chain = |iat: u64, exp: u64, hops: &str| {
        format!("v=1;iat={iat};exp={exp};complete=1;purpose=reports.read;hops={hops}")
    };
    let batch = "spiffe://shop.example/ns/batch/sa/report";
    for (peer, value) in [
        (1, chain(t, t + 30, GATEWAY)),
        (1, chain(t - 10, t + 50, GATEWAY)),
        (1, chain(t, t + 365 * 86_400, GATEWAY)),
        (1, chain(t + 3600, t + 3630, GATEWAY)),
        (1, chain(t - 120, t - 60, GATEWAY)),
        (1, chain(t, t + 30, &format!("{GATEWAY},{GATEWAY}"))),
        (1, chain(t, t + 30, batch)),
        (1, "v=2;iat=1;exp=2;complete=1;hops=x".to_owned()),
        (1, "garbage".to_owned()),
        (2, chain(t, t + 30, &format!("{GATEWAY},{batch}"))),
        (2, chain(t, t + 30, batch)),
    ] {
        cases.push(
            case(peer, "GET", "/reports/3", "orders.shop").header("x-meshward-chain", &value),
        );
    }
    cases
}

struct Tokens {
    svid_ok: String,
    svid_expired: String,
    svid_wrong_aud: String,
    svid_bad_sig: String,
    user_ok: String,
    user_no_scope: String,
    user_other_issuer: String,
    garbage: String,
}

#[test]
fn the_cli_pipeline_decides_like_envoy() {
    let svid_key = SigningKey::es256();
    let user_key = SigningKey::es256();
    let rogue_key = SigningKey::es256();
    let t = now();
    let expired = json!({"sub": REPORT_JOB, "aud": AUDIENCE, "iat": t - 600, "exp": t - 300});
    let tokens = Tokens {
        svid_ok: svid_key.mint("s1", &svid_claims(REPORT_JOB, AUDIENCE, 300, "j1")),
        svid_expired: svid_key.mint("s1", &expired),
        svid_wrong_aud: svid_key.mint(
            "s1",
            &svid_claims(REPORT_JOB, "spiffe://x.example/y", 300, "j2"),
        ),
        svid_bad_sig: rogue_key.mint("s1", &svid_claims(REPORT_JOB, AUDIENCE, 300, "j3")),
        user_ok: user_key.mint(
            "u1",
            &user_claims(ISSUER, "alice", "shop", "reports.read", "u-1"),
        ),
        user_no_scope: user_key.mint(
            "u1",
            &user_claims(ISSUER, "bob", "shop", "orders.read", "u-2"),
        ),
        user_other_issuer: user_key.mint(
            "u1",
            &user_claims("https://evil.example", "eve", "shop", "reports.read", "u-3"),
        ),
        garbage: "not.a.token".to_owned(),
    };
    let mut bundle = jwks(&[(&svid_key, "s1")], &json!({"use": "jwt-svid"}));
    bundle["spiffe_sequence"] = json!(1);
    let config = plugin_config_with(
        POLICY,
        "parity.policy",
        &json!({
            "workload_id": AUDIENCE,
            "jwt_svid": {"audiences": [AUDIENCE], "max_lifetime_secs": 600},
            "trust_bundles": {"shop.example": bundle},
            "user_tokens": {"issuers": [{"issuer": ISSUER, "audiences": ["shop"],
                "jwks": jwks(&[(&user_key, "u1")], &json!({}))}]},
        }),
    );
    let mesh = Mesh::builder_with_raw_config(&config)
        .label("parity")
        .start();
    let peers: Vec<Leaf> = vec![
        mesh.pki.workload("shop", "frontend"),
        mesh.pki.shop.svid("/ns/edge/sa/gateway").issue(),
        mesh.pki.shop.svid("/ns/batch/sa/report").issue(),
        mesh.pki.partner.svid("/ns/shop/sa/frontend").issue(),
    ];
    let cases = corpus(&tokens, peers.len());
    assert!(cases.len() >= 300, "corpus has {} requests", cases.len());

    // Envoy first: every request over its own mTLS connection.
    let mut statuses = BTreeMap::new();
    for c in &cases {
        let mut request = Request::new(c.method, &c.path)
            .header("host", &c.host)
            .header("x-request-id", &c.id);
        for (name, value) in &c.headers {
            request = request.header(name, value);
        }
        let response = mesh.try_send(Some(&peers[c.peer]), &request);
        statuses.insert(c.id.clone(), response.map(|r| r.status).ok());
    }
    let audit: BTreeMap<String, Value> = mesh
        .envoy
        .audit_lines_for(cases.iter().map(|c| c.id.as_str()))
        .into_iter()
        .filter_map(|l| Some((l.json["request_id"].as_str()?.to_owned(), l.json)))
        .collect();

    // Then the CLI's pipeline, from the same facts.
    let mut filter = OfflineFilter::new(config.as_bytes(), SourceMap::default()).unwrap();
    let (mut compared, mut before_filter) = (0, 0);
    let mut disagreements = Vec::new();
    let mut reasons = BTreeMap::<String, usize>::new();
    for c in &cases {
        let Some(line) = audit.get(&c.id) else {
            // Envoy answered before the filter ran (e.g. 400 for a request
            // its codec refuses): nothing to compare.
            assert_ne!(
                statuses[&c.id],
                Some(200),
                "{}: allowed without an audit line",
                c.id
            );
            before_filter += 1;
            continue;
        };
        let raw = RawRequest {
            id: Some(c.id.clone()),
            method: c.method.to_owned(),
            path: line["path"].as_str().unwrap().to_owned(),
            authority: line["authority"].as_str().map(str::to_owned),
            // Envoy turns Host into `:authority` (taken from the audit line).
            headers: c
                .headers
                .iter()
                .filter(|(name, _)| name != "host")
                .cloned()
                .collect(),
            peer_cert: Some(peers[c.peer].cert_pem.clone()),
            time: line["time"].as_u64(),
        };
        let outcome = filter.decide_input(&raw.input(now()).unwrap()).to_json();
        let envoy = (
            line["decision"].clone(),
            line["reason"].clone(),
            line["intent"].clone(),
            line["rule"].clone(),
        );
        let cli = (
            outcome["decision"].clone(),
            outcome["reason"].clone(),
            outcome["intent"].clone(),
            outcome["rule"]["id"].clone(),
        );
        *reasons.entry(envoy.1.to_string()).or_default() += 1;
        let status = statuses[&c.id];
        if envoy != cli || status != outcome["status"].as_u64().map(|s| s as u16) {
            disagreements.push(format!(
                "{} {} {} host {:?} peer {} headers {:?}: envoy {envoy:?} (HTTP {status:?}), cli {cli:?}",
                c.id, c.method, c.path, c.host, c.peer, c.headers
            ));
        }
        compared += 1;
    }
    eprintln!(
        "parity: {compared} compared, {before_filter} answered by Envoy before the filter; reasons {reasons:?}"
    );
    assert!(
        disagreements.is_empty(),
        "{} disagreements:\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
    assert!(
        compared >= 300,
        "only {compared} requests reached the filter"
    );
    assert!(
        reasons.len() >= 15,
        "the corpus exercises too few reasons: {reasons:?}"
    );
}
