//! A tiny HTTP/1.1 server for the documents the filter fetches over an
//! Envoy cluster (`key_fetch`): key sets (JWKS, SPIFFE bundles) and
//! revocation lists. A test changes what a path answers at any time
//! (rotate keys, revoke, answer 500, reset connections) and counts fetches.

use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::http::{read_message, BodyDefault};

/// What a path answers.
#[derive(Debug, Clone)]
pub enum Answer {
    /// A status and a JSON body.
    Doc(u16, String),
    /// Close the connection without answering (the server "stopped").
    Reset,
}

#[derive(Default)]
struct State {
    answers: HashMap<String, Answer>,
    hits: HashMap<String, u64>,
}

/// A running document server; stops on drop.
pub struct DocServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl DocServer {
    /// Binds `127.0.0.1:0` and serves. Unknown paths answer 404.
    pub fn start() -> DocServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind doc server");
        let addr = listener.local_addr().expect("doc server address");
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let state = Arc::clone(&state);
            let stop = Arc::clone(&stop);
            thread::Builder::new()
                .name("doc-server".into())
                .spawn(move || {
                    for conn in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let Ok(conn) = conn else { continue };
                        let state = Arc::clone(&state);
                        let _ = thread::Builder::new()
                            .name("doc-conn".into())
                            .spawn(move || serve(conn, &state));
                    }
                })
                .expect("spawn doc server")
        };
        DocServer {
            addr,
            state,
            stop,
            acceptor: Some(acceptor),
        }
    }

    /// The port Envoy's key cluster points at.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `path` answers 200 with `json` from now on.
    pub fn serve_json(&self, path: &str, json: &serde_json::Value) {
        self.set(path, Answer::Doc(200, json.to_string()));
    }

    /// `path` answers `answer` from now on.
    pub fn set(&self, path: &str, answer: Answer) {
        if let Ok(mut s) = self.state.lock() {
            s.answers.insert(path.to_owned(), answer);
        }
    }

    /// How many times `path` was requested.
    pub fn hits(&self, path: &str) -> u64 {
        self.state
            .lock()
            .ok()
            .and_then(|s| s.hits.get(path).copied())
            .unwrap_or(0)
    }

    /// Waits until `path` has been requested `more` more times than
    /// `since` (bounded by `timeout`); panics otherwise.
    pub fn wait_hits(&self, path: &str, since: u64, more: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.hits(path) < since + more {
            assert!(
                Instant::now() < deadline,
                "{path} was fetched {} times, expected {} within {timeout:?}",
                self.hits(path) - since,
                more
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for DocServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

fn serve(conn: TcpStream, state: &Mutex<State>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(mut writer) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn);
    while let Ok(Some(msg)) = read_message(&mut reader, BodyDefault::Empty) {
        let path = msg.start_line.split(' ').nth(1).unwrap_or("").to_owned();
        let answer = match state.lock() {
            Ok(mut s) => {
                *s.hits.entry(path.clone()).or_insert(0) += 1;
                s.answers.get(&path).cloned()
            }
            Err(_) => return,
        };
        let (status, body) = match answer {
            Some(Answer::Doc(status, body)) => (status, body),
            Some(Answer::Reset) => return,
            None => (404, "{}".to_owned()),
        };
        let head = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        if writer.write_all(head.as_bytes()).is_err() || writer.write_all(body.as_bytes()).is_err()
        {
            return;
        }
    }
}
