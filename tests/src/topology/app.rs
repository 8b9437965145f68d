//! The app behind one workload's Envoy: a small HTTP/1.1 server that, for
//! every request it serves, calls the next workload through its own Envoy's
//! outbound listener the way a real service propagates trace context: same
//! method and path (or the path [`ChainApp::set_path_map`] gives),
//! `x-request-id` and `x-meshward-chain` copied from the request it serves. A test can make it misbehave instead (forge, edit,
//! drop, duplicate or replay the chain) with [`ChainApp::set_rewrite`].
//!
//! It answers `200` with JSON describing what it received and what the next
//! hop answered, so one response shows the whole path:
//!
//! ```json
//! {"app": "frontend",
//!  "received": {"method": "GET", "path": "/orders/42", "headers": {"x-meshward-chain": ["v=1;…"]}},
//!  "sent_chain": ["v=1;…"],
//!  "downstream": {"status": 200, "reason": null, "body": {"app": "orders", …, "downstream": null}}}
//! ```
//!
//! The last app of a path (no next hop) has `"downstream": null`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use crate::client::Response;
use crate::http::exchange;
use crate::loopback::{LoopbackServer, Reply};
use crate::upstream::SeenRequest;

/// The chain header.
pub const CHAIN: &str = "x-meshward-chain";

/// Turns the chain header values the app received into the values it sends.
pub type Rewrite = Arc<dyn Fn(&[String]) -> Vec<String> + Send + Sync>;

/// Which path the app calls for the path it serves.
pub type PathMap = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// The well-behaved app: copy what came in.
pub fn copy_chain() -> Rewrite {
    Arc::new(|incoming: &[String]| incoming.to_vec())
}

struct Shared {
    name: String,
    next: Mutex<Option<SocketAddr>>,
    rewrite: Mutex<Rewrite>,
    path_map: Mutex<Option<PathMap>>,
    seen: Mutex<Vec<SeenRequest>>,
}

/// A running app (a [`LoopbackServer`]); stops accepting on drop.
pub struct ChainApp {
    server: LoopbackServer,
    shared: Arc<Shared>,
}

impl ChainApp {
    /// Binds `127.0.0.1:0` and serves; `name` labels its answers.
    pub fn start(name: &str) -> ChainApp {
        let shared = Arc::new(Shared {
            name: name.to_owned(),
            next: Mutex::new(None),
            rewrite: Mutex::new(copy_chain()),
            path_map: Mutex::new(None),
            seen: Mutex::new(Vec::new()),
        });
        let server = {
            let shared = Arc::clone(&shared);
            LoopbackServer::start(&format!("app-{name}"), move |msg| {
                let req = SeenRequest::from_message(msg)?;
                Some(Reply::ok(serve(&shared, req)))
            })
        };
        ChainApp { server, shared }
    }

    /// The port the workload's Envoy routes inbound requests to.
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// Where the app sends its own calls: its Envoy's outbound listener.
    pub fn set_next(&self, outbound: SocketAddr) {
        if let Ok(mut n) = self.shared.next.lock() {
            *n = Some(outbound);
        }
    }

    /// Makes this app the end of the path: it calls nobody.
    pub fn set_end(&self) {
        if let Ok(mut n) = self.shared.next.lock() {
            *n = None;
        }
    }

    /// How the app treats the chain on its next calls.
    pub fn set_rewrite(&self, rewrite: Rewrite) {
        if let Ok(mut r) = self.shared.rewrite.lock() {
            *r = rewrite;
        }
    }

    /// Calls `map(path)` for a request to `path` (default: the same path).
    pub fn set_path_map(&self, map: PathMap) {
        if let Ok(mut m) = self.shared.path_map.lock() {
            *m = Some(map);
        }
    }

    /// Back to copying the chain unchanged.
    pub fn behave(&self) {
        self.set_rewrite(copy_chain());
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.shared
            .seen
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// The requests that carried this `x-request-id`.
    pub fn requests_with_id(&self, request_id: &str) -> Vec<SeenRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.header("x-request-id") == Some(request_id))
            .collect()
    }
}

/// Serves one request: records it, calls the next hop (if any), and
/// returns the JSON answer.
fn serve(shared: &Shared, req: SeenRequest) -> Vec<u8> {
    if let Ok(mut s) = shared.seen.lock() {
        s.push(req.clone());
    }
    let next = shared.next.lock().ok().and_then(|n| *n);
    let answer = match next {
        None => json!({"app": shared.name, "received": req.to_json(), "downstream": null}),
        Some(next) => {
            let rewrite = shared
                .rewrite
                .lock()
                .map(|r| Arc::clone(&r))
                .unwrap_or_else(|_| copy_chain());
            let incoming: Vec<String> = req
                .header_all(CHAIN)
                .into_iter()
                .map(str::to_owned)
                .collect();
            let outgoing = rewrite(&incoming);
            let path = match shared.path_map.lock().ok().and_then(|m| m.clone()) {
                Some(map) => map(&req.path),
                None => req.path.clone(),
            };
            let downstream = match call(next, &req, &path, &outgoing) {
                Ok(r) => json!({
                    "status": r.status,
                    "reason": r.header("x-meshward-reason"),
                    "body": serde_json::from_slice::<Value>(&r.body)
                        .unwrap_or_else(|_| Value::String(r.text())),
                }),
                Err(e) => {
                    json!({"status": 0, "reason": null, "body": format!("call failed: {e}")})
                }
            };
            json!({"app": shared.name, "received": req.to_json(), "sent_chain": outgoing,
                   "downstream": downstream})
        }
    };
    serde_json::to_vec(&answer).unwrap_or_default()
}

