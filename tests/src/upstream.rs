//! The app behind Envoy: a plain HTTP/1.1 echo server on loopback.
//!
//! It answers every request `200` with a JSON body describing exactly what it
//! received (method, path, headers), and records each request, so a test can
//! check what the app sees (identity headers, the normalized path) and, just
//! as important, that a denied request never reached it.

use std::sync::{Arc, Mutex};

use serde_json::{json, Map, Value};

use crate::http::Message;
use crate::loopback::{LoopbackServer, Reply};

/// A request as the app received it.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    /// The method.
    pub method: String,
    /// The request target exactly as Envoy forwarded it.
    pub path: String,
    /// Headers, names lowercased, in order.
    pub headers: Vec<(String, String)>,
}

impl SeenRequest {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a header.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The JSON the echo server answers with.
    pub fn to_json(&self) -> Value {
        let mut headers = Map::new();
        for (name, value) in &self.headers {
            let entry = headers
                .entry(name.clone())
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(values) = entry {
                values.push(Value::String(value.clone()));
            }
        }
        json!({ "method": self.method, "path": self.path, "headers": headers })
    }
}

impl SeenRequest {
    /// The request of a parsed message (`None` when the start line has no
    /// method and target).
    pub fn from_message(msg: &Message) -> Option<SeenRequest> {
        let mut parts = msg.start_line.split(' ');
        Some(SeenRequest {
            method: parts.next()?.to_owned(),
            path: parts.next()?.to_owned(),
            headers: msg.headers.clone(),
        })
    }
}

/// A running echo server (a [`LoopbackServer`]); stops accepting on drop.
pub struct EchoUpstream {
    server: LoopbackServer,
    seen: Arc<Mutex<Vec<SeenRequest>>>,
}

impl EchoUpstream {
    /// Binds `127.0.0.1:0` and starts serving.
    pub fn start() -> EchoUpstream {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let server = {
            let seen = Arc::clone(&seen);
            LoopbackServer::start("echo-upstream", move |msg| {
                let req = SeenRequest::from_message(msg)?;
                let body = serde_json::to_vec(&req.to_json()).unwrap_or_default();
                if let Ok(mut s) = seen.lock() {
                    s.push(req);
                }
                Some(Reply::ok(body))
            })
        };
        EchoUpstream { server, seen }
    }

    /// The port Envoy's `app` cluster points at.
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// How many requests were received so far.
    pub fn count(&self) -> usize {
        self.seen.lock().map(|s| s.len()).unwrap_or(0)
    }
}
