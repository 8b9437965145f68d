//! The demo behind `scripts/demo.sh`: a real Envoy with the meshward filter,
//! enforcing the shop policy over mTLS, and a handful of workloads calling it.
//!
//! ```text
//! cargo run -p meshward-e2e --bin demo -- --plugin-config out/shop.json
//! ```
//!
//! The plugin configuration is what `meshward compile` wrote. Everything else
//! (a CA for `shop.example`, one for the federated `partner.example`, SVIDs,
//! Envoy's certificate (the app's SVID), the echo app, free ports) is made up
//! on the spot and thrown away at the end.

use std::process::ExitCode;

use std::sync::Arc;

use meshward_e2e::client::ClientError;
use meshward_e2e::topology::app::CHAIN;
use meshward_e2e::topology::tokens::{self, SigningKey};
use meshward_e2e::topology::{ThreeHops, ThreeHopsSpec, ISSUER, USER_AUDIENCE};
use meshward_e2e::workspace::repo_root;
use meshward_e2e::{Leaf, Mesh, Request};
use serde_json::Value;

/// The SPIFFE ID path of the app behind the single Envoy: Envoy serves its
/// SVID, so the filter knows whose inbound side it is.
const APP: &str = "/ns/shop/sa/app";

struct Call {
    who: &'static str,
    request: Request,
    /// Shown instead of the raw request line when set.
    note: &'static str,
}