/// One plain-HTTP call to the outbound listener, on a fresh connection:
/// `path` with the served request's method.
fn call(
    next: SocketAddr,
    req: &SeenRequest,
    path: &str,
    chain: &[String],
) -> std::io::Result<Response> {
    let mut out = format!(
        "{} {} HTTP/1.1\r\nhost: {}\r\n",
        req.method,
        path,
        req.header("host").unwrap_or("localhost")
    );
    if let Some(id) = req.header("x-request-id") {
        out.push_str(&format!("x-request-id: {id}\r\n"));
    }
    for value in chain {
        out.push_str(&format!("{CHAIN}: {value}\r\n"));
    }
    out.push_str("connection: close\r\n\r\n");
    let msg = exchange(next, out.as_bytes(), Duration::from_secs(20))?;
    Ok(Response {
        status: msg.status().unwrap_or(0),
        headers: msg.headers,
        body: msg.body,
    })
}

/// Where a request went, read from the nested app answers.
#[derive(Debug, Clone)]
pub struct Trace {
    /// Each app's answer, in path order (the first app is the one the
    /// client's Envoy routed to).
    pub apps: Vec<Value>,
    /// The status that ended the path: 200 when the last app had no next
    /// hop, else the refusal (by an Envoy's filter) that stopped it.
    pub status: u16,
    /// `x-meshward-reason` of that refusal.
    pub reason: Option<String>,
    /// The refusal's body (the filter's deny JSON).
    pub body: Value,
}

impl Trace {
    /// Reads a client response (the first Envoy's answer).
    pub fn of(response: &Response) -> Trace {
        let body: Value = serde_json::from_slice(&response.body)
            .unwrap_or_else(|_| Value::String(response.text()));
        let mut trace = Trace {
            apps: Vec::new(),
            status: response.status,
            reason: response.header("x-meshward-reason").map(str::to_owned),
            body: body.clone(),
        };
        if response.status != 200 || body.get("app").is_none() {
            return trace;
        }
        let mut app = body;
        loop {
            trace.apps.push(app.clone());
            let down = &app["downstream"];
            if down.is_null() {
                trace.status = 200;
                trace.reason = None;
                trace.body = Value::Null;
                return trace;
            }
            let status = u16::try_from(down["status"].as_u64().unwrap_or(0)).unwrap_or(0);
            if status == 200 && down["body"].get("app").is_some() {
                app = down["body"].clone();
                continue;
            }
            trace.status = status;
            trace.reason = down["reason"].as_str().map(str::to_owned);
            trace.body = down["body"].clone();
            return trace;
        }
    }

    /// The apps the request reached, in order.
    pub fn reached(&self) -> Vec<&str> {
        self.apps
            .iter()
            .map(|a| a["app"].as_str().unwrap_or("?"))
            .collect()
    }

    /// The answer of the app named `name`; panics when it was not reached.
    pub fn app(&self, name: &str) -> &Value {
        self.apps
            .iter()
            .find(|a| a["app"] == name)
            .unwrap_or_else(|| panic!("the request never reached `{name}`: {self:#?}"))
    }

    /// The values of `header` the app `name` received.
    pub fn received(&self, name: &str, header: &str) -> Vec<String> {
        self.app(name)["received"]["headers"][header]
            .as_array()
            .map(|vs| {
                vs.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The single chain header the app `name` received.
    pub fn chain_at(&self, name: &str) -> String {
        let values = self.received(name, CHAIN);
        assert_eq!(
            values.len(),
            1,
            "`{name}` received {CHAIN} {values:?}; trace {self:#?}"
        );
        values[0].clone()
    }

    /// Asserts the path ended with a deny `status`/`reason` after reaching
    /// exactly `reached`.
    pub fn assert_denied(&self, reached: &[&str], status: u16, reason: &str) {
        assert_eq!(
            (self.reached(), self.status, self.reason.as_deref()),
            (reached.to_vec(), status, Some(reason)),
            "path and refusal; trace {self:#?}"
        );
        assert_eq!(self.body["reason"], reason, "deny body {}", self.body);
    }

    /// Asserts the request went all the way along `reached`.
    pub fn assert_reached(&self, reached: &[&str]) {
        assert_eq!(
            (self.reached(), self.status),
            (reached.to_vec(), 200),
            "path; trace {self:#?}"
        );
    }
}

/// The fields of a chain header (`v=1;iat=…;hops=a,b;mac=…`), by name.
pub fn chain_fields(header: &str) -> std::collections::BTreeMap<String, String> {
    header
        .split(';')
        .filter_map(|f| f.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The hops of a chain header, origin first.
pub fn chain_hops(header: &str) -> Vec<String> {
    chain_fields(header)
        .get("hops")
        .map(|h| h.split(',').map(str::to_owned).collect())
        .unwrap_or_default()
}
