//! The app behind Envoy: a plain HTTP/1.1 echo server on loopback.
//!
//! It answers every request `200` with a JSON body describing exactly what it
//! received (method, path, headers), and records each request, so a test can
//! check what the app sees (identity headers, the normalized path) and, just
//! as important, that a denied request never reached it.

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::http::{read_message, BodyDefault, Message};

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

/// A running echo server; stops accepting on drop.
pub struct EchoUpstream {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<SeenRequest>>>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl EchoUpstream {
    /// Binds `127.0.0.1:0` and starts serving.
    pub fn start() -> EchoUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind echo upstream");
        let addr = listener.local_addr().expect("echo upstream address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let seen = Arc::clone(&seen);
            let stop = Arc::clone(&stop);
            thread::Builder::new()
                .name("echo-upstream".into())
                .spawn(move || {
                    for conn in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let Ok(conn) = conn else { continue };
                        let seen = Arc::clone(&seen);
                        let _ = thread::Builder::new()
                            .name("echo-conn".into())
                            .spawn(move || serve(conn, &seen));
                    }
                })
                .expect("spawn echo upstream")
        };
        EchoUpstream {
            addr,
            seen,
            stop,
            acceptor: Some(acceptor),
        }
    }

    /// The port Envoy's `app` cluster points at.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// How many requests were received so far.
    pub fn count(&self) -> usize {
        self.seen.lock().map(|s| s.len()).unwrap_or(0)
    }

    /// The requests received after the first `since` ones.
    pub fn requests_since(&self, since: usize) -> Vec<SeenRequest> {
        self.requests().into_iter().skip(since).collect()
    }
}

impl Drop for EchoUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the acceptor so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

fn serve(conn: TcpStream, seen: &Mutex<Vec<SeenRequest>>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(60)));
    let Ok(mut writer) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn);
    while let Ok(Some(msg)) = read_message(&mut reader, BodyDefault::Empty) {
        let Some(req) = to_seen(&msg) else { return };
        let body = serde_json::to_vec(&req.to_json()).unwrap_or_default();
        if let Ok(mut s) = seen.lock() {
            s.push(req);
        }
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        if writer.write_all(head.as_bytes()).is_err() || writer.write_all(&body).is_err() {
            return;
        }
    }
}

fn to_seen(msg: &Message) -> Option<SeenRequest> {
    let mut parts = msg.start_line.split(' ');
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    Some(SeenRequest {
        method,
        path,
        headers: msg.headers.clone(),
    })
}