fn call(who: &'static str, request: Request) -> Call {
    Call {
        who,
        request,
        note: "",
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut config_path = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--plugin-config" => config_path = args.next(),
            "-h" | "--help" => {
                println!("usage: demo --plugin-config FILE   (FILE: output of `meshward compile`)");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("demo: unknown argument `{other}`");
                return ExitCode::from(2);
            }
        }
    }
    let Some(config_path) = config_path else {
        eprintln!("demo: --plugin-config FILE is required (the output of `meshward compile`)");
        return ExitCode::from(2);
    };
    let plugin_config = match std::fs::read_to_string(&config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("demo: cannot read {config_path}: {e}");
            return ExitCode::FAILURE;
        }
    };

    let mesh = match Mesh::builder_with_raw_config(plugin_config.trim())
        .label("demo")
        .serve_as(APP)
        .try_start()
    {
        Ok(mesh) => mesh,
        Err(e) => {
            eprintln!("demo: Envoy did not start: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "Envoy 1.40 with meshward is listening on {} (mTLS, serving the app's SVID {}), admin on {}.",
        mesh.envoy.listener(),
        mesh.pki.server.spiffe_id(),
        mesh.envoy.admin()
    );
    if let Some(line) = mesh
        .envoy
        .log()
        .lines()
        .find(|l| l.contains("meshward: loaded policy"))
    {
        if let Some(at) = line.find("meshward: loaded policy") {
            println!("{}", &line[at..]);
        }
    }

    let pki = &mesh.pki;
    let gateway = pki.workload("edge", "gateway");
    let frontend = pki.workload("shop", "frontend");
    let orders = pki.workload("shop", "orders");
    let payments = pki.workload("shop", "payments");
    let support = pki.workload("support", "desk");
    // Envoy federates with partner.example (it holds its CA bundle), so the
    // handshake succeeds; the shop policy does not trust that domain.
    let stranger = pki.partner.svid("/ns/shop/sa/frontend").issue();
    let identities: [(&str, Option<&Leaf>); 7] = [
        ("gateway", Some(&gateway)),
        ("frontend", Some(&frontend)),
        ("orders", Some(&orders)),
        ("payments", Some(&payments)),
        ("support", Some(&support)),
        ("stranger", Some(&stranger)),
        ("no cert", None),
    ];

    println!("\nWorkloads (X.509-SVIDs, 1 h lifetime):");
    for (name, leaf) in &identities {
        println!(
            "  {name:<9} {}",
            leaf.map_or("(no client certificate)", Leaf::spiffe_id)
        );
    }

    let calls = vec![
        call("gateway", Request::get("/products/shoes/42")),
        call("gateway", Request::post("/checkout", b"{}")),
        call("gateway", Request::get("/orders/42")),
        call("frontend", Request::get("/orders/42")),
        call(
            "frontend",
            Request::post("/orders", b"{}").header("x-user", "alice"),
        ),
        call(
            "frontend",
            Request::post("/payments/charges/9/refund", b"{}"),
        ),
        Call {
            who: "frontend",
            request: Request::get("/orders/../admin/users"),
            note: "GET /orders/../admin/users *",
        },
        call(
            "orders",
            Request::post("/payments/charges", b"{}").header("x-tenant", "retail"),
        ),
        call("payments", Request::get("/healthz")),
        call("payments", Request::new("DELETE", "/orders/42")),
        call("support", Request::post("/payments/refunds", b"{}")),
        call("stranger", Request::get("/healthz")),
        call("no cert", Request::get("/healthz")),
    ];

    let mut rows = vec![[
        "WHO".to_owned(),
        "REQUEST".to_owned(),
        "INTENT".to_owned(),
        "STATUS".to_owned(),
        "DECISION".to_owned(),
        "REASON".to_owned(),
        "RULE".to_owned(),
    ]];
    for (n, c) in calls.into_iter().enumerate() {
        let id = format!("demo-{n}");
        let identity = identities
            .iter()
            .find(|(name, _)| *name == c.who)
            .and_then(|(_, leaf)| *leaf);
        let request = c.request.header("x-request-id", &id);
        let what = if c.note.is_empty() {
            format!("{} {}", request.method(), request.target())
        } else {
            c.note.to_owned()
        };
        let row = match mesh.try_send(identity, &request) {
            Ok(response) => {
                let audit = mesh
                    .envoy
                    .audit_lines_for([id.as_str()])
                    .into_iter()
                    .find(|l| l.json["request_id"] == id.as_str());
                let field = |k: &str| {
                    audit
                        .as_ref()
                        .and_then(|a| a.json.get(k))
                        .and_then(Value::as_str)
                        .unwrap_or("-")
                        .to_owned()
                };
                let mut decision = if response.status == 200 {
                    response
                        .json()
                        .pointer("/headers/x-meshward-decision/0")
                        .and_then(Value::as_str)
                        .unwrap_or("allow")
                        .to_owned()
                } else {
                    "deny".to_owned()
                };
                let mut rule = field("rule");
                if let Some(would) = audit.as_ref().map(|a| &a.json["would"]) {
                    if let (Some(d), Some(r)) = (would["decision"].as_str(), would["rule"].as_str())
                    {
                        decision = format!("{decision} (would {d})");
                        rule = format!("{r} (dry-run)");
                    }
                }
                [
                    c.who.to_owned(),
                    what,
                    field("intent"),
                    response.status.to_string(),
                    decision,
                    field("reason"),
                    rule,
                ]
            }
            Err(ClientError::Tls(e)) => [
                c.who.to_owned(),
                what,
                "-".to_owned(),
                "-".to_owned(),
                "refused".to_owned(),
                match e {
                    rustls::Error::AlertReceived(alert) => format!("TLS alert {alert:?}"),
                    other => format!("TLS: {other}"),
                },
                "-".to_owned(),
            ],
            Err(e) => [
                c.who.to_owned(),
                what,
                "-".to_owned(),
                "-".to_owned(),
                "error".to_owned(),
                e.to_string(),
                "-".to_owned(),
            ],
        };
        rows.push(row);
    }

    let single_envoy_requests = rows.len() - 1;

    // Three hops, each its own Envoy with an inbound and an outbound
    // listener and an app that calls the next hop, copying the caller chain.
    println!("\nStarting three more Envoys: edge gateway -> frontend -> orders (the shop policy at frontend and orders)...");
    let hops = match start_three_hops() {
        Ok(hops) => hops,
        Err(e) => {
            eprintln!("demo: the three-hop Envoys did not start: {e}");
            return ExitCode::FAILURE;
        }
    };
    rows.push(divider("three hops: user -> gateway -> frontend -> orders"));
    rows.extend(three_hop_rows(&hops));

    println!();
    print_table(&rows);
    println!("* Envoy normalizes the path to /admin/users before the filter classifies it.");
    println!("  Denies never reach the app; the stranger's domain is federated by Envoy but");
    println!("  not trusted by the policy; a peer without a certificate never gets past TLS.");
    println!("  Below the line, each block is one request at the edge with an end-user token");
    println!("  (verified by the gateway's filter), then the calls it caused, hop by hop. Orders");
    println!("  reads orders only for a chain that started at the gateway, for a user with the");
    println!("  `orders.read` scope; the frontend's app cannot edit the chain it was handed.");

    println!(
        "\nThe app (an echo server) received {} of {} requests.",
        mesh.upstream.count(),
        single_envoy_requests
    );
    println!("\nCounters (Envoy admin /stats):");
    for (name, value) in mesh.envoy.stats("wasmcustom.meshward.") {
        if value > 0 {
            println!("  {name:<52} {value}");
        }
    }
    if let Some(line) = mesh
        .envoy
        .audit_lines_for(["demo-5"])
        .into_iter()
        .find(|l| l.json["request_id"] == "demo-5")
    {
        println!("\nOne audit line from Envoy's log (frontend asking for a refund):");
        println!("  meshward.audit {}", line.json);
    }
    if let Some(chain) = hops
        .orders
        .app
        .requests_with_id("chain-alice")
        .first()
        .and_then(|r| r.header(CHAIN).map(str::to_owned))
    {
        println!(
            "\nThe chain the orders app received for alice's request (sealed by orders' Envoy):"
        );
        println!("  {CHAIN}: {chain}");
    }
    if let Some(line) = hops
        .orders
        .envoy
        .audit_lines_for(["chain-alice"])
        .into_iter()
        .find(|l| l.json["request_id"] == "chain-alice")
    {
        println!("Orders' audit line for it:");
        println!("  meshward.audit {}", line.json);
    }
    println!("\nStopping the Envoys.");
    drop(hops);
    drop(mesh);
    ExitCode::SUCCESS
}

/// The edge gateway's policy: signed-in users may load the shop's pages.
const EDGE_POLICY: &str = r#"
policy "edge" {
  trust_domains "shop.example"
}

# The demo adds its IdP (keys minted at start-up) to the plugin configuration.
identity {
  external
}

intent frontend.pages {
  method GET HEAD
  path "/" "/products/**" "/cart"
}

allow signed-in-users {
  principal user
  intent frontend.pages
  when user present
}
"#;

fn start_three_hops() -> Result<ThreeHops, String> {
    let shop_path = repo_root().join("policy-compiler/examples/shop.policy");
    let shop = std::fs::read_to_string(&shop_path)
        .map_err(|e| format!("read {}: {e}", shop_path.display()))?;
    let hops = ThreeHops::start(&ThreeHopsSpec {
        label: "demo-chain",
        gateway_policy: EDGE_POLICY,
        frontend_policy: &shop,
        orders_policy: &shop,
        frontend_on_invalid: "deny",
        concurrency: 1,
    })
    .map_err(|e| e.to_string())?;
    // The frontend's app serves /cart by fetching the user's order.
    hops.frontend.app.set_path_map(Arc::new(|path: &str| {
        if path == "/cart" {
            "/orders/42".to_owned()
        } else {
            path.to_owned()
        }
    }));
    Ok(hops)
}

fn divider(text: &str) -> [String; 7] {
    let mut row: [String; 7] = Default::default();
    row[0] = "----".to_owned();
    row[1] = text.to_owned();
    row
}

/// Sends the three-hop requests and returns one table row per decision
/// (every hop's inbound filter, and the frontend's outbound seal check).
fn three_hop_rows(hops: &ThreeHops) -> Vec<[String; 7]> {
    let alice = hops.user_token("alice", "orders.read profile");
    let bob = hops.user_token("bob", "profile");
    let mallory = SigningKey::es256().mint(
        "idp-1",
        &tokens::user_claims(ISSUER, "mallory", USER_AUDIENCE, "orders.read", "m-1"),
    );
    // (request id, user, what the token says, token, frontend app edits the chain)
    let cases: [(&str, &str, &str, &str, bool); 4] = [
        ("chain-alice", "alice", "scope orders.read", &alice, false),
        ("chain-bob", "bob", "scope profile", &bob, false),
        ("chain-mallory", "mallory", "forged token", &mallory, false),
        ("chain-edited", "alice", "scope orders.read", &alice, true),
    ];
    let mut rows = Vec::new();
    for (id, user, token_note, token, edit) in cases {
        if edit {
            // A compromised frontend app swaps the user in the chain.
            hops.frontend
                .app
                .set_rewrite(Arc::new(|incoming: &[String]| {
                    incoming
                        .iter()
                        .map(|c| c.replace("user=alice", "user=admin"))
                        .collect()
                }));
        }
        let sent = hops
            .edge_client()
            .send(
                &Request::get("/cart")
                    .header("x-request-id", id)
                    .header("authorization", &format!("Bearer {token}")),
            )
            .is_ok();
        hops.frontend.app.behave();
        if !sent {
            continue;
        }
        // The gateway always decides; wait for its line, then read the rest.
        let _ = hops.gateway.envoy.audit_for(id);
        std::thread::sleep(std::time::Duration::from_millis(100));
        for (who, envoy, what) in [
            (
                format!("user {user}"),
                &hops.gateway.envoy,
                format!("GET /cart -> gateway ({token_note})"),
            ),
            (
                "gateway".to_owned(),
                &hops.frontend.envoy,
                "GET /cart -> frontend".to_owned(),
            ),
            (
                "frontend".to_owned(),
                &hops.orders.envoy,
                "GET /orders/42 -> orders".to_owned(),
            ),
        ] {
            for line in envoy
                .audit_lines_for([id])
                .into_iter()
                .filter(|l| l.json["request_id"] == id && l.json.get("direction").is_none())
            {
                let j = &line.json;
                let field = |k: &str| j[k].as_str().unwrap_or("-").to_owned();
                rows.push([
                    who.clone(),
                    what.clone(),
                    field("intent"),
                    j["status"].to_string(),
                    field("decision"),
                    field("reason"),
                    field("rule"),
                ]);
            }
            if who == "gateway" {
                // The frontend's outbound refusal is in the frontend's log.
                for line in hops
                    .frontend
                    .envoy
                    .audit_lines_for([id])
                    .into_iter()
                    .filter(|l| l.json["request_id"] == id && l.json["direction"] == "outbound")
                {
                    let j = &line.json;
                    rows.push([
                        "frontend app".to_owned(),
                        "GET /orders/42, chain's user edited -> own outbound".to_owned(),
                        "-".to_owned(),
                        "403".to_owned(),
                        j["decision"].as_str().unwrap_or("-").to_owned(),
                        j["reason"].as_str().unwrap_or("-").to_owned(),
                        "(chain seal check)".to_owned(),
                    ]);
                }
            }
        }
        rows.push(Default::default());
    }
    rows.pop();
    rows
}

fn print_table(rows: &[[String; 7]]) {
    let mut widths = [0usize; 7];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for (i, row) in rows.iter().enumerate() {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
        if i == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            println!("{}", rule.join("  "));
        }
    }
}
